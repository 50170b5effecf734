//! The Clair-compatible webhook channel (wire reference §2.2).
//!
//! Each set is announced with one `POST <target>` whose body is exactly
//! `{"callback":"<callback>/<id>","notification_id":"<id>"}` and `Content-Type: application/json`.
//! The consumer then pages through the set at the callback URL and deletes it.
//!
//! Headers: the configured `webhook.headers` first (all values of each), then `Content-Type`
//! (always ours), `User-Agent` (ours unless the configuration sets one) and, with a PSK,
//! `Authorization: Bearer <JWT>` signed afresh for every call (see [`crate::jwt`]).
//!
//! Results, beating Clair's "only 200 counts, retry hourly forever":
//! - any 2xx is [`DeliveryResult::Delivered`];
//! - 429 and 503 carry `Retry-After` (delta-seconds or an HTTP date) into the result;
//! - 410 Gone is **permanent**: the receiver states that the resource is gone for good, so the
//!   worker dead-letters the set at once instead of retrying for a week. Other 4xx are retried,
//!   because they usually mean a misconfiguration that an operator will fix (401, 403, 404);
//! - any other status fails with the status and the start of the response body (≤ 512 bytes);
//! - connection errors and timeouts fail with a description, and no status.
//!
//! Every call is bounded by `connect_timeout` and by `timeout` (the whole exchange). Redirects are
//! followed as Go's client (Clair's) does, up to reqwest's limit of 10.

mod config;

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use reqwest::header::{
    HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, USER_AGENT,
};
use reqwest::{StatusCode, Url};

pub use config::WebhookConfig;

use crate::jwt::PskSigner;
use crate::{Callback, DeliverError, Deliverer, DeliveryResult, SetToDeliver};

/// How much of an error response's body is kept in the attempt's error text.
const BODY_SNIPPET_BYTES: usize = 512;

/// Delivers notification sets by webhook.
pub struct WebhookDeliverer {
    channel: String,
    client: reqwest::Client,
    target: Url,
    /// The target as messages show it: without its password.
    shown: String,
    callback: Callback,
    headers: HeaderMap,
    signer: Option<PskSigner>,
    timeout: Duration,
}

impl std::fmt::Debug for WebhookDeliverer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The target may hold a password and the headers credentials.
        f.debug_struct("WebhookDeliverer")
            .field("channel", &self.channel)
            .field("target", &self.shown)
            .field("callback", &self.callback)
            .field("headers", &self.headers)
            .field("signed", &self.signer.is_some())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl WebhookDeliverer {
    /// Validates `cfg` and builds the HTTP client.
    pub fn new(cfg: &WebhookConfig) -> Result<Self, DeliverError> {
        let v = cfg.validate()?;
        let client = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .timeout(cfg.timeout)
            .build()
            .map_err(|error| DeliverError::HttpClient {
                channel: cfg.channel.clone(),
                error,
            })?;
        let mut headers = v.headers;
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if !headers.contains_key(USER_AGENT) {
            headers.insert(USER_AGENT, v.user_agent);
        }
        Ok(WebhookDeliverer {
            channel: cfg.channel.clone(),
            client,
            shown: crate::redact_url(v.target.as_str()),
            target: v.target,
            callback: v.callback,
            headers,
            signer: cfg.psk.as_ref().map(PskSigner::new),
            timeout: cfg.timeout,
        })
    }

    /// The URL sets are posted to.
    pub fn target(&self) -> &Url {
        &self.target
    }

    /// The callback base.
    pub fn callback(&self) -> &Callback {
        &self.callback
    }

    fn headers(&self) -> Result<HeaderMap, String> {
        let mut headers = self.headers.clone();
        if let Some(signer) = &self.signer {
            let token = signer.sign().map_err(|e| e.to_string())?;
            let value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|e| format!("JWT is not a valid header value: {e}"))?;
            headers.insert(AUTHORIZATION, value);
        }
        Ok(headers)
    }

    /// A failed call in words, with the target's password hidden (reqwest's own text would
    /// show the URL whole).
    fn describe(&self, e: reqwest::Error) -> String {
        let e = e.without_url();
        let mut chain = String::new();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            chain.push_str(": ");
            chain.push_str(&s.to_string());
            source = s.source();
        }
        if e.is_timeout() {
            format!(
                "no answer from {} within the timeout ({:?}){chain}",
                self.shown, self.timeout
            )
        } else if e.is_connect() {
            format!("could not connect to {}{chain}", self.shown)
        } else {
            format!("request to {} failed: {e}{chain}", self.shown)
        }
    }

    async fn classify(&self, mut resp: reqwest::Response) -> DeliveryResult {
        let status = resp.status();
        if status.is_success() {
            return DeliveryResult::Delivered {
                status: Some(status.as_u16()),
            };
        }
        let retry_after = match status {
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => resp
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, SystemTime::now())),
            _ => None,
        };
        let mut body = Vec::new();
        let mut body_error = None;
        while body.len() < BODY_SNIPPET_BYTES {
            match resp.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(e) => {
                    body_error = Some(e);
                    break;
                }
            }
        }
        let mut error = format!("HTTP {status} from {}", self.shown);
        let snippet = snippet(&body);
        if !snippet.is_empty() {
            error.push_str(": ");
            error.push_str(&snippet);
        }
        if let Some(e) = body_error {
            error.push_str(&format!(" (reading the body failed: {})", e.without_url()));
        }
        DeliveryResult::Failed {
            status: Some(status.as_u16()),
            error,
            retry_after,
            permanent: status == StatusCode::GONE,
        }
    }
}

#[async_trait]
impl Deliverer for WebhookDeliverer {
    fn channel(&self) -> &str {
        &self.channel
    }

    async fn deliver(&self, set: &SetToDeliver) -> DeliveryResult {
        let headers = match self.headers() {
            Ok(h) => h,
            Err(error) => {
                return DeliveryResult::Failed {
                    status: None,
                    error,
                    retry_after: None,
                    permanent: false,
                }
            }
        };
        let sent = self
            .client
            .post(self.target.clone())
            .headers(headers)
            .body(self.callback.body(set.id))
            .send()
            .await;
        match sent {
            Ok(resp) => self.classify(resp).await,
            Err(e) => DeliveryResult::Failed {
                status: None,
                error: self.describe(e),
                retry_after: None,
                permanent: false,
            },
        }
    }
}

/// Parses a `Retry-After` value: delta-seconds or an HTTP date (a past date means "now").
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Absurdly long numbers saturate; the retry policy clamps to its maximum anyway.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The start of a response body as one line of text: at most [`BODY_SNIPPET_BYTES`] bytes, lossy
/// UTF-8 cut at a character boundary, whitespace runs collapsed, `…` when cut.
fn snippet(body: &[u8]) -> String {
    let cut = body.len() > BODY_SNIPPET_BYTES;
    let mut head = &body[..body.len().min(BODY_SNIPPET_BYTES)];
    if cut {
        // An error "at the end of the input" is a character split by the cut: drop its start
        // rather than show a replacement character that is not in the body.
        if let Err(e) = std::str::from_utf8(head) {
            if e.error_len().is_none() {
                head = &head[..e.valid_up_to()];
            }
        }
    }
    let mut out = String::from_utf8_lossy(head)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if cut {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        // RFC 850 and asctime forms are HTTP dates too.
        assert_eq!(
            parse_retry_after("Sunday, 06-Nov-94 08:49:47 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Sun Nov  6 08:49:38 1994", now),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("", now), None);
    }

    #[test]
    fn snippets_are_short_single_lines() {
        assert_eq!(snippet(b"  oops\n  broken\tthing \n"), "oops broken thing");
        assert_eq!(snippet(b""), "");
        let long = "é".repeat(400); // 800 bytes; byte 512 falls on a character boundary
        let s = snippet(long.as_bytes());
        assert!(s.ends_with('…'));
        assert_eq!(s.chars().count(), 257);
        // A cut inside a multi-byte character drops the partial character.
        let odd = format!("a{}", "é".repeat(400));
        let s = snippet(odd.as_bytes());
        assert!(!s.contains('\u{FFFD}'), "{s}");
        assert_eq!(s.chars().count(), 1 + 255 + 1);
        assert_eq!(snippet(&[b'x', 0xff, b'y']), "x\u{FFFD}y");
    }

    #[test]
    fn config_errors_surface_from_new() {
        let c = WebhookConfig::new("nope", "http://c/");
        assert!(matches!(
            WebhookDeliverer::new(&c),
            Err(DeliverError::Config { ref field, .. }) if field == "webhook.target"
        ));
    }
}
