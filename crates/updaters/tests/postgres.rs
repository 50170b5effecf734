//! Two processes on one PostgreSQL database follow one source: each step is fetched and
//! imported once, and a process that dies mid-fetch hands the source over when its lease ends.
//! (Each "process" is an engine with its own connection pool and its own lease holder id.)
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use tocsin_engine::Engine;
use tocsin_store::Store;
use tocsin_store_postgres::testing::throwaway_database;
use tocsin_testdata::osv_mirror::{update_steps, Fault, OsvMirror};
use tocsin_updaters::{Outcome, UpdaterError, UpdatersConfig};

const CRATES: &str = "osv/crates.io";

async fn process(db: &tocsin_store_postgres::testing::TestDatabase) -> Arc<Engine> {
    let store: Arc<dyn Store> = Arc::new(db.store().await);
    Arc::new(Engine::open(store, Default::default()).await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_import_each_step_once() {
    let steps = update_steps("crates.io");
    if steps.len() < 8 {
        return;
    }
    let Some(db) = throwaway_database().await else {
        return;
    };
    let mirror = OsvMirror::start().await.unwrap();
    let source = osv_source(CRATES, &mirror.base_url(), "crates.io");
    let (pa, pb) = (process(&db).await, process(&db).await);
    let a = updaters(&pa, config(vec![source.clone()]));
    let b = updaters(&pb, config(vec![source]));
    let mut fingerprints = std::collections::BTreeSet::new();
    for (i, step) in steps.iter().take(8).enumerate() {
        mirror.publish_path("crates.io", step).unwrap();
        mirror.reset_log();
        let (ra, rb) = tokio::join!(a.run_now(CRATES, quiet()), b.run_now(CRATES, quiet()));
        let mut created = 0;
        for r in [&ra, &rb] {
            match r {
                Ok(r) if r.outcome == Outcome::Created => created += 1,
                Ok(_) => {}
                Err(UpdaterError::Busy { why, .. }) => {
                    assert!(why.contains("another process"), "{why}")
                }
                Err(e) => panic!("step {i}: {e}"),
            }
        }
        let direct = tocsin_feeds::read_path(CRATES, step, &|_| {}).unwrap();
        let new = fingerprints.insert(direct.fingerprint.clone());
        assert!(created <= 1, "step {i}: imported twice: {ra:?} {rb:?}");
        assert_eq!(created == 1, new, "step {i}: {ra:?} {rb:?}");
        // The archive was downloaded at most once (the second run, if any, was conditional).
        let downloads = mirror
            .requests()
            .iter()
            .filter(|r| r.path.ends_with("all.zip") && r.status == 200)
            .count();
        assert!(downloads <= 1, "step {i}: {downloads} downloads");
        let ops = pa.store().update_operations(CRATES).await.unwrap();
        assert_eq!(ops.len(), fingerprints.len(), "step {i}");
        assert_eq!(ops[0].fingerprint, direct.fingerprint, "step {i}");
    }
    // Both processes processed everything exactly once between them.
    pa.process_pending().await.unwrap();
    pb.process_pending().await.unwrap();
    let info = pb.store().updaters().await.unwrap().remove(0);
    assert_eq!(
        info.processed.map(|p| p.to_string()),
        info.latest.map(|l| l.reference)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_dying_mid_fetch_hands_the_source_over() {
    let steps = update_steps("crates.io");
    let Some(first) = steps.first() else { return };
    let Some(db) = throwaway_database().await else {
        return;
    };
    let mirror = OsvMirror::start().await.unwrap();
    mirror.publish_path("crates.io", first).unwrap();
    // The archive trickles: the first process is still downloading when it dies.
    mirror.set_fault_times(
        "crates.io/all.zip",
        Fault::SlowBody(Duration::from_millis(200)),
        1,
    );
    let lease = Duration::from_secs(3);
    let cfg = UpdatersConfig {
        lease,
        ..config(vec![osv_source(CRATES, &mirror.base_url(), "crates.io")])
    };
    let (pa, pb) = (process(&db).await, process(&db).await);
    let a = Arc::new(updaters(&pa, cfg.clone()));
    let b = updaters(&pb, cfg);
    let dying = {
        let a = Arc::clone(&a);
        tokio::spawn(async move { a.run_now(CRATES, quiet()).await })
    };
    // Wait until it holds the lease and the download has started, then kill it.
    let mut waited = 0;
    while !mirror
        .requests()
        .iter()
        .any(|r| r.path.ends_with("all.zip") && r.body_bytes > 0)
    {
        waited += 1;
        assert!(waited < 100, "the first process never started downloading");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    dying.abort();
    assert!(dying.await.unwrap_err().is_cancelled());
    drop(a);

    // While its lease holds, the other process keeps off.
    let e = b.run_now(CRATES, quiet()).await.unwrap_err();
    assert!(matches!(e, UpdaterError::Busy { .. }), "{e}");
    assert_eq!(pb.store().update_operations(CRATES).await.unwrap().len(), 0);
    // Then takes over, and the step is imported once.
    tokio::time::sleep(lease).await;
    let r = b.run_now(CRATES, quiet()).await.unwrap();
    assert_eq!(r.outcome, Outcome::Created);
    assert_eq!(pb.store().update_operations(CRATES).await.unwrap().len(), 1);
    let st = pb.store().sources().await.unwrap().remove(0);
    assert!(st.lease_until.is_none() && st.last_success.is_some());
}
