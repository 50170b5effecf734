//! tocsin's HTTP surface, as one axum [`Router`] built by [`app`].
//!
//! - Clair-compatible paths, byte for byte: the v4 notifier pull API
//!   (`/notifier/api/v1/notification/{id}`, [`v4`]) and the matcher's vulnerability report
//!   (`/matcher/api/v1/vulnerability_report/{digest}`).
//! - tocsin's own API under `/api/v1`: manifests, feed snapshots and updaters, notification sets
//!   with their delivery state and attempt history.
//! - Operations: `/healthz`, `/readyz`, `/metrics` (Prometheus), `/openapi.json`.
//!
//! Every error, on every path, is Clair's `{"code","message"}` JSON ([`ApiError`]). Optional PSK
//! auth (Clair's HS256 JWT) guards everything but the operations endpoints. The whole server is
//! a library call on a listener, so tests bind it to port 0.
#![deny(missing_docs)]

mod error;
mod feeds;
mod manifests;
mod ops;
pub mod v2;
pub mod v3;
pub mod v4;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tocsin_engine::Engine;

pub use error::ApiError;
pub use tocsin_feeds::Limits;

/// Checks a bearer token; `Err` carries the reason for the 401.
pub type TokenVerifier = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// Renders the Prometheus exposition text.
pub type MetricsRenderer = Arc<dyn Fn() -> String + Send + Sync>;

/// Everything the routes need.
#[derive(Clone)]
pub struct AppState {
    /// The engine (and through it the store).
    pub engine: Arc<Engine>,
    /// PSK verification, when auth is configured.
    pub auth: Option<TokenVerifier>,
    /// Prometheus rendering, when metrics are installed.
    pub metrics: Option<MetricsRenderer>,
    /// Largest accepted request body, in bytes.
    pub max_body: usize,
    /// Bounds on what uploaded archives may decompress to (`tocsin.limits`).
    pub limits: Limits,
}

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
    build(state, true)
}

/// [`app`] without Clair v3's gRPC service, for when it has a listener of its own
/// ([`grpc_app`]; `tocsin.grpc_listen_addr`).
pub fn http_app(state: AppState) -> Router {
    build(state, false)
}

/// Clair v3's gRPC service alone (both package names, behind the same authentication), for a
/// separate gRPC listener. Its REST gateway stays on the HTTP listener, as grpc-gateway is an
/// HTTP/1.1 front.
pub fn grpc_app(state: AppState) -> Router {
    v3::routes(Router::new(), &state)
        .route_layer(middleware::from_fn_with_state(state.clone(), require_auth))
        .fallback(ops::not_found)
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

fn build(state: AppState, with_grpc: bool) -> Router {
    let grpc = if with_grpc {
        v3::routes(Router::new(), &state)
    } else {
        v3::routes_elsewhere(Router::new())
    };
    let guarded = grpc
        .route(
            "/notifications/{name}",
            get(v3::gateway_get).delete(v3::gateway_delete),
        )
        .route(
            "/notifier/api/v1/notification/{id}",
            get(v4::get_page).delete(v4::delete_set),
        )
        .route(
            "/matcher/api/v1/vulnerability_report/{digest}",
            get(manifests::vulnerability_report),
        )
        .route("/api/v1/manifests", get(manifests::list))
        .route(
            "/api/v1/manifests/{digest}",
            get(manifests::get_one)
                .put(manifests::put)
                .delete(manifests::delete),
        )
        .route("/api/v1/updaters", get(feeds::list_updaters))
        .route(
            "/api/v1/updaters/{*rest}",
            get(feeds::get_updater_path).put(feeds::put_updater_path),
        )
        .route(
            "/v1/notifications/{name}",
            get(v2::get_notification).delete(v2::delete_notification),
        )
        .route("/api/v1/notifications", get(ops::list_sets))
        .route("/api/v1/notifications/{id}", get(ops::get_set))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_auth));
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .merge(guarded)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .fallback(ops::not_found)
        .layer(middleware::map_response_with_state(
            state.clone(),
            clair_error_bodies,
        ))
        .layer(DefaultBodyLimit::max(state.max_body))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

async fn require_auth(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if let Some(verify) = &state.auth {
        let token = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| ApiError::Unauthorized("missing bearer token".into()))?;
        verify(token.trim()).map_err(ApiError::Unauthorized)?;
    }
    Ok(next.run(req).await)
}

/// Extractor rejections (a malformed query string, a body over the limit, an undecodable path)
/// are answered by axum in plain text before any handler runs; this rewrites every error that is
/// not already JSON into Clair's `{"code","message"}` body, keeping the status, so that clients
/// see one error shape on every path.
async fn clair_error_bodies(State(state): State<AppState>, resp: Response) -> Response {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json || !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    // Rejection texts are one line; the cap only guards against an unexpected large body.
    let text = match axum::body::to_bytes(resp.into_body(), 64 * 1024).await {
        Ok(b) => String::from_utf8_lossy(&b).trim().to_string(),
        Err(_) => String::new(),
    };
    let text = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    let err = match status {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge(format!(
            "request body exceeds the limit of {} bytes",
            state.max_body
        )),
        StatusCode::UNAUTHORIZED => ApiError::Unauthorized(text),
        StatusCode::NOT_FOUND => ApiError::NotFound(text),
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed(text),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(text),
        s if s.is_server_error() => ApiError::Internal(text),
        _ => ApiError::BadRequest(text),
    };
    let mut out = err.into_response();
    *out.status_mut() = status;
    out
}

/// Serves a router ([`app`], [`http_app`] or [`grpc_app`]) on a bound listener until `shutdown`
/// resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
