//! Maven artifact versions, ordered by the "Version Order Specification" of the POM reference
//! (the ordering of Maven's `ComparableVersion`).
//!
//! Hand-written: no Rust crate implements this ordering. The model is the specification's:
//! - a version is split into tokens at `.` and `-` and at every change between digits and
//!   other characters (such a change counts as a `-`); each token remembers its separator;
//! - empty tokens are `0`; text is case-insensitive; `cr` means `rc`; `ga`, `final` and
//!   `release` mean the empty qualifier; `a`, `b`, `m` directly followed by a number mean
//!   `alpha`, `beta`, `milestone`;
//! - trailing "null" tokens (`0`, empty) are dropped at the end of the version and before each
//!   `-`, so `1 = 1.0 = 1-0 = 1.0.0-ga`;
//! - the shorter token list is padded with null tokens that take the other side's separator;
//! - tokens with the same separator compare numbers numerically, numbers after qualifiers,
//!   qualifiers as `alpha < beta < milestone < rc < snapshot < "" < sp < others` (others
//!   alphabetically); with different separators `.qualifier < -qualifier < -number < .number`.
//!
//! Like Maven's own `ComparableVersion`, this ordering is not transitive for some versions that
//! mix separators and qualifiers: `1 < 1.0-pre33.3 < 1.0.0.Beta2 < 1` holds in Maven too
//! (padding compares `1` against different tokens in each pair). Every pairwise answer matches
//! Maven; code that sorts Maven versions must not assume a total order (see [`crate::Version`]).
use std::cmp::Ordering;

use crate::num::{cmp_digits, is_digits};

/// Known qualifiers in order; the empty qualifier is a release.
const QUALIFIERS: [&str; 7] = ["alpha", "beta", "milestone", "rc", "snapshot", "", "sp"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sep {
    /// The first token.
    Start,
    Dot,
    Dash,
}

#[derive(Clone, Debug)]
struct Token {
    sep: Sep,
    /// Lower-case text, or digits without leading zeros.
    value: String,
    /// A padding token (a number that is "nothing" rather than a real 0).
    padding: bool,
}

impl Token {
    fn is_number(&self) -> bool {
        is_digits(&self.value)
    }

    fn is_null(&self) -> bool {
        self.value == "0" || self.value.is_empty()
    }

    fn same(&self, other: &Token) -> bool {
        self.sep == other.sep && self.value == other.value
    }

    /// The null token that pads the other list opposite `other`.
    fn padding_for(other: &Token) -> Token {
        let value = match other.sep {
            // `sp` is the one qualifier after the empty one, so it must meet "" not "0".
            Sep::Dot | Sep::Start if other.value != "sp" => "0",
            _ => "",
        };
        Token {
            sep: other.sep,
            value: value.to_string(),
            padding: true,
        }
    }

    /// Rank of a separator/kind pair: `.qualifier < -qualifier < -number < .number`.
    fn kind_rank(&self) -> u8 {
        match (self.sep, self.is_number()) {
            (Sep::Dash, false) => 1,
            (Sep::Dash, true) => 2,
            (_, true) => 3,
            (_, false) => 0,
        }
    }

    fn cmp(&self, other: &Token) -> Ordering {
        if self.sep != other.sep {
            return self.kind_rank().cmp(&other.kind_rank());
        }
        match (self.is_number(), other.is_number()) {
            (true, true) => return cmp_digits(&self.value, &other.value),
            // A real number sorts after any qualifier; padding does not count as one.
            (true, false) if !self.padding => return Ordering::Greater,
            (false, true) if !other.padding => return Ordering::Less,
            _ => {}
        }
        let rank = |v: &str| QUALIFIERS.iter().position(|q| *q == v);
        match (rank(&self.value), rank(&other.value)) {
            (Some(a), Some(b)) => a.cmp(&b),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => self.value.cmp(&other.value),
        }
    }
}

/// A parsed Maven version.
#[derive(Clone, Debug)]
pub(crate) struct MavenVersion {
    tokens: Vec<Token>,
}

impl MavenVersion {
    /// Tokenise and trim a version (see the module doc).
    pub(crate) fn parse(s: &str) -> Self {
        let lower = s.trim().to_lowercase();
        let mut tokens = Vec::new();
        let mut sep = Sep::Start;
        for (raw, next_sep) in split_keep(&lower) {
            push_raw(&mut tokens, raw, sep);
            sep = next_sep;
        }
        trim(&mut tokens);
        MavenVersion { tokens }
    }

    /// The specification's ordering.
    pub(crate) fn cmp(&self, other: &Self) -> Ordering {
        let len = self.tokens.len().max(other.tokens.len());
        for i in 0..len {
            let (a, b) = match (self.tokens.get(i), other.tokens.get(i)) {
                (Some(a), Some(b)) => (a.clone(), b.clone()),
                (Some(a), None) => (a.clone(), Token::padding_for(a)),
                (None, Some(b)) => (Token::padding_for(b), b.clone()),
                (None, None) => break,
            };
            if a.same(&b) {
                continue;
            }
            let ord = a.cmp(&b);
            if ord.is_ne() {
                return ord;
            }
        }
        Ordering::Equal
    }
}

/// Split at `.` and `-`, pairing each piece with the separator that follows it.
fn split_keep(s: &str) -> Vec<(&str, Sep)> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let sep = match c {
            '.' => Sep::Dot,
            '-' => Sep::Dash,
            _ => continue,
        };
        out.push((&s[start..i], sep));
        start = i + 1;
    }
    out.push((&s[start..], Sep::Start));
    out
}

/// Split one piece at digit/non-digit changes and push its normalised tokens.
fn push_raw(tokens: &mut Vec<Token>, raw: &str, first_sep: Sep) {
    let mut pieces: Vec<&str> = Vec::new();
    let mut start = 0;
    let mut prev_digit: Option<bool> = None;
    for (i, c) in raw.char_indices() {
        let digit = c.is_ascii_digit();
        if prev_digit.is_some_and(|p| p != digit) {
            pieces.push(&raw[start..i]);
            start = i;
        }
        prev_digit = Some(digit);
    }
    pieces.push(&raw[start..]);
    let count = pieces.len();
    for (k, piece) in pieces.into_iter().enumerate() {
        let sep = if k == 0 { first_sep } else { Sep::Dash };
        let followed_by_number = k + 1 < count;
        let value = match piece {
            "" => "0".to_string(),
            "cr" => "rc".to_string(),
            "ga" | "final" | "release" => String::new(),
            "a" if followed_by_number => "alpha".to_string(),
            "b" if followed_by_number => "beta".to_string(),
            "m" if followed_by_number => "milestone".to_string(),
            p if is_digits(p) => {
                let t = p.trim_start_matches('0');
                if t.is_empty() { "0" } else { t }.to_string()
            }
            p => p.to_string(),
        };
        tokens.push(Token {
            sep,
            value,
            padding: false,
        });
    }
}

/// Drop null tokens at the end of the version and at the end of each `-` group.
fn trim(tokens: &mut Vec<Token>) {
    let mut i = tokens.len();
    while i > 1 {
        let at = i - 1;
        if tokens[at].is_null() {
            tokens.remove(at);
            i -= 1;
            continue;
        }
        // Skip to the token that starts this `-` group; the group before it ends just left.
        let mut j = at;
        while j > 0 && tokens[j].sep != Sep::Dash {
            j -= 1;
        }
        i = j;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(a: &str, b: &str) -> Ordering {
        MavenVersion::parse(a).cmp(&MavenVersion::parse(b))
    }

    #[test]
    fn null_forms_are_equal() {
        for v in ["1", "1.0", "1.0.0", "1-0", "1.0-0", "1.ga", "1-final", "1."] {
            assert_eq!(cmp("1", v), Ordering::Equal, "1 = {v}");
        }
    }

    #[test]
    fn qualifier_order() {
        let chain = [
            "1-alpha-1",
            "1-beta-1",
            "1-milestone-1",
            "1-rc-1",
            "1-snapshot",
            "1",
            "1-sp",
            "1-abc",
            "1-1",
            "1.1",
        ];
        for w in chain.windows(2) {
            assert_eq!(cmp(w[0], w[1]), Ordering::Less, "{} < {}", w[0], w[1]);
        }
    }

    #[test]
    fn shorthands_and_case() {
        assert_eq!(cmp("1a1", "1-alpha-1"), Ordering::Equal);
        assert_eq!(cmp("1M3", "1-milestone-3"), Ordering::Equal);
        assert_eq!(cmp("1cr", "1RC"), Ordering::Equal);
        assert_eq!(cmp("1a", "1-a"), Ordering::Equal);
    }

    #[test]
    fn trims_each_dash_group() {
        let v = MavenVersion::parse("1.0-0.0-alpha");
        let values: Vec<&str> = v.tokens.iter().map(|t| t.value.as_str()).collect();
        assert_eq!(values, ["1", "alpha"]);
    }
}
