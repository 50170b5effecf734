//! Feeds: content-addressed vulnerabilities, update operations and their membership.
//!
//! An import locks its updater's row (`FOR UPDATE`) before reading the latest fingerprint, so two
//! processes importing the same snapshot at once create one operation, not two, and an updater's
//! operations get increasing `seq`s in commit order. Vulnerabilities and memberships are written
//! with one multi-row statement each (`unnest` over arrays): one round trip for thousands of rows.
use std::collections::HashSet;

use deadpool_postgres::{Client, GenericClient};
use time::OffsetDateTime;
use tocsin_model::claircore::UpdateOperation;
use tocsin_model::vuln::{VulnId, Vulnerability};
use tocsin_store::codec::EncodedSnapshot;
use tocsin_store::{ImportOutcome, StoreError, UpdaterInfo};
use uuid::Uuid;

use crate::convert::{corrupt_json, rfc3339, to_u64, PgContext, Result};
use crate::schema::{LOCK_VULNS, NOTIFY_CHANNEL};

/// The `kind` of every operation this store creates.
const KIND: &str = "vulnerability";

/// The ids of the updater's latest operation: records the store is known to hold (see
/// [`tocsin_store::codec::encode_snapshot`]).
pub(crate) async fn latest_ids(c: &Client, updater: &str) -> Result<HashSet<String>> {
    let st = c
        .prepare_cached(
            "SELECT ov.vuln_id FROM operation_vulnerability ov
             WHERE ov.op = (SELECT MAX(seq) FROM operation WHERE updater = $1)",
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

async fn latest_op<C: GenericClient>(c: &C, updater: &str) -> Result<Option<tokio_postgres::Row>> {
    let st = c
        .prepare_cached(&format!(
            "SELECT {OP_COLUMNS} FROM operation WHERE updater = $1 ORDER BY seq DESC LIMIT 1"
        ))
        .await
        .ctx("reading the latest operation: prepare")?;
    c.query_opt(&st, &[&updater])
        .await
        .with_ctx(|| format!("reading the latest operation of updater {updater:?}"))
}

pub(crate) async fn import(
    c: &mut Client,
    updater: &str,
    fingerprint: &str,
    snap: &EncodedSnapshot,
    now: OffsetDateTime,
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
            // Dropping `tx` rolls back the (no-op) registration.
            return Ok(ImportOutcome::Unchanged(to_op(&latest)));
        }
    }
    // Garbage collection removes unreferenced vulnerabilities under the exclusive form of this
    // lock; holding it shared keeps a body we rely on below from vanishing before we link it.
    tx.execute("SELECT pg_advisory_xact_lock_shared($1)", &[&LOCK_VULNS])
        .await
        .ctx("import_snapshot: taking the vulnerability lock")?;
    let reference = Uuid::new_v4();
    let op: i64 = tx
        .query_one(
            "INSERT INTO operation (ref, updater, fingerprint, kind, date, vulns)
             VALUES ($1, $2, $3, $4, $5, 0) RETURNING seq",
            &[&reference, &updater, &fingerprint, &KIND, &date],
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
    tx.execute(
        "SELECT pg_notify($1, 'i' || $2)",
        &[&NOTIFY_CHANNEL, &updater],
    )
    .await
    .ctx("import_snapshot: announcing")?;
    tx.commit().await.ctx("import_snapshot: commit")?;
    Ok(ImportOutcome::Created(UpdateOperation {
        reference: reference.to_string(),
        updater: updater.to_string(),
        fingerprint: fingerprint.to_string(),
        date,
        kind: KIND.to_string(),
    }))
}

pub(crate) async fn updaters(c: &Client) -> Result<Vec<UpdaterInfo>> {
    // One statement, so every updater is read from one snapshot.
    let rows = c
        .query(
            "SELECT u.name, u.processed_op,
                    (SELECT COUNT(*) FROM operation o WHERE o.updater = u.name),
                    l.ref, l.updater, l.fingerprint, l.date, l.kind, l.vulns
             FROM updater u
             LEFT JOIN LATERAL (
                 SELECT ref, updater, fingerprint, date, kind, vulns FROM operation o
                 WHERE o.updater = u.name ORDER BY o.seq DESC LIMIT 1
             ) l ON true
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
            Ok(UpdaterInfo {
            held: None, // TEMP: the store does not hold operations yet
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
            "SELECT {OP_COLUMNS} FROM operation WHERE updater = $1 ORDER BY seq DESC"
        ))
        .await
        .ctx("update_operations: prepare")?;
    let rows = c
        .query(&st, &[&updater])
        .await
        .with_ctx(|| format!("update_operations of {updater:?}"))?;
    Ok(rows.iter().map(to_op).collect())
}

/// An operation's internal sequence number and updater.
pub(crate) async fn op_seq<C: GenericClient>(c: &C, op: Uuid) -> Result<Option<(i64, String)>> {
    let st = c
        .prepare_cached("SELECT seq, updater FROM operation WHERE ref = $1")
        .await
        .ctx("looking up an update operation: prepare")?;
    let row = c
        .query_opt(&st, &[&op])
        .await
        .with_ctx(|| format!("looking up update operation {op}"))?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

pub(crate) async fn operation_vulnerabilities(c: &Client, op: Uuid) -> Result<Vec<VulnId>> {
    let Some((seq, _)) = op_seq(c, op).await? else {
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
