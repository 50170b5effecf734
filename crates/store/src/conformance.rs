//! The behaviour every [`Store`] implementation must show, written once and run on each backend.
//!
//! Each behaviour is a public `async fn(&dyn Store)` here;
//! [`store_conformance_suite!`](crate::store_conformance_suite) expands to one `#[test]` per
//! behaviour, each on a fresh, empty store from the caller's factory:
//!
//! ```ignore
//! async fn fresh() -> (SqliteStore, tempfile::TempDir) { /* … */ }
//! tocsin_store::store_conformance_suite!(fresh());
//! ```
//!
//! The factory expression is evaluated once per test and must yield something [`AsStore`]: a
//! store, an `Arc` of one, or a `(store, guard)` pair whose guard (a temporary directory, a
//! throw-away database) lives as long as the test. A backend that needs a server may use
//! `store_conformance_suite!(optional: factory())` with a factory yielding `Option<_>`: `None`
//! skips the test (the factory decides, and says why, e.g. failing instead in CI).
//!
//! Written to be backend-neutral: times are whole seconds (PostgreSQL keeps microseconds),
//! orderings are those the trait documents (digests in byte order, sets newest first), and no
//! test looks at tables. Properties only one backend can show (crash safety, row counts) are
//! tested in that backend's crate.
//!
//! Where the trait leaves a choice open, the suite pins one down, and every backend must agree:
//! - `operation_vulnerabilities` returns ids sorted and deduplicated, and an unknown operation is
//!   [`StoreError::Invalid`] (an empty list would read as "everything withdrawn" to a diff);
//! - `import_snapshot` refuses a vulnerability of another updater, storing nothing;
//! - `commit_processed` refuses a change set or notification set naming another updater or
//!   operation, and an operation the updater does not have (`Invalid`, nothing written);
//! - a set's status is `deleted` once deleted, else its least advanced receipt in the order
//!   created, delivery_failed, dead_letter, delivered (`delivered` with no channels);
//! - `record_attempt` always keeps the attempt in the history (even when it then reports a lost
//!   lease as `Conflict`); `delivered_at` is the attempt's start plus its duration; a final
//!   receipt (delivered, dead letter, deleted) has no `next_attempt_at`;
//! - deleting a set marks every receipt `deleted`; `DeliveredAndDeleted` keeps the delivering
//!   receipt `delivered` and marks the others `deleted`;
//! - a lease expires at exactly `now + lease_for` (a claim at that instant succeeds);
//! - `record_attempt` on a set already deleted and collected returns `Deleted` (nothing to keep);
//! - the manifest change feed starts above 0 (0 is "from the start" and the empty feed's head),
//!   and `manifest_changes` after any position past the head, `u64::MAX` included, is empty;
//! - garbage collection removes deleted sets at once, sets whose receipts were all delivered
//!   before `now - retention`, and sets without channels created before that;
//! - `commit_processed` refuses a held or superseded operation (`Invalid`, nothing written);
//! - a held import equal to the operation already held returns it as stored (its first reason);
//!   a held operation's `vulnerabilities` counts distinct records, like an operation's;
//! - a superseded operation is unknown once collected (`operation_vulnerabilities` is
//!   `Invalid`), and `accept_operation`'s `Invalid` message names the operation;
//! - `finish_source_run` on a source never claimed is `Conflict`; `sources` are in byte order of
//!   their names.
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use time::macros::datetime;
use time::OffsetDateTime;
use tocsin_model::change::{ChangeSet, ManifestSet, VulnChange};
use tocsin_model::claircore::{Distribution, Environment, IndexReport, Package, UpdateOperation};
use tocsin_model::inventory::{installed_packages, InventoryFormat, Manifest};
use tocsin_model::notification::{Notification, Reason, ReceiptStatus, VulnSummary};
use tocsin_model::vuln::{
    Addressed, Affected, Event, NameKind, OsvRange, PackageSpec, RangeKind, VulnId, Vulnerability,
};
use tocsin_model::{Digest, Severity};
use uuid::Uuid;

use crate::{
    Attempt, AttemptOutcome, Backlog, BulkItem, BulkOutcome, DeliveryTask, HeldOperation,
    ImportOutcome, LegacyDeliveryOutcome, LegacyLayer, ManifestChange, ManifestId, MarkRead,
    NewLegacyNotification, NewLegacyNotifications, NewNotificationSet, ProcessedUpdate, PutOutcome,
    SourceRun, SourceState, Store, StoreError,
};

/// Runs one behaviour on a fresh multi-threaded runtime (so blocking-pool backends and
/// concurrent callers are exercised as in production).
pub fn run<F: Future>(f: F) -> F::Output {
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(f),
        Err(e) => panic!("cannot start a tokio runtime for the conformance suite: {e}"),
    }
}

/// What a conformance factory yields: something that lends a [`Store`].
pub trait AsStore {
    /// The store under test.
    fn as_store(&self) -> &dyn Store;
}

impl<S: Store> AsStore for S {
    fn as_store(&self) -> &dyn Store {
        self
    }
}

impl<S: Store> AsStore for Arc<S> {
    fn as_store(&self) -> &dyn Store {
        self.as_ref()
    }
}

impl AsStore for Arc<dyn Store> {
    fn as_store(&self) -> &dyn Store {
        self.as_ref()
    }
}

impl<S: Store, G> AsStore for (S, G) {
    fn as_store(&self) -> &dyn Store {
        &self.0
    }
}

/// Expands to one `#[test]` per conformance behaviour, each on a fresh store from `$factory` (an
/// expression evaluated once per test, yielding a future whose output is [`AsStore`]).
#[macro_export]
macro_rules! store_conformance_suite {
    (optional: $factory:expr) => {
        $crate::store_conformance_suite!(@list optional $factory);
    };
    ($factory:expr) => {
        $crate::store_conformance_suite!(@list required $factory);
    };
    (@list $mode:ident $factory:expr) => {
        $crate::__store_conformance_tests!(
            $mode $factory;
            manifest_put_created,
            manifest_put_unchanged,
            manifest_put_replaced_keeps_id,
            manifest_get_round_trip,
            manifest_delete,
            manifest_list_paging,
            manifest_ids_never_reused,
            index_entries_paging,
            index_entries_follow_replace_and_delete,
            bulk_import_commits_whole,
            bulk_import_is_all_or_nothing,
            manifest_labels_by_id,
            manifest_feed_order,
            manifest_feed_records_created_replaced_deleted,
            manifest_feed_unchanged_put_writes_nothing,
            manifest_feed_keeps_latest_change_only,
            manifest_feed_paging,
            manifest_feed_head,
            manifest_feed_delete_unknown_writes_nothing,
            manifest_feed_delete_and_reput_keeps_both_ids,
            manifest_feed_replay_matches_manifests,
            manifest_feed_concurrent_writers,
            import_creates_operation,
            import_identical_fingerprint_unchanged,
            import_deduplicates_vulnerabilities,
            import_incremental_snapshots_keep_every_body,
            import_is_all_or_nothing,
            update_operations_newest_first,
            operation_vulnerabilities_exact_set,
            vulnerabilities_skip_unknown_keep_order,
            updaters_info,
            commit_processed_sets_mark,
            commit_processed_conflict_writes_nothing,
            commit_processed_rejects_mismatched_parts,
            commit_without_notification_set,
            commit_with_notification_set,
            change_set_round_trip,
            create_notification_set_test_mode,
            notification_paging_every_entry_once,
            notification_page_unknown_set,
            delete_set_ends_paging,
            notification_sets_newest_first_with_filter,
            set_status_is_least_advanced_receipt,
            claim_only_due,
            claim_oldest_first_with_limit,
            claim_lease_excludes_until_expiry,
            claim_skips_deleted_sets,
            record_delivered,
            record_with_a_wrong_key,
            record_failed_reschedules,
            record_dead_letter,
            record_lost_lease_conflict,
            record_delete_during_lease,
            record_delivered_and_deleted,
            record_attempt_rejects_foreign_attempt,
            attempts_history_order,
            backlog_counts,
            gc_removes_deleted_and_old_delivered,
            gc_keeps_referenced_vulnerabilities,
            record_after_collection_is_deleted,
            gc_concurrent_callers_collect_once,
            commit_processed_concurrent_one_wins,
            claim_concurrent_claimers_disjoint,
            events_follow_commits,
            legacy_commit_and_read,
            legacy_rejects_bad_parts,
            legacy_mark_read,
            legacy_claim_and_record,
            legacy_lost_lease_conflict,
            legacy_gc_removes_old_read,
            secret_first_writer_wins,
            held_import_hidden_from_operations,
            held_without_accepted_operations,
            held_same_fingerprint_returns_held_operation,
            held_import_supersedes_held,
            accepted_import_supersedes_held,
            unchanged_import_supersedes_held,
            accept_makes_held_latest,
            accept_refuses_anything_but_the_held_operation,
            gc_removes_superseded_keeps_held,
            source_claim_creates_and_excludes,
            source_claim_same_holder_renews,
            source_claim_due_only_respects_next_run,
            source_finish_records_outcomes,
            source_finish_conflicts_unless_holder,
            sources_listed_by_name,
            source_claim_concurrent_one_wins,
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __store_conformance_tests {
    (required $factory:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::conformance::run(async {
                    let fixture = $factory.await;
                    $crate::conformance::$name($crate::conformance::AsStore::as_store(&fixture))
                        .await;
                });
            }
        )*
    };
    (optional $factory:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::conformance::run(async {
                    let Some(fixture) = $factory.await else { return };
                    $crate::conformance::$name($crate::conformance::AsStore::as_store(&fixture))
                        .await;
                });
            }
        )*
    };
}

// ---- fixtures -----------------------------------------------------------------------------------

/// The suite's clock: `t(0)` is a fixed instant, `t(n)` n seconds later.
pub fn t(secs: i64) -> OffsetDateTime {
    datetime!(2026-08-21 12:00 UTC) + time::Duration::seconds(secs)
}

/// A distinct sha256 digest per `n`.
pub fn digest(n: u32) -> Digest {
    match Digest::parse(&format!("sha256:{n:064x}")) {
        Ok(d) => d,
        Err(e) => panic!("fixture digest {n}: {e}"),
    }
}

/// A small Debian IndexReport manifest with `1 + n % 3` packages.
pub fn manifest(n: u32) -> Manifest {
    let d = digest(n);
    let mut report = IndexReport {
        manifest_hash: d.to_string(),
        state: "IndexFinished".into(),
        success: true,
        ..Default::default()
    };
    report.distributions.insert(
        "1".into(),
        Distribution {
            id: "1".into(),
            did: "debian".into(),
            name: "Debian GNU/Linux".into(),
            version_id: "12".into(),
            pretty_name: "Debian GNU/Linux 12 (bookworm)".into(),
            ..Default::default()
        },
    );
    for p in 0..=(n % 3) {
        let id = format!("{}", 10 + p);
        report.packages.insert(
            id.clone(),
            Package {
                id: id.clone(),
                name: format!("pkg{p}"),
                version: format!("1.{n}-1"),
                kind: "binary".into(),
                ..Default::default()
            },
        );
        report.environments.insert(
            id,
            vec![Environment {
                package_db: "var/lib/dpkg/status".into(),
                distribution_id: "1".into(),
                ..Default::default()
            }],
        );
    }
    Manifest {
        digest: d,
        labels: BTreeMap::from([("image".to_string(), format!("registry.test/app:{n}"))]),
        format: InventoryFormat::IndexReport,
        report,
    }
}

/// An OSV-style vulnerability of `updater` for package `name`, fixed in `fixed`.
pub fn vuln(updater: &str, name: &str, fixed: &str) -> Vulnerability {
    Vulnerability {
        updater: updater.into(),
        name: name.into(),
        aliases: vec![format!("CVE-2026-{}", name.len())],
        description: format!("{name} in libexample"),
        links: format!("https://advisories.test/{name}"),
        issued: "2026-08-01T00:00:00Z".into(),
        severity: "HIGH".into(),
        normalized_severity: Severity::High,
        package: PackageSpec {
            ecosystem: "Debian:12".into(),
            name: "libexample".into(),
            kind: NameKind::Source,
        },
        distribution: None,
        repository: None,
        fixed_in_version: fixed.into(),
        affected: Affected::Osv {
            ranges: vec![OsvRange {
                kind: RangeKind::Ecosystem,
                events: vec![Event::Introduced("0".into()), Event::Fixed(fixed.into())],
            }],
            versions: vec![],
        },
    }
}

/// Notification entry number `i` (distinct id, manifest and advisory per `i`).
pub fn entry(i: usize) -> Notification {
    let n = u32::try_from(i).unwrap_or(u32::MAX);
    Notification {
        id: Uuid::from_u128(0xe000_0000 + u128::from(n)),
        manifest: digest(n),
        // Alternating reasons; `is_multiple_of` is newer than the workspace's rust-version.
        reason: match i & 1 {
            0 => Reason::Added,
            _ => Reason::Removed,
        },
        vulnerability: VulnSummary::of(&vuln("test", &format!("DSA-{i}-1"), "1.2-1")),
    }
}

/// A test-mode notification set (no update operation) of `entries` entries.
pub fn new_set(
    id: u128,
    entries: usize,
    channels: &[&str],
    created_at: OffsetDateTime,
) -> NewNotificationSet {
    NewNotificationSet {
        id: Uuid::from_u128(id),
        updater: "test".into(),
        operation: None,
        entries: (0..entries).map(entry).collect(),
        channels: channels.iter().map(|c| c.to_string()).collect(),
        created_at,
    }
}

/// Records with their content addresses, as a snapshot hands them to a store.
pub fn addressed(vulns: &[Vulnerability]) -> Vec<Addressed> {
    vulns.iter().cloned().map(Addressed::new).collect()
}

/// Imports a snapshot that must be new; returns its operation id.
pub async fn import(
    store: &dyn Store,
    updater: &str,
    fingerprint: &str,
    vulns: &[Vulnerability],
    now: OffsetDateTime,
) -> Uuid {
    match store
        .import_snapshot(updater, fingerprint, &addressed(vulns), now)
        .await
    {
        Ok(ImportOutcome::Created(op)) => match Uuid::parse_str(&op.reference) {
            Ok(u) => u,
            Err(e) => panic!("operation ref {:?} is not a UUID: {e}", op.reference),
        },
        other => {
            panic!("import of {updater}/{fingerprint} should create an operation, got {other:?}")
        }
    }
}

/// Manifests `ns` as a change set names them (id `n` stands for [`digest`]`(n)`).
pub fn affected(ns: &[u32]) -> ManifestSet {
    ns.iter().copied().collect()
}

/// Records `digest(n)` for every id `n` the change set names.
pub fn name_digests(cs: &mut ChangeSet) {
    cs.manifests = cs.named().iter().map(|n| (n, digest(n))).collect();
}

/// A change set for one step of `updater`, with one change.
pub fn change_set(updater: &str, prev: Option<Uuid>, cur: Uuid) -> ChangeSet {
    let mut cs = ChangeSet {
        updater: updater.into(),
        prev,
        cur,
        changes: vec![VulnChange {
            old: None,
            new: Some(vuln(updater, "DSA-1-1", "1.0").id()),
            old_affected: affected(&[]),
            new_affected: affected(&[1, 2]),
        }],
        manifests: Default::default(),
    };
    name_digests(&mut cs);
    cs
}

/// A processed update, with a notification set of `entries` entries on `channels` if any.
pub fn processed(
    updater: &str,
    prev: Option<Uuid>,
    cur: Uuid,
    set: Option<(u128, usize, &[&str])>,
) -> ProcessedUpdate {
    ProcessedUpdate {
        updater: updater.into(),
        prev,
        cur,
        change_set: change_set(updater, prev, cur),
        notifications: set.map(|(id, n, channels)| NewNotificationSet {
            updater: updater.into(),
            operation: Some(cur),
            ..new_set(id, n, channels, t(0))
        }),
        legacy: None,
    }
}

/// An attempt for `task` at `at` lasting 250 ms.
pub fn attempt(task: &DeliveryTask, at: OffsetDateTime, outcome: AttemptOutcome) -> Attempt {
    let failed = matches!(outcome, AttemptOutcome::Failed { .. });
    Attempt {
        set_id: task.set_id,
        channel: task.channel.clone(),
        at,
        duration_ms: 250,
        status_code: Some(if failed { 503 } else { 200 }),
        error: failed.then(|| "503 Service Unavailable".to_string()),
        outcome,
    }
}

const MINUTE: Duration = Duration::from_secs(60);

async fn claim_one(store: &dyn Store, channel: &str, now: OffsetDateTime) -> DeliveryTask {
    let mut tasks = store
        .claim_deliveries(channel, now, MINUTE, 10)
        .await
        .unwrap();
    assert_eq!(
        tasks.len(),
        1,
        "expected exactly one due delivery on {channel} at {now}: {tasks:?}"
    );
    tasks.remove(0)
}

async fn receipt_of(store: &dyn Store, set: u128, channel: &str) -> crate::Receipt {
    let info = store
        .notification_set(Uuid::from_u128(set))
        .await
        .unwrap()
        .expect("set exists");
    info.receipts
        .into_iter()
        .find(|r| r.channel == channel)
        .expect("receipt for channel")
}

// ---- manifests ------------------------------------------------------------------------------

/// New digests are created with distinct ids.
pub async fn manifest_put_created(store: &dyn Store) {
    let (a, oa) = store.put_manifest(&manifest(1), t(0)).await.unwrap();
    let (b, ob) = store.put_manifest(&manifest(2), t(0)).await.unwrap();
    assert_eq!((oa, ob), (PutOutcome::Created, PutOutcome::Created));
    assert_ne!(a, b);
}

/// Identical content is a no-op that keeps the id and the update time.
pub async fn manifest_put_unchanged(store: &dyn Store) {
    let (id, _) = store.put_manifest(&manifest(1), t(0)).await.unwrap();
    let again = store.put_manifest(&manifest(1), t(60)).await.unwrap();
    assert_eq!(again, (id, PutOutcome::Unchanged));
    let listed = store.list_manifests(None, 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].updated_at, t(0));
}

/// Different content under one digest replaces it in place, keeping the id and creation time.
pub async fn manifest_put_replaced_keeps_id(store: &dyn Store) {
    let (id, _) = store.put_manifest(&manifest(1), t(0)).await.unwrap();
    let mut changed = manifest(1);
    changed.labels.insert("team".into(), "payments".into());
    changed.report.packages.clear();
    assert_eq!(
        store.put_manifest(&changed, t(60)).await.unwrap(),
        (id, PutOutcome::Replaced)
    );
    assert_eq!(
        store.get_manifest(&changed.digest).await.unwrap(),
        Some(changed)
    );
    let s = &store.list_manifests(None, 10).await.unwrap()[0];
    assert_eq!(
        (s.id, s.packages, s.created_at, s.updated_at),
        (id, 0, t(0), t(60))
    );
}

/// A stored manifest comes back equal; an unknown digest is `None`.
pub async fn manifest_get_round_trip(store: &dyn Store) {
    let m = manifest(5);
    store.put_manifest(&m, t(0)).await.unwrap();
    assert_eq!(store.get_manifest(&m.digest).await.unwrap(), Some(m));
    assert_eq!(store.get_manifest(&digest(6)).await.unwrap(), None);
}

/// Deleting removes the manifest everywhere; deleting again is false.
pub async fn manifest_delete(store: &dyn Store) {
    store.put_manifest(&manifest(1), t(0)).await.unwrap();
    store.put_manifest(&manifest(2), t(0)).await.unwrap();
    assert!(store.delete_manifest(&digest(1)).await.unwrap());
    assert!(!store.delete_manifest(&digest(1)).await.unwrap());
    assert!(!store.delete_manifest(&digest(9)).await.unwrap());
    assert_eq!(store.get_manifest(&digest(1)).await.unwrap(), None);
    let left: Vec<_> = store
        .list_manifests(None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.digest)
        .collect();
    assert_eq!(left, vec![digest(2)]);
    let by_id = store.index_entries_after(None, 10).await.unwrap();
    assert_eq!(by_id.len(), 1);
    assert_eq!(by_id[0].digest, digest(2));
}

/// Listing is in digest order, pages continue after the given digest, summaries are complete.
pub async fn manifest_list_paging(store: &dyn Store) {
    // Inserted out of digest order so that id order and digest order differ.
    let ns: Vec<u32> = (0..25).map(|i| (i * 7919) % 101).collect();
    for &n in &ns {
        store
            .put_manifest(&manifest(n), t(i64::from(n)))
            .await
            .unwrap();
    }
    let mut want: Vec<Digest> = ns.iter().map(|&n| digest(n)).collect();
    want.sort();
    let mut seen = Vec::new();
    let mut after: Option<Digest> = None;
    loop {
        let page = store.list_manifests(after.as_ref(), 7).await.unwrap();
        assert!(page.len() <= 7);
        if page.is_empty() {
            break;
        }
        after = page.last().map(|s| s.digest.clone());
        seen.extend(page);
    }
    assert_eq!(
        seen.iter().map(|s| s.digest.clone()).collect::<Vec<_>>(),
        want
    );
    let n = ns[3];
    let s = seen.iter().find(|s| s.digest == digest(n)).unwrap();
    let m = manifest(n);
    assert_eq!(s.labels, m.labels);
    assert_eq!(s.format, "index-report");
    assert_eq!(s.packages, m.report.packages.len() as u64);
    assert_eq!(
        (s.created_at, s.updated_at),
        (t(i64::from(n)), t(i64::from(n)))
    );
    assert!(store.list_manifests(None, 0).await.unwrap().is_empty());
}

/// Ids of deleted manifests are never handed out again, not even to the same digest.
pub async fn manifest_ids_never_reused(store: &dyn Store) {
    let (a, _) = store.put_manifest(&manifest(1), t(0)).await.unwrap();
    let (b, _) = store.put_manifest(&manifest(2), t(0)).await.unwrap();
    assert!(store.delete_manifest(&digest(2)).await.unwrap());
    let (c, _) = store.put_manifest(&manifest(3), t(0)).await.unwrap();
    assert!(c > b, "id {c} reuses or precedes deleted id {b}");
    assert!(store.delete_manifest(&digest(1)).await.unwrap());
    let (a2, outcome) = store.put_manifest(&manifest(1), t(0)).await.unwrap();
    assert_eq!(outcome, PutOutcome::Created);
    assert!(
        a2 > c && a2 != a,
        "re-created manifest got id {a2} (old {a}, newest {c})"
    );
}

/// `index_entries_after` walks every manifest once in id order, with the packages the index
/// needs; `index_entries` returns the listed ones that exist, in id order.
pub async fn index_entries_paging(store: &dyn Store) {
    let mut ids = Vec::new();
    for n in [40u32, 3, 17, 8, 25, 1, 33] {
        let (id, _) = store.put_manifest(&manifest(n), t(0)).await.unwrap();
        ids.push((id, digest(n)));
    }
    ids.sort();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.index_entries_after(after, 3).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 3);
        after = page.last().map(|e| e.id);
        seen.extend(page.into_iter().map(|e| (e.id, e.digest)));
    }
    assert_eq!(seen, ids);
    let from_third = store
        .index_entries_after(Some(ids[2].0), 100)
        .await
        .unwrap();
    assert_eq!(from_third.len(), ids.len() - 3);
    let m = manifest(ids_n(&ids[3].1));
    assert_eq!(
        from_third[0].packages.to_vec(),
        installed_packages(&m.report)
    );
    assert!(from_third[0].packages.iter().next().is_some());
    let some = store
        .index_entries(&[ids[4].0, ids[1].0, 999_999, ids[1].0])
        .await
        .unwrap();
    assert_eq!(
        some.iter()
            .map(|e| (e.id, e.digest.clone()))
            .collect::<Vec<_>>(),
        vec![ids[1].clone(), ids[4].clone()]
    );
    assert!(store.index_entries(&[]).await.unwrap().is_empty());
}

/// A replaced manifest's index entry follows its new content; a deleted one has none.
pub async fn index_entries_follow_replace_and_delete(store: &dyn Store) {
    let (id, _) = store.put_manifest(&manifest(5), t(0)).await.unwrap();
    let mut m = manifest(6);
    m.digest = digest(5);
    m.report.manifest_hash = digest(5).to_string();
    let (id2, o) = store.put_manifest(&m, t(1)).await.unwrap();
    assert_eq!((id2, o), (id, PutOutcome::Replaced));
    let e = store.index_entries(&[id]).await.unwrap();
    assert_eq!(e[0].packages.to_vec(), installed_packages(&m.report));
    assert!(store.delete_manifest(&digest(5)).await.unwrap());
    assert!(store.index_entries(&[id]).await.unwrap().is_empty());
    assert!(store
        .index_entries_after(None, 10)
        .await
        .unwrap()
        .is_empty());
}

/// A bulk import stores everything in one go, counts outcomes as single puts would, and writes
/// the change feed.
pub async fn bulk_import_commits_whole(store: &dyn Store) {
    store.put_manifest(&manifest(1), t(0)).await.unwrap();
    let mut changed = manifest(7);
    changed.digest = digest(1);
    changed.report.manifest_hash = digest(1).to_string();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let sender = async move {
        for m in [manifest(2), changed, manifest(3), manifest(2)] {
            tx.send(BulkItem::Manifest(Box::new(m))).await.unwrap();
        }
        tx.send(BulkItem::Commit).await.unwrap();
    };
    let (outcome, ()) = tokio::join!(store.put_manifests(rx, t(5)), sender);
    assert_eq!(
        outcome.unwrap(),
        BulkOutcome {
            created: 2,
            replaced: 1,
            unchanged: 1
        }
    );
    let listed: Vec<Digest> = store
        .list_manifests(None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.digest)
        .collect();
    let mut want = vec![digest(1), digest(2), digest(3)];
    want.sort();
    assert_eq!(listed, want);
    let feed = store.manifest_changes(0, 100).await.unwrap();
    assert_eq!(feed.len(), 3, "{feed:?}");
    let e = store.index_entries_after(None, 10).await.unwrap();
    assert_eq!(e.len(), 3);
}

/// A bulk import whose producer stops without committing stores nothing at all.
pub async fn bulk_import_is_all_or_nothing(store: &dyn Store) {
    store.put_manifest(&manifest(1), t(0)).await.unwrap();
    let head = store.manifest_change_head().await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let sender = async move {
        for n in 2..6 {
            tx.send(BulkItem::Manifest(Box::new(manifest(n))))
                .await
                .unwrap();
        }
        // Dropped without Commit: a producer that hit bad input.
    };
    let (outcome, ()) = tokio::join!(store.put_manifests(rx, t(5)), sender);
    let err = outcome.unwrap_err();
    assert!(
        matches!(&err, StoreError::Invalid(m) if m.contains("none of its 4")),
        "{err}"
    );
    assert_eq!(store.list_manifests(None, 10).await.unwrap().len(), 1);
    assert_eq!(store.manifest_change_head().await.unwrap(), head);
    // The store is usable afterwards.
    store.put_manifest(&manifest(9), t(6)).await.unwrap();
}

/// Label values of listed manifests, for those that have the label.
pub async fn manifest_labels_by_id(store: &dyn Store) {
    let mut a = manifest(1);
    a.labels = [("image".to_string(), "quay.io/a:1".to_string())].into();
    let (ia, _) = store.put_manifest(&a, t(0)).await.unwrap();
    let mut b = manifest(2);
    b.labels = [("team".to_string(), "x".to_string())].into();
    let (ib, _) = store.put_manifest(&b, t(0)).await.unwrap();
    let got = store
        .manifest_labels(&[ia, ib, 4242], "image")
        .await
        .unwrap();
    assert_eq!(got, [(ia, "quay.io/a:1".to_string())].into());
    assert!(store
        .manifest_labels(&[], "image")
        .await
        .unwrap()
        .is_empty());
}

fn ids_n(d: &Digest) -> u32 {
    let hex = d.as_str().trim_start_matches("sha256:");
    u32::from_str_radix(&hex[56..], 16).unwrap_or(u32::MAX)
}

// ---- manifest change feed -------------------------------------------------------------------

/// The whole feed, read in pages of `page` entries, checking each page's bounds on the way.
async fn feed_from(store: &dyn Store, after: u64, page: usize) -> Vec<ManifestChange> {
    let mut all = Vec::new();
    let mut after = after;
    loop {
        let got = store.manifest_changes(after, page).await.unwrap();
        assert!(got.len() <= page, "asked for {page}, got {}", got.len());
        if got.is_empty() {
            break;
        }
        if let Some(first) = got.first() {
            assert!(first.seq > after, "entry {first:?} is not after {after}");
        }
        after = got.last().map_or(after, |c| c.seq);
        all.extend(got);
    }
    all
}

/// `(id, digest, deleted)` of each entry, in feed order.
fn feed_shape(feed: &[ManifestChange]) -> Vec<(ManifestId, Digest, bool)> {
    feed.iter()
        .map(|c| (c.id, c.digest.clone(), c.deleted))
        .collect()
}

fn assert_strictly_increasing(feed: &[ManifestChange]) {
    for w in feed.windows(2) {
        assert!(
            w[0].seq < w[1].seq,
            "feed positions do not strictly increase: {:?} then {:?}",
            w[0],
            w[1]
        );
    }
}

/// Puts list in commit order with strictly increasing positions, all above 0.
pub async fn manifest_feed_order(store: &dyn Store) {
    let mut want = Vec::new();
    for n in [5u32, 3, 9, 1] {
        let (id, _) = store.put_manifest(&manifest(n), t(0)).await.unwrap();
        want.push((id, digest(n), false));
    }
    let feed = store.manifest_changes(0, 100).await.unwrap();
    assert_eq!(feed_shape(&feed), want);
    assert_strictly_increasing(&feed);
    assert!(feed[0].seq > 0, "0 means \"from the start\": {:?}", feed[0]);
}

/// Creation, replacement and deletion are each recorded as the manifest's latest change.
pub async fn manifest_feed_records_created_replaced_deleted(store: &dyn Store) {
    let (a, _) = store.put_manifest(&manifest(1), t(0)).await.unwrap();
    let (b, _) = store.put_manifest(&manifest(2), t(0)).await.unwrap();
    let (c, _) = store.put_manifest(&manifest(3), t(0)).await.unwrap();
    let mut changed = manifest(2);
    changed.labels.insert("team".into(), "payments".into());
    assert_eq!(
        store.put_manifest(&changed, t(60)).await.unwrap(),
        (b, PutOutcome::Replaced)
    );
    let feed = store.manifest_changes(0, 100).await.unwrap();
    assert_eq!(
        feed_shape(&feed),
        vec![
            (a, digest(1), false),
            (c, digest(3), false),
            (b, digest(2), false)
        ]
    );
    assert!(store.delete_manifest(&digest(1)).await.unwrap());
    let feed = store.manifest_changes(0, 100).await.unwrap();
    assert_eq!(
        feed_shape(&feed),
        vec![
            (c, digest(3), false),
            (b, digest(2), false),
            (a, digest(1), true)
        ]
    );
    assert_strictly_increasing(&feed);
}

/// An unchanged put records nothing: neither a new position nor a moved entry.
pub async fn manifest_feed_unchanged_put_writes_nothing(store: &dyn Store) {
    store.put_manifest(&manifest(1), t(0)).await.unwrap();
    store.put_manifest(&manifest(2), t(0)).await.unwrap();
    let before = store.manifest_changes(0, 100).await.unwrap();
    let head = store.manifest_change_head().await.unwrap();
    let (_, outcome) = store.put_manifest(&manifest(1), t(60)).await.unwrap();
    assert_eq!(outcome, PutOutcome::Unchanged);
    assert_eq!(store.manifest_changes(0, 100).await.unwrap(), before);
    assert_eq!(store.manifest_change_head().await.unwrap(), head);
    assert!(store.manifest_changes(head, 100).await.unwrap().is_empty());
}

/// A manifest changed twice appears once, at its newer position, past everything before it.
pub async fn manifest_feed_keeps_latest_change_only(store: &dyn Store) {
    let (a, _) = store.put_manifest(&manifest(1), t(0)).await.unwrap();
    let first = store.manifest_change_head().await.unwrap();
    let (b, _) = store.put_manifest(&manifest(2), t(0)).await.unwrap();
    let mut changed = manifest(1);
    changed.report.packages.clear();
    store.put_manifest(&changed, t(60)).await.unwrap();
    let feed = store.manifest_changes(0, 100).await.unwrap();
    assert_eq!(
        feed_shape(&feed),
        vec![(b, digest(2), false), (a, digest(1), false)]
    );
    assert!(
        feed[1].seq > first,
        "the newer change reuses position {first}"
    );
    assert_strictly_increasing(&feed);
    // A reader that had applied the first put sees the replacement, not the untouched manifest 2
    // twice.
    let since_first = store.manifest_changes(first, 100).await.unwrap();
    assert_eq!(feed_shape(&since_first), feed_shape(&feed));
}

/// Pages continue strictly after `after`, hold at most `limit` entries, and together are the feed.
pub async fn manifest_feed_paging(store: &dyn Store) {
    for n in 0..17u32 {
        store.put_manifest(&manifest(n), t(0)).await.unwrap();
    }
    for n in [4u32, 11] {
        assert!(store.delete_manifest(&digest(n)).await.unwrap());
    }
    let mut changed = manifest(7);
    changed.labels.clear();
    store.put_manifest(&changed, t(1)).await.unwrap();
    let whole = store.manifest_changes(0, 1000).await.unwrap();
    assert_eq!(whole.len(), 17);
    assert_strictly_increasing(&whole);
    for page in [1, 3, 5, 17, 100] {
        assert_eq!(feed_from(store, 0, page).await, whole, "page size {page}");
    }
    let mid = whole[8].seq;
    assert_eq!(feed_from(store, mid, 4).await, whole[9..].to_vec());
    assert!(store.manifest_changes(0, 0).await.unwrap().is_empty());
    let last = whole[16].seq;
    assert!(store.manifest_changes(last, 10).await.unwrap().is_empty());
    assert!(store
        .manifest_changes(u64::MAX, 10)
        .await
        .unwrap()
        .is_empty());
}

/// The head is 0 on an empty store and the last entry's position after every change.
pub async fn manifest_feed_head(store: &dyn Store) {
    assert_eq!(store.manifest_change_head().await.unwrap(), 0);
    assert!(store.manifest_changes(0, 10).await.unwrap().is_empty());
    async fn head_is_last(store: &dyn Store) -> u64 {
        let head = store.manifest_change_head().await.unwrap();
        let feed = store.manifest_changes(0, 100).await.unwrap();
        assert_eq!(Some(head), feed.last().map(|c| c.seq), "feed {feed:?}");
        head
    }
    let mut heads = Vec::new();
    store.put_manifest(&manifest(1), t(0)).await.unwrap();
    heads.push(head_is_last(store).await);
    store.put_manifest(&manifest(2), t(0)).await.unwrap();
    heads.push(head_is_last(store).await);
    let mut changed = manifest(1);
    changed.labels.clear();
    store.put_manifest(&changed, t(0)).await.unwrap();
    heads.push(head_is_last(store).await);
    assert!(store.delete_manifest(&digest(2)).await.unwrap());
    heads.push(head_is_last(store).await);
    assert!(
        heads.windows(2).all(|w| w[0] < w[1]),
        "the head must advance with every change: {heads:?}"
    );
}

/// Deleting a digest that is not stored (never, or no longer) records nothing.
pub async fn manifest_feed_delete_unknown_writes_nothing(store: &dyn Store) {
    assert!(!store.delete_manifest(&digest(9)).await.unwrap());
    assert_eq!(store.manifest_change_head().await.unwrap(), 0);
    store.put_manifest(&manifest(1), t(0)).await.unwrap();
    assert!(store.delete_manifest(&digest(1)).await.unwrap());
    let before = store.manifest_changes(0, 100).await.unwrap();
    let head = store.manifest_change_head().await.unwrap();
    assert!(!store.delete_manifest(&digest(1)).await.unwrap());
    assert!(!store.delete_manifest(&digest(9)).await.unwrap());
    assert_eq!(store.manifest_changes(0, 100).await.unwrap(), before);
    assert_eq!(store.manifest_change_head().await.unwrap(), head);
}

/// A digest deleted and stored again gets a new id; the feed is keyed by id, so it keeps the old
/// id's delete (a reader that indexed the old id must drop it) and adds the new id's creation.
pub async fn manifest_feed_delete_and_reput_keeps_both_ids(store: &dyn Store) {
    let (old, _) = store.put_manifest(&manifest(1), t(0)).await.unwrap();
    let reader_at = store.manifest_change_head().await.unwrap();
    assert!(store.delete_manifest(&digest(1)).await.unwrap());
    let (new, outcome) = store.put_manifest(&manifest(1), t(60)).await.unwrap();
    assert_eq!(outcome, PutOutcome::Created);
    assert_ne!(new, old, "ids are never reused");
    let feed = store.manifest_changes(reader_at, 100).await.unwrap();
    assert_eq!(
        feed_shape(&feed),
        vec![(old, digest(1), true), (new, digest(1), false)]
    );
    assert_strictly_increasing(&feed);
    // Deleting the new id again moves only the new id's entry.
    assert!(store.delete_manifest(&digest(1)).await.unwrap());
    let feed = store.manifest_changes(0, 100).await.unwrap();
    assert_eq!(
        feed_shape(&feed),
        vec![(old, digest(1), true), (new, digest(1), true)]
    );
}

/// A reader that replays the feed onto what it had (nothing, or a snapshot taken at some head)
/// ends with exactly the stored manifests, ids included.
pub async fn manifest_feed_replay_matches_manifests(store: &dyn Store) {
    async fn live(store: &dyn Store) -> BTreeMap<ManifestId, Digest> {
        store
            .index_entries_after(None, 1000)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.id, e.digest))
            .collect()
    }
    fn replay(
        mut state: BTreeMap<ManifestId, Digest>,
        feed: &[ManifestChange],
    ) -> BTreeMap<ManifestId, Digest> {
        for c in feed {
            if c.deleted {
                state.remove(&c.id);
            } else {
                state.insert(c.id, c.digest.clone());
            }
        }
        state
    }
    for n in 0..8u32 {
        store.put_manifest(&manifest(n), t(0)).await.unwrap();
    }
    let snapshot_head = store.manifest_change_head().await.unwrap();
    let snapshot = live(store).await;
    // Deletes, re-puts, replacements and no-ops in an order that moves entries around.
    for step in 0..24u32 {
        let n = (step * 5) % 11;
        match step % 4 {
            0 => {
                store.delete_manifest(&digest(n)).await.unwrap();
            }
            1 => {
                let mut m = manifest(n);
                m.labels.insert("step".into(), step.to_string());
                store.put_manifest(&m, t(i64::from(step))).await.unwrap();
            }
            _ => {
                store
                    .put_manifest(&manifest(n), t(i64::from(step)))
                    .await
                    .unwrap();
            }
        }
    }
    let want = live(store).await;
    let whole = feed_from(store, 0, 4).await;
    assert_strictly_increasing(&whole);
    assert_eq!(replay(BTreeMap::new(), &whole), want);
    let since = feed_from(store, snapshot_head, 3).await;
    assert_eq!(replay(snapshot, &since), want);
}

/// Concurrent writers never share or reorder a position: every change is in the feed once.
pub async fn manifest_feed_concurrent_writers(store: &dyn Store) {
    let writer = |base: u32| async move {
        let mut ids = Vec::new();
        for n in base..base + 10 {
            let (id, _) = store.put_manifest(&manifest(n), t(0)).await.unwrap();
            ids.push(id);
        }
        ids
    };
    let (a, b, c) = tokio::join!(writer(0), writer(100), writer(200));
    let feed = feed_from(store, 0, 7).await;
    assert_strictly_increasing(&feed);
    let mut listed: Vec<ManifestId> = feed.iter().map(|c| c.id).collect();
    listed.sort_unstable();
    let mut written: Vec<ManifestId> = a.into_iter().chain(b).chain(c).collect();
    written.sort_unstable();
    assert_eq!(listed, written);
    assert_eq!(
        store.manifest_change_head().await.unwrap(),
        feed.last().map_or(0, |c| c.seq)
    );
}

// ---- feeds ----------------------------------------------------------------------------------

/// An import creates an update operation with a UUID ref, the fingerprint and the date.
pub async fn import_creates_operation(store: &dyn Store) {
    let vulns = [
        vuln("debian", "DSA-1-1", "1.0"),
        vuln("debian", "DSA-2-1", "2.0"),
    ];
    let out = store
        .import_snapshot("debian", "fp-1", &addressed(&vulns), t(0))
        .await
        .unwrap();
    let ImportOutcome::Created(op) = out else {
        panic!("expected Created, got {out:?}")
    };
    assert!(
        Uuid::parse_str(&op.reference).is_ok(),
        "ref {:?}",
        op.reference
    );
    assert_eq!(
        (
            op.updater.as_str(),
            op.fingerprint.as_str(),
            op.kind.as_str()
        ),
        ("debian", "fp-1", "vulnerability")
    );
    let date =
        OffsetDateTime::parse(&op.date, &time::format_description::well_known::Rfc3339).unwrap();
    assert_eq!(date, t(0));
    assert_eq!(store.update_operations("debian").await.unwrap(), vec![op]);
}

/// Re-importing the latest fingerprint stores nothing and returns the latest operation.
pub async fn import_identical_fingerprint_unchanged(store: &dyn Store) {
    let v1 = [vuln("debian", "DSA-1-1", "1.0")];
    let op1 = import(store, "debian", "fp-1", &v1, t(0)).await;
    let again = store
        .import_snapshot(
            "debian",
            "fp-1",
            &addressed(&[vuln("debian", "DSA-9-1", "9")]),
            t(60),
        )
        .await
        .unwrap();
    match again {
        ImportOutcome::Unchanged(op) => assert_eq!(op.reference, op1.to_string()),
        other => panic!("expected Unchanged, got {other:?}"),
    }
    assert_eq!(store.update_operations("debian").await.unwrap().len(), 1);
    assert!(store
        .vulnerabilities(&[vuln("debian", "DSA-9-1", "9").id()])
        .await
        .unwrap()
        .is_empty());
    // Only the latest operation counts: going back to an older fingerprint is a new snapshot.
    import(store, "debian", "fp-2", &v1, t(120)).await;
    import(store, "debian", "fp-1", &v1, t(180)).await;
    assert_eq!(store.update_operations("debian").await.unwrap().len(), 3);
}

/// A vulnerability present in several snapshots (or twice in one) is one record.
pub async fn import_deduplicates_vulnerabilities(store: &dyn Store) {
    let (a, b, c) = (
        vuln("debian", "DSA-1-1", "1.0"),
        vuln("debian", "DSA-2-1", "2.0"),
        vuln("debian", "DSA-3-1", "3.0"),
    );
    let op1 = import(
        store,
        "debian",
        "fp-1",
        &[a.clone(), b.clone(), a.clone()],
        t(0),
    )
    .await;
    let op2 = import(store, "debian", "fp-2", &[b.clone(), c.clone()], t(60)).await;
    let mut want1 = vec![a.id(), b.id()];
    want1.sort();
    assert_eq!(store.operation_vulnerabilities(op1).await.unwrap(), want1);
    let ids2 = store.operation_vulnerabilities(op2).await.unwrap();
    assert!(ids2.contains(&b.id()));
    let got = store.vulnerabilities(&[b.id()]).await.unwrap();
    assert_eq!(got, vec![(b.id(), b)]);
    let info = store.updaters().await.unwrap();
    assert_eq!(info[0].vulnerabilities, 2);
}

/// Consecutive snapshots sharing records (a store may skip re-sending bodies it holds) leave
/// every record of every operation readable, exactly, also after garbage collection and when a
/// record of an older operation comes back.
pub async fn import_incremental_snapshots_keep_every_body(store: &dyn Store) {
    let vulns: Vec<Vulnerability> = (0..6)
        .map(|i| vuln("debian", &format!("DSA-{i}-1"), "1"))
        .collect();
    let op1 = import(store, "debian", "fp-1", &vulns[..4], t(0)).await;
    let op2 = import(store, "debian", "fp-2", &vulns[2..5], t(60)).await;
    store.collect_garbage(t(120), Duration::ZERO).await.unwrap();
    // DSA-0 is back from op1, DSA-2..4 are op2's, DSA-5 is new.
    let third = [
        vulns[0].clone(),
        vulns[2].clone(),
        vulns[3].clone(),
        vulns[4].clone(),
        vulns[5].clone(),
    ];
    let op3 = import(store, "debian", "fp-3", &third, t(180)).await;
    for (op, want) in [(op1, &vulns[..4]), (op2, &vulns[2..5]), (op3, &third[..])] {
        let mut ids: Vec<VulnId> = want.iter().map(Vulnerability::id).collect();
        ids.sort();
        assert_eq!(store.operation_vulnerabilities(op).await.unwrap(), ids);
        let got = store.vulnerabilities(&ids).await.unwrap();
        let mut expected: Vec<(VulnId, Vulnerability)> =
            want.iter().map(|v| (v.id(), v.clone())).collect();
        expected.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(got, expected);
    }
}

/// A snapshot with a bad record is refused whole: no operation, no vulnerability, no updater.
pub async fn import_is_all_or_nothing(store: &dyn Store) {
    let good = vuln("debian", "DSA-1-1", "1.0");
    let foreign = vuln("osv/go", "GO-2020-0001", "1.6.0");
    let err = store
        .import_snapshot("debian", "fp-1", &addressed(&[good.clone(), foreign]), t(0))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    assert!(store.update_operations("debian").await.unwrap().is_empty());
    assert!(store
        .vulnerabilities(&[good.id()])
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .updaters()
        .await
        .unwrap()
        .iter()
        .all(|u| u.operations == 0));
}

/// Operations are listed newest first, per updater.
pub async fn update_operations_newest_first(store: &dyn Store) {
    let v = [vuln("debian", "DSA-1-1", "1.0")];
    let ops = [
        import(store, "debian", "fp-1", &v, t(0)).await,
        import(store, "debian", "fp-2", &v, t(60)).await,
        import(store, "debian", "fp-3", &v, t(120)).await,
    ];
    import(
        store,
        "osv/go",
        "fp-1",
        &[vuln("osv/go", "GO-1", "1")],
        t(90),
    )
    .await;
    let listed: Vec<String> = store
        .update_operations("debian")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.reference)
        .collect();
    assert_eq!(
        listed,
        ops.iter().rev().map(|u| u.to_string()).collect::<Vec<_>>()
    );
    assert_eq!(store.update_operations("osv/go").await.unwrap().len(), 1);
    assert!(store.update_operations("nobody").await.unwrap().is_empty());
}

/// An operation's vulnerability ids are exactly its snapshot's, sorted; unknown ops are refused.
pub async fn operation_vulnerabilities_exact_set(store: &dyn Store) {
    let vulns: Vec<Vulnerability> = (0..50)
        .map(|i| vuln("debian", &format!("DSA-{i}-1"), "1.0"))
        .collect();
    let op1 = import(store, "debian", "fp-1", &vulns, t(0)).await;
    let op2 = import(store, "debian", "fp-2", &vulns[10..20], t(60)).await;
    let op3 = import(store, "debian", "fp-3", &[], t(120)).await;
    let mut want: Vec<_> = vulns.iter().map(Vulnerability::id).collect();
    want.sort();
    assert_eq!(store.operation_vulnerabilities(op1).await.unwrap(), want);
    let mut want2: Vec<_> = vulns[10..20].iter().map(Vulnerability::id).collect();
    want2.sort();
    assert_eq!(store.operation_vulnerabilities(op2).await.unwrap(), want2);
    assert!(store
        .operation_vulnerabilities(op3)
        .await
        .unwrap()
        .is_empty());
    let err = store
        .operation_vulnerabilities(Uuid::from_u128(7))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
}

/// `vulnerabilities` returns what it knows in the order asked and skips the rest.
pub async fn vulnerabilities_skip_unknown_keep_order(store: &dyn Store) {
    let (a, b, c) = (
        vuln("debian", "DSA-1-1", "1.0"),
        vuln("debian", "DSA-2-1", "2.0"),
        vuln("debian", "DSA-3-1", "3.0"),
    );
    import(
        store,
        "debian",
        "fp-1",
        &[a.clone(), b.clone(), c.clone()],
        t(0),
    )
    .await;
    let unknown = vuln("debian", "DSA-4-1", "4.0").id();
    let got = store
        .vulnerabilities(&[c.id(), unknown, a.id(), b.id()])
        .await
        .unwrap();
    assert_eq!(got, vec![(c.id(), c), (a.id(), a), (b.id(), b)]);
    assert!(store.vulnerabilities(&[]).await.unwrap().is_empty());
}

/// `updaters` reports the latest operation, counts and the processed mark.
pub async fn updaters_info(store: &dyn Store) {
    let v: Vec<Vulnerability> = (0..3)
        .map(|i| vuln("debian", &format!("DSA-{i}-1"), "1"))
        .collect();
    let op1 = import(store, "debian", "fp-1", &v, t(0)).await;
    let op2 = import(store, "debian", "fp-2", &v[..2], t(60)).await;
    import(store, "osv/go", "g-1", &[vuln("osv/go", "GO-1", "1")], t(0)).await;
    store
        .commit_processed(&processed("debian", None, op1, None))
        .await
        .unwrap();
    let info = store.updaters().await.unwrap();
    assert_eq!(
        info.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(),
        ["debian", "osv/go"]
    );
    let d = &info[0];
    assert_eq!(
        d.latest.as_ref().map(|o| o.reference.clone()),
        Some(op2.to_string())
    );
    assert_eq!(
        (d.operations, d.vulnerabilities, d.processed),
        (2, 2, Some(op1))
    );
    assert_eq!(
        (
            info[1].operations,
            info[1].vulnerabilities,
            info[1].processed
        ),
        (1, 1, None)
    );
}

// ---- processing -----------------------------------------------------------------------------

/// Each commit moves the processed mark to its operation.
pub async fn commit_processed_sets_mark(store: &dyn Store) {
    let v = [vuln("debian", "DSA-1-1", "1.0")];
    let op1 = import(store, "debian", "fp-1", &v, t(0)).await;
    let op2 = import(store, "debian", "fp-2", &[], t(60)).await;
    store
        .commit_processed(&processed("debian", None, op1, None))
        .await
        .unwrap();
    assert_eq!(store.updaters().await.unwrap()[0].processed, Some(op1));
    store
        .commit_processed(&processed("debian", Some(op1), op2, None))
        .await
        .unwrap();
    assert_eq!(store.updaters().await.unwrap()[0].processed, Some(op2));
}

/// A commit whose `prev` is not the mark is a Conflict and writes nothing.
pub async fn commit_processed_conflict_writes_nothing(store: &dyn Store) {
    let op1 = import(
        store,
        "debian",
        "fp-1",
        &[vuln("debian", "DSA-1-1", "1.0")],
        t(0),
    )
    .await;
    let op2 = import(store, "debian", "fp-2", &[], t(60)).await;
    let stale = processed(
        "debian",
        Some(Uuid::from_u128(99)),
        op1,
        Some((1, 5, &["webhook"])),
    );
    let err = store.commit_processed(&stale).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert_eq!(store.change_set(op1).await.unwrap(), None);
    assert_eq!(
        store.notification_set(Uuid::from_u128(1)).await.unwrap(),
        None
    );
    assert_eq!(store.updaters().await.unwrap()[0].processed, None);
    assert_eq!(store.backlog().await.unwrap(), Backlog::default());
    // The loser of a race: both read mark None, the first commits, the second conflicts.
    store
        .commit_processed(&processed("debian", None, op1, Some((2, 1, &["webhook"]))))
        .await
        .unwrap();
    let err = store
        .commit_processed(&processed("debian", None, op2, Some((3, 1, &["webhook"]))))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert_eq!(
        store.notification_set(Uuid::from_u128(3)).await.unwrap(),
        None
    );
    assert_eq!(store.change_set(op2).await.unwrap(), None);
    assert_eq!(store.updaters().await.unwrap()[0].processed, Some(op1));
}

/// Parts naming another updater or operation, or an unknown operation, are refused.
pub async fn commit_processed_rejects_mismatched_parts(store: &dyn Store) {
    let op1 = import(store, "debian", "fp-1", &[], t(0)).await;
    let go = import(store, "osv/go", "fp-1", &[], t(0)).await;
    let mut wrong_cs = processed("debian", None, op1, None);
    wrong_cs.change_set.cur = go;
    let mut wrong_set = processed("debian", None, op1, Some((1, 1, &["webhook"])));
    if let Some(s) = wrong_set.notifications.as_mut() {
        s.operation = Some(go);
    }
    for (what, p) in [
        ("change set of another operation", wrong_cs),
        ("set of another operation", wrong_set),
        (
            "operation of another updater",
            processed("debian", None, go, None),
        ),
        (
            "unknown operation",
            processed("debian", None, Uuid::from_u128(5), None),
        ),
    ] {
        let err = store.commit_processed(&p).await.unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{what}: {err}");
    }
    assert_eq!(store.change_set(op1).await.unwrap(), None);
    assert!(store
        .updaters()
        .await
        .unwrap()
        .iter()
        .all(|u| u.processed.is_none()));
}

/// A change that touched no manifest commits without a notification set.
pub async fn commit_without_notification_set(store: &dyn Store) {
    let op1 = import(store, "debian", "fp-1", &[], t(0)).await;
    store
        .commit_processed(&processed("debian", None, op1, None))
        .await
        .unwrap();
    assert!(store.change_set(op1).await.unwrap().is_some());
    assert!(store
        .notification_sets(None, None, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.backlog().await.unwrap(), Backlog::default());
}

/// A commit with a set stores its entries and one created receipt per channel.
pub async fn commit_with_notification_set(store: &dyn Store) {
    let op1 = import(store, "debian", "fp-1", &[], t(0)).await;
    store
        .commit_processed(&processed(
            "debian",
            None,
            op1,
            Some((1, 3, &["webhook", "amqp"])),
        ))
        .await
        .unwrap();
    let info = store
        .notification_set(Uuid::from_u128(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (info.updater.as_str(), info.operation, info.entries),
        ("debian", Some(op1), 3)
    );
    assert_eq!(
        (info.status, info.created_at),
        (ReceiptStatus::Created, t(0))
    );
    assert_eq!(info.receipts.len(), 2);
    for r in &info.receipts {
        assert_eq!(
            (r.status, r.attempts, r.next_attempt_at, r.delivered_at),
            (ReceiptStatus::Created, 0, Some(t(0)), None)
        );
    }
    let (page, next) = store
        .notification_page(Uuid::from_u128(1), 0, 10)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((page, next), ((0..3).map(entry).collect(), None));
    assert_eq!(store.backlog().await.unwrap().created, 2);
}

/// The change set comes back exactly as committed.
pub async fn change_set_round_trip(store: &dyn Store) {
    let op1 = import(store, "debian", "fp-1", &[], t(0)).await;
    let mut p = processed("debian", None, op1, None);
    p.change_set.changes.push(VulnChange {
        old: Some(vuln("debian", "DSA-2-1", "1").id()),
        new: None,
        old_affected: affected(&[3, 4, 70_000, 1 << 31]),
        new_affected: affected(&[]),
    });
    name_digests(&mut p.change_set);
    store.commit_processed(&p).await.unwrap();
    assert_eq!(store.change_set(op1).await.unwrap(), Some(p.change_set));
    assert_eq!(store.change_set(Uuid::from_u128(3)).await.unwrap(), None);
}

/// Test-mode sets (no operation) are stored like any other; ids are unique.
pub async fn create_notification_set_test_mode(store: &dyn Store) {
    store
        .create_notification_set(&new_set(1, 2, &["webhook"], t(0)))
        .await
        .unwrap();
    let info = store
        .notification_set(Uuid::from_u128(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (info.operation, info.entries, info.status),
        (None, 2, ReceiptStatus::Created)
    );
    let err = store
        .create_notification_set(&new_set(1, 1, &[], t(1)))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    let err = store
        .create_notification_set(&new_set(2, 1, &["a", "a"], t(1)))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    assert_eq!(
        store.notification_set(Uuid::from_u128(2)).await.unwrap(),
        None
    );
}

// ---- notifications --------------------------------------------------------------------------

/// Paging a 1,000-entry set with any page size sees every entry once, in order.
pub async fn notification_paging_every_entry_once(store: &dyn Store) {
    let set = new_set(1, 1000, &[], t(0));
    store.create_notification_set(&set).await.unwrap();
    for size in [1usize, 7, 500, 1000] {
        let mut seen = Vec::new();
        let mut after = 0;
        let mut pages = 0;
        loop {
            let (page, next) = store
                .notification_page(set.id, after, size)
                .await
                .unwrap()
                .expect("set exists");
            pages += 1;
            assert!(page.len() <= size);
            seen.extend(page);
            match next {
                Some(n) => {
                    assert!(n > after, "continuation must advance");
                    after = n;
                }
                None => break,
            }
        }
        assert_eq!(seen, set.entries, "page size {size}");
        assert_eq!(
            pages,
            1000usize.div_ceil(size),
            "page size {size}: no empty trailing page"
        );
    }
    let (rest, next) = store
        .notification_page(set.id, 1000, 10)
        .await
        .unwrap()
        .unwrap();
    assert!(rest.is_empty() && next.is_none());
}

/// An unknown set has no pages.
pub async fn notification_page_unknown_set(store: &dyn Store) {
    assert_eq!(
        store
            .notification_page(Uuid::from_u128(42), 0, 10)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.notification_set(Uuid::from_u128(42)).await.unwrap(),
        None
    );
}

/// A deleted set has no pages, shows as deleted, and cannot be deleted again.
pub async fn delete_set_ends_paging(store: &dyn Store) {
    store
        .create_notification_set(&new_set(1, 3, &["webhook", "amqp"], t(0)))
        .await
        .unwrap();
    let id = Uuid::from_u128(1);
    assert!(store.delete_notification_set(id, t(10)).await.unwrap());
    assert_eq!(store.notification_page(id, 0, 10).await.unwrap(), None);
    assert!(!store.delete_notification_set(id, t(20)).await.unwrap());
    assert!(!store
        .delete_notification_set(Uuid::from_u128(2), t(20))
        .await
        .unwrap());
    let info = store.notification_set(id).await.unwrap().unwrap();
    assert_eq!(info.status, ReceiptStatus::Deleted);
    assert!(info
        .receipts
        .iter()
        .all(|r| r.status == ReceiptStatus::Deleted && r.next_attempt_at.is_none()));
}

/// Sets list newest first, filter by overall status, and page with `after`.
pub async fn notification_sets_newest_first_with_filter(store: &dyn Store) {
    store
        .create_notification_set(&new_set(1, 1, &["webhook"], t(0)))
        .await
        .unwrap();
    store
        .create_notification_set(&new_set(2, 1, &[], t(10)))
        .await
        .unwrap();
    store
        .create_notification_set(&new_set(3, 1, &["webhook"], t(20)))
        .await
        .unwrap();
    store
        .create_notification_set(&new_set(4, 1, &["webhook"], t(30)))
        .await
        .unwrap();
    store
        .delete_notification_set(Uuid::from_u128(4), t(40))
        .await
        .unwrap();
    let ids = |v: Vec<crate::NotificationSetInfo>| {
        v.into_iter().map(|i| i.id.as_u128()).collect::<Vec<_>>()
    };
    assert_eq!(
        ids(store.notification_sets(None, None, 10).await.unwrap()),
        [4, 3, 2, 1]
    );
    assert_eq!(
        ids(store
            .notification_sets(Some(ReceiptStatus::Created), None, 10)
            .await
            .unwrap()),
        [3, 1]
    );
    assert_eq!(
        ids(store
            .notification_sets(Some(ReceiptStatus::Delivered), None, 10)
            .await
            .unwrap()),
        [2]
    );
    assert_eq!(
        ids(store
            .notification_sets(Some(ReceiptStatus::Deleted), None, 10)
            .await
            .unwrap()),
        [4]
    );
    assert!(store
        .notification_sets(Some(ReceiptStatus::DeadLetter), None, 10)
        .await
        .unwrap()
        .is_empty());
    let mut walked = Vec::new();
    let mut after = None;
    loop {
        let page = store.notification_sets(None, after, 1).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        walked.extend(ids(page));
    }
    assert_eq!(walked, [4, 3, 2, 1]);
    assert_eq!(
        ids(store
            .notification_sets(Some(ReceiptStatus::Created), Some(Uuid::from_u128(3)), 10)
            .await
            .unwrap()),
        [1]
    );
}

/// A set's status follows its least advanced receipt.
pub async fn set_status_is_least_advanced_receipt(store: &dyn Store) {
    store
        .create_notification_set(&new_set(1, 1, &["a", "b"], t(0)))
        .await
        .unwrap();
    let status = || async {
        store
            .notification_set(Uuid::from_u128(1))
            .await
            .unwrap()
            .unwrap()
            .status
    };
    let ta = claim_one(store, "a", t(1)).await;
    store
        .record_attempt(&ta, &attempt(&ta, t(1), AttemptOutcome::Delivered))
        .await
        .unwrap();
    assert_eq!(status().await, ReceiptStatus::Created);
    let tb = claim_one(store, "b", t(1)).await;
    let failed = AttemptOutcome::Failed {
        retry_at: t(100),
        dead_letter: false,
    };
    store
        .record_attempt(&tb, &attempt(&tb, t(1), failed))
        .await
        .unwrap();
    assert_eq!(status().await, ReceiptStatus::DeliveryFailed);
    let tb = claim_one(store, "b", t(100)).await;
    let dead = AttemptOutcome::Failed {
        retry_at: t(200),
        dead_letter: true,
    };
    store
        .record_attempt(&tb, &attempt(&tb, t(100), dead))
        .await
        .unwrap();
    assert_eq!(status().await, ReceiptStatus::DeadLetter);

    store
        .create_notification_set(&new_set(2, 1, &["a"], t(0)))
        .await
        .unwrap();
    let ta = claim_one(store, "a", t(2)).await;
    store
        .record_attempt(&ta, &attempt(&ta, t(2), AttemptOutcome::Delivered))
        .await
        .unwrap();
    assert_eq!(
        store
            .notification_set(Uuid::from_u128(2))
            .await
            .unwrap()
            .unwrap()
            .status,
        ReceiptStatus::Delivered
    );
}

// ---- outbox ---------------------------------------------------------------------------------

/// Only receipts of the channel whose time has come are claimed.
pub async fn claim_only_due(store: &dyn Store) {
    store
        .create_notification_set(&new_set(1, 4, &["webhook", "amqp"], t(100)))
        .await
        .unwrap();
    assert!(store
        .claim_deliveries("webhook", t(99), MINUTE, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .claim_deliveries("stomp", t(100), MINUTE, 10)
        .await
        .unwrap()
        .is_empty());
    let task = claim_one(store, "webhook", t(100)).await;
    assert_eq!(
        (
            task.set_id,
            task.channel.as_str(),
            task.attempts,
            task.entries,
            task.created_at
        ),
        (Uuid::from_u128(1), "webhook", 0, 4, t(100))
    );
    // The other channel's receipt is independent.
    let amqp = claim_one(store, "amqp", t(100)).await;
    assert_ne!(amqp.lease, task.lease);
    assert!(store
        .claim_deliveries("webhook", t(100), MINUTE, 0)
        .await
        .unwrap()
        .is_empty());
}

/// The oldest due receipts are claimed first, at most `limit` of them.
pub async fn claim_oldest_first_with_limit(store: &dyn Store) {
    for (id, at) in [(3u128, 20), (1, 0), (2, 10)] {
        store
            .create_notification_set(&new_set(id, 1, &["webhook"], t(at)))
            .await
            .unwrap();
    }
    let tasks = store
        .claim_deliveries("webhook", t(30), MINUTE, 2)
        .await
        .unwrap();
    assert_eq!(
        tasks.iter().map(|t| t.set_id.as_u128()).collect::<Vec<_>>(),
        [1, 2]
    );
    let rest = store
        .claim_deliveries("webhook", t(30), MINUTE, 2)
        .await
        .unwrap();
    assert_eq!(
        rest.iter().map(|t| t.set_id.as_u128()).collect::<Vec<_>>(),
        [3]
    );
}

/// A lease hides the receipt from other claimers until it expires.
pub async fn claim_lease_excludes_until_expiry(store: &dyn Store) {
    store
        .create_notification_set(&new_set(1, 1, &["webhook"], t(0)))
        .await
        .unwrap();
    let first = claim_one(store, "webhook", t(0)).await;
    assert!(store
        .claim_deliveries("webhook", t(30), MINUTE, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .claim_deliveries("webhook", t(59), MINUTE, 10)
        .await
        .unwrap()
        .is_empty());
    let second = claim_one(store, "webhook", t(60)).await;
    assert_ne!(first.lease, second.lease);
    assert_eq!(second.attempts, 0);
}

/// Deleted sets are never claimed.
pub async fn claim_skips_deleted_sets(store: &dyn Store) {
    store
        .create_notification_set(&new_set(1, 1, &["webhook"], t(0)))
        .await
        .unwrap();
    store
        .create_notification_set(&new_set(2, 1, &["webhook"], t(0)))
        .await
        .unwrap();
    store
        .delete_notification_set(Uuid::from_u128(1), t(1))
        .await
        .unwrap();
    let tasks = store
        .claim_deliveries("webhook", t(10), MINUTE, 10)
        .await
        .unwrap();
    assert_eq!(
        tasks.iter().map(|t| t.set_id.as_u128()).collect::<Vec<_>>(),
        [2]
    );
}

/// A delivered receipt is final: counted, timestamped, never claimed again.
pub async fn record_delivered(store: &dyn Store) {
    store
        .create_notification_set(&new_set(1, 1, &["webhook"], t(0)))
        .await
        .unwrap();
    let task = claim_one(store, "webhook", t(5)).await;
    let status = store
        .record_attempt(&task, &attempt(&task, t(5), AttemptOutcome::Delivered))
        .await
        .unwrap();
    assert_eq!(status, ReceiptStatus::Delivered);
    let r = receipt_of(store, 1, "webhook").await;
    let finished = t(5) + time::Duration::milliseconds(250);
    assert_eq!(
        (r.status, r.attempts, r.next_attempt_at, r.delivered_at),
        (ReceiptStatus::Delivered, 1, None, Some(finished))
    );
    assert!(store
        .claim_deliveries("webhook", t(1000), MINUTE, 10)
        .await
        .unwrap()
        .is_empty());
}

/// A task's `key` is only a shortcut: with keys swapped between two claimed sets, or one that
/// names no set, each attempt still lands on its own set and receipt.
pub async fn record_with_a_wrong_key(store: &dyn Store) {
    for n in 1..=3 {
        store
            .create_notification_set(&new_set(n, 1, &["webhook"], t(0)))
            .await
            .unwrap();
    }
    let mut tasks = store
        .claim_deliveries("webhook", t(5), MINUTE, 10)
        .await
        .unwrap();
    assert_eq!(tasks.len(), 3);
    let k0 = tasks[0].key;
    tasks[0].key = tasks[1].key;
    tasks[1].key = k0;
    tasks[2].key = i64::MAX;
    let batch: Vec<(DeliveryTask, Attempt)> = tasks
        .iter()
        .map(|task| (task.clone(), attempt(task, t(5), AttemptOutcome::Delivered)))
        .collect();
    let out = store.record_attempts(&batch).await.unwrap();
    assert_eq!(out.len(), 3);
    for (task, status) in tasks.iter().zip(out) {
        assert_eq!(status.unwrap(), ReceiptStatus::Delivered);
        let attempts = store.attempts(task.set_id).await.unwrap();
        assert_eq!(attempts.len(), 1, "one attempt on set {}", task.set_id);
        assert_eq!(attempts[0].set_id, task.set_id);
    }
    for n in 1..=3 {
        let r = receipt_of(store, n, "webhook").await;
        assert_eq!((r.status, r.attempts), (ReceiptStatus::Delivered, 1));
    }
}

/// A failure reschedules the receipt at `retry_at` with one more attempt.
pub async fn record_failed_reschedules(store: &dyn Store) {
    store
        .create_notification_set(&new_set(1, 1, &["webhook"], t(0)))
        .await
        .unwrap();
    let task = claim_one(store, "webhook", t(0)).await;
    let failed = AttemptOutcome::Failed {
        retry_at: t(100),
        dead_letter: false,
    };
    let status = store
        .record_attempt(&task, &attempt(&task, t(0), failed))
        .await
        .unwrap();
    assert_eq!(status, ReceiptStatus::DeliveryFailed);
    let r = receipt_of(store, 1, "webhook").await;
    assert_eq!(
        (r.status, r.attempts, r.next_attempt_at),
        (ReceiptStatus::DeliveryFailed, 1, Some(t(100)))
    );
    // Not due before retry_at, even though the lease is gone.
    assert!(store
        .claim_deliveries("webhook", t(99), MINUTE, 10)
        .await
        .unwrap()
        .is_empty());
    let retry = claim_one(store, "webhook", t(100)).await;
    assert_eq!(retry.attempts, 1);
}

/// A dead-lettered receipt is final and never claimed again.
pub async fn record_dead_letter(store: &dyn Store) {
    store
        .create_notification_set(&new_set(1, 1, &["webhook"], t(0)))
        .await
        .unwrap();
    let task = claim_one(store, "webhook", t(0)).await;
    let dead = AttemptOutcome::Failed {
        retry_at: t(100),
        dead_letter: true,
    };
    assert_eq!(
        store
            .record_attempt(&task, &attempt(&task, t(0), dead))
            .await
            .unwrap(),
        ReceiptStatus::DeadLetter
    );
    let r = receipt_of(store, 1, "webhook").await;
    assert_eq!(
        (r.status, r.attempts, r.next_attempt_at),
        (ReceiptStatus::DeadLetter, 1, None)
    );
    assert!(store
        .claim_deliveries("webhook", t(10_000), MINUTE, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.backlog().await.unwrap().dead_letter, 1);
}

/// A worker whose lease expired and was re-claimed cannot move the receipt.
pub async fn record_lost_lease_conflict(store: &dyn Store) {
    store
        .create_notification_set(&new_set(1, 1, &["webhook"], t(0)))
        .await
        .unwrap();
    let slow = claim_one(store, "webhook", t(0)).await;
    let fast = claim_one(store, "webhook", t(61)).await;
    let err = store
        .record_attempt(&slow, &attempt(&slow, t(70), AttemptOutcome::Delivered))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    let r = receipt_of(store, 1, "webhook").await;
    assert_eq!((r.status, r.attempts), (ReceiptStatus::Created, 0));
    let failed = AttemptOutcome::Failed {
        retry_at: t(200),
        dead_letter: false,
    };
    assert_eq!(
        store
            .record_attempt(&fast, &attempt(&fast, t(80), failed))
            .await
            .unwrap(),
        ReceiptStatus::DeliveryFailed
    );
    // Both attempts happened, so both are in the history.
    assert_eq!(store.attempts(slow.set_id).await.unwrap().len(), 2);
    // A lease is single-use: presenting it again after it was applied is a conflict too.
    let err = store
        .record_attempt(&fast, &attempt(&fast, t(90), AttemptOutcome::Delivered))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert_eq!(
        receipt_of(store, 1, "webhook").await.status,
        ReceiptStatus::DeliveryFailed
    );
}

/// A set deleted while a worker holds a lease stays deleted; only the attempt is recorded.
pub async fn record_delete_during_lease(store: &dyn Store) {
    store
        .create_notification_set(&new_set(1, 1, &["webhook"], t(0)))
        .await
        .unwrap();
    let task = claim_one(store, "webhook", t(0)).await;
    assert!(store
        .delete_notification_set(task.set_id, t(1))
        .await
        .unwrap());
    let status = store
        .record_attempt(&task, &attempt(&task, t(2), AttemptOutcome::Delivered))
        .await
        .unwrap();
    assert_eq!(status, ReceiptStatus::Deleted);
    let info = store.notification_set(task.set_id).await.unwrap().unwrap();
    assert_eq!(info.status, ReceiptStatus::Deleted);
    assert_eq!(
        (info.receipts[0].status, info.receipts[0].attempts),
        (ReceiptStatus::Deleted, 0)
    );
    assert_eq!(store.attempts(task.set_id).await.unwrap().len(), 1);
    assert_eq!(
        store.notification_page(task.set_id, 0, 10).await.unwrap(),
        None
    );
}

/// Direct delivery ends the set: delivered on its channel, deleted everywhere else.
pub async fn record_delivered_and_deleted(store: &dyn Store) {
    store
        .create_notification_set(&new_set(1, 2, &["amqp", "webhook"], t(0)))
        .await
        .unwrap();
    let task = claim_one(store, "amqp", t(0)).await;
    let status = store
        .record_attempt(
            &task,
            &attempt(&task, t(0), AttemptOutcome::DeliveredAndDeleted),
        )
        .await
        .unwrap();
    assert_eq!(status, ReceiptStatus::Delivered);
    let info = store.notification_set(task.set_id).await.unwrap().unwrap();
    assert_eq!(info.status, ReceiptStatus::Deleted);
    let statuses: Vec<_> = info
        .receipts
        .iter()
        .map(|r| (r.channel.as_str(), r.status))
        .collect();
    assert_eq!(
        statuses,
        [
            ("amqp", ReceiptStatus::Delivered),
            ("webhook", ReceiptStatus::Deleted)
        ]
    );
    assert_eq!(
        store.notification_page(task.set_id, 0, 10).await.unwrap(),
        None
    );
    assert!(store
        .claim_deliveries("webhook", t(10), MINUTE, 10)
        .await
        .unwrap()
        .is_empty());
}

/// An attempt must be for the task's set and channel.
pub async fn record_attempt_rejects_foreign_attempt(store: &dyn Store) {
    store
        .create_notification_set(&new_set(1, 1, &["webhook"], t(0)))
        .await
        .unwrap();
    let task = claim_one(store, "webhook", t(0)).await;
    let mut a = attempt(&task, t(0), AttemptOutcome::Delivered);
    a.set_id = Uuid::from_u128(2);
    let err = store.record_attempt(&task, &a).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    assert!(store.attempts(task.set_id).await.unwrap().is_empty());
    assert_eq!(
        receipt_of(store, 1, "webhook").await.status,
        ReceiptStatus::Created
    );
}

/// The attempt history is append-only, oldest first, with every field kept.
pub async fn attempts_history_order(store: &dyn Store) {
    store
        .create_notification_set(&new_set(1, 1, &["webhook"], t(0)))
        .await
        .unwrap();
    let mut want = Vec::new();
    for (i, at) in [0i64, 30, 90].into_iter().enumerate() {
        let task = claim_one(store, "webhook", t(at)).await;
        assert_eq!(task.attempts as usize, i);
        let outcome = if i < 2 {
            AttemptOutcome::Failed {
                retry_at: t(at + 30 * (i as i64 + 1)),
                dead_letter: false,
            }
        } else {
            AttemptOutcome::Delivered
        };
        let mut a = attempt(&task, t(at), outcome);
        a.duration_ms = 100 + i as u64;
        store.record_attempt(&task, &a).await.unwrap();
        want.push(a);
    }
    assert_eq!(store.attempts(Uuid::from_u128(1)).await.unwrap(), want);
    assert!(store.attempts(Uuid::from_u128(2)).await.unwrap().is_empty());
}

/// The backlog counts receipts by state; deleted ones are not backlog.
pub async fn backlog_counts(store: &dyn Store) {
    store
        .create_notification_set(&new_set(1, 1, &["a", "b", "c", "d"], t(0)))
        .await
        .unwrap();
    store
        .create_notification_set(&new_set(2, 1, &["a"], t(0)))
        .await
        .unwrap();
    store
        .create_notification_set(&new_set(3, 1, &["a", "b"], t(0)))
        .await
        .unwrap();
    store
        .delete_notification_set(Uuid::from_u128(3), t(1))
        .await
        .unwrap();
    let b = claim_one(store, "b", t(1)).await;
    let c = claim_one(store, "c", t(1)).await;
    let d = claim_one(store, "d", t(1)).await;
    store
        .record_attempt(
            &b,
            &attempt(
                &b,
                t(1),
                AttemptOutcome::Failed {
                    retry_at: t(50),
                    dead_letter: false,
                },
            ),
        )
        .await
        .unwrap();
    store
        .record_attempt(
            &c,
            &attempt(
                &c,
                t(1),
                AttemptOutcome::Failed {
                    retry_at: t(50),
                    dead_letter: true,
                },
            ),
        )
        .await
        .unwrap();
    store
        .record_attempt(&d, &attempt(&d, t(1), AttemptOutcome::Delivered))
        .await
        .unwrap();
    assert_eq!(
        store.backlog().await.unwrap(),
        Backlog {
            created: 2,
            failed: 1,
            dead_letter: 1,
            delivered: 1
        }
    );
}

// ---- housekeeping -----------------------------------------------------------------------------

/// GC removes deleted sets and long-delivered ones with everything they own, and keeps the rest.
pub async fn gc_removes_deleted_and_old_delivered(store: &dyn Store) {
    const DAY: i64 = 86_400;
    let week = Duration::from_secs(7 * 86_400);
    // 1: deleted. 2: delivered long ago. 3: delivered recently. 4: one channel still pending.
    // 5: no channels, old. 6: no channels, recent. 7: dead letter, old.
    for (id, channels, created) in [
        (1u128, &["webhook"][..], 0),
        (2, &["webhook"][..], 0),
        (3, &["webhook"][..], 0),
        (4, &["webhook", "amqp"][..], 0),
        (5, &[][..], 0),
        (6, &[][..], 9 * DAY),
        (7, &["stomp"][..], 0),
    ] {
        store
            .create_notification_set(&new_set(id, 3, channels, t(created)))
            .await
            .unwrap();
    }
    store
        .delete_notification_set(Uuid::from_u128(1), t(1))
        .await
        .unwrap();
    let tasks = store
        .claim_deliveries("webhook", t(1), MINUTE, 10)
        .await
        .unwrap();
    assert_eq!(tasks.len(), 3);
    for task in &tasks {
        let at = match task.set_id.as_u128() {
            2 | 4 => t(DAY),
            _ => t(9 * DAY),
        };
        store
            .record_attempt(task, &attempt(task, at, AttemptOutcome::Delivered))
            .await
            .unwrap();
    }
    let stomp = claim_one(store, "stomp", t(1)).await;
    store
        .record_attempt(
            &stomp,
            &attempt(
                &stomp,
                t(1),
                AttemptOutcome::Failed {
                    retry_at: t(2),
                    dead_letter: true,
                },
            ),
        )
        .await
        .unwrap();

    let stats = store.collect_garbage(t(10 * DAY), week).await.unwrap();
    assert_eq!(stats.sets, 3, "{stats:?}");
    for gone in [1u128, 2, 5] {
        let id = Uuid::from_u128(gone);
        assert_eq!(
            store.notification_set(id).await.unwrap(),
            None,
            "set {gone}"
        );
        assert_eq!(
            store.notification_page(id, 0, 10).await.unwrap(),
            None,
            "set {gone}"
        );
        assert!(store.attempts(id).await.unwrap().is_empty(), "set {gone}");
    }
    for kept in [3u128, 4, 6, 7] {
        assert!(
            store
                .notification_set(Uuid::from_u128(kept))
                .await
                .unwrap()
                .is_some(),
            "set {kept}"
        );
    }
    let (page, _) = store
        .notification_page(Uuid::from_u128(3), 0, 10)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(page.len(), 3);
    assert_eq!(store.attempts(Uuid::from_u128(3)).await.unwrap().len(), 1);
    assert_eq!(
        store.collect_garbage(t(10 * DAY), week).await.unwrap().sets,
        0
    );
}

/// A worker whose set was deleted and collected while it delivered is told `Deleted`.
pub async fn record_after_collection_is_deleted(store: &dyn Store) {
    store
        .create_notification_set(&new_set(1, 1, &["webhook"], t(0)))
        .await
        .unwrap();
    let task = claim_one(store, "webhook", t(0)).await;
    store
        .delete_notification_set(task.set_id, t(1))
        .await
        .unwrap();
    assert_eq!(store.collect_garbage(t(2), MINUTE).await.unwrap().sets, 1);
    let status = store
        .record_attempt(&task, &attempt(&task, t(3), AttemptOutcome::Delivered))
        .await
        .unwrap();
    assert_eq!(status, ReceiptStatus::Deleted);
    assert_eq!(store.notification_set(task.set_id).await.unwrap(), None);
}

/// GC keeps every vulnerability an operation still references.
pub async fn gc_keeps_referenced_vulnerabilities(store: &dyn Store) {
    let vulns: Vec<Vulnerability> = (0..20)
        .map(|i| vuln("debian", &format!("DSA-{i}-1"), "1"))
        .collect();
    import(store, "debian", "fp-1", &vulns[..15], t(0)).await;
    import(store, "debian", "fp-2", &vulns[5..], t(60)).await;
    let stats = store.collect_garbage(t(120), Duration::ZERO).await.unwrap();
    assert_eq!(stats.vulnerabilities, 0);
    let ids: Vec<_> = vulns.iter().map(Vulnerability::id).collect();
    assert_eq!(store.vulnerabilities(&ids).await.unwrap().len(), 20);
}

// ---- several callers at once ----------------------------------------------------------------
//
// Several processes on one database are several callers of one store here: what a backend shared
// between processes coordinates (row locks, SKIP LOCKED, advisory locks) it must coordinate
// between concurrent calls too.

/// Concurrent collections together remove each set once (one may find nothing left, or be
/// turned away while another runs).
pub async fn gc_concurrent_callers_collect_once(store: &dyn Store) {
    for n in 1..=6u128 {
        store
            .create_notification_set(&new_set(n, 3, &["webhook"], t(0)))
            .await
            .unwrap();
        store
            .delete_notification_set(Uuid::from_u128(n), t(1))
            .await
            .unwrap();
    }
    let (a, b, c) = tokio::join!(
        store.collect_garbage(t(2), MINUTE),
        store.collect_garbage(t(2), MINUTE),
        store.collect_garbage(t(2), MINUTE),
    );
    let total: u64 = [a, b, c].into_iter().map(|r| r.unwrap().sets).sum();
    assert_eq!(total, 6);
    // Whatever was turned away is collected by a later pass: nothing is left.
    store.collect_garbage(t(3), MINUTE).await.unwrap();
    assert!(store
        .notification_sets(None, None, 100)
        .await
        .unwrap()
        .is_empty());
}

/// Of several processors committing the same operation at once, exactly one wins; the others get
/// `Conflict`, and exactly one change set and one notification set exist.
pub async fn commit_processed_concurrent_one_wins(store: &dyn Store) {
    let op = import(
        store,
        "debian",
        "fp-1",
        &[vuln("debian", "DSA-1-1", "1")],
        t(0),
    )
    .await;
    let attempt = |n: u128| {
        let p = processed("debian", None, op, Some((n, 5, &["webhook"])));
        async move { store.commit_processed(&p).await }
    };
    let (a, b, c, d) = tokio::join!(attempt(1), attempt(2), attempt(3), attempt(4));
    let results = [a, b, c, d];
    let wins = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(wins, 1, "{results:?}");
    for r in &results {
        if let Err(e) = r {
            assert!(matches!(e, StoreError::Conflict(_)), "{e}");
        }
    }
    assert_eq!(
        store
            .notification_sets(None, None, 100)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(store.change_set(op).await.unwrap().is_some());
    let info = store.updaters().await.unwrap();
    assert_eq!(info[0].processed, Some(op));
}

/// Concurrent claimers never receive the same receipt, and together they receive every due one.
pub async fn claim_concurrent_claimers_disjoint(store: &dyn Store) {
    for n in 1..=40u128 {
        store
            .create_notification_set(&new_set(n, 1, &["webhook"], t(0)))
            .await
            .unwrap();
    }
    let claimer = || async {
        let mut got = Vec::new();
        loop {
            let batch = store
                .claim_deliveries("webhook", t(1), MINUTE, 3)
                .await
                .unwrap();
            if batch.is_empty() {
                return got;
            }
            got.extend(batch.into_iter().map(|task| task.set_id));
        }
    };
    let (a, b, c, d) = tokio::join!(claimer(), claimer(), claimer(), claimer());
    let mut all: Vec<Uuid> = a.into_iter().chain(b).chain(c).chain(d).collect();
    let claimed = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), claimed, "a receipt was claimed twice");
    assert_eq!(all, (1..=40u128).map(Uuid::from_u128).collect::<Vec<_>>());
}

/// A backend that announces events ([`Store::events`]) announces an import with its updater, a
/// set with channels, a manifest change, and an accepted held operation, each after it
/// committed. Backends without push
/// (`None`) have nothing to announce.
pub async fn events_follow_commits(store: &dyn Store) {
    let Some(mut rx) = store.events() else { return };
    async fn expect(
        rx: &mut tokio::sync::broadcast::Receiver<crate::StoreEvent>,
        want: crate::StoreEvent,
    ) {
        let wait = async {
            loop {
                match rx.recv().await {
                    Ok(e) if e == want => return,
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(e) => panic!("event channel closed while waiting for {want:?}: {e}"),
                }
            }
        };
        if tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .is_err()
        {
            panic!("no {want:?} event within 10 s of the commit");
        }
    }
    // The subscription may take a moment to be established; commits made before it are not
    // announced, so keep committing until the first event arrives.
    let mut n = 0u32;
    let first = async {
        loop {
            n += 1;
            store.put_manifest(&manifest(n), t(0)).await.unwrap();
            match tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
                Ok(Ok(crate::StoreEvent::ManifestChanged)) => return,
                Ok(Ok(_)) | Err(_) => {}
                Ok(Err(e)) => panic!("event channel failed: {e}"),
            }
        }
    };
    if tokio::time::timeout(Duration::from_secs(10), first)
        .await
        .is_err()
    {
        panic!("no ManifestChanged event within 10 s of manifest puts");
    }
    import(
        store,
        "debian",
        "fp-1",
        &[vuln("debian", "DSA-1-1", "1")],
        t(0),
    )
    .await;
    expect(
        &mut rx,
        crate::StoreEvent::OperationImported("debian".into()),
    )
    .await;
    store
        .create_notification_set(&new_set(1, 2, &["webhook"], t(0)))
        .await
        .unwrap();
    expect(&mut rx, crate::StoreEvent::SetCreated).await;
    assert!(store.delete_manifest(&digest(1)).await.unwrap());
    expect(&mut rx, crate::StoreEvent::ManifestChanged).await;
    // Accepting a held operation is announced like an import (holding it need not be).
    let held = hold(
        store,
        "osv/go",
        "g-1",
        &[vuln("osv/go", "GO-1", "1")],
        t(0),
        "first import",
    )
    .await;
    store
        .accept_operation("osv/go", op_id(&held.operation))
        .await
        .unwrap();
    expect(
        &mut rx,
        crate::StoreEvent::OperationImported("osv/go".into()),
    )
    .await;
}

// ---- Clair v2/v3 notifications ------------------------------------------------------------------

/// A processed update whose change set has `changes` changes, with one v2/v3 notification per
/// change (named `base + i`) and layers for digests 1..=3 (index 10 + n).
pub fn processed_with_legacy(
    updater: &str,
    prev: Option<Uuid>,
    cur: Uuid,
    changes: u32,
    base: u128,
    created_at: OffsetDateTime,
) -> ProcessedUpdate {
    let mut p = processed(updater, prev, cur, None);
    p.change_set.changes = (0..changes)
        .map(|i| VulnChange {
            old: None,
            new: Some(vuln(updater, &format!("DSA-{i}-1"), "1.0").id()),
            old_affected: affected(&[]),
            new_affected: affected(&[1, 2 + i % 2]),
        })
        .collect();
    name_digests(&mut p.change_set);
    p.legacy = Some(NewLegacyNotifications {
        notifications: (0..changes)
            .map(|i| NewLegacyNotification {
                name: Uuid::from_u128(base + u128::from(i)),
                change: i,
            })
            .collect(),
        layers: (1..=3)
            .map(|n| LegacyLayer {
                digest: digest(n),
                index: 10 + n,
                name: format!("registry.test/app:{n}"),
            })
            .collect(),
        created_at,
    });
    p
}

/// Committed v2/v3 notifications read back with their operation, change and times; the layers
/// come back in digest order; unknown names and operations are empty.
pub async fn legacy_commit_and_read(store: &dyn Store) {
    let op1 = import(store, "debian", "fp-1", &[], t(0)).await;
    let op2 = import(store, "debian", "fp-2", &[], t(60)).await;
    store
        .commit_processed(&processed_with_legacy("debian", None, op1, 3, 100, t(5)))
        .await
        .unwrap();
    store
        .commit_processed(&processed_with_legacy(
            "debian",
            Some(op1),
            op2,
            1,
            200,
            t(65),
        ))
        .await
        .unwrap();
    let n = store
        .legacy_notification(Uuid::from_u128(101))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (n.updater.as_str(), n.operation, n.change, n.created_at),
        ("debian", op1, 1, t(5))
    );
    assert_eq!((n.notified_at, n.deleted_at), (None, None));
    let all = store.legacy_notifications(op1).await.unwrap();
    assert_eq!(
        all.iter().map(|n| (n.name, n.change)).collect::<Vec<_>>(),
        vec![
            (Uuid::from_u128(100), 0),
            (Uuid::from_u128(101), 1),
            (Uuid::from_u128(102), 2)
        ]
    );
    assert_eq!(store.legacy_notifications(op2).await.unwrap().len(), 1);
    let layers = store.legacy_layers(op1).await.unwrap();
    assert_eq!(
        layers
            .iter()
            .map(|l| (l.digest.clone(), l.index, l.name.clone()))
            .collect::<Vec<_>>(),
        (1..=3)
            .map(|n| (digest(n), 10 + n, format!("registry.test/app:{n}")))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        store.legacy_notification(Uuid::from_u128(7)).await.unwrap(),
        None
    );
    assert!(store
        .legacy_notifications(Uuid::from_u128(7))
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .legacy_layers(Uuid::from_u128(7))
        .await
        .unwrap()
        .is_empty());
}

/// A notification pointing past the change set, or listed twice, or a layer listed twice, is
/// refused and nothing of the commit is written; a name already used is a Conflict.
pub async fn legacy_rejects_bad_parts(store: &dyn Store) {
    let op1 = import(store, "debian", "fp-1", &[], t(0)).await;
    let op2 = import(store, "debian", "fp-2", &[], t(60)).await;
    let mut past_end = processed_with_legacy("debian", None, op1, 2, 100, t(0));
    if let Some(l) = past_end.legacy.as_mut() {
        l.notifications[1].change = 2;
    }
    let mut twice = processed_with_legacy("debian", None, op1, 2, 100, t(0));
    if let Some(l) = twice.legacy.as_mut() {
        l.notifications[1].name = l.notifications[0].name;
    }
    let mut layer_twice = processed_with_legacy("debian", None, op1, 2, 100, t(0));
    if let Some(l) = layer_twice.legacy.as_mut() {
        let first = l.layers[0].clone();
        l.layers.push(first);
    }
    for (what, p) in [
        ("change past the end", past_end),
        ("name twice", twice),
        ("layer twice", layer_twice),
    ] {
        let err = store.commit_processed(&p).await.unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{what}: {err}");
        assert_eq!(store.change_set(op1).await.unwrap(), None, "{what}");
        assert!(store.legacy_notifications(op1).await.unwrap().is_empty());
    }
    store
        .commit_processed(&processed_with_legacy("debian", None, op1, 1, 100, t(0)))
        .await
        .unwrap();
    let err = store
        .commit_processed(&processed_with_legacy(
            "debian",
            Some(op1),
            op2,
            1,
            100,
            t(60),
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert_eq!(store.change_set(op2).await.unwrap(), None);
    assert_eq!(store.updaters().await.unwrap()[0].processed, Some(op1));
}

/// Marking read records the first time only; unknown names say so.
pub async fn legacy_mark_read(store: &dyn Store) {
    let op1 = import(store, "debian", "fp-1", &[], t(0)).await;
    store
        .commit_processed(&processed_with_legacy("debian", None, op1, 2, 100, t(0)))
        .await
        .unwrap();
    let name = Uuid::from_u128(100);
    assert_eq!(
        store.mark_legacy_read(name, t(10)).await.unwrap(),
        MarkRead::Marked
    );
    assert_eq!(
        store.mark_legacy_read(name, t(20)).await.unwrap(),
        MarkRead::AlreadyRead
    );
    assert_eq!(
        store
            .mark_legacy_read(Uuid::from_u128(5), t(20))
            .await
            .unwrap(),
        MarkRead::Unknown
    );
    let n = store.legacy_notification(name).await.unwrap().unwrap();
    assert_eq!(n.deleted_at, Some(t(10)));
    let other = store
        .legacy_notification(Uuid::from_u128(101))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(other.deleted_at, None);
}

/// The v2 webhook's schedule: due from creation, leased exclusively, re-sent at `renotify_at`
/// until read, retried at `retry_at` after a failed send, never again once read.
pub async fn legacy_claim_and_record(store: &dyn Store) {
    let op1 = import(store, "debian", "fp-1", &[], t(0)).await;
    store
        .commit_processed(&processed_with_legacy("debian", None, op1, 2, 100, t(10)))
        .await
        .unwrap();
    assert!(store
        .claim_legacy_deliveries(t(9), MINUTE, 10)
        .await
        .unwrap()
        .is_empty());
    let tasks = store
        .claim_legacy_deliveries(t(10), MINUTE, 10)
        .await
        .unwrap();
    assert_eq!(
        tasks.iter().map(|t| t.name).collect::<Vec<_>>(),
        vec![Uuid::from_u128(100), Uuid::from_u128(101)]
    );
    assert!(tasks.iter().all(|t| t.notified_at.is_none()));
    // Leased: nobody else gets them until the lease ends.
    assert!(store
        .claim_legacy_deliveries(t(30), MINUTE, 10)
        .await
        .unwrap()
        .is_empty());
    store
        .record_legacy_delivery(
            &tasks[0],
            LegacyDeliveryOutcome::Notified {
                at: t(11),
                renotify_at: Some(t(1000)),
            },
        )
        .await
        .unwrap();
    store
        .record_legacy_delivery(
            &tasks[1],
            LegacyDeliveryOutcome::Failed { retry_at: t(100) },
        )
        .await
        .unwrap();
    let n = store
        .legacy_notification(tasks[0].name)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n.notified_at, Some(t(11)));
    let again = store
        .claim_legacy_deliveries(t(100), MINUTE, 10)
        .await
        .unwrap();
    assert_eq!(
        again.iter().map(|t| t.name).collect::<Vec<_>>(),
        vec![Uuid::from_u128(101)]
    );
    store
        .record_legacy_delivery(
            &again[0],
            LegacyDeliveryOutcome::Notified {
                at: t(101),
                renotify_at: None,
            },
        )
        .await
        .unwrap();
    let renotify = store
        .claim_legacy_deliveries(t(1000), MINUTE, 10)
        .await
        .unwrap();
    assert_eq!(renotify.len(), 1, "101 is never re-sent (renotify off)");
    assert_eq!(
        (renotify[0].name, renotify[0].notified_at),
        (Uuid::from_u128(100), Some(t(11)))
    );
    // Read during the send: it stays read and is never due again.
    store
        .mark_legacy_read(Uuid::from_u128(100), t(1001))
        .await
        .unwrap();
    store
        .record_legacy_delivery(
            &renotify[0],
            LegacyDeliveryOutcome::Notified {
                at: t(1002),
                renotify_at: Some(t(2000)),
            },
        )
        .await
        .unwrap();
    assert!(store
        .claim_legacy_deliveries(t(100_000), MINUTE, 10)
        .await
        .unwrap()
        .is_empty());
    let n = store
        .legacy_notification(Uuid::from_u128(100))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (n.notified_at, n.deleted_at),
        (Some(t(1002)), Some(t(1001)))
    );
}

/// Recording under a lease that expired and was taken over is a Conflict and changes nothing.
pub async fn legacy_lost_lease_conflict(store: &dyn Store) {
    let op1 = import(store, "debian", "fp-1", &[], t(0)).await;
    store
        .commit_processed(&processed_with_legacy("debian", None, op1, 1, 100, t(0)))
        .await
        .unwrap();
    let first = store
        .claim_legacy_deliveries(t(0), MINUTE, 1)
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    // The lease ends at exactly t(60): a claim then succeeds.
    let second = store
        .claim_legacy_deliveries(t(60), MINUTE, 1)
        .await
        .unwrap();
    assert_eq!(second.len(), 1);
    let err = store
        .record_legacy_delivery(
            &first[0],
            LegacyDeliveryOutcome::Notified {
                at: t(61),
                renotify_at: None,
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    let n = store
        .legacy_notification(first[0].name)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n.notified_at, None);
    store
        .record_legacy_delivery(
            &second[0],
            LegacyDeliveryOutcome::Notified {
                at: t(62),
                renotify_at: None,
            },
        )
        .await
        .unwrap();
}

/// Garbage collection removes notifications read before the retention cut-off, and an
/// operation's layers with its last notification; unread ones stay.
pub async fn legacy_gc_removes_old_read(store: &dyn Store) {
    let op1 = import(store, "debian", "fp-1", &[], t(0)).await;
    let op2 = import(store, "debian", "fp-2", &[], t(0)).await;
    store
        .commit_processed(&processed_with_legacy("debian", None, op1, 2, 100, t(0)))
        .await
        .unwrap();
    store
        .commit_processed(&processed_with_legacy(
            "debian",
            Some(op1),
            op2,
            1,
            200,
            t(0),
        ))
        .await
        .unwrap();
    for name in [100, 101, 200] {
        store
            .mark_legacy_read(Uuid::from_u128(name), t(if name == 200 { 500 } else { 10 }))
            .await
            .unwrap();
    }
    store.collect_garbage(t(100), MINUTE).await.unwrap();
    assert!(store.legacy_notifications(op1).await.unwrap().is_empty());
    assert!(store.legacy_layers(op1).await.unwrap().is_empty());
    assert_eq!(store.legacy_notifications(op2).await.unwrap().len(), 1);
    assert_eq!(store.legacy_layers(op2).await.unwrap().len(), 3);
    // The change sets are the source of truth and stay.
    assert!(store.change_set(op1).await.unwrap().is_some());
}

/// The first stored value of a secret is everyone's; later candidates are ignored.
pub async fn secret_first_writer_wins(store: &dyn Store) {
    let a = store.secret("page-token", b"first").await.unwrap();
    let b = store.secret("page-token", b"second").await.unwrap();
    let c = store.secret("other", b"third").await.unwrap();
    assert_eq!(
        (a.as_slice(), b.as_slice(), c.as_slice()),
        (&b"first"[..], &b"first"[..], &b"third"[..])
    );
}

// ---- held update operations -------------------------------------------------------------------

/// The UUID of an operation.
pub fn op_id(op: &UpdateOperation) -> Uuid {
    match Uuid::parse_str(&op.reference) {
        Ok(u) => u,
        Err(e) => panic!("operation ref {:?} is not a UUID: {e}", op.reference),
    }
}

/// Imports a held snapshot that must be stored as a new held operation.
pub async fn hold(
    store: &dyn Store,
    updater: &str,
    fingerprint: &str,
    vulns: &[Vulnerability],
    now: OffsetDateTime,
    reason: &str,
) -> HeldOperation {
    match store
        .import_held(updater, fingerprint, &addressed(vulns), now, reason)
        .await
    {
        Ok(ImportOutcome::Held(h)) => {
            assert_eq!(
                (h.operation.fingerprint.as_str(), h.reason.as_str()),
                (fingerprint, reason)
            );
            h
        }
        other => panic!("held import of {updater}/{fingerprint} should hold, got {other:?}"),
    }
}

/// The refs of an updater's operations as `update_operations` lists them.
async fn listed_ops(store: &dyn Store, updater: &str) -> Vec<String> {
    store
        .update_operations(updater)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.reference)
        .collect()
}

/// One updater's info.
async fn updater_info(store: &dyn Store, updater: &str) -> crate::UpdaterInfo {
    let all = store.updaters().await.unwrap();
    match all.into_iter().find(|u| u.name == updater) {
        Some(u) => u,
        None => panic!("updater {updater:?} is not listed"),
    }
}

/// Accepting `op` as `updater`'s must be refused as `Invalid`, naming the operation.
async fn assert_accept_refused(store: &dyn Store, updater: &str, op: Uuid) {
    match store.accept_operation(updater, op).await {
        Err(StoreError::Invalid(m)) => assert!(m.contains(&op.to_string()), "{m}"),
        other => panic!("accepting {op} as {updater:?}'s should be Invalid, got {other:?}"),
    }
}

/// The ids of `vulns`, sorted.
fn sorted_ids(vulns: &[&Vulnerability]) -> Vec<VulnId> {
    let mut ids: Vec<VulnId> = vulns.iter().map(|v| v.id()).collect();
    ids.sort();
    ids.dedup();
    ids
}

/// A held operation is stored, with its reason and record count, but it is none of the
/// updater's operations: not listed, not the latest, not counted, and not processable; its
/// records read like any operation's.
pub async fn held_import_hidden_from_operations(store: &dyn Store) {
    let (a, b, c) = (
        vuln("debian", "DSA-1-1", "1.0"),
        vuln("debian", "DSA-2-1", "2.0"),
        vuln("debian", "DSA-3-1", "3.0"),
    );
    let op1 = import(store, "debian", "fp-1", &[a.clone(), b.clone()], t(0)).await;
    let held = hold(
        store,
        "debian",
        "fp-2",
        &[b.clone(), c.clone(), c.clone()],
        t(60),
        "would withdraw 1 of 2 (50%)",
    )
    .await;
    let h = op_id(&held.operation);
    assert_ne!(h, op1);
    assert_eq!(held.vulnerabilities, 2);
    assert_eq!(
        (
            held.operation.updater.as_str(),
            held.operation.kind.as_str()
        ),
        ("debian", "vulnerability")
    );
    let date = OffsetDateTime::parse(
        &held.operation.date,
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!(date, t(60));
    assert_eq!(listed_ops(store, "debian").await, vec![op1.to_string()]);
    let info = updater_info(store, "debian").await;
    assert_eq!(
        info.latest.as_ref().map(|o| o.reference.clone()),
        Some(op1.to_string())
    );
    assert_eq!((info.operations, info.vulnerabilities), (1, 2));
    assert_eq!(info.held, Some(held.clone()));
    assert_eq!(
        store.operation_vulnerabilities(h).await.unwrap(),
        sorted_ids(&[&b, &c])
    );
    assert_eq!(
        store.vulnerabilities(&[c.id()]).await.unwrap(),
        vec![(c.id(), c.clone())]
    );
    let err = store
        .commit_processed(&processed("debian", None, h, None))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    assert_eq!(store.change_set(h).await.unwrap(), None);
    assert_eq!(updater_info(store, "debian").await.processed, None);
}

/// An updater that has nothing accepted may still hold an operation: it is listed, with no
/// latest operation, and becomes an ordinary updater once the operation is accepted.
pub async fn held_without_accepted_operations(store: &dyn Store) {
    let go = vuln("osv/go", "GO-1", "1");
    let held = hold(
        store,
        "osv/go",
        "g-1",
        std::slice::from_ref(&go),
        t(0),
        "first import",
    )
    .await;
    let info = updater_info(store, "osv/go").await;
    assert_eq!(
        (info.latest.clone(), info.operations, info.vulnerabilities),
        (None, 0, 0)
    );
    assert_eq!(info.held, Some(held.clone()));
    assert!(store.update_operations("osv/go").await.unwrap().is_empty());
    let accepted = store
        .accept_operation("osv/go", op_id(&held.operation))
        .await
        .unwrap();
    assert_eq!(accepted, held.operation);
    let info = updater_info(store, "osv/go").await;
    assert_eq!(
        (
            info.latest,
            info.operations,
            info.vulnerabilities,
            info.held
        ),
        (Some(held.operation), 1, 1, None)
    );
}

/// A held import equal to the operation already held returns that operation, as it was stored
/// (reason included), and stores nothing.
pub async fn held_same_fingerprint_returns_held_operation(store: &dyn Store) {
    let (a, b, c) = (
        vuln("debian", "DSA-1-1", "1.0"),
        vuln("debian", "DSA-2-1", "2.0"),
        vuln("debian", "DSA-3-1", "3.0"),
    );
    import(store, "debian", "fp-1", std::slice::from_ref(&a), t(0)).await;
    let held = hold(store, "debian", "fp-2", &[a, b], t(60), "first reason").await;
    let again = store
        .import_held(
            "debian",
            "fp-2",
            &addressed(std::slice::from_ref(&c)),
            t(120),
            "second reason",
        )
        .await
        .unwrap();
    assert_eq!(again, ImportOutcome::Held(held.clone()));
    assert!(store.vulnerabilities(&[c.id()]).await.unwrap().is_empty());
    assert_eq!(updater_info(store, "debian").await.held, Some(held));
}

/// A second held import supersedes the first: the first can no longer be accepted, and coming
/// back to its fingerprint holds a new operation.
pub async fn held_import_supersedes_held(store: &dyn Store) {
    let v = [vuln("debian", "DSA-1-1", "1.0")];
    let op1 = import(store, "debian", "fp-1", &v, t(0)).await;
    let h1 = hold(store, "debian", "fp-2", &[], t(60), "everything withdrawn").await;
    let h2 = hold(store, "debian", "fp-3", &v[..], t(120), "doubled").await;
    assert_ne!(h1.operation.reference, h2.operation.reference);
    assert_eq!(updater_info(store, "debian").await.held, Some(h2.clone()));
    assert_eq!(listed_ops(store, "debian").await, vec![op1.to_string()]);
    assert_accept_refused(store, "debian", op_id(&h1.operation)).await;
    // The superseded operation is not "the operation already held".
    let h3 = hold(store, "debian", "fp-2", &[], t(180), "everything withdrawn").await;
    assert_ne!(h3.operation.reference, h1.operation.reference);
    assert_accept_refused(store, "debian", op_id(&h2.operation)).await;
    store
        .accept_operation("debian", op_id(&h3.operation))
        .await
        .unwrap();
    assert_eq!(
        listed_ops(store, "debian").await,
        vec![h3.operation.reference, op1.to_string()]
    );
}

/// An accepted import that creates an operation supersedes the held one.
pub async fn accepted_import_supersedes_held(store: &dyn Store) {
    let v = [vuln("debian", "DSA-1-1", "1.0")];
    let op1 = import(store, "debian", "fp-1", &v, t(0)).await;
    let held = hold(store, "debian", "fp-2", &[], t(60), "everything withdrawn").await;
    // Even the held operation's own content, imported accepted, is a new operation.
    let op3 = import(store, "debian", "fp-2", &[], t(120)).await;
    let info = updater_info(store, "debian").await;
    assert_eq!(info.held, None);
    assert_eq!(info.latest.map(|o| o.reference), Some(op3.to_string()));
    assert_eq!(
        listed_ops(store, "debian").await,
        vec![op3.to_string(), op1.to_string()]
    );
    assert_accept_refused(store, "debian", op_id(&held.operation)).await;
}

/// An import equal to the latest accepted operation, held or not, is `Unchanged` and supersedes
/// the held operation.
pub async fn unchanged_import_supersedes_held(store: &dyn Store) {
    let v = [vuln("debian", "DSA-1-1", "1.0")];
    let op1 = import(store, "debian", "fp-1", &v, t(0)).await;
    let h1 = hold(store, "debian", "fp-2", &[], t(60), "everything withdrawn").await;
    match store
        .import_snapshot("debian", "fp-1", &addressed(&v), t(120))
        .await
        .unwrap()
    {
        ImportOutcome::Unchanged(op) => assert_eq!(op.reference, op1.to_string()),
        other => panic!("expected Unchanged, got {other:?}"),
    }
    assert_eq!(updater_info(store, "debian").await.held, None);
    assert_accept_refused(store, "debian", op_id(&h1.operation)).await;
    let h2 = hold(store, "debian", "fp-3", &[], t(180), "everything withdrawn").await;
    match store
        .import_held("debian", "fp-1", &addressed(&v), t(240), "unused")
        .await
        .unwrap()
    {
        ImportOutcome::Unchanged(op) => assert_eq!(op.reference, op1.to_string()),
        other => panic!("expected Unchanged, got {other:?}"),
    }
    assert_eq!(updater_info(store, "debian").await.held, None);
    assert_accept_refused(store, "debian", op_id(&h2.operation)).await;
    assert_eq!(listed_ops(store, "debian").await, vec![op1.to_string()]);
}

/// An accepted operation is the updater's latest: listed first, counted, processable, and the
/// operation later imports compare their fingerprint with.
pub async fn accept_makes_held_latest(store: &dyn Store) {
    let (a, b, c, d) = (
        vuln("debian", "DSA-1-1", "1.0"),
        vuln("debian", "DSA-2-1", "2.0"),
        vuln("debian", "DSA-3-1", "3.0"),
        vuln("debian", "DSA-4-1", "4.0"),
    );
    let op1 = import(store, "debian", "fp-1", &[a, b.clone()], t(0)).await;
    store
        .commit_processed(&processed("debian", None, op1, None))
        .await
        .unwrap();
    let held = hold(store, "debian", "fp-2", &[b, c, d], t(60), "3 new").await;
    let h = op_id(&held.operation);
    let accepted = store.accept_operation("debian", h).await.unwrap();
    assert_eq!(accepted, held.operation);
    assert_eq!(
        listed_ops(store, "debian").await,
        vec![h.to_string(), op1.to_string()]
    );
    let info = updater_info(store, "debian").await;
    assert_eq!(
        (
            info.latest,
            info.operations,
            info.vulnerabilities,
            info.held
        ),
        (Some(held.operation.clone()), 2, 3, None)
    );
    store
        .commit_processed(&processed("debian", Some(op1), h, None))
        .await
        .unwrap();
    assert_eq!(updater_info(store, "debian").await.processed, Some(h));
    match store
        .import_snapshot("debian", "fp-2", &[], t(120))
        .await
        .unwrap()
    {
        ImportOutcome::Unchanged(op) => assert_eq!(op, held.operation),
        other => panic!("expected Unchanged, got {other:?}"),
    }
}

/// Only the updater's held operation can be accepted: an unknown operation, an accepted one,
/// another updater's, or one accepted already is `Invalid`, and nothing changes.
pub async fn accept_refuses_anything_but_the_held_operation(store: &dyn Store) {
    let op1 = import(
        store,
        "debian",
        "fp-1",
        &[vuln("debian", "DSA-1-1", "1")],
        t(0),
    )
    .await;
    let go = import(store, "osv/go", "g-1", &[vuln("osv/go", "GO-1", "1")], t(0)).await;
    let held = hold(store, "debian", "fp-2", &[], t(60), "everything withdrawn").await;
    let h = op_id(&held.operation);
    assert_accept_refused(store, "debian", Uuid::from_u128(42)).await;
    assert_accept_refused(store, "debian", op1).await;
    assert_accept_refused(store, "debian", go).await;
    assert_accept_refused(store, "osv/go", h).await;
    assert_accept_refused(store, "nobody", h).await;
    assert_eq!(updater_info(store, "debian").await.held, Some(held.clone()));
    assert_eq!(listed_ops(store, "osv/go").await, vec![go.to_string()]);
    store.accept_operation("debian", h).await.unwrap();
    assert_accept_refused(store, "debian", h).await;
    assert_eq!(
        listed_ops(store, "debian").await,
        vec![h.to_string(), op1.to_string()]
    );
}

/// Garbage collection removes superseded operations with their memberships, and then the
/// records only they held; the held operation and its records stay.
pub async fn gc_removes_superseded_keeps_held(store: &dyn Store) {
    let v: Vec<Vulnerability> = (0..4)
        .map(|i| vuln("debian", &format!("DSA-{i}-1"), "1"))
        .collect();
    let (a, b, c, d) = (&v[0], &v[1], &v[2], &v[3]);
    import(store, "debian", "fp-1", &[a.clone(), b.clone()], t(0)).await;
    let h1 = hold(store, "debian", "fp-2", &[b.clone(), c.clone()], t(60), "r").await;
    let h2 = hold(
        store,
        "debian",
        "fp-3",
        &[b.clone(), d.clone()],
        t(120),
        "r",
    )
    .await;
    let stats = store.collect_garbage(t(180), Duration::ZERO).await.unwrap();
    assert_eq!(stats.vulnerabilities, 1, "{stats:?}");
    let ids: Vec<VulnId> = v.iter().map(Vulnerability::id).collect();
    let left: Vec<VulnId> = store
        .vulnerabilities(&ids)
        .await
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(left, vec![a.id(), b.id(), d.id()]);
    let err = store
        .operation_vulnerabilities(op_id(&h1.operation))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    let h = op_id(&h2.operation);
    assert_eq!(
        store.operation_vulnerabilities(h).await.unwrap(),
        sorted_ids(&[b, d])
    );
    assert_eq!(updater_info(store, "debian").await.held, Some(h2));
    // Collecting again finds nothing; the held operation can still be accepted whole.
    let again = store.collect_garbage(t(240), Duration::ZERO).await.unwrap();
    assert_eq!(again.vulnerabilities, 0);
    store.accept_operation("debian", h).await.unwrap();
    assert_eq!(
        store.vulnerabilities(&[d.id()]).await.unwrap(),
        vec![(d.id(), d.clone())]
    );
    // A held operation superseded by an accepted import goes the same way.
    let h3 = hold(
        store,
        "debian",
        "fp-4",
        &[v[0].clone(), vuln("debian", "DSA-9-1", "9")],
        t(300),
        "r",
    )
    .await;
    import(store, "debian", "fp-5", std::slice::from_ref(a), t(360)).await;
    let stats = store.collect_garbage(t(420), Duration::ZERO).await.unwrap();
    assert_eq!(stats.vulnerabilities, 1, "{stats:?}");
    assert!(store
        .operation_vulnerabilities(op_id(&h3.operation))
        .await
        .is_err());
}

// ---- followed sources -------------------------------------------------------------------------

const HOLDER_A: Uuid = Uuid::from_u128(0xa);
const HOLDER_B: Uuid = Uuid::from_u128(0xb);

/// A run of a followed source.
pub fn source_run(
    started: OffsetDateTime,
    outcome: Result<(), &str>,
    state: Option<&str>,
    next_run: OffsetDateTime,
) -> SourceRun {
    SourceRun {
        started,
        outcome: outcome.map_err(str::to_string),
        state: state.map(str::to_string),
        next_run,
    }
}

async fn source_state(store: &dyn Store, name: &str) -> SourceState {
    match store
        .sources()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.name == name)
    {
        Some(s) => s,
        None => panic!("source {name:?} is not listed"),
    }
}

/// The first claim creates the source (due, nothing recorded); another holder is refused while
/// the lease holds and takes over from the instant it expires.
pub async fn source_claim_creates_and_excludes(store: &dyn Store) {
    assert!(store.sources().await.unwrap().is_empty());
    let first = store
        .claim_source("osv/debian", HOLDER_A, t(0), MINUTE, true)
        .await
        .unwrap();
    let want = SourceState {
        name: "osv/debian".into(),
        lease_until: Some(t(60)),
        ..SourceState::default()
    };
    assert_eq!(first, Some(want.clone()));
    assert_eq!(store.sources().await.unwrap(), vec![want.clone()]);
    for at in [30, 59] {
        assert_eq!(
            store
                .claim_source("osv/debian", HOLDER_B, t(at), MINUTE, false)
                .await
                .unwrap(),
            None,
            "claimed at t({at}) while A's lease holds"
        );
    }
    assert_eq!(store.sources().await.unwrap(), vec![want]);
    let taken = store
        .claim_source("osv/debian", HOLDER_B, t(60), MINUTE, false)
        .await
        .unwrap();
    assert_eq!(taken.and_then(|s| s.lease_until), Some(t(120)));
    assert_eq!(
        store
            .claim_source("osv/debian", HOLDER_A, t(61), MINUTE, false)
            .await
            .unwrap(),
        None
    );
}

/// The holder may claim again, extending its lease from the new `now`.
pub async fn source_claim_same_holder_renews(store: &dyn Store) {
    store
        .claim_source("nvd", HOLDER_A, t(0), MINUTE, false)
        .await
        .unwrap()
        .expect("first claim");
    let renewed = store
        .claim_source("nvd", HOLDER_A, t(30), MINUTE, false)
        .await
        .unwrap();
    assert_eq!(renewed.and_then(|s| s.lease_until), Some(t(90)));
    assert_eq!(
        store
            .claim_source("nvd", HOLDER_B, t(60), MINUTE, false)
            .await
            .unwrap(),
        None
    );
    assert!(store
        .claim_source("nvd", HOLDER_B, t(90), MINUTE, false)
        .await
        .unwrap()
        .is_some());
}

/// A scheduled claim (`due_only`) waits for `next_run`; a manual one does not.
pub async fn source_claim_due_only_respects_next_run(store: &dyn Store) {
    store
        .claim_source("nvd", HOLDER_A, t(0), MINUTE, true)
        .await
        .unwrap()
        .expect("a new source is due");
    store
        .finish_source_run("nvd", HOLDER_A, &source_run(t(0), Ok(()), None, t(300)))
        .await
        .unwrap();
    for holder in [HOLDER_A, HOLDER_B] {
        assert_eq!(
            store
                .claim_source("nvd", holder, t(299), MINUTE, true)
                .await
                .unwrap(),
            None
        );
    }
    let due = store
        .claim_source("nvd", HOLDER_B, t(300), MINUTE, true)
        .await
        .unwrap();
    assert_eq!(due.and_then(|s| s.lease_until), Some(t(360)));
    store
        .finish_source_run("nvd", HOLDER_B, &source_run(t(300), Ok(()), None, t(900)))
        .await
        .unwrap();
    let manual = store
        .claim_source("nvd", HOLDER_A, t(301), MINUTE, false)
        .await
        .unwrap();
    assert_eq!(
        manual.map(|s| (s.next_run, s.lease_until)),
        Some((Some(t(900)), Some(t(361))))
    );
}

/// Finishing records the run: times, the error kept as history after a success, the failure
/// count, the schedule and the fetcher's state (kept when not given); the lease is released.
pub async fn source_finish_records_outcomes(store: &dyn Store) {
    let name = "osv/pypi";
    store
        .claim_source(name, HOLDER_A, t(0), MINUTE, true)
        .await
        .unwrap()
        .expect("claim");
    store
        .finish_source_run(
            name,
            HOLDER_A,
            &source_run(t(0), Err("HTTP 503"), Some("etag-1"), t(60)),
        )
        .await
        .unwrap();
    assert_eq!(
        source_state(store, name).await,
        SourceState {
            name: name.into(),
            next_run: Some(t(60)),
            last_attempt: Some(t(0)),
            last_success: None,
            last_error_at: Some(t(0)),
            last_error: Some("HTTP 503".into()),
            failures: 1,
            state: "etag-1".into(),
            lease_until: None,
        }
    );
    // Released: another holder may claim at once (the schedule aside).
    store
        .claim_source(name, HOLDER_B, t(1), MINUTE, false)
        .await
        .unwrap()
        .expect("released lease");
    store
        .finish_source_run(
            name,
            HOLDER_B,
            &source_run(t(1), Err("timed out"), None, t(180)),
        )
        .await
        .unwrap();
    let s = source_state(store, name).await;
    assert_eq!(
        (
            s.failures,
            s.last_error.as_deref(),
            s.last_error_at,
            s.last_attempt,
            s.state.as_str(),
            s.next_run
        ),
        (
            2,
            Some("timed out"),
            Some(t(1)),
            Some(t(1)),
            "etag-1",
            Some(t(180))
        )
    );
    store
        .claim_source(name, HOLDER_A, t(180), MINUTE, true)
        .await
        .unwrap()
        .expect("due");
    store
        .finish_source_run(name, HOLDER_A, &source_run(t(180), Ok(()), None, t(480)))
        .await
        .unwrap();
    assert_eq!(
        source_state(store, name).await,
        SourceState {
            name: name.into(),
            next_run: Some(t(480)),
            last_attempt: Some(t(180)),
            last_success: Some(t(180)),
            last_error_at: Some(t(1)),
            last_error: Some("timed out".into()),
            failures: 0,
            state: "etag-1".into(),
            lease_until: None,
        }
    );
    store
        .claim_source(name, HOLDER_A, t(480), MINUTE, true)
        .await
        .unwrap()
        .expect("due");
    store
        .finish_source_run(
            name,
            HOLDER_A,
            &source_run(t(480), Ok(()), Some(""), t(780)),
        )
        .await
        .unwrap();
    let s = source_state(store, name).await;
    assert_eq!(
        (s.state.as_str(), s.failures, s.last_success),
        ("", 0, Some(t(480)))
    );
}

/// A run is recorded only while the lease is the holder's: after another holder took the
/// source over, after the lease was released, or for a source never claimed, finishing is
/// `Conflict` and writes nothing. A lease that expired without anyone taking it over may still
/// finish.
pub async fn source_finish_conflicts_unless_holder(store: &dyn Store) {
    let run = source_run(t(0), Err("HTTP 500"), Some("cursor-9"), t(600));
    store
        .claim_source("nvd", HOLDER_A, t(0), MINUTE, true)
        .await
        .unwrap()
        .expect("claim");
    store
        .claim_source("nvd", HOLDER_B, t(60), MINUTE, true)
        .await
        .unwrap()
        .expect("take-over after expiry");
    let before = source_state(store, "nvd").await;
    let err = store
        .finish_source_run("nvd", HOLDER_A, &run)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert_eq!(source_state(store, "nvd").await, before);
    store
        .finish_source_run("nvd", HOLDER_B, &source_run(t(60), Ok(()), None, t(600)))
        .await
        .unwrap();
    let finished = source_state(store, "nvd").await;
    let err = store
        .finish_source_run("nvd", HOLDER_B, &run)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert_eq!(source_state(store, "nvd").await, finished);
    let err = store
        .finish_source_run("never-claimed", HOLDER_A, &run)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert_eq!(store.sources().await.unwrap().len(), 1);
    // A's run outlasts its lease; B's scheduled claim is refused (not due), so A may finish.
    store
        .claim_source("nvd", HOLDER_A, t(100), MINUTE, false)
        .await
        .unwrap()
        .expect("manual claim");
    assert_eq!(
        store
            .claim_source("nvd", HOLDER_B, t(300), MINUTE, true)
            .await
            .unwrap(),
        None
    );
    store
        .finish_source_run("nvd", HOLDER_A, &source_run(t(100), Ok(()), None, t(700)))
        .await
        .unwrap();
    assert_eq!(source_state(store, "nvd").await.last_success, Some(t(100)));
}

/// `sources` lists every source in name (byte) order.
pub async fn sources_listed_by_name(store: &dyn Store) {
    for name in ["osv/pypi", "nvd", "Zeta", "osv/debian"] {
        store
            .claim_source(name, HOLDER_A, t(0), MINUTE, false)
            .await
            .unwrap()
            .expect("claim");
    }
    let names: Vec<String> = store
        .sources()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["Zeta", "nvd", "osv/debian", "osv/pypi"]);
}

/// Of several holders claiming one source at once, exactly one gets it.
pub async fn source_claim_concurrent_one_wins(store: &dyn Store) {
    for round in 0..5u128 {
        let name = format!("source-{round}");
        let claim = |holder: u128| {
            let name = name.clone();
            async move {
                store
                    .claim_source(&name, Uuid::from_u128(holder), t(0), MINUTE, true)
                    .await
            }
        };
        let (a, b, c, d) = tokio::join!(claim(1), claim(2), claim(3), claim(4));
        let results = [a, b, c, d];
        let wins = results.iter().filter(|r| matches!(r, Ok(Some(_)))).count();
        assert_eq!(wins, 1, "round {round}: {results:?}");
        assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    }
}
