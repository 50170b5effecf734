//! Building a claircore IndexReport from the packages a format yields.
//!
//! Every package gets one Environment that points either at a Distribution or at the language
//! Repository of its ecosystem: that link is how [`tocsin_model::inventory::installed_packages`]
//! knows a package's ecosystem, so it is made here, once, for all formats.
use std::collections::{HashMap, HashSet};

use tocsin_model::claircore::{Distribution, Environment, IndexReport, Package};
use tocsin_model::{ecosystem, Digest};

use crate::{ParseStats, Skipped};

/// Which ecosystem a package belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Target {
    /// An OS package of this distribution (its `id` is ignored).
    Os(Distribution),
    /// A language package of this OSV ecosystem (`Go`, `npm`, …).
    Language(&'static str),
}

/// One package as a format reads it.
#[derive(Clone, Debug)]
pub(crate) struct NewPackage {
    pub target: Target,
    pub name: String,
    pub version: String,
    pub arch: String,
    /// Source package name and version, when known.
    pub source: Option<(String, String)>,
    /// Where it was found (a file path inside the image, or the document location).
    pub package_db: String,
}

/// What makes two packages the same: scope (distribution id or ecosystem), name, version, arch,
/// source.
type DedupKey = (String, String, String, String, Option<(String, String)>);

/// Accumulates packages into a report with report-local ids "1", "2", ….
pub(crate) struct ReportBuilder {
    report: IndexReport,
    next_id: u64,
    distributions: HashMap<Distribution, String>,
    repositories: HashMap<&'static str, String>,
    sources: HashMap<(String, String), Package>,
    seen: HashSet<DedupKey>,
    introduced_in: String,
    stats: ParseStats,
}

impl ReportBuilder {
    pub(crate) fn new(digest: &Digest) -> Self {
        let report = IndexReport {
            manifest_hash: digest.to_string(),
            state: "IndexFinished".into(),
            success: true,
            ..Default::default()
        };
        ReportBuilder {
            report,
            next_id: 1,
            distributions: HashMap::new(),
            repositories: HashMap::new(),
            sources: HashMap::new(),
            seen: HashSet::new(),
            // claircore requires a digest here (the layer that introduced the package); with no
            // layers known, the manifest itself is the truthful answer and keeps Clair clients'
            // digest parsing happy.
            introduced_in: digest.to_string(),
            stats: ParseStats::default(),
        }
    }

    fn fresh_id(&mut self) -> String {
        let id = self.next_id.to_string();
        self.next_id += 1;
        id
    }

    /// Records an input item that yields no package, with the reason.
    pub(crate) fn skip(&mut self, at: impl Into<String>, reason: impl Into<String>) {
        self.stats.skipped.push(Skipped {
            at: at.into(),
            reason: reason.into(),
        });
    }

    /// Adds a package; an exact duplicate (same ecosystem, name, version, arch and source) is
    /// counted and dropped, since a second copy can neither add nor remove a match.
    pub(crate) fn add(&mut self, p: NewPackage) {
        let environment = match &p.target {
            Target::Os(d) => {
                let mut key = d.clone();
                key.id.clear();
                let id = match self.distributions.get(&key) {
                    Some(id) => id.clone(),
                    None => {
                        let id = self.fresh_id();
                        let mut dist = key.clone();
                        dist.id = id.clone();
                        self.report.distributions.insert(id.clone(), dist);
                        self.distributions.insert(key, id.clone());
                        id
                    }
                };
                Environment {
                    package_db: p.package_db.clone(),
                    introduced_in: self.introduced_in.clone(),
                    distribution_id: id,
                    repository_ids: None,
                }
            }
            Target::Language(eco) => {
                let id = match self.repositories.get(eco) {
                    Some(id) => id.clone(),
                    None => {
                        let id = self.fresh_id();
                        // Every ecosystem a format yields comes from ecosystem::LANGUAGES, so the
                        // repository always exists; a miss would be a bug in this crate.
                        if let Some(repo) = ecosystem::language_repository(eco, &id) {
                            self.report.repository.insert(id.clone(), repo);
                        }
                        self.repositories.insert(eco, id.clone());
                        id
                    }
                };
                Environment {
                    package_db: p.package_db.clone(),
                    introduced_in: self.introduced_in.clone(),
                    distribution_id: String::new(),
                    repository_ids: Some(vec![id]),
                }
            }
        };
        let scope = match &p.target {
            Target::Os(_) => environment.distribution_id.clone(),
            Target::Language(eco) => (*eco).to_string(),
        };
        let key = (
            scope,
            p.name.clone(),
            p.version.clone(),
            p.arch.clone(),
            p.source.clone(),
        );
        if !self.seen.insert(key) {
            self.stats.duplicates += 1;
            return;
        }
        let source = match p.source {
            Some((name, version)) => {
                let k = (name, version);
                let src = match self.sources.get(&k) {
                    Some(s) => s.clone(),
                    None => {
                        let s = Package {
                            id: self.fresh_id(),
                            name: k.0.clone(),
                            version: k.1.clone(),
                            kind: "source".into(),
                            arch: p.arch.clone(),
                            ..Default::default()
                        };
                        self.sources.insert(k, s.clone());
                        s
                    }
                };
                Some(Box::new(src))
            }
            None => None,
        };
        let id = self.fresh_id();
        self.report.packages.insert(
            id.clone(),
            Package {
                id: id.clone(),
                name: p.name,
                version: p.version,
                kind: "binary".into(),
                source,
                normalized_version: String::new(),
                module: String::new(),
                arch: p.arch,
                cpe: String::new(),
            },
        );
        self.report.environments.insert(id, vec![environment]);
        self.stats.packages += 1;
    }

    pub(crate) fn finish(self) -> (IndexReport, ParseStats) {
        (self.report, self.stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tocsin_model::inventory::installed_packages;

    fn digest() -> Digest {
        Digest::parse(&format!("sha256:{}", "a".repeat(64))).unwrap()
    }

    #[test]
    fn packages_link_to_one_shared_distribution_or_repository() {
        let mut b = ReportBuilder::new(&digest());
        let debian = crate::distro::known("debian", "12").unwrap();
        for (name, target) in [
            ("libc6", Target::Os(debian.clone())),
            ("bash", Target::Os(debian.clone())),
            ("serde", Target::Language("crates.io")),
            ("tokio", Target::Language("crates.io")),
            ("left-pad", Target::Language("npm")),
        ] {
            b.add(NewPackage {
                target,
                name: name.into(),
                version: "1".into(),
                arch: String::new(),
                source: (name == "libc6").then(|| ("glibc".to_string(), "2.36".to_string())),
                package_db: "x".into(),
            });
        }
        let (r, stats) = b.finish();
        assert_eq!(stats.packages, 5);
        assert_eq!(r.distributions.len(), 1);
        assert_eq!(r.repository.len(), 2);
        assert_eq!(r.manifest_hash, digest().to_string());
        let ecos: Vec<(String, String, Option<String>)> = installed_packages(&r)
            .into_iter()
            .map(|p| (p.ecosystem, p.name, p.source_name))
            .collect();
        assert_eq!(
            ecos,
            vec![
                ("Debian:12".into(), "bash".into(), None),
                ("Debian:12".into(), "libc6".into(), Some("glibc".into())),
                ("crates.io".into(), "serde".into(), None),
                ("crates.io".into(), "tokio".into(), None),
                ("npm".into(), "left-pad".into(), None),
            ]
        );
        // Ids are unique across distributions, repositories, sources and packages.
        let mut ids: Vec<&String> = r
            .packages
            .keys()
            .chain(r.distributions.keys())
            .chain(r.repository.keys())
            .collect();
        ids.extend(
            r.packages
                .values()
                .filter_map(|p| p.source.as_ref().map(|s| &s.id)),
        );
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n);
    }

    #[test]
    fn exact_duplicates_are_counted_once() {
        let mut b = ReportBuilder::new(&digest());
        let p = NewPackage {
            target: Target::Language("npm"),
            name: "ms".into(),
            version: "2.1.2".into(),
            arch: String::new(),
            source: None,
            package_db: "a".into(),
        };
        b.add(p.clone());
        b.add(p.clone());
        b.add(NewPackage {
            version: "2.1.3".into(),
            ..p
        });
        let (r, stats) = b.finish();
        assert_eq!((stats.packages, stats.duplicates), (2, 1));
        assert_eq!(r.packages.len(), 2);
    }
}
