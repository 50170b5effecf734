//! The rows a snapshot import writes.
//!
//! Every record of a snapshot becomes a membership row; only records the store does not hold yet
//! need their body encoded and inserted. Consecutive snapshots of an updater share almost every
//! record, so encoding only the new ones removes most of an incremental import's work. "Held"
//! comes from the updater's latest accepted operation: an accepted operation's memberships are
//! never deleted (garbage collection removes only those of superseded operations) and garbage
//! collection only removes bodies no membership references, so an id listed there is stored. If
//! that ever stopped being true, the membership's foreign key would fail the whole import rather
//! than lose a body.
use std::collections::HashSet;

use tocsin_model::vuln::Addressed;

use crate::{Result, StoreError};

/// A snapshot ready to insert, in parallel arrays (PostgreSQL binds them as `unnest` arrays).
#[derive(Debug, Default)]
pub struct EncodedSnapshot {
    /// Every record's id, in snapshot order: the membership rows.
    pub ids: Vec<String>,
    /// Ids of the records whose bodies are inserted.
    pub new_ids: Vec<String>,
    /// Canonical JSON bodies, parallel to `new_ids`.
    pub new_bodies: Vec<String>,
}

/// Checks that every record belongs to `updater` and encodes the bodies of those whose id is not
/// in `stored`. Runs before any write lock is taken: encoding thousands of records must not
/// stall other writers.
pub fn encode_snapshot(
    updater: &str,
    vulns: &[Addressed],
    stored: &HashSet<String>,
) -> Result<EncodedSnapshot> {
    let (ids, fresh) = plan(updater, vulns, stored)?;
    let mut out = EncodedSnapshot {
        ids,
        ..EncodedSnapshot::default()
    };
    for i in fresh {
        out.push_body(updater, i, &vulns[i])?;
    }
    Ok(out)
}

/// [`encode_snapshot`] in two steps, for a store that encodes on another thread: checked and
/// split here, holding owned copies of only the records still to encode (an incremental snapshot
/// of 24,000 records rarely has more than a few hundred new ones), encoded there.
pub fn split_snapshot(
    updater: &str,
    vulns: &[Addressed],
    stored: &HashSet<String>,
) -> Result<PendingSnapshot> {
    let (ids, fresh) = plan(updater, vulns, stored)?;
    Ok(PendingSnapshot {
        updater: updater.to_string(),
        ids,
        fresh: fresh.into_iter().map(|i| (i, vulns[i].clone())).collect(),
    })
}

/// A checked snapshot whose new records are still to be encoded.
#[derive(Debug)]
pub struct PendingSnapshot {
    updater: String,
    ids: Vec<String>,
    fresh: Vec<(usize, Addressed)>,
}

impl PendingSnapshot {
    /// Encodes the new records' bodies.
    pub fn encode(self) -> Result<EncodedSnapshot> {
        let mut out = EncodedSnapshot {
            ids: self.ids,
            ..EncodedSnapshot::default()
        };
        for (i, v) in &self.fresh {
            out.push_body(&self.updater, *i, v)?;
        }
        Ok(out)
    }
}

/// The membership ids and the positions of the records not in `stored`.
fn plan(
    updater: &str,
    vulns: &[Addressed],
    stored: &HashSet<String>,
) -> Result<(Vec<String>, Vec<usize>)> {
    let mut ids = Vec::with_capacity(vulns.len());
    let mut fresh = Vec::new();
    for (i, v) in vulns.iter().enumerate() {
        if v.updater != updater {
            return Err(StoreError::Invalid(format!(
                "snapshot of updater {updater:?}: vulnerability #{i} ({}) belongs to updater {:?}",
                v.name, v.updater
            )));
        }
        let id = &v.id().0;
        ids.push(id.clone());
        if !stored.contains(id) {
            fresh.push(i);
        }
    }
    Ok((ids, fresh))
}

impl EncodedSnapshot {
    fn push_body(&mut self, updater: &str, i: usize, v: &Addressed) -> Result<()> {
        let bytes = v.canonical_bytes();
        if bytes.is_empty() {
            return Err(StoreError::Invalid(format!(
                "snapshot of updater {updater:?}: vulnerability #{i} ({}) has no JSON encoding",
                v.name
            )));
        }
        let body = String::from_utf8(bytes).map_err(|e| {
            StoreError::Invalid(format!(
                "snapshot of updater {updater:?}: vulnerability #{i} ({}): {e}",
                v.name
            ))
        })?;
        self.new_ids.push(v.id().0.clone());
        self.new_bodies.push(body);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tocsin_model::vuln::{Affected, NameKind, PackageSpec, Vulnerability};
    use tocsin_model::Severity;

    fn vuln(updater: &str, name: &str) -> Addressed {
        Addressed::new(Vulnerability {
            updater: updater.into(),
            name: name.into(),
            aliases: vec![],
            description: String::new(),
            links: String::new(),
            issued: String::new(),
            severity: String::new(),
            normalized_severity: Severity::Unknown,
            package: PackageSpec {
                ecosystem: "PyPI".into(),
                name: "django".into(),
                kind: NameKind::Binary,
            },
            distribution: None,
            repository: None,
            fixed_in_version: String::new(),
            affected: Affected::Osv {
                ranges: vec![],
                versions: vec!["1.0".into()],
            },
        })
    }

    #[test]
    fn encodes_only_records_not_stored() {
        let a = vuln("u", "A");
        let b = vuln("u", "B");
        let stored = HashSet::from([a.id().0.clone()]);
        let e = encode_snapshot("u", &[a.clone(), b.clone()], &stored).unwrap();
        assert_eq!(e.ids, vec![a.id().0.clone(), b.id().0.clone()]);
        assert_eq!(e.new_ids, vec![b.id().0.clone()]);
        // The stored body is the exact encoding the id is the hash of.
        assert_eq!(
            tocsin_model::sha256_hex(e.new_bodies[0].as_bytes()),
            b.id().0
        );
        let split = split_snapshot("u", &[a.clone(), b.clone()], &stored)
            .unwrap()
            .encode()
            .unwrap();
        assert_eq!(
            (split.ids, split.new_ids, split.new_bodies),
            (e.ids, e.new_ids, e.new_bodies)
        );
    }

    #[test]
    fn refuses_a_record_of_another_updater() {
        let err = encode_snapshot("u", &[vuln("u", "A"), vuln("other", "B")], &HashSet::new())
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("#1 (B) belongs to updater \"other\""),
            "{err}"
        );
    }
}
