//! Python package versions: PEP 440, with pre-PEP 440 ("legacy") versions ordered below every
//! PEP 440 version as setuptools' `LegacyVersion` did.
//!
//! Hand-written rather than `pep440_rs`: that crate rejects legacy versions, which old PyPI
//! advisories and installed distributions still carry, and brings a larger dependency tree
//! than the ~200 lines needed here. Numbers of any length are compared without overflow.
//!
//! PEP 440 parsing follows the specification's reference regular expression (case-insensitive,
//! optional `v`, `-`/`_`/`.` separators, alternative spellings `alpha`, `c`, `pre`, `preview`,
//! `rev`, `r`, implicit post releases `1.0-1`, implicit zero numbers). Ordering follows the
//! `packaging` library's key: epoch, release (trailing zeros ignored), pre-release (a dev
//! release of a final version sorts before its pre-releases), post-release, dev-release, local
//! version (numbers after text, a longer local version after its prefix).
use std::cmp::Ordering;

use crate::num::{cmp_digits, is_digits};

/// A parsed Python version.
#[derive(Clone, Debug)]
pub(crate) enum Pep440Version {
    /// Not PEP 440: setuptools' legacy parts, e.g. `["00000001", "*final"]`.
    Legacy(Vec<String>),
    /// A PEP 440 version.
    Modern(Modern),
}

/// The parts of a PEP 440 version that take part in ordering.
#[derive(Clone, Debug)]
pub(crate) struct Modern {
    epoch: String,
    /// Release numbers, trailing zeros removed.
    release: Vec<String>,
    /// Pre-release phase (0 = a, 1 = b, 2 = rc) and number.
    pre: Option<(u8, String)>,
    post: Option<String>,
    dev: Option<String>,
    local: Option<Vec<String>>,
}

impl Pep440Version {
    /// Parse a version; strings that are not PEP 440 become legacy versions.
    pub(crate) fn parse(s: &str) -> Self {
        let lower = s.trim().to_ascii_lowercase();
        match Cursor::new(&lower).modern() {
            Some(m) => Pep440Version::Modern(m),
            None => Pep440Version::Legacy(legacy_parts(&lower)),
        }
    }

    /// `packaging`'s ordering; legacy versions sort before PEP 440 versions.
    pub(crate) fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Pep440Version::Legacy(a), Pep440Version::Legacy(b)) => a.cmp(b),
            (Pep440Version::Legacy(_), Pep440Version::Modern(_)) => Ordering::Less,
            (Pep440Version::Modern(_), Pep440Version::Legacy(_)) => Ordering::Greater,
            (Pep440Version::Modern(a), Pep440Version::Modern(b)) => a.cmp(b),
        }
    }
}

/// Where a pre-release sorts: a bare dev release (`1.0.dev1`) before every pre-release of its
/// version, a final or post release after them.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum PreKey<'a> {
    BeforeAll,
    Phase(u8, Num<'a>),
    AfterAll,
}

/// A digit string ordered by value.
#[derive(PartialEq, Eq)]
struct Num<'a>(&'a str);

impl PartialOrd for Num<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Num<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        cmp_digits(self.0, other.0)
    }
}

impl Modern {
    fn pre_key(&self) -> PreKey<'_> {
        match &self.pre {
            Some((phase, n)) => PreKey::Phase(*phase, Num(n)),
            None if self.post.is_none() && self.dev.is_some() => PreKey::BeforeAll,
            None => PreKey::AfterAll,
        }
    }

    fn cmp(&self, other: &Self) -> Ordering {
        cmp_digits(&self.epoch, &other.epoch)
            .then_with(|| {
                let len = self.release.len().max(other.release.len());
                (0..len)
                    .map(|i| {
                        cmp_digits(
                            self.release.get(i).map_or("", |s| s),
                            other.release.get(i).map_or("", |s| s),
                        )
                    })
                    .find(|o| o.is_ne())
                    .unwrap_or(Ordering::Equal)
            })
            .then_with(|| self.pre_key().cmp(&other.pre_key()))
            // No post release sorts before any post release.
            .then_with(|| {
                let a = self.post.as_deref().map(Num);
                let b = other.post.as_deref().map(Num);
                a.cmp(&b)
            })
            // No dev release sorts after any dev release.
            .then_with(|| match (&self.dev, &other.dev) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(a), Some(b)) => cmp_digits(a, b),
            })
            .then_with(|| match (&self.local, &other.local) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Less,
                (Some(_), None) => Ordering::Greater,
                (Some(a), Some(b)) => cmp_local(a, b),
            })
    }
}

/// Local segments: numbers by value and after text; text lexically; then the longer wins.
fn cmp_local(a: &[String], b: &[String]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let ord = match (is_digits(x), is_digits(y)) {
            (true, true) => cmp_digits(x, y),
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => x.cmp(y),
        };
        if ord.is_ne() {
            return ord;
        }
    }
    a.len().cmp(&b.len())
}

/// A cursor over a lower-cased version string, for the PEP 440 grammar.
struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(s: &'a str) -> Self {
        Cursor { s, pos: 0 }
    }

    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }

    fn eat(&mut self, word: &str) -> bool {
        if self.rest().starts_with(word) {
            self.pos += word.len();
            true
        } else {
            false
        }
    }

    fn eat_any(&mut self, words: &[&'static str]) -> Option<&'static str> {
        words.iter().copied().find(|w| self.eat(w))
    }

    fn separator(&mut self) {
        if self.rest().starts_with(['-', '_', '.']) {
            self.pos += 1;
        }
    }

    fn digits(&mut self) -> Option<&'a str> {
        let n = self.rest().bytes().take_while(u8::is_ascii_digit).count();
        (n > 0).then(|| {
            let d = &self.rest()[..n];
            self.pos += n;
            d
        })
    }

    /// `[sep] label [sep] [number]`; restores the position when the label is absent.
    fn labelled(&mut self, labels: &[&'static str]) -> Option<(&'static str, &'a str)> {
        let start = self.pos;
        self.separator();
        let Some(label) = self.eat_any(labels) else {
            self.pos = start;
            return None;
        };
        // A trailing separator without a number belongs to the label's part (the reference
        // expression consumes it greedily); "0" is the implicit number.
        self.separator();
        Some((label, self.digits().unwrap_or("0")))
    }

    fn modern(mut self) -> Option<Modern> {
        self.eat("v");
        let start = self.pos;
        let epoch = match (self.digits(), self.eat("!")) {
            (Some(e), true) => e.to_string(),
            _ => {
                self.pos = start;
                "0".to_string()
            }
        };
        let mut release = vec![self.digits()?.to_string()];
        while self.rest().starts_with('.')
            && self.rest()[1..].starts_with(|c: char| c.is_ascii_digit())
        {
            self.pos += 1;
            release.extend(self.digits().map(str::to_string));
        }
        while release.len() > 1 && release.last().is_some_and(|r| cmp_digits(r, "").is_eq()) {
            release.pop();
        }

        // Longer spellings first, so that `alpha` is not read as `a` followed by junk.
        let pre = self
            .labelled(&["preview", "alpha", "beta", "pre", "rc", "a", "b", "c"])
            .map(|(label, n)| {
                let phase = match label {
                    "a" | "alpha" => 0,
                    "b" | "beta" => 1,
                    _ => 2,
                };
                (phase, n.to_string())
            });

        let start = self.pos;
        let post = if self.eat("-") {
            match self.digits() {
                Some(n) => Some(n.to_string()),
                None => {
                    self.pos = start;
                    self.labelled(&["post", "rev", "r"])
                        .map(|(_, n)| n.to_string())
                }
            }
        } else {
            self.labelled(&["post", "rev", "r"])
                .map(|(_, n)| n.to_string())
        };

        let dev = self.labelled(&["dev"]).map(|(_, n)| n.to_string());

        let local = if self.eat("+") {
            let segments: Vec<String> = self
                .rest()
                .split(['-', '_', '.'])
                .map(str::to_string)
                .collect();
            let valid = segments.iter().all(|seg| {
                !seg.is_empty()
                    && seg
                        .bytes()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            });
            if !valid {
                return None;
            }
            self.pos = self.s.len();
            Some(segments)
        } else {
            None
        };

        if !self.rest().is_empty() {
            return None;
        }
        Some(Modern {
            epoch,
            release,
            pre,
            post,
            dev,
            local,
        })
    }
}

/// setuptools' legacy parts: runs of digits (zero-padded to eight places so that text order is
/// numeric order), runs of letters (prefixed with `*`), `-` as `*final-`, with `pre`, `preview`
/// and `rc` spelled `c` and `dev` spelled `@` (so it sorts first); trailing zeros and
/// `*final-` markers are dropped before a letter part, so `1.0 = 1` and `1.0-a < 1.0`.
fn legacy_parts(s: &str) -> Vec<String> {
    let mut parts: Vec<String> = Vec::new();
    let mut push = |part: String| {
        if part.starts_with('*') {
            if part.as_str() < "*final" {
                while parts.last().is_some_and(|p| p == "*final-") {
                    parts.pop();
                }
            }
            while parts.last().is_some_and(|p| p == "00000000") {
                parts.pop();
            }
        }
        parts.push(part);
    };
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut other_start = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let len = if c.is_ascii_digit() {
            bytes[i..].iter().take_while(|b| b.is_ascii_digit()).count()
        } else if c.is_ascii_lowercase() {
            bytes[i..]
                .iter()
                .take_while(|b| b.is_ascii_lowercase())
                .count()
        } else if c == b'.' || c == b'-' {
            1
        } else {
            i += 1;
            continue;
        };
        // Text between recognised components is a part of its own, as in setuptools (which
        // splits on the component pattern and keeps what lies between).
        if other_start < i {
            push(format!("*{}", &s[other_start..i]));
        }
        let token = &s[i..i + len];
        i += len;
        other_start = i;
        match token {
            "." => {}
            "-" => push("*final-".to_string()),
            "pre" | "preview" | "rc" => push("*c".to_string()),
            "dev" => push("*@".to_string()),
            t if t.as_bytes()[0].is_ascii_digit() => push(format!("{t:0>8}")),
            t => push(format!("*{t}")),
        }
    }
    if other_start < bytes.len() {
        push(format!("*{}", &s[other_start..]));
    }
    push("*final".to_string());
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(a: &str, b: &str) -> Ordering {
        Pep440Version::parse(a).cmp(&Pep440Version::parse(b))
    }

    #[test]
    fn pep440_phase_order() {
        let chain = [
            "1.0.dev0",
            "1.0a1.dev1",
            "1.0a1",
            "1.0b2.post1",
            "1.0rc1",
            "1.0",
            "1.0+local",
            "1.0.post1.dev1",
            "1.0.post1",
            "1.1",
        ];
        for w in chain.windows(2) {
            assert_eq!(cmp(w[0], w[1]), Ordering::Less, "{} < {}", w[0], w[1]);
        }
    }

    #[test]
    fn spellings_normalise() {
        assert_eq!(cmp("1.0ALPHA1", "1.0a1"), Ordering::Equal);
        assert_eq!(cmp("1.0-c1", "1.0rc1"), Ordering::Equal);
        assert_eq!(cmp("1.0-1", "1.0.post1"), Ordering::Equal);
        assert_eq!(cmp("v1.0", "1.0.0"), Ordering::Equal);
        assert_eq!(cmp("1.0.rev", "1.0.post0"), Ordering::Equal);
        assert_eq!(cmp("1!0.1", "2.0"), Ordering::Greater);
    }

    #[test]
    fn legacy_sorts_below_pep440() {
        assert!(matches!(
            Pep440Version::parse("0.1-bulbasaur"),
            Pep440Version::Legacy(_)
        ));
        assert_eq!(cmp("0.1-bulbasaur", "0.0.1"), Ordering::Less);
        assert_eq!(cmp("0.1-bulbasaur", "0.1-charmander"), Ordering::Less);
    }

    #[test]
    fn legacy_parts_match_setuptools() {
        assert_eq!(legacy_parts("1.0"), vec!["00000001", "*final"]);
        assert_eq!(
            legacy_parts("2.0-rc1x"),
            vec!["00000002", "*c", "00000001", "*x", "*final"]
        );
    }

    #[test]
    fn local_versions() {
        assert_eq!(cmp("1.0+local.a", "1.0+local.1"), Ordering::Less);
        assert_eq!(cmp("1.0+local.0", "1.0+local.0.1"), Ordering::Less);
        assert!(matches!(
            Pep440Version::parse("1.0+"),
            Pep440Version::Legacy(_)
        ));
    }
}
