//! tocsin's configuration: Clair's notifier configuration files, loaded unchanged, plus a
//! `tocsin:` section of its own.
//!
//! # Design
//!
//! Loading happens in two steps, like ripgrep's low-level and high-level arguments:
//!
//! 1. **Parse** ([`raw`]): serde structs that mirror the YAML file exactly. Every struct denies
//!    unknown fields, so a misspelt key anywhere is an error naming the key, its path and its
//!    line. Scalars whose syntax alone decides their validity (Go durations, byte sizes, base64,
//!    log levels) are parsed here, while the YAML library still knows where they are.
//! 2. **Validate** ([`validate`]): the raw structs become [`Config`], a fully typed value in
//!    which every default is applied, every URL parsed, the PSK key decoded, and every choice
//!    Clair leaves implicit made explicit (which delivery channel, callback or direct mode,
//!    embedded or PostgreSQL storage). The rest of the program never sees a raw string, so it
//!    cannot disagree with this module about what a setting means. Validation reports every
//!    problem at once, each under its key path (`notifier.webhook.target`).
//!
//! Clair's other top-level sections (`indexer`, `matcher`, `matchers`, `updaters`, `trace`,
//! `metrics`, and in v2/v3 files `clair.database`, `clair.api`, `clair.updater`,
//! `clair.worker`) are accepted and listed in [`Config::ignored_sections`], so users can point
//! tocsin at their whole Clair file. Clair's top-level `tls` (serve HTTPS) is honoured on the
//! HTTP listener and the gRPC listener; `tocsin.tls.client_ca` adds required client
//! certificates (under `tocsin:` because Clair rejects unknown keys under `tls`).
//!
//! Where Clair's behaviour is odd but harmless, it is kept (a `poll_interval` under one second
//! becomes the default, as in Clair) and a warning says so. The warnings are returned next to
//! the [`Config`] for the caller to log, because logging is not configured yet while the
//! configuration is being read.
//!
//! The environment is passed in as a lookup function, so tests never touch the process
//! environment.
//!
//! `docs/configuration.md` documents every key; keep it in step with this module.

mod raw;
mod validate;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tocsin_deliver::amqp::uri::{BrokerUri, UriError};
pub use tocsin_feeds::Limits;
use url::Url;

/// `http_listen_addr` when none is given: all interfaces, port 6060 (Clair's default).
pub const DEFAULT_HTTP_LISTEN_ADDR: &str = ":6060";
/// `notifier.poll_interval` when none is given.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(6 * 3600);
/// `notifier.delivery_interval` when none is given.
pub const DEFAULT_DELIVERY_INTERVAL: Duration = Duration::from_secs(3600);
/// `tocsin.data_dir` when none is given (relative to the working directory).
pub const DEFAULT_DATA_DIR: &str = "./tocsin-data";
/// `tocsin.retention` when none is given: one week.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(168 * 3600);
/// `tocsin.gc_interval` when none is given.
pub const DEFAULT_GC_INTERVAL: Duration = Duration::from_secs(3600);
/// `tocsin.process_interval` when none is given.
pub const DEFAULT_PROCESS_INTERVAL: Duration = Duration::from_secs(5);
/// `tocsin.delivery.connect_timeout` when none is given.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// `tocsin.delivery.timeout` when none is given.
pub const DEFAULT_DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);
/// `tocsin.delivery.initial_backoff` when none is given.
pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// `tocsin.delivery.dead_letter_after` when none is given: one week.
pub const DEFAULT_DEAD_LETTER_AFTER: Duration = Duration::from_secs(168 * 3600);
/// `tocsin.delivery.workers` when none is given.
pub const DEFAULT_WORKERS: usize = 4;
/// `tocsin.delivery.lease` when none is given.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(300);
/// `tocsin.max_body_size` when none is given: 256 MiB.
pub const DEFAULT_MAX_BODY_SIZE: u64 = 256 << 20;
/// `tocsin.header_read_timeout` when none is given (hyper's own default).
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// `tocsin.upload_timeout` when none is given: a 256 MiB body at ~450 KiB/s.
pub const DEFAULT_UPLOAD_TIMEOUT: Duration = Duration::from_secs(600);
/// `tocsin.max_concurrent_uploads` when none is given.
pub const DEFAULT_MAX_CONCURRENT_UPLOADS: usize = 4;
/// Default period of followed feeds (`tocsin.updaters.interval`), Clair's matcher period.
pub const DEFAULT_UPDATER_INTERVAL: Duration = Duration::from_secs(3600);
/// Default storm guard (`tocsin.updaters.withdraw_guard`).
pub const DEFAULT_WITHDRAW_GUARD: f64 = 0.5;
/// `clair.notifier.attempts` when none is given (Clair v2's default).
pub const DEFAULT_LEGACY_ATTEMPTS: u32 = 5;
/// `clair.notifier.renotifyinterval` when none is given (Clair v2's default).
pub const DEFAULT_LEGACY_RENOTIFY_INTERVAL: Duration = Duration::from_secs(2 * 3600);

/// Environment variable that turns on Clair's notifier test mode when set to a non-empty value.
pub const ENV_TEST_MODE: &str = "NOTIFIER_TEST_MODE";
/// Environment variable that overrides `tocsin.data_dir` when set to a non-empty value.
pub const ENV_DATA_DIR: &str = "TOCSIN_DATA_DIR";

/// The validated configuration: everything the program needs, typed and with defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where the HTTP server listens (`http_listen_addr`). Metrics, the v4 pull API and the
    /// v2/v3 APIs are all served here (v3's gRPC service too, unless
    /// [`Tocsin::grpc_listen_addr`] gives it its own address).
    pub http_listen_addr: ListenAddr,
    /// HTTPS on every listener (`tls.cert`, `tls.key`, `tocsin.tls.client_ca`); `None` serves
    /// plain HTTP.
    pub tls: Option<ServerTls>,
    /// Log level and format (`log_level`, `logging`).
    pub logging: Logging,
    /// Pre-shared-key JWT authentication (`auth.psk`); `None` means no authentication.
    pub psk: Option<Psk>,
    /// Where state is kept (`notifier.connstring`, `notifier.migrations`, `tocsin.data_dir`).
    pub storage: Storage,
    /// The v4 notifier (`notifier`).
    pub notifier: Notifier,
    /// Clair v2-style webhook delivery (`clair.notifier` in a v2/v3 file), if configured.
    pub legacy_webhook: Option<LegacyWebhook>,
    /// tocsin's own settings (`tocsin`).
    pub tocsin: Tocsin,
    /// Clair's notifier test mode, from `NOTIFIER_TEST_MODE` (see [`test_mode_from_env`]).
    pub test_mode: bool,
    /// Sections present in the file that tocsin accepts but does not use (Clair's indexer,
    /// matcher, updaters…), by key path, for the caller to log.
    pub ignored_sections: Vec<String>,
}

impl Config {
    /// Loads and validates the configuration file at `path`, or the defaults when `path` is
    /// `None` (a valid pull-only setup with no delivery channel).
    ///
    /// `env` looks up environment variables (pass `&|k| std::env::var(k).ok()` in the
    /// program). Returns the configuration and warnings for the caller to log.
    pub fn load(
        path: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(Config, Vec<String>), ConfigError> {
        match path {
            None => validate::validate(raw::RawConfig::default(), env).map_err(|problems| {
                ConfigError::Invalid {
                    origin: "default configuration".to_owned(),
                    problems,
                }
            }),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
                    path: path.to_path_buf(),
                    error,
                })?;
                Self::from_yaml(&text, &path.display().to_string(), env)
            }
        }
    }

    /// Parses and validates configuration text. `origin` names it in errors (a file path).
    pub fn from_yaml(
        text: &str,
        origin: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(Config, Vec<String>), ConfigError> {
        let raw = parse(text).map_err(|e| {
            let location = e.location();
            ConfigError::Parse {
                origin: origin.to_owned(),
                message: e.to_string(),
                line: location.as_ref().map(|l| l.line()),
                column: location.as_ref().map(|l| l.column()),
            }
        })?;
        validate::validate(raw, env).map_err(|problems| ConfigError::Invalid {
            origin: origin.to_owned(),
            problems,
        })
    }
}

/// An empty file (or one holding only comments) is an empty configuration, not an error.
fn parse(text: &str) -> Result<raw::RawConfig, serde_yaml_ng::Error> {
    Ok(
        Option::<raw::RawConfig>::deserialize(serde_yaml_ng::Deserializer::from_str(text))?
            .unwrap_or_default(),
    )
}

/// Whether Clair's notifier test mode is on.
///
/// Clair checks `os.Getenv("NOTIFIER_TEST_MODE") != ""`: any non-empty value (even `false`
/// or `0`) turns it on, and an empty value leaves it off. tocsin does the same.
pub fn test_mode_from_env(env: &dyn Fn(&str) -> Option<String>) -> bool {
    env(ENV_TEST_MODE).is_some_and(|v| !v.is_empty())
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration file {}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The file is not valid YAML, has an unknown key, or a value of the wrong form.
    #[error("{origin}: {message}")]
    Parse {
        /// The file (or other origin) of the text.
        origin: String,
        /// The parser's message, with the key path and position.
        message: String,
        /// 1-based line, when known.
        line: Option<usize>,
        /// 1-based column, when known.
        column: Option<usize>,
    },
    /// The file parsed but its values are inconsistent or out of range.
    #[error("{origin}: invalid configuration:{}", ProblemList(problems))]
    Invalid {
        /// The file (or other origin) of the text.
        origin: String,
        /// Every problem found, in file order.
        problems: Vec<Problem>,
    },
}

/// One validation problem: which key, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path, such as `notifier.webhook.target`.
    pub key: String,
    /// What is wrong, in words.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

struct ProblemList<'a>(&'a [Problem]);

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for problem in self.0 {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}

/// A value that must not appear in logs: its `Debug` output is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a secret value.
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// The secret itself, for the code that has to use it.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// A listening address: Go's `host:port`, where an empty host means every interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddr {
    /// The interface to bind.
    pub host: ListenHost,
    /// The port; 0 asks the system for a free one.
    pub port: u16,
}

/// The host part of a [`ListenAddr`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenHost {
    /// A literal address; Go's empty host becomes `0.0.0.0`.
    Ip(IpAddr),
    /// A name to resolve when binding, such as `localhost`.
    Name(String),
}

impl ListenAddr {
    /// Every IPv4 interface on `port`.
    pub fn all_interfaces(port: u16) -> Self {
        ListenAddr {
            host: ListenHost::Ip(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            port,
        }
    }
}

/// Renders as something `TcpListener::bind` accepts: `0.0.0.0:6060`, `[::1]:6060`,
/// `localhost:6060`.
impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            ListenHost::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            ListenHost::Ip(ip) => write!(f, "{ip}:{}", self.port),
            ListenHost::Name(name) => write!(f, "{name}:{}", self.port),
        }
    }
}

/// A `host:port` to connect to (STOMP brokers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// Host name or IP address (without brackets).
    pub host: String,
    /// Port, never 0.
    pub port: u16,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// How much to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Everything.
    Trace,
    /// Diagnostic detail.
    Debug,
    /// Normal operation (the default).
    Info,
    /// Something unexpected that tocsin worked around.
    Warn,
    /// Failures only.
    Error,
}

impl LogLevel {
    /// The level's name as `tracing` filters spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// Logging settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Logging {
    /// The level (`logging.level`, or Clair's older `log_level`).
    pub level: LogLevel,
    /// Human-readable lines instead of JSON (`logging.prose`; also implied by Clair's
    /// `debug-color`). JSON is the default, as in Clair.
    pub prose: bool,
    /// Leave timestamps out (`logging.omit_timestamps`), for log collectors that add their own.
    pub omit_timestamps: bool,
}

/// Serving TLS: Clair's `tls.cert`/`tls.key`, and tocsin's `tocsin.tls.client_ca`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    /// Certificate chain (PEM file), leaf first.
    pub cert: PathBuf,
    /// Private key (PEM file).
    pub key: PathBuf,
    /// When set, clients must present a certificate signed by one of these CAs (PEM file).
    pub client_ca: Option<PathBuf>,
}

/// Pre-shared-key JWT authentication (`auth.psk`).
#[derive(Debug, Clone, PartialEq)]
pub struct Psk {
    /// The HS256 key, base64-decoded.
    pub key: Secret<Vec<u8>>,
    /// Issuers accepted on inbound requests (besides `clair-intraservice`). Empty: any issuer.
    pub issuers: Vec<String>,
}

/// Where tocsin keeps its state.
#[derive(Debug, Clone, PartialEq)]
pub enum Storage {
    /// The embedded store in a local directory (when `notifier.connstring` is empty). It always
    /// creates and migrates its own schema.
    Embedded {
        /// The directory (`TOCSIN_DATA_DIR`, else `tocsin.data_dir`).
        data_dir: PathBuf,
    },
    /// A PostgreSQL database shared by several tocsin processes.
    Postgres {
        /// `notifier.connstring`: a `postgres://` URL or `key=value` pairs.
        connstring: Secret<String>,
        /// `notifier.migrations`: whether this process creates and migrates the schema.
        migrations: bool,
    },
}

/// A URL as `Debug` output and messages show it: with its password hidden.
pub(crate) fn shown_url(url: &Url) -> String {
    tocsin_deliver::redact_url(url.as_str())
}

/// The v4 notifier settings (`notifier`). `Debug` hides URL passwords.
#[derive(Clone, PartialEq)]
pub struct Notifier {
    /// A Clair indexer to ask for affected manifests (`notifier.indexer_addr`), as a base URL
    /// ending in `/`.
    pub clair_indexer: Option<Url>,
    /// A Clair matcher to poll for update operations (`notifier.matcher_addr`), as a base URL
    /// ending in `/`.
    pub clair_matcher: Option<Url>,
    /// How often to poll the Clair matcher and, in test mode, create a test notification.
    pub poll_interval: Duration,
    /// How often due deliveries are looked for; also the default `max_backoff`.
    pub delivery_interval: Duration,
    /// One entry per (manifest, vulnerability) instead of the most severe per manifest.
    pub disable_summary: bool,
    /// The push channel, if any; without one, notifications are pull-only.
    pub channel: Option<Channel>,
}

impl fmt::Debug for Notifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notifier")
            .field("clair_indexer", &self.clair_indexer.as_ref().map(shown_url))
            .field("clair_matcher", &self.clair_matcher.as_ref().map(shown_url))
            .field("poll_interval", &self.poll_interval)
            .field("delivery_interval", &self.delivery_interval)
            .field("disable_summary", &self.disable_summary)
            .field("channel", &self.channel)
            .finish()
    }
}

/// The one push channel of the v4 notifier.
#[derive(Debug, Clone, PartialEq)]
pub enum Channel {
    /// `notifier.webhook`.
    Webhook(Webhook),
    /// `notifier.amqp`.
    Amqp(Amqp),
    /// `notifier.stomp`.
    Stomp(Stomp),
}

/// Webhook delivery (`notifier.webhook`). `Debug` hides URL passwords and header values (which
/// often carry credentials).
#[derive(Clone, PartialEq)]
pub struct Webhook {
    /// Where the callback JSON is POSTed.
    pub target: Url,
    /// The notification API base; ends in `/`, the notification id is appended.
    pub callback: Url,
    /// Extra headers as (name, value) pairs; a name repeats for several values.
    pub headers: Vec<(String, String)>,
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(name, _)| (name.as_str(), "[redacted]"))
            .collect();
        f.debug_struct("Webhook")
            .field("target", &shown_url(&self.target))
            .field("callback", &shown_url(&self.callback))
            .field("headers", &headers)
            .finish()
    }
}

/// Callback or direct delivery to a broker.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// One message per notification set, carrying the callback JSON; the URL ends in `/`.
    Callback(Url),
    /// The entries themselves, `rollup` per message (Clair's 0 or 1 both mean 1).
    Direct {
        /// Entries per message.
        rollup: NonZeroUsize,
    },
}

/// TLS settings for connecting to a broker or webhook endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTls {
    /// Extra root certificate (PEM file) to trust.
    pub root_ca: Option<PathBuf>,
    /// Client certificate and key (PEM files), for mutual TLS.
    pub identity: Option<ClientIdentity>,
}

/// A client certificate and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// Certificate chain (PEM file).
    pub cert: PathBuf,
    /// Private key (PEM file).
    pub key: PathBuf,
}

/// An AMQP broker URI (`amqp://` or `amqps://`) as written, with what it means under Clair's
/// rules ([`tocsin_deliver::amqp::uri`]); shown with its password hidden.
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    text: String,
    parsed: BrokerUri,
}

impl BrokerUrl {
    /// Parses `text` as Clair does.
    pub fn parse(text: &str) -> Result<Self, UriError> {
        Ok(BrokerUrl {
            parsed: BrokerUri::parse(text)?,
            text: text.to_owned(),
        })
    }

    /// The URI as configured, password included, for the deliverer (which parses it the same
    /// way).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// What the URI means: host, port, credentials, vhost, parameters.
    pub fn uri(&self) -> &BrokerUri {
        &self.parsed
    }

    /// Whether the URI asks for TLS (`amqps://`).
    pub fn is_tls(&self) -> bool {
        self.uri().is_tls()
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.parsed.fmt(f)
    }
}

impl fmt::Debug for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BrokerUrl({self})")
    }
}

/// AMQP 0-9-1 delivery (`notifier.amqp`).
#[derive(Debug, Clone, PartialEq)]
pub struct Amqp {
    /// The exchange, declared passively (it must exist).
    pub exchange: Exchange,
    /// Routing key of every message.
    pub routing_key: String,
    /// Brokers, tried in order.
    pub uris: Vec<BrokerUrl>,
    /// Callback or direct mode.
    pub delivery: Delivery,
    /// Certificates for `amqps://` brokers.
    pub tls: Option<ClientTls>,
}

/// An AMQP exchange (`notifier.amqp.exchange`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// Exchange name; empty means the default exchange (routing key = queue name).
    pub name: String,
    /// Exchange type; always set when `name` is.
    pub kind: Option<ExchangeKind>,
    /// `durability`: the exchange survives broker restarts.
    pub durable: bool,
    /// `auto_delete`: the exchange is deleted when its last queue unbinds.
    pub auto_delete: bool,
}

/// AMQP exchange types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeKind {
    /// `direct`.
    Direct,
    /// `fanout`.
    Fanout,
    /// `topic`.
    Topic,
    /// `headers`.
    Headers,
}

impl ExchangeKind {
    /// The name AMQP uses for this type.
    pub fn as_str(self) -> &'static str {
        match self {
            ExchangeKind::Direct => "direct",
            ExchangeKind::Fanout => "fanout",
            ExchangeKind::Topic => "topic",
            ExchangeKind::Headers => "headers",
        }
    }
}

/// STOMP delivery (`notifier.stomp`).
#[derive(Debug, Clone, PartialEq)]
pub struct Stomp {
    /// The destination (queue or topic) messages are sent to.
    pub destination: String,
    /// Brokers, tried in order.
    pub uris: Vec<HostPort>,
    /// Callback or direct mode.
    pub delivery: Delivery,
    /// Credentials for the CONNECT frame (Clair ignores them; tocsin sends them).
    pub login: Option<StompLogin>,
    /// TLS; when present, connections use TLS.
    pub tls: Option<ClientTls>,
}

/// STOMP credentials (`notifier.stomp.user`).
#[derive(Debug, Clone, PartialEq)]
pub struct StompLogin {
    /// `login` header.
    pub login: String,
    /// `passcode` header.
    pub passcode: Secret<String>,
}

/// Clair v2-style webhook delivery (`clair.notifier` in a v2/v3 file): the body is
/// `{"Notification":{"Name":"<name>"}}`. `Debug` hides URL passwords.
#[derive(Clone, PartialEq)]
pub struct LegacyWebhook {
    /// `http.endpoint`: where notifications are POSTed.
    pub endpoint: Url,
    /// `attempts`: tries per send before waiting for the next round.
    pub attempts: NonZeroU32,
    /// `renotifyinterval`: a delivered, unread notification is sent again after this long.
    pub renotify_interval: Duration,
    /// `http.servername`: the TLS server name to verify instead of the endpoint's host.
    pub server_name: Option<String>,
    /// `http.cafile`, `http.certfile`, `http.keyfile`.
    pub tls: Option<ClientTls>,
    /// `http.proxy`.
    pub proxy: Option<Url>,
}

impl fmt::Debug for LegacyWebhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LegacyWebhook")
            .field("endpoint", &shown_url(&self.endpoint))
            .field("attempts", &self.attempts)
            .field("renotify_interval", &self.renotify_interval)
            .field("server_name", &self.server_name)
            .field("tls", &self.tls)
            .field("proxy", &self.proxy.as_ref().map(shown_url))
            .finish()
    }
}

/// What an updater's very first update operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FirstUpdate {
    /// Notify everything it affects, as Clair v4 does (the default).
    Notify,
    /// Record it as the baseline and notify nothing, as Clair v2 does.
    Baseline,
}

/// tocsin's own settings (`tocsin`).
#[derive(Debug, Clone, PartialEq)]
pub struct Tocsin {
    /// Where Clair v3's gRPC service listens when not on `http_listen_addr`
    /// (`tocsin.grpc_listen_addr`); `None` shares the HTTP listener.
    pub grpc_listen_addr: Option<ListenAddr>,
    /// What an updater's first update operation does.
    pub first_update: FirstUpdate,
    /// Emit reason `changed` for still-affected manifests whose vulnerability changed.
    pub changed_reason: bool,
    /// The manifest label whose value Clair v2/v3 show as a manifest's name (`LayerName`,
    /// ancestry name) instead of its digest.
    pub legacy_layer_label: Option<String>,
    /// Delivered notification sets are garbage-collected after this long.
    pub retention: Duration,
    /// How often garbage collection runs.
    pub gc_interval: Duration,
    /// How often pending update operations are looked for (imports also wake the processor).
    pub process_interval: Duration,
    /// Delivery timeouts, backoff and concurrency.
    pub delivery: DeliveryTuning,
    /// Largest accepted request body, in bytes.
    pub max_body_size: u64,
    /// How long a client may take to send a request's headers (and an idle keep-alive
    /// connection stays open).
    pub header_read_timeout: Duration,
    /// How long one request body may take to arrive.
    pub upload_timeout: Duration,
    /// How many request bodies are received at once.
    pub max_concurrent_uploads: usize,
    /// Bounds on what archives, gzip streams and YAML aliases may expand to
    /// (`tocsin.limits`), for uploads and the CLI alike.
    pub limits: Limits,
    /// The feeds tocsin follows itself (`tocsin.updaters`); `None`: push-only.
    pub updaters: Option<tocsin_updaters::UpdatersConfig>,
    /// The storm guard's threshold (`tocsin.updaters.withdraw_guard`, a fraction); `None`: off
    /// (no `updaters` section, or `withdraw_guard: off`).
    pub withdraw_guard: Option<f64>,
}

/// Delivery timeouts, backoff and concurrency (`tocsin.delivery`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryTuning {
    /// Time allowed to establish a connection.
    pub connect_timeout: Duration,
    /// Time allowed for one whole delivery attempt.
    pub timeout: Duration,
    /// Delay before the first retry; doubles per attempt (with jitter).
    pub initial_backoff: Duration,
    /// Longest delay between retries (default: `notifier.delivery_interval`).
    pub max_backoff: Duration,
    /// A delivery still failing after this long is dead-lettered.
    pub dead_letter_after: Duration,
    /// Concurrent delivery workers per process.
    pub workers: NonZeroUsize,
    /// How long a worker's claim on a delivery lasts; always longer than `timeout`.
    pub lease: Duration,
    /// Broker messages are persistent (AMQP `delivery_mode: 2`, STOMP `persistent:true`), so
    /// that a durable queue keeps them across a broker restart.
    pub persistent: bool,
}

#[cfg(test)]
mod tests;
