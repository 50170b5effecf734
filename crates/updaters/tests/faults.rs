//! Conditional fetches, retries, timeouts, caps, broken archives, incremental fall-backs and the
//! storm guard, against a real HTTP server (the OSV mirror) and a real store.
mod common;

use std::time::Duration;

use common::*;
use tocsin_testdata::osv_mirror::{read_records, update_steps, Fault, OsvMirror};
use tocsin_updaters::{Outcome, UpdaterError, UpdatersConfig};

const CRATES: &str = "osv/crates.io";

async fn operations(engine: &tocsin_engine::Engine, updater: &str) -> u64 {
    engine
        .store()
        .updaters()
        .await
        .unwrap()
        .into_iter()
        .find(|u| u.name == updater)
        .map_or(0, |u| u.operations)
}

async fn source_state(engine: &tocsin_engine::Engine, name: &str) -> tocsin_store::SourceState {
    engine
        .store()
        .sources()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.name == name)
        .expect("a source state")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_url_is_fetched_conditionally() {
    let steps = update_steps("crates.io");
    let Some(first) = steps.first() else { return };
    let mirror = OsvMirror::start().await.unwrap();
    mirror.put_file("feeds/crates.tar.gz", std::fs::read(first).unwrap());
    let s = side(Default::default()).await;
    let u = updaters(
        &s.engine,
        config(vec![url_source(CRATES, &mirror.url("feeds/crates.tar.gz"))]),
    );
    let r = u.run_now(CRATES, quiet()).await.unwrap();
    assert_eq!((r.outcome, r.requests), (Outcome::Created, 1));
    assert!(r.vulnerabilities.unwrap() > 1000);

    mirror.reset_log();
    let r = u.run_now(CRATES, quiet()).await.unwrap();
    assert_eq!(
        (r.outcome, r.requests, r.bytes),
        (Outcome::NotModified, 1, 0)
    );
    let log = mirror.requests();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].status, 304);
    assert!(log[0].if_none_match.is_some() && log[0].if_modified_since.is_some());

    // New content: fetched, imported.
    mirror.put_file("feeds/crates.tar.gz", std::fs::read(&steps[2]).unwrap());
    let r = u.run_now(CRATES, quiet()).await.unwrap();
    assert_eq!(r.outcome, Outcome::Created);
    assert_eq!(operations(&s.engine, CRATES).await, 2);
    let st = source_state(&s.engine, CRATES).await;
    assert!(st.last_success.is_some() && st.last_error.is_none() && st.failures == 0);
    assert!(st.next_run.unwrap() > st.last_attempt.unwrap() + time::Duration::minutes(59));
    assert!(st.lease_until.is_none(), "the lease is released");

    // The source moves to another URL with the same content: the old URL's validators are
    // not sent there; read, unchanged, nothing created.
    let u2 = updaters(
        &s.engine,
        config(vec![url_source(CRATES, &mirror.url("feeds/copy.tar.gz"))]),
    );
    mirror.put_file("feeds/copy.tar.gz", std::fs::read(&steps[2]).unwrap());
    let r = u2.run_now(CRATES, quiet()).await.unwrap();
    assert_eq!(r.outcome, Outcome::Unchanged);
    assert_eq!(operations(&s.engine, CRATES).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validators_are_not_trusted_once_the_store_moved_on() {
    let steps = update_steps("crates.io");
    let Some(first) = steps.first() else { return };
    let mirror = OsvMirror::start().await.unwrap();
    mirror.put_file("c.tar.gz", std::fs::read(first).unwrap());
    let s = side(Default::default()).await;
    let u = updaters(
        &s.engine,
        config(vec![url_source(CRATES, &mirror.url("c.tar.gz"))]),
    );
    u.run_now(CRATES, quiet()).await.unwrap();
    // Someone pushes another snapshot by hand: the kept validators no longer describe the
    // updater's content, so the next run fetches unconditionally and restores the source's.
    let other = tocsin_feeds::read_path(CRATES, &steps[5], &|_| {}).unwrap();
    s.engine
        .import(CRATES, &other.fingerprint, &other.vulnerabilities)
        .await
        .unwrap();
    mirror.reset_log();
    let r = u.run_now(CRATES, quiet()).await.unwrap();
    assert_eq!(r.outcome, Outcome::Created, "{r:?}");
    assert!(mirror.requests()[0].if_none_match.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_file_is_read_again_only_when_it_changed() {
    let steps = update_steps("crates.io");
    let Some(first) = steps.first() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("feed.tar.gz");
    std::fs::copy(first, &path).unwrap();
    let s = side(Default::default()).await;
    let u = updaters(
        &s.engine,
        config(vec![url_source(CRATES, path.to_str().unwrap())]),
    );
    assert_eq!(
        u.run_now(CRATES, quiet()).await.unwrap().outcome,
        Outcome::Created
    );
    let r = u.run_now(CRATES, quiet()).await.unwrap();
    assert_eq!(
        (r.outcome, r.mode, r.requests),
        (Outcome::NotModified, "local", 0)
    );
    std::fs::copy(&steps[3], &path).unwrap();
    assert_eq!(
        u.run_now(CRATES, quiet()).await.unwrap().outcome,
        Outcome::Created
    );
    // A directory in the OSV layout under a local osv_base.
    let base = tempfile::tempdir().unwrap();
    let eco = base.path().join("crates.io");
    std::fs::create_dir(&eco).unwrap();
    for (id, bytes) in read_records(&steps[4]).unwrap() {
        std::fs::write(eco.join(format!("{id}.json")), bytes).unwrap();
    }
    std::fs::write(eco.join("modified_id.csv"), "not read").unwrap();
    let other = side(Default::default()).await;
    let u = updaters(
        &other.engine,
        config(vec![osv_source(
            CRATES,
            base.path().to_str().unwrap(),
            "crates.io",
        )]),
    );
    let r = u.run_now(CRATES, quiet()).await.unwrap();
    assert_eq!((r.outcome, r.mode), (Outcome::Created, "local"));
    let direct = tocsin_feeds::read_path(CRATES, &steps[4], &|_| {}).unwrap();
    assert_eq!(r.operation.unwrap().fingerprint, direct.fingerprint);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried() {
    let steps = update_steps("crates.io");
    let Some(first) = steps.first() else { return };
    let mirror = OsvMirror::start().await.unwrap();
    mirror.put_file("c.tar.gz", std::fs::read(first).unwrap());
    mirror.set_fault("c.tar.gz", Fault::Status(503, 2));
    let s = side(Default::default()).await;
    let u = updaters(
        &s.engine,
        config(vec![url_source(CRATES, &mirror.url("c.tar.gz"))]),
    );
    let r = u.run_now(CRATES, quiet()).await.unwrap();
    assert_eq!((r.outcome, r.requests), (Outcome::Created, 3));
    // A dropped connection once, then a good answer.
    mirror.put_file("c.tar.gz", std::fs::read(&steps[1]).unwrap());
    mirror.set_fault_times("c.tar.gz", Fault::DropMidBody, 1);
    let r = u.run_now(CRATES, quiet()).await.unwrap();
    assert_eq!((r.outcome, r.requests), (Outcome::Created, 2));
}

/// Each fault fails the run with its own error, records it with its time, imports nothing,
/// and schedules the source sooner than its period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_recorded_and_import_nothing() {
    let steps = update_steps("crates.io");
    let Some(first) = steps.first() else { return };
    let mirror = OsvMirror::start().await.unwrap();
    let good = std::fs::read(first).unwrap();
    mirror.put_file("c.tar.gz", good.clone());
    let s = side(Default::default()).await;
    let mut cfg = config(vec![url_source(CRATES, &mirror.url("c.tar.gz"))]);
    cfg.fetch.timeout = Duration::from_millis(700);
    cfg.fetch.max_download_size = good.len() as u64 * 2;
    let u = updaters(&s.engine, cfg);
    u.run_now(CRATES, quiet()).await.unwrap();
    let next = std::fs::read(&steps[6]).unwrap();
    mirror.put_file("c.tar.gz", next.clone());

    let cases: Vec<(Fault, &str, &str)> = vec![
        (Fault::Status(500, 100), "http_status", "HTTP 500"),
        (Fault::DropMidBody, "transport", "GET "),
        (
            Fault::Delay(Duration::from_secs(3)),
            "timeout",
            "no complete answer",
        ),
        (Fault::Truncate(next.len() / 2), "invalid_feed", ""),
    ];
    for (i, (fault, kind, text)) in cases.into_iter().enumerate() {
        mirror.clear_faults();
        mirror.set_fault("c.tar.gz", fault.clone());
        let e = u.run_now(CRATES, quiet()).await.unwrap_err();
        assert_eq!(e.kind(), kind, "{fault:?}: {e}");
        assert!(e.to_string().contains(text), "{fault:?}: {e}");
        let st = source_state(&s.engine, CRATES).await;
        assert_eq!(st.failures, i as u32 + 1);
        assert_eq!(st.last_error.as_deref(), Some(e.to_string().as_str()));
        assert!(st.last_error_at.is_some() && st.last_error_at == st.last_attempt);
        let backoff = st.next_run.unwrap() - st.last_error_at.unwrap();
        assert!(
            backoff < time::Duration::minutes(30),
            "retried sooner: {backoff}"
        );
        assert_eq!(
            operations(&s.engine, CRATES).await,
            1,
            "{fault:?} imported nothing"
        );
    }
    // Too large: stops at the cap without reading on.
    mirror.clear_faults();
    mirror.put_file("c.tar.gz", vec![0x1f; good.len() * 3]);
    let e = u.run_now(CRATES, quiet()).await.unwrap_err();
    assert!(matches!(e, UpdaterError::TooLarge { .. }), "{e}");
    // And recovers.
    mirror.put_file("c.tar.gz", next);
    let r = u.run_now(CRATES, quiet()).await.unwrap();
    assert_eq!(r.outcome, Outcome::Created);
    let st = source_state(&s.engine, CRATES).await;
    assert_eq!(st.failures, 0);
    assert!(
        st.last_error.is_some(),
        "the last error is kept as history, with its time"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failing_source_never_delays_another() {
    let steps = update_steps("crates.io");
    let Some(first) = steps.first() else { return };
    let mirror = OsvMirror::start().await.unwrap();
    mirror.put_file("slow.tar.gz", std::fs::read(first).unwrap());
    mirror.put_file("fast.tar.gz", std::fs::read(first).unwrap());
    mirror.set_fault("slow.tar.gz", Fault::Delay(Duration::from_secs(20)));
    let s = side(Default::default()).await;
    let mut cfg = config(vec![
        url_source("slow", &mirror.url("slow.tar.gz")),
        url_source("fast", &mirror.url("fast.tar.gz")),
    ]);
    cfg.fetch.timeout = Duration::from_secs(30);
    let u = std::sync::Arc::new(updaters(&s.engine, cfg));
    let stop = tokio_util::sync::CancellationToken::new();
    let follow = tokio::spawn(std::sync::Arc::clone(&u).follow(stop.clone()));
    let mut waited = 0;
    while operations(&s.engine, "fast").await == 0 {
        waited += 1;
        assert!(
            waited < 150,
            "the healthy source was not imported while the other hangs"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(operations(&s.engine, "slow").await, 0);
    let st = source_state(&s.engine, "slow").await;
    assert!(
        st.lease_until.is_some(),
        "the slow source is still being fetched"
    );
    stop.cancel();
    follow.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_runs_fall_back_to_the_archive() {
    let steps = update_steps("crates.io");
    if steps.len() < 12 {
        return;
    }
    let mirror = OsvMirror::start().await.unwrap();
    let s = side(Default::default()).await;
    let base = mirror.base_url();
    let u = updaters(
        &s.engine,
        config(vec![osv_source(CRATES, &base, "crates.io")]),
    );
    mirror.publish_path("crates.io", &steps[0]).unwrap();
    assert_eq!(u.run_now(CRATES, quiet()).await.unwrap().mode, "full");

    // The list is missing.
    mirror.publish_path("crates.io", &steps[2]).unwrap();
    mirror.remove("crates.io/modified_id.csv");
    let r = u.run_now(CRATES, quiet()).await.unwrap();
    assert_eq!((r.mode, r.outcome), ("full", Outcome::Created), "{r:?}");
    assert!(r.fallback.unwrap().contains("missing"));

    // Without a position in the list, the next run reads the archive again.
    mirror.publish_path("crates.io", &steps[3]).unwrap();
    let r = u.run_now(CRATES, quiet()).await.unwrap();
    assert_eq!(r.mode, "full", "{r:?}");
    assert!(r.fallback.unwrap().contains("no position"));

    // The list is garbage.
    mirror.publish_path("crates.io", &steps[5]).unwrap();
    mirror.put_file(
        "crates.io/modified_id.csv",
        b"<html>proxy error</html>".to_vec(),
    );
    let r = u.run_now(CRATES, quiet()).await.unwrap();
    assert_eq!((r.mode, r.outcome), ("full", Outcome::Created), "{r:?}");
    assert!(r.fallback.unwrap().contains("modified_id.csv"));

    // A listed record is missing.
    mirror.publish_path("crates.io", &steps[6]).unwrap();
    assert_eq!(u.run_now(CRATES, quiet()).await.unwrap().mode, "full");
    mirror.publish_path("crates.io", &steps[8]).unwrap();
    let r = u.run_now(CRATES, quiet()).await.unwrap();
    assert_eq!(r.mode, "incremental", "{r:?}");
    mirror.publish_path("crates.io", &steps[11]).unwrap();
    let csv = mirror.file("crates.io/modified_id.csv").unwrap().bytes;
    let newest = String::from_utf8(csv)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    let id = newest.split_once(',').unwrap().1.to_string();
    mirror.remove(&format!("crates.io/{id}.json"));
    let r = u.run_now(CRATES, quiet()).await.unwrap();
    assert_eq!(r.mode, "full", "{r:?}");
    assert!(r.fallback.unwrap().contains(&id));
    let direct = tocsin_feeds::read_path(CRATES, &steps[11], &|_| {}).unwrap();
    assert_eq!(r.operation.unwrap().fingerprint, direct.fingerprint);

    // Too many changes for one run.
    let strict = side(Default::default()).await;
    let u = updaters(
        &strict.engine,
        UpdatersConfig {
            max_incremental: 0,
            ..config(vec![osv_source(CRATES, &base, "crates.io")])
        },
    );
    u.run_now(CRATES, quiet()).await.unwrap();
    mirror.publish_path("crates.io", &steps[0]).unwrap();
    let r = u.run_now(CRATES, quiet()).await.unwrap();
    assert_eq!(r.mode, "full");
    assert!(
        r.fallback.as_deref().unwrap().contains("max_incremental"),
        "{r:?}"
    );
}

/// A mirror that lost most records must not tell every consumer they vanished: the snapshot is
/// held until accepted, and a later good fetch replaces it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_withdrawing_most_records_is_held() {
    let Some(data) = tocsin_testdata::dir() else {
        return;
    };
    let steps = update_steps("crates.io");
    let mirror = OsvMirror::start().await.unwrap();
    let s = side(withdraw_guard(Some(0.5))).await;
    load_inventories(&s.engine, &data).await;
    let u = updaters(
        &s.engine,
        config(vec![osv_source(CRATES, &mirror.base_url(), "crates.io")]),
    );
    mirror.publish_path("crates.io", &steps[0]).unwrap();
    u.run_now(CRATES, quiet()).await.unwrap();
    let before = produced(&s.engine, CRATES).await;

    // A broken mirror keeps a tenth of the records.
    let records = read_records(&steps[0]).unwrap();
    let tenth: Vec<_> = records.iter().step_by(10).cloned().collect();
    mirror.publish_records("crates.io", tenth.clone()).unwrap();
    let r = u.run_now(CRATES, quiet()).await.unwrap();
    assert_eq!(r.outcome, Outcome::Held, "{r:?}");
    assert!(
        r.held.as_deref().unwrap().contains("would withdraw"),
        "{r:?}"
    );
    assert_eq!(
        produced(&s.engine, CRATES).await,
        before,
        "nothing processed"
    );
    let info = s.engine.store().updaters().await.unwrap().remove(0);
    let held = info.held.expect("held");
    assert_eq!(
        held.operation.reference,
        r.operation.clone().unwrap().reference
    );
    // Fetching the same broken content again holds the same operation.
    let again = u.run_now(CRATES, quiet()).await.unwrap();
    assert_eq!(again.outcome, Outcome::NotModified);

    // The mirror recovers: the held operation is replaced, nothing was ever processed of it.
    mirror.publish_path("crates.io", &steps[0]).unwrap();
    let r = u.run_now(CRATES, quiet()).await.unwrap();
    assert!(
        matches!(r.outcome, Outcome::Unchanged | Outcome::NotModified),
        "{r:?}"
    );
    let info = s.engine.store().updaters().await.unwrap().remove(0);
    if r.outcome == Outcome::Unchanged {
        assert!(info.held.is_none(), "a later fetch replaced it");
    }

    // Broken again, and this time an operator accepts it: processed, notifying withdrawals.
    mirror.publish_records("crates.io", tenth).unwrap();
    let r = u.run_now(CRATES, quiet()).await.unwrap();
    assert_eq!(r.outcome, Outcome::Held);
    let op: uuid::Uuid = r.operation.unwrap().reference.parse().unwrap();
    s.engine.accept(CRATES, op).await.unwrap();
    let processed = s.engine.process_pending().await.unwrap();
    assert_eq!(processed.len(), 1);
    assert_eq!(processed[0].operation, op);
    assert!(processed[0].changes > 900, "{processed:?}");
    let after = produced(&s.engine, CRATES).await;
    assert_ne!(after.fingerprint, before.fingerprint);
    assert!(s.engine.accept(CRATES, op).await.is_err(), "accepted once");
}
