//! Feeds: `PUT /api/v1/updaters/{name}/snapshot`, `GET /api/v1/updaters`,
//! `GET /api/v1/updaters/{name}/operations`, `POST /api/v1/updaters/{name}/run` and
//! `POST /api/v1/updaters/{name}/operations/{ref}/accept`. Updater names contain `/` (`osv/go`),
//! so the name is everything between `/api/v1/updaters/` and the final segment(s).
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::sync::Arc;

use tocsin_engine::{Guard, Processed};
use tocsin_store::ImportOutcome;
use tocsin_updaters::RunReport;

use crate::{ApiError, AppState};

fn split(rest: &str, want: &str) -> Result<String, ApiError> {
    let name = rest
        .strip_suffix(want)
        .and_then(|n| n.strip_suffix('/'))
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "no such path /api/v1/updaters/{rest} (expected /api/v1/updaters/NAME/{want})"
            ))
        })?;
    validate_updater_name(name)?;
    Ok(name.to_string())
}

/// Updater names: at most 200 of letters, digits and `._-/:`, in `/`-separated segments that
/// are neither empty nor dots alone (`.` and `..` would be resolved away by URL clients). The
/// OpenAPI document's `UpdaterName` pattern says the same.
pub fn validate_updater_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/:".contains(c))
        && !name.split('/').any(|seg| seg.bytes().all(|b| b == b'.'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "updater name {name:?} must be at most 200 letters, digits and ._-/: in segments \
             that are neither empty nor only dots"
        )))
    }
}

/// `PUT /api/v1/updaters/{name}/snapshot`: imports a snapshot (tar.gz, zip, or a JSON array of
/// OSV records or claircore vulnerabilities), all-or-nothing, then processes it. An archive that
/// decompresses past [`AppState::limits`] is a 413 naming the limit, and nothing is stored.
///
/// The storm guard (`tocsin.updaters.withdraw_guard`) applies: a snapshot that would withdraw
/// too much is stored held (202, `"outcome": "held"`) until accepted; `?force=true` skips it.
pub async fn put_snapshot(
    State(state): State<AppState>,
    Path(rest): Path<String>,
    Query(query): Query<SnapshotQuery>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let name = split(&rest, "snapshot")?;
    let guard = if query.force.unwrap_or(false) {
        Guard::Skip
    } else {
        Guard::Apply
    };
    let updater = name.clone();
    let limits = state.limits;
    let snapshot = tokio::task::spawn_blocking(move || {
        tocsin_feeds::read_bytes_with_limits(&updater, &body, &limits, &|_| {})
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(|e| match e {
        tocsin_feeds::FeedError::Limit { .. } => ApiError::TooLarge(e.to_string()),
        other => ApiError::BadRequest(other.to_string()),
    })?;
    let outcome = state
        .engine
        .import_with(
            &name,
            &snapshot.fingerprint,
            &snapshot.vulnerabilities,
            guard,
        )
        .await?;
    let mut processed = state.engine.process_pending().await?;
    let held = match &outcome {
        ImportOutcome::Held(h) => Some(h.reason.clone()),
        _ => None,
    };
    let (status, label, op) = match outcome {
        ImportOutcome::Created(op) => (StatusCode::CREATED, "created", op),
        ImportOutcome::Unchanged(op) => (StatusCode::OK, "unchanged", op),
        ImportOutcome::Held(h) => (StatusCode::ACCEPTED, "held", h.operation),
    };
    // The background processor may have taken the new operation while we waited for the lock.
    if status == StatusCode::CREATED {
        if let Ok(id) = uuid::Uuid::parse_str(&op.reference) {
            if !processed.iter().any(|p| p.operation == id) {
                processed.extend(state.engine.processed(id));
            }
        }
    }
    let mut body = serde_json::json!({
        "outcome": label,
        "operation": op,
        "vulnerabilities": snapshot.vulnerabilities.len(),
        "processed": processed_json(processed),
    });
    if let Some(reason) = held {
        body["held"] = serde_json::Value::String(reason);
    }
    Ok((status, Json(body)).into_response())
}

/// The query of `PUT …/snapshot`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotQuery {
    /// Import even when the storm guard would hold the snapshot.
    force: Option<bool>,
}

fn processed_json(processed: Vec<Processed>) -> Vec<serde_json::Value> {
    processed
        .into_iter()
        .map(|p| {
            serde_json::json!({
                "updater": p.updater, "operation": p.operation, "changes": p.changes,
                "notification_id": p.set, "entries": p.entries, "legacy": p.legacy,
                "manifests": p.manifests,
            })
        })
        .collect()
}

/// `POST /api/v1/updaters/{name}/run`: fetches a followed source now (whatever its schedule)
/// and answers when it is imported and processed. 409 while another process fetches it, 404
/// for an updater that is not followed, 502 when the source fails (nothing imported).
pub async fn post_run(
    State(state): State<AppState>,
    Path(rest): Path<String>,
) -> Result<Response, ApiError> {
    let name = split(&rest, "run")?;
    let Some(updaters) = state.updaters.clone() else {
        return Err(ApiError::NotFound(format!(
            "updater {name:?} is not followed: no tocsin.updaters source is configured (push \
             snapshots with PUT /api/v1/updaters/{{name}}/snapshot)"
        )));
    };
    let report = updaters.run_now(&name, Arc::new(|_| {})).await?;
    Ok(Json(report_json(report)).into_response())
}

/// `POST /api/v1/clair/run`: mirrors the fronted Clair's new update operations now and
/// processes them. 404 when tocsin fronts no Clair; 409 while another run holds the mirror; 502
/// when Clair fails or answers what it should not (what was mirrored is kept).
pub async fn post_clair_run(State(state): State<AppState>) -> Result<Response, ApiError> {
    let Some(clair) = state.clair.clone() else {
        return Err(ApiError::NotFound(
            "tocsin fronts no Clair (notifier.matcher_addr and notifier.indexer_addr are not set)"
                .into(),
        ));
    };
    let report = clair.run_now().await?;
    let mut v = serde_json::to_value(&report).unwrap_or_default();
    v["processed"] = serde_json::Value::Array(processed_json(report.processed));
    Ok(Json(v).into_response())
}

/// The fronted Clair's mirror: where it is, its schedule and last results.
async fn clair_status(state: &AppState) -> Result<serde_json::Value, ApiError> {
    let Some(clair) = &state.clair else {
        return Ok(serde_json::Value::Null);
    };
    let c = clair.clair();
    let s = state
        .engine
        .store()
        .sources()
        .await?
        .into_iter()
        .find(|s| s.name == tocsin_updaters::CLAIR_SOURCE)
        .unwrap_or_default();
    let memory: serde_json::Value = serde_json::from_str(&s.state).unwrap_or_default();

    Ok(serde_json::json!({
        "matcher": c.shown_matcher(),
        "indexer": c.shown_indexer(),
        "poll_interval_seconds": c.poll_interval.as_secs(),
        "signed": c.psk.is_some(),
        "next_run": rfc3339(s.next_run),
        "last_attempt": rfc3339(s.last_attempt),
        "last_success": rfc3339(s.last_success),
        "last_error": s.last_error,
        "last_error_at": rfc3339(s.last_error_at),
        "failures": s.failures,
        "fetching_until": rfc3339(s.lease_until.filter(|t| *t > time::OffsetDateTime::now_utc())),
        "etag": memory["etag"],
        "last_gap": memory["last_gap"],
    }))
}

/// A run's report as the API and `tocsin feed update --json` show it.
pub fn report_json(r: RunReport) -> serde_json::Value {
    serde_json::json!({
        "updater": r.updater,
        "outcome": r.outcome,
        "mode": r.mode,
        "fallback": r.fallback,
        "requests": r.requests,
        "bytes": r.bytes,
        "seconds": r.elapsed.as_secs_f64(),
        "operation": r.operation,
        "held": r.held,
        "vulnerabilities": r.vulnerabilities,
        "processed": processed_json(r.processed),
    })
}

/// `POST /api/v1/updaters/{name}/operations/{ref}/accept`: accepts the updater's held update
/// operation and processes it. 409 when `ref` is not the updater's held operation.
pub async fn post_accept(
    State(state): State<AppState>,
    Path(rest): Path<String>,
) -> Result<Response, ApiError> {
    let path = rest
        .strip_suffix("/accept")
        .and_then(|p| p.rsplit_once("/operations/"))
        .filter(|(name, op)| !name.is_empty() && !op.is_empty());
    let Some((name, op)) = path else {
        return Err(ApiError::NotFound(format!(
            "no such path /api/v1/updaters/{rest} (expected \
             /api/v1/updaters/NAME/operations/REF/accept)"
        )));
    };
    validate_updater_name(name)?;
    let op = uuid::Uuid::parse_str(op)
        .map_err(|e| ApiError::BadRequest(format!("operation reference {op:?}: {e}")))?;
    let accepted = match state.engine.accept(name, op).await {
        Ok(op) => op,
        Err(tocsin_engine::EngineError::Store(tocsin_store::StoreError::Invalid(m))) => {
            return Err(ApiError::Conflict(m))
        }
        Err(e) => return Err(e.into()),
    };
    let mut processed = state.engine.process_pending().await?;
    if !processed.iter().any(|p| p.operation == op) {
        processed.extend(state.engine.processed(op));
    }
    Ok(Json(serde_json::json!({
        "outcome": "accepted",
        "operation": accepted,
        "processed": processed_json(processed),
    }))
    .into_response())
}

/// `GET /api/v1/updaters/{name}/operations`: newest first.
pub async fn get_operations(
    State(state): State<AppState>,
    Path(rest): Path<String>,
) -> Result<Response, ApiError> {
    let name = split(&rest, "operations")?;
    let ops = state.engine.store().update_operations(&name).await?;
    if ops.is_empty() {
        return Err(ApiError::NotFound(format!("updater {name:?} not found")));
    }
    Ok(Json(serde_json::json!({ "updater": name, "operations": ops })).into_response())
}

/// `GET /api/v1/updaters`: every updater with stored operations or a configured source: its
/// operations (latest, processed, held) and, when tocsin follows it, its source, schedule, last
/// results and validators.
pub async fn list_updaters(State(state): State<AppState>) -> Result<Response, ApiError> {
    let stored = state.engine.store().updaters().await?;
    let sources = match &state.updaters {
        Some(u) => u.statuses().await?,
        None => Vec::new(),
    };
    let mut rows: std::collections::BTreeMap<String, serde_json::Value> = stored
        .into_iter()
        .map(|u| {
            let name = u.name.clone();
            let mut v = serde_json::to_value(u).unwrap_or_default();
            v["source"] = serde_json::Value::Null;
            (name, v)
        })
        .collect();
    for s in sources {
        let row = rows.entry(s.name.clone()).or_insert_with(|| {
            serde_json::json!({
                "name": s.name, "latest": null, "processed": null, "operations": 0,
                "vulnerabilities": 0, "held": null,
            })
        });
        let state = s.state.unwrap_or_default();
        row["source"] = serde_json::json!({
            "location": s.source,
            "kind": s.kind,
            "interval_seconds": s.interval_seconds,
            "next_run": rfc3339(state.next_run),
            "last_attempt": rfc3339(state.last_attempt),
            "last_success": rfc3339(state.last_success),
            "last_error": state.last_error,
            "last_error_at": rfc3339(state.last_error_at),
            "failures": state.failures,
            "fetching_until": rfc3339(state.lease_until.filter(|t| *t > time::OffsetDateTime::now_utc())),
            "validator": s.validator,
            "cursor": rfc3339(s.cursor),
        });
    }
    let updaters: Vec<serde_json::Value> = rows.into_values().collect();
    let clair = clair_status(&state).await?;
    Ok(Json(serde_json::json!({ "updaters": updaters, "clair": clair })).into_response())
}

fn rfc3339(t: Option<time::OffsetDateTime>) -> serde_json::Value {
    t.and_then(|t| {
        t.format(&time::format_description::well_known::Rfc3339)
            .ok()
    })
    .map_or(serde_json::Value::Null, serde_json::Value::String)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_slashes_split_from_their_action() {
        assert_eq!(split("osv/go/snapshot", "snapshot").unwrap(), "osv/go");
        assert!(split("snapshot", "snapshot").is_err());
        assert!(split("osv//go/snapshot", "snapshot").is_err());
        assert!(split("osv/go/other", "snapshot").is_err());
        assert!(validate_updater_name("osv/crates.io").is_ok());
        assert!(validate_updater_name("bad name").is_err());
        for dots in [".", "..", "osv/..", "./go", "osv/.../go"] {
            assert!(validate_updater_name(dots).is_err(), "{dots}");
        }
        assert!(validate_updater_name("osv/.go").is_ok());
        assert!(validate_updater_name(&"a".repeat(200)).is_ok());
        assert!(validate_updater_name(&"a".repeat(201)).is_err());
    }
}
