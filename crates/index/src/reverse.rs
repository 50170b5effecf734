//! The reverse direction: an inverted index from package key to versions to manifests.
//!
//! Postings live in one arena; each key lists its postings and each manifest lists the postings
//! it is in, so removing or replacing a manifest costs O(its packages) and needs nothing but its
//! id — which is what following the store's manifest change feed requires (a change made by
//! another process arrives as an id, after the old inventory is gone).
use std::collections::{BTreeSet, HashMap};

use roaring::RoaringBitmap;
use tocsin_model::inventory::InstalledPackage;
use tocsin_model::vuln::Vulnerability;
use tocsin_versions::CompiledRule;

use crate::{package_keys, vuln_keys, Candidate};

/// One distinct installed version of a key, with the manifests that have it.
#[derive(Debug)]
struct Posting {
    key: Candidate,
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
    /// (manifest, package key) references: bits set across all postings.
    pub references: u64,
    /// Bytes held by the bitmaps (serialized size, a close proxy of their heap use).
    pub bitmap_bytes: u64,
}

/// key → distinct installed versions → manifests. See the module doc.
#[derive(Debug, Default)]
pub struct ManifestIndex {
    keys: HashMap<Candidate, Vec<u32>>,
    postings: Vec<Option<Posting>>,
    free: Vec<u32>,
    by_manifest: HashMap<u32, Box<[u32]>>,
    /// Every full ecosystem seen, for expanding bare OS advisories (`Debian` → `Debian:10`).
    ecosystems: BTreeSet<String>,
}

impl ManifestIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Indexes a manifest's packages, replacing whatever the manifest had before.
    pub fn add(&mut self, id: u32, packages: &[InstalledPackage]) {
        self.remove(id);
        let mut mine: Vec<u32> = Vec::with_capacity(packages.len() * 2);
        for p in packages {
            self.ecosystems.insert(p.ecosystem.clone());
            for key in package_keys(p) {
                let pid = self.posting_for(key, p);
                if let Some(Some(x)) = self.postings.get_mut(pid as usize) {
                    x.manifests.insert(id);
                }
                mine.push(pid);
            }
        }
        mine.sort_unstable();
        mine.dedup();
        self.by_manifest.insert(id, mine.into_boxed_slice());
    }

    fn posting_for(&mut self, key: Candidate, p: &InstalledPackage) -> u32 {
        let list = self.keys.entry(key.clone()).or_default();
        for &pid in list.iter() {
            if let Some(Some(x)) = self.postings.get(pid as usize) {
                if *x.version == *p.version
                    && *x.arch == *p.arch
                    && *x.normalized == *p.normalized_version
                {
                    return pid;
                }
            }
        }
        let posting = Posting {
            key,
            version: p.version.as_str().into(),
            normalized: p.normalized_version.as_str().into(),
            arch: p.arch.as_str().into(),
            manifests: RoaringBitmap::new(),
        };
        let pid = match self.free.pop() {
            Some(pid) => {
                self.postings[pid as usize] = Some(posting);
                pid
            }
            None => {
                self.postings.push(Some(posting));
                (self.postings.len() - 1) as u32
            }
        };
        list.push(pid);
        pid
    }

    /// Removes a manifest; returns whether it was indexed.
    pub fn remove(&mut self, id: u32) -> bool {
        let Some(mine) = self.by_manifest.remove(&id) else {
            return false;
        };
        for pid in mine.iter().copied() {
            let Some(slot) = self.postings.get_mut(pid as usize) else {
                continue;
            };
            let emptied = match slot {
                Some(x) => {
                    x.manifests.remove(id);
                    x.manifests.is_empty()
                }
                None => false,
            };
            if emptied {
                if let Some(x) = slot.take() {
                    if let Some(list) = self.keys.get_mut(&x.key) {
                        list.retain(|p| *p != pid);
                        if list.is_empty() {
                            self.keys.remove(&x.key);
                        }
                    }
                }
                self.free.push(pid);
            }
        }
        true
    }

    /// Whether a manifest is indexed.
    pub fn contains(&self, id: u32) -> bool {
        self.by_manifest.contains_key(&id)
    }

    /// The manifests a vulnerability affects. `rule` must be compiled from `v`.
    pub fn affected(&self, v: &Vulnerability, rule: &CompiledRule) -> RoaringBitmap {
        let mut out = RoaringBitmap::new();
        for key in vuln_keys(v, self.ecosystems.iter().map(String::as_str)) {
            let Some(list) = self.keys.get(&key) else {
                continue;
            };
            for x in list
                .iter()
                .filter_map(|pid| self.postings.get(*pid as usize)?.as_ref())
            {
                // A version whose manifests are all in already needs no evaluation.
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
            manifests: self.by_manifest.len() as u64,
            keys: self.keys.len() as u64,
            ..Default::default()
        };
        for x in self.postings.iter().flatten() {
            s.postings += 1;
            s.references += x.manifests.len();
            s.bitmap_bytes += x.manifests.serialized_size() as u64;
        }
        s
    }
}
