//! `/metrics` after real runs: every final status counted by job, the queue and running gauges,
//! the histograms, the log writer's counters; the text parsed strictly (here, and by
//! Prometheus's own `promtool`); job labels that hostile requests cannot multiply; a reload's
//! new and removed jobs; who may scrape (`[server] metrics`, `metrics_cidrs`); and the alert
//! rules of docs/operations.md checked by `promtool`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use crate::support::{eventually, TestServer};

const WAIT: Duration = Duration::from_secs(30);

/// One sample line: its metric name, labels and value.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// One metric family: `# HELP`, `# TYPE` and its samples.
#[derive(Debug, Clone)]
pub struct Family {
    pub name: String,
    pub kind: String,
    pub samples: Vec<Sample>,
}

/// A whole exposition, parsed.
#[derive(Debug)]
pub struct Exposition {
    pub families: Vec<Family>,
}

impl Exposition {
    /// The value of the series `name{labels}`; panics when it is not there.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.find(name, labels).unwrap_or_else(|| panic!("no series {name}{labels:?} in the exposition"))
    }

    pub fn find(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted: BTreeMap<String, String> =
            labels.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect();
        self.samples().find(|sample| sample.name == name && sample.labels == wanted).map(|sample| sample.value)
    }

    pub fn samples(&self) -> impl Iterator<Item = &Sample> {
        self.families.iter().flat_map(|family| &family.samples)
    }

    /// Every value the label `key` takes, over every family.
    pub fn label_values(&self, key: &str) -> BTreeSet<String> {
        self.samples().filter_map(|sample| sample.labels.get(key).cloned()).collect()
    }
}

/// Parses the Prometheus text format (0.0.4) strictly: every line is a `# HELP`, a `# TYPE` or
/// a sample; every family has one of each, before its samples, which are contiguous and
/// belong to it; no series twice; counters end in `_total` and never go below zero;
/// histograms have ascending `le`, cumulative counts that never fall, and `+Inf` equal to
/// `_count`, and a `_sum`, for each label set.
pub fn parse(text: &str) -> Exposition {
    assert!(text.ends_with('\n'), "the exposition must end with a newline");
    let mut families: Vec<Family> = Vec::new();
    let mut helped: BTreeSet<String> = BTreeSet::new();
    let mut seen_series: BTreeSet<String> = BTreeSet::new();
    for (number, line) in text.lines().enumerate() {
        let at = || format!("line {}: {line:?}", number + 1);
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or_else(|| panic!("HELP without text at {}", at()));
            assert!(valid_metric_name(name), "bad metric name at {}", at());
            assert!(!help.trim().is_empty(), "empty HELP at {}", at());
            assert!(helped.insert(name.to_string()), "second HELP for {name} at {}", at());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or_else(|| panic!("TYPE without a type at {}", at()));
            assert!(helped.contains(name), "TYPE before HELP for {name} at {}", at());
            assert!(["counter", "gauge", "histogram"].contains(&kind), "unexpected type at {}", at());
            assert!(families.iter().all(|family| family.name != name), "second TYPE for {name} at {}", at());
            if kind == "counter" {
                assert!(name.ends_with("_total"), "a counter's name ends in _total, at {}", at());
            }
            families.push(Family { name: name.to_string(), kind: kind.to_string(), samples: Vec::new() });
            continue;
        }
        assert!(!line.starts_with('#'), "a comment that is neither HELP nor TYPE at {}", at());
        assert!(!line.is_empty(), "an empty line at {}", at());
        let sample = parse_sample(line).unwrap_or_else(|problem| panic!("{problem} at {}", at()));
        let family = families.last_mut().unwrap_or_else(|| panic!("a sample before any TYPE at {}", at()));
        let belongs = match family.kind.as_str() {
            "histogram" => ["_bucket", "_sum", "_count"]
                .iter()
                .any(|suffix| sample.name.strip_suffix(suffix) == Some(family.name.as_str())),
            _ => sample.name == family.name,
        };
        assert!(belongs, "a sample of another family than {} (the last TYPE) at {}", family.name, at());
        if family.kind == "counter" {
            assert!(sample.value >= 0.0, "a negative counter at {}", at());
        }
        let key = format!("{}{:?}", sample.name, sample.labels);
        assert!(seen_series.insert(key), "a series given twice at {}", at());
        family.samples.push(sample);
    }
    for name in &helped {
        assert!(families.iter().any(|family| &family.name == name), "HELP without TYPE for {name}");
    }
    for family in families.iter().filter(|family| family.kind == "histogram") {
        check_histogram(family);
    }
    Exposition { families }
}

fn check_histogram(family: &Family) {
    let mut by_labels: BTreeMap<BTreeMap<String, String>, Vec<&Sample>> = BTreeMap::new();
    for sample in &family.samples {
        let mut labels = sample.labels.clone();
        labels.remove("le");
        by_labels.entry(labels).or_default().push(sample);
    }
    for (labels, samples) in by_labels {
        let name = &family.name;
        let buckets: Vec<(f64, f64)> = samples
            .iter()
            .filter(|sample| sample.name.ends_with("_bucket"))
            .map(|sample| {
                let le = sample.labels.get("le").unwrap_or_else(|| panic!("{name}{labels:?}: a bucket without le"));
                let bound = if le == "+Inf" { f64::INFINITY } else { le.parse().expect("le is a number") };
                (bound, sample.value)
            })
            .collect();
        assert!(!buckets.is_empty(), "{name}{labels:?}: no buckets");
        for pair in buckets.windows(2) {
            assert!(pair[0].0 < pair[1].0, "{name}{labels:?}: le not ascending: {buckets:?}");
            assert!(pair[0].1 <= pair[1].1, "{name}{labels:?}: bucket counts fall: {buckets:?}");
        }
        let (last_bound, last_count) = *buckets.last().expect("a bucket");
        assert_eq!(last_bound, f64::INFINITY, "{name}{labels:?}: the last bucket is not +Inf");
        let of = |suffix: &str| {
            samples
                .iter()
                .find(|sample| sample.name == format!("{name}{suffix}"))
                .unwrap_or_else(|| panic!("{name}{labels:?}: no {suffix}"))
                .value
        };
        assert_eq!(last_count, of("_count"), "{name}{labels:?}: +Inf differs from _count");
        assert!(of("_sum") >= 0.0, "{name}{labels:?}: a negative _sum");
    }
}

fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|first| first.is_ascii_alphabetic() || first == '_' || first == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("a sample without a value")?;
    let name = &line[..name_end];
    if !valid_metric_name(name) {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices().peekable();
        let mut consumed = None;
        loop {
            match chars.peek() {
                Some((index, '}')) => {
                    consumed = Some(index + 1);
                    break;
                }
                None => break,
                _ => {}
            }
            let mut key = String::new();
            for (_, c) in chars.by_ref() {
                if c == '=' {
                    break;
                }
                key.push(c);
            }
            if !valid_label_name(&key) {
                return Err(format!("bad label name {key:?}"));
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err("a label value without quotes".into());
            }
            let mut value = String::new();
            loop {
                match chars.next().map(|(_, c)| c) {
                    Some('"') => break,
                    Some('\\') => match chars.next().map(|(_, c)| c) {
                        Some('\\') => value.push('\\'),
                        Some('"') => value.push('"'),
                        Some('n') => value.push('\n'),
                        other => return Err(format!("bad escape \\{other:?}")),
                    },
                    Some('\n') => return Err("a raw newline in a label value".into()),
                    Some(c) => value.push(c),
                    None => return Err("an unterminated label value".into()),
                }
            }
            if labels.insert(key.clone(), value).is_some() {
                return Err(format!("label {key} twice"));
            }
            match chars.peek().map(|(_, c)| *c) {
                Some(',') => {
                    chars.next();
                }
                Some('}') => {}
                _ => return Err("labels not separated by commas".into()),
            }
        }
        let consumed = consumed.ok_or("unclosed labels")?;
        rest = &inner[consumed..];
    }
    let value_text = rest.strip_prefix(' ').ok_or("no space before the value")?;
    let mut parts = value_text.split(' ');
    let value_text = parts.next().ok_or("no value")?;
    if let Some(timestamp) = parts.next() {
        timestamp.parse::<i64>().map_err(|_| format!("bad timestamp {timestamp:?}"))?;
    }
    if parts.next().is_some() {
        return Err("more than a value and a timestamp".into());
    }
    let value = match value_text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        text => text.parse::<f64>().map_err(|_| format!("bad value {text:?}"))?,
    };
    Ok(Sample { name: name.to_string(), labels, value })
}

/// Scrapes `/metrics`, checks its content type and parses it strictly.
pub async fn scrape(url: &str) -> Exposition {
    parse(&scrape_text(url).await)
}

pub async fn scrape_text(url: &str) -> String {
    let response = reqwest::get(format!("{url}/metrics")).await.expect("GET /metrics");
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"].to_str().expect("content type").to_string();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    response.text().await.expect("metrics text")
}

/// Feeds `input` to `promtool` with `args`; returns its status and output.
async fn promtool(args: &[&str], input: &str) -> (bool, String) {
    let mut child = tokio::process::Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs (Debian's prometheus package; scripts/test installs it)");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input.as_bytes()).await.expect("write to promtool");
    drop(stdin);
    let output = child.wait_with_output().await.expect("promtool ends");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

fn jobs(go: &Path) -> String {
    format!(
        r#"
[[job]]
name = "ok"
command = ["sh", "-c", "echo hello; echo world"]

[[job]]
name = "bad"
command = ["sh", "-c", "echo about to fail >&2; exit 3"]

[[job]]
name = "slow"
command = ["sleep", "60"]

[[job]]
name = "hold"
command = ["sh", "-c", "echo holding; while [ ! -e '{go}' ]; do sleep 0.05; done"]
max_concurrent = 1
"#,
        go = go.display()
    )
}

/// Every entry the API shows of `runs`, and their bytes.
async fn stored(server: &TestServer, runs: &[i64]) -> (u64, u64) {
    let (mut lines, mut bytes) = (0, 0);
    for run in runs {
        for entry in server.entries(*run).await {
            lines += 1;
            bytes += entry["text"].as_str().expect("text").len() as u64;
        }
    }
    (lines, bytes)
}

#[tokio::test]
async fn a_scrape_after_real_runs_counts_each_final_status_the_queue_the_waits_and_the_lines() {
    let go_dir = tempfile::tempdir().expect("temp dir");
    let go = go_dir.path().join("go");
    let server = TestServer::start(&jobs(&go)).await;

    let ok = server.start_run("ok", json!({})).await;
    let bad = server.start_run("bad", json!({})).await;
    let slow = server.start_run("slow", json!({})).await;
    assert_eq!(server.wait_final(ok).await["status"], "succeeded");
    assert_eq!(server.wait_final(bad).await["status"], "failed");
    server.wait_status(slow, |status| status == "running").await;
    let (status, body) = server.post(&format!("/api/v1/runs/{slow}/cancel"), json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(server.wait_final(slow).await["status"], "cancelled");

    // One `hold` at a time: the second waits in the queue, the third is cancelled there.
    let first = server.start_run("hold", json!({})).await;
    server.wait_status(first, |status| status == "running").await;
    let second = server.start_run("hold", json!({})).await;
    let third = server.start_run("hold", json!({})).await;
    let (status, body) = server.post(&format!("/api/v1/runs/{third}/cancel"), json!({})).await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::ACCEPTED, Some("cancelled")), "{body}");
    assert_eq!(server.run_json(second).await["status"], "queued");

    // The first scrape reads the queue from the store (later ones may use that read for 5 s).
    let metrics = scrape(&server.url).await;
    assert_eq!(metrics.value("oneoff_runs_queued", &[("job", "hold")]), 1.0);
    assert_eq!(metrics.value("oneoff_runs_queued", &[("job", "ok")]), 0.0);
    assert_eq!(metrics.value("oneoff_runs_running", &[("job", "hold")]), 1.0);
    assert_eq!(metrics.value("oneoff_runs_running", &[("job", "slow")]), 0.0);
    // The deprecated gauge counts the runs this replica follows live: here the running one.
    assert_eq!(metrics.value("oneoff_live_runs", &[]), 1.0);

    std::fs::write(&go, "").expect("let hold end");
    assert_eq!(server.wait_final(first).await["status"], "succeeded");
    assert_eq!(server.wait_final(second).await["status"], "succeeded");

    let metrics = eventually("the queue gauge to read the emptied queue", WAIT, || async {
        let metrics = scrape(&server.url).await;
        if metrics.value("oneoff_runs_queued", &[("job", "hold")]) == 0.0 {
            Ok(metrics)
        } else {
            Err("hold still queued".to_string())
        }
    })
    .await;
    let runs = |job: &str, status: &str| metrics.value("oneoff_runs_total", &[("job", job), ("status", status)]);
    assert_eq!(runs("ok", "succeeded"), 1.0);
    assert_eq!(runs("bad", "failed"), 1.0);
    assert_eq!(runs("slow", "cancelled"), 1.0);
    assert_eq!(runs("hold", "succeeded"), 2.0);
    assert_eq!(runs("hold", "cancelled"), 1.0, "cancelled while queued");
    // Every job and final status is there from the start, at zero.
    for status in ["failed", "cancelled", "timed_out", "lost"] {
        assert_eq!(runs("ok", status), 0.0, "{status}");
    }
    let total: f64 = metrics.samples().filter(|sample| sample.name == "oneoff_runs_total").map(|s| s.value).sum();
    assert_eq!(total, 6.0);
    assert_eq!(metrics.value("oneoff_runs_running", &[("job", "hold")]), 0.0);

    // Durations of the runs that ran; waits of the runs that started (not the cancelled third).
    let count = |name: &str, job: &str| metrics.value(name, &[("job", job)]);
    assert_eq!(count("oneoff_run_duration_seconds_count", "ok"), 1.0);
    assert_eq!(count("oneoff_run_duration_seconds_count", "slow"), 1.0);
    assert_eq!(count("oneoff_run_duration_seconds_count", "hold"), 2.0);
    assert_eq!(count("oneoff_run_queue_wait_seconds_count", "hold"), 2.0);
    assert_eq!(count("oneoff_run_queue_wait_seconds_count", "ok"), 1.0);
    assert!(count("oneoff_run_duration_seconds_sum", "hold") > 0.0);
    // The second hold waited for the first to end, which took at least as long as the test's
    // own steps; the bucket below one second cannot hold it unless the first ended that fast.
    let waited = count("oneoff_run_queue_wait_seconds_sum", "hold");
    assert!(waited > 0.0, "{waited}");

    // The log writer's counters agree with what the API shows, entry for entry, byte for byte.
    let (lines, bytes) = stored(&server, &[ok, bad, slow, first, second, third]).await;
    assert!(lines >= 5, "{lines}");
    assert_eq!(metrics.value("oneoff_log_lines_stored_total", &[]), lines as f64);
    assert_eq!(metrics.value("oneoff_log_bytes_stored_total", &[]), bytes as f64);
    let commits = metrics.value("oneoff_log_commit_seconds_count", &[]);
    assert!(commits >= 1.0 && commits <= lines as f64, "{commits} commits for {lines} lines");

    for kind in ["full", "read_only", "damaged", "io", "access", "unavailable", "database", "sequence"] {
        assert_eq!(metrics.value("oneoff_store_errors_total", &[("kind", kind)]), 0.0, "{kind}");
    }
    for family in &metrics.families {
        if family.kind == "histogram" {
            assert!(family.name.ends_with("_seconds"), "{}: base unit seconds", family.name);
        }
    }

    // Prometheus's own parser and linter agree.
    let (passed, said) = promtool(&["check", "metrics"], &scrape_text(&server.url).await).await;
    assert!(passed, "promtool check metrics: {said}");
}

#[tokio::test]
async fn viewers_are_counted_by_transport_while_they_follow() {
    let go_dir = tempfile::tempdir().expect("temp dir");
    let go = go_dir.path().join("go");
    let server = TestServer::start(&jobs(&go)).await;
    let run = server.start_run("hold", json!({})).await;
    server.wait_status(run, |status| status == "running").await;
    // Held open, not read to the end: the run goes on.
    let url = server.ws_url(&format!("/api/v1/runs/{run}/log/ws"));
    let (ws, _) = tokio_tungstenite::connect_async(url).await.expect("WebSocket handshake");
    let sse = reqwest::get(format!("{}/api/v1/runs/{run}/log/sse", server.url)).await.expect("SSE request");
    assert_eq!(sse.status(), StatusCode::OK);
    let metrics = eventually("both viewers counted", WAIT, || async {
        let metrics = scrape(&server.url).await;
        let seen = (
            metrics.value("oneoff_log_viewers_by_transport", &[("transport", "websocket")]),
            metrics.value("oneoff_log_viewers_by_transport", &[("transport", "sse")]),
        );
        if seen == (1.0, 1.0) {
            Ok(metrics)
        } else {
            Err(format!("{seen:?}"))
        }
    })
    .await;
    assert_eq!(metrics.value("oneoff_log_viewers", &[]), 2.0);
    drop(ws);
    drop(sse);
    eventually("the viewers to be gone", WAIT, || async {
        let metrics = scrape(&server.url).await;
        let left = metrics.value("oneoff_log_viewers_by_transport", &[("transport", "websocket")])
            + metrics.value("oneoff_log_viewers_by_transport", &[("transport", "sse")]);
        if left == 0.0 {
            Ok(())
        } else {
            Err(format!("{left} left"))
        }
    })
    .await;
    std::fs::write(&go, "").expect("let hold end");
    server.wait_final(run).await;
}

/// Names no catalog has, made to break a label: quotes, braces, newlines, backslashes,
/// label syntax, long and non-ASCII text, and many of them.
fn hostile_names() -> Vec<String> {
    let mut names: Vec<String> = [
        "ok\"",
        "ok\"}",
        "ok\n",
        "ok\\",
        "{job=\"ok\"}",
        "ok\",status=\"succeeded",
        "ok ",
        " ok",
        "OK",
        "ok\u{0}",
        "é",
        "ok\r\nx",
        "../ok",
        "%6Fk",
        "",
    ]
    .iter()
    .map(|name| name.to_string())
    .collect();
    names.push("x".repeat(10_000));
    names.extend((0..200).map(|index| format!("job-{index}-{}", "\"}".repeat(index % 5))));
    names
}

#[tokio::test]
async fn job_labels_come_from_the_catalog_whatever_the_requests_name() {
    let go_dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start(&jobs(&go_dir.path().join("go"))).await;
    let catalog: BTreeSet<String> = ["ok", "bad", "slow", "hold"].iter().map(|name| name.to_string()).collect();
    let before = scrape(&server.url).await;
    let series_before = before.samples().count();
    assert_eq!(before.label_values("job"), catalog);

    let client = reqwest::Client::new();
    for name in hostile_names() {
        let (status, body) = server.post("/api/v1/runs", json!({ "job": name })).await;
        assert!(status.is_client_error(), "{status} {body}");
        let encoded: String = name.bytes().map(|byte| format!("%{byte:02X}")).collect();
        for path in [format!("/api/v1/jobs/{encoded}"), format!("/api/v1/runs?job={encoded}")] {
            let response = client.get(format!("{}{path}", server.url)).send().await.expect("GET");
            assert!(response.status().as_u16() < 500, "{path}: {}", response.status());
        }
        // The scrape itself takes no parameter either.
        let response = client.get(format!("{}/metrics?job={encoded}", server.url)).send().await.expect("GET");
        assert_eq!(response.status(), StatusCode::OK);
    }
    let ok = server.start_run("ok", json!({})).await;
    server.wait_final(ok).await;

    let after = scrape(&server.url).await;
    assert_eq!(after.label_values("job"), catalog, "job labels beyond the catalog");
    assert_eq!(after.samples().count(), series_before, "the hostile requests added series");
    assert_eq!(after.value("oneoff_runs_total", &[("job", "ok"), ("status", "succeeded")]), 1.0);
}

#[tokio::test]
async fn a_reload_gives_new_jobs_their_series_and_a_removed_job_keeps_its_totals() {
    let go_dir = tempfile::tempdir().expect("temp dir");
    let go = go_dir.path().join("go");
    let server = TestServer::start(&jobs(&go)).await;
    let ok = server.start_run("ok", json!({})).await;
    server.wait_final(ok).await;

    let renamed = jobs(&go).replace("name = \"ok\"", "name = \"fresh\"");
    server.rewrite_config("", &renamed);
    let (status, body) = server.post("/api/v1/admin/reload", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let metrics = scrape(&server.url).await;
    assert_eq!(metrics.value("oneoff_runs_total", &[("job", "ok"), ("status", "succeeded")]), 1.0);
    assert_eq!(metrics.value("oneoff_runs_total", &[("job", "fresh"), ("status", "succeeded")]), 0.0);
    assert_eq!(metrics.value("oneoff_run_duration_seconds_count", &[("job", "fresh")]), 0.0);
    assert_eq!(metrics.value("oneoff_runs_queued", &[("job", "fresh")]), 0.0);
    let fresh = server.start_run("fresh", json!({})).await;
    server.wait_final(fresh).await;
    let metrics = scrape(&server.url).await;
    assert_eq!(metrics.value("oneoff_runs_total", &[("job", "fresh"), ("status", "succeeded")]), 1.0);
    assert_eq!(metrics.value("oneoff_runs_total", &[("job", "ok"), ("status", "succeeded")]), 1.0);
}

async fn scrape_status(url: &str, authorization: Option<&str>) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new().get(format!("{url}/metrics"));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let response = request.send().await.expect("GET /metrics");
    let status = response.status();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

#[tokio::test]
async fn metrics_token_asks_for_an_api_token_and_takes_a_valid_one() {
    let server = TestServer::start_with("", "metrics = \"token\"").await;
    let (status, body) = scrape_status(&server.url, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let message = body["error"]["message"].as_str().expect("our error");
    assert!(message.contains("/metrics needs an API token") && message.contains("credentials_file"), "{message}");
    let (status, _) = scrape_status(&server.url, Some(&format!("Bearer oneoff_{}", "0".repeat(64)))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = scrape_status(&server.url, Some("Basic cHJvbTpwcm9t")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, created) = server.post("/api/v1/tokens", json!({ "name": "prometheus" })).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let token = created["token"].as_str().expect("token");
    let (status, body) = scrape_status(&server.url, Some(&format!("Bearer {token}"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    parse(body.as_str().expect("text"));

    let revoked = reqwest::Client::new()
        .delete(format!("{}/api/v1/tokens/{}", server.url, created["info"]["id"]))
        .send()
        .await
        .expect("DELETE");
    assert!(revoked.status().is_success(), "{}", revoked.status());
    let (status, body) = scrape_status(&server.url, Some(&format!("Bearer {token}"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
}

#[tokio::test]
async fn metrics_cidrs_refuse_a_peer_outside_them_with_403() {
    // With a token required too: the peer is checked first.
    let server = TestServer::start_with("", "metrics = \"token\"\nmetrics_cidrs = [\"10.0.0.0/8\", \"::1/128\"]").await;
    let (status, body) = scrape_status(&server.url, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["code"], "metrics_forbidden");
    let message = body["error"]["message"].as_str().expect("our error");
    assert!(message.contains("127.0.0.1") && message.contains("metrics_cidrs"), "{message}");
    // The rest of the server is not restricted by it.
    let (status, _) = server.get("/api/v1/jobs").await;
    assert_eq!(status, StatusCode::OK);

    let server = TestServer::start_with("", "metrics_cidrs = [\"127.0.0.0/8\"]").await;
    let (status, _) = scrape_status(&server.url, None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_run_of_a_job_no_longer_in_the_catalog_counts_under_one_label() {
    let go_dir = tempfile::tempdir().expect("temp dir");
    let go = go_dir.path().join("go");
    let extra = "max_concurrent_runs = 1\ndrain = \"100ms\"";
    let mut server = TestServer::start_with(&jobs(&go), extra).await;
    let holding = server.start_run("hold", json!({})).await;
    server.wait_status(holding, |status| status == "running").await;
    let waiting = server.start_run("ok", json!({})).await;
    assert_eq!(server.run_json(waiting).await["status"], "queued");
    // Started again without `ok`: the queued run cannot start and fails.
    let without_ok = jobs(&go).replace("name = \"ok\"", "name = \"other\"");
    server.restart(&without_ok, extra).await;
    assert_eq!(server.wait_final(waiting).await["status"], "failed");
    let metrics = scrape(&server.url).await;
    assert_eq!(metrics.value("oneoff_runs_total", &[("job", "_not_in_catalog"), ("status", "failed")]), 1.0);
    assert!(metrics.find("oneoff_runs_total", &[("job", "ok"), ("status", "failed")]).is_none());
}

#[test]
fn a_wrong_metrics_setting_is_refused_with_the_values_it_takes() {
    let load = |server: &str| {
        let text = format!("[server]\n{server}\n");
        oneoff_core::Config::from_toml("oneoff.toml", &text, Path::new("/"), &oneoff_core::Overrides::default())
            .map(|_| ())
            .map_err(|errors| errors.0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))
    };
    let error = load("metrics = \"tokn\"").unwrap_err();
    assert!(error.contains("must be \"open\"") && error.contains("did you mean `token`?"), "{error}");
    let error = load("metrics_cidrs = [\"10.0.0.0/40\"]").unwrap_err();
    assert!(error.contains("metrics_cidrs"), "{error}");
    load("metrics = \"open\"\nmetrics_cidrs = [\"10.0.0.0/8\"]").expect("valid");
}

/// The YAML blocks of docs/operations.md marked as Prometheus rules, checked by `promtool`.
#[tokio::test]
async fn the_alert_rules_of_the_operations_guide_pass_promtool() {
    let guide = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/operations.md"))
        .expect("docs/operations.md");
    let rules = guide
        .split("```yaml\n")
        .skip(1)
        .filter_map(|block| block.split_once("```").map(|(yaml, _)| yaml))
        .find(|yaml| yaml.starts_with("groups:"))
        .expect("a ```yaml block of rules starting with `groups:`");
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("oneoff-rules.yml");
    std::fs::write(&file, rules).expect("write the rules");
    let (passed, said) = promtool(&["check", "rules", file.to_str().expect("path")], "").await;
    assert!(passed, "promtool check rules: {said}");
    // Every metric the rules use is one the server exports.
    let server = TestServer::start("[[job]]\nname = \"ok\"\ncommand = [\"true\"]\n").await;
    let exported: BTreeSet<String> = scrape(&server.url).await.samples().map(|sample| sample.name.clone()).collect();
    for word in rules.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if word.starts_with("oneoff_") {
            assert!(exported.contains(word), "the rules use {word}, which /metrics does not export");
        }
    }
}

/// Each replica exports what it did; the queue gauge is the shared queue, the same on every
/// replica; a run of a replica killed with `kill -9` counts on the survivor that marked it lost.
#[tokio::test]
async fn on_two_replicas_each_counts_its_own_runs_and_both_see_the_shared_queue() {
    let database =
        tokio::task::spawn_blocking(|| oneoff_testpg::Postgres::shared().new_database()).await.expect("a database");
    let go_dir = tempfile::tempdir().expect("temp dir");
    let go = go_dir.path().join("go");
    let mut replicas: Vec<(String, crate::support::ServerProcess, tempfile::TempDir)> = ["a", "b"]
        .iter()
        .map(|name| {
            let dir = tempfile::tempdir().expect("temp dir");
            let server = format!("database = {database:?}\nreplica = {name:?}\nreplica_timeout = \"3s\"\n");
            let text = crate::support::sqlite_config_text(&dir.path().join("data"), &server, &jobs(&go));
            let config = crate::support::write_config(dir.path(), &text);
            (name.to_string(), crate::support::ServerProcess::start(&config), dir)
        })
        .collect();
    let api = |index: usize| TestServer::remote(replicas[index].1.url.clone(), tempfile::tempdir().expect("dir"));
    let first_api = api(0);
    let first = first_api.start_run("hold", json!({})).await;
    let running = first_api.wait_status(first, |status| status == "running").await;
    let owner = replicas.iter().position(|(name, ..)| running["replica"] == name.as_str()).expect("the owner");
    let other = 1 - owner;
    let queued = [first_api.start_run("hold", json!({})).await, first_api.start_run("hold", json!({})).await];

    for index in [owner, other] {
        let metrics = scrape(&replicas[index].1.url).await;
        assert_eq!(metrics.value("oneoff_runs_queued", &[("job", "hold")]), 2.0, "replica {index}");
        let running_here = if index == owner { 1.0 } else { 0.0 };
        assert_eq!(metrics.value("oneoff_runs_running", &[("job", "hold")]), running_here, "replica {index}");
    }

    let (_, mut killed, _) = replicas.remove(owner);
    killed.child.kill().expect("SIGKILL the owner");
    killed.child.wait().expect("reap the owner");
    let survivor_index = if other > owner { other - 1 } else { other };
    let survivor = TestServer::remote(replicas[survivor_index].1.url.clone(), tempfile::tempdir().expect("dir"));
    assert_eq!(survivor.wait_final(first).await["status"], "lost");
    std::fs::write(&go, "").expect("let hold end");
    for run in queued {
        assert_eq!(survivor.wait_final(run).await["status"], "succeeded");
    }
    let metrics = scrape(&survivor.url).await;
    let runs = |status: &str| metrics.value("oneoff_runs_total", &[("job", "hold"), ("status", status)]);
    assert_eq!((runs("lost"), runs("succeeded")), (1.0, 2.0));
    assert_eq!(metrics.value("oneoff_run_queue_wait_seconds_count", &[("job", "hold")]), 2.0);
}
