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
//!
//! # Broker URIs
//! `uris` are read as Clair's AMQP library reads them ([`uri`]): `amqp://guest:guest@rabbitmq:5672/`
//! is the default vhost `/`, as are no path and `/%2f`; user, password and port default to
//! `guest`, `guest` and 5672 (5671 for `amqps`). A URI that cannot be used is refused when the
//! deliverer is built, naming its position (`amqp.uris[1]`) and never its password. lapin gets
//! the parsed fields, and a connect function of ours that applies the TLS settings below.
//!
//! # TLS: the `tls` section and the URI's query parameters
//! For an `amqps://` broker the URI's own parameters win over the `tls` section, one setting at
//! a time, because they are specific to that broker:
//! - **Trusted roots**: `cacertfile` → that file's certificates *only* (as amqp091-go does);
//!   otherwise `tls.root_ca` → the system's roots plus that file; otherwise the system's roots.
//! - **Client certificate**: `certfile` *and* `keyfile` → that pair; otherwise `tls.cert`/`tls.key`
//!   if set; otherwise none. One of `certfile`/`keyfile` without the other is ignored, as in
//!   amqp091-go, with a warning.
//! - **Server name** (SNI, and the name the certificate must carry): `server_name_indication`,
//!   otherwise the URI's host.
//!
//! Clair differs when both are given: any `tls` section makes it ignore the URI's parameters
//! entirely. tocsin logs a warning at start for each URI whose parameters override the section,
//! and for TLS parameters on `amqp://` URIs, which are ignored (no TLS), as in Clair.

pub mod uri;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::publisher_confirm::Confirmation;
use lapin::tcp::{HandshakeResult, RustlsConnector, TcpStream};
use lapin::types::{FieldTable, ShortString};
use lapin::uri::AMQPUri;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::Mutex;
use tracing::{debug, info, warn};

use crate::{
    broker_messages, failed, BrokerMode, DeliverError, Deliverer, DeliveryResult, SetToDeliver,
    TlsFiles,
};
use uri::BrokerUri;

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
    /// Broker URIs (`amqp://user:pass@host:5672/vhost`, `amqps://…`), tried in order; read
    /// as Clair reads them ([`uri`]).
    pub uris: Vec<String>,
    /// The exchange.
    pub exchange: AmqpExchange,
    /// Routing key of every message; required, as in Clair.
    pub routing_key: String,
    /// Callback or direct mode.
    pub mode: BrokerMode,
    /// Certificates for `amqps://` brokers; a URI's TLS query parameters take precedence (module
    /// documentation).
    pub tls: Option<TlsFiles>,
    /// Publish with `delivery_mode: 2` so that messages in durable queues survive a broker restart;
    /// `false` publishes with `delivery_mode: 1` (transient).
    pub persistent: bool,
    /// Time allowed to connect to one broker (TCP, TLS and the AMQP handshake); a URI's
    /// `connection_timeout` replaces it for that broker.
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

    /// Checks the settings and parses the URIs.
    fn validate(&self) -> Result<Vec<BrokerUri>, DeliverError> {
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
        let mut uris = Vec::with_capacity(self.uris.len());
        for (i, text) in self.uris.iter().enumerate() {
            match BrokerUri::parse(text) {
                Ok(uri) => uris.push(uri),
                Err(e) => return bad(&format!("uris[{i}]"), e.to_string()),
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
        Ok(uris)
    }
}

/// One broker of `uris`, ready to connect to.
struct Broker {
    uri: BrokerUri,
    /// TLS for an `amqps://` broker: the connector and the server name to verify.
    tls: Option<(RustlsConnector, String)>,
    /// The URI's `connection_timeout`, else [`AmqpConfig::connect_timeout`].
    connect_timeout: Duration,
}

/// The TLS settings one `amqps://` broker gets (module documentation, "TLS").
#[derive(Clone, Debug, PartialEq, Eq)]
struct TlsPlan {
    /// The root CA file and client identity to load.
    files: TlsFiles,
    /// Whether the system's roots are trusted besides `files.root_ca`.
    system_roots: bool,
    /// The SNI name, which the server's certificate must carry.
    server_name: String,
}

/// Combines `uri`'s TLS query parameters with the `tls` section; also returns what should be
/// logged as a warning (overrides and ignored parameters).
fn tls_plan(
    i: usize,
    uri: &BrokerUri,
    section: Option<&TlsFiles>,
) -> (Option<TlsPlan>, Vec<String>) {
    let q = &uri.tls;
    let mut notes = Vec::new();
    if !uri.is_tls() {
        if !q.is_empty() {
            notes.push(format!(
                "amqp.uris[{i}] is amqp:// (no TLS): its certfile/keyfile/cacertfile/server_name_indication parameters are ignored, as in Clair"
            ));
        }
        return (None, notes);
    }
    let mut files = section.cloned().unwrap_or_default();
    let mut system_roots = true;
    if let Some(ca) = &q.cacertfile {
        files.root_ca = Some(ca.clone());
        system_roots = false;
    }
    match (&q.certfile, &q.keyfile) {
        (Some(cert), Some(key)) => files.identity = Some((cert.clone(), key.clone())),
        (None, None) => {}
        _ => notes.push(format!(
            "amqp.uris[{i}]: certfile and keyfile only work together; the one given is ignored, as in Clair"
        )),
    }
    if section.is_some() && !q.is_empty() {
        notes.push(format!(
            "amqp.uris[{i}]: its TLS query parameters take precedence over notifier.amqp.tls for this broker (Clair ignores them whenever a tls section is set)"
        ));
    }
    let server_name = q.server_name.clone().unwrap_or_else(|| uri.host.clone());
    let plan = TlsPlan {
        files,
        system_roots,
        server_name,
    };
    (Some(plan), notes)
}

impl Broker {
    fn new(i: usize, uri: BrokerUri, cfg: &AmqpConfig) -> Result<Broker, DeliverError> {
        let (plan, notes) = tls_plan(i, &uri, cfg.tls.as_ref());
        for note in notes {
            warn!(channel = %cfg.channel, "{note}");
        }
        let tls = match plan {
            Some(plan) => {
                let config =
                    crate::stomp::rustls_config_with_roots(&plan.files, "amqp", plan.system_roots)?;
                if tokio_rustls::rustls::pki_types::ServerName::try_from(plan.server_name.as_str())
                    .is_err()
                {
                    return Err(DeliverError::Config {
                        channel: "amqp",
                        field: format!("amqp.uris[{i}]"),
                        message: format!(
                            "TLS server name {:?} is neither a DNS name nor an IP address",
                            plan.server_name
                        ),
                    });
                }
                Some((RustlsConnector::from(config), plan.server_name))
            }
            None => None,
        };
        Ok(Broker {
            connect_timeout: uri.connection_timeout.unwrap_or(cfg.connect_timeout),
            uri,
            tls,
        })
    }

    /// The broker for messages: its URI without the password, and the vhost spelt out.
    fn shown(&self) -> String {
        format!("{} (vhost {:?})", self.uri, self.uri.vhost)
    }

    /// lapin's URI, with the connect timeout the TCP connection must also respect.
    fn lapin_uri(&self) -> AMQPUri {
        let mut uri = self.uri.to_lapin();
        uri.query.connection_timeout =
            Some(u64::try_from(self.connect_timeout.as_millis()).unwrap_or(u64::MAX));
        uri
    }
}

/// The function lapin calls (on its I/O thread) to open the socket: TCP within the URI's
/// `connection_timeout`, then, for `amqps://`, the TLS handshake with `tls`'s connector and
/// server name; the same steps as lapin's own, with the TLS settings of [`tls_plan`].
// The large error type is lapin's (`HandshakeResult`), not ours to box.
#[allow(clippy::result_large_err)]
fn connect_fn(
    tls: Option<(RustlsConnector, String)>,
) -> Box<dyn Fn(&AMQPUri) -> HandshakeResult + Send + Sync> {
    Box::new(move |uri: &AMQPUri| {
        let addr = (uri.authority.host.as_str(), uri.authority.port);
        let stream = match uri.query.connection_timeout {
            Some(ms) => TcpStream::connect_timeout(addr, Duration::from_millis(ms))?,
            None => TcpStream::connect(addr)?,
        };
        let stream = match &tls {
            Some((connector, server_name)) => stream.into_rustls(connector, server_name)?,
            None => stream,
        };
        stream.set_nonblocking(true)?;
        Ok(stream)
    })
}

/// Delivers notification sets to an AMQP 0-9-1 broker.
pub struct AmqpDeliverer {
    cfg: AmqpConfig,
    /// `cfg.uris`, parsed, with their TLS settings read at start.
    brokers: Vec<Broker>,
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
    /// Validates `cfg`, parses its URIs and reads their TLS files; does not connect (see
    /// [`Deliverer::health_check`]).
    pub fn new(cfg: AmqpConfig) -> Result<Self, DeliverError> {
        let uris = cfg.validate()?;
        // The section's files are checked even when no URI is amqps://, as a typo in a path is
        // better reported at start than when a TLS broker is added.
        if let Some(files) = &cfg.tls {
            files.load("amqp")?;
        }
        let brokers = uris
            .into_iter()
            .enumerate()
            .map(|(i, uri)| Broker::new(i, uri, &cfg))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AmqpDeliverer {
            cfg,
            brokers,
            connection: Mutex::new(None),
            idle: std::sync::Mutex::new(Vec::new()),
        })
    }

    async fn connect_one(&self, broker: &Broker) -> Result<Connection, String> {
        let props = ConnectionProperties::default()
            .with_connection_name(self.cfg.connection_name.clone().into())
            .with_executor(tokio_executor_trait::Tokio::current())
            .with_reactor(tokio_reactor_trait::Tokio::current());
        let connect =
            Connection::connector(broker.lapin_uri(), connect_fn(broker.tls.clone()), props);
        match tokio::time::timeout(broker.connect_timeout, connect).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(format!("{}: {e}", broker.shown())),
            Err(_) => Err(format!(
                "{}: no connection within {:?}",
                broker.shown(),
                broker.connect_timeout
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
        for broker in &self.brokers {
            match self.connect_one(broker).await {
                Ok(c) => {
                    info!(channel = %self.cfg.channel, broker = %broker.shown(), "connected to AMQP broker");
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
        Err(format!(
            "no AMQP broker could be connected to: {}",
            errors.join("; ")
        ))
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
        for broker in &self.brokers {
            let addr = (broker.uri.host.as_str(), broker.uri.port);
            if let Ok(Ok(_)) =
                tokio::time::timeout(broker.connect_timeout, tokio::net::TcpStream::connect(addr))
                    .await
            {
                reachable = true;
                break;
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
    use std::path::PathBuf;

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

    /// A CA, a client certificate and its key, as PEM files in `dir`.
    fn pem_files(dir: &std::path::Path) -> (PathBuf, PathBuf, PathBuf) {
        let ca = rcgen::generate_simple_self_signed(vec!["ca.test".into()]).unwrap();
        let client = rcgen::generate_simple_self_signed(vec!["client.test".into()]).unwrap();
        let (ca_path, cert_path, key_path) = (
            dir.join("ca.pem"),
            dir.join("cert.pem"),
            dir.join("key.pem"),
        );
        std::fs::write(&ca_path, ca.cert.pem()).unwrap();
        std::fs::write(&cert_path, client.cert.pem()).unwrap();
        std::fs::write(&key_path, client.key_pair.serialize_pem()).unwrap();
        (ca_path, cert_path, key_path)
    }

    #[test]
    fn tls_files_and_uri_parameters_build_a_connector_or_name_the_bad_file() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, cert, key) = pem_files(dir.path());
        let mut c = cfg();
        c.uris = vec![
            "amqps://u:p@broker.test/%2f".into(),
            format!(
                "amqps://u:p@[::1]/?cacertfile={}&certfile={}&keyfile={}&server_name_indication=rabbit.test",
                ca.display(),
                cert.display(),
                key.display()
            ),
            "amqp://u:p@plain.test/".into(),
        ];
        c.tls = Some(TlsFiles {
            root_ca: Some(ca.clone()),
            identity: Some((cert.clone(), key.clone())),
        });
        let d = AmqpDeliverer::new(c.clone()).unwrap();
        let names: Vec<_> = d
            .brokers
            .iter()
            .map(|b| b.tls.as_ref().map(|(_, name)| name.as_str()))
            .collect();
        assert_eq!(names, [Some("broker.test"), Some("rabbit.test"), None]);
        // A certificate where the key belongs is refused, naming the key file.
        std::fs::write(&key, std::fs::read(&cert).unwrap()).unwrap();
        match AmqpDeliverer::new(c) {
            Err(DeliverError::Tls { path, message, .. }) => {
                assert_eq!(path, key);
                assert!(message.contains("private key"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        // So is a missing cacertfile named in a URI (the section has none).
        let mut c = cfg();
        let missing = dir.path().join("missing-ca.pem");
        c.uris = vec![format!("amqps://h/?cacertfile={}", missing.display())];
        match AmqpDeliverer::new(c) {
            Err(DeliverError::Tls { path, .. }) => assert_eq!(path, missing),
            other => panic!("{other:?}"),
        }
        // And a server name rustls cannot use.
        let mut c = cfg();
        c.uris = vec!["amqps://h/?server_name_indication=not%20a%20name".into()];
        assert_eq!(field_of(AmqpDeliverer::new(c)), "amqp.uris[0]");
    }

    #[test]
    fn uri_tls_parameters_win_over_the_section_one_setting_at_a_time() {
        let section = TlsFiles {
            root_ca: Some("/section/ca.pem".into()),
            identity: Some(("/section/cert.pem".into(), "/section/key.pem".into())),
        };
        let plan = |uri: &str, section: Option<&TlsFiles>| {
            tls_plan(3, &BrokerUri::parse(uri).unwrap(), section)
        };
        // The section alone: system roots plus its CA, its identity, the host as server name.
        let (p, notes) = plan("amqps://broker:5671/", Some(&section));
        assert_eq!(
            p,
            Some(TlsPlan {
                files: section.clone(),
                system_roots: true,
                server_name: "broker".into(),
            })
        );
        assert!(notes.is_empty(), "{notes:?}");
        // cacertfile replaces root_ca and the system roots; the identity stays the section's.
        let (p, notes) = plan("amqps://broker/?cacertfile=/uri/ca.pem", Some(&section));
        let p = p.unwrap();
        assert_eq!(p.files.root_ca, Some("/uri/ca.pem".into()));
        assert!(!p.system_roots);
        assert_eq!(p.files.identity, section.identity);
        assert_eq!(notes.len(), 1, "the override is logged: {notes:?}");
        assert!(notes[0].contains("amqp.uris[3]") && notes[0].contains("precedence"));
        // certfile and keyfile together replace the identity; the server name is the URI's.
        let (p, _) = plan(
            "amqps://10.0.0.5/?certfile=/uri/c.pem&keyfile=/uri/k.pem&server_name_indication=rabbit.internal",
            Some(&section),
        );
        let p = p.unwrap();
        assert_eq!(
            p.files.identity,
            Some(("/uri/c.pem".into(), "/uri/k.pem".into()))
        );
        assert_eq!(p.files.root_ca, section.root_ca);
        assert!(p.system_roots);
        assert_eq!(p.server_name, "rabbit.internal");
        // One of the pair alone is ignored (as in amqp091-go), with a warning.
        let (p, notes) = plan("amqps://broker/?certfile=/uri/c.pem", None);
        assert_eq!(p.unwrap().files, TlsFiles::default());
        assert!(notes[0].contains("only work together"), "{notes:?}");
        // No section, no parameters: the system roots, no identity.
        let (p, notes) = plan("amqps://broker/", None);
        assert_eq!(
            p,
            Some(TlsPlan {
                files: TlsFiles::default(),
                system_roots: true,
                server_name: "broker".into(),
            })
        );
        assert!(notes.is_empty());
        // amqp:// gets no TLS; its TLS parameters are ignored with a warning.
        let (p, notes) = plan("amqp://broker/?cacertfile=/uri/ca.pem", Some(&section));
        assert_eq!(p, None);
        assert!(notes[0].contains("ignored"), "{notes:?}");
    }

    #[test]
    fn bad_uris_are_refused_naming_their_position_without_the_password() {
        let mut c = cfg();
        c.uris.push("amqp://guest:hunter2@rabbitmq:99999/".into());
        match AmqpDeliverer::new(c) {
            Err(e @ DeliverError::Config { .. }) => {
                let text = e.to_string();
                assert!(text.contains("amqp.uris[1]"), "{text}");
                assert!(text.contains("port"), "{text}");
                assert!(!text.contains("hunter2"), "{text}");
            }
            other => panic!("{other:?}"),
        }
        // Clair's own form is fine, and means the default vhost.
        let mut c = cfg();
        c.uris = vec!["amqp://guest:guest@rabbitmq:5672/".into()];
        let d = AmqpDeliverer::new(c).unwrap();
        assert_eq!(d.brokers[0].uri.vhost, "/");
        assert_eq!(
            d.brokers[0].shown(),
            "amqp://guest:***@rabbitmq:5672/%2F (vhost \"/\")"
        );
        // A URI's connection_timeout replaces the configured one for that broker only.
        let mut c = cfg();
        c.uris = vec![
            "amqp://a/?connection_timeout=1500".into(),
            "amqp://b/".into(),
        ];
        let d = AmqpDeliverer::new(c).unwrap();
        assert_eq!(d.brokers[0].connect_timeout, Duration::from_millis(1500));
        assert_eq!(
            d.brokers[0].lapin_uri().query.connection_timeout,
            Some(1500)
        );
        assert_eq!(d.brokers[1].connect_timeout, Duration::from_secs(10));
        assert_eq!(
            d.brokers[1].lapin_uri().query.connection_timeout,
            Some(10_000)
        );
    }
}
