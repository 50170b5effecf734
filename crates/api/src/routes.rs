//! The route table: every path the HTTP listener serves, with its methods, who may call it and
//! the error vocabulary of its family.
//!
//! [`crate::app`] mounts exactly these entries and nothing else, and [`routes`] lists them, so
//! tests walk the same table the router is built from (axum cannot enumerate a router). A new
//! route is added here or not at all; the OpenAPI test then requires it in the document, and the
//! authentication test requires it to refuse a request without a token.
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, MethodRouter};

use crate::{feeds, manifests, ops, v2, v3, v4, ApiError, AppState};

/// Who may call a route when `auth.psk` is configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Requires Clair's PSK JWT (`Authorization: Bearer …`).
    Psk,
    /// Open to probes and scrapers, like the endpoints Clair serves on its unauthenticated
    /// introspection listener (`/healthz`, `/readyz`, `/metrics`). Clair guards everything on
    /// its API listener, its OpenAPI document included, and so does tocsin.
    Open,
}

/// The API family of a route, which decides the shape of its error bodies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// Clair v4 and tocsin's own API: `{"code","message"}`.
    Clair,
    /// Clair v2's notification API: `{"Error":{"Message"}}`, `Server: clair`.
    V2,
    /// Clair v3's REST gateway: grpc-gateway's `{"error","code","message"}`.
    Gateway,
    /// Clair v3's gRPC service: gRPC statuses (not described by the OpenAPI document).
    Grpc,
}

/// Path prefix of Clair v2's notification API.
const V2_PREFIX: &str = "/v1/notifications/";
/// Path prefix of Clair v3's REST gateway.
const GATEWAY_PREFIX: &str = "/notifications/";
/// The prefix of updater paths, whose names may contain `/`.
pub(crate) const UPDATERS_PREFIX: &str = "/api/v1/updaters/";

impl Family {
    /// The family a request path belongs to, for errors produced before a route is chosen
    /// (unknown paths, oversized requests, rejections rewritten after the fact).
    pub fn of_path(path: &str) -> Family {
        if path.starts_with(V2_PREFIX) {
            Family::V2
        } else if path.starts_with(GATEWAY_PREFIX) {
            Family::Gateway
        } else if v3::GRPC_PREFIXES.iter().any(|p| path.starts_with(p)) {
            Family::Grpc
        } else {
            Family::Clair
        }
    }

    /// An error response in this family's shape.
    pub fn error(self, status: StatusCode, message: impl Into<String>) -> Response {
        let message = message.into();
        match self {
            Family::Clair => {
                let mut r = ApiError::for_status(status, message).into_response();
                *r.status_mut() = status;
                r
            }
            Family::V2 => v2::error_response(status, message),
            Family::Gateway => v3::gateway_error_for_status(status, message),
            Family::Grpc => v3::grpc_error_for_status(status, message),
        }
    }
}

/// One route of the router.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteInfo {
    /// The path as the OpenAPI document writes it; an updater's `{name}` may contain `/`.
    pub path: &'static str,
    /// The methods it serves, upper case (`HEAD` is implied by `GET`).
    pub methods: &'static [&'static str],
    /// Who may call it.
    pub access: Access,
    /// Its error vocabulary.
    pub family: Family,
}

impl RouteInfo {
    /// Whether the OpenAPI document describes it: every route but the gRPC service.
    pub fn documented(&self) -> bool {
        self.family != Family::Grpc
    }
}

/// How a table entry is mounted.
pub(crate) enum Mount {
    /// An axum route at the entry's path.
    Exact(MethodRouter<AppState>),
    /// `/api/v1/updaters/{name}/{action}`: the name may contain `/`, so every action shares one
    /// catch-all route that dispatches on the last segment.
    UpdaterAction(&'static str, MethodRouter<AppState>),
    /// Clair v3's gRPC service under one package name (built with the app's state).
    Grpc(v3::Package),
}

/// A table entry.
pub(crate) struct Route {
    pub(crate) info: RouteInfo,
    pub(crate) mount: Mount,
}

fn route(
    path: &'static str,
    methods: &'static [&'static str],
    access: Access,
    mount: Mount,
) -> Route {
    Route {
        info: RouteInfo {
            path,
            methods,
            access,
            family: Family::of_path(path),
        },
        mount,
    }
}

/// The route of a gRPC package: its service, or, when the service has a listener of its own
/// (`tocsin.grpc_listen_addr`), an `UNIMPLEMENTED` that names that setting.
pub(crate) fn grpc_router(
    package: v3::Package,
    state: &AppState,
    here: bool,
) -> MethodRouter<AppState> {
    if here {
        v3::service_router(package, state)
    } else {
        any(v3::grpc_elsewhere)
    }
}

/// What [`crate::routes`] lists.
pub(crate) fn infos() -> Vec<RouteInfo> {
    table().into_iter().map(|r| r.info).collect()
}

/// The table.
pub(crate) fn table() -> Vec<Route> {
    use Access::{Open, Psk};
    use Mount::{Exact, Grpc, UpdaterAction};
    vec![
        route(
            "/notifier/api/v1/notification/{id}",
            &["GET", "DELETE"],
            Psk,
            Exact(get(v4::get_page).delete(v4::delete_set)),
        ),
        route(
            "/matcher/api/v1/vulnerability_report/{digest}",
            &["GET"],
            Psk,
            Exact(get(manifests::vulnerability_report)),
        ),
        route(
            "/v1/notifications/{notification}",
            &["GET", "DELETE"],
            Psk,
            Exact(get(v2::get_notification).delete(v2::delete_notification)),
        ),
        route(
            "/notifications/{notification}",
            &["GET", "DELETE"],
            Psk,
            Exact(get(v3::gateway_get).delete(v3::gateway_delete)),
        ),
        route(
            v3::GRPC_PATHS[0],
            &["POST"],
            Psk,
            Grpc(v3::Package::CoreosClair),
        ),
        route(
            v3::GRPC_PATHS[1],
            &["POST"],
            Psk,
            Grpc(v3::Package::Clairpb),
        ),
        route(
            "/api/v1/manifests",
            &["GET"],
            Psk,
            Exact(get(manifests::list)),
        ),
        route(
            "/api/v1/manifests/{digest}",
            &["GET", "PUT", "DELETE"],
            Psk,
            Exact(
                get(manifests::get_one)
                    .put(manifests::put)
                    .delete(manifests::delete),
            ),
        ),
        route(
            "/api/v1/updaters",
            &["GET"],
            Psk,
            Exact(get(feeds::list_updaters)),
        ),
        route(
            "/api/v1/updaters/{name}/snapshot",
            &["PUT"],
            Psk,
            UpdaterAction("snapshot", axum::routing::put(feeds::put_snapshot)),
        ),
        route(
            "/api/v1/updaters/{name}/operations",
            &["GET"],
            Psk,
            UpdaterAction("operations", get(feeds::get_operations)),
        ),
        route(
            "/api/v1/updaters/{name}/run",
            &["POST"],
            Psk,
            UpdaterAction("run", axum::routing::post(feeds::post_run)),
        ),
        route(
            "/api/v1/updaters/{name}/operations/{ref}/accept",
            &["POST"],
            Psk,
            UpdaterAction("accept", axum::routing::post(feeds::post_accept)),
        ),
        route(
            "/api/v1/clair/run",
            &["POST"],
            Psk,
            Exact(axum::routing::post(feeds::post_clair_run)),
        ),
        route(
            "/api/v1/notifications",
            &["GET"],
            Psk,
            Exact(get(ops::list_sets)),
        ),
        route(
            "/api/v1/notifications/{id}",
            &["GET"],
            Psk,
            Exact(get(ops::get_set)),
        ),
        route("/openapi.json", &["GET"], Psk, Exact(get(ops::openapi))),
        route("/healthz", &["GET"], Open, Exact(get(ops::healthz))),
        route("/readyz", &["GET"], Open, Exact(get(ops::readyz))),
        route("/metrics", &["GET"], Open, Exact(get(ops::metrics))),
    ]
}

/// The 405 answer of a family's routes (axum adds the `Allow` header).
pub(crate) async fn method_not_allowed(req: Request) -> Response {
    let family = Family::of_path(req.uri().path());
    family.error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "method {} not allowed on {}",
            req.method(),
            req.uri().path()
        ),
    )
}

/// The 404 answer for a path no route serves.
pub(crate) fn not_found(uri: &Uri) -> Response {
    Family::of_path(uri.path()).error(
        StatusCode::NOT_FOUND,
        format!("no route for {}", uri.path()),
    )
}

/// `WWW-Authenticate` of every 401 (RFC 9110 §11.6.1).
pub(crate) fn challenge(mut r: Response) -> Response {
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}
