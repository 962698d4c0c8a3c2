//! The suite itself: its servers run on the store `ONEOFF_TEST_DATABASE` names (`sqlite`, the
//! default, or `postgres`), a restart finds the same data, any other value stops the suite
//! with the fix, and a developer's shell does not reach the servers under test. Two tests run
//! this test binary again, with the environment they try.

use std::process::{Command, Output};

use serde_json::json;

use crate::support::{postgres_database_of, TestServer};

const JOB: &str = "[[job]]\nname = \"hello\"\ncommand = [\"echo\", \"hello\"]\n";

fn on_postgres() -> bool {
    std::env::var("ONEOFF_TEST_DATABASE").as_deref() == Ok("postgres")
}

/// The runs the PostgreSQL database of `data_dir` holds, counted from outside the server.
fn postgres_runs(data_dir: &std::path::Path) -> String {
    let url = postgres_database_of(data_dir);
    oneoff_testpg::psql_url(&url, "SELECT count(*) FROM runs").expect("psql reads the test database").trim().to_string()
}

#[tokio::test]
async fn servers_run_on_the_store_oneoff_test_database_names_and_a_restart_keeps_it() {
    let mut server = TestServer::start(JOB).await;
    let data_dir = server.dir.path().join("data");
    let id = server.start_run("hello", json!({})).await;
    assert_eq!(server.wait_final(id).await["status"], "succeeded");
    let check_store = || {
        assert_eq!(data_dir.join("oneoff.db").exists(), !on_postgres(), "a SQLite file only on SQLite");
        if on_postgres() {
            assert_eq!(postgres_runs(&data_dir), "1", "the run is in the data_dir's PostgreSQL database");
        }
    };
    check_store();

    server.restart(JOB, "").await;
    assert_eq!(server.lines(id, "stdout").await, ["hello"], "the restarted server finds the run");
    check_store();

    let mut sqlite = TestServer::start_sqlite(JOB, "").await;
    sqlite.restart(JOB, "").await;
    assert!(sqlite.dir.path().join("data").join("oneoff.db").exists(), "start_sqlite is on SQLite, restarts too");
}

/// Runs one test of this binary, by its full name, with `env` added to the environment.
fn run_test(name: &str, env: &[(&str, &str)]) -> Output {
    let binary = std::env::current_exe().expect("the test binary's path");
    Command::new(binary).args(["--exact", name]).envs(env.iter().copied()).output().expect("run the test binary")
}

fn printed(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

#[test]
fn any_other_value_of_oneoff_test_database_fails_with_the_accepted_values() {
    let name = "suite::servers_run_on_the_store_oneoff_test_database_names_and_a_restart_keeps_it";
    for wrong in ["mysql", "Postgres", ""] {
        let output = run_test(name, &[("ONEOFF_TEST_DATABASE", wrong)]);
        let printed = printed(&output);
        assert!(!output.status.success(), "{wrong:?} was taken: {printed}");
        let advice = format!("ONEOFF_TEST_DATABASE is `{wrong}`: set it to `sqlite` (the default) or `postgres`");
        assert!(printed.contains(&advice), "{wrong:?}: {printed}");
    }
}

#[test]
fn a_developers_oneoff_database_and_replica_do_not_reach_the_servers_under_test() {
    // `oneoff serve` children refuse to start with either of these, so the test only passes
    // when `support::cli_command` keeps them out.
    let leaked = [("ONEOFF_DATABASE", "mysql://developer@db/oneoff"), ("ONEOFF_REPLICA", "-leaked")];
    let output = run_test("hostile_audit::jobs_never_see_the_audit_key", &leaked);
    let printed = printed(&output);
    assert!(output.status.success(), "{printed}");
    assert!(printed.contains("1 passed"), "the test ran: {printed}");
}
