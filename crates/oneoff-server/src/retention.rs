//! Deletes finished runs, with their logs, once they are older than the configured retention.

use std::time::Duration;

use oneoff_store::Store;
use tokio_util::sync::CancellationToken;

use crate::clock::now_us;

pub fn spawn(store: Store, retention: Option<Duration>, shutdown: CancellationToken) {
    let Some(retention) = retention else { return };
    // Often enough that data never outlives the limit by much, rarely enough to cost nothing.
    let period = (retention / 10).clamp(Duration::from_secs(60), Duration::from_secs(3600));
    tokio::spawn(async move {
        loop {
            let cutoff_us = now_us().saturating_sub(i64::try_from(retention.as_micros()).unwrap_or(i64::MAX));
            match store.delete_finished_before(cutoff_us).await {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(deleted, "deleted runs older than the retention period"),
                Err(error) => tracing::error!(%error, "retention cleanup failed"),
            }
            tokio::select! {
                () = tokio::time::sleep(period) => {}
                () = shutdown.cancelled() => return,
            }
        }
    });
}
