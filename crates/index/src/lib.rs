//! tocsin's matching engine, used in both directions.
//!
//! *Forward* ("which vulnerabilities affect this manifest", for vulnerability reports) and
//! *reverse* ("which manifests does this vulnerability affect", for notifications) must agree,
//! so both are built on one definition of a match, [`Candidate`] keys plus the version rule:
//!
//! - a package is reachable under [`package_keys`]: its ecosystem with its binary name, and its
//!   ecosystem with its source name (the binary name when no source is recorded, as dpkg does);
//! - a vulnerability looks under [`vuln_keys`]: its package name as binary, source or both
//!   (per [`NameKind`]), in its ecosystem — a bare OS ecosystem (`Debian`) in every release;
//! - a key hit matches when the vulnerability's compiled version rule accepts the package's
//!   version (and architecture).
//!
//! The reverse direction never scans manifests: [`ManifestIndex`] is an inverted index
//! key → distinct installed version → roaring bitmap of manifest ids, so one vulnerability costs
//! one rule evaluation per *distinct version* of its package across the fleet, and the result is
//! a bitmap union. Memory per (manifest, package) reference is a bit or two in a bitmap.
#![deny(missing_docs)]

mod forward;
mod reverse;

pub use forward::{VulnEntry, VulnIndex};
pub use reverse::{IndexStats, ManifestIndex};

use tocsin_model::ecosystem;
use tocsin_model::inventory::InstalledPackage;
use tocsin_model::vuln::{NameKind, Vulnerability};

/// Which of a package's names a key is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NameSlot {
    /// The binary (or language) package name.
    Binary,
    /// The source package name.
    Source,
}

/// An index key: ecosystem, name, and which name it is.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Candidate {
    /// Full ecosystem (`Debian:10`, `Go`).
    pub ecosystem: String,
    /// The name.
    pub name: String,
    /// Binary or source.
    pub slot: NameSlot,
}

/// The keys an installed package is reachable under: its binary name, and for OS packages its
/// source name (the binary name when none is recorded, as dpkg omits `Source:` when they are
/// equal). Language packages have no source packages, so they get no source key.
pub fn package_keys(p: &InstalledPackage) -> Vec<Candidate> {
    let mut keys = vec![Candidate {
        ecosystem: p.ecosystem.clone(),
        name: p.name.clone(),
        slot: NameSlot::Binary,
    }];
    if ecosystem::is_os_ecosystem(&p.ecosystem) || p.source_name.is_some() {
        keys.push(Candidate {
            ecosystem: p.ecosystem.clone(),
            name: p.source_name.clone().unwrap_or_else(|| p.name.clone()),
            slot: NameSlot::Source,
        });
    }
    keys
}

/// The name slots a vulnerability's package name may occupy.
pub fn vuln_slots(kind: NameKind) -> &'static [NameSlot] {
    match kind {
        NameKind::Binary => &[NameSlot::Binary],
        NameKind::Source => &[NameSlot::Source],
        NameKind::Any => &[NameSlot::Binary, NameSlot::Source],
    }
}

/// The keys a vulnerability looks under, given the ecosystems present (a bare OS ecosystem
/// expands to every release of it that is present).
pub fn vuln_keys<'a>(
    v: &'a Vulnerability,
    present_ecosystems: impl IntoIterator<Item = &'a str>,
) -> Vec<Candidate> {
    let ecosystems: Vec<&str> = present_ecosystems
        .into_iter()
        .filter(|e| ecosystem::applies(&v.package.ecosystem, e))
        .collect();
    let mut keys = Vec::new();
    for eco in ecosystems {
        for slot in vuln_slots(v.package.kind) {
            keys.push(Candidate {
                ecosystem: eco.to_string(),
                name: v.package.name.clone(),
                slot: *slot,
            });
        }
    }
    keys
}

/// The one match predicate, stated directly (used by tests to prove both indexes agree with it).
pub fn affects(v: &Vulnerability, p: &InstalledPackage) -> bool {
    if !ecosystem::applies(&v.package.ecosystem, &p.ecosystem) {
        return false;
    }
    let keys = package_keys(p);
    let name_hit = vuln_slots(v.package.kind).iter().any(|slot| {
        keys.iter()
            .any(|k| k.slot == *slot && k.name == v.package.name)
    });
    name_hit
        && tocsin_versions::affected(
            &v.affected,
            &p.ecosystem,
            &p.version,
            &p.normalized_version,
            &p.arch,
        )
}
