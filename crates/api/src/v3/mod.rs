//! Clair v3's notification API (wire reference §4): the gRPC `NotificationService` under both of
//! its package names, `coreos.clair` and the older `clairpb`, and the REST gateway paths
//! `GET`/`DELETE /notifications/{name}`.
//!
//! gRPC shares the HTTP listener: the generated services are ordinary routes of the axum router
//! (`/coreos.clair.NotificationService/*`, `/clairpb.NotificationService/*`), and the server
//! speaks HTTP/1.1 and HTTP/2 (h2c) on one port, so a gRPC client and a REST client reach the
//! same address. The code is generated in crate `tocsin-clairpb` (shared with the Kubernetes
//! consumer's client); both packages use one set of message types, so one implementation answers
//! both.
//!
//! Each stream (old, new) pages on its own: an empty token is the first page, `next_page` is the
//! engine's signed cursor for that stream and notification, empty once the stream ends; every
//! `index` is the manifest's stable id, strictly increasing across pages and the same in both
//! streams, so a consumer can checkpoint on it.
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any_service, MethodRouter};
use tocsin_engine::legacy::{Cursor, StreamPage, TokenKind};
use tocsin_store::MarkRead;
use tonic::{Code, Request, Status};
use uuid::Uuid;

use crate::AppState;

/// The generated protocol code (crate `tocsin-clairpb`), under its old path.
pub use tocsin_clairpb as pb;

use pb::coreos::clair as msg;

/// Largest `limit` accepted (per stream).
pub const MAX_LIMIT: i32 = 10_000;

/// The one implementation behind both packages' services.
#[derive(Clone)]
pub struct NotificationService {
    state: AppState,
}

impl NotificationService {
    /// A service over the app's engine.
    pub fn new(state: AppState) -> Self {
        NotificationService { state }
    }

    /// `GetNotification`.
    pub async fn get(&self, req: msg::GetNotificationRequest) -> Result<msg::Notification, Status> {
        if req.name.is_empty() {
            return Err(Status::invalid_argument(
                "notification name should not be empty",
            ));
        }
        if req.limit <= 0 || req.limit > MAX_LIMIT {
            return Err(Status::invalid_argument(format!(
                "notification page limit {} is not between 1 and {MAX_LIMIT}",
                req.limit
            )));
        }
        let not_found = || {
            Status::not_found(format!(
                "requested notification '{}' is not found",
                req.name
            ))
        };
        let name = Uuid::parse_str(&req.name).map_err(|_| not_found())?;
        let engine = &self.state.engine;
        let tokens = engine.page_tokens().await.map_err(internal)?;
        let cursor = |kind, token: &str| -> Result<Cursor, Status> {
            if token.is_empty() {
                return Ok(Cursor::START);
            }
            match tokens.decode(kind, name, 1, token) {
                Ok(c) => c
                    .first()
                    .copied()
                    .ok_or_else(|| Status::internal("a page token decoded to no cursor")),
                Err(e) => Err(Status::invalid_argument(e.to_string())),
            }
        };
        let old = cursor(TokenKind::V3Old, &req.old_vulnerability_page)?;
        let new = cursor(TokenKind::V3New, &req.new_vulnerability_page)?;
        let limit = usize::try_from(req.limit).map_err(internal)?;
        let page = engine
            .legacy_page(name, old, new, limit)
            .await
            .map_err(internal)?
            .ok_or_else(not_found)?;
        let stream = |s: Option<StreamPage>, kind, current: &str| {
            s.map(|s| paged(s, kind, name, current, req.limit, tokens))
                .transpose()
        };
        let n = &page.notification;
        Ok(msg::Notification {
            name: n.name.to_string(),
            created: n.created_at.unix_timestamp().to_string(),
            notified: unix(n.notified_at),
            deleted: unix(n.deleted_at),
            old: stream(page.old, TokenKind::V3Old, &req.old_vulnerability_page)?,
            new: stream(page.new, TokenKind::V3New, &req.new_vulnerability_page)?,
        })
    }

    /// `MarkNotificationAsRead`: NOT_FOUND when unknown, and — as in Clair — when already read.
    pub async fn mark_read(&self, name: &str) -> Result<(), Status> {
        if name.is_empty() {
            return Err(Status::invalid_argument(
                "notification name should not be empty",
            ));
        }
        let not_found =
            || Status::not_found(format!("requested notification '{name}' is not found"));
        let id = Uuid::parse_str(name).map_err(|_| not_found())?;
        match self
            .state
            .engine
            .mark_legacy_read(id)
            .await
            .map_err(internal)?
        {
            MarkRead::Marked => Ok(()),
            MarkRead::AlreadyRead | MarkRead::Unknown => Err(not_found()),
        }
    }
}

fn internal(e: impl std::fmt::Display) -> Status {
    tracing::error!(detail = %e, "v3 notification API: internal error");
    Status::internal("internal error; see the server log")
}

fn unix(t: Option<time::OffsetDateTime>) -> String {
    t.map(|t| t.unix_timestamp().to_string())
        .unwrap_or_default()
}

fn paged(
    s: StreamPage,
    kind: TokenKind,
    name: Uuid,
    current: &str,
    limit: i32,
    tokens: &tocsin_engine::legacy::PageTokens,
) -> Result<msg::PagedVulnerableAncestries, Status> {
    let v = s.vulnerability;
    let ancestries = s
        .layers
        .into_iter()
        .map(|l| {
            Ok(msg::IndexedAncestryName {
                index: i32::try_from(l.index).map_err(|_| {
                    internal(format!("manifest index {} does not fit an int32", l.index))
                })?,
                name: l.name,
            })
        })
        .collect::<Result<Vec<_>, Status>>()?;
    Ok(msg::PagedVulnerableAncestries {
        current_page: current.to_string(),
        next_page: match s.next {
            Cursor::Done => String::new(),
            next => tokens.encode(kind, name, &[next]),
        },
        limit,
        vulnerability: Some(msg::Vulnerability {
            name: v.name,
            namespace_name: v.namespace_name,
            description: v.description,
            link: v.link,
            severity: v.severity.to_string(),
            metadata: match v.metadata.is_empty() {
                true => String::new(),
                false => serde_json::Value::Object(v.metadata).to_string(),
            },
            fixed_by: String::new(),
            affected_versions: Vec::new(),
        }),
        ancestries,
    })
}

#[tonic::async_trait]
impl pb::coreos::clair::notification_service_server::NotificationService for NotificationService {
    async fn get_notification(
        &self,
        request: Request<msg::GetNotificationRequest>,
    ) -> Result<tonic::Response<msg::GetNotificationResponse>, Status> {
        let n = self.get(request.into_inner()).await?;
        Ok(tonic::Response::new(msg::GetNotificationResponse {
            notification: Some(n),
        }))
    }

    async fn mark_notification_as_read(
        &self,
        request: Request<msg::MarkNotificationAsReadRequest>,
    ) -> Result<tonic::Response<()>, Status> {
        self.mark_read(&request.into_inner().name).await?;
        Ok(tonic::Response::new(()))
    }
}

#[tonic::async_trait]
impl pb::clairpb::notification_service_server::NotificationService for NotificationService {
    async fn get_notification(
        &self,
        request: Request<msg::GetNotificationRequest>,
    ) -> Result<tonic::Response<msg::GetNotificationResponse>, Status> {
        let n = self.get(request.into_inner()).await?;
        Ok(tonic::Response::new(msg::GetNotificationResponse {
            notification: Some(n),
        }))
    }

    async fn mark_notification_as_read(
        &self,
        request: Request<msg::MarkNotificationAsReadRequest>,
    ) -> Result<tonic::Response<()>, Status> {
        self.mark_read(&request.into_inner().name).await?;
        Ok(tonic::Response::new(()))
    }
}

/// The gRPC paths of the service, under each package name.
pub(crate) const GRPC_PATHS: [&str; 2] = [
    "/coreos.clair.NotificationService/{*method}",
    "/clairpb.NotificationService/{*method}",
];

/// The path prefixes of [`GRPC_PATHS`].
pub(crate) const GRPC_PREFIXES: [&str; 2] = [
    "/coreos.clair.NotificationService/",
    "/clairpb.NotificationService/",
];

/// The service's package names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Package {
    /// `coreos.clair`.
    CoreosClair,
    /// `clairpb`, the name before 2018-04.
    Clairpb,
}

/// The service under one package name, as a route.
pub(crate) fn service_router(package: Package, state: &AppState) -> MethodRouter<AppState> {
    let svc = NotificationService::new(state.clone());
    match package {
        Package::CoreosClair => any_service(
            pb::coreos::clair::notification_service_server::NotificationServiceServer::new(svc),
        ),
        Package::Clairpb => any_service(
            pb::clairpb::notification_service_server::NotificationServiceServer::new(svc),
        ),
    }
}

/// For a listener without the service (it has its own): gRPC calls get a gRPC `UNIMPLEMENTED`
/// that says where to go, rather than an HTTP 404 that clients report as a protocol error.
pub(crate) async fn grpc_elsewhere() -> Response {
    Status::unimplemented(
        "Clair v3's NotificationService is served on tocsin.grpc_listen_addr, not on this listener",
    )
    .into_http::<axum::body::Body>()
}

/// The gRPC code closest to an HTTP error status (the inverse of grpc-gateway's mapping).
fn code_for_status(status: StatusCode) -> Code {
    match status {
        StatusCode::BAD_REQUEST | StatusCode::URI_TOO_LONG => Code::InvalidArgument,
        StatusCode::UNAUTHORIZED => Code::Unauthenticated,
        StatusCode::FORBIDDEN => Code::PermissionDenied,
        StatusCode::NOT_FOUND => Code::NotFound,
        StatusCode::METHOD_NOT_ALLOWED | StatusCode::NOT_IMPLEMENTED => Code::Unimplemented,
        StatusCode::PAYLOAD_TOO_LARGE
        | StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        | StatusCode::TOO_MANY_REQUESTS => Code::ResourceExhausted,
        s if s.is_client_error() => Code::InvalidArgument,
        _ => Code::Internal,
    }
}

/// A gRPC status answering an error that happened outside the service (a missing token).
pub(crate) fn grpc_error_for_status(status: StatusCode, message: String) -> Response {
    Status::new(code_for_status(status), message).into_http::<axum::body::Body>()
}

/// A gateway error body for an HTTP error that happened outside the service (a rejected
/// request, a missing token, a method the path does not have): the status stays, the body is
/// grpc-gateway's with the closest gRPC code.
pub(crate) fn gateway_error_for_status(status: StatusCode, message: String) -> Response {
    let message = if status.is_server_error() {
        internal(message).message().to_string()
    } else {
        message
    };
    let mut r = gateway_error(Status::new(code_for_status(status), message));
    *r.status_mut() = status;
    r
}

// ---- REST gateway ---------------------------------------------------------------------------

/// Gateway query parameters (the request message's snake_case field names).
#[derive(Debug, Default, PartialEq)]
pub struct GatewayQuery {
    limit: Option<String>,
    old_vulnerability_page: String,
    new_vulnerability_page: String,
}

impl GatewayQuery {
    /// As grpc-gateway populates a request message from the query string: a field given more
    /// than once is `INVALID_ARGUMENT` ("too many values for field"), other parameters (the
    /// path's `name` among them) are ignored.
    fn parse(raw: Option<&str>) -> Result<Self, Status> {
        let mut values: [Vec<String>; 3] = Default::default();
        for (k, v) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
            let i = match k.as_ref() {
                "limit" => 0,
                "old_vulnerability_page" => 1,
                "new_vulnerability_page" => 2,
                _ => continue,
            };
            values[i].push(v.into_owned());
        }
        let names = ["limit", "old_vulnerability_page", "new_vulnerability_page"];
        if let Some((name, vs)) = names.iter().zip(&values).find(|(_, vs)| vs.len() > 1) {
            return Err(Status::invalid_argument(format!(
                "too many values for field {name:?}: {}",
                vs.join(", ")
            )));
        }
        let [limit, old, new] = values.map(|mut vs| vs.pop());
        Ok(GatewayQuery {
            limit,
            old_vulnerability_page: old.unwrap_or_default(),
            new_vulnerability_page: new.unwrap_or_default(),
        })
    }
}

/// A gRPC status as the gateway answers it: grpc-gateway's HTTP status mapping and its
/// `{"error","code","message"}` body.
fn gateway_error(s: Status) -> Response {
    let http = match s.code() {
        Code::InvalidArgument => StatusCode::BAD_REQUEST,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let body = serde_json::json!({
        "error": s.message(),
        "code": s.code() as i32,
        "message": s.message(),
    });
    (
        http,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn gateway_json(v: serde_json::Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

/// Inserts `value` unless it is the proto zero value (the gateway omits those).
fn put(o: &mut serde_json::Map<String, serde_json::Value>, key: &str, value: serde_json::Value) {
    let zero = match &value {
        serde_json::Value::String(s) => s.is_empty(),
        serde_json::Value::Number(n) => n.as_i64() == Some(0),
        serde_json::Value::Array(a) => a.is_empty(),
        serde_json::Value::Null => true,
        _ => false,
    };
    if !zero {
        o.insert(key.to_string(), value);
    }
}

fn vulnerability_json(v: &msg::Vulnerability) -> serde_json::Value {
    let mut o = serde_json::Map::new();
    put(&mut o, "name", v.name.clone().into());
    put(&mut o, "namespace_name", v.namespace_name.clone().into());
    put(&mut o, "description", v.description.clone().into());
    put(&mut o, "link", v.link.clone().into());
    put(&mut o, "severity", v.severity.clone().into());
    put(&mut o, "metadata", v.metadata.clone().into());
    put(&mut o, "fixed_by", v.fixed_by.clone().into());
    serde_json::Value::Object(o)
}

fn paged_json(p: &msg::PagedVulnerableAncestries) -> serde_json::Value {
    let mut o = serde_json::Map::new();
    put(&mut o, "current_page", p.current_page.clone().into());
    put(&mut o, "next_page", p.next_page.clone().into());
    put(&mut o, "limit", p.limit.into());
    if let Some(v) = &p.vulnerability {
        o.insert("vulnerability".into(), vulnerability_json(v));
    }
    let ancestries: Vec<serde_json::Value> = p
        .ancestries
        .iter()
        .map(|a| {
            let mut o = serde_json::Map::new();
            put(&mut o, "index", a.index.into());
            put(&mut o, "name", a.name.clone().into());
            serde_json::Value::Object(o)
        })
        .collect();
    put(&mut o, "ancestries", ancestries.into());
    serde_json::Value::Object(o)
}

/// The gateway's JSON of a notification: snake_case proto field names, zero values omitted.
pub fn notification_json(n: &msg::Notification) -> serde_json::Value {
    let mut o = serde_json::Map::new();
    put(&mut o, "name", n.name.clone().into());
    put(&mut o, "created", n.created.clone().into());
    put(&mut o, "notified", n.notified.clone().into());
    put(&mut o, "deleted", n.deleted.clone().into());
    if let Some(p) = &n.old {
        o.insert("old".into(), paged_json(p));
    }
    if let Some(p) = &n.new {
        o.insert("new".into(), paged_json(p));
    }
    serde_json::json!({ "notification": o })
}

/// `GET /notifications/{name}?limit=&old_vulnerability_page=&new_vulnerability_page=`
pub async fn gateway_get(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let q = match GatewayQuery::parse(raw.as_deref()) {
        Ok(q) => q,
        Err(s) => return gateway_error(s),
    };
    let limit = match q.limit.as_deref().filter(|s| !s.is_empty()) {
        None => 0,
        Some(raw) => match raw.parse::<i32>() {
            Ok(n) => n,
            Err(e) => {
                return gateway_error(Status::invalid_argument(format!(
                    "limit {raw:?} is not an int32: {e}"
                )))
            }
        },
    };
    let req = msg::GetNotificationRequest {
        old_vulnerability_page: q.old_vulnerability_page,
        new_vulnerability_page: q.new_vulnerability_page,
        limit,
        name,
    };
    match NotificationService::new(state).get(req).await {
        Ok(n) => gateway_json(notification_json(&n)),
        Err(s) => gateway_error(s),
    }
}

/// `DELETE /notifications/{name}` → `{}`.
pub async fn gateway_delete(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    match NotificationService::new(state).mark_read(&name).await {
        Ok(()) => gateway_json(serde_json::json!({})),
        Err(s) => gateway_error(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_query_refuses_repeated_fields_as_grpc_gateway_does() {
        let e = GatewayQuery::parse(Some("limit=null&limit=null")).unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert_eq!(
            e.message(),
            r#"too many values for field "limit": null, null"#
        );
        let e = GatewayQuery::parse(Some(
            "limit=1&new_vulnerability_page=a&new_vulnerability_page=b",
        ))
        .unwrap_err();
        assert_eq!(
            e.message(),
            r#"too many values for field "new_vulnerability_page": a, b"#
        );
        let q = GatewayQuery::parse(Some("limit=5&name=x&name=y&old_vulnerability_page=t"))
            .expect("unknown and path parameters are ignored");
        assert_eq!(q.limit.as_deref(), Some("5"));
        assert_eq!(q.old_vulnerability_page, "t");
        assert_eq!(q.new_vulnerability_page, "");
        assert_eq!(
            GatewayQuery::parse(None).ok(),
            Some(GatewayQuery::default())
        );
    }

    #[test]
    fn http_statuses_map_to_the_closest_grpc_codes() {
        assert_eq!(
            code_for_status(StatusCode::UNAUTHORIZED),
            Code::Unauthenticated
        );
        assert_eq!(
            code_for_status(StatusCode::METHOD_NOT_ALLOWED),
            Code::Unimplemented
        );
        assert_eq!(
            code_for_status(StatusCode::URI_TOO_LONG),
            Code::InvalidArgument
        );
        assert_eq!(code_for_status(StatusCode::BAD_GATEWAY), Code::Internal);
    }
}
