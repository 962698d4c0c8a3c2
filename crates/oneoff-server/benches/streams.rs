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
//!   latency from the job's write to the viewer's receipt, every viewer gets every line.
//! - `idle`: `ONEOFF_BENCH_IDLE_VIEWERS` (10,000) WebSocket viewers on a quiet run: growth
//!   of the server's VmRSS per viewer.
//! - `many`: `ONEOFF_BENCH_RUNS` (200) runs printing 1,000 lines/s each at the same time,
//!   one WebSocket viewer each: per-run latency percentiles.
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
//! Build the server first; `ONEOFF_BIN` points to another binary:
//!
//! ```sh
//! cargo build --release -p oneoff && cargo bench -p oneoff-server --bench streams
//! ```

use std::borrow::Cow;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const TICKER: &str = "__oneoff_bench_ticker";
const ALL: &str = "firehose,fanout,idle,many";

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(TICKER) {
        return ticker(&args[2..]);
    }
    let selected = std::env::var("ONEOFF_BENCH").unwrap_or_else(|_| ALL.into());
    let selected: Vec<&str> = selected.split(',').map(str::trim).filter(|name| !name.is_empty()).collect();
    for name in &selected {
        ensure!(ALL.split(',').any(|known| known == *name), "unknown scenario {name:?}; ONEOFF_BENCH takes {ALL}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    println!("server binary: {}", server_binary()?.display());
    println!("open files limit (soft): {}", open_files_limit().map_or("unknown".into(), |limit| limit.to_string()));
    runtime.block_on(async {
        for name in selected {
            println!("\n== {name} ==");
            match name {
                "firehose" => firehose().await?,
                "fanout" => fanout().await?,
                "idle" => idle().await?,
                "many" => many().await?,
                _ => unreachable!("checked above"),
            }
        }
        Ok(())
    })
}

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|text| text.trim().parse().ok()).unwrap_or(default)
}

fn unix_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_nanos() as u64)
}

/// The job of `fanout` and `many`: `RATE SECONDS START_UNIX_MS BURST`. Line `i` is due at
/// `start + (i - 1) / RATE`; the job wakes up every `BURST` lines and writes the lines due, each
/// with its own `write(2)` and timestamp (BURST = 1: one wake-up per line).
fn ticker(args: &[String]) -> anyhow::Result<()> {
    let [rate, seconds, start_ms, burst] = args else { bail!("usage: {TICKER} RATE SECONDS START_UNIX_MS BURST") };
    let (rate, seconds, start_ms, burst): (u64, u64, u64, u64) =
        (rate.parse()?, seconds.parse()?, start_ms.parse()?, burst.parse()?);
    ensure!(rate > 0 && burst > 0, "rate and burst must be positive");
    let begin = Instant::now() + Duration::from_millis(start_ms.saturating_sub(unix_ns() / 1_000_000));
    let period = 1_000_000_000 / rate;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut line = String::with_capacity(64);
    for index in 1..=rate * seconds {
        if (index - 1) % burst == 0 {
            let due = begin + Duration::from_nanos(period * (index - 1));
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        line.clear();
        use std::fmt::Write as _;
        let _ = writeln!(line, "{index} {}", unix_ns());
        out.write_all(line.as_bytes())?; // Stdout is line-buffered: one write(2) per line.
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The server process

fn server_binary() -> anyhow::Result<PathBuf> {
    let path = match std::env::var_os("ONEOFF_BIN") {
        Some(path) => PathBuf::from(path),
        None => {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"), PathBuf::from);
            target.join("release/oneoff")
        }
    };
    ensure!(
        path.exists(),
        "{} does not exist: run `cargo build --release -p oneoff` (or set ONEOFF_BIN)",
        path.display()
    );
    Ok(path)
}

/// `Max open files` soft limit of this process (the server inherits it).
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|line| line.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

struct Server {
    child: tokio::process::Child,
    pid: i32,
    base: String,
    http: reqwest::Client,
    dir: tempfile::TempDir,
}

impl Server {
    async fn start() -> anyhow::Result<Server> {
        let binary = server_binary()?;
        let exe = std::env::current_exe()?;
        let dir = tempfile::tempdir()?;
        let config_path = dir.path().join("bench.toml");
        let data_dir = dir.path().join("data");
        std::fs::write(
            &config_path,
            format!(
                r#"[server]
listen = "127.0.0.1:0"
data_dir = {data_dir:?}
max_concurrent_runs = 256
drain = "1s"

[streams]
max_viewers_per_run = 20000
max_connections = 30000

[[job]]
name = "flood"
command = ["seq", "1", "{{lines}}"]
[[job.param]]
name = "lines"
type = "integer"

[[job]]
name = "ticker"
command = [{exe:?}, "{TICKER}", "{{rate}}", "{{seconds}}", "{{start_ms}}", "{{burst}}"]
nice = {nice}
[[job.param]]
name = "rate"
type = "integer"
[[job.param]]
name = "seconds"
type = "integer"
[[job.param]]
name = "start_ms"
type = "integer"
[[job.param]]
name = "burst"
type = "integer"

[[job]]
name = "quiet"
command = ["sleep", "600"]
"#,
                data_dir = data_dir.display().to_string(),
                exe = exe.display().to_string(),
                nice = setting("ONEOFF_BENCH_JOB_NICE", 0),
            ),
        )?;
        let log = std::fs::File::create(dir.path().join("server.log"))?;
        let mut child = tokio::process::Command::new(&binary)
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .env("ONEOFF_LOG", std::env::var("ONEOFF_BENCH_SERVER_LOG").unwrap_or_else(|_| "warn".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let pid = child.id().context("server exited at once")? as i32;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .context("the server did not say where it listens within 30 s")??
            .context("the server closed its stdout")?;
        let base = first
            .strip_prefix("oneoff listening on ")
            .with_context(|| format!("unexpected first line from the server: {first:?}"))?
            .to_string();
        // Keep reading stdout so the server never blocks or fails on it.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Server { child, pid, base, http: reqwest::Client::new(), dir })
    }

    fn ws_url(&self, run: i64) -> String {
        format!("{}/api/v1/runs/{run}/log/ws?after=0", self.base.replacen("http://", "ws://", 1))
    }

    async fn create_run(&self, job: &str, params: Value) -> anyhow::Result<i64> {
        let response = self
            .http
            .post(format!("{}/api/v1/runs", self.base))
            .json(&json!({"job": job, "params": params}))
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await?;
        ensure!(status.as_u16() == 201, "POST /api/v1/runs answered {status}: {body}");
        body["id"].as_i64().context("run without id")
    }

    async fn run_status(&self, run: i64) -> anyhow::Result<String> {
        let body: Value = self.http.get(format!("{}/api/v1/runs/{run}", self.base)).send().await?.json().await?;
        Ok(body["status"].as_str().unwrap_or_default().to_string())
    }

    async fn cancel(&self, run: i64) -> anyhow::Result<()> {
        let response = self.http.post(format!("{}/api/v1/runs/{run}/cancel", self.base)).send().await?;
        ensure!(response.status().as_u16() == 202, "cancel answered {}", response.status());
        Ok(())
    }

    async fn metric(&self, name: &str) -> anyhow::Result<u64> {
        let text = self.http.get(format!("{}/metrics", self.base)).send().await?.text().await?;
        text.lines()
            .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .and_then(|value| value.trim().parse().ok())
            .with_context(|| format!("no metric {name}"))
    }

    fn rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmRSS")
    }

    /// CPU seconds of the server process, and of the jobs it has reaped.
    fn cpu_seconds(&self) -> (f64, f64) {
        cpu_seconds(&format!("/proc/{}/stat", self.pid))
    }

    /// SIGTERM (running runs are cancelled after the 1 s drain), then wait for the exit.
    async fn stop(mut self) -> anyhow::Result<()> {
        use nix::sys::signal::{kill, Signal};
        let _ = kill(nix::unistd::Pid::from_raw(self.pid), Signal::SIGTERM);
        match tokio::time::timeout(Duration::from_secs(60), self.child.wait()).await {
            Ok(status) => ensure!(status?.success(), "the server exited with a failure; log in {:?}", self.log_path()),
            Err(_) => {
                let _ = self.child.kill().await;
                bail!("the server did not stop within 60 s of SIGTERM");
            }
        }
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        if let Ok(copy) = std::env::var("ONEOFF_BENCH_SERVER_LOG_COPY") {
            std::fs::write(&copy, &log).with_context(|| format!("cannot copy the server log to {copy}"))?;
        }
        for (message, count) in log_summary(&log) {
            println!("server log: {count} × {message}");
        }
        Ok(())
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }
}

/// Warnings and errors of the server's log, counted by level, target and message.
fn log_summary(log: &str) -> Vec<(String, usize)> {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for line in log.lines() {
        // Drop colours: ESC [ ... m.
        let mut plain = String::with_capacity(line.len());
        let mut chars = line.chars();
        while let Some(char) = chars.next() {
            if char == '\u{1b}' {
                chars.by_ref().find(|char| *char == 'm');
            } else {
                plain.push(char);
            }
        }
        let mut words = plain.split_whitespace().skip(1); // the timestamp
        let Some(level) = words.next().filter(|level| *level == "WARN" || *level == "ERROR") else { continue };
        // The message ends where the `key=value` fields start.
        let message: Vec<&str> = words.take_while(|word| !word.contains('=')).collect();
        let key = format!("{level} {}", message.join(" "));
        match counts.iter_mut().find(|(known, _)| *known == key) {
            Some((_, count)) => *count += 1,
            None => counts.push((key, 1)),
        }
    }
    counts
}

/// User + system CPU seconds from a `/proc/PID/stat` file (clock ticks of 10 ms): the
/// process's own, and that of its children it has waited for.
fn cpu_seconds(path: &str) -> (f64, f64) {
    let Ok(stat) = std::fs::read_to_string(path) else { return (0.0, 0.0) };
    let Some((_, rest)) = stat.rsplit_once(')') else { return (0.0, 0.0) };
    let fields: Vec<u64> = rest.split_whitespace().skip(11).take(4).filter_map(|field| field.parse().ok()).collect();
    let seconds = |index: usize| fields.get(index).copied().unwrap_or(0) as f64 / 100.0;
    (seconds(0) + seconds(1), seconds(2) + seconds(3))
}

/// Busy CPU seconds of the whole machine (all cores, every process) from `/proc/stat`.
fn machine_busy_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else { return 0.0 };
    let Some(line) = stat.lines().next() else { return 0.0 };
    let ticks: Vec<u64> = line.split_whitespace().skip(1).filter_map(|field| field.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal guest guest_nice; guests are in user.
    let busy: u64 =
        ticks.iter().take(8).enumerate().filter(|(index, _)| *index != 3 && *index != 4).map(|(_, tick)| tick).sum();
    busy as f64 / 100.0
}

/// Waits until the machine is quiet (under 10% busy for a second, this process included),
/// at most `ONEOFF_BENCH_QUIET_WAIT` seconds (120; 0 skips), so that a build running next to
/// the benchmark does not pass for the server's cost. The CPU line of each round shows what
/// else ran.
async fn wait_for_quiet_machine() {
    let limit = Duration::from_secs(setting("ONEOFF_BENCH_QUIET_WAIT", 120));
    let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
    let started = Instant::now();
    while !limit.is_zero() {
        let before = machine_busy_seconds();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let busy = (machine_busy_seconds() - before) / cores;
        if busy < 0.10 {
            return;
        }
        if started.elapsed() >= limit {
            println!("  warning: the machine is still {:.0}% busy without load from this benchmark", busy * 100.0);
            return;
        }
    }
}

/// CPU used during a measurement: the server, its jobs, this process (the viewers), and
/// the whole machine; what is left is other processes and interrupts.
struct CpuUse {
    started: Instant,
    server: (f64, f64),
    viewers: f64,
    machine: f64,
}

/// What [`CpuUse::report`] found.
struct CpuReport {
    text: String,
    /// Other processes used more than a tenth of the machine: the figures are not the server's.
    disturbed: bool,
}

impl CpuUse {
    fn start(server: &Server) -> CpuUse {
        CpuUse {
            started: Instant::now(),
            server: server.cpu_seconds(),
            viewers: cpu_seconds("/proc/self/stat").0,
            machine: machine_busy_seconds(),
        }
    }

    fn report(&self, server: &Server) -> CpuReport {
        let wall = self.started.elapsed().as_secs_f64();
        let available = wall * std::thread::available_parallelism().map_or(1, usize::from) as f64;
        let now = server.cpu_seconds();
        let (server_cpu, jobs) = (now.0 - self.server.0, now.1 - self.server.1);
        let viewers = cpu_seconds("/proc/self/stat").0 - self.viewers;
        let machine = machine_busy_seconds() - self.machine;
        let other = (machine - server_cpu - jobs - viewers).max(0.0);
        let disturbed = other > 0.1 * available;
        let text = format!(
            "CPU over {wall:.1} s ({available:.1} core-s): server {server_cpu:.2} s, jobs {jobs:.2} s, viewers {viewers:.2} s, other {other:.2} s; machine {:.0}% busy{}",
            100.0 * machine / available,
            if disturbed { " (DISTURBED by other processes: round not counted)" } else { "" }
        );
        CpuReport { text, disturbed }
    }
}

/// Runs rounds until `rounds` of them were not disturbed by other processes, at most
/// `ONEOFF_BENCH_RETRIES` (3) extra times; returns the undisturbed results (all of them when
/// every round was disturbed).
async fn rounds<T, F, Fut>(rounds: u64, mut round: F) -> anyhow::Result<Vec<T>>
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<(T, CpuReport)>>,
{
    let attempts = rounds + setting("ONEOFF_BENCH_RETRIES", 3);
    let (mut clean, mut disturbed) = (Vec::new(), Vec::new());
    for attempt in 1..=attempts {
        if clean.len() as u64 == rounds {
            break;
        }
        wait_for_quiet_machine().await;
        let (result, cpu) = round(attempt).await?;
        println!("  {}", cpu.text);
        if cpu.disturbed {
            disturbed.push(result);
        } else {
            clean.push(result);
        }
    }
    if clean.is_empty() {
        println!("warning: every round was disturbed by other processes; the summary uses them all");
        return Ok(disturbed);
    }
    Ok(clean)
}

/// A latency scenario: `count` rounds on one server, each returning a p99 in milliseconds,
/// then the p99s of the rounds counted against the 100 ms target.
async fn latency_rounds<F, Fut>(count: u64, measured: &str, target: &str, round: F) -> anyhow::Result<()>
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
        let met = results.iter().filter(|p99| **p99 <= 100.0).count();
        println!(
            "{measured}: {}; {target} met in {met} of {}",
            results.iter().map(|p99| show_ms(*p99)).collect::<Vec<_>>().join(", "),
            results.len()
        );
        Ok(())
    })
    .await
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// Runs a scenario's body and stops the server whatever the body did.
async fn with_server<F, Fut>(body: F) -> anyhow::Result<()>
where
    F: FnOnce(Arc<Server>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let server = Arc::new(Server::start().await?);
    let result = body(server.clone()).await;
    let server = Arc::into_inner(server).context("a task still holds the server")?;
    let stopped = server.stop().await;
    result.and(stopped)
}

// ---------------------------------------------------------------------------------------
// Viewers

/// A WebSocket or SSE message: entries (only `seq` and `text` are read) or the final `done`.
#[derive(Deserialize)]
struct Batch<'a> {
    #[serde(default, borrow)]
    entries: Vec<WireEntry<'a>>,
    #[serde(default)]
    next: u64,
    #[serde(default)]
    done: bool,
    #[serde(default)]
    status: Option<String>,
}

#[derive(Deserialize)]
struct WireEntry<'a> {
    seq: u64,
    #[serde(borrow)]
    text: Cow<'a, str>,
}

async fn connect(url: &str, config: Option<WebSocketConfig>) -> anyhow::Result<Socket> {
    let (socket, _) = tokio_tungstenite::connect_async_with_config(url, config, false)
        .await
        .with_context(|| format!("WebSocket handshake with {url}"))?;
    Ok(socket)
}

/// Client settings for streams of small messages. tungstenite zero-fills `read_buffer_size`
/// bytes (default 128 KiB) before every read, which would make the viewers, not the server,
/// the bottleneck when a thousand of them receive a message each per batch.
fn small_messages() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(8 * 1024)
}

/// Reads a WebSocket until the server closes it, handing each text message to `on_text`.
async fn read_ws(mut socket: Socket, mut on_text: impl FnMut(&str) -> anyhow::Result<()>) -> anyhow::Result<()> {
    while let Some(message) = socket.next().await {
        match message? {
            Message::Text(text) => on_text(text.as_str())?,
            Message::Close(_) => return Ok(()),
            _ => {}
        }
    }
    Ok(())
}

/// Reads an SSE response to its end; `on_event(event, id, data)` for each event.
async fn read_sse(
    response: reqwest::Response,
    mut on_event: impl FnMut(Option<&str>, Option<&str>, &str) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    ensure!(response.status().is_success(), "SSE answered {}", response.status());
    let mut body = response.bytes_stream();
    let mut buffer: Vec<u8> = Vec::new();
    let mut scanned = 0;
    let (mut event, mut id, mut data) = (None::<String>, None::<String>, String::new());
    while let Some(chunk) = body.next().await {
        buffer.extend_from_slice(&chunk?);
        let mut start = 0;
        while let Some(offset) = buffer[scanned..].iter().position(|byte| *byte == b'\n') {
            let end = scanned + offset;
            let line = std::str::from_utf8(&buffer[start..end])?.trim_end_matches('\r');
            if line.is_empty() {
                if event.is_some() || !data.is_empty() {
                    on_event(event.as_deref(), id.as_deref(), &data)?;
                }
                (event, id) = (None, None);
                data.clear();
            } else if !line.starts_with(':') {
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "event" => event = Some(value.to_string()),
                    "id" => id = Some(value.to_string()),
                    "data" => {
                        if !data.is_empty() {
                            data.push('\n');
                        }
                        data.push_str(value);
                    }
                    _ => {}
                }
            }
            start = end + 1;
            scanned = start;
        }
        buffer.drain(..start);
        scanned = buffer.len();
    }
    Ok(())
}

/// A firehose viewer's bookkeeping: every seq once and in order, each line's text its seq.
struct FloodView {
    started: Instant,
    lines: u64,
    last: u64,
    messages: usize,
    every_line: Option<Duration>,
    done: Option<Duration>,
    status: Option<String>,
}

impl FloodView {
    fn new(started: Instant, lines: u64) -> FloodView {
        FloodView { started, lines, last: 0, messages: 0, every_line: None, done: None, status: None }
    }

    fn message(&mut self, text: &str) -> anyhow::Result<u64> {
        let batch: Batch = serde_json::from_str(text).context("message is not a batch")?;
        self.messages += 1;
        if batch.done {
            ensure!(self.done.is_none(), "two done messages");
            self.done = Some(self.started.elapsed());
            self.status = batch.status;
            ensure!(batch.next == self.last, "done says next={} after seq {}", batch.next, self.last);
            return Ok(batch.next);
        }
        for entry in &batch.entries {
            ensure!(entry.seq == self.last + 1, "gap or duplicate: seq {} after {}", entry.seq, self.last);
            ensure!(entry.text.parse::<u64>().ok() == Some(entry.seq), "line {} reads {:?}", entry.seq, entry.text);
            self.last = entry.seq;
        }
        ensure!(batch.next == self.last, "next={} but the last entry is {}", batch.next, self.last);
        if self.last == self.lines && self.every_line.is_none() {
            self.every_line = Some(self.started.elapsed());
        }
        Ok(batch.next)
    }

    fn result(self) -> anyhow::Result<(Duration, Duration, usize)> {
        ensure!(self.last == self.lines, "the viewer got {} of {} lines", self.last, self.lines);
        ensure!(self.status.as_deref() == Some("succeeded"), "the run ended as {:?}", self.status);
        Ok((self.every_line.context("never had every line")?, self.done.context("no done message")?, self.messages))
    }
}

/// A ticker viewer: sequence numbers gapless and in order (the server's promise), the job's
/// line numbers increasing, lines the job wrote but the log lacks, and each line's latency.
#[derive(Default)]
struct TickView {
    last: u64,
    /// The job's number of the last line received.
    last_line: u64,
    /// Lines the job wrote that never arrived (the server dropped them).
    missing: u64,
    messages: usize,
    latencies_us: Vec<u32>,
    status: Option<String>,
}

impl TickView {
    fn message(&mut self, text: &str, received_ns: u64) -> anyhow::Result<()> {
        let batch: Batch = serde_json::from_str(text).context("message is not a batch")?;
        self.messages += 1;
        if batch.done {
            self.status = batch.status;
            return Ok(());
        }
        for entry in &batch.entries {
            ensure!(entry.seq == self.last + 1, "gap or duplicate: seq {} after {}", entry.seq, self.last);
            let (line, written) = entry.text.split_once(' ').context("not a ticker line")?;
            let line: u64 = line.parse().with_context(|| format!("line {} reads {:?}", entry.seq, entry.text))?;
            ensure!(line > self.last_line, "job line {line} after job line {}", self.last_line);
            self.missing += line - self.last_line - 1;
            let written: u64 = written.parse()?;
            self.latencies_us.push((received_ns.saturating_sub(written) / 1000).min(u64::from(u32::MAX)) as u32);
            (self.last, self.last_line) = (entry.seq, line);
        }
        Ok(())
    }

    /// Checks the end of the stream; returns how many of the job's `lines` never arrived.
    fn finish(&mut self, lines: u64) -> anyhow::Result<u64> {
        ensure!(self.status.as_deref() == Some("succeeded"), "the run ended as {:?}", self.status);
        self.missing += lines.saturating_sub(self.last_line);
        Ok(self.missing)
    }
}

async fn tick_viewer(socket: Socket) -> anyhow::Result<TickView> {
    let mut view = TickView::default();
    read_ws(socket, |text| view.message(text, unix_ns())).await?;
    Ok(view)
}

/// Opens `count` WebSocket viewers of one run, `parallel` handshakes at a time.
async fn connect_many(
    url: &str,
    count: usize,
    parallel: usize,
    config: Option<WebSocketConfig>,
) -> anyhow::Result<Vec<Socket>> {
    let results: Vec<anyhow::Result<Socket>> =
        futures_util::stream::iter(0..count).map(|_| connect(url, config)).buffer_unordered(parallel).collect().await;
    results.into_iter().collect()
}

struct Percentiles {
    p50: f64,
    p99: f64,
    max: f64,
}

/// Nearest-rank percentiles in milliseconds; sorts `samples`.
fn percentiles(samples: &mut [u32]) -> Percentiles {
    samples.sort_unstable();
    let at = |fraction: f64| {
        if samples.is_empty() {
            return 0.0;
        }
        let rank = ((fraction * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
        f64::from(samples[rank - 1]) / 1000.0
    };
    Percentiles { p50: at(0.50), p99: at(0.99), max: at(1.0) }
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
                let cpu = CpuUse::start(&server);
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
                Ok(((ws_done.as_secs_f64(), sse_done.as_secs_f64()), cpu.report(&server)))
            }
        })
        .await?;
        let ws = median(results.iter().map(|result| result.0).collect());
        let sse = median(results.iter().map(|result| result.1).collect());
        println!(
            "median of {} rounds, POST → done (every line received and stored): WebSocket {ws:.3} s (target ≤ 0.5 s: {}), SSE {sse:.3} s = {:.2}× WebSocket (target ≤ 1.5×: {})",
            results.len(),
            verdict(ws <= 0.5),
            sse / ws,
            verdict(sse <= 1.5 * ws)
        );
        Ok(())
    })
    .await
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "MISSED"
    }
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
    let rate = setting("ONEOFF_BENCH_RATE", 1000);
    let seconds = setting("ONEOFF_BENCH_SECONDS", 10);
    let count = setting("ONEOFF_BENCH_ROUNDS", 3);
    println!(
        "one job printing {rate} lines/s for {seconds} s ({}), {viewers} WebSocket viewers; {count} rounds",
        pacing()
    );
    latency_rounds(count, "p99 of the rounds counted", "target p99 ≤ 100 ms", move |server| async move {
        fanout_round(&server, viewers, rate, seconds).await
    })
    .await
}

/// One fan-out run; returns its p99 in milliseconds.
async fn fanout_round(server: &Server, viewers: usize, rate: u64, seconds: u64) -> anyhow::Result<(f64, CpuReport)> {
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
    let cpu = CpuUse::start(server);
    let mut all = Vec::with_capacity(viewers * (rate * seconds) as usize);
    let mut worst_p99: f64 = 0.0;
    let (mut messages, mut missing) = (0, 0);
    for task in tasks {
        let mut view = task.await??;
        missing += view.finish(rate * seconds)?;
        messages += view.messages;
        worst_p99 = worst_p99.max(percentiles(&mut view.latencies_us).p99);
        all.append(&mut view.latencies_us);
    }
    let cpu = cpu.report(server);
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
        "  job write → viewer receipt: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; worst viewer's p99 {:.1} ms (target p99 ≤ 100 ms: {})",
        stats.p50,
        stats.p99,
        stats.max,
        worst_p99,
        verdict(stats.p99 <= 100.0 && missing == 0)
    );
    Ok((if missing == 0 { stats.p99 } else { f64::INFINITY }, cpu))
}

/// A latency in milliseconds; infinite stands for "lines were lost".
fn show_ms(value: f64) -> String {
    if value.is_finite() {
        format!("{value:.1} ms")
    } else {
        "lines lost".into()
    }
}

fn pacing() -> String {
    match setting("ONEOFF_BENCH_BURST", 1) {
        1 => "one write(2) per line, each at its own time".into(),
        burst => format!("one write(2) per line, woken every {burst} lines to write the lines due"),
    }
}

fn ticker_params(rate: u64, seconds: u64, start_ms: u64) -> Value {
    json!({"rate": rate, "seconds": seconds, "start_ms": start_ms, "burst": setting("ONEOFF_BENCH_BURST", 1)})
}

async fn sleep_until_unix_ms(unix_ms: u64) {
    let now_ms = unix_ns() / 1_000_000;
    tokio::time::sleep(Duration::from_millis(unix_ms.saturating_sub(now_ms))).await;
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
    let cpu = CpuUse::start(server);
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
    let cpu = cpu.report(server);
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
