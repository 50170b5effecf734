//! Arbitrary-length comparison of ASCII digit strings.
//!
//! Real-world versions carry numbers that overflow `u64` (dates with times, the oracle's
//! `999999999999999999999999999991`), so numeric components are kept as digit strings and
//! compared by value without parsing: strip leading zeros, then the longer is larger, then
//! byte order decides.
use std::cmp::Ordering;

/// Compare two strings of ASCII digits by numeric value (`""` counts as zero).
pub(crate) fn cmp_digits(a: &str, b: &str) -> Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Whether `s` is non-empty and all ASCII digits.
pub(crate) fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// The length of the run of ASCII digits at the start of `s`.
pub(crate) fn digit_run(s: &[u8]) -> usize {
    s.iter().take_while(|b| b.is_ascii_digit()).count()
}

/// View a run of ASCII bytes (digits, letters) cut from a `&str` as a `&str`.
///
/// Callers only pass runs of ASCII bytes, which are always valid UTF-8; anything else (a
/// programming error) reads as empty rather than panicking.
pub(crate) fn ascii(run: &[u8]) -> &str {
    std::str::from_utf8(run).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_by_value_not_length_or_text() {
        assert_eq!(cmp_digits("010", "9"), Ordering::Greater);
        assert_eq!(cmp_digits("0001", "1"), Ordering::Equal);
        assert_eq!(cmp_digits("", "0"), Ordering::Equal);
        assert_eq!(
            cmp_digits(
                "999999999999999999999999999991",
                "999999999999999999999999999999"
            ),
            Ordering::Less
        );
    }

    #[test]
    fn recognises_digit_strings() {
        assert!(is_digits("0123"));
        assert!(!is_digits(""));
        assert!(!is_digits("1a"));
        assert_eq!(digit_run(b"123abc"), 3);
        assert_eq!(digit_run(b"abc"), 0);
    }
}
