//! tocsin's HTTP surface, as one axum [`Router`] built by [`app`].
//!
//! - Clair-compatible paths, byte for byte: the v4 notifier pull API
//!   (`/notifier/api/v1/notification/{id}`, [`v4`]) and the matcher's vulnerability report
//!   (`/matcher/api/v1/vulnerability_report/{digest}`).
//! - tocsin's own API under `/api/v1`: manifests, feed snapshots and updaters, notification sets
//!   with their delivery state and attempt history.
//! - Clair v2's notification API (`/v1/notifications/{name}`, [`v2`]) and Clair v3's gRPC
//!   service and REST gateway (`/notifications/{name}`, [`v3`]).
//! - Operations: `/healthz`, `/readyz`, `/metrics` (Prometheus), `/openapi.json`.
//!
//! The router is built from one route table ([`routes`]). Every error is JSON in the shape of
//! its API family ([`Family`]): Clair's `{"code","message"}` ([`ApiError`]) on v4 and tocsin's
//! paths, Clair v2's `{"Error":{"Message"}}`, grpc-gateway's `{"error","code","message"}`.
//! Optional PSK auth (Clair's HS256 JWT) guards every path but `/healthz`, `/readyz` and
//! `/metrics`, which Clair serves on its unauthenticated introspection listener. Request bodies,
//! request targets and header sections are bounded ([`AppState::max_body`],
//! [`MAX_REQUEST_TARGET`], [`MAX_HEADER_BYTES`]). The whole server is a library call on a
//! listener, so tests bind it to port 0. HTTPS on any listener through [`tls`] (Clair's
//! `tls.cert`/`tls.key`, optionally requiring client certificates); slow clients are bounded by
//! the connection loop ([`serve_with`]).
#![deny(missing_docs)]

mod error;
mod feeds;
mod manifests;
mod ops;
mod routes;
mod server;
pub mod tls;
pub mod v2;
pub mod v3;
pub mod v4;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{any, MethodRouter};
use axum::Router;
use tocsin_engine::Engine;
use tower::ServiceExt;
use tower_http::limit::RequestBodyLimitLayer;

pub use error::ApiError;
pub use feeds::{report_json, validate_updater_name};
pub use routes::{Access, Family, RouteInfo};
pub use server::{serve_with, ConnectionLimits, UploadLimits};
pub use tls::{ServerTls, ServerTlsFiles, TlsError, TlsListener};

/// Longest accepted request target (path and query string), in bytes: 414 beyond it. Clair's
/// clients send a page size and a page token; tocsin's, a few labels.
pub const MAX_REQUEST_TARGET: usize = 16 * 1024;

/// Most header bytes (names and values) accepted in one request: 431 beyond it. hyper refuses
/// a request head over about 400 KiB before it reaches the router.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
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
    /// How many request bodies may be received at once, and how fast.
    pub uploads: UploadLimits,
    /// Bounds on what uploaded archives may decompress to (`tocsin.limits`).
    pub limits: Limits,
    /// The feed sources tocsin follows itself (`tocsin.updaters`), when configured.
    pub updaters: Option<Arc<tocsin_updaters::Updaters>>,
    /// The Clair mirror, when tocsin fronts a Clair (`notifier.matcher_addr`).
    pub clair: Option<Arc<tocsin_updaters::ClairFollower>>,
}

/// Every route [`app`] serves, in the order it mounts them: the router is built from this
/// table and from nothing else.
pub fn routes() -> Vec<RouteInfo> {
    routes::infos()
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
    let mut router = Router::new();
    for r in routes::table() {
        if let routes::Mount::Grpc(package) = r.mount {
            let m = routes::grpc_router(package, &state, true);
            router = router.route(r.info.path, mount(m, &r.info, &state));
        }
    }
    bounded(router, state, Bodies::Grpc)
}

fn build(state: AppState, with_grpc: bool) -> Router {
    let mut router = Router::new();
    let mut actions: Vec<(&'static str, MethodRouter)> = Vec::new();
    for r in routes::table() {
        match r.mount {
            routes::Mount::Exact(m) => {
                router = router.route(r.info.path, mount(m, &r.info, &state));
            }
            routes::Mount::Grpc(package) => {
                let m = routes::grpc_router(package, &state, with_grpc);
                router = router.route(r.info.path, mount(m, &r.info, &state));
            }
            routes::Mount::UpdaterAction(action, m) => {
                actions.push((action, mount(m, &r.info, &state).with_state(state.clone())));
            }
        }
    }
    if !actions.is_empty() {
        let actions = Arc::new(actions);
        let st = state.clone();
        router = router.route(
            &format!("{}{{*rest}}", routes::UPDATERS_PREFIX),
            any(move |req: Request| updater_action(st.clone(), Arc::clone(&actions), req)),
        );
    }
    bounded(router, state, Bodies::Http)
}

/// What a listener's refusals look like.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Bodies {
    /// Each API family's JSON error bodies (the HTTP listener, gRPC on it included).
    Http,
    /// gRPC statuses only (a listener of its own for Clair v3's gRPC service).
    Grpc,
}

/// The bounds every listener's router gets, in one order: request heads, upload slots and
/// timeouts, body limits, then (HTTP) the family's error bodies, and tracing.
fn bounded(router: Router<AppState>, state: AppState, bodies: Bodies) -> Router {
    let router = router
        .fallback(fallback)
        .layer(middleware::from_fn(bound_request_head))
        // Inside the body limits, so a Content-Length over the limit is refused before a slot
        // is taken or a byte read.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            server::guard_uploads,
        ));
    // Extractors stop at the limit; the wrapper bounds whatever reads a body itself (the gRPC
    // service would otherwise drain a request body of any length) and refuses a larger
    // Content-Length before reading anything.
    let router = match bodies {
        Bodies::Http => router.layer(DefaultBodyLimit::max(state.max_body)),
        Bodies::Grpc => router,
    };
    let router = router.layer(RequestBodyLimitLayer::new(state.max_body));
    // Outside the limits, so that their refusals get the family's error body too.
    let router = match bodies {
        Bodies::Http => router.layer(middleware::map_response_with_state(
            state.clone(),
            error_bodies,
        )),
        Bodies::Grpc => router,
    };
    router
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// A table entry's handlers with its 405 answer and, when it requires one, the token check.
fn mount(m: MethodRouter<AppState>, info: &RouteInfo, state: &AppState) -> MethodRouter<AppState> {
    // gRPC services answer every method themselves.
    let m = if info.family == Family::Grpc {
        m
    } else {
        m.fallback(routes::method_not_allowed)
    };
    match info.access {
        Access::Psk => m.layer(middleware::from_fn_with_state(state.clone(), require_auth)),
        Access::Open => m,
    }
}

/// `/api/v1/updaters/{name}/{action}`: the name may contain `/`, so the action is the last
/// segment; each action's own method router answers (405 with its own `Allow`).
async fn updater_action(
    state: AppState,
    actions: Arc<Vec<(&'static str, MethodRouter)>>,
    req: Request,
) -> Response {
    let rest = req
        .uri()
        .path()
        .strip_prefix(routes::UPDATERS_PREFIX)
        .unwrap_or_default();
    let found = actions.iter().find(|(action, _)| {
        rest.strip_suffix(action)
            .and_then(|name| name.strip_suffix('/'))
            .is_some_and(|name| !name.is_empty())
    });
    match found {
        Some((_, m)) => match m.clone().oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        },
        None => fallback(State(state), req).await,
    }
}

/// No route: 404, or 401 first when a token is required, as Clair guards its whole mux.
async fn fallback(State(state): State<AppState>, req: Request) -> Response {
    if let Some(refusal) = refuse_without_token(&state, &req) {
        return refusal;
    }
    routes::not_found(req.uri())
}

async fn require_auth(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match refuse_without_token(&state, &req) {
        None => next.run(req).await,
        Some(refusal) => refusal,
    }
}

/// Clair's PSK check: a `Bearer` token in any `Authorization` header, verified by
/// [`AppState::auth`]. `Some` is the 401 to answer, in the path's family shape.
fn refuse_without_token(state: &AppState, req: &Request) -> Option<Response> {
    let verify = state.auth.as_ref()?;
    let mut reason = "missing bearer token".to_string();
    for value in req.headers().get_all(header::AUTHORIZATION) {
        let Some(token) = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")) else {
            continue;
        };
        match verify(token.trim()) {
            Ok(()) => return None,
            Err(e) => reason = e,
        }
    }
    Some(routes::challenge(
        Family::of_path(req.uri().path()).error(StatusCode::UNAUTHORIZED, reason),
    ))
}

/// Refuses an oversized request target (414) or header section (431) in the path's family
/// shape, before any extractor parses them.
async fn bound_request_head(req: Request, next: Next) -> Response {
    let target = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    let family = Family::of_path(req.uri().path());
    if target > MAX_REQUEST_TARGET {
        return family.error(
            StatusCode::URI_TOO_LONG,
            format!(
                "the request target is {target} bytes; at most {MAX_REQUEST_TARGET} are accepted"
            ),
        );
    }
    let headers: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if headers > MAX_HEADER_BYTES {
        return family.error(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "the request headers are {headers} bytes; at most {MAX_HEADER_BYTES} are accepted"
            ),
        );
    }
    next.run(req).await
}

/// Extractor rejections (a malformed query string, a body over the limit, an undecodable path)
/// are answered by axum in plain text before any handler runs; this rewrites every error that is
/// not already JSON into the error body of the path's family, keeping the status and headers
/// such as `Allow`, so that clients see one error shape per API. gRPC answers are left alone.
async fn error_bodies(
    State(state): State<AppState>,
    req_path: axum::http::Uri,
    resp: Response,
) -> Response {
    let status = resp.status();
    let family = Family::of_path(req_path.path());
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if family == Family::Grpc || is_json || !(status.is_client_error() || status.is_server_error())
    {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    // Rejection texts are one line; the cap only guards against an unexpected large body.
    let text = match axum::body::to_bytes(body, 64 * 1024).await {
        Ok(b) => String::from_utf8_lossy(&b).trim().to_string(),
        Err(_) => String::new(),
    };
    let text = match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            format!("request body exceeds the limit of {} bytes", state.max_body)
        }
        _ if text.is_empty() => status.canonical_reason().unwrap_or("error").to_string(),
        _ => text,
    };
    let mut out = family.error(status, text);
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut()
                .entry(name)
                .or_insert_with(|| value.clone());
        }
    }
    out
}

/// Serves a router ([`app`], [`http_app`] or [`grpc_app`]) on a bound listener until `shutdown`
/// resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, app, ConnectionLimits::default(), shutdown).await
}

/// [`serve`] over TLS: HTTPS, and gRPC over TLS (ALPN `h2`), on the same listener.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    tls: ServerTls,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(
        TlsListener::new(listener, tls)?,
        app,
        ConnectionLimits::default(),
        shutdown,
    )
    .await
}
