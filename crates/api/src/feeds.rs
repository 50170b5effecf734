//! Feeds: `PUT /api/v1/updaters/{name}/snapshot`, `GET /api/v1/updaters`,
//! `GET /api/v1/updaters/{name}/operations`. Updater names contain `/` (`osv/go`), so the name is
//! everything between `/api/v1/updaters/` and the final segment.
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use tocsin_store::ImportOutcome;

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
pub async fn put_snapshot(
    State(state): State<AppState>,
    Path(rest): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let name = split(&rest, "snapshot")?;
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
        .import(&name, &snapshot.fingerprint, &snapshot.vulnerabilities)
        .await?;
    let mut processed = state.engine.process_pending().await?;
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
    let processed: Vec<_> = processed
        .into_iter()
        .map(|p| {
            serde_json::json!({
                "updater": p.updater, "operation": p.operation, "changes": p.changes,
                "notification_id": p.set, "entries": p.entries, "legacy": p.legacy,
                "manifests": p.manifests,
            })
        })
        .collect();
    Ok((
        status,
        Json(serde_json::json!({
            "outcome": label,
            "operation": op,
            "vulnerabilities": snapshot.vulnerabilities.len(),
            "processed": processed,
        })),
    )
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

/// `GET /api/v1/updaters`.
pub async fn list_updaters(State(state): State<AppState>) -> Result<Response, ApiError> {
    let updaters = state.engine.store().updaters().await?;
    Ok(Json(serde_json::json!({ "updaters": updaters })).into_response())
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
