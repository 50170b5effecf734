//! End to end on real data: real inventories, real feeds, real update sequences. Each
//! transition's notified set must equal (report after) − (report before), computed by the
//! forward direction of the matching engine.
mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use tocsin_engine::projection::V4Options;
use tocsin_engine::EngineConfig;
use tocsin_model::Digest;

type Reports = BTreeMap<Digest, BTreeSet<(String, String)>>;

async fn reports(engine: &tocsin_engine::Engine, manifests: &[Digest]) -> Reports {
    let mut out = BTreeMap::new();
    for d in manifests {
        out.insert(d.clone(), report(engine, d).await);
    }
    out
}

/// What a transition should notify: for each manifest, vulnerabilities now reported and not
/// before (added), and the reverse (removed).
fn expected(before: &Reports, after: &Reports) -> BTreeSet<(Digest, String, String, String)> {
    let mut out = BTreeSet::new();
    for (d, now) in after {
        let was = &before[d];
        for (name, pkg) in now.difference(was) {
            out.insert((d.clone(), "added".into(), name.clone(), pkg.clone()));
        }
        for (name, pkg) in was.difference(now) {
            out.insert((d.clone(), "removed".into(), name.clone(), pkg.clone()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debian_and_go_sequences_notify_exactly_the_report_difference() {
    let Some(data) = data() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = EngineConfig {
        v4: V4Options {
            disable_summary: true,
            changed_reason: false,
        },
        ..Default::default()
    };
    let engine = engine(dir.path(), cfg).await;
    let inv = data.join("inventories");
    let mut manifests = Vec::new();
    for f in [
        "clair/docker.io-library-debian-10.index.json",
        "clair/indexreport-buster-jackson-databind.json",
    ] {
        manifests.push(index(&engine, &inv.join(f), None).await);
    }
    for f in [
        "cyclonedx/SBOM_proton-bridge_proton-bridge-v1.6.3.bom.json",
        "cyclonedx/SBOM_proton-bridge_proton-bridge-v1.8.0.bom.json",
    ] {
        manifests.push(index(&engine, &inv.join(f), None).await);
    }
    manifests.push(
        index(
            &engine,
            &inv.join("dpkg/postgresql.status"),
            Some("debian:10"),
        )
        .await,
    );

    // Go: one whole feed, an updater's first operation (notifies everything it affects).
    let before = reports(&engine, &manifests).await;
    let processed = import(&engine, "osv/go", &data.join("osv/go")).await;
    assert_eq!(processed.len(), 1);
    let set = processed[0]
        .set
        .expect("the Go feed affects the proton-bridge SBOMs");
    let after = reports(&engine, &manifests).await;
    let want = expected(&before, &after);
    let got = entries(engine.store().as_ref(), set).await;
    assert_eq!(got, want, "osv/go first operation");
    let go_hits = |d: &Digest| got.iter().filter(|e| &e.0 == d).count();
    assert!(go_hits(&manifests[2]) > 0 && go_hits(&manifests[3]) > 0);
    // gin v1.5.0-era module in both SBOMs; GO-2020-0001 is fixed in gin 1.6.0.
    for m in &manifests[2..4] {
        assert!(got.contains(&(
            m.clone(),
            "added".to_string(),
            "GO-2020-0001".to_string(),
            "github.com/gin-gonic/gin".to_string()
        )));
    }
    assert!(
        got.iter()
            .all(|e| e.0 == manifests[2] || e.0 == manifests[3]),
        "Go advisories touch only the Go SBOMs"
    );

    // Debian: the whole update sequence, snapshot by snapshot.
    let mut transitions = 0;
    for snap in snapshots(&data, "debian") {
        let before = reports(&engine, &manifests).await;
        let processed = import(&engine, "osv/debian", &snap).await;
        let after = reports(&engine, &manifests).await;
        let want = expected(&before, &after);
        assert_eq!(processed.len(), 1, "{}", snap.display());
        let got = match processed[0].set {
            Some(set) => entries(engine.store().as_ref(), set).await,
            None => BTreeSet::new(),
        };
        assert_eq!(got, want, "transition to {}", snap.display());
        if transitions == 1 {
            // 2022-10-01 → 2022-11-01, checked independently with `dpkg --compare-versions`
            // against the jackson-databind buster image (tzdata 2019a-1, glibc 2.28-10,
            // ncurses 6.1+20181013-2): exactly these four advisories newly affect it.
            let jackson = &manifests[1];
            let fact = |name: &str, pkg: &str| {
                (
                    jackson.clone(),
                    "added".to_string(),
                    name.to_string(),
                    pkg.to_string(),
                )
            };
            let want_exact: BTreeSet<_> = [
                fact("DLA-3134-1", "tzdata"),
                fact("DLA-3152-1", "glibc"),
                fact("DLA-3161-1", "tzdata"),
                fact("DLA-3167-1", "ncurses"),
            ]
            .into();
            assert_eq!(got, want_exact, "the real 2022-11-01 transition");
        }
        transitions += 1;
        eprintln!("{}: {} entries", snap.display(), got.len());
    }
    assert_eq!(transitions, 7);
    // The patched docker.io Debian 10 image stays clean: every advisory naming its packages is
    // fixed at or below its versions.
    assert!(report(&engine, &manifests[0]).await.is_empty());
    assert!(report(&engine, &manifests[1])
        .await
        .iter()
        .any(|(n, _)| n.starts_with("DSA-")));
}
