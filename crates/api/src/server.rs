//! The connection loop: serves a router on a listener (plain TCP or [`TlsListener`]) with bounds
//! that keep slow or stalled clients from holding the server.
//!
//! `axum::serve` sets no timer on hyper's connection builder, so hyper's header read timeout
//! never fires there: a client that opens connections and trickles header bytes keeps each one
//! (and its task) forever. This loop is `axum::serve`'s (hyper-util's auto builder, HTTP/1.1 and
//! HTTP/2 with upgrades, graceful shutdown through hyper-util's `GracefulShutdown`) plus:
//!
//! - a header read timeout on HTTP/1.1 connections ([`ConnectionLimits::header_read_timeout`]),
//!   and the same deadline for a new connection's first byte (HTTP/1.1 or HTTP/2), so a client
//!   that connects and sends nothing is closed too;
//! - HTTP/2 keep-alive pings, so a peer that stops answering is dropped;
//! - a bound on how long shutdown waits for open connections.
//!
//! Uploads are bounded by [`guard_uploads`]: at most [`UploadLimits::max_concurrent`] request
//! bodies are received at once (503 with `Retry-After` beyond that) and each must arrive whole
//! within [`UploadLimits::timeout`] (408 otherwise), so trickled bodies cannot pin the server's
//! memory or its upload slots for longer than that.
use std::future::Future as _;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::serve::Listener;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::sync::Semaphore;

use crate::{ApiError, AppState};

/// Bounds on each connection.
#[derive(Clone, Debug)]
pub struct ConnectionLimits {
    /// How long an HTTP/1.1 client may take to send a request's headers (and how long an idle
    /// keep-alive connection stays open).
    pub header_read_timeout: Duration,
    /// How long shutdown waits for open connections to finish their requests.
    pub shutdown_grace: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// Bounds on request bodies being received.
#[derive(Clone, Debug)]
pub struct UploadLimits {
    permits: Arc<Semaphore>,
    /// How many request bodies may be received at once.
    pub max_concurrent: usize,
    /// How long one request body may take to arrive.
    pub timeout: Duration,
}

impl UploadLimits {
    /// At most `max_concurrent` bodies at once, each within `timeout`.
    pub fn new(max_concurrent: usize, timeout: Duration) -> Self {
        let max_concurrent = max_concurrent.max(1);
        UploadLimits {
            permits: Arc::new(Semaphore::new(max_concurrent)),
            max_concurrent,
            timeout,
        }
    }
}

impl Default for UploadLimits {
    /// Four uploads at once, ten minutes each.
    fn default() -> Self {
        UploadLimits::new(4, Duration::from_secs(600))
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, with `limits` on every connection.
pub async fn serve_with<L>(
    mut listener: L,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: Listener,
{
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20))
        .enable_connect_protocol();
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            (io, _addr) = listener.accept() => {
                let service = TowerToHyperService::new(app.clone());
                let io = FirstByteDeadline::new(io, limits.header_read_timeout);
                let conn = builder
                    .serve_connection_with_upgrades(TokioIo::new(io), service)
                    .into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!(
                grace = ?limits.shutdown_grace,
                "connections still open at shutdown were closed"
            );
        }
    }
    Ok(())
}

/// A connection that must send its first byte within a deadline. hyper's header read timeout
/// starts with the first byte of a request, so a client that connects and sends nothing would
/// otherwise hold its connection (and file descriptor) for as long as it likes.
struct FirstByteDeadline<I> {
    io: I,
    deadline: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<I> FirstByteDeadline<I> {
    fn new(io: I, limit: Duration) -> Self {
        FirstByteDeadline {
            io,
            deadline: Some(Box::pin(tokio::time::sleep(limit))),
        }
    }
}

impl<I: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for FirstByteDeadline<I> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        let this = &mut *self;
        let before = buf.filled().len();
        match std::pin::Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    this.deadline = None;
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                let expired = this
                    .deadline
                    .as_mut()
                    .is_some_and(|d| d.as_mut().poll(cx).is_ready());
                if expired {
                    Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "no request within the header read timeout",
                    )))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl<I: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for FirstByteDeadline<I> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Receives the body of every request that carries one (PUT, POST, PATCH) within the upload
/// bounds, before its handler runs: 503 when every upload slot is taken, 408 when the body does
/// not arrive in time, 413 over `max_body`.
pub(crate) async fn guard_uploads(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    // gRPC calls (POST, small unary messages) are not uploads: bounding them here would turn
    // concurrent GetNotification calls into 503s.
    let grpc = req
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    // Without any credentials the route's PSK check refuses it unread: no slot for it.
    let unauthenticated =
        state.auth.is_some() && !req.headers().contains_key(header::AUTHORIZATION);
    if grpc
        || unauthenticated
        || !matches!(*req.method(), Method::PUT | Method::POST | Method::PATCH)
    {
        return next.run(req).await;
    }
    let limits = &state.uploads;
    let Ok(permit) = Arc::clone(&limits.permits).try_acquire_owned() else {
        metrics::counter!("tocsin_http_uploads_refused_total", "reason" => "busy").increment(1);
        let mut resp = ApiError::Unavailable(format!(
            "{} uploads are already being received (tocsin.max_concurrent_uploads); try again",
            limits.max_concurrent
        ))
        .into_response();
        resp.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
        return resp;
    };
    let (parts, body) = req.into_parts();
    let received =
        tokio::time::timeout(limits.timeout, axum::body::to_bytes(body, state.max_body)).await;
    drop(permit);
    let bytes = match received {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            // The length limit (ours, or the body-limit layer's around us) is a LengthLimitError
            // somewhere down the source chain, boxed once per body wrapper.
            let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            let mut too_large = false;
            while let Some(c) = cause {
                if c.is::<http_body_util::LengthLimitError>() {
                    too_large = true;
                    break;
                }
                cause = c.source();
            }
            if too_large {
                return ApiError::TooLarge(format!(
                    "request body exceeds the limit of {} bytes (tocsin.max_body_size)",
                    state.max_body
                ))
                .into_response();
            }
            return ApiError::BadRequest(format!("reading the request body: {e}")).into_response();
        }
        Err(_) => {
            metrics::counter!("tocsin_http_uploads_refused_total", "reason" => "timeout")
                .increment(1);
            let body = serde_json::json!({
                "code": "request-timeout",
                "message": format!(
                    "the request body did not arrive within {} s (tocsin.upload_timeout)",
                    limits.timeout.as_secs()
                ),
            });
            let mut resp = (StatusCode::REQUEST_TIMEOUT, axum::Json(body)).into_response();
            resp.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
            return resp;
        }
    };
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}
