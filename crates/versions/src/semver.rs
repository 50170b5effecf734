//! SemVer 2.0 ordering (crates.io, npm, OSV `SEMVER` ranges), lenient about syntax.
//!
//! Hand-written rather than the `semver` crate: that crate rejects much of what registries and
//! advisories really contain (`v1.2.3`, `1.2`, `0`, `1.36.0rc1`, numbers past `u64`) and an
//! installed version we cannot parse would silently never match. Here every string parses:
//! - an optional leading `v`;
//! - numeric components separated by dots, read up to the first other character (missing ones
//!   are 0, so `1.2 = 1.2.0`); components after the third are kept as pre-release text
//!   (`1.2.3.4` sorts like `1.2.3-.4`), as SemVer has exactly three;
//! - the rest up to `+` is the pre-release (a leading `-` dropped), the rest after `+` is build
//!   metadata and ignored for ordering.
//!
//! Pre-releases compare per SemVer §11: a version with one sorts before the version without;
//! dot-separated identifiers compare numerically when both are digits, numbers before text,
//! text in ASCII order, and a longer list wins when all shared identifiers are equal.
use std::cmp::Ordering;

use crate::num::{cmp_digits, is_digits};

/// A parsed SemVer-like version.
#[derive(Clone, Debug)]
pub(crate) struct SemverVersion {
    /// Major, minor, patch (digit strings; missing ones are empty = 0).
    core: [String; 3],
    /// Pre-release identifiers; empty for a release.
    pre: Vec<String>,
}

impl SemverVersion {
    /// Parse leniently (see the module doc).
    pub(crate) fn parse(s: &str) -> Self {
        let s = s.trim();
        let s = s.strip_prefix('v').unwrap_or(s);
        let mut components: Vec<&str> = Vec::new();
        let mut rest = s;
        loop {
            let n = rest.bytes().take_while(u8::is_ascii_digit).count();
            if n > 0 {
                components.push(&rest[..n]);
                rest = &rest[n..];
            }
            match rest.strip_prefix('.') {
                Some(r) => rest = r,
                None => break,
            }
        }
        let mut pre_text = String::new();
        if components.len() > 3 {
            for extra in &components[3..] {
                pre_text.push('.');
                pre_text.push_str(extra);
            }
        }
        pre_text.push_str(rest);
        let without_build = pre_text.split('+').next().unwrap_or("");
        let pre_text = without_build.strip_prefix('-').unwrap_or(without_build);
        let pre = if pre_text.is_empty() {
            Vec::new()
        } else {
            pre_text.split('.').map(str::to_string).collect()
        };
        let part = |i: usize| {
            components
                .get(i)
                .map_or_else(String::new, |c| c.to_string())
        };
        SemverVersion {
            core: [part(0), part(1), part(2)],
            pre,
        }
    }

    /// SemVer precedence (see the module doc).
    pub(crate) fn cmp(&self, other: &Self) -> Ordering {
        for (a, b) in self.core.iter().zip(&other.core) {
            let ord = cmp_digits(a, b);
            if ord != Ordering::Equal {
                return ord;
            }
        }
        match (self.pre.is_empty(), other.pre.is_empty()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => cmp_prerelease(&self.pre, &other.pre),
        }
    }

    /// The major, minor and patch numbers, saturated to `i32` (claircore's normalized form).
    pub(crate) fn core_i32(&self) -> [i32; 3] {
        self.core.clone().map(|c| {
            let c = c.trim_start_matches('0');
            if c.len() > 10 {
                i32::MAX
            } else {
                c.parse::<i64>()
                    .map_or(0, |n| i32::try_from(n).unwrap_or(i32::MAX))
            }
        })
    }

    /// Whether the string had at least a major number (claircore needs one to normalise).
    pub(crate) fn has_core(&self) -> bool {
        !self.core[0].is_empty()
    }
}

fn cmp_prerelease(a: &[String], b: &[String]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let ord = match (is_digits(x), is_digits(y)) {
            (true, true) => cmp_digits(x, y),
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
            (false, false) => x.cmp(y),
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    a.len().cmp(&b.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(a: &str, b: &str) -> Ordering {
        SemverVersion::parse(a).cmp(&SemverVersion::parse(b))
    }

    #[test]
    fn spec_precedence_example() {
        let chain = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
        ];
        for w in chain.windows(2) {
            assert_eq!(cmp(w[0], w[1]), Ordering::Less, "{} < {}", w[0], w[1]);
        }
    }

    #[test]
    fn lenient_forms() {
        assert_eq!(cmp("v1.2.3", "1.2.3"), Ordering::Equal);
        assert_eq!(cmp("1.2", "1.2.0"), Ordering::Equal);
        assert_eq!(cmp("1.2.3+build", "1.2.3+other"), Ordering::Equal);
        assert_eq!(cmp("1.36.0rc1", "1.36.0"), Ordering::Less);
        assert_eq!(cmp("0.3.0", "0"), Ordering::Greater);
    }

    #[test]
    fn core_saturates_for_claircore() {
        assert_eq!(SemverVersion::parse("v1.22.3").core_i32(), [1, 22, 3]);
        assert_eq!(
            SemverVersion::parse("99999999999.0.0").core_i32(),
            [i32::MAX, 0, 0]
        );
        assert!(!SemverVersion::parse("abc").has_core());
    }
}
