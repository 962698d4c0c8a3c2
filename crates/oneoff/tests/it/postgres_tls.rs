//! TLS to PostgreSQL, as docs/configuration.md promises it: `sslmode=verify-full` with the
//! CA in `sslrootcert` encrypts every connection and checks that the server is the one the
//! URL names; a certificate from another CA, or for another name, is refused at start in our
//! words; `require` with a root certificate checks it as libpq does, and `require` alone
//! checks nothing. A real PostgreSQL serving TLS with certificates made by the test.

use std::path::Path;

use oneoff_testpg::Postgres;
use reqwest::StatusCode;
use serde_json::json;

use crate::support::{cli_command, sqlite_config_text, stderr, write_config, ServerProcess, TestServer};

const JOBS: &str = r#"
[[job]]
name = "hello"
command = ["echo", "hello over TLS"]
"#;

fn tls_url(database: &str, mode: &str, authority: Option<&Path>) -> String {
    let mut url = format!("{database}?sslmode={mode}");
    if let Some(authority) = authority {
        url.push_str(&format!("&sslrootcert={}", authority.display()));
    }
    url
}

/// What `oneoff serve` prints when it refuses to start on `database`; panics if it starts.
fn refusal(database: &str) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path(), &sqlite_config_text(dir.path(), &format!("database = {database:?}"), JOBS));
    let output = cli_command(&["serve", "--config", config.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .output()
        .expect("run oneoff serve");
    assert!(!output.status.success(), "oneoff serve started on {database}");
    stderr(&output)
}

/// A message of ours says what is wrong and what to do, never the TLS library's words.
fn assert_ours(message: &str, expected: &[&str]) {
    for part in expected {
        assert!(message.contains(part), "expected `{part}` in: {message}");
    }
    for library in ["invalid peer certificate", "BadSignature", "UnknownIssuer", "IpAddress(", "os error"] {
        assert!(!message.contains(library), "the TLS library's words `{library}` in: {message}");
    }
}

/// Starts on `database`, answers ready, and says so; panics if it does not.
async fn starts_and_is_ready(database: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path(), &sqlite_config_text(dir.path(), &format!("database = {database:?}"), JOBS));
    let server = ServerProcess::start(&config);
    let response = reqwest::get(format!("{}/readyz", server.url)).await.expect("GET /readyz");
    assert_eq!(response.status(), StatusCode::OK, "{database}: {}", response.text().await.unwrap_or_default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_with_the_servers_ca_encrypts_every_connection() {
    let postgres = Postgres::start_new_with_tls();
    let database = postgres.new_database();
    let name = database.rsplit('/').next().unwrap().to_string();
    let url = tls_url(&database, "verify-full", Some(&postgres.tls().authority));
    let server = TestServer::start_sqlite(JOBS, &format!("database = {url:?}")).await;
    let id = server.start_run("hello", json!({})).await;
    assert_eq!(server.wait_final(id).await["status"], "succeeded");
    assert_eq!(server.lines(id, "stdout").await, ["hello over TLS"]);
    let connections = postgres.psql(
        "postgres",
        &format!(
            "select count(*), count(*) filter (where s.ssl) from pg_stat_activity a join pg_stat_ssl s using (pid) \
             where a.datname = '{name}' and a.application_name = 'oneoff'"
        ),
    );
    let (all, encrypted) = connections.trim().split_once('|').expect("two columns");
    assert!(all.parse::<u32>().unwrap() >= 1, "the server holds connections: {connections}");
    assert_eq!(all, encrypted, "every connection of the server is encrypted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_is_refused_at_start_in_our_words() {
    let postgres = Postgres::start_new_with_tls();
    let database = postgres.new_database();
    let unrelated = &postgres.tls().unrelated_authority;
    // `require` with a root certificate checks it, as libpq does.
    for mode in ["verify-full", "verify-ca", "require"] {
        let message = refusal(&tls_url(&database, mode, Some(unrelated)));
        assert_ours(
            &message,
            &[
                &format!("is not signed by the CA in sslrootcert ({})", unrelated.display()),
                "set sslrootcert to the CA certificate that signed",
            ],
        );
    }
    // With no root certificate, verify-full trusts only public CAs, which signed nothing here.
    let message = refusal(&tls_url(&database, "verify-full", None));
    assert_ours(&message, &["is not signed by a public CA (no sslrootcert is given)"]);
    // And the right CA is good for all three.
    for mode in ["verify-full", "verify-ca", "require"] {
        starts_and_is_ready(&tls_url(&database, mode, Some(&postgres.tls().authority))).await;
    }
}

/// `verify-full` checks that the certificate names the URL's host. So does `verify-ca` in this
/// version (the driver's check of the CA only is broken; docs/configuration.md says so): only
/// `require` without a root certificate lets another name through, checking nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_name_is_checked_unless_only_encryption_is_asked_for() {
    let postgres = Postgres::start_new_with_tls();
    // The certificate names 127.0.0.1 only.
    let by_name = postgres.new_database().replace("127.0.0.1", "localhost");
    let authority = &postgres.tls().authority;
    for mode in ["verify-full", "verify-ca", "require"] {
        let message = refusal(&tls_url(&by_name, mode, Some(authority)));
        assert_ours(&message, &["does not name `localhost`, the host in the URL", "connect by a name or address"]);
    }
    starts_and_is_ready(&tls_url(&by_name, "require", None)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_certificate_that_cannot_be_used_is_refused_before_connecting() {
    let postgres = Postgres::start_new_with_tls();
    let database = postgres.new_database();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    assert_ours(
        &refusal(&tls_url(&database, "verify-full", Some(&missing))),
        &[&format!("sslrootcert {} cannot be read (no such file)", missing.display()), "give the PEM file of the CA"],
    );
    let not_pem = dir.path().join("ca.der");
    std::fs::write(&not_pem, b"\x30\x82\x01\x0a not a PEM file").unwrap();
    assert_ours(&refusal(&tls_url(&database, "require", Some(&not_pem))), &["holds no PEM certificate"]);
    // A key where the certificate belongs is no certificate either.
    let key = postgres.directory().join("tls/authority.key");
    assert_ours(&refusal(&tls_url(&database, "verify-ca", Some(&key))), &["holds no PEM certificate"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demanding_tls_of_a_server_without_it_is_refused_at_start() {
    // The shared cluster serves no TLS.
    let database = Postgres::shared().new_database();
    for mode in ["require", "verify-full"] {
        let message = refusal(&format!("{database}?sslmode={mode}"));
        assert_ours(&message, &[&format!("does not offer TLS, which sslmode={mode} demands"), "turn `ssl` on"]);
    }
    // `prefer`, the default, goes on in plain text.
    starts_and_is_ready(&format!("{database}?sslmode=prefer")).await;
}
