//! The throwaway PostgreSQL harness against a real server: databases are separate and
//! reachable by their URLs, passwords are required, data survives a stop and a start, and
//! nothing (directory or server process) outlives a dropped cluster or a killed test process.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oneoff_testpg::{psql_url, Postgres};

#[test]
fn shared_cluster_gives_distinct_reachable_databases() {
    let postgres = Postgres::shared();
    assert!(std::ptr::eq(postgres, Postgres::shared()), "one shared cluster per process");
    let first = postgres.new_database();
    let second = postgres.new_database();
    assert_ne!(first, second);
    let prefix = format!("postgres://oneoff@127.0.0.1:{}/", postgres.port());
    for url in [&first, &second] {
        let name = url.strip_prefix(&prefix).unwrap_or_else(|| panic!("{url} does not start with {prefix}"));
        assert_eq!(psql_url(url, "select current_database()").unwrap().trim(), name);
    }
    psql_url(&first, "create table only_in_first (id int)").unwrap();
    psql_url(&first, "select * from only_in_first").unwrap();
    let error = psql_url(&second, "select * from only_in_first").unwrap_err();
    assert!(error.contains("does not exist"), "{error}");
}

#[test]
fn password_database_refuses_a_wrong_password() {
    let postgres = Postgres::shared();
    let password = "p@ss w:rd/'%?#";
    let url = postgres.new_database_with_password(password);
    assert!(!url.contains(password), "the password is percent-encoded in {url}");
    let role = psql_url(&url, "select current_user").unwrap();
    assert!(role.trim().starts_with("test_user_"), "{role}");
    psql_url(&url, "create table owned (id int)").expect("the role owns its database");

    let wrong = url.replacen("p%40ss", "q%40ss", 1);
    assert_ne!(wrong, url);
    let error = psql_url(&wrong, "select 1").unwrap_err();
    assert!(error.contains("password authentication failed"), "{error}");
}

#[tokio::test]
async fn urls_connect_with_sqlx() {
    let postgres = Postgres::shared();
    for url in [postgres.new_database(), postgres.new_database_with_password("p@ss w:rd/'%?#é")] {
        let pool = sqlx::PgPool::connect(&url).await.unwrap_or_else(|error| panic!("{url}: {error}"));
        let answer: i32 = sqlx::query_scalar("select 42").fetch_one(&pool).await.unwrap();
        assert_eq!(answer, 42);
        pool.close().await;
    }
}

#[test]
fn stopped_and_restarted_cluster_keeps_data_and_port() {
    let postgres = Postgres::start_new();
    let url = postgres.new_database();
    psql_url(&url, "create table kept (word text); insert into kept values ('still here')").unwrap();
    let port = postgres.port();

    postgres.stop();
    assert_eq!(postgres.server_pid(), None);
    let error = psql_url(&url, "select 1").unwrap_err();
    assert!(error.contains("Connection refused"), "{error}");

    postgres.start();
    assert_eq!(postgres.port(), port);
    assert_eq!(psql_url(&url, "select word from kept").unwrap().trim(), "still here");
}

#[test]
fn dropping_a_cluster_removes_its_directory_and_server() {
    let postgres = Postgres::start_new();
    let directory = postgres.directory().to_owned();
    let pid = postgres.server_pid().expect("a started cluster has a server");
    assert!(process_is_alive(pid));
    drop(postgres);
    assert!(!directory.exists(), "{} outlived its cluster", directory.display());
    eventually("the dropped cluster's server exits", || !process_is_alive(pid));
}

#[test]
fn killed_test_process_leaves_nothing_behind() {
    let mut holder = Command::new(env!("CARGO_BIN_EXE_oneoff-testpg-hold"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(holder.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let (directory, pid) = line.trim().rsplit_once(' ').unwrap();
    let (directory, pid) = (Path::new(directory), pid.parse::<u32>().unwrap());
    assert!(directory.exists() && process_is_alive(pid), "{line}");

    holder.kill().unwrap(); // SIGKILL: no destructor, no panic handler runs
    holder.wait().unwrap();
    eventually("the killed process's server exits", || !process_is_alive(pid));
    eventually("the killed process's cluster directory is removed", || !directory.exists());
}

#[test]
fn durable_cluster_keeps_fsync_on_and_throwaway_turns_it_off() {
    let durable = Postgres::start_new_durable();
    assert_eq!(durable.psql("postgres", "show fsync").trim(), "on");
    assert_eq!(durable.psql("postgres", "show synchronous_commit").trim(), "on");
    assert_eq!(Postgres::shared().psql("postgres", "show fsync").trim(), "off");
    assert_eq!(Postgres::shared().psql("postgres", "show max_connections").trim(), "300");
}

#[test]
fn stopping_the_shared_cluster_is_refused() {
    let result = std::panic::catch_unwind(|| Postgres::shared().stop());
    assert!(result.is_err(), "stop on the shared cluster must panic");
    assert_eq!(Postgres::shared().psql("postgres", "select 1").trim(), "1");
}

/// Alive, and not a zombie waiting for a parent (or a container's init) to reap it.
fn process_is_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

/// Polls `condition` until it holds, failing the test after ten seconds.
fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}
