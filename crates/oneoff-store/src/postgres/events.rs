//! The PostgreSQL side of log events: the notifications a commit sends, and the task that
//! `LISTEN`s for them (see `crate::events`).
//!
//! The listening connection is its own, outside the pool, so it never takes a connection
//! from requests and a pool at its bound cannot starve it. When it drops (the server
//! restarted, a network cut), the task connects again with back-off, and says
//! [`LogEvent::Missed`] each time it is listening again.

use std::time::Duration;

use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};
use tokio::sync::{mpsc, oneshot};

use crate::events::{decode_payload, encode_payloads, LogEvent, LogEvents, LogHead, LOG_CHANNEL};
use crate::StoreError;

/// Events waiting for the server; beyond, the task drops them and says `Missed` instead.
const QUEUED_EVENTS: usize = 4096;
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(100);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(2);

/// Sends, inside `transaction`, the notifications announcing `heads` (one statement).
pub(crate) async fn notify(transaction: &mut Transaction<'_, Postgres>, heads: &[LogHead]) -> Result<(), StoreError> {
    let payloads = encode_payloads(heads);
    if payloads.is_empty() {
        return Ok(());
    }
    sqlx::query("SELECT pg_notify($1, payload) FROM unnest($2::TEXT[]) AS payload")
        .bind(LOG_CHANNEL)
        .bind(&payloads)
        .execute(&mut **transaction)
        .await?;
    Ok(())
}

/// Starts the listening task on a connection of its own, made like the pool's.
pub(crate) fn listen(pool: &PgPool) -> LogEvents {
    let options = (*pool.connect_options()).clone();
    // One connection, never idle-closed: the listener holds it as long as it can.
    let own = PgPoolOptions::new().max_connections(1).idle_timeout(None).max_lifetime(None).connect_lazy_with(options);
    let (sender, events) = mpsc::channel(QUEUED_EVENTS);
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(listen_until_stopped(own, sender, stopped));
    LogEvents { events, stop: Some(stop), task: Some(task) }
}

async fn listen_until_stopped(pool: PgPool, sender: mpsc::Sender<LogEvent>, mut stopped: oneshot::Receiver<()>) {
    let mut delay = FIRST_RETRY_DELAY;
    let mut failures = 0u32;
    loop {
        let connected = tokio::select! {
            _ = &mut stopped => break,
            connected = subscribe(&pool) => connected,
        };
        let mut listener = match connected {
            Ok(listener) => listener,
            Err(error) => {
                failures += 1;
                // The first failure and then every 30th: an outage must not flood the log.
                if failures % 30 == 1 {
                    tracing::warn!(%error, failures, "cannot listen for log notifications; followers of other replicas' runs poll meanwhile");
                }
                tokio::select! {
                    _ = &mut stopped => break,
                    () = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(MAX_RETRY_DELAY);
                continue;
            }
        };
        if failures > 0 {
            tracing::info!(failures, "listening for log notifications again");
        }
        failures = 0;
        delay = FIRST_RETRY_DELAY;
        let mut missed = true;
        loop {
            if missed {
                match sender.try_send(LogEvent::Missed) {
                    Ok(()) => missed = false,
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                    Err(mpsc::error::TrySendError::Full(_)) => {}
                }
            }
            let received = tokio::select! {
                _ = &mut stopped => {
                    // The listener's connection goes back first: closing waits for it.
                    drop(listener);
                    pool.close().await;
                    return;
                }
                received = listener.try_recv() => received,
            };
            let notification = match received {
                Ok(Some(notification)) => notification,
                Ok(None) => break,
                Err(error) => {
                    tracing::warn!(%error, "the log notification connection failed; connecting again");
                    break;
                }
            };
            for head in decode_payload(notification.payload()) {
                match sender.try_send(LogEvent::Stored(head)) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                    // The server is behind: it will re-read everything it follows instead.
                    Err(mpsc::error::TrySendError::Full(_)) => missed = true,
                }
            }
        }
        drop(listener);
    }
    pool.close().await;
}

async fn subscribe(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    // Reconnecting is ours to do, so that each new connection is followed by `Missed`.
    listener.eager_reconnect(false);
    listener.listen(LOG_CHANNEL).await?;
    Ok(listener)
}
