//! Go module versions: SemVer with a leading `v` (`v1.2.3`), pseudo-versions
//! (`v0.0.0-20191016112426-3962a5ea8da1`, ordinary pre-releases whose timestamps sort
//! chronologically because they have a fixed width) and `+incompatible` (build metadata,
//! ignored). Go toolchain versions as the standard library reports them (`go1.21.3`,
//! `go1.21rc2`) are accepted too: the `go` prefix is dropped, so `go1.21rc2 < 1.21.0`.
//!
//! The ordering itself is [`crate::semver`]'s; this module only normalises the spelling.
use std::cmp::Ordering;

use crate::semver::SemverVersion;

/// A parsed Go version.
#[derive(Clone, Debug)]
pub(crate) struct GoVersion(SemverVersion);

impl GoVersion {
    /// Parse a Go module or toolchain version.
    pub(crate) fn parse(s: &str) -> Self {
        let s = s.trim();
        let s = match s.strip_prefix("go") {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_digit()) => rest,
            _ => s,
        };
        GoVersion(SemverVersion::parse(s))
    }

    /// SemVer precedence.
    pub(crate) fn cmp(&self, other: &Self) -> Ordering {
        self.0.cmp(&other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(a: &str, b: &str) -> Ordering {
        GoVersion::parse(a).cmp(&GoVersion::parse(b))
    }

    #[test]
    fn pseudo_versions_are_prereleases_in_time_order() {
        assert_eq!(
            cmp(
                "v0.0.0-20191016112426-3962a5ea8da1",
                "v0.0.0-20200101000000-aaaaaaaaaaaa"
            ),
            Ordering::Less
        );
        assert_eq!(
            cmp("v0.0.0-20191016112426-3962a5ea8da1", "v0.0.0"),
            Ordering::Less
        );
        assert_eq!(
            cmp("v1.2.4-0.20191016112426-3962a5ea8da1", "v1.2.3"),
            Ordering::Greater
        );
        assert_eq!(
            cmp("v1.2.4-0.20191016112426-3962a5ea8da1", "v1.2.4"),
            Ordering::Less
        );
    }

    #[test]
    fn incompatible_is_build_metadata() {
        assert_eq!(cmp("v2.0.0+incompatible", "2.0.0"), Ordering::Equal);
        assert_eq!(cmp("v2.1.0+incompatible", "v2.0.9"), Ordering::Greater);
    }

    #[test]
    fn toolchain_versions() {
        assert_eq!(cmp("go1.21rc2", "1.21.0"), Ordering::Less);
        assert_eq!(cmp("go1.20.14", "v1.20.14"), Ordering::Equal);
        assert_eq!(cmp("1.20.0-0", "1.19.6"), Ordering::Greater);
    }
}
