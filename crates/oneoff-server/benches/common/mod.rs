//! What the live-stream benchmarks share (`streams.rs`, one server; `replicas.rs`, several on
//! one PostgreSQL): real `oneoff serve` processes, the paced job, the viewers and their checks,
//! and the CPU accounting that tells a quiet round from one disturbed by other processes.
//!
//! - The server runs as its own process (the release binary, or `ONEOFF_BIN`), with a fresh data
//!   directory and config, so its memory and CPU are its own.
//! - The paced job is the benchmark program itself ([`TICKER`]): from a given wall-clock instant
//!   on, it writes line `i` at `start + (i - 1) / rate`, each line `"{i} {unix time in ns}"` in one
//!   `write(2)`, the clock read just before the write. Viewers read the wall clock when a message
//!   arrives; job and viewers are on the same machine and clock.
//! - Viewers read with an 8 KiB buffer: tungstenite zero-fills its read buffer (128 KiB by
//!   default) before every read, which made a thousand viewers cost more than the server.
//! - Before each round the benchmark waits (up to `ONEOFF_BENCH_QUIET_WAIT` seconds, 120) for
//!   the machine to be under 10% busy, then accounts the CPU of the round to the servers, their
//!   jobs, the database, the viewers and everything else. A round in which other processes used
//!   more than a tenth of the machine is marked DISTURBED, not counted, and run again (at most
//!   `ONEOFF_BENCH_RETRIES` extra rounds, 3).
//!
//! Each benchmark uses part of this module, so the parts the other one uses are dead code in it.
#![allow(dead_code)]

use std::borrow::Cow;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The first argument that makes the benchmark program the paced job.
pub const TICKER: &str = "__oneoff_bench_ticker";

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|text| text.trim().parse().ok()).unwrap_or(default)
}

pub fn unix_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_nanos() as u64)
}

/// The scenarios named by `ONEOFF_BENCH` (default: all of `all`, a comma-separated list),
/// each checked against `all`.
pub fn selected_scenarios(all: &str) -> anyhow::Result<Vec<String>> {
    let selected = std::env::var("ONEOFF_BENCH").unwrap_or_else(|_| all.into());
    let selected: Vec<String> =
        selected.split(',').map(str::trim).filter(|name| !name.is_empty()).map(String::from).collect();
    for name in &selected {
        ensure!(all.split(',').any(|known| known == name), "unknown scenario {name:?}; ONEOFF_BENCH takes {all}");
    }
    Ok(selected)
}

/// The paced job: `RATE SECONDS START_UNIX_MS BURST`. Line `i` is due at
/// `start + (i - 1) / RATE`; the job wakes up every `BURST` lines and writes the lines due, each
/// with its own `write(2)` and timestamp (BURST = 1: one wake-up per line).
pub fn ticker(args: &[String]) -> anyhow::Result<()> {
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

pub fn pacing() -> String {
    match setting("ONEOFF_BENCH_BURST", 1) {
        1 => "one write(2) per line, each at its own time".into(),
        burst => format!("one write(2) per line, woken every {burst} lines to write the lines due"),
    }
}

pub fn ticker_params(rate: u64, seconds: u64, start_ms: u64) -> Value {
    json!({"rate": rate, "seconds": seconds, "start_ms": start_ms, "burst": setting("ONEOFF_BENCH_BURST", 1)})
}

pub async fn sleep_until_unix_ms(unix_ms: u64) {
    let now_ms = unix_ns() / 1_000_000;
    tokio::time::sleep(Duration::from_millis(unix_ms.saturating_sub(now_ms))).await;
}

// ---------------------------------------------------------------------------------------
// The server process

pub fn server_binary() -> anyhow::Result<PathBuf> {
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
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|line| line.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// How a server is configured beyond the common settings (`listen = "127.0.0.1:0"`,
/// `max_concurrent_runs = 256`, `drain = "1s"`, generous stream limits, and the jobs `flood`,
/// `ticker` and `quiet`).
#[derive(Default, Clone)]
pub struct ServerSetup {
    /// `[server] database`; `None`: SQLite in the server's own data directory.
    pub database: Option<String>,
    /// `[server] replica`; also the name the benchmark prints for this server.
    pub replica: Option<String>,
    /// More `[server]` lines.
    pub server_extra: String,
    /// More `[[job]]` tables.
    pub jobs: String,
}

pub struct Server {
    child: tokio::sync::Mutex<tokio::process::Child>,
    pub pid: i32,
    pub base: String,
    pub http: reqwest::Client,
    /// The replica name, or `server` for a server without one.
    pub name: String,
    dir: tempfile::TempDir,
    /// Set by [`Server::kill`]: the server is gone on purpose, and `stop` only reaps it.
    killed: AtomicBool,
}

impl Server {
    pub async fn start() -> anyhow::Result<Server> {
        Server::start_with(&ServerSetup::default()).await
    }

    pub async fn start_with(setup: &ServerSetup) -> anyhow::Result<Server> {
        let binary = server_binary()?;
        let exe = std::env::current_exe()?;
        let dir = tempfile::tempdir()?;
        let config_path = dir.path().join("bench.toml");
        let data_dir = dir.path().join("data");
        let mut server_lines = String::new();
        if let Some(database) = &setup.database {
            server_lines.push_str(&format!("database = {database:?}\n"));
        }
        if let Some(replica) = &setup.replica {
            server_lines.push_str(&format!("replica = {replica:?}\n"));
        }
        server_lines.push_str(&setup.server_extra);
        std::fs::write(
            &config_path,
            format!(
                r#"[server]
listen = "127.0.0.1:0"
data_dir = {data_dir:?}
max_concurrent_runs = 256
drain = "1s"
{server_lines}

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
{jobs}"#,
                data_dir = data_dir.display().to_string(),
                exe = exe.display().to_string(),
                nice = setting("ONEOFF_BENCH_JOB_NICE", 0),
                jobs = setup.jobs,
            ),
        )?;
        let name = setup.replica.clone().unwrap_or_else(|| "server".into());
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
        let log_path = dir.path().join("server.log");
        let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .with_context(|| format!("{name} did not say where it listens within 30 s"))??
            .with_context(|| {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                format!("{name} closed its stdout before it listened; its log:\n{log}")
            })?;
        let base = first
            .strip_prefix("oneoff listening on ")
            .with_context(|| format!("unexpected first line from {name}: {first:?}"))?
            .to_string();
        // Keep reading stdout so the server never blocks or fails on it.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Server {
            child: tokio::sync::Mutex::new(child),
            pid,
            base,
            http: reqwest::Client::new(),
            name,
            dir,
            killed: AtomicBool::new(false),
        })
    }

    pub fn ws_url(&self, run: i64) -> String {
        format!("{}/api/v1/runs/{run}/log/ws?after=0", self.base.replacen("http://", "ws://", 1))
    }

    pub async fn create_run(&self, job: &str, params: Value) -> anyhow::Result<i64> {
        let response = self
            .http
            .post(format!("{}/api/v1/runs", self.base))
            .json(&json!({"job": job, "params": params}))
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await?;
        ensure!(status.as_u16() == 201, "POST /api/v1/runs to {} answered {status}: {body}", self.name);
        body["id"].as_i64().context("run without id")
    }

    /// The run's JSON as this server reports it.
    pub async fn run(&self, run: i64) -> anyhow::Result<Value> {
        let response = self.http.get(format!("{}/api/v1/runs/{run}", self.base)).send().await?;
        let status = response.status();
        let body: Value = response.json().await?;
        ensure!(status.is_success(), "GET /api/v1/runs/{run} on {} answered {status}: {body}", self.name);
        Ok(body)
    }

    pub async fn run_status(&self, run: i64) -> anyhow::Result<String> {
        Ok(self.run(run).await?["status"].as_str().unwrap_or_default().to_string())
    }

    /// The run's stored log as text (`log.txt`).
    pub async fn log_text(&self, run: i64) -> anyhow::Result<String> {
        let response = self.http.get(format!("{}/api/v1/runs/{run}/log.txt", self.base)).send().await?;
        ensure!(response.status().is_success(), "log.txt of run {run} on {} answered {}", self.name, response.status());
        Ok(response.text().await?)
    }

    pub async fn cancel(&self, run: i64) -> anyhow::Result<()> {
        let response = self.http.post(format!("{}/api/v1/runs/{run}/cancel", self.base)).send().await?;
        ensure!(response.status().as_u16() == 202, "cancel answered {}", response.status());
        Ok(())
    }

    pub async fn metric(&self, name: &str) -> anyhow::Result<u64> {
        let text = self.http.get(format!("{}/metrics", self.base)).send().await?.text().await?;
        text.lines()
            .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .and_then(|value| value.trim().parse().ok())
            .with_context(|| format!("no metric {name}"))
    }

    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmRSS")
    }

    /// CPU seconds of the server process, and of the jobs it has reaped.
    pub fn cpu_seconds(&self) -> (f64, f64) {
        cpu_seconds(&format!("/proc/{}/stat", self.pid))
    }

    /// `kill -9`: the server dies at once, as on a lost node (its jobs die with it, by
    /// `PR_SET_PDEATHSIG`). Waits until it is gone.
    pub async fn kill(&self) -> anyhow::Result<()> {
        self.killed.store(true, Ordering::SeqCst);
        let mut child = self.child.lock().await;
        child.start_kill().with_context(|| format!("cannot kill {}", self.name))?;
        child.wait().await?;
        Ok(())
    }

    /// SIGTERM (running runs are cancelled after the 1 s drain), then wait for the exit.
    pub async fn stop(self) -> anyhow::Result<()> {
        use nix::sys::signal::{kill, Signal};
        let mut child = self.child.into_inner();
        if self.killed.load(Ordering::SeqCst) {
            child.wait().await?;
        } else {
            let _ = kill(nix::unistd::Pid::from_raw(self.pid), Signal::SIGTERM);
            match tokio::time::timeout(Duration::from_secs(60), child.wait()).await {
                Ok(status) => ensure!(
                    status?.success(),
                    "{} exited with a failure; log in {:?}",
                    self.name,
                    self.dir.path().join("server.log")
                ),
                Err(_) => {
                    let _ = child.kill().await;
                    bail!("{} did not stop within 60 s of SIGTERM", self.name);
                }
            }
        }
        let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        if let Ok(copy) = std::env::var("ONEOFF_BENCH_SERVER_LOG_COPY") {
            // One file per server: the replica's name is added to the name given.
            let copy = if self.name == "server" { copy } else { format!("{copy}.{}", self.name) };
            std::fs::write(&copy, &log).with_context(|| format!("cannot copy the server log to {copy}"))?;
        }
        let prefix = if self.name == "server" { "server log".to_string() } else { format!("{} log", self.name) };
        for (message, count) in log_summary(&log) {
            println!("{prefix}: {count} × {message}");
        }
        Ok(())
    }
}

/// Starts one server per setup, runs the body, and stops every server whatever the body did.
pub async fn with_servers<F, Fut>(setups: &[ServerSetup], body: F) -> anyhow::Result<()>
where
    F: FnOnce(Vec<Arc<Server>>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut servers = Vec::with_capacity(setups.len());
    let mut started = Ok(());
    for setup in setups {
        match Server::start_with(setup).await {
            Ok(server) => servers.push(Arc::new(server)),
            Err(error) => {
                started = Err(error);
                break;
            }
        }
    }
    let result = match started {
        Ok(()) => body(servers.clone()).await,
        Err(error) => Err(error),
    };
    let mut stopped = Ok(());
    for server in servers {
        let server = Arc::into_inner(server).context("a task still holds a server")?;
        stopped = stopped.and(server.stop().await);
    }
    result.and(stopped)
}

/// Runs a scenario's body on one SQLite server and stops it whatever the body did.
pub async fn with_server<F, Fut>(body: F) -> anyhow::Result<()>
where
    F: FnOnce(Arc<Server>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    with_servers(&[ServerSetup::default()], |mut servers| async move {
        let server = servers.pop().context("no server")?;
        body(server).await
    })
    .await
}

/// Warnings and errors of the server's log, counted by level, target and message.
pub fn log_summary(log: &str) -> Vec<(String, usize)> {
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

// ---------------------------------------------------------------------------------------
// CPU accounting

/// User + system CPU seconds from a `/proc/PID/stat` file (clock ticks of 10 ms): the
/// process's own, and that of its children it has waited for.
pub fn cpu_seconds(path: &str) -> (f64, f64) {
    let Ok(stat) = std::fs::read_to_string(path) else { return (0.0, 0.0) };
    let Some((_, rest)) = stat.rsplit_once(')') else { return (0.0, 0.0) };
    let fields: Vec<u64> = rest.split_whitespace().skip(11).take(4).filter_map(|field| field.parse().ok()).collect();
    let seconds = |index: usize| fields.get(index).copied().unwrap_or(0) as f64 / 100.0;
    (seconds(0) + seconds(1), seconds(2) + seconds(3))
}

/// CPU seconds of a process, the children it has reaped, and its live children (a PostgreSQL
/// server: the postmaster and its backends).
pub fn tree_cpu_seconds(pid: u32) -> f64 {
    let (own, reaped) = cpu_seconds(&format!("/proc/{pid}/stat"));
    let mut total = own + reaped;
    let Ok(entries) = std::fs::read_dir("/proc") else { return total };
    for entry in entries.flatten() {
        let Some(child) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else { continue };
        let path = format!("/proc/{child}/stat");
        let Ok(stat) = std::fs::read_to_string(&path) else { continue };
        let parent = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        if parent == Some(pid) {
            let (own, reaped) = cpu_seconds(&path);
            total += own + reaped;
        }
    }
    total
}

/// Busy CPU seconds of the whole machine (all cores, every process) from `/proc/stat`.
pub fn machine_busy_seconds() -> f64 {
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
pub async fn wait_for_quiet_machine() {
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

/// CPU used during a measurement: the servers, their jobs, the database server (when there is
/// one), this process (the viewers), and the whole machine; what is left is other processes
/// and interrupts.
pub struct CpuUse {
    started: Instant,
    /// Each server's pid and its (own, reaped jobs) CPU seconds at the start.
    servers: Vec<(i32, (f64, f64))>,
    /// The database server's pid and its CPU seconds at the start.
    database: Option<(u32, f64)>,
    viewers: f64,
    machine: f64,
}

/// What [`CpuUse::report`] found.
pub struct CpuReport {
    pub text: String,
    /// Other processes used more than a tenth of the machine: the figures are not the server's.
    pub disturbed: bool,
}

impl CpuReport {
    /// Two measurements of one round as one: disturbed if either was.
    pub fn and(self, other: CpuReport) -> CpuReport {
        CpuReport { text: format!("{}\n  {}", self.text, other.text), disturbed: self.disturbed || other.disturbed }
    }
}

impl CpuUse {
    pub fn start(servers: &[&Server]) -> CpuUse {
        CpuUse {
            started: Instant::now(),
            servers: servers.iter().map(|server| (server.pid, server.cpu_seconds())).collect(),
            database: None,
            viewers: cpu_seconds("/proc/self/stat").0,
            machine: machine_busy_seconds(),
        }
    }

    /// Also accounts the database server whose postmaster is `pid` (it and its backends).
    pub fn with_database(mut self, pid: Option<u32>) -> CpuUse {
        self.database = pid.map(|pid| (pid, tree_cpu_seconds(pid)));
        self
    }

    pub fn report(&self) -> CpuReport {
        let wall = self.started.elapsed().as_secs_f64();
        let available = wall * std::thread::available_parallelism().map_or(1, usize::from) as f64;
        let (mut server_cpu, mut jobs) = (0.0, 0.0);
        for (pid, before) in &self.servers {
            let now = cpu_seconds(&format!("/proc/{pid}/stat"));
            server_cpu += (now.0 - before.0).max(0.0);
            jobs += (now.1 - before.1).max(0.0);
        }
        let database = self.database.map(|(pid, before)| (tree_cpu_seconds(pid) - before).max(0.0));
        let viewers = cpu_seconds("/proc/self/stat").0 - self.viewers;
        let machine = machine_busy_seconds() - self.machine;
        let other = (machine - server_cpu - jobs - viewers - database.unwrap_or(0.0)).max(0.0);
        let disturbed = other > 0.1 * available;
        let servers =
            if self.servers.len() == 1 { "server".to_string() } else { format!("{} servers", self.servers.len()) };
        let text = format!(
            "CPU over {wall:.1} s ({available:.1} core-s): {servers} {server_cpu:.2} s, jobs {jobs:.2} s, {}viewers {viewers:.2} s, other {other:.2} s; machine {:.0}% busy{}",
            database.map_or(String::new(), |database| format!("PostgreSQL {database:.2} s, ")),
            100.0 * machine / available,
            if disturbed { " (DISTURBED by other processes: round not counted)" } else { "" }
        );
        CpuReport { text, disturbed }
    }
}

/// Runs rounds until `rounds` of them were not disturbed by other processes, at most
/// `ONEOFF_BENCH_RETRIES` (3) extra times; returns the undisturbed results (all of them when
/// every round was disturbed).
pub async fn rounds<T, F, Fut>(rounds: u64, mut round: F) -> anyhow::Result<Vec<T>>
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

// ---------------------------------------------------------------------------------------
// Figures

pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

/// Nearest-rank percentiles in milliseconds; sorts `samples`.
pub fn percentiles(samples: &mut [u32]) -> Percentiles {
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

pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

pub fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "MISSED"
    }
}

/// A latency in milliseconds; infinite stands for "lines were lost".
pub fn show_ms(value: f64) -> String {
    if value.is_finite() {
        format!("{value:.1} ms")
    } else {
        "lines lost".into()
    }
}

// ---------------------------------------------------------------------------------------
// Viewers

/// A WebSocket or SSE message: entries (only `seq` and `text` are read) or the final `done`.
#[derive(Deserialize)]
pub struct Batch<'a> {
    #[serde(default, borrow)]
    pub entries: Vec<WireEntry<'a>>,
    #[serde(default)]
    pub next: u64,
    #[serde(default)]
    pub done: bool,
    #[serde(default)]
    pub status: Option<String>,
}

#[derive(Deserialize)]
pub struct WireEntry<'a> {
    pub seq: u64,
    #[serde(borrow)]
    pub text: Cow<'a, str>,
}

pub async fn connect(url: &str, config: Option<WebSocketConfig>) -> anyhow::Result<Socket> {
    let (socket, _) = tokio_tungstenite::connect_async_with_config(url, config, false)
        .await
        .with_context(|| format!("WebSocket handshake with {url}"))?;
    Ok(socket)
}

/// Client settings for streams of small messages. tungstenite zero-fills `read_buffer_size`
/// bytes (default 128 KiB) before every read, which would make the viewers, not the server,
/// the bottleneck when a thousand of them receive a message each per batch.
pub fn small_messages() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(8 * 1024)
}

/// Opens `count` WebSocket viewers of one run, `parallel` handshakes at a time.
pub async fn connect_many(
    url: &str,
    count: usize,
    parallel: usize,
    config: Option<WebSocketConfig>,
) -> anyhow::Result<Vec<Socket>> {
    let results: Vec<anyhow::Result<Socket>> =
        futures_util::stream::iter(0..count).map(|_| connect(url, config)).buffer_unordered(parallel).collect().await;
    results.into_iter().collect()
}

/// Reads a WebSocket until the server closes it, handing each text message to `on_text`.
pub async fn read_ws(mut socket: Socket, mut on_text: impl FnMut(&str) -> anyhow::Result<()>) -> anyhow::Result<()> {
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
pub async fn read_sse(
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
pub struct FloodView {
    started: Instant,
    lines: u64,
    last: u64,
    messages: usize,
    every_line: Option<Duration>,
    done: Option<Duration>,
    status: Option<String>,
}

impl FloodView {
    pub fn new(started: Instant, lines: u64) -> FloodView {
        FloodView { started, lines, last: 0, messages: 0, every_line: None, done: None, status: None }
    }

    pub fn message(&mut self, text: &str) -> anyhow::Result<u64> {
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

    /// (every line received, `done` received, messages), after checking that every line came
    /// and the run succeeded.
    pub fn result(self) -> anyhow::Result<(Duration, Duration, usize)> {
        ensure!(self.last == self.lines, "the viewer got {} of {} lines", self.last, self.lines);
        ensure!(self.status.as_deref() == Some("succeeded"), "the run ended as {:?}", self.status);
        Ok((self.every_line.context("never had every line")?, self.done.context("no done message")?, self.messages))
    }
}

/// A ticker viewer: sequence numbers gapless and in order (the server's promise), the job's
/// line numbers increasing, lines the job wrote but the log lacks, and each line's latency.
#[derive(Default)]
pub struct TickView {
    last: u64,
    /// The job's number of the last line received.
    last_line: u64,
    /// Lines the job wrote that never arrived (the server dropped them).
    missing: u64,
    pub messages: usize,
    pub latencies_us: Vec<u32>,
    status: Option<String>,
}

impl TickView {
    pub fn message(&mut self, text: &str, received_ns: u64) -> anyhow::Result<()> {
        self.messages += 1;
        if !text.starts_with(r#"{"entries":["#) {
            let batch: Batch = serde_json::from_str(text).context("message is not a batch")?;
            ensure!(batch.done, "a message that is neither entries nor done: {text}");
            self.status = batch.status;
            return Ok(());
        }
        // A ticker batch, scanned rather than parsed: with thousands of viewers on the same two
        // cores, a full JSON parse of every entry made the viewers cost as much as the server.
        // Each entry is `{"seq":N,"ts":"…","stream":"stdout","text":"LINE NS"}` (the server's
        // field order); a message the scan cannot read fails the round.
        let mut rest = text.as_bytes();
        while let Some(at) = find(rest, br#"{"seq":"#) {
            rest = &rest[at + 7..];
            let (seq, after_seq) = leading_number(rest).context("an entry without a seq")?;
            let at = find(after_seq, br#""text":""#).context("an entry without a text")?;
            let (line, after_line) = leading_number(&after_seq[at + 8..]).context("not a ticker line")?;
            let after_space = after_line.strip_prefix(b" ").context("not a ticker line")?;
            let (written, after_written) = leading_number(after_space).context("not a ticker line")?;
            ensure!(after_written.starts_with(b"\""), "not a ticker line at seq {seq}");
            rest = after_written;
            ensure!(seq == self.last + 1, "gap or duplicate: seq {seq} after {}", self.last);
            ensure!(line > self.last_line, "job line {line} after job line {}", self.last_line);
            self.missing += line - self.last_line - 1;
            self.latencies_us.push((received_ns.saturating_sub(written) / 1000).min(u64::from(u32::MAX)) as u32);
            (self.last, self.last_line) = (seq, line);
        }
        let rest = std::str::from_utf8(rest)?;
        let next =
            rest.rfind(r#""next":"#).and_then(|at| leading_number(&rest.as_bytes()[at + 7..])).map(|(next, _)| next);
        ensure!(next == Some(self.last), "next={next:?} but the last entry is {}", self.last);
        Ok(())
    }

    /// Checks the end of the stream; returns how many of the job's `lines` never arrived.
    pub fn finish(&mut self, lines: u64) -> anyhow::Result<u64> {
        ensure!(self.status.as_deref() == Some("succeeded"), "the run ended as {:?}", self.status);
        self.missing += lines.saturating_sub(self.last_line);
        Ok(self.missing)
    }
}

pub async fn tick_viewer(socket: Socket) -> anyhow::Result<TickView> {
    let mut view = TickView::default();
    read_ws(socket, |text| view.message(text, unix_ns())).await?;
    Ok(view)
}

/// The decimal number `text` starts with, and what follows it.
fn leading_number(text: &[u8]) -> Option<(u64, &[u8])> {
    let digits = text.iter().take_while(|byte| byte.is_ascii_digit()).count();
    if digits == 0 || digits > 19 {
        return None;
    }
    let value = text[..digits].iter().fold(0u64, |value, digit| value * 10 + u64::from(digit - b'0'));
    Some((value, &text[digits..]))
}

/// Where `needle` first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let first = needle[0];
    let mut from = 0;
    while let Some(offset) = haystack[from..].iter().position(|byte| *byte == first) {
        let at = from + offset;
        if haystack[at..].starts_with(needle) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// Where in time the slowest lines were: `worst_us[i]` is the worst latency of line `i + 1`
/// over every viewer (the job writes line `i + 1` at `i / rate` s). The `count` windows of
/// 100 ms with the worst latency, as `"at 3.2 s: 151.0 ms"`, slowest first: a tail from one
/// stall shows as one window, a steady one as windows all over the run.
pub fn slowest_windows(worst_us: &[u32], rate: u64, count: usize) -> String {
    let per_window = (rate / 10).max(1) as usize;
    let mut windows: Vec<(usize, u32)> = worst_us
        .chunks(per_window)
        .enumerate()
        .map(|(index, chunk)| (index, chunk.iter().copied().max().unwrap_or(0)))
        .collect();
    windows.sort_by_key(|window| std::cmp::Reverse(window.1));
    windows
        .iter()
        .take(count)
        .map(|(index, worst)| format!("at {:.1} s: {:.1} ms", *index as f64 / 10.0, f64::from(*worst) / 1000.0))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Folds one viewer's latencies (line by line, when it missed none) into the worst per line.
pub fn fold_worst(worst_us: &mut Vec<u32>, latencies_us: &[u32]) {
    if worst_us.len() < latencies_us.len() {
        worst_us.resize(latencies_us.len(), 0);
    }
    for (worst, latency) in worst_us.iter_mut().zip(latencies_us) {
        *worst = (*worst).max(*latency);
    }
}
