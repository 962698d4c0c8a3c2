//! How much of what a caller controls reaches an audit record: every text field has a byte
//! limit, and the client address chain keeps the TCP peer and the few forwarded hops nearest
//! to the server (the ones proxies added), so no request can make a record large.

use super::AuditEntry;

/// `X-Forwarded-For` hops kept, nearest to the server first in importance.
pub const MAX_FORWARDED_HOPS: usize = 4;
/// One hop: an IPv6 address with a zone fits easily.
pub const MAX_HOP_BYTES: usize = 64;
/// Actor, source and job.
pub const MAX_NAME_BYTES: usize = 256;
pub const MAX_MESSAGE_BYTES: usize = 1024;
/// The JSON detail (a run's parameters and argv); a longer one is replaced by its start.
pub const MAX_DETAIL_BYTES: usize = 64 * 1024;

impl AuditEntry {
    /// The entry as it may be stored: every field within its limit, cuts marked.
    pub fn bounded(mut self) -> AuditEntry {
        self.actor = cut(&self.actor, MAX_NAME_BYTES);
        self.source = cut(&self.source, MAX_NAME_BYTES);
        self.job = self.job.map(|job| cut(&job, MAX_NAME_BYTES));
        self.message = cut(&self.message, MAX_MESSAGE_BYTES);
        self.client = bound_client_chain(&self.client);
        if self.detail.len() > MAX_DETAIL_BYTES {
            // Escaping at most sextuples a byte (`\u0001`), so the start stays within the limit.
            let start = cut(&self.detail, MAX_DETAIL_BYTES / 8);
            self.detail = format!(r#"{{"cut_from_bytes":{},"start":{}}}"#, self.detail.len(), json_string(&start));
        }
        self
    }
}

/// `PEER via HOP, HOP, …` with at most [`MAX_FORWARDED_HOPS`] hops, the last ones (added by
/// the proxies in front of the server), each at most [`MAX_HOP_BYTES`].
pub fn bound_client_chain(chain: &str) -> String {
    let (peer, forwarded) = chain.split_once(" via ").unwrap_or((chain, ""));
    let peer = cut(peer, MAX_HOP_BYTES);
    let hops: Vec<&str> = forwarded.split(',').map(str::trim).filter(|hop| !hop.is_empty()).collect();
    if hops.is_empty() {
        return peer;
    }
    let dropped = hops.len().saturating_sub(MAX_FORWARDED_HOPS);
    let kept: Vec<String> = hops[dropped..].iter().map(|hop| cut(hop, MAX_HOP_BYTES)).collect();
    match dropped {
        0 => format!("{peer} via {}", kept.join(", ")),
        _ => format!("{peer} via (+{dropped} earlier hops) {}", kept.join(", ")),
    }
}

/// At most `max_bytes` of `text`, cut at a character boundary and marked with `…`.
fn cut(text: &str, max_bytes: usize) -> String {
    if text.len() <= max_bytes {
        return text.to_string();
    }
    let mut end = max_bytes.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// A JSON string literal (core has no serde_json; only `"`, `\` and controls need escapes).
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for character in text.chars() {
        match character {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            control if (control as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", control as u32)),
            other => out.push(other),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_forwarded_chain_keeps_the_peer_and_the_nearest_hops() {
        let forwarded: Vec<String> = (0..2000).map(|index| format!("10.0.{}.{}", index / 256, index % 256)).collect();
        let chain = format!("127.0.0.1 via {}", forwarded.join(", "));
        let bounded = bound_client_chain(&chain);
        assert_eq!(bounded, "127.0.0.1 via (+1996 earlier hops) 10.0.7.204, 10.0.7.205, 10.0.7.206, 10.0.7.207");
        assert_eq!(bound_client_chain("127.0.0.1"), "127.0.0.1");
        assert_eq!(bound_client_chain("127.0.0.1 via 1.2.3.4"), "127.0.0.1 via 1.2.3.4");
        let huge_hop = format!("127.0.0.1 via {}", "é".repeat(5000));
        assert!(bound_client_chain(&huge_hop).len() <= "127.0.0.1 via ".len() + MAX_HOP_BYTES);
    }

    #[test]
    fn every_field_is_bounded() {
        let entry = AuditEntry {
            at_us: 1,
            actor: "a".repeat(10_000),
            source: "token:".repeat(1000),
            client: format!("::1 via {}", "x".repeat(20_000)),
            action: super::super::AuditAction::RunStart,
            message: "m".repeat(10_000),
            job: Some("j".repeat(1000)),
            run_id: Some(1),
            detail: format!(r#"{{"argv":["{}\"\n"]}}"#, "y".repeat(200_000)),
        }
        .bounded();
        assert!(entry.actor.len() <= MAX_NAME_BYTES && entry.source.len() <= MAX_NAME_BYTES);
        assert!(entry.job.as_ref().is_some_and(|job| job.len() <= MAX_NAME_BYTES));
        assert!(entry.message.len() <= MAX_MESSAGE_BYTES);
        assert!(entry.client.len() <= 2 * MAX_HOP_BYTES + 8, "{}", entry.client.len());
        assert!(entry.detail.len() <= MAX_DETAIL_BYTES, "{}", entry.detail.len());
        assert!(entry.detail.starts_with(r#"{"cut_from_bytes":200"#), "{}", &entry.detail[..40]);
    }
}
