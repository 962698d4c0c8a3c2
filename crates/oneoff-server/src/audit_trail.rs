//! The one writer of the audit trail: appends records (moving the signed head when the
//! server holds an audit key), summarises repeated denials, and writes checkpoints of the
//! chain's head to the server log.
//!
//! The audit key comes from `ONEOFF_AUDIT_KEY` or `[audit] key_file`, is read once at start,
//! and lives only in memory: it is never logged (its `Debug` is redacted) nor stored. At
//! start with a key the chain is checked against its signed head; a chain that has never
//! been signed is adopted with an `audit.anchor` record, said loudly in the log. A chain
//! that holds an anchor but no signed head had its head deleted (to hide a cut tail): it is
//! never adopted again, only reported as tampered.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Context;
use oneoff_core::audit::anchor::{check_signed_head, was_signed};
use oneoff_core::audit::denials::{DenialBook, DenialKey, Denied, Noted};
use oneoff_core::audit::{AuditAction, AuditEntry, AuditKey, ChainHead, Denial};
use oneoff_core::AuditConfig;
use oneoff_store::{HeadUpdate, Store, StoreError};
use tokio_util::sync::CancellationToken;

use crate::clock::now_us;

/// The environment variable that holds the audit key; it wins over `[audit] key_file`.
pub const AUDIT_KEY_ENV: &str = "ONEOFF_AUDIT_KEY";

/// Open denial windows at most; beyond it the oldest is closed (its count recorded).
const MAX_OPEN_DENIAL_WINDOWS: usize = 4096;

pub struct AuditTrail {
    store: Store,
    key: Option<AuditKey>,
    denials: Mutex<DenialBook>,
    /// The head last written to the log as a checkpoint.
    last_checkpoint: Mutex<Option<ChainHead>>,
}

impl AuditTrail {
    /// Checks the chain against its signed head (or adopts it), and logs the first checkpoint.
    pub async fn open(config: &AuditConfig, store: Store) -> anyhow::Result<Arc<AuditTrail>> {
        let key = load_key(config)?;
        let window_us = i64::try_from(config.denial_window.as_micros()).unwrap_or(i64::MAX);
        let trail = Arc::new(AuditTrail {
            store,
            key,
            denials: Mutex::new(DenialBook::new(window_us, MAX_OPEN_DENIAL_WINDOWS)),
            last_checkpoint: Mutex::new(None),
        });
        trail.check_at_start().await.context("cannot check the audit trail")?;
        trail.checkpoint().await;
        Ok(trail)
    }

    pub fn key(&self) -> Option<&AuditKey> {
        self.key.as_ref()
    }

    /// Appends a record; a failure is logged loudly but does not undo the action.
    pub async fn append(&self, entry: AuditEntry) {
        match self.store.append_audit(&entry, self.key.as_ref()).await {
            Ok(appended) => {
                if let HeadUpdate::Withheld(reason) = appended.head {
                    tracing::error!(
                        target: "oneoff::audit",
                        record = appended.record.id,
                        %reason,
                        "AUDIT TRAIL TAMPERED: the signed head no longer matches the chain, so it was not moved; see docs/security.md"
                    );
                }
            }
            Err(error) => {
                let action = entry.action.code();
                tracing::error!(%error, action, actor = %entry.actor, "cannot write the audit record");
            }
        }
    }

    /// Records a denial in full when it is the caller's first for this action and job in
    /// the window; otherwise only counts it, for the summary record.
    pub async fn deny(&self, denial: Denial, entry: AuditEntry) {
        let denied = Denied {
            key: DenialKey { actor: entry.actor.clone(), denial, job: entry.job.clone() },
            at_us: entry.at_us,
            source: &entry.source,
            client: &entry.client,
            run_id: entry.run_id,
        };
        let (noted, closed) = lock(&self.denials).note(denied);
        for repeated in closed {
            self.append(repeated.entry(now_us())).await;
        }
        if noted == Noted::Record {
            self.append(entry).await;
        }
    }

    /// Records the counts of repeated denials so far; before the trail is read, so a
    /// reader sees every denial, and periodically.
    pub async fn flush_denials(&self) {
        let flushed = lock(&self.denials).flush(now_us());
        for repeated in flushed {
            self.append(repeated.entry(now_us())).await;
        }
    }

    /// Writes the chain's head to the server log when it moved since the last checkpoint,
    /// signed with the audit key when there is one. Kept outside the database (shipped
    /// with the logs), it later shows whether records were cut or the chain rewritten.
    pub async fn checkpoint(&self) {
        let head = match self.store.audit_tail().await {
            Ok(head) => head,
            Err(error) => {
                tracing::error!(%error, "cannot read the audit trail's head for a checkpoint");
                return;
            }
        };
        if lock(&self.last_checkpoint).as_ref() == Some(&head) {
            return;
        }
        let mac = self.key.as_ref().map_or_else(|| "-".to_string(), |key| key.sign_checkpoint(&head));
        tracing::info!(
            target: "oneoff::audit",
            records = head.records,
            head = %head.hash,
            mac = %mac,
            "audit checkpoint; check it later with `oneoff audit verify --count {} --head {}`",
            head.records,
            head.hash
        );
        *lock(&self.last_checkpoint) = Some(head);
    }

    /// Flushes denial counts and checkpoints every period until the server stops.
    pub fn spawn(self: &Arc<Self>, config: &AuditConfig, shutdown: CancellationToken) {
        let trail = self.clone();
        let (denial_window, checkpoint_interval) = (config.denial_window, config.checkpoint_interval);
        tokio::spawn(async move {
            let mut flushes = tokio::time::interval_at(tokio::time::Instant::now() + denial_window, denial_window);
            let mut checkpoints =
                tokio::time::interval_at(tokio::time::Instant::now() + checkpoint_interval, checkpoint_interval);
            loop {
                tokio::select! {
                    _ = flushes.tick() => trail.flush_denials().await,
                    _ = checkpoints.tick() => trail.checkpoint().await,
                    () = shutdown.cancelled() => return,
                }
            }
        });
    }

    /// The last word before the store closes: pending counts, then a checkpoint.
    pub async fn close(&self) {
        self.flush_denials().await;
        self.checkpoint().await;
    }

    async fn check_at_start(&self) -> Result<(), StoreError> {
        let Some(key) = &self.key else {
            if self.store.audit_head().await?.is_some() {
                tracing::warn!(
                    "the audit trail has a signed head but no audit key is configured ({AUDIT_KEY_ENV} or [audit] key_file): records written now do not move it, and a later check with the key will report them"
                );
            }
            return Ok(());
        };
        let (chain, stored) = self.store.audit_snapshot().await?;
        let head = match oneoff_core::audit::verify(&chain) {
            Ok(head) => head,
            Err(broken) => {
                tracing::error!(target: "oneoff::audit", record = broken.id, reason = %broken.reason, "AUDIT TRAIL BROKEN");
                return Ok(());
            }
        };
        let signed_before = was_signed(&chain);
        match (&stored, check_signed_head(key, stored.as_ref(), &head, signed_before)) {
            (None, Ok(())) => {
                // An empty chain: its first record is the anchor, so that deleting the signed
                // head later is seen (a signed chain always holds an anchor).
                tracing::info!(target: "oneoff::audit", "the audit key is new to this empty trail: signing it from its first record (an audit.anchor record)");
                self.append(anchor_entry(0)).await;
            }
            (Some(_), Ok(())) => {}
            (None, Err(_)) if !signed_before => {
                tracing::warn!(
                    target: "oneoff::audit",
                    records = head.records,
                    "the audit key is new to this trail: signing the chain of {} records as found (an audit.anchor record)",
                    head.records
                );
                self.append(anchor_entry(head.records)).await;
            }
            (_, Err(reason)) => {
                // Never re-signed here: signing now would bless whatever the attacker left.
                tracing::error!(
                    target: "oneoff::audit",
                    %reason,
                    "AUDIT TRAIL TAMPERED: it does not match its signed head; records are still written but not signed, and `oneoff audit verify` fails; see docs/security.md"
                );
            }
        }
        Ok(())
    }
}

/// The audit key from the environment or the key file, if either is set.
pub fn load_key(config: &AuditConfig) -> anyhow::Result<Option<AuditKey>> {
    if let Some(value) = std::env::var_os(AUDIT_KEY_ENV).filter(|value| !value.is_empty()) {
        return AuditKey::new(value.as_encoded_bytes(), AUDIT_KEY_ENV).map(Some).map_err(anyhow::Error::msg);
    }
    let Some(path) = &config.key_file else { return Ok(None) };
    let bytes = std::fs::read(path).with_context(|| format!("cannot read the audit key file {}", path.display()))?;
    warn_if_others_can_read(path);
    AuditKey::new(&bytes, &path.display().to_string()).map(Some).map_err(anyhow::Error::msg)
}

fn warn_if_others_can_read(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(metadata) = std::fs::metadata(path) {
        if metadata.permissions().mode() & 0o077 != 0 {
            tracing::warn!(file = %path.display(), "the audit key file can be read by other users; `chmod 600` it");
        }
    }
}

fn anchor_entry(records: i64) -> AuditEntry {
    let action = AuditAction::AuditAnchor;
    AuditEntry {
        at_us: now_us(),
        actor: "oneoff".into(),
        source: "server".into(),
        client: "localhost".into(),
        message: format!(
            "the server started with an audit key and signed the chain of {records} records as it found it"
        ),
        action,
        job: None,
        run_id: None,
        detail: format!(r#"{{"records_signed":{records}}}"#),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding it leaves plain data that is still usable.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use oneoff_core::audit::{AuditAction, AuditEntry, AuditKey, ChainHead};
    use oneoff_core::AuditConfig;
    use oneoff_store::Store;

    use super::AuditTrail;

    /// Everything the server logs while a test runs on this thread.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn checkpoints_reach_the_log_signed_and_the_key_never_does() {
        let dir = tempfile::tempdir().unwrap();
        let key_bytes = *b"0123456789abcdef0123456789abcdef";
        let key_file = dir.path().join("audit.key");
        std::fs::write(&key_file, key_bytes).unwrap();
        let config = AuditConfig {
            key_file: Some(key_file),
            checkpoint_interval: std::time::Duration::from_secs(3600),
            denial_window: std::time::Duration::from_secs(60),
        };
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
        let _guard = tracing::subscriber::set_default(subscriber);

        let store = Store::open_sqlite(&dir.path().join("oneoff.db")).await.unwrap();
        let trail = AuditTrail::open(&config, store.clone()).await.unwrap();
        let entry = AuditEntry {
            at_us: 1,
            actor: "alice".into(),
            source: "anonymous".into(),
            client: "::1".into(),
            action: AuditAction::RunStart,
            message: "alice started a run".into(),
            job: None,
            run_id: None,
            detail: "{}".into(),
        };
        trail.append(entry).await;
        trail.checkpoint().await;
        trail.checkpoint().await;

        let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let head = store.audit_tail().await.unwrap();
        let mac = AuditKey::new(&key_bytes, "test").unwrap().sign_checkpoint(&ChainHead { records: 2, ..head.clone() });
        let lines: Vec<&str> = log.lines().filter(|line| line.contains("audit checkpoint")).collect();
        assert_eq!(lines.len(), 2, "one at start (the anchor), one after the append, none when nothing moved: {log}");
        assert!(lines[1].contains(&format!("records=2 head={} mac={mac}", head.hash)), "{}", lines[1]);
        assert!(lines[1].contains(&format!("oneoff audit verify --count 2 --head {}", head.hash)), "{}", lines[1]);
        assert!(!log.contains("0123456789abcdef"), "the key reached the log: {log}");
    }
}
