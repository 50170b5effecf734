//! AMQP broker URIs (`notifier.amqp.uris`), read exactly as Clair reads them.
//!
//! Clair hands each URI to amqp091-go (`DialTLS`, which calls `ParseURI`), and `ParseURI` builds
//! on Go's `net/url`. [`BrokerUri::parse`] follows the same rules, written here from their
//! description (no code is shared):
//!
//! - **Whole string**: a space anywhere, or a control character, is an error. A `#fragment` is
//!   dropped (its `%`-escapes must still be well formed).
//! - **Scheme**: `amqp` or `amqps`, in any case (`AMQP://` is `amqp://`).
//! - **Authority** (after `//`, up to the next `/`): the user info is what precedes the *last*
//!   `@`, so a password may hold `@`. User info may only hold letters, digits,
//!   `-._:~!$&'()*+,;=%@`, with `%`-escapes decoded. `user:pass` sets both; `user` alone keeps the
//!   password `guest`; no user info at all means `guest`/`guest`. An empty user (`:pass@`) is
//!   empty, not `guest`.
//! - **Host**: empty means `localhost`. An IPv6 address is written in brackets (`[::1]`,
//!   `[fe80::1%25eth0]` with a zone); brackets are removed. `%`-escapes of ASCII characters are
//!   refused in a host (only `%25` and escapes of non-ASCII bytes are allowed).
//! - **Port**: digits after the last `:`; absent or empty means 5672 for `amqp` and 5671 for
//!   `amqps`.
//! - **Vhost**: from the `%`-decoded path. No path or a path of just `/` is the default vhost
//!   `/`; otherwise the path without its leading `/` (so `/%2f` is `/`, `/vhost` is `vhost`,
//!   `/a%2Fb` is `a/b`, and `//` is `/`). With an empty host, a path starting `///` loses all
//!   three slashes (`amqp://///v` is vhost `v` on localhost).
//! - **Query** (`?k=v&…`, `+` is a space, `%`-escapes decoded, the first value of a repeated key
//!   wins): `certfile`, `keyfile`, `cacertfile`, `server_name_indication` (TLS, `amqps://` only),
//!   `auth_mechanism` (`plain`, `amqplain` or `external`, any case), `heartbeat` (seconds),
//!   `connection_timeout` (milliseconds) and `channel_max`. Every other key is ignored, as in
//!   amqp091-go — `frame_max` included, which amqp091-go does not read.
//!
//! # Where tocsin refuses what Go would parse
//! Each of these either cannot reach any broker under Clair either, or silently throws away part
//! of what was written; refusing it at start-up is the clearer failure:
//! - a port of 0 or above 65535 (Go parses up to 2³¹−1, then the dial fails);
//! - `amqp:host…` without `//` (Go discards the text and connects to `localhost`);
//! - a colon in a host outside brackets (`amqp://::1`, Go dials nonsense);
//! - a negative `heartbeat` (Clair's heartbeater panics), one above 65535 (AMQP's field is
//!   16 bits), a negative `connection_timeout` (every dial times out at once);
//! - a known query parameter that Go would drop silently because of a bad `%`-escape or a `;`;
//! - anything that is not UTF-8 once decoded, and a vhost longer than AMQP's 255 bytes.
//!
//! # Why not lapin's own parser
//! lapin parses URIs with amq-protocol-uri (WHATWG URLs through the `url` crate), which differs
//! from amqp091-go where it matters: a path of `/` becomes the *empty* vhost (RabbitMQ answers
//! `NOT_ALLOWED - vhost  not found`, issue 20), a bracketed IPv6 host silently becomes
//! `localhost`, the TLS query parameters are not read at all, and zone identifiers are refused.
//! Rewriting the string before handing it over could fix the vhost but not the host or TLS, and
//! would mean a second encoder that must round-trip every escape. So the URI is parsed here and
//! lapin receives its public [`AMQPUri`] struct ready-made ([`BrokerUri::to_lapin`]); the TLS
//! parameters are applied by the deliverer's own connect function.
//!
//! Error messages never quote the URI (only its scheme): a password holding `/`, `?` or `#`
//! would otherwise end up in a message as "host" or "path".

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use lapin::uri::{
    AMQPAuthority, AMQPQueryString, AMQPScheme, AMQPUri, AMQPUserInfo, SASLMechanism,
};

/// Why a broker URI was refused. Messages never include the URI's text, which may hold a
/// password.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    /// A space anywhere (amqp091-go refuses these).
    #[error("contains a space")]
    Whitespace,
    /// A control character (below U+0020, or DEL).
    #[error("contains a control character")]
    ControlCharacter,
    /// No `scheme:` at the start.
    #[error("has no scheme; it must start with amqp:// or amqps://")]
    NoScheme,
    /// A scheme other than `amqp`/`amqps`.
    #[error("has scheme {0:?}; it must be amqp:// or amqps://")]
    Scheme(String),
    /// `amqp:` not followed by `/`.
    #[error("has no // after the scheme, so no host (Clair would ignore the rest and connect to localhost)")]
    NoAuthority,
    /// A malformed `%`-escape in one part.
    #[error("has a malformed %-escape in its {0}")]
    Escape(&'static str),
    /// A part that is not UTF-8 once decoded.
    #[error("has a {0} that is not UTF-8 once %-decoded")]
    NotUtf8(&'static str),
    /// A character the user info may not hold unescaped.
    #[error("has a character in its user info (user:password) that must be %-encoded")]
    Userinfo,
    /// A character a host may not hold.
    #[error("has a character in its host that a host cannot hold")]
    HostCharacter,
    /// `[` without `]`.
    #[error("has a host starting with [ but no closing ]")]
    UnclosedBracket,
    /// `amqp://::1`.
    #[error(
        "has a colon in its host; an IPv6 address must be in brackets, as in amqp://[::1]:5672/"
    )]
    UnbracketedIpv6,
    /// Something other than digits after the host's last `:`.
    #[error("has a port that is not a number")]
    PortNotNumber,
    /// Port 0 or above 65535.
    #[error("has a port outside 1-65535")]
    PortRange,
    /// A vhost longer than an AMQP short string.
    #[error("has a vhost longer than AMQP's 255 bytes")]
    VhostTooLong,
    /// A query parameter tocsin reads is unusable.
    #[error("has query parameter {name} {problem}")]
    Param {
        /// The parameter.
        name: &'static str,
        /// What is wrong with its value (the value is not quoted).
        problem: &'static str,
    },
}

/// `amqp://` or `amqps://`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// Plain AMQP, default port 5672.
    Amqp,
    /// AMQP over TLS, default port 5671.
    Amqps,
}

impl Scheme {
    /// The scheme's default port.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Amqp => 5672,
            Scheme::Amqps => 5671,
        }
    }

    /// The scheme's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Amqp => "amqp",
            Scheme::Amqps => "amqps",
        }
    }
}

/// The TLS query parameters of a URI (amqp091-go reads them for `amqps://` only).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UriTls {
    /// `certfile`: client certificate (PEM).
    pub certfile: Option<PathBuf>,
    /// `keyfile`: client private key (PEM).
    pub keyfile: Option<PathBuf>,
    /// `cacertfile`: the CA certificate(s) (PEM) to trust *instead of* the system's.
    pub cacertfile: Option<PathBuf>,
    /// `server_name_indication`: the name sent as SNI and checked against the server's
    /// certificate, instead of the host.
    pub server_name: Option<String>,
}

impl UriTls {
    /// Whether any TLS parameter is present.
    pub fn is_empty(&self) -> bool {
        *self == UriTls::default()
    }
}

/// A parsed broker URI. `Debug` and `Display` never show the password.
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerUri {
    /// `amqp` or `amqps`.
    pub scheme: Scheme,
    /// Host name or address (IPv6 without brackets, zone included).
    pub host: String,
    /// Port.
    pub port: u16,
    /// User name.
    pub username: String,
    password: String,
    /// Virtual host, decoded (`/` is the default vhost).
    pub vhost: String,
    /// `heartbeat` in seconds (0: follow the broker's).
    pub heartbeat: Option<u16>,
    /// `connection_timeout` (absent or 0: the deliverer's own).
    pub connection_timeout: Option<Duration>,
    /// `channel_max` (absent or 0: the broker's).
    pub channel_max: Option<u16>,
    /// `auth_mechanism` (the first one when several are given); PLAIN when absent.
    pub auth_mechanism: Option<SASLMechanism>,
    /// TLS parameters.
    pub tls: UriTls,
}

impl BrokerUri {
    /// Parses `text` with amqp091-go's rules (see the module documentation).
    pub fn parse(text: &str) -> Result<BrokerUri, UriError> {
        if text.contains(' ') {
            return Err(UriError::Whitespace);
        }
        if text.bytes().any(|b| b < 0x20 || b == 0x7f) {
            return Err(UriError::ControlCharacter);
        }
        let (text, fragment) = match text.split_once('#') {
            Some((t, f)) => (t, Some(f)),
            None => (text, None),
        };
        if let Some(f) = fragment {
            unescape(f, Mode::Fragment).map_err(|_| UriError::Escape("fragment"))?;
        }
        let (scheme, rest) = split_scheme(text)?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "amqp" => Scheme::Amqp,
            "amqps" => Scheme::Amqps,
            _ => return Err(UriError::Scheme(scheme.to_owned())),
        };
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        if !rest.starts_with('/') {
            return Err(UriError::NoAuthority);
        }
        let (authority, path) = match rest.strip_prefix("//") {
            Some(after) => match after.find('/') {
                Some(i) => (Some(&after[..i]), &after[i..]),
                None => (Some(after), ""),
            },
            None => (None, rest),
        };

        let mut uri = BrokerUri {
            scheme,
            host: "localhost".to_owned(),
            port: scheme.default_port(),
            username: "guest".to_owned(),
            password: "guest".to_owned(),
            vhost: "/".to_owned(),
            heartbeat: None,
            connection_timeout: None,
            channel_max: None,
            auth_mechanism: None,
            tls: UriTls::default(),
        };
        let mut no_host = true;
        if let Some(authority) = authority {
            let (userinfo, hostport) = match authority.rfind('@') {
                Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
                None => (None, authority),
            };
            no_host = hostport.is_empty();
            let (host, port) = parse_host(hostport)?;
            if !host.is_empty() {
                uri.host = host;
            }
            if let Some(port) = port.filter(|p| !p.is_empty()) {
                uri.port = parse_port(port)?;
            }
            if let Some(userinfo) = userinfo {
                if !userinfo.chars().all(userinfo_char) {
                    return Err(UriError::Userinfo);
                }
                let (user, password) = match userinfo.split_once(':') {
                    Some((u, p)) => (u, Some(p)),
                    None => (userinfo, None),
                };
                uri.username = decode_utf8(user, Mode::UserPassword, "user name")?;
                if let Some(p) = password {
                    uri.password = decode_utf8(p, Mode::UserPassword, "password")?;
                }
            }
        }

        let path = decode_utf8(path, Mode::Path, "path")?;
        if let Some(tail) = path.strip_prefix('/') {
            if no_host && path.starts_with("///") {
                if path.len() > 3 {
                    uri.vhost = path[3..].to_owned();
                }
            } else if !tail.is_empty() {
                uri.vhost = tail.to_owned();
            }
        } else if !path.is_empty() {
            // Unreachable with an authority (its path starts with `/`), kept for Go's rule.
            uri.vhost = path;
        }
        if uri.vhost.len() > 255 {
            return Err(UriError::VhostTooLong);
        }

        let params = Query::parse(query)?;
        uri.read_params(&params)?;
        Ok(uri)
    }

    fn read_params(&mut self, q: &Query) -> Result<(), UriError> {
        let path = |name| q.get(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        self.tls = UriTls {
            certfile: path("certfile"),
            keyfile: path("keyfile"),
            cacertfile: path("cacertfile"),
            server_name: q
                .get("server_name_indication")
                .filter(|v| !v.is_empty())
                .map(str::to_owned),
        };
        let mechanisms = q
            .all("auth_mechanism")
            .map(|m| match m.to_ascii_uppercase().as_str() {
                "PLAIN" => Ok(SASLMechanism::Plain),
                "AMQPLAIN" => Ok(SASLMechanism::AMQPlain),
                "EXTERNAL" => Ok(SASLMechanism::External),
                _ => Err(UriError::Param {
                    name: "auth_mechanism",
                    problem: "is not plain, amqplain or external",
                }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.auth_mechanism = mechanisms.first().copied();
        if let Some(v) = q.get("heartbeat") {
            let seconds = go_atoi(v).ok_or(UriError::Param {
                name: "heartbeat",
                problem: "is not an integer",
            })?;
            self.heartbeat = Some(u16::try_from(seconds).map_err(|_| UriError::Param {
                name: "heartbeat",
                problem: "must be from 0 to 65535 seconds",
            })?);
        }
        if let Some(v) = q.get("connection_timeout") {
            let ms = go_atoi(v).ok_or(UriError::Param {
                name: "connection_timeout",
                problem: "is not an integer",
            })?;
            let ms = u64::try_from(ms).map_err(|_| UriError::Param {
                name: "connection_timeout",
                problem: "must not be negative",
            })?;
            self.connection_timeout = (ms > 0).then(|| Duration::from_millis(ms));
        }
        if let Some(v) = q.get("channel_max") {
            // Go's ParseUint: digits only, no sign.
            let n = v
                .bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| v.parse::<u16>().ok())
                .flatten()
                .ok_or(UriError::Param {
                    name: "channel_max",
                    problem: "is not an integer from 0 to 65535",
                })?;
            self.channel_max = (n > 0).then_some(n);
        }
        Ok(())
    }

    /// The password (`guest` when the URI gives none).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// Whether the URI asks for TLS.
    pub fn is_tls(&self) -> bool {
        self.scheme == Scheme::Amqps
    }

    /// lapin's form of this URI (the TLS parameters have no place there; the deliverer applies
    /// them when it connects).
    pub fn to_lapin(&self) -> AMQPUri {
        AMQPUri {
            scheme: match self.scheme {
                Scheme::Amqp => AMQPScheme::AMQP,
                Scheme::Amqps => AMQPScheme::AMQPS,
            },
            authority: AMQPAuthority {
                userinfo: AMQPUserInfo {
                    username: self.username.clone(),
                    password: self.password.clone(),
                },
                host: self.host.clone(),
                port: self.port,
            },
            vhost: self.vhost.clone(),
            query: AMQPQueryString {
                frame_max: None,
                channel_max: self.channel_max,
                heartbeat: self.heartbeat,
                connection_timeout: self
                    .connection_timeout
                    .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                auth_mechanism: self.auth_mechanism,
            },
        }
    }
}

impl FromStr for BrokerUri {
    type Err = UriError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BrokerUri::parse(s)
    }
}

/// `amqp://user:***@host:port/vhost` with the vhost encoded, for logs and errors.
impl fmt::Display for BrokerUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}:***@",
            self.scheme.as_str(),
            encode(&self.username)
        )?;
        if self.host.contains(':') {
            write!(f, "[{}]", self.host.replace('%', "%25"))?;
        } else {
            f.write_str(&self.host)?;
        }
        write!(f, ":{}/{}", self.port, encode(&self.vhost))
    }
}

impl fmt::Debug for BrokerUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerUri")
            .field("scheme", &self.scheme)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &"***")
            .field("vhost", &self.vhost)
            .field("heartbeat", &self.heartbeat)
            .field("connection_timeout", &self.connection_timeout)
            .field("channel_max", &self.channel_max)
            .field("auth_mechanism", &self.auth_mechanism)
            .field("tls", &self.tls)
            .finish()
    }
}

/// Percent-encodes all but RFC 3986's unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Go's `getScheme`: letters first, then letters, digits, `+`, `-`, `.`, up to a `:`.
fn split_scheme(text: &str) -> Result<(&str, &str), UriError> {
    for (i, b) in text.bytes().enumerate() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' => {}
            b'0'..=b'9' | b'+' | b'-' | b'.' if i > 0 => {}
            b':' if i > 0 => return Ok((&text[..i], &text[i + 1..])),
            _ => return Err(UriError::NoScheme),
        }
    }
    Err(UriError::NoScheme)
}

/// Splits `host[:port]` or `[v6][:port]` into the decoded host (brackets removed) and the port
/// digits, if a `:` was there.
fn parse_host(hostport: &str) -> Result<(String, Option<&str>), UriError> {
    if let Some(bracketed) = hostport.strip_prefix('[') {
        let close = bracketed.rfind(']').ok_or(UriError::UnclosedBracket)?;
        let port = optional_port(&bracketed[close + 1..])?;
        let inner = &bracketed[..close];
        // A zone (`%25eth0`) has its own, looser escaping rule.
        let host = match inner.find("%25") {
            Some(z) => {
                let mut h = unescape(&inner[..z], Mode::Host).map_err(host_error)?;
                h.extend(unescape(&inner[z..], Mode::Zone).map_err(host_error)?);
                h
            }
            None => unescape(inner, Mode::Host).map_err(host_error)?,
        };
        let host = String::from_utf8(host).map_err(|_| UriError::NotUtf8("host"))?;
        return Ok((host, port));
    }
    let (host, port) = match hostport.rfind(':') {
        Some(i) => (&hostport[..i], optional_port(&hostport[i..])?),
        None => (hostport, None),
    };
    if host.contains(':') {
        return Err(UriError::UnbracketedIpv6);
    }
    let host = unescape(host, Mode::Host).map_err(host_error)?;
    let host = String::from_utf8(host).map_err(|_| UriError::NotUtf8("host"))?;
    Ok((host, port))
}

fn host_error(e: EscapeError) -> UriError {
    match e {
        EscapeError::Escape => UriError::Escape("host"),
        EscapeError::HostCharacter => UriError::HostCharacter,
    }
}

/// Go's `validOptionalPort`: empty, or `:` followed by digits (possibly none). Returns the digits.
fn optional_port(s: &str) -> Result<Option<&str>, UriError> {
    if s.is_empty() {
        return Ok(None);
    }
    match s.strip_prefix(':') {
        Some(digits) if digits.bytes().all(|b| b.is_ascii_digit()) => Ok(Some(digits)),
        _ => Err(UriError::PortNotNumber),
    }
}

fn parse_port(digits: &str) -> Result<u16, UriError> {
    // Digits only (checked); anything too long for a u16 is out of range too.
    match digits.parse::<u16>() {
        Ok(0) | Err(_) => Err(UriError::PortRange),
        Ok(port) => Ok(port),
    }
}

/// Go's `validUserinfo`.
fn userinfo_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._:~!$&'()*+,;=%@".contains(c)
}

/// Go's `strconv.Atoi`: an optional sign, then decimal digits, within 64 bits.
fn go_atoi(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The parts `unescape` serves, as Go's `net/url` distinguishes them.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Host,
    Zone,
    UserPassword,
    Path,
    Fragment,
    QueryComponent,
}

#[derive(Debug)]
enum EscapeError {
    /// `%` not followed by two hex digits, or an escape a host may not use.
    Escape,
    /// A character a host may not hold.
    HostCharacter,
}

/// Go's `shouldEscape(c, encodeHost)` for ASCII: whether `c` cannot appear in a host.
fn host_forbidden(c: u8) -> bool {
    !(c.is_ascii_alphanumeric() || b"-_.~!$&'()*+,;=:[]<>\"".contains(&c))
}

fn hex(c: u8) -> Option<u8> {
    char::from(c)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// Go's `unescape`: decodes `%XX` (and `+` as a space in a query component) with the checks
/// Go applies per part.
fn unescape(s: &str, mode: Mode) -> Result<Vec<u8>, EscapeError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let (hi, lo) = match (bytes.get(i + 1).copied(), bytes.get(i + 2).copied()) {
                    (Some(a), Some(b)) => (hex(a), hex(b)),
                    _ => (None, None),
                };
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(EscapeError::Escape);
                };
                let v = (hi << 4) | lo;
                let is_25 = v == b'%';
                match mode {
                    // In a host, only `%25` and escapes of non-ASCII bytes (hi >= 8).
                    Mode::Host if hi < 8 && !is_25 => return Err(EscapeError::Escape),
                    Mode::Zone if !is_25 && v != b' ' && v < 0x80 && host_forbidden(v) => {
                        return Err(EscapeError::Escape)
                    }
                    _ => {}
                }
                out.push(v);
                i += 3;
            }
            b'+' if mode == Mode::QueryComponent => {
                out.push(b' ');
                i += 1;
            }
            c => {
                if matches!(mode, Mode::Host | Mode::Zone) && c < 0x80 && host_forbidden(c) {
                    return Err(EscapeError::HostCharacter);
                }
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(out)
}

fn decode_utf8(s: &str, mode: Mode, part: &'static str) -> Result<String, UriError> {
    let bytes = unescape(s, mode).map_err(|_| UriError::Escape(part))?;
    String::from_utf8(bytes).map_err(|_| UriError::NotUtf8(part))
}

/// The query parameters tocsin reads.
const KNOWN: [&str; 8] = [
    "certfile",
    "keyfile",
    "cacertfile",
    "server_name_indication",
    "auth_mechanism",
    "heartbeat",
    "connection_timeout",
    "channel_max",
];

/// Go's `url.ParseQuery` as `URL.Query()` uses it: pairs split on `&`; a pair holding `;` or a
/// bad escape is dropped (and an error here when it names a parameter tocsin reads).
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(raw: &str) -> Result<Query, UriError> {
        let mut pairs = Vec::new();
        for pair in raw.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decoded = if pair.contains(';') {
                None
            } else {
                match (
                    unescape(key, Mode::QueryComponent),
                    unescape(value, Mode::QueryComponent),
                ) {
                    (Ok(k), Ok(v)) => String::from_utf8(k).ok().zip(String::from_utf8(v).ok()),
                    _ => None,
                }
            };
            match decoded {
                Some(kv) => pairs.push(kv),
                None => {
                    if let Some(name) = KNOWN.iter().copied().find(|k| *k == key) {
                        return Err(UriError::Param {
                            name,
                            problem: "is malformed (a bad %-escape, a ; or not UTF-8)",
                        });
                    }
                }
            }
        }
        Ok(Query(pairs))
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests;
