//! Clair v2/v3 notifications: rows that point at one change of a stored change set, their
//! per-operation layer table, the v2 webhook's leases, and shared secrets.
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use time::OffsetDateTime;
use tocsin_model::Digest;
use tocsin_store::{
    LegacyDeliveryOutcome, LegacyDeliveryTask, LegacyLayer, LegacyNotification, MarkRead,
    StoreError,
};
use uuid::Uuid;

use crate::convert::{
    add_nanos, from_nanos, from_opt_nanos, parse_uuid, to_i64, to_nanos, Result, SqlContext,
};

pub(crate) use tocsin_store::codec::EncodedLegacy;

/// Writes encoded notifications inside the processing commit's transaction.
pub(crate) fn insert(tx: &Transaction<'_>, op_seq: i64, l: &EncodedLegacy) -> Result<()> {
    let mut note = tx
        .prepare_cached(
            "INSERT INTO legacy_notification (name, op, change, created_at, next_send_at)
             VALUES (?1, ?2, ?3, ?4, ?4)",
        )
        .ctx("preparing v2/v3 notification insert")?;
    for (name, change) in l.names.iter().zip(&l.changes) {
        note.execute(params![name.to_string(), op_seq, change, l.created_at])
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _)
                    if f.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    StoreError::Conflict(format!("v2/v3 notification {name} already exists"))
                }
                e => StoreError::Backend(format!("storing v2/v3 notification {name}: {e}").into()),
            })?;
    }
    let mut layer = tx
        .prepare_cached("INSERT INTO legacy_layer (op, digest, idx, name) VALUES (?1, ?2, ?3, ?4)")
        .ctx("preparing v2/v3 layer insert")?;
    for ((digest, idx), name) in l.digests.iter().zip(&l.indexes).zip(&l.labels) {
        layer
            .execute(params![op_seq, digest, idx, name])
            .with_ctx(|| format!("storing v2/v3 layer {digest}"))?;
    }
    Ok(())
}

const SELECT: &str = "SELECT n.name, o.updater, o.ref, n.change, n.created_at, n.notified_at,
                             n.deleted_at
                      FROM legacy_notification n JOIN operation o ON o.seq = n.op";

type Row = (String, String, String, i64, i64, Option<i64>, Option<i64>);

fn read_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}

fn decode(
    (name, updater, op, change, created, notified, deleted): Row,
) -> Result<LegacyNotification> {
    let what = || format!("v2/v3 notification {name}");
    Ok(LegacyNotification {
        name: parse_uuid(&name, what)?,
        updater,
        operation: parse_uuid(&op, what)?,
        change: u32::try_from(change)
            .map_err(|_| StoreError::Corrupt(format!("{}: change {change}", what())))?,
        created_at: from_nanos(created, what)?,
        notified_at: from_opt_nanos(notified, what)?,
        deleted_at: from_opt_nanos(deleted, what)?,
    })
}

pub(crate) fn get(conn: &Connection, name: Uuid) -> Result<Option<LegacyNotification>> {
    let row = conn
        .query_row(
            &format!("{SELECT} WHERE n.name = ?1"),
            [name.to_string()],
            read_row,
        )
        .optional()
        .with_ctx(|| format!("reading v2/v3 notification {name}"))?;
    row.map(decode).transpose()
}

pub(crate) fn of_operation(conn: &Connection, op: Uuid) -> Result<Vec<LegacyNotification>> {
    let mut st = conn
        .prepare_cached(&format!("{SELECT} WHERE o.ref = ?1 ORDER BY n.change"))
        .ctx("legacy_notifications: prepare")?;
    let rows: Vec<Row> = st
        .query_map([op.to_string()], read_row)
        .ctx("legacy_notifications: query")?
        .collect::<rusqlite::Result<_>>()
        .with_ctx(|| format!("reading the v2/v3 notifications of operation {op}"))?;
    rows.into_iter().map(decode).collect()
}

pub(crate) fn layers(conn: &Connection, op: Uuid) -> Result<Vec<LegacyLayer>> {
    let mut st = conn
        .prepare_cached(
            "SELECT l.digest, l.idx, l.name FROM legacy_layer l
             JOIN operation o ON o.seq = l.op WHERE o.ref = ?1 ORDER BY l.digest",
        )
        .ctx("legacy_layers: prepare")?;
    let rows: Vec<(String, i64, String)> = st
        .query_map([op.to_string()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .ctx("legacy_layers: query")?
        .collect::<rusqlite::Result<_>>()
        .with_ctx(|| format!("reading the v2/v3 layers of operation {op}"))?;
    rows.into_iter()
        .map(|(digest, idx, name)| {
            let what = || format!("v2/v3 layer {digest} of operation {op}");
            Ok(LegacyLayer {
                digest: Digest::parse(&digest)
                    .map_err(|e| StoreError::Corrupt(format!("{}: {e}", what())))?,
                index: u32::try_from(idx)
                    .map_err(|_| StoreError::Corrupt(format!("{}: index {idx}", what())))?,
                name,
            })
        })
        .collect()
}

pub(crate) fn mark_read(
    conn: &mut Connection,
    name: Uuid,
    now: OffsetDateTime,
) -> Result<MarkRead> {
    let now = to_nanos(now, "mark_legacy_read time")?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .ctx("mark_legacy_read: begin")?;
    let deleted: Option<Option<i64>> = tx
        .query_row(
            "SELECT deleted_at FROM legacy_notification WHERE name = ?1",
            [name.to_string()],
            |r| r.get(0),
        )
        .optional()
        .with_ctx(|| format!("reading v2/v3 notification {name}"))?;
    let out = match deleted {
        None => MarkRead::Unknown,
        Some(Some(_)) => MarkRead::AlreadyRead,
        Some(None) => {
            tx.execute(
                "UPDATE legacy_notification SET deleted_at = ?1, next_send_at = NULL
                 WHERE name = ?2",
                params![now, name.to_string()],
            )
            .with_ctx(|| format!("marking v2/v3 notification {name} read"))?;
            MarkRead::Marked
        }
    };
    tx.commit().ctx("mark_legacy_read: commit")?;
    Ok(out)
}

pub(crate) fn claim(
    conn: &mut Connection,
    now: OffsetDateTime,
    lease_for: Duration,
    limit: usize,
) -> Result<Vec<LegacyDeliveryTask>> {
    let now = to_nanos(now, "claim time")?;
    let until = add_nanos(now, lease_for, "claim_legacy_deliveries lease")?;
    if limit == 0 {
        return Ok(Vec::new());
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .ctx("claim_legacy_deliveries: begin")?;
    let due: Vec<(String, Option<i64>)> = {
        let mut st = tx
            .prepare_cached(
                "SELECT name, notified_at FROM legacy_notification
                 WHERE deleted_at IS NULL AND next_send_at <= ?1
                   AND (lease_until IS NULL OR lease_until <= ?1)
                 ORDER BY next_send_at, created_at, name
                 LIMIT ?2",
            )
            .ctx("claim_legacy_deliveries: prepare")?;
        let rows = st
            .query_map(params![now, to_i64(limit)], |r| Ok((r.get(0)?, r.get(1)?)))
            .ctx("claim_legacy_deliveries: query")?
            .collect::<rusqlite::Result<_>>()
            .ctx("claim_legacy_deliveries: reading rows")?;
        rows
    };
    let mut tasks = Vec::with_capacity(due.len());
    {
        let mut lease_st = tx
            .prepare_cached(
                "UPDATE legacy_notification SET lease_id = ?1, lease_until = ?2 WHERE name = ?3",
            )
            .ctx("claim_legacy_deliveries: prepare")?;
        for (name, notified) in due {
            let what = || format!("v2/v3 notification {name}");
            let lease = Uuid::new_v4();
            lease_st
                .execute(params![lease.to_string(), until, name])
                .with_ctx(|| format!("leasing {}", what()))?;
            tasks.push(LegacyDeliveryTask {
                name: parse_uuid(&name, what)?,
                notified_at: from_opt_nanos(notified, what)?,
                lease,
            });
        }
    }
    tx.commit().ctx("claim_legacy_deliveries: commit")?;
    Ok(tasks)
}

pub(crate) fn record(
    conn: &mut Connection,
    task: &LegacyDeliveryTask,
    outcome: LegacyDeliveryOutcome,
) -> Result<()> {
    let name = task.name.to_string();
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .ctx("record_legacy_delivery: begin")?;
    let lease: Option<Option<String>> = tx
        .query_row(
            "SELECT lease_id FROM legacy_notification WHERE name = ?1",
            [&name],
            |r| r.get(0),
        )
        .optional()
        .with_ctx(|| format!("reading the lease of v2/v3 notification {name}"))?;
    if lease.flatten().as_deref() != Some(task.lease.to_string().as_str()) {
        return Err(StoreError::Conflict(format!(
            "v2/v3 notification {name}: the lease {} is no longer held",
            task.lease
        )));
    }
    // `deleted_at IS NULL` in the CASE keeps a notification read during the send never due.
    match outcome {
        LegacyDeliveryOutcome::Notified { at, renotify_at } => {
            let at = to_nanos(at, "notified time")?;
            let next = renotify_at
                .map(|t| to_nanos(t, "renotify time"))
                .transpose()?;
            tx.execute(
                "UPDATE legacy_notification SET notified_at = ?1,
                     next_send_at = CASE WHEN deleted_at IS NULL THEN ?2 END,
                     lease_id = NULL, lease_until = NULL
                 WHERE name = ?3",
                params![at, next, name],
            )
            .with_ctx(|| format!("recording the delivery of v2/v3 notification {name}"))?;
        }
        LegacyDeliveryOutcome::Failed { retry_at } => {
            let retry = to_nanos(retry_at, "retry time")?;
            tx.execute(
                "UPDATE legacy_notification SET
                     next_send_at = CASE WHEN deleted_at IS NULL THEN ?1 END,
                     lease_id = NULL, lease_until = NULL
                 WHERE name = ?2",
                params![retry, name],
            )
            .with_ctx(|| format!("rescheduling v2/v3 notification {name}"))?;
        }
    }
    tx.commit().ctx("record_legacy_delivery: commit")
}

pub(crate) fn secret(conn: &mut Connection, name: &str, candidate: &[u8]) -> Result<Vec<u8>> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .ctx("secret: begin")?;
    tx.execute(
        "INSERT INTO secret (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
        params![name, candidate],
    )
    .with_ctx(|| format!("storing secret {name:?}"))?;
    let value: Vec<u8> = tx
        .query_row("SELECT value FROM secret WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .with_ctx(|| format!("reading secret {name:?}"))?;
    tx.commit().ctx("secret: commit")?;
    Ok(value)
}

/// Garbage collection's share: notifications read before `cutoff`, then layer tables no
/// notification points at any more. Runs inside the collection's transaction.
pub(crate) fn collect(tx: &Transaction<'_>, cutoff: i64) -> Result<u64> {
    let removed = tx
        .execute(
            "DELETE FROM legacy_notification WHERE deleted_at IS NOT NULL AND deleted_at < ?1",
            [cutoff],
        )
        .ctx("collect_garbage: removing read v2/v3 notifications")?;
    tx.execute(
        "DELETE FROM legacy_layer WHERE NOT EXISTS (
             SELECT 1 FROM legacy_notification n WHERE n.op = legacy_layer.op)",
        [],
    )
    .ctx("collect_garbage: removing unused v2/v3 layers")?;
    Ok(u64::try_from(removed).unwrap_or(u64::MAX))
}
