//! `/metrics`: this replica's metrics in the Prometheus text format, behind `[server] metrics`.
//!
//! What is measured and how is in `crate::metrics`; this handler decides who may scrape
//! (`metrics_cidrs` by the TCP peer, then an API token when `metrics = "token"`), reads what
//! is read at scrape time, and renders. The scrape stays cheap on a big database: the one
//! query, the queue's length by job, goes through the status index and is cached
//! (`metrics::QUEUE_READ_PERIOD`).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use oneoff_store::StoreError;

use super::auth::{from_token, unauthorized};
use super::handshake::REFUSAL_CODES;
use super::ApiError;
use crate::metrics::{Kind, Snapshot, OTHER_JOB};
use crate::state::AppState;
use crate::viewers::Transport;

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub async fn metrics(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    admit(&state, Some(peer), &headers).await?;
    let snapshot = snapshot(&state).await;
    let text = state
        .executor
        .metrics()
        .render(snapshot)
        .map_err(|_| ApiError::Internal("cannot write the metrics text".into()))?;
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response())
}

/// Refuses a scrape `[server] metrics` and `metrics_cidrs` do not allow, in our words.
async fn admit(state: &AppState, peer: Option<SocketAddr>, headers: &HeaderMap) -> Result<(), ApiError> {
    let access = &state.config.server.metrics;
    if !access.cidrs.is_empty() && !peer.is_some_and(|peer| access.cidrs.iter().any(|cidr| cidr.contains(peer.ip()))) {
        let shown = peer.map_or_else(|| "unknown".to_string(), |peer| peer.ip().to_string());
        return Err(ApiError::Client {
            status: StatusCode::FORBIDDEN,
            code: "metrics_forbidden",
            message: format!(
                "/metrics is not served to {shown}: only to the networks of [server] metrics_cidrs; scrape from \
                 one of them or add this address there"
            ),
        });
    }
    if access.token {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err(unauthorized(
                "/metrics needs an API token ([server] metrics = \"token\"): send `Authorization: Bearer oneoff_…` \
                 (Prometheus: `authorization: { credentials_file: … }` in the scrape config)",
            ));
        };
        let value = value.to_str().map_err(|_| unauthorized("the Authorization header is not text"))?;
        from_token(state, value).await?;
    }
    Ok(())
}

/// Everything read when Prometheus scrapes.
async fn snapshot(state: &AppState) -> Snapshot {
    let mut snapshot = Snapshot::default();
    let counters = &state.counters;
    let load = |value: &std::sync::atomic::AtomicU64| value.load(Ordering::Relaxed);
    let metrics = state.executor.metrics();

    let queued = queued_by_job(state).await;
    let family = snapshot.family(
        "oneoff_runs_queued",
        "Runs waiting in the queue now, by job. The queue is the database's, shared by every replica: each \
         replica reports the same values (at most 5 s old); aggregate with max, not sum",
        Kind::Gauge,
    );
    for (job, count) in &queued {
        family.series(&[("job", job)], *count);
    }
    let family = snapshot.family(
        "oneoff_runs_running",
        "Runs running on this replica now, by job; sum over the replicas for the cluster",
        Kind::Gauge,
    );
    for (job, count) in metrics.running_by_job(&state.catalogs.current()) {
        family.series(&[("job", &job)], count);
    }
    snapshot
        .family(
            "oneoff_live_runs",
            "Deprecated: use oneoff_runs_queued and oneoff_runs_running. The runs this replica follows live \
             now: the runs running here, despite its old description (runs queued or running)",
            Kind::Gauge,
        )
        .series(&[], state.hub.live_runs() as u64);

    let family = snapshot.family(
        "oneoff_store_errors",
        "Calls of the store that failed on this replica, by kind (full, read_only, damaged, io, access, \
         unavailable, database, migrate, corrupt, sequence)",
        Kind::Counter,
    );
    for (kind, count) in state.store.error_counts() {
        family.series(&[("kind", kind)], count);
    }

    snapshot
        .family("oneoff_log_viewers", "Live log streams open now on this replica", Kind::Gauge)
        .series(&[], state.viewers.total() as u64);
    let family = snapshot.family(
        "oneoff_log_viewers_by_transport",
        "Live log streams open now on this replica, by transport (websocket, sse)",
        Kind::Gauge,
    );
    for transport in Transport::ALL {
        family.series(&[("transport", transport.as_str())], state.viewers.on(transport) as u64);
    }
    let family = snapshot.family(
        "oneoff_websocket_handshakes_refused",
        "WebSocket handshakes this replica refused (426 and the like), by reason: the error code of the answer",
        Kind::Counter,
    );
    for code in REFUSAL_CODES {
        family.series(&[("reason", code)], counters.refused(code));
    }
    snapshot
        .family("oneoff_log_streams", "Live log streams this replica opened, by transport", Kind::Counter)
        .series(&[("transport", "websocket")], load(&counters.ws_sessions))
        .series(&[("transport", "sse")], load(&counters.sse_sessions));
    snapshot
        .family(
            "oneoff_untrusted_identity_headers",
            "Requests whose identity headers were ignored because the peer is not a trusted proxy",
            Kind::Counter,
        )
        .series(&[], load(&counters.untrusted_identity_headers));
    snapshot
        .family("oneoff_viewers_refused", "Viewers refused by a viewer limit", Kind::Counter)
        .series(&[], load(&counters.viewers_refused));
    snapshot
        .family("oneoff_viewers_dropped_slow", "Viewers dropped for not reading", Kind::Counter)
        .series(&[], load(&counters.viewers_too_slow));
    snapshot
}

/// The queue's length by job, labelled through the catalog; a cached read when it is recent.
/// A failed read shows the last one rather than none (the failure is in `oneoff_store_errors_total`).
async fn queued_by_job(state: &AppState) -> Vec<(String, u64)> {
    let metrics = state.executor.metrics();
    let now = Instant::now();
    if let Some(cached) = metrics.cached_queue(now) {
        return cached;
    }
    let read: Result<Vec<(String, u64)>, StoreError> = state.store.queued_by_job().await;
    let Ok(read) = read else { return metrics.last_queue() };
    // Jobs outside the catalog are summed under one label: the row's name is not a label.
    let mut labelled: Vec<(String, u64)> = Vec::new();
    for (job, count) in read {
        let label = metrics.job_label(&job);
        match labelled.iter_mut().find(|(known, _)| *known == label) {
            Some((_, total)) => *total += count,
            None => labelled.push((label, count)),
        }
    }
    // Every job of the catalog shows, at 0 when none of its runs waits.
    for job in state.catalogs.current().jobs() {
        if !labelled.iter().any(|(known, _)| known.as_str() == job.name.as_str()) {
            labelled.push((job.name.to_string(), 0));
        }
    }
    labelled.retain(|(job, count)| *count > 0 || job != OTHER_JOB);
    labelled.sort();
    metrics.cache_queue(now, labelled.clone());
    labelled
}
