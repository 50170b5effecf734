//! Projections of a change set into wire formats. Each format is computed from the change set
//! once, here, and nowhere else.
use std::collections::{BTreeMap, HashMap};

use tocsin_model::change::ChangeSet;
use tocsin_model::notification::{Notification, Reason, VulnSummary};
use tocsin_model::vuln::{VulnId, Vulnerability};
use tocsin_model::Digest;
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

/// The v4 notification entries of a change set, in a stable order: by manifest, then reason
/// (added, removed, changed), then most severe first, then by vulnerability name.
///
/// Summary mode keys by (manifest, reason) — not by manifest alone as Clair does, which lets an
/// added and a removed hit on one manifest overwrite each other.
pub fn v4_entries(
    cs: &ChangeSet,
    vulns: &HashMap<VulnId, Vulnerability>,
    opts: V4Options,
) -> Vec<Notification> {
    // (manifest, reason) → candidate vulnerabilities
    let mut hits: BTreeMap<(Digest, Reason), Vec<&Vulnerability>> = BTreeMap::new();
    for c in &cs.changes {
        let old = c.old.as_ref().and_then(|i| vulns.get(i));
        let new = c.new.as_ref().and_then(|i| vulns.get(i));
        if let Some(v) = new {
            for d in c.added() {
                hits.entry((d.clone(), Reason::Added)).or_default().push(v);
            }
        }
        if let Some(v) = old {
            for d in c.removed() {
                hits.entry((d.clone(), Reason::Removed))
                    .or_default()
                    .push(v);
            }
        }
        if opts.changed_reason {
            if let (Some(_), Some(v)) = (old, new) {
                for d in c.kept() {
                    hits.entry((d.clone(), Reason::Changed))
                        .or_default()
                        .push(v);
                }
            }
        }
    }
    let mut out = Vec::new();
    for ((manifest, reason), mut vs) in hits {
        vs.sort_by(|a, b| {
            b.normalized_severity
                .cmp(&a.normalized_severity)
                .then_with(|| a.name.cmp(&b.name))
                .then_with(|| a.package.cmp(&b.package))
        });
        vs.dedup_by(|a, b| a.name == b.name && a.package == b.package);
        let take = if opts.disable_summary { vs.len() } else { 1 };
        for v in vs.into_iter().take(take) {
            out.push(Notification {
                id: Uuid::new_v4(),
                manifest: manifest.clone(),
                reason,
                vulnerability: VulnSummary::of(v),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tocsin_model::change::VulnChange;
    use tocsin_model::vuln::{Affected, NameKind, PackageSpec};
    use tocsin_model::Severity;

    fn d(n: u8) -> Digest {
        Digest::parse(&format!("sha256:{}", format!("{n:02x}").repeat(32))).unwrap()
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
                    old_affected: vec![],
                    new_affected: vec![d(1), d(2)],
                },
                VulnChange {
                    old: None,
                    new: Some(high.id()),
                    old_affected: vec![],
                    new_affected: vec![d(1)],
                },
                VulnChange {
                    old: Some(gone.id()),
                    new: None,
                    old_affected: vec![d(1)],
                    new_affected: vec![],
                },
                VulnChange {
                    old: Some(changed_old.id()),
                    new: Some(changed_new.id()),
                    old_affected: vec![d(2), d(3)],
                    new_affected: vec![d(3), d(4)],
                },
            ],
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
        let e = v4_entries(&cs, &vulns, V4Options::default());
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
        );
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
}
