//! Processing commits, notification sets, the outbox of receipts, attempts and garbage collection.
//!
//! Concurrency between processes, statement by statement:
//! - `commit_processed` locks the updater's row (`FOR UPDATE`) and compares its processed mark
//!   inside the transaction: of two processes committing the same operation, the second waits for
//!   the first, then sees the moved mark and gets `Conflict`, writing nothing.
//! - `claim_deliveries` selects due receipts `FOR UPDATE OF r SKIP LOCKED` and leases them in the
//!   same transaction: a receipt another process is claiming is skipped, one it has just leased
//!   fails the lease condition on re-check, so no two processes hold the same receipt.
//! - Writers that touch a set and its receipts lock the set row first, then receipts
//!   (`delete_notification_set`, `record_attempt`, garbage collection), so they cannot deadlock.
//! - Garbage collection runs under `pg_try_advisory_xact_lock`: one process collects, the others
//!   return zero counts at once instead of queueing behind it.
//!
//! Entries of a new set are written with binary `COPY`, so a 100,000-entry set is one transaction
//! of about a second rather than 100,000 statements.
use std::time::Duration;

use deadpool_postgres::{Client, GenericClient, Transaction};
use time::OffsetDateTime;
use tocsin_model::change::ChangeSet;
use tocsin_model::notification::{Notification, ReceiptStatus};
use tocsin_store::codec::decode_change_set;
use tocsin_store::{
    Attempt, AttemptOutcome, Backlog, DeliveryTask, GcStats, NotificationSetInfo, Receipt,
    StoreError,
};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;
use uuid::Uuid;

use crate::convert::{
    add_nanos, corrupt_json, from_nanos, from_opt_nanos, to_i64, to_nanos, to_u32, to_u64,
    PgContext, Result,
};
use crate::feeds::op_seq;
use crate::schema::{LOCK_GC, LOCK_VULNS, NOTIFY_CHANNEL};

// ---- encoding (before a connection is taken) ------------------------------------------------

pub(crate) use tocsin_store::codec::{encode_processed, encode_set, EncodedProcessed, EncodedSet};

// ---- writing sets ---------------------------------------------------------------------------

async fn insert_set(tx: &Transaction<'_>, s: &EncodedSet) -> Result<()> {
    let id = s.id;
    let row = tx
        .query_opt(
            "INSERT INTO notification_set (id, updater, operation, entries, created_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (id) DO NOTHING RETURNING seq",
            &[
                &id,
                &s.updater,
                &s.operation,
                &to_i64(s.entries.len()),
                &s.created_at,
            ],
        )
        .await
        .with_ctx(|| format!("creating notification set {id}"))?;
    let Some(row) = row else {
        return Err(StoreError::Conflict(format!(
            "notification set {id} already exists"
        )));
    };
    let seq: i64 = row.get(0);
    let sink = tx
        .copy_in("COPY notification_entry (set_seq, position, body) FROM STDIN (FORMAT binary)")
        .await
        .with_ctx(|| format!("notification set {id}: starting to copy entries"))?;
    let writer = BinaryCopyInWriter::new(sink, &[Type::INT8, Type::INT8, Type::TEXT]);
    futures::pin_mut!(writer);
    for (i, body) in s.entries.iter().enumerate() {
        let position = to_i64(i).saturating_add(1);
        writer
            .as_mut()
            .write(&[&seq, &position, body])
            .await
            .with_ctx(|| format!("notification set {id}: copying entry {position}"))?;
    }
    writer
        .finish()
        .await
        .with_ctx(|| format!("notification set {id}: finishing the entry copy"))?;
    if !s.channels.is_empty() {
        tx.execute(
            "INSERT INTO receipt (set_seq, channel, status, attempts, next_attempt_at)
             SELECT $1, c, 'created', 0, $3 FROM unnest($2::text[]) AS u(c)",
            &[&seq, &s.channels, &s.created_at],
        )
        .await
        .with_ctx(|| format!("notification set {id}: creating its receipts"))?;
        tx.execute("SELECT pg_notify($1, 's')", &[&NOTIFY_CHANNEL])
            .await
            .ctx("announcing a new notification set")?;
    }
    Ok(())
}

pub(crate) async fn create_set(c: &mut Client, s: &EncodedSet) -> Result<()> {
    let tx = c
        .transaction()
        .await
        .ctx("create_notification_set: begin")?;
    insert_set(&tx, s).await?;
    tx.commit().await.ctx("create_notification_set: commit")
}

pub(crate) async fn commit_processed(c: &mut Client, p: &EncodedProcessed) -> Result<()> {
    let tx = c.transaction().await.ctx("commit_processed: begin")?;
    let Some(found) = op_seq(&tx, p.cur).await? else {
        return Err(StoreError::Invalid(format!(
            "commit_processed: unknown update operation {}",
            p.cur
        )));
    };
    if found.updater != p.updater {
        return Err(StoreError::Invalid(format!(
            "commit_processed: operation {} belongs to updater {:?}, not {:?}",
            p.cur, found.updater, p.updater
        )));
    }
    // A held operation is processed only once accepted, a superseded one never (acceptance and
    // superseding are final for an accepted or superseded operation, so this cannot change
    // before the commit).
    if !found.accepted {
        return Err(StoreError::Invalid(format!(
            "commit_processed: update operation {} of {:?} is held or superseded, not accepted",
            p.cur, p.updater
        )));
    }
    let op = found.seq;
    // The row lock makes the comparison below and the mark's update one atomic step across
    // processes: a concurrent committer waits here and then reads our mark.
    let mark: Option<Uuid> = tx
        .query_opt(
            "SELECT processed_op FROM updater WHERE name = $1 FOR UPDATE",
            &[&p.updater],
        )
        .await
        .with_ctx(|| format!("reading the processed mark of {:?}", p.updater))?
        .and_then(|r| r.get(0));
    if mark != p.prev {
        return Err(StoreError::Conflict(format!(
            "updater {:?}: processed mark is {mark:?}, not {:?} (another processor committed first)",
            p.updater, p.prev
        )));
    }
    let inserted = tx
        .execute(
            "INSERT INTO change_set (op, body) VALUES ($1, $2) ON CONFLICT (op) DO NOTHING",
            &[&op, &p.change_set],
        )
        .await
        .ctx("commit_processed: storing the change set")?;
    if inserted == 0 {
        return Err(StoreError::Conflict(format!(
            "update operation {} already has a change set",
            p.cur
        )));
    }
    if let Some(set) = &p.set {
        insert_set(&tx, set).await?;
    }
    if let Some(legacy) = &p.legacy {
        crate::legacy::insert(&tx, op, legacy).await?;
    }
    tx.execute(
        "UPDATE updater SET processed_op = $1 WHERE name = $2",
        &[&p.cur, &p.updater],
    )
    .await
    .ctx("commit_processed: moving the processed mark")?;
    tx.commit().await.ctx("commit_processed: commit")
}

pub(crate) async fn change_set(c: &Client, op: Uuid) -> Result<Option<ChangeSet>> {
    let row = c
        .query_opt(
            "SELECT c.body FROM change_set c JOIN operation o ON o.seq = c.op WHERE o.ref = $1",
            &[&op],
        )
        .await
        .with_ctx(|| format!("reading the change set of {op}"))?;
    row.map(|r| decode_change_set(r.get(0), &format!("change set of {op}")))
        .transpose()
}

// ---- reading sets ---------------------------------------------------------------------------

/// A set's overall status: `deleted` once deleted, else its least advanced receipt (created,
/// then delivery_failed, then dead_letter, then delivered), `delivered` with no channels.
const SET_STATUS: &str = "CASE WHEN s.deleted_at IS NOT NULL THEN 'deleted' ELSE COALESCE(
    (SELECT r.status FROM receipt r WHERE r.set_seq = s.seq
     ORDER BY CASE r.status WHEN 'created' THEN 0 WHEN 'delivery_failed' THEN 1
                            WHEN 'dead_letter' THEN 2 ELSE 3 END
     LIMIT 1),
    'delivered') END";

fn select_sets(filter: &str) -> String {
    format!(
        "SELECT seq, id, updater, operation, entries, created_at, status FROM (
             SELECT s.seq, s.id, s.updater, s.operation, s.entries, s.created_at,
                    {SET_STATUS} AS status
             FROM notification_set s) sets {filter}"
    )
}

fn parse_status(s: &str, what: impl FnOnce() -> String) -> Result<ReceiptStatus> {
    ReceiptStatus::parse(s)
        .ok_or_else(|| StoreError::Corrupt(format!("{}: unknown status {s:?}", what())))
}

/// Turns set rows into listing entries, reading all their receipts in one statement.
async fn set_infos<C: GenericClient>(
    c: &C,
    rows: &[tokio_postgres::Row],
) -> Result<Vec<NotificationSetInfo>> {
    let seqs: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    let st = c
        .prepare_cached(
            "SELECT set_seq, channel, status, attempts, next_attempt_at, delivered_at
             FROM receipt WHERE set_seq = ANY($1) ORDER BY set_seq, channel",
        )
        .await
        .ctx("reading receipts: prepare")?;
    let receipts = c.query(&st, &[&seqs]).await.ctx("reading receipts")?;
    let mut by_set: std::collections::HashMap<i64, Vec<Receipt>> = Default::default();
    for r in &receipts {
        let (seq, channel): (i64, String) = (r.get(0), r.get(1));
        let rwhat = || format!("notification set row {seq}, receipt {channel:?}");
        let receipt = Receipt {
            status: parse_status(r.get(2), rwhat)?,
            attempts: to_u32(r.get(3), rwhat)?,
            next_attempt_at: from_opt_nanos(r.get(4), rwhat)?,
            delivered_at: from_opt_nanos(r.get(5), rwhat)?,
            channel,
        };
        by_set.entry(seq).or_default().push(receipt);
    }
    rows.iter()
        .map(|r| {
            let (seq, id): (i64, Uuid) = (r.get(0), r.get(1));
            let what = || format!("notification set {id}");
            Ok(NotificationSetInfo {
                id,
                updater: r.get(2),
                operation: r.get(3),
                entries: to_u64(r.get(4), what)?,
                created_at: from_nanos(r.get(5), what)?,
                status: parse_status(r.get(6), what)?,
                receipts: by_set.remove(&seq).unwrap_or_default(),
            })
        })
        .collect()
}

pub(crate) async fn notification_set(
    c: &mut Client,
    set: Uuid,
) -> Result<Option<NotificationSetInfo>> {
    let tx = read_snapshot(c, "notification_set").await?;
    let rows = tx
        .query(&select_sets("WHERE id = $1"), &[&set])
        .await
        .with_ctx(|| format!("reading notification set {set}"))?;
    let mut infos = set_infos(&tx, &rows).await?;
    Ok(infos.pop())
}

/// A read-only transaction on one snapshot, for reads made of several statements.
async fn read_snapshot<'a>(c: &'a mut Client, what: &'static str) -> Result<Transaction<'a>> {
    c.build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .ctx(what)
}

pub(crate) async fn notification_sets(
    c: &mut Client,
    status: Option<ReceiptStatus>,
    after: Option<Uuid>,
    limit: usize,
) -> Result<Vec<NotificationSetInfo>> {
    let tx = read_snapshot(c, "notification_sets: begin").await?;
    // Keyset paging on (created_at, seq) descending: stable while sets are added or deleted.
    let (after_created, after_seq): (Option<i64>, Option<i64>) = match after {
        None => (None, None),
        Some(a) => {
            let key = tx
                .query_opt(
                    "SELECT created_at, seq FROM notification_set WHERE id = $1",
                    &[&a],
                )
                .await
                .with_ctx(|| format!("notification_sets: looking up {a}"))?;
            let key = key.ok_or_else(|| {
                StoreError::Invalid(format!(
                    "notification_sets: cannot continue after unknown set {a}"
                ))
            })?;
            (Some(key.get(0)), Some(key.get(1)))
        }
    };
    let rows = tx
        .query(
            &select_sets(
                "WHERE ($1::text IS NULL OR status = $1)
                   AND ($2::bigint IS NULL OR created_at < $2 OR (created_at = $2 AND seq < $3))
                 ORDER BY created_at DESC, seq DESC LIMIT $4",
            ),
            &[
                &status.map(ReceiptStatus::as_str),
                &after_created,
                &after_seq,
                &to_i64(limit),
            ],
        )
        .await
        .ctx("notification_sets: query")?;
    set_infos(&tx, &rows).await
}

pub(crate) type Page = (Vec<Notification>, Option<u64>);

pub(crate) async fn page(c: &Client, set: Uuid, after: u64, limit: usize) -> Result<Option<Page>> {
    if limit == 0 {
        return Err(StoreError::Invalid(format!(
            "notification_page of {set}: the page size must be at least 1"
        )));
    }
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    // One statement (one snapshot): the set's presence and one row more than asked, which tells
    // whether a continuation is needed without a COUNT. A live set with no entries past `after`
    // still yields its marker row (position NULL).
    let st = c
        .prepare_cached(
            "SELECT e.position, e.body
             FROM notification_set s
             LEFT JOIN LATERAL (
                 SELECT position, body FROM notification_entry
                 WHERE set_seq = s.seq AND position > $2 ORDER BY position LIMIT $3
             ) e ON true
             WHERE s.id = $1 AND s.deleted_at IS NULL
             ORDER BY e.position",
        )
        .await
        .ctx("notification_page: prepare")?;
    let rows = c
        .query(&st, &[&set, &after, &to_i64(limit).saturating_add(1)])
        .await
        .with_ctx(|| format!("notification_page of {set}"))?;
    if rows.is_empty() {
        return Ok(None);
    }
    let mut entries: Vec<(i64, &str)> = rows
        .iter()
        .filter_map(|r| r.get::<_, Option<i64>>(0).map(|p| (p, r.get::<_, &str>(1))))
        .collect();
    let more = entries.len() > limit;
    entries.truncate(limit);
    let next = match entries.last() {
        Some((position, _)) if more => Some(to_u64(*position, || format!("set {set} position"))?),
        _ => None,
    };
    let entries = entries
        .into_iter()
        .map(|(position, body)| {
            serde_json::from_str(body)
                .map_err(|e| corrupt_json(format!("notification set {set}, entry {position}"), e))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Some((entries, next)))
}

pub(crate) async fn delete_set(c: &mut Client, set: Uuid, now: OffsetDateTime) -> Result<bool> {
    let now = to_nanos(now, "delete time")?;
    let tx = c
        .transaction()
        .await
        .ctx("delete_notification_set: begin")?;
    let row = tx
        .query_opt(
            "UPDATE notification_set SET deleted_at = $1 WHERE id = $2 AND deleted_at IS NULL
             RETURNING seq",
            &[&now, &set],
        )
        .await
        .with_ctx(|| format!("deleting notification set {set}"))?;
    let Some(row) = row else { return Ok(false) };
    let seq: i64 = row.get(0);
    // Leases go too: a worker holding one finds the set deleted and records only its attempt.
    tx.execute(
        "UPDATE receipt SET status = 'deleted', next_attempt_at = NULL, lease_id = NULL,
                            lease_until = NULL
         WHERE set_seq = $1",
        &[&seq],
    )
    .await
    .with_ctx(|| format!("deleting the receipts of set {set}"))?;
    tx.commit().await.ctx("delete_notification_set: commit")?;
    Ok(true)
}

// ---- outbox ---------------------------------------------------------------------------------

pub(crate) async fn claim(
    c: &mut Client,
    channel: &str,
    now: OffsetDateTime,
    lease_for: Duration,
    limit: usize,
) -> Result<Vec<DeliveryTask>> {
    let now = to_nanos(now, "claim time")?;
    let until = add_nanos(now, lease_for, "claim_deliveries lease")?;
    if limit == 0 {
        return Ok(Vec::new());
    }
    let tx = c.transaction().await.ctx("claim_deliveries: begin")?;
    // One index range per status, each read in index order, then merged: `status IN (…)`
    // cannot use the index order and sorts every due receipt on each claim. Rows locked here
    // but not leased (the merge keeps `limit`) are simply released at commit.
    let st = tx
        .prepare_cached(
            "SELECT r.set_seq, s.id, r.attempts, s.created_at, s.entries, r.next_attempt_at
             FROM receipt r JOIN notification_set s ON s.seq = r.set_seq
             WHERE r.channel = $1
               AND r.status = $4
               AND r.next_attempt_at <= $2
               AND s.deleted_at IS NULL
               AND (r.lease_until IS NULL OR r.lease_until <= $2)
             ORDER BY r.next_attempt_at, r.set_seq
             LIMIT $3
             FOR UPDATE OF r SKIP LOCKED",
        )
        .await
        .ctx("claim_deliveries: prepare")?;
    let mut due = Vec::new();
    for status in ["created", "delivery_failed"] {
        due.extend(
            tx.query(&st, &[&channel, &now, &to_i64(limit), &status])
                .await
                .with_ctx(|| format!("claim_deliveries on {channel:?}"))?,
        );
    }
    due.sort_by_key(|r| (r.get::<_, i64>(5), r.get::<_, i64>(0)));
    due.truncate(limit);
    let mut tasks = Vec::with_capacity(due.len());
    let mut seqs = Vec::with_capacity(due.len());
    let mut leases = Vec::with_capacity(due.len());
    for r in &due {
        let (seq, id): (i64, Uuid) = (r.get(0), r.get(1));
        let what = || format!("notification set {id}, receipt {channel:?}");
        let lease = Uuid::new_v4();
        tasks.push(DeliveryTask {
            set_id: id,
            channel: channel.to_string(),
            attempts: to_u32(r.get(2), what)?,
            created_at: from_nanos(r.get(3), what)?,
            entries: to_u64(r.get(4), what)?,
            lease,
            key: seq,
        });
        seqs.push(seq);
        leases.push(lease);
    }
    if !tasks.is_empty() {
        tx.execute(
            "UPDATE receipt r SET lease_id = l.lease, lease_until = $1
             FROM unnest($2::bigint[], $3::uuid[]) AS l(set_seq, lease)
             WHERE r.set_seq = l.set_seq AND r.channel = $4",
            &[&until, &seqs, &leases, &channel],
        )
        .await
        .with_ctx(|| format!("leasing {} receipts on {channel:?}", tasks.len()))?;
    }
    tx.commit().await.ctx("claim_deliveries: commit")?;
    Ok(tasks)
}

/// An attempt as stored.
pub(crate) struct EncodedAttempt {
    at: i64,
    finished: i64,
    duration_ms: i64,
    status_code: Option<i32>,
    error: Option<String>,
    outcome: &'static str,
    retry_at: Option<i64>,
    dead_letter: bool,
}

pub(crate) fn encode_attempt(task: &DeliveryTask, a: &Attempt) -> Result<EncodedAttempt> {
    if a.set_id != task.set_id || a.channel != task.channel {
        return Err(StoreError::Invalid(format!(
            "record_attempt: the attempt is for set {} on {:?} but the task is set {} on {:?}",
            a.set_id, a.channel, task.set_id, task.channel
        )));
    }
    let at = to_nanos(a.at, "attempt time")?;
    let (outcome, retry_at, dead_letter) = match &a.outcome {
        AttemptOutcome::Delivered => ("delivered", None, false),
        AttemptOutcome::DeliveredAndDeleted => ("delivered_and_deleted", None, false),
        AttemptOutcome::Failed {
            retry_at,
            dead_letter,
        } => (
            "failed",
            Some(to_nanos(*retry_at, "retry_at")?),
            *dead_letter,
        ),
    };
    Ok(EncodedAttempt {
        at,
        finished: add_nanos(at, Duration::from_millis(a.duration_ms), "attempt end")?,
        duration_ms: i64::try_from(a.duration_ms).unwrap_or(i64::MAX),
        status_code: a.status_code.map(i32::from),
        error: a.error.clone(),
        outcome,
        retry_at,
        dead_letter,
    })
}

pub(crate) async fn record_attempt(
    c: &mut Client,
    task: &DeliveryTask,
    a: &EncodedAttempt,
) -> Result<ReceiptStatus> {
    let tx = c.transaction().await.ctx("record_attempt: begin")?;
    let out = record_in(&tx, task, a).await?;
    tx.commit().await.ctx("record_attempt: commit")?;
    out
}

/// Records a batch of attempts in one transaction (see `Store::record_attempts`). Sets are
/// locked in id order, so two batches can never wait on each other in a cycle.
pub(crate) async fn record_attempts(
    c: &mut Client,
    batch: &[(DeliveryTask, EncodedAttempt)],
) -> Result<Vec<Result<ReceiptStatus>>> {
    let mut order: Vec<usize> = (0..batch.len()).collect();
    order.sort_by_key(|i| (batch[*i].0.set_id, batch[*i].0.channel.clone()));
    let tx = c.transaction().await.ctx("record_attempts: begin")?;
    let mut out: Vec<Option<Result<ReceiptStatus>>> = (0..batch.len()).map(|_| None).collect();
    for i in order {
        let (task, a) = &batch[i];
        out[i] = Some(record_in(&tx, task, a).await?);
    }
    tx.commit().await.ctx("record_attempts: commit")?;
    Ok(out.into_iter().flatten().collect())
}

/// One attempt inside the caller's transaction. The outer error fails the transaction; the
/// inner one (a lost lease) is the attempt's own outcome, recorded all the same.
async fn record_in(
    tx: &Transaction<'_>,
    task: &DeliveryTask,
    a: &EncodedAttempt,
) -> Result<Result<ReceiptStatus>> {
    let set = task.set_id;
    let channel = task.channel.as_str();
    // Set row first, then the receipt (the lock order of every writer; see the module doc).
    let set_row = tx
        .query_opt(
            "SELECT seq, deleted_at FROM notification_set WHERE id = $1 FOR NO KEY UPDATE",
            &[&set],
        )
        .await
        .with_ctx(|| format!("record_attempt: locking set {set}"))?;
    let Some(set_row) = set_row else {
        // Deleted and already collected: there is nothing left to attach the attempt to.
        return Ok(Ok(ReceiptStatus::Deleted));
    };
    let (seq, deleted_at): (i64, Option<i64>) = (set_row.get(0), set_row.get(1));
    let lease: Option<Option<Uuid>> = tx
        .query_opt(
            "SELECT lease_id FROM receipt WHERE set_seq = $1 AND channel = $2 FOR UPDATE",
            &[&seq, &channel],
        )
        .await
        .with_ctx(|| format!("record_attempt: reading set {set}, receipt {channel:?}"))?
        .map(|r| r.get(0));
    let Some(lease) = lease else {
        return Err(StoreError::Invalid(format!(
            "record_attempt: notification set {set} has no channel {channel:?}"
        )));
    };
    tx.execute(
        "INSERT INTO attempt (set_seq, channel, at, duration_ms, status_code, error, outcome,
                              retry_at, dead_letter)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            &seq,
            &channel,
            &a.at,
            &a.duration_ms,
            &a.status_code,
            &a.error,
            &a.outcome,
            &a.retry_at,
            &a.dead_letter,
        ],
    )
    .await
    .with_ctx(|| format!("record_attempt: storing the attempt on set {set}, {channel:?}"))?;
    if deleted_at.is_some() {
        return Ok(Ok(ReceiptStatus::Deleted));
    }
    if lease != Some(task.lease) {
        // The attempt did happen, so the history keeps it; only the receipt is not ours to move.
        return Ok(Err(StoreError::Conflict(format!(
            "set {set}, channel {channel:?}: lease {} is no longer held (expired and re-claimed)",
            task.lease
        ))));
    }
    let (status, next_attempt_at, delivered_at) = match (a.outcome, a.dead_letter) {
        ("failed", true) => (ReceiptStatus::DeadLetter, None, None),
        ("failed", false) => (ReceiptStatus::DeliveryFailed, a.retry_at, None),
        _ => (ReceiptStatus::Delivered, None, Some(a.finished)),
    };
    tx.execute(
        "UPDATE receipt SET status = $1, attempts = attempts + 1, next_attempt_at = $2,
                            delivered_at = COALESCE($3, delivered_at),
                            lease_id = NULL, lease_until = NULL
         WHERE set_seq = $4 AND channel = $5",
        &[
            &status.as_str(),
            &next_attempt_at,
            &delivered_at,
            &seq,
            &channel,
        ],
    )
    .await
    .with_ctx(|| format!("record_attempt: updating set {set}, receipt {channel:?}"))?;
    if a.outcome == "delivered_and_deleted" {
        tx.execute(
            "UPDATE notification_set SET deleted_at = $1 WHERE seq = $2",
            &[&a.finished, &seq],
        )
        .await
        .with_ctx(|| format!("record_attempt: deleting set {set}"))?;
        tx.execute(
            "UPDATE receipt SET status = 'deleted', next_attempt_at = NULL, lease_id = NULL,
                                lease_until = NULL
             WHERE set_seq = $1 AND channel <> $2",
            &[&seq, &channel],
        )
        .await
        .with_ctx(|| format!("record_attempt: deleting the other receipts of set {set}"))?;
    }
    if status == ReceiptStatus::DeliveryFailed {
        // A retry is due later; waking workers now lets an idle one compute its next pass.
        tx.execute("SELECT pg_notify($1, 's')", &[&NOTIFY_CHANNEL])
            .await
            .ctx("record_attempt: announcing a retry")?;
    }
    Ok(Ok(status))
}

pub(crate) async fn attempts(c: &Client, set: Uuid) -> Result<Vec<Attempt>> {
    let rows = c
        .query(
            "SELECT a.seq, a.channel, a.at, a.duration_ms, a.status_code, a.error, a.outcome,
                    a.retry_at, a.dead_letter
             FROM attempt a JOIN notification_set s ON s.seq = a.set_seq
             WHERE s.id = $1 ORDER BY a.at, a.seq",
            &[&set],
        )
        .await
        .with_ctx(|| format!("attempts of set {set}"))?;
    rows.iter()
        .map(|r| {
            let seq: i64 = r.get(0);
            let what = || format!("attempt row {seq} of set {set}");
            let outcome = match r.get::<_, &str>(6) {
                "delivered" => AttemptOutcome::Delivered,
                "delivered_and_deleted" => AttemptOutcome::DeliveredAndDeleted,
                "failed" => AttemptOutcome::Failed {
                    retry_at: from_nanos(
                        r.get::<_, Option<i64>>(7).ok_or_else(|| {
                            StoreError::Corrupt(format!("{}: failed without retry_at", what()))
                        })?,
                        what,
                    )?,
                    dead_letter: r.get(8),
                },
                other => {
                    return Err(StoreError::Corrupt(format!(
                        "{}: unknown outcome {other:?}",
                        what()
                    )))
                }
            };
            Ok(Attempt {
                set_id: set,
                channel: r.get(1),
                at: from_nanos(r.get(2), what)?,
                duration_ms: to_u64(r.get(3), what)?,
                status_code: r
                    .get::<_, Option<i32>>(4)
                    .map(|c| {
                        u16::try_from(c).map_err(|_| {
                            StoreError::Corrupt(format!("{}: status code {c}", what()))
                        })
                    })
                    .transpose()?,
                error: r.get(5),
                outcome,
            })
        })
        .collect()
}

pub(crate) async fn backlog(c: &Client) -> Result<Backlog> {
    let rows = c
        .query("SELECT status, COUNT(*) FROM receipt GROUP BY status", &[])
        .await
        .ctx("backlog")?;
    let mut b = Backlog::default();
    for r in &rows {
        let status: &str = r.get(0);
        let n = to_u64(r.get(1), || format!("backlog count of {status}"))?;
        match parse_status(status, || "receipt".to_string())? {
            ReceiptStatus::Created => b.created = n,
            ReceiptStatus::DeliveryFailed => b.failed = n,
            ReceiptStatus::DeadLetter => b.dead_letter = n,
            ReceiptStatus::Delivered => b.delivered = n,
            ReceiptStatus::Deleted => {}
        }
    }
    Ok(b)
}

pub(crate) async fn collect_garbage(
    c: &mut Client,
    now: OffsetDateTime,
    retention: Duration,
) -> Result<GcStats> {
    let now = to_nanos(now, "garbage collection time")?;
    // A retention reaching before 1678 keeps everything delivered.
    let cutoff = i64::try_from(retention.as_nanos())
        .ok()
        .and_then(|r| now.checked_sub(r))
        .unwrap_or(i64::MIN);
    let tx = c.transaction().await.ctx("collect_garbage: begin")?;
    let ours: bool = tx
        .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&LOCK_GC])
        .await
        .ctx("collect_garbage: taking the collection lock")?
        .get(0);
    if !ours {
        tracing::debug!("garbage collection is running in another process; skipped");
        return Ok(GcStats::default());
    }
    // Entries, receipts and attempts go with their set (ON DELETE CASCADE).
    let sets = tx
        .execute(
            "DELETE FROM notification_set s
             WHERE s.deleted_at IS NOT NULL
                OR (EXISTS (SELECT 1 FROM receipt r WHERE r.set_seq = s.seq)
                    AND NOT EXISTS (
                        SELECT 1 FROM receipt r
                        WHERE r.set_seq = s.seq
                          AND (r.status <> 'delivered' OR r.delivered_at IS NULL
                               OR r.delivered_at >= $1)))
                OR (NOT EXISTS (SELECT 1 FROM receipt r WHERE r.set_seq = s.seq)
                    AND s.created_at < $1)",
            &[&cutoff],
        )
        .await
        .ctx("collect_garbage: removing notification sets")?;
    crate::legacy::collect(&tx, cutoff).await?;
    let operations = crate::feeds::collect_superseded(&tx).await?;
    // Exclusive: no import is between storing a body and linking it (see `feeds::import`).
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_VULNS])
        .await
        .ctx("collect_garbage: taking the vulnerability lock")?;
    let vulnerabilities = tx
        .execute(
            "DELETE FROM vulnerability v WHERE NOT EXISTS (
                 SELECT 1 FROM operation_vulnerability ov WHERE ov.vuln_id = v.id)",
            &[],
        )
        .await
        .ctx("collect_garbage: removing unreferenced vulnerabilities")?;
    tx.commit().await.ctx("collect_garbage: commit")?;
    if operations > 0 {
        tracing::debug!(operations, "removed superseded update operations");
    }
    Ok(GcStats {
        sets,
        vulnerabilities,
    })
}
