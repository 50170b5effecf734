//! The fallback ordering for ecosystems without a dedicated scheme (RubyGems, NuGet,
//! Packagist, Pub, Hackage, …).
//!
//! A version is read as runs of digits and runs of letters; every other character separates
//! runs. Runs compare pairwise: numbers by value, letters case-insensitively, and a number
//! sorts after letters at the same position (`1.0.1 > 1.0.rc1`). When one version runs out
//! first, what the other has left decides: more numbers make it newer (`1.0.1 > 1.0`), a
//! letter run makes it older (a pre-release: `1.0-rc1 < 1.0`). This agrees with most
//! ecosystems' common cases; ecosystems that matter for matching get a dedicated scheme.
use std::cmp::Ordering;

use crate::num::cmp_digits;

#[derive(Clone, Debug)]
enum Run {
    Number(String),
    Text(String),
}

/// A parsed generic version.
#[derive(Clone, Debug)]
pub(crate) struct GenericVersion {
    runs: Vec<Run>,
}

impl GenericVersion {
    /// Split into digit and letter runs.
    pub(crate) fn parse(s: &str) -> Self {
        let s = s.trim();
        let mut runs = Vec::new();
        let mut chars = s.char_indices().peekable();
        while let Some((start, c)) = chars.next() {
            let digit = c.is_ascii_digit();
            if !digit && !c.is_alphabetic() {
                continue;
            }
            let mut end = start + c.len_utf8();
            while let Some(&(i, n)) = chars.peek() {
                let same = if digit {
                    n.is_ascii_digit()
                } else {
                    n.is_alphabetic()
                };
                if !same {
                    break;
                }
                end = i + n.len_utf8();
                chars.next();
            }
            let run = &s[start..end];
            runs.push(if digit {
                Run::Number(run.to_string())
            } else {
                Run::Text(run.to_lowercase())
            });
        }
        GenericVersion { runs }
    }

    /// Run-wise ordering (see the module doc).
    pub(crate) fn cmp(&self, other: &Self) -> Ordering {
        for (a, b) in self.runs.iter().zip(&other.runs) {
            let ord = match (a, b) {
                (Run::Number(x), Run::Number(y)) => cmp_digits(x, y),
                (Run::Text(x), Run::Text(y)) => x.cmp(y),
                (Run::Number(_), Run::Text(_)) => Ordering::Greater,
                (Run::Text(_), Run::Number(_)) => Ordering::Less,
            };
            if ord.is_ne() {
                return ord;
            }
        }
        let shared = self.runs.len().min(other.runs.len());
        // Zeros add nothing (1.0 = 1); then a number makes a version newer, text older.
        let tail = |runs: &[Run]| match runs[shared..].iter().find(|r| !is_zero(r)) {
            None => Ordering::Equal,
            Some(Run::Number(_)) => Ordering::Greater,
            Some(Run::Text(_)) => Ordering::Less,
        };
        tail(&self.runs).cmp(&tail(&other.runs))
    }
}

fn is_zero(run: &Run) -> bool {
    matches!(run, Run::Number(n) if n.bytes().all(|b| b == b'0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(a: &str, b: &str) -> Ordering {
        GenericVersion::parse(a).cmp(&GenericVersion::parse(b))
    }

    #[test]
    fn numbers_text_and_tails() {
        assert_eq!(cmp("1.10", "1.9"), Ordering::Greater);
        assert_eq!(cmp("1.0", "1"), Ordering::Equal);
        assert_eq!(cmp("1.0.1", "1.0"), Ordering::Greater);
        assert_eq!(cmp("1.0-rc1", "1.0"), Ordering::Less);
        assert_eq!(cmp("1.0.rc1", "1.0.1"), Ordering::Less);
        assert_eq!(cmp("1.0-RC1", "1.0.rc1"), Ordering::Equal);
        assert_eq!(cmp("1.0.0-beta", "1"), Ordering::Less);
    }
}
