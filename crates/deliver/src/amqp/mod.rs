//! The Clair-compatible AMQP 0-9-1 channel (wire reference §2.3), on [`lapin`].
//!
//! Messages go to `exchange.name` (empty: the default exchange) with `routing_key`, properties
//! `content_type: application/json` and `app_id: clairV4-notifier` as in Clair, plus
//! `delivery_mode: 2` (persistent; `1` when `tocsin.delivery.persistent` is false) and a `message_id` of
//! `<set id>` (callback mode) or `<set id>/<block index>` (direct mode), so that a consumer can
//! drop the duplicates an at-least-once retry may cause.
//!
//! - **Callback mode**: one message per set, the callback JSON ([`crate::Callback::body`]).
//! - **Direct mode**: the entries, [`rollup_blocks`](crate::rollup_blocks) per message, each a
//!   JSON array followed by `\n` ([`crate::direct_body`]); a delivered set ends as
//!   [`DeliveryResult::DeliveredAndDeleted`], as Clair marks it delivered and deletes it.
//!
//! # Why publisher confirms, not Clair's transaction
//! Clair publishes direct-mode messages inside an AMQP transaction and callback messages with no
//! acknowledgement at all, so a message lost by the broker goes unnoticed. A channel cannot be both
//! transactional and in confirm mode, and only confirms say that the broker took responsibility
//! for each message, so every channel here is in confirm mode and a set counts as delivered only
//! when the broker has acked **every** message of it. A nack, a returned (unroutable) message, a
//! closed channel or connection, or the attempt's `timeout` is a failed attempt that the worker
//! retries with backoff. Messages are published `mandatory`, so a routing key that reaches no
//! queue is a failed attempt rather than a silent drop. The price of confirms over a transaction
//! is that a retried direct-mode set may have had some of its messages routed already: delivery
//! is at-least-once, and `message_id` identifies the duplicates.
//!
//! # Connections
//! One connection is kept and shared, each delivery borrows a channel of its own from a pool (a
//! confirm-mode channel's acks are per channel, so deliveries never see each other's), and
//! returns it after a success. A failure discards the channel, and a dead connection is replaced
//! on the next delivery by trying `uris` in order (failover), so a broker restart costs the
//! attempts in flight, which are retried, and nothing else.
//!
//! Like Clair, the exchange is only declared passively, when it is named: tocsin never creates
//! or changes the consumer's topology, and a missing exchange is reported as such.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::publisher_confirm::Confirmation;
use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::Mutex;
use tracing::{debug, info, warn};

use crate::{
    broker_messages, failed, BrokerMode, DeliverError, Deliverer, DeliveryResult, SetToDeliver,
    TlsFiles,
};

/// Clair's `app_id` on every message.
pub const APP_ID: &str = "clairV4-notifier";

/// The exchange messages are published to (`notifier.amqp.exchange`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AmqpExchange {
    /// Exchange name; empty means the default exchange, where the routing key names a queue.
    pub name: String,
    /// Exchange type (`direct`, `fanout`, `topic`, `headers`), checked by the passive declare.
    pub kind: String,
    /// `durability`, checked by the passive declare.
    pub durable: bool,
    /// `auto_delete`, checked by the passive declare.
    pub auto_delete: bool,
}

/// Settings of an [`AmqpDeliverer`]. `Debug` hides the URIs' passwords.
#[derive(Clone)]
pub struct AmqpConfig {
    /// The channel name (outbox key), normally `amqp`.
    pub channel: String,
    /// Broker URLs (`amqp://user:pass@host:5672/vhost`, `amqps://…`), tried in order.
    pub uris: Vec<String>,
    /// The exchange.
    pub exchange: AmqpExchange,
    /// Routing key of every message; required, as in Clair.
    pub routing_key: String,
    /// Callback or direct mode.
    pub mode: BrokerMode,
    /// Certificates for `amqps://` brokers.
    pub tls: Option<TlsFiles>,
    /// Publish with `delivery_mode: 2` so that messages in durable queues survive a broker restart;
    /// `false` publishes with `delivery_mode: 1` (transient).
    pub persistent: bool,
    /// Time allowed to connect to one broker (TCP, TLS and the AMQP handshake).
    pub connect_timeout: Duration,
    /// Time allowed for one whole delivery, confirms included.
    pub timeout: Duration,
    /// The `connection_name` client property, shown by the broker's management tools.
    pub connection_name: String,
}

impl std::fmt::Debug for AmqpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let uris: Vec<String> = self.uris.iter().map(|u| redact(u)).collect();
        f.debug_struct("AmqpConfig")
            .field("channel", &self.channel)
            .field("uris", &uris)
            .field("exchange", &self.exchange)
            .field("routing_key", &self.routing_key)
            .field("mode", &self.mode)
            .field("tls", &self.tls)
            .field("persistent", &self.persistent)
            .field("connect_timeout", &self.connect_timeout)
            .field("timeout", &self.timeout)
            .field("connection_name", &self.connection_name)
            .finish()
    }
}

impl AmqpConfig {
    /// Settings with tocsin's defaults: persistent messages, 10 s to connect, 60 s per delivery.
    pub fn new(uris: Vec<String>, routing_key: impl Into<String>, mode: BrokerMode) -> Self {
        AmqpConfig {
            channel: "amqp".to_owned(),
            uris,
            exchange: AmqpExchange::default(),
            routing_key: routing_key.into(),
            mode,
            tls: None,
            persistent: true,
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(60),
            connection_name: "tocsin".to_owned(),
        }
    }

    fn validate(&self) -> Result<(), DeliverError> {
        let bad = |field: &str, message: String| {
            Err(DeliverError::Config {
                channel: "amqp",
                field: format!("amqp.{field}"),
                message,
            })
        };
        if self.uris.is_empty() {
            return bad("uris", "needs at least one broker URL".into());
        }
        for (i, uri) in self.uris.iter().enumerate() {
            if let Err(e) = uri.parse::<lapin::uri::AMQPUri>() {
                return bad(
                    &format!("uris[{i}]"),
                    format!("is not an amqp:// or amqps:// URL: {e}"),
                );
            }
        }
        if self.routing_key.is_empty() {
            return bad(
                "routing_key",
                "must be set (with the default exchange it names the queue)".into(),
            );
        }
        if self.routing_key.len() > 255 {
            return bad("routing_key", "is longer than AMQP's 255 bytes".into());
        }
        if self.exchange.name.len() > 255 {
            return bad("exchange.name", "is longer than AMQP's 255 bytes".into());
        }
        if !self.exchange.name.is_empty() && self.exchange.kind.is_empty() {
            return bad(
                "exchange.type",
                "must be set when exchange.name is (direct, fanout, topic or headers)".into(),
            );
        }
        if let BrokerMode::Callback(cb) = &self.mode {
            if cb.base().trim_end_matches('/').is_empty() {
                return bad("callback", "must be set unless direct is true".into());
            }
        }
        if self.connect_timeout.is_zero() || self.timeout.is_zero() {
            return bad(
                "timeout",
                "connect_timeout and timeout must be positive".into(),
            );
        }
        Ok(())
    }
}

#[derive(Clone, Default)]
struct AmqpTls {
    cert_chain: Option<String>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for AmqpTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The identity holds a private key.
        f.debug_struct("AmqpTls")
            .field("cert_chain", &self.cert_chain.as_ref().map(String::len))
            .field("identity", &self.identity.is_some())
            .finish()
    }
}

impl AmqpTls {
    /// lapin's TLS settings (its type is neither `Clone` nor reusable across connects).
    fn owned(&self) -> OwnedTLSConfig {
        OwnedTLSConfig {
            identity: self
                .identity
                .clone()
                .map(|(pem, key)| OwnedIdentity::PKCS8 { pem, key }),
            cert_chain: self.cert_chain.clone(),
        }
    }
}

/// Delivers notification sets to an AMQP 0-9-1 broker.
pub struct AmqpDeliverer {
    cfg: AmqpConfig,
    /// The root CA (PEM text) and client identity (PEM certificate, PEM key), read at start.
    tls: AmqpTls,
    connection: Mutex<Option<Arc<Connection>>>,
    idle: std::sync::Mutex<Vec<Channel>>,
}

impl std::fmt::Debug for AmqpDeliverer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URIs may hold passwords: show only the settings that cannot.
        f.debug_struct("AmqpDeliverer")
            .field("channel", &self.cfg.channel)
            .field("brokers", &self.cfg.uris.len())
            .field("exchange", &self.cfg.exchange.name)
            .field("routing_key", &self.cfg.routing_key)
            .finish_non_exhaustive()
    }
}

impl AmqpDeliverer {
    /// Validates `cfg` and reads its TLS files; does not connect (see
    /// [`Deliverer::health_check`]).
    pub fn new(cfg: AmqpConfig) -> Result<Self, DeliverError> {
        cfg.validate()?;
        let tls = match &cfg.tls {
            Some(files) => {
                let pem = files.load("amqp")?;
                let cert_chain = match pem.root_ca {
                    Some(bytes) => {
                        Some(String::from_utf8(bytes).map_err(|_| DeliverError::Tls {
                            channel: "amqp",
                            path: files.root_ca.clone().unwrap_or_default(),
                            message: "is not UTF-8 text".into(),
                        })?)
                    }
                    None => None,
                };
                AmqpTls {
                    identity: pem.identity,
                    cert_chain,
                }
            }
            None => AmqpTls::default(),
        };
        Ok(AmqpDeliverer {
            cfg,
            tls,
            connection: Mutex::new(None),
            idle: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// A broker URL with its password hidden, for messages.
    fn shown(&self, i: usize) -> String {
        redact(&self.cfg.uris[i])
    }

    async fn connect_one(&self, i: usize) -> Result<Connection, String> {
        let props = ConnectionProperties::default()
            .with_connection_name(self.cfg.connection_name.clone().into())
            .with_executor(tokio_executor_trait::Tokio::current())
            .with_reactor(tokio_reactor_trait::Tokio::current());
        let uri = &self.cfg.uris[i];
        let tls = self.tls.owned();
        match tokio::time::timeout(
            self.cfg.connect_timeout,
            Connection::connect_with_config(uri, props, tls),
        )
        .await
        {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(format!("{}: {e}", self.shown(i))),
            Err(_) => Err(format!(
                "{}: no connection within {:?}",
                self.shown(i),
                self.cfg.connect_timeout
            )),
        }
    }

    /// The shared connection, (re)established by trying the brokers in order.
    async fn connection(&self) -> Result<Arc<Connection>, String> {
        let mut slot = self.connection.lock().await;
        if let Some(c) = slot.as_ref() {
            if c.status().connected() {
                return Ok(c.clone());
            }
            warn!(channel = %self.cfg.channel, "AMQP connection lost; reconnecting");
        }
        *slot = None;
        self.lock_idle().clear();
        let mut errors = Vec::new();
        for i in 0..self.cfg.uris.len() {
            match self.connect_one(i).await {
                Ok(c) => {
                    info!(channel = %self.cfg.channel, broker = %self.shown(i), "connected to AMQP broker");
                    let c = Arc::new(c);
                    *slot = Some(c.clone());
                    return Ok(c);
                }
                Err(e) => {
                    debug!(channel = %self.cfg.channel, error = %e, "AMQP broker unavailable; trying the next");
                    errors.push(e);
                }
            }
        }
        Err(format!("no AMQP broker reachable: {}", errors.join("; ")))
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<Channel>> {
        // A panic while holding the pool leaves only a list of channels behind: still usable.
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A confirm-mode channel for one delivery, with the exchange checked.
    async fn channel(&self) -> Result<Channel, String> {
        loop {
            let Some(ch) = self.lock_idle().pop() else {
                break;
            };
            if ch.status().connected() {
                return Ok(ch);
            }
        }
        let conn = self.connection().await?;
        let ch = conn
            .create_channel()
            .await
            .map_err(|e| format!("opening a channel: {e}"))?;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| format!("enabling publisher confirms: {e}"))?;
        self.check_exchange(&ch).await?;
        Ok(ch)
    }

    async fn check_exchange(&self, ch: &Channel) -> Result<(), String> {
        let ex = &self.cfg.exchange;
        if ex.name.is_empty() {
            return Ok(());
        }
        let kind = match ex.kind.as_str() {
            "direct" => ExchangeKind::Direct,
            "fanout" => ExchangeKind::Fanout,
            "topic" => ExchangeKind::Topic,
            "headers" => ExchangeKind::Headers,
            other => ExchangeKind::Custom(other.to_owned()),
        };
        let opts = ExchangeDeclareOptions {
            passive: true,
            durable: ex.durable,
            auto_delete: ex.auto_delete,
            ..ExchangeDeclareOptions::default()
        };
        ch.exchange_declare(&ex.name, kind, opts, FieldTable::default())
            .await
            .map_err(|e| {
                format!(
                    "exchange {:?} (declared passively, it must exist): {e}",
                    ex.name
                )
            })
    }

    async fn publish(&self, ch: &Channel, set: &SetToDeliver) -> Result<usize, String> {
        let bodies = broker_messages(&self.cfg.mode, set)?;
        let direct = matches!(self.cfg.mode, BrokerMode::Direct { .. });
        let mut confirms = Vec::with_capacity(bodies.len());
        for (i, body) in bodies.iter().enumerate() {
            let id = if direct {
                format!("{}/{i}", set.id)
            } else {
                set.id.to_string()
            };
            // Explicit either way (1 = transient), so a consumer never has to guess the default.
            let props = BasicProperties::default()
                .with_content_type(ShortString::from("application/json"))
                .with_app_id(ShortString::from(APP_ID))
                .with_message_id(ShortString::from(id))
                .with_delivery_mode(if self.cfg.persistent { 2 } else { 1 });
            let confirm = ch
                .basic_publish(
                    &self.cfg.exchange.name,
                    &self.cfg.routing_key,
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    body,
                    props,
                )
                .await
                .map_err(|e| format!("publishing message {} of {}: {e}", i + 1, bodies.len()))?;
            confirms.push(confirm);
        }
        let n = confirms.len();
        for (i, confirm) in confirms.into_iter().enumerate() {
            match confirm.await {
                Ok(Confirmation::Ack(None)) => {}
                Ok(Confirmation::Ack(Some(ret))) => {
                    return Err(format!(
                        "message {} of {n} was returned by the broker as unroutable ({} {}): no queue is bound to exchange {:?} with routing key {:?}",
                        i + 1,
                        ret.reply_code,
                        ret.reply_text,
                        self.cfg.exchange.name,
                        self.cfg.routing_key
                    ))
                }
                Ok(Confirmation::Nack(_)) => {
                    return Err(format!("message {} of {n} was nacked by the broker", i + 1))
                }
                Ok(Confirmation::NotRequested) => {
                    return Err("the channel is not in confirm mode (tocsin bug)".into())
                }
                Err(e) => {
                    return Err(format!(
                        "waiting for the broker's confirm of message {} of {n}: {e}",
                        i + 1
                    ))
                }
            }
        }
        Ok(n)
    }

    async fn attempt(&self, set: &SetToDeliver) -> Result<usize, String> {
        let ch = self.channel().await?;
        match self.publish(&ch, set).await {
            Ok(n) => {
                self.lock_idle().push(ch);
                Ok(n)
            }
            Err(e) => {
                // The channel may hold unconfirmed messages or be closed by the broker: never
                // reuse it. Closing is best-effort, the broker frees it with the connection.
                if ch.status().connected() {
                    let _ = ch.close(200, "tocsin: delivery failed").await;
                }
                Err(e)
            }
        }
    }
}

#[async_trait]
impl Deliverer for AmqpDeliverer {
    fn channel(&self) -> &str {
        &self.cfg.channel
    }

    fn needs_entries(&self) -> bool {
        matches!(self.cfg.mode, BrokerMode::Direct { .. })
    }

    async fn deliver(&self, set: &SetToDeliver) -> DeliveryResult {
        match tokio::time::timeout(self.cfg.timeout, self.attempt(set)).await {
            Ok(Ok(messages)) => {
                debug!(channel = %self.cfg.channel, set = %set.id, messages, "set confirmed by the broker");
                if self.needs_entries() {
                    DeliveryResult::DeliveredAndDeleted { status: None }
                } else {
                    DeliveryResult::Delivered { status: None }
                }
            }
            Ok(Err(e)) => failed(e),
            Err(_) => failed(format!(
                "not confirmed by the broker within {:?}",
                self.cfg.timeout
            )),
        }
    }

    /// Connects and checks the exchange. A broker that answers but refuses us (credentials,
    /// vhost, TLS, missing exchange) is a configuration error and fails the start; brokers that
    /// are all unreachable only log a warning, because an outage must not stop the service:
    /// deliveries then fail, are recorded and retried.
    async fn health_check(&self) -> Result<(), DeliverError> {
        let mut reachable = false;
        for uri in &self.cfg.uris {
            if let Ok(parsed) = uri.parse::<lapin::uri::AMQPUri>() {
                let addr = (parsed.authority.host.as_str(), parsed.authority.port);
                if let Ok(Ok(_)) = tokio::time::timeout(
                    self.cfg.connect_timeout,
                    tokio::net::TcpStream::connect(addr),
                )
                .await
                {
                    reachable = true;
                    break;
                }
            }
        }
        if !reachable {
            warn!(channel = %self.cfg.channel, "no AMQP broker is reachable now; deliveries will be retried");
            return Ok(());
        }
        match self.channel().await {
            Ok(ch) => {
                self.lock_idle().push(ch);
                Ok(())
            }
            Err(message) => Err(DeliverError::Unhealthy {
                channel: self.cfg.channel.clone(),
                message,
            }),
        }
    }
}

/// `uri` with any password replaced, for logs and attempt errors.
pub fn redact(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{scheme}://{user}:***@{host}{path}")
        }
        None => uri.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Callback;

    fn cfg() -> AmqpConfig {
        AmqpConfig::new(
            vec!["amqp://guest:guest@127.0.0.1:5672/%2f".into()],
            "notifications",
            BrokerMode::Callback(Callback::new("http://tocsin/notifier/api/v1/notification")),
        )
    }

    fn field_of(r: Result<AmqpDeliverer, DeliverError>) -> String {
        match r {
            Err(DeliverError::Config { field, .. }) => field,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn validation_names_the_field() {
        AmqpDeliverer::new(cfg()).unwrap();
        let mut c = cfg();
        c.routing_key.clear();
        assert_eq!(field_of(AmqpDeliverer::new(c)), "amqp.routing_key");
        let mut c = cfg();
        c.uris.clear();
        assert_eq!(field_of(AmqpDeliverer::new(c)), "amqp.uris");
        let mut c = cfg();
        c.uris.push("http://x".into());
        assert_eq!(field_of(AmqpDeliverer::new(c)), "amqp.uris[1]");
        let mut c = cfg();
        c.exchange.name = "x".into();
        assert_eq!(field_of(AmqpDeliverer::new(c)), "amqp.exchange.type");
        let mut c = cfg();
        c.mode = BrokerMode::Callback(Callback::new(""));
        assert_eq!(field_of(AmqpDeliverer::new(c)), "amqp.callback");
    }

    #[test]
    fn tls_files_are_checked_at_construction() {
        let dir = tempfile::tempdir().unwrap();
        let not_pem = dir.path().join("ca.pem");
        std::fs::write(&not_pem, "hello").unwrap();
        let mut c = cfg();
        c.tls = Some(TlsFiles {
            root_ca: Some(not_pem.clone()),
            identity: None,
        });
        match AmqpDeliverer::new(c) {
            Err(DeliverError::Tls { path, message, .. }) => {
                assert_eq!(path, not_pem);
                assert!(message.contains("no PEM certificate"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let mut c = cfg();
        let missing = dir.path().join("missing.pem");
        c.tls = Some(TlsFiles {
            root_ca: Some(missing.clone()),
            identity: None,
        });
        match AmqpDeliverer::new(c) {
            Err(DeliverError::Tls { path, .. }) => assert_eq!(path, missing),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tls_config_carries_the_ca_and_the_identity() {
        let dir = tempfile::tempdir().unwrap();
        let ca = rcgen::generate_simple_self_signed(vec!["ca.test".into()]).unwrap();
        let client = rcgen::generate_simple_self_signed(vec!["client.test".into()]).unwrap();
        let (ca_path, cert_path, key_path) = (
            dir.path().join("ca.pem"),
            dir.path().join("cert.pem"),
            dir.path().join("key.pem"),
        );
        std::fs::write(&ca_path, ca.cert.pem()).unwrap();
        std::fs::write(&cert_path, client.cert.pem()).unwrap();
        std::fs::write(&key_path, client.key_pair.serialize_pem()).unwrap();
        let mut c = cfg();
        c.tls = Some(TlsFiles {
            root_ca: Some(ca_path),
            identity: Some((cert_path, key_path.clone())),
        });
        let d = AmqpDeliverer::new(c.clone()).unwrap();
        assert_eq!(d.tls.cert_chain.as_deref(), Some(ca.cert.pem().as_str()));
        match &d.tls.owned().identity {
            Some(OwnedIdentity::PKCS8 { pem, key }) => {
                assert_eq!(pem, client.cert.pem().as_bytes());
                assert_eq!(key, client.key_pair.serialize_pem().as_bytes());
            }
            other => panic!("{other:?}"),
        }
        // A certificate where the key belongs is refused, naming the key file.
        std::fs::write(&key_path, client.cert.pem()).unwrap();
        match AmqpDeliverer::new(c) {
            Err(DeliverError::Tls { path, message, .. }) => {
                assert_eq!(path, key_path);
                assert!(message.contains("private key"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn redaction_hides_passwords_only() {
        assert_eq!(
            redact("amqp://guest:secret@host:5672/%2f"),
            "amqp://guest:***@host:5672/%2f"
        );
        assert_eq!(redact("amqp://host:5672"), "amqp://host:5672");
        assert_eq!(redact("amqps://u:p@w@h/v"), "amqps://u:***@h/v");
    }
}
