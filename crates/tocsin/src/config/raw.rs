//! The file as written: serde structs that mirror the YAML one to one.
//!
//! Every struct denies unknown fields, so a typo anywhere is an error that names the key and
//! its line. Scalars whose syntax alone decides validity (durations, sizes, base64, log
//! levels, YAML 1.1 booleans) are parsed here, where the YAML library still knows the line;
//! everything that needs context (URLs, required fields, cross-field rules) is left as plain
//! values for [`super::validate`]. Every field is optional because Clair's Go structs treat a
//! missing key and its zero value alike.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_yaml_ng::Value;

use super::{FirstUpdate, LogLevel};
use crate::duration::GoDuration;

/// The whole file. Clair's other top-level sections are kept opaque so a full Clair
/// configuration loads.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub http_listen_addr: Option<String>,
    pub introspection_addr: Option<String>,
    pub log_level: Option<RawLogLevel>,
    pub logging: Option<RawLogging>,
    pub auth: Option<RawAuth>,
    pub notifier: Option<RawNotifier>,
    pub tocsin: Option<RawTocsin>,
    /// Clair v2/v3 files put everything under `clair:`.
    pub clair: Option<RawLegacyRoot>,
    /// Clair's `tls` (serve HTTPS): the same three keys as the brokers' `tls`.
    pub tls: Option<RawTls>,
    pub indexer: Option<Value>,
    pub matcher: Option<Value>,
    pub matchers: Option<Value>,
    pub updaters: Option<Value>,
    pub trace: Option<Value>,
    pub metrics: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLogging {
    pub level: Option<RawLogLevel>,
    pub omit_timestamps: Option<YamlBool>,
    pub prose: Option<YamlBool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuth {
    pub psk: Option<RawPsk>,
    /// Deprecated and unused even in Clair; accepted so old files load.
    pub keyserver: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPsk {
    pub key: Option<Base64Bytes>,
    pub iss: Option<OneOrMany>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNotifier {
    pub connstring: Option<String>,
    pub migrations: Option<YamlBool>,
    pub indexer_addr: Option<String>,
    pub matcher_addr: Option<String>,
    pub poll_interval: Option<GoDuration>,
    pub delivery_interval: Option<GoDuration>,
    pub disable_summary: Option<YamlBool>,
    pub webhook: Option<RawWebhook>,
    pub amqp: Option<RawAmqp>,
    pub stomp: Option<RawStomp>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWebhook {
    pub target: Option<String>,
    pub callback: Option<String>,
    pub headers: Option<BTreeMap<String, OneOrMany>>,
    pub signed: Option<YamlBool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawExchange {
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub durability: Option<YamlBool>,
    pub auto_delete: Option<YamlBool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub root_ca: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAmqp {
    pub exchange: Option<RawExchange>,
    pub routing_key: Option<String>,
    pub callback: Option<String>,
    pub uris: Option<Vec<String>>,
    pub rollup: Option<i64>,
    pub direct: Option<YamlBool>,
    pub tls: Option<RawTls>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLogin {
    pub login: Option<String>,
    pub passcode: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStomp {
    pub destination: Option<String>,
    pub callback: Option<String>,
    pub uris: Option<Vec<String>>,
    pub rollup: Option<i64>,
    pub direct: Option<YamlBool>,
    pub user: Option<RawLogin>,
    pub tls: Option<RawTls>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTocsin {
    pub data_dir: Option<String>,
    pub grpc_listen_addr: Option<String>,
    pub first_update: Option<FirstUpdate>,
    pub changed_reason: Option<YamlBool>,
    pub legacy_layer_label: Option<String>,
    pub retention: Option<GoDuration>,
    pub gc_interval: Option<GoDuration>,
    pub process_interval: Option<GoDuration>,
    pub delivery: Option<RawDelivery>,
    pub max_body_size: Option<ByteSize>,
    pub header_read_timeout: Option<GoDuration>,
    pub upload_timeout: Option<GoDuration>,
    pub max_concurrent_uploads: Option<u64>,
    pub tls: Option<RawTocsinTls>,
    pub limits: Option<RawLimits>,
    pub updaters: Option<RawUpdaters>,
}

/// `tocsin.updaters`: the feeds tocsin follows itself.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpdaters {
    pub interval: Option<GoDuration>,
    pub osv: Option<Vec<String>>,
    pub osv_base: Option<String>,
    pub sources: Option<Vec<RawSource>>,
    /// `50%`, a fraction (`0.5`), or `off`.
    pub withdraw_guard: Option<Value>,
    pub connect_timeout: Option<GoDuration>,
    pub timeout: Option<GoDuration>,
    pub retries: Option<u64>,
    pub initial_backoff: Option<GoDuration>,
    pub max_backoff: Option<GoDuration>,
    pub max_download_size: Option<ByteSize>,
    pub max_incremental: Option<u64>,
    pub lease: Option<GoDuration>,
    pub full_refresh: Option<GoDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSource {
    pub name: Option<String>,
    pub url: Option<String>,
    pub interval: Option<GoDuration>,
    pub headers: Option<std::collections::BTreeMap<String, String>>,
}

/// tocsin's additions to serving TLS; here because Clair rejects unknown keys under `tls`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTocsinTls {
    pub client_ca: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub max_member_bytes: Option<ByteSize>,
    pub max_decompressed_bytes: Option<ByteSize>,
    pub max_archive_members: Option<u64>,
    pub max_manifest_import_bytes: Option<ByteSize>,
    pub max_yaml_bytes: Option<ByteSize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDelivery {
    pub connect_timeout: Option<GoDuration>,
    pub timeout: Option<GoDuration>,
    pub initial_backoff: Option<GoDuration>,
    pub max_backoff: Option<GoDuration>,
    pub dead_letter_after: Option<GoDuration>,
    pub workers: Option<u64>,
    pub lease: Option<GoDuration>,
    pub persistent: Option<YamlBool>,
}

/// Clair v2/v3's `clair:` root. Only the notifier part matters to tocsin.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLegacyRoot {
    pub database: Option<Value>,
    pub api: Option<Value>,
    pub updater: Option<Value>,
    pub worker: Option<Value>,
    pub notifier: Option<RawLegacyNotifier>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLegacyNotifier {
    pub attempts: Option<i64>,
    /// Go's yaml.v2 matched `renotifyinterval`, but Clair v2's own example file spells it
    /// `renotifyInterval`; both are accepted so either kind of file loads.
    #[serde(alias = "renotifyInterval")]
    pub renotifyinterval: Option<GoDuration>,
    pub http: Option<RawLegacyHttp>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLegacyHttp {
    pub endpoint: Option<String>,
    pub servername: Option<String>,
    pub cafile: Option<String>,
    pub certfile: Option<String>,
    pub keyfile: Option<String>,
    pub proxy: Option<String>,
}

/// A boolean as Go's `yaml.v3` reads it into a `bool` field: YAML 1.2 `true`/`false` plus the
/// YAML 1.1 spellings (`yes`, `on`, `off`…) that older Clair files use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct YamlBool(pub bool);

struct YamlBoolVisitor;

impl Visitor<'_> for YamlBoolVisitor {
    type Value = YamlBool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a boolean (true or false)")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(YamlBool(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        match v {
            "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
                Ok(YamlBool(true))
            }
            "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off"
            | "OFF" => Ok(YamlBool(false)),
            _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
        }
    }
}

impl<'de> Deserialize<'de> for YamlBool {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(YamlBoolVisitor)
    }
}

/// A list of strings that may also be written as one string (`iss: quay` for `iss: [quay]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct OneOrMany(pub Vec<String>);

struct OneOrManyVisitor;

impl<'de> Visitor<'de> for OneOrManyVisitor {
    type Value = OneOrMany;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or a list of strings")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(OneOrMany(vec![v.to_owned()]))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(OneOrMany(Vec::new()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<String>()? {
            items.push(item);
        }
        Ok(OneOrMany(items))
    }
}

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(OneOrManyVisitor)
    }
}

/// Bytes written as standard, padded base64 (Go's `base64.StdEncoding`, as Clair reads it).
#[derive(Clone, Default, PartialEq, Eq)]
pub(super) struct Base64Bytes(pub Vec<u8>);

impl fmt::Debug for Base64Bytes {
    // Key material must not reach logs through a debug print of the raw config.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Base64Bytes([{} bytes redacted])", self.0.len())
    }
}

struct Base64Visitor;

impl Visitor<'_> for Base64Visitor {
    type Value = Base64Bytes;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a base64-encoded string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        // The error names the offending position, never the key material itself.
        base64::engine::general_purpose::STANDARD
            .decode(v.trim())
            .map(Base64Bytes)
            .map_err(|e| E::custom(format_args!("not valid standard (padded) base64: {e}")))
    }
}

impl<'de> Deserialize<'de> for Base64Bytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(Base64Visitor)
    }
}

/// A log level as Clair spells it, case-insensitively.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RawLogLevel {
    /// `""`: Clair's zero value, which means info.
    Unset,
    Trace,
    /// Clair's deprecated "debug with colours" level.
    DebugColor,
    Debug,
    Info,
    Warn,
    Error,
    /// `fatal` and `panic`: accepted by Clair, but they silence almost everything.
    Fatal(&'static str),
}

impl RawLogLevel {
    pub fn level(self) -> LogLevel {
        match self {
            RawLogLevel::Trace => LogLevel::Trace,
            RawLogLevel::DebugColor | RawLogLevel::Debug => LogLevel::Debug,
            RawLogLevel::Unset | RawLogLevel::Info => LogLevel::Info,
            RawLogLevel::Warn => LogLevel::Warn,
            RawLogLevel::Error | RawLogLevel::Fatal(_) => LogLevel::Error,
        }
    }
}

struct LogLevelVisitor;

impl Visitor<'_> for LogLevelVisitor {
    type Value = RawLogLevel;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("one of trace, debug, info, warn, error (or Clair's debug-color, fatal, panic)")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(match v.to_ascii_lowercase().as_str() {
            "" => RawLogLevel::Unset,
            "trace" => RawLogLevel::Trace,
            "debug-color" => RawLogLevel::DebugColor,
            "debug" => RawLogLevel::Debug,
            "info" => RawLogLevel::Info,
            "warn" => RawLogLevel::Warn,
            "error" => RawLogLevel::Error,
            "fatal" => RawLogLevel::Fatal("fatal"),
            "panic" => RawLogLevel::Fatal("panic"),
            _ => return Err(E::invalid_value(de::Unexpected::Str(v), &self)),
        })
    }
}

impl<'de> Deserialize<'de> for RawLogLevel {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(LogLevelVisitor)
    }
}

/// A size in bytes: a plain integer, or an integer with a binary unit (`512KiB`, `256MiB`,
/// `1GiB`). Decimal units (`MB`) are refused rather than guessed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ByteSize(pub u64);

/// Parses `256MiB`, `1 GiB`, `4096`, `100B`.
pub(super) fn parse_byte_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let digits = trimmed.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(format!(
            "invalid size {text:?}: expected an integer with an optional unit (B, KiB, MiB, GiB, TiB), e.g. \"256MiB\""
        ));
    }
    let number: u64 = trimmed[..digits]
        .parse()
        .map_err(|_| format!("invalid size {text:?}: number too large"))?;
    let unit = trimmed[digits..].trim_start();
    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        "kb" | "mb" | "gb" | "tb" | "k" | "m" | "g" | "t" => {
            return Err(format!(
                "invalid size {text:?}: {unit:?} is ambiguous (1000 or 1024?); use a binary unit: KiB, MiB, GiB or TiB"
            ))
        }
        _ => {
            return Err(format!(
                "invalid size {text:?}: unknown unit {unit:?} (use B, KiB, MiB, GiB or TiB)"
            ))
        }
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("invalid size {text:?}: too large"))
}

struct ByteSizeVisitor;

impl Visitor<'_> for ByteSizeVisitor {
    type Value = ByteSize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a size such as 256MiB, 1GiB or a number of bytes")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(ByteSize(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        u64::try_from(v)
            .map(ByteSize)
            .map_err(|_| E::custom(format_args!("invalid size {v}: must not be negative")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        parse_byte_size(v).map(ByteSize).map_err(E::custom)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ByteSizeVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Holder<T> {
        v: T,
    }

    fn parse<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T, String> {
        serde_yaml_ng::from_str::<Holder<T>>(text)
            .map(|h| h.v)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn yaml_bools_accept_yaml_1_1_spellings() {
        assert_eq!(parse::<YamlBool>("v: true"), Ok(YamlBool(true)));
        assert_eq!(parse::<YamlBool>("v: yes"), Ok(YamlBool(true)));
        assert_eq!(parse::<YamlBool>("v: Off"), Ok(YamlBool(false)));
        let err = parse::<YamlBool>("v: maybe").map(|_| ()).unwrap_err();
        assert!(err.contains("invalid value: string \"maybe\""), "{err}");
    }

    #[test]
    fn one_or_many_accepts_a_scalar_or_a_list() {
        assert_eq!(
            parse::<OneOrMany>("v: quay"),
            Ok(OneOrMany(vec!["quay".into()]))
        );
        assert_eq!(
            parse::<OneOrMany>("v: [a, b]"),
            Ok(OneOrMany(vec!["a".into(), "b".into()]))
        );
        assert!(parse::<OneOrMany>("v: {a: b}").is_err());
    }

    #[test]
    fn base64_is_decoded_and_errors_do_not_echo_the_key() {
        assert_eq!(
            parse::<Base64Bytes>("v: c2VjcmV0"),
            Ok(Base64Bytes(b"secret".to_vec()))
        );
        let err = parse::<Base64Bytes>("v: s3cr3t!!").map(|_| ()).unwrap_err();
        assert!(err.contains("not valid standard (padded) base64"), "{err}");
        assert!(!err.contains("s3cr3t"), "{err}");
        assert_eq!(
            format!("{:?}", Base64Bytes(b"secret".to_vec())),
            "Base64Bytes([6 bytes redacted])"
        );
    }

    #[test]
    fn log_levels_are_case_insensitive() {
        assert_eq!(parse::<RawLogLevel>("v: DEBUG"), Ok(RawLogLevel::Debug));
        assert_eq!(
            parse::<RawLogLevel>("v: debug-color").map(RawLogLevel::level),
            Ok(LogLevel::Debug)
        );
        assert_eq!(
            parse::<RawLogLevel>("v: panic").map(RawLogLevel::level),
            Ok(LogLevel::Error)
        );
        assert_eq!(
            parse::<RawLogLevel>("v: ''").map(RawLogLevel::level),
            Ok(LogLevel::Info)
        );
        assert!(parse::<RawLogLevel>("v: verbose").is_err());
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_byte_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_byte_size("1 GiB"), Ok(1 << 30));
        assert_eq!(parse_byte_size("512kib"), Ok(512 << 10));
        assert_eq!(parse_byte_size("100B"), Ok(100));
        assert_eq!(parse_byte_size("4096"), Ok(4096));
        assert!(parse_byte_size("1.5GiB").is_err());
        assert!(parse_byte_size("MiB").is_err());
        assert!(parse_byte_size("99999999999TiB").is_err());
        let err = parse_byte_size("10MB").map(|_| ()).unwrap_err();
        assert!(err.contains("ambiguous"), "{err}");
        let err = parse_byte_size("10 bytes").map(|_| ()).unwrap_err();
        assert!(err.contains("unknown unit \"bytes\""), "{err}");
        assert_eq!(parse::<ByteSize>("v: 1048576"), Ok(ByteSize(1 << 20)));
        assert_eq!(parse::<ByteSize>("v: 2MiB"), Ok(ByteSize(2 << 20)));
        assert!(parse::<ByteSize>("v: -1").is_err());
    }
}
