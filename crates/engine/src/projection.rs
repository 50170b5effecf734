//! Projections of a change set into wire formats. Each format is computed from the change set
//! once, here, and nowhere else.
use std::collections::HashMap;

use tocsin_model::change::{ChangeSet, ManifestSet};
use tocsin_model::notification::{Notification, Reason, VulnSummary};
use tocsin_model::vuln::{VulnId, Vulnerability};
use uuid::Uuid;

/// How v4 entries are formed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct V4Options {
    /// One entry per (manifest, vulnerability) instead of Clair's summary (most severe per
    /// manifest and reason).
    pub disable_summary: bool,
    /// Emit `changed` for manifests still affected by a vulnerability whose content changed.
    pub changed_reason: bool,
}

/// The v4 notification entries of a change set, in a stable order: by manifest digest, then
/// reason (added, removed, changed), then most severe first, then by vulnerability name.
///
/// Summary mode keys by (manifest, reason) — not by manifest alone as Clair does, which lets an
/// added and a removed hit on one manifest overwrite each other.
///
/// Fails naming the manifest id when the change set lacks the digest of a manifest it names.
pub fn v4_entries(
    cs: &ChangeSet,
    vulns: &HashMap<VulnId, Vulnerability>,
    opts: V4Options,
) -> Result<Vec<Notification>, u32> {
    // Every vulnerability version that can be reported, with the reason and manifests it is
    // reported for.
    let mut hits: Vec<(&Vulnerability, Reason, ManifestSet)> = Vec::new();
    for c in &cs.changes {
        let old = c.old.as_ref().and_then(|i| vulns.get(i));
        let new = c.new.as_ref().and_then(|i| vulns.get(i));
        if let Some(v) = new {
            hits.push((v, Reason::Added, c.added()));
        }
        if let Some(v) = old {
            hits.push((v, Reason::Removed, c.removed()));
        }
        if opts.changed_reason {
            if let (Some(_), Some(v)) = (old, new) {
                hits.push((v, Reason::Changed, c.kept()));
            }
        }
    }
    hits.retain(|(_, _, m)| !m.is_empty());
    // Rank the hits once (most severe, then name, then package; ties in the changes' order): an
    // entry's order and the summary's choice are then integer comparisons. Hits with equal keys
    // share a group, and one (manifest, reason) lists a group once, as its first-ranked hit.
    let order = |a: &Vulnerability, b: &Vulnerability| {
        b.normalized_severity
            .cmp(&a.normalized_severity)
            .then_with(|| a.name.cmp(&b.name))
            .then_with(|| a.package.cmp(&b.package))
    };
    let mut by_rank: Vec<usize> = (0..hits.len()).collect();
    by_rank.sort_by(|a, b| order(hits[*a].0, hits[*b].0));
    let mut rank = vec![0u32; hits.len()];
    let mut group = vec![0u32; hits.len()];
    for (r, &i) in by_rank.iter().enumerate() {
        rank[i] = r as u32;
        group[r] = match r {
            0 => 0,
            _ if order(hits[by_rank[r - 1]].0, hits[i].0) == std::cmp::Ordering::Equal => {
                group[r - 1]
            }
            _ => group[r - 1] + 1,
        };
    }
    let reason_slot = |r: Reason| match r {
        Reason::Added => 0usize,
        Reason::Removed => 1,
        Reason::Changed => 2,
    };
    let reasons = [Reason::Added, Reason::Removed, Reason::Changed];
    // (manifest, reason slot, rank)
    let mut picked: Vec<(u32, usize, u32)> = Vec::new();
    if opts.disable_summary {
        for (i, (_, reason, manifests)) in hits.iter().enumerate() {
            let slot = reason_slot(*reason);
            picked.extend(manifests.iter().map(|m| (m, slot, rank[i])));
        }
        picked.sort_unstable();
        picked.dedup_by(|b, a| {
            a.0 == b.0 && a.1 == b.1 && group[a.2 as usize] == group[b.2 as usize]
        });
    } else {
        // Manifest ids are dense, so the best rank per (manifest, reason) is a plain array.
        let width = hits
            .iter()
            .filter_map(|(_, _, m)| m.max())
            .max()
            .map_or(0, |m| m as usize + 1);
        let mut best = vec![[u32::MAX; 3]; width];
        for (i, (_, reason, manifests)) in hits.iter().enumerate() {
            let slot = reason_slot(*reason);
            for m in manifests {
                let b = &mut best[m as usize][slot];
                *b = (*b).min(rank[i]);
            }
        }
        for (m, ranks) in best.iter().enumerate() {
            for (slot, r) in ranks.iter().enumerate() {
                if *r != u32::MAX {
                    picked.push((m as u32, slot, *r));
                }
            }
        }
    }
    let mut rows = picked
        .into_iter()
        .map(|(m, slot, r)| Ok((cs.digest(m).ok_or(m)?, slot, r)))
        .collect::<Result<Vec<_>, u32>>()?;
    rows.sort_unstable();
    let summaries: Vec<VulnSummary> = by_rank
        .iter()
        .map(|&i| VulnSummary::of(hits[i].0))
        .collect();
    Ok(rows
        .into_iter()
        .map(|(manifest, slot, r)| Notification {
            id: Uuid::new_v4(),
            manifest: manifest.clone(),
            reason: reasons[slot],
            vulnerability: summaries[r as usize].clone(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tocsin_model::change::VulnChange;
    use tocsin_model::vuln::{Affected, NameKind, PackageSpec};
    use tocsin_model::{Digest, Severity};

    fn d(n: u8) -> Digest {
        Digest::parse(&format!("sha256:{}", format!("{n:02x}").repeat(32))).unwrap()
    }

    fn ids(ids: &[u8]) -> ManifestSet {
        ids.iter().map(|i| u32::from(*i)).collect()
    }

    fn v(name: &str, sev: Severity, desc: &str) -> Vulnerability {
        Vulnerability {
            updater: "u".into(),
            name: name.into(),
            aliases: vec![],
            description: desc.into(),
            links: String::new(),
            issued: String::new(),
            severity: String::new(),
            normalized_severity: sev,
            package: PackageSpec {
                ecosystem: "npm".into(),
                name: "p".into(),
                kind: NameKind::Binary,
            },
            distribution: None,
            repository: None,
            fixed_in_version: String::new(),
            affected: Affected::Osv {
                ranges: vec![],
                versions: vec![],
            },
        }
    }

    fn fixture() -> (ChangeSet, HashMap<VulnId, Vulnerability>) {
        let low = v("A-LOW", Severity::Low, "");
        let high = v("B-HIGH", Severity::High, "");
        let gone = v("C-GONE", Severity::Critical, "");
        let changed_old = v("D-CHG", Severity::Medium, "old");
        let changed_new = v("D-CHG", Severity::Medium, "new");
        let mut vulns = HashMap::new();
        for x in [&low, &high, &gone, &changed_old, &changed_new] {
            vulns.insert(x.id(), x.clone());
        }
        let cs = ChangeSet {
            updater: "u".into(),
            prev: None,
            cur: Uuid::nil(),
            changes: vec![
                VulnChange {
                    old: None,
                    new: Some(low.id()),
                    old_affected: ManifestSet::new(),
                    new_affected: ids(&[1, 2]),
                },
                VulnChange {
                    old: None,
                    new: Some(high.id()),
                    old_affected: ManifestSet::new(),
                    new_affected: ids(&[1]),
                },
                VulnChange {
                    old: Some(gone.id()),
                    new: None,
                    old_affected: ids(&[1]),
                    new_affected: ManifestSet::new(),
                },
                VulnChange {
                    old: Some(changed_old.id()),
                    new: Some(changed_new.id()),
                    old_affected: ids(&[2, 3]),
                    new_affected: ids(&[3, 4]),
                },
            ],
            manifests: (1..=4).map(|i| (u32::from(i), d(i))).collect(),
        };
        (cs, vulns)
    }

    fn summary(e: &[Notification]) -> Vec<(u8, &'static str, String)> {
        e.iter()
            .map(|n| {
                let idx = (1..=4).find(|i| d(*i) == n.manifest).unwrap();
                (idx, n.reason.as_str(), n.vulnerability.name.clone())
            })
            .collect()
    }

    #[test]
    fn summary_mode_keeps_the_most_severe_per_manifest_and_reason() {
        let (cs, vulns) = fixture();
        let e = v4_entries(&cs, &vulns, V4Options::default()).unwrap();
        assert_eq!(
            summary(&e),
            vec![
                (1, "added", "B-HIGH".to_string()),
                (1, "removed", "C-GONE".to_string()),
                (2, "added", "A-LOW".to_string()),
                (2, "removed", "D-CHG".to_string()),
                (4, "added", "D-CHG".to_string()),
            ]
        );
    }

    #[test]
    fn disable_summary_lists_every_vulnerability_and_changed_is_opt_in() {
        let (cs, vulns) = fixture();
        let e = v4_entries(
            &cs,
            &vulns,
            V4Options {
                disable_summary: true,
                changed_reason: true,
            },
        )
        .unwrap();
        assert_eq!(
            summary(&e),
            vec![
                (1, "added", "B-HIGH".to_string()),
                (1, "added", "A-LOW".to_string()),
                (1, "removed", "C-GONE".to_string()),
                (2, "added", "A-LOW".to_string()),
                (2, "removed", "D-CHG".to_string()),
                (3, "changed", "D-CHG".to_string()),
                (4, "added", "D-CHG".to_string()),
            ]
        );
        assert_eq!(e[5].vulnerability.description, "new");
        assert_eq!(
            e[4].vulnerability.description, "old",
            "removed entries show the old version"
        );
    }

    #[test]
    fn a_manifest_without_a_recorded_digest_is_an_error() {
        let (mut cs, vulns) = fixture();
        cs.manifests.remove(&4);
        assert_eq!(v4_entries(&cs, &vulns, V4Options::default()), Err(4));
    }
}
