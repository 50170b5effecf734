//! The forward direction: vulnerabilities by key, for vulnerability reports.
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tocsin_model::inventory::InstalledPackage;
use tocsin_model::vuln::{Addressed, VulnId, Vulnerability};
use tocsin_versions::CompiledRule;

use crate::{package_keys, vuln_slots, Candidate};

/// A vulnerability ready for matching.
#[derive(Debug)]
pub struct VulnEntry {
    /// Content address.
    pub id: VulnId,
    /// The record.
    pub vuln: Vulnerability,
    /// Its compiled rule.
    pub rule: CompiledRule,
}

impl VulnEntry {
    /// Compiles a vulnerability's rule.
    pub fn new(id: VulnId, vuln: Vulnerability) -> Self {
        let rule = CompiledRule::new(&vuln.affected, &vuln.package.ecosystem);
        VulnEntry { id, vuln, rule }
    }
}

/// The current vulnerabilities of every updater, by key. Bare OS ecosystems (`Debian`) are
/// filed under the bare name and found through the package's ecosystem base.
#[derive(Debug, Default)]
pub struct VulnIndex {
    by_updater: HashMap<String, Vec<Arc<VulnEntry>>>,
    by_key: HashMap<Candidate, Vec<Arc<VulnEntry>>>,
}

impl VulnIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces one updater's vulnerabilities.
    pub fn set_updater(&mut self, updater: &str, entries: Vec<VulnEntry>) {
        let old = self.by_updater.remove(updater).unwrap_or_default();
        self.install(updater, old, entries.into_iter().map(Arc::new).collect());
    }

    /// Replaces one updater's vulnerabilities with a snapshot, keeping the entries it already
    /// holds under the same ids: [`build_entries`](Self::build_entries) then
    /// [`install_entries`](Self::install_entries).
    pub fn replace_updater(&mut self, updater: &str, snapshot: &[Addressed]) {
        let entries = self.build_entries(updater, snapshot);
        self.install_entries(updater, entries);
    }

    /// The entries for a snapshot of `updater`: those already held under the same ids, new ones
    /// for the rest. Consecutive snapshots share almost every record, so only the changed ones
    /// are cloned and compiled. Needs only shared access, so a caller can build under a read lock
    /// and keep reports flowing while a first import compiles thousands of rules.
    pub fn build_entries(&self, updater: &str, snapshot: &[Addressed]) -> Vec<Arc<VulnEntry>> {
        let held: HashMap<&VulnId, &Arc<VulnEntry>> = self
            .by_updater
            .get(updater)
            .into_iter()
            .flatten()
            .map(|e| (&e.id, e))
            .collect();
        // A record listed twice is one entry, as it is one membership in the store.
        let mut seen: HashSet<&VulnId> = HashSet::with_capacity(snapshot.len());
        snapshot
            .iter()
            .filter(|v| seen.insert(v.id()))
            .map(|v| match held.get(v.id()) {
                Some(e) => Arc::clone(e),
                None => Arc::new(VulnEntry::new(v.id().clone(), v.vuln().clone())),
            })
            .collect()
    }

    /// Makes `entries` (from [`build_entries`](Self::build_entries), possibly on an older state
    /// of the index) the updater's vulnerabilities. Entries it already holds stay filed where they
    /// are; only the others are filed and only the dropped ones unfiled.
    pub fn install_entries(&mut self, updater: &str, entries: Vec<Arc<VulnEntry>>) {
        let old = self.by_updater.remove(updater).unwrap_or_default();
        self.install(updater, old, entries);
    }

    /// Files `entries` as the updater's, unfiling those of `old` that are not among them.
    /// Entries present in both (the same `Arc`) stay where they are.
    fn install(&mut self, updater: &str, old: Vec<Arc<VulnEntry>>, entries: Vec<Arc<VulnEntry>>) {
        let kept: HashSet<*const VulnEntry> = entries.iter().map(Arc::as_ptr).collect();
        let was: HashSet<*const VulnEntry> = old.iter().map(Arc::as_ptr).collect();
        let gone: Vec<&Arc<VulnEntry>> = old
            .iter()
            .filter(|e| !kept.contains(&Arc::as_ptr(e)))
            .collect();
        if !gone.is_empty() {
            // One pass per touched key: a retain per removed entry is quadratic in the entries
            // sharing a key, and a kernel package's key holds thousands.
            let gone_ptrs: HashSet<*const VulnEntry> =
                gone.iter().map(|e| Arc::as_ptr(e)).collect();
            let keys: HashSet<Candidate> =
                gone.iter().flat_map(|e| Self::keys_of(&e.vuln)).collect();
            for key in keys {
                if let Some(list) = self.by_key.get_mut(&key) {
                    list.retain(|x| !gone_ptrs.contains(&Arc::as_ptr(x)));
                    if list.is_empty() {
                        self.by_key.remove(&key);
                    }
                }
            }
        }
        for e in entries.iter().filter(|e| !was.contains(&Arc::as_ptr(e))) {
            for key in Self::keys_of(&e.vuln) {
                self.by_key.entry(key).or_default().push(Arc::clone(e));
            }
        }
        self.by_updater.insert(updater.to_string(), entries);
    }

    /// Number of vulnerabilities held.
    pub fn len(&self) -> usize {
        self.by_updater.values().map(Vec::len).sum()
    }

    /// Whether no vulnerability is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn keys_of(v: &Vulnerability) -> Vec<Candidate> {
        vuln_slots(v.package.kind)
            .iter()
            .map(|slot| Candidate {
                ecosystem: v.package.ecosystem.clone(),
                name: v.package.name.clone(),
                slot: *slot,
            })
            .collect()
    }

    /// The vulnerabilities affecting one installed package, deduplicated.
    pub fn matching(&self, p: &InstalledPackage) -> Vec<Arc<VulnEntry>> {
        let mut out: Vec<Arc<VulnEntry>> = Vec::new();
        let base = tocsin_model::ecosystem::base(&p.ecosystem);
        for key in package_keys(p) {
            let mut lookups = vec![key.clone()];
            if base != p.ecosystem {
                lookups.push(Candidate {
                    ecosystem: base.to_string(),
                    ..key.clone()
                });
            }
            for k in lookups {
                for e in self.by_key.get(&k).into_iter().flatten() {
                    if out.iter().any(|x| Arc::ptr_eq(x, e)) {
                        continue;
                    }
                    if e.rule.matches(&p.version, &p.normalized_version, &p.arch) {
                        out.push(Arc::clone(e));
                    }
                }
            }
        }
        // Keep the slot order irrelevant to callers: most severe first, then by name.
        out.sort_by(|a, b| {
            b.vuln
                .normalized_severity
                .cmp(&a.vuln.normalized_severity)
                .then_with(|| a.vuln.name.cmp(&b.vuln.name))
                .then_with(|| a.id.cmp(&b.id))
        });
        out
    }
}
