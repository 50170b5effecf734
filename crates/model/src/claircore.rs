//! The JSON shapes of claircore (Clair v4), as the wire reference §1 lists them.
//!
//! Every struct ignores unknown keys on input (newer claircore adds fields) and writes exactly the
//! keys claircore writes, with its `omitempty` rules, so reports and notifications we emit are
//! accepted by Quay's and Clair's own schemas.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Severity;

fn is_empty(s: &str) -> bool {
    s.is_empty()
}

/// A claircore Package (binary or source).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Package {
    /// Report-local id.
    pub id: String,
    /// Package name.
    pub name: String,
    /// Installed version, in the ecosystem's own syntax.
    pub version: String,
    /// "binary" or "source" (omitted when empty).
    #[serde(skip_serializing_if = "is_empty")]
    pub kind: String,
    /// The source package this binary was built from (omitted when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<Box<Package>>,
    /// "" or `kind:v0.v1…v9`.
    pub normalized_version: String,
    /// Module stream (omitted when empty).
    #[serde(skip_serializing_if = "is_empty")]
    pub module: String,
    /// Architecture (omitted when empty).
    #[serde(skip_serializing_if = "is_empty")]
    pub arch: String,
    /// CPE, "" when unset.
    pub cpe: String,
}

/// A claircore Distribution; all nine fields are always written (Quay's schema requires them).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct Distribution {
    /// Report-local id.
    pub id: String,
    /// os-release ID, e.g. `debian`.
    pub did: String,
    /// os-release NAME.
    pub name: String,
    /// os-release VERSION.
    pub version: String,
    /// os-release VERSION_CODENAME.
    pub version_code_name: String,
    /// os-release VERSION_ID.
    pub version_id: String,
    /// Architecture.
    pub arch: String,
    /// CPE.
    pub cpe: String,
    /// os-release PRETTY_NAME.
    pub pretty_name: String,
}

/// A claircore Repository (a language registry or an OS repository).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct Repository {
    /// Report-local id (omitted when empty).
    #[serde(skip_serializing_if = "is_empty")]
    pub id: String,
    /// Name, e.g. `pypi`, `maven`, `go`.
    #[serde(skip_serializing_if = "is_empty")]
    pub name: String,
    /// Key.
    #[serde(skip_serializing_if = "is_empty")]
    pub key: String,
    /// URI.
    #[serde(skip_serializing_if = "is_empty")]
    pub uri: String,
    /// CPE (always written).
    pub cpe: String,
}

/// Where a package was found in an image.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Environment {
    /// The package database path.
    pub package_db: String,
    /// The layer digest that introduced the package.
    pub introduced_in: String,
    /// Distribution id within the report.
    pub distribution_id: String,
    /// Repository ids within the report (null in many real reports).
    pub repository_ids: Option<Vec<String>>,
}

/// A claircore IndexReport: what one manifest contains.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct IndexReport {
    /// The manifest digest.
    pub manifest_hash: String,
    /// Indexer state, e.g. `IndexFinished`.
    pub state: String,
    /// Packages by report-local id.
    pub packages: BTreeMap<String, Package>,
    /// Distributions by report-local id.
    pub distributions: BTreeMap<String, Distribution>,
    /// Repositories by report-local id.
    pub repository: BTreeMap<String, Repository>,
    /// Environments by package id.
    pub environments: BTreeMap<String, Vec<Environment>>,
    /// Whether indexing succeeded.
    pub success: bool,
    /// Indexer error text.
    pub err: String,
}

/// claircore's normalized version bound used in `range`: `{"kind": "semver", "v": [10 ints]}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(default)]
pub struct NormalizedVersion {
    /// Version kind, e.g. `semver`, `pep440`.
    pub kind: String,
    /// Ten components.
    pub v: Vec<i32>,
}

/// claircore's half-open range `{"[": lower, ")": upper}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VersionRange {
    /// Inclusive lower bound.
    #[serde(rename = "[", default, skip_serializing_if = "Option::is_none")]
    pub lower: Option<NormalizedVersion>,
    /// Exclusive upper bound.
    #[serde(rename = ")", default, skip_serializing_if = "Option::is_none")]
    pub upper: Option<NormalizedVersion>,
}

/// A claircore Vulnerability, as matchers store it and as update diffs and reports carry it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Vulnerability {
    /// Store-local id.
    pub id: String,
    /// The updater that produced it.
    pub updater: String,
    /// Advisory name, e.g. `CVE-2021-1234`, `DSA-4567-1`.
    pub name: String,
    /// Description.
    pub description: String,
    /// Issue date, RFC 3339 (zero is `0001-01-01T00:00:00Z`).
    pub issued: String,
    /// Space-separated URLs.
    pub links: String,
    /// Vendor severity text.
    pub severity: String,
    /// Normalised severity.
    pub normalized_severity: Severity,
    /// Affected package (may be null).
    pub package: Option<Package>,
    /// Affected distribution (omitted when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distribution: Option<Distribution>,
    /// Affected repository (omitted when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<Repository>,
    /// First fixed version, or a query string `introduced=X&fixed=Y` / `…&lastAffected=Z`.
    pub fixed_in_version: String,
    /// Normalised half-open range (omitted when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub range: Option<VersionRange>,
    /// "equals" | "not equals" | "pattern match" (omitted when empty).
    #[serde(skip_serializing_if = "is_empty")]
    pub arch_op: String,
}

/// A claircore VulnerabilityReport: an IndexReport plus the vulnerabilities that affect it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VulnerabilityReport {
    /// The manifest digest.
    pub manifest_hash: String,
    /// Packages by id.
    pub packages: BTreeMap<String, Package>,
    /// Distributions by id.
    pub distributions: BTreeMap<String, Distribution>,
    /// Repositories by id.
    pub repository: BTreeMap<String, Repository>,
    /// Environments by package id.
    pub environments: BTreeMap<String, Vec<Environment>>,
    /// Vulnerabilities by id.
    pub vulnerabilities: BTreeMap<String, Vulnerability>,
    /// Package id → vulnerability ids, most severe first.
    pub package_vulnerabilities: BTreeMap<String, Vec<String>>,
    /// Enrichments (always `{}` here).
    pub enrichments: BTreeMap<String, serde_json::Value>,
}

/// A claircore UpdateOperation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UpdateOperation {
    /// The operation's id (a UUID).
    #[serde(rename = "ref")]
    pub reference: String,
    /// Updater name.
    pub updater: String,
    /// Content fingerprint.
    pub fingerprint: String,
    /// When it was created, RFC 3339.
    pub date: String,
    /// "vulnerability" or "enrichment" (empty in Clair's listing output).
    pub kind: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_omits_empty_optional_fields_and_keeps_cpe() {
        let p = Package {
            id: "1".into(),
            name: "openssl".into(),
            version: "1.1".into(),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"id":"1","name":"openssl","version":"1.1","normalized_version":"","cpe":""}"#
        );
    }

    #[test]
    fn distribution_always_writes_nine_fields() {
        let v = serde_json::to_value(Distribution::default()).unwrap();
        assert_eq!(v.as_object().unwrap().len(), 9);
    }

    #[test]
    fn vulnerability_range_uses_bracket_keys() {
        let v: Vulnerability = serde_json::from_str(
            r#"{"name":"x","range":{"[":{"kind":"semver","v":[1,0,0,0,0,0,0,0,0,0]},")":{"kind":"semver","v":[2,0,0,0,0,0,0,0,0,0]}},"extra":1}"#,
        )
        .unwrap();
        let r = v.range.unwrap();
        assert_eq!(r.lower.unwrap().v[0], 1);
        assert_eq!(r.upper.unwrap().v[0], 2);
    }
}
