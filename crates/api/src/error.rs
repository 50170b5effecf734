//! The one error type of every route, rendered as Clair's `{"code","message"}` body.
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// An HTTP error with Clair's error body.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400.
    #[error("{0}")]
    BadRequest(String),
    /// 401.
    #[error("{0}")]
    Unauthorized(String),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 405.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 409: the request conflicts with the current state (another process is fetching the
    /// source; the operation is not the held one).
    #[error("{0}")]
    Conflict(String),
    /// 413.
    #[error("{0}")]
    TooLarge(String),
    /// 415.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 503: the store is held by another process; retry (with `Retry-After`).
    #[error("{0}")]
    Unavailable(String),
    /// 507: the store's disk is full; nothing was written.
    #[error("{0}")]
    InsufficientStorage(String),
    /// 502: a feed source failed or sent something that is not a snapshot.
    #[error("{0}")]
    BadGateway(String),
    /// 500: the detail is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// The error for an HTTP status; statuses without a variant of their own are answered as
    /// `bad-request` (4xx) or `internal-error` (5xx) by [`crate::Family::error`], which keeps the
    /// status itself.
    pub fn for_status(status: StatusCode, message: String) -> ApiError {
        match status {
            StatusCode::UNAUTHORIZED => ApiError::Unauthorized(message),
            StatusCode::NOT_FOUND => ApiError::NotFound(message),
            StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed(message),
            StatusCode::CONFLICT => ApiError::Conflict(message),
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge(message),
            StatusCode::BAD_GATEWAY => ApiError::BadGateway(message),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(message),
            s if s.is_server_error() => ApiError::Internal(message),
            _ => ApiError::BadRequest(message),
        }
    }

    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad-request"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not-found"),
            ApiError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "bad-request"),
            ApiError::BadGateway(_) => (StatusCode::BAD_GATEWAY, "bad-gateway"),
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "bad-request")
            }
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::InsufficientStorage(_) => {
                (StatusCode::INSUFFICIENT_STORAGE, "insufficient-storage")
            }
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal-error"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        let message = match &self {
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                "internal error; see the server log".to_string()
            }
            other => other.to_string(),
        };
        let body = serde_json::json!({ "code": code, "message": message }).to_string();
        let mut resp = (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
        if matches!(
            self,
            ApiError::Unavailable(_) | ApiError::InsufficientStorage(_)
        ) {
            // Both clear up by themselves (a lock released, space freed): say when to look again.
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("10"));
        }
        resp
    }
}

impl From<tocsin_store::StoreError> for ApiError {
    fn from(e: tocsin_store::StoreError) -> Self {
        match e {
            tocsin_store::StoreError::Invalid(m) => ApiError::BadRequest(m),
            e @ tocsin_store::StoreError::Busy(_) => {
                tracing::warn!(error = %e, "store busy");
                ApiError::Unavailable(e.to_string())
            }
            e @ tocsin_store::StoreError::Full(_) => {
                tracing::warn!(error = %e, "store full");
                ApiError::InsufficientStorage(e.to_string())
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<tocsin_engine::EngineError> for ApiError {
    fn from(e: tocsin_engine::EngineError) -> Self {
        match e {
            tocsin_engine::EngineError::Invalid(m) => ApiError::BadRequest(m),
            tocsin_engine::EngineError::Store(s) => s.into(),
            // A fronted Clair's indexer failed: nothing was committed.
            e @ tocsin_engine::EngineError::Affectedness(_) => ApiError::BadGateway(e.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<tocsin_updaters::UpdaterError> for ApiError {
    fn from(e: tocsin_updaters::UpdaterError) -> Self {
        use tocsin_updaters::UpdaterError as U;
        match e {
            e @ U::UnknownSource(_) => ApiError::NotFound(e.to_string()),
            e @ U::Busy { .. } => ApiError::Conflict(e.to_string()),
            U::Engine(e) => e.into(),
            U::Store(e) => e.into(),
            // The source failed, or sent what is not a snapshot: nothing was imported.
            e => ApiError::BadGateway(e.to_string()),
        }
    }
}
