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
//! - **Brokers confirm, or the set is not delivered.** The AMQP and STOMP channels count a set as
//!   delivered only once the broker has acknowledged every message of it (publisher confirms;
//!   STOMP receipts). Both keep their broker connections between deliveries, hand each delivery a
//!   connection or channel of its own, and fail over across the configured brokers in order.
//!
//! Modules: [`webhook`] (Clair-compatible webhook channel), [`amqp`] and [`stomp`] (the broker
//! channels), [`jwt`] (PSK signer and verifier), [`retry`] (backoff), [`worker`] (outbox driver).
#![deny(missing_docs)]

use std::time::Duration;

use async_trait::async_trait;
use tocsin_model::notification::Notification;
use uuid::Uuid;

pub mod amqp;
pub mod jwt;
pub mod retry;
pub mod stomp;
pub mod webhook;
pub mod webhook_v2;
pub mod worker;

pub use amqp::{redact as redact_url, AmqpConfig, AmqpDeliverer, AmqpExchange};
pub use jwt::{JwtError, PskKey};
pub use retry::{Jitter, RetryPolicy};
pub use stomp::{StompConfig, StompDeliverer};
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
    /// A TLS file (root CA, client certificate or key) could not be used.
    #[error("{channel} TLS: {path}: {message}")]
    Tls {
        /// The channel kind.
        channel: &'static str,
        /// The file at fault.
        path: std::path::PathBuf,
        /// What was wrong with it.
        message: String,
    },
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] tocsin_store::StoreError),
}

/// What a broker channel publishes for a set (Clair's `callback` and `direct` settings).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BrokerMode {
    /// One message per set carrying the callback JSON ([`Callback::body`]).
    Callback(Callback),
    /// The set's entries themselves, `rollup` per message ([`rollup_blocks`], [`direct_body`]).
    Direct {
        /// Entries per message; 0 and 1 both mean one.
        rollup: usize,
    },
}

/// Certificates for a TLS connection to a broker (Clair's `tls {root_ca, cert, key}`), as paths to
/// PEM files; read when the deliverer is built so that a bad file is a start-up error.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// Extra root certificate(s) to trust, beside the system's.
    pub root_ca: Option<std::path::PathBuf>,
    /// Client certificate chain and private key, for mutual TLS.
    pub identity: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

/// The PEM contents of [`TlsFiles`], checked to hold what their role needs. `Debug` shows sizes
/// only: the identity holds a private key.
#[derive(Clone)]
pub(crate) struct TlsPem {
    pub(crate) root_ca: Option<Vec<u8>>,
    pub(crate) identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for TlsPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsPem")
            .field("root_ca", &self.root_ca.as_ref().map(Vec::len))
            .field(
                "identity",
                &self
                    .identity
                    .as_ref()
                    .map(|(cert, _)| (cert.len(), "<private key redacted>")),
            )
            .finish()
    }
}

impl TlsFiles {
    /// Reads and checks the files: the root CA and certificate must hold at least one
    /// certificate, the key exactly one private key.
    pub(crate) fn load(&self, channel: &'static str) -> Result<TlsPem, DeliverError> {
        let read = |path: &std::path::Path| {
            std::fs::read(path).map_err(|e| DeliverError::Tls {
                channel,
                path: path.to_owned(),
                message: format!("cannot be read: {e}"),
            })
        };
        let certs = |path: &std::path::Path, pem: &[u8]| {
            let n = rustls_pemfile::certs(&mut &pem[..])
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| DeliverError::Tls {
                    channel,
                    path: path.to_owned(),
                    message: format!("is not valid PEM: {e}"),
                })?
                .len();
            if n == 0 {
                return Err(DeliverError::Tls {
                    channel,
                    path: path.to_owned(),
                    message: "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
                });
            }
            Ok(())
        };
        let root_ca = match &self.root_ca {
            Some(path) => {
                let pem = read(path)?;
                certs(path, &pem)?;
                Some(pem)
            }
            None => None,
        };
        let identity = match &self.identity {
            Some((cert_path, key_path)) => {
                let cert = read(cert_path)?;
                certs(cert_path, &cert)?;
                let key = read(key_path)?;
                match rustls_pemfile::private_key(&mut &key[..]) {
                    Ok(Some(_)) => {}
                    Ok(None) => {
                        return Err(DeliverError::Tls {
                            channel,
                            path: key_path.clone(),
                            message: "holds no PEM private key (PKCS#8, PKCS#1 or SEC1)".into(),
                        })
                    }
                    Err(e) => {
                        return Err(DeliverError::Tls {
                            channel,
                            path: key_path.clone(),
                            message: format!("is not valid PEM: {e}"),
                        })
                    }
                }
                Some((cert, key))
            }
            None => None,
        };
        Ok(TlsPem { root_ca, identity })
    }
}

/// The body of one direct-mode message: the entries as a JSON array followed by `\n`, as Clair's
/// `json.Encoder` writes it (an array even for one entry).
pub fn direct_body(entries: &[Notification]) -> Result<Vec<u8>, serde_json::Error> {
    let mut body = serde_json::to_vec(entries)?;
    body.push(b'\n');
    Ok(body)
}

/// The messages direct mode sends for `entries`: one [`direct_body`] per [`rollup_blocks`] block.
pub fn direct_messages(
    entries: &[Notification],
    rollup: usize,
) -> Result<Vec<Vec<u8>>, serde_json::Error> {
    rollup_blocks(entries.len(), rollup)
        .map(|r| direct_body(&entries[r]))
        .collect()
}

/// The bodies a broker channel publishes for `set` in `mode`, or the reason it cannot.
pub(crate) fn broker_messages(
    mode: &BrokerMode,
    set: &SetToDeliver,
) -> Result<Vec<Vec<u8>>, String> {
    match mode {
        BrokerMode::Callback(cb) => Ok(vec![cb.body(set.id)]),
        BrokerMode::Direct { rollup } => {
            let entries = set.entries.as_deref().ok_or_else(|| {
                format!(
                    "set {}: direct mode was handed no entries (worker bug)",
                    set.id
                )
            })?;
            direct_messages(entries, *rollup)
                .map_err(|e| format!("set {}: encoding entries as JSON: {e}", set.id))
        }
    }
}

/// A failed attempt that a retry may fix.
pub(crate) fn failed(error: String) -> DeliveryResult {
    DeliveryResult::Failed {
        status: None,
        error,
        retry_after: None,
        permanent: false,
    }
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

    /// No configuration type shows a secret when formatted with `Debug` (the way they would
    /// reach a log line or an error).
    #[test]
    fn debug_output_of_every_configuration_hides_its_secrets() {
        let cb = || BrokerMode::Callback(Callback::new("http://tocsin/n"));
        let amqp = AmqpConfig::new(
            vec!["amqps://user:hunter2-amqp@rabbit:5671/%2f".into()],
            "r",
            cb(),
        );
        let mut stomp = StompConfig::new("/queue/q", vec![("broker".into(), 61613)], cb());
        stomp.login = Some(("user".into(), "hunter2-stomp".into()));
        let mut webhook =
            WebhookConfig::new("https://quay:hunter2-target@quay/notify", "http://tocsin/n");
        webhook
            .headers
            .insert("Authorization".into(), vec!["Basic hunter2-header".into()]);
        webhook.psk = Some(PskKey::from_bytes(b"hunter2-psk".to_vec()).unwrap());
        let mut legacy = webhook_v2::LegacyWebhookConfig::new("http://harbor:hunter2-v2@harbor/c");
        legacy.proxy = Some("http://proxy:hunter2-proxy@proxy:3128".into());
        let pem = TlsPem {
            root_ca: None,
            identity: Some((b"cert".to_vec(), b"hunter2-private-key".to_vec())),
        };
        for shown in [
            format!("{amqp:?}"),
            format!("{stomp:?}"),
            format!("{webhook:?}"),
            format!("{legacy:?}"),
            format!("{pem:?}"),
        ] {
            assert!(!shown.contains("hunter2"), "{shown}");
            // Nor its bytes, as a derived Debug of a Vec<u8> would print them.
            assert!(!shown.contains("104, 117, 110"), "{shown}");
        }
        assert!(format!("{amqp:?}").contains("amqps://user:***@rabbit:5671/%2f"));
        assert!(format!("{legacy:?}").contains("http://proxy:***@proxy:3128"));
    }

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
