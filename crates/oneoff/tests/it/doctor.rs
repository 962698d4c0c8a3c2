//! `oneoff doctor` against the real server behind real nginx hops: it names the hop that
//! breaks each check, passes a clean chain, and explains unreachable, TLS, foreign and
//! login-redirect URLs without panicking.

use serde_json::Value;

use crate::proxy::{free_port, nginx, nginx_server, DROPS_UPGRADES, FORWARDS_UPGRADES};
use crate::support::{stderr, stdout, TestServer};

const ECHO_ON: &str = "[debug]\necho = true";

async fn doctor(args: &[&str]) -> (Option<i32>, Value, String) {
    let mut command = crate::support::cli_command(&["doctor", "--json"]);
    command.args(args);
    let output = tokio::process::Command::from(command).output().await.unwrap();
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("doctor printed no JSON: {}\n{}", stdout(&output), stderr(&output)));
    (output.status.code(), report, stderr(&output))
}

/// The verdicts as (check, hop) pairs.
fn verdicts(report: &Value) -> Vec<(String, u64)> {
    report["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|verdict| (verdict["check"].as_str().unwrap().to_string(), verdict["hop"].as_u64().unwrap()))
        .collect()
}

fn verdict<'a>(report: &'a Value, check: &str) -> &'a Value {
    report["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|verdict| verdict["check"] == check)
        .expect("a verdict for the check")
}

#[tokio::test]
async fn a_clean_chain_passes_and_exits_zero() {
    let server = TestServer::start_with("", ECHO_ON).await;
    let proxy = nginx(&server.url, FORWARDS_UPGRADES).await;
    let (code, report, _) = doctor(&[&proxy.url, &server.url]).await;
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["ok"], true);
    assert_eq!(verdicts(&report), vec![]);
    // The table form says so too.
    let output = tokio::process::Command::from(crate::support::cli_command(&["doctor", &proxy.url, &server.url]))
        .output()
        .await
        .unwrap();
    assert!(stdout(&output).contains("every check passes on every hop"), "{}", stdout(&output));
}

#[tokio::test]
async fn a_hop_that_drops_upgrades_is_named() {
    let server = TestServer::start_with("", ECHO_ON).await;
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
    let server = TestServer::start_with("", ECHO_ON).await;
    let inner = nginx(&server.url, DROPS_UPGRADES).await;
    let outer = nginx(&inner.url, FORWARDS_UPGRADES).await;
    let (code, report, _) = doctor(&[&outer.url, &inner.url, &server.url]).await;
    assert_eq!(code, Some(1));
    assert_eq!(verdicts(&report), vec![("websocket".to_string(), 2)], "{report:#}");
    assert_eq!(verdict(&report, "websocket")["url"], inner.url.as_str());
}

#[tokio::test]
async fn a_buffering_proxy_is_caught_by_the_sse_check() {
    let server = TestServer::start_with("", ECHO_ON).await;
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
    let server = TestServer::start_with("", ECHO_ON).await;
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
    let server = TestServer::start_with("", ECHO_ON).await;
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
    let summaries: Vec<String> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|hop| hop[0]["cause"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(summaries[0].contains("Connection refused"), "{summaries:#?}");
    assert!(summaries[2].contains("Welcome to nginx!"), "{summaries:#?}");
    assert!(summaries[3].contains("redirects to https://sso.example.com/oauth2/start"), "{summaries:#?}");
    assert!(summaries[4].contains("is not an http:// or https:// URL"), "{summaries:#?}");
}

#[tokio::test]
async fn without_echo_the_doctor_says_what_to_enable() {
    let server = TestServer::start("").await;
    let output =
        tokio::process::Command::from(crate::support::cli_command(&["doctor", &server.url])).output().await.unwrap();
    assert!(stdout(&output).contains("[debug] echo = true"), "{}", stdout(&output));
}
