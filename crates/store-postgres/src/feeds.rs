//! Feeds: content-addressed vulnerabilities, update operations and their membership.
//!
//! An import locks its updater's row (`FOR UPDATE`) before reading the latest fingerprint, so two
//! processes importing the same snapshot at once create one operation, not two, and an updater's
//! operations get increasing `seq`s in commit order. Vulnerabilities and memberships are written
//! with one multi-row statement each (`unnest` over arrays): one round trip for thousands of rows.
//!
//! An operation's `status` is `accepted`, `held` (by the storm guard, with a reason) or
//! `superseded` (a held one replaced by a later import). Everything that reads "an updater's
//! operations" reads accepted ones only. Imports supersede the held operation, and acceptance
//! flips it to accepted, under the same updater row lock, so the two never interleave: a held
//! operation is accepted or superseded, never both, and it is always newer than every accepted
//! one. Imports and acceptances announce the updater (`NOTIFY`); held imports do not, since they
//! leave nothing to process.
use std::collections::HashSet;

use deadpool_postgres::{Client, GenericClient};
use time::OffsetDateTime;
use tocsin_model::claircore::UpdateOperation;
use tocsin_model::vuln::{VulnId, Vulnerability};
use tocsin_store::codec::status::{check_acceptable, ACCEPTED, HELD, SUPERSEDED};
use tocsin_store::codec::EncodedSnapshot;
use tocsin_store::{HeldOperation, ImportOutcome, StoreError, UpdaterInfo};
use uuid::Uuid;

use crate::convert::{corrupt_json, rfc3339, to_u64, PgContext, Result};
use crate::schema::{LOCK_VULNS, NOTIFY_CHANNEL};

/// The `kind` of every operation this store creates.
const KIND: &str = "vulnerability";

/// The ids of the updater's latest accepted operation: records the store is known to hold (see
/// [`tocsin_store::codec::encode_snapshot`]; an accepted operation's memberships are never
/// deleted).
pub(crate) async fn latest_ids(c: &Client, updater: &str) -> Result<HashSet<String>> {
    let st = c
        .prepare_cached(
            "SELECT ov.vuln_id FROM operation_vulnerability ov
             WHERE ov.op = (SELECT MAX(seq) FROM operation
                            WHERE updater = $1 AND status = 'accepted')",
        )
        .await
        .ctx("reading the latest operation's vulnerabilities: prepare")?;
    let rows = c
        .query(&st, &[&updater])
        .await
        .with_ctx(|| format!("reading the latest vulnerabilities of updater {updater:?}"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

const OP_COLUMNS: &str = "ref, updater, fingerprint, date, kind, vulns";

fn to_op(r: &tokio_postgres::Row) -> UpdateOperation {
    UpdateOperation {
        reference: r.get::<_, Uuid>(0).to_string(),
        updater: r.get(1),
        fingerprint: r.get(2),
        date: r.get(3),
        kind: r.get(4),
    }
}

/// The updater's newest accepted operation.
async fn latest_op<C: GenericClient>(c: &C, updater: &str) -> Result<Option<tokio_postgres::Row>> {
    let st = c
        .prepare_cached(&format!(
            "SELECT {OP_COLUMNS} FROM operation WHERE updater = $1 AND status = 'accepted'
             ORDER BY seq DESC LIMIT 1"
        ))
        .await
        .ctx("reading the latest operation: prepare")?;
    c.query_opt(&st, &[&updater])
        .await
        .with_ctx(|| format!("reading the latest operation of updater {updater:?}"))
}

/// The updater's held operation: [`OP_COLUMNS`], then the reason.
async fn held_op<C: GenericClient>(c: &C, updater: &str) -> Result<Option<tokio_postgres::Row>> {
    let st = c
        .prepare_cached(&format!(
            "SELECT {OP_COLUMNS}, COALESCE(held_reason, '') FROM operation
             WHERE updater = $1 AND status = 'held'"
        ))
        .await
        .ctx("reading the held operation: prepare")?;
    c.query_opt(&st, &[&updater])
        .await
        .with_ctx(|| format!("reading the held operation of updater {updater:?}"))
}

/// A held operation from a [`held_op`] row.
fn to_held(r: &tokio_postgres::Row) -> Result<HeldOperation> {
    let operation = to_op(r);
    let vulnerabilities = to_u64(r.get(5), || {
        format!("held update operation {}", operation.reference)
    })?;
    Ok(HeldOperation {
        operation,
        reason: r.get(6),
        vulnerabilities,
    })
}

/// Drops the updater's held operation, if any (garbage collection removes it later). The caller
/// holds the updater's row lock.
async fn supersede<C: GenericClient>(c: &C, updater: &str) -> Result<()> {
    c.execute(
        "UPDATE operation SET status = $1 WHERE updater = $2 AND status = $3",
        &[&SUPERSEDED, &updater, &HELD],
    )
    .await
    .with_ctx(|| format!("superseding the held operation of updater {updater:?}"))?;
    Ok(())
}

/// Imports a snapshot, held with the reason when `hold` is given (see the module doc).
pub(crate) async fn import(
    c: &mut Client,
    updater: &str,
    fingerprint: &str,
    snap: &EncodedSnapshot,
    now: OffsetDateTime,
    hold: Option<&str>,
) -> Result<ImportOutcome> {
    let date = rfc3339(now)?;
    let tx = c.transaction().await.ctx("import_snapshot: begin")?;
    tx.execute(
        "INSERT INTO updater (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
        &[&updater],
    )
    .await
    .ctx("import_snapshot: registering the updater")?;
    tx.execute(
        "SELECT 1 FROM updater WHERE name = $1 FOR UPDATE",
        &[&updater],
    )
    .await
    .with_ctx(|| format!("import_snapshot: locking updater {updater:?}"))?;
    if let Some(latest) = latest_op(&tx, updater).await? {
        if latest.get::<_, &str>(2) == fingerprint {
            // The feed is back to what was accepted: whatever was held is moot.
            supersede(&tx, updater).await?;
            tx.commit().await.ctx("import_snapshot: commit")?;
            return Ok(ImportOutcome::Unchanged(to_op(&latest)));
        }
    }
    if hold.is_some() {
        if let Some(held) = held_op(&tx, updater).await? {
            if held.get::<_, &str>(2) == fingerprint {
                // Nothing written: dropping `tx` rolls back the (no-op) registration.
                return Ok(ImportOutcome::Held(to_held(&held)?));
            }
        }
    }
    // Garbage collection removes unreferenced vulnerabilities under the exclusive form of this
    // lock; holding it shared keeps a body we rely on below from vanishing before we link it.
    tx.execute("SELECT pg_advisory_xact_lock_shared($1)", &[&LOCK_VULNS])
        .await
        .ctx("import_snapshot: taking the vulnerability lock")?;
    supersede(&tx, updater).await?;
    let reference = Uuid::new_v4();
    let status = if hold.is_some() { HELD } else { ACCEPTED };
    let op: i64 = tx
        .query_one(
            "INSERT INTO operation (ref, updater, fingerprint, kind, date, vulns, status,
                                    held_reason)
             VALUES ($1, $2, $3, $4, $5, 0, $6, $7) RETURNING seq",
            &[
                &reference,
                &updater,
                &fingerprint,
                &KIND,
                &date,
                &status,
                &hold,
            ],
        )
        .await
        .ctx("import_snapshot: creating the operation")?
        .get(0);
    tx.execute(
        "INSERT INTO vulnerability (id, body)
         SELECT * FROM unnest($1::text[], $2::text[])
         ON CONFLICT (id) DO NOTHING",
        &[&snap.new_ids, &snap.new_bodies],
    )
    .await
    .with_ctx(|| {
        format!(
            "import_snapshot: storing {} vulnerabilities",
            snap.new_ids.len()
        )
    })?;
    // A snapshot listing one record twice is one membership, not two.
    let linked = tx
        .execute(
            "INSERT INTO operation_vulnerability (op, vuln_id)
             SELECT $1, id FROM unnest($2::text[]) AS u(id)
             ON CONFLICT DO NOTHING",
            &[&op, &snap.ids],
        )
        .await
        .ctx("import_snapshot: linking vulnerabilities")?;
    tx.execute(
        "UPDATE operation SET vulns = $1 WHERE seq = $2",
        &[&i64::try_from(linked).unwrap_or(i64::MAX), &op],
    )
    .await
    .ctx("import_snapshot: counting")?;
    if hold.is_none() {
        announce(&tx, updater).await?;
    }
    tx.commit().await.ctx("import_snapshot: commit")?;
    let operation = UpdateOperation {
        reference: reference.to_string(),
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
            vulnerabilities: linked,
        }),
    })
}

/// Tells every process (at commit) that the updater has a new operation to process.
async fn announce<C: GenericClient>(c: &C, updater: &str) -> Result<()> {
    c.execute(
        "SELECT pg_notify($1, 'i' || $2)",
        &[&NOTIFY_CHANNEL, &updater],
    )
    .await
    .with_ctx(|| format!("announcing an operation of updater {updater:?}"))?;
    Ok(())
}

/// Accepts the updater's held operation `op` (see [`tocsin_store::Store::accept_operation`]).
pub(crate) async fn accept(c: &mut Client, updater: &str, op: Uuid) -> Result<UpdateOperation> {
    let tx = c.transaction().await.ctx("accept_operation: begin")?;
    // The import's lock: no import of this updater supersedes the operation meanwhile.
    tx.execute(
        "SELECT 1 FROM updater WHERE name = $1 FOR UPDATE",
        &[&updater],
    )
    .await
    .with_ctx(|| format!("accept_operation: locking updater {updater:?}"))?;
    let found = tx
        .query_opt(
            &format!("SELECT {OP_COLUMNS}, status, seq FROM operation WHERE ref = $1 FOR UPDATE"),
            &[&op],
        )
        .await
        .with_ctx(|| format!("accept_operation: looking up update operation {op}"))?;
    let Some(row) = found else {
        return Err(StoreError::Invalid(format!(
            "cannot accept update operation {op}: there is no such operation"
        )));
    };
    check_acceptable(op, updater, row.get(1), row.get(6))?;
    let seq: i64 = row.get(7);
    tx.execute(
        "UPDATE operation SET status = $1 WHERE seq = $2",
        &[&ACCEPTED, &seq],
    )
    .await
    .with_ctx(|| format!("accept_operation: accepting update operation {op}"))?;
    announce(&tx, updater).await?;
    tx.commit().await.ctx("accept_operation: commit")?;
    Ok(to_op(&row))
}

pub(crate) async fn updaters(c: &Client) -> Result<Vec<UpdaterInfo>> {
    // One statement, so every updater is read from one snapshot.
    let rows = c
        .query(
            "SELECT u.name, u.processed_op,
                    (SELECT COUNT(*) FROM operation o
                     WHERE o.updater = u.name AND o.status = 'accepted'),
                    l.ref, l.updater, l.fingerprint, l.date, l.kind, l.vulns,
                    h.ref, h.updater, h.fingerprint, h.date, h.kind, h.vulns,
                    COALESCE(h.held_reason, '')
             FROM updater u
             LEFT JOIN LATERAL (
                 SELECT ref, updater, fingerprint, date, kind, vulns FROM operation o
                 WHERE o.updater = u.name AND o.status = 'accepted'
                 ORDER BY o.seq DESC LIMIT 1
             ) l ON true
             LEFT JOIN operation h ON h.updater = u.name AND h.status = 'held'
             ORDER BY u.name",
            &[],
        )
        .await
        .ctx("updaters")?;
    rows.iter()
        .map(|r| {
            let name: String = r.get(0);
            let what = || format!("updater {name:?}");
            let latest = r
                .get::<_, Option<Uuid>>(3)
                .map(|reference| UpdateOperation {
                    reference: reference.to_string(),
                    updater: r.get(4),
                    fingerprint: r.get(5),
                    date: r.get(6),
                    kind: r.get(7),
                });
            let held = match r.get::<_, Option<Uuid>>(9) {
                None => None,
                Some(reference) => Some(HeldOperation {
                    operation: UpdateOperation {
                        reference: reference.to_string(),
                        updater: r.get(10),
                        fingerprint: r.get(11),
                        date: r.get(12),
                        kind: r.get(13),
                    },
                    vulnerabilities: to_u64(r.get(14), || format!("held operation of {name:?}"))?,
                    reason: r.get(15),
                }),
            };
            Ok(UpdaterInfo {
                held,
                vulnerabilities: match r.get::<_, Option<i64>>(8) {
                    Some(n) => to_u64(n, what)?,
                    None => 0,
                },
                latest,
                processed: r.get(1),
                operations: to_u64(r.get(2), what)?,
                name,
            })
        })
        .collect()
}

pub(crate) async fn operations(c: &Client, updater: &str) -> Result<Vec<UpdateOperation>> {
    let st = c
        .prepare_cached(&format!(
            "SELECT {OP_COLUMNS} FROM operation WHERE updater = $1 AND status = 'accepted'
             ORDER BY seq DESC"
        ))
        .await
        .ctx("update_operations: prepare")?;
    let rows = c
        .query(&st, &[&updater])
        .await
        .with_ctx(|| format!("update_operations of {updater:?}"))?;
    Ok(rows.iter().map(to_op).collect())
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
pub(crate) async fn op_seq<C: GenericClient>(c: &C, op: Uuid) -> Result<Option<OpRef>> {
    let st = c
        .prepare_cached("SELECT seq, updater, status = 'accepted' FROM operation WHERE ref = $1")
        .await
        .ctx("looking up an update operation: prepare")?;
    let row = c
        .query_opt(&st, &[&op])
        .await
        .with_ctx(|| format!("looking up update operation {op}"))?;
    Ok(row.map(|r| OpRef {
        seq: r.get(0),
        updater: r.get(1),
        accepted: r.get(2),
    }))
}

pub(crate) async fn operation_vulnerabilities(c: &Client, op: Uuid) -> Result<Vec<VulnId>> {
    let Some(OpRef { seq, .. }) = op_seq(c, op).await? else {
        // An empty list would read as "everything was withdrawn" to a diff; refuse instead.
        return Err(StoreError::Invalid(format!(
            "unknown update operation {op}"
        )));
    };
    let st = c
        .prepare_cached(
            "SELECT vuln_id FROM operation_vulnerability WHERE op = $1 ORDER BY vuln_id",
        )
        .await
        .ctx("operation_vulnerabilities: prepare")?;
    let rows = c
        .query(&st, &[&seq])
        .await
        .with_ctx(|| format!("operation_vulnerabilities of {op}"))?;
    Ok(rows.iter().map(|r| VulnId(r.get(0))).collect())
}

pub(crate) async fn vulnerabilities(
    c: &Client,
    ids: &[VulnId],
) -> Result<Vec<(VulnId, Vulnerability)>> {
    let wanted: Vec<&str> = ids.iter().map(|i| i.0.as_str()).collect();
    // One round trip; the caller's order (and duplicates) are restored from the array position.
    let rows = c
        .query(
            "SELECT v.id, v.body FROM unnest($1::text[]) WITH ORDINALITY AS w(id, n)
             JOIN vulnerability v ON v.id = w.id ORDER BY w.n",
            &[&wanted],
        )
        .await
        .with_ctx(|| format!("reading {} vulnerabilities", ids.len()))?;
    rows.iter()
        .map(|r| {
            let id = VulnId(r.get(0));
            let v = serde_json::from_str(r.get(1))
                .map_err(|e| corrupt_json(format!("vulnerability {id}"), e))?;
            Ok((id, v))
        })
        .collect()
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
/// transaction, before unreferenced vulnerabilities are removed); returns how many. A superseded
/// operation never changes again, so nothing races with this.
pub(crate) async fn collect_superseded<C: GenericClient>(c: &C) -> Result<u64> {
    c.execute(
        &format!(
            "DELETE FROM operation_vulnerability ov USING operation o
             WHERE ov.op = o.seq AND {COLLECTIBLE}"
        ),
        &[],
    )
    .await
    .ctx("collect_garbage: removing the memberships of superseded operations")?;
    c.execute(
        &format!(
            "DELETE FROM operation o WHERE {COLLECTIBLE}
               AND NOT EXISTS (SELECT 1 FROM operation_vulnerability ov WHERE ov.op = o.seq)"
        ),
        &[],
    )
    .await
    .ctx("collect_garbage: removing superseded operations")
}
