//! The change set: what one processed update operation changed, per vulnerability.
//!
//! For every vulnerability that appeared, disappeared or changed between the last update
//! operation tocsin processed for an updater and the new one, it holds the old and new versions
//! (by content address) and the manifests each affects. Every notification format (v4 entries,
//! v2/v3 notifications) is a projection of this, and nothing is computed twice.
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::vuln::VulnId;
use crate::Digest;

/// One vulnerability's change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VulnChange {
    /// The version before (absent when the vulnerability is new).
    pub old: Option<VulnId>,
    /// The version after (absent when it was withdrawn).
    pub new: Option<VulnId>,
    /// Manifests the old version affects, sorted.
    pub old_affected: Vec<Digest>,
    /// Manifests the new version affects, sorted.
    pub new_affected: Vec<Digest>,
}

impl VulnChange {
    /// Manifests newly affected (affected after, not before).
    pub fn added(&self) -> impl Iterator<Item = &Digest> {
        difference(&self.new_affected, &self.old_affected)
    }

    /// Manifests no longer affected.
    pub fn removed(&self) -> impl Iterator<Item = &Digest> {
        difference(&self.old_affected, &self.new_affected)
    }

    /// Manifests affected both before and after (meaningful when old and new differ).
    pub fn kept(&self) -> impl Iterator<Item = &Digest> {
        self.new_affected
            .iter()
            .filter(|d| self.old_affected.binary_search(d).is_ok())
    }
}

fn difference<'a>(a: &'a [Digest], b: &'a [Digest]) -> impl Iterator<Item = &'a Digest> {
    a.iter().filter(move |d| b.binary_search(d).is_err())
}

/// What processing one update operation of one updater found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeSet {
    /// The updater.
    pub updater: String,
    /// The last update operation processed before this one (absent for an updater's first).
    pub prev: Option<Uuid>,
    /// The update operation processed.
    pub cur: Uuid,
    /// Per-vulnerability changes, ordered by the new (else old) vulnerability's identity.
    pub changes: Vec<VulnChange>,
}

impl ChangeSet {
    /// Whether any manifest's affectedness changed.
    pub fn touches_manifests(&self) -> bool {
        self.changes
            .iter()
            .any(|c| c.added().next().is_some() || c.removed().next().is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> Digest {
        Digest::parse(&format!("sha256:{}", format!("{n:02x}").repeat(32))).unwrap()
    }

    #[test]
    fn added_removed_kept_are_set_differences() {
        let c = VulnChange {
            old: None,
            new: None,
            old_affected: vec![d(1), d(2)],
            new_affected: vec![d(2), d(3)],
        };
        assert_eq!(c.added().cloned().collect::<Vec<_>>(), vec![d(3)]);
        assert_eq!(c.removed().cloned().collect::<Vec<_>>(), vec![d(1)]);
        assert_eq!(c.kept().cloned().collect::<Vec<_>>(), vec![d(2)]);
    }
}
