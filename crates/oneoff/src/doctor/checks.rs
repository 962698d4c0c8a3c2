//! Judging the facts: one outcome per check per hop, then a verdict that names the hop
//! where each check breaks — the innermost URL where it fails while the next one inward
//! passes, i.e. the proxy listening at that URL — with the usual cause and a remedy there.
//!
//! A check that could not be made (sign-in required, no probe endpoint, a busy server) is
//! `unchecked`, never a pass: the run is then inconclusive, with the reason and the remedy.
//! Pure functions over [`HopFacts`], so every rule is unit-tested without a network.

use serde::Serialize;

use super::facts::{HandshakeFacts, HopFacts, QuietProbe, Reach, Refusal, SseFacts};

/// The verdict's words for `--idle` not given.
pub const IDLE_NOT_MEASURED: &str = "idle timeouts not measured; run with --idle";

/// The server's default keepalive periods (`[streams]`): a proxy must carry longer silences.
pub const WS_PING_S: u64 = 20;
pub const SSE_PING_S: u64 = 15;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Pass,
    Fail,
    /// Not applicable here: not asked for (`--idle`), or moot after another check failed.
    Skip,
    /// Should have been made but could not be: the verdict cannot be green.
    Unchecked,
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

/// Checks that could not be made at one hop for one reason.
#[derive(Debug, Clone, Serialize)]
pub struct Unmade {
    pub url: String,
    /// 1-based position in the chain, outermost first.
    pub hop: usize,
    pub checks: Vec<&'static str>,
    pub cause: String,
    pub remedy: String,
}

pub const CHECK_NAMES: [&str; 7] = ["reach", "websocket", "headers", "sse", "long-poll", "idle", "origin"];

const UPGRADE_REMEDY: &str =
    "an HTTP/1.1 proxy that does not forward upgrades, such as an AWS Classic Load Balancer HTTP \
listener: use a TCP listener, an NLB or an ALB; for nginx add `proxy_http_version 1.1; proxy_set_header Upgrade \
$http_upgrade; proxy_set_header Connection $connection_upgrade;` (with the `map $http_upgrade $connection_upgrade` \
of docs/deployment.md)";

/// What to do when a probe needs an identity.
pub const SIGN_IN_REMEDY: &str = "pass -H or a token: `ONEOFF_TOKEN=oneoff_...` (sent as `Authorization: Bearer`), \
`-H 'Authorization: Bearer oneoff_...'`, or the SSO proxy's session with `-H 'Cookie: ...'`";

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

fn unchecked(
    name: &'static str,
    summary: impl Into<String>,
    cause: impl Into<String>,
    remedy: impl Into<String>,
) -> Check {
    Check {
        name,
        outcome: Outcome::Unchecked,
        summary: summary.into(),
        cause: Some(cause.into()),
        remedy: Some(remedy.into()),
    }
}

/// Every check for one hop (1-based `hop`), in [`CHECK_NAMES`] order.
pub fn evaluate(facts: &HopFacts, hop: usize) -> Vec<Check> {
    let reach = reach(&facts.reach, hop);
    let blocked = match (&reach.outcome, &facts.access) {
        (Outcome::Pass, Some(access)) => Some(refused("reach", access, hop, facts.credentials_sent)),
        (Outcome::Pass, None) => None,
        (_, _) => Some(reach.clone()),
    };
    if let Some(blocked) = blocked {
        let mut checks = vec![reach];
        checks.extend(CHECK_NAMES[1..].iter().map(|name| match blocked.outcome {
            // The rest could not be made for the same reason.
            Outcome::Unchecked if *name != "idle" || facts.idle.is_some() => Check { name, ..blocked.clone() },
            _ => check(name, Outcome::Skip, "-"),
        }));
        return checks;
    }
    vec![
        reach,
        websocket(facts.websocket.as_ref(), hop, facts.credentials_sent),
        headers(facts),
        sse(facts.sse.as_ref(), hop, facts.credentials_sent),
        long_poll(facts, hop),
        idle(facts),
        origin(facts.origin.as_ref(), hop, facts.credentials_sent),
    ]
}

/// A login page's address, by the words SSO proxies and identity providers put in it.
fn looks_like_login(location: &str) -> bool {
    let lower = location.to_ascii_lowercase();
    ["login", "signin", "sign_in", "sign-in", "oauth", "auth", "sso", "saml", "openid", "cas/"]
        .iter()
        .any(|word| lower.contains(word))
}

/// The check a refused probe amounts to: unchecked, with why and what to do.
pub fn refused(name: &'static str, refusal: &Refusal, hop: usize, credentials_sent: bool) -> Check {
    let path = &refusal.path;
    let status = refusal.status;
    let said = refusal.message.as_ref().map(|message| format!(": {message}")).unwrap_or_default();
    let sent = if credentials_sent {
        " (the credentials the doctor sent were refused, or a hop in front dropped them)"
    } else {
        " (the doctor sent no credentials)"
    };
    match (status, refusal.code.as_deref()) {
        (401, _) => unchecked(
            name,
            "sign-in",
            format!("sign-in required at hop {hop}: {path} answered 401{said}{sent}"),
            SIGN_IN_REMEDY,
        ),
        (300..=399, _) => unchecked(
            name,
            "sign-in",
            format!(
                "sign-in required at hop {hop}: {path} redirects ({status}) to {}, a login page{sent}",
                refusal.location.as_deref().unwrap_or("(no Location)")
            ),
            SIGN_IN_REMEDY,
        ),
        (403, Some("forbidden")) => unchecked(
            name,
            "no access",
            format!("no access at hop {hop}: {path} answered 403{said}; the probes need what viewing a log needs"),
            "probe with the identity of someone who may view a job (allow_view) or an administrator: pass -H or a token",
        ),
        (404, _) => unchecked(
            name,
            "no probe",
            format!("no probe endpoint at hop {hop}: {path} answered 404{said}"),
            concat!(
                "upgrade the server to oneoff ",
                env!("CARGO_PKG_VERSION"),
                " or later (it serves /api/v1/probe/ always), or route /api/v1/ to oneoff at this hop"
            ),
        ),
        (503, Some("probe_limit")) => unchecked(
            name,
            "busy",
            format!("the server at hop {hop} is serving its maximum of probe streams{said}"),
            "run the doctor again when other doctors are done",
        ),
        _ => unchecked(
            name,
            format!("{status} from probe"),
            format!("the probe could not be made at hop {hop}: {path} answered {status}{said}"),
            "see the answer with `oneoff doctor --json` and the server's log",
        ),
    }
}

/// A refusal that means the check could not be made (an identity, the server's limit),
/// as opposed to a hop breaking the transport.
fn is_access_refusal(refusal: &Refusal) -> bool {
    matches!(refusal.status, 401 | 300..=399)
        || matches!((refusal.status, refusal.code.as_deref()), (403, Some("forbidden")) | (503, Some("probe_limit")))
}

fn reach(reach: &Reach, hop: usize) -> Check {
    match reach {
        Reach::Oneoff { elapsed_ms } => check("reach", Outcome::Pass, format!("{elapsed_ms}ms")),
        Reach::Redirect { status, location } if looks_like_login(location) => unchecked(
            "reach",
            "sign-in",
            format!("sign-in required at hop {hop}: /healthz redirects ({status}) to {location}, a login page: an SSO proxy without a session"),
            format!("{SIGN_IN_REMEDY}; or probe the hop behind the SSO proxy"),
        ),
        Reach::Redirect { status, location } => fail(
            "reach",
            format!("{status} redirect"),
            format!("redirects to {location} instead of answering /healthz"),
            "give the doctor the URL it redirects to (e.g. https://), or send the session or token with -H",
        ),
        Reach::Unauthorized { status, snippet } => unchecked(
            "reach",
            "sign-in",
            format!("sign-in required at hop {hop}: /healthz answered {status} {snippet:?}"),
            SIGN_IN_REMEDY,
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

fn websocket(handshake: Option<&HandshakeFacts>, hop: usize, credentials_sent: bool) -> Check {
    let Some(handshake) = handshake else {
        return unchecked("websocket", "not probed", "the WebSocket handshake was not tried", "run the doctor again");
    };
    if let Some(refusal) = handshake.refusal.as_ref().filter(|refusal| is_access_refusal(refusal)) {
        return refused("websocket", refusal, hop, credentials_sent);
    }
    if handshake.upgraded {
        return check("websocket", Outcome::Pass, format!("101 {}ms", handshake.elapsed_ms));
    }
    if let Some(refusal) = handshake.refusal.as_ref().filter(|refusal| refusal.code.as_deref() == Some("not_found")) {
        return fail(
            "websocket",
            "404 not found",
            format!("oneoff answered {} with 404: {}", refusal.path, refusal.message.clone().unwrap_or_default()),
            "pass --run with a run that exists, or leave --run out to use /api/v1/probe/ws",
        );
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
    let missing: Vec<&str> =
        body["diagnosis"]["missing"].as_array().into_iter().flatten().filter_map(|value| value.as_str()).collect();
    match handshake.diagnosis_header.as_deref() {
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
        let why: Vec<String> =
            [&facts.echo_http, &facts.echo_ws].into_iter().flatten().filter_map(|echo| echo.error.clone()).collect();
        return unchecked(
            "headers",
            "no facts",
            format!("the probe facts (/api/v1/probe/echo) did not arrive: {}", why.join("; ")),
            "check that this URL routes /api/v1/ to oneoff",
        );
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

fn sse(facts: Option<&SseFacts>, hop: usize, credentials_sent: bool) -> Check {
    let Some(facts) = facts else {
        return unchecked("sse", "not probed", "the event stream was not tried", "run the doctor again");
    };
    if let Some(refusal) = facts.refusal.as_ref().filter(|refusal| is_access_refusal(refusal)) {
        return refused("sse", refusal, hop, credentials_sent);
    }
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

fn long_poll(facts: &HopFacts, hop: usize) -> Check {
    let Some(poll) = &facts.long_poll else {
        return unchecked("long-poll", "not probed", "the long-poll was not tried", "run the doctor again");
    };
    if let Some(refusal) = poll.refusal.as_ref().filter(|refusal| is_access_refusal(refusal)) {
        return refused("long-poll", refusal, hop, facts.credentials_sent);
    }
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
    let Some(idle) = &facts.idle else {
        return Check { cause: Some(IDLE_NOT_MEASURED.into()), ..check("idle", Outcome::Skip, "not measured") };
    };
    let measured = |probes: &[QuietProbe]| probes.iter().any(|probe| !probe.refused);
    if !measured(&idle.websocket) || !measured(&idle.sse) {
        let why = idle.websocket.iter().chain(&idle.sse).find_map(|probe| probe.detail.clone()).unwrap_or_default();
        return unchecked(
            "idle",
            "refused",
            format!("the quiet streams were refused: {why}"),
            "run the doctor again with --idle when the server has room for its probe streams",
        );
    }
    let judge = |probes: &[QuietProbe], keepalive_s: u64| {
        let probes: Vec<&QuietProbe> = probes.iter().filter(|probe| !probe.refused).collect();
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

fn origin(handshake: Option<&HandshakeFacts>, hop: usize, credentials_sent: bool) -> Check {
    let Some(handshake) = handshake else {
        return unchecked("origin", "not probed", "the handshake with an Origin was not tried", "run the doctor again");
    };
    let origin = handshake.origin.clone().unwrap_or_default();
    if handshake.upgraded {
        return check("origin", Outcome::Pass, "accepted");
    }
    if let Some(refusal) = handshake.refusal.as_ref().filter(|refusal| is_access_refusal(refusal)) {
        return refused("origin", refusal, hop, credentials_sent);
    }
    if handshake.status == 403 && handshake.diagnosis_header.as_deref() == Some("origin-rejected") {
        return fail(
            "origin",
            "403 refused",
            format!(
                "oneoff refuses browser streams from {origin}: it is not in [server] public_origins, or (without \
                 that list) not the host the request reached oneoff with, because a proxy rewrote the Host header"
            ),
            format!(
                "add \"{origin}\" to public_origins if users open oneoff there, or keep the Host at the proxy \
                 (nginx: `proxy_set_header Host $host;`), or pass --origin with the URL they use"
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
            let inner_unknown = checks
                .get(hop + 1)
                .is_some_and(|inner| matches!(inner[position].outcome, Outcome::Skip | Outcome::Unchecked));
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

/// The checks that could not be made, grouped by hop and reason.
pub fn unmade(urls: &[String], checks: &[Vec<Check>]) -> Vec<Unmade> {
    let mut unmade: Vec<Unmade> = Vec::new();
    for (index, hop) in checks.iter().enumerate() {
        for check in hop.iter().filter(|check| check.outcome == Outcome::Unchecked) {
            let cause = check.cause.clone().unwrap_or_default();
            let remedy = check.remedy.clone().unwrap_or_default();
            match unmade.iter_mut().find(|known| known.hop == index + 1 && known.cause == cause) {
                Some(known) => known.checks.push(check.name),
                None => unmade.push(Unmade {
                    url: urls[index].clone(),
                    hop: index + 1,
                    checks: vec![check.name],
                    cause,
                    remedy,
                }),
            }
        }
    }
    unmade
}

#[cfg(test)]
mod tests;
