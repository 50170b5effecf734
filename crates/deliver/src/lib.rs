//! tocsin's delivery side: channels that push notification sets to consumers, the retry policy
//! between attempts, Clair's PSK JWTs, and the outbox worker that drives it all.
//!
//! # Design
//!
//! - **Channels are push sinks.** A channel implements [`Deliverer`]: it is handed one
//!   [`SetToDeliver`] at a time and answers with a [`DeliveryResult`]. A failure on the remote side
//!   (a 500, a timeout, a refused connection) is *data*, not an `Err`: the worker must record it as
//!   an attempt and schedule the next one, so it is part of the normal result type. `Err`
//!   ([`DeliverError`]) is reserved for tocsin's own problems (configuration, storage).
//! - **Callback mode and direct mode.** Clair's channels either announce a set by its callback URL
//!   (webhook; AMQP/STOMP "callback" mode) or carry the set's entries themselves (AMQP/STOMP
//!   "direct" mode). A channel says which it needs with [`Deliverer::needs_entries`]; the worker
//!   then pages the entries out of the store into a buffer owned by that one delivery (Clair shares
//!   one buffer between workers and so sends one set twice and another never). The shared wire
//!   pieces of both modes live here: [`Callback`] (the callback JSON, byte-exact) and
//!   [`rollup_blocks`] (how direct mode splits entries into messages).
//! - **The policy is pure.** [`retry::RetryPolicy`] turns "attempt n failed, the receiver said
//!   Retry-After r" into a delay with no clock and an injected RNG, so it is tested exactly.
//! - **The worker owns the outbox loop.** [`worker::run`] claims due receipts under a lease (so two
//!   workers never deliver the same set at once), delivers them with bounded concurrency, records
//!   every attempt, and emits metrics. A lost lease or a storage hiccup is logged and retried, never
//!   fatal, because the outbox is the durable state and any pass can be repeated.
//!
//! Modules: [`webhook`] (Clair-compatible webhook channel), [`jwt`] (PSK signer and verifier),
//! [`retry`] (backoff), [`worker`] (outbox driver).
#![deny(missing_docs)]

use std::time::Duration;

use async_trait::async_trait;
use tocsin_model::notification::Notification;
use uuid::Uuid;

pub mod jwt;
pub mod retry;
pub mod webhook;
pub mod webhook_v2;
pub mod worker;

pub use jwt::{JwtError, PskKey};
pub use retry::{Jitter, RetryPolicy};
pub use webhook::{WebhookConfig, WebhookDeliverer};
pub use worker::WorkerOptions;

/// The `User-Agent` tocsin sends on outbound HTTP calls unless configured otherwise.
pub const USER_AGENT: &str = concat!("tocsin/", env!("CARGO_PKG_VERSION"));

/// What can go wrong on tocsin's side of a delivery (remote failures are [`DeliveryResult::Failed`]).
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    /// A channel's configuration is unusable.
    #[error("invalid {channel} configuration: {field}: {message}")]
    Config {
        /// The channel kind (e.g. `webhook`).
        channel: &'static str,
        /// The configuration key at fault (e.g. `webhook.target`).
        field: String,
        /// What was wrong with it.
        message: String,
    },
    /// A channel's start-up check failed.
    #[error("health check of channel {channel:?} failed: {message}")]
    Unhealthy {
        /// The channel name.
        channel: String,
        /// What failed.
        message: String,
    },
    /// Signing or verifying a JWT failed.
    #[error(transparent)]
    Jwt(#[from] JwtError),
    /// The HTTP client could not be built (TLS backend initialisation).
    #[error("building the HTTP client for channel {channel:?}: {error}")]
    HttpClient {
        /// The channel name.
        channel: String,
        /// The cause.
        error: reqwest::Error,
    },
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] tocsin_store::StoreError),
}

/// A channel that delivers notification sets (Clair's "deliverer").
///
/// Push model: the worker hands each due set to [`deliver`](Self::deliver) and records the result.
/// Implementations must be safe to call concurrently for different sets.
#[async_trait]
pub trait Deliverer: Send + Sync {
    /// The channel name, the key of the outbox receipts this deliverer serves (e.g. `webhook`).
    fn channel(&self) -> &str;

    /// Whether [`deliver`](Self::deliver) needs the set's entries ([`SetToDeliver::entries`]).
    /// Callback-mode channels announce the set only and say `false`; direct-mode channels say `true`.
    fn needs_entries(&self) -> bool {
        false
    }

    /// Delivers one set. Remote failures are reported as [`DeliveryResult::Failed`].
    async fn deliver(&self, set: &SetToDeliver) -> DeliveryResult;

    /// Checks at start-up that the channel can work at all (e.g. a broker is reachable).
    async fn health_check(&self) -> Result<(), DeliverError> {
        Ok(())
    }
}

/// One notification set handed to a [`Deliverer`].
#[derive(Clone, Debug, PartialEq)]
pub struct SetToDeliver {
    /// The set (notification) id.
    pub id: Uuid,
    /// The set's entries in page order, present exactly when the deliverer
    /// [needs them](Deliverer::needs_entries).
    pub entries: Option<Vec<Notification>>,
}

/// The result of one delivery attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeliveryResult {
    /// The channel accepted the set.
    Delivered {
        /// The remote status code, when the channel has one (HTTP).
        status: Option<u16>,
    },
    /// The channel accepted the set and its semantics end the set's life (Clair's direct mode:
    /// the consumer has the entries, nobody will page through them).
    DeliveredAndDeleted {
        /// The remote status code, when the channel has one.
        status: Option<u16>,
    },
    /// The attempt failed.
    Failed {
        /// The remote status code, when there was a response.
        status: Option<u16>,
        /// What went wrong, for the attempt history and the logs.
        error: String,
        /// How long the remote asked us to wait (HTTP `Retry-After`).
        retry_after: Option<Duration>,
        /// Retrying cannot help (e.g. HTTP 410 Gone): give up at once.
        permanent: bool,
    },
}

impl DeliveryResult {
    /// The remote status code, if any.
    pub fn status(&self) -> Option<u16> {
        match self {
            DeliveryResult::Delivered { status }
            | DeliveryResult::DeliveredAndDeleted { status }
            | DeliveryResult::Failed { status, .. } => *status,
        }
    }

    /// Whether the set reached the consumer.
    pub fn is_delivered(&self) -> bool {
        !matches!(self, DeliveryResult::Failed { .. })
    }
}

/// The callback a consumer receives for a set: the URL of the set's first page and the
/// byte-exact JSON announcing it (Clair's webhook body, also AMQP/STOMP callback-mode messages).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Callback {
    base: String,
}

impl Callback {
    /// A callback base such as `http://notifier:6060/notifier/api/v1/notification`; a trailing
    /// `/` is ensured so that the set id can be appended.
    pub fn new(base: &str) -> Self {
        let mut base = base.to_owned();
        if !base.ends_with('/') {
            base.push('/');
        }
        Callback { base }
    }

    /// The base, with its trailing `/`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The callback URL of set `id`.
    pub fn url(&self, id: Uuid) -> String {
        format!("{}{}", self.base, id.hyphenated())
    }

    /// The body `{"callback":"<url>","notification_id":"<id>"}`, no trailing newline.
    pub fn body(&self, id: Uuid) -> Vec<u8> {
        // Written by hand rather than derived so that the key order (the wire order, which
        // consumers' tests compare byte for byte) cannot drift; `Value`'s Display escapes the
        // URL as JSON and cannot fail.
        format!(
            "{{\"callback\":{},\"notification_id\":\"{}\"}}",
            serde_json::Value::String(self.url(id)),
            id.hyphenated()
        )
        .into_bytes()
    }
}

/// How direct mode splits `entries` entries into messages of `rollup` entries each: the index
/// ranges of the messages, in order. A `rollup` of 0 or 1 means one entry per message (Clair).
pub fn rollup_blocks(
    entries: usize,
    rollup: usize,
) -> impl Iterator<Item = std::ops::Range<usize>> {
    let size = rollup.max(1);
    (0..entries)
        .step_by(size)
        .map(move |start| start..(start + size).min(entries))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_body_is_byte_exact() {
        let id = Uuid::parse_str("7d1d0d6c-35c3-4d8a-9a8b-0a5f1c2e3b4d").unwrap();
        let cb = Callback::new("http://notifier:6060/notifier/api/v1/notification");
        assert_eq!(
            String::from_utf8(cb.body(id)).unwrap(),
            "{\"callback\":\"http://notifier:6060/notifier/api/v1/notification/7d1d0d6c-35c3-4d8a-9a8b-0a5f1c2e3b4d\",\"notification_id\":\"7d1d0d6c-35c3-4d8a-9a8b-0a5f1c2e3b4d\"}"
        );
    }

    #[test]
    fn callback_keeps_an_existing_trailing_slash() {
        let id = Uuid::nil();
        let a = Callback::new("http://x/notification/");
        let b = Callback::new("http://x/notification");
        assert_eq!(a, b);
        assert_eq!(
            a.url(id),
            "http://x/notification/00000000-0000-0000-0000-000000000000"
        );
    }

    #[test]
    fn rollup_message_counts_match_clair() {
        // (entries, rollup, messages) from the wire reference §2.3.
        for (n, r, m) in [
            (1, 0, 1),
            (5, 1, 5),
            (5, 10, 1),
            (7, 3, 3),
            (8, 3, 3),
            (7, 4, 2),
            (1000, 100, 10),
        ] {
            let blocks: Vec<_> = rollup_blocks(n, r).collect();
            assert_eq!(blocks.len(), m, "{n} entries / rollup {r}");
            // Blocks tile 0..n exactly, in order.
            let mut next = 0;
            for b in &blocks {
                assert_eq!(b.start, next);
                assert!(!b.is_empty() && b.len() <= r.max(1));
                next = b.end;
            }
            assert_eq!(next, n);
        }
        assert_eq!(rollup_blocks(0, 3).count(), 0);
    }

    #[test]
    fn delivery_result_accessors() {
        let f = DeliveryResult::Failed {
            status: Some(503),
            error: "x".into(),
            retry_after: None,
            permanent: false,
        };
        assert_eq!(f.status(), Some(503));
        assert!(!f.is_delivered());
        assert!(DeliveryResult::DeliveredAndDeleted { status: None }.is_delivered());
    }
}
