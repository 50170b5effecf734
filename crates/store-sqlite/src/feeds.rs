//! Feeds: content-addressed vulnerabilities, update operations and their membership.
//!
//! An operation's `status` is `accepted`, `held` (by the storm guard, with a reason) or
//! `superseded` (a held one replaced by a later import). Everything that reads "an updater's
//! operations" reads accepted ones only; an import supersedes the held one in its own
//! transaction, and acceptance flips the held one to accepted (it is already the newest by
//! `seq`, since any later import would have superseded it).
use std::collections::HashSet;

use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use time::OffsetDateTime;
use tocsin_model::claircore::UpdateOperation;
use tocsin_model::vuln::{VulnId, Vulnerability};
use tocsin_store::codec::status::{check_acceptable, ACCEPTED, HELD, SUPERSEDED};
use tocsin_store::codec::EncodedSnapshot;
use tocsin_store::{HeldOperation, ImportOutcome, StoreError, UpdaterInfo};
use uuid::Uuid;

use crate::convert::{corrupt_json, parse_uuid, rfc3339, to_i64, to_u64, Result, SqlContext};

/// The `kind` of every operation this store creates.
const KIND: &str = "vulnerability";

/// The ids of the updater's latest accepted operation: records the store is known to hold (see
/// [`tocsin_store::codec::encode_snapshot`]; an accepted operation's memberships are never
/// deleted).
pub(crate) fn latest_ids(conn: &Connection, updater: &str) -> Result<HashSet<String>> {
    let mut st = conn
        .prepare_cached(
            "SELECT ov.vuln_id FROM operation_vulnerability ov
             WHERE ov.op = (SELECT MAX(seq) FROM operation
                            WHERE updater = ?1 AND status = 'accepted')",
        )
        .ctx("reading the latest operation's vulnerabilities: prepare")?;
    let rows = st
        .query_map([updater], |r| r.get::<_, String>(0))
        .with_ctx(|| format!("reading the latest vulnerabilities of updater {updater:?}"))?;
    rows.collect::<rusqlite::Result<_>>()
        .with_ctx(|| format!("reading the latest vulnerabilities of updater {updater:?}"))
}

type OpRow = (i64, String, String, String, String, String, i64);

fn op_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<OpRow> {
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

const OP_COLUMNS: &str = "seq, ref, updater, fingerprint, date, kind, vulns";

fn to_op((_, reference, updater, fingerprint, date, kind, _): OpRow) -> UpdateOperation {
    UpdateOperation {
        reference,
        updater,
        fingerprint,
        date,
        kind,
    }
}

/// The updater's newest accepted operation.
fn latest_op(conn: &Connection, updater: &str) -> Result<Option<OpRow>> {
    conn.query_row(
        &format!(
            "SELECT {OP_COLUMNS} FROM operation WHERE updater = ?1 AND status = 'accepted'
             ORDER BY seq DESC LIMIT 1"
        ),
        [updater],
        op_row,
    )
    .optional()
    .with_ctx(|| format!("reading the latest operation of updater {updater:?}"))
}

/// The updater's held operation with its reason.
fn held_op(conn: &Connection, updater: &str) -> Result<Option<(OpRow, String)>> {
    conn.query_row(
        &format!(
            "SELECT {OP_COLUMNS}, COALESCE(held_reason, '') FROM operation
             WHERE updater = ?1 AND status = 'held'"
        ),
        [updater],
        |r| Ok((op_row(r)?, r.get(7)?)),
    )
    .optional()
    .with_ctx(|| format!("reading the held operation of updater {updater:?}"))
}

fn to_held((row, reason): (OpRow, String)) -> Result<HeldOperation> {
    let vulnerabilities = to_u64(row.6, || format!("held update operation {}", row.1))?;
    Ok(HeldOperation {
        operation: to_op(row),
        reason,
        vulnerabilities,
    })
}

/// Drops the updater's held operation, if any (garbage collection removes it later).
fn supersede(tx: &Transaction<'_>, updater: &str) -> Result<()> {
    tx.execute(
        "UPDATE operation SET status = ?1 WHERE updater = ?2 AND status = ?3",
        params![SUPERSEDED, updater, HELD],
    )
    .with_ctx(|| format!("superseding the held operation of updater {updater:?}"))?;
    Ok(())
}

/// Imports a snapshot, held with the reason when `hold` is given (see the module doc).
pub(crate) fn import(
    conn: &mut Connection,
    updater: &str,
    fingerprint: &str,
    snap: &EncodedSnapshot,
    now: OffsetDateTime,
    hold: Option<&str>,
) -> Result<ImportOutcome> {
    let date = rfc3339(now)?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .ctx("import_snapshot: begin")?;
    if let Some(latest) = latest_op(&tx, updater)? {
        if latest.3 == fingerprint {
            // The feed is back to what was accepted: whatever was held is moot.
            supersede(&tx, updater)?;
            tx.commit().ctx("import_snapshot: commit")?;
            return Ok(ImportOutcome::Unchanged(to_op(latest)));
        }
    }
    if hold.is_some() {
        if let Some(held) = held_op(&tx, updater)? {
            if held.0 .3 == fingerprint {
                // Nothing written: dropping `tx` rolls back.
                return Ok(ImportOutcome::Held(to_held(held)?));
            }
        }
    }
    tx.execute(
        "INSERT INTO updater (name) VALUES (?1) ON CONFLICT (name) DO NOTHING",
        [updater],
    )
    .ctx("import_snapshot: registering the updater")?;
    supersede(&tx, updater)?;
    let reference = Uuid::new_v4().to_string();
    tx.execute(
        "INSERT INTO operation (ref, updater, fingerprint, kind, date, vulns, status, held_reason)
         VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, ?7)",
        params![
            reference,
            updater,
            fingerprint,
            KIND,
            date,
            if hold.is_some() { HELD } else { ACCEPTED },
            hold
        ],
    )
    .ctx("import_snapshot: creating the operation")?;
    let op = tx.last_insert_rowid();
    let mut linked = 0usize;
    {
        let mut insert_vuln = tx
            .prepare_cached(
                "INSERT INTO vulnerability (id, body) VALUES (?1, ?2) ON CONFLICT (id) DO NOTHING",
            )
            .ctx("import_snapshot: prepare")?;
        let mut insert_link = tx
            .prepare_cached(
                "INSERT INTO operation_vulnerability (op, vuln_id) VALUES (?1, ?2)
                 ON CONFLICT DO NOTHING",
            )
            .ctx("import_snapshot: prepare")?;
        for (id, body) in snap.new_ids.iter().zip(&snap.new_bodies) {
            insert_vuln
                .execute(params![id, body])
                .with_ctx(|| format!("import_snapshot: storing vulnerability {id}"))?;
        }
        for id in &snap.ids {
            // A snapshot listing one record twice is one membership, not two.
            linked += insert_link
                .execute(params![op, id])
                .with_ctx(|| format!("import_snapshot: linking vulnerability {id}"))?;
        }
    }
    tx.execute(
        "UPDATE operation SET vulns = ?1 WHERE seq = ?2",
        params![to_i64(linked), op],
    )
    .ctx("import_snapshot: counting")?;
    tx.commit().ctx("import_snapshot: commit")?;
    let operation = UpdateOperation {
        reference,
        updater: updater.to_string(),
        fingerprint: fingerprint.to_string(),
        date,
        kind: KIND.to_string(),
    };
    Ok(match hold {
        None => ImportOutcome::Created(operation),
        Some(reason) => ImportOutcome::Held(HeldOperation {
            operation,
            reason: reason.to_string(),
            vulnerabilities: u64::try_from(linked).unwrap_or(u64::MAX),
        }),
    })
}

/// Accepts the updater's held operation `op` (see [`tocsin_store::Store::accept_operation`]).
pub(crate) fn accept(conn: &mut Connection, updater: &str, op: Uuid) -> Result<UpdateOperation> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .ctx("accept_operation: begin")?;
    let found: Option<(OpRow, String)> = tx
        .query_row(
            &format!("SELECT {OP_COLUMNS}, status FROM operation WHERE ref = ?1"),
            [op.to_string()],
            |r| Ok((op_row(r)?, r.get(7)?)),
        )
        .optional()
        .with_ctx(|| format!("accept_operation: looking up update operation {op}"))?;
    let Some((row, status)) = found else {
        return Err(StoreError::Invalid(format!(
            "cannot accept update operation {op}: there is no such operation"
        )));
    };
    check_acceptable(op, updater, &row.2, &status)?;
    tx.execute(
        "UPDATE operation SET status = ?1 WHERE seq = ?2",
        params![ACCEPTED, row.0],
    )
    .with_ctx(|| format!("accept_operation: accepting update operation {op}"))?;
    tx.commit().ctx("accept_operation: commit")?;
    Ok(to_op(row))
}

pub(crate) fn updaters(conn: &Connection) -> Result<Vec<UpdaterInfo>> {
    let tx = conn.unchecked_transaction().ctx("updaters: begin")?;
    let rows: Vec<(String, Option<String>, i64)> = {
        let mut st = tx
            .prepare_cached(
                "SELECT u.name, u.processed_op,
                        (SELECT COUNT(*) FROM operation o
                         WHERE o.updater = u.name AND o.status = 'accepted')
                 FROM updater u ORDER BY u.name",
            )
            .ctx("updaters: prepare")?;
        let rows = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .ctx("updaters: query")?
            .collect::<rusqlite::Result<_>>()
            .ctx("updaters: reading rows")?;
        rows
    };
    let mut out = Vec::with_capacity(rows.len());
    for (name, processed, operations) in rows {
        let latest = latest_op(&tx, &name)?;
        let held = held_op(&tx, &name)?.map(to_held).transpose()?;
        let what = || format!("updater {name:?}");
        out.push(UpdaterInfo {
            held,
            vulnerabilities: match &latest {
                Some(row) => to_u64(row.6, what)?,
                None => 0,
            },
            latest: latest.map(to_op),
            processed: processed
                .as_deref()
                .map(|p| parse_uuid(p, || format!("updater {name:?}: processed_op")))
                .transpose()?,
            operations: to_u64(operations, what)?,
            name,
        });
    }
    Ok(out)
}

pub(crate) fn operations(conn: &Connection, updater: &str) -> Result<Vec<UpdateOperation>> {
    let mut st = conn
        .prepare_cached(&format!(
            "SELECT {OP_COLUMNS} FROM operation WHERE updater = ?1 AND status = 'accepted'
             ORDER BY seq DESC"
        ))
        .ctx("update_operations: prepare")?;
    let rows = st
        .query_map([updater], op_row)
        .ctx("update_operations: query")?
        .collect::<rusqlite::Result<Vec<_>>>()
        .with_ctx(|| format!("update_operations of {updater:?}: reading rows"))?;
    Ok(rows.into_iter().map(to_op).collect())
}

/// An operation as other tables refer to it.
pub(crate) struct OpRef {
    /// Its internal sequence number.
    pub(crate) seq: i64,
    /// Its updater.
    pub(crate) updater: String,
    /// Whether it is accepted (neither held nor superseded).
    pub(crate) accepted: bool,
}

/// An operation's internal sequence number, updater and status.
pub(crate) fn op_seq(conn: &Connection, op: Uuid) -> Result<Option<OpRef>> {
    conn.query_row(
        "SELECT seq, updater, status = 'accepted' FROM operation WHERE ref = ?1",
        [op.to_string()],
        |r| {
            Ok(OpRef {
                seq: r.get(0)?,
                updater: r.get(1)?,
                accepted: r.get(2)?,
            })
        },
    )
    .optional()
    .with_ctx(|| format!("looking up update operation {op}"))
}

pub(crate) fn operation_vulnerabilities(conn: &Connection, op: Uuid) -> Result<Vec<VulnId>> {
    let tx = conn
        .unchecked_transaction()
        .ctx("operation_vulnerabilities: begin")?;
    let Some(OpRef { seq, .. }) = op_seq(&tx, op)? else {
        // An empty list would read as "everything was withdrawn" to a diff; refuse instead.
        return Err(StoreError::Invalid(format!(
            "unknown update operation {op}"
        )));
    };
    let mut st = tx
        .prepare_cached(
            "SELECT vuln_id FROM operation_vulnerability WHERE op = ?1 ORDER BY vuln_id",
        )
        .ctx("operation_vulnerabilities: prepare")?;
    let ids = st
        .query_map([seq], |r| r.get::<_, String>(0).map(VulnId))
        .ctx("operation_vulnerabilities: query")?
        .collect::<rusqlite::Result<Vec<_>>>()
        .with_ctx(|| format!("operation_vulnerabilities of {op}: reading rows"))?;
    Ok(ids)
}

pub(crate) fn vulnerabilities(
    conn: &Connection,
    ids: &[VulnId],
) -> Result<Vec<(VulnId, Vulnerability)>> {
    let tx = conn.unchecked_transaction().ctx("vulnerabilities: begin")?;
    let mut st = tx
        .prepare_cached("SELECT body FROM vulnerability WHERE id = ?1")
        .ctx("vulnerabilities: prepare")?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let body: Option<String> = st
            .query_row([&id.0], |r| r.get(0))
            .optional()
            .with_ctx(|| format!("reading vulnerability {id}"))?;
        if let Some(body) = body {
            let v = serde_json::from_str(&body)
                .map_err(|e| corrupt_json(format!("vulnerability {id}"), e))?;
            out.push((id.clone(), v));
        }
    }
    Ok(out)
}

/// The superseded operations garbage collection may remove: nothing refers to them. Nothing can
/// (a superseded operation is never processed, so no change set, v2/v3 notification or processed
/// mark names it), but a row that did would keep its operation rather than fail the collection.
const COLLECTIBLE: &str = "o.status = 'superseded'
    AND NOT EXISTS (SELECT 1 FROM change_set c WHERE c.op = o.seq)
    AND NOT EXISTS (SELECT 1 FROM legacy_notification n WHERE n.op = o.seq)
    AND NOT EXISTS (SELECT 1 FROM legacy_layer l WHERE l.op = o.seq)
    AND NOT EXISTS (SELECT 1 FROM updater u WHERE u.processed_op = o.ref)
    AND NOT EXISTS (SELECT 1 FROM notification_set s WHERE s.operation = o.ref)";

/// Removes superseded operations with their memberships (garbage collection, in its
/// transaction, before unreferenced vulnerabilities are removed); returns how many.
pub(crate) fn collect_superseded(tx: &Transaction<'_>) -> Result<u64> {
    tx.execute(
        &format!(
            "DELETE FROM operation_vulnerability WHERE op IN (
                 SELECT o.seq FROM operation o WHERE {COLLECTIBLE})"
        ),
        [],
    )
    .ctx("collect_garbage: removing the memberships of superseded operations")?;
    let removed = tx
        .execute(
            &format!(
                "DELETE FROM operation WHERE seq IN (
                     SELECT o.seq FROM operation o WHERE {COLLECTIBLE}
                       AND NOT EXISTS (
                           SELECT 1 FROM operation_vulnerability ov WHERE ov.op = o.seq))"
            ),
            [],
        )
        .ctx("collect_garbage: removing superseded operations")?;
    Ok(u64::try_from(removed).unwrap_or(u64::MAX))
}
