//! The storm guard: a snapshot withdrawing more than `withdraw_guard` of an updater's current
//! vulnerabilities (identities gone, not records changed), or empty where the current one is
//! not, is stored held; an updater's first snapshot never is; `Guard::Skip` forces it.
mod common;

use common::*;
use tocsin_engine::{EngineConfig, Guard};
use tocsin_feeds::Snapshot;
use tocsin_model::vuln::Addressed;
use tocsin_store::ImportOutcome;

const U: &str = "osv/debian";

fn sealed(records: Vec<Addressed>) -> Snapshot {
    Snapshot::from_records(U, records)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withdrawals_past_the_guard_are_held() {
    let Some(data) = data() else { return };
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(
        dir.path(),
        EngineConfig {
            withdraw_guard: Some(0.5),
            ..Default::default()
        },
    )
    .await;
    let snaps = snapshots(&data, "debian");
    let first = tocsin_feeds::read_path(U, &snaps[0], &|_| {}).unwrap();
    let all = first.vulnerabilities.clone();
    let n = all.len();
    let imported = |s: Snapshot, guard: Guard| {
        let engine = &engine;
        async move {
            engine
                .import_with(U, &s.fingerprint, &s.vulnerabilities, guard)
                .await
                .unwrap()
        }
    };
    // The first snapshot of an updater is never held, however it compares.
    assert!(matches!(
        imported(first, Guard::Apply).await,
        ImportOutcome::Created(_)
    ));
    engine.process_pending().await.unwrap();

    // Every record changed (same advisories and packages, new content): no withdrawal.
    let changed: Vec<Addressed> = all
        .iter()
        .map(|v| {
            let mut v = v.vuln().clone();
            v.fixed_in_version.push_str("+changed");
            Addressed::new(v)
        })
        .collect();
    assert!(matches!(
        imported(sealed(changed), Guard::Apply).await,
        ImportOutcome::Created(_)
    ));
    engine.process_pending().await.unwrap();
    let current: Vec<Addressed> = {
        let store = engine.store();
        let latest = store.updaters().await.unwrap().remove(0).latest.unwrap();
        let ids = store
            .operation_vulnerabilities(latest.reference.parse().unwrap())
            .await
            .unwrap();
        store
            .vulnerabilities(&ids)
            .await
            .unwrap()
            .into_iter()
            .map(|(_, v)| Addressed::new(v))
            .collect()
    };

    // Exactly half withdrawn: allowed ("more than" the guard holds).
    let half: Vec<Addressed> = current.iter().take(n - n / 2).cloned().collect();
    let ImportOutcome::Created(_) = imported(sealed(half), Guard::Apply).await else {
        panic!("half withdrawn passes a 50% guard")
    };
    engine.process_pending().await.unwrap();
    // Back to everything (additions are never held), then most withdrawn: held.
    assert!(matches!(
        imported(sealed(current.clone()), Guard::Apply).await,
        ImportOutcome::Created(_)
    ));
    engine.process_pending().await.unwrap();
    let before = engine.store().updaters().await.unwrap().remove(0);
    let few: Vec<Addressed> = current.iter().take(n / 10).cloned().collect();
    let ImportOutcome::Held(h) = imported(sealed(few.clone()), Guard::Apply).await else {
        panic!("most withdrawn must be held")
    };
    assert!(h.reason.contains("would withdraw"), "{}", h.reason);
    assert!(
        engine.process_pending().await.unwrap().is_empty(),
        "held: not processed"
    );
    let after = engine.store().updaters().await.unwrap().remove(0);
    assert_eq!(after.latest, before.latest);
    assert_eq!(
        after.held.as_ref().map(|x| &x.operation),
        Some(&h.operation)
    );

    // An empty snapshot where the current one is not: held too.
    let ImportOutcome::Held(e) = imported(sealed(Vec::new()), Guard::Apply).await else {
        panic!("an empty snapshot must be held")
    };
    assert!(e.reason.contains("empty"), "{}", e.reason);
    // Forced: imported and processed, replacing the held one.
    assert!(matches!(
        imported(sealed(few), Guard::Skip).await,
        ImportOutcome::Created(_)
    ));
    let processed = engine.process_pending().await.unwrap();
    assert_eq!(processed.len(), 1);
    assert!(engine
        .store()
        .updaters()
        .await
        .unwrap()
        .remove(0)
        .held
        .is_none());
    let op: uuid::Uuid = e.operation.reference.parse().unwrap();
    assert!(
        engine.accept(U, op).await.is_err(),
        "a superseded operation cannot be accepted"
    );
}
