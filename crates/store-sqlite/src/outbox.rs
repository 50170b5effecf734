//! Processing commits, notification sets, the outbox of receipts, attempts and garbage collection.
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use time::OffsetDateTime;
use tocsin_model::change::ChangeSet;
use tocsin_model::notification::{Notification, ReceiptStatus};
use tocsin_store::codec::decode_change_set;
use tocsin_store::{
    Attempt, AttemptOutcome, Backlog, DeliveryTask, GcStats, NotificationSetInfo, Receipt,
    StoreError,
};
use uuid::Uuid;

use crate::convert::{
    add_nanos, corrupt_json, from_nanos, from_opt_nanos, parse_uuid, to_i64, to_nanos, to_u64,
    Result, SqlContext,
};
use crate::feeds::op_seq;

// ---- encoding (before the write lock) ------------------------------------------------------

pub(crate) use tocsin_store::codec::{encode_processed, encode_set, EncodedProcessed, EncodedSet};

// ---- writing sets ---------------------------------------------------------------------------

fn insert_set(tx: &Transaction<'_>, s: &EncodedSet) -> Result<()> {
    let id = s.id.to_string();
    let exists = tx
        .query_row(
            "SELECT 1 FROM notification_set WHERE id = ?1",
            [&id],
            |_| Ok(()),
        )
        .optional()
        .with_ctx(|| format!("checking notification set {id}"))?;
    if exists.is_some() {
        return Err(StoreError::Conflict(format!(
            "notification set {id} already exists"
        )));
    }
    tx.execute(
        "INSERT INTO notification_set (id, updater, operation, entries, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            id,
            s.updater,
            s.operation.map(|o| o.to_string()),
            to_i64(s.entries.len()),
            s.created_at
        ],
    )
    .with_ctx(|| format!("creating notification set {id}"))?;
    let seq = tx.last_insert_rowid();
    {
        let mut insert = tx
            .prepare_cached(
                "INSERT INTO notification_entry (set_seq, position, body) VALUES (?1, ?2, ?3)",
            )
            .ctx("preparing entry insert")?;
        for (i, body) in s.entries.iter().enumerate() {
            let position = to_i64(i).saturating_add(1);
            insert
                .execute(params![seq, position, body])
                .with_ctx(|| format!("notification set {id}: storing entry {position}"))?;
        }
    }
    let mut receipt = tx
        .prepare_cached(
            "INSERT INTO receipt (set_seq, channel, status, attempts, next_attempt_at)
             VALUES (?1, ?2, 'created', 0, ?3)",
        )
        .ctx("preparing receipt insert")?;
    for c in &s.channels {
        receipt
            .execute(params![seq, c, s.created_at])
            .with_ctx(|| format!("notification set {id}: creating the receipt for {c:?}"))?;
    }
    Ok(())
}

pub(crate) fn create_set(conn: &mut Connection, s: &EncodedSet) -> Result<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .ctx("create_notification_set: begin")?;
    insert_set(&tx, s)?;
    tx.commit().ctx("create_notification_set: commit")
}

pub(crate) fn commit_processed(conn: &mut Connection, p: &EncodedProcessed) -> Result<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .ctx("commit_processed: begin")?;
    let Some(found) = op_seq(&tx, p.cur)? else {
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
    let mark: Option<String> = tx
        .query_row(
            "SELECT processed_op FROM updater WHERE name = ?1",
            [&p.updater],
            |r| r.get(0),
        )
        .optional()
        .with_ctx(|| format!("reading the processed mark of {:?}", p.updater))?
        .flatten();
    let mark = mark
        .as_deref()
        .map(|m| parse_uuid(m, || format!("updater {:?}: processed_op", p.updater)))
        .transpose()?;
    if mark != p.prev {
        return Err(StoreError::Conflict(format!(
            "updater {:?}: processed mark is {mark:?}, not {:?} (another processor committed first)",
            p.updater, p.prev
        )));
    }
    let recorded = tx
        .query_row("SELECT 1 FROM change_set WHERE op = ?1", [op], |_| Ok(()))
        .optional()
        .ctx("commit_processed: checking for a change set")?;
    if recorded.is_some() {
        return Err(StoreError::Conflict(format!(
            "update operation {} already has a change set",
            p.cur
        )));
    }
    tx.execute(
        "INSERT INTO change_set (op, body) VALUES (?1, ?2)",
        params![op, p.change_set],
    )
    .ctx("commit_processed: storing the change set")?;
    if let Some(set) = &p.set {
        insert_set(&tx, set)?;
    }
    if let Some(legacy) = &p.legacy {
        crate::legacy::insert(&tx, op, legacy)?;
    }
    tx.execute(
        "UPDATE updater SET processed_op = ?1 WHERE name = ?2",
        params![p.cur.to_string(), p.updater],
    )
    .ctx("commit_processed: moving the processed mark")?;
    tx.commit().ctx("commit_processed: commit")
}

pub(crate) fn change_set(conn: &Connection, op: Uuid) -> Result<Option<ChangeSet>> {
    let mut st = conn
        .prepare_cached(
            "SELECT c.body FROM change_set c JOIN operation o ON o.seq = c.op WHERE o.ref = ?1",
        )
        .ctx("reading a change set: prepare")?;
    let mut rows = st
        .query([op.to_string()])
        .with_ctx(|| format!("reading the change set of {op}"))?;
    let Some(r) = rows
        .next()
        .with_ctx(|| format!("reading the change set of {op}"))?
    else {
        return Ok(None);
    };
    // Text (JSON) from before schema 4, bytes after; the decoder tells them apart.
    let body = match r
        .get_ref(0)
        .with_ctx(|| format!("reading the change set of {op}"))?
    {
        rusqlite::types::ValueRef::Text(b) | rusqlite::types::ValueRef::Blob(b) => b,
        _ => {
            return Err(StoreError::Corrupt(format!(
                "change set of {op}: body is neither text nor bytes"
            )))
        }
    };
    decode_change_set(body, &format!("change set of {op}")).map(Some)
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

struct SetRow {
    seq: i64,
    id: String,
    updater: String,
    operation: Option<String>,
    entries: i64,
    created_at: i64,
    status: String,
}

fn set_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SetRow> {
    Ok(SetRow {
        seq: r.get(0)?,
        id: r.get(1)?,
        updater: r.get(2)?,
        operation: r.get(3)?,
        entries: r.get(4)?,
        created_at: r.get(5)?,
        status: r.get(6)?,
    })
}

fn select_sets(filter: &str) -> String {
    format!(
        "SELECT seq, id, updater, operation, entries, created_at, status FROM (
             SELECT s.seq, s.id, s.updater, s.operation, s.entries, s.created_at,
                    {SET_STATUS} AS status
             FROM notification_set s) {filter}"
    )
}

fn parse_status(s: &str, what: impl FnOnce() -> String) -> Result<ReceiptStatus> {
    ReceiptStatus::parse(s)
        .ok_or_else(|| StoreError::Corrupt(format!("{}: unknown status {s:?}", what())))
}

fn set_info(conn: &Connection, row: SetRow) -> Result<NotificationSetInfo> {
    let what = || format!("notification set {}", row.id);
    let mut st = conn
        .prepare_cached(
            "SELECT channel, status, attempts, next_attempt_at, delivered_at
             FROM receipt WHERE set_seq = ?1 ORDER BY channel",
        )
        .ctx("reading receipts: prepare")?;
    let receipts = st
        .query_map([row.seq], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Option<i64>>(3)?,
                r.get::<_, Option<i64>>(4)?,
            ))
        })
        .ctx("reading receipts")?
        .collect::<rusqlite::Result<Vec<_>>>()
        .with_ctx(|| format!("{}: reading receipts", what()))?;
    let receipts = receipts
        .into_iter()
        .map(|(channel, status, attempts, next, delivered)| {
            let rwhat = || format!("{}, receipt {channel:?}", what());
            Ok(Receipt {
                status: parse_status(&status, rwhat)?,
                attempts: u32::try_from(attempts).map_err(|_| {
                    StoreError::Corrupt(format!("{}: attempts {attempts}", rwhat()))
                })?,
                next_attempt_at: from_opt_nanos(next, rwhat)?,
                delivered_at: from_opt_nanos(delivered, rwhat)?,
                channel,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(NotificationSetInfo {
        id: parse_uuid(&row.id, what)?,
        operation: row
            .operation
            .as_deref()
            .map(|o| parse_uuid(o, || format!("{}: operation", what())))
            .transpose()?,
        entries: to_u64(row.entries, what)?,
        status: parse_status(&row.status, what)?,
        created_at: from_nanos(row.created_at, what)?,
        updater: row.updater,
        receipts,
    })
}

pub(crate) fn notification_set(
    conn: &Connection,
    set: Uuid,
) -> Result<Option<NotificationSetInfo>> {
    let tx = conn
        .unchecked_transaction()
        .ctx("notification_set: begin")?;
    let row = tx
        .query_row(&select_sets("WHERE id = ?1"), [set.to_string()], set_row)
        .optional()
        .with_ctx(|| format!("reading notification set {set}"))?;
    row.map(|r| set_info(&tx, r)).transpose()
}

pub(crate) fn notification_sets(
    conn: &Connection,
    status: Option<ReceiptStatus>,
    after: Option<Uuid>,
    limit: usize,
) -> Result<Vec<NotificationSetInfo>> {
    let tx = conn
        .unchecked_transaction()
        .ctx("notification_sets: begin")?;
    // Keyset paging on (created_at, seq) descending: stable while sets are added or deleted.
    let (after_created, after_seq) = match after {
        None => (None, None),
        Some(a) => {
            let key: Option<(i64, i64)> = tx
                .query_row(
                    "SELECT created_at, seq FROM notification_set WHERE id = ?1",
                    [a.to_string()],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .with_ctx(|| format!("notification_sets: looking up {a}"))?;
            let (c, s) = key.ok_or_else(|| {
                StoreError::Invalid(format!(
                    "notification_sets: cannot continue after unknown set {a}"
                ))
            })?;
            (Some(c), Some(s))
        }
    };
    let rows = {
        let mut st = tx
            .prepare_cached(&select_sets(
                "WHERE (?1 IS NULL OR status = ?1)
                   AND (?2 IS NULL OR created_at < ?2 OR (created_at = ?2 AND seq < ?3))
                 ORDER BY created_at DESC, seq DESC LIMIT ?4",
            ))
            .ctx("notification_sets: prepare")?;
        let rows = st
            .query_map(
                params![
                    status.map(ReceiptStatus::as_str),
                    after_created,
                    after_seq,
                    to_i64(limit)
                ],
                set_row,
            )
            .ctx("notification_sets: query")?
            .collect::<rusqlite::Result<Vec<_>>>()
            .ctx("notification_sets: reading rows")?;
        rows
    };
    rows.into_iter().map(|r| set_info(&tx, r)).collect()
}

pub(crate) type Page = (Vec<Notification>, Option<u64>);

pub(crate) fn page(conn: &Connection, set: Uuid, after: u64, limit: usize) -> Result<Option<Page>> {
    if limit == 0 {
        return Err(StoreError::Invalid(format!(
            "notification_page of {set}: the page size must be at least 1"
        )));
    }
    let tx = conn
        .unchecked_transaction()
        .ctx("notification_page: begin")?;
    let seq: Option<i64> = tx
        .query_row(
            "SELECT seq FROM notification_set WHERE id = ?1 AND deleted_at IS NULL",
            [set.to_string()],
            |r| r.get(0),
        )
        .optional()
        .with_ctx(|| format!("notification_page: looking up set {set}"))?;
    let Some(seq) = seq else { return Ok(None) };
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let mut st = tx
        .prepare_cached(
            "SELECT position, body FROM notification_entry
             WHERE set_seq = ?1 AND position > ?2 ORDER BY position LIMIT ?3",
        )
        .ctx("notification_page: prepare")?;
    // One row more than asked tells whether a continuation is needed without a COUNT.
    let mut rows = st
        .query_map(params![seq, after, to_i64(limit).saturating_add(1)], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })
        .ctx("notification_page: query")?
        .collect::<rusqlite::Result<Vec<_>>>()
        .with_ctx(|| format!("notification_page of {set}: reading rows"))?;
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next = match rows.last() {
        Some((position, _)) if more => Some(to_u64(*position, || format!("set {set} position"))?),
        _ => None,
    };
    let entries = rows
        .into_iter()
        .map(|(position, body)| {
            serde_json::from_str(&body)
                .map_err(|e| corrupt_json(format!("notification set {set}, entry {position}"), e))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Some((entries, next)))
}

pub(crate) fn delete_set(conn: &mut Connection, set: Uuid, now: OffsetDateTime) -> Result<bool> {
    let now = to_nanos(now, "delete time")?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .ctx("delete_notification_set: begin")?;
    let seq: Option<i64> = tx
        .query_row(
            "UPDATE notification_set SET deleted_at = ?1 WHERE id = ?2 AND deleted_at IS NULL
             RETURNING seq",
            params![now, set.to_string()],
            |r| r.get(0),
        )
        .optional()
        .with_ctx(|| format!("deleting notification set {set}"))?;
    let Some(seq) = seq else { return Ok(false) };
    // Leases go too: a worker holding one finds the set deleted and records only its attempt.
    tx.execute(
        "UPDATE receipt SET status = 'deleted', next_attempt_at = NULL, lease_id = NULL,
                            lease_until = NULL
         WHERE set_seq = ?1",
        [seq],
    )
    .with_ctx(|| format!("deleting the receipts of set {set}"))?;
    tx.commit().ctx("delete_notification_set: commit")?;
    Ok(true)
}

// ---- outbox ---------------------------------------------------------------------------------

pub(crate) fn claim(
    conn: &mut Connection,
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
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .ctx("claim_deliveries: begin")?;
    // One index range per status, each read in index order, then merged: a single query with
    // `status IN (…)` cannot use the index order and sorts every due receipt on each claim,
    // which a backlog of tens of thousands turns into most of a worker's time.
    let mut due: Vec<(i64, i64, String, i64, i64, i64)> = Vec::new();
    for status in ["created", "delivery_failed"] {
        let mut st = tx
            .prepare_cached(
                "SELECT r.next_attempt_at, r.set_seq, s.id, r.attempts, s.created_at, s.entries
                 FROM receipt r JOIN notification_set s ON s.seq = r.set_seq
                 WHERE r.channel = ?1
                   AND r.status = ?4
                   AND r.next_attempt_at <= ?2
                   AND s.deleted_at IS NULL
                   AND (r.lease_until IS NULL OR r.lease_until <= ?2)
                 ORDER BY r.next_attempt_at, r.set_seq
                 LIMIT ?3",
            )
            .ctx("claim_deliveries: prepare")?;
        let rows = st
            .query_map(params![channel, now, to_i64(limit), status], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
            .ctx("claim_deliveries: query")?
            .collect::<rusqlite::Result<Vec<_>>>()
            .with_ctx(|| format!("claim_deliveries on {channel:?}: reading rows"))?;
        due.extend(rows);
    }
    due.sort_by_key(|d| (d.0, d.1));
    due.truncate(limit);
    let due: Vec<(i64, String, i64, i64, i64)> =
        due.into_iter().map(|d| (d.1, d.2, d.3, d.4, d.5)).collect();
    let mut tasks = Vec::with_capacity(due.len());
    {
        let mut lease_st = tx
            .prepare_cached(
                "UPDATE receipt SET lease_id = ?1, lease_until = ?2
                 WHERE set_seq = ?3 AND channel = ?4",
            )
            .ctx("claim_deliveries: prepare")?;
        for (seq, id, attempts, created_at, entries) in due {
            let what = || format!("notification set {id}, receipt {channel:?}");
            let lease = Uuid::new_v4();
            lease_st
                .execute(params![lease.to_string(), until, seq, channel])
                .with_ctx(|| format!("leasing {}", what()))?;
            tasks.push(DeliveryTask {
                set_id: parse_uuid(&id, what)?,
                channel: channel.to_string(),
                attempts: u32::try_from(attempts)
                    .map_err(|_| StoreError::Corrupt(format!("{}: attempts {attempts}", what())))?,
                created_at: from_nanos(created_at, what)?,
                entries: to_u64(entries, what)?,
                lease,
                key: seq,
            });
        }
    }
    tx.commit().ctx("claim_deliveries: commit")?;
    Ok(tasks)
}

/// An attempt as stored.
pub(crate) struct EncodedAttempt {
    at: i64,
    finished: i64,
    duration_ms: i64,
    status_code: Option<u16>,
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
        status_code: a.status_code,
        error: a.error.clone(),
        outcome,
        retry_at,
        dead_letter,
    })
}

pub(crate) fn record_attempt(
    conn: &mut Connection,
    task: &DeliveryTask,
    a: &EncodedAttempt,
) -> Result<ReceiptStatus> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .ctx("record_attempt: begin")?;
    let out = record_in(&tx, task, a)?;
    tx.commit().ctx("record_attempt: commit")?;
    out
}

/// Records a batch of attempts in one transaction: per attempt what `record_attempt` returns (a
/// lost lease is that attempt's `Conflict`, its attempt still recorded); any other error rolls
/// the whole batch back.
pub(crate) fn record_attempts(
    conn: &mut Connection,
    batch: &[(DeliveryTask, EncodedAttempt)],
) -> Result<Vec<Result<ReceiptStatus>>> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .ctx("record_attempts: begin")?;
    let out = batch
        .iter()
        .map(|(task, a)| record_in(&tx, task, a))
        .collect::<Result<Vec<_>>>()?;
    tx.commit().ctx("record_attempts: commit")?;
    Ok(out)
}

/// One attempt inside the caller's write transaction. The outer error fails the transaction;
/// the inner one (a lost lease) is the attempt's own outcome, recorded all the same.
fn record_in(
    tx: &Transaction<'_>,
    task: &DeliveryTask,
    a: &EncodedAttempt,
) -> Result<Result<ReceiptStatus>> {
    let set = task.set_id.to_string();
    let channel = task.channel.as_str();
    let (status, next_attempt_at, delivered_at) = match (a.outcome, a.dead_letter) {
        ("failed", true) => (ReceiptStatus::DeadLetter, None, None),
        ("failed", false) => (ReceiptStatus::DeliveryFailed, a.retry_at, None),
        _ => (ReceiptStatus::Delivered, None, Some(a.finished)),
    };
    let settle = |seq: i64, lease: Option<&str>| -> Result<usize> {
        tx.prepare_cached(
            "UPDATE receipt SET status = ?1, attempts = attempts + 1, next_attempt_at = ?2,
                                delivered_at = COALESCE(?3, delivered_at),
                                lease_id = NULL, lease_until = NULL
             WHERE set_seq = ?4 AND channel = ?5 AND (?6 IS NULL OR lease_id = ?6)",
        )
        .and_then(|mut st| {
            st.execute(params![
                status.as_str(),
                next_attempt_at,
                delivered_at,
                seq,
                channel,
                lease
            ])
        })
        .with_ctx(|| format!("record_attempt: updating set {set}, receipt {channel:?}"))
    };
    // The common case in one statement: the lease is still held, which also means the set is not
    // deleted, since deleting a set (or delivering it with delete) clears its receipts' leases.
    let lease = task.lease.to_string();
    let seq = if settle(task.key, Some(&lease))? == 1 {
        task.key
    } else {
        // Deleted, re-claimed, or a key that is not ours: find out by the set's id.
        let row: Option<(i64, Option<i64>, Option<String>)> = tx
            .prepare_cached(
                "SELECT s.seq, s.deleted_at, r.lease_id
                 FROM notification_set s JOIN receipt r ON r.set_seq = s.seq
                 WHERE s.id = ?1 AND r.channel = ?2",
            )
            .and_then(|mut st| {
                st.query_row(params![set, channel], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .optional()
            })
            .with_ctx(|| format!("record_attempt: reading set {set}, receipt {channel:?}"))?;
        let Some((seq, deleted_at, held)) = row else {
            let set_exists = tx
                .query_row(
                    "SELECT 1 FROM notification_set WHERE id = ?1",
                    [&set],
                    |_| Ok(()),
                )
                .optional()
                .ctx("record_attempt: looking up the set")?;
            if set_exists.is_some() {
                return Err(StoreError::Invalid(format!(
                    "record_attempt: notification set {set} has no channel {channel:?}"
                )));
            }
            // Deleted and already collected: there is nothing left to attach the attempt to.
            return Ok(Ok(ReceiptStatus::Deleted));
        };
        // The attempt did happen, so the history keeps it even when the receipt is not ours to
        // move.
        insert_attempt(tx, seq, channel, a, &set)?;
        if deleted_at.is_some() {
            return Ok(Ok(ReceiptStatus::Deleted));
        }
        if held.as_deref() != Some(lease.as_str()) {
            return Ok(Err(StoreError::Conflict(format!(
                "set {set}, channel {channel:?}: lease {} is no longer held (expired and re-claimed)",
                task.lease
            ))));
        }
        settle(seq, None)?;
        return finish(tx, seq, channel, a, &set).map(|()| Ok(status));
    };
    insert_attempt(tx, seq, channel, a, &set)?;
    finish(tx, seq, channel, a, &set).map(|()| Ok(status))
}

fn insert_attempt(
    tx: &Transaction<'_>,
    seq: i64,
    channel: &str,
    a: &EncodedAttempt,
    set: &str,
) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO attempt (set_seq, channel, at, duration_ms, status_code, error, outcome,
                              retry_at, dead_letter)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .and_then(|mut st| {
        st.execute(params![
            seq,
            channel,
            a.at,
            a.duration_ms,
            a.status_code,
            a.error,
            a.outcome,
            a.retry_at,
            a.dead_letter
        ])
    })
    .with_ctx(|| format!("record_attempt: storing the attempt on set {set}, {channel:?}"))?;
    Ok(())
}

/// After a settled receipt: a delivery that ends the set's life deletes it and its other
/// receipts.
fn finish(
    tx: &Transaction<'_>,
    seq: i64,
    channel: &str,
    a: &EncodedAttempt,
    set: &str,
) -> Result<()> {
    if a.outcome == "delivered_and_deleted" {
        tx.execute(
            "UPDATE notification_set SET deleted_at = ?1 WHERE seq = ?2",
            params![a.finished, seq],
        )
        .with_ctx(|| format!("record_attempt: deleting set {set}"))?;
        tx.execute(
            "UPDATE receipt SET status = 'deleted', next_attempt_at = NULL, lease_id = NULL,
                                lease_until = NULL
             WHERE set_seq = ?1 AND channel <> ?2",
            params![seq, channel],
        )
        .with_ctx(|| format!("record_attempt: deleting the other receipts of set {set}"))?;
    }
    Ok(())
}

pub(crate) fn attempts(conn: &Connection, set: Uuid) -> Result<Vec<Attempt>> {
    type Row = (
        i64,
        String,
        i64,
        i64,
        Option<i64>,
        Option<String>,
        String,
        Option<i64>,
        bool,
    );
    let mut st = conn
        .prepare_cached(
            "SELECT a.seq, a.channel, a.at, a.duration_ms, a.status_code, a.error, a.outcome,
                    a.retry_at, a.dead_letter
             FROM attempt a JOIN notification_set s ON s.seq = a.set_seq
             WHERE s.id = ?1 ORDER BY a.at, a.seq",
        )
        .ctx("attempts: prepare")?;
    let rows: Vec<Row> = st
        .query_map([set.to_string()], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
            ))
        })
        .ctx("attempts: query")?
        .collect::<rusqlite::Result<_>>()
        .with_ctx(|| format!("attempts of set {set}: reading rows"))?;
    rows.into_iter()
        .map(
            |(seq, channel, at, duration, code, error, outcome, retry_at, dead_letter)| {
                let what = || format!("attempt row {seq} of set {set}");
                let outcome = match outcome.as_str() {
                    "delivered" => AttemptOutcome::Delivered,
                    "delivered_and_deleted" => AttemptOutcome::DeliveredAndDeleted,
                    "failed" => AttemptOutcome::Failed {
                        retry_at: from_nanos(
                            retry_at.ok_or_else(|| {
                                StoreError::Corrupt(format!("{}: failed without retry_at", what()))
                            })?,
                            what,
                        )?,
                        dead_letter,
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
                    channel,
                    at: from_nanos(at, what)?,
                    duration_ms: to_u64(duration, what)?,
                    status_code: code
                        .map(|c| {
                            u16::try_from(c).map_err(|_| {
                                StoreError::Corrupt(format!("{}: status code {c}", what()))
                            })
                        })
                        .transpose()?,
                    error,
                    outcome,
                })
            },
        )
        .collect()
}

pub(crate) fn backlog(conn: &Connection) -> Result<Backlog> {
    let mut st = conn
        .prepare_cached("SELECT status, COUNT(*) FROM receipt GROUP BY status")
        .ctx("backlog: prepare")?;
    let rows = st
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .ctx("backlog: query")?
        .collect::<rusqlite::Result<Vec<_>>>()
        .ctx("backlog: reading rows")?;
    let mut b = Backlog::default();
    for (status, n) in rows {
        let n = to_u64(n, || format!("backlog count of {status}"))?;
        match parse_status(&status, || "receipt".to_string())? {
            ReceiptStatus::Created => b.created = n,
            ReceiptStatus::DeliveryFailed => b.failed = n,
            ReceiptStatus::DeadLetter => b.dead_letter = n,
            ReceiptStatus::Delivered => b.delivered = n,
            ReceiptStatus::Deleted => {}
        }
    }
    Ok(b)
}

pub(crate) fn collect_garbage(
    conn: &mut Connection,
    now: OffsetDateTime,
    retention: Duration,
) -> Result<GcStats> {
    let now = to_nanos(now, "garbage collection time")?;
    // A retention reaching before 1678 keeps everything delivered.
    let cutoff = i64::try_from(retention.as_nanos())
        .ok()
        .and_then(|r| now.checked_sub(r))
        .unwrap_or(i64::MIN);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .ctx("collect_garbage: begin")?;
    // Entries, receipts and attempts go with their set (ON DELETE CASCADE).
    let sets = tx
        .execute(
            "DELETE FROM notification_set
             WHERE deleted_at IS NOT NULL
                OR (EXISTS (SELECT 1 FROM receipt r WHERE r.set_seq = notification_set.seq)
                    AND NOT EXISTS (
                        SELECT 1 FROM receipt r
                        WHERE r.set_seq = notification_set.seq
                          AND (r.status <> 'delivered' OR r.delivered_at IS NULL
                               OR r.delivered_at >= ?1)))
                OR (NOT EXISTS (SELECT 1 FROM receipt r WHERE r.set_seq = notification_set.seq)
                    AND created_at < ?1)",
            [cutoff],
        )
        .ctx("collect_garbage: removing notification sets")?;
    crate::legacy::collect(&tx, cutoff)?;
    let operations = crate::feeds::collect_superseded(&tx)?;
    let vulnerabilities = tx
        .execute(
            "DELETE FROM vulnerability WHERE NOT EXISTS (
                 SELECT 1 FROM operation_vulnerability ov WHERE ov.vuln_id = vulnerability.id)",
            [],
        )
        .ctx("collect_garbage: removing unreferenced vulnerabilities")?;
    tx.commit().ctx("collect_garbage: commit")?;
    if operations > 0 {
        tracing::debug!(operations, "removed superseded update operations");
    }
    Ok(GcStats {
        sets: u64::try_from(sets).unwrap_or(u64::MAX),
        vulnerabilities: u64::try_from(vulnerabilities).unwrap_or(u64::MAX),
    })
}
