//! The Clair-compatible STOMP 1.2 channel (wire reference §2.4), with its own small client.
//!
//! - **Callback mode**: one `SEND` to `destination` with `content-type: application/json`, the
//!   callback JSON as body and a `receipt` header; the set is delivered when the RECEIPT arrives.
//! - **Direct mode**: `BEGIN`, one `SEND` per [`rollup_blocks`](crate::rollup_blocks) block (a
//!   JSON array followed by `\n`), then `COMMIT` with a receipt; the set is delivered (and, as in
//!   Clair, deleted: [`DeliveryResult::DeliveredAndDeleted`]) when the COMMIT's RECEIPT arrives.
//!   On any failure before that, `ABORT` is sent (best-effort) so the broker drops the
//!   transaction's messages, and the attempt fails and is retried whole.
//!
//! Unlike Clair, `login` and `passcode` are sent. Messages carry `persistent:true` unless
//! configured otherwise (RabbitMQ and ActiveMQ both honour it) and a `message-id`-like
//! `tocsin-message-id` header (`<set id>` or `<set id>/<block>`) so that consumers can recognise
//! duplicates. The CONNECT `host` header is the virtual host, `/` by default: RabbitMQ maps it to
//! a vhost and refuses unknown ones (a broker's hostname usually is one), ActiveMQ ignores it.
//!
//! Brokers in `uris` are tried in order. Each delivery uses a connection of its own from a pool
//! (so a transaction never interleaves with another delivery's frames); a connection goes back to
//! the pool only after a successful delivery, and a dead one is never reused.
//!
//! # Why a hand-written client
//! tocsin needs receipts, transactions, heart-beats and rustls TLS together on current tokio, and
//! no widely used, actively maintained STOMP client crate offers that set (this was not surveyed
//! exhaustively). STOMP 1.2 is a small text protocol, so
//! [`frame`] (codec with 1.2 escaping, content-length bodies) and [`client`] (CONNECT, receipts,
//! subscriptions, heart-beats, ERROR frames) implement exactly what tocsin needs, with tests.

pub mod client;
pub mod frame;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tracing::{debug, info, warn};

pub use client::{ConnectOptions, StompConnection, StompError};
pub use frame::Frame;

use crate::{
    broker_messages, failed, BrokerMode, DeliverError, Deliverer, DeliveryResult, SetToDeliver,
    TlsFiles,
};

/// Settings of a [`StompDeliverer`]. `Debug` hides the passcode.
#[derive(Clone)]
pub struct StompConfig {
    /// The channel name (outbox key), normally `stomp`.
    pub channel: String,
    /// Where messages are sent (`/queue/…`, `/topic/…`, `/exchange/…` for RabbitMQ).
    pub destination: String,
    /// Brokers as (host, port), tried in order.
    pub uris: Vec<(String, u16)>,
    /// Callback or direct mode.
    pub mode: BrokerMode,
    /// `login` and `passcode`.
    pub login: Option<(String, String)>,
    /// When set, connections use TLS with these certificates (and the system's roots).
    pub tls: Option<TlsFiles>,
    /// The CONNECT `host` header (virtual host).
    pub vhost: String,
    /// Send `persistent:true` on every message.
    pub persistent: bool,
    /// Heart-beats offered: (send every, want every).
    pub heartbeat: (Duration, Duration),
    /// Time allowed to connect to one broker.
    pub connect_timeout: Duration,
    /// Time allowed for one whole delivery, receipt included.
    pub timeout: Duration,
}

impl std::fmt::Debug for StompConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StompConfig")
            .field("channel", &self.channel)
            .field("destination", &self.destination)
            .field("uris", &self.uris)
            .field("mode", &self.mode)
            .field(
                "login",
                &self.login.as_ref().map(|(login, _)| (login, "<redacted>")),
            )
            .field("tls", &self.tls)
            .field("vhost", &self.vhost)
            .field("persistent", &self.persistent)
            .field("heartbeat", &self.heartbeat)
            .field("connect_timeout", &self.connect_timeout)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl StompConfig {
    /// Settings with tocsin's defaults: vhost `/`, persistent messages, 10 s heart-beats both
    /// ways, 10 s to connect, 60 s per delivery.
    pub fn new(destination: impl Into<String>, uris: Vec<(String, u16)>, mode: BrokerMode) -> Self {
        StompConfig {
            channel: "stomp".to_owned(),
            destination: destination.into(),
            uris,
            mode,
            login: None,
            tls: None,
            vhost: "/".to_owned(),
            persistent: true,
            heartbeat: (Duration::from_secs(10), Duration::from_secs(10)),
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(60),
        }
    }

    fn validate(&self) -> Result<(), DeliverError> {
        let bad = |field: &str, message: &str| {
            Err(DeliverError::Config {
                channel: "stomp",
                field: format!("stomp.{field}"),
                message: message.to_owned(),
            })
        };
        if self.destination.is_empty() {
            return bad("destination", "must be set");
        }
        if self.destination.contains('\0') {
            return bad("destination", "must not contain NUL");
        }
        if self.uris.is_empty() {
            return bad("uris", "needs at least one broker (host:port)");
        }
        if let Some(i) = self.uris.iter().position(|(h, p)| h.is_empty() || *p == 0) {
            return bad(&format!("uris[{i}]"), "needs a host and a non-zero port");
        }
        if let Some((l, p)) = &self.login {
            if [l, p].iter().any(|s| s.contains(['\n', '\r', '\0'])) {
                return bad("user", "login and passcode cannot hold line breaks or NUL");
            }
        }
        if let BrokerMode::Callback(cb) = &self.mode {
            if cb.base().trim_end_matches('/').is_empty() {
                return bad("callback", "must be set unless direct is true");
            }
        }
        if self.connect_timeout.is_zero() || self.timeout.is_zero() {
            return bad("timeout", "connect_timeout and timeout must be positive");
        }
        Ok(())
    }
}

/// Builds the rustls configuration: the system's roots plus `root_ca`, and the client identity.
pub(crate) fn rustls_config(
    files: &TlsFiles,
    channel: &'static str,
) -> Result<tokio_rustls::rustls::ClientConfig, DeliverError> {
    rustls_config_with_roots(files, channel, true)
}

/// [`rustls_config`], trusting the system's roots only when `system_roots` is set (AMQP's
/// `cacertfile` URI parameter trusts its file alone, as amqp091-go does).
pub(crate) fn rustls_config_with_roots(
    files: &TlsFiles,
    channel: &'static str,
    system_roots: bool,
) -> Result<tokio_rustls::rustls::ClientConfig, DeliverError> {
    use tokio_rustls::rustls;
    let pem = files.load(channel)?;
    let tls_err = |path: &Option<std::path::PathBuf>, message: String| DeliverError::Tls {
        channel,
        path: path.clone().unwrap_or_default(),
        message,
    };
    let mut roots = rustls::RootCertStore::empty();
    // The system store may be missing or partly unreadable in minimal containers; a configured
    // root_ca is then all we trust, and a handshake error says so.
    if system_roots {
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
    }
    if let Some(ca) = &pem.root_ca {
        for cert in rustls_pemfile::certs(&mut &ca[..]) {
            let cert = cert.map_err(|e| tls_err(&files.root_ca, e.to_string()))?;
            roots.add(cert).map_err(|e| {
                tls_err(&files.root_ca, format!("not a usable CA certificate: {e}"))
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(&None, e.to_string()))?
        .with_root_certificates(roots);
    match (&pem.identity, &files.identity) {
        (Some((cert, key)), Some((cert_path, key_path))) => {
            let chain = rustls_pemfile::certs(&mut &cert[..])
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| tls_err(&Some(cert_path.clone()), e.to_string()))?;
            let key = rustls_pemfile::private_key(&mut &key[..])
                .map_err(|e| tls_err(&Some(key_path.clone()), e.to_string()))?
                .ok_or_else(|| tls_err(&Some(key_path.clone()), "holds no private key".into()))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                tls_err(
                    &Some(key_path.clone()),
                    format!("does not fit the certificate: {e}"),
                )
            })
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

/// Delivers notification sets to a STOMP 1.2 broker.
#[derive(Debug)]
pub struct StompDeliverer {
    cfg: StompConfig,
    tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
    idle: std::sync::Mutex<Vec<StompConnection>>,
}

impl StompDeliverer {
    /// Validates `cfg` and prepares TLS; does not connect.
    pub fn new(cfg: StompConfig) -> Result<Self, DeliverError> {
        cfg.validate()?;
        let tls = match &cfg.tls {
            Some(files) => Some(Arc::new(rustls_config(files, "stomp")?)),
            None => None,
        };
        Ok(StompDeliverer {
            cfg,
            tls,
            idle: std::sync::Mutex::new(Vec::new()),
        })
    }

    fn options(&self, i: usize) -> ConnectOptions {
        let (host, port) = &self.cfg.uris[i];
        ConnectOptions {
            host: host.clone(),
            port: *port,
            vhost: self.cfg.vhost.clone(),
            login: self.cfg.login.clone(),
            tls: self.tls.clone(),
            heartbeat: self.cfg.heartbeat,
            connect_timeout: self.cfg.connect_timeout,
        }
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<StompConnection>> {
        // A panic while holding the pool leaves only a list of connections behind: still usable.
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A connection for one delivery: an idle open one, else a new one by failover.
    async fn connection(&self) -> Result<StompConnection, StompError> {
        loop {
            let Some(c) = self.lock_idle().pop() else {
                break;
            };
            if c.is_open() {
                return Ok(c);
            }
        }
        let mut errors = Vec::new();
        for i in 0..self.cfg.uris.len() {
            match StompConnection::connect(&self.options(i)).await {
                Ok(c) => {
                    info!(channel = %self.cfg.channel, broker = %c.server(), "connected to STOMP broker");
                    return Ok(c);
                }
                Err(e) => {
                    debug!(channel = %self.cfg.channel, error = %e, "STOMP broker unavailable; trying the next");
                    errors.push(e.to_string());
                }
            }
        }
        Err(StompError::Closed(format!(
            "no STOMP broker reachable: {}",
            errors.join("; ")
        )))
    }

    fn message(&self, body: Vec<u8>, id: String) -> Frame {
        let mut f = Frame::new("SEND")
            .header("destination", self.cfg.destination.clone())
            .header("content-type", "application/json")
            .header("tocsin-message-id", id);
        if self.cfg.persistent {
            f = f.header("persistent", "true");
        }
        f.body(body)
    }

    async fn publish(&self, conn: &StompConnection, set: &SetToDeliver) -> Result<usize, String> {
        let bodies = broker_messages(&self.cfg.mode, set)?;
        let n = bodies.len();
        match self.cfg.mode {
            BrokerMode::Callback(_) => {
                for body in bodies {
                    conn.send_with_receipt(self.message(body, set.id.to_string()))
                        .await
                        .map_err(|e| e.to_string())?;
                }
            }
            BrokerMode::Direct { .. } => {
                let tx = conn.unique_id(&format!("tocsin-{}", set.id));
                let run = async {
                    conn.send(Frame::new("BEGIN").header("transaction", tx.clone()))
                        .await?;
                    for (i, body) in bodies.into_iter().enumerate() {
                        conn.send(
                            self.message(body, format!("{}/{i}", set.id))
                                .header("transaction", tx.clone()),
                        )
                        .await?;
                    }
                    conn.send_with_receipt(Frame::new("COMMIT").header("transaction", tx.clone()))
                        .await
                };
                if let Err(e) = run.await {
                    if conn.is_open() {
                        let _ = conn
                            .send(Frame::new("ABORT").header("transaction", tx.clone()))
                            .await;
                    }
                    return Err(format!("transaction of {n} messages: {e}"));
                }
            }
        }
        Ok(n)
    }

    async fn attempt(&self, set: &SetToDeliver) -> Result<usize, String> {
        let conn = self.connection().await.map_err(|e| e.to_string())?;
        let result = self.publish(&conn, set).await;
        if result.is_ok() && conn.is_open() {
            self.lock_idle().push(conn);
        }
        result
    }
}

#[async_trait]
impl Deliverer for StompDeliverer {
    fn channel(&self) -> &str {
        &self.cfg.channel
    }

    fn needs_entries(&self) -> bool {
        matches!(self.cfg.mode, BrokerMode::Direct { .. })
    }

    async fn deliver(&self, set: &SetToDeliver) -> DeliveryResult {
        match tokio::time::timeout(self.cfg.timeout, self.attempt(set)).await {
            Ok(Ok(messages)) => {
                debug!(channel = %self.cfg.channel, set = %set.id, messages, "set receipted by the broker");
                if self.needs_entries() {
                    DeliveryResult::DeliveredAndDeleted { status: None }
                } else {
                    DeliveryResult::Delivered { status: None }
                }
            }
            Ok(Err(e)) => failed(e),
            Err(_) => failed(format!(
                "no receipt from the broker within {:?}",
                self.cfg.timeout
            )),
        }
    }

    /// Connects once. A broker that answers but refuses us (ERROR on CONNECT: credentials,
    /// vhost; a TLS failure) fails the start; brokers that are all unreachable only log a
    /// warning, since an outage must not stop the service: deliveries fail and are retried.
    async fn health_check(&self) -> Result<(), DeliverError> {
        let mut refused = Vec::new();
        for i in 0..self.cfg.uris.len() {
            match StompConnection::connect(&self.options(i)).await {
                Ok(c) => {
                    self.lock_idle().push(c);
                    return Ok(());
                }
                Err(e @ StompError::Connect { .. }) if !is_refusal(&e) => {
                    debug!(channel = %self.cfg.channel, error = %e, "STOMP broker unreachable");
                }
                Err(e) => refused.push(e.to_string()),
            }
        }
        if refused.is_empty() {
            warn!(channel = %self.cfg.channel, "no STOMP broker is reachable now; deliveries will be retried");
            return Ok(());
        }
        Err(DeliverError::Unhealthy {
            channel: self.cfg.channel.clone(),
            message: refused.join("; "),
        })
    }
}

/// Whether a connect error means the broker answered and refused (TLS), rather than was absent.
fn is_refusal(e: &StompError) -> bool {
    matches!(e, StompError::Connect { message, .. } if message.starts_with("TLS") || message.starts_with("invalid TLS"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Callback;

    fn cfg() -> StompConfig {
        StompConfig::new(
            "/queue/notifications",
            vec![("127.0.0.1".into(), 61613)],
            BrokerMode::Callback(Callback::new("http://tocsin/notifier/api/v1/notification")),
        )
    }

    #[test]
    fn validation_names_the_field() {
        StompDeliverer::new(cfg()).unwrap();
        type Change = fn(&mut StompConfig);
        let cases: [(Change, &str); 5] = [
            (|c| c.destination.clear(), "stomp.destination"),
            (|c| c.uris.clear(), "stomp.uris"),
            (|c| c.uris.push((String::new(), 1)), "stomp.uris[1]"),
            (
                |c| c.login = Some(("a\nb".into(), "p".into())),
                "stomp.user",
            ),
            (
                |c| c.mode = BrokerMode::Callback(Callback::new("")),
                "stomp.callback",
            ),
        ];
        for (change, want) in cases {
            let mut c = cfg();
            change(&mut c);
            match StompDeliverer::new(c) {
                Err(DeliverError::Config { field, .. }) => assert_eq!(field, want),
                other => panic!("{want}: {other:?}"),
            }
        }
    }

    #[test]
    fn tls_config_accepts_a_ca_and_identity_and_names_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let ca = rcgen::generate_simple_self_signed(vec!["ca.test".into()]).unwrap();
        let client = rcgen::generate_simple_self_signed(vec!["client.test".into()]).unwrap();
        let other = rcgen::generate_simple_self_signed(vec!["other.test".into()]).unwrap();
        let p = |n: &str| dir.path().join(n);
        std::fs::write(p("ca.pem"), ca.cert.pem()).unwrap();
        std::fs::write(p("cert.pem"), client.cert.pem()).unwrap();
        std::fs::write(p("key.pem"), client.key_pair.serialize_pem()).unwrap();
        std::fs::write(p("other-key.pem"), other.key_pair.serialize_pem()).unwrap();
        let files = TlsFiles {
            root_ca: Some(p("ca.pem")),
            identity: Some((p("cert.pem"), p("key.pem"))),
        };
        let built = rustls_config(&files, "stomp").unwrap();
        assert!(built.client_auth_cert_resolver.has_certs());
        let mismatched = TlsFiles {
            identity: Some((p("cert.pem"), p("other-key.pem"))),
            ..files
        };
        match rustls_config(&mismatched, "stomp") {
            Err(DeliverError::Tls { path, message, .. }) => {
                assert_eq!(path, p("other-key.pem"));
                assert!(message.contains("does not fit"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }
}
