//! The storage trait of tocsin and the one conformance suite every implementation passes.
//!
//! Persistence is a trait with two implementations (embedded SQLite now, PostgreSQL later). The
//! trait is shaped by the flow's invariants rather than by tables:
//!
//! - **Imports are all-or-nothing.** [`Store::import_snapshot`] stores a whole snapshot of one
//!   updater (content-addressed vulnerabilities plus a new update operation) in one transaction,
//!   or nothing; an identical fingerprint creates no operation.
//! - **Exactly-once processing.** [`Store::commit_processed`] writes the change set, the
//!   notification set, its outbox receipts and the updater's "processed" mark in one transaction,
//!   and only if the mark still equals the caller's `prev` (compare-and-set). A crash before the
//!   commit leaves the operation unprocessed; a second processor loses the race with
//!   [`StoreError::Conflict`]. Clair v2/v3 notifications ([`NewLegacyNotifications`]) are part
//!   of that same transaction: each is only a name pointing at one change of the stored change
//!   set, plus the per-operation layer table that fixes each manifest's `Index`.
//! - **v2/v3 state is small.** A legacy notification keeps just its times (created, notified,
//!   read) and a delivery lease for the v2 webhook; its pages are computed from the change set.
//!   Page tokens are signed with a key kept in the store ([`Store::secret`]), so any process
//!   sharing the database accepts any other's tokens.
//! - **Deliveries are claimed, not shared.** [`Store::claim_deliveries`] leases due receipts to one
//!   worker; the lease expires so a crashed worker's work is picked up again (at-least-once), and
//!   [`Store::record_attempt`] re-checks the receipt under the claim so a set deleted meanwhile is
//!   never resurrected.
//!
//! - **Events are hints, never state.** [`Store::events`] lets a process wake promptly when
//!   another process (or this one) imported an operation, created a set or changed a manifest.
//!   Missing an event must never lose work: every consumer also polls, and a
//!   [`StoreEvent::Resync`] (or a lagged receiver) means "events may have been missed, re-check".
//!
//! Times are `time::OffsetDateTime` (UTC) passed in by the caller, so tests control the clock.
#![deny(missing_docs)]

use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;
use tocsin_model::change::ChangeSet;
use tocsin_model::claircore::UpdateOperation;
use tocsin_model::inventory::Manifest;
use tocsin_model::notification::{Notification, ReceiptStatus};
use tocsin_model::vuln::{Addressed, VulnId, Vulnerability};
use tocsin_model::Digest;
use uuid::Uuid;

pub mod codec;
#[cfg(feature = "conformance")]
pub mod conformance;

/// The result type of every store call.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A manifest's internal id: dense, never reused, small enough for roaring bitmaps.
pub type ManifestId = u32;

/// What can go wrong in a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A compare-and-set lost: someone else changed the row first.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The caller asked for something that does not fit the stored state.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// Stored data could not be decoded.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// The storage underneath is out of space (disk full, quota): nothing of the call was
    /// written, and the same call succeeds once space is freed.
    #[error("storage full: {0}")]
    Full(String),
    /// Another process or connection held the database longer than the store waits: nothing of
    /// the call was written; retry later.
    #[error("storage busy: {0}")]
    Busy(String),
    /// The backend failed (I/O, SQL, connection).
    #[error("storage backend: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    /// Whether the failure is the storage's state rather than the call (full, busy): callers
    /// answer "try again later" and background work retries without treating it as a defect.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Full(_) | StoreError::Busy(_))
    }
}

/// What [`Store::put_manifest`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    /// A new manifest.
    Created,
    /// The same digest with different content: replaced (same id).
    Replaced,
    /// Identical content: nothing changed.
    Unchanged,
}

/// A manifest's listing entry.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ManifestSummary {
    /// Internal id.
    pub id: ManifestId,
    /// Digest.
    pub digest: Digest,
    /// Labels.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Inventory format.
    pub format: String,
    /// Number of packages in the inventory.
    pub packages: u64,
    /// When it was first stored.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it was last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// What the reverse index holds of one manifest: its installed packages, stored beside the
/// inventory in a compact form ([`codec::encode_packages`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    /// Internal id.
    pub id: ManifestId,
    /// Digest.
    pub digest: Digest,
    /// The installed packages ([`tocsin_model::inventory::installed_packages`] of its report).
    pub packages: codec::PackageBlob,
}

/// One item of a bulk manifest import ([`Store::put_manifests`]).
#[derive(Clone, Debug, PartialEq)]
pub enum BulkItem {
    /// A manifest to store.
    Manifest(Box<Manifest>),
    /// Everything was sent: commit.
    Commit,
}

/// What a bulk import stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct BulkOutcome {
    /// New manifests.
    pub created: u64,
    /// Manifests whose content changed.
    pub replaced: u64,
    /// Manifests stored with identical content already.
    pub unchanged: u64,
}

impl BulkOutcome {
    /// Counts one put.
    pub fn count(&mut self, o: PutOutcome) {
        match o {
            PutOutcome::Created => self.created += 1,
            PutOutcome::Replaced => self.replaced += 1,
            PutOutcome::Unchanged => self.unchanged += 1,
        }
    }
}

/// One entry of the manifest change feed: the manifest's latest change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestChange {
    /// Position in the feed; strictly increasing in commit order.
    pub seq: u64,
    /// The manifest's id.
    pub id: ManifestId,
    /// Its digest.
    pub digest: Digest,
    /// Whether the change removed it (else it was created or replaced).
    pub deleted: bool,
}

/// What [`Store::import_snapshot`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImportOutcome {
    /// A new update operation was created.
    Created(UpdateOperation),
    /// The snapshot's fingerprint equals the updater's latest operation: nothing stored.
    Unchanged(UpdateOperation),
    /// The snapshot was imported held ([`Store::import_held`]), or equals the operation already
    /// held: it is stored but not processed until accepted ([`Store::accept_operation`]).
    Held(HeldOperation),
}

impl ImportOutcome {
    /// The operation created, found unchanged, or held.
    pub fn operation(&self) -> &UpdateOperation {
        match self {
            ImportOutcome::Created(op) | ImportOutcome::Unchanged(op) => op,
            ImportOutcome::Held(h) => &h.operation,
        }
    }
}

/// An update operation kept out of processing by the storm guard until an operator accepts it
/// or a later import replaces it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct HeldOperation {
    /// The operation (its `reference` is what [`Store::accept_operation`] takes).
    pub operation: UpdateOperation,
    /// Why it is held, in words for the operator (e.g. "would withdraw 912 of 1,206 (76%)").
    pub reason: String,
    /// Vulnerabilities in it.
    pub vulnerabilities: u64,
}

/// The schedule and fetch state of one followed source (an updater tocsin fetches itself),
/// shared by every process on the store so that a source is fetched by one process at a time
/// and on one schedule.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SourceState {
    /// The updater name.
    pub name: String,
    /// When the next scheduled run is due (`None`: due now, never run).
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_run: Option<OffsetDateTime>,
    /// When the last run started.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_attempt: Option<OffsetDateTime>,
    /// When the last successful run started (a 304 or unchanged content is a success).
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_success: Option<OffsetDateTime>,
    /// When the last failed run started.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_error_at: Option<OffsetDateTime>,
    /// Why the last failed run failed. Kept after later successes, with its time, as history.
    pub last_error: Option<String>,
    /// Failed runs since the last success (drives the back-off between scheduled runs).
    pub failures: u32,
    /// The fetcher's own state (validators, incremental cursor), opaque to the store: empty
    /// when none was recorded.
    pub state: String,
    /// Until when a process holds the source's lease (it is fetching), if one does.
    #[serde(with = "time::serde::rfc3339::option")]
    pub lease_until: Option<OffsetDateTime>,
}

/// How one run of a followed source ended, recorded by [`Store::finish_source_run`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceRun {
    /// When the run started.
    pub started: OffsetDateTime,
    /// `Ok` on success, else the reason it failed.
    pub outcome: Result<(), String>,
    /// The fetcher's state to keep (`None`: keep the stored one).
    pub state: Option<String>,
    /// When the next scheduled run is due.
    pub next_run: OffsetDateTime,
}

/// An updater's state.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct UpdaterInfo {
    /// Name.
    pub name: String,
    /// Its newest accepted update operation (never a held or superseded one).
    pub latest: Option<UpdateOperation>,
    /// The last update operation tocsin processed (the base of the next diff).
    pub processed: Option<Uuid>,
    /// Number of accepted update operations kept.
    pub operations: u64,
    /// Vulnerabilities in the newest accepted operation.
    pub vulnerabilities: u64,
    /// The operation held by the storm guard, if any (at most one: a later import replaces it).
    pub held: Option<HeldOperation>,
}

/// A new v4 notification set, with its entries in page order.
#[derive(Clone, Debug, PartialEq)]
pub struct NewNotificationSet {
    /// The set id (the notification id of the wire format).
    pub id: Uuid,
    /// The updater it came from.
    pub updater: String,
    /// The update operation it came from (absent in test mode).
    pub operation: Option<Uuid>,
    /// Entries, in the order pages return them.
    pub entries: Vec<Notification>,
    /// Channels to deliver on: one outbox receipt per channel (none: pull only).
    pub channels: Vec<String>,
    /// Creation time.
    pub created_at: OffsetDateTime,
}

/// Everything processing one update operation produced, committed atomically.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessedUpdate {
    /// The updater.
    pub updater: String,
    /// The processed mark the caller read (compare-and-set against it).
    pub prev: Option<Uuid>,
    /// The operation now processed.
    pub cur: Uuid,
    /// The change set.
    pub change_set: ChangeSet,
    /// The notification set, when the change touched any manifest and notifying is on.
    pub notifications: Option<NewNotificationSet>,
    /// The Clair v2/v3 notifications of this change set, when notifying is on.
    pub legacy: Option<NewLegacyNotifications>,
}

// ---- Clair v2/v3 notifications ------------------------------------------------------------------

/// One new Clair v2/v3 notification: one changed vulnerability of a processed update operation.
///
/// It stores no content of its own: the change it presents is the change set's entry at
/// `change`, so v2/v3 pages are projections of the same stored change set as v4 entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewLegacyNotification {
    /// Its name on the wire (a UUID every process derives identically).
    pub name: Uuid,
    /// The position of its change in the change set's `changes`.
    pub change: u32,
}

/// A manifest as v2/v3 present it (a "layer" in v2, an "ancestry" in v3), fixed when the change
/// set was processed so that `Index` and `LayerName` never change afterwards, even when the
/// manifest is later deleted or relabelled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LegacyLayer {
    /// The manifest.
    pub digest: Digest,
    /// Its stable, never reused index: the manifest's [`ManifestId`].
    pub index: ManifestId,
    /// The name shown to clients: the digest, or a configured label's value.
    pub name: String,
}

/// What processing one update operation adds for Clair v2/v3 clients, committed with it.
#[derive(Clone, Debug, PartialEq)]
pub struct NewLegacyNotifications {
    /// One per changed vulnerability that affects any manifest before or after.
    pub notifications: Vec<NewLegacyNotification>,
    /// Every manifest those changes name, each once.
    pub layers: Vec<LegacyLayer>,
    /// Creation time (v2's `Created`); also when the first webhook send is due.
    pub created_at: OffsetDateTime,
}

/// A stored Clair v2/v3 notification with its state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LegacyNotification {
    /// Name.
    pub name: Uuid,
    /// Updater.
    pub updater: String,
    /// The update operation whose change set holds its change.
    pub operation: Uuid,
    /// The change's position in that change set.
    pub change: u32,
    /// When it was created.
    pub created_at: OffsetDateTime,
    /// When the v2 webhook last delivered it.
    pub notified_at: Option<OffsetDateTime>,
    /// When a client marked it read (v2 `DELETE`, v3 `MarkNotificationAsRead`).
    pub deleted_at: Option<OffsetDateTime>,
}

/// What [`Store::mark_legacy_read`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarkRead {
    /// Marked read now.
    Marked,
    /// It had been marked read before (the first time is kept).
    AlreadyRead,
    /// No such notification.
    Unknown,
}

/// A v2 webhook send leased to one worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LegacyDeliveryTask {
    /// The notification.
    pub name: Uuid,
    /// When it was last delivered (a re-notification when set).
    pub notified_at: Option<OffsetDateTime>,
    /// Lease token: must be presented back to [`Store::record_legacy_delivery`].
    pub lease: Uuid,
}

/// The outcome of one v2 webhook send (all its attempts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LegacyDeliveryOutcome {
    /// Delivered at `at`; send again at `renotify_at` unless read by then (`None`: never).
    Notified {
        /// When the receiver accepted it.
        at: OffsetDateTime,
        /// When to re-send it if it is still unread.
        renotify_at: Option<OffsetDateTime>,
    },
    /// Every attempt failed: try again at `retry_at`.
    Failed {
        /// When the next send is due.
        retry_at: OffsetDateTime,
    },
}

/// A notification set's listing entry.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct NotificationSetInfo {
    /// Set id.
    pub id: Uuid,
    /// Updater.
    pub updater: String,
    /// Update operation (absent in test mode).
    pub operation: Option<Uuid>,
    /// Number of entries.
    pub entries: u64,
    /// Overall state: `deleted` once the client deleted it, else the least advanced receipt's
    /// state (or `delivered` when there are no channels).
    pub status: ReceiptStatus,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Per-channel receipts.
    pub receipts: Vec<Receipt>,
}

/// One channel's delivery state of one set.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Receipt {
    /// Channel name.
    pub channel: String,
    /// State.
    pub status: ReceiptStatus,
    /// Attempts so far.
    pub attempts: u32,
    /// When the next attempt is due (absent once final).
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_attempt_at: Option<OffsetDateTime>,
    /// When it was delivered.
    #[serde(with = "time::serde::rfc3339::option")]
    pub delivered_at: Option<OffsetDateTime>,
}

/// A delivery leased to one worker.
#[derive(Clone, Debug, PartialEq)]
pub struct DeliveryTask {
    /// The set.
    pub set_id: Uuid,
    /// The channel.
    pub channel: String,
    /// Attempts made before this one.
    pub attempts: u32,
    /// When the set was created (for the dead-letter age).
    pub created_at: OffsetDateTime,
    /// Number of entries in the set.
    pub entries: u64,
    /// Lease token: must be presented back to [`Store::record_attempt`].
    pub lease: Uuid,
    /// The claiming store's own key of the set (its row number), so that recording the attempt
    /// need not look the set up by id. Only that store reads it, and only together with the
    /// lease, so a wrong key can do no harm: the store then falls back to the id.
    pub key: i64,
}

/// The outcome of one delivery attempt.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// Delivered.
    Delivered,
    /// Delivered, and the channel's semantics end the set's life (Clair's direct mode).
    DeliveredAndDeleted,
    /// Failed; try again at `retry_at`, or give up when `dead_letter` is set.
    Failed {
        /// When to try again.
        #[serde(with = "time::serde::rfc3339")]
        retry_at: OffsetDateTime,
        /// Give up (dead letter) instead of retrying.
        dead_letter: bool,
    },
}

/// One recorded attempt (append-only history).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Attempt {
    /// The set.
    pub set_id: Uuid,
    /// The channel.
    pub channel: String,
    /// When the attempt started.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
    /// Remote status (HTTP status code), when there was one.
    pub status_code: Option<u16>,
    /// Error text, for failures.
    pub error: Option<String>,
    /// The outcome.
    #[serde(flatten)]
    pub outcome: AttemptOutcome,
}

/// Delivery backlog by state, for metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Backlog {
    /// Receipts waiting for a first attempt.
    pub created: u64,
    /// Receipts whose last attempt failed.
    pub failed: u64,
    /// Receipts given up on.
    pub dead_letter: u64,
    /// Receipts delivered.
    pub delivered: u64,
}

/// What garbage collection removed.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct GcStats {
    /// Notification sets removed (bodies, receipts and attempts included).
    pub sets: u64,
    /// Vulnerabilities no longer referenced by any kept update operation.
    pub vulnerabilities: u64,
}

/// Something that changed in the store, announced after the change committed (see
/// [`Store::events`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreEvent {
    /// An update operation of this updater was imported, or its held operation accepted: it
    /// has an operation to process.
    OperationImported(String),
    /// A notification set was created (there are deliveries to make).
    SetCreated,
    /// A manifest was created, replaced or deleted (the change feed grew).
    ManifestChanged,
    /// Events may have been missed (e.g. the connection carrying them was re-established):
    /// re-check everything.
    Resync,
}

/// tocsin's persistence. Every implementation passes [`conformance`] (feature `conformance`).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    // ---- manifests ----------------------------------------------------------------------------

    /// Stores a manifest (keyed by digest), keeping its id when it is replaced.
    async fn put_manifest(
        &self,
        m: &Manifest,
        now: OffsetDateTime,
    ) -> Result<(ManifestId, PutOutcome)>;
    /// One manifest.
    async fn get_manifest(&self, digest: &Digest) -> Result<Option<Manifest>>;
    /// Removes a manifest; false when it did not exist.
    async fn delete_manifest(&self, digest: &Digest) -> Result<bool>;
    /// Manifests in digest order, starting after `after`.
    async fn list_manifests(
        &self,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<ManifestSummary>>;
    /// Stores a stream of manifests in one transaction: all of them, or — when `items` ends
    /// without [`BulkItem::Commit`], or any manifest is refused — none. Each is stored as
    /// [`Store::put_manifest`] would (ids kept on replace, identical content unchanged, the
    /// change feed written in the same transaction).
    ///
    /// The producer parses while the store writes. On the embedded store the write lock is held
    /// until the stream ends, so other writers wait for it.
    async fn put_manifests(
        &self,
        items: tokio::sync::mpsc::Receiver<BulkItem>,
        now: OffsetDateTime,
    ) -> Result<BulkOutcome>;
    /// What the reverse index needs of every manifest, in id order, starting after `after` (for
    /// rebuilding the index without decoding whole inventories).
    async fn index_entries_after(
        &self,
        after: Option<ManifestId>,
        limit: usize,
    ) -> Result<Vec<IndexEntry>>;
    /// What the reverse index needs of these manifests (ids no longer stored are skipped), in id
    /// order.
    async fn index_entries(&self, ids: &[ManifestId]) -> Result<Vec<IndexEntry>>;
    /// The value of label `label` of each of these manifests that has it.
    async fn manifest_labels(
        &self,
        ids: &[ManifestId],
        label: &str,
    ) -> Result<std::collections::HashMap<ManifestId, String>>;
    /// The manifest change feed after position `after` (0 = from the start), up to `limit`
    /// entries in `seq` order.
    ///
    /// The feed holds each manifest id's latest change only: a put that created or replaced a
    /// manifest, or its delete, is recorded in the same transaction as the change itself, under a
    /// `seq` larger than every earlier one (so a manifest changed twice appears once, at its newer
    /// position). An unchanged put and the delete of an unknown digest record nothing. The feed is
    /// keyed by id, and ids are never reused: a digest deleted and stored again shows both the old
    /// id's delete and the new id's creation, so a reader that indexed the old id learns to drop
    /// it. A reader keeps the last `seq` it applied and asks for what follows.
    async fn manifest_changes(&self, after: u64, limit: usize) -> Result<Vec<ManifestChange>>;
    /// The feed's newest `seq` (0 when empty): a reader that rebuilds from
    /// [`Store::index_entries_after`] reads this first, then follows the feed from it.
    async fn manifest_change_head(&self) -> Result<u64>;

    // ---- feeds --------------------------------------------------------------------------------

    /// Stores a snapshot of an updater all-or-nothing. `fingerprint` is the snapshot's content
    /// hash; equal to the latest (accepted) operation's, nothing is stored. Either way the
    /// updater's held operation, if any, is superseded in the same transaction (see
    /// [`Store::import_held`]).
    async fn import_snapshot(
        &self,
        updater: &str,
        fingerprint: &str,
        vulns: &[Addressed],
        now: OffsetDateTime,
    ) -> Result<ImportOutcome>;
    /// Stores a snapshot as [`Store::import_snapshot`] does, but *held*: the operation is kept,
    /// with `reason`, out of everything that reads an updater's operations
    /// ([`Store::update_operations`], [`UpdaterInfo::latest`]) until [`Store::accept_operation`]
    /// accepts it. A fingerprint equal to the latest (accepted) operation's is
    /// [`ImportOutcome::Unchanged`]; equal to the operation already held, that operation is
    /// returned as [`ImportOutcome::Held`] and nothing is stored.
    ///
    /// Every import, held or not, that stores a new operation or finds the latest accepted one
    /// unchanged *supersedes* the updater's held operation: it is dropped (never processed,
    /// never accepted; its records are collected with the next garbage collection). So an
    /// updater holds at most one operation, and it is always newer than every accepted one.
    /// An updater without any accepted operation may hold one too: [`Store::updaters`] lists it
    /// with `latest` `None`. [`Store::operation_vulnerabilities`] reads a held operation's ids
    /// like any other's.
    async fn import_held(
        &self,
        updater: &str,
        fingerprint: &str,
        vulns: &[Addressed],
        now: OffsetDateTime,
        reason: &str,
    ) -> Result<ImportOutcome>;
    /// Accepts the updater's held operation `op`: from now on it is the updater's latest
    /// operation, processed like any other (a store that announces events announces it as
    /// [`StoreEvent::OperationImported`]). [`StoreError::Invalid`] when `op` is not the
    /// updater's held operation (unknown, superseded, already accepted, or another updater's):
    /// nothing changes.
    async fn accept_operation(&self, updater: &str, op: Uuid) -> Result<UpdateOperation>;
    /// Every updater.
    async fn updaters(&self) -> Result<Vec<UpdaterInfo>>;
    /// An updater's operations, newest first (accepted ones only: never a held or superseded
    /// one).
    async fn update_operations(&self, updater: &str) -> Result<Vec<UpdateOperation>>;
    /// The vulnerability ids of an update operation.
    async fn operation_vulnerabilities(&self, op: Uuid) -> Result<Vec<VulnId>>;
    /// Vulnerabilities by id (unknown ids are skipped), in the order asked.
    async fn vulnerabilities(&self, ids: &[VulnId]) -> Result<Vec<(VulnId, Vulnerability)>>;

    // ---- followed sources ----------------------------------------------------------------------

    /// Leases source `name` to `holder` until `now + lease_for`, creating its state when it has
    /// none (due: `next_run` is `None`), and returns its state; `None` when another holder's
    /// lease has not expired, or when `due_only` and its `next_run` is after `now`. The same
    /// holder may claim again (renewing). A lease expires at exactly `lease_until`: a claim at
    /// that instant succeeds. Claims are atomic across every process sharing the store: of
    /// several claimers at once, at most one gets the source.
    async fn claim_source(
        &self,
        name: &str,
        holder: Uuid,
        now: OffsetDateTime,
        lease_for: Duration,
        due_only: bool,
    ) -> Result<Option<SourceState>>;
    /// Records how `holder`'s run of `name` ended and releases its lease: `last_attempt` (and
    /// `last_success` or `last_error_at`/`last_error`) take `run.started`, `failures` is reset on
    /// success and counted up on failure, `next_run` and (when given) `state` are stored.
    ///
    /// The lease is `holder`'s from its claim until it is released (by this call) or another
    /// holder claims the source: a run that outlasted its lease may still finish as long as
    /// nobody took the source over meanwhile. [`StoreError::Conflict`] when the lease is not
    /// `holder`'s (taken over, already released, or the source never claimed): nothing is
    /// written.
    async fn finish_source_run(&self, name: &str, holder: Uuid, run: &SourceRun) -> Result<()>;
    /// Every source's state, by name.
    async fn sources(&self) -> Result<Vec<SourceState>>;

    // ---- processing ---------------------------------------------------------------------------

    /// Commits a processed update operation atomically (see the crate doc). Returns
    /// [`StoreError::Conflict`] when the updater's processed mark is not `p.prev`, and
    /// [`StoreError::Invalid`] when `p.cur` is not an accepted operation of `p.updater` (a held
    /// or superseded one is never processed).
    async fn commit_processed(&self, p: &ProcessedUpdate) -> Result<()>;
    /// The change set recorded for an update operation.
    async fn change_set(&self, op: Uuid) -> Result<Option<ChangeSet>>;
    /// Creates a notification set outside update processing (test mode).
    async fn create_notification_set(&self, set: &NewNotificationSet) -> Result<()>;

    // ---- notifications ------------------------------------------------------------------------

    /// Up to `limit` entries of a set after position `after` (0 = from the start), and the
    /// position to continue from when more follow. `None` when the set is unknown or deleted.
    async fn notification_page(
        &self,
        set: Uuid,
        after: u64,
        limit: usize,
    ) -> Result<Option<(Vec<Notification>, Option<u64>)>>;
    /// Marks a set deleted (ends delivery); false when unknown or already deleted.
    async fn delete_notification_set(&self, set: Uuid, now: OffsetDateTime) -> Result<bool>;
    /// One set's listing entry.
    async fn notification_set(&self, set: Uuid) -> Result<Option<NotificationSetInfo>>;
    /// Sets, newest first, optionally only those in `status`, starting after set `after`.
    async fn notification_sets(
        &self,
        status: Option<ReceiptStatus>,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<NotificationSetInfo>>;

    // ---- outbox -------------------------------------------------------------------------------

    /// Leases up to `limit` receipts of `channel` that are due (created or failed with
    /// `next_attempt_at <= now`, not deleted, not leased by someone else) for `lease_for`.
    async fn claim_deliveries(
        &self,
        channel: &str,
        now: OffsetDateTime,
        lease_for: Duration,
        limit: usize,
    ) -> Result<Vec<DeliveryTask>>;
    /// Records an attempt and moves the receipt on, provided the lease still holds; returns the
    /// receipt's new state (`Deleted` when the client deleted the set meanwhile: then nothing but
    /// the attempt is recorded). A lost lease is [`StoreError::Conflict`].
    async fn record_attempt(&self, task: &DeliveryTask, attempt: &Attempt)
        -> Result<ReceiptStatus>;
    /// Records several attempts at once, in one transaction where the backend has them: per
    /// attempt what [`Store::record_attempt`] returns (a lost lease is that attempt's
    /// [`StoreError::Conflict`]); any other error fails the whole call, and then none of them is
    /// recorded. A delivery worker records a whole pass this way.
    async fn record_attempts(
        &self,
        batch: &[(DeliveryTask, Attempt)],
    ) -> Result<Vec<Result<ReceiptStatus>>> {
        let mut out = Vec::with_capacity(batch.len());
        for (task, attempt) in batch {
            out.push(match self.record_attempt(task, attempt).await {
                Err(StoreError::Conflict(why)) => Err(StoreError::Conflict(why)),
                Err(e) => return Err(e),
                Ok(s) => Ok(s),
            });
        }
        Ok(out)
    }
    /// A set's attempt history, oldest first.
    async fn attempts(&self, set: Uuid) -> Result<Vec<Attempt>>;
    /// The delivery backlog by state.
    async fn backlog(&self) -> Result<Backlog>;

    // ---- Clair v2/v3 notifications -------------------------------------------------------------

    /// One v2/v3 notification, read or not; `None` when it never existed (or was collected).
    async fn legacy_notification(&self, name: Uuid) -> Result<Option<LegacyNotification>>;
    /// The v2/v3 notifications of an update operation, by change position.
    async fn legacy_notifications(&self, operation: Uuid) -> Result<Vec<LegacyNotification>>;
    /// The layers recorded for an update operation's v2/v3 notifications, in digest order.
    async fn legacy_layers(&self, operation: Uuid) -> Result<Vec<LegacyLayer>>;
    /// Marks a notification read: no more webhook sends; pages still work and show the time.
    async fn mark_legacy_read(&self, name: Uuid, now: OffsetDateTime) -> Result<MarkRead>;
    /// Leases up to `limit` unread notifications whose webhook send is due (`now` or earlier) and
    /// that nobody else holds, oldest due first, for `lease_for`.
    async fn claim_legacy_deliveries(
        &self,
        now: OffsetDateTime,
        lease_for: Duration,
        limit: usize,
    ) -> Result<Vec<LegacyDeliveryTask>>;
    /// Records a send's outcome and releases the lease, provided it still holds (else
    /// [`StoreError::Conflict`], nothing written). A notification read meanwhile stays read and
    /// is never due again.
    async fn record_legacy_delivery(
        &self,
        task: &LegacyDeliveryTask,
        outcome: LegacyDeliveryOutcome,
    ) -> Result<()>;

    // ---- secrets ------------------------------------------------------------------------------

    /// The secret stored under `name`, storing `candidate` first when there is none, so that
    /// every process sharing the database uses one value (e.g. the key that signs page tokens).
    async fn secret(&self, name: &str, candidate: &[u8]) -> Result<Vec<u8>>;

    // ---- housekeeping -------------------------------------------------------------------------

    /// Removes deleted sets, and delivered sets older than `delivered_retention`, with their
    /// entries, receipts and attempts; v2/v3 notifications read before `now -
    /// delivered_retention` (and an operation's layers with its last one); superseded update
    /// operations (see [`Store::import_held`]) with their memberships; and vulnerabilities no
    /// operation (accepted or held) references any more.
    ///
    /// Several processes may call this at once; an implementation shared between processes runs
    /// one collection at a time and returns zero counts to the callers it turned away.
    async fn collect_garbage(
        &self,
        now: OffsetDateTime,
        delivered_retention: Duration,
    ) -> Result<GcStats>;

    // ---- wake-ups -----------------------------------------------------------------------------

    /// A subscription to changes committed by any process sharing this store, or `None` when the
    /// backend cannot announce them (then callers rely on polling alone). Events are hints: they
    /// arrive after the commit, possibly coalesced, and a receiver that lags or receives
    /// [`StoreEvent::Resync`] must re-check rather than assume nothing happened.
    fn events(&self) -> Option<tokio::sync::broadcast::Receiver<StoreEvent>> {
        None
    }
}
