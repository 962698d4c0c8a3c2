//! Log throughput, end to end: a real server, a real SQLite file, a real `seq` child.
//!
//! Measures, for a job printing N lines (default 1,000,000; `ONEOFF_BENCH_LINES`):
//! - the pipe alone (`seq 1 N > /dev/null`), the reference floor;
//! - start of the run until its final state, with every line stored;
//! - start of the run until one long-poll viewer (via the API client) has every line.
//!
//! Run with `cargo bench -p oneoff-server --bench log_throughput`; figures go in BENCHMARKS.md.

use std::time::{Duration, Instant};

use oneoff_api::Client;
use serde_json::json;

fn main() -> anyhow::Result<()> {
    let lines: u64 = std::env::var("ONEOFF_BENCH_LINES").ok().and_then(|text| text.parse().ok()).unwrap_or(1_000_000);
    let rounds: usize = std::env::var("ONEOFF_BENCH_ROUNDS").ok().and_then(|text| text.parse().ok()).unwrap_or(3);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(bench(lines, rounds))
}

async fn bench(lines: u64, rounds: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config_path = dir.path().join("bench.toml");
    std::fs::write(
        &config_path,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ndata_dir = {:?}\n\n[[job]]\nname = \"flood\"\ncommand = [\"seq\", \"1\", \"{{lines}}\"]\n[[job.param]]\nname = \"lines\"\ntype = \"integer\"\n",
            dir.path().join("data").display().to_string()
        ),
    )?;
    let config = oneoff_server::load_config(&config_path, &Default::default())?;
    let server = oneoff_server::start(config).await?;
    let client = Client::new(&server.url());

    println!("lines per run: {lines}; rounds: {rounds}");
    for round in 1..=rounds {
        let pipe = pipe_alone(lines)?;
        let started = Instant::now();
        let run = client.create_run("flood", [("lines".to_string(), json!(lines))].into()).await?;
        let viewer = follow_all(&client, run.id, lines, started).await?;
        let stored = wait_final(&client, run.id, started).await?;
        println!(
            "round {round}: pipe alone {:.3} s | run start to final state, all lines stored {:.3} s | one long-poll viewer has every line {:.3} s",
            pipe.as_secs_f64(),
            stored.as_secs_f64(),
            viewer.as_secs_f64()
        );
    }
    server.stop().await?;
    Ok(())
}

fn pipe_alone(lines: u64) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let status = std::process::Command::new("seq")
        .args(["1", &lines.to_string()])
        .stdout(std::process::Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "seq failed");
    Ok(started.elapsed())
}

/// Reads the whole log the way `oneoff run --follow` does; checks every sequence number.
async fn follow_all(client: &Client, run: i64, lines: u64, started: Instant) -> anyhow::Result<Duration> {
    let mut after = 0;
    loop {
        let page = client.log(run, after, Some(10_000), Some(25)).await?;
        for entry in &page.entries {
            anyhow::ensure!(entry.seq == after + 1, "gap or duplicate at {}", entry.seq);
            after = entry.seq;
        }
        if after == lines {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(!page.done, "run ended after {after} of {lines} lines");
    }
}

async fn wait_final(client: &Client, run: i64, started: Instant) -> anyhow::Result<Duration> {
    loop {
        let status = client.run(run).await?.status;
        if status == "succeeded" {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(status == "queued" || status == "running", "run ended as {status}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
