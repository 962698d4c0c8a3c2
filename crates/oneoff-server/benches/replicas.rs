//! Several `oneoff serve` replicas on one PostgreSQL, under load: live logs across replicas,
//! the firehose into PostgreSQL, many runs spread over the replicas, and a replica's death.
//!
//! The benchmark starts one PostgreSQL server of its own with PostgreSQL's durable settings
//! (`oneoff_testpg::Postgres::start_new_durable`: `fsync`, `synchronous_commit` and
//! `full_page_writes` on), takes a fresh database per scenario, and runs the replicas as real
//! release `oneoff serve` processes (`target/release/oneoff`, or `ONEOFF_BIN`) named `a`, `b`,
//! `c`, each with `database` set to that database. The paced job, the viewers, their checks and
//! the CPU accounting (quiet-machine wait, DISTURBED rounds) are those of `streams.rs`, in
//! `common/mod.rs`; the CPU lines here also account the PostgreSQL server and its backends.
//! Scenarios (`ONEOFF_BENCH=cross,firehose_pg,spread,failover`, default all):
//!
//! - `cross`: 2 replicas. One paced job at `ONEOFF_BENCH_CROSS_RATE` lines/s (1,000) for
//!   `ONEOFF_BENCH_SECONDS` (10 s) on one replica, `ONEOFF_BENCH_CROSS_VIEWERS` (200) WebSocket
//!   viewers on the other: latency from the job's write to the viewer's receipt, every viewer
//!   gets every line. Then, in the same round, the same with the viewers on the replica running
//!   the job (the in-memory path) as the reference.
//! - `firehose_pg`: `seq 1 N` (N = `ONEOFF_BENCH_LINES`, 1,000,000) posted to `a`, one WebSocket
//!   viewer on `b` connected right after the POST: time from the POST until the viewer has
//!   every line and `done` (final state `succeeded`: every line stored). References in the same
//!   round: the viewer on the replica running the job, and one SQLite server.
//! - `spread`: `ONEOFF_BENCH_REPLICAS` (3) replicas, `ONEOFF_BENCH_SPREAD_RUNS` (150) paced runs
//!   at `ONEOFF_BENCH_SPREAD_RATE` lines/s (100) each at the same time, posted to the replicas in
//!   turn, one WebSocket viewer per run on a replica other than the one running it: per-run
//!   latency percentiles, the worst per-run p99.
//! - `failover`: 3 replicas, a job with `max_concurrent = 1`: one run executing, two queued.
//!   `kill -9` of the replica running it; time until the survivors report the run `lost`, and
//!   until the oldest queued run is running on a survivor. Once for each `replica_timeout` in
//!   `ONEOFF_BENCH_REPLICA_TIMEOUTS` (seconds, `3,15`; 15 is the default and is left out of the
//!   config), `ONEOFF_BENCH_FAILOVER_ROUNDS` (1) times each. Fails, saying so, when the
//!   survivors do not detect the loss within twice the timeout plus 10 s.
//!
//! Which replica runs a run is the run's `replica` field once it is `running`; a server that
//! does not report one runs the runs posted to it (one in-memory queue per replica), so the
//! benchmark then takes the replica it posted to. `ONEOFF_BENCH_ROUNDS` (3) rounds of `cross`,
//! `firehose_pg` and `spread`.
//!
//! ```sh
//! cargo build --release -p oneoff && cargo bench -p oneoff-server --bench replicas
//! ```

mod common;

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use oneoff_testpg::Postgres;
use serde_json::{json, Value};
use tokio::task::JoinHandle;

use common::*;

const ALL: &str = "cross,firehose_pg,spread,failover";

/// The job of `failover`: one run at a time, so that the others wait in the queue.
const SERIAL_JOB: &str = r#"
[[job]]
name = "serial"
command = ["sleep", "600"]
max_concurrent = 1
"#;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(TICKER) {
        return ticker(&args[2..]);
    }
    let selected = selected_scenarios(ALL)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    println!("server binary: {}", server_binary()?.display());
    println!("open files limit (soft): {}", open_files_limit().map_or("unknown".into(), |limit| limit.to_string()));
    let postgres = Postgres::start_new_durable();
    let show = |setting: &str| postgres.psql("postgres", &format!("SHOW {setting}")).trim().to_string();
    println!(
        "PostgreSQL: {} on port {}; fsync {}, synchronous_commit {}, full_page_writes {}, max_connections {}",
        postgres.psql("postgres", "SELECT version()").trim(),
        postgres.port(),
        show("fsync"),
        show("synchronous_commit"),
        show("full_page_writes"),
        show("max_connections"),
    );
    runtime.block_on(async {
        for name in selected {
            println!("\n== {name} ==");
            match name.as_str() {
                "cross" => cross(&postgres).await?,
                "firehose_pg" => firehose_pg(&postgres).await?,
                "spread" => spread(&postgres).await?,
                "failover" => failover(&postgres).await?,
                _ => unreachable!("checked above"),
            }
        }
        Ok(())
    })
}

/// `count` replicas named `a`, `b`, `c`… on `database`.
fn replica_setups(database: &str, count: usize, server_extra: &str, jobs: &str) -> Vec<ServerSetup> {
    (0..count)
        .map(|index| ServerSetup {
            database: Some(database.to_string()),
            replica: Some(((b'a' + index as u8) as char).to_string()),
            server_extra: server_extra.to_string(),
            jobs: jobs.to_string(),
        })
        .collect()
}

/// Where the benchmark learnt which replica runs a run.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum OwnerSource {
    /// The run's `replica` field.
    Field,
    /// The server reports no `replica`: the replica the run was posted to runs it.
    PostedTo,
}

impl OwnerSource {
    fn describe(self) -> &'static str {
        match self {
            OwnerSource::Field => "the replica running each run is its `replica` field",
            OwnerSource::PostedTo => {
                "the runs have no `replica` field: each replica runs the runs posted to it (taken as the owner)"
            }
        }
    }
}

/// The index of the replica named in the run's JSON, or `None` when it names none.
fn replica_in(replicas: &[Arc<Server>], run: &Value) -> anyhow::Result<Option<usize>> {
    let Some(name) = run.get("replica").and_then(Value::as_str) else { return Ok(None) };
    let index = replicas.iter().position(|replica| replica.name == name);
    Ok(Some(index.with_context(|| format!("the run names replica {name:?}, which this benchmark did not start"))?))
}

/// Waits (at most 30 s) until the run is running, then says which replica runs it.
async fn owner_of(replicas: &[Arc<Server>], posted_to: usize, run: i64) -> anyhow::Result<(usize, OwnerSource)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let record = replicas[posted_to].run(run).await?;
        match record["status"].as_str() {
            Some("running") => {
                return Ok(match replica_in(replicas, &record)? {
                    Some(index) => (index, OwnerSource::Field),
                    None => (posted_to, OwnerSource::PostedTo),
                });
            }
            Some("queued") => {}
            other => bail!("run {run} is {other:?}, not running: {record}"),
        }
        ensure!(Instant::now() < deadline, "run {run} was still queued 30 s after its POST: {record}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// What the viewers of one or more paced runs received.
struct TickSummary {
    all: Percentiles,
    per_view: Vec<Percentiles>,
    /// Lines the jobs wrote that some viewer never received.
    missing: u64,
    views_missing: usize,
    messages: usize,
    samples: usize,
    /// The worst latency of each line over the viewers that got every line.
    worst_us: Vec<u32>,
}

async fn collect_views(tasks: Vec<JoinHandle<anyhow::Result<TickView>>>, lines: u64) -> anyhow::Result<TickSummary> {
    let mut all = Vec::new();
    let mut per_view = Vec::with_capacity(tasks.len());
    let (mut missing, mut views_missing, mut messages) = (0, 0, 0);
    let mut worst_us = Vec::new();
    for task in tasks {
        let mut view = task.await??;
        let lost = view.finish(lines)?;
        missing += lost;
        views_missing += usize::from(lost > 0);
        messages += view.messages;
        if lost == 0 {
            fold_worst(&mut worst_us, &view.latencies_us);
        }
        per_view.push(percentiles(&mut view.latencies_us));
        all.append(&mut view.latencies_us);
    }
    let samples = all.len();
    Ok(TickSummary { all: percentiles(&mut all), per_view, missing, views_missing, messages, samples, worst_us })
}

// ---------------------------------------------------------------------------------------
// cross: one job, 200 viewers on the other replica

/// Where the viewers of `cross` are, relative to the replica running the job.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Viewers {
    OnOtherReplica,
    OnOwner,
}

async fn cross(postgres: &Postgres) -> anyhow::Result<()> {
    let viewers = setting("ONEOFF_BENCH_CROSS_VIEWERS", 200) as usize;
    let rate = setting("ONEOFF_BENCH_CROSS_RATE", 1000);
    let seconds = setting("ONEOFF_BENCH_SECONDS", 10);
    let count = setting("ONEOFF_BENCH_ROUNDS", 3);
    println!(
        "2 replicas; one job printing {rate} lines/s for {seconds} s ({}), {viewers} WebSocket viewers on the other replica, then on the job's own replica; {count} rounds",
        pacing()
    );
    let database = postgres.new_database();
    let database_pid = postgres.server_pid();
    with_servers(&replica_setups(&database, 2, "", ""), |replicas| async move {
        let results = rounds(count, |attempt| {
            let replicas = replicas.clone();
            async move {
                println!("round {attempt}:");
                let (other, other_cpu) =
                    cross_round(&replicas, database_pid, viewers, rate, seconds, Viewers::OnOtherReplica).await?;
                let (own, own_cpu) =
                    cross_round(&replicas, database_pid, viewers, rate, seconds, Viewers::OnOwner).await?;
                Ok(((other, own), other_cpu.and(own_cpu)))
            }
        })
        .await?;
        let met = results.iter().filter(|(other, _)| *other <= 50.0).count();
        println!(
            "p99 of the rounds counted, viewers on the other replica: {}; target p99 ≤ 50 ms met in {met} of {}",
            results.iter().map(|(other, _)| show_ms(*other)).collect::<Vec<_>>().join(", "),
            results.len()
        );
        println!(
            "reference, viewers on the job's replica (in memory): {}",
            results.iter().map(|(_, own)| show_ms(*own)).collect::<Vec<_>>().join(", ")
        );
        Ok(())
    })
    .await
}

/// One fan-out run; returns its p99 in milliseconds (infinite when lines were lost).
async fn cross_round(
    replicas: &[Arc<Server>],
    database_pid: Option<u32>,
    viewers: usize,
    rate: u64,
    seconds: u64,
    place: Viewers,
) -> anyhow::Result<(f64, CpuReport)> {
    // The job starts printing at a fixed instant, once every viewer is connected.
    let lead = Duration::from_secs(2) + Duration::from_millis(5 * viewers as u64);
    let start_ms = (unix_ns() / 1_000_000) + lead.as_millis() as u64;
    let run = replicas[0].create_run("ticker", ticker_params(rate, seconds, start_ms)).await?;
    let (owner, source) = owner_of(replicas, 0, run).await?;
    let viewer_replica = match place {
        Viewers::OnOwner => owner,
        Viewers::OnOtherReplica => (owner + 1) % replicas.len(),
    };
    let connecting = Instant::now();
    let sockets = connect_many(&replicas[viewer_replica].ws_url(run), viewers, 100, Some(small_messages())).await?;
    let connected = connecting.elapsed();
    ensure!(unix_ns() / 1_000_000 < start_ms, "the viewers connected after the job started; raise the lead");
    let tasks: Vec<JoinHandle<anyhow::Result<TickView>>> =
        sockets.into_iter().map(|socket| tokio::spawn(tick_viewer(socket))).collect();
    sleep_until_unix_ms(start_ms).await;
    let servers: Vec<&Server> = replicas.iter().map(|replica| &**replica).collect();
    let cpu = CpuUse::start(&servers).with_database(database_pid);
    let lines = rate * seconds;
    let summary = collect_views(tasks, lines).await?;
    let cpu = cpu.report();
    let worst_p99 = summary.per_view.iter().map(|stats| stats.p99).fold(0.0, f64::max);
    let (owner_name, viewer_name) = (&replicas[owner].name, &replicas[viewer_replica].name);
    println!(
        "  job on {owner_name}, {viewers} viewers on {viewer_name} ({}; {}), connected in {:.2} s; {} ({} samples, {:.1} messages per viewer per second)",
        if place == Viewers::OnOwner { "the reference" } else { "across replicas" },
        source.describe(),
        connected.as_secs_f64(),
        if summary.missing == 0 {
            format!("each got all {lines} lines once, in order")
        } else {
            format!("LINES LOST: {} lines never reached {} of the viewers", summary.missing, summary.views_missing)
        },
        summary.samples,
        summary.messages as f64 / viewers as f64 / seconds as f64
    );
    let target = match place {
        Viewers::OnOtherReplica => {
            format!(" (target p99 ≤ 50 ms: {})", verdict(summary.all.p99 <= 50.0 && summary.missing == 0))
        }
        Viewers::OnOwner => String::new(),
    };
    println!(
        "  job write → viewer receipt: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; worst viewer's p99 {worst_p99:.1} ms{target}",
        summary.all.p50, summary.all.p99, summary.all.max,
    );
    println!("  slowest 100 ms windows (job's clock): {}", slowest_windows(&summary.worst_us, rate, 5));
    Ok((if summary.missing == 0 { summary.all.p99 } else { f64::INFINITY }, cpu))
}

// ---------------------------------------------------------------------------------------
// firehose_pg: a million lines into PostgreSQL, the viewer on another replica

async fn firehose_pg(postgres: &Postgres) -> anyhow::Result<()> {
    let lines = setting("ONEOFF_BENCH_LINES", 1_000_000);
    let count = setting("ONEOFF_BENCH_ROUNDS", 3);
    println!(
        "job `seq 1 {lines}`, one WebSocket viewer connected right after the POST: on the other replica (2 replicas on PostgreSQL), on the job's replica, and on one SQLite server; {count} rounds"
    );
    let database = postgres.new_database();
    let database_pid = postgres.server_pid();
    let mut setups = replica_setups(&database, 2, "", "");
    setups.push(ServerSetup::default()); // SQLite in its own data directory.
    with_servers(&setups, |servers| async move {
        let (replicas, sqlite) = (servers[..2].to_vec(), servers[2].clone());
        let results = rounds(count, |round| {
            let (replicas, sqlite) = (replicas.clone(), sqlite.clone());
            async move {
                let every: Vec<&Server> = replicas.iter().chain([&sqlite]).map(|server| &**server).collect();
                let cpu = CpuUse::start(&every).with_database(database_pid);
                let pipe = pipe_alone(lines)?;
                let other = flood_across(&replicas, lines, Viewers::OnOtherReplica).await?;
                let own = flood_across(&replicas, lines, Viewers::OnOwner).await?;
                let single = flood(&sqlite, &sqlite, lines).await?;
                println!(
                    "round {round}: pipe alone {:.3} s | PostgreSQL, viewer on the other replica: every line {:.3} s, done (succeeded) {:.3} s, {} messages | PostgreSQL, viewer on the job's replica: {:.3} s, {:.3} s, {} messages | SQLite, one server: {:.3} s, {:.3} s, {} messages",
                    pipe.as_secs_f64(),
                    other.0.as_secs_f64(),
                    other.1.as_secs_f64(),
                    other.2,
                    own.0.as_secs_f64(),
                    own.1.as_secs_f64(),
                    own.2,
                    single.0.as_secs_f64(),
                    single.1.as_secs_f64(),
                    single.2,
                );
                Ok(((other.1.as_secs_f64(), own.1.as_secs_f64(), single.1.as_secs_f64()), cpu.report()))
            }
        })
        .await?;
        let other = median(results.iter().map(|result| result.0).collect());
        let own = median(results.iter().map(|result| result.1).collect());
        let single = median(results.iter().map(|result| result.2).collect());
        println!(
            "median of {} rounds, POST → done (every line received and stored): PostgreSQL, viewer on the other replica {other:.3} s (target ≤ 1.5 s: {}); references: PostgreSQL, viewer on the job's replica {own:.3} s; SQLite, one server {single:.3} s",
            results.len(),
            verdict(other <= 1.5),
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

/// One flood posted to `a`, its viewer (connected right after the POST) on the other replica or
/// on `a`. The viewer must connect before the run is claimed, so the owner is checked after the
/// run: when the shared queue gave the run to the other replica, the flood is posted again (at
/// most 5 times), since then the viewer was not where it should be.
async fn flood_across(
    replicas: &[Arc<Server>],
    lines: u64,
    place: Viewers,
) -> anyhow::Result<(Duration, Duration, usize)> {
    let viewer_replica = match place {
        Viewers::OnOwner => 0,
        Viewers::OnOtherReplica => 1,
    };
    for _ in 0..5 {
        let (every, done, messages, run) = flood_run(&replicas[0], &replicas[viewer_replica], lines).await?;
        let owner = replica_in(replicas, &replicas[0].run(run).await?)?.unwrap_or(0);
        if (owner == viewer_replica) == (place == Viewers::OnOwner) {
            return Ok((every, done, messages));
        }
        println!("  (run {run} ran on {}, where its viewer was not meant to be: posted again)", replicas[owner].name);
    }
    bail!("in 5 attempts the queue never gave the flood to the replica this measurement needs")
}

async fn flood(post_to: &Server, view_on: &Server, lines: u64) -> anyhow::Result<(Duration, Duration, usize)> {
    let (every, done, messages, _) = flood_run(post_to, view_on, lines).await?;
    Ok((every, done, messages))
}

/// Posts `seq 1 lines` to `post_to` and follows it over WebSocket on `view_on` from right after
/// the POST: (every line received, `done` received, messages, the run's id).
async fn flood_run(post_to: &Server, view_on: &Server, lines: u64) -> anyhow::Result<(Duration, Duration, usize, i64)> {
    let started = Instant::now();
    let run = post_to.create_run("flood", json!({ "lines": lines })).await?;
    let socket = connect(&view_on.ws_url(run), None).await?;
    let mut view = FloodView::new(started, lines);
    read_ws(socket, |text| view.message(text).map(drop)).await?;
    let (every, done, messages) = view.result()?;
    Ok((every, done, messages, run))
}

// ---------------------------------------------------------------------------------------
// spread: many runs over three replicas, each viewer elsewhere

async fn spread(postgres: &Postgres) -> anyhow::Result<()> {
    let replica_count = setting("ONEOFF_BENCH_REPLICAS", 3).max(2) as usize;
    let runs = setting("ONEOFF_BENCH_SPREAD_RUNS", 150) as usize;
    let rate = setting("ONEOFF_BENCH_SPREAD_RATE", 100);
    let seconds = setting("ONEOFF_BENCH_SECONDS", 10);
    let count = setting("ONEOFF_BENCH_ROUNDS", 3);
    println!(
        "{replica_count} replicas; {runs} runs printing {rate} lines/s each for {seconds} s ({}) at the same time, posted to the replicas in turn, one WebSocket viewer each on a replica other than the run's; {count} rounds",
        pacing()
    );
    let database = postgres.new_database();
    let database_pid = postgres.server_pid();
    with_servers(&replica_setups(&database, replica_count, "", ""), |replicas| async move {
        let results = rounds(count, |attempt| {
            let replicas = replicas.clone();
            async move {
                println!("round {attempt}:");
                spread_round(&replicas, database_pid, runs, rate, seconds).await
            }
        })
        .await?;
        let met = results.iter().filter(|p99| **p99 <= 200.0).count();
        println!(
            "worst per-run p99 of the rounds counted: {}; target ≤ 200 ms met in {met} of {}",
            results.iter().map(|p99| show_ms(*p99)).collect::<Vec<_>>().join(", "),
            results.len()
        );
        Ok(())
    })
    .await
}

/// One round of `spread`; returns the worst run's p99 in milliseconds.
async fn spread_round(
    replicas: &[Arc<Server>],
    database_pid: Option<u32>,
    runs: usize,
    rate: u64,
    seconds: u64,
) -> anyhow::Result<(f64, CpuReport)> {
    let lead = Duration::from_secs(2) + Duration::from_millis(40 * runs as u64);
    let start_ms = (unix_ns() / 1_000_000) + lead.as_millis() as u64;
    let creating = Instant::now();
    let mut posted = Vec::with_capacity(runs);
    for index in 0..runs {
        let replica = index % replicas.len();
        posted.push((replica, replicas[replica].create_run("ticker", ticker_params(rate, seconds, start_ms)).await?));
    }
    let mut owners = vec![0usize; replicas.len()];
    let mut source = OwnerSource::PostedTo;
    let mut tasks: Vec<JoinHandle<anyhow::Result<TickView>>> = Vec::with_capacity(runs);
    for (posted_to, run) in posted {
        let (owner, found) = owner_of(replicas, posted_to, run).await?;
        (owners[owner], source) = (owners[owner] + 1, found);
        let viewer = (owner + 1) % replicas.len();
        let socket = connect(&replicas[viewer].ws_url(run), Some(small_messages())).await?;
        tasks.push(tokio::spawn(tick_viewer(socket)));
    }
    let created = creating.elapsed();
    ensure!(unix_ns() / 1_000_000 < start_ms, "the viewers connected after the jobs started; raise the lead");
    sleep_until_unix_ms(start_ms).await;
    let servers: Vec<&Server> = replicas.iter().map(|replica| &**replica).collect();
    let cpu = CpuUse::start(&servers).with_database(database_pid);
    let lines = rate * seconds;
    let summary = collect_views(tasks, lines).await?;
    let cpu = cpu.report();
    let mut p99s: Vec<f64> = summary.per_view.iter().map(|stats| stats.p99).collect();
    p99s.sort_by(f64::total_cmp);
    let over = p99s.iter().filter(|p99| **p99 > 200.0).count();
    let worst_max = summary.per_view.iter().map(|stats| stats.max).fold(0.0, f64::max);
    let spread: Vec<String> =
        replicas.iter().zip(&owners).map(|(replica, runs)| format!("{} {runs}", replica.name)).collect();
    println!(
        "  {runs} runs created and their viewers connected in {:.2} s; runs per replica: {} ({}); {}",
        created.as_secs_f64(),
        spread.join(", "),
        source.describe(),
        if summary.missing == 0 {
            format!("every viewer got all {lines} lines of its run once, in order")
        } else {
            format!(
                "LINES LOST: {} lines in {} runs never reached the viewer (of {lines} per run)",
                summary.missing, summary.views_missing
            )
        }
    );
    println!(
        "  per-run p99: best {:.1} ms, median {:.1} ms, worst {:.1} ms; runs with p99 over 200 ms: {over} of {runs} (target none: {})",
        p99s[0],
        p99s[p99s.len() / 2],
        p99s[p99s.len() - 1],
        verdict(over == 0 && summary.missing == 0)
    );
    println!(
        "  all lines: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; worst per-run max {worst_max:.1} ms",
        summary.all.p50, summary.all.p99, summary.all.max,
    );
    Ok((if summary.missing == 0 { p99s[p99s.len() - 1] } else { f64::INFINITY }, cpu))
}

// ---------------------------------------------------------------------------------------
// failover: kill -9 of the replica running a job while runs wait in the queue

async fn failover(postgres: &Postgres) -> anyhow::Result<()> {
    let timeouts = std::env::var("ONEOFF_BENCH_REPLICA_TIMEOUTS").unwrap_or_else(|_| "3,15".into());
    let timeouts: Vec<u64> = timeouts
        .split(',')
        .map(str::trim)
        .filter(|text| !text.is_empty())
        .map(|text| text.parse().with_context(|| format!("ONEOFF_BENCH_REPLICA_TIMEOUTS: {text:?} is not seconds")))
        .collect::<anyhow::Result<_>>()?;
    let count = setting("ONEOFF_BENCH_FAILOVER_ROUNDS", 1);
    println!(
        "3 replicas; job `serial` (`sleep 600`, max_concurrent = 1): one run executing, two queued; kill -9 of the replica running it; replica_timeout {} s; {count} rounds each",
        timeouts.iter().map(u64::to_string).collect::<Vec<_>>().join(" s and ")
    );
    let mut figures = Vec::new();
    for timeout in timeouts {
        for round in 1..=count {
            let database = postgres.new_database();
            let server_extra =
                if timeout == 15 { String::new() } else { format!("replica_timeout = \"{timeout}s\"\n") };
            let setups = replica_setups(&database, 3, &server_extra, SERIAL_JOB);
            let figure = Arc::new(std::sync::Mutex::new(None));
            let slot = figure.clone();
            with_servers(&setups, |replicas| async move {
                let measured = failover_round(&replicas, timeout).await?;
                *slot.lock().map_err(|_| anyhow::anyhow!("a poisoned lock"))? = Some(measured);
                Ok(())
            })
            .await?;
            let measured = figure.lock().map_err(|_| anyhow::anyhow!("a poisoned lock"))?.take();
            let (lost, next) = measured.context("the round measured nothing")?;
            println!(
                "replica_timeout {timeout} s, round {round}: kill -9 → run lost {:.2} s, → next queued run running on a survivor {:.2} s ({:.2} s after the loss)",
                lost.as_secs_f64(),
                next.as_secs_f64(),
                (next - lost).as_secs_f64()
            );
            figures.push((timeout, lost, next));
        }
    }
    for (timeout, lost, next) in figures {
        println!(
            "replica_timeout {timeout} s (heartbeat every {:.1} s): lost after {:.2} s = {:.2} × the timeout; next run after {:.2} s",
            timeout as f64 / 3.0,
            lost.as_secs_f64(),
            lost.as_secs_f64() / timeout as f64,
            next.as_secs_f64()
        );
    }
    Ok(())
}

/// One kill: returns the times from the kill until the survivors report the run `lost`, and
/// until the oldest queued run is running on a survivor.
async fn failover_round(replicas: &[Arc<Server>], timeout: u64) -> anyhow::Result<(Duration, Duration)> {
    let first = replicas[0].create_run("serial", json!({})).await?;
    let (owner, source) = owner_of(replicas, 0, first).await?;
    let survivors: Vec<usize> = (0..replicas.len()).filter(|index| *index != owner).collect();
    // Posted where the first run was: before the shared queue, each replica enforces
    // `max_concurrent` for its own runs only, and these must wait behind the first.
    let next = replicas[0].create_run("serial", json!({})).await?;
    let last = replicas[0].create_run("serial", json!({})).await?;
    for run in [next, last] {
        let status = replicas[survivors[0]].run_status(run).await?;
        ensure!(status == "queued", "run {run} is {status}, not queued behind run {first} (max_concurrent = 1)");
    }
    let owner_name = replicas[owner].name.clone();
    println!(
        "  run {first} running on {owner_name} ({}), runs {next} and {last} queued; kill -9 of {owner_name}",
        source.describe()
    );
    let killed = Instant::now();
    replicas[owner].kill().await?;
    // Asked of the survivors in turn, as through a load balancer.
    let ask = |attempt: usize| &replicas[survivors[attempt % survivors.len()]];
    let detection_limit = Duration::from_secs(2 * timeout + 10);
    let mut attempt = 0;
    let lost = loop {
        let status = ask(attempt).run_status(first).await?;
        attempt += 1;
        match status.as_str() {
            "lost" => break killed.elapsed(),
            "running" => {}
            other => bail!("run {first} of the killed replica {owner_name} became `{other}`, not `lost`"),
        }
        if killed.elapsed() > detection_limit {
            bail!(
                "replica {owner_name} was killed {:.0} s ago and the survivors still report its run {first} as `running` \
                 (replica_timeout = {timeout} s): this server does not detect a dead replica. This scenario needs \
                 heartbeats and the survivors' lost-replica monitor.",
                killed.elapsed().as_secs_f64()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let start_limit = lost + Duration::from_secs(timeout + 10);
    let started = loop {
        let record = ask(attempt).run(next).await?;
        attempt += 1;
        match record["status"].as_str() {
            Some("running") => {
                if let Some(runner) = replica_in(replicas, &record)? {
                    ensure!(runner != owner, "run {next} is running on the killed replica {owner_name}: {record}");
                }
                break killed.elapsed();
            }
            Some("queued") => {}
            other => bail!("queued run {next} became {other:?} after {owner_name} was lost: {record}"),
        }
        let later = ask(attempt).run_status(last).await?;
        ensure!(later == "queued", "run {last} is {later} while the older run {next} still waits: not FIFO");
        if killed.elapsed() > start_limit {
            bail!(
                "run {first} became `lost` {:.1} s after the kill, but the queued run {next} had not started on a \
                 survivor {:.0} s later: the queue does not pass to the surviving replicas",
                lost.as_secs_f64(),
                (start_limit - lost).as_secs_f64()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let runner = replica_in(replicas, &ask(attempt).run(next).await?)?
        .map_or("a survivor".into(), |index| replicas[index].name.clone());
    let log = ask(attempt).log_text(first).await?;
    // The replicas are named `a`, `b`, `c`: the name must be a word of a line about a replica.
    let names_owner = |line: &str| {
        line.to_lowercase().contains("replica")
            && line
                .split(|char: char| !char.is_alphanumeric() && char != '-' && char != '_')
                .any(|word| word == owner_name)
    };
    let system_line = log.lines().rev().find(|line| names_owner(line)).map(str::to_string);
    println!(
        "  run {first} lost after {:.2} s; run {next} running on {runner} after {:.2} s; run {last} still queued; {}",
        lost.as_secs_f64(),
        started.as_secs_f64(),
        system_line.map_or_else(
            || format!("NO line of run {first}'s log names the lost replica {owner_name}"),
            |line| format!("its log says: {line:?}")
        )
    );
    // The queue holds one more run; cancel it so that the survivors stop without draining it.
    for run in [next, last] {
        let _ = ask(attempt).cancel(run).await;
    }
    Ok((lost, started))
}
