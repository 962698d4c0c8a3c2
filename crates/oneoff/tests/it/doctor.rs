//! `oneoff doctor` against the real server at its defaults (no `[debug]` table) behind real
//! nginx hops: it names the hop that breaks each check, passes a clean chain only when every
//! check was made, and explains unreachable, TLS, foreign and login-redirect URLs without
//! panicking. `doctor_defaults.rs` does the same with `anonymous = false` and a token.

use serde_json::Value;

use crate::proxy::{free_port, nginx, nginx_server, DROPS_UPGRADES, FORWARDS_UPGRADES};
use crate::support::{stderr, stdout, TestServer};

pub async fn doctor(args: &[&str]) -> (Option<i32>, Value, String) {
    doctor_with(args, None).await
}

/// The doctor's JSON report, with `ONEOFF_TOKEN` set when `token` is given.
pub async fn doctor_with(args: &[&str], token: Option<&str>) -> (Option<i32>, Value, String) {
    let mut command = crate::support::cli_command(&["doctor", "--json"]);
    command.args(args).env_remove("ONEOFF_TOKEN").env("HOME", "/nonexistent");
    if let Some(token) = token {
        command.env("ONEOFF_TOKEN", token);
    }
    let output = tokio::process::Command::from(command).output().await.unwrap();
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("doctor printed no JSON: {}\n{}", stdout(&output), stderr(&output)));
    (output.status.code(), report, stderr(&output))
}

/// The verdicts as (check, hop) pairs.
pub fn verdicts(report: &Value) -> Vec<(String, u64)> {
    report["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|verdict| (verdict["check"].as_str().unwrap().to_string(), verdict["hop"].as_u64().unwrap()))
        .collect()
}

pub fn verdict<'a>(report: &'a Value, check: &str) -> &'a Value {
    report["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|verdict| verdict["check"] == check)
        .expect("a verdict for the check")
}

/// Each check's outcome at each hop, `idle` left out unless asked for.
pub fn outcomes(report: &Value) -> Vec<Vec<(String, String)>> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|hop| {
            hop.as_array()
                .unwrap()
                .iter()
                .map(|check| {
                    (check["name"].as_str().unwrap().to_string(), check["outcome"].as_str().unwrap().to_string())
                })
                .collect()
        })
        .collect()
}

/// Every check made and passed, idle deliberately not measured.
pub fn all_made_and_passed() -> Vec<(String, String)> {
    ["reach", "websocket", "headers", "sse", "long-poll", "idle", "origin"]
        .iter()
        .map(|name| (name.to_string(), if *name == "idle" { "skip" } else { "pass" }.to_string()))
        .collect()
}

#[tokio::test]
async fn a_clean_chain_passes_with_every_check_made_and_exits_zero() {
    let server = TestServer::start("").await;
    let proxy = nginx(&server.url, FORWARDS_UPGRADES).await;
    let (code, report, _) = doctor(&[&proxy.url, &server.url]).await;
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!((&report["ok"], &report["outcome"]), (&Value::from(true), &Value::from("pass")));
    assert_eq!(verdicts(&report), vec![]);
    assert_eq!(outcomes(&report), vec![all_made_and_passed(); 2], "{report:#}");
    assert_eq!(report["unchecked"], serde_json::json!([]));
    // What arrived is reported: the proxy's hop headers, through the proxy only.
    let arrived = &report["hops"][0]["echo_http"]["arrived"];
    assert!(
        arrived.as_array().unwrap().iter().any(|pair| pair[0] == "via" && pair[1] == "1.1 test-nginx"),
        "{arrived}"
    );
    // The table form says so too, and names what it did not measure.
    let output = tokio::process::Command::from(crate::support::cli_command(&["doctor", &proxy.url, &server.url]))
        .output()
        .await
        .unwrap();
    let table = stdout(&output);
    assert!(table.contains("every check passes on every hop"), "{table}");
    assert!(table.contains("idle timeouts not measured; run with --idle"), "{table}");
}

#[tokio::test]
async fn a_hop_that_drops_upgrades_is_named() {
    let server = TestServer::start("").await;
    let proxy = nginx(&server.url, DROPS_UPGRADES).await;
    let (code, report, _) = doctor(&[&proxy.url, &server.url]).await;
    assert_eq!(code, Some(1));
    assert_eq!(verdicts(&report), vec![("websocket".to_string(), 1)], "{report:#}");
    let websocket = verdict(&report, "websocket");
    assert_eq!(websocket["url"], proxy.url.as_str());
    assert!(websocket["cause"].as_str().unwrap().contains("does not forward WebSocket upgrades"), "{websocket}");
    assert!(websocket["remedy"].as_str().unwrap().contains("proxy_set_header Upgrade $http_upgrade"));
    // SSE and long-poll still pass through it.
    let hop = &report["checks"][0];
    let outcome =
        |name: &str| hop.as_array().unwrap().iter().find(|check| check["name"] == name).unwrap()["outcome"].clone();
    assert_eq!((outcome("sse"), outcome("long-poll")), (Value::from("pass"), Value::from("pass")));
}

#[tokio::test]
async fn in_a_chain_of_two_proxies_the_inner_one_is_blamed() {
    let server = TestServer::start("").await;
    let inner = nginx(&server.url, DROPS_UPGRADES).await;
    let outer = nginx(&inner.url, FORWARDS_UPGRADES).await;
    let (code, report, _) = doctor(&[&outer.url, &inner.url, &server.url]).await;
    assert_eq!(code, Some(1));
    assert_eq!(verdicts(&report), vec![("websocket".to_string(), 2)], "{report:#}");
    assert_eq!(verdict(&report, "websocket")["url"], inner.url.as_str());
}

#[tokio::test]
async fn a_buffering_proxy_is_caught_by_the_sse_check() {
    let server = TestServer::start("").await;
    // nginx's defaults (HTTP/1.0 upstream, response buffering) with oneoff's
    // X-Accel-Buffering header ignored: events are held until the response ends.
    let proxy = nginx(&server.url, "proxy_ignore_headers X-Accel-Buffering;").await;
    let (code, report, _) = doctor(&[&proxy.url, &server.url]).await;
    assert_eq!(code, Some(1));
    assert_eq!(verdicts(&report), vec![("websocket".to_string(), 1), ("sse".to_string(), 1)], "{report:#}");
    assert!(verdict(&report, "websocket")["remedy"].as_str().unwrap().contains("proxy_http_version 1.1"));
    assert!(verdict(&report, "sse")["cause"].as_str().unwrap().contains("buffers the response"));
}

#[tokio::test]
async fn a_short_idle_timeout_is_measured_with_idle() {
    let server = TestServer::start("").await;
    let short = FORWARDS_UPGRADES.replace("proxy_read_timeout 60s;", "proxy_read_timeout 2s;");
    let proxy = nginx(&server.url, &short).await;
    let (code, report, _) = doctor(&["--idle", "--idle-max", "3", &proxy.url, &server.url]).await;
    assert_eq!(code, Some(1));
    assert_eq!(verdicts(&report), vec![("idle".to_string(), 1)], "{report:#}");
    let idle = verdict(&report, "idle");
    assert!(idle["cause"].as_str().unwrap().contains("quiet for 3s are cut"), "{idle}");
    assert!(idle["remedy"].as_str().unwrap().contains("proxy_read_timeout"));
}

#[tokio::test]
async fn unreachable_tls_foreign_and_login_urls_get_clear_messages() {
    let server = TestServer::start("").await;
    let foreign = nginx_server("location / { return 200 'Welcome to nginx!'; }").await;
    let login = nginx_server("location / { return 302 https://sso.example.com/oauth2/start; }").await;
    let unreachable = format!("http://127.0.0.1:{}", free_port());
    let tls = server.url.replacen("http://", "https://", 1);
    let (code, report, _) = doctor(&[&unreachable, &tls, &foreign.url, &login.url, "not a url"]).await;
    assert_eq!(code, Some(1));
    let reach: Vec<String> = report["hops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|hop| hop["reach"]["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(reach, vec!["unreachable", "tls_error", "not_oneoff", "redirect", "unreachable"]);
    assert_eq!(report["outcome"], "fail", "a failure wins over the login page's unchecked hop");
    let summaries: Vec<String> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|hop| hop[0]["cause"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(summaries[0].contains("Connection refused"), "{summaries:#?}");
    assert!(summaries[2].contains("Welcome to nginx!"), "{summaries:#?}");
    assert!(summaries[3].starts_with("sign-in required at hop 4: "), "{summaries:#?}");
    assert!(summaries[3].contains("to https://sso.example.com/oauth2/start"), "{summaries:#?}");
    assert!(summaries[4].contains("is not an http:// or https:// URL"), "{summaries:#?}");
}

#[tokio::test]
async fn a_login_page_in_front_is_sign_in_required_and_inconclusive_never_a_pass() {
    let server = TestServer::start("").await;
    // An SSO proxy that lets health checks through and sends everything else to its login page.
    let upstream = server.url.trim_start_matches("http://");
    let sso = nginx_server(&format!(
        "location = /healthz {{ proxy_pass http://{upstream}; }}
        location / {{ return 302 https://sso.example.com/oauth2/start?rd=$request_uri; }}"
    ))
    .await;
    let (code, report, _) = doctor(&[&sso.url, &server.url]).await;
    assert_eq!(code, Some(3), "{report:#}");
    assert_eq!((&report["ok"], &report["outcome"]), (&Value::from(false), &Value::from("inconclusive")));
    assert_eq!(verdicts(&report), vec![], "nothing is blamed on a hop that could not be checked");
    assert_eq!(report["unchecked"].as_array().unwrap().len(), 1, "{report:#}");
    let unchecked = &report["unchecked"][0];
    assert_eq!(unchecked["hop"], 1);
    assert!(unchecked["cause"].as_str().unwrap().starts_with("sign-in required at hop 1: "), "{unchecked}");
    assert!(unchecked["remedy"].as_str().unwrap().starts_with("pass -H or a token"), "{unchecked}");
    assert_eq!(outcomes(&report)[1], all_made_and_passed(), "the server itself is fine");

    let output = tokio::process::Command::from(crate::support::cli_command(&["doctor", &sso.url, &server.url]))
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    let table = stdout(&output);
    assert!(table.contains("verdict: inconclusive: 5 checks could not be made"), "{table}");
    assert!(table.contains("sign-in required at hop 1"), "{table}");
    assert!(!table.contains("every check passes"), "{table}");
}
