//! Hostile disks: a data directory that fills up, a read-only one, a database with damaged
//! pages.
//!
//! The full-disk tests run the real `oneoff` binary in a mount namespace of its own
//! (`unshare --mount`, util-linux) with its data directory on a 4 MB tmpfs, which goes away
//! with the process; `nsenter` into that namespace gives it room again. The job prints its own
//! counter on every line, so each stored line can be checked against the number it was stored
//! under. Like the rest of this suite, they need root.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::{eventually, sqlite_config_text, write_config, TestServer};

/// 30 MB: far more than 4 MB of disk and the 16 MB the capture channel can hold at most, so
/// the job must block on its writes while the disk is full.
const LINES: u64 = 150_000;
const PADDING: &str = "padded to take up room: the quick brown fox jumps over the lazy dog, \
    the quick brown fox jumps over the lazy dog, the quick brown fox jumps over the lazy dog, \
    the quick brown fox jumps over the lazy dog";
const WAIT: Duration = Duration::from_secs(45);

/// What the counting job prints on line `seq`.
fn printed(seq: u64) -> String {
    format!("line {seq:07} of the counting job, {PADDING}")
}

fn jobs() -> String {
    format!(
        r#"
[[job]]
name = "count"
command = ["seq", "-f", "line %07.0f of the counting job, {PADDING}", "1", "{LINES}"]

[[job]]
name = "hello"
command = ["echo", "hello"]
"#
    )
}

/// A `oneoff serve` process whose data directory is a tmpfs of its own.
struct SmallDisk {
    api: TestServer,
    server: tokio::process::Child,
    pid: i32,
    data_dir: PathBuf,
    server_log: PathBuf,
}

impl SmallDisk {
    async fn start(size: &str, server_extra: &str) -> SmallDisk {
        let dir = tempfile::tempdir().expect("temp dir");
        let data_dir = dir.path().join("data");
        std::fs::create_dir(&data_dir).expect("data dir");
        // While the store refuses, a line the job wrote whole can wait half read in the pipe;
        // a long flush keeps it one entry, so a line's number is its sequence number here
        // (lines stored in pieces are it::progress's).
        let extra = format!("drain = \"1s\"\npartial_line_flush = \"10m\"\n{server_extra}");
        // The disk that fills is the one under the SQLite file: on SQLite whatever the suite's store.
        let config = write_config(dir.path(), &sqlite_config_text(&data_dir, &extra, &jobs()));
        let server_log = dir.path().join("server.log");
        let script = r#"mount -t tmpfs -o size="$1" tmpfs "$2" && exec "$3" serve --config "$4""#;
        let mut server = tokio::process::Command::new("unshare")
            .args(["--mount", "sh", "-c", script, "sh", size])
            .arg(&data_dir)
            .arg(env!("CARGO_BIN_EXE_oneoff"))
            .arg(&config)
            .env("ONEOFF_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&server_log).expect("server log file"))
            .kill_on_drop(true)
            .spawn()
            .expect("unshare (util-linux) runs");
        let pid = server.id().and_then(|pid| i32::try_from(pid).ok()).expect("server pid");
        let mut stdout = BufReader::new(server.stdout.take().expect("server stdout")).lines();
        let url = loop {
            match stdout.next_line().await.expect("read the server's stdout") {
                Some(line) => {
                    if let Some(url) = line.strip_prefix("oneoff listening on ") {
                        break url.to_string();
                    }
                }
                None => panic!("the server ended before serving: {}", read(&server_log)),
            }
        };
        // Keep reading, so nothing the server prints later meets a closed pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
        SmallDisk { api: TestServer::remote(url, dir), server, pid, data_dir, server_log }
    }

    /// Gives the data directory more room, as an operator freeing space would.
    async fn grow(&self, size: &str) {
        let status = tokio::process::Command::new("nsenter")
            .args(["-t", &self.pid.to_string(), "-m", "mount", "-o", &format!("remount,size={size}")])
            .arg(&self.data_dir)
            .status()
            .await
            .expect("nsenter (util-linux) runs");
        assert!(status.success(), "remount failed: {status}");
    }

    /// Takes the last free bytes of the data directory, so that even a one-page write fails.
    async fn fill_up(&self) {
        let status = tokio::process::Command::new("nsenter")
            .args([
                "-t",
                &self.pid.to_string(),
                "-m",
                "sh",
                "-c",
                r#"cat /dev/zero > "$1/filler"; test -e "$1/filler""#,
                "sh",
            ])
            .arg(&self.data_dir)
            .stderr(Stdio::null())
            .status()
            .await
            .expect("nsenter (util-linux) runs");
        assert!(status.success(), "cannot fill the data directory: {status}");
    }

    /// Fills the data directory, then creates tokens until there is no room even for one of
    /// them (the room that failed commits left in the write-ahead log goes last); returns the
    /// refusal. Every answer until then must be a 201: never an "internal error".
    async fn use_up_every_byte(&self) -> Value {
        self.fill_up().await;
        for _ in 0..10_000 {
            let (status, body) = self.api.post("/api/v1/tokens", json!({ "name": "filler" })).await;
            if status != StatusCode::CREATED {
                assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
                return body;
            }
        }
        panic!("10,000 tokens fit on a full disk");
    }

    fn server_log(&self) -> String {
        read(&self.server_log)
    }

    /// Stops the server as SIGTERM does and waits for it.
    async fn stop(mut self) {
        kill(Pid::from_raw(self.pid), Signal::SIGTERM).expect("signal the server");
        let status = self.server.wait().await.expect("wait for the server");
        assert!(status.success(), "the server did not stop cleanly: {status}\n{}", self.server_log());
    }

    /// Waits until `/readyz` answers with `status`, and returns its body.
    async fn readiness(&self, status: StatusCode) -> Value {
        eventually(&format!("/readyz to answer {status}"), WAIT, || async {
            let (seen, body) = self.api.get("/readyz").await;
            if seen == status {
                Ok(body)
            } else {
                Err(format!("{seen} {body}"))
            }
        })
        .await
    }

    /// Waits until the counting job is blocked writing to its stdout pipe.
    async fn job_blocked_on_its_writes(&self) {
        eventually("the job to block on a write to its pipe", WAIT, || async {
            let states: Vec<String> = children(self.pid)
                .into_iter()
                .map(|pid| std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default())
                .collect();
            if states.iter().any(|wchan| wchan.contains("pipe_write")) {
                Ok(())
            } else {
                Err(format!("the server's children wait in {states:?}"))
            }
        })
        .await;
    }

    /// Waits until the server's log holds `text`.
    async fn logged(&self, text: &str) {
        eventually(&format!("the server to log {text:?}"), WAIT, || async {
            if self.server_log().contains(text) {
                Ok(())
            } else {
                Err("not yet".to_string())
            }
        })
        .await;
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The child processes of `pid` (the server's jobs).
fn children(pid: i32) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    tasks
        .flatten()
        .flat_map(|task| read(&task.path().join("children")).split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .filter_map(|pid| pid.parse().ok())
        .collect()
}

/// Checks that `entries` are the job's lines 1..=N under their own numbers, gapless, with at
/// most system lines after them; returns N.
fn assert_lines_are_the_jobs_own(entries: &[Value]) -> u64 {
    let mut stdout = 0;
    for (entry, seq) in entries.iter().zip(1u64..) {
        assert_eq!(entry["seq"].as_u64(), Some(seq), "a gap or a repeated number at {seq}: {entry}");
        if entry["stream"] == "stdout" {
            assert_eq!(stdout + 1, seq, "a job line after a system line: {entry}");
            assert_eq!(entry["text"].as_str(), Some(printed(seq).as_str()), "line {seq} is not what the job printed");
            stdout = seq;
        }
    }
    stdout
}

/// Checks "N lines of output from here on could not be stored, so the run was stopped: storage
/// full…": N lines after the `stored` ones, at most what the job would have printed.
fn assert_counts_the_unstored_lines(text: &str, stored: u64) {
    let (count, rest) = text.split_once(' ').unwrap_or_default();
    assert!(
        rest.starts_with("lines of output from here on could not be stored, so the run was stopped: storage full"),
        "{text}"
    );
    let unstored: u64 = count.parse().unwrap_or_else(|_| panic!("no count in {text:?}"));
    assert!(unstored > 0 && stored + unstored <= LINES, "{stored} stored, {unstored} not");
}

#[tokio::test]
async fn a_full_disk_holds_the_job_back_and_loses_no_line_once_space_returns() {
    let disk = SmallDisk::start("4m", "store_wait = \"5m\"").await;
    let run = disk.api.start_run("count", json!({})).await;

    let ready = disk.readiness(StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(ready["status"], "storage_full", "{ready}");
    let reason = ready["reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("storage full"), "{ready}");
    assert!(reason.contains(&disk.data_dir.display().to_string()), "names the data directory: {ready}");
    // Back-pressure: the lines wait, the pipe fills, the job waits on its write.
    disk.job_blocked_on_its_writes().await;
    assert_eq!(disk.api.run_json(run).await["status"], "running");

    // A new run would only wait too (a small write may still fit where the lines do not).
    let (status, refused) = disk.api.post("/api/v1/runs", json!({ "job": "hello", "params": {} })).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{refused}");
    assert_eq!(refused["error"]["code"], "storage_full", "{refused}");
    let message = refused["error"]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("storage full") && message.contains("free space in its data directory"), "{message}");
    // Other writes are stored while they fit, then refused in the same words.
    let refused = disk.use_up_every_byte().await;
    assert_eq!(refused["error"]["code"], "storage_full", "{refused}");
    // The scrape still answers on a full disk, and counts the refusals by kind.
    let metrics = crate::metrics::scrape(&disk.api.url).await;
    assert!(metrics.value("oneoff_store_errors_total", &[("kind", "full")]) >= 1.0);
    assert_eq!(metrics.value("oneoff_store_errors_total", &[("kind", "unavailable")]), 0.0);

    // An operator frees space; nothing is restarted.
    disk.grow("1g").await;
    disk.readiness(StatusCode::OK).await;
    let finished = eventually("the run to end", WAIT, || async {
        let record = disk.api.run_json(run).await;
        match record["status"].as_str() {
            Some("running") => Err(record.to_string()),
            _ => Ok(record),
        }
    })
    .await;
    assert_eq!((&finished["status"], &finished["exit_code"]), (&json!("succeeded"), &json!(0)), "{finished}");
    let entries = disk.api.entries(run).await;
    assert_eq!(assert_lines_are_the_jobs_own(&entries), LINES);
    assert_eq!(entries.len() as u64, LINES, "nothing but the job's lines");

    let hello = disk.api.start_run("hello", json!({})).await;
    assert_eq!(disk.api.wait_final(hello).await["status"], "succeeded");
    assert_eq!(disk.api.lines(hello, "stdout").await, ["hello"]);
    disk.stop().await;
}

#[tokio::test]
async fn a_disk_that_stays_full_fails_the_run_with_a_system_line_counting_the_lines_not_stored() {
    let disk = SmallDisk::start("4m", "store_wait = \"2s\"").await;
    let run = disk.api.start_run("count", json!({})).await;
    disk.job_blocked_on_its_writes().await;
    // The whole store wait passes with the disk full; then there is room for the system line.
    disk.logged("the store refused them for the whole store wait").await;
    disk.grow("64m").await;

    let finished = disk.api.wait_final(run).await;
    assert_eq!(finished["status"], "failed", "never `succeeded` with lines missing: {finished}");
    let entries = disk.api.entries(run).await;
    let stored = assert_lines_are_the_jobs_own(&entries);
    let [.., last] = entries.as_slice() else { panic!("an empty log") };
    assert_eq!((last["seq"].as_u64(), &last["stream"]), (Some(stored + 1), &json!("system")), "{last}");
    let note = last["text"].as_str().unwrap_or_default();
    assert_counts_the_unstored_lines(note, stored);
    assert_eq!(finished["error"].as_str(), Some(note), "the error field says the same");
    disk.readiness(StatusCode::OK).await;
    disk.stop().await;
}

#[tokio::test]
async fn when_even_the_system_line_cannot_be_stored_the_run_error_says_how_many_lines_are_missing() {
    // The run's wait outlasts `use_up_every_byte` even on a loaded machine: a system line tried
    // before the last bytes are taken would still fit in them.
    let disk = SmallDisk::start("4m", "store_wait = \"10s\"").await;
    let run = disk.api.start_run("count", json!({})).await;
    disk.job_blocked_on_its_writes().await;
    disk.use_up_every_byte().await;
    // Lines, system line and the run's end all wait for the store in vain.
    disk.logged("cannot record how the run ended yet").await;
    assert_eq!(disk.api.run_json(run).await["status"], "running", "never `succeeded` with lines missing");
    let ready = disk.readiness(StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(ready["status"], "storage_full", "{ready}");

    // The store recovers by itself once there is room, and records the run's end.
    disk.grow("64m").await;
    let finished = disk.api.wait_final(run).await;
    assert_eq!(finished["status"], "failed", "{finished}");
    let entries = disk.api.entries(run).await;
    let stored = assert_lines_are_the_jobs_own(&entries);
    assert_eq!(entries.len() as u64, stored, "no system line: {:?}", entries.last());
    let error = finished["error"].as_str().unwrap_or_default();
    assert_counts_the_unstored_lines(error, stored);
    assert!(error.ends_with("(the log could not say so either)"), "{error}");
    disk.readiness(StatusCode::OK).await;
    disk.stop().await;
}

/// Starts a server on `data_dir` in-process; returns the error it fails with.
async fn start_error(data_dir: &Path) -> String {
    // The SQLite file is what is damaged or read-only: on SQLite whatever the suite's store.
    let path = write_config(data_dir.parent().expect("a parent"), &sqlite_config_text(data_dir, "", &jobs()));
    let config = oneoff_server::load_config(&path, &Default::default()).expect("valid config");
    match oneoff_server::start(config).await {
        Ok(_) => panic!("the server started on a bad database"),
        Err(error) => format!("{error:#}"),
    }
}

#[tokio::test]
async fn a_database_with_damaged_pages_stops_the_start_and_says_what_to_do() {
    // Damaged pages of the SQLite file: on SQLite whatever the suite's store.
    let mut server = TestServer::start_sqlite(&jobs(), "").await;
    let run = server.start_run("hello", json!({})).await;
    server.wait_final(run).await;
    server.stop().await;
    let data_dir = server.dir.path().join("data");
    let database = data_dir.join("oneoff.db");
    // Whether the last pages are still in the write-ahead log after a stop depends on timing:
    // fold them into the file first, so there are pages to damage.
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", database.display())).await.expect("open");
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&pool).await.expect("checkpoint");
    pool.close().await;
    // Everything after the first page (the header and the schema) is overwritten.
    let mut bytes = std::fs::read(&database).expect("read the database");
    assert!(bytes.len() >= 4 * 4096, "a database of a few pages at least");
    bytes[4096..].fill(0xA5);
    std::fs::write(&database, bytes).expect("damage the database");

    let error = start_error(&data_dir).await;
    assert!(error.contains(&format!("the database {} is damaged", database.display())), "{error}");
    assert!(error.contains("quick_check found"), "{error}");
    assert!(error.contains("restore it from a backup"), "{error}");
}

#[tokio::test]
async fn a_read_only_data_directory_stops_the_start_with_read_only_in_the_message() {
    // A read-only SQLite file and directory: on SQLite whatever the suite's store.
    let mut server = TestServer::start_sqlite(&jobs(), "").await;
    server.stop().await;
    let data_dir = server.dir.path().join("data");
    let empty_dir = server.dir.path().join("empty");
    std::fs::create_dir(&empty_dir).expect("empty data dir");
    let config = write_config(server.dir.path(), &sqlite_config_text(&data_dir, "", &jobs()));
    // A read-only bind mount of each directory, in a mount namespace that ends with the server.
    for (dir, what) in [(&data_dir, "an existing database"), (&empty_dir, "no database yet")] {
        let script = r#"mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && exec "$2" serve --config "$3" --data-dir "$1""#;
        let output = tokio::process::Command::new("unshare")
            .args(["--mount", "sh", "-c", script, "sh"])
            .arg(dir)
            .arg(env!("CARGO_BIN_EXE_oneoff"))
            .arg(&config)
            .output()
            .await
            .expect("unshare (util-linux) runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{what}: the server started on a read-only directory");
        let database = dir.join("oneoff.db");
        assert!(stderr.contains(&format!("the database {} is read-only", database.display())), "{what}: {stderr}");
        assert!(stderr.contains("mount it read-write"), "{what}: {stderr}");
    }
}
