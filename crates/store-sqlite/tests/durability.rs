//! Crash safety and atomicity of the embedded store, checked on the database file itself.
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use time::macros::datetime;
use time::OffsetDateTime;
use tocsin_model::notification::ReceiptStatus;
use tocsin_store::conformance::{addressed, entry, manifest, new_set, processed, vuln};
use tocsin_store::{AttemptOutcome, ImportOutcome, Store, StoreError};
use tocsin_store_sqlite::{SqliteStore, DB_FILE};
use uuid::Uuid;

const CHILD_DIR_ENV: &str = "TOCSIN_STORE_CRASH_CHILD_DIR";

fn now() -> OffsetDateTime {
    datetime!(2026-08-21 12:00 UTC)
}

fn count(db: &Path, table: &str) -> i64 {
    let conn = Connection::open(db.join(DB_FILE)).unwrap();
    conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

async fn import(store: &SqliteStore, fp: &str, names: &[String]) -> Uuid {
    let vulns: Vec<_> = names.iter().map(|n| vuln("debian", n, "1.0")).collect();
    let vulns = addressed(&vulns);
    match store
        .import_snapshot("debian", fp, &vulns, now())
        .await
        .unwrap()
    {
        ImportOutcome::Created(op) => Uuid::parse_str(&op.reference).unwrap(),
        other => panic!("expected a new operation, got {other:?}"),
    }
}

/// Reads every page of a set and checks it holds exactly its announced entries.
async fn assert_complete(store: &SqliteStore, set: Uuid) {
    let info = store.notification_set(set).await.unwrap().expect("set");
    let mut after = 0;
    let mut n = 0u64;
    loop {
        let (page, next) = store
            .notification_page(set, after, 128)
            .await
            .unwrap()
            .expect("pages");
        n += page.len() as u64;
        match next {
            Some(p) => after = p,
            None => break,
        }
    }
    assert_eq!(n, info.entries, "set {set} is incomplete");
    assert!(!info.receipts.is_empty(), "set {set} lost its receipts");
}

#[tokio::test]
async fn everything_committed_is_there_after_dropping_without_closing() {
    let dir = tempfile::tempdir().unwrap();
    let mut prev = None;
    let mut ops = Vec::new();
    {
        let store = SqliteStore::open(dir.path()).unwrap();
        for n in 0..100 {
            store.put_manifest(&manifest(n), now()).await.unwrap();
        }
        for i in 0..10u128 {
            let names: Vec<String> = (0..200).map(|k| format!("DSA-{}-1", k + i * 10)).collect();
            let op = import(&store, &format!("fp-{i}"), &names).await;
            store
                .commit_processed(&processed(
                    "debian",
                    prev,
                    op,
                    Some((i + 1, 1000, &["webhook"][..])),
                ))
                .await
                .unwrap();
            prev = Some(op);
            ops.push(op);
        }
        let tasks = store
            .claim_deliveries("webhook", now(), Duration::from_secs(60), 3)
            .await
            .unwrap();
        for task in &tasks {
            let a = tocsin_store::conformance::attempt(task, now(), AttemptOutcome::Delivered);
            store.record_attempt(task, &a).await.unwrap();
        }
        // No orderly close: connections are leaked, so nothing is checkpointed or cleaned up.
        std::mem::forget(store);
    }
    let store = SqliteStore::open(dir.path()).unwrap();
    assert_eq!(store.list_manifests(None, 1000).await.unwrap().len(), 100);
    let info = store.updaters().await.unwrap();
    assert_eq!((info[0].operations, info[0].processed), (10, prev));
    for (i, op) in ops.iter().enumerate() {
        assert!(store.change_set(*op).await.unwrap().is_some(), "op {i}");
        assert_complete(&store, Uuid::from_u128(i as u128 + 1)).await;
    }
    let backlog = store.backlog().await.unwrap();
    assert_eq!((backlog.delivered, backlog.created), (3, 7));
}

/// The writer that `survives_sigkill` kills: commits forever, reporting each commit on stdout.
#[tokio::test]
#[ignore = "helper process of survives_sigkill; runs only when that test starts it"]
async fn crash_child_writer() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
        eprintln!("{CHILD_DIR_ENV} not set: this helper only runs under survives_sigkill");
        return;
    };
    let store = SqliteStore::open(Path::new(&dir)).unwrap();
    let mut prev = None;
    for i in 0u128.. {
        let names: Vec<String> = (0..50).map(|k| format!("DSA-{}-1", k + i)).collect();
        let op = import(&store, &format!("fp-{i}"), &names).await;
        store
            .commit_processed(&processed(
                "debian",
                prev,
                op,
                Some((i + 1, 2000, &["webhook", "amqp"][..])),
            ))
            .await
            .unwrap();
        prev = Some(op);
        // Printed only after the commit returned: every line names durable state.
        println!("committed {i} {op}");
    }
}

#[test]
fn survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "crash_child_writer",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut reported: Vec<(u128, Uuid)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("committed ") {
            let (i, op) = rest.split_once(' ').unwrap();
            reported.push((i.parse().unwrap(), Uuid::parse_str(op).unwrap()));
        }
        // Kill while the writer is busy, most likely in the middle of a transaction.
        if reported.len() >= 15 || Instant::now() > deadline {
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL on Unix: no destructors, no checkpoint.
    child.wait().unwrap();
    assert!(
        reported.len() >= 15,
        "the child reported only {} commits",
        reported.len()
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = SqliteStore::open(dir.path()).unwrap();
        for (i, op) in &reported {
            assert!(
                store.change_set(*op).await.unwrap().is_some(),
                "commit {i} lost"
            );
            assert_complete(&store, Uuid::from_u128(i + 1)).await;
        }
        // Whatever committed after the last report is whole too, and the processed mark is the
        // newest committed operation: sets, change sets and the mark moved together.
        let sets = store.notification_sets(None, None, 10_000).await.unwrap();
        assert!(sets.len() >= reported.len());
        for s in &sets {
            assert_complete(&store, s.id).await;
        }
        let newest = sets[0]
            .operation
            .expect("processed sets name their operation");
        assert_eq!(store.updaters().await.unwrap()[0].processed, Some(newest));
    });
}

#[tokio::test]
async fn a_conflicting_commit_leaves_no_rows() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let op1 = import(&store, "fp-1", &["DSA-1-1".to_string()]).await;
    let stale = processed(
        "debian",
        Some(Uuid::from_u128(77)),
        op1,
        Some((1, 5000, &["webhook"][..])),
    );
    let err = store.commit_processed(&stale).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    for table in [
        "change_set",
        "notification_set",
        "notification_entry",
        "receipt",
    ] {
        assert_eq!(count(dir.path(), table), 0, "{table}");
    }
}

#[tokio::test]
async fn a_commit_failing_halfway_rolls_back_what_it_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    // A test-mode set takes the id the processing commit will want.
    store
        .create_notification_set(&new_set(1, 3, &["webhook"], now()))
        .await
        .unwrap();
    let op1 = import(&store, "fp-1", &["DSA-1-1".to_string()]).await;
    // The change set is written before the set id clash is found, inside the same transaction.
    let p = processed("debian", None, op1, Some((1, 5000, &["webhook"][..])));
    let err = store.commit_processed(&p).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert_eq!(count(dir.path(), "change_set"), 0);
    assert_eq!(count(dir.path(), "notification_set"), 1);
    assert_eq!(count(dir.path(), "notification_entry"), 3);
    assert_eq!(count(dir.path(), "receipt"), 1);
    assert_eq!(store.updaters().await.unwrap()[0].processed, None);
    // And the store is still usable: the retry with a fresh id goes through.
    let p = processed("debian", None, op1, Some((2, 10, &["webhook"][..])));
    store.commit_processed(&p).await.unwrap();
    let info = store
        .notification_set(Uuid::from_u128(2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((info.entries, info.status), (10, ReceiptStatus::Created));
}

#[tokio::test]
async fn reopening_keeps_data_and_migrations_are_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SqliteStore::open(dir.path()).unwrap();
        store
            .create_notification_set(&new_set(9, 2, &[], now()))
            .await
            .unwrap();
    }
    let applied = count(dir.path(), "schema_migrations");
    assert!(applied >= 1);
    for _ in 0..2 {
        let store = SqliteStore::open(dir.path()).unwrap();
        let (page, _) = store
            .notification_page(Uuid::from_u128(9), 0, 10)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(page, vec![entry(0), entry(1)]);
    }
    assert_eq!(count(dir.path(), "schema_migrations"), applied);
}

#[tokio::test]
async fn unreferenced_vulnerabilities_are_collected() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    import(
        &store,
        "fp-1",
        &["DSA-1-1".to_string(), "DSA-2-1".to_string()],
    )
    .await;
    // The trait never orphans a vulnerability (operations are kept); simulate the retention of
    // old operations that a later version may add by unlinking one directly.
    let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
    let orphan = vuln("debian", "DSA-2-1", "1.0").id();
    conn.execute(
        "DELETE FROM operation_vulnerability WHERE vuln_id = ?1",
        [&orphan.0],
    )
    .unwrap();
    let stats = store
        .collect_garbage(now(), Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(stats.vulnerabilities, 1);
    assert!(store.vulnerabilities(&[orphan]).await.unwrap().is_empty());
    let kept = vuln("debian", "DSA-1-1", "1.0").id();
    assert_eq!(store.vulnerabilities(&[kept]).await.unwrap().len(), 1);
}

#[tokio::test]
async fn reads_proceed_while_another_writer_holds_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    store
        .create_notification_set(&new_set(1, 50, &["webhook"], now()))
        .await
        .unwrap();
    // Another writer (think: a long import) holds SQLite's write lock with uncommitted rows.
    let other = Connection::open(dir.path().join(DB_FILE)).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    other
        .execute("DELETE FROM notification_entry WHERE position > 10", [])
        .unwrap();
    let (page, next) = tokio::time::timeout(
        Duration::from_secs(5),
        store.notification_page(Uuid::from_u128(1), 0, 100),
    )
    .await
    .expect("a read must not wait for the write lock")
    .unwrap()
    .unwrap();
    // The read sees the last committed state, not the other writer's uncommitted delete.
    assert_eq!((page.len(), next), (50, None));
    other.execute_batch("ROLLBACK").unwrap();
}
