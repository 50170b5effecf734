//! The running consumer: the inbound webhook endpoint, the worker that processes accepted
//! notifications one at a time (resuming, at start, every notification a previous run
//! accepted), and health.
//!
//! - `POST /clair/v4`: Clair v4's webhook (`{"notification_id","callback"}`). The notification
//!   is accepted — its checkpoint written — before the answer (200), so an answered webhook is
//!   never lost; the work happens after, as the original consumer does it. With a PSK, the
//!   request must carry a bearer JWT signed with it by an allowed issuer (Clair's notifier signs
//!   as `clair-notifier`); otherwise 401.
//! - `POST /clair`: Clair v1/v2/v3's webhook (`{"Notification":{"Name"}}`), paged through the
//!   v3 gRPC API the consumer is configured with (404 when none is). Accepted the same way.
//!   Clair of those generations sent no token (only, optionally, a TLS client certificate), so
//!   this path takes none: a forged webhook can at most make the consumer read, from the
//!   configured Clair, a notification that exists there — which it would read anyway.
//! - `GET /healthz`: 200 once the pod cache is filled (the server starts after it is);
//!   `GET /metrics`: Prometheus text — notifications received, processed and failed, workloads
//!   matched, events by reason and outcome (counted as each is recorded, so a notification that
//!   fails half-way still counts what it recorded), and the checkpoint lag: notifications accepted and not yet
//!   acknowledged (`tocsin_kube_notifications_pending`) and the age of the oldest
//!   (`tocsin_kube_checkpoint_lag_seconds`), refreshed every few seconds from the checkpoints.
//!
//! A notification that fails (the notifier or the API server unreachable) is tried again after
//! a backoff that doubles up to five minutes; its checkpoint keeps the progress.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use tocsin_deliver::jwt;
use tocsin_deliver::PskKey;
use tokio::sync::mpsc;

use crate::checkpoint::{Checkpoint, Source};
use crate::consume::Consumer;
use crate::v4::Webhook;
use crate::KubeError;

/// Largest webhook body accepted.
const BODY_LIMIT: usize = 64 << 10;
/// First retry delay of a failed notification; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Renders the process's metrics (Prometheus text).
pub type Metrics = Arc<dyn Fn() -> String + Send + Sync>;

/// How inbound requests are served.
#[derive(Clone)]
pub struct Inbound {
    /// The PSK and the issuers allowed on webhooks; `None`: no authentication.
    pub psk: Option<(PskKey, Vec<String>)>,
    /// `GET /metrics`, when set.
    pub metrics: Option<Metrics>,
}

#[derive(Clone)]
struct AppState {
    consumer: Arc<Consumer>,
    queue: mpsc::UnboundedSender<Checkpoint>,
    inbound: Inbound,
}

fn authorized(inbound: &Inbound, headers: &HeaderMap) -> bool {
    let Some((key, issuers)) = &inbound.psk else {
        return true;
    };
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|token| jwt::verify(token.trim(), key, issuers).is_ok())
}

async fn webhook_v4(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> (StatusCode, String) {
    if !authorized(&app.inbound, &headers) {
        return (StatusCode::UNAUTHORIZED, "unauthorized\n".into());
    }
    let hook: Webhook = match serde_json::from_slice(&body) {
        Ok(h) => h,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("not a Clair v4 webhook body: {e}\n"),
            )
        }
    };
    if reqwest::Url::parse(&hook.callback).is_err() || hook.notification_id.is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            "the webhook needs a notification_id and an absolute callback URL\n".into(),
        );
    }
    accept(
        &app,
        Source::V4 {
            id: hook.notification_id,
            callback: hook.callback,
        },
    )
}

async fn webhook_v3(State(app): State<AppState>, body: axum::body::Bytes) -> (StatusCode, String) {
    if !app.consumer.takes_v3() {
        return (
            StatusCode::NOT_FOUND,
            "no Clair v3 API is configured (--clair-v3), so v2/v3 webhooks cannot be paged\n"
                .into(),
        );
    }
    let hook: crate::v3::Webhook = match serde_json::from_slice(&body) {
        Ok(h) => h,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("not a Clair v2/v3 webhook body: {e}\n"),
            )
        }
    };
    let name = hook.notification.name;
    if name.is_empty() || name.len() > 256 || name.chars().any(char::is_control) {
        return (
            StatusCode::BAD_REQUEST,
            "the webhook's Notification.Name must be a name of 1 to 256 printable characters\n"
                .into(),
        );
    }
    accept(&app, Source::V3 { name })
}

/// Accepts `source` (its checkpoint written) and queues it.
fn accept(app: &AppState, source: Source) -> (StatusCode, String) {
    match app.consumer.accept(source) {
        Ok(checkpoint) => {
            metrics::counter!("tocsin_kube_notifications_received_total").increment(1);
            let _ = app.queue.send(checkpoint);
            (StatusCode::OK, String::new())
        }
        Err(e) => {
            tracing::error!(error = %e, "accepting a notification");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot accept it now: {e}\n"),
            )
        }
    }
}

/// The HTTP routes (module doc).
fn router(app: AppState) -> Router {
    let metrics = app.inbound.metrics.clone();
    Router::new()
        .route("/clair/v4", post(webhook_v4))
        .route("/clair", post(webhook_v3))
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    match metrics {
                        Some(render) => (StatusCode::OK, render()),
                        None => (StatusCode::NOT_FOUND, "no metrics recorder\n".into()),
                    }
                }
            }),
        )
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(app)
}

/// Processes accepted notifications one at a time, retrying failures with backoff.
async fn work(
    consumer: Arc<Consumer>,
    queue: mpsc::UnboundedSender<Checkpoint>,
    mut accepted: mpsc::UnboundedReceiver<Checkpoint>,
) {
    let mut failures: std::collections::HashMap<Source, u32> = Default::default();
    while let Some(checkpoint) = accepted.recv().await {
        // A webhook sent again while its notification waits or is retried is one notification;
        // the checkpoint on disk is the truth.
        let current = match consumer.checkpoints().load(&checkpoint.source) {
            Ok(Some(c)) => c,
            Ok(None) => continue,
            Err(e) => {
                tracing::error!(error = %e, "reading a checkpoint");
                continue;
            }
        };
        let source = current.source.clone();
        match consumer.process(current).await {
            Ok(out) => {
                failures.remove(&source);
                metrics::counter!("tocsin_kube_notifications_processed_total").increment(1);
                metrics::counter!("tocsin_kube_workloads_matched_total").increment(out.matched);
            }
            Err(e) => {
                let n = failures.entry(source.clone()).or_insert(0);
                *n += 1;
                let delay = FIRST_BACKOFF
                    .saturating_mul(1 << (*n - 1).min(10))
                    .min(MAX_BACKOFF);
                metrics::counter!("tocsin_kube_notifications_failed_total").increment(1);
                tracing::warn!(notification = source.key(), error = %e, failures = *n,
                    retry_in_s = delay.as_secs(), "processing a notification failed; its checkpoint keeps the progress");
                let queue = queue.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = queue.send(checkpoint);
                });
            }
        }
    }
}

/// Runs the consumer on `listener` until `shutdown` completes: resumes every checkpoint a
/// previous run left, then serves webhooks.
pub async fn run(
    consumer: Arc<Consumer>,
    inbound: Inbound,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), KubeError> {
    let (queue, accepted) = mpsc::unbounded_channel();
    let pending = consumer.checkpoints().all()?;
    if !pending.is_empty() {
        tracing::info!(
            notifications = pending.len(),
            "resuming notifications accepted before a restart"
        );
    }
    for c in pending {
        let _ = queue.send(c);
    }
    let worker = tokio::spawn(work(consumer.clone(), queue.clone(), accepted));
    let lag = tokio::spawn(report_lag(consumer.clone()));
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    tracing::info!(addr = ?addr, "the Kubernetes consumer listens (POST /clair/v4, POST /clair)");
    let app = router(AppState {
        consumer,
        queue,
        inbound,
    });
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| KubeError::Config(format!("serving HTTP: {e}")));
    worker.abort();
    lag.abort();
    served
}

/// How often the checkpoint lag is measured.
const LAG_INTERVAL: Duration = Duration::from_secs(5);

/// Keeps the checkpoint-lag gauges (module doc) current.
async fn report_lag(consumer: Arc<Consumer>) {
    loop {
        match consumer.checkpoints().all() {
            Ok(pending) => {
                let (count, lag) = lag_of(&pending, time::OffsetDateTime::now_utc());
                metrics::gauge!("tocsin_kube_notifications_pending").set(count as f64);
                metrics::gauge!("tocsin_kube_checkpoint_lag_seconds").set(lag);
            }
            Err(e) => tracing::warn!(error = %e, "measuring the checkpoint lag"),
        }
        tokio::time::sleep(LAG_INTERVAL).await;
    }
}

/// How many notifications are pending, and how long the oldest has waited (seconds; 0 when
/// none is).
fn lag_of(pending: &[Checkpoint], now: time::OffsetDateTime) -> (usize, f64) {
    let oldest = pending.iter().filter_map(|c| c.accepted_at).min();
    let lag = oldest.map_or(0.0, |t| (now.unix_timestamp() - t).max(0) as f64);
    (pending.len(), lag)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Position;

    #[test]
    fn the_lag_is_the_age_of_the_oldest_pending_notification() {
        let now = time::macros::datetime!(2026-12-08 01:00:00 UTC);
        let at = |accepted_at: Option<i64>, id: &str| Checkpoint {
            source: Source::V3 { name: id.into() },
            position: Position::default(),
            accepted_at,
        };
        assert_eq!(lag_of(&[], now), (0, 0.0));
        let t = now.unix_timestamp();
        let pending = [
            at(Some(t - 30), "a"),
            at(Some(t - 600), "b"),
            at(None, "c"),
            at(Some(t + 5), "clock skew"),
        ];
        assert_eq!(lag_of(&pending, now), (4, 600.0));
    }
}
