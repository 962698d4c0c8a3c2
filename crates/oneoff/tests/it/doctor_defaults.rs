//! The always-on probe surface (`/api/v1/probe/`) and `oneoff doctor` with
//! `anonymous = false`: the probes follow the log endpoints' auth, never echo a credential
//! or identity assertion, are bounded, and the doctor signs in with `ONEOFF_TOKEN` or `-H`:
//! a clean chain passes with every check made, a stripping hop is named, and a server that
//! answers 401 is "sign-in required at hop N", inconclusive (exit 3), never a pass.

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::Value;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::doctor::{all_made_and_passed, doctor_with, outcomes, verdict, verdicts};
use crate::proxy::{nginx, DROPS_UPGRADES, FORWARDS_UPGRADES};
use crate::support::{cli_command, eventually, stderr, stdout, TestServer};

/// No anonymous access; alice may view `report`, mallory may view nothing. Identity headers
/// are configured but trusted from nobody here, so they are just text.
const SIGNED_IN: &str = r#"
[auth]
anonymous = false
[auth.trusted_headers]
trusted_cidrs = ["127.0.0.2/32"]

[[job]]
name = "report"
command = ["echo", "report"]
allow_run = { users = ["alice"] }
allow_view = { users = ["alice"] }
"#;

/// A token for `user`, made on the server's host from its config file.
async fn token(server: &TestServer, user: &str) -> String {
    let config = server.dir.path().join("oneoff.toml");
    let command =
        cli_command(&["token", "create", "--config", config.to_str().unwrap(), "--name", "doctor", "--user", user]);
    let output = tokio::process::Command::from(command).output().await.unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    stdout(&output).trim().to_string()
}

async fn get(url: &str, bearer: Option<&str>) -> (StatusCode, String) {
    let mut request = reqwest::Client::new().get(url);
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.text().await.unwrap())
}

/// The probe WebSocket's first message, or the refusal's status.
async fn ws_facts(url: &str, headers: &[(&str, &str)]) -> Result<Value, u16> {
    let mut request = url.replacen("http://", "ws://", 1).into_client_request().unwrap();
    for (name, value) in headers {
        request
            .headers_mut()
            .insert(reqwest::header::HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
    }
    let mut socket = match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => socket,
        Err(WsError::Http(response)) => return Err(response.status().as_u16()),
        Err(other) => panic!("probe WebSocket failed: {other}"),
    };
    match socket.next().await {
        Some(Ok(Message::Text(text))) => Ok(serde_json::from_str(&text).unwrap()),
        other => panic!("no facts over the probe WebSocket: {other:?}"),
    }
}

#[tokio::test]
async fn the_probes_follow_the_log_endpoints_auth() {
    let server = TestServer::start(SIGNED_IN).await;
    let alice = token(&server, "alice").await;
    let mallory = token(&server, "mallory").await;
    let paths = ["/api/v1/probe/echo", "/api/v1/probe/sse?count=1", "/api/v1/probe/poll?wait_ms=0"];
    for path in paths {
        let url = format!("{}{path}", server.url);
        assert_eq!(get(&url, None).await.0, StatusCode::UNAUTHORIZED, "{path} without an identity");
        let (status, body) = get(&url, Some(&mallory)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path} for someone who may view no job: {body}");
        assert!(body.contains("may not view any job"), "{body}");
        assert_eq!(get(&url, Some(&alice)).await.0, StatusCode::OK, "{path} for a viewer");
    }
    let ws = format!("{}/api/v1/probe/ws?count=1", server.url);
    assert_eq!(ws_facts(&ws, &[]).await, Err(401));
    assert_eq!(ws_facts(&ws, &[("authorization", &format!("Bearer {mallory}"))]).await, Err(403));
    let facts = ws_facts(&ws, &[("authorization", &format!("Bearer {alice}"))]).await.unwrap();
    assert_eq!(facts["websocket"]["complete"], true, "{facts}");
}

#[tokio::test]
async fn probe_facts_never_echo_a_credential_or_identity_assertion() {
    let server = TestServer::start(SIGNED_IN).await;
    let alice = token(&server, "alice").await;
    let proxy = nginx(&server.url, FORWARDS_UPGRADES).await;
    let bearer = format!("Bearer {alice}");
    let secrets: Vec<(&str, String)> = vec![
        ("authorization", bearer.clone()),
        ("cookie", "_oauth2_proxy=SECRET-cookie".into()),
        ("proxy-authorization", "Basic SECRET-proxy".into()),
        ("x-amzn-oidc-data", "SECRET-alb-data".into()),
        ("x-amzn-oidc-accesstoken", "SECRET-alb-access".into()),
        ("x-amzn-oidc-identity", "SECRET-alb-identity".into()),
        ("cf-access-jwt-assertion", "SECRET-cloudflare".into()),
        ("x-pomerium-jwt-assertion", "SECRET-pomerium".into()),
        ("x-jwt-assertion", "SECRET-generic".into()),
        ("x-forwarded-user", "SECRET-user".into()),
        ("x-forwarded-email", "SECRET-email".into()),
        ("x-forwarded-groups", "SECRET-groups".into()),
        ("x-api-key", "SECRET-api-key".into()),
    ];
    let mut headers: Vec<(&str, &str)> = secrets.iter().map(|(name, value)| (*name, value.as_str())).collect();
    headers.push(("x-forwarded-for", "203.0.113.7"));

    let mut request = reqwest::Client::new().get(format!("{}/api/v1/probe/echo", proxy.url));
    for (name, value) in &headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.text().await.unwrap();
    let over_ws = ws_facts(&format!("{}/api/v1/probe/ws?count=1", proxy.url), &headers).await.unwrap();
    for (text, transport) in [(body.clone(), "HTTP"), (over_ws.to_string(), "WebSocket")] {
        assert!(
            !text.contains("SECRET") && !text.contains(&alice),
            "a secret value was echoed over {transport}: {text}"
        );
        let facts: Value = serde_json::from_str(&text).unwrap();
        let names: Vec<&str> =
            facts["header_names"].as_array().unwrap().iter().map(|name| name.as_str().unwrap()).collect();
        for (name, _) in &secrets {
            assert!(names.contains(name), "{name} is reported present over {transport}: {names:?}");
        }
        let hop = |name: &str| {
            facts["hop_headers"].as_array().unwrap().iter().find(|pair| pair[0] == name).map(|pair| pair[1].clone())
        };
        assert_eq!(hop("via"), Some(Value::from("1.1 test-nginx")), "{facts}");
        assert!(hop("x-forwarded-for").unwrap().as_str().unwrap().starts_with("203.0.113.7, 127.0.0.1"), "{facts}");
    }
    let facts: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (&facts["path"], &facts["http_version"], &facts["upgrade"]),
        (&Value::from("/api/v1/probe/echo"), &Value::from("HTTP/1.1"), &Value::Null),
        "{facts}"
    );
    assert_eq!(over_ws["upgrade"], "websocket", "{over_ws}");
}

#[tokio::test]
async fn probe_streams_are_bounded_and_their_places_come_back() {
    let server = TestServer::start("").await;
    let client = reqwest::Client::new();
    let quiet = format!("{}/api/v1/probe/sse?count=1&quiet_ms=300000", server.url);
    let mut held = Vec::new();
    // The server's bound (`MAX_PROBE_STREAMS`): each stream answers at once, then stays quiet.
    for _ in 0..64 {
        let response = client.get(&quiet).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        held.push(response);
    }
    for path in ["/api/v1/probe/sse?count=1", "/api/v1/probe/poll?wait_ms=0"] {
        let (status, body) = get(&format!("{}{path}", server.url), None).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}: {body}");
        assert!(body.contains("probe_limit"), "{body}");
    }
    assert_eq!(ws_facts(&format!("{}/api/v1/probe/ws", server.url), &[]).await, Err(503));
    // The facts cost nothing to keep and are never refused for it.
    assert_eq!(get(&format!("{}/api/v1/probe/echo", server.url), None).await.0, StatusCode::OK);
    drop(held);
    let url = format!("{}/api/v1/probe/poll?wait_ms=0", server.url);
    eventually("a closed probe stream gives its place back", Duration::from_secs(10), || async {
        (get(&url, None).await.0 == StatusCode::OK).then_some(())
    })
    .await;
}

#[tokio::test]
async fn with_a_token_a_clean_chain_passes_and_a_stripping_hop_is_named() {
    let server = TestServer::start(SIGNED_IN).await;
    let alice = token(&server, "alice").await;
    let clean = nginx(&server.url, FORWARDS_UPGRADES).await;
    let (code, report, _) = doctor_with(&[&clean.url, &server.url], Some(&alice)).await;
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(outcomes(&report), vec![all_made_and_passed(); 2], "{report:#}");

    // The same with -H instead of ONEOFF_TOKEN, through a chain whose inner hop strips upgrades.
    let inner = nginx(&server.url, DROPS_UPGRADES).await;
    let outer = nginx(&inner.url, FORWARDS_UPGRADES).await;
    let header = format!("Authorization: Bearer {alice}");
    let (code, report, _) = doctor_with(&["-H", &header, &outer.url, &inner.url, &server.url], None).await;
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(verdicts(&report), vec![("websocket".to_string(), 2)], "{report:#}");
    assert_eq!(verdict(&report, "websocket")["url"], inner.url.as_str());
    assert_eq!(report["unchecked"], serde_json::json!([]), "every other check was made: {report:#}");
}

#[tokio::test]
async fn a_server_that_answers_401_is_sign_in_required_at_each_hop_never_a_pass() {
    let server = TestServer::start(SIGNED_IN).await;
    let proxy = nginx(&server.url, FORWARDS_UPGRADES).await;
    for token in [None, Some("oneoff_not-a-real-token")] {
        let (code, report, _) = doctor_with(&[&proxy.url, &server.url], token).await;
        assert_eq!(code, Some(3), "inconclusive: {report:#}");
        assert_eq!((&report["ok"], &report["outcome"]), (&Value::from(false), &Value::from("inconclusive")));
        let unchecked = report["unchecked"].as_array().unwrap();
        assert_eq!(unchecked.len(), 2, "{report:#}");
        for (index, hop) in unchecked.iter().enumerate() {
            let cause = hop["cause"].as_str().unwrap();
            assert!(cause.starts_with(&format!("sign-in required at hop {}: ", index + 1)), "{cause}");
            assert!(cause.contains("answered 401"), "{cause}");
            assert_eq!(hop["checks"], serde_json::json!(["websocket", "headers", "sse", "long-poll", "origin"]));
        }
        if token.is_some() {
            assert!(
                unchecked[1]["cause"].as_str().unwrap().contains("credentials the doctor sent were refused"),
                "{report:#}"
            );
        }
    }
    let mut command = cli_command(&["doctor", &proxy.url, &server.url]);
    command.env_remove("ONEOFF_TOKEN").env("HOME", "/nonexistent");
    let output = tokio::process::Command::from(command).output().await.unwrap();
    assert_eq!(output.status.code(), Some(3));
    let table = stdout(&output);
    assert!(table.contains("verdict: inconclusive: 10 checks could not be made"), "{table}");
    assert!(table.contains("sign-in required at hop 2"), "{table}");
    assert!(table.contains("fix: pass -H or a token"), "{table}");
    assert!(!table.contains("every check passes"), "{table}");
}
