//! Clair v2's webhook (wire reference §3): `POST {"Notification":{"Name":"<name>"}}` per v2/v3
//! notification, 200 or 201 = success.
//!
//! Unlike the v4 channel this is not a [`Deliverer`](crate::Deliverer) of notification sets: a
//! v2 notification is one changed vulnerability, and it follows v2's own schedule, kept in the
//! store beside it ([`Store::claim_legacy_deliveries`]):
//!
//! - **One send = up to `attempts` POSTs**, with backoff between them (1 s, 2 s, 4 s … capped at
//!   `max_backoff`, Clair's 15 minutes by default) — `notifier.attempts`.
//! - **Re-notification.** A delivered notification is sent again every `renotify_interval`
//!   (`notifier.renotifyinterval`) until a client marks it read (v2 `DELETE`, v3
//!   `MarkNotificationAsRead`); zero turns re-sending off. A send whose attempts all failed is
//!   tried again after `max_backoff`.
//! - **Leased.** Each send holds a lease in the store that covers all its attempts, so several
//!   processes never send one notification at once; a crashed sender's lease expires and another
//!   picks the notification up (at-least-once).
//! - **TLS as v2 configured it:** an extra root CA (`cafile`), a client certificate
//!   (`certfile` + `keyfile`), a proxy, and `servername`: the certificate is verified against
//!   that name (the request is sent to the endpoint's address under that name).
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::Url;
use time::OffsetDateTime;
use tocsin_store::{LegacyDeliveryOutcome, LegacyDeliveryTask, Store, StoreError};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::DeliverError;

/// The channel label of this webhook in metrics and logs.
pub const CHANNEL: &str = "webhook_v2";

/// Configuration of Clair v2's webhook (`clair.notifier`). `Debug` hides the endpoint's and
/// the proxy's passwords.
#[derive(Clone, PartialEq)]
pub struct LegacyWebhookConfig {
    /// `http.endpoint`.
    pub endpoint: String,
    /// `attempts`: POSTs per send (at least 1).
    pub attempts: u32,
    /// `renotifyinterval`: re-send a delivered, unread notification after this long (zero:
    /// never).
    pub renotify_interval: Duration,
    /// `http.servername`: the name the server's certificate is verified against.
    pub server_name: Option<String>,
    /// `http.cafile`: an extra root certificate (PEM).
    pub root_ca: Option<PathBuf>,
    /// `http.certfile` and `http.keyfile`: the client certificate and key (PEM).
    pub identity: Option<(PathBuf, PathBuf)>,
    /// `http.proxy`.
    pub proxy: Option<String>,
    /// Bound on establishing a connection.
    pub connect_timeout: Duration,
    /// Bound on one POST.
    pub timeout: Duration,
    /// Delay after the first failed POST of a send; doubles per attempt.
    pub initial_backoff: Duration,
    /// Largest delay between POSTs, and the wait before a failed send is tried again.
    pub max_backoff: Duration,
    /// How often due notifications are looked for.
    pub poll_interval: Duration,
    /// Sends in flight at once.
    pub concurrency: usize,
}

impl std::fmt::Debug for LegacyWebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LegacyWebhookConfig")
            .field("endpoint", &crate::redact_url(&self.endpoint))
            .field("attempts", &self.attempts)
            .field("renotify_interval", &self.renotify_interval)
            .field("server_name", &self.server_name)
            .field("root_ca", &self.root_ca)
            .field("identity", &self.identity)
            .field("proxy", &self.proxy.as_deref().map(crate::redact_url))
            .field("connect_timeout", &self.connect_timeout)
            .field("timeout", &self.timeout)
            .field("initial_backoff", &self.initial_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("poll_interval", &self.poll_interval)
            .field("concurrency", &self.concurrency)
            .finish()
    }
}

impl LegacyWebhookConfig {
    /// Clair v2's defaults for `endpoint`: 5 attempts, re-notify after 2 h, backoff from 1 s
    /// capped at 15 min; 5 s to connect, 30 s per POST; a poll every 5 s, 8 sends at once.
    pub fn new(endpoint: impl Into<String>) -> Self {
        LegacyWebhookConfig {
            endpoint: endpoint.into(),
            attempts: 5,
            renotify_interval: Duration::from_secs(2 * 3600),
            server_name: None,
            root_ca: None,
            identity: None,
            proxy: None,
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(30),
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(15 * 60),
            poll_interval: Duration::from_secs(5),
            concurrency: 8,
        }
    }

    /// The delay after failed POST number `n` (1-based) of a send.
    pub fn backoff(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX);
        self.initial_backoff
            .checked_mul(factor)
            .map_or(self.max_backoff, |d| d.min(self.max_backoff))
    }

    /// How long one send may take: every POST and every pause between them, plus a margin.
    fn lease(&self) -> Duration {
        let posts = self.timeout.saturating_add(self.connect_timeout);
        let mut total = Duration::from_secs(30);
        for n in 1..=self.attempts.max(1) {
            total = total.saturating_add(posts).saturating_add(self.backoff(n));
        }
        total
    }
}

/// Clair v2's webhook, ready to send.
pub struct LegacyWebhook {
    cfg: LegacyWebhookConfig,
    client: reqwest::Client,
    url: Url,
    /// The endpoint as messages show it: without its password.
    shown: String,
}

impl std::fmt::Debug for LegacyWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LegacyWebhook")
            .field("cfg", &self.cfg)
            .field("url", &self.shown)
            .finish_non_exhaustive()
    }
}

fn bad(field: &str, message: impl Into<String>) -> DeliverError {
    DeliverError::Config {
        channel: "clair.notifier",
        field: format!("clair.notifier.{field}"),
        message: message.into(),
    }
}

fn read_pem(field: &str, path: &PathBuf) -> Result<Vec<u8>, DeliverError> {
    std::fs::read(path).map_err(|e| bad(field, format!("reading {}: {e}", path.display())))
}

impl LegacyWebhook {
    /// Checks the configuration, reads the certificates and builds the HTTP client.
    pub async fn new(cfg: LegacyWebhookConfig) -> Result<Self, DeliverError> {
        let shown = crate::redact_url(&cfg.endpoint);
        let mut url = Url::parse(&cfg.endpoint)
            .map_err(|e| bad("http.endpoint", format!("{shown:?} is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(bad(
                "http.endpoint",
                format!("{shown:?} is not an http(s) URL with a host"),
            ));
        }
        if cfg.attempts == 0 {
            return Err(bad("attempts", "must be at least 1"));
        }
        if cfg.timeout.is_zero() || cfg.connect_timeout.is_zero() {
            return Err(bad("timeout", "timeouts must be positive"));
        }
        let mut b = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .timeout(cfg.timeout)
            .user_agent(crate::USER_AGENT);
        if let Some(ca) = &cfg.root_ca {
            let cert = reqwest::Certificate::from_pem(&read_pem("http.cafile", ca)?)
                .map_err(|e| bad("http.cafile", format!("{}: {e}", ca.display())))?;
            b = b.add_root_certificate(cert);
        }
        if let Some((cert, key)) = &cfg.identity {
            let mut pem = read_pem("http.certfile", cert)?;
            pem.push(b'\n');
            pem.extend(read_pem("http.keyfile", key)?);
            let id = reqwest::Identity::from_pem(&pem).map_err(|e| {
                bad(
                    "http.certfile",
                    format!("{} with {}: {e}", cert.display(), key.display()),
                )
            })?;
            b = b.identity(id);
        }
        if let Some(p) = &cfg.proxy {
            b = b.proxy(reqwest::Proxy::all(p).map_err(|e| {
                let p = crate::redact_url(p);
                bad("http.proxy", format!("{p:?}: {}", e.without_url()))
            })?);
        }
        if let Some(name) = cfg.server_name.as_deref().filter(|n| !n.is_empty()) {
            // Verify the certificate against `name` while still connecting to the endpoint's
            // address: ask for `name` and pin it to the endpoint's resolved addresses.
            let host = url.host_str().unwrap_or_default().to_string();
            let port = url.port_or_known_default().unwrap_or(443);
            let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|e| bad("http.endpoint", format!("resolving {host}: {e}")))?
                .collect();
            url.set_host(Some(name))
                .map_err(|e| bad("http.servername", format!("{name:?}: {e}")))?;
            b = b.resolve_to_addrs(name, &addrs);
        }
        let client = b.build().map_err(|error| DeliverError::HttpClient {
            channel: CHANNEL.to_string(),
            error,
        })?;
        Ok(LegacyWebhook {
            cfg,
            client,
            url,
            shown,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &LegacyWebhookConfig {
        &self.cfg
    }

    /// One POST of `name`: `Ok(status)` for 200 or 201, else what went wrong.
    pub async fn post(&self, name: Uuid) -> Result<u16, String> {
        let body = format!(r#"{{"Notification":{{"Name":"{name}"}}}}"#);
        let resp = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| describe(&self.shown, e))?;
        match resp.status().as_u16() {
            s @ (200 | 201) => Ok(s),
            s => Err(format!("POST {}: status {s}", self.shown)),
        }
    }

    /// One send: up to `attempts` POSTs with backoff between them. True when delivered; false
    /// when every attempt failed or `stop` was cancelled.
    pub async fn send(&self, name: Uuid, stop: &CancellationToken) -> bool {
        for n in 1..=self.cfg.attempts {
            let started = Instant::now();
            let result = self.post(name).await;
            let outcome = if result.is_ok() {
                "delivered"
            } else {
                "failed"
            };
            metrics::counter!(crate::worker::METRIC_ATTEMPTS, "channel" => CHANNEL, "outcome" => outcome)
                .increment(1);
            metrics::histogram!(crate::worker::METRIC_SECONDS, "channel" => CHANNEL)
                .record(started.elapsed().as_secs_f64());
            match result {
                Ok(status) => {
                    tracing::info!(%name, status, attempt = n, "v2 notification delivered");
                    return true;
                }
                Err(error) => {
                    tracing::warn!(%name, attempt = n, attempts = self.cfg.attempts, %error, "v2 webhook attempt failed");
                    if n == self.cfg.attempts {
                        break;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(self.cfg.backoff(n)) => {}
                        _ = stop.cancelled() => return false,
                    }
                }
            }
        }
        false
    }

    async fn handle(&self, store: &dyn Store, task: LegacyDeliveryTask, stop: &CancellationToken) {
        let delivered = self.send(task.name, stop).await;
        let now = OffsetDateTime::now_utc();
        let outcome = if delivered {
            LegacyDeliveryOutcome::Notified {
                at: now,
                renotify_at: (!self.cfg.renotify_interval.is_zero())
                    .then(|| now + self.cfg.renotify_interval),
            }
        } else {
            LegacyDeliveryOutcome::Failed {
                retry_at: now + self.cfg.max_backoff,
            }
        };
        match store.record_legacy_delivery(&task, outcome).await {
            Ok(()) => {}
            Err(StoreError::Conflict(why)) => {
                tracing::warn!(name = %task.name, %why, "v2 webhook: lease lost; another sender took over")
            }
            Err(e) => {
                tracing::error!(name = %task.name, error = %e, "v2 webhook: recording a send failed; it will be retried after the lease")
            }
        }
    }
}

/// A failed POST in words, with its cause, and with the endpoint's password hidden (reqwest's
/// own text shows the URL whole).
fn describe(shown: &str, e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = format!("POST {shown}: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Sends due v2 notifications until `stop` is cancelled. Storage errors are logged and retried
/// at the next poll: the store holds the schedule, so any pass can be repeated.
pub async fn run(store: Arc<dyn Store>, hook: Arc<LegacyWebhook>, stop: CancellationToken) {
    let cfg = hook.config().clone();
    let lease = cfg.lease();
    loop {
        let claimed = store
            .claim_legacy_deliveries(OffsetDateTime::now_utc(), lease, cfg.concurrency.max(1) * 4)
            .await;
        let busy = match claimed {
            Ok(tasks) => {
                let n = tasks.len();
                futures::stream::iter(tasks)
                    .for_each_concurrent(cfg.concurrency.max(1), |t| {
                        let (store, hook, stop) = (store.as_ref(), hook.as_ref(), &stop);
                        async move { hook.handle(store, t, stop).await }
                    })
                    .await;
                n > 0
            }
            Err(e) => {
                tracing::error!(error = %e, "v2 webhook: claiming due notifications failed; will retry");
                false
            }
        };
        if stop.is_cancelled() {
            return;
        }
        if !busy {
            tokio::select! {
                _ = tokio::time::sleep(cfg.poll_interval) => {}
                _ = stop.cancelled() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests;
