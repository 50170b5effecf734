//! Processing bookkeeping: a caller whose operation was processed by another pass (the
//! background loop took the lock first) can still learn the result.
mod common;

use common::*;
use tocsin_engine::EngineConfig;
use tocsin_store::ImportOutcome;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_processed_by_another_pass_is_remembered() {
    let Some(data) = data() else { return };
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), EngineConfig::default()).await;
    index(
        &engine,
        &data.join("inventories/clair/indexreport-buster-jackson-databind.json"),
        None,
    )
    .await;
    let snap = &snapshots(&data, "debian")[0];
    let s = tocsin_feeds::read_path("osv/debian", snap, &|_| {}).unwrap();
    let ImportOutcome::Created(op) = engine
        .import("osv/debian", &s.fingerprint, &s.vulnerabilities)
        .await
        .unwrap()
    else {
        panic!("a first snapshot creates an operation")
    };
    let op: uuid::Uuid = op.reference.parse().unwrap();
    assert_eq!(engine.processed(op), None, "not processed yet");

    let background = engine.process_pending().await.unwrap();
    assert_eq!(background.len(), 1);
    let late = engine.process_pending().await.unwrap();
    assert!(late.is_empty(), "an operation is processed once");
    let remembered = engine.processed(op).expect("remembered");
    assert_eq!(remembered, background[0]);
    assert!(remembered.set.is_some() && remembered.entries > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baseline_first_update_is_silent_and_later_updates_notify() {
    let Some(data) = data() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = EngineConfig {
        first_update: tocsin_engine::FirstUpdate::Baseline,
        ..Default::default()
    };
    let engine = engine(dir.path(), cfg).await;
    let jackson = index(
        &engine,
        &data.join("inventories/clair/indexreport-buster-jackson-databind.json"),
        None,
    )
    .await;
    let snaps = snapshots(&data, "debian");
    let first = import(&engine, "osv/debian", &snaps[0]).await;
    assert_eq!(first.len(), 1);
    assert!(
        first[0].changes > 7000,
        "the baseline still records its change set"
    );
    assert_eq!(first[0].set, None, "but notifies nothing");
    // The next operation is diffed against the baseline: only October 2022's news.
    let second = import(&engine, "osv/debian", &snaps[1]).await;
    let set = second[0]
        .set
        .expect("the 2022-11-01 snapshot affects the image");
    let got = entries(engine.store().as_ref(), set).await;
    assert_eq!(
        got.len(),
        1,
        "summary mode: one entry for the one manifest and reason"
    );
    assert!(got.iter().all(|e| e.0 == jackson && e.1 == "added"));
}
