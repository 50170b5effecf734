//! Raw file values → [`Config`]: defaults, URL parsing, cross-field rules.
//!
//! Problems are collected rather than returned one by one, so a user fixing a file sees every
//! mistake in one run.

use std::net::IpAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use super::raw::{
    RawAmqp, RawAuth, RawConfig, RawLegacyNotifier, RawLogLevel, RawLogging, RawNotifier, RawStomp,
    RawTls, RawTocsin, RawWebhook,
};
use super::*;
use crate::duration::{format_go_duration, GoDuration};

/// Problems and warnings found so far.
#[derive(Default)]
struct Checker {
    problems: Vec<Problem>,
    warnings: Vec<String>,
}

impl Checker {
    fn problem(&mut self, key: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            key: key.to_owned(),
            message: message.into(),
        });
    }

    fn warn(&mut self, key: &str, message: impl fmt::Display) {
        self.warnings.push(format!("{key}: {message}"));
    }

    /// A value that must be present and non-empty.
    fn required(&mut self, key: &str, value: Option<String>) -> Option<String> {
        let value = non_empty(value);
        if value.is_none() {
            self.problem(key, "is required");
        }
        value
    }

    /// An absolute `http://` or `https://` URL. Problems show the text with its password
    /// hidden.
    fn http_url(&mut self, key: &str, text: &str) -> Option<Url> {
        let shown = tocsin_deliver::redact_url(text);
        match Url::parse(text) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => Some(url),
            Ok(_) => {
                self.problem(
                    key,
                    format!("must be an absolute http:// or https:// URL, got {shown:?}"),
                );
                None
            }
            Err(e) => {
                self.problem(
                    key,
                    format!("must be an absolute http:// or https:// URL, got {shown:?} ({e})"),
                );
                None
            }
        }
    }

    /// A callback base URL: the notification id is appended, so it must end in `/` (added
    /// when missing, as Clair does) and cannot carry a query or fragment.
    fn callback_url(&mut self, key: &str, text: &str) -> Option<Url> {
        let mut url = self.http_url(key, text)?;
        if url.query().is_some() || url.fragment().is_some() {
            self.problem(
                key,
                format!(
                    "must not have a query or fragment (the notification id is appended to it), got {:?}",
                    tocsin_deliver::redact_url(text)
                ),
            );
            return None;
        }
        ensure_trailing_slash(&mut url);
        Some(url)
    }

    /// Positive durations only: a zero interval or timeout would spin or never wait.
    fn positive(&mut self, key: &str, value: Option<GoDuration>, default: Duration) -> Duration {
        match value {
            None => default,
            Some(GoDuration(d)) if d.is_zero() => {
                self.problem(key, "must be greater than 0");
                default
            }
            Some(GoDuration(d)) => d,
        }
    }

    /// Clair's rule for its two intervals: unset or zero means the default; below one second
    /// is replaced by the default too (with a warning, since the user asked for something).
    fn clair_interval(
        &mut self,
        key: &str,
        value: Option<GoDuration>,
        default: Duration,
    ) -> Duration {
        match value {
            None => default,
            Some(GoDuration(d)) if d.is_zero() => default,
            Some(GoDuration(d)) if d < Duration::from_secs(1) => {
                self.warn(
                    key,
                    format_args!(
                        "{} is below 1s; as in Clair, the default {} is used instead",
                        format_go_duration(d),
                        format_go_duration(default)
                    ),
                );
                default
            }
            Some(GoDuration(d)) => d,
        }
    }

    /// A file that must exist now, so a typo fails at start-up instead of at first delivery.
    fn existing_file(&mut self, key: &str, path: String) -> Option<PathBuf> {
        let path = PathBuf::from(path);
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_file() => Some(path),
            Ok(_) => {
                self.problem(key, format!("{} is not a file", path.display()));
                None
            }
            Err(e) => {
                self.problem(key, format!("cannot read {}: {e}", path.display()));
                None
            }
        }
    }

    /// A TLS block from separate root CA, certificate and key paths.
    fn client_tls(
        &mut self,
        keys: [&str; 3],
        root_ca: Option<String>,
        cert: Option<String>,
        key: Option<String>,
    ) -> Option<ClientTls> {
        let [root_key, cert_key, key_key] = keys;
        let root_ca = non_empty(root_ca).and_then(|p| self.existing_file(root_key, p));
        let identity = match (non_empty(cert), non_empty(key)) {
            (None, None) => None,
            (Some(_), None) => {
                self.problem(key_key, format!("is required when {cert_key} is set"));
                None
            }
            (None, Some(_)) => {
                self.problem(cert_key, format!("is required when {key_key} is set"));
                None
            }
            (Some(cert), Some(key)) => {
                let cert = self.existing_file(cert_key, cert);
                let key = self.existing_file(key_key, key);
                cert.zip(key)
                    .map(|(cert, key)| ClientIdentity { cert, key })
            }
        };
        Some(ClientTls { root_ca, identity })
    }

    fn tls_section(&mut self, prefix: &str, raw: Option<RawTls>) -> Option<ClientTls> {
        let raw = raw?;
        let keys = [
            format!("{prefix}.root_ca"),
            format!("{prefix}.cert"),
            format!("{prefix}.key"),
        ];
        self.client_tls(
            [&keys[0], &keys[1], &keys[2]],
            raw.root_ca,
            raw.cert,
            raw.key,
        )
    }

    /// Callback mode needs a callback URL; direct mode needs a sane rollup.
    fn delivery(
        &mut self,
        prefix: &str,
        direct: bool,
        callback: Option<String>,
        rollup: Option<i64>,
    ) -> Option<Delivery> {
        let rollup_key = format!("{prefix}.rollup");
        let rollup = match rollup {
            Some(n) if n < 0 => {
                self.problem(&rollup_key, format!("must be 0 or greater, got {n}"));
                return None;
            }
            Some(n) => usize::try_from(n).ok(),
            None => Some(0),
        };
        let callback = non_empty(callback);
        let callback_key = format!("{prefix}.callback");
        if direct {
            if callback.is_some() {
                self.warn(
                    &callback_key,
                    "ignored because direct is true (entries are sent, not a callback)",
                );
            }
            let Some(rollup) = rollup else {
                self.problem(&rollup_key, "is too large");
                return None;
            };
            // Clair treats 0 and 1 alike: one entry per message.
            return Some(Delivery::Direct {
                rollup: NonZeroUsize::new(rollup).unwrap_or(NonZeroUsize::MIN),
            });
        }
        match callback {
            None => {
                self.problem(
                    &callback_key,
                    "is required when direct is false (consumers fetch the notification from it)",
                );
                None
            }
            Some(text) => self
                .callback_url(&callback_key, &text)
                .map(Delivery::Callback),
        }
    }
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

fn flag(value: Option<raw::YamlBool>) -> bool {
    value.is_some_and(|b| b.0)
}

fn ensure_trailing_slash(url: &mut Url) {
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
}

/// Go's `net.SplitHostPort`: `host:port`, `[v6]:port`, or `:port` (empty host).
fn split_host_port(text: &str) -> Result<(&str, &str), String> {
    if let Some(rest) = text.strip_prefix('[') {
        let Some((host, after)) = rest.split_once(']') else {
            return Err(format!("{text:?} is missing the closing ']'"));
        };
        let Some(port) = after.strip_prefix(':') else {
            return Err(format!("{text:?} is missing a port (write [address]:port)"));
        };
        return Ok((host, port));
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!(
            "{text:?} is missing a port (write host:port, e.g. \":6060\")"
        ));
    };
    if host.contains(':') {
        return Err(format!(
            "{text:?} has too many colons (write IPv6 addresses in brackets, e.g. \"[::1]:6060\")"
        ));
    }
    Ok((host, port))
}

fn parse_port(text: &str, port: &str) -> Result<u16, String> {
    port.parse::<u16>()
        .map_err(|_| format!("{text:?} has an invalid port {port:?} (a number from 0 to 65535)"))
}

fn valid_host(host: &str) -> bool {
    !host
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '/' | '@' | '?' | '#'))
}

/// `http_listen_addr`: Go's `":6060"` means every interface.
pub(super) fn parse_listen_addr(text: &str) -> Result<ListenAddr, String> {
    let (host, port) = split_host_port(text)?;
    let port = parse_port(text, port)?;
    if host.is_empty() {
        return Ok(ListenAddr::all_interfaces(port));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ListenAddr {
            host: ListenHost::Ip(ip),
            port,
        });
    }
    if !valid_host(host) {
        return Err(format!("{text:?} has an invalid host {host:?}"));
    }
    Ok(ListenAddr {
        host: ListenHost::Name(host.to_owned()),
        port,
    })
}

/// An address or URL as problems show it: any credentials before an `@` hidden.
fn shown_address(text: &str) -> String {
    if text.contains("://") {
        return tocsin_deliver::redact_url(text);
    }
    match text.rsplit_once('@') {
        Some((_, host)) => format!("***@{host}"),
        None => text.to_owned(),
    }
}

/// A broker address to connect to: the host and a non-zero port are required.
fn parse_host_port(text: &str) -> Result<HostPort, String> {
    if text.contains("://") {
        return Err(format!(
            "{text:?} is a URL; write host:port (e.g. \"broker:61613\")"
        ));
    }
    let (host, port) = split_host_port(text)?;
    let port = parse_port(text, port)?;
    if host.is_empty() || !valid_host(host) {
        return Err(format!(
            "{text:?} needs a host name or address before the port"
        ));
    }
    if port == 0 {
        return Err(format!("{text:?} has port 0, which cannot be connected to"));
    }
    Ok(HostPort {
        host: host.to_owned(),
        port,
    })
}

/// `indexer_addr` / `matcher_addr`: a URL, or Clair's documented `host:port` (plain HTTP).
fn service_base_url(c: &mut Checker, key: &str, text: &str) -> Option<Url> {
    let mut url = if text.contains("://") {
        c.http_url(key, text)?
    } else {
        let hp = match parse_host_port(text) {
            Ok(hp) => hp,
            Err(e) => {
                c.problem(key, format!("must be a URL or host:port: {e}"));
                return None;
            }
        };
        match Url::parse(&format!("http://{hp}/")) {
            Ok(url) => url,
            Err(e) => {
                c.problem(key, format!("{text:?} is not a usable address ({e})"));
                return None;
            }
        }
    };
    // Paths are joined onto the base, which needs the trailing slash to keep its last segment.
    ensure_trailing_slash(&mut url);
    Some(url)
}

/// A PostgreSQL connection string, checked for shape only (the database reports the rest).
/// The value is never echoed: it usually holds a password.
fn check_connstring(c: &mut Checker, key: &str, text: &str) {
    if text.starts_with("postgres://") || text.starts_with("postgresql://") {
        if let Err(e) = Url::parse(text) {
            c.problem(key, format!("is not a valid postgres:// URL ({e})"));
        }
    } else if !text.contains('=') {
        c.problem(
            key,
            "is not a PostgreSQL connection string (a postgres:// URL or key=value pairs such as \"host=db user=clair dbname=notifier\")",
        );
    }
}

/// RFC 9110 token characters.
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn is_header_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| (b >= 0x20 && b != 0x7f) || b == b'\t')
}

fn webhook(c: &mut Checker, raw: RawWebhook, psk_configured: bool) -> Option<Webhook> {
    let target = c.required("notifier.webhook.target", raw.target);
    let callback = c.required("notifier.webhook.callback", raw.callback);
    let target = target.and_then(|t| c.http_url("notifier.webhook.target", &t));
    let callback = callback.and_then(|t| c.callback_url("notifier.webhook.callback", &t));
    if flag(raw.signed) {
        c.warn(
            "notifier.webhook.signed",
            "accepted for Clair compatibility and ignored (Clair deprecated it); webhooks carry a PSK-signed JWT whenever auth.psk is set",
        );
    }
    let mut headers = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    let mut headers_ok = true;
    for (name, values) in raw.headers.unwrap_or_default() {
        let key = format!("notifier.webhook.headers.{name}");
        let lower = name.to_ascii_lowercase();
        if !is_token(&name) {
            c.problem(&key, "is not a valid HTTP header name");
            headers_ok = false;
            continue;
        }
        if seen.contains(&lower) {
            c.problem(
                &key,
                "is given twice (header names are case-insensitive); list every value under one name",
            );
            headers_ok = false;
            continue;
        }
        seen.push(lower.clone());
        match lower.as_str() {
            "host" | "content-length" | "transfer-encoding" | "connection" => {
                c.problem(&key, "is set by the HTTP client and cannot be configured");
                headers_ok = false;
                continue;
            }
            "content-type" => c.warn(&key, "replaced: the body is always application/json"),
            "authorization" if psk_configured => c.warn(
                &key,
                "replaced by the PSK-signed bearer token because auth.psk is set",
            ),
            _ => {}
        }
        for value in values.0 {
            if !is_header_value(&value) {
                c.problem(
                    &key,
                    "has a value with control characters (such as a newline)",
                );
                headers_ok = false;
                continue;
            }
            headers.push((name.clone(), value));
        }
    }
    let (target, callback) = (target?, callback?);
    headers_ok.then_some(Webhook {
        target,
        callback,
        headers,
    })
}

fn amqp(c: &mut Checker, raw: RawAmqp) -> Option<Amqp> {
    let raw_exchange = raw.exchange.unwrap_or_default();
    let name = raw_exchange.name.unwrap_or_default();
    let kind = match non_empty(raw_exchange.kind) {
        None if !name.is_empty() => {
            c.problem(
                "notifier.amqp.exchange.type",
                "is required when exchange.name is set (one of direct, fanout, topic, headers)",
            );
            None
        }
        None => None,
        Some(kind) => match kind.as_str() {
            "direct" => Some(ExchangeKind::Direct),
            "fanout" => Some(ExchangeKind::Fanout),
            "topic" => Some(ExchangeKind::Topic),
            "headers" => Some(ExchangeKind::Headers),
            other => {
                c.problem(
                    "notifier.amqp.exchange.type",
                    format!("must be one of direct, fanout, topic, headers, got {other:?}"),
                );
                None
            }
        },
    };
    let exchange_ok = name.is_empty() || kind.is_some();
    let exchange = Exchange {
        name,
        kind,
        durable: flag(raw_exchange.durability),
        auto_delete: flag(raw_exchange.auto_delete),
    };
    let routing_key = c.required("notifier.amqp.routing_key", raw.routing_key);

    let raw_uris = raw.uris.unwrap_or_default();
    if raw_uris.is_empty() {
        c.problem(
            "notifier.amqp.uris",
            "needs at least one broker URL (amqp://user:pass@host:5672/vhost)",
        );
    }
    let mut uris = Vec::new();
    for (i, text) in raw_uris.iter().enumerate() {
        let key = format!("notifier.amqp.uris[{i}]");
        // Clair's rules (amqp091-go's ParseURI): `amqp://guest:guest@rabbitmq:5672/` is the
        // default vhost. The URI may hold a password, which the errors never quote.
        match BrokerUrl::parse(text) {
            Ok(url) => uris.push(url),
            Err(e) => c.problem(&key, e.to_string()),
        }
    }
    let delivery = c.delivery("notifier.amqp", flag(raw.direct), raw.callback, raw.rollup);
    let tls = c.tls_section("notifier.amqp.tls", raw.tls);
    if tls.is_some() && !uris.is_empty() && !uris.iter().any(BrokerUrl::is_tls) {
        c.warn(
            "notifier.amqp.tls",
            "used only for amqps:// brokers, and every configured URI is amqp://",
        );
    }
    if !exchange_ok || uris.len() != raw_uris.len() || uris.is_empty() {
        return None;
    }
    Some(Amqp {
        exchange,
        routing_key: routing_key?,
        uris,
        delivery: delivery?,
        tls,
    })
}

fn stomp(c: &mut Checker, raw: RawStomp) -> Option<Stomp> {
    let destination = c.required("notifier.stomp.destination", raw.destination);
    let raw_uris = raw.uris.unwrap_or_default();
    if raw_uris.is_empty() {
        c.problem(
            "notifier.stomp.uris",
            "needs at least one broker address (host:port)",
        );
    }
    let mut uris = Vec::new();
    for (i, text) in raw_uris.iter().enumerate() {
        match parse_host_port(text) {
            Ok(hp) => uris.push(hp),
            // Someone may have written credentials into the address: never echo them.
            Err(e) => c.problem(
                &format!("notifier.stomp.uris[{i}]"),
                e.replace(text.as_str(), &shown_address(text)),
            ),
        }
    }
    let delivery = c.delivery("notifier.stomp", flag(raw.direct), raw.callback, raw.rollup);
    let login = match raw.user {
        None => None,
        Some(user) => {
            let login = c.required("notifier.stomp.user.login", user.login);
            login.map(|login| StompLogin {
                login,
                passcode: Secret::new(user.passcode.unwrap_or_default()),
            })
        }
    };
    let tls = c.tls_section("notifier.stomp.tls", raw.tls);
    if uris.len() != raw_uris.len() || uris.is_empty() {
        return None;
    }
    Some(Stomp {
        destination: destination?,
        uris,
        delivery: delivery?,
        login,
        tls,
    })
}

/// Picks the one channel Clair would use (webhook > amqp > stomp) and validates it.
fn channel(c: &mut Checker, raw: &mut RawNotifier, psk_configured: bool) -> Option<Channel> {
    let present: Vec<&str> = [
        raw.webhook.is_some().then_some("webhook"),
        raw.amqp.is_some().then_some("amqp"),
        raw.stomp.is_some().then_some("stomp"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if present.len() > 1 {
        c.warn(
            "notifier",
            format_args!(
                "several delivery channels are configured ({}); as in Clair only one is used, by precedence webhook > amqp > stomp: using {}, ignoring {}",
                present.join(", "),
                present[0],
                present[1..].join(", ")
            ),
        );
    }
    if let Some(raw) = raw.webhook.take() {
        return webhook(c, raw, psk_configured).map(Channel::Webhook);
    }
    if let Some(raw) = raw.amqp.take() {
        return amqp(c, raw).map(Channel::Amqp);
    }
    if let Some(raw) = raw.stomp.take() {
        return stomp(c, raw).map(Channel::Stomp);
    }
    None
}

fn logging(c: &mut Checker, log_level: Option<RawLogLevel>, raw: Option<RawLogging>) -> Logging {
    let raw = raw.unwrap_or_default();
    let (key, level) = match (raw.level, log_level) {
        (Some(level), old) => {
            if old.is_some_and(|old| old.level() != level.level()) {
                c.warn("log_level", "ignored because logging.level is also set");
            }
            ("logging.level", Some(level))
        }
        (None, old) => ("log_level", old),
    };
    let mut prose = flag(raw.prose);
    match level {
        Some(RawLogLevel::DebugColor) => {
            c.warn(
                key,
                "\"debug-color\" is deprecated in Clair; using \"debug\" with logging.prose: true",
            );
            prose = true;
        }
        Some(RawLogLevel::Fatal(name)) => c.warn(
            key,
            format_args!("{name:?} is treated as \"error\" (tocsin has no fatal or panic level)"),
        ),
        _ => {}
    }
    Logging {
        level: level.map_or(LogLevel::Info, RawLogLevel::level),
        prose,
        omit_timestamps: flag(raw.omit_timestamps),
    }
}

fn psk(c: &mut Checker, raw: Option<RawAuth>, ignored: &mut Vec<String>) -> Option<Psk> {
    let raw = raw?;
    if raw.keyserver.is_some() {
        ignored.push("auth.keyserver".to_owned());
        c.warn(
            "auth.keyserver",
            "deprecated and unused in Clair, ignored by tocsin: only auth.psk authenticates",
        );
    }
    let raw = raw.psk?;
    let key = raw.key.map(|k| k.0).unwrap_or_default();
    if key.is_empty() {
        c.problem(
            "auth.psk.key",
            "is required when auth.psk is set (a base64-encoded shared key)",
        );
        return None;
    }
    let issuers: Vec<String> = raw
        .iss
        .map(|i| i.0)
        .unwrap_or_default()
        .into_iter()
        .filter(|i| !i.is_empty())
        .collect();
    if issuers.is_empty() {
        c.warn(
            "auth.psk.iss",
            "no issuers listed: tokens from any issuer signed with the key are accepted",
        );
    }
    Some(Psk {
        key: Secret::new(key),
        issuers,
    })
}

fn legacy_webhook(c: &mut Checker, raw: RawLegacyNotifier) -> Option<LegacyWebhook> {
    let http = raw.http?;
    let Some(endpoint) = non_empty(http.endpoint) else {
        // Clair v2 disables its notifier when the endpoint is empty; say so only when the
        // user configured something else, which suggests they expected delivery.
        if [
            &http.servername,
            &http.cafile,
            &http.certfile,
            &http.keyfile,
            &http.proxy,
        ]
        .iter()
        .any(|v| v.as_deref().is_some_and(|v| !v.is_empty()))
        {
            c.warn(
                "clair.notifier.http.endpoint",
                "empty, so v2 webhook delivery is disabled",
            );
        }
        return None;
    };
    let endpoint = c.http_url("clair.notifier.http.endpoint", &endpoint);
    let attempts = match raw.attempts {
        None => NonZeroU32::new(DEFAULT_LEGACY_ATTEMPTS),
        Some(n) => {
            let attempts = u32::try_from(n).ok().and_then(NonZeroU32::new);
            if attempts.is_none() {
                c.problem(
                    "clair.notifier.attempts",
                    format!("must be a whole number from 1 to {}, got {n}", u32::MAX),
                );
            }
            attempts
        }
    };
    let renotify_interval = c.positive(
        "clair.notifier.renotifyinterval",
        raw.renotifyinterval,
        DEFAULT_LEGACY_RENOTIFY_INTERVAL,
    );
    let server_name = non_empty(http.servername);
    let tls = c.client_tls(
        [
            "clair.notifier.http.cafile",
            "clair.notifier.http.certfile",
            "clair.notifier.http.keyfile",
        ],
        http.cafile,
        http.certfile,
        http.keyfile,
    );
    let tls = tls.filter(|t| t.root_ca.is_some() || t.identity.is_some());
    let proxy = non_empty(http.proxy).and_then(|p| c.http_url("clair.notifier.http.proxy", &p));
    Some(LegacyWebhook {
        endpoint: endpoint?,
        attempts: attempts?,
        renotify_interval,
        server_name,
        tls,
        proxy,
    })
}

/// Clair's `tls` (serve HTTPS) and tocsin's `tocsin.tls.client_ca`.
fn server_tls(
    c: &mut Checker,
    raw: Option<RawTls>,
    client_ca: Option<String>,
) -> Option<ServerTls> {
    let Some(raw) = raw else {
        if client_ca.is_some() {
            c.problem(
                "tocsin.tls.client_ca",
                "client certificates are asked for over TLS only: set tls.cert and tls.key too",
            );
        }
        return None;
    };
    if non_empty(raw.root_ca).is_some() {
        c.warn(
            "tls.root_ca",
            "accepted and not used: a server does not need it (Clair ignores it when serving too, and deprecates it); to require client certificates set tocsin.tls.client_ca",
        );
    }
    // Clair requires both (its `tls: {}` fails at start); so does tocsin, with the reason.
    let cert = c.required("tls.cert", raw.cert);
    let key = c.required("tls.key", raw.key);
    let cert = cert.and_then(|p| c.existing_file("tls.cert", p));
    let key = key.and_then(|p| c.existing_file("tls.key", p));
    let client_ca = client_ca.map(|p| c.existing_file("tocsin.tls.client_ca", p));
    Some(ServerTls {
        cert: cert?,
        key: key?,
        client_ca: client_ca.flatten(),
    })
}

fn tocsin(c: &mut Checker, raw: RawTocsin, delivery_interval: Duration) -> Tocsin {
    let raw_delivery = raw.delivery.unwrap_or_default();
    let timeout = c.positive(
        "tocsin.delivery.timeout",
        raw_delivery.timeout,
        DEFAULT_DELIVERY_TIMEOUT,
    );
    let connect_timeout = c.positive(
        "tocsin.delivery.connect_timeout",
        raw_delivery.connect_timeout,
        DEFAULT_CONNECT_TIMEOUT,
    );
    if connect_timeout > timeout {
        c.warn(
            "tocsin.delivery.connect_timeout",
            format_args!(
                "{} is longer than tocsin.delivery.timeout ({}), which bounds the whole attempt",
                format_go_duration(connect_timeout),
                format_go_duration(timeout)
            ),
        );
    }
    let initial_backoff = c.positive(
        "tocsin.delivery.initial_backoff",
        raw_delivery.initial_backoff,
        DEFAULT_INITIAL_BACKOFF,
    );
    let max_backoff = c.positive(
        "tocsin.delivery.max_backoff",
        raw_delivery.max_backoff,
        delivery_interval,
    );
    if initial_backoff > max_backoff {
        c.problem(
            "tocsin.delivery.initial_backoff",
            format!(
                "{} is longer than max_backoff ({})",
                format_go_duration(initial_backoff),
                format_go_duration(max_backoff)
            ),
        );
    }
    let lease = c.positive("tocsin.delivery.lease", raw_delivery.lease, DEFAULT_LEASE);
    if lease <= timeout {
        // A claim that expires while its attempt may still be running lets a second worker
        // deliver the same set: the duplicate Clair suffers from.
        c.problem(
            "tocsin.delivery.lease",
            format!(
                "{} must be longer than tocsin.delivery.timeout ({}), or a slow delivery could be claimed and sent twice",
                format_go_duration(lease),
                format_go_duration(timeout)
            ),
        );
    }
    let workers = match raw_delivery.workers {
        None => NonZeroUsize::new(DEFAULT_WORKERS),
        Some(n) => {
            let workers = usize::try_from(n).ok().and_then(NonZeroUsize::new);
            if workers.is_none() {
                c.problem("tocsin.delivery.workers", "must be at least 1");
            }
            workers
        }
    }
    .unwrap_or(NonZeroUsize::MIN);
    let max_body_size = match raw.max_body_size {
        None => DEFAULT_MAX_BODY_SIZE,
        Some(raw::ByteSize(0)) => {
            c.problem("tocsin.max_body_size", "must be greater than 0");
            DEFAULT_MAX_BODY_SIZE
        }
        Some(raw::ByteSize(n)) => n,
    };
    let max_concurrent_uploads = match raw.max_concurrent_uploads {
        None => DEFAULT_MAX_CONCURRENT_UPLOADS,
        Some(n) => match usize::try_from(n) {
            Ok(n) if n >= 1 => n,
            _ => {
                c.problem("tocsin.max_concurrent_uploads", "must be at least 1");
                DEFAULT_MAX_CONCURRENT_UPLOADS
            }
        },
    };
    let limits = limits(c, raw.limits.unwrap_or_default());
    let (updaters, withdraw_guard) = match raw.updaters {
        None => (None, None),
        Some(u) => {
            let (config, guard) = updaters(c, u);
            (Some(config), guard)
        }
    };
    let legacy_layer_label = match raw.legacy_layer_label {
        Some(l) if l.trim().is_empty() || l.contains('=') => {
            c.problem(
                "tocsin.legacy_layer_label",
                "must be a label key (e.g. image), not empty and without '='",
            );
            None
        }
        other => other,
    };
    let grpc_listen_addr = non_empty(raw.grpc_listen_addr).and_then(|text| {
        parse_listen_addr(&text)
            .map_err(|e| c.problem("tocsin.grpc_listen_addr", e))
            .ok()
    });
    Tocsin {
        grpc_listen_addr,
        first_update: raw.first_update.unwrap_or(FirstUpdate::Notify),
        changed_reason: flag(raw.changed_reason),
        legacy_layer_label,
        retention: c.positive("tocsin.retention", raw.retention, DEFAULT_RETENTION),
        gc_interval: c.positive("tocsin.gc_interval", raw.gc_interval, DEFAULT_GC_INTERVAL),
        process_interval: c.positive(
            "tocsin.process_interval",
            raw.process_interval,
            DEFAULT_PROCESS_INTERVAL,
        ),
        delivery: DeliveryTuning {
            connect_timeout,
            timeout,
            initial_backoff,
            max_backoff,
            dead_letter_after: c.positive(
                "tocsin.delivery.dead_letter_after",
                raw_delivery.dead_letter_after,
                DEFAULT_DEAD_LETTER_AFTER,
            ),
            workers,
            lease,
            // Persistent unless switched off: losing queued notifications in a broker restart
            // is the surprise, not the reverse. The key lives under `tocsin:` because Clair
            // rejects unknown keys in its own `notifier.amqp`/`notifier.stomp` sections.
            persistent: raw_delivery.persistent.is_none_or(|b| b.0),
        },
        max_body_size,
        header_read_timeout: c.positive(
            "tocsin.header_read_timeout",
            raw.header_read_timeout,
            DEFAULT_HEADER_READ_TIMEOUT,
        ),
        upload_timeout: c.positive(
            "tocsin.upload_timeout",
            raw.upload_timeout,
            DEFAULT_UPLOAD_TIMEOUT,
        ),
        max_concurrent_uploads,
        limits,
        updaters,
        withdraw_guard,
    }
}

/// `tocsin.updaters.withdraw_guard`: `50%`, a fraction in (0, 1], or `off`.
fn withdraw_guard(c: &mut Checker, raw: Option<serde_yaml_ng::Value>) -> Option<f64> {
    use serde_yaml_ng::Value;
    const KEY: &str = "tocsin.updaters.withdraw_guard";
    const FORMS: &str = "must be a percentage (50%), a fraction in (0, 1] (0.5), or off";
    let fraction = match raw {
        None => return Some(DEFAULT_WITHDRAW_GUARD),
        Some(Value::Bool(false)) => return None,
        Some(Value::String(s)) if s.trim().eq_ignore_ascii_case("off") => return None,
        Some(Value::String(s)) => match s.trim().strip_suffix('%') {
            Some(p) => p.trim().parse::<f64>().ok().map(|p| p / 100.0),
            None => s.trim().parse::<f64>().ok(),
        },
        Some(Value::Number(n)) => n.as_f64(),
        Some(_) => None,
    };
    match fraction {
        Some(f) if f > 0.0 && f <= 1.0 => Some(f),
        _ => {
            c.problem(KEY, FORMS);
            Some(DEFAULT_WITHDRAW_GUARD)
        }
    }
}

/// `tocsin.updaters`: the sources (`osv:` ecosystems, then `sources:`), each name once.
fn updaters(
    c: &mut Checker,
    raw: raw::RawUpdaters,
) -> (tocsin_updaters::UpdatersConfig, Option<f64>) {
    use tocsin_updaters::{FetchOptions, Location, SourceKind, SourceSpec, UpdatersConfig};
    let defaults = UpdatersConfig::default();
    let fetch_defaults = FetchOptions::default();
    let interval = c.positive(
        "tocsin.updaters.interval",
        raw.interval,
        DEFAULT_UPDATER_INTERVAL,
    );
    let osv_base = match raw.osv_base.as_deref() {
        None => Location::parse(tocsin_updaters::OSV_BASE).ok(),
        Some(text) => Location::parse(text)
            .map_err(|e| c.problem("tocsin.updaters.osv_base", e))
            .ok(),
    };
    let mut sources: Vec<SourceSpec> = Vec::new();
    for (i, eco) in raw.osv.unwrap_or_default().into_iter().enumerate() {
        let key = format!("tocsin.updaters.osv[{i}]");
        let eco = eco.trim().to_string();
        if eco.is_empty() || eco.contains(['/', '\\']) || eco.chars().any(char::is_control) {
            c.problem(
                &key,
                "must be an OSV ecosystem name (PyPI, Debian, crates.io, …)",
            );
            continue;
        }
        if let Some(base) = &osv_base {
            sources.push(SourceSpec::osv(&eco, base.clone(), interval));
        }
    }
    for (i, s) in raw.sources.unwrap_or_default().into_iter().enumerate() {
        let key = |k: &str| format!("tocsin.updaters.sources[{i}].{k}");
        let name = match s.name.map(|n| n.trim().to_string()) {
            None => {
                c.problem(
                    &key("name"),
                    "is required (the updater name, e.g. osv/debian)",
                );
                continue;
            }
            Some(n) => n,
        };
        if let Err(e) = tocsin_api::validate_updater_name(&name) {
            c.problem(&key("name"), e.to_string());
            continue;
        }
        let location = match s.url.as_deref() {
            None => {
                c.problem(&key("url"), "is required: an http(s) URL or a local path");
                continue;
            }
            Some(text) => match Location::parse(text) {
                Ok(l) => l,
                Err(e) => {
                    c.problem(&key("url"), e);
                    continue;
                }
            },
        };
        let mut headers = Vec::new();
        for (k, v) in s.headers.unwrap_or_default() {
            if !is_token(&k) {
                c.problem(&key("headers"), format!("{k:?} is not a valid header name"));
            } else if !is_header_value(&v) {
                c.problem(
                    &key("headers"),
                    format!("the value of {k} holds characters a header cannot carry"),
                );
            } else {
                headers.push((k, v));
            }
        }
        let source_interval = c.positive(&key("interval"), s.interval, interval);
        sources.push(SourceSpec {
            name,
            kind: SourceKind::Snapshot(location),
            interval: source_interval,
            headers,
        });
    }
    let mut seen = std::collections::HashSet::new();
    for s in &sources {
        if !seen.insert(s.name.clone()) {
            c.problem(
                "tocsin.updaters",
                format!(
                    "updater {} is configured twice (an osv: ecosystem and a source, or two \
                     sources of one name)",
                    s.name
                ),
            );
        }
    }
    let timeout = c.positive(
        "tocsin.updaters.timeout",
        raw.timeout,
        fetch_defaults.timeout,
    );
    let retries = match raw.retries {
        None => fetch_defaults.retries,
        Some(n) => u32::try_from(n)
            .ok()
            .filter(|n| *n <= 20)
            .unwrap_or_else(|| {
                c.problem("tocsin.updaters.retries", "must be between 0 and 20");
                fetch_defaults.retries
            }),
    };
    let initial_backoff = c.positive(
        "tocsin.updaters.initial_backoff",
        raw.initial_backoff,
        fetch_defaults.initial_backoff,
    );
    let max_backoff = c.positive(
        "tocsin.updaters.max_backoff",
        raw.max_backoff,
        fetch_defaults.max_backoff,
    );
    let max_download_size = match raw.max_download_size {
        None => fetch_defaults.max_download_size,
        Some(raw::ByteSize(0)) => {
            c.problem(
                "tocsin.updaters.max_download_size",
                "must be greater than 0",
            );
            fetch_defaults.max_download_size
        }
        Some(raw::ByteSize(n)) => n,
    };
    let max_incremental = match raw.max_incremental {
        None => defaults.max_incremental,
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
    };
    // A run holds its lease for the whole transfer, retries included, and the import after it.
    let lease_floor = timeout
        .saturating_mul(retries.saturating_add(1))
        .saturating_add(max_backoff.saturating_mul(retries));
    let lease = match raw.lease {
        None => defaults
            .lease
            .max(lease_floor + std::time::Duration::from_secs(60)),
        Some(_) => c.positive("tocsin.updaters.lease", raw.lease, defaults.lease),
    };
    let config = UpdatersConfig {
        sources,
        fetch: FetchOptions {
            connect_timeout: c.positive(
                "tocsin.updaters.connect_timeout",
                raw.connect_timeout,
                fetch_defaults.connect_timeout,
            ),
            timeout,
            retries,
            initial_backoff,
            max_backoff,
            max_download_size,
        },
        max_incremental,
        lease,
        full_refresh: c.positive(
            "tocsin.updaters.full_refresh",
            raw.full_refresh,
            defaults.full_refresh,
        ),
    };
    (config, withdraw_guard(c, raw.withdraw_guard))
}

/// `tocsin.limits`: every bound positive; unset ones keep [`Limits::default`].
fn limits(c: &mut Checker, raw: raw::RawLimits) -> Limits {
    let defaults = Limits::default();
    let mut positive = |key: &str, value: Option<u64>, default: u64| match value {
        None => default,
        Some(0) => {
            c.problem(&format!("tocsin.limits.{key}"), "must be greater than 0");
            default
        }
        Some(n) => n,
    };
    Limits {
        max_member_bytes: positive(
            "max_member_bytes",
            raw.max_member_bytes.map(|b| b.0),
            defaults.max_member_bytes,
        ),
        max_decompressed_bytes: positive(
            "max_decompressed_bytes",
            raw.max_decompressed_bytes.map(|b| b.0),
            defaults.max_decompressed_bytes,
        ),
        max_archive_members: positive(
            "max_archive_members",
            raw.max_archive_members,
            defaults.max_archive_members,
        ),
        max_manifest_import_bytes: positive(
            "max_manifest_import_bytes",
            raw.max_manifest_import_bytes.map(|b| b.0),
            defaults.max_manifest_import_bytes,
        ),
        max_yaml_bytes: positive(
            "max_yaml_bytes",
            raw.max_yaml_bytes.map(|b| b.0),
            defaults.max_yaml_bytes,
        ),
    }
}

/// Turns the parsed file into a [`Config`], or lists everything wrong with it.
pub(super) fn validate(
    raw: RawConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Config, Vec<String>), Vec<Problem>> {
    let mut c = Checker::default();
    let mut ignored = Vec::new();

    for (name, section) in [
        ("indexer", &raw.indexer),
        ("matcher", &raw.matcher),
        ("matchers", &raw.matchers),
        ("updaters", &raw.updaters),
        ("trace", &raw.trace),
        ("metrics", &raw.metrics),
    ] {
        if section.is_some() {
            ignored.push(name.to_owned());
        }
    }

    let listen_text = non_empty(raw.http_listen_addr);
    let http_listen_addr =
        match parse_listen_addr(listen_text.as_deref().unwrap_or(DEFAULT_HTTP_LISTEN_ADDR)) {
            Ok(addr) => addr,
            Err(e) => {
                c.problem("http_listen_addr", e);
                ListenAddr::all_interfaces(6060)
            }
        };
    if let Some(text) = non_empty(raw.introspection_addr) {
        match parse_listen_addr(&text) {
            Ok(_) => c.warn(
                "introspection_addr",
                "accepted and not used: tocsin serves metrics and health on http_listen_addr",
            ),
            Err(e) => c.problem("introspection_addr", e),
        }
    }

    let logging = logging(&mut c, raw.log_level, raw.logging);
    let psk = psk(&mut c, raw.auth, &mut ignored);

    let mut raw_notifier = raw.notifier.unwrap_or_default();
    let channel = channel(&mut c, &mut raw_notifier, psk.is_some());
    let clair_indexer = non_empty(raw_notifier.indexer_addr)
        .and_then(|a| service_base_url(&mut c, "notifier.indexer_addr", &a));
    let clair_matcher = non_empty(raw_notifier.matcher_addr)
        .and_then(|a| service_base_url(&mut c, "notifier.matcher_addr", &a));
    let poll_interval = c.clair_interval(
        "notifier.poll_interval",
        raw_notifier.poll_interval,
        DEFAULT_POLL_INTERVAL,
    );
    let delivery_interval = c.clair_interval(
        "notifier.delivery_interval",
        raw_notifier.delivery_interval,
        DEFAULT_DELIVERY_INTERVAL,
    );
    // Fronting a Clair takes both: the matcher's update operations and the indexer's
    // affected manifests.
    match (&clair_indexer, &clair_matcher) {
        (Some(_), None) => c.problem(
            "notifier.matcher_addr",
            "is needed with notifier.indexer_addr: tocsin fronts a Clair through both (its \
             matcher's update operations, its indexer's affected manifests)",
        ),
        (None, Some(_)) => c.problem(
            "notifier.indexer_addr",
            "is needed with notifier.matcher_addr: tocsin fronts a Clair through both (its \
             matcher's update operations, its indexer's affected manifests)",
        ),
        _ => {}
    }
    let notifier = Notifier {
        clair_indexer,
        clair_matcher,
        poll_interval,
        delivery_interval,
        disable_summary: flag(raw_notifier.disable_summary),
        channel,
    };

    let mut raw_tocsin = raw.tocsin.unwrap_or_default();
    let env_data_dir = env(ENV_DATA_DIR).filter(|v| !v.is_empty());
    let file_data_dir = non_empty(raw_tocsin.data_dir.take());
    let storage = match non_empty(raw_notifier.connstring) {
        Some(connstring) => {
            check_connstring(&mut c, "notifier.connstring", &connstring);
            if env_data_dir.is_some() || file_data_dir.is_some() {
                c.warn(
                    "tocsin.data_dir",
                    format_args!(
                        "ignored (also {ENV_DATA_DIR}): notifier.connstring selects PostgreSQL storage"
                    ),
                );
            }
            Storage::Postgres {
                connstring: Secret::new(connstring),
                migrations: flag(raw_notifier.migrations),
            }
        }
        None => Storage::Embedded {
            data_dir: PathBuf::from(
                env_data_dir
                    .or(file_data_dir)
                    .unwrap_or_else(|| DEFAULT_DATA_DIR.to_owned()),
            ),
        },
    };

    let legacy_webhook = match raw.clair {
        None => None,
        Some(root) => {
            for (name, section) in [
                ("clair.database", &root.database),
                ("clair.api", &root.api),
                ("clair.updater", &root.updater),
                ("clair.worker", &root.worker),
            ] {
                if section.is_some() {
                    ignored.push(name.to_owned());
                }
            }
            // Clair v3 served its gRPC API over TLS with these; tocsin's listeners take theirs
            // from `tls`, so say that the files here are not used.
            if let Some(api) = &root.api {
                for k in ["certfile", "keyfile", "cafile"] {
                    if api
                        .get(k)
                        .and_then(serde_yaml_ng::Value::as_str)
                        .is_some_and(|v| !v.is_empty())
                    {
                        c.warn(
                            &format!("clair.api.{k}"),
                            "ignored with the rest of clair.api: tocsin serves TLS with tls.cert and tls.key (and requires client certificates with tocsin.tls.client_ca)",
                        );
                    }
                }
            }
            root.notifier.and_then(|n| legacy_webhook(&mut c, n))
        }
    };

    let client_ca = raw_tocsin.tls.take().and_then(|t| non_empty(t.client_ca));
    let tls = server_tls(&mut c, raw.tls, client_ca);
    let tocsin = tocsin(&mut c, raw_tocsin, delivery_interval);
    if notifier.clair_matcher.is_some() && tocsin.updaters.is_some() {
        c.problem(
            "tocsin.updaters",
            "cannot be used while fronting a Clair (notifier.matcher_addr): the Clair's matcher \
             is then the vulnerability source, and its indexer decides what is affected",
        );
    }
    if let Some(grpc) = &tocsin.grpc_listen_addr {
        // Port 0 asks the system for a free port: two of those never collide.
        if grpc.port != 0
            && grpc.port == http_listen_addr.port
            && grpc.host == http_listen_addr.host
        {
            c.problem(
                "tocsin.grpc_listen_addr",
                format!(
                    "{grpc} is http_listen_addr too; leave it out to serve gRPC on the HTTP listener"
                ),
            );
        }
    }

    if !c.problems.is_empty() {
        return Err(c.problems);
    }
    Ok((
        Config {
            http_listen_addr,
            tls,
            logging,
            psk,
            storage,
            notifier,
            legacy_webhook,
            tocsin,
            test_mode: test_mode_from_env(env),
            ignored_sections: ignored,
        },
        c.warnings,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_follow_go() {
        let cases: &[(&str, &str)] = &[
            (":6060", "0.0.0.0:6060"),
            ("localhost:6060", "localhost:6060"),
            ("127.0.0.1:0", "127.0.0.1:0"),
            ("[::1]:8080", "[::1]:8080"),
            ("[::]:6060", "[::]:6060"),
            ("0.0.0.0:80", "0.0.0.0:80"),
        ];
        for (text, shown) in cases {
            let addr = parse_listen_addr(text).map(|a| a.to_string());
            assert_eq!(addr.as_deref(), Ok(*shown), "{text}");
        }
        assert_eq!(
            parse_listen_addr("127.0.0.1:0").map(|a| a.host),
            Ok(ListenHost::Ip(IpAddr::from([127, 0, 0, 1])))
        );
        for bad in [
            "6060",
            "::1:80",
            "host:http",
            "host:70000",
            "[::1]",
            "[::1:80",
            "a b:1",
        ] {
            assert!(parse_listen_addr(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn broker_addresses_need_host_and_port() {
        assert_eq!(
            parse_host_port("rabbit:61613").map(|h| h.to_string()),
            Ok("rabbit:61613".to_owned())
        );
        assert_eq!(
            parse_host_port("[fe80::1]:61613").map(|h| h.to_string()),
            Ok("[fe80::1]:61613".to_owned())
        );
        assert!(parse_host_port(":61613").is_err());
        assert!(parse_host_port("rabbit:0").is_err());
        assert!(parse_host_port("stomp://rabbit:61613").is_err());
    }

    #[test]
    fn service_addresses_accept_urls_and_host_port() {
        let mut c = Checker::default();
        let url = service_base_url(&mut c, "k", "http://clair-matcher:8080/base");
        assert_eq!(
            url.map(String::from).as_deref(),
            Some("http://clair-matcher:8080/base/")
        );
        let url = service_base_url(&mut c, "k", "clair-indexer:6060");
        assert_eq!(
            url.map(String::from).as_deref(),
            Some("http://clair-indexer:6060/")
        );
        assert!(c.problems.is_empty());
        assert!(service_base_url(&mut c, "k", "ftp://x/").is_none());
        assert!(service_base_url(&mut c, "k", ":6060").is_none());
        assert_eq!(c.problems.len(), 2);
    }

    #[test]
    fn header_syntax() {
        assert!(is_token("X-Api-Key"));
        assert!(!is_token("X Api"));
        assert!(!is_token(""));
        assert!(is_header_value("Bearer abc\tdef"));
        assert!(!is_header_value("a\r\nInjected: yes"));
    }

    #[test]
    fn connstrings_are_checked_without_echoing_them() {
        let mut c = Checker::default();
        check_connstring(&mut c, "k", "postgres://u:pw@db/notifier?sslmode=disable");
        check_connstring(&mut c, "k", "host=db user=u password=pw dbname=notifier");
        assert!(c.problems.is_empty());
        check_connstring(&mut c, "k", "hunter2");
        assert_eq!(c.problems.len(), 1);
        assert!(!c.problems[0].message.contains("hunter2"));
    }
}
