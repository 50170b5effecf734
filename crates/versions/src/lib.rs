//! Version semantics per ecosystem, and exact evaluation of affected-version rules.
//!
//! tocsin decides "is this installed package affected?" in two directions (vulnerability
//! reports and notifications) and both must give the same answer, so the answer lives here,
//! once. The crate has two halves:
//!
//! - **Comparators** ([`Scheme`], [`Version`]): one module per version scheme (dpkg, rpm, apk,
//!   PEP 440, SemVer, Go, Maven, and a generic fallback). Each is checked line by line against
//!   the real-world ordering oracles in `shared/data/versions` (`tests/oracles.rs`). No
//!   comparator panics: malformed input still gets a deterministic place, described in its
//!   module. Every order is transitive except Maven's, which is Maven's own (see [`Version`]).
//!   Comparators are hand-written because the maintained crates
//!   either reject versions that real feeds and images contain (`v1.2.3`, legacy Python
//!   versions, 30-digit numbers) or order them differently from the ecosystem's own tools;
//!   each module says why in its own documentation.
//! - **Rules** ([`affected`], [`CompiledRule`]): the OSV evaluation algorithm (sorted events,
//!   `introduced`/`fixed`/`last_affected`/`limit`, explicit `versions`) and claircore's
//!   per-distribution rules (`fixed_in_version` special values, query strings, normalised
//!   ranges, architecture operators), exactly as Clair applies them.
//!
//! Parsing is separate from comparing ([`Scheme::parse`] → [`Version`]) because the matching
//! engine evaluates one rule against thousands of installed versions: a [`CompiledRule`] parses
//! the rule's bounds once and each installed version once.
#![deny(missing_docs)]

use std::cmp::Ordering;
use std::fmt;

mod apk;
mod dpkg;
mod generic;
mod go;
mod maven;
mod normalized;
mod num;
mod pep440;
mod rpm;
mod rules;
mod semver;

pub use rules::{affected, CompiledRule, RuleError};

/// A version ordering scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scheme {
    /// Debian and Ubuntu packages (dpkg).
    Dpkg,
    /// RPM-based distributions (rpmvercmp).
    Rpm,
    /// Alpine packages (apk).
    Apk,
    /// Python packages (PEP 440, legacy versions below).
    Pep440,
    /// SemVer 2.0 (crates.io, npm, OSV `SEMVER` ranges).
    Semver,
    /// Go modules: SemVer with `v`, pseudo-versions and `+incompatible`.
    Go,
    /// Maven artifacts (ComparableVersion).
    Maven,
    /// Anything else: digit and letter runs (see `generic.rs`).
    Generic,
}

impl Scheme {
    /// The scheme for an OSV ecosystem name.
    ///
    /// The part before the first `:` decides: `Debian`, `Ubuntu` → [`Scheme::Dpkg`];
    /// `AlmaLinux`, `Rocky Linux`, `Red Hat`, `CentOS`, `Oracle Linux`, `SUSE`, `openSUSE`
    /// (and the RPM-based `Mageia`, `openEuler`, `Photon OS`, `Azure Linux`, `Fedora`) →
    /// [`Scheme::Rpm`]; `Alpine` (and the apk-based `Wolfi`, `Chainguard`) → [`Scheme::Apk`];
    /// `PyPI` → [`Scheme::Pep440`]; `crates.io`, `npm` (and `Hex`, `SwiftURL`, which OSV
    /// defines as SemVer) → [`Scheme::Semver`]; `Go` → [`Scheme::Go`]; `Maven` →
    /// [`Scheme::Maven`]; anything else → [`Scheme::Generic`]. Names are case-sensitive, as
    /// OSV defines them.
    pub fn for_ecosystem(ecosystem: &str) -> Scheme {
        let base = ecosystem.split(':').next().unwrap_or(ecosystem);
        match base {
            "Debian" | "Ubuntu" => Scheme::Dpkg,
            "AlmaLinux" | "Rocky Linux" | "Red Hat" | "CentOS" | "Oracle Linux" | "SUSE"
            | "openSUSE" | "Mageia" | "openEuler" | "Photon OS" | "Azure Linux" | "Fedora" => {
                Scheme::Rpm
            }
            "Alpine" | "Wolfi" | "Chainguard" => Scheme::Apk,
            "PyPI" => Scheme::Pep440,
            "crates.io" | "npm" | "Hex" | "SwiftURL" => Scheme::Semver,
            "Go" => Scheme::Go,
            "Maven" => Scheme::Maven,
            _ => Scheme::Generic,
        }
    }

    /// Total order of two version strings under this scheme. Never panics; malformed input
    /// gets the deterministic place its scheme's module documents.
    pub fn compare(self, a: &str, b: &str) -> Ordering {
        self.parse(a).cmp(&self.parse(b))
    }

    /// Parse once, compare many times. Infallible: every string is a version of every scheme
    /// (see [`Scheme::compare`]).
    pub fn parse(self, s: &str) -> Version {
        Version(match self {
            Scheme::Dpkg => Repr::Dpkg(dpkg::DpkgVersion::parse(s)),
            Scheme::Rpm => Repr::Rpm(rpm::RpmVersion::parse(s)),
            Scheme::Apk => Repr::Apk(apk::ApkVersion::parse(s)),
            Scheme::Pep440 => Repr::Pep440(pep440::Pep440Version::parse(s)),
            Scheme::Semver => Repr::Semver(semver::SemverVersion::parse(s)),
            Scheme::Go => Repr::Go(go::GoVersion::parse(s)),
            Scheme::Maven => Repr::Maven(maven::MavenVersion::parse(s)),
            Scheme::Generic => Repr::Generic(generic::GenericVersion::parse(s)),
        })
    }

    /// A short lower-case name (`dpkg`, `rpm`, `apk`, `pep440`, `semver`, `go`, `maven`,
    /// `generic`).
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Dpkg => "dpkg",
            Scheme::Rpm => "rpm",
            Scheme::Apk => "apk",
            Scheme::Pep440 => "pep440",
            Scheme::Semver => "semver",
            Scheme::Go => "go",
            Scheme::Maven => "maven",
            Scheme::Generic => "generic",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A parsed version of one [`Scheme`].
///
/// Versions of the same scheme compare with that scheme's ordering, and equality is that
/// ordering's (`1.0` and `1.0.0` are equal SemVer versions). Versions of different schemes
/// have no meaningful order; they are ordered by scheme.
///
/// Every scheme's order is total and transitive (checked by sorting the oracle versions),
/// except [`Scheme::Maven`]: Maven's own ordering is not transitive for some
/// versions mixing separators and qualifiers (`1 < 1.0-pre33.3 < 1.0.0.Beta2 < 1`), and this
/// crate answers every pair as Maven does. Do not use Maven versions as keys of ordered maps
/// or sort them with `slice::sort` (which may panic on such input); compare pairwise.
#[derive(Clone, Debug)]
pub struct Version(Repr);

#[derive(Clone, Debug)]
enum Repr {
    Dpkg(dpkg::DpkgVersion),
    Rpm(rpm::RpmVersion),
    Apk(apk::ApkVersion),
    Pep440(pep440::Pep440Version),
    Semver(semver::SemverVersion),
    Go(go::GoVersion),
    Maven(maven::MavenVersion),
    Generic(generic::GenericVersion),
}

impl Version {
    /// The scheme this version was parsed with.
    pub fn scheme(&self) -> Scheme {
        match &self.0 {
            Repr::Dpkg(_) => Scheme::Dpkg,
            Repr::Rpm(_) => Scheme::Rpm,
            Repr::Apk(_) => Scheme::Apk,
            Repr::Pep440(_) => Scheme::Pep440,
            Repr::Semver(_) => Scheme::Semver,
            Repr::Go(_) => Scheme::Go,
            Repr::Maven(_) => Scheme::Maven,
            Repr::Generic(_) => Scheme::Generic,
        }
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        match (&self.0, &other.0) {
            (Repr::Dpkg(a), Repr::Dpkg(b)) => a.cmp(b),
            (Repr::Rpm(a), Repr::Rpm(b)) => a.cmp(b),
            (Repr::Apk(a), Repr::Apk(b)) => a.cmp(b),
            (Repr::Pep440(a), Repr::Pep440(b)) => a.cmp(b),
            (Repr::Semver(a), Repr::Semver(b)) => a.cmp(b),
            (Repr::Go(a), Repr::Go(b)) => a.cmp(b),
            (Repr::Maven(a), Repr::Maven(b)) => a.cmp(b),
            (Repr::Generic(a), Repr::Generic(b)) => a.cmp(b),
            _ => self.scheme().cmp(&other.scheme()),
        }
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecosystems_map_to_schemes() {
        let cases = [
            ("Debian:10", Scheme::Dpkg),
            ("Debian", Scheme::Dpkg),
            ("Ubuntu:22.04", Scheme::Dpkg),
            ("Ubuntu:Pro:18.04:LTS", Scheme::Dpkg),
            ("AlmaLinux:9", Scheme::Rpm),
            ("Rocky Linux:9", Scheme::Rpm),
            ("Red Hat:8", Scheme::Rpm),
            ("CentOS:7", Scheme::Rpm),
            ("Oracle Linux:9", Scheme::Rpm),
            ("SUSE:Linux Enterprise Server 15 SP5", Scheme::Rpm),
            ("openSUSE:Leap 15.5", Scheme::Rpm),
            ("Alpine:v3.18", Scheme::Apk),
            ("PyPI", Scheme::Pep440),
            ("crates.io", Scheme::Semver),
            ("npm", Scheme::Semver),
            ("Go", Scheme::Go),
            ("Maven", Scheme::Maven),
            ("RubyGems", Scheme::Generic),
            ("debian", Scheme::Generic),
            ("", Scheme::Generic),
        ];
        for (eco, scheme) in cases {
            assert_eq!(Scheme::for_ecosystem(eco), scheme, "{eco}");
        }
    }

    #[test]
    fn versions_compare_within_their_scheme() {
        let a = Scheme::Semver.parse("1.0");
        let b = Scheme::Semver.parse("1.0.0");
        assert_eq!(a, b);
        assert!(Scheme::Dpkg.parse("1.0~rc1") < Scheme::Dpkg.parse("1.0"));
        assert_eq!(a.scheme(), Scheme::Semver);
    }

    #[test]
    fn different_schemes_order_by_scheme() {
        let dpkg = Scheme::Dpkg.parse("9");
        let rpm = Scheme::Rpm.parse("1");
        assert!(dpkg < rpm);
        assert_ne!(dpkg, rpm);
    }

    #[test]
    fn compare_never_panics_on_odd_input() {
        let odd = [
            "", " ", ":", "-", "~", "^", "_", "+", "é", "1:", ":1", "--r", "v", "go", "1..2", "!",
        ];
        for scheme in [
            Scheme::Dpkg,
            Scheme::Rpm,
            Scheme::Apk,
            Scheme::Pep440,
            Scheme::Semver,
            Scheme::Go,
            Scheme::Maven,
            Scheme::Generic,
        ] {
            for a in odd {
                for b in odd {
                    let ab = scheme.compare(a, b);
                    assert_eq!(
                        ab,
                        scheme.compare(b, a).reverse(),
                        "{scheme}: {a:?} vs {b:?}"
                    );
                }
            }
        }
    }
}
