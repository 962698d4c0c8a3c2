//! `GET .../log/search`: finds a line far beyond any page in a large log, as the reader sees
//! it (escape sequences removed, case ignored), goes on with `next` over requests that each
//! scan a bounded part, returns context, refuses bad queries, checks permissions exactly as
//! the log does, and never finds a masked secret.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::{seqs_of, TestServer};

/// `big`: 100,000 lines of about 200 bytes (more than one request scans), one of them a
/// coloured `NeEdLe` at line 99,000.
const JOBS: &str = r#"
[[job]]
name = "big"
command = ["awk", 'BEGIN { pad = sprintf("%190s", ""); for (i = 1; i <= 100000; i++) { if (i == 99000) printf "\033[1;31mNeEdLe\033[0m found %d\n", i; else printf "line %d %s\n", i, pad } }']

[[job]]
name = "small"
command = ["sh", "-c", "echo first; echo 'an \u001b[31mERR\u001b[0mor here'; echo last"]
"#;

async fn finished(server: &TestServer, job: &str) -> i64 {
    let id = server.start_run(job, json!({})).await;
    assert_eq!(server.wait_final(id).await["status"], "succeeded");
    id
}

/// Every match of `query` from `after`, following `next` until `done`; and how many requests.
async fn search_all(server: &TestServer, id: i64, query: &str) -> (Vec<Value>, usize) {
    let (mut after, mut matches, mut requests) = (0u64, Vec::new(), 0);
    loop {
        let (status, page) = server.get(&format!("/api/v1/runs/{id}/log/search?{query}&after={after}")).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        requests += 1;
        let next = page["next"].as_u64().unwrap();
        assert!(next > after || page["done"] == true, "every request makes progress: {after} -> {next}");
        after = next;
        matches.extend(page["matches"].as_array().unwrap().iter().cloned());
        if page["done"] == true {
            return (matches, requests);
        }
        assert!(requests < 1000, "the scan never ends");
    }
}

#[tokio::test]
async fn search_finds_a_line_far_beyond_the_first_page_in_bounded_steps() {
    let server = TestServer::start(JOBS).await;
    let id = finished(&server, "big").await;
    let search = format!("/api/v1/runs/{id}/log/search");

    // One request scans a bounded part: this one stops before line 99,000 without a match.
    let (status, first) = server.get(&format!("{search}?q=needle")).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["head"], 100_000);
    assert_eq!(first["matches"], json!([]));
    assert_eq!(first["done"], false, "the scan budget stops a request: {}", first["next"]);
    let next = first["next"].as_u64().unwrap();
    assert!(next > 10_000 && next < 99_000, "next = {next}");

    let (status, second) = server.get(&format!("{search}?q=needle&after={next}")).await;
    assert_eq!(status, StatusCode::OK);
    let matches = second["matches"].as_array().unwrap();
    assert_eq!(matches.len(), 1, "{second}");
    assert_eq!(matches[0]["seq"], 99_000);
    assert_eq!(matches[0]["text"], "\u{1b}[1;31mNeEdLe\u{1b}[0m found 99000", "the entry as stored");
    assert!(matches[0].get("context").is_none(), "no context unless asked");
    assert_eq!(second["done"], true);
    assert_eq!(second["next"], 100_000);

    // The escape sequence is not text: a query across it finds the word, and never the escape.
    let (found, _) = search_all(&server, id, "q=NEEDLE%20FOUND%2099").await;
    assert_eq!(seqs_of(&found), vec![99_000]);
    let (inside, _) = search_all(&server, id, "q=31mNeEdLe").await;
    assert_eq!(inside, Vec::<Value>::new(), "no match inside an escape sequence");

    // `before` bounds the scan; context comes from both sides, the match included.
    let (status, bounded) = server.get(&format!("{search}?q=needle&after=98000&before=99000")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((&bounded["matches"], &bounded["done"], &bounded["next"]), (&json!([]), &json!(true), &json!(98999)));
    let (_, with_context) = server.get(&format!("{search}?q=needle&after=98000&context=2")).await;
    let context = with_context["matches"][0]["context"].as_array().unwrap();
    assert_eq!(seqs_of(context), vec![98_998, 98_999, 99_000, 99_001, 99_002]);
    let (_, at_scan_start) = server.get(&format!("{search}?q=needle&after=98999&context=3")).await;
    let context = at_scan_start["matches"][0]["context"].as_array().unwrap();
    assert_eq!(seqs_of(context), (98_997..=99_003).collect::<Vec<_>>(), "context before where the scan began");
    let (_, first_line) = server.get(&format!("{search}?q=line%201%20&limit=1&context=2")).await;
    assert_eq!(seqs_of(first_line["matches"][0]["context"].as_array().unwrap()), vec![1, 2, 3]);
    let (_, last_line) = server.get(&format!("{search}?q=line%20100000&after=99990&context=2")).await;
    assert_eq!(seqs_of(last_line["matches"][0]["context"].as_array().unwrap()), vec![99_998, 99_999, 100_000]);
}

#[tokio::test]
async fn search_goes_on_with_next_finding_every_match_once_in_order() {
    let server = TestServer::start(JOBS).await;
    let id = finished(&server, "big").await;
    let expected: Vec<u64> = (1..=100_000u64).filter(|n| n.to_string().contains("7777")).collect();
    for limit in [1, 3, 1000] {
        let (found, requests) = search_all(&server, id, &format!("q=7777&limit={limit}")).await;
        assert_eq!(seqs_of(&found), expected, "limit {limit}");
        assert!(requests >= expected.len() / limit, "limit {limit}: at most `limit` matches per answer");
    }
    let (status, page) = server.get(&format!("/api/v1/runs/{id}/log/search?q=7777&limit=2")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(seqs_of(page["matches"].as_array().unwrap()), vec![7777, 17777]);
    assert_eq!((&page["next"], &page["done"]), (&json!(17777), &json!(false)), "next is the last match");
}

#[tokio::test]
async fn search_of_a_small_log_strips_escapes_and_ignores_case() {
    let server = TestServer::start(JOBS).await;
    let id = finished(&server, "small").await;
    let (status, page) = server.get(&format!("/api/v1/runs/{id}/log/search?q=error%20HERE&context=1")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(seqs_of(page["matches"].as_array().unwrap()), vec![2]);
    assert_eq!(seqs_of(page["matches"][0]["context"].as_array().unwrap()), vec![1, 2, 3]);
    assert_eq!((&page["done"], &page["head"], &page["next"]), (&json!(true), &json!(3), &json!(3)));
    for query in ["q=FIRST", "q=first&before=2", "q=irs&after=0&limit=0"] {
        let (_, page) = server.get(&format!("/api/v1/runs/{id}/log/search?{query}")).await;
        assert_eq!(seqs_of(page["matches"].as_array().unwrap()), vec![1], "{query}");
    }
    let (_, none) = server.get(&format!("/api/v1/runs/{id}/log/search?q=first&after=18446744073709551615")).await;
    assert_eq!((&none["matches"], &none["done"]), (&json!([]), &json!(true)));
    let (_, none) = server.get(&format!("/api/v1/runs/{id}/log/search?q=last&before=0")).await;
    assert_eq!((&none["matches"], &none["done"]), (&json!([]), &json!(true)));
}

#[tokio::test]
async fn bad_searches_are_refused_in_our_words() {
    let server = TestServer::start(JOBS).await;
    let id = finished(&server, "small").await;
    let long = "x".repeat(1001);
    let refused = [
        (String::new(), "give the text to search for"),
        ("q=".to_string(), "give the text to search for"),
        ("q=%1B%5B0m".to_string(), "escape sequences"),
        (format!("q={long}"), "at most 1000"),
        ("q=a&context=11".to_string(), "0 to 10"),
        ("q=a&context=-1".to_string(), "context"),
        ("q=a&limit=many".to_string(), "limit"),
        ("q=a&after=-5".to_string(), "after"),
        ("q=a&before=99999999999999999999999".to_string(), "out of range"),
        ("q=a&tail=5".to_string(), "tail"),
    ];
    for (query, says) in refused {
        let (status, body) = server.get(&format!("/api/v1/runs/{id}/log/search?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{query}: {message}");
    }
    let (status, _) = server.get(&format!("/api/v1/runs/{id}/log/search?q={}", "y".repeat(1000))).await;
    assert_eq!(status, StatusCode::OK, "1000 bytes is allowed");
    let (status, body) = server.get("/api/v1/runs/999999/log/search?q=a").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

const AUTH: &str = r#"
[auth]
anonymous = false
admins = { users = ["root"] }

[auth.trusted_headers]
trusted_cidrs = ["127.0.0.1/32"]

[[job]]
name = "backfill"
command = ["sh", "-c", "echo backfilling the secret table"]
allow_run = { users = ["alice"] }
allow_view = { groups = ["support"] }
"#;

/// GET `path` as `user` in `groups` through the trusted SSO proxy (or anonymous).
async fn get_as(server: &TestServer, path: &str, user: Option<(&str, &str)>) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new().get(format!("{}{path}", server.url));
    if let Some((user, groups)) = user {
        request = request.header("x-forwarded-user", user).header("x-forwarded-groups", groups);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn search_is_allowed_exactly_to_those_who_may_read_the_log() {
    let server = TestServer::start(AUTH).await;
    let alice = Some(("alice", ""));
    let (status, run) = {
        let response = reqwest::Client::new()
            .post(format!("{}/api/v1/runs", server.url))
            .header("x-forwarded-user", "alice")
            .json(&json!({ "job": "backfill" }))
            .send()
            .await
            .unwrap();
        (response.status(), response.json::<Value>().await.unwrap())
    };
    assert_eq!(status, StatusCode::CREATED, "{run}");
    let id = run["id"].as_i64().unwrap();
    let log = format!("/api/v1/runs/{id}/log");
    let search = format!("/api/v1/runs/{id}/log/search?q=secret");
    crate::support::eventually("the run to finish", std::time::Duration::from_secs(20), || async {
        let (_, page) = get_as(&server, &log, alice).await;
        (page["done"] == true).then_some(())
    })
    .await;
    for (who, caller) in [
        ("anonymous", None),
        ("a user who may not view the job", Some(("mallory", "sales"))),
        ("a viewer by group", Some(("sam", "support"))),
        ("the user who ran it", alice),
        ("an admin", Some(("root", ""))),
    ] {
        let (log_status, log_body) = get_as(&server, &log, caller).await;
        let (search_status, search_body) = get_as(&server, &search, caller).await;
        assert_eq!(search_status, log_status, "{who}: search {search_body} / log {log_body}");
        if log_status == StatusCode::OK {
            assert_eq!(seqs_of(search_body["matches"].as_array().unwrap()), vec![1], "{who}");
        } else {
            assert_eq!(search_body["error"]["code"], log_body["error"]["code"], "{who}: the same refusal");
            assert!(!search_body.to_string().contains("backfill"), "{who}: the refusal names no job");
        }
    }
    let (status, _) = get_as(&server, &format!("{log}/search?q=x"), Some(("mallory", "sales"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "as for a run that does not exist");

    // A stream ticket opens one stream, not a search; and the refused search does not spend it.
    let (status, created) = {
        let response = reqwest::Client::new()
            .post(format!("{}/api/v1/runs/{id}/log/ticket", server.url))
            .header("x-forwarded-user", "sam")
            .header("x-forwarded-groups", "support")
            .send()
            .await
            .unwrap();
        (response.status(), response.json::<Value>().await.unwrap())
    };
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let ticket = created["ticket"].as_str().unwrap();
    let (status, body) = get_as(&server, &format!("{search}&ticket={ticket}"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a ticket alone is no identity for search: {body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("only by the log endpoints"), "{body}");
    let (status, body) = get_as(&server, &format!("{search}&ticket={ticket}"), Some(("sam", "support"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "not even beside another identity: {body}");
    let (status, page) = get_as(&server, &format!("{log}?ticket={ticket}"), None).await;
    assert_eq!(status, StatusCode::OK, "the ticket still opens the log: {page}");
}

#[tokio::test]
async fn search_never_finds_a_masked_secret() {
    const SECRET: &str = "Hunter2-pa55w0rd-XYZ";
    let jobs = r#"
[[job]]
name = "leak"
command = ["sh", "-c", 'echo "token is $ONEOFF_PARAM_TOKEN"; printf "\033[1m%s\033[0m\n" "$ONEOFF_PARAM_TOKEN"; echo done']
[[job.param]]
name = "token"
type = "secret"
required = true
"#;
    let server = TestServer::start(jobs).await;
    let id = server.start_run("leak", json!({ "token": SECRET })).await;
    assert_eq!(server.wait_final(id).await["status"], "succeeded");
    for query in [SECRET, "hunter2", "PA55W0RD", "2-pa"] {
        let (status, page) = server.get(&format!("/api/v1/runs/{id}/log/search?q={query}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!((&page["matches"], &page["done"]), (&json!([]), &json!(true)), "{query}: {page}");
    }
    let (_, masked) = server.get(&format!("/api/v1/runs/{id}/log/search?q=********")).await;
    let texts: Vec<&str> = masked["matches"].as_array().unwrap().iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert_eq!(texts, vec!["token is ********", "\u{1b}[1m********\u{1b}[0m"], "the mask is what is stored and found");
}
