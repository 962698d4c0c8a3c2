//! Live log streams under load, against a real `oneoff serve` process.
//!
//! The server runs as its own process (the release binary, a fresh data directory and
//! config per scenario), so its memory and CPU are its own and the viewers, which share
//! one multi-threaded runtime in this process, do not share its runtime. Scenarios
//! (`ONEOFF_BENCH=firehose,fanout,idle,many`, default all):
//!
//! - `firehose`: `seq 1 N` (N = `ONEOFF_BENCH_LINES`, default 1,000,000), one WebSocket
//!   viewer, then one SSE viewer, connected right after `POST /api/v1/runs`: time from the
//!   POST until the viewer has every line (seq 1..=N once, in order, text = seq), and until
//!   the `done` message (final state `succeeded`, so every line is stored). The pipe alone
//!   (`seq 1 N > /dev/null`) is timed in the same round. `ONEOFF_BENCH_ROUNDS` rounds.
//! - `fanout`: one job printing `ONEOFF_BENCH_RATE` lines/s (1,000) for
//!   `ONEOFF_BENCH_SECONDS` (10 s), `ONEOFF_BENCH_VIEWERS` (1,000) WebSocket viewers:
//!   latency from the job's write to the viewer's receipt, every viewer gets every line
//!   (target p99 ≤ 60 ms).
//! - `fanout5k`: the same with `ONEOFF_BENCH_FANOUT5K_VIEWERS` (5,000) viewers (target p99
//!   ≤ 250 ms); it needs `ulimit -n` above 5,200.
//! - `idle`: `ONEOFF_BENCH_IDLE_VIEWERS` (10,000) WebSocket viewers on a quiet run: growth
//!   of the server's VmRSS per viewer.
//! - `many`: `ONEOFF_BENCH_RUNS` (200) runs printing 1,000 lines/s each at the same time,
//!   one WebSocket viewer each: per-run latency percentiles.
//! - `steady`: one job printing `ONEOFF_BENCH_RATE` lines/s (1,000) for `ONEOFF_BENCH_SECONDS`
//!   (10 s) on an otherwise idle server, one WebSocket viewer: latency of every line (what a
//!   user watching one job sees), then the stored log read back, line for line.
//! - `tailopen`: a finished run of `ONEOFF_BENCH_TAIL_LINES` (1,000,000) lines opened at its
//!   end through the HTTP calls the web UI makes: `log?tail=N&limit=N` (N = `ONEOFF_BENCH_TAIL_PAGE`,
//!   2,000), five `log?before=PREV&limit=N` pages (scrolling up), one search request and a
//!   search of the whole log (a text that is not there, following `next` until `done`);
//!   then `oneoff logs RUN > file` (the CLI, the same binary) and its output checked line by line.
//!
//! The job of `fanout` and `many` is this program itself (`__oneoff_bench_ticker`): from a
//! given wall-clock instant on, it writes line `i` at `start + (i - 1) / rate`, each line being
//! `"{i} {unix time in ns, read just before the write}"` in one `write(2)`. Viewers read the
//! wall clock when a message arrives; job and viewers are on the same machine and clock.
//! `ONEOFF_BENCH_BURST=N` (default 1) makes the job wake up every N lines instead of every
//! line (it still writes each line on its own, with its own timestamp): 200 jobs waking up
//! 1,000 times a second cost most of a 2-core virtual machine by themselves.
//! `ONEOFF_BENCH_JOB_NICE=N` gives that job `nice = N` in the catalog.
//!
//! The machine is shared by the server, the jobs and the viewers, so other load distorts
//! every figure: before each round the benchmark waits (up to `ONEOFF_BENCH_QUIET_WAIT`
//! seconds, 120) for the machine to be under 10% busy, then accounts the CPU of the round
//! to the server, its jobs, the viewers and everything else. A round in which other
//! processes used more than a tenth of the machine is printed, marked DISTURBED, not counted,
//! and run again (at most `ONEOFF_BENCH_RETRIES` extra rounds, 3).
//!
//! Viewers read with an 8 KiB buffer: tungstenite zero-fills its read buffer (128 KiB by
//! default) before every read, which made a thousand viewers cost more than the server.
//!
//! The server process, the paced job, the viewers and the CPU accounting are in
//! `common/mod.rs`, shared with `replicas.rs`. Build the server first; `ONEOFF_BIN` points to
//! another binary:
//!
//! ```sh
//! cargo build --release -p oneoff && cargo bench -p oneoff-server --bench streams
//! ```

mod common;

use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::ensure;
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use common::*;

const ALL: &str = "firehose,fanout,fanout5k,idle,many,steady,tailopen";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(TICKER) {
        return ticker(&args[2..]);
    }
    let selected = selected_scenarios(ALL)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    println!("server binary: {}", server_binary()?.display());
    println!("open files limit (soft): {}", open_files_limit().map_or("unknown".into(), |limit| limit.to_string()));
    runtime.block_on(async {
        for name in selected {
            println!("\n== {name} ==");
            match name.as_str() {
                "firehose" => firehose().await?,
                "fanout" => fanout().await?,
                "fanout5k" => fanout5k().await?,
                "idle" => idle().await?,
                "many" => many().await?,
                "steady" => steady().await?,
                "tailopen" => tail_open().await?,
                _ => unreachable!("checked above"),
            }
        }
        Ok(())
    })
}

/// A latency scenario: `count` rounds on one server, each returning a p99 in milliseconds,
/// then the p99s of the rounds counted against the 100 ms target.
async fn latency_rounds<F, Fut>(count: u64, measured: &str, target: &str, round: F) -> anyhow::Result<()>
where
    F: Fn(Arc<Server>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<(f64, CpuReport)>>,
{
    latency_rounds_within(count, measured, target, 100.0, round).await
}

/// [`latency_rounds`] against a target of `target_ms`.
async fn latency_rounds_within<F, Fut>(
    count: u64,
    measured: &str,
    target: &str,
    target_ms: f64,
    round: F,
) -> anyhow::Result<()>
where
    F: Fn(Arc<Server>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<(f64, CpuReport)>>,
{
    with_server(|server| async move {
        let results = rounds(count, |attempt| {
            println!("round {attempt}:");
            round(server.clone())
        })
        .await?;
        let met = results.iter().filter(|p99| **p99 <= target_ms).count();
        println!(
            "{measured}: {}; {target} met in {met} of {}",
            results.iter().map(|p99| show_ms(*p99)).collect::<Vec<_>>().join(", "),
            results.len()
        );
        Ok(())
    })
    .await
}

// ---------------------------------------------------------------------------------------
// Scenarios

async fn firehose() -> anyhow::Result<()> {
    let lines = setting("ONEOFF_BENCH_LINES", 1_000_000);
    let count = setting("ONEOFF_BENCH_ROUNDS", 3);
    println!("job `seq 1 {lines}`, one viewer connected right after the POST; {count} rounds");
    with_server(|server| async move {
        let results = rounds(count, |round| {
            let server = server.clone();
            async move {
                let cpu = CpuUse::start(&[&*server]);
                let pipe = pipe_alone(lines)?;
                let (ws_all, ws_done, ws_messages) = firehose_ws(&server, lines).await?;
                let (sse_all, sse_done, sse_events) = firehose_sse(&server, lines).await?;
                println!(
                    "round {round}: pipe alone {:.3} s | WebSocket: every line {:.3} s, done (succeeded) {:.3} s, {ws_messages} messages | SSE: every line {:.3} s, done (succeeded) {:.3} s, {sse_events} events",
                    pipe.as_secs_f64(),
                    ws_all.as_secs_f64(),
                    ws_done.as_secs_f64(),
                    sse_all.as_secs_f64(),
                    sse_done.as_secs_f64(),
                );
                Ok(((ws_done.as_secs_f64(), sse_done.as_secs_f64()), cpu.report()))
            }
        })
        .await?;
        let ws = median(results.iter().map(|result| result.0).collect());
        let sse = median(results.iter().map(|result| result.1).collect());
        println!(
            "median of {} rounds, POST → done (every line received and stored): WebSocket {ws:.3} s (target ≤ 0.35 s: {}), SSE {sse:.3} s = {:.2}× WebSocket (target ≤ 1.5×: {})",
            results.len(),
            verdict(ws <= 0.35),
            sse / ws,
            verdict(sse <= 1.5 * ws)
        );
        Ok(())
    })
    .await
}

fn pipe_alone(lines: u64) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let status = std::process::Command::new("seq").args(["1", &lines.to_string()]).stdout(Stdio::null()).status()?;
    ensure!(status.success(), "seq failed");
    Ok(started.elapsed())
}

async fn firehose_ws(server: &Server, lines: u64) -> anyhow::Result<(Duration, Duration, usize)> {
    let started = Instant::now();
    let run = server.create_run("flood", json!({ "lines": lines })).await?;
    let socket = connect(&server.ws_url(run), None).await?;
    let mut view = FloodView::new(started, lines);
    read_ws(socket, |text| view.message(text).map(drop)).await?;
    view.result()
}

async fn firehose_sse(server: &Server, lines: u64) -> anyhow::Result<(Duration, Duration, usize)> {
    let started = Instant::now();
    let run = server.create_run("flood", json!({ "lines": lines })).await?;
    let response = server.http.get(format!("{}/api/v1/runs/{run}/log/sse?after=0", server.base)).send().await?;
    let mut view = FloodView::new(started, lines);
    read_sse(response, |event, id, data| {
        ensure!(event.is_none() || event == Some("done"), "unexpected event {event:?}: {data}");
        let next = view.message(data)?;
        ensure!(id.and_then(|id| id.parse().ok()) == Some(next), "event id {id:?} but next={next}");
        Ok(())
    })
    .await?;
    view.result()
}

async fn fanout() -> anyhow::Result<()> {
    let viewers = setting("ONEOFF_BENCH_VIEWERS", 1000) as usize;
    fanout_scenario(viewers, 60.0).await
}

/// `fanout` with 5,000 viewers: one encoding of each batch for all of them, and each
/// viewer's messages written with one flush per wake-up.
async fn fanout5k() -> anyhow::Result<()> {
    let viewers = setting("ONEOFF_BENCH_FANOUT5K_VIEWERS", 5000) as usize;
    if let Some(limit) = open_files_limit() {
        ensure!(
            limit as usize > viewers + 200,
            "{viewers} viewers need more open files than the soft limit {limit}: run with `ulimit -n {}`",
            viewers + 1024
        );
    }
    fanout_scenario(viewers, 250.0).await
}

async fn fanout_scenario(viewers: usize, target_ms: f64) -> anyhow::Result<()> {
    let rate = setting("ONEOFF_BENCH_RATE", 1000);
    let seconds = setting("ONEOFF_BENCH_SECONDS", 10);
    let count = setting("ONEOFF_BENCH_ROUNDS", 3);
    println!(
        "one job printing {rate} lines/s for {seconds} s ({}), {viewers} WebSocket viewers; {count} rounds",
        pacing()
    );
    let target = format!("target p99 ≤ {target_ms} ms");
    latency_rounds_within(count, "p99 of the rounds counted", &target, target_ms, move |server| async move {
        fanout_round(&server, viewers, rate, seconds, target_ms).await
    })
    .await
}

/// One fan-out run; returns its p99 in milliseconds.
async fn fanout_round(
    server: &Server,
    viewers: usize,
    rate: u64,
    seconds: u64,
    target_ms: f64,
) -> anyhow::Result<(f64, CpuReport)> {
    // The job starts printing at a fixed instant, once every viewer is connected.
    let lead = Duration::from_secs(2) + Duration::from_millis(3 * viewers as u64);
    let start_ms = (unix_ns() / 1_000_000) + lead.as_millis() as u64;
    let run = server.create_run("ticker", ticker_params(rate, seconds, start_ms)).await?;
    let connecting = Instant::now();
    let sockets = connect_many(&server.ws_url(run), viewers, 100, Some(small_messages())).await?;
    let connected = connecting.elapsed();
    ensure!(unix_ns() / 1_000_000 < start_ms, "the viewers connected after the job started; raise the lead");
    let tasks: Vec<JoinHandle<anyhow::Result<TickView>>> =
        sockets.into_iter().map(|socket| tokio::spawn(tick_viewer(socket))).collect();
    sleep_until_unix_ms(start_ms).await;
    let cpu = CpuUse::start(&[server]);
    let mut all = Vec::with_capacity(viewers * (rate * seconds) as usize);
    let mut worst_p99: f64 = 0.0;
    let (mut messages, mut missing) = (0, 0);
    let mut worst_us = Vec::new();
    for task in tasks {
        let mut view = task.await??;
        let lost = view.finish(rate * seconds)?;
        missing += lost;
        messages += view.messages;
        if lost == 0 {
            fold_worst(&mut worst_us, &view.latencies_us);
        }
        worst_p99 = worst_p99.max(percentiles(&mut view.latencies_us).p99);
        all.append(&mut view.latencies_us);
    }
    let cpu = cpu.report();
    let stats = percentiles(&mut all);
    println!(
        "  {viewers} viewers connected in {:.2} s; {} ({} samples in all, {:.1} messages per viewer per second)",
        connected.as_secs_f64(),
        if missing == 0 {
            format!("each got all {} lines once, in order", rate * seconds)
        } else {
            format!("LINES LOST: {missing} lines never reached their viewer (of {} per viewer)", rate * seconds)
        },
        all.len(),
        messages as f64 / viewers as f64 / seconds as f64
    );
    println!(
        "  job write → viewer receipt: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; worst viewer's p99 {:.1} ms (target p99 ≤ {target_ms} ms: {})",
        stats.p50,
        stats.p99,
        stats.max,
        worst_p99,
        verdict(stats.p99 <= target_ms && missing == 0)
    );
    println!("  slowest 100 ms windows (job's clock): {}", slowest_windows(&worst_us, rate, 5));
    Ok((if missing == 0 { stats.p99 } else { f64::INFINITY }, cpu))
}

async fn idle() -> anyhow::Result<()> {
    let viewers = setting("ONEOFF_BENCH_IDLE_VIEWERS", 10_000) as usize;
    if let Some(limit) = open_files_limit() {
        ensure!(
            limit as usize > viewers + 200,
            "{viewers} viewers need more open files than the soft limit {limit}: run with `ulimit -n {}`",
            viewers + 1024
        );
    }
    println!("{viewers} WebSocket viewers on a quiet run (`sleep 600`)");
    with_server(|server| async move {
        let run = server.create_run("quiet", json!({})).await?;
        while server.run_status(run).await? != "running" {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let settle = Duration::from_secs(2);
        wait_for_quiet_machine().await;
        let before = server.rss_kib()?;
        // The client's own buffers are kept small; they are not measured, only the server's.
        let config = Some(WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0));
        let url = server.ws_url(run);
        let half = viewers / 2;
        let mut sockets = connect_many(&url, half, 100, config).await?;
        tokio::time::sleep(settle).await;
        let at_half = server.rss_kib()?;
        sockets.extend(connect_many(&url, viewers - half, 100, config).await?);
        tokio::time::sleep(settle).await;
        let after = server.rss_kib()?;
        let live = server.metric("oneoff_log_viewers").await?;
        ensure!(live == viewers as u64, "the server counts {live} live viewers, expected {viewers}");
        let per_viewer = (after.saturating_sub(before)) as f64 * 1024.0 / viewers as f64;
        let marginal = (after.saturating_sub(at_half)) as f64 * 1024.0 / (viewers - half) as f64;
        println!(
            "server VmRSS: {before} KiB with the run and no viewer, {at_half} KiB with {half}, {after} KiB with {viewers} (oneoff_log_viewers = {live})"
        );
        println!(
            "growth per viewer: {:.1} KB overall, {:.1} KB for the second half (target ≤ 10 KB: {})",
            per_viewer / 1000.0,
            marginal / 1000.0,
            verdict(per_viewer <= 10_000.0)
        );
        // Every viewer is live: cancelling the run ends each stream with `done`.
        let finished = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<JoinHandle<anyhow::Result<()>>> = sockets
            .into_iter()
            .map(|socket| {
                let finished = finished.clone();
                tokio::spawn(async move {
                    // The only entries are the server's cancel notices (stream `system`).
                    let mut status = None;
                    read_ws(socket, |text| {
                        let batch: Batch = serde_json::from_str(text)?;
                        if batch.done {
                            status = batch.status;
                        }
                        Ok(())
                    })
                    .await?;
                    ensure!(status.as_deref() == Some("cancelled"), "a viewer saw {status:?}");
                    finished.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                })
            })
            .collect();
        let cancelled = Instant::now();
        server.cancel(run).await?;
        for task in tasks {
            task.await??;
        }
        println!(
            "after cancel: all {} viewers got `done` (cancelled) and a close within {:.2} s",
            finished.load(Ordering::Relaxed),
            cancelled.elapsed().as_secs_f64()
        );
        Ok(())
    })
    .await
}

async fn many() -> anyhow::Result<()> {
    let runs = setting("ONEOFF_BENCH_RUNS", 200) as usize;
    let rate = setting("ONEOFF_BENCH_RATE", 1000);
    let seconds = setting("ONEOFF_BENCH_SECONDS", 10);
    let count = setting("ONEOFF_BENCH_ROUNDS", 3);
    println!(
        "{runs} runs printing {rate} lines/s each for {seconds} s ({}), at the same time, one WebSocket viewer each; {count} rounds",
        pacing()
    );
    let (measured, target) = ("worst per-run p99 of the rounds counted", "target (no run's p99 over 100 ms)");
    latency_rounds(count, measured, target, move |server| async move { many_round(&server, runs, rate, seconds).await })
        .await
}

/// One round of many runs; returns the worst run's p99 in milliseconds.
async fn many_round(server: &Server, runs: usize, rate: u64, seconds: u64) -> anyhow::Result<(f64, CpuReport)> {
    let lead = Duration::from_secs(2) + Duration::from_millis(25 * runs as u64);
    let start_ms = (unix_ns() / 1_000_000) + lead.as_millis() as u64;
    let mut tasks: Vec<JoinHandle<anyhow::Result<TickView>>> = Vec::with_capacity(runs);
    let creating = Instant::now();
    for _ in 0..runs {
        let run = server.create_run("ticker", ticker_params(rate, seconds, start_ms)).await?;
        let socket = connect(&server.ws_url(run), Some(small_messages())).await?;
        tasks.push(tokio::spawn(tick_viewer(socket)));
    }
    let created = creating.elapsed();
    ensure!(unix_ns() / 1_000_000 < start_ms, "the viewers connected after the jobs started; raise the lead");
    sleep_until_unix_ms(start_ms).await;
    let cpu = CpuUse::start(&[server]);
    let mut all = Vec::with_capacity(runs * (rate * seconds) as usize);
    let mut per_run = Vec::with_capacity(runs);
    let (mut missing, mut runs_missing) = (0, 0);
    for task in tasks {
        let mut view = task.await??;
        let lost = view.finish(rate * seconds)?;
        missing += lost;
        runs_missing += usize::from(lost > 0);
        per_run.push(percentiles(&mut view.latencies_us));
        all.append(&mut view.latencies_us);
    }
    let cpu = cpu.report();
    let overall = percentiles(&mut all);
    let mut p99s: Vec<f64> = per_run.iter().map(|stats| stats.p99).collect();
    p99s.sort_by(f64::total_cmp);
    let over = p99s.iter().filter(|p99| **p99 > 100.0).count();
    let worst_max = per_run.iter().map(|stats| stats.max).fold(0.0, f64::max);
    let mut p50s: Vec<f64> = per_run.iter().map(|stats| stats.p50).collect();
    p50s.sort_by(f64::total_cmp);
    println!(
        "  {runs} runs created and their viewers connected in {:.2} s; {}",
        created.as_secs_f64(),
        if missing == 0 {
            format!("every viewer got all {} lines of its run once, in order", rate * seconds)
        } else {
            format!(
                "LINES LOST: {missing} lines in {runs_missing} runs never reached the log (of {} per run)",
                rate * seconds
            )
        }
    );
    println!(
        "  per-run p99: best {:.1} ms, median {:.1} ms, worst {:.1} ms; runs with p99 over 100 ms: {over} of {runs} (target none: {})",
        p99s[0],
        p99s[p99s.len() / 2],
        p99s[p99s.len() - 1],
        verdict(over == 0 && missing == 0)
    );
    println!(
        "  all lines: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; median per-run p50 {:.1} ms; worst per-run max {worst_max:.1} ms",
        overall.p50,
        overall.p99,
        overall.max,
        p50s[p50s.len() / 2]
    );
    Ok((if missing == 0 { p99s[p99s.len() - 1] } else { f64::INFINITY }, cpu))
}

async fn steady() -> anyhow::Result<()> {
    let rate = setting("ONEOFF_BENCH_RATE", 1000);
    let seconds = setting("ONEOFF_BENCH_SECONDS", 10);
    let count = setting("ONEOFF_BENCH_ROUNDS", 3);
    println!("one job printing {rate} lines/s for {seconds} s ({}), one WebSocket viewer; {count} rounds", pacing());
    with_server(|server| async move {
        let results = rounds(count, |round| {
            let server = server.clone();
            async move {
                println!("round {round}:");
                steady_round(&server, rate, seconds).await
            }
        })
        .await?;
        let met = results.iter().filter(|p99| **p99 <= 2.0).count();
        println!(
            "p99 of the rounds counted: {}; target p99 ≤ 2 ms met in {met} of {}",
            results.iter().map(|p99| format!("{p99:.2} ms")).collect::<Vec<_>>().join(", "),
            results.len()
        );
        Ok(())
    })
    .await
}

/// One run with one viewer; returns its p99 in milliseconds (infinite when a line was lost or
/// the stored log differs from what the viewer got).
async fn steady_round(server: &Server, rate: u64, seconds: u64) -> anyhow::Result<(f64, CpuReport)> {
    let start_ms = (unix_ns() / 1_000_000) + 2000;
    let run = server.create_run("ticker", ticker_params(rate, seconds, start_ms)).await?;
    let socket = connect(&server.ws_url(run), Some(small_messages())).await?;
    let viewer = tokio::spawn(tick_viewer(socket));
    ensure!(unix_ns() / 1_000_000 < start_ms, "the viewer connected after the job started; raise the lead");
    sleep_until_unix_ms(start_ms).await;
    let cpu = CpuUse::start(&[server]);
    let mut view = viewer.await??;
    let cpu = cpu.report();
    let lines = rate * seconds;
    let missing = view.finish(lines)?;
    let messages = view.messages;
    let stats = percentiles(&mut view.latencies_us);
    // The viewer was sent only stored lines; the store must hold each, in order.
    let stored = server.log_text(run).await?;
    let stored_lines = stored.lines().enumerate().all(|(index, line)| {
        line.split_once(' ').and_then(|(number, _)| number.parse::<u64>().ok()) == Some(index as u64 + 1)
    }) && stored.lines().count() as u64 == lines;
    println!(
        "  {}; {messages} messages ({:.2} lines per message); the stored log {}",
        if missing == 0 {
            format!("the viewer got all {lines} lines once, in order")
        } else {
            format!("LINES LOST: {missing}")
        },
        lines as f64 / messages.saturating_sub(1).max(1) as f64,
        if stored_lines { "holds every line, in order" } else { "DIFFERS from the lines written" }
    );
    println!(
        "  job write → viewer receipt: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (target p99 ≤ 2 ms: {})",
        stats.p50,
        stats.p99,
        stats.max,
        verdict(stats.p99 <= 2.0 && missing == 0 && stored_lines)
    );
    Ok((if missing == 0 && stored_lines { stats.p99 } else { f64::INFINITY }, cpu))
}

// ---------------------------------------------------------------------------------------
// Tail-first open of a big finished run

/// GET `path` on `server` as JSON, failing on an error status.
async fn get_json(server: &Server, path: &str) -> anyhow::Result<serde_json::Value> {
    let response = server.http.get(format!("{}{path}", server.base)).send().await?;
    let status = response.status();
    let body: serde_json::Value = response.json().await?;
    ensure!(status.is_success(), "GET {path} answered {status}: {body}");
    Ok(body)
}

fn page_seqs(page: &serde_json::Value) -> Vec<u64> {
    page["entries"].as_array().map_or(Vec::new(), |entries| entries.iter().filter_map(|e| e["seq"].as_u64()).collect())
}

async fn tail_open() -> anyhow::Result<()> {
    let lines = setting("ONEOFF_BENCH_TAIL_LINES", 1_000_000);
    let page = setting("ONEOFF_BENCH_TAIL_PAGE", 2000);
    let count = setting("ONEOFF_BENCH_ROUNDS", 3);
    println!("a finished run of `seq 1 {lines}` opened at its end, pages of {page}; {count} rounds");
    with_server(|server| async move {
        let run = server.create_run("flood", json!({ "lines": lines })).await?;
        let stored = Instant::now();
        while !["succeeded", "failed", "cancelled"].contains(&server.run_status(run).await?.as_str()) {
            ensure!(stored.elapsed() < Duration::from_secs(300), "run {run} did not finish in 300 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let results = rounds(count, |round| {
            let server = server.clone();
            async move {
                let cpu = CpuUse::start(&[&*server]);
                let log = format!("/api/v1/runs/{run}/log");
                let started = Instant::now();
                let tail = get_json(&server, &format!("{log}?tail={page}&limit={page}")).await?;
                let first_page = started.elapsed();
                ensure!(page_seqs(&tail) == (lines - page + 1..=lines).collect::<Vec<_>>(), "tail page: {:?}", &page_seqs(&tail)[..3]);
                let mut prev = tail["prev"].as_u64().unwrap_or(0);
                for _ in 0..5 {
                    let older = get_json(&server, &format!("{log}?before={prev}&limit={page}")).await?;
                    ensure!(page_seqs(&older) == (prev - page..prev).collect::<Vec<_>>(), "page before {prev}");
                    prev = older["prev"].as_u64().unwrap_or(0);
                }
                let six_pages = started.elapsed();
                let search_started = Instant::now();
                let mut answer = get_json(&server, &format!("{log}/search?q=needle")).await?;
                let one_search = search_started.elapsed();
                let mut requests = 1;
                while answer["done"] != true {
                    answer = get_json(&server, &format!("{log}/search?q=needle&after={}", answer["next"])).await?;
                    requests += 1;
                }
                let whole_search = search_started.elapsed();
                ensure!(answer["next"] == lines, "the search covered the log: {answer}");
                let cli = cli_logs_to_file(&server, run, lines).await?;
                println!(
                    "round {round}: tail page {:.1} ms, tail + 5 pages back {:.1} ms | search: one request {:.1} ms, whole log {:.1} ms in {requests} requests | `oneoff logs > file` {:.3} s",
                    first_page.as_secs_f64() * 1000.0,
                    six_pages.as_secs_f64() * 1000.0,
                    one_search.as_secs_f64() * 1000.0,
                    whole_search.as_secs_f64() * 1000.0,
                    cli.as_secs_f64(),
                );
                Ok(((first_page.as_secs_f64(), six_pages.as_secs_f64(), one_search.as_secs_f64(), whole_search.as_secs_f64(), cli.as_secs_f64()), cpu.report()))
            }
        })
        .await?;
        let pick = |index: usize| median(results.iter().map(|result| [result.0, result.1, result.2, result.3, result.4][index]).collect());
        println!(
            "median of {} rounds: tail page {:.1} ms, tail + 5 pages {:.1} ms, one search request {:.1} ms, whole-log search {:.1} ms, `oneoff logs > file` {:.3} s (target ≤ 1 s: {})",
            results.len(),
            pick(0) * 1000.0,
            pick(1) * 1000.0,
            pick(2) * 1000.0,
            pick(3) * 1000.0,
            pick(4),
            verdict(pick(4) <= 1.0)
        );
        Ok(())
    })
    .await
}

/// Times `oneoff logs RUN > file` with the server binary as the CLI, and checks the file:
/// `1..=lines`, one per line.
async fn cli_logs_to_file(server: &Server, run: i64, lines: u64) -> anyhow::Result<Duration> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("log.txt");
    let started = Instant::now();
    let status = tokio::process::Command::new(server_binary()?)
        .args(["logs", "--server", &server.base, &run.to_string()])
        .stdout(std::fs::File::create(&path)?)
        .stderr(Stdio::inherit())
        .status()
        .await?;
    let elapsed = started.elapsed();
    ensure!(status.success(), "oneoff logs failed: {status}");
    let text = std::fs::read_to_string(&path)?;
    let mut count = 0u64;
    for (index, line) in text.lines().enumerate() {
        ensure!(
            line.parse::<u64>().ok() == Some(index as u64 + 1),
            "line {} of the CLI's output is {line:?}",
            index + 1
        );
        count += 1;
    }
    ensure!(count == lines, "the CLI printed {count} lines of {lines}");
    Ok(elapsed)
}
