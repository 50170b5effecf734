//! tocsin's vulnerability record.
//!
//! One [`Vulnerability`] is one advisory as it applies to one package of one ecosystem (an OSV
//! record with three affected packages becomes three). It keeps the exact rule the feed gave
//! (OSV ranges and version lists, or claircore's `fixed_in_version` / `range`) so that matching
//! is exact, and it is content-addressed: its [`VulnId`] is the hash of its canonical encoding,
//! so identical records across snapshots are stored once and diffs are set operations.
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::claircore::{self, Distribution, Repository, VersionRange};
use crate::Severity;

/// Content address of a [`Vulnerability`]: hex SHA-256 of its canonical JSON encoding.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct VulnId(pub String);

impl fmt::Display for VulnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for VulnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VulnId({})", &self.0[..self.0.len().min(12)])
    }
}

/// Which of an installed package's names an advisory's package name refers to.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum NameKind {
    /// The binary (or language) package name only.
    Binary,
    /// The source package name only (e.g. Debian DSAs, OSV `arch=source`).
    Source,
    /// Either name matches (claircore's rule for OS packages).
    #[default]
    Any,
}

/// The package an advisory is about.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PackageSpec {
    /// OSV ecosystem (`Debian:10`, `Go`, …); a bare OS name (`Debian`) means every release.
    pub ecosystem: String,
    /// Package name as the ecosystem spells it.
    pub name: String,
    /// Which installed name it refers to.
    #[serde(default)]
    pub kind: NameKind,
}

/// The type of an OSV range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RangeKind {
    /// SemVer 2.0 ordering.
    Semver,
    /// The ecosystem's own ordering.
    Ecosystem,
    /// Git commits (cannot be evaluated against installed versions; kept for fidelity).
    Git,
}

/// One OSV range event.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// `introduced`: affected from this version on ("0" = from the beginning).
    Introduced(String),
    /// `fixed`: not affected from this version on.
    Fixed(String),
    /// `last_affected`: affected up to and including this version.
    LastAffected(String),
    /// `limit`: an upper bound on the range (exclusive).
    Limit(String),
}

/// An OSV range: a type and its events, in the record's order.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OsvRange {
    /// Range type.
    #[serde(rename = "type")]
    pub kind: RangeKind,
    /// Events.
    pub events: Vec<Event>,
}

/// The affected-version rule, exactly as the feed stated it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum Affected {
    /// OSV: affected if any range covers the version or it is listed in `versions`.
    Osv {
        /// Ranges.
        #[serde(default)]
        ranges: Vec<OsvRange>,
        /// Explicitly affected versions.
        #[serde(default)]
        versions: Vec<String>,
    },
    /// claircore: `fixed_in_version` (possibly a query string), an optional normalised `range`
    /// and an architecture rule.
    Claircore {
        /// `fixed_in_version` as given.
        fixed_in_version: String,
        /// Normalised half-open range, when given.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        range: Option<VersionRange>,
        /// "equals" | "not equals" | "pattern match" | "".
        #[serde(default)]
        arch_op: String,
        /// The architecture `arch_op` compares against.
        #[serde(default)]
        arch: String,
    },
}

/// One advisory as it applies to one package.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Vulnerability {
    /// The updater (feed) it came from.
    pub updater: String,
    /// Advisory name (`GO-2020-0001`, `DSA-4567-1`, `CVE-…`).
    pub name: String,
    /// Other names of the same advisory (CVE ids, GHSA ids).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Description (OSV summary, else details).
    #[serde(default)]
    pub description: String,
    /// Space-separated URLs.
    #[serde(default)]
    pub links: String,
    /// Publication date, RFC 3339, or "".
    #[serde(default)]
    pub issued: String,
    /// Vendor severity text (a word, or a CVSS vector).
    #[serde(default)]
    pub severity: String,
    /// Normalised severity.
    pub normalized_severity: Severity,
    /// The package it affects.
    pub package: PackageSpec,
    /// The distribution, for OS advisories (presentation in reports and notifications).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distribution: Option<Distribution>,
    /// The repository, for language advisories (presentation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<Repository>,
    /// The fixed version to show (first fixed version, or claircore's string), or "".
    #[serde(default)]
    pub fixed_in_version: String,
    /// Which versions are affected.
    pub affected: Affected,
}

/// The identity of a vulnerability across snapshots: same updater, advisory and package means
/// "the same vulnerability", so two records with one identity and different content are a change.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity {
    /// Updater.
    pub updater: String,
    /// Advisory name.
    pub name: String,
    /// Package.
    pub package: PackageSpec,
}

impl Vulnerability {
    /// The canonical encoding the content address is computed over.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        // Field order is fixed by the struct and every map is ordered: serde_json's output is
        // canonical. Serialising plain data cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The content address.
    pub fn id(&self) -> VulnId {
        VulnId(crate::sha256_hex(&self.canonical_bytes()))
    }

    /// The identity used to pair an old and a new version of one vulnerability.
    pub fn identity(&self) -> Identity {
        Identity {
            updater: self.updater.clone(),
            name: self.name.clone(),
            package: self.package.clone(),
        }
    }

    /// The claircore Package shown for this vulnerability (name and kind only).
    pub fn claircore_package(&self) -> claircore::Package {
        claircore::Package {
            name: self.package.name.clone(),
            kind: match self.package.kind {
                NameKind::Source => "source".into(),
                _ => "binary".into(),
            },
            ..Default::default()
        }
    }

    /// This vulnerability in claircore's shape, with `id` set to the given report-local id.
    pub fn to_claircore(&self, id: &str) -> claircore::Vulnerability {
        let (range, arch_op) = match &self.affected {
            Affected::Claircore { range, arch_op, .. } => (range.clone(), arch_op.clone()),
            Affected::Osv { .. } => (None, String::new()),
        };
        claircore::Vulnerability {
            id: id.to_string(),
            updater: self.updater.clone(),
            name: self.name.clone(),
            description: self.description.clone(),
            issued: if self.issued.is_empty() {
                "0001-01-01T00:00:00Z".into()
            } else {
                self.issued.clone()
            },
            links: self.links.clone(),
            severity: self.severity.clone(),
            normalized_severity: self.normalized_severity,
            package: Some(self.claircore_package()),
            distribution: self.distribution.clone(),
            repository: self.repository.clone(),
            fixed_in_version: self.fixed_in_version.clone(),
            range,
            arch_op,
        }
    }
}

/// A vulnerability together with its content address, computed once when it is made.
///
/// An import hands the same records to the feed reader (which fingerprints them), the store
/// (which files them by id) and the engine (which indexes them by id). Encoding and hashing a
/// record is most of an import's cost, so the id travels with the record instead of being
/// recomputed at each step; the fields are private so the id cannot disagree with the content.
#[derive(Debug, Clone, PartialEq)]
pub struct Addressed {
    id: VulnId,
    vuln: Vulnerability,
}

impl Addressed {
    /// Computes the content address of `vuln`.
    pub fn new(vuln: Vulnerability) -> Self {
        Addressed {
            id: vuln.id(),
            vuln,
        }
    }

    /// The content address.
    pub fn id(&self) -> &VulnId {
        &self.id
    }

    /// The record.
    pub fn vuln(&self) -> &Vulnerability {
        &self.vuln
    }

    /// The id and the record.
    pub fn into_parts(self) -> (VulnId, Vulnerability) {
        (self.id, self.vuln)
    }
}

impl From<Vulnerability> for Addressed {
    fn from(vuln: Vulnerability) -> Self {
        Addressed::new(vuln)
    }
}

impl std::ops::Deref for Addressed {
    type Target = Vulnerability;

    fn deref(&self) -> &Vulnerability {
        &self.vuln
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Vulnerability {
        Vulnerability {
            updater: "osv/go".into(),
            name: "GO-2020-0001".into(),
            aliases: vec!["CVE-2020-36567".into()],
            description: "log injection".into(),
            links: "https://pkg.go.dev/vuln/GO-2020-0001".into(),
            issued: "2021-04-14T20:04:52Z".into(),
            severity: String::new(),
            normalized_severity: Severity::Unknown,
            package: PackageSpec {
                ecosystem: "Go".into(),
                name: "github.com/gin-gonic/gin".into(),
                kind: NameKind::Binary,
            },
            distribution: None,
            repository: None,
            fixed_in_version: "1.6.0".into(),
            affected: Affected::Osv {
                ranges: vec![OsvRange {
                    kind: RangeKind::Semver,
                    events: vec![Event::Introduced("0".into()), Event::Fixed("1.6.0".into())],
                }],
                versions: vec![],
            },
        }
    }

    #[test]
    fn id_is_stable_and_content_sensitive() {
        let a = sample();
        let mut b = sample();
        assert_eq!(a.id(), b.id());
        b.description.push('!');
        assert_ne!(a.id(), b.id());
        assert_eq!(a.identity(), b.identity());
    }

    #[test]
    fn addressed_carries_the_content_address() {
        let a = Addressed::new(sample());
        assert_eq!(a.id(), &sample().id());
        assert_eq!(a.name, "GO-2020-0001");
        let (id, v) = a.into_parts();
        assert_eq!(id, v.id());
    }

    #[test]
    fn round_trips_through_json() {
        let a = sample();
        let back: Vulnerability = serde_json::from_slice(&a.canonical_bytes()).unwrap();
        assert_eq!(a, back);
        assert_eq!(a.id(), back.id());
    }
}
