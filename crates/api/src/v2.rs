//! Clair v2's notification API (wire reference §3): `GET` and `DELETE /v1/notifications/{name}`.
//!
//! Byte-level details Clair v2 clients rely on: PascalCase keys with every empty field omitted,
//! times as Unix seconds in strings, both `OrderedLayersIntroducingVulnerability` (with `Index`)
//! and the older `LayersIntroducingVulnerability`, `{"Error":{"Message":…}}` error bodies,
//! `Content-Type: application/json;charset=utf-8` and `Server: clair`. The pages themselves are
//! projections of the stored change set ([`tocsin_engine::legacy`]); the page token is the
//! engine's signed two-stream cursor, and `NextPage` is omitted only when both streams ended.
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tocsin_engine::legacy::{Cursor, IndexedLayer, LegacyVulnerability, StreamPage, TokenKind};
use tocsin_store::MarkRead;
use uuid::Uuid;

use crate::AppState;

/// Largest `limit` accepted (per stream).
pub const MAX_LIMIT: usize = 10_000;

/// The content type of every v2 response with a body.
pub const CONTENT_TYPE: &str = "application/json;charset=utf-8";

const NOT_FOUND: &str = "the resource cannot be found";

/// A v2 error: status and message, rendered as Clair v2's `{"Error":{"Message":…}}`.
#[derive(Debug)]
pub struct V2Error {
    status: StatusCode,
    message: String,
}

impl V2Error {
    fn bad_request(message: impl Into<String>) -> Self {
        V2Error {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    fn not_found() -> Self {
        V2Error {
            status: StatusCode::NOT_FOUND,
            message: NOT_FOUND.into(),
        }
    }

    fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(%detail, "v2 notification API: internal error");
        V2Error {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: "internal error; see the server log".into(),
        }
    }
}

/// A v2 error body for any status (rejections, 401, 405 …).
pub(crate) fn error_response(status: StatusCode, message: String) -> Response {
    if status.is_server_error() {
        return V2Error::internal(message).into_response();
    }
    V2Error { status, message }.into_response()
}

impl IntoResponse for V2Error {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "Error": { "Message": self.message } }).to_string();
        json(self.status, body.into_bytes())
    }
}

/// A v2 JSON response.
fn json(status: StatusCode, body: Vec<u8>) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE)),
            (header::SERVER, HeaderValue::from_static("clair")),
        ],
        body,
    )
        .into_response()
}

/// Query parameters, kept as text so that parse failures get Clair's messages.
#[derive(Debug, Default)]
pub struct NotificationQuery {
    limit: Option<String>,
    page: Option<String>,
}

impl NotificationQuery {
    /// As Go's `url.Values.Get`, which Clair v2 reads them with: the first value of a repeated
    /// parameter wins, and others are ignored.
    fn parse(raw: Option<&str>) -> Self {
        let mut q = NotificationQuery::default();
        for (k, v) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
            let slot = match k.as_ref() {
                "limit" => &mut q.limit,
                "page" => &mut q.page,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(v.into_owned());
            }
        }
        q
    }
}

/// `{"Notification": …}`.
#[derive(Serialize)]
struct Envelope<'a> {
    #[serde(rename = "Notification")]
    notification: Notification<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Notification<'a> {
    name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    created: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    notified: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    deleted: String,
    limit: usize,
    #[serde(skip_serializing_if = "str::is_empty")]
    page: &'a str,
    #[serde(skip_serializing_if = "String::is_empty")]
    next_page: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    old: Option<WithLayers>,
    #[serde(skip_serializing_if = "Option::is_none")]
    new: Option<WithLayers>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct WithLayers {
    vulnerability: Vulnerability,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ordered_layers_introducing_vulnerability: Vec<OrderedLayer>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    layers_introducing_vulnerability: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct OrderedLayer {
    index: u32,
    layer_name: String,
}

/// Clair v2's `Vulnerability`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Vulnerability {
    #[serde(skip_serializing_if = "String::is_empty")]
    name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    namespace_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    description: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    link: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    severity: &'static str,
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    metadata: serde_json::Map<String, serde_json::Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    fixed_in: Vec<Feature>,
}

/// Clair v2's `Feature`, as `FixedIn` lists it.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Feature {
    #[serde(skip_serializing_if = "String::is_empty")]
    name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    namespace_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    version_format: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    version: String,
}

impl From<LegacyVulnerability> for Vulnerability {
    fn from(v: LegacyVulnerability) -> Self {
        Vulnerability {
            name: v.name,
            namespace_name: v.namespace_name,
            description: v.description,
            link: v.link,
            severity: v.severity,
            metadata: v.metadata,
            fixed_in: v
                .fixed_in
                .into_iter()
                .map(|f| Feature {
                    name: f.name,
                    namespace_name: f.namespace_name,
                    version_format: f.version_format,
                    version: f.version,
                })
                .collect(),
        }
    }
}

fn with_layers(s: StreamPage) -> WithLayers {
    let names = s.layers.iter().map(|l| l.name.clone()).collect();
    WithLayers {
        vulnerability: s.vulnerability.into(),
        ordered_layers_introducing_vulnerability: s
            .layers
            .into_iter()
            .map(|IndexedLayer { index, name }| OrderedLayer {
                index,
                layer_name: name,
            })
            .collect(),
        layers_introducing_vulnerability: names,
    }
}

/// Unix seconds as v2 writes them.
fn unix(t: Option<time::OffsetDateTime>) -> String {
    t.map(|t| t.unix_timestamp().to_string())
        .unwrap_or_default()
}

fn parse_limit(raw: Option<&str>) -> Result<usize, V2Error> {
    let raw = raw.ok_or_else(|| V2Error::bad_request("must provide limit query parameter"))?;
    let n: i64 = raw
        .parse()
        .map_err(|e| V2Error::bad_request(format!("invalid limit format: {raw:?}: {e}")))?;
    match usize::try_from(n) {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(V2Error::bad_request(format!(
            "invalid limit format: {n} is not between 1 and {MAX_LIMIT}"
        ))),
    }
}

/// Names are UUIDs; anything else cannot name a notification (Clair: 404).
fn parse_name(name: &str) -> Result<Uuid, V2Error> {
    Uuid::parse_str(name).map_err(|_| V2Error::not_found())
}

/// `GET /v1/notifications/{name}?limit=N[&page=TOKEN]`
pub async fn get_notification(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let q = NotificationQuery::parse(raw.as_deref());
    match page(&state, &name, &q).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn page(state: &AppState, name: &str, q: &NotificationQuery) -> Result<Response, V2Error> {
    let limit = parse_limit(q.limit.as_deref())?;
    let token = q.page.as_deref().unwrap_or("");
    let Ok(id) = Uuid::parse_str(name) else {
        // Clair checks the page before looking the notification up.
        if !token.is_empty() {
            return Err(V2Error::bad_request(format!(
                "invalid page format: page token {token:?} was not issued for {name:?}"
            )));
        }
        return Err(V2Error::not_found());
    };
    let (old, new) = if token.is_empty() {
        (Cursor::START, Cursor::START)
    } else {
        let tokens = state
            .engine
            .page_tokens()
            .await
            .map_err(V2Error::internal)?;
        match tokens
            .decode(TokenKind::V2, id, 2, token)
            .map_err(|e| V2Error::bad_request(format!("invalid page format: {e}")))?
            .as_slice()
        {
            [old, new] => (*old, *new),
            other => {
                return Err(V2Error::internal(format!(
                    "decoded {} cursors",
                    other.len()
                )))
            }
        }
    };
    let p = state
        .engine
        .legacy_page(id, old, new, limit)
        .await
        .map_err(V2Error::internal)?
        .ok_or_else(V2Error::not_found)?;
    let next_old = p.old.as_ref().map_or(Cursor::Done, |s| s.next);
    let next_new = p.new.as_ref().map_or(Cursor::Done, |s| s.next);
    let next_page = if next_old == Cursor::Done && next_new == Cursor::Done {
        String::new()
    } else {
        let tokens = state
            .engine
            .page_tokens()
            .await
            .map_err(V2Error::internal)?;
        tokens.encode(TokenKind::V2, id, &[next_old, next_new])
    };
    let n = &p.notification;
    let body = Envelope {
        notification: Notification {
            name: n.name.to_string(),
            created: unix(Some(n.created_at)),
            notified: unix(n.notified_at),
            deleted: unix(n.deleted_at),
            limit,
            page: token,
            next_page,
            old: p.old.map(with_layers),
            new: p.new.map(with_layers),
        },
    };
    let body = serde_json::to_vec(&body).map_err(V2Error::internal)?;
    Ok(json(StatusCode::OK, body))
}

/// `DELETE /v1/notifications/{name}`: 200 with an empty body, also when repeated (Harbor
/// requires exactly 200); 404 when it never existed.
pub async fn delete_notification(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Response {
    let result = async {
        let id = parse_name(&name)?;
        match state
            .engine
            .mark_legacy_read(id)
            .await
            .map_err(V2Error::internal)?
        {
            MarkRead::Marked | MarkRead::AlreadyRead => Ok((
                StatusCode::OK,
                [(header::SERVER, HeaderValue::from_static("clair"))],
            )
                .into_response()),
            MarkRead::Unknown => Err(V2Error::not_found()),
        }
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_rules_and_messages() {
        assert_eq!(
            parse_limit(None).unwrap_err().message,
            "must provide limit query parameter"
        );
        assert!(parse_limit(Some("x"))
            .unwrap_err()
            .message
            .starts_with("invalid limit format"));
        for bad in ["0", "-3", "10001"] {
            assert_eq!(
                parse_limit(Some(bad)).unwrap_err().status,
                StatusCode::BAD_REQUEST,
                "{bad}"
            );
        }
        assert_eq!(parse_limit(Some("2")).unwrap(), 2);
        assert_eq!(parse_limit(Some("10000")).unwrap(), 10_000);
    }

    #[test]
    fn the_first_of_repeated_parameters_wins_as_in_go() {
        let q = NotificationQuery::parse(Some("limit=2&limit=x&page=&page=t&other=1"));
        assert_eq!(q.limit.as_deref(), Some("2"));
        assert_eq!(q.page.as_deref(), Some(""));
        let q = NotificationQuery::parse(None);
        assert!(q.limit.is_none() && q.page.is_none());
    }

    #[test]
    fn empty_fields_are_omitted() {
        let v: Vulnerability = LegacyVulnerability {
            name: "CVE-1".into(),
            namespace_name: String::new(),
            description: String::new(),
            link: String::new(),
            severity: "High",
            metadata: serde_json::Map::new(),
            fixed_in: vec![],
        }
        .into();
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"{"Name":"CVE-1","Severity":"High"}"#
        );
        assert_eq!(unix(None), "");
    }
}
