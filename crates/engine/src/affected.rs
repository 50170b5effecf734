//! Affectedness from outside tocsin's own index: the manifests a fronted Clair's indexer says
//! each vulnerability affects.
use std::collections::{BTreeMap, HashMap};

use tocsin_model::change::{ManifestSet, VulnChange};
use tocsin_model::vuln::{VulnId, Vulnerability};
use tocsin_model::Digest;

use crate::detect::Pair;

/// Answers which manifests each vulnerability affects (a Clair indexer's
/// `affected_manifest`). Implementations retry and bound their calls themselves; an error
/// leaves the operation unprocessed, to be tried again on the next pass.
#[async_trait::async_trait]
pub trait AffectedManifests: Send + Sync + std::fmt::Debug {
    /// The digests of the manifests each of `vulns` affects, in the same order.
    async fn affected(&self, vulns: &[&Vulnerability]) -> Result<Vec<Vec<Digest>>, String>;
}

/// The per-vulnerability changes of `pairs` with each version's manifests from `source`. The
/// manifests get ids local to this change set (in digest order), recorded with their digests.
pub(crate) async fn changes(
    pairs: Vec<Pair>,
    vulns: &HashMap<VulnId, Vulnerability>,
    source: &dyn AffectedManifests,
) -> Result<(Vec<VulnChange>, BTreeMap<u32, Digest>), String> {
    // Each version once, whichever side of however many pairs it is on.
    let mut bodies: Vec<&Vulnerability> = Vec::new();
    let mut position: HashMap<VulnId, usize> = HashMap::new();
    for id in pairs.iter().flat_map(|(o, n)| o.iter().chain(n.iter())) {
        if let Some(v) = vulns.get(id) {
            if !position.contains_key(id) {
                position.insert(id.clone(), bodies.len());
                bodies.push(v);
            }
        }
    }
    let answer = if bodies.is_empty() {
        Vec::new()
    } else {
        source.affected(&bodies).await?
    };
    if answer.len() != bodies.len() {
        return Err(format!(
            "asked about {} vulnerabilities, got {} answers",
            bodies.len(),
            answer.len()
        ));
    }
    let mut digests: Vec<&Digest> = answer.iter().flatten().collect();
    digests.sort();
    digests.dedup();
    let ids: HashMap<&Digest, u32> = digests
        .iter()
        .enumerate()
        .map(|(i, d)| (*d, i as u32))
        .collect();
    let sets: Vec<ManifestSet> = answer
        .iter()
        .map(|ds| ds.iter().filter_map(|d| ids.get(d).copied()).collect())
        .collect();
    let changes = crate::detect::with_affected(pairs, |id| {
        position
            .get(id)
            .map(|&p| sets[p].clone())
            .unwrap_or_default()
    });
    let manifests = digests
        .into_iter()
        .enumerate()
        .map(|(i, d)| (i as u32, d.clone()))
        .collect();
    Ok((changes, manifests))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tocsin_model::vuln::Addressed;

    /// Answers from a fixed table keyed by advisory name, counting the vulnerabilities asked.
    #[derive(Debug, Default)]
    struct Table(HashMap<String, Vec<Digest>>, std::sync::Mutex<usize>);

    #[async_trait::async_trait]
    impl AffectedManifests for Table {
        async fn affected(&self, vulns: &[&Vulnerability]) -> Result<Vec<Vec<Digest>>, String> {
            *self.1.lock().map_err(|e| e.to_string())? += vulns.len();
            Ok(vulns
                .iter()
                .map(|v| self.0.get(&v.name).cloned().unwrap_or_default())
                .collect())
        }
    }

    fn digest(c: char) -> Digest {
        Digest::parse(&format!("sha256:{}", c.to_string().repeat(64))).expect("a digest")
    }

    fn vuln(name: &str) -> Addressed {
        Addressed::new(Vulnerability {
            updater: "debian/updater".into(),
            name: name.into(),
            aliases: vec![],
            description: String::new(),
            links: String::new(),
            issued: String::new(),
            severity: String::new(),
            normalized_severity: tocsin_model::Severity::High,
            package: tocsin_model::vuln::PackageSpec {
                ecosystem: "Debian:12".into(),
                name: "openssl".into(),
                kind: tocsin_model::vuln::NameKind::Source,
            },
            distribution: None,
            repository: None,
            fixed_in_version: "3.0.1".into(),
            affected: tocsin_model::vuln::Affected::Claircore {
                fixed_in_version: "3.0.1".into(),
                range: None,
                arch_op: String::new(),
                arch: String::new(),
            },
        })
    }

    #[tokio::test]
    async fn each_version_is_asked_once_and_ids_are_local_in_digest_order() {
        let (a, b) = (vuln("A"), vuln("B"));
        let table = Table(
            HashMap::from([
                ("A".to_string(), vec![digest('b'), digest('a')]),
                ("B".to_string(), vec![digest('b')]),
            ]),
            Default::default(),
        );
        let vulns: HashMap<VulnId, Vulnerability> = [&a, &b]
            .iter()
            .map(|x| (x.id().clone(), x.vuln().clone()))
            .collect();
        let pairs = vec![
            (None, Some(a.id().clone())),
            (Some(b.id().clone()), None),
            (None, Some(a.id().clone())),
        ];
        let (changes, manifests) = changes(pairs, &vulns, &table).await.expect("changes");
        assert_eq!(*table.1.lock().expect("lock"), 2, "A and B once each");
        assert_eq!(
            manifests,
            BTreeMap::from([(0, digest('a')), (1, digest('b'))])
        );
        assert_eq!(changes[0].added().iter().collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(changes[1].removed().iter().collect::<Vec<_>>(), vec![1]);
    }

    #[tokio::test]
    async fn a_short_answer_is_an_error() {
        #[derive(Debug)]
        struct Short;
        #[async_trait::async_trait]
        impl AffectedManifests for Short {
            async fn affected(&self, _: &[&Vulnerability]) -> Result<Vec<Vec<Digest>>, String> {
                Ok(Vec::new())
            }
        }
        let a = vuln("A");
        let vulns = HashMap::from([(a.id().clone(), a.vuln().clone())]);
        let e = changes(vec![(None, Some(a.id().clone()))], &vulns, &Short)
            .await
            .expect_err("refused");
        assert!(e.contains("1 vulnerabilities, got 0"), "{e}");
    }
}
