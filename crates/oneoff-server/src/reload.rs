//! Reloading the catalog without a restart: `kill -HUP`, or `POST /api/v1/admin/reload` by an
//! administrator, reads the config file again and puts its jobs in force.
//!
//! Only the jobs change. A run in progress keeps the definition it started with; a queued
//! run starts with the new one, or fails and says why when its job is gone or its command
//! changed (as after a restart). An invalid or unreadable file changes nothing: the errors
//! are returned with their `file:line:column`, logged, and audited. The other sections are
//! compared with the ones in force, and a difference is reported as needing a restart rather
//! than applied halfway. Each reload is audited; one runs at a time. With several replicas,
//! each replica reloads its own catalog: send the signal to each, or roll them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use oneoff_api::v1::Reloaded;
use oneoff_core::audit::{AuditAction, AuditEntry};
use oneoff_core::{Catalog, Config, ConfigErrors, JobSpec, Overrides};

use crate::audit_trail::AuditTrail;
use crate::catalog::Catalogs;
use crate::clock::now_us;
use crate::executor::ExecutorHandle;

/// Where the server's config came from, so that it can be read again.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    pub path: PathBuf,
    /// Flags and variables, which win over the file at a reload as they did at start.
    pub overrides: Overrides,
}

/// Who asked, for the audit trail.
pub struct ReloadedBy {
    pub actor: String,
    /// How the actor was identified (`token:NAME`, `signal`).
    pub source: String,
    pub client: String,
}

impl ReloadedBy {
    /// `kill -HUP` on the server's host: whoever may signal the process.
    pub fn signal() -> ReloadedBy {
        ReloadedBy { actor: "local-admin".into(), source: "signal".into(), client: "SIGHUP".into() }
    }
}

#[derive(Debug)]
pub enum ReloadError {
    /// This server was not started from a file (an embedded server).
    NoFile,
    /// The file cannot be read; the message names it and the cause.
    Unreadable(String),
    /// The file is not valid: every error at its place.
    Invalid(ConfigErrors),
}

impl std::fmt::Display for ReloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReloadError::NoFile => {
                write!(f, "this server was not started from a config file; there is nothing to reload")
            }
            ReloadError::Unreadable(message) => write!(f, "{message}"),
            ReloadError::Invalid(errors) => write!(f, "{errors}"),
        }
    }
}

pub struct Reloader {
    file: Option<ConfigFile>,
    /// The settings in force since the start (its catalog is taken out: see [`Catalogs`]).
    running: Arc<Config>,
    catalogs: Catalogs,
    executor: ExecutorHandle,
    audit: Arc<AuditTrail>,
    one_at_a_time: tokio::sync::Mutex<()>,
}

impl Reloader {
    pub fn new(
        file: Option<ConfigFile>,
        running: Arc<Config>,
        catalogs: Catalogs,
        executor: ExecutorHandle,
        audit: Arc<AuditTrail>,
    ) -> Reloader {
        Reloader { file, running, catalogs, executor, audit, one_at_a_time: tokio::sync::Mutex::new(()) }
    }

    /// Reads the file again and puts its catalog in force, or changes nothing and says why.
    pub async fn reload(&self, by: ReloadedBy) -> Result<Reloaded, ReloadError> {
        let _one = self.one_at_a_time.lock().await;
        match self.read_again().await {
            Ok((config, warnings)) => {
                let mut report = self.compare(&config);
                report.warnings = warnings;
                for warning in &report.warnings {
                    tracing::warn!("{warning}");
                }
                if !report.restart_needed.is_empty() {
                    tracing::warn!(
                        sections = report.restart_needed.join(", "),
                        "the config file's other settings changed too; they take effect at the next start"
                    );
                }
                // Labels first: a run of a new job may start the moment the catalog is in force.
                self.executor.metrics().catalog_changed(&config.catalog);
                self.catalogs.replace(config.catalog);
                self.executor.catalog_changed().await;
                tracing::info!(
                    jobs = report.jobs,
                    added = report.added.join(","),
                    removed = report.removed.join(","),
                    changed = report.changed.join(","),
                    "catalog reloaded"
                );
                let message = format!("{} reloaded the catalog: {}", by.actor, summary(&report));
                let detail = serde_json::to_string(&report).unwrap_or_default();
                self.audit.append(entry(by, AuditAction::CatalogReload, message, detail)).await;
                Ok(report)
            }
            Err(error) => {
                tracing::error!(error = %error, "reload refused; the catalog in force stays");
                let message = format!("{} asked for a reload of an invalid catalog; nothing changed", by.actor);
                let detail = serde_json::json!({ "errors": error.to_string() }).to_string();
                self.audit.append(entry(by, AuditAction::CatalogReloadRefused, message, detail)).await;
                Err(error)
            }
        }
    }

    /// The file, validated as at start, and what the host lacks for it.
    async fn read_again(&self) -> Result<(Config, Vec<String>), ReloadError> {
        let file = self.file.as_ref().ok_or(ReloadError::NoFile)?;
        let config = read_config(&file.path, &file.overrides)?;
        let warnings = crate::host_warnings(&config).iter().map(ToString::to_string).collect();
        Ok((config, warnings))
    }

    fn compare(&self, new: &Config) -> Reloaded {
        let old = self.catalogs.current();
        let (added, removed, changed) = catalog_changes(&old, &new.catalog);
        let running = &self.running;
        // Compared by their debug form: every field, nothing printed.
        let sections = [
            ("server", format!("{:?}", running.server) != format!("{:?}", new.server)),
            ("streams", format!("{:?}", running.streams) != format!("{:?}", new.streams)),
            ("auth", format!("{:?}", running.auth) != format!("{:?}", new.auth)),
            ("audit", format!("{:?}", running.audit) != format!("{:?}", new.audit)),
            ("debug", format!("{:?}", running.debug) != format!("{:?}", new.debug)),
        ];
        Reloaded {
            jobs: new.catalog.jobs().len(),
            added,
            removed,
            changed,
            restart_needed: sections
                .iter()
                .filter(|(_, differs)| *differs)
                .map(|(name, _)| format!("[{name}]"))
                .collect(),
            warnings: Vec::new(),
        }
    }
}

/// Reads and validates a config file; `overrides` (flags and variables) win over it. The one
/// reading of the file, at start ([`crate::load_config`]) and at every reload, so that both
/// resolve relative paths against the file's directory alike.
pub fn read_config(path: &Path, overrides: &Overrides) -> Result<Config, ReloadError> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| ReloadError::Unreadable(format!("cannot read the config file {}: {error}", path.display())))?;
    let base_dir = path.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
    Config::from_toml(&path.display().to_string(), &text, base_dir, overrides).map_err(ReloadError::Invalid)
}

/// The names of the jobs added, removed and changed from `old` to `new`.
fn catalog_changes(old: &Catalog, new: &Catalog) -> (Vec<String>, Vec<String>, Vec<String>) {
    let names = |catalog: &Catalog| catalog.jobs().iter().map(|job| job.name.to_string()).collect::<Vec<_>>();
    let added = names(new).into_iter().filter(|name| old.get(name).is_none()).collect();
    let removed = names(old).into_iter().filter(|name| new.get(name).is_none()).collect();
    let definition = |job: &JobSpec| format!("{job:?}");
    let changed = new
        .jobs()
        .iter()
        .filter(|job| old.get(job.name.as_str()).is_some_and(|before| definition(before) != definition(job)))
        .map(|job| job.name.to_string())
        .collect();
    (added, removed, changed)
}

/// "3 jobs; added: a; removed: b; changed: c".
fn summary(report: &Reloaded) -> String {
    let mut parts = vec![format!("{} jobs", report.jobs)];
    for (label, names) in [("added", &report.added), ("removed", &report.removed), ("changed", &report.changed)] {
        if !names.is_empty() {
            parts.push(format!("{label}: {}", names.join(", ")));
        }
    }
    parts.join("; ")
}

fn entry(by: ReloadedBy, action: AuditAction, message: String, detail: String) -> AuditEntry {
    AuditEntry {
        at_us: now_us(),
        actor: by.actor,
        source: by.source,
        client: by.client,
        action,
        message,
        job: None,
        run_id: None,
        detail,
    }
}
