//! The synthetic fleet: N manifests built from the real inventories in `shared/data`,
//! deterministic from a seed.
//!
//! Each manifest is a claircore IndexReport, made the way real registries look:
//!
//! - **A base**, picked by weight: an OS image (five real Debian package sets — two buster
//!   IndexReports from claircore, a Debian 12 build machine's dpkg status and two smaller dpkg
//!   fixtures — presented as Debian 9, 10, 11 or 12; the real RHEL 8 report; an AlmaLinux 9
//!   package set), or a language-only image (the real npm, Maven, Composer, Go, Cargo and pip
//!   inventories). Half of the OS images also carry one language layer, as application images
//!   built on a distribution do.
//! - **A sample of its packages**: each kept with a probability drawn per manifest between 0.6
//!   and 1, so no two images of one base are alike.
//! - **Versions along real histories**: about a third of the kept packages take a version seen
//!   for that package (its source package, for dpkg) in the advisories — an introduced, fixed or
//!   last-affected version, or one listed as affected — of the manifest's own release where the
//!   feed is per release. Images therefore sit at every point of a package's history, below and
//!   above each fix, which is what makes a fleet's reverse matching non-trivial.
//!
//! There is no real AlmaLinux inventory in the data, so the AlmaLinux 9 base is made from the
//! feed itself: each image installs a few hundred of the package names the AlmaLinux errata
//! name, each at a version from its errata history.
//!
//! Manifest `i` depends only on the seed, `i` and the data: its own ChaCha8 stream is seeded from
//! both, so any manifest can be made alone, in any order, by any process, and a run with the same
//! seed rebuilds the same fleet.
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{bail, Context, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tocsin_model::claircore::{Distribution, Environment, IndexReport, Package, Repository};
use tocsin_model::inventory::{installed_packages, InstalledPackage, InventoryFormat, Manifest};
use tocsin_model::vuln::{Addressed, Affected, Event, Vulnerability};
use tocsin_model::Digest;

/// A package of a base, with where it was found.
#[derive(Clone, Debug)]
struct Item {
    package: Package,
    package_db: String,
    /// The language repository it belongs to (none for OS packages).
    repository: Option<Repository>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Os {
    Debian,
    Rhel,
    AlmaLinux,
}

#[derive(Clone, Debug)]
struct Base {
    name: String,
    weight: u32,
    os: Option<Os>,
    items: Vec<Item>,
}

/// Debian releases an image of a Debian base is presented as, with weights.
const DEBIAN_RELEASES: &[(&str, &str, u32)] = &[
    ("9", "stretch", 10),
    ("10", "buster", 40),
    ("11", "bullseye", 35),
    ("12", "bookworm", 15),
];

/// Packages an AlmaLinux image installs, about.
const ALMA_PACKAGES: f64 = 300.0;

/// The real inventories and advisory version histories the fleet is made from.
pub struct Catalog {
    os: Vec<Base>,
    languages: Vec<Base>,
    /// (ecosystem, package name) → versions the advisories mention, sorted. The ecosystem is
    /// the full one (`Debian:11`, `AlmaLinux:9`, `Go`, `crates.io`, `PyPI`).
    history: BTreeMap<(String, String), Vec<String>>,
    alma_names: Vec<String>,
    seed: u64,
}

fn parse(
    data: &Path,
    rel: &str,
    format: InventoryFormat,
    distribution: Option<&str>,
) -> Result<Manifest> {
    let path = data.join("inventories").join(rel);
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let digest = (format != InventoryFormat::IndexReport).then(|| Digest::sha256_of(&bytes));
    tocsin_inventory::parse(tocsin_inventory::Input {
        bytes: &bytes,
        format: Some(format),
        digest,
        distribution,
        ..Default::default()
    })
    .with_context(|| format!("parsing {}", path.display()))
}

/// The binary packages of a report with their package database and language repository.
fn items(report: &IndexReport) -> Vec<Item> {
    let mut out = Vec::new();
    for (id, p) in &report.packages {
        if p.kind == "source" {
            continue;
        }
        let env = report.environments.get(id).and_then(|e| e.first());
        let repository = env
            .and_then(|e| e.repository_ids.as_ref())
            .and_then(|ids| ids.first())
            .and_then(|rid| report.repository.get(rid))
            .filter(|r| tocsin_model::ecosystem::from_repository(r).is_some())
            .cloned();
        out.push(Item {
            package: p.clone(),
            package_db: env.map(|e| e.package_db.clone()).unwrap_or_default(),
            repository,
        });
    }
    out
}

/// Versions an advisory mentions for its package.
fn mentioned(v: &Vulnerability) -> Vec<String> {
    let mut out = Vec::new();
    match &v.affected {
        Affected::Osv { ranges, versions } => {
            for r in ranges {
                for e in &r.events {
                    match e {
                        Event::Introduced(x) | Event::Fixed(x) | Event::LastAffected(x)
                            if x != "0" =>
                        {
                            out.push(x.clone())
                        }
                        _ => {}
                    }
                }
            }
            out.extend(versions.iter().cloned());
        }
        Affected::Claircore {
            fixed_in_version, ..
        } => {
            if !fixed_in_version.is_empty() && !fixed_in_version.contains('=') {
                out.push(fixed_in_version.clone());
            }
        }
    }
    out
}

impl Catalog {
    /// Reads the bases from `data/inventories` and the histories from `vulns` (the advisories of
    /// every feed the fleet will be matched against).
    pub fn new(data: &Path, vulns: &[Addressed], seed: u64) -> Result<Catalog> {
        let mut history: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
        let mut alma: BTreeSet<String> = BTreeSet::new();
        for v in vulns {
            let eco = v.package.ecosystem.clone();
            if eco.starts_with("AlmaLinux") {
                alma.insert(v.package.name.clone());
            }
            let slot = history.entry((eco, v.package.name.clone())).or_default();
            slot.extend(mentioned(v));
        }
        let history: BTreeMap<(String, String), Vec<String>> = history
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k, v.into_iter().collect()))
            .collect();

        use InventoryFormat::*;
        let os_base = |name: &str, weight, os, m: Manifest| Base {
            name: name.to_string(),
            weight,
            os: Some(os),
            items: items(&m.report),
        };
        let lang = |name: &str, weight, m: Manifest| Base {
            name: name.to_string(),
            weight,
            os: None,
            items: items(&m.report)
                .into_iter()
                .filter(|i| i.repository.is_some())
                .collect(),
        };
        let os = vec![
            os_base(
                "debian-slim",
                12,
                Os::Debian,
                parse(
                    data,
                    "clair/docker.io-library-debian-10.index.json",
                    IndexReport,
                    None,
                )?,
            ),
            os_base(
                "debian-jdk",
                10,
                Os::Debian,
                parse(
                    data,
                    "clair/indexreport-buster-jackson-databind.json",
                    IndexReport,
                    None,
                )?,
            ),
            os_base(
                "debian-build",
                10,
                Os::Debian,
                parse(
                    data,
                    "dpkg/debian12-rust-toolchain.status",
                    DpkgStatus,
                    Some("debian:12"),
                )?,
            ),
            os_base(
                "debian-postgres",
                6,
                Os::Debian,
                parse(
                    data,
                    "dpkg/postgresql.status",
                    DpkgStatus,
                    Some("debian:10"),
                )?,
            ),
            os_base(
                "debian-minimal",
                4,
                Os::Debian,
                parse(
                    data,
                    "dpkg/debian-only.status",
                    DpkgStatus,
                    Some("debian:10"),
                )?,
            ),
            os_base(
                "rhel8",
                4,
                Os::Rhel,
                parse(
                    data,
                    "clair/clair-rhel8-v3.5.5-4-indexreport.json",
                    IndexReport,
                    None,
                )?,
            ),
            Base {
                name: "almalinux9".into(),
                weight: 14,
                os: Some(Os::AlmaLinux),
                items: Vec::new(),
            },
        ];
        let languages = vec![
            lang(
                "npm-juice-shop",
                8,
                parse(
                    data,
                    "cyclonedx/SBOM_juice-shop_v11.1.2_bom.json",
                    Cyclonedx,
                    None,
                )?,
            ),
            lang(
                "maven-dropwizard",
                6,
                parse(
                    data,
                    "cyclonedx/SBOM_dropwizard-1.3.15_bom.json",
                    Cyclonedx,
                    None,
                )?,
            ),
            lang(
                "composer-laravel",
                3,
                parse(
                    data,
                    "cyclonedx/SBOM_laravel-7.12.0_bom.1.4.json",
                    Cyclonedx,
                    None,
                )?,
            ),
            lang(
                "go-proton-1.6.3",
                6,
                parse(
                    data,
                    "cyclonedx/SBOM_proton-bridge_proton-bridge-v1.6.3.bom.json",
                    Cyclonedx,
                    None,
                )?,
            ),
            lang(
                "go-proton-1.8.0",
                6,
                parse(
                    data,
                    "cyclonedx/SBOM_proton-bridge_proton-bridge-v1.8.0.bom.json",
                    Cyclonedx,
                    None,
                )?,
            ),
            lang(
                "cargo-tansu",
                5,
                parse(data, "cargo/tansu.Cargo.lock", CargoLock, None)?,
            ),
            lang(
                "cargo-rdkafka",
                5,
                parse(data, "cargo/rust-rdkafka.Cargo.lock", CargoLock, None)?,
            ),
            lang(
                "pip-python311",
                7,
                parse(
                    data,
                    "pip/python311-site-packages.requirements.txt",
                    Pip,
                    None,
                )?,
            ),
        ];
        for b in os.iter().chain(&languages) {
            if b.items.is_empty() && b.os != Some(Os::AlmaLinux) {
                bail!("base {} has no packages", b.name);
            }
        }
        if alma.is_empty() {
            bail!("the advisories name no AlmaLinux package: the AlmaLinux base needs them");
        }
        Ok(Catalog {
            os,
            languages,
            history,
            alma_names: alma.into_iter().collect(),
            seed,
        })
    }

    /// The names of the bases, for reports.
    pub fn bases(&self) -> Vec<String> {
        self.os
            .iter()
            .chain(&self.languages)
            .map(|b| b.name.clone())
            .collect()
    }

    /// Manifest `i`'s digest.
    pub fn digest(&self, i: u64) -> Digest {
        Digest::sha256_of(format!("tocsin-fleet:{}:{i}", self.seed).as_bytes())
    }

    fn rng(&self, i: u64) -> ChaCha8Rng {
        // SplitMix64 of (seed, i): neighbouring indexes get unrelated streams.
        let mut z = self
            .seed
            .wrapping_add(i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ChaCha8Rng::seed_from_u64(z ^ (z >> 31))
    }

    /// Manifest `i` of the fleet.
    pub fn manifest(&self, i: u64) -> Manifest {
        let mut rng = self.rng(i);
        let digest = self.digest(i);
        let mut b = Builder::new(&digest);
        // 70 % OS images, half of them with a language layer; 30 % language-only.
        if rng.gen_bool(0.7) {
            let base = pick(&self.os, &mut rng);
            self.os_layer(base, &mut b, &mut rng);
            if rng.gen_bool(0.5) {
                let l = pick(&self.languages, &mut rng);
                self.language_layer(l, &mut b, &mut rng);
            }
        } else {
            let l = pick(&self.languages, &mut rng);
            self.language_layer(l, &mut b, &mut rng);
        }
        Manifest {
            digest,
            labels: BTreeMap::new(),
            format: InventoryFormat::IndexReport,
            report: b.finish(),
        }
    }

    /// Manifest `i`'s installed packages, as the index sees them.
    pub fn packages(&self, i: u64) -> Vec<InstalledPackage> {
        installed_packages(&self.manifest(i).report)
    }

    fn vary(&self, eco: &str, name: &str, rng: &mut ChaCha8Rng) -> Option<String> {
        let h = self.history.get(&(eco.to_string(), name.to_string()))?;
        Some(h[rng.gen_range(0..h.len())].clone())
    }

    fn os_layer(&self, base: &Base, b: &mut Builder, rng: &mut ChaCha8Rng) {
        let keep = rng.gen_range(0.6..1.0);
        match base.os {
            Some(Os::Debian) => {
                let total: u32 = DEBIAN_RELEASES.iter().map(|r| r.2).sum();
                let mut roll = rng.gen_range(0..total);
                let (version, codename) = DEBIAN_RELEASES
                    .iter()
                    .find(|r| {
                        let hit = roll < r.2;
                        roll = roll.saturating_sub(r.2);
                        hit
                    })
                    .map_or(("10", "buster"), |r| (r.0, r.1));
                let distro = b.distribution(Distribution {
                    did: "debian".into(),
                    name: "Debian GNU/Linux".into(),
                    version: format!("{version} ({codename})"),
                    version_code_name: codename.into(),
                    version_id: version.into(),
                    pretty_name: format!("Debian GNU/Linux {version} ({codename})"),
                    ..Default::default()
                });
                let eco = format!("Debian:{version}");
                for item in &base.items {
                    if !rng.gen_bool(keep) {
                        continue;
                    }
                    let mut p = item.package.clone();
                    if rng.gen_bool(0.35) {
                        // Debian advisories name source packages.
                        let source = p
                            .source
                            .as_ref()
                            .map(|s| s.name.clone())
                            .filter(|n| !n.is_empty())
                            .unwrap_or_else(|| p.name.clone());
                        if let Some(v) = self.vary(&eco, &source, rng) {
                            p.version = v.clone();
                            if let Some(s) = p.source.as_mut().filter(|s| !s.name.is_empty()) {
                                s.version = v;
                            }
                        }
                    }
                    b.os_package(p, &item.package_db, &distro);
                }
            }
            Some(Os::Rhel) => {
                let distro = b.distribution(Distribution {
                    did: "rhel".into(),
                    name: "Red Hat Enterprise Linux".into(),
                    version: "8".into(),
                    version_id: "8".into(),
                    pretty_name: "Red Hat Enterprise Linux 8".into(),
                    ..Default::default()
                });
                for item in &base.items {
                    b.os_package(item.package.clone(), &item.package_db, &distro);
                }
            }
            Some(Os::AlmaLinux) => {
                let distro = b.distribution(Distribution {
                    did: "almalinux".into(),
                    name: "AlmaLinux".into(),
                    version: "9.4 (Seafoam Ocelot)".into(),
                    version_id: "9.4".into(),
                    pretty_name: "AlmaLinux 9.4 (Seafoam Ocelot)".into(),
                    ..Default::default()
                });
                let p_install = (ALMA_PACKAGES / self.alma_names.len() as f64).min(1.0) * keep;
                for name in &self.alma_names {
                    if !rng.gen_bool(p_install) {
                        continue;
                    }
                    let Some(version) = self.vary("AlmaLinux:9", name, rng) else {
                        continue;
                    };
                    let arch = if rng.gen_bool(0.9) {
                        "x86_64"
                    } else {
                        "noarch"
                    };
                    b.os_package(
                        Package {
                            name: name.clone(),
                            version,
                            kind: "binary".into(),
                            arch: arch.into(),
                            ..Default::default()
                        },
                        "var/lib/rpm",
                        &distro,
                    );
                }
            }
            None => {}
        }
    }

    fn language_layer(&self, base: &Base, b: &mut Builder, rng: &mut ChaCha8Rng) {
        let keep = rng.gen_range(0.6..1.0);
        for item in &base.items {
            let Some(repo) = &item.repository else {
                continue;
            };
            if !rng.gen_bool(keep) {
                continue;
            }
            let mut p = item.package.clone();
            let eco = tocsin_model::ecosystem::from_repository(repo).unwrap_or_default();
            if rng.gen_bool(0.35) {
                if let Some(v) = self.vary(eco, &p.name, rng) {
                    // Go modules are installed as `v1.2.3`; OSV strips the `v`.
                    p.version = match eco {
                        "Go" if !v.starts_with('v') => format!("v{v}"),
                        _ => v,
                    };
                }
            }
            b.language_package(p, &item.package_db, repo);
        }
    }
}

fn pick<'a>(bases: &'a [Base], rng: &mut ChaCha8Rng) -> &'a Base {
    let total: u32 = bases.iter().map(|b| b.weight).sum();
    let mut roll = rng.gen_range(0..total);
    for b in bases {
        if roll < b.weight {
            return b;
        }
        roll -= b.weight;
    }
    &bases[0]
}

/// Assembles one IndexReport with fresh report-local ids.
struct Builder {
    report: IndexReport,
    layer: String,
    next: u64,
    repositories: BTreeMap<String, String>,
}

impl Builder {
    fn new(digest: &Digest) -> Self {
        Builder {
            report: IndexReport {
                manifest_hash: digest.to_string(),
                state: "IndexFinished".into(),
                success: true,
                ..Default::default()
            },
            layer: digest.to_string(),
            next: 1,
            repositories: BTreeMap::new(),
        }
    }

    fn id(&mut self) -> String {
        let id = self.next.to_string();
        self.next += 1;
        id
    }

    fn distribution(&mut self, mut d: Distribution) -> String {
        let id = self.id();
        d.id = id.clone();
        self.report.distributions.insert(id.clone(), d);
        id
    }

    fn add(&mut self, mut p: Package, env: Environment) {
        let id = self.id();
        p.id = id.clone();
        if let Some(s) = p.source.as_mut() {
            s.id = self.id();
        }
        self.report.packages.insert(id.clone(), p);
        self.report.environments.insert(id, vec![env]);
    }

    fn os_package(&mut self, p: Package, db: &str, distro: &str) {
        let env = Environment {
            package_db: db.to_string(),
            introduced_in: self.layer.clone(),
            distribution_id: distro.to_string(),
            repository_ids: None,
        };
        self.add(p, env);
    }

    fn language_package(&mut self, p: Package, db: &str, repo: &Repository) {
        let rid = match self.repositories.get(&repo.name) {
            Some(id) => id.clone(),
            None => {
                let id = self.id();
                let mut r = repo.clone();
                r.id = id.clone();
                self.report.repository.insert(id.clone(), r);
                self.repositories.insert(repo.name.clone(), id.clone());
                id
            }
        };
        let env = Environment {
            package_db: db.to_string(),
            introduced_in: self.layer.clone(),
            distribution_id: String::new(),
            repository_ids: Some(vec![rid]),
        };
        self.add(p, env);
    }

    fn finish(self) -> IndexReport {
        self.report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog(seed: u64) -> Option<Catalog> {
        let data = tocsin_testdata::dir()?;
        let mut vulns = Vec::new();
        for feed in ["debian", "almalinux9", "crates.io", "go", "pypi"] {
            let s = tocsin_feeds::read_path(feed, &data.join("osv").join(feed), &|_| {}).unwrap();
            vulns.extend(s.vulnerabilities);
        }
        Some(Catalog::new(&data, &vulns, seed).unwrap())
    }

    #[test]
    fn the_fleet_is_deterministic_varied_and_valid() {
        let Some(c) = catalog(7) else { return };
        let again = catalog(7).unwrap();
        let other = catalog(8).unwrap();
        let mut ecosystems = BTreeSet::new();
        let mut sizes = Vec::new();
        for i in 0..300 {
            let m = c.manifest(i);
            assert_eq!(m, again.manifest(i), "manifest {i} differs between runs");
            assert_ne!(m.digest, other.manifest(i).digest);
            // What we generate is what the inventory parser accepts, unchanged.
            let json = serde_json::to_vec(&m.report).unwrap();
            let parsed = tocsin_inventory::parse(tocsin_inventory::Input {
                bytes: &json,
                format: Some(InventoryFormat::IndexReport),
                ..Default::default()
            })
            .unwrap();
            assert_eq!(parsed, m, "manifest {i}");
            let pk = installed_packages(&m.report);
            ecosystems.extend(pk.iter().map(|p| p.ecosystem.clone()));
            sizes.push(pk.len());
        }
        for want in [
            "Debian:9",
            "Debian:10",
            "Debian:11",
            "AlmaLinux:9",
            "Go",
            "crates.io",
            "PyPI",
            "npm",
        ] {
            assert!(
                ecosystems.contains(want),
                "{want} missing from {ecosystems:?}"
            );
        }
        sizes.sort();
        assert!(
            sizes[sizes.len() / 2] > 50,
            "median size {}",
            sizes[sizes.len() / 2]
        );
        assert!(sizes[0] != sizes[sizes.len() - 1]);
    }
}
