//! Following the real update sequences through a local OSV.dev-layout mirror gives exactly what
//! importing the same snapshots directly gives, step by step, whether the updater reads the
//! full archive every time or follows `modified_id.csv`.
mod common;

use common::*;
use tocsin_testdata::osv_mirror::{update_steps, OsvMirror};
use tocsin_updaters::{Outcome, UpdatersConfig};

async fn follow_sequence(feed: &str, ecosystem: &str, updater: &str) {
    let Some(data) = tocsin_testdata::dir() else {
        return;
    };
    let steps = update_steps(feed);
    assert!(!steps.is_empty(), "no steps of {feed}");
    let mirror = OsvMirror::start().await.unwrap();
    let base = mirror.base_url();

    let direct = side(Default::default()).await;
    let incremental = side(Default::default()).await;
    let full = side(Default::default()).await;
    for s in [&direct, &incremental, &full] {
        load_inventories(&s.engine, &data).await;
    }
    let source = osv_source(updater, &base, ecosystem);
    let inc = updaters(&incremental.engine, config(vec![source.clone()]));
    let all = updaters(
        &full.engine,
        UpdatersConfig {
            // Every run is a full one.
            full_refresh: std::time::Duration::ZERO,
            ..config(vec![source])
        },
    );
    let mut incremental_runs = 0;
    let mut notified_steps = 0;
    for (i, step) in steps.iter().enumerate() {
        let published = mirror.publish_path(ecosystem, step).unwrap();

        let snapshot = tocsin_feeds::read_path(updater, step, &|_| {}).unwrap();
        direct
            .engine
            .import(updater, &snapshot.fingerprint, &snapshot.vulnerabilities)
            .await
            .unwrap();
        direct.engine.process_pending().await.unwrap();

        let r = inc.run_now(updater, quiet()).await.unwrap();
        let f = all.run_now(updater, quiet()).await.unwrap();
        let expected = produced(&direct.engine, updater).await;
        assert_eq!(
            produced(&incremental.engine, updater).await,
            expected,
            "{feed} step {i} ({}): incremental run {r:?}",
            step.display()
        );
        assert_eq!(
            produced(&full.engine, updater).await,
            expected,
            "{feed} step {i}: full run {f:?}"
        );
        assert_eq!(f.mode, "full");
        notified_steps += usize::from(expected.notified());
        eprintln!(
            "{feed} step {i}: +{} ~{} -{}; incremental {:?} {} requests {} bytes; full {:?} {} \
             requests {} bytes; {} notifications",
            published.added,
            published.changed,
            published.removed,
            r.outcome,
            r.requests,
            r.bytes,
            f.outcome,
            f.requests,
            f.bytes,
            expected.notifications.len()
        );
        if i == 0 {
            assert_eq!(r.mode, "full", "the first run reads the archive");
            assert_eq!(r.outcome, Outcome::Created);
        } else {
            assert_eq!(r.mode, "incremental", "step {i}: {r:?}");
            incremental_runs += 1;
            let changed = published.added + published.changed + published.removed;
            if changed == 0 {
                // The list did not change: one conditional request, answered 304.
                assert_eq!((r.outcome, r.requests), (Outcome::NotModified, 1), "{r:?}");
            } else {
                // The list, and the records it names from the previous newest time on.
                assert!(
                    r.bytes < published.all_zip_bytes as u64,
                    "step {i}: an incremental run downloads less than the archive: {r:?}"
                );
                assert!(r.requests as usize <= 1 + changed + 16, "step {i}: {r:?}");
            }
        }
    }
    assert!(incremental_runs > 0);
    assert!(
        notified_steps > 1,
        "{feed}: the comparison must cover notifications"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crates_io_sequence() {
    follow_sequence("crates.io", "crates.io", "osv/crates.io").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn almalinux9_sequence() {
    follow_sequence("almalinux9", "AlmaLinux", "osv/almalinux").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debian_sequence() {
    follow_sequence("debian", "Debian", "osv/debian").await;
}
