//! The HTTP side: one fallback handler answering every path from the shared state.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request as HttpRequest, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::Router;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

use super::{Fault, File, Request, Shared, SLOW_BODY_CHUNK};

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

const HTTP_DATE: &[time::format_description::BorrowedFormatItem<'static>] = format_description!(
    "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
);

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
pub(crate) fn http_date(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(HTTP_DATE)
        .unwrap_or_default()
}

fn parse_http_date(s: &str) -> Option<OffsetDateTime> {
    PrimitiveDateTime::parse(s.trim(), HTTP_DATE)
        .ok()
        .map(|t| t.assume_utc())
}

/// Percent-decodes a path; a malformed escape stays as it is.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// Whether `If-None-Match: list` matches `etag` (weak comparison, `*` matches any file).
fn none_match(list: &str, etag: &str) -> bool {
    list.split(',').map(str::trim).any(|t| {
        t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag.strip_prefix("W/").unwrap_or(etag)
    })
}

fn content_type(path: &str) -> &'static str {
    let ends = |s: &str| path.ends_with(s);
    if ends(".json") {
        "application/json"
    } else if ends(".zip") {
        "application/zip"
    } else if ends(".csv") {
        "text/csv; charset=utf-8"
    } else if ends(".txt") {
        "text/plain; charset=utf-8"
    } else if ends(".gz") || ends(".tgz") {
        "application/gzip"
    } else {
        "application/octet-stream"
    }
}

fn text(status: StatusCode, body: String) -> (StatusCode, &'static str, Bytes) {
    (status, "text/plain; charset=utf-8", Bytes::from(body))
}

async fn handle(State(shared): State<Arc<Shared>>, req: HttpRequest) -> Response {
    let method = req.method().clone();
    let raw_path = req.uri().path().to_string();
    let path = percent_decode(&raw_path);
    let query = req.uri().query().map(str::to_string);
    let inm = header_str(req.headers(), header::IF_NONE_MATCH);
    let ims = header_str(req.headers(), header::IF_MODIFIED_SINCE);
    let mut entry = Request {
        method: method.to_string(),
        path: path.clone(),
        query,
        status: 0,
        body_bytes: 0,
        if_none_match: inm.clone(),
        if_modified_since: ims.clone(),
        fault: None,
    };

    if method != Method::GET && method != Method::HEAD {
        entry.status = 405;
        let sent = shared.log(entry);
        let mut r = plain(text(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} not allowed\n"),
        ));
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return finish(r, &method, sent);
    }
    let head = method == Method::HEAD;

    // Faults that apply to every request on the path.
    let early = shared.take_fault(&path, |f| matches!(f, Fault::Status(..) | Fault::Delay(_)));
    let mut delay = None;
    match &early {
        Some(Fault::Status(code, _)) => {
            entry.status = *code;
            entry.fault = early.clone();
            let sent = shared.log(entry);
            let status = StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let r = plain(text(status, format!("injected fault: status {code}\n")));
            return finish(r, &method, sent);
        }
        Some(Fault::Delay(d)) => {
            delay = Some(*d);
            entry.fault = early.clone();
        }
        _ => {}
    }

    let Some(file) = shared.file(&path) else {
        entry.status = 404;
        let sent = shared.log(entry);
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        let r = plain(text(StatusCode::NOT_FOUND, format!("{path} not found\n")));
        return finish(r, &method, sent);
    };

    // Conditional requests: If-None-Match wins over If-Modified-Since (RFC 9110 §13.2.2).
    let not_modified = match (&inm, &ims) {
        (Some(list), _) => none_match(list, &file.etag),
        (None, Some(date)) => {
            parse_http_date(date).is_some_and(|since| file.last_modified <= since)
        }
        (None, None) => false,
    };
    if not_modified {
        entry.status = 304;
        let sent = shared.log(entry);
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        validators(&mut r, &file);
        return finish(r, &method, sent);
    }

    let body_fault = if head {
        None
    } else {
        shared.take_fault(&path, |f| {
            matches!(
                f,
                Fault::DropMidBody | Fault::SlowBody(_) | Fault::Truncate(_)
            )
        })
    };
    if body_fault.is_some() {
        entry.fault = body_fault.clone();
    }
    entry.status = 200;
    let sent = shared.log(entry);
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }

    let full = file.bytes.clone();
    let (length, plan) = match body_fault {
        Some(Fault::Truncate(n)) => {
            let n = n.min(full.len());
            (n, Plan::chunks(full.slice(..n), usize::MAX, None, false))
        }
        Some(Fault::DropMidBody) => {
            let half = full.len() / 2;
            (
                full.len(),
                Plan::chunks(full.slice(..half), usize::MAX, None, true),
            )
        }
        Some(Fault::SlowBody(pause)) => (
            full.len(),
            Plan::chunks(full.clone(), SLOW_BODY_CHUNK, Some(pause), false),
        ),
        _ => (
            full.len(),
            Plan::chunks(full.clone(), 64 * 1024, None, false),
        ),
    };
    let body = if head {
        Body::empty()
    } else {
        plan.into_body(sent.clone())
    };
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(&path)),
    );
    validators(&mut r, &file);
    r
}

fn validators(r: &mut Response, file: &File) {
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&file.etag) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&http_date(file.last_modified)) {
        h.insert(header::LAST_MODIFIED, v);
    }
}

/// A small complete response.
fn plain((status, ctype, body): (StatusCode, &'static str, Bytes)) -> Response {
    let len = body.len();
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    r
}

/// Records the bytes of a small response and strips the body of a HEAD.
fn finish(mut r: Response, method: &Method, sent: Arc<AtomicU64>) -> Response {
    if method == Method::HEAD {
        *r.body_mut() = Body::empty();
    } else if let Some(len) = r
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        sent.store(len, Ordering::SeqCst);
    }
    r
}

/// How a body is streamed.
struct Plan {
    bytes: Bytes,
    chunk: usize,
    pause: Option<Duration>,
    fail_at_end: bool,
}

impl Plan {
    fn chunks(bytes: Bytes, chunk: usize, pause: Option<Duration>, fail_at_end: bool) -> Plan {
        Plan {
            bytes,
            chunk: chunk.max(1),
            pause,
            fail_at_end,
        }
    }

    fn into_body(self, sent: Arc<AtomicU64>) -> Body {
        struct St {
            plan: Plan,
            offset: usize,
            sent: Arc<AtomicU64>,
            done: bool,
        }
        let st = St {
            plan: self,
            offset: 0,
            sent,
            done: false,
        };
        let stream = futures::stream::unfold(st, |mut st| async move {
            if st.done {
                return None;
            }
            let len = st.plan.bytes.len();
            if st.offset >= len {
                st.done = true;
                if st.plan.fail_at_end {
                    // Let the connection flush what was sent, then abort it.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let e = std::io::Error::new(
                        std::io::ErrorKind::ConnectionAborted,
                        "injected fault: connection dropped mid-body",
                    );
                    return Some((Err(e), st));
                }
                return None;
            }
            if st.offset > 0 {
                if let Some(p) = st.plan.pause {
                    tokio::time::sleep(p).await;
                }
            }
            let end = len.min(st.offset.saturating_add(st.plan.chunk));
            let chunk = st.plan.bytes.slice(st.offset..end);
            st.offset = end;
            st.sent.fetch_add(chunk.len() as u64, Ordering::SeqCst);
            Some((Ok(chunk), st))
        });
        Body::from_stream(stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("/AlmaLinux%3A9/x"), "/AlmaLinux:9/x");
        assert_eq!(percent_decode("/a%2"), "/a%2");
        assert_eq!(percent_decode("/a%zz%41"), "/a%zzA");
        assert_eq!(percent_decode("%41"), "A");
    }

    #[test]
    fn http_dates_round_trip() {
        let t = time::macros::datetime!(1994-11-06 08:49:37 UTC);
        assert_eq!(http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(t));
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), None);
    }

    #[test]
    fn if_none_match_lists() {
        assert!(none_match("\"a\", \"b\"", "\"b\""));
        assert!(none_match("W/\"b\"", "\"b\""));
        assert!(none_match("*", "\"b\""));
        assert!(!none_match("\"a\"", "\"b\""));
    }
}
