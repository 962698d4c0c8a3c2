//! Helpers that make a new integration test a few lines: boot a server with a catalog,
//! call the API, run the CLI binary, wait for a run to finish.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use oneoff_server::RunningServer;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// A server on a loopback port with its own data directory, stopped on drop of the runtime.
pub struct TestServer {
    pub server: Option<RunningServer>,
    pub url: String,
    pub dir: tempfile::TempDir,
    http: reqwest::Client,
    /// Set by [`TestServer::start_sqlite`]: boots and restarts use SQLite whatever the suite's store.
    sqlite_only: bool,
}

/// The `[server]` table every test server gets, plus whatever the test adds. With
/// `ONEOFF_TEST_DATABASE=postgres` it names a PostgreSQL database of its own for each
/// `data_dir`: the same one every time, so a server started again on it finds its data.
pub fn config_text(data_dir: &Path, server_extra: &str, jobs: &str) -> String {
    let database = match suite_store() {
        SuiteStore::Sqlite => String::new(),
        SuiteStore::Postgres => format!("database = {:?}\n", postgres_database_of(data_dir)),
    };
    sqlite_config_text(data_dir, &format!("{database}{server_extra}"), jobs)
}

/// As [`config_text`], without the suite's store: SQLite in `data_dir`, for tests about the
/// SQLite file itself, unless `server_extra` names a `database` (tests of several replicas
/// choose theirs).
pub fn sqlite_config_text(data_dir: &Path, server_extra: &str, jobs: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ndata_dir = {:?}\n{server_extra}\n{jobs}",
        data_dir.display().to_string()
    )
}

/// The store the suite's servers use, from `ONEOFF_TEST_DATABASE` (`sqlite` when unset).
#[derive(Clone, Copy, PartialEq, Eq)]
enum SuiteStore {
    Sqlite,
    Postgres,
}

fn suite_store() -> SuiteStore {
    match std::env::var("ONEOFF_TEST_DATABASE").as_deref() {
        Err(std::env::VarError::NotPresent) | Ok("sqlite") => SuiteStore::Sqlite,
        Ok("postgres") => SuiteStore::Postgres,
        Ok(other) => panic!(
            "ONEOFF_TEST_DATABASE is `{other}`: set it to `sqlite` (the default) or `postgres` to choose the \
             store the integration tests run on"
        ),
        Err(std::env::VarError::NotUnicode(_)) => {
            panic!("ONEOFF_TEST_DATABASE is not UTF-8: set it to `sqlite` (the default) or `postgres`")
        }
    }
}

/// The URL of the fresh PostgreSQL database that belongs to `data_dir`, made on first use.
pub fn postgres_database_of(data_dir: &Path) -> String {
    static DATABASES: std::sync::Mutex<Vec<(PathBuf, String)>> = std::sync::Mutex::new(Vec::new());
    let mut databases = DATABASES.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, url)) = databases.iter().find(|(dir, _)| dir == data_dir) {
        return url.clone();
    }
    let url = oneoff_testpg::Postgres::shared().new_database();
    databases.push((data_dir.to_path_buf(), url.clone()));
    url
}

impl TestServer {
    pub async fn start(jobs: &str) -> TestServer {
        TestServer::start_with(jobs, "").await
    }

    /// `server_extra` adds keys to the `[server]` table.
    pub async fn start_with(jobs: &str, server_extra: &str) -> TestServer {
        TestServer::start_on(jobs, server_extra, false).await
    }

    /// As [`TestServer::start_with`], on SQLite whatever `ONEOFF_TEST_DATABASE` says: for
    /// tests of the SQLite file itself (its disk, its pages, its bytes).
    /// A server on SQLite whatever the suite's store, or on the `database` `server_extra` names.
    pub async fn start_sqlite(jobs: &str, server_extra: &str) -> TestServer {
        TestServer::start_on(jobs, server_extra, true).await
    }

    async fn start_on(jobs: &str, server_extra: &str, sqlite_only: bool) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let server = boot(dir.path(), jobs, server_extra, sqlite_only).await;
        let url = server.url();
        TestServer { server: Some(server), url, dir, http: reqwest::Client::new(), sqlite_only }
    }

    /// Stops gracefully and boots again on the same data directory (and the same database).
    pub async fn restart(&mut self, jobs: &str, server_extra: &str) {
        if let Some(server) = self.server.take() {
            server.stop().await.expect("graceful stop");
        }
        let server = boot(self.dir.path(), jobs, server_extra, self.sqlite_only).await;
        self.url = server.url();
        self.server = Some(server);
    }

    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await.expect("graceful stop");
        }
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self.http.get(format!("{}{path}", self.url)).send().await.expect("GET");
        decode(response).await
    }

    pub async fn get_text(&self, path: &str) -> (StatusCode, Vec<u8>) {
        let response = self.http.get(format!("{}{path}", self.url)).send().await.expect("GET");
        (response.status(), response.bytes().await.expect("body").to_vec())
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let response = self.http.post(format!("{}{path}", self.url)).json(&body).send().await.expect("POST");
        decode(response).await
    }

    pub async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> (StatusCode, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.url))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("POST");
        decode(response).await
    }

    /// Starts a run and returns its id; panics unless the server answers 201.
    pub async fn start_run(&self, job: &str, params: Value) -> i64 {
        let (status, body) = self.post("/api/v1/runs", json!({ "job": job, "params": params })).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_i64().expect("run id")
    }

    pub async fn run_json(&self, id: i64) -> Value {
        let (status, body) = self.get(&format!("/api/v1/runs/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// Polls until the run has a final status (at most 30 s) and returns it.
    pub async fn wait_final(&self, id: i64) -> Value {
        self.wait_status(id, |status| !matches!(status, "queued" | "running")).await
    }

    pub async fn wait_status(&self, id: i64, accept: impl Fn(&str) -> bool) -> Value {
        for _ in 0..600 {
            let run = self.run_json(id).await;
            if accept(run["status"].as_str().unwrap_or("")) {
                return run;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("run {id} did not reach the expected status: {}", self.run_json(id).await);
    }

    /// Every log entry of a run, read page by page through the long-poll endpoint.
    pub async fn entries(&self, id: i64) -> Vec<Value> {
        let mut all = Vec::new();
        let mut after = 0;
        loop {
            let (status, page) = self.get(&format!("/api/v1/runs/{id}/log?after={after}&limit=10000")).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            let entries = page["entries"].as_array().expect("entries").clone();
            if entries.is_empty() {
                return all;
            }
            after = page["next"].as_u64().expect("next");
            all.extend(entries);
        }
    }

    /// The text of every entry of one stream (`stdout`, `stderr`, `system`).
    pub async fn lines(&self, id: i64, stream: &str) -> Vec<String> {
        self.entries(id)
            .await
            .into_iter()
            .filter(|entry| entry["stream"] == stream)
            .map(|entry| entry["text"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Runs the CLI binary against this server (without blocking the server's runtime).
    pub async fn cli(&self, args: &[&str]) -> Output {
        let mut command = cli_command(args);
        command.env("ONEOFF_SERVER", &self.url);
        tokio::process::Command::from(command).output().await.expect("run oneoff")
    }
}

pub fn cli_command(args: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_oneoff"));
    command.args(args);
    // A developer's shell must not choose the server, config, store or replica of a test.
    for variable in
        ["ONEOFF_SERVER", "ONEOFF_CONFIG", "ONEOFF_DATABASE", "ONEOFF_REPLICA", "ONEOFF_LOG_FORMAT", "NO_COLOR"]
    {
        command.env_remove(variable);
    }
    command
}

async fn boot(data_dir: &Path, jobs: &str, server_extra: &str, sqlite_only: bool) -> RunningServer {
    let config_text = if sqlite_only { sqlite_config_text } else { config_text };
    let path = write_config(data_dir, &config_text(&data_dir.join("data"), server_extra, jobs));
    let config = oneoff_server::load_config(&path, &Default::default()).expect("valid test config");
    let file = oneoff_server::ConfigFile { path, overrides: Default::default() };
    oneoff_server::start_from_file(config, file).await.expect("server starts")
}

pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("oneoff.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

async fn decode(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let bytes = response.bytes().await.expect("body");
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| panic!("status {status}: body is not JSON: {}", String::from_utf8_lossy(&bytes)));
    (status, value)
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// True while a process with this pid exists (and is not a zombie we could still reap).
pub fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.split(") ").nth(1).is_some_and(|rest| rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// What a WebSocket log viewer received until the server closed the stream.
#[derive(Debug, Default)]
pub struct WsLog {
    pub entries: Vec<Value>,
    pub done: Option<Value>,
    pub close_code: Option<u16>,
    pub close_reason: String,
    pub messages: usize,
}

impl TestServer {
    pub fn ws_url(&self, path: &str) -> String {
        format!("{}{path}", self.url.replacen("http://", "ws://", 1))
    }

    /// Follows a run's log over WebSocket from `after` until the server closes the stream.
    pub async fn ws_follow(&self, id: i64, after: u64) -> WsLog {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        let url = self.ws_url(&format!("/api/v1/runs/{id}/log/ws?after={after}"));
        let (mut socket, _) = tokio_tungstenite::connect_async(url).await.expect("WebSocket handshake");
        let mut log = WsLog::default();
        while let Some(message) = socket.next().await {
            match message.expect("WebSocket message") {
                Message::Text(text) => {
                    log.messages += 1;
                    let value: Value = serde_json::from_str(&text).expect("JSON message");
                    if value["done"] == true {
                        log.done = Some(value);
                    } else {
                        log.entries.extend(value["entries"].as_array().expect("entries").iter().cloned());
                    }
                }
                Message::Close(frame) => {
                    log.close_code = frame.as_ref().map(|frame| u16::from(frame.code));
                    log.close_reason = frame.map(|frame| frame.reason.to_string()).unwrap_or_default();
                    break;
                }
                _ => {}
            }
        }
        log
    }

    /// Follows a run's log over SSE until the `done` event; `last_event_id` resumes.
    pub async fn sse_follow(&self, id: i64, last_event_id: Option<u64>) -> SseLog {
        use futures_util::StreamExt;
        let mut request = self.http.get(format!("{}/api/v1/runs/{id}/log/sse", self.url));
        if let Some(last) = last_event_id {
            request = request.header("last-event-id", last.to_string());
        }
        let response = request.send().await.expect("SSE request");
        let mut log = SseLog { headers: response.headers().clone(), ..SseLog::default() };
        let mut body = response.bytes_stream();
        let mut buffer = String::new();
        while let Some(chunk) = body.next().await {
            buffer.push_str(&String::from_utf8_lossy(&chunk.expect("SSE chunk")));
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                let event = parse_sse_block(&block);
                let finished = matches!(event.event.as_deref(), Some("done" | "error"));
                log.events.push(event);
                if finished {
                    return log;
                }
            }
        }
        log
    }
}

#[derive(Debug, Default, Clone)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
    pub comment: Option<String>,
}

#[derive(Debug, Default)]
pub struct SseLog {
    pub headers: reqwest::header::HeaderMap,
    pub events: Vec<SseEvent>,
}

impl SseLog {
    /// Every entry carried by the data events, in order.
    pub fn entries(&self) -> Vec<Value> {
        self.events
            .iter()
            .filter(|event| event.event.is_none() && event.comment.is_none())
            .flat_map(|event| {
                let value: Value = serde_json::from_str(&event.data).expect("JSON data");
                value["entries"].as_array().cloned().unwrap_or_default()
            })
            .collect()
    }
}

/// What a probe of [`eventually`] gives: `Some`/`Ok` when the awaited thing happened; an
/// `Err` says what was seen instead, for the message when it never happens.
pub trait Awaited<T> {
    fn into_result(self) -> Result<T, String>;
}

impl<T> Awaited<T> for Option<T> {
    fn into_result(self) -> Result<T, String> {
        self.ok_or_else(|| "not yet".to_string())
    }
}

impl<T> Awaited<T> for Result<T, String> {
    fn into_result(self) -> Result<T, String> {
        self
    }
}

/// Polls `check` every 20 ms until it gives `Some` or `Ok`, for at most `within`; then
/// panics naming `what` and the last thing seen, so a broken promise fails loudly instead
/// of hanging.
pub async fn eventually<T, R, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    R: Awaited<T>,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = R>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match check().await.into_result() {
            Ok(value) => return value,
            Err(seen) if tokio::time::Instant::now() >= deadline => {
                panic!("gave up after {within:?} waiting for {what}; last saw: {seen}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// The real `oneoff serve` binary as a child process, killed on drop: for what only a
/// process of its own shows, such as the server's memory, or a `kill -9`.
pub struct ServerProcess {
    pub child: std::process::Child,
    pub url: String,
}

impl ServerProcess {
    /// Starts `oneoff serve --config CONFIG` on a free loopback port and waits for its URL.
    pub fn start(config: &Path) -> ServerProcess {
        ServerProcess::start_with_env(config, &[])
    }

    /// As `start`, with variables added to the server's environment.
    pub fn start_with_env(config: &Path, env: &[(&str, &str)]) -> ServerProcess {
        ServerProcess::spawn(config, env, std::process::Stdio::null())
    }

    /// As `start_with_env`, with the server's own log (its stderr) written to the file `log`.
    pub fn start_logging_to(config: &Path, env: &[(&str, &str)], log: &Path) -> ServerProcess {
        ServerProcess::spawn(config, env, std::fs::File::create(log).expect("the log file").into())
    }

    fn spawn(config: &Path, env: &[(&str, &str)], stderr: std::process::Stdio) -> ServerProcess {
        use std::io::BufRead;
        let config = config.to_str().expect("a UTF-8 config path");
        let mut child = cli_command(&["serve", "--config", config, "--listen", "127.0.0.1:0"])
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start oneoff serve");
        let mut announced = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        std::io::BufReader::new(stdout).read_line(&mut announced).expect("read the server's first line");
        let url = announced.trim().strip_prefix("oneoff listening on ").expect("serve prints its URL").to_string();
        ServerProcess { child, url }
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.url.trim_start_matches("http://").parse().expect("the URL is http://IP:PORT")
    }

    /// A size field of `/proc/PID/status` (`VmRSS`, `VmHWM`), in KiB.
    pub fn memory_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("the server runs");
        let line = status.lines().find(|line| line.starts_with(&format!("{field}:"))).expect("the field exists");
        line.split_whitespace().nth(1).and_then(|kib| kib.parse().ok()).expect("a size in kB")
    }

    /// Restarts the peak (`VmHWM`) from the current resident size.
    pub fn reset_peak_memory(&self) {
        std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5").expect("reset VmHWM (Linux)");
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `oneoff serve` on a loopback port and waits until it prints its URL; its log is discarded.
pub fn serve_process(config: &Path) -> ServerProcess {
    ServerProcess::start(config)
}

/// GETs a URL and decodes its JSON body.
pub async fn get_json(url: &str) -> Value {
    reqwest::get(url).await.expect("GET").json().await.expect("a JSON body")
}

impl TestServer {
    /// The same helpers for a server running in another process (the `oneoff` binary), with
    /// `dir` as its directory; [`TestServer::stop`] and `restart` do nothing for it.
    pub fn remote(url: String, dir: tempfile::TempDir) -> TestServer {
        TestServer { server: None, url, dir, http: reqwest::Client::new(), sqlite_only: false }
    }
}

/// The bytes the store of the server on `data_dir` keeps, each with a name for messages: the
/// SQLite database and its WAL, or, on PostgreSQL, every file of the server's database after
/// a checkpoint (its live rows and the dead ones not yet vacuumed). For tests that a secret
/// never reaches the store, however it is read.
pub fn stored_files(data_dir: &Path) -> Vec<(String, Vec<u8>)> {
    if suite_store() == SuiteStore::Sqlite {
        return ["oneoff.db", "oneoff.db-wal"]
            .iter()
            .map(|file| (file.to_string(), std::fs::read(data_dir.join(file)).unwrap_or_default()))
            .collect();
    }
    let url = postgres_database_of(data_dir);
    let postgres = oneoff_testpg::Postgres::shared();
    let database = url.rsplit('/').next().expect("the URL names its database");
    // With fsync off, written pages may still be only in PostgreSQL's memory.
    postgres.psql(database, "CHECKPOINT");
    let oid = postgres.psql(database, "SELECT oid FROM pg_database WHERE datname = current_database()");
    let files = postgres.directory().join("data").join("base").join(oid.trim());
    let mut stored = Vec::new();
    for entry in std::fs::read_dir(&files).expect("the database's files") {
        let path = entry.expect("a file of the database").path();
        let name = format!("{database}/{}", path.file_name().unwrap_or_default().to_string_lossy());
        stored.push((name, std::fs::read(&path).unwrap_or_default()));
    }
    stored
}

impl TestServer {
    /// A server on a SQLite database prepared beforehand in the directory's `data/oneoff.db`
    /// (a store made elsewhere): on SQLite whatever the suite's store.
    pub async fn start_in(dir: tempfile::TempDir, jobs: &str, server_extra: &str) -> TestServer {
        let server = boot(dir.path(), jobs, server_extra, true).await;
        let url = server.url();
        TestServer { server: Some(server), url, dir, http: reqwest::Client::new(), sqlite_only: true }
    }
}

impl TestServer {
    /// Begins a graceful stop, as SIGTERM does, without waiting for it: the server drains
    /// while HTTP goes on. [`TestServer::stop`] then waits for the end.
    pub fn begin_stop(&self) {
        self.server.as_ref().expect("a running server").stop_token().cancel();
    }
}

impl TestServer {
    /// Writes the server's config file again with `jobs` (and the `[server]` lines it
    /// started with plus `server_extra`), as an operator editing it before a reload would.
    pub fn rewrite_config(&self, server_extra: &str, jobs: &str) -> PathBuf {
        let config_text = if self.sqlite_only { sqlite_config_text } else { config_text };
        write_config(self.dir.path(), &config_text(&self.dir.path().join("data"), server_extra, jobs))
    }

    /// Writes `text` as the server's whole config file.
    pub fn write_raw_config(&self, text: &str) -> PathBuf {
        write_config(self.dir.path(), text)
    }
}

/// The sequence numbers of log entries (JSON), in order.
pub fn seqs_of(entries: &[Value]) -> Vec<u64> {
    entries.iter().map(|entry| entry["seq"].as_u64().expect("an entry's seq")).collect()
}

impl TestServer {
    /// Follows a run's log over WebSocket with `query` (e.g. `tail=5`) until the server
    /// closes the stream, or only its first `max_messages` text messages (then it hangs up).
    /// `Err` is the status and body of a refused handshake.
    pub async fn ws_follow_query(
        &self,
        id: i64,
        query: &str,
        max_messages: Option<usize>,
    ) -> Result<(WsLog, Vec<Value>), (u16, Value)> {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::{Error, Message};
        let url = self.ws_url(&format!("/api/v1/runs/{id}/log/ws?{query}"));
        let mut socket = match tokio_tungstenite::connect_async(url).await {
            Ok((socket, _)) => socket,
            Err(Error::Http(response)) => {
                let body = response.body().as_deref().and_then(|body| serde_json::from_slice(body).ok());
                return Err((response.status().as_u16(), body.unwrap_or(Value::Null)));
            }
            Err(error) => panic!("WebSocket handshake: {error}"),
        };
        let (mut log, mut messages) = (WsLog::default(), Vec::new());
        while let Some(message) = socket.next().await {
            match message.expect("WebSocket message") {
                Message::Text(text) => {
                    log.messages += 1;
                    let value: Value = serde_json::from_str(&text).expect("JSON message");
                    if value["done"] == true {
                        log.done = Some(value.clone());
                    } else {
                        log.entries.extend(value["entries"].as_array().expect("entries").iter().cloned());
                    }
                    messages.push(value);
                    if max_messages.is_some_and(|max| log.messages >= max) {
                        break;
                    }
                }
                Message::Close(frame) => {
                    log.close_code = frame.as_ref().map(|frame| u16::from(frame.code));
                    log.close_reason = frame.map(|frame| frame.reason.to_string()).unwrap_or_default();
                    break;
                }
                _ => {}
            }
        }
        Ok((log, messages))
    }

    /// Follows a run's log over SSE with `query` (and `Last-Event-ID` when given) until the
    /// `done` or `error` event, or only its first `max_events` data events. `Err`: the
    /// status and body of a refused request.
    pub async fn sse_follow_query(
        &self,
        id: i64,
        query: &str,
        last_event_id: Option<u64>,
        max_events: Option<usize>,
    ) -> Result<SseLog, (u16, Value)> {
        use futures_util::StreamExt;
        let mut request = self.http.get(format!("{}/api/v1/runs/{id}/log/sse?{query}", self.url));
        if let Some(last) = last_event_id {
            request = request.header("last-event-id", last.to_string());
        }
        let response = request.send().await.expect("SSE request");
        if !response.status().is_success() {
            let status = response.status().as_u16();
            return Err((status, response.json().await.unwrap_or(Value::Null)));
        }
        let mut log = SseLog { headers: response.headers().clone(), ..SseLog::default() };
        let mut body = response.bytes_stream();
        let mut buffer = String::new();
        let mut data_events = 0;
        while let Some(chunk) = body.next().await {
            buffer.push_str(&String::from_utf8_lossy(&chunk.expect("SSE chunk")));
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                let event = parse_sse_block(&block);
                let finished = matches!(event.event.as_deref(), Some("done" | "error"));
                if event.event.is_none() && event.comment.is_none() {
                    data_events += 1;
                }
                log.events.push(event);
                if finished || max_events.is_some_and(|max| data_events >= max) {
                    return Ok(log);
                }
            }
        }
        Ok(log)
    }
}

/// One SSE event (a block up to its blank line): `id`, `event`, the `data` lines joined, or
/// a `:` comment.
fn parse_sse_block(block: &str) -> SseEvent {
    let mut event = SseEvent::default();
    for line in block.lines() {
        if let Some(comment) = line.strip_prefix(':') {
            event.comment = Some(comment.to_string());
        } else if let Some((field, value)) = line.split_once(':') {
            let value = value.strip_prefix(' ').unwrap_or(value).to_string();
            match field {
                "id" => event.id = Some(value),
                "event" => event.event = Some(value),
                "data" => event.data.push_str(&value),
                _ => {}
            }
        }
    }
    event
}
