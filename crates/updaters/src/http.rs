//! One GET with validators, bounds, a whole-transfer timeout and retries.
use std::io::Write;
use std::time::Duration;

use rand::Rng;
use reqwest::header::{
    HeaderMap, HeaderName, HeaderValue, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED,
    RETRY_AFTER,
};
use reqwest::{StatusCode, Url};

use crate::config::FetchOptions;
use crate::state::Validators;
use crate::UpdaterError;

/// Where a body goes.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Sink {
    /// A temporary file (archives).
    File,
    /// Memory, at most this many bytes (`modified_id.csv`, single records).
    Memory(u64),
}

/// A received body.
#[derive(Debug)]
pub(crate) enum Body {
    File(tempfile::NamedTempFile),
    Bytes(Vec<u8>),
}

/// What a GET found.
#[derive(Debug)]
pub(crate) enum Got {
    /// 304: the validators still hold.
    NotModified,
    /// 404 or 410.
    NotFound,
    /// A body, and the validators to send next time.
    Body {
        body: Body,
        bytes: u64,
        validators: Validators,
    },
}

/// An API answer (2xx or 304).
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

/// Why one attempt failed.
enum Failure {
    Status(u16, Option<Duration>),
    Transport(String),
    Timeout,
    TooLarge,
    Io(std::io::Error),
}

impl Failure {
    fn retryable(&self) -> bool {
        match self {
            Failure::Status(s, _) => *s == 408 || *s == 429 || *s >= 500,
            Failure::Transport(_) | Failure::Timeout => true,
            Failure::TooLarge | Failure::Io(_) => false,
        }
    }

    fn into_error(
        self,
        method: &'static str,
        url: &Url,
        opts: &FetchOptions,
        attempts: u32,
    ) -> UpdaterError {
        let url = url.to_string();
        match self {
            Failure::Status(status, _) => UpdaterError::Status {
                method,
                url,
                status,
                attempts,
            },
            Failure::Transport(message) => UpdaterError::Transport {
                method,
                url,
                message,
                attempts,
            },
            Failure::Timeout => UpdaterError::Timeout {
                method,
                url,
                after: opts.timeout,
                attempts,
            },
            Failure::TooLarge => UpdaterError::TooLarge {
                method,
                url,
                limit: opts.max_download_size,
            },
            Failure::Io(source) => UpdaterError::Io {
                what: format!("saving the body of {url}"),
                source,
            },
        }
    }
}

/// The error and its causes on one line: reqwest's own text ("error sending request") says
/// nothing of why.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

/// Receives bytes as they arrive: (so far, announced total).
pub(crate) type OnBytes<'a> = &'a (dyn Fn(u64, Option<u64>) + Send + Sync);

/// The HTTP client of every source.
#[derive(Debug)]
pub(crate) struct Http {
    client: reqwest::Client,
    opts: FetchOptions,
}

impl Http {
    pub(crate) fn new(opts: FetchOptions) -> Result<Http, UpdaterError> {
        let client = reqwest::Client::builder()
            .connect_timeout(opts.connect_timeout)
            .user_agent(concat!("tocsin/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| UpdaterError::Transport {
                method: "GET",
                url: String::new(),
                message: format!("building the HTTP client: {}", chain(&e)),
                attempts: 0,
            })?;
        Ok(Http { client, opts })
    }

    /// GETs `url`, conditionally when `validators` are given, retrying what may pass on a
    /// second try; `attempts` counts every request made.
    pub(crate) async fn get(
        &self,
        url: &Url,
        headers: &[(String, String)],
        validators: Option<&Validators>,
        sink: Sink,
        on_bytes: OnBytes<'_>,
        attempts: &mut u32,
    ) -> Result<Got, UpdaterError> {
        self.retrying("GET", url, attempts, || {
            self.once(url, headers, validators, sink, on_bytes)
        })
        .await
    }

    /// One API request, built afresh for every attempt (a signed request needs a fresh token),
    /// its whole body read into memory under `limit` (and `max_download_size`). A 2xx or 304
    /// answer is returned; other statuses fail, the retryable ones after the retries.
    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        url: &Url,
        build: &(dyn Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder + Send + Sync),
        limit: u64,
        attempts: &mut u32,
    ) -> Result<Reply, UpdaterError> {
        let name = match method {
            reqwest::Method::POST => "POST",
            reqwest::Method::DELETE => "DELETE",
            _ => "GET",
        };
        self.retrying(name, url, attempts, || async {
            let resp = build(self.client.request(method.clone(), url.clone()))
                .send()
                .await
                .map_err(|e| Failure::Transport(chain(&e)))?;
            let status = resp.status();
            if !status.is_success() && status != StatusCode::NOT_MODIFIED {
                return Err(Failure::Status(status.as_u16(), retry_after(&resp)));
            }
            let headers = resp.headers().clone();
            let (body, _) = self.read(resp, Sink::Memory(limit), &|_, _| {}).await?;
            let Body::Bytes(body) = body else {
                return Err(Failure::TooLarge);
            };
            Ok(Reply {
                status,
                headers,
                body,
            })
        })
        .await
    }

    /// Runs `attempt` until it succeeds, fails for good, or the retries are spent; each attempt
    /// within the whole-transfer timeout, with backoff between them.
    async fn retrying<T, F, Fut>(
        &self,
        method: &'static str,
        url: &Url,
        attempts: &mut u32,
        mut attempt: F,
    ) -> Result<T, UpdaterError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Failure>>,
    {
        loop {
            *attempts += 1;
            let failure = match tokio::time::timeout(self.opts.timeout, attempt()).await {
                Ok(Ok(got)) => return Ok(got),
                Ok(Err(f)) => f,
                Err(_) => Failure::Timeout,
            };
            if !failure.retryable() || *attempts > self.opts.retries {
                return Err(failure.into_error(method, url, &self.opts, *attempts));
            }
            let wait = self.backoff(*attempts, &failure);
            tracing::debug!(method, %url, attempts, wait_ms = wait.as_millis() as u64, "retrying");
            tokio::time::sleep(wait).await;
        }
    }

    /// Full jitter under a ceiling doubling per attempt; a server's `Retry-After` is honoured up
    /// to `max_backoff`.
    fn backoff(&self, attempts: u32, failure: &Failure) -> Duration {
        let ceiling = self
            .opts
            .initial_backoff
            .saturating_mul(1u32 << attempts.saturating_sub(1).min(20))
            .min(self.opts.max_backoff);
        let jitter = ceiling.mul_f64(rand::thread_rng().gen::<f64>());
        match failure {
            Failure::Status(_, Some(after)) => (*after).max(jitter).min(self.opts.max_backoff),
            _ => jitter,
        }
    }

    async fn once(
        &self,
        url: &Url,
        headers: &[(String, String)],
        validators: Option<&Validators>,
        sink: Sink,
        on_bytes: OnBytes<'_>,
    ) -> Result<Got, Failure> {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            // Checked when the configuration was read; a bad one here is skipped, not sent.
            if let (Ok(k), Ok(v)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) {
                map.append(k, v);
            }
        }
        if let Some(v) = validators {
            if let Some(Ok(etag)) = v.etag.as_deref().map(HeaderValue::from_str) {
                map.insert(IF_NONE_MATCH, etag);
            }
            if let Some(Ok(lm)) = v.last_modified.as_deref().map(HeaderValue::from_str) {
                map.insert(IF_MODIFIED_SINCE, lm);
            }
        }
        let resp = self
            .client
            .get(url.clone())
            .headers(map)
            .send()
            .await
            .map_err(|e| Failure::Transport(chain(&e)))?;
        let status = resp.status();
        if status == StatusCode::NOT_MODIFIED {
            return Ok(Got::NotModified);
        }
        if status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
            return Ok(Got::NotFound);
        }
        if !status.is_success() {
            return Err(Failure::Status(status.as_u16(), retry_after(&resp)));
        }
        let header = |name| {
            resp.headers()
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
                .map(str::to_string)
        };
        let validators = Validators {
            etag: header(ETAG),
            last_modified: header(LAST_MODIFIED),
        };
        let (body, bytes) = self.read(resp, sink, on_bytes).await?;
        Ok(Got::Body {
            body,
            bytes,
            validators,
        })
    }

    /// Reads a body into `sink`, failing as soon as it passes its bound.
    async fn read(
        &self,
        mut resp: reqwest::Response,
        sink: Sink,
        on_bytes: OnBytes<'_>,
    ) -> Result<(Body, u64), Failure> {
        let limit = match sink {
            Sink::File => self.opts.max_download_size,
            Sink::Memory(n) => n.min(self.opts.max_download_size),
        };
        let total = resp.content_length();
        if total.is_some_and(|n| n > limit) {
            return Err(Failure::TooLarge);
        }
        let mut body = match sink {
            Sink::File => Body::File(tempfile::NamedTempFile::new().map_err(Failure::Io)?),
            Sink::Memory(_) => Body::Bytes(Vec::new()),
        };
        let mut bytes = 0u64;
        on_bytes(0, total);
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| Failure::Transport(chain(&e)))?
        {
            bytes += chunk.len() as u64;
            if bytes > limit {
                return Err(Failure::TooLarge);
            }
            match &mut body {
                Body::File(f) => f.write_all(&chunk).map_err(Failure::Io)?,
                Body::Bytes(v) => v.extend_from_slice(&chunk),
            }
            on_bytes(bytes, total);
        }
        if let Body::File(f) = &mut body {
            f.flush().map_err(Failure::Io)?;
        }
        Ok((body, bytes))
    }
}

/// A server's `Retry-After`, in seconds.
fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    resp.headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}
