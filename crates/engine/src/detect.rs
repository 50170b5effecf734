//! The change detector: which vulnerabilities changed between two update operations, and which
//! manifests each version affects.
use std::collections::{BTreeMap, HashMap, HashSet};

use tocsin_index::{ManifestIndex, VulnEntry};
use tocsin_model::change::VulnChange;
use tocsin_model::vuln::{Identity, VulnId, Vulnerability};
use tocsin_model::Digest;

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

/// The manifests one vulnerability version affects, as sorted digests.
pub fn affected_digests(
    index: &ManifestIndex,
    digests: &HashMap<u32, Digest>,
    id: &VulnId,
    v: &Vulnerability,
) -> Vec<Digest> {
    let entry = VulnEntry::new(id.clone(), v.clone());
    let mut out: Vec<Digest> = index
        .affected(v, &entry.rule)
        .iter()
        .filter_map(|m| digests.get(&m).cloned())
        .collect();
    out.sort();
    out
}

/// Builds the per-vulnerability changes for paired ids.
pub fn changes(
    pairs: Vec<Pair>,
    vulns: &HashMap<VulnId, Vulnerability>,
    index: &ManifestIndex,
    digests: &HashMap<u32, Digest>,
) -> Vec<VulnChange> {
    let affected =
        |id: &Option<VulnId>| match id.as_ref().and_then(|i| vulns.get(i).map(|v| (i, v))) {
            Some((i, v)) => affected_digests(index, digests, i, v),
            None => Vec::new(),
        };
    pairs
        .into_iter()
        .map(|(old, new)| VulnChange {
            old_affected: affected(&old),
            new_affected: affected(&new),
            old,
            new,
        })
        .collect()
}
