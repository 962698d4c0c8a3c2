//! What the web UI's audit page asks of the API: records in a time window (`since`
//! inclusive, `until` exclusive, RFC 3339 with any offset), combined with the other filters
//! and with paging, and bad times refused with a message that shows the form wanted.

use oneoff_api::v1::{parse_timestamp, timestamp};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::TestServer;

const OPEN_JOB: &str = "[[job]]\nname = \"open\"\ncommand = [\"true\"]\n";

/// The audit listing for `query`, which must be a 200.
async fn audit(server: &TestServer, query: &str) -> Value {
    let (status, body) = server.get(&format!("/api/v1/audit?{query}")).await;
    assert_eq!(status, StatusCode::OK, "{query}: {body}");
    body
}

fn run_ids(listing: &Value) -> Vec<i64> {
    listing["records"].as_array().unwrap().iter().filter_map(|record| record["run_id"].as_i64()).collect()
}

/// `at` of the `run.start` record of run `id`, in µs.
async fn started_at_us(server: &TestServer, id: i64) -> i64 {
    let listing = audit(server, "action=run.start&limit=1000").await;
    let record = listing["records"].as_array().unwrap().iter().find(|record| record["run_id"] == json!(id)).unwrap();
    parse_timestamp(record["at"].as_str().unwrap()).expect("`at` is RFC 3339")
}

/// A query-string value: `+` must be sent as %2B, or it arrives as a space.
fn encoded(text: &str) -> String {
    text.replace('+', "%2B")
}

#[tokio::test]
async fn the_audit_listing_takes_a_time_window() {
    let server = TestServer::start(OPEN_JOB).await;
    let mut runs = Vec::new();
    for _ in 0..3 {
        runs.push(server.start_run("open", json!({})).await);
    }
    let [first, second, third] = [runs[0], runs[1], runs[2]];
    let (first_us, second_us, third_us) = (
        started_at_us(&server, first).await,
        started_at_us(&server, second).await,
        started_at_us(&server, third).await,
    );
    assert!(first_us < second_us && second_us < third_us, "three distinct moments: {first_us} {second_us} {third_us}");

    // `since` is inclusive, `until` exclusive: [second, third) holds the second run only.
    let window = format!("action=run.start&since={}&until={}", timestamp(second_us), timestamp(third_us));
    assert_eq!(run_ids(&audit(&server, &window).await), vec![second]);
    assert_eq!(
        run_ids(&audit(&server, &format!("action=run.start&since={}", timestamp(second_us))).await),
        vec![third, second]
    );
    assert_eq!(
        run_ids(&audit(&server, &format!("action=run.start&until={}", timestamp(second_us))).await),
        vec![first]
    );

    // The same instant with another offset is the same bound.
    let plus_one_hour = timestamp(second_us + 3_600_000_000).replace('Z', "+01:00");
    assert_eq!(parse_timestamp(&plus_one_hour), Some(second_us));
    let offset = format!("action=run.start&since={}", encoded(&plus_one_hour));
    assert_eq!(run_ids(&audit(&server, &offset).await), vec![third, second]);

    // With paging: one record a page, the window still applies to the older pages.
    let page = audit(&server, &format!("action=run.start&since={}&limit=1", timestamp(second_us))).await;
    assert_eq!(run_ids(&page), vec![third]);
    let older = page["next_before"].as_i64().expect("a full page has a next page");
    let next = audit(&server, &format!("action=run.start&since={}&limit=1&before={older}", timestamp(second_us))).await;
    assert_eq!(run_ids(&next), vec![second]);
    assert!(next["next_before"].is_null(), "the first run is outside the window, so no page follows: {next}");

    // A window in the past holds nothing; one that starts long ago holds everything.
    assert_eq!(audit(&server, "until=2000-01-01T00:00:00Z").await["records"], json!([]));
    assert_eq!(
        run_ids(&audit(&server, "action=run.start&since=2000-01-01T00:00:00Z").await),
        vec![third, second, first]
    );
}

#[tokio::test]
async fn a_bad_time_window_is_refused_in_our_words() {
    let server = TestServer::start(OPEN_JOB).await;
    server.start_run("open", json!({})).await;

    let (status, body) = server.get("/api/v1/audit?since=yesterday").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("`since` must be an RFC 3339 time with a zone, such as 2026-12-01T09:30:00Z"),
        "{message}"
    );
    assert!(message.contains("(got `yesterday`)"), "{message}");

    // A date without a time or zone is ambiguous: refused, not guessed.
    let (status, body) = server.get("/api/v1/audit?until=2026-12-01").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().starts_with("`until` must be an RFC 3339 time"), "{body}");

    // An unencoded `+` arrives as a space: the message says how to send it.
    let (status, body) = server.get("/api/v1/audit?since=2026-12-01T10:30:00+01:00").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("write the `+` of an offset as %2B"), "{body}");

    // An empty or reversed window cannot match anything: said so, not an empty page.
    let (status, body) = server.get("/api/v1/audit?since=2026-12-02T00:00:00Z&until=2026-12-01T00:00:00Z").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        body["error"]["message"],
        "`since` (2026-12-02T00:00:00Z) is not before `until` (2026-12-01T00:00:00Z): no record can match; swap them \
         or widen the window"
    );
    let (status, _) = server.get("/api/v1/audit?since=2026-12-01T00:00:00Z&until=2026-12-01T00:00:00Z").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
