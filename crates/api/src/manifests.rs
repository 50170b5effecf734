//! Manifests: `PUT/GET/DELETE /api/v1/manifests/{digest}`, `GET /api/v1/manifests`, and the
//! vulnerability report.
use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use tocsin_model::inventory::InventoryFormat;
use tocsin_model::Digest;
use tocsin_store::PutOutcome;

use crate::{ApiError, AppState};

pub(crate) fn parse_digest(s: &str) -> Result<Digest, ApiError> {
    Digest::parse(s).map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// Options of a manifest upload, from the query string: `format=`, `distribution=`, and any
/// number of `label=key=value`.
#[derive(Debug, Default)]
struct PutOptions {
    format: Option<InventoryFormat>,
    distribution: Option<String>,
    labels: BTreeMap<String, String>,
}

fn put_options(raw: Option<&str>) -> Result<PutOptions, ApiError> {
    let mut o = PutOptions::default();
    for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "format" => {
                o.format = Some(InventoryFormat::parse(&v).ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "unknown format {v:?} (expected one of: {})",
                        InventoryFormat::ALL.map(|f| f.as_str()).join(", ")
                    ))
                })?)
            }
            "distribution" => o.distribution = Some(v.into_owned()),
            "label" => {
                let (key, value) = v
                    .split_once('=')
                    .ok_or_else(|| ApiError::BadRequest(format!("label {v:?} is not key=value")))?;
                if key.is_empty() {
                    return Err(ApiError::BadRequest(format!(
                        "label {v:?} has an empty key"
                    )));
                }
                o.labels.insert(key.to_string(), value.to_string());
            }
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown query parameter {other:?} (expected format, distribution, label)"
                )))
            }
        }
    }
    Ok(o)
}

/// `PUT /api/v1/manifests/{digest}`: body sniffed, or typed by `format=` / Content-Type.
pub async fn put(
    State(state): State<AppState>,
    Path(digest): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let digest = parse_digest(&digest)?;
    let opts = put_options(raw.as_deref())?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let manifest = tokio::task::spawn_blocking(move || {
        tocsin_inventory::parse(tocsin_inventory::Input {
            bytes: &body,
            format: opts.format,
            content_type: content_type.as_deref(),
            digest: Some(digest),
            distribution: opts.distribution.as_deref(),
            labels: opts.labels,
        })
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let packages = manifest.report.packages.len();
    let (id, outcome) = state.engine.put_manifest(&manifest).await?;
    let status = match outcome {
        PutOutcome::Created => StatusCode::CREATED,
        _ => StatusCode::OK,
    };
    let outcome = match outcome {
        PutOutcome::Created => "created",
        PutOutcome::Replaced => "replaced",
        PutOutcome::Unchanged => "unchanged",
    };
    Ok((
        status,
        Json(serde_json::json!({
            "digest": manifest.digest,
            "id": id,
            "outcome": outcome,
            "format": manifest.format,
            "packages": packages,
        })),
    )
        .into_response())
}

/// `GET /api/v1/manifests/{digest}`: the stored manifest (labels, format, IndexReport).
pub async fn get_one(
    State(state): State<AppState>,
    Path(digest): Path<String>,
) -> Result<Response, ApiError> {
    let digest = parse_digest(&digest)?;
    let m = state
        .engine
        .store()
        .get_manifest(&digest)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("manifest {digest} not found")))?;
    Ok(Json(m).into_response())
}

/// `DELETE /api/v1/manifests/{digest}`: 204, or 404.
pub async fn delete(
    State(state): State<AppState>,
    Path(digest): Path<String>,
) -> Result<Response, ApiError> {
    let digest = parse_digest(&digest)?;
    if state.engine.delete_manifest(&digest).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::NotFound(format!("manifest {digest} not found")))
    }
}

/// Listing parameters.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    after: Option<String>,
    limit: Option<usize>,
}

/// `GET /api/v1/manifests?after=DIGEST&limit=N`: in digest order; `next` is the digest to pass
/// as `after` for the following page, present only when more follow.
pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let limit = crate::ops::page_limit(q.limit)?;
    let after = q.after.as_deref().map(parse_digest).transpose()?;
    let mut items = state
        .engine
        .store()
        .list_manifests(after.as_ref(), limit + 1)
        .await?;
    let more = items.len() > limit;
    items.truncate(limit);
    let next = more
        .then(|| items.last().map(|m| m.digest.to_string()))
        .flatten();
    Ok(Json(serde_json::json!({ "manifests": items, "next": next })).into_response())
}

/// `GET /matcher/api/v1/vulnerability_report/{digest}`: Clair's VulnerabilityReport.
pub async fn vulnerability_report(
    State(state): State<AppState>,
    Path(digest): Path<String>,
) -> Result<Response, ApiError> {
    let digest = parse_digest(&digest)?;
    let report = state
        .engine
        .vulnerability_report(&digest)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("manifest {digest} not found")))?;
    Ok(Json(report).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_options_parse_labels_and_reject_unknowns() {
        let o = put_options(Some(
            "format=cyclonedx&label=image%3Dquay.io%2Fa%3A1&label=team=x",
        ))
        .unwrap();
        assert_eq!(o.format, Some(InventoryFormat::Cyclonedx));
        assert_eq!(o.labels["image"], "quay.io/a:1");
        assert_eq!(o.labels["team"], "x");
        assert!(put_options(Some("label=novalue")).is_err());
        assert!(put_options(Some("format=docx")).is_err());
        assert!(put_options(Some("colour=blue")).is_err());
    }
}
