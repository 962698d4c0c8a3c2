//! The doctor's judgement, fact by fact.

use serde_json::json;

use super::*;
use crate::doctor::facts::{EchoFacts, IdleFacts, PollFacts};

fn evaluate1(facts: &HopFacts) -> Vec<Check> {
    evaluate(facts, 1)
}

fn healthy(url: &str) -> HopFacts {
    HopFacts {
        url: url.into(),
        reach: Reach::Oneoff { elapsed_ms: 3 },
        websocket: Some(HandshakeFacts {
            path: "/api/v1/probe/ws?count=1".into(),
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
        access: None,
        credentials_sent: false,
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
        refusal: Some(Refusal { path: "/api/v1/probe/ws".into(), status: 426, ..Refusal::default() }),
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
    let checks = evaluate1(&healthy("http://a"));
    let outcomes: Vec<Outcome> = checks.iter().map(|check| check.outcome).collect();
    use Outcome::*;
    assert_eq!(outcomes, vec![Pass, Pass, Pass, Pass, Pass, Skip, Pass]);
}

#[test]
fn the_culprit_is_the_innermost_failing_hop_whose_inner_neighbour_passes() {
    let urls: Vec<String> = ["http://cdn", "http://lb", "http://ingress", "http://pod"].map(String::from).to_vec();
    let facts = [stripped("http://cdn"), stripped("http://lb"), healthy("http://ingress"), healthy("http://pod")];
    let checks: Vec<Vec<Check>> = facts.iter().map(|facts| evaluate(facts, 1)).collect();
    let verdicts = verdicts(&urls, &checks);
    assert_eq!(verdicts.len(), 1, "{verdicts:#?}");
    assert_eq!((verdicts[0].check, verdicts[0].url.as_str(), verdicts[0].hop), ("websocket", "http://lb", 2));
    assert!(verdicts[0].cause.contains("Upgrade: websocket and Connection: upgrade"));
    assert!(verdicts[0].remedy.contains("Classic Load Balancer"));
}

#[test]
fn a_handshake_that_arrived_as_http10_is_named() {
    let mut facts = healthy("http://a");
    facts.websocket = Some(HandshakeFacts {
        status: 426,
        diagnosis_header: Some("websocket-http10".into()),
        body: Some(json!({ "diagnosis": { "missing": ["HTTP/1.1"], "http_version": "HTTP/1.0" } })),
        ..HandshakeFacts::default()
    });
    let checks = evaluate1(&facts);
    assert_eq!((checks[1].outcome, checks[1].summary.as_str()), (Outcome::Fail, "426 HTTP/1.0"));
}

#[test]
fn a_failure_at_the_innermost_hop_blames_it() {
    let urls = vec!["http://pod".to_string()];
    let verdicts = verdicts(&urls, &[evaluate1(&stripped("http://pod"))]);
    assert_eq!(verdicts[0].url, "http://pod");
}

#[test]
fn buffered_and_compressed_event_streams_fail() {
    let mut buffered = healthy("http://a");
    buffered.sse.as_mut().unwrap().arrivals_ms = vec![1210, 1211, 1211, 1212, 1212];
    let checks = evaluate1(&buffered);
    assert_eq!(outcome(&checks, "sse"), Outcome::Fail);
    assert!(checks[3].remedy.as_ref().unwrap().contains("proxy_buffering off"));

    let mut compressed = healthy("http://a");
    compressed.sse.as_mut().unwrap().content_encoding = Some("gzip".into());
    assert!(evaluate1(&compressed)[3].summary.contains("compressed"));
}

#[test]
fn idle_cuts_shorter_than_the_keepalive_fail_and_longer_ones_pass() {
    let probe = |quiet_s, survived| QuietProbe { quiet_s, survived, refused: false, detail: None };
    let mut short = healthy("http://a");
    short.idle = Some(IdleFacts {
        websocket: vec![probe(1, true), probe(3, false)],
        sse: vec![probe(1, true), probe(3, false)],
    });
    let checks = evaluate1(&short);
    assert_eq!(outcome(&checks, "idle"), Outcome::Fail);
    assert!(checks[5].cause.as_ref().unwrap().contains("quiet for 3s are cut"));

    let mut long = healthy("http://a");
    long.idle = Some(IdleFacts {
        websocket: vec![probe(30, true), probe(70, false)],
        sse: vec![probe(30, true), probe(70, false)],
    });
    assert_eq!(outcome(&evaluate1(&long), "idle"), Outcome::Pass, "pings every 20s keep such a stream alive");
}

#[test]
fn unreachable_redirect_and_foreign_servers_skip_the_rest() {
    for reach in [
        Reach::Unreachable { message: "connection refused".into() },
        Reach::Redirect { status: 301, location: "https://a.example/".into() },
        Reach::NotOneoff { status: 200, server: Some("nginx".into()), snippet: "Welcome to nginx!".into() },
        Reach::TlsError { message: "invalid peer certificate".into() },
    ] {
        let facts = HopFacts { url: "http://x".into(), reach, ..HopFacts::default() };
        let checks = evaluate1(&facts);
        assert_eq!(checks[0].outcome, Outcome::Fail);
        assert!(checks[1..].iter().all(|check| check.outcome == Outcome::Skip));
    }
}

#[test]
fn a_foreign_origin_is_named() {
    let mut refused = healthy("http://a");
    refused.origin = Some(HandshakeFacts {
        status: 403,
        diagnosis_header: Some("origin-rejected".into()),
        origin: Some("https://evil.example".into()),
        ..HandshakeFacts::default()
    });
    let checks = evaluate1(&refused);
    assert_eq!(outcome(&checks, "origin"), Outcome::Fail);
    assert!(checks[6].cause.as_ref().unwrap().contains("public_origins"));
}

#[test]
fn a_healthy_hop_without_idle_passes_and_says_idle_was_not_measured() {
    let checks = evaluate1(&healthy("http://a"));
    let idle = &checks[5];
    assert_eq!(idle.outcome, Outcome::Skip);
    assert_eq!(idle.cause.as_deref(), Some("idle timeouts not measured; run with --idle"));
    assert!(unmade(&["http://a".into()], &[checks]).is_empty(), "not asking for --idle is not inconclusive");
}

fn refused_at_probe(status: u16, code: Option<&str>, location: Option<&str>) -> HopFacts {
    HopFacts {
        url: "http://a".into(),
        reach: Reach::Oneoff { elapsed_ms: 1 },
        access: Some(Refusal {
            path: "/api/v1/probe/echo".into(),
            status,
            location: location.map(String::from),
            code: code.map(String::from),
            message: Some("sign in through the SSO proxy".into()),
        }),
        ..HopFacts::default()
    }
}

#[test]
fn a_probe_that_needs_a_sign_in_leaves_every_check_unchecked_never_passed() {
    let urls: Vec<String> = vec!["http://lb".into(), "http://pod".into()];
    for facts in [
        refused_at_probe(401, Some("unauthorized"), None),
        refused_at_probe(302, None, Some("https://sso.example/oauth2/start")),
    ] {
        let checks = vec![evaluate(&facts, 1), evaluate(&facts, 2)];
        for hop in &checks {
            let outcomes: Vec<Outcome> = hop.iter().map(|check| check.outcome).collect();
            use Outcome::*;
            assert_eq!(outcomes, vec![Pass, Unchecked, Unchecked, Unchecked, Unchecked, Skip, Unchecked]);
        }
        assert!(verdicts(&urls, &checks).is_empty(), "nothing failed");
        let unmade = unmade(&urls, &checks);
        assert_eq!(unmade.len(), 2, "{unmade:#?}");
        assert_eq!(unmade[1].checks, vec!["websocket", "headers", "sse", "long-poll", "origin"]);
        assert!(unmade[1].cause.starts_with("sign-in required at hop 2: "), "{}", unmade[1].cause);
        assert!(unmade[1].remedy.starts_with("pass -H or a token"), "{}", unmade[1].remedy);
    }
}

#[test]
fn a_login_redirect_at_the_health_check_is_a_sign_in_and_other_redirects_fail() {
    let login = HopFacts {
        reach: Reach::Redirect { status: 302, location: "https://sso.example.com/oauth2/start".into() },
        ..HopFacts::default()
    };
    let checks = evaluate(&login, 3);
    assert!(checks.iter().filter(|check| check.name != "idle").all(|check| check.outcome == Outcome::Unchecked));
    assert!(checks[0].cause.as_ref().unwrap().starts_with("sign-in required at hop 3: /healthz redirects"));
    let elsewhere = HopFacts {
        reach: Reach::Redirect { status: 301, location: "https://a.example/".into() },
        ..HopFacts::default()
    };
    assert_eq!(evaluate1(&elsewhere)[0].outcome, Outcome::Fail);
}

#[test]
fn a_websocket_refused_for_want_of_identity_is_unchecked_and_a_foreign_origin_still_fails() {
    let mut facts = healthy("http://a");
    let unauthorized = HandshakeFacts {
        status: 401,
        refusal: Some(Refusal { path: "/api/v1/probe/ws".into(), status: 401, ..Refusal::default() }),
        ..HandshakeFacts::default()
    };
    facts.websocket = Some(unauthorized.clone());
    facts.origin = Some(unauthorized);
    let checks = evaluate1(&facts);
    assert_eq!((outcome(&checks, "websocket"), outcome(&checks, "origin")), (Outcome::Unchecked, Outcome::Unchecked));

    let mut forbidden = healthy("http://a");
    forbidden.origin = Some(HandshakeFacts {
        status: 403,
        diagnosis_header: Some("origin-rejected".into()),
        refusal: Some(Refusal { status: 403, code: Some("origin_rejected".into()), ..Refusal::default() }),
        origin: Some("https://evil.example".into()),
        ..HandshakeFacts::default()
    });
    assert_eq!(outcome(&evaluate1(&forbidden), "origin"), Outcome::Fail);
}

#[test]
fn a_missing_probe_endpoint_and_a_busy_server_are_unchecked_with_their_remedy() {
    let old = evaluate1(&refused_at_probe(404, Some("not_found"), None));
    assert_eq!(old[1].outcome, Outcome::Unchecked);
    assert!(old[1].remedy.as_ref().unwrap().contains("upgrade the server"));
    let busy = evaluate1(&refused_at_probe(503, Some("probe_limit"), None));
    assert!(busy[1].cause.as_ref().unwrap().contains("maximum of probe streams"));
}

#[test]
fn a_run_that_does_not_exist_is_named_not_blamed_on_a_proxy() {
    let mut facts = healthy("http://a");
    facts.websocket = Some(HandshakeFacts {
        status: 404,
        refusal: Some(Refusal {
            path: "/api/v1/runs/999/log/ws".into(),
            status: 404,
            code: Some("not_found".into()),
            message: Some("no run 999".into()),
            ..Refusal::default()
        }),
        ..HandshakeFacts::default()
    });
    let checks = evaluate1(&facts);
    assert_eq!((checks[1].outcome, checks[1].summary.as_str()), (Outcome::Fail, "404 not found"));
    assert!(checks[1].remedy.as_ref().unwrap().contains("--run"));
}
