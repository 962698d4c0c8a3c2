//! Judging the facts: one outcome per check per hop, then a verdict that names the hop
//! where each check breaks — the innermost URL where it fails while the next one inward
//! passes, i.e. the proxy listening at that URL — with the usual cause and a remedy there.
//! Pure functions over [`HopFacts`], so every rule is unit-tested without a network.

use serde::Serialize;

use super::facts::{HandshakeFacts, HopFacts, QuietProbe, Reach, SseFacts};

/// The server's default keepalive periods (`[streams]`): a proxy must carry longer silences.
pub const WS_PING_S: u64 = 20;
pub const SSE_PING_S: u64 = 15;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Pass,
    Fail,
    Skip,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub outcome: Outcome,
    /// A few words for the table cell.
    pub summary: String,
    pub cause: Option<String>,
    pub remedy: Option<String>,
}

/// The hop where a check breaks.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub check: &'static str,
    pub url: String,
    /// 1-based position in the chain, outermost first.
    pub hop: usize,
    pub cause: String,
    pub remedy: String,
}

pub const CHECK_NAMES: [&str; 7] = ["reach", "websocket", "headers", "sse", "long-poll", "idle", "origin"];

const UPGRADE_REMEDY: &str =
    "an HTTP/1.1 proxy that does not forward upgrades, such as an AWS Classic Load Balancer HTTP \
listener: use a TCP listener, an NLB or an ALB; for nginx add `proxy_http_version 1.1; proxy_set_header Upgrade \
$http_upgrade; proxy_set_header Connection $connection_upgrade;`";

fn check(name: &'static str, outcome: Outcome, summary: impl Into<String>) -> Check {
    Check { name, outcome, summary: summary.into(), cause: None, remedy: None }
}

fn fail(name: &'static str, summary: impl Into<String>, cause: impl Into<String>, remedy: impl Into<String>) -> Check {
    Check {
        name,
        outcome: Outcome::Fail,
        summary: summary.into(),
        cause: Some(cause.into()),
        remedy: Some(remedy.into()),
    }
}

/// Every check for one hop, in [`CHECK_NAMES`] order.
pub fn evaluate(facts: &HopFacts) -> Vec<Check> {
    let reach = reach(&facts.reach);
    if reach.outcome != Outcome::Pass {
        let mut checks = vec![reach];
        checks.extend(CHECK_NAMES[1..].iter().map(|name| check(name, Outcome::Skip, "-")));
        return checks;
    }
    vec![
        reach,
        websocket(facts.websocket.as_ref()),
        headers(facts),
        sse(facts.sse.as_ref()),
        long_poll(facts),
        idle(facts),
        origin(facts.origin.as_ref()),
    ]
}

fn reach(reach: &Reach) -> Check {
    match reach {
        Reach::Oneoff { elapsed_ms } => check("reach", Outcome::Pass, format!("{elapsed_ms}ms")),
        Reach::Redirect { status, location } => fail(
            "reach",
            format!("{status} redirect"),
            format!("redirects to {location}: an SSO proxy without a session, or a login page"),
            "send the session or token with -H 'Cookie: ...' or -H 'Authorization: Bearer ...', or probe the hop behind the SSO proxy",
        ),
        Reach::NotOneoff { status, server, snippet } => fail(
            "reach",
            format!("{status} not oneoff"),
            format!(
                "answered {status}{} with {snippet:?}, not oneoff's health check",
                server.as_ref().map(|server| format!(" (server: {server})")).unwrap_or_default()
            ),
            "check that this URL routes to oneoff (host, path prefix, port)",
        ),
        Reach::TlsError { message } => fail(
            "reach",
            "TLS error",
            message.clone(),
            "check the certificate (issuer, name, expiry) and that the port speaks TLS; use http:// for a plain port",
        ),
        Reach::Unreachable { message } => {
            fail("reach", "unreachable", message.clone(), "check the host, the port, firewalls and that the service is up")
        }
        Reach::NotProbed => check("reach", Outcome::Skip, "-"),
    }
}

fn websocket(handshake: Option<&HandshakeFacts>) -> Check {
    let Some(handshake) = handshake else {
        return Check {
            cause: Some(
                "no WebSocket endpoint to probe: enable `[debug] echo = true` on the server or pass --run RUN".into(),
            ),
            ..check("websocket", Outcome::Skip, "no endpoint")
        };
    };
    if handshake.upgraded {
        return check("websocket", Outcome::Pass, format!("101 {}ms", handshake.elapsed_ms));
    }
    if let Some(error) = &handshake.error {
        return fail(
            "websocket",
            "no answer",
            error.clone(),
            "check that WebSocket connections can reach this URL at all",
        );
    }
    let body = handshake.body.clone().unwrap_or_default();
    // `/debug/echo` answers an incomplete handshake with its report instead of a 426.
    let echoed = body["websocket"]["looks_like_handshake"] == true;
    let missing = if echoed { &body["websocket"]["missing"] } else { &body["diagnosis"]["missing"] };
    let missing: Vec<&str> = missing.as_array().into_iter().flatten().filter_map(|value| value.as_str()).collect();
    let diagnosis = match (echoed, body["http_version"].as_str()) {
        (true, Some("HTTP/1.0")) => Some("websocket-http10"),
        (true, _) => Some("websocket-upgrade-stripped"),
        (false, _) => handshake.diagnosis_header.as_deref(),
    };
    match diagnosis {
        Some("websocket-upgrade-stripped") => fail(
            "websocket",
            "426 stripped",
            format!(
                "a proxy does not forward WebSocket upgrades: oneoff received the handshake without {}",
                missing.join(" and ")
            ),
            UPGRADE_REMEDY,
        ),
        Some("websocket-http10") => fail(
            "websocket",
            "426 HTTP/1.0",
            "a proxy speaks HTTP/1.0 to the next hop, which cannot carry an upgrade",
            "for nginx set `proxy_http_version 1.1;` and forward Upgrade and Connection; otherwise: ".to_string()
                + UPGRADE_REMEDY,
        ),
        Some(other) => fail(
            "websocket",
            format!("{} {other}", handshake.status),
            format!("oneoff refused the handshake ({other})"),
            "see the response body: `oneoff doctor --json`",
        ),
        None => fail(
            "websocket",
            format!("{} from proxy", handshake.status),
            format!(
                "the handshake was answered {} by something other than oneoff (no diagnosis header)",
                handshake.status
            ),
            "check that this hop routes WebSocket requests to oneoff; ".to_string() + UPGRADE_REMEDY,
        ),
    }
}

fn headers(facts: &HopFacts) -> Check {
    let echoes: Vec<_> =
        [&facts.echo_http, &facts.echo_ws].into_iter().flatten().filter(|echo| echo.available).collect();
    if echoes.is_empty() {
        return Check {
            cause: Some("needs `[debug] echo = true` on the server".into()),
            ..check("headers", Outcome::Skip, "no echo")
        };
    }
    let mut lost: Vec<String> = echoes.iter().flat_map(|echo| echo.lost.iter().cloned()).collect();
    lost.sort();
    lost.dedup();
    if lost.is_empty() {
        return check("headers", Outcome::Pass, "all arrived");
    }
    fail(
        "headers",
        format!("lost {}", lost.join(",")),
        format!("request headers the doctor sent did not reach oneoff: {}", lost.join(", ")),
        "configure this hop to forward those headers (nginx: proxy_set_header; SSO proxies: pass-through settings)",
    )
}

fn sse(facts: Option<&SseFacts>) -> Check {
    let Some(facts) = facts else { return check("sse", Outcome::Skip, "no echo") };
    if let Some(encoding) = &facts.content_encoding {
        return fail(
            "sse",
            format!("compressed ({encoding})"),
            format!("the event stream arrives compressed (Content-Encoding: {encoding}); compressors hold events until a block fills"),
            "exclude text/event-stream from compression at this hop (nginx gzip_types, CDN compression rules)",
        );
    }
    let Some(&first) = facts.arrivals_ms.first() else {
        let why = facts.error.clone().unwrap_or_else(|| format!("status {}", facts.status));
        return fail(
            "sse",
            "no events",
            format!("no event arrived: {why}"),
            "check that this hop passes text/event-stream responses",
        );
    };
    let late_ms = 2 * facts.interval_ms + 500;
    let gaps: Vec<u64> = facts.arrivals_ms.windows(2).map(|pair| pair[1] - pair[0]).collect();
    let bunched = facts.arrivals_ms.len() > 1 && gaps.iter().all(|gap| *gap < facts.interval_ms / 3);
    if first > late_ms || bunched {
        return fail(
            "sse",
            format!("buffered ({first}ms)"),
            format!(
                "a proxy buffers the response: the first event arrived after {first}ms (sent at once) and events came together instead of every {}ms",
                facts.interval_ms
            ),
            "turn response buffering off for event streams: nginx `proxy_buffering off;` (oneoff sends X-Accel-Buffering: no, unless proxy_ignore_headers drops it); on a CDN, disable buffering for text/event-stream",
        );
    }
    if facts.arrivals_ms.len() < facts.expected_events {
        return fail(
            "sse",
            format!("{}/{} events", facts.arrivals_ms.len(), facts.expected_events),
            format!("the stream was cut: {}", facts.error.clone().unwrap_or_default()),
            "check timeouts and connection limits at this hop",
        );
    }
    check("sse", Outcome::Pass, format!("first {first}ms"))
}

fn long_poll(facts: &HopFacts) -> Check {
    let Some(poll) = &facts.long_poll else { return check("long-poll", Outcome::Skip, "no endpoint") };
    if poll.ok {
        return check("long-poll", Outcome::Pass, format!("{}ms", poll.elapsed_ms));
    }
    let why = poll.error.clone().unwrap_or_else(|| format!("answered {}", poll.status));
    fail(
        "long-poll",
        "failed",
        format!("a request held {}ms by the server did not come back: {why}", poll.wait_ms),
        "check this hop's request timeouts (they must exceed the long-poll wait, 30 s by default)",
    )
}

fn idle(facts: &HopFacts) -> Check {
    let Some(idle) = &facts.idle else { return check("idle", Outcome::Skip, "not probed") };
    let judge = |probes: &[QuietProbe], keepalive_s: u64| {
        let survived = probes.iter().filter(|probe| probe.survived).map(|probe| probe.quiet_s).max();
        let cut = probes.iter().filter(|probe| !probe.survived).map(|probe| probe.quiet_s).min();
        (survived, cut, cut.is_some_and(|cut| cut <= keepalive_s))
    };
    let (ws_survived, ws_cut, ws_broken) = judge(&idle.websocket, WS_PING_S);
    let (sse_survived, sse_cut, sse_broken) = judge(&idle.sse, SSE_PING_S);
    let show = |survived: Option<u64>, cut: Option<u64>| match (survived, cut) {
        (_, Some(cut)) => format!("cut {cut}s"),
        (Some(survived), None) => format!("{survived}s ok"),
        (None, None) => "-".into(),
    };
    let summary = format!("ws {} sse {}", show(ws_survived, ws_cut), show(sse_survived, sse_cut));
    if !(ws_broken || sse_broken) {
        return check("idle", Outcome::Pass, summary);
    }
    let cut = ws_cut.into_iter().chain(sse_cut).min().unwrap_or(0);
    let survived = ws_survived.into_iter().chain(sse_survived).max().unwrap_or(0);
    fail(
        "idle",
        summary,
        format!(
            "connections quiet for {cut}s are cut (the longest quiet period that survived: {survived}s), shorter than oneoff's keepalives (WebSocket ping every {WS_PING_S}s, SSE every {SSE_PING_S}s)"
        ),
        format!(
            "raise this hop's idle timeout above {WS_PING_S}s (nginx proxy_read_timeout, load balancer idle timeout), or set [streams] ws_ping_interval and sse_ping_interval below {survived}s"
        ),
    )
}

fn origin(handshake: Option<&HandshakeFacts>) -> Check {
    let Some(handshake) = handshake else { return check("origin", Outcome::Skip, "-") };
    let origin = handshake.origin.clone().unwrap_or_default();
    if handshake.upgraded {
        return check("origin", Outcome::Pass, "accepted");
    }
    if handshake.status == 403 {
        return fail(
            "origin",
            "403 refused",
            format!("oneoff refuses browser streams from {origin}: it is not in [server] public_origins"),
            format!(
                "add \"{origin}\" to public_origins if users open oneoff there, or pass --origin with the URL they use"
            ),
        );
    }
    // Any other refusal is the WebSocket check's finding, not an Origin problem.
    check("origin", Outcome::Skip, "see websocket")
}

/// For each check, the hops where it breaks: failing there, passing at the next hop inward
/// (or the innermost hop itself).
pub fn verdicts(urls: &[String], checks: &[Vec<Check>]) -> Vec<Verdict> {
    let mut verdicts = Vec::new();
    for (position, name) in CHECK_NAMES.iter().enumerate() {
        for hop in 0..checks.len() {
            let here = &checks[hop][position];
            if here.outcome != Outcome::Fail {
                continue;
            }
            let inner_passes = checks.get(hop + 1).is_none_or(|inner| inner[position].outcome == Outcome::Pass);
            let inner_unknown = checks.get(hop + 1).is_some_and(|inner| inner[position].outcome == Outcome::Skip);
            if inner_passes || inner_unknown {
                let mut cause = here.cause.clone().unwrap_or_default();
                if inner_unknown {
                    cause.push_str(" (the next hop inward could not be checked, so the culprit may be further in)");
                }
                verdicts.push(Verdict {
                    check: name,
                    url: urls[hop].clone(),
                    hop: hop + 1,
                    cause,
                    remedy: here.remedy.clone().unwrap_or_default(),
                });
            }
        }
    }
    verdicts
}

#[cfg(test)]
mod tests;
