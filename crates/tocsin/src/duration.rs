//! Go-style durations (`300ms`, `1.5h`, `2h45m`), because Clair's configuration files use them.
//!
//! [`parse_go_duration`] follows Go's `time.ParseDuration` step for step, including its
//! floating-point handling of fractions and its range (at most `i64::MAX` nanoseconds), so a
//! value means the same in tocsin as it did in Clair. Durations are never negative here: a
//! negative value is an error rather than something to clamp. [`format_go_duration`] is Go's
//! `Duration.String()`, so values are shown the way users wrote them in Clair.
//!
//! In YAML a duration must be a string. A bare number is ambiguous (seconds? Go's
//! nanoseconds?) and Go's `yaml.v3`, which Clair uses, rejects numbers for durations too; the
//! only number accepted is `0`, which means the same in every unit.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Go's limit: a `time.Duration` is an `int64` count of nanoseconds.
const MAX_NANOS: u64 = i64::MAX as u64;
/// `1 << 63`, the bound Go checks intermediate sums against before the final range check.
const OVERFLOW_BOUND: u64 = 1 << 63;

/// Why a string is not a Go duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not of the form `[-+]?([0-9]*(\.[0-9]*)?[a-zµμ]+)+` (or `0`).
    #[error("invalid duration {input:?}: expected a number followed by a unit (ns, us, µs, ms, s, m, h), e.g. \"30s\" or \"1h30m\"")]
    Invalid {
        /// The rejected text.
        input: String,
    },
    /// A number without a unit, such as `"10"` or the trailing `"5"` of `"1h5"`.
    #[error("invalid duration {input:?}: missing unit (ns, us, µs, ms, s, m, h) after a number")]
    MissingUnit {
        /// The rejected text.
        input: String,
    },
    /// A unit Go does not know, such as `d` or `sec`.
    #[error("invalid duration {input:?}: unknown unit {unit:?} (use ns, us, µs, ms, s, m or h)")]
    UnknownUnit {
        /// The rejected text.
        input: String,
        /// The unit as written.
        unit: String,
    },
    /// Longer than Go can represent (about 292 years).
    #[error("invalid duration {input:?}: too large (the maximum is 2562047h47m16.854775807s)")]
    Overflow {
        /// The rejected text.
        input: String,
    },
    /// A negative, non-zero duration: no setting here can run backwards in time.
    #[error("invalid duration {input:?}: must not be negative")]
    Negative {
        /// The rejected text.
        input: String,
    },
}

fn unit_nanos(unit: &str) -> Option<u64> {
    Some(match unit {
        "ns" => 1,
        // Go accepts the micro sign (U+00B5) and the Greek small letter mu (U+03BC).
        "us" | "\u{00b5}s" | "\u{03bc}s" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60 * 1_000_000_000,
        "h" => 3_600 * 1_000_000_000,
        _ => return None,
    })
}

/// Consumes leading ASCII digits as an integer; `None` when it would exceed Go's bound.
fn leading_int(s: &str) -> Option<(u64, &str)> {
    let end = s.bytes().take_while(u8::is_ascii_digit).count();
    let mut x: u64 = 0;
    for b in s[..end].bytes() {
        if x > OVERFLOW_BOUND / 10 {
            return None;
        }
        x = x * 10 + u64::from(b - b'0');
        if x > OVERFLOW_BOUND {
            return None;
        }
    }
    Some((x, &s[end..]))
}

/// Consumes leading digits of a fraction. Like Go, digits beyond what fits are read but
/// dropped, so a long fraction loses precision instead of failing.
fn leading_fraction(s: &str) -> (u64, f64, &str) {
    let end = s.bytes().take_while(u8::is_ascii_digit).count();
    let mut f: u64 = 0;
    let mut scale = 1.0_f64;
    let mut overflow = false;
    for b in s[..end].bytes() {
        if overflow {
            continue;
        }
        if f > (OVERFLOW_BOUND - 1) / 10 {
            overflow = true;
            continue;
        }
        let y = f * 10 + u64::from(b - b'0');
        if y > OVERFLOW_BOUND {
            overflow = true;
            continue;
        }
        f = y;
        scale *= 10.0;
    }
    (f, scale, &s[end..])
}

/// Parses a duration exactly like Go's `time.ParseDuration`, rejecting negative values.
///
/// Accepted: `"0"`, `"300ms"`, `"1.5h"`, `"2h45m"`, `"1h15m30.918273645s"`, `".5s"`, `"1us"`,
/// `"1µs"`. Rejected: `""`, `"10"` (no unit), `"1d"` (unknown unit), `"-1.5h"` (negative).
pub fn parse_go_duration(input: &str) -> Result<Duration, DurationError> {
    let invalid = || DurationError::Invalid {
        input: input.to_owned(),
    };
    let overflow = || DurationError::Overflow {
        input: input.to_owned(),
    };
    let mut s = input;
    let mut negative = false;
    if let Some(rest) = s.strip_prefix('-') {
        negative = true;
        s = rest;
    } else if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    // Go's special case: a bare zero needs no unit.
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    while !s.is_empty() {
        let first = s.as_bytes()[0];
        if !(first == b'.' || first.is_ascii_digit()) {
            return Err(invalid());
        }
        let before = s.len();
        let (whole, rest) = leading_int(s).ok_or_else(invalid)?;
        s = rest;
        let had_int = before != s.len();

        let mut frac = 0;
        let mut scale = 1.0;
        let mut had_frac = false;
        if let Some(rest) = s.strip_prefix('.') {
            let before = rest.len();
            let (f, sc, rest) = leading_fraction(rest);
            frac = f;
            scale = sc;
            had_frac = before != rest.len();
            s = rest;
        }
        if !had_int && !had_frac {
            // A lone "." has no digits at all.
            return Err(invalid());
        }

        let unit_len = s
            .bytes()
            .take_while(|b| *b != b'.' && !b.is_ascii_digit())
            .count();
        if unit_len == 0 {
            return Err(DurationError::MissingUnit {
                input: input.to_owned(),
            });
        }
        // The unit ends at an ASCII byte (or the end), so this is a char boundary.
        let unit = &s[..unit_len];
        s = &s[unit_len..];
        let unit_ns = unit_nanos(unit).ok_or_else(|| DurationError::UnknownUnit {
            input: input.to_owned(),
            unit: unit.to_owned(),
        })?;

        if whole > OVERFLOW_BOUND / unit_ns {
            return Err(overflow());
        }
        let mut value = whole * unit_ns;
        if frac > 0 {
            // Go computes the fractional part in floating point and truncates; doing the same
            // keeps every value bit-identical to what Clair parsed.
            let part = (frac as f64 * (unit_ns as f64 / scale)) as u64;
            value = value.checked_add(part).ok_or_else(overflow)?;
            if value > OVERFLOW_BOUND {
                return Err(overflow());
            }
        }
        total = total.checked_add(value).ok_or_else(overflow)?;
        if total > OVERFLOW_BOUND {
            return Err(overflow());
        }
    }
    if negative {
        if total == 0 {
            return Ok(Duration::ZERO);
        }
        return Err(DurationError::Negative {
            input: input.to_owned(),
        });
    }
    if total > MAX_NANOS {
        return Err(overflow());
    }
    Ok(Duration::from_nanos(total))
}

/// `value` in units of `10^-precision`, printed with trailing zeros of the fraction removed.
fn fixed_point(value: u128, precision: u32) -> String {
    let divisor = 10u128.pow(precision);
    let whole = value / divisor;
    let frac = value % divisor;
    if frac == 0 {
        return whole.to_string();
    }
    let digits = format!("{frac:0width$}", width = precision as usize);
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// Formats a duration like Go's `Duration.String()`: `"0s"`, `"1.5ms"`, `"2h45m0s"`.
pub fn format_go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}\u{00b5}s", fixed_point(nanos, 3));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", fixed_point(nanos, 6));
    }
    let secs = nanos / 1_000_000_000;
    let seconds = fixed_point((secs % 60) * 1_000_000_000 + nanos % 1_000_000_000, 9);
    let minutes = (secs / 60) % 60;
    let hours = secs / 3_600;
    if hours > 0 {
        format!("{hours}h{minutes}m{seconds}s")
    } else if minutes > 0 {
        format!("{minutes}m{seconds}s")
    } else {
        format!("{seconds}s")
    }
}

/// A [`Duration`] read from and written as Go duration syntax.
///
/// Deserializes from a string such as `"30s"`, or from the number `0`; any other number is an
/// error that suggests adding a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct GoDuration(pub Duration);

impl From<GoDuration> for Duration {
    fn from(d: GoDuration) -> Self {
        d.0
    }
}

impl FromStr for GoDuration {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_go_duration(s).map(GoDuration)
    }
}

impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_go_duration(self.0))
    }
}

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format_go_duration(self.0))
    }
}

struct GoDurationVisitor;

impl GoDurationVisitor {
    fn bare_number<E: de::Error>(shown: &dyn fmt::Display) -> E {
        E::custom(format_args!(
            "a bare number ({shown}) is not a duration: add a unit and quote it, e.g. \"{shown}s\" \
             (Go syntax: ns, us, ms, s, m, h)"
        ))
    }
}

impl Visitor<'_> for GoDurationVisitor {
    type Value = GoDuration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Go duration string such as \"30s\", \"5m\" or \"1h30m\"")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        parse_go_duration(v).map(GoDuration).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        if v == 0 {
            return Ok(GoDuration(Duration::ZERO));
        }
        Err(Self::bare_number(&v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        if v == 0 {
            return Ok(GoDuration(Duration::ZERO));
        }
        if v < 0 {
            return Err(E::custom(format_args!(
                "invalid duration {v}: must not be negative"
            )));
        }
        Err(Self::bare_number(&v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Err(Self::bare_number(&v))
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(GoDurationVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: u64 = 1;
    const US: u64 = 1_000;
    const MS: u64 = 1_000_000;
    const S: u64 = 1_000_000_000;
    const M: u64 = 60 * S;
    const H: u64 = 60 * M;

    /// The table of Go's own `time.ParseDuration` tests (non-negative cases), plus the
    /// examples from the package documentation.
    #[test]
    fn parses_go_examples() {
        let table: &[(&str, u64)] = &[
            // Documented examples of time.ParseDuration.
            ("300ms", 300 * MS),
            ("2h45m", 2 * H + 45 * M),
            ("1h15m30.918273645s", H + 15 * M + 30 * S + 918_273_645),
            ("1.5h", H + 30 * M),
            // Simple values.
            ("0", 0),
            ("5s", 5 * S),
            ("30s", 30 * S),
            ("1478s", 1478 * S),
            ("+5s", 5 * S),
            ("+0", 0),
            ("-0", 0),
            ("-0s", 0),
            // Decimals.
            ("5.0s", 5 * S),
            ("5.6s", 5 * S + 600 * MS),
            ("5.s", 5 * S),
            (".5s", 500 * MS),
            ("1.0s", S),
            ("1.00s", S),
            ("1.004s", S + 4 * MS),
            ("1.0040s", S + 4 * MS),
            ("100.00100s", 100 * S + MS),
            // Every unit.
            ("10ns", 10 * NS),
            ("11us", 11 * US),
            ("12µs", 12 * US),
            ("12μs", 12 * US),
            ("13ms", 13 * MS),
            ("14s", 14 * S),
            ("15m", 15 * M),
            ("16h", 16 * H),
            // Composites.
            ("3h30m", 3 * H + 30 * M),
            ("10.5s4m", 4 * M + 10 * S + 500 * MS),
            (
                "1h2m3s4ms5us6ns",
                H + 2 * M + 3 * S + 4 * MS + 5 * US + 6 * NS,
            ),
            ("39h9m14.425s", 39 * H + 9 * M + 14 * S + 425 * MS),
            // Large values and long fractions.
            ("52763797000ns", 52_763_797_000),
            ("0.3333333333333333333h", 20 * M),
            ("9007199254740993ns", (1 << 53) + 1),
            ("9223372036854775807ns", i64::MAX as u64),
            ("9223372036854775.807us", i64::MAX as u64),
            ("9223372036s854ms775us807ns", i64::MAX as u64),
            ("0.100000000000000000000h", 6 * M),
            ("0.830103483285477580700h", 49 * M + 48 * S + 372_539_827),
        ];
        for (input, nanos) in table {
            assert_eq!(
                parse_go_duration(input),
                Ok(Duration::from_nanos(*nanos)),
                "parsing {input:?}"
            );
        }
    }

    #[test]
    fn rejects_what_go_rejects_and_negatives() {
        type Check = fn(&DurationError) -> bool;
        let table: &[(&str, Check)] = &[
            ("", |e| matches!(e, DurationError::Invalid { .. })),
            ("3", |e| matches!(e, DurationError::MissingUnit { .. })),
            ("1h5", |e| matches!(e, DurationError::MissingUnit { .. })),
            ("-", |e| matches!(e, DurationError::Invalid { .. })),
            ("s", |e| matches!(e, DurationError::Invalid { .. })),
            (".", |e| matches!(e, DurationError::Invalid { .. })),
            ("-.", |e| matches!(e, DurationError::Invalid { .. })),
            (".s", |e| matches!(e, DurationError::Invalid { .. })),
            ("+.s", |e| matches!(e, DurationError::Invalid { .. })),
            (
                "1d",
                |e| matches!(e, DurationError::UnknownUnit { unit, .. } if unit == "d"),
            ),
            (
                "1 s",
                |e| matches!(e, DurationError::UnknownUnit { unit, .. } if unit == " s"),
            ),
            ("\u{0}", |e| matches!(e, DurationError::Invalid { .. })),
            ("9223372036854775808ns", |e| {
                matches!(e, DurationError::Overflow { .. })
            }),
            ("9223372036854775.808us", |e| {
                matches!(e, DurationError::Overflow { .. })
            }),
            ("9223372036854ms775us808ns", |e| {
                matches!(e, DurationError::Overflow { .. })
            }),
            ("3000000h", |e| matches!(e, DurationError::Overflow { .. })),
            ("-1.5h", |e| matches!(e, DurationError::Negative { .. })),
            ("-3h30m", |e| matches!(e, DurationError::Negative { .. })),
            ("-1ns", |e| matches!(e, DurationError::Negative { .. })),
        ];
        for (input, check) in table {
            match parse_go_duration(input) {
                Ok(d) => panic!("{input:?} parsed as {d:?}, expected an error"),
                Err(e) => assert!(check(&e), "{input:?}: unexpected error {e:?}"),
            }
        }
    }

    #[test]
    fn error_messages_name_the_input() {
        let err = parse_go_duration("1d").map(|_| ()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid duration \"1d\": unknown unit \"d\" (use ns, us, µs, ms, s, m or h)"
        );
        let err = parse_go_duration("-1.5h").map(|_| ()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid duration \"-1.5h\": must not be negative"
        );
    }

    /// Go's `Duration.String()` test table.
    #[test]
    fn formats_like_go() {
        let table: &[(u64, &str)] = &[
            (0, "0s"),
            (1, "1ns"),
            (1_100, "1.1µs"),
            (2_200_000, "2.2ms"),
            (3_300_000_000, "3.3s"),
            (4 * M + 5 * S, "4m5s"),
            (4 * M + 5_001 * MS, "4m5.001s"),
            (5 * H + 6 * M + 7_001 * MS, "5h6m7.001s"),
            (8 * M + 1, "8m0.000000001s"),
            (i64::MAX as u64, "2562047h47m16.854775807s"),
            (H + 15 * M + 30 * S + 918_273_645, "1h15m30.918273645s"),
            (2 * H + 45 * M, "2h45m0s"),
            (300 * MS, "300ms"),
            (6 * H, "6h0m0s"),
        ];
        for (nanos, text) in table {
            assert_eq!(format_go_duration(Duration::from_nanos(*nanos)), *text);
        }
    }

    #[test]
    fn format_then_parse_round_trips() {
        for nanos in [1, 999, 1_000, 1_500, 999_999_999, 7 * H + 1, 168 * H] {
            let d = Duration::from_nanos(nanos);
            assert_eq!(parse_go_duration(&format_go_duration(d)), Ok(d));
        }
    }

    #[derive(Debug, Deserialize)]
    struct Holder {
        d: GoDuration,
    }

    fn from_yaml(text: &str) -> Result<Duration, String> {
        serde_yaml_ng::from_str::<Holder>(text)
            .map(|h| h.d.0)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn deserializes_strings_and_zero_only() {
        assert_eq!(from_yaml("d: 5m"), Ok(Duration::from_secs(300)));
        assert_eq!(from_yaml("d: \"1.5h\""), Ok(Duration::from_secs(5400)));
        assert_eq!(from_yaml("d: 0"), Ok(Duration::ZERO));
        let err = from_yaml("d: 30").map(|_| ()).unwrap_err();
        assert!(
            err.contains("a bare number (30) is not a duration"),
            "{err}"
        );
        assert!(err.contains("line 1 column 4"), "{err}");
        let err = from_yaml("d: -5").map(|_| ()).unwrap_err();
        assert!(err.contains("must not be negative"), "{err}");
        let err = from_yaml("d: 1.5").map(|_| ()).unwrap_err();
        assert!(err.contains("bare number"), "{err}");
        let err = from_yaml("d: 10 minutes").map(|_| ()).unwrap_err();
        assert!(err.contains("unknown unit \" minutes\""), "{err}");
    }

    #[test]
    fn serializes_as_go_text() {
        let text = serde_yaml_ng::to_string(&GoDuration(Duration::from_millis(1500)))
            .map_err(|e| e.to_string());
        assert_eq!(text.as_deref(), Ok("1.5s\n"));
    }
}
