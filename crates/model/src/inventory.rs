//! How tocsin holds a manifest's inventory.
//!
//! Every accepted format (IndexReport, CycloneDX, SPDX, dpkg status, Cargo.lock, pip list) is
//! converted into one claircore [`IndexReport`]: that is what vulnerability reports echo back, and
//! [`installed_packages`] is the single view of it that the matching engine reads.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::claircore::IndexReport;
use crate::{ecosystem, Digest};

/// The formats an inventory can arrive in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InventoryFormat {
    /// claircore IndexReport JSON.
    IndexReport,
    /// CycloneDX 1.2–1.6 JSON.
    Cyclonedx,
    /// SPDX 2.3 JSON.
    Spdx,
    /// A dpkg status file plus the distribution it belongs to.
    DpkgStatus,
    /// A Cargo.lock.
    CargoLock,
    /// A pip requirements / freeze list.
    Pip,
}

impl InventoryFormat {
    /// Every format, in the order content sniffing tries them.
    pub const ALL: [InventoryFormat; 6] = [
        InventoryFormat::IndexReport,
        InventoryFormat::Cyclonedx,
        InventoryFormat::Spdx,
        InventoryFormat::DpkgStatus,
        InventoryFormat::CargoLock,
        InventoryFormat::Pip,
    ];

    /// The name used in the CLI, the API and storage.
    pub fn as_str(self) -> &'static str {
        match self {
            InventoryFormat::IndexReport => "index-report",
            InventoryFormat::Cyclonedx => "cyclonedx",
            InventoryFormat::Spdx => "spdx",
            InventoryFormat::DpkgStatus => "dpkg-status",
            InventoryFormat::CargoLock => "cargo-lock",
            InventoryFormat::Pip => "pip",
        }
    }

    /// Parses a format name as [`as_str`](Self::as_str) writes it.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == s)
    }
}

/// A manifest as stored: its digest, labels, the format it came in, and its inventory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The manifest digest (the key).
    pub digest: Digest,
    /// Free-form labels (e.g. `image=quay.io/org/app:1.2`), used for filtering and display.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The format the inventory arrived in.
    pub format: InventoryFormat,
    /// The inventory, in claircore form; `manifest_hash` equals `digest`.
    pub report: IndexReport,
}

impl Manifest {
    /// A fingerprint of the content (format, labels and report), to make re-putting identical
    /// content a no-op.
    pub fn content_hash(&self) -> String {
        // serde_json of BTreeMaps and structs is deterministic, so this is a canonical encoding.
        let labels = serde_json::to_string(&self.labels).unwrap_or_default();
        let report = serde_json::to_string(&self.report).unwrap_or_default();
        content_hash_of(self.format.as_str(), &labels, &report)
    }
}

/// [`Manifest::content_hash`] from the already serialised labels and report: the SHA-256 of the
/// JSON array `[format, labels, report]`, so a store that has just encoded a manifest hashes those
/// bytes instead of encoding the report a second time.
pub fn content_hash_of(format: &str, labels_json: &str, report_json: &str) -> String {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    h.update(b"[\"");
    h.update(format.as_bytes());
    h.update(b"\",");
    h.update(labels_json.as_bytes());
    h.update(b",");
    h.update(report_json.as_bytes());
    h.update(b"]");
    hex::encode(h.finalize())
}

/// One installed package, as the matching engine sees it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstalledPackage {
    /// OSV ecosystem (`Debian:10`, `Go`, …).
    pub ecosystem: String,
    /// Binary (or language) package name.
    pub name: String,
    /// Source package name, when known and different from nothing.
    pub source_name: Option<String>,
    /// Installed version.
    pub version: String,
    /// Architecture, or "".
    pub arch: String,
    /// claircore normalized version (`kind:v0.v1…`), or "".
    pub normalized_version: String,
    /// The package's id within the report.
    pub package_id: String,
}

/// A borrowed view of an [`InstalledPackage`]'s matching fields, so the index can be fed from
/// stored bytes without allocating a string per field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackageRef<'a> {
    /// OSV ecosystem.
    pub ecosystem: &'a str,
    /// Binary (or language) package name.
    pub name: &'a str,
    /// Source package name, when known.
    pub source_name: Option<&'a str>,
    /// Installed version.
    pub version: &'a str,
    /// Architecture, or "".
    pub arch: &'a str,
    /// claircore normalized version, or "".
    pub normalized_version: &'a str,
}

impl InstalledPackage {
    /// The borrowed view of this package.
    pub fn as_ref(&self) -> PackageRef<'_> {
        PackageRef {
            ecosystem: &self.ecosystem,
            name: &self.name,
            source_name: self.source_name.as_deref(),
            version: &self.version,
            arch: &self.arch,
            normalized_version: &self.normalized_version,
        }
    }
}

/// The installed packages of a report that belong to a known ecosystem, found through each
/// package's environments (distribution first, then a language repository). Packages of unknown
/// ecosystems cannot match any advisory and are left out. The result is sorted and deduplicated.
pub fn installed_packages(report: &IndexReport) -> Vec<InstalledPackage> {
    let mut out = Vec::new();
    for (id, pkg) in &report.packages {
        if pkg.kind == "source" {
            // Source packages stand in reports only as parents of binaries.
            continue;
        }
        let mut ecosystems: Vec<String> = Vec::new();
        for env in report.environments.get(id).into_iter().flatten() {
            if let Some(d) = report.distributions.get(&env.distribution_id) {
                if let Some(e) = ecosystem::from_distribution(d) {
                    ecosystems.push(e);
                }
            }
            for rid in env.repository_ids.iter().flatten() {
                if let Some(e) = report
                    .repository
                    .get(rid)
                    .and_then(ecosystem::from_repository)
                {
                    ecosystems.push(e.to_string());
                }
            }
        }
        // A report with a single distribution and no environments still means that distribution.
        if ecosystems.is_empty() && report.distributions.len() == 1 {
            if let Some(e) = report
                .distributions
                .values()
                .next()
                .and_then(ecosystem::from_distribution)
            {
                ecosystems.push(e);
            }
        }
        ecosystems.sort();
        ecosystems.dedup();
        let source_name = pkg
            .source
            .as_ref()
            .map(|s| s.name.clone())
            .filter(|n| !n.is_empty() && *n != pkg.name);
        for eco in ecosystems {
            out.push(InstalledPackage {
                ecosystem: eco,
                name: pkg.name.clone(),
                source_name: source_name.clone(),
                version: pkg.version.clone(),
                arch: pkg.arch.clone(),
                normalized_version: pkg.normalized_version.clone(),
                package_id: id.clone(),
            });
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claircore::{Distribution, Environment, Package, Repository};

    #[test]
    fn the_content_hash_is_the_hash_of_the_format_labels_report_triple() {
        // Stores written before `content_hash_of` hashed serde_json's encoding of the tuple; the
        // two must agree or every re-put after an upgrade would count as a change.
        let mut report = IndexReport {
            manifest_hash: "sha256:00".into(),
            ..Default::default()
        };
        report.packages.insert(
            "1".into(),
            Package {
                id: "1".into(),
                name: "a\"b".into(),
                ..Default::default()
            },
        );
        for format in InventoryFormat::ALL {
            let m = Manifest {
                digest: Digest::sha256_of(b"x"),
                labels: [("image".to_string(), "q/é:1".to_string())].into(),
                format,
                report: report.clone(),
            };
            let old =
                crate::sha256_hex(&serde_json::to_vec(&(m.format, &m.labels, &m.report)).unwrap());
            assert_eq!(m.content_hash(), old, "{format:?}");
        }
    }

    #[test]
    fn packages_take_their_ecosystem_from_environments() {
        let mut r = IndexReport::default();
        r.distributions.insert(
            "1".into(),
            Distribution {
                id: "1".into(),
                did: "debian".into(),
                version_id: "10".into(),
                ..Default::default()
            },
        );
        r.repository.insert(
            "2".into(),
            Repository {
                id: "2".into(),
                name: "pypi".into(),
                ..Default::default()
            },
        );
        r.packages.insert(
            "10".into(),
            Package {
                id: "10".into(),
                name: "libssl1.1".into(),
                version: "1.1.1d-0+deb10u3".into(),
                kind: "binary".into(),
                source: Some(Box::new(Package {
                    name: "openssl".into(),
                    ..Default::default()
                })),
                ..Default::default()
            },
        );
        r.packages.insert(
            "11".into(),
            Package {
                id: "11".into(),
                name: "requests".into(),
                version: "2.0".into(),
                ..Default::default()
            },
        );
        r.environments.insert(
            "10".into(),
            vec![Environment {
                distribution_id: "1".into(),
                ..Default::default()
            }],
        );
        r.environments.insert(
            "11".into(),
            vec![Environment {
                repository_ids: Some(vec!["2".into()]),
                ..Default::default()
            }],
        );
        let p = installed_packages(&r);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].ecosystem, "Debian:10");
        assert_eq!(p[0].source_name.as_deref(), Some("openssl"));
        assert_eq!(p[1].ecosystem, "PyPI");
    }
}
