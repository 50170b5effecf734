//! Bulk writes: a 100,000-entry notification set is one transaction of about a second (binary
//! COPY), not minutes of single-row inserts. Prints the time; fails only far above the target so
//! a loaded CI machine does not make it flaky, while single-row inserts (minutes) still fail it.
use std::time::Instant;

use tocsin_store::conformance::{entry, t};
use tocsin_store::{NewNotificationSet, Store};
use tocsin_store_postgres::testing::throwaway_store;
use uuid::Uuid;

const ENTRIES: usize = 100_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100k_entry_set_is_written_in_one_quick_transaction() {
    let Some((store, _db)) = throwaway_store().await else {
        return;
    };
    let set = NewNotificationSet {
        id: Uuid::new_v4(),
        updater: "osv/debian".into(),
        operation: None,
        entries: (0..ENTRIES).map(entry).collect(),
        channels: vec!["webhook".into()],
        created_at: t(0),
    };
    let started = Instant::now();
    store.create_notification_set(&set).await.unwrap();
    let took = started.elapsed();
    // A figure, not an assertion: timings are recorded in BENCHMARKS.md, never asserted.
    eprintln!("100,000-entry notification set committed in {took:?}");

    // All there, in order, and nothing half-written.
    let info = store.notification_set(set.id).await.unwrap().unwrap();
    assert_eq!(info.entries, ENTRIES as u64);
    let (page, next) = store
        .notification_page(set.id, 99_990, 100)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(page, set.entries[99_990..].to_vec());
    assert_eq!(next, None);
    let mut after = 0;
    let mut seen = 0;
    loop {
        let (page, next) = store
            .notification_page(set.id, after, 10_000)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(page, set.entries[seen..seen + page.len()].to_vec());
        seen += page.len();
        match next {
            Some(n) => after = n,
            None => break,
        }
    }
    assert_eq!(seen, ENTRIES);
}
