//! Alpine (apk) package versions: `number{.number}…{letter}{_suffix{number}}…{~hash}{-r#}`.
//!
//! Hand-written: no crate implements apk's ordering. Versions are split into their parts
//! (numbers, one letter, suffixes, commit hash, `-r` build number) and compared part by part:
//! - numbers numerically, except that a number after the first which starts with `0` compares
//!   as text with any other (apk's rule that makes `1.02 < 1.1`);
//! - no letter sorts before any letter;
//! - suffixes by kind (`alpha < beta < pre < rc < none < cvs < svn < git < hg < p`), then number;
//! - the build number numerically; the commit hash is ignored (it cannot be ordered).
//!
//! Malformed versions (`apk version -t` accepts many) still get a deterministic place: parsing
//! stops at the first text that fits no part; a version with such leftover text sorts just
//! below the same parts without it; text after a valid `-r` build number is otherwise ignored
//! (`1-r0-1 = 1-r0-2`), and versions malformed before their build number that tie on their
//! parts are ordered by their whole string (`0..1..0 < 0..1..1`).
//!
//! The order is a lexicographic key over these parts, so it is total and transitive, which
//! sorting and ordered maps need. osv-scalibr instead compares two malformed versions as whole
//! strings before looking at their parts; that is not transitive (`5.7.3p1-r0` would sort
//! above `10.2.22.r0` although `6.0` sits between them), so the parts come first here.
use std::cmp::Ordering;

use crate::num::{ascii, cmp_digits, digit_run};

/// Suffix kinds in sort order; `NONE` is where a version without a suffix sits.
const SUFFIXES: [&str; 9] = ["alpha", "beta", "pre", "rc", "cvs", "svn", "git", "hg", "p"];
const PRE_RELEASE_SUFFIXES: u8 = 4;
const NO_SUFFIX: u8 = PRE_RELEASE_SUFFIXES;

/// A parsed apk version.
#[derive(Clone, Debug)]
pub(crate) struct ApkVersion {
    numbers: Vec<String>,
    letter: Option<u8>,
    /// (weight, number); weights 0..4 are pre-releases, 5.. post-releases.
    suffixes: Vec<(u8, String)>,
    build: String,
    /// Text was left over after the last part apk understood.
    has_remainder: bool,
    /// For a version that could not be read up to its build number: the whole string, which
    /// orders such versions among themselves; "" otherwise.
    malformed: String,
}

impl ApkVersion {
    /// Parse a version; never fails (see the module doc for malformed input).
    pub(crate) fn parse(s: &str) -> Self {
        let bytes = s.as_bytes();
        let mut pos = 0;

        // Numbers: digit runs, each optionally followed by one dot. A dot that is not followed
        // by a digit ends the numbers (it is consumed, like apk does, but adds no number).
        let mut numbers = Vec::new();
        loop {
            let n = digit_run(&bytes[pos..]);
            if n == 0 {
                break;
            }
            numbers.push(ascii(&bytes[pos..pos + n]).to_string());
            pos += n;
            if bytes.get(pos) == Some(&b'.') {
                pos += 1;
            } else {
                break;
            }
        }

        let letter = match bytes.get(pos) {
            Some(c) if c.is_ascii_lowercase() => {
                pos += 1;
                Some(*c)
            }
            _ => None,
        };

        let suffixes = parse_suffixes(&bytes[pos..], &mut pos);

        // Commit hash: `~` and lower-case hex digits; ignored for ordering.
        if bytes.get(pos) == Some(&b'~') {
            let n = bytes[pos + 1..]
                .iter()
                .take_while(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
                .count();
            if n > 0 {
                pos += 1 + n;
            }
        }

        // Build number: `-r` and digits (none means 0). Text left before it makes the version
        // malformed; text left after it is ignored, as apk does.
        let mut build = String::new();
        let mut malformed = String::new();
        if bytes[pos..].starts_with(b"-r") {
            let n = digit_run(&bytes[pos + 2..]);
            build = ascii(&bytes[pos + 2..pos + 2 + n]).to_string();
            pos += 2 + n;
        } else if pos < bytes.len() {
            malformed = s.to_string();
        }

        ApkVersion {
            numbers,
            letter,
            suffixes,
            build,
            has_remainder: pos < bytes.len(),
            malformed,
        }
    }

    /// apk's ordering (see the module doc).
    pub(crate) fn cmp(&self, other: &Self) -> Ordering {
        self.cmp_numbers(other)
            .then_with(|| self.letter.cmp(&other.letter))
            .then_with(|| self.cmp_suffixes(other))
            .then_with(|| cmp_digits(&self.build, &other.build))
            // Leftover text marks a version apk could not fully read: below the clean one.
            .then_with(|| other.has_remainder.cmp(&self.has_remainder))
            .then_with(|| self.malformed.cmp(&other.malformed))
    }

    fn cmp_numbers(&self, other: &Self) -> Ordering {
        let len = self.numbers.len().max(other.numbers.len());
        for i in 0..len {
            // A missing number is "0", and takes part in the leading-zero rule like one, so
            // that `1 = 1.0 < 1.00` stays transitive.
            let a = self.numbers.get(i).map_or("0", |s| s);
            let b = other.numbers.get(i).map_or("0", |s| s);
            let ord = if i > 0 && (a.starts_with('0') || b.starts_with('0')) {
                a.cmp(b)
            } else {
                cmp_digits(a, b)
            };
            if ord != Ordering::Equal {
                return ord;
            }
        }
        Ordering::Equal
    }

    fn cmp_suffixes(&self, other: &Self) -> Ordering {
        let none = (NO_SUFFIX, String::new());
        let len = self.suffixes.len().max(other.suffixes.len());
        for i in 0..len {
            let a = self.suffixes.get(i).unwrap_or(&none);
            let b = other.suffixes.get(i).unwrap_or(&none);
            let ord = a.0.cmp(&b.0).then_with(|| cmp_digits(&a.1, &b.1));
            if ord != Ordering::Equal {
                return ord;
            }
        }
        Ordering::Equal
    }
}

/// Find `_suffix{number}` occurrences in `rest`, recording each and advancing `pos` past those
/// that directly continue the parsed prefix. An occurrence after unparsable text is still
/// recorded (so `1_foo_rc1` orders as an rc) but the text before it stays in the remainder.
fn parse_suffixes(rest: &[u8], pos: &mut usize) -> Vec<(u8, String)> {
    let mut out = Vec::new();
    let mut at = 0;
    // End of the run of suffixes that starts right at `rest[0]`, while it is unbroken.
    let mut consumed = 0;
    let mut broken = false;
    while at < rest.len() {
        let found = (rest[at] == b'_')
            .then(|| {
                SUFFIXES
                    .iter()
                    .enumerate()
                    .find(|(_, name)| rest[at + 1..].starts_with(name.as_bytes()))
            })
            .flatten();
        let Some((kind, name)) = found else {
            at += 1;
            continue;
        };
        let digits_at = at + 1 + name.len();
        let n = digit_run(&rest[digits_at..]);
        // Weights: pre-release kinds 0..=3, then "no suffix" (4), then post-release kinds.
        let kind = u8::try_from(kind).unwrap_or(u8::MAX);
        let weight = if kind < PRE_RELEASE_SUFFIXES {
            kind
        } else {
            kind.saturating_add(1)
        };
        out.push((weight, ascii(&rest[digits_at..digits_at + n]).to_string()));
        if !broken && at == consumed {
            consumed = digits_at + n;
        } else {
            broken = true;
        }
        at = digits_at + n;
    }
    *pos += consumed;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(a: &str, b: &str) -> Ordering {
        ApkVersion::parse(a).cmp(&ApkVersion::parse(b))
    }

    #[test]
    fn suffix_order() {
        let chain = [
            "1.2_alpha1",
            "1.2_beta",
            "1.2_pre2",
            "1.2_rc1",
            "1.2",
            "1.2_cvs1",
            "1.2_svn1",
            "1.2_git1",
            "1.2_hg1",
            "1.2_p1",
            "1.2a",
        ];
        for w in chain.windows(2) {
            assert_eq!(cmp(w[0], w[1]), Ordering::Less, "{} < {}", w[0], w[1]);
        }
    }

    #[test]
    fn build_numbers_and_leading_zeros() {
        assert_eq!(cmp("1.2.3-r10", "1.2.3-r9"), Ordering::Greater);
        assert_eq!(cmp("1-r1", "1-r01"), Ordering::Equal);
        assert_eq!(cmp("1.02", "1.1"), Ordering::Less);
        assert_eq!(cmp("1", "1.0"), Ordering::Equal);
        assert_eq!(cmp("1.0", "1.00"), Ordering::Less);
        assert_eq!(cmp("1.2.3~abc123-r0", "1.2.3-r0"), Ordering::Equal);
    }

    #[test]
    fn malformed_versions_are_ordered_not_rejected() {
        assert_eq!(cmp("1.2", "1.2_blah"), Ordering::Greater);
        assert_eq!(cmp("0..1..0", "0..1..1"), Ordering::Less);
        assert_eq!(cmp("1-r0-1", "1-r0-2"), Ordering::Equal);
        assert_eq!(cmp("1-ruff2", "1--ruff1"), Ordering::Less);
        // Transitivity where comparing whole strings first would break it.
        assert_eq!(cmp("5.7.3p1-r0", "6.0"), Ordering::Less);
        assert_eq!(cmp("6.0", "10.2.22.r0"), Ordering::Less);
        assert_eq!(cmp("5.7.3p1-r0", "10.2.22.r0"), Ordering::Less);
    }
}
