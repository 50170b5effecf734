//! tocsin's embedded store: the [`Store`] trait on a bundled SQLite database in a data directory.
//!
//! Small installs run one tocsin process with nothing else beside it, so the default store is a
//! single file, `<dir>/tocsin.db`, written through SQLite (compiled in, no system library).
//!
//! # Design
//!
//! - **One writer, several readers.** SQLite allows one writer at a time; WAL mode lets readers
//!   proceed beside it on their own snapshot. Writes therefore go through one connection behind a
//!   `std::sync::Mutex`, reads through a small pool of query-only connections, so paging a
//!   notification never waits behind a long import. rusqlite is synchronous: every call runs on
//!   `tokio::task::spawn_blocking`, and the mutex is only ever held inside that blocking closure,
//!   never across an `.await`.
//! - **Every trait call that writes is one transaction.** Imports, processing commits (change set,
//!   notification set, entries, receipts and the processed mark) and delivery bookkeeping each
//!   commit whole or not at all. Write transactions start `IMMEDIATE`, taking the write lock up
//!   front, so a compare-and-set read and its write cannot interleave with another process.
//! - **Encode before locking.** JSON encoding and hashing (thousands of vulnerabilities, up to
//!   hundreds of thousands of notification entries) happen before the writer lock is taken, so the
//!   lock is held only for SQL; bulk rows go through cached prepared statements.
//! - **Durability.** `synchronous=NORMAL` in WAL mode survives a crash or SIGKILL of the process
//!   (committed transactions are in the WAL and replayed at the next open); only a power loss can
//!   drop the newest commits, never partially. [`Store::commit_processed`] alone runs with
//!   `synchronous=FULL`: once its notification set may have been delivered, forgetting the commit
//!   on power loss would re-process the operation and deliver the same news again under a new id.
//!   It happens once per update operation, so the extra fsync costs nothing noticeable.
//! - **Schema migrations** are an ordered list applied at open, each in its own transaction with
//!   its `schema_migrations` row; re-opening is a no-op, a newer schema is refused.
//!
//! - **Clair v2/v3 notifications** (schema version 3) are rows naming one change of a stored
//!   change set, written in the processing commit, plus a per-operation layer table that fixes each
//!   manifest's index and name; the v2 webhook leases them like outbox receipts. Shared secrets
//!   (the page-token key) are a table written with insert-if-absent.
//!
//! - **The manifest change feed** is a table with one row per manifest id, rewritten under a
//!   fresh AUTOINCREMENT `seq` in the same transaction as the put or delete it records; the
//!   schema migration that added it seeded it with the manifests already stored.
//!
//! - **Held update operations** (schema version 5) are rows of the `operation` table with a
//!   status (`accepted`, `held`, `superseded`); readers of an updater's operations filter on
//!   `accepted`, imports supersede the held one in their transaction, and garbage collection
//!   removes superseded ones. **Followed sources** are one row each, claimed with one upsert.
//!
//! Beyond the trait's documentation, this store (and the conformance suite) pins down: times are
//! kept to the nanosecond as Unix nanoseconds (years 1678–2261, else `Invalid`);
//! `operation_vulnerabilities` returns ids sorted and refuses an unknown operation;
//! `commit_processed` refuses a change set or notification set that names another updater or
//! operation; a `record_attempt` whose lease was lost still records the attempt before returning
//! `Conflict`.
#![deny(missing_docs)]

mod convert;
mod feeds;
mod legacy;
mod manifests;
mod outbox;
mod schema;
mod sources;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::Connection;
use time::OffsetDateTime;
use tocsin_model::change::ChangeSet;
use tocsin_model::claircore::UpdateOperation;
use tocsin_model::inventory::Manifest;
use tocsin_model::notification::{Notification, ReceiptStatus};
use tocsin_model::vuln::{Addressed, VulnId, Vulnerability};
use tocsin_model::Digest;
use tocsin_store::{
    Attempt, Backlog, BulkItem, BulkOutcome, DeliveryTask, GcStats, ImportOutcome, IndexEntry,
    LegacyDeliveryOutcome, LegacyDeliveryTask, LegacyLayer, LegacyNotification, ManifestChange,
    ManifestId, ManifestSummary, MarkRead, NewNotificationSet, NotificationSetInfo,
    ProcessedUpdate, PutOutcome, Result, SourceRun, SourceState, Store, StoreError, UpdaterInfo,
};
use uuid::Uuid;

use crate::convert::SqlContext;

/// The database file's name inside the data directory.
pub const DB_FILE: &str = "tocsin.db";

/// Idle read connections kept for reuse; more are opened on demand under load.
const MAX_IDLE_READERS: usize = 4;

/// The embedded store. Cheap to clone: clones share the connections.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// The database file; `None` for an in-memory database (then reads use the writer, since a
    /// second connection would see a different database).
    path: Option<PathBuf>,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

/// Locks a mutex even if a previous holder panicked: the guarded connections stay valid (an
/// open transaction is rolled back when its guard unwinds), and `reset` re-checks that.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Rolls back a transaction left open by a panic, so the next caller starts clean.
fn reset(conn: &Connection) -> Result<()> {
    if !conn.is_autocommit() {
        conn.execute_batch("ROLLBACK")
            .ctx("rolling back a transaction left open by a failed call")?;
    }
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `dir`, i.e. the database `dir/tocsin.db`, and
    /// brings its schema up to date.
    pub fn open(dir: &Path) -> Result<SqliteStore> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Backend(
                format!("creating the data directory {}: {e}", dir.display()).into(),
            )
        })?;
        let path = dir.join(DB_FILE);
        let mut conn = Connection::open(&path)
            .with_ctx(|| format!("opening the database {}", path.display()))?;
        schema::configure_writer(&conn)?;
        schema::migrate(&mut conn)?;
        tracing::debug!(path = %path.display(), "opened the embedded store");
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path: Some(path),
                writer: Mutex::new(conn),
                readers: Mutex::new(Vec::new()),
            }),
        })
    }

    /// A store in memory, gone when the last clone is dropped (tests and dry runs).
    pub fn open_in_memory() -> Result<SqliteStore> {
        let mut conn = Connection::open_in_memory().ctx("opening an in-memory database")?;
        schema::configure_writer(&conn)?;
        schema::migrate(&mut conn)?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path: None,
                writer: Mutex::new(conn),
                readers: Mutex::new(Vec::new()),
            }),
        })
    }

    /// The database file, or `None` in memory.
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }

    /// Imports a snapshot, held with the reason when `hold` is given.
    async fn import(
        &self,
        updater: &str,
        fingerprint: &str,
        vulns: &[Addressed],
        now: OffsetDateTime,
        hold: Option<String>,
    ) -> Result<ImportOutcome> {
        let stored = {
            let updater = updater.to_string();
            self.blocking("import_snapshot", move |db| {
                db.with_reader(|c| feeds::latest_ids(c, &updater))
            })
            .await?
        };
        // Only the records not stored yet are copied to the blocking thread and encoded.
        let pending = tocsin_store::codec::split_snapshot(updater, vulns, &stored)?;
        drop(stored);
        let updater = updater.to_string();
        let fingerprint = fingerprint.to_string();
        self.blocking("import_snapshot", move |db| {
            let encoded = pending.encode()?;
            db.with_writer(|c| {
                feeds::import(c, &updater, &fingerprint, &encoded, now, hold.as_deref())
            })
        })
        .await
    }

    /// Runs `f` on the blocking pool.
    async fn blocking<T, F>(&self, op: &'static str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| {
                StoreError::Backend(format!("{op}: the storage task failed: {e}").into())
            })?
    }
}

impl Inner {
    fn with_writer<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let mut conn = lock(&self.writer);
        reset(&conn)?;
        f(&mut conn)
    }

    fn with_reader<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let Some(path) = &self.path else {
            return self.with_writer(|c| f(c));
        };
        let pooled = lock(&self.readers).pop();
        let conn = match pooled {
            Some(c) => c,
            None => {
                let c = Connection::open(path)
                    .with_ctx(|| format!("opening a read connection to {}", path.display()))?;
                schema::configure_reader(&c)?;
                c
            }
        };
        let out = f(&conn);
        // A connection left inside a transaction (by an error mid-read) is dropped, not reused.
        if conn.is_autocommit() {
            let mut idle = lock(&self.readers);
            if idle.len() < MAX_IDLE_READERS {
                idle.push(conn);
            }
        }
        out
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn put_manifest(
        &self,
        m: &Manifest,
        now: OffsetDateTime,
    ) -> Result<(ManifestId, PutOutcome)> {
        let m = m.clone();
        self.blocking("put_manifest", move |db| {
            let encoded = manifests::encode(&m)?;
            db.with_writer(|c| manifests::put(c, &encoded, now))
        })
        .await
    }

    async fn get_manifest(&self, digest: &Digest) -> Result<Option<Manifest>> {
        let digest = digest.clone();
        self.blocking("get_manifest", move |db| {
            db.with_reader(|c| manifests::get(c, &digest))
        })
        .await
    }

    async fn delete_manifest(&self, digest: &Digest) -> Result<bool> {
        let digest = digest.clone();
        self.blocking("delete_manifest", move |db| {
            db.with_writer(|c| manifests::delete(c, &digest))
        })
        .await
    }

    async fn list_manifests(
        &self,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<ManifestSummary>> {
        let after = after.cloned();
        self.blocking("list_manifests", move |db| {
            db.with_reader(|c| manifests::list(c, after.as_ref(), limit))
        })
        .await
    }

    async fn put_manifests(
        &self,
        mut items: tokio::sync::mpsc::Receiver<BulkItem>,
        now: OffsetDateTime,
    ) -> Result<BulkOutcome> {
        self.blocking("put_manifests", move |db| {
            db.with_writer(|c| manifests::put_stream(c, &mut items, now))
        })
        .await
    }

    async fn index_entries_after(
        &self,
        after: Option<ManifestId>,
        limit: usize,
    ) -> Result<Vec<IndexEntry>> {
        self.blocking("index_entries_after", move |db| {
            db.with_reader(|c| manifests::entries_after(c, after, limit))
        })
        .await
    }

    async fn index_entries(&self, ids: &[ManifestId]) -> Result<Vec<IndexEntry>> {
        let ids = ids.to_vec();
        self.blocking("index_entries", move |db| {
            db.with_reader(|c| manifests::entries_of(c, &ids))
        })
        .await
    }

    async fn manifest_labels(
        &self,
        ids: &[ManifestId],
        label: &str,
    ) -> Result<std::collections::HashMap<ManifestId, String>> {
        let ids = ids.to_vec();
        let label = label.to_string();
        self.blocking("manifest_labels", move |db| {
            db.with_reader(|c| manifests::labels_of(c, &ids, &label))
        })
        .await
    }

    async fn manifest_changes(&self, after: u64, limit: usize) -> Result<Vec<ManifestChange>> {
        self.blocking("manifest_changes", move |db| {
            db.with_reader(|c| manifests::changes(c, after, limit))
        })
        .await
    }

    async fn manifest_change_head(&self) -> Result<u64> {
        self.blocking("manifest_change_head", |db| {
            db.with_reader(manifests::change_head)
        })
        .await
    }

    async fn import_snapshot(
        &self,
        updater: &str,
        fingerprint: &str,
        vulns: &[Addressed],
        now: OffsetDateTime,
    ) -> Result<ImportOutcome> {
        self.import(updater, fingerprint, vulns, now, None).await
    }

    async fn import_held(
        &self,
        updater: &str,
        fingerprint: &str,
        vulns: &[Addressed],
        now: OffsetDateTime,
        reason: &str,
    ) -> Result<ImportOutcome> {
        self.import(updater, fingerprint, vulns, now, Some(reason.to_string()))
            .await
    }

    async fn accept_operation(&self, updater: &str, op: Uuid) -> Result<UpdateOperation> {
        let updater = updater.to_string();
        self.blocking("accept_operation", move |db| {
            db.with_writer(|c| feeds::accept(c, &updater, op))
        })
        .await
    }

    async fn updaters(&self) -> Result<Vec<UpdaterInfo>> {
        self.blocking("updaters", |db| db.with_reader(feeds::updaters))
            .await
    }

    async fn update_operations(&self, updater: &str) -> Result<Vec<UpdateOperation>> {
        let updater = updater.to_string();
        self.blocking("update_operations", move |db| {
            db.with_reader(|c| feeds::operations(c, &updater))
        })
        .await
    }

    async fn operation_vulnerabilities(&self, op: Uuid) -> Result<Vec<VulnId>> {
        self.blocking("operation_vulnerabilities", move |db| {
            db.with_reader(|c| feeds::operation_vulnerabilities(c, op))
        })
        .await
    }

    async fn vulnerabilities(&self, ids: &[VulnId]) -> Result<Vec<(VulnId, Vulnerability)>> {
        let ids = ids.to_vec();
        self.blocking("vulnerabilities", move |db| {
            db.with_reader(|c| feeds::vulnerabilities(c, &ids))
        })
        .await
    }

    async fn claim_source(
        &self,
        name: &str,
        holder: Uuid,
        now: OffsetDateTime,
        lease_for: Duration,
        due_only: bool,
    ) -> Result<Option<SourceState>> {
        let name = name.to_string();
        self.blocking("claim_source", move |db| {
            db.with_writer(|c| sources::claim(c, &name, holder, now, lease_for, due_only))
        })
        .await
    }

    async fn finish_source_run(&self, name: &str, holder: Uuid, run: &SourceRun) -> Result<()> {
        let (name, run) = (name.to_string(), run.clone());
        self.blocking("finish_source_run", move |db| {
            db.with_writer(|c| sources::finish(c, &name, holder, &run))
        })
        .await
    }

    async fn sources(&self) -> Result<Vec<SourceState>> {
        self.blocking("sources", |db| db.with_reader(sources::all))
            .await
    }

    async fn commit_processed(&self, p: &ProcessedUpdate) -> Result<()> {
        let p = p.clone();
        self.blocking("commit_processed", move |db| {
            let encoded = outbox::encode_processed(&p)?;
            drop(p);
            db.with_writer(|c| {
                // FULL for this one transaction: see the crate doc (durability).
                c.pragma_update(None, "synchronous", "FULL")
                    .ctx("commit_processed: synchronous=FULL")?;
                let out = outbox::commit_processed(c, &encoded);
                let restored = c
                    .pragma_update(None, "synchronous", "NORMAL")
                    .ctx("commit_processed: synchronous=NORMAL");
                out.and(restored)
            })
        })
        .await
    }

    async fn change_set(&self, op: Uuid) -> Result<Option<ChangeSet>> {
        self.blocking("change_set", move |db| {
            db.with_reader(|c| outbox::change_set(c, op))
        })
        .await
    }

    async fn create_notification_set(&self, set: &NewNotificationSet) -> Result<()> {
        let set = set.clone();
        self.blocking("create_notification_set", move |db| {
            let encoded = outbox::encode_set(&set)?;
            drop(set);
            db.with_writer(|c| outbox::create_set(c, &encoded))
        })
        .await
    }

    async fn notification_page(
        &self,
        set: Uuid,
        after: u64,
        limit: usize,
    ) -> Result<Option<(Vec<Notification>, Option<u64>)>> {
        self.blocking("notification_page", move |db| {
            db.with_reader(|c| outbox::page(c, set, after, limit))
        })
        .await
    }

    async fn delete_notification_set(&self, set: Uuid, now: OffsetDateTime) -> Result<bool> {
        self.blocking("delete_notification_set", move |db| {
            db.with_writer(|c| outbox::delete_set(c, set, now))
        })
        .await
    }

    async fn notification_set(&self, set: Uuid) -> Result<Option<NotificationSetInfo>> {
        self.blocking("notification_set", move |db| {
            db.with_reader(|c| outbox::notification_set(c, set))
        })
        .await
    }

    async fn notification_sets(
        &self,
        status: Option<ReceiptStatus>,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<NotificationSetInfo>> {
        self.blocking("notification_sets", move |db| {
            db.with_reader(|c| outbox::notification_sets(c, status, after, limit))
        })
        .await
    }

    async fn claim_deliveries(
        &self,
        channel: &str,
        now: OffsetDateTime,
        lease_for: Duration,
        limit: usize,
    ) -> Result<Vec<DeliveryTask>> {
        let channel = channel.to_string();
        self.blocking("claim_deliveries", move |db| {
            db.with_writer(|c| outbox::claim(c, &channel, now, lease_for, limit))
        })
        .await
    }

    async fn record_attempts(
        &self,
        batch: &[(DeliveryTask, Attempt)],
    ) -> Result<Vec<Result<ReceiptStatus>>> {
        let batch = batch.to_vec();
        self.blocking("record_attempts", move |db| {
            let encoded = batch
                .into_iter()
                .map(|(t, a)| outbox::encode_attempt(&t, &a).map(|e| (t, e)))
                .collect::<Result<Vec<_>>>()?;
            db.with_writer(|c| outbox::record_attempts(c, &encoded))
        })
        .await
    }

    async fn record_attempt(
        &self,
        task: &DeliveryTask,
        attempt: &Attempt,
    ) -> Result<ReceiptStatus> {
        let task = task.clone();
        let attempt = attempt.clone();
        self.blocking("record_attempt", move |db| {
            let encoded = outbox::encode_attempt(&task, &attempt)?;
            db.with_writer(|c| outbox::record_attempt(c, &task, &encoded))
        })
        .await
    }

    async fn attempts(&self, set: Uuid) -> Result<Vec<Attempt>> {
        self.blocking("attempts", move |db| {
            db.with_reader(|c| outbox::attempts(c, set))
        })
        .await
    }

    async fn backlog(&self) -> Result<Backlog> {
        self.blocking("backlog", |db| db.with_reader(outbox::backlog))
            .await
    }

    async fn legacy_notification(&self, name: Uuid) -> Result<Option<LegacyNotification>> {
        self.blocking("legacy_notification", move |db| {
            db.with_reader(|c| legacy::get(c, name))
        })
        .await
    }

    async fn legacy_notifications(&self, operation: Uuid) -> Result<Vec<LegacyNotification>> {
        self.blocking("legacy_notifications", move |db| {
            db.with_reader(|c| legacy::of_operation(c, operation))
        })
        .await
    }

    async fn legacy_layers(&self, operation: Uuid) -> Result<Vec<LegacyLayer>> {
        self.blocking("legacy_layers", move |db| {
            db.with_reader(|c| legacy::layers(c, operation))
        })
        .await
    }

    async fn mark_legacy_read(&self, name: Uuid, now: OffsetDateTime) -> Result<MarkRead> {
        self.blocking("mark_legacy_read", move |db| {
            db.with_writer(|c| legacy::mark_read(c, name, now))
        })
        .await
    }

    async fn claim_legacy_deliveries(
        &self,
        now: OffsetDateTime,
        lease_for: Duration,
        limit: usize,
    ) -> Result<Vec<LegacyDeliveryTask>> {
        self.blocking("claim_legacy_deliveries", move |db| {
            db.with_writer(|c| legacy::claim(c, now, lease_for, limit))
        })
        .await
    }

    async fn record_legacy_delivery(
        &self,
        task: &LegacyDeliveryTask,
        outcome: LegacyDeliveryOutcome,
    ) -> Result<()> {
        let task = task.clone();
        self.blocking("record_legacy_delivery", move |db| {
            db.with_writer(|c| legacy::record(c, &task, outcome))
        })
        .await
    }

    async fn secret(&self, name: &str, candidate: &[u8]) -> Result<Vec<u8>> {
        let (name, candidate) = (name.to_string(), candidate.to_vec());
        self.blocking("secret", move |db| {
            db.with_writer(|c| legacy::secret(c, &name, &candidate))
        })
        .await
    }

    async fn collect_garbage(
        &self,
        now: OffsetDateTime,
        delivered_retention: Duration,
    ) -> Result<GcStats> {
        self.blocking("collect_garbage", move |db| {
            db.with_writer(|c| outbox::collect_garbage(c, now, delivered_retention))
        })
        .await
    }
}
