//! The reverse direction: an inverted index from package key to versions to manifests.
//!
//! Postings live in one arena; each key lists its postings and each manifest lists the postings
//! it is in, so removing or replacing a manifest costs O(its packages) and needs nothing but its
//! id — which is what following the store's manifest change feed requires (a change made by
//! another process arrives as an id, after the old inventory is gone).
//!
//! Memory is what a fleet-scale index is about (BENCHMARKS.md), so:
//! - a key is one interned string (slot, ecosystem and name in one allocation), looked up by a
//!   scratch buffer, so indexing a package allocates nothing unless its key or version is new;
//! - a posting names its key by number;
//! - a manifest's posting list is its sorted posting ids as LEB128 deltas (neighbouring
//!   packages of one image tend to have close posting ids: about 1.5 bytes each instead of 4);
//! - the manifests of a posting are a roaring bitmap (about 2 bytes per member).
use std::collections::{BTreeSet, HashMap};

use roaring::{MultiOps, RoaringBitmap};
use tocsin_model::ecosystem;
use tocsin_model::inventory::{InstalledPackage, PackageRef};
use tocsin_model::vuln::Vulnerability;
use tocsin_versions::CompiledRule;

use crate::{vuln_slots, NameSlot};

/// One distinct installed version of a key, with the manifests that have it.
#[derive(Debug)]
struct Posting {
    key: u32,
    version: Box<str>,
    normalized: Box<str>,
    arch: Box<str>,
    manifests: RoaringBitmap,
}

#[derive(Debug)]
struct Key {
    name: Box<str>,
    postings: Vec<u32>,
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
    /// Bytes of the manifests' posting lists.
    pub posting_list_bytes: u64,
}

/// key → distinct installed versions → manifests. See the module doc.
#[derive(Debug, Default)]
pub struct ManifestIndex {
    key_ids: HashMap<Box<str>, u32>,
    keys: Vec<Option<Key>>,
    free_keys: Vec<u32>,
    postings: Vec<Option<Posting>>,
    free: Vec<u32>,
    by_manifest: HashMap<u32, Box<[u8]>>,
    /// Every full ecosystem seen, for expanding bare OS advisories (`Debian` → `Debian:10`).
    ecosystems: BTreeSet<String>,
}

/// The interned form of a key: injective (the ecosystem is length-prefixed).
fn key_string(buf: &mut String, slot: NameSlot, eco: &str, name: &str) {
    use std::fmt::Write as _;
    buf.clear();
    buf.push(match slot {
        NameSlot::Binary => 'b',
        NameSlot::Source => 's',
    });
    let _ = write!(buf, "{}:", eco.len());
    buf.push_str(eco);
    buf.push_str(name);
}

/// The keys a package is reachable under (see [`crate::package_keys`]): its binary name, and
/// for OS packages (or any with a recorded source) its source name.
fn ref_keys<'a>(p: &PackageRef<'a>) -> impl Iterator<Item = (NameSlot, &'a str)> {
    let source = (ecosystem::is_os_ecosystem(p.ecosystem) || p.source_name.is_some())
        .then(|| (NameSlot::Source, p.source_name.unwrap_or(p.name)));
    std::iter::once((NameSlot::Binary, p.name)).chain(source)
}

fn put_varint(out: &mut Vec<u8>, mut n: u32) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// The posting ids of an encoded posting list (written by this module only).
fn posting_ids(list: &[u8]) -> impl Iterator<Item = u32> + '_ {
    let mut pos = 0;
    let mut last = 0u32;
    std::iter::from_fn(move || {
        if pos >= list.len() {
            return None;
        }
        let mut n = 0u32;
        let mut shift = 0;
        while let Some(&b) = list.get(pos) {
            pos += 1;
            n |= u32::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
        }
        last = last.wrapping_add(n);
        Some(last)
    })
}

impl ManifestIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Indexes a manifest's packages, replacing whatever the manifest had before.
    pub fn add(&mut self, id: u32, packages: &[InstalledPackage]) {
        self.add_refs(id, packages.iter().map(InstalledPackage::as_ref));
    }

    /// [`add`](Self::add) from borrowed views (e.g. decoded in place from stored bytes).
    pub fn add_refs<'a>(&mut self, id: u32, packages: impl IntoIterator<Item = PackageRef<'a>>) {
        self.remove(id);
        let mut mine: Vec<u32> = Vec::new();
        let mut buf = String::new();
        for p in packages {
            if !self.ecosystems.contains(p.ecosystem) {
                self.ecosystems.insert(p.ecosystem.to_string());
            }
            for (slot, name) in ref_keys(&p) {
                key_string(&mut buf, slot, p.ecosystem, name);
                let pid = self.posting_for(&buf, &p);
                if let Some(Some(x)) = self.postings.get_mut(pid as usize) {
                    x.manifests.insert(id);
                }
                mine.push(pid);
            }
        }
        mine.sort_unstable();
        mine.dedup();
        let mut list = Vec::with_capacity(mine.len() * 2);
        let mut last = 0;
        for pid in mine {
            put_varint(&mut list, pid - last);
            last = pid;
        }
        self.by_manifest.insert(id, list.into_boxed_slice());
    }

    fn key_for(&mut self, key: &str) -> u32 {
        if let Some(k) = self.key_ids.get(key) {
            return *k;
        }
        let slot = Key {
            name: key.into(),
            postings: Vec::new(),
        };
        let k = match self.free_keys.pop() {
            Some(k) => {
                self.keys[k as usize] = Some(slot);
                k
            }
            None => {
                self.keys.push(Some(slot));
                (self.keys.len() - 1) as u32
            }
        };
        self.key_ids.insert(key.into(), k);
        k
    }

    fn posting_for(&mut self, key: &str, p: &PackageRef<'_>) -> u32 {
        let k = self.key_for(key);
        let existing = self.keys[k as usize].as_ref().and_then(|slot| {
            slot.postings.iter().copied().find(|pid| {
                matches!(self.postings.get(*pid as usize), Some(Some(x))
                    if *x.version == *p.version
                        && *x.arch == *p.arch
                        && *x.normalized == *p.normalized_version)
            })
        });
        if let Some(pid) = existing {
            return pid;
        }
        let posting = Posting {
            key: k,
            version: p.version.into(),
            normalized: p.normalized_version.into(),
            arch: p.arch.into(),
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
        if let Some(Some(slot)) = self.keys.get_mut(k as usize) {
            slot.postings.push(pid);
        }
        pid
    }

    /// Removes a manifest; returns whether it was indexed.
    pub fn remove(&mut self, id: u32) -> bool {
        let Some(mine) = self.by_manifest.remove(&id) else {
            return false;
        };
        for pid in posting_ids(&mine) {
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
            if !emptied {
                continue;
            }
            let Some(x) = slot.take() else { continue };
            self.free.push(pid);
            let k = x.key as usize;
            let key_emptied = match self.keys.get_mut(k) {
                Some(Some(key)) => {
                    key.postings.retain(|p| *p != pid);
                    key.postings.is_empty()
                }
                _ => false,
            };
            if key_emptied {
                if let Some(key) = self.keys[k].take() {
                    self.key_ids.remove(&key.name);
                    self.free_keys.push(x.key);
                }
            }
        }
        true
    }

    /// Whether a manifest is indexed.
    pub fn contains(&self, id: u32) -> bool {
        self.by_manifest.contains_key(&id)
    }

    /// The manifests a vulnerability affects. `rule` must be compiled from `v`.
    ///
    /// The rule is evaluated once per distinct installed version of the vulnerability's
    /// package; the bitmaps of the matching versions are united in one pass.
    pub fn affected(&self, v: &Vulnerability, rule: &CompiledRule) -> RoaringBitmap {
        let mut hits: Vec<&RoaringBitmap> = Vec::new();
        let mut buf = String::new();
        for eco in self
            .ecosystems
            .iter()
            .filter(|e| ecosystem::applies(&v.package.ecosystem, e))
        {
            for slot in vuln_slots(v.package.kind) {
                key_string(&mut buf, *slot, eco, &v.package.name);
                let Some(k) = self.key_ids.get(buf.as_str()) else {
                    continue;
                };
                let Some(Some(key)) = self.keys.get(*k as usize) else {
                    continue;
                };
                for x in key
                    .postings
                    .iter()
                    .filter_map(|pid| self.postings.get(*pid as usize)?.as_ref())
                {
                    if rule.matches(&x.version, &x.normalized, &x.arch) {
                        hits.push(&x.manifests);
                    }
                }
            }
        }
        match hits.len() {
            0 => RoaringBitmap::new(),
            1 => hits[0].clone(),
            _ => hits.union(),
        }
    }

    /// Size figures.
    pub fn stats(&self) -> IndexStats {
        let mut s = IndexStats {
            manifests: self.by_manifest.len() as u64,
            keys: self.key_ids.len() as u64,
            posting_list_bytes: self.by_manifest.values().map(|l| l.len() as u64).sum(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posting_lists_round_trip_through_deltas() {
        let ids = [0u32, 1, 127, 128, 300, 70_000, u32::MAX];
        let mut list = Vec::new();
        let mut last = 0;
        for i in ids {
            put_varint(&mut list, i - last);
            last = i;
        }
        assert_eq!(posting_ids(&list).collect::<Vec<_>>(), ids);
        assert_eq!(posting_ids(&[]).count(), 0);
    }

    #[test]
    fn keys_are_injective() {
        let (mut a, mut b) = (String::new(), String::new());
        key_string(&mut a, NameSlot::Binary, "Go", "1x");
        key_string(&mut b, NameSlot::Binary, "Go1", "x");
        assert_ne!(a, b);
        key_string(&mut b, NameSlot::Source, "Go", "1x");
        assert_ne!(a, b);
    }
}
