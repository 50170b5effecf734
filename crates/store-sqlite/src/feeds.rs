//! Feeds: content-addressed vulnerabilities, update operations and their membership.
use std::collections::HashSet;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use time::OffsetDateTime;
use tocsin_model::claircore::UpdateOperation;
use tocsin_model::vuln::{VulnId, Vulnerability};
use tocsin_store::codec::EncodedSnapshot;
use tocsin_store::{ImportOutcome, StoreError, UpdaterInfo};
use uuid::Uuid;

use crate::convert::{corrupt_json, parse_uuid, rfc3339, to_i64, to_u64, Result, SqlContext};

/// The `kind` of every operation this store creates.
const KIND: &str = "vulnerability";

/// The ids of the updater's latest operation: records the store is known to hold (see
/// [`tocsin_store::codec::encode_snapshot`]).
pub(crate) fn latest_ids(conn: &Connection, updater: &str) -> Result<HashSet<String>> {
    let mut st = conn
        .prepare_cached(
            "SELECT ov.vuln_id FROM operation_vulnerability ov
             WHERE ov.op = (SELECT MAX(seq) FROM operation WHERE updater = ?1)",
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

fn latest_op(conn: &Connection, updater: &str) -> Result<Option<OpRow>> {
    conn.query_row(
        &format!("SELECT {OP_COLUMNS} FROM operation WHERE updater = ?1 ORDER BY seq DESC LIMIT 1"),
        [updater],
        op_row,
    )
    .optional()
    .with_ctx(|| format!("reading the latest operation of updater {updater:?}"))
}

pub(crate) fn import(
    conn: &mut Connection,
    updater: &str,
    fingerprint: &str,
    snap: &EncodedSnapshot,
    now: OffsetDateTime,
) -> Result<ImportOutcome> {
    let date = rfc3339(now)?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .ctx("import_snapshot: begin")?;
    if let Some(latest) = latest_op(&tx, updater)? {
        if latest.3 == fingerprint {
            return Ok(ImportOutcome::Unchanged(to_op(latest)));
        }
    }
    tx.execute(
        "INSERT INTO updater (name) VALUES (?1) ON CONFLICT (name) DO NOTHING",
        [updater],
    )
    .ctx("import_snapshot: registering the updater")?;
    let reference = Uuid::new_v4().to_string();
    tx.execute(
        "INSERT INTO operation (ref, updater, fingerprint, kind, date, vulns)
         VALUES (?1, ?2, ?3, ?4, ?5, 0)",
        params![reference, updater, fingerprint, KIND, date],
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
    Ok(ImportOutcome::Created(UpdateOperation {
        reference,
        updater: updater.to_string(),
        fingerprint: fingerprint.to_string(),
        date,
        kind: KIND.to_string(),
    }))
}

pub(crate) fn updaters(conn: &Connection) -> Result<Vec<UpdaterInfo>> {
    let tx = conn.unchecked_transaction().ctx("updaters: begin")?;
    let rows: Vec<(String, Option<String>, i64)> = {
        let mut st = tx
            .prepare_cached(
                "SELECT u.name, u.processed_op,
                        (SELECT COUNT(*) FROM operation o WHERE o.updater = u.name)
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
        let what = || format!("updater {name:?}");
        out.push(UpdaterInfo {
            held: None, // TEMP: the store does not hold operations yet
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
            "SELECT {OP_COLUMNS} FROM operation WHERE updater = ?1 ORDER BY seq DESC"
        ))
        .ctx("update_operations: prepare")?;
    let rows = st
        .query_map([updater], op_row)
        .ctx("update_operations: query")?
        .collect::<rusqlite::Result<Vec<_>>>()
        .with_ctx(|| format!("update_operations of {updater:?}: reading rows"))?;
    Ok(rows.into_iter().map(to_op).collect())
}

/// An operation's internal sequence number, or `Invalid` naming it.
pub(crate) fn op_seq(conn: &Connection, op: Uuid) -> Result<Option<(i64, String)>> {
    conn.query_row(
        "SELECT seq, updater FROM operation WHERE ref = ?1",
        [op.to_string()],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
    .with_ctx(|| format!("looking up update operation {op}"))
}

pub(crate) fn operation_vulnerabilities(conn: &Connection, op: Uuid) -> Result<Vec<VulnId>> {
    let tx = conn
        .unchecked_transaction()
        .ctx("operation_vulnerabilities: begin")?;
    let Some((seq, _)) = op_seq(&tx, op)? else {
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
