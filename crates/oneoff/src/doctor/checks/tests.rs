//! The doctor's judgement, fact by fact.

use serde_json::json;

use super::*;
use crate::doctor::facts::{EchoFacts, IdleFacts, PollFacts};

fn healthy(url: &str) -> HopFacts {
    HopFacts {
        url: url.into(),
        reach: Reach::Oneoff { elapsed_ms: 3 },
        websocket: Some(HandshakeFacts {
            path: "/debug/echo".into(),
            status: 101,
            upgraded: true,
            ..HandshakeFacts::default()
        }),
        echo_http: Some(EchoFacts { available: true, status: 200, ..EchoFacts::default() }),
        echo_ws: Some(EchoFacts { available: true, status: 101, ..EchoFacts::default() }),
        sse: Some(SseFacts {
            status: 200,
            interval_ms: 300,
            expected_events: 5,
            arrivals_ms: vec![5, 305, 605, 905, 1205],
            ..SseFacts::default()
        }),
        long_poll: Some(PollFacts { ok: true, status: 200, wait_ms: 1500, elapsed_ms: 1502, ..PollFacts::default() }),
        idle: None,
        origin: Some(HandshakeFacts {
            status: 101,
            upgraded: true,
            origin: Some("http://a".into()),
            ..HandshakeFacts::default()
        }),
    }
}

fn stripped(url: &str) -> HopFacts {
    let mut facts = healthy(url);
    facts.websocket = Some(HandshakeFacts {
        status: 426,
        diagnosis_header: Some("websocket-upgrade-stripped".into()),
        body: Some(json!({ "diagnosis": { "missing": ["Upgrade: websocket", "Connection: upgrade"] } })),
        ..HandshakeFacts::default()
    });
    facts.origin = Some(HandshakeFacts { status: 426, ..HandshakeFacts::default() });
    facts
}

fn outcome(checks: &[Check], name: &str) -> Outcome {
    checks.iter().find(|check| check.name == name).unwrap().outcome
}

#[test]
fn a_healthy_hop_passes_everything_it_probed() {
    let checks = evaluate(&healthy("http://a"));
    let outcomes: Vec<Outcome> = checks.iter().map(|check| check.outcome).collect();
    use Outcome::*;
    assert_eq!(outcomes, vec![Pass, Pass, Pass, Pass, Pass, Skip, Pass]);
}

#[test]
fn the_culprit_is_the_innermost_failing_hop_whose_inner_neighbour_passes() {
    let urls: Vec<String> = ["http://cdn", "http://lb", "http://ingress", "http://pod"].map(String::from).to_vec();
    let facts = [stripped("http://cdn"), stripped("http://lb"), healthy("http://ingress"), healthy("http://pod")];
    let checks: Vec<Vec<Check>> = facts.iter().map(evaluate).collect();
    let verdicts = verdicts(&urls, &checks);
    assert_eq!(verdicts.len(), 1, "{verdicts:#?}");
    assert_eq!((verdicts[0].check, verdicts[0].url.as_str(), verdicts[0].hop), ("websocket", "http://lb", 2));
    assert!(verdicts[0].cause.contains("Upgrade: websocket and Connection: upgrade"));
    assert!(verdicts[0].remedy.contains("Classic Load Balancer"));
}

#[test]
fn an_echo_report_of_an_incomplete_handshake_counts_as_stripped() {
    let mut facts = healthy("http://a");
    facts.websocket = Some(HandshakeFacts {
        status: 200,
        body: Some(
            json!({ "http_version": "HTTP/1.0", "websocket": { "looks_like_handshake": true, "complete": false, "missing": ["HTTP/1.1"] } }),
        ),
        ..HandshakeFacts::default()
    });
    let checks = evaluate(&facts);
    assert_eq!((checks[1].outcome, checks[1].summary.as_str()), (Outcome::Fail, "426 HTTP/1.0"));
}

#[test]
fn a_failure_at_the_innermost_hop_blames_it() {
    let urls = vec!["http://pod".to_string()];
    let verdicts = verdicts(&urls, &[evaluate(&stripped("http://pod"))]);
    assert_eq!(verdicts[0].url, "http://pod");
}

#[test]
fn buffered_and_compressed_event_streams_fail() {
    let mut buffered = healthy("http://a");
    buffered.sse.as_mut().unwrap().arrivals_ms = vec![1210, 1211, 1211, 1212, 1212];
    let checks = evaluate(&buffered);
    assert_eq!(outcome(&checks, "sse"), Outcome::Fail);
    assert!(checks[3].remedy.as_ref().unwrap().contains("proxy_buffering off"));

    let mut compressed = healthy("http://a");
    compressed.sse.as_mut().unwrap().content_encoding = Some("gzip".into());
    assert!(evaluate(&compressed)[3].summary.contains("compressed"));
}

#[test]
fn idle_cuts_shorter_than_the_keepalive_fail_and_longer_ones_pass() {
    let probe = |quiet_s, survived| QuietProbe { quiet_s, survived, detail: None };
    let mut short = healthy("http://a");
    short.idle = Some(IdleFacts {
        websocket: vec![probe(1, true), probe(3, false)],
        sse: vec![probe(1, true), probe(3, false)],
    });
    let checks = evaluate(&short);
    assert_eq!(outcome(&checks, "idle"), Outcome::Fail);
    assert!(checks[5].cause.as_ref().unwrap().contains("quiet for 3s are cut"));

    let mut long = healthy("http://a");
    long.idle = Some(IdleFacts {
        websocket: vec![probe(30, true), probe(70, false)],
        sse: vec![probe(30, true), probe(70, false)],
    });
    assert_eq!(outcome(&evaluate(&long), "idle"), Outcome::Pass, "pings every 20s keep such a stream alive");
}

#[test]
fn unreachable_redirect_and_foreign_servers_skip_the_rest() {
    for reach in [
        Reach::Unreachable { message: "connection refused".into() },
        Reach::Redirect { status: 302, location: "https://sso.example/login".into() },
        Reach::NotOneoff { status: 200, server: Some("nginx".into()), snippet: "Welcome to nginx!".into() },
        Reach::TlsError { message: "invalid peer certificate".into() },
    ] {
        let facts = HopFacts { url: "http://x".into(), reach, ..HopFacts::default() };
        let checks = evaluate(&facts);
        assert_eq!(checks[0].outcome, Outcome::Fail);
        assert!(checks[1..].iter().all(|check| check.outcome == Outcome::Skip));
    }
}

#[test]
fn a_foreign_origin_is_named() {
    let mut refused = healthy("http://a");
    refused.origin =
        Some(HandshakeFacts { status: 403, origin: Some("https://evil.example".into()), ..HandshakeFacts::default() });
    let checks = evaluate(&refused);
    assert_eq!(outcome(&checks, "origin"), Outcome::Fail);
    assert!(checks[6].cause.as_ref().unwrap().contains("public_origins"));
}
