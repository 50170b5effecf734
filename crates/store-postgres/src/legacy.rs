//! Clair v2/v3 notifications: rows that point at one change of a stored change set, their
//! per-operation layer table, the v2 webhook's leases, and shared secrets.
//!
//! Concurrency between processes:
//! - Notifications and layers are written inside `commit_processed`'s transaction, so they appear
//!   exactly when the change set does (and never without it).
//! - `claim_legacy_deliveries` selects due rows `FOR UPDATE SKIP LOCKED` and leases them in the
//!   same transaction, like the v4 outbox: no two processes hold the same notification.
//! - `record_legacy_delivery` and `mark_legacy_read` lock the row (`FOR UPDATE`) before deciding,
//!   so a read mark racing a send is never overwritten: the send's update keeps the row undue.
//! - `secret` inserts with `ON CONFLICT DO NOTHING` and then reads: a concurrent first writer
//!   makes the insert wait for its commit, so every process reads the one stored value.
use std::collections::HashSet;
use std::time::Duration;

use deadpool_postgres::{Client, GenericClient, Transaction};
use time::OffsetDateTime;
use tocsin_model::Digest;
use tocsin_store::{
    LegacyDeliveryOutcome, LegacyDeliveryTask, LegacyLayer, LegacyNotification, MarkRead,
    StoreError,
};
use uuid::Uuid;

use crate::convert::{add_nanos, from_nanos, from_opt_nanos, to_i64, to_nanos, PgContext, Result};

pub(crate) use tocsin_store::codec::EncodedLegacy;

/// Writes encoded notifications inside the processing commit's transaction. A name another
/// operation already uses is a `Conflict`; the caller's transaction is then dropped unwritten.
pub(crate) async fn insert(tx: &Transaction<'_>, op_seq: i64, l: &EncodedLegacy) -> Result<()> {
    if !l.names.is_empty() {
        // `ON CONFLICT DO NOTHING` rather than catching the unique violation: the statement
        // then succeeds and we can name the clashing notification.
        let inserted = tx
            .query(
                "INSERT INTO legacy_notification (name, op, change, created_at, next_send_at)
                 SELECT n, $1, c, $4, $4 FROM unnest($2::uuid[], $3::bigint[]) AS u(n, c)
                 ON CONFLICT (name) DO NOTHING
                 RETURNING name",
                &[&op_seq, &l.names, &l.changes, &l.created_at],
            )
            .await
            .with_ctx(|| format!("storing {} v2/v3 notifications", l.names.len()))?;
        if inserted.len() != l.names.len() {
            let stored: HashSet<Uuid> = inserted.iter().map(|r| r.get(0)).collect();
            let clash = l
                .names
                .iter()
                .find(|n| !stored.contains(n))
                .map_or_else(|| "a v2/v3 notification".to_string(), |n| n.to_string());
            return Err(StoreError::Conflict(format!(
                "v2/v3 notification {clash} already exists"
            )));
        }
    }
    if !l.digests.is_empty() {
        tx.execute(
            "INSERT INTO legacy_layer (op, digest, idx, name)
             SELECT $1, d, i, n FROM unnest($2::text[], $3::bigint[], $4::text[]) AS u(d, i, n)",
            &[&op_seq, &l.digests, &l.indexes, &l.labels],
        )
        .await
        .with_ctx(|| format!("storing {} v2/v3 layers", l.digests.len()))?;
    }
    Ok(())
}

const SELECT: &str = "SELECT n.name, o.updater, o.ref, n.change, n.created_at, n.notified_at,
                             n.deleted_at
                      FROM legacy_notification n JOIN operation o ON o.seq = n.op";

fn decode(r: &tokio_postgres::Row) -> Result<LegacyNotification> {
    let name: Uuid = r.get(0);
    let what = || format!("v2/v3 notification {name}");
    let change: i64 = r.get(3);
    Ok(LegacyNotification {
        name,
        updater: r.get(1),
        operation: r.get(2),
        change: u32::try_from(change)
            .map_err(|_| StoreError::Corrupt(format!("{}: change {change}", what())))?,
        created_at: from_nanos(r.get(4), what)?,
        notified_at: from_opt_nanos(r.get(5), what)?,
        deleted_at: from_opt_nanos(r.get(6), what)?,
    })
}

pub(crate) async fn get(c: &Client, name: Uuid) -> Result<Option<LegacyNotification>> {
    let st = c
        .prepare_cached(&format!("{SELECT} WHERE n.name = $1"))
        .await
        .ctx("legacy_notification: prepare")?;
    let row = c
        .query_opt(&st, &[&name])
        .await
        .with_ctx(|| format!("reading v2/v3 notification {name}"))?;
    row.as_ref().map(decode).transpose()
}

pub(crate) async fn of_operation(c: &Client, op: Uuid) -> Result<Vec<LegacyNotification>> {
    let st = c
        .prepare_cached(&format!("{SELECT} WHERE o.ref = $1 ORDER BY n.change"))
        .await
        .ctx("legacy_notifications: prepare")?;
    let rows = c
        .query(&st, &[&op])
        .await
        .with_ctx(|| format!("reading the v2/v3 notifications of operation {op}"))?;
    rows.iter().map(decode).collect()
}

pub(crate) async fn layers(c: &Client, op: Uuid) -> Result<Vec<LegacyLayer>> {
    let st = c
        .prepare_cached(
            "SELECT l.digest, l.idx, l.name FROM legacy_layer l
             JOIN operation o ON o.seq = l.op WHERE o.ref = $1 ORDER BY l.digest",
        )
        .await
        .ctx("legacy_layers: prepare")?;
    let rows = c
        .query(&st, &[&op])
        .await
        .with_ctx(|| format!("reading the v2/v3 layers of operation {op}"))?;
    rows.iter()
        .map(|r| {
            let (digest, idx): (&str, i64) = (r.get(0), r.get(1));
            let what = || format!("v2/v3 layer {digest} of operation {op}");
            Ok(LegacyLayer {
                digest: Digest::parse(digest)
                    .map_err(|e| StoreError::Corrupt(format!("{}: {e}", what())))?,
                index: u32::try_from(idx)
                    .map_err(|_| StoreError::Corrupt(format!("{}: index {idx}", what())))?,
                name: r.get(2),
            })
        })
        .collect()
}

pub(crate) async fn mark_read(c: &mut Client, name: Uuid, now: OffsetDateTime) -> Result<MarkRead> {
    let now = to_nanos(now, "mark_legacy_read time")?;
    let tx = c.transaction().await.ctx("mark_legacy_read: begin")?;
    let deleted: Option<Option<i64>> = tx
        .query_opt(
            "SELECT deleted_at FROM legacy_notification WHERE name = $1 FOR UPDATE",
            &[&name],
        )
        .await
        .with_ctx(|| format!("reading v2/v3 notification {name}"))?
        .map(|r| r.get(0));
    let out = match deleted {
        None => MarkRead::Unknown,
        Some(Some(_)) => MarkRead::AlreadyRead,
        Some(None) => {
            tx.execute(
                "UPDATE legacy_notification SET deleted_at = $1, next_send_at = NULL
                 WHERE name = $2",
                &[&now, &name],
            )
            .await
            .with_ctx(|| format!("marking v2/v3 notification {name} read"))?;
            MarkRead::Marked
        }
    };
    tx.commit().await.ctx("mark_legacy_read: commit")?;
    Ok(out)
}

pub(crate) async fn claim(
    c: &mut Client,
    now: OffsetDateTime,
    lease_for: Duration,
    limit: usize,
) -> Result<Vec<LegacyDeliveryTask>> {
    let now = to_nanos(now, "claim time")?;
    let until = add_nanos(now, lease_for, "claim_legacy_deliveries lease")?;
    if limit == 0 {
        return Ok(Vec::new());
    }
    let tx = c
        .transaction()
        .await
        .ctx("claim_legacy_deliveries: begin")?;
    let st = tx
        .prepare_cached(
            "SELECT name, notified_at FROM legacy_notification
             WHERE deleted_at IS NULL AND next_send_at <= $1
               AND (lease_until IS NULL OR lease_until <= $1)
             ORDER BY next_send_at, created_at, name
             LIMIT $2
             FOR UPDATE SKIP LOCKED",
        )
        .await
        .ctx("claim_legacy_deliveries: prepare")?;
    let due = tx
        .query(&st, &[&now, &to_i64(limit)])
        .await
        .ctx("claim_legacy_deliveries: selecting due notifications")?;
    let mut tasks = Vec::with_capacity(due.len());
    let mut names = Vec::with_capacity(due.len());
    let mut leases = Vec::with_capacity(due.len());
    for r in &due {
        let name: Uuid = r.get(0);
        let lease = Uuid::new_v4();
        tasks.push(LegacyDeliveryTask {
            name,
            notified_at: from_opt_nanos(r.get(1), || format!("v2/v3 notification {name}"))?,
            lease,
        });
        names.push(name);
        leases.push(lease);
    }
    if !tasks.is_empty() {
        tx.execute(
            "UPDATE legacy_notification n SET lease_id = l.lease, lease_until = $1
             FROM unnest($2::uuid[], $3::uuid[]) AS l(name, lease)
             WHERE n.name = l.name",
            &[&until, &names, &leases],
        )
        .await
        .with_ctx(|| format!("leasing {} v2/v3 notifications", tasks.len()))?;
    }
    tx.commit().await.ctx("claim_legacy_deliveries: commit")?;
    Ok(tasks)
}

pub(crate) async fn record(
    c: &mut Client,
    task: &LegacyDeliveryTask,
    outcome: LegacyDeliveryOutcome,
) -> Result<()> {
    let name = task.name;
    let tx = c.transaction().await.ctx("record_legacy_delivery: begin")?;
    let lease: Option<Option<Uuid>> = tx
        .query_opt(
            "SELECT lease_id FROM legacy_notification WHERE name = $1 FOR UPDATE",
            &[&name],
        )
        .await
        .with_ctx(|| format!("reading the lease of v2/v3 notification {name}"))?
        .map(|r| r.get(0));
    if lease.flatten() != Some(task.lease) {
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
                "UPDATE legacy_notification SET notified_at = $1,
                     next_send_at = CASE WHEN deleted_at IS NULL THEN $2::bigint END,
                     lease_id = NULL, lease_until = NULL
                 WHERE name = $3",
                &[&at, &next, &name],
            )
            .await
            .with_ctx(|| format!("recording the delivery of v2/v3 notification {name}"))?;
        }
        LegacyDeliveryOutcome::Failed { retry_at } => {
            let retry = to_nanos(retry_at, "retry time")?;
            tx.execute(
                "UPDATE legacy_notification SET
                     next_send_at = CASE WHEN deleted_at IS NULL THEN $1::bigint END,
                     lease_id = NULL, lease_until = NULL
                 WHERE name = $2",
                &[&retry, &name],
            )
            .await
            .with_ctx(|| format!("rescheduling v2/v3 notification {name}"))?;
        }
    }
    tx.commit().await.ctx("record_legacy_delivery: commit")
}

pub(crate) async fn secret(c: &Client, name: &str, candidate: &[u8]) -> Result<Vec<u8>> {
    // Two autocommit statements, deliberately: under READ COMMITTED the second one sees the row
    // whichever process's insert won, including one that committed while ours waited on it.
    c.execute(
        "INSERT INTO secret (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        &[&name, &candidate],
    )
    .await
    .with_ctx(|| format!("storing secret {name:?}"))?;
    let row = c
        .query_opt("SELECT value FROM secret WHERE name = $1", &[&name])
        .await
        .with_ctx(|| format!("reading secret {name:?}"))?;
    row.map(|r| r.get(0)).ok_or_else(|| {
        StoreError::Corrupt(format!(
            "secret {name:?} is missing right after it was stored (removed concurrently?)"
        ))
    })
}

/// Garbage collection's share: notifications read before `cutoff`, then layer tables no
/// notification points at any more. Runs inside the collection's transaction.
pub(crate) async fn collect(tx: &Transaction<'_>, cutoff: i64) -> Result<u64> {
    let removed = tx
        .execute(
            "DELETE FROM legacy_notification WHERE deleted_at IS NOT NULL AND deleted_at < $1",
            &[&cutoff],
        )
        .await
        .ctx("collect_garbage: removing read v2/v3 notifications")?;
    tx.execute(
        "DELETE FROM legacy_layer l WHERE NOT EXISTS (
             SELECT 1 FROM legacy_notification n WHERE n.op = l.op)",
        &[],
    )
    .await
    .ctx("collect_garbage: removing unused v2/v3 layers")?;
    Ok(removed)
}
