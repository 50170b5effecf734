//! The change set: what one processed update operation changed, per vulnerability.
//!
//! For every vulnerability that appeared, disappeared or changed between the last update
//! operation tocsin processed for an updater and the new one, it holds the old and new versions
//! (by content address) and the manifests each affects. Every notification format (v4 entries,
//! v2/v3 notifications) is a projection of this, and nothing is computed twice.
//!
//! Manifests are named by their internal ids in roaring bitmaps, not by digest: the first import
//! of a whole feed against a large fleet names millions of (vulnerability, manifest) pairs, which
//! as digest strings would cost ~100 bytes each and as bitmap members cost about two. The digest
//! of every id the changes name is recorded once, in [`ChangeSet::manifests`], as it was at
//! processing time, so a change set stays readable after its manifests are deleted.
use std::collections::BTreeMap;

use roaring::RoaringBitmap;
use uuid::Uuid;

use crate::vuln::VulnId;
use crate::Digest;

/// A set of manifests, by internal id.
pub type ManifestSet = RoaringBitmap;

/// One vulnerability's change.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VulnChange {
    /// The version before (absent when the vulnerability is new).
    pub old: Option<VulnId>,
    /// The version after (absent when it was withdrawn).
    pub new: Option<VulnId>,
    /// Manifests the old version affects.
    pub old_affected: ManifestSet,
    /// Manifests the new version affects.
    pub new_affected: ManifestSet,
}

impl VulnChange {
    /// Manifests newly affected (affected after, not before).
    pub fn added(&self) -> ManifestSet {
        &self.new_affected - &self.old_affected
    }

    /// Manifests no longer affected.
    pub fn removed(&self) -> ManifestSet {
        &self.old_affected - &self.new_affected
    }

    /// Manifests affected both before and after (meaningful when old and new differ).
    pub fn kept(&self) -> ManifestSet {
        &self.new_affected & &self.old_affected
    }

    /// Whether the change names any manifest, before or after.
    pub fn names_manifests(&self) -> bool {
        !self.old_affected.is_empty() || !self.new_affected.is_empty()
    }
}

/// What processing one update operation of one updater found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChangeSet {
    /// The updater.
    pub updater: String,
    /// The last update operation processed before this one (absent for an updater's first).
    pub prev: Option<Uuid>,
    /// The update operation processed.
    pub cur: Uuid,
    /// Per-vulnerability changes, ordered by the new (else old) vulnerability's identity.
    pub changes: Vec<VulnChange>,
    /// The digest of every manifest id the changes name, at processing time.
    pub manifests: BTreeMap<u32, Digest>,
}

impl ChangeSet {
    /// Whether any manifest's affectedness changed.
    pub fn touches_manifests(&self) -> bool {
        self.changes
            .iter()
            .any(|c| c.old_affected != c.new_affected)
    }

    /// The digest recorded for manifest `id`.
    pub fn digest(&self, id: u32) -> Option<&Digest> {
        self.manifests.get(&id)
    }

    /// The digests of a set of ids, sorted; an id without a recorded digest is an error naming it.
    pub fn digests(&self, ids: &ManifestSet) -> Result<Vec<&Digest>, u32> {
        let mut out = ids
            .iter()
            .map(|id| self.digest(id).ok_or(id))
            .collect::<Result<Vec<_>, _>>()?;
        out.sort();
        Ok(out)
    }

    /// Every manifest any change names.
    pub fn named(&self) -> ManifestSet {
        let mut all = ManifestSet::new();
        for c in &self.changes {
            all |= &c.old_affected;
            all |= &c.new_affected;
        }
        all
    }

    /// Whether every id the changes name has a recorded digest.
    pub fn is_complete(&self) -> bool {
        self.named()
            .iter()
            .all(|id| self.manifests.contains_key(&id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[u32]) -> ManifestSet {
        ids.iter().copied().collect()
    }

    #[test]
    fn added_removed_kept_are_set_differences() {
        let c = VulnChange {
            old: None,
            new: None,
            old_affected: set(&[1, 2]),
            new_affected: set(&[2, 3]),
        };
        assert_eq!(c.added(), set(&[3]));
        assert_eq!(c.removed(), set(&[1]));
        assert_eq!(c.kept(), set(&[2]));
        assert!(c.names_manifests());
        assert!(!VulnChange::default().names_manifests());
    }

    #[test]
    fn digests_are_sorted_and_a_missing_one_is_named() {
        let d = |n: u8| Digest::sha256_of(&[n]);
        let mut cs = ChangeSet {
            changes: vec![VulnChange {
                new_affected: set(&[5, 9]),
                ..Default::default()
            }],
            ..Default::default()
        };
        cs.manifests.insert(5, d(1));
        assert_eq!(cs.digests(&set(&[5, 9])), Err(9));
        assert!(!cs.is_complete());
        cs.manifests.insert(9, d(2));
        let mut want = vec![&cs.manifests[&5], &cs.manifests[&9]];
        want.sort();
        assert_eq!(cs.digests(&set(&[9, 5])).unwrap(), want);
        assert!(cs.is_complete());
        assert!(cs.touches_manifests());
    }
}
