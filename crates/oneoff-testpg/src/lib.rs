//! A real, throwaway PostgreSQL server for oneoff's tests.
//!
//! Each cluster lives in a temporary directory (data directory, unix socket and `postgres.log`
//! side by side), its data directory a copy of one `initdb`'d once per process. It listens on
//! a free loopback port and is removed when the test process ends, however it ends: a small
//! `sh` watchdog started with the cluster reads a pipe whose write end only the test process
//! holds; when that read ends (the process exited, panicked or was killed with `SIGKILL`) it
//! stops the server and deletes the directory. Dropping a cluster from `start_new` does the
//! same and waits for it; the shared cluster goes a moment after the process exits.
//!
//! Add `oneoff-testpg.workspace = true` under `[dev-dependencies]`, then:
//!
//! ```ignore
//! use oneoff_testpg::Postgres;
//!
//! // Most tests share one cluster per test process and take a database of their own:
//! let url = Postgres::shared().new_database(); // postgres://oneoff@127.0.0.1:PORT/test_N
//!
//! // Outage tests take a cluster of their own and stop and start it:
//! let postgres = Postgres::start_new();
//! let url = postgres.new_database();
//! postgres.stop(); // ... the server is gone; the data and the port stay ...
//! postgres.start(); // ... and it accepts connections again.
//! // Dropping `postgres` stops the server and removes its directory.
//!
//! // TLS tests take a cluster that serves TLS with a certificate its own test CA signed:
//! let postgres = Postgres::start_new_with_tls();
//! let ca = &postgres.tls().authority; // a PEM file for `sslrootcert=`
//!
//! // Look from outside: as the superuser over the socket, or through a URL's credentials.
//! postgres.psql("postgres", "select count(*) from pg_stat_activity");
//! let refused = oneoff_testpg::psql_url(&wrong_url, "select 1").unwrap_err();
//! ```
//!
//! The server binaries come from `PATH` (the directory holding `initdb`) or else from the
//! highest `/usr/lib/postgresql/*/bin`; `scripts/test` installs Debian's `postgresql` when
//! neither has them. PostgreSQL refuses to run as root, so when the tests run as root the
//! server runs as the `postgres` system user (or `nobody`). Clusters from `start_new` and
//! `shared` trade durability for speed (`fsync`, `synchronous_commit` and `full_page_writes`
//! off); `start_new_durable` keeps PostgreSQL's durable defaults, for benchmarks.
//!
//! Every function panics, with the server's own output, when the server cannot be set up:
//! a test that cannot get its database has nothing to test. Everything is synchronous (it
//! runs `pg_ctl` and `psql` and waits): the first `shared()` of a process takes about a
//! second, so an async test calls it before it starts what it tests.

use std::fmt::Write as _;
use std::fs;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::{chown, MetadataExt as _, PermissionsExt as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// A PostgreSQL server of this test process: initdb'd in a temporary directory, listening on a
/// loopback port, removed when the process ends however it ends.
pub struct Postgres {
    /// The temporary directory: `data/`, the unix socket and `postgres.log`.
    directory: PathBuf,
    bin_dir: PathBuf,
    port: u16,
    /// The account the server runs as when this process is root; `None` runs it as ourselves.
    server_account: Option<Account>,
    /// The shared cluster serves tests running in parallel: stopping it would break them.
    shared: bool,
    /// The certificates of a cluster that serves TLS, from [`Postgres::start_new_with_tls`].
    tls: Option<TlsCertificates>,
    /// Declared last, so it is dropped last: its drop stops the server and removes `directory`.
    _watchdog: Watchdog,
}

/// The certificates of a cluster from [`Postgres::start_new_with_tls`]: PEM files in the
/// cluster's directory, which any account may read.
#[derive(Debug, Clone)]
pub struct TlsCertificates {
    /// The CA that signed the server's certificate. That certificate names only the address
    /// `127.0.0.1` (no DNS name), so a client that checks names must refuse it as `localhost`.
    pub authority: PathBuf,
    /// Another CA, with the same name as `authority`, that signed nothing this server has: a
    /// client that trusts only it must refuse the server.
    pub unrelated_authority: PathBuf,
}

/// Whether a cluster may lose committed transactions in a crash in exchange for speed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Durability {
    Throwaway,
    Durable,
}

/// The superuser `initdb` creates; it logs in without a password.
const SUPERUSER: &str = "oneoff";

/// How long `pg_ctl` waits for the server to start or stop before it gives up.
const PG_CTL_TIMEOUT_SECONDS: &str = "60";

/// How many free ports to try when another process takes ours between choosing and binding.
const PORT_ATTEMPTS: usize = 10;

impl Postgres {
    /// The one cluster shared by every test of this process, started on first use.
    /// Take a database of your own with [`Postgres::new_database`]; never stop it.
    pub fn shared() -> &'static Postgres {
        static SHARED: OnceLock<Postgres> = OnceLock::new();
        SHARED.get_or_init(|| Postgres::start_cluster(Durability::Throwaway, true))
    }

    /// A cluster of its own (for tests that stop and restart the server); stopped and removed
    /// on drop.
    pub fn start_new() -> Postgres {
        Postgres::start_cluster(Durability::Throwaway, false)
    }

    /// Like [`Postgres::start_new`] but with PostgreSQL's durable defaults (`fsync`,
    /// `synchronous_commit` and `full_page_writes` on), for benchmarks that should measure
    /// what a real deployment pays.
    pub fn start_new_durable() -> Postgres {
        Postgres::start_cluster(Durability::Durable, false)
    }

    /// Like [`Postgres::start_new`] but serving TLS (`ssl = on`) as well as plain connections,
    /// with a server certificate signed by a CA made for this cluster (see [`Postgres::tls`]).
    /// Needs `openssl` on `PATH`.
    pub fn start_new_with_tls() -> Postgres {
        let mut postgres = Postgres::prepare_cluster(Durability::Throwaway, false);
        postgres.tls = Some(postgres.configure_tls());
        postgres.start_on_a_free_port(std::iter::repeat_with(free_loopback_port).take(PORT_ATTEMPTS));
        postgres
    }

    /// The certificates of a cluster from [`Postgres::start_new_with_tls`].
    pub fn tls(&self) -> &TlsCertificates {
        self.tls.as_ref().expect("this cluster serves no TLS: start it with Postgres::start_new_with_tls()")
    }

    /// A new, empty database on this cluster with a unique name, owned by the superuser;
    /// returns its URL, `postgres://oneoff@127.0.0.1:PORT/test_N`.
    pub fn new_database(&self) -> String {
        let name = format!("test_{}", next_unique_number());
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{name}", self.port)
    }

    /// Like [`Postgres::new_database`] but owned by a new role that must log in with
    /// `password`; returns `postgres://test_user_N:PASSWORD@127.0.0.1:PORT/test_N`, the password
    /// percent-encoded. A wrong password is refused, as on a real deployment.
    pub fn new_database_with_password(&self, password: &str) -> String {
        assert!(!password.is_empty(), "PostgreSQL treats an empty password as no password: give one");
        let number = next_unique_number();
        let (role, name) = (format!("test_user_{number}"), format!("test_{number}"));
        let password_literal = password.replace('\'', "''");
        self.psql("postgres", &format!("CREATE ROLE {role} LOGIN PASSWORD '{password_literal}'"));
        self.psql("postgres", &format!("CREATE DATABASE {name} OWNER {role}"));
        format!("postgres://{role}:{}@127.0.0.1:{}/{name}", percent_encode(password), self.port)
    }

    /// The loopback port the server listens on; it stays the same across `stop` and `start`.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The temporary directory holding the data directory (`data/`), the unix socket and the
    /// server's log (`postgres.log`).
    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// The process id of the running server (the postmaster), or `None` when it is stopped.
    /// For tests that crash the server with a signal.
    pub fn server_pid(&self) -> Option<u32> {
        let pid_file = fs::read_to_string(self.data_directory().join("postmaster.pid")).ok()?;
        pid_file.lines().next()?.trim().parse().ok()
    }

    /// Runs `sql` in `database` as the superuser, over the unix socket, and returns what `psql`
    /// printed (unaligned, tuples only: one row a line, columns separated by `|`).
    /// Panics with `psql`'s error when the statement fails.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let output = psql_command(&self.bin_dir)
            .args(["-h".as_ref(), self.directory.as_os_str()])
            .args(["-p", &self.port.to_string(), "-U", SUPERUSER, "-d", database, "-c", sql])
            .output()
            .unwrap_or_else(|error| panic!("could not run psql from {}: {error}", self.bin_dir.display()));
        if !output.status.success() {
            panic!(
                "psql failed on database {database} ({}): {}\nstatement: {sql}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Stops the server (fast shutdown: open connections are closed) and waits until it is
    /// gone. For outage tests; only on a cluster of your own.
    pub fn stop(&self) {
        assert!(
            !self.shared,
            "the shared cluster serves other tests: stop a cluster of your own, from Postgres::start_new()"
        );
        let output = self.pg_ctl(&["stop", "-m", "fast", "-w", "-t", PG_CTL_TIMEOUT_SECONDS]);
        if !output.status.success() {
            panic!("PostgreSQL did not stop: {}", self.describe_failure(&output, 0));
        }
    }

    /// Brings a stopped server back on the same port and data directory, and waits until it
    /// accepts connections.
    pub fn start(&self) {
        let log_length_before = self.log_length();
        let output = self.try_start(self.port);
        if !output.status.success() {
            panic!(
                "PostgreSQL did not start again on port {}: {}",
                self.port,
                self.describe_failure(&output, log_length_before)
            );
        }
    }

    fn start_cluster(durability: Durability, shared: bool) -> Postgres {
        let mut postgres = Postgres::prepare_cluster(durability, shared);
        postgres.start_on_a_free_port(std::iter::repeat_with(free_loopback_port).take(PORT_ATTEMPTS));
        postgres
    }

    /// A configured cluster whose server is not started yet.
    fn prepare_cluster(durability: Durability, shared: bool) -> Postgres {
        let bin_dir = server_bin_dir().to_owned();
        let (directory, server_account, watchdog) = cluster_directory(&bin_dir);
        let postgres = Postgres { directory, bin_dir, port: 0, server_account, shared, tls: None, _watchdog: watchdog };
        // A copy of a data directory is as durable as a fresh one once the server is running
        // with fsync on: what a benchmark measures is the server's writes, not initdb's.
        let output = as_server(postgres.server_account.as_ref(), "cp", &postgres.directory)
            .arg("-a")
            .arg(template_data_directory())
            .arg(postgres.data_directory())
            .output()
            .unwrap_or_else(|error| panic!("could not run cp: {error}"));
        if !output.status.success() {
            panic!("could not copy the template data directory ({}):\n{}", output.status, output_text(&output));
        }
        postgres.configure(durability);
        postgres
    }

    fn configure(&self, durability: Durability) {
        let data_directory = self.data_directory();
        // Only the superuser may log in without a password over TCP: roles with a password
        // must give it, so tests can check that oneoff passes it on.
        let hba = format!(
            "local all all trust\nhost all {SUPERUSER} 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
        );
        let socket_directory = self.directory.to_string_lossy().replace('\'', "''");
        let mut settings = format!(
            "\n# oneoff-testpg\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{socket_directory}'\n\
             max_connections = 300\n"
        );
        if durability == Durability::Throwaway {
            settings.push_str("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n");
        }
        let config_path = data_directory.join("postgresql.conf");
        let mut config = fs::read_to_string(&config_path)
            .unwrap_or_else(|error| panic!("could not read {}: {error}", config_path.display()));
        config.push_str(&settings);
        for (path, contents) in [(data_directory.join("pg_hba.conf"), hba), (config_path, config)] {
            // Writing keeps the owner initdb gave the file (the server's account).
            fs::write(&path, contents).unwrap_or_else(|error| panic!("could not write {}: {error}", path.display()));
        }
    }

    /// Makes the cluster's CAs and the server's key and certificate with `openssl`, and turns
    /// TLS on in `postgresql.conf`.
    fn configure_tls(&self) -> TlsCertificates {
        let tls_directory = self.directory.join("tls");
        fs::create_dir(&tls_directory)
            .unwrap_or_else(|error| panic!("could not create {}: {error}", tls_directory.display()));
        let file = |name: &str| tls_directory.join(name);
        // P-256 keys: fast to make, and every TLS stack takes them.
        let new_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"];
        for authority in ["authority", "unrelated-authority"] {
            openssl(&tls_directory, |command| {
                command.args(["req", "-x509"]).args(new_key).args(["-subj", "/CN=oneoff-testpg CA"]);
                command.arg("-keyout").arg(file(&format!("{authority}.key")));
                command.arg("-out").arg(file(&format!("{authority}.pem")));
            });
        }
        openssl(&tls_directory, |command| {
            command.arg("req").args(new_key).args(["-subj", "/CN=127.0.0.1"]);
            command.arg("-keyout").arg(file("server.key")).arg("-out").arg(file("server.csr"));
        });
        let extensions = file("server.ext");
        fs::write(&extensions, "subjectAltName = IP:127.0.0.1\nextendedKeyUsage = serverAuth\n")
            .unwrap_or_else(|error| panic!("could not write {}: {error}", extensions.display()));
        openssl(&tls_directory, |command| {
            command.args(["x509", "-req", "-days", "2", "-set_serial", "1"]);
            command.arg("-in").arg(file("server.csr")).arg("-extfile").arg(&extensions);
            command.arg("-CA").arg(file("authority.pem")).arg("-CAkey").arg(file("authority.key"));
            command.arg("-out").arg(file("server.pem"));
        });
        // The server refuses a key that others may read, or that it does not own.
        let key = file("server.key");
        if let Some(account) = &self.server_account {
            chown(&key, Some(account.uid), Some(account.gid)).unwrap_or_else(|error| {
                panic!("could not give {} to the {} user: {error}", key.display(), account.name)
            });
        }
        fs::set_permissions(&key, fs::Permissions::from_mode(0o600))
            .unwrap_or_else(|error| panic!("could not restrict {}: {error}", key.display()));
        let quoted = |path: PathBuf| path.to_string_lossy().replace('\'', "''");
        let settings =
            format!("ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n", quoted(file("server.pem")), quoted(key));
        let config_path = self.data_directory().join("postgresql.conf");
        let mut config = fs::read_to_string(&config_path)
            .unwrap_or_else(|error| panic!("could not read {}: {error}", config_path.display()));
        config.push_str(&settings);
        fs::write(&config_path, config)
            .unwrap_or_else(|error| panic!("could not write {}: {error}", config_path.display()));
        TlsCertificates { authority: file("authority.pem"), unrelated_authority: file("unrelated-authority.pem") }
    }

    /// Chooses a free loopback port and starts the server on it, choosing again when another
    /// process took the port in between.
    fn start_on_a_free_port(&mut self, candidate_ports: impl Iterator<Item = u16>) {
        for port in candidate_ports {
            let log_length_before = self.log_length();
            let output = self.try_start(port);
            if output.status.success() {
                self.port = port;
                return;
            }
            let log = self.log_since(log_length_before);
            if !log.contains("Address already in use") {
                panic!(
                    "PostgreSQL did not start on port {port}: {}",
                    self.describe_failure(&output, log_length_before)
                );
            }
        }
        panic!("PostgreSQL found no free loopback port; see {}", self.log_path().display());
    }

    fn try_start(&self, port: u16) -> Output {
        let log_path = self.log_path();
        let port_option = format!("-p {port}");
        self.pg_ctl(&[
            "start",
            "-w",
            "-t",
            PG_CTL_TIMEOUT_SECONDS,
            "-l",
            &log_path.to_string_lossy(),
            "-o",
            &port_option,
        ])
    }

    fn pg_ctl(&self, args: &[&str]) -> Output {
        self.server_command("pg_ctl")
            .arg("-D")
            .arg(self.data_directory())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|error| panic!("could not run pg_ctl from {}: {error}", self.bin_dir.display()))
    }

    fn server_command(&self, program: &str) -> Command {
        as_server(self.server_account.as_ref(), self.bin_dir.join(program), &self.directory)
    }

    fn describe_failure(&self, output: &Output, log_length_before: u64) -> String {
        format!(
            "pg_ctl {}:\n{}\n{} says:\n{}",
            output.status,
            output_text(output),
            self.log_path().display(),
            self.log_since(log_length_before)
        )
    }

    fn data_directory(&self) -> PathBuf {
        self.directory.join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.directory.join("postgres.log")
    }

    fn log_length(&self) -> u64 {
        fs::metadata(self.log_path()).map(|metadata| metadata.len()).unwrap_or(0)
    }

    fn log_since(&self, offset: u64) -> String {
        let log = fs::read(self.log_path()).unwrap_or_default();
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(log.len());
        String::from_utf8_lossy(&log[start..]).into_owned()
    }
}

/// A new temporary directory for a cluster, owned by the account the server will run as,
/// and the watchdog that removes it.
fn cluster_directory(bin_dir: &Path) -> (PathBuf, Option<Account>, Watchdog) {
    let directory = tempfile::Builder::new()
        .prefix("oneoff-testpg-")
        .tempdir()
        .expect("could not create a temporary directory for PostgreSQL")
        .keep();
    let server_account = server_account_for(&directory);
    if let Some(account) = &server_account {
        chown(&directory, Some(account.uid), Some(account.gid)).unwrap_or_else(|error| {
            panic!("could not give {} to the {} user: {error}", directory.display(), account.name)
        });
    }
    // Started before anything is written, so a panic from here on still removes the directory.
    let watchdog = Watchdog::spawn(bin_dir, &directory, server_account.as_ref());
    (directory, server_account, watchdog)
}

/// A data directory `initdb`'d once per process, which every cluster copies: copying is
/// about twice as fast as `initdb` on a loaded machine. Removed by its watchdog when the process ends.
fn template_data_directory() -> &'static Path {
    struct Template {
        data_directory: PathBuf,
        _watchdog: Watchdog,
    }
    static TEMPLATE: OnceLock<Template> = OnceLock::new();
    let template = TEMPLATE.get_or_init(|| {
        let bin_dir = server_bin_dir();
        let (directory, server_account, watchdog) = cluster_directory(bin_dir);
        initdb(bin_dir, server_account.as_ref(), &directory);
        Template { data_directory: directory.join("data"), _watchdog: watchdog }
    });
    &template.data_directory
}

/// Creates `directory/data` with `initdb`.
fn initdb(bin_dir: &Path, server_account: Option<&Account>, directory: &Path) {
    let mut initdb = as_server(server_account, bin_dir.join("initdb"), directory);
    initdb.arg("-D").arg(directory.join("data")).args(["-U", SUPERUSER, "-A", "trust", "-E", "UTF8", "--locale=C"]);
    // Not synced to disk: it lives only as long as this process, and a durable cluster's
    // server syncs what it writes itself.
    initdb.arg("--no-sync");
    let output = initdb.output().unwrap_or_else(|error| panic!("could not run initdb: {error}"));
    if !output.status.success() {
        panic!("initdb failed ({}):\n{}", output.status, output_text(&output));
    }
}

/// `program` run as the server's account (ourselves when `None`), from the cluster's
/// directory: the account may not be allowed into ours.
fn as_server(server_account: Option<&Account>, program: impl AsRef<std::ffi::OsStr>, directory: &Path) -> Command {
    let mut command = Command::new(program);
    command.current_dir(directory).env("LC_ALL", "C");
    if let Some(account) = server_account {
        command.uid(account.uid).gid(account.gid);
    }
    command
}

/// Runs `sql` through `psql` against `url` (as `new_database` returns it) and returns what it
/// printed (unaligned, tuples only), or `psql`'s error when it could not connect or the
/// statement failed. For tests that check which credentials a server accepts.
pub fn psql_url(url: &str, sql: &str) -> Result<String, String> {
    let output = psql_command(server_bin_dir())
        .args(["-d", url, "-c", sql])
        .output()
        .map_err(|error| format!("could not run psql: {error}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    }
}

/// Runs `openssl` with the arguments `arguments` gives it, in `directory`; panics with its
/// output when it fails.
fn openssl(directory: &Path, arguments: impl FnOnce(&mut Command)) {
    let mut command = Command::new("openssl");
    command.current_dir(directory).stdin(Stdio::null());
    arguments(&mut command);
    let output = command.output().unwrap_or_else(|error| {
        panic!(
            "could not run openssl ({error}): the TLS tests make their certificates with it; install Debian's openssl"
        )
    });
    if !output.status.success() {
        panic!("openssl failed ({}): {command:?}\n{}", output.status, output_text(&output));
    }
}

/// `psql` that reads no `.psqlrc`, stops at the first error, never prompts for a password, and
/// ignores the caller's `PG*` connection defaults.
fn psql_command(bin_dir: &Path) -> Command {
    let mut command = Command::new(bin_dir.join("psql"));
    command.args(["-X", "-q", "-A", "-t", "-w", "-v", "ON_ERROR_STOP=1"]).stdin(Stdio::null());
    for variable in
        ["PGHOST", "PGHOSTADDR", "PGPORT", "PGUSER", "PGDATABASE", "PGPASSWORD", "PGPASSFILE", "PGSERVICE", "PGOPTIONS"]
    {
        command.env_remove(variable);
    }
    command
}

/// Stops the server and removes the cluster's directory when its lifeline closes: when the
/// `Postgres` is dropped, or when the test process ends in any way, since the kernel closes
/// the lifeline's write end with the process.
struct Watchdog {
    lifeline: Option<ChildStdin>,
    shell: Child,
}

/// `$1` pg_ctl, `$2` the data directory, `$3` the cluster's directory. It ignores the signals a
/// terminal or a test runner sends the whole group, so it outlives the test process to clean up.
const WATCHDOG_SCRIPT: &str = r#"trap '' HUP INT QUIT TERM PIPE
while read -r _; do :; done
"$1" stop -D "$2" -m immediate -w >/dev/null 2>&1
rm -rf "$3"
"#;

impl Watchdog {
    fn spawn(bin_dir: &Path, directory: &Path, server_account: Option<&Account>) -> Watchdog {
        let mut command = Command::new("sh");
        command
            .args(["-c", WATCHDOG_SCRIPT, "oneoff-testpg-watchdog"])
            .arg(bin_dir.join("pg_ctl"))
            .arg(directory.join("data"))
            .arg(directory)
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: Ctrl-C in a terminal reaches the tests, not the watchdog.
            .process_group(0);
        if let Some(account) = server_account {
            // The server's account owns the data directory, and pg_ctl refuses root.
            command.uid(account.uid).gid(account.gid);
        }
        let mut shell =
            command.spawn().unwrap_or_else(|error| panic!("could not start the PostgreSQL watchdog (sh): {error}"));
        let lifeline = shell.stdin.take();
        Watchdog { lifeline, shell }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.lifeline.take());
        let _ = self.shell.wait();
    }
}

struct Account {
    name: &'static str,
    uid: u32,
    gid: u32,
}

/// The account to run the server as: `None` (ourselves) unless we are root, which initdb and
/// postgres refuse. Whoever owns the directory we just created is who we are, without `libc`.
fn server_account_for(our_new_directory: &Path) -> Option<Account> {
    let metadata = fs::metadata(our_new_directory)
        .unwrap_or_else(|error| panic!("could not read {}: {error}", our_new_directory.display()));
    if metadata.uid() != 0 {
        return None;
    }
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    let account = ["postgres", "nobody"].into_iter().find_map(|name| {
        passwd.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            match fields.as_slice() {
                [user, _, uid, gid, ..] if *user == name => {
                    Some(Account { name, uid: uid.parse().ok()?, gid: gid.parse().ok()? })
                }
                _ => None,
            }
        })
    });
    Some(account.expect(
        "PostgreSQL refuses to run as root, and /etc/passwd has neither a postgres nor a nobody user to run it as",
    ))
}

/// The directory holding `initdb`, `pg_ctl` and `psql`: the first on `PATH` that has them,
/// else the highest `/usr/lib/postgresql/*/bin` (where Debian puts them).
fn server_bin_dir() -> &'static Path {
    static BIN_DIR: OnceLock<PathBuf> = OnceLock::new();
    BIN_DIR.get_or_init(|| {
        let has_binaries = |dir: &Path| ["initdb", "pg_ctl", "psql"].iter().all(|program| dir.join(program).is_file());
        let on_path = std::env::var_os("PATH")
            .map(|path| std::env::split_paths(&path).find(|dir| has_binaries(dir)))
            .unwrap_or_default();
        let highest_debian = || {
            let versions = fs::read_dir("/usr/lib/postgresql").ok()?;
            versions
                .filter_map(|entry| {
                    let entry = entry.ok()?;
                    let version = entry.file_name().to_string_lossy().split('.').map(|part| part.parse::<u32>().ok()).collect::<Option<Vec<u32>>>()?;
                    let bin = entry.path().join("bin");
                    has_binaries(&bin).then_some((version, bin))
                })
                .max()
                .map(|(_, bin)| bin)
        };
        on_path.or_else(highest_debian).expect(
            "no PostgreSQL server binaries (initdb, pg_ctl, psql) on PATH or in /usr/lib/postgresql/*/bin: \
             run scripts/test, which installs Debian's postgresql package, or install PostgreSQL and put its bin directory on PATH",
        )
    })
}

/// A port nobody listens on now: bound to find it, released for the server to bind.
fn free_loopback_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("could not bind a loopback port to find a free one")
}

/// Unique across every cluster of the process, so names never collide on the shared one.
fn next_unique_number() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Percent-encodes everything but URL-unreserved characters, for a password in a URL.
fn percent_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            let _ = write!(encoded, "%{byte:02X}");
        }
    }
    encoded
}

fn output_text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)).trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_port_is_skipped_for_the_next_free_one() {
        let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let taken_port = taken.local_addr().unwrap().port();
        let mut postgres = Postgres::prepare_cluster(Durability::Throwaway, false);
        let free_port = free_loopback_port();
        postgres.start_on_a_free_port([taken_port, free_port].into_iter());
        assert_eq!(postgres.port(), free_port);
        assert!(postgres.log_since(0).contains("Address already in use"));
        assert_eq!(postgres.psql("postgres", "select 1").trim(), "1");
    }

    #[test]
    fn a_server_that_cannot_start_again_panics_with_its_log() {
        let postgres = Postgres::start_new();
        postgres.stop();
        let _taken = TcpListener::bind((Ipv4Addr::LOCALHOST, postgres.port())).unwrap();
        let panic = std::panic::catch_unwind(|| postgres.start()).unwrap_err();
        let message = panic.downcast_ref::<String>().unwrap();
        assert!(message.contains("did not start again"), "{message}");
        assert!(message.contains("postgres.log says"), "{message}");
        assert!(message.contains("Address already in use"), "{message}");
    }

    #[test]
    fn a_tls_cluster_proves_itself_with_its_authority_and_not_with_the_unrelated_one() {
        let postgres = Postgres::start_new_with_tls();
        let database = postgres.new_database();
        let tls = postgres.tls();
        let with = |authority: &Path, host: &str| {
            let url = database.replace("127.0.0.1", host);
            psql_url(
                &format!("{url}?sslmode=verify-full&sslrootcert={}", authority.display()),
                "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
            )
        };
        assert_eq!(with(&tls.authority, "127.0.0.1").unwrap().trim(), "t");
        let unrelated = with(&tls.unrelated_authority, "127.0.0.1").unwrap_err();
        assert!(unrelated.contains("certificate verify failed"), "{unrelated}");
        let other_name = with(&tls.authority, "localhost").unwrap_err();
        assert!(other_name.contains("does not match host name"), "{other_name}");
        // Plain connections still work: TLS is offered, not required.
        assert_eq!(psql_url(&format!("{database}?sslmode=disable"), "select 1").unwrap().trim(), "1");
    }

    #[test]
    fn passwords_are_percent_encoded_for_urls() {
        assert_eq!(percent_encode("aZ9-._~"), "aZ9-._~");
        assert_eq!(percent_encode("p@ss w:rd/'%é"), "p%40ss%20w%3Ard%2F%27%25%C3%A9");
    }
}
