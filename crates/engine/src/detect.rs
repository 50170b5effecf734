//! The change detector: which vulnerabilities changed between two update operations, and which
//! manifests each version affects.
use std::collections::{BTreeMap, HashMap, HashSet};

use tocsin_index::ManifestIndex;
use tocsin_model::change::{ManifestSet, VulnChange};
use tocsin_model::vuln::{Identity, VulnId, Vulnerability};
use tocsin_model::Digest;
use tocsin_versions::CompiledRule;

/// An (old, new) pair of versions of one vulnerability; either side may be absent.
pub type Pair = (Option<VulnId>, Option<VulnId>);

/// The vulnerabilities that differ between `prev` and `cur`, paired by identity: a record only in
/// `cur` is new, only in `prev` withdrawn, and one identity on both sides with different content
/// is a change. Returns (old, new) id pairs ordered by identity.
pub fn pair_changes(
    prev: &[VulnId],
    cur: &[VulnId],
    vulns: &HashMap<VulnId, Vulnerability>,
) -> Result<Vec<Pair>, String> {
    let prev_set: HashSet<&VulnId> = prev.iter().collect();
    let cur_set: HashSet<&VulnId> = cur.iter().collect();
    let mut by_identity: BTreeMap<Identity, Pair> = BTreeMap::new();
    let lookup = |id: &VulnId| {
        vulns
            .get(id)
            .ok_or_else(|| format!("vulnerability {id} is referenced but not stored"))
    };
    for id in prev.iter().filter(|id| !cur_set.contains(id)) {
        let slot = by_identity.entry(lookup(id)?.identity()).or_default();
        slot.0 = Some(id.clone());
    }
    for id in cur.iter().filter(|id| !prev_set.contains(id)) {
        let slot = by_identity.entry(lookup(id)?.identity()).or_default();
        slot.1 = Some(id.clone());
    }
    Ok(by_identity.into_values().collect())
}

/// The changes of `pairs`, each version with the manifests `affected` says it affects (an absent
/// version affects none).
pub(crate) fn with_affected(
    pairs: Vec<Pair>,
    affected: impl Fn(&VulnId) -> ManifestSet,
) -> Vec<VulnChange> {
    let of = |id: &Option<VulnId>| id.as_ref().map(&affected).unwrap_or_default();
    pairs
        .into_iter()
        .map(|(old, new)| VulnChange {
            old_affected: of(&old),
            new_affected: of(&new),
            old,
            new,
        })
        .collect()
}

/// Builds the per-vulnerability changes for paired ids: each version's affected manifests from the
/// reverse index, and the digest of every manifest named (so the change set reads on its own).
pub fn changes(
    pairs: Vec<Pair>,
    vulns: &HashMap<VulnId, Vulnerability>,
    index: &ManifestIndex,
    digests: &HashMap<u32, Digest>,
) -> (Vec<VulnChange>, BTreeMap<u32, Digest>) {
    let changes = with_affected(pairs, |id| match vulns.get(id) {
        Some(v) => index.affected(v, &CompiledRule::new(&v.affected, &v.package.ecosystem)),
        None => ManifestSet::new(),
    });
    let mut named = ManifestSet::new();
    for c in &changes {
        named |= &c.old_affected;
        named |= &c.new_affected;
    }
    // The index and the digest map are updated together under one lock, so every id it
    // returned has a digest.
    let manifests = named
        .iter()
        .filter_map(|id| digests.get(&id).map(|d| (id, d.clone())))
        .collect();
    (changes, manifests)
}
