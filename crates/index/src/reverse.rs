//! The reverse direction: an inverted index from package key to versions to manifests.
use std::collections::{BTreeSet, HashMap};

use roaring::RoaringBitmap;
use tocsin_model::inventory::InstalledPackage;
use tocsin_model::vuln::Vulnerability;
use tocsin_versions::CompiledRule;

use crate::{package_keys, vuln_keys, Candidate};

/// One distinct installed version of a key, with the manifests that have it.
#[derive(Debug)]
struct Posting {
    version: Box<str>,
    normalized: Box<str>,
    arch: Box<str>,
    manifests: RoaringBitmap,
}

/// Size figures of a [`ManifestIndex`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IndexStats {
    /// Manifests indexed.
    pub manifests: u64,
    /// Distinct keys (ecosystem, name, slot).
    pub keys: u64,
    /// Distinct (key, version, arch) postings.
    pub postings: u64,
    /// (manifest, package) references: bits set across all postings.
    pub references: u64,
    /// Bytes held by the bitmaps (serialized size, a close proxy of their heap use).
    pub bitmap_bytes: u64,
}

/// key → distinct installed versions → manifests. See the crate doc.
#[derive(Debug, Default)]
pub struct ManifestIndex {
    keys: HashMap<Candidate, Vec<Posting>>,
    /// Every full ecosystem present, for expanding bare OS advisories.
    ecosystems: BTreeSet<String>,
    manifests: RoaringBitmap,
}

impl ManifestIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a manifest's packages. Adding the same manifest twice is harmless.
    pub fn add(&mut self, id: u32, packages: &[InstalledPackage]) {
        self.manifests.insert(id);
        for p in packages {
            self.ecosystems.insert(p.ecosystem.clone());
            for key in package_keys(p) {
                let postings = self.keys.entry(key).or_default();
                match postings.iter_mut().find(|x| {
                    *x.version == *p.version
                        && *x.arch == *p.arch
                        && *x.normalized == *p.normalized_version
                }) {
                    Some(x) => {
                        x.manifests.insert(id);
                    }
                    None => {
                        let mut manifests = RoaringBitmap::new();
                        manifests.insert(id);
                        postings.push(Posting {
                            version: p.version.as_str().into(),
                            normalized: p.normalized_version.as_str().into(),
                            arch: p.arch.as_str().into(),
                            manifests,
                        });
                    }
                }
            }
        }
    }

    /// Removes a manifest, given the packages it was added with.
    pub fn remove(&mut self, id: u32, packages: &[InstalledPackage]) {
        self.manifests.remove(id);
        for p in packages {
            for key in package_keys(p) {
                if let Some(postings) = self.keys.get_mut(&key) {
                    for x in postings.iter_mut() {
                        x.manifests.remove(id);
                    }
                    postings.retain(|x| !x.manifests.is_empty());
                    if postings.is_empty() {
                        self.keys.remove(&key);
                    }
                }
            }
        }
    }

    /// Whether a manifest is indexed.
    pub fn contains(&self, id: u32) -> bool {
        self.manifests.contains(id)
    }

    /// The manifests a vulnerability affects. `rule` must be compiled from `v`.
    pub fn affected(&self, v: &Vulnerability, rule: &CompiledRule) -> RoaringBitmap {
        let mut out = RoaringBitmap::new();
        for key in vuln_keys(v, self.ecosystems.iter().map(String::as_str)) {
            let Some(postings) = self.keys.get(&key) else {
                continue;
            };
            for x in postings {
                // A version already known to be wholly covered needs no evaluation.
                if x.manifests.is_subset(&out) {
                    continue;
                }
                if rule.matches(&x.version, &x.normalized, &x.arch) {
                    out |= &x.manifests;
                }
            }
        }
        out
    }

    /// Size figures.
    pub fn stats(&self) -> IndexStats {
        let mut s = IndexStats {
            manifests: self.manifests.len(),
            keys: self.keys.len() as u64,
            ..Default::default()
        };
        for postings in self.keys.values() {
            s.postings += postings.len() as u64;
            for x in postings {
                s.references += x.manifests.len();
                s.bitmap_bytes += x.manifests.serialized_size() as u64;
            }
        }
        s
    }
}
