//! The oneoff server: the store, the executor, the log hub and the HTTP API wired together.
//!
//! [`start`] boots a server from a validated [`Config`] and returns a [`RunningServer`]
//! handle (tests boot it on `127.0.0.1:0`); [`cli_serve`] is `oneoff serve`: it adds config
//! loading, logging and signal handling around the same function.
//!
//! Stopping follows one order: stop taking runs, let running ones drain, cancel what is left,
//! end long-polls and streams, finish HTTP requests, close the store. Every run then has a
//! final state or is still `queued` for the next start.

mod audit_trail;
mod catalog;
mod clock;
mod connection;
pub mod executor;
mod frames;
pub mod host;
mod http;
mod hub;
mod jwt;
mod metrics;
pub mod reload;
mod retention;
mod state;
mod viewers;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use oneoff_core::config::ServerConfig;
use oneoff_core::store_url::default_replica_name;
use oneoff_core::LogFormat;
use oneoff_core::{Config, Overrides, StoreUrl};
use oneoff_store::{PostgresOptions, Registration, ReplicaIdentity, Store, StoreError};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::catalog::Catalogs;
use crate::executor::ExecutorHandle;
use crate::hub::LogHub;
pub use crate::reload::{ConfigFile, ReloadError};
use crate::reload::{ReloadedBy, Reloader};
use crate::state::AppState;

/// How long stopping waits for live viewers to take their close frames.
const VIEWERS_CLOSE_WAIT: Duration = Duration::from_secs(5);

/// A server that is running; stop it with [`RunningServer::stop`].
pub struct RunningServer {
    addr: SocketAddr,
    /// `[server] base_path`: the URL serves under it.
    base_path: oneoff_core::BasePath,
    stop: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
    reloader: Arc<Reloader>,
}

impl RunningServer {
    /// Reads the config file again and puts its catalog in force, as `kill -HUP` does.
    pub async fn reload(&self) -> Result<oneoff_api::v1::Reloaded, ReloadError> {
        self.reloader.reload(ReloadedBy::signal()).await
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the UI and the API are: `http://ADDR`, or `http://ADDR/PREFIX` under a base path.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.addr, self.base_path.as_str())
    }

    /// A token whose cancellation starts a graceful stop (what SIGTERM does).
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Stops gracefully (drain, cancel, flush) and waits until everything is closed.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.wait().await
    }

    /// Waits until the server has stopped (after [`RunningServer::stop_token`] was cancelled).
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await.context("server task panicked")?
    }
}

/// Opens the store, recovers runs left by a previous process, binds the listener and serves.
/// A server started so cannot reload its catalog: see [`start_from_file`].
pub async fn start(config: Config) -> anyhow::Result<RunningServer> {
    start_with(config, None).await
}

/// As [`start`], for a config read from `file`: a reload reads it again.
pub async fn start_from_file(config: Config, file: ConfigFile) -> anyhow::Result<RunningServer> {
    start_with(config, Some(file)).await
}

async fn start_with(mut config: Config, file: Option<ConfigFile>) -> anyhow::Result<RunningServer> {
    for warning in host_warnings(&config) {
        tracing::warn!("{warning}");
    }
    // Out of the config, so that nothing reads the catalog of the start after a reload.
    let catalogs = Catalogs::new(std::mem::take(&mut config.catalog));
    let config = Arc::new(config);
    let store = open_store(&config.server).await?;
    tracing::info!(engine = store.engine(), database = %config.server.database, "store opened");
    let audit = audit_trail::AuditTrail::open(&config.audit, store.clone()).await?;
    let hub = LogHub::new(config.streams.live_cache_bytes, config.streams.max_message_bytes);
    let isolation = executor::Isolation::from_setting(&config.server.cgroup).map_err(anyhow::Error::msg)?;
    tracing::info!(cgroups = isolation.uses_cgroups(), "process isolation: {}", isolation.describe());
    let replica = register_replica(&store, &config.server).await?;
    tracing::info!(replica = %replica.name, host = %replica.host, "replica registered");
    // Recovery stops what an earlier instance's runs left running before claiming begins.
    let executor = ExecutorHandle::spawn(
        config.clone(),
        catalogs.clone(),
        store.clone(),
        hub.clone(),
        Arc::new(isolation),
        executor::server_secrets(&config.audit),
        replica,
    );
    let recovered = executor::recover(&executor).await.context("cannot recover runs from the previous start")?;
    if recovered.lost + recovered.failed > 0 {
        tracing::info!(
            lost = recovered.lost,
            failed = recovered.failed,
            queued = recovered.queued,
            "recovered runs from the previous start"
        );
    }
    let listener = TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    let addr = listener.local_addr()?;
    let viewers = Arc::new(viewers::Viewers::new(config.streams.max_connections, config.streams.max_viewers_per_run));
    let shutdown = CancellationToken::new();
    // Followers of runs executing on other replicas are woken by the store's log events.
    let remote_watch = hub.spawn_remote_watch(store.clone(), shutdown.clone());
    let reloader = Arc::new(Reloader::new(file, config.clone(), catalogs.clone(), executor.clone(), audit.clone()));
    let state = AppState {
        config: config.clone(),
        catalogs,
        reloader: reloader.clone(),
        store: store.clone(),
        executor: executor.clone(),
        hub,
        shutdown,
        viewers,
        counters: Arc::default(),
        jwt: Arc::new(jwt::JwtVerifier::new(&config.auth.jwt)),
        audit,
    };
    let stop = CancellationToken::new();
    retention::spawn(store.clone(), config.server.retention, state.shutdown.clone());
    state.audit.spawn(&config.audit, state.shutdown.clone());
    let task = tokio::spawn(serve(listener, state, stop.clone(), remote_watch));
    Ok(RunningServer { addr, base_path: config.server.base_path.clone(), stop, task, reloader })
}

async fn serve(
    listener: TcpListener,
    state: AppState,
    stop: CancellationToken,
    remote_watch: JoinHandle<()>,
) -> anyhow::Result<()> {
    let router = http::router(state.clone());
    // Each connection's requests carry its peer's address, as `ConnectInfo`.
    let app = tower::service_fn(move |incoming: axum::serve::IncomingStream<'_, connection::Listener>| {
        let peer = axum::extract::ConnectInfo(*incoming.remote_addr());
        std::future::ready(Ok::<_, std::convert::Infallible>(tower::Layer::layer(
            &axum::Extension(peer),
            router.clone(),
        )))
    });
    // WebSocket viewers are closed by their own stream after `viewer_send_timeout`, with a
    // close reason; every other connection whose peer takes nothing for twice that is cut.
    let write_timeout = state.config.streams.viewer_send_timeout * 2;
    let listener = connection::Listener::new(listener, write_timeout);
    let http_stop = state.shutdown.clone();
    let http =
        tokio::spawn(
            async move { axum::serve(listener, app).with_graceful_shutdown(http_stop.cancelled_owned()).await },
        );
    stop.cancelled().await;
    tracing::info!("stopping: no new runs; draining running ones");
    // HTTP keeps serving during the drain so viewers see the last lines and the final states.
    state.executor.shutdown().await;
    state.shutdown.cancel();
    http.await.context("HTTP server task panicked")?.context("HTTP server failed")?;
    // Live viewers saw the shutdown and are sending their close frames (1001, with where to
    // resume); a viewer that does not read its close frame is not waited for long.
    if tokio::time::timeout(VIEWERS_CLOSE_WAIT, state.viewers.until_none_left()).await.is_err() {
        tracing::warn!(viewers = state.viewers.total(), "closing the store while some viewers have not left");
    }
    // It saw the shutdown too; it stops listening for log events.
    if let Err(error) = remote_watch.await {
        tracing::error!(%error, "the remote log watch panicked");
    }
    state.audit.close().await;
    state.store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Who this process is: the configured replica name (or the hostname's), a random instance
/// id, the host, its boot and its pid.
fn replica_identity(server: &ServerConfig) -> ReplicaIdentity {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_string());
    let name = server.replica.clone().unwrap_or_else(|| default_replica_name(&host));
    ReplicaIdentity {
        name: name.as_str().to_string(),
        instance: uuid::Uuid::new_v4().to_string(),
        host,
        boot_id: executor::boot_id(),
        pid: std::process::id(),
    }
}

/// Takes this replica's row, or refuses to start when another live process holds the name.
/// A row of this host and boot whose pid is gone (or is this process's: a container restarted)
/// is an earlier instance that died: taken over at once, without waiting for its timeout.
async fn register_replica(store: &Store, server: &ServerConfig) -> anyhow::Result<ReplicaIdentity> {
    let identity = replica_identity(server);
    let registration = store
        .register_replica(&identity, server.replica_timeout, clock::now_us())
        .await
        .context("cannot register this replica in the store")?;
    let holder = match registration {
        Registration::Registered { previous } => {
            if let Some(previous) = previous {
                tracing::info!(replica = %identity.name, previous_host = %previous.host, previous_pid = previous.pid, "took over the name from an earlier instance");
            }
            return Ok(identity);
        }
        Registration::InUse(holder) => holder,
    };
    let same_machine = holder.host == identity.host && holder.boot_id.is_some() && holder.boot_id == identity.boot_id;
    if same_machine && (holder.pid == identity.pid || !process_exists(holder.pid)) {
        store.take_over_replica(&identity, clock::now_us()).await.context("cannot register this replica")?;
        tracing::info!(replica = %identity.name, previous_pid = holder.pid, "took over the name from an earlier instance that died");
        return Ok(identity);
    }
    anyhow::bail!(
        "another replica named {} is running on host {} (pid {}, last heartbeat {} s ago); give each replica its \
         own `replica` name ([server] replica, ONEOFF_REPLICA or --replica)",
        identity.name,
        holder.host,
        holder.pid,
        holder.heartbeat_age_ms.max(0) / 1000
    )
}

/// Whether a process with this pid exists on this machine (signal 0; EPERM means it does).
fn process_exists(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else { return false };
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(errno) => errno == nix::errno::Errno::EPERM,
    }
}

/// Opens the store the config names (SQLite in `data_dir` by default), or says what is wrong
/// with it and what to do about it. A PostgreSQL password never appears in a message.
async fn open_store(server: &ServerConfig) -> anyhow::Result<Store> {
    match &server.database {
        StoreUrl::Sqlite(path) => {
            if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
            }
            open_sqlite(path).await
        }
        StoreUrl::Postgres(url) => {
            let options = PostgresOptions {
                max_connections: server.database_pool,
                statement_timeout: server.database_statement_timeout,
                ..PostgresOptions::default()
            };
            Store::open_postgres(url.connect_text_with_password(), &options).await.map_err(|error| {
                let advice = match &error {
                    StoreError::Unavailable(_) => {
                        ". Check that the database server is running and reachable from this host, and its host and port in the URL"
                    }
                    StoreError::Access(_) => ". Check the user, the password and the database name in the URL",
                    // Its message says what to change.
                    StoreError::Tls(_) => "",
                    _ => ". See the PostgreSQL server's log",
                };
                anyhow::anyhow!("cannot open the PostgreSQL database {url}: {error}{advice}")
            })
        }
    }
}

async fn open_sqlite(database: &Path) -> anyhow::Result<Store> {
    let error = match Store::open_sqlite(database).await {
        Ok(store) => return Ok(store),
        Err(error) => error,
    };
    let file = database.display();
    let dir = database.parent().unwrap_or(Path::new(".")).display();
    Err(match error {
        StoreError::Damaged(detail) => anyhow::anyhow!(
            "the database {file} is damaged ({detail}). Stop every oneoff that uses it, then restore it \
             from a backup, or move it aside (with its -wal and -shm files) to start with an empty \
             database; `sqlite3 {file} .recover` may save what it holds"
        ),
        StoreError::ReadOnly(detail) => anyhow::anyhow!(
            "the database {file} is read-only ({detail}). oneoff writes to its data directory {dir}: \
             mount it read-write, and make it and the files in it writable by the user oneoff runs as"
        ),
        StoreError::Full(detail) => anyhow::anyhow!(
            "cannot open the database {file}: storage full ({detail}). Free space in {dir}, then start oneoff again"
        ),
        error => anyhow::Error::new(error).context(format!("cannot open the database {file}")),
    })
}

/// What this process's host lacks for the catalog's jobs (see [`host`]), as this process
/// would start them: its `PATH`, its working directory.
pub fn host_warnings(config: &Config) -> Vec<oneoff_core::ConfigError> {
    // Unset, exec searches the C library's default path.
    let search_path = std::env::var("PATH").unwrap_or_else(|_| "/bin:/usr/bin".to_string());
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    host::host_warnings(config, Some(&search_path), &cwd)
}

/// Reads and validates a config file; `overrides` come from flags and environment variables.
pub fn load_config(path: &Path, overrides: &Overrides) -> anyhow::Result<Config> {
    reload::read_config(path, overrides).map_err(|error| anyhow::anyhow!("{error}"))
}

/// `oneoff serve`: load the config, start, serve until SIGTERM or SIGINT, stop gracefully.
/// `overrides` come from flags and environment variables.
pub async fn cli_serve(config_path: PathBuf, overrides: Overrides) -> anyhow::Result<ExitCode> {
    let config = match load_config(&config_path, &overrides) {
        Ok(config) => config,
        Err(error) => {
            // The form asked for outside the file, if any: a collector reads the error too.
            let format = overrides.log_format.as_ref().and_then(|given| LogFormat::parse(&given.value).ok());
            if format == Some(LogFormat::Json) {
                init_logging(LogFormat::Json);
                tracing::error!(error = format!("{error:#}"), "the configuration is not valid; oneoff did not start");
            } else {
                eprintln!("{error:#}");
            }
            return Ok(ExitCode::from(2));
        }
    };
    init_logging(config.server.log_format);
    if config.auth.anonymous && !config.server.listen.ip().is_loopback() {
        tracing::warn!(
            listen = %config.server.listen,
            "ANONYMOUS ACCESS on a non-loopback address: anyone who can reach this port can run jobs; configure [auth] (see docs/security.md)"
        );
    }
    let jobs = config.catalog.jobs().len();
    let file = ConfigFile { path: config_path, overrides };
    let running = start_from_file(config, file).await?;
    tracing::info!(url = %running.url(), jobs, "oneoff is serving");
    println!("oneoff listening on {}", running.url());
    let stop = running.stop_token();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("signal received; shutting down gracefully (send it again to repeat)");
        stop.cancel();
    });
    let reloads = spawn_reload_on_hangup(running.reloader.clone(), running.stop_token());
    running.wait().await?;
    reloads.abort();
    Ok(ExitCode::SUCCESS)
}

/// SIGHUP reloads the catalog, never stops the server; SIGUSR1 and SIGUSR2, whose default
/// would end it at once (losing running jobs), are logged and ignored. Only SIGTERM and
/// SIGINT stop it (gracefully).
fn spawn_reload_on_hangup(reloader: Arc<Reloader>, stop: CancellationToken) -> JoinHandle<()> {
    use tokio::signal::unix::{signal, SignalKind};
    tokio::spawn(async move {
        let (Ok(mut hangup), Ok(mut user1), Ok(mut user2)) =
            (signal(SignalKind::hangup()), signal(SignalKind::user_defined1()), signal(SignalKind::user_defined2()))
        else {
            tracing::error!("cannot install the SIGHUP handler; reload with POST /api/v1/admin/reload");
            return;
        };
        loop {
            tokio::select! {
                _ = hangup.recv() => {
                    tracing::info!("SIGHUP: reloading the catalog");
                    // The outcome is logged and audited by the reload itself.
                    let _ = reloader.reload(ReloadedBy::signal()).await;
                }
                _ = user1.recv() => tracing::warn!("SIGUSR1 means nothing to oneoff; ignored"),
                _ = user2.recv() => tracing::warn!("SIGUSR2 means nothing to oneoff; ignored"),
                () = stop.cancelled() => return,
            }
        }
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut terminate), Ok(mut interrupt)) => {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
        }
        _ => {
            tracing::error!("cannot install signal handlers; only Ctrl-C stops the server");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The server's log on stderr, filtered by `ONEOFF_LOG`. Text has colours only on a terminal,
/// and never with `NO_COLOR` set (no-color.org); JSON is one object per line, with the fields
/// of the spans it happened in (`request_id` and `user` of a request, `run`, `job` and `user`
/// of a run).
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ONEOFF_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tower_http=warn,sqlx=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(colour_on_stderr()).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).with_span_list(true).try_init(),
    };
}

/// Whether stderr may carry colour escapes: a terminal, and no `NO_COLOR` (any non-empty value).
pub fn colour_on_stderr() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
}

/// `oneoff token create --config FILE`: creates a token directly in the server's database,
/// on the server's host, without a running server. This is how the first administrator
/// token is made; it is audited as done by `local-admin`. `overrides` (`--data-dir`,
/// `ONEOFF_DATA_DIR`, `--database`, `ONEOFF_DATABASE`) win over the file, as for
/// `oneoff serve`, so the token lands in the database the server uses.
pub async fn create_token_offline(
    config_path: &Path,
    overrides: &Overrides,
    name: &str,
    user: &str,
    groups: Vec<String>,
    expires_in: Option<&str>,
) -> anyhow::Result<oneoff_api::v1::CreatedToken> {
    let config = load_config(config_path, overrides)?;
    // The same key as the server's, so the signed head moves with this record too.
    let audit_key = audit_trail::load_key(&config.audit)?;
    let store = open_store(&config.server).await?;
    let now = clock::now_us();
    let expires_at_us = match expires_in {
        None => None,
        Some(text) => {
            let seconds = http::tokens::parse_duration_seconds(text.trim())
                .ok_or_else(|| anyhow::anyhow!("`{text}` is not a duration like 12h, 30d or 1y"))?;
            Some(now.saturating_add(i64::try_from(seconds).unwrap_or(i64::MAX / 1_000_000).saturating_mul(1_000_000)))
        }
    };
    let token = http::tokens::new_token();
    let new = oneoff_store::NewToken {
        name: name.to_string(),
        user: user.to_string(),
        groups,
        hash: oneoff_core::auth::token_hash(&token),
        created_by: "local-admin".into(),
        created_at_us: now,
        expires_at_us,
        parent_id: None,
    };
    let stored =
        store.insert_token(&new).await?.ok_or_else(|| anyhow::anyhow!("the database refused the new token"))?;
    let entry = oneoff_core::audit::AuditEntry {
        at_us: now,
        actor: "local-admin".into(),
        source: "cli".into(),
        client: "localhost".into(),
        action: oneoff_core::audit::AuditAction::TokenCreate,
        message: format!("local-admin created API token `{name}` for {user} on the server's host"),
        job: None,
        run_id: None,
        detail: serde_json::json!({ "token_id": stored.id, "name": name, "user": user }).to_string(),
    };
    let appended = store.append_audit(&entry, audit_key.as_ref()).await?;
    if let oneoff_store::HeadUpdate::Withheld(reason) = appended.head {
        tracing::error!(%reason, "AUDIT TRAIL TAMPERED: the signed head no longer matches the chain, so it was not moved");
    }
    store.close().await;
    Ok(oneoff_api::v1::CreatedToken { token, info: http::tokens::view(&stored) })
}
