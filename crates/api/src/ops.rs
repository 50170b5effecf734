//! Operations endpoints, notification-set listing, and the fallbacks.
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use tocsin_model::notification::ReceiptStatus;
use uuid::Uuid;

use crate::{ApiError, AppState};

/// The OpenAPI document, written by hand and checked against the router by a test.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// `GET /healthz`: the process is up.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /readyz`: the store answers.
pub async fn readyz(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    state.engine.store().backlog().await?;
    Ok("ready\n")
}

/// `GET /metrics`: Prometheus text, with the delivery backlog refreshed first.
pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let Some(render) = &state.metrics else {
        return Err(ApiError::NotFound("metrics are not enabled".into()));
    };
    let b = state.engine.store().backlog().await?;
    for (label, n) in [
        ("created", b.created),
        ("delivery_failed", b.failed),
        ("dead_letter", b.dead_letter),
        ("delivered", b.delivered),
    ] {
        metrics_gauge(label, n);
    }
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        render(),
    )
        .into_response())
}

fn metrics_gauge(state: &'static str, n: u64) {
    tocsin_engine::record_backlog(state, n);
}

/// `GET /openapi.json`.
pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// Largest page of tocsin's own listings.
pub const MAX_LIST_LIMIT: usize = 1000;

/// A listing's `limit`: 100 when absent, else 1 to [`MAX_LIST_LIMIT`].
pub(crate) fn page_limit(limit: Option<usize>) -> Result<usize, ApiError> {
    match limit {
        None => Ok(100),
        Some(n @ 1..=MAX_LIST_LIMIT) => Ok(n),
        Some(n) => Err(ApiError::BadRequest(format!(
            "limit {n} is not between 1 and {MAX_LIST_LIMIT}"
        ))),
    }
}

/// Listing parameters of notification sets.
#[derive(Debug, Deserialize)]
pub struct SetsQuery {
    status: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
}

/// `GET /api/v1/notifications?status=&after=&limit=`: sets, newest first.
pub async fn list_sets(
    State(state): State<AppState>,
    Query(q): Query<SetsQuery>,
) -> Result<Response, ApiError> {
    let status = q
        .status
        .as_deref()
        .map(|s| {
            ReceiptStatus::parse(s).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "unknown status {s:?} (expected created, delivered, delivery_failed, dead_letter or deleted)"
                ))
            })
        })
        .transpose()?;
    let after = q
        .after
        .as_deref()
        .map(|a| {
            Uuid::parse_str(a)
                .map_err(|_| ApiError::BadRequest(format!("after {a:?} is not a UUID")))
        })
        .transpose()?;
    let limit = page_limit(q.limit)?;
    if let Some(after) = after {
        // A position the listing cannot have handed out: no such set (any more).
        if state
            .engine
            .store()
            .notification_set(after)
            .await?
            .is_none()
        {
            return Err(ApiError::NotFound(format!(
                "after: notification set {after} not found"
            )));
        }
    }
    let mut sets = state
        .engine
        .store()
        .notification_sets(status, after, limit + 1)
        .await?;
    let more = sets.len() > limit;
    sets.truncate(limit);
    let next = more.then(|| sets.last().map(|s| s.id)).flatten();
    Ok(Json(serde_json::json!({ "notifications": sets, "next": next })).into_response())
}

/// `GET /api/v1/notifications/{id}`: one set with its receipts and attempt history.
pub async fn get_set(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = Uuid::parse_str(&id)
        .map_err(|_| ApiError::BadRequest(format!("notification id {id:?} is not a UUID")))?;
    let store = state.engine.store();
    let info = store
        .notification_set(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("notification {id} not found")))?;
    let attempts = store.attempts(id).await?;
    Ok(Json(serde_json::json!({ "notification": info, "attempts": attempts })).into_response())
}
