//! Manifests and the manifest change feed.
//!
//! A manifest write takes [`LOCK_FEED`] for its transaction before anything else. That one lock
//! does two jobs: two processes storing the same new digest cannot both insert it (the second
//! waits, then finds the first's row), and feed `seq`s, drawn from a sequence while the lock is
//! held, become visible in increasing order (a sequence alone hands numbers out in call order, not
//! commit order, and a reader would skip a smaller `seq` committed after a larger one). Manifest
//! writes are one small transaction each, so serialising them costs little; reads never wait.
use deadpool_postgres::{Client, GenericClient, Transaction};
use time::OffsetDateTime;
use tocsin_model::inventory::{InventoryFormat, Manifest};
use tocsin_model::Digest;
use tocsin_store::{ManifestChange, ManifestId, ManifestSummary, PutOutcome, StoreError};

use crate::convert::{corrupt_json, from_nanos, to_i64, to_nanos, to_u64, PgContext, Result};
use crate::schema::{LOCK_FEED, NOTIFY_CHANNEL};

/// A manifest encoded for storage (before a connection is taken).
pub(crate) struct Encoded {
    digest: String,
    format: &'static str,
    labels: String,
    report: String,
    content_hash: String,
    packages: i64,
}

pub(crate) fn encode(m: &Manifest) -> Result<Encoded> {
    let what = || format!("manifest {}", m.digest);
    Ok(Encoded {
        digest: m.digest.as_str().to_string(),
        format: m.format.as_str(),
        labels: serde_json::to_string(&m.labels)
            .map_err(|e| StoreError::Invalid(format!("{}: labels: {e}", what())))?,
        report: serde_json::to_string(&m.report)
            .map_err(|e| StoreError::Invalid(format!("{}: report: {e}", what())))?,
        content_hash: m.content_hash(),
        packages: to_i64(m.report.packages.len()),
    })
}

fn manifest_id(id: i64, digest: &str) -> Result<ManifestId> {
    ManifestId::try_from(id).map_err(|_| {
        StoreError::Invalid(format!(
            "manifest {digest}: id {id} exceeds the manifest id space (u32)"
        ))
    })
}

pub(crate) async fn put(
    c: &mut Client,
    m: &Encoded,
    now: OffsetDateTime,
) -> Result<(ManifestId, PutOutcome)> {
    let now = to_nanos(now, "put_manifest time")?;
    let tx = c.transaction().await.ctx("put_manifest: begin")?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_FEED])
        .await
        .ctx("put_manifest: taking the feed lock")?;
    let st = tx
        .prepare_cached("SELECT id, content_hash FROM manifest WHERE digest = $1")
        .await
        .ctx("put_manifest: prepare")?;
    let existing = tx
        .query_opt(&st, &[&m.digest])
        .await
        .ctx("put_manifest: looking up the digest")?;
    let (id, outcome) = match existing {
        Some(row) if row.get::<_, &str>(1) == m.content_hash => {
            let id: i64 = row.get(0);
            // Nothing to write: dropping `tx` rolls back and releases the lock.
            return Ok((manifest_id(id, &m.digest)?, PutOutcome::Unchanged));
        }
        Some(row) => {
            let id: i64 = row.get(0);
            let st = tx
                .prepare_cached(
                    "UPDATE manifest SET format = $1, labels = $2, report = $3, content_hash = $4,
                            packages = $5, updated_at = $6
                     WHERE id = $7",
                )
                .await
                .ctx("put_manifest: prepare")?;
            tx.execute(
                &st,
                &[
                    &m.format,
                    &m.labels,
                    &m.report,
                    &m.content_hash,
                    &m.packages,
                    &now,
                    &id,
                ],
            )
            .await
            .ctx("put_manifest: replacing")?;
            (id, PutOutcome::Replaced)
        }
        None => {
            let st = tx
                .prepare_cached(
                    "INSERT INTO manifest
                         (digest, format, labels, report, content_hash, packages, created_at,
                          updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING id",
                )
                .await
                .ctx("put_manifest: prepare")?;
            let row = tx
                .query_one(
                    &st,
                    &[
                        &m.digest,
                        &m.format,
                        &m.labels,
                        &m.report,
                        &m.content_hash,
                        &m.packages,
                        &now,
                    ],
                )
                .await
                .ctx("put_manifest: inserting")?;
            (row.get::<_, i64>(0), PutOutcome::Created)
        }
    };
    // Dropping `tx` on this error rolls the insert back, so the store stays usable.
    let id = manifest_id(id, &m.digest)?;
    record_change(&tx, id, &m.digest, false).await?;
    tx.commit().await.ctx("put_manifest: commit")?;
    Ok((id, outcome))
}

/// Makes `(id, digest, deleted)` the manifest's latest change, at a new end of the feed, and
/// announces it (the notification is sent when the transaction commits).
async fn record_change(
    tx: &Transaction<'_>,
    id: ManifestId,
    digest: &str,
    deleted: bool,
) -> Result<()> {
    let st = tx
        .prepare_cached(
            "INSERT INTO manifest_change (seq, id, digest, deleted)
             VALUES (nextval('manifest_change_seq'), $1, $2, $3)
             ON CONFLICT (id) DO UPDATE
                 SET seq = EXCLUDED.seq, digest = EXCLUDED.digest, deleted = EXCLUDED.deleted",
        )
        .await
        .ctx("manifest change feed: prepare")?;
    tx.execute(&st, &[&i64::from(id), &digest, &deleted])
        .await
        .with_ctx(|| format!("manifest change feed: recording id {id} ({digest})"))?;
    tx.execute("SELECT pg_notify($1, 'm')", &[&NOTIFY_CHANNEL])
        .await
        .ctx("manifest change feed: announcing")?;
    Ok(())
}

fn decode(
    id: i64,
    digest: &str,
    format: &str,
    labels: &str,
    report: &str,
) -> Result<(ManifestId, Manifest)> {
    let what = || format!("manifest row id {id} ({digest})");
    let id = ManifestId::try_from(id)
        .map_err(|_| StoreError::Corrupt(format!("{}: id out of range", what())))?;
    let digest = Digest::parse(digest)
        .map_err(|e| StoreError::Corrupt(format!("{}: digest: {e}", what())))?;
    let format = InventoryFormat::parse(format)
        .ok_or_else(|| StoreError::Corrupt(format!("{}: unknown format {format:?}", what())))?;
    let labels =
        serde_json::from_str(labels).map_err(|e| corrupt_json(format!("{}: labels", what()), e))?;
    let report =
        serde_json::from_str(report).map_err(|e| corrupt_json(format!("{}: report", what()), e))?;
    Ok((
        id,
        Manifest {
            digest,
            labels,
            format,
            report,
        },
    ))
}

pub(crate) async fn get(c: &Client, digest: &Digest) -> Result<Option<Manifest>> {
    let st = c
        .prepare_cached("SELECT id, format, labels, report FROM manifest WHERE digest = $1")
        .await
        .ctx("get_manifest: prepare")?;
    let row = c
        .query_opt(&st, &[&digest.as_str()])
        .await
        .with_ctx(|| format!("get_manifest {digest}"))?;
    row.map(|r| decode(r.get(0), digest.as_str(), r.get(1), r.get(2), r.get(3)).map(|(_, m)| m))
        .transpose()
}

pub(crate) async fn delete(c: &mut Client, digest: &Digest) -> Result<bool> {
    let tx = c.transaction().await.ctx("delete_manifest: begin")?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_FEED])
        .await
        .ctx("delete_manifest: taking the feed lock")?;
    let row = tx
        .query_opt(
            "DELETE FROM manifest WHERE digest = $1 RETURNING id",
            &[&digest.as_str()],
        )
        .await
        .with_ctx(|| format!("delete_manifest {digest}"))?;
    let Some(row) = row else {
        // Nothing was deleted, so there is no change to record; dropping `tx` ends it.
        return Ok(false);
    };
    let id: i64 = row.get(0);
    let id = ManifestId::try_from(id).map_err(|_| {
        StoreError::Corrupt(format!("manifest row id {id} ({digest}): id out of range"))
    })?;
    record_change(&tx, id, digest.as_str(), true).await?;
    tx.commit()
        .await
        .with_ctx(|| format!("delete_manifest {digest}: commit"))?;
    Ok(true)
}

pub(crate) async fn changes(c: &Client, after: u64, limit: usize) -> Result<Vec<ManifestChange>> {
    let st = c
        .prepare_cached(
            "SELECT seq, id, digest, deleted FROM manifest_change
             WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .await
        .ctx("manifest_changes: prepare")?;
    // Positions past i64::MAX cannot exist (seq is a BIGINT sequence): "nothing follows".
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let rows = c
        .query(&st, &[&after, &to_i64(limit)])
        .await
        .ctx("manifest_changes: query")?;
    rows.iter()
        .map(|r| {
            let (seq, id, digest, deleted): (i64, i64, &str, bool) =
                (r.get(0), r.get(1), r.get(2), r.get(3));
            let what = || format!("manifest change seq {seq} (id {id}, {digest})");
            Ok(ManifestChange {
                seq: to_u64(seq, what)?,
                id: ManifestId::try_from(id)
                    .map_err(|_| StoreError::Corrupt(format!("{}: id out of range", what())))?,
                digest: Digest::parse(digest)
                    .map_err(|e| StoreError::Corrupt(format!("{}: digest: {e}", what())))?,
                deleted,
            })
        })
        .collect()
}

pub(crate) async fn change_head(c: &Client) -> Result<u64> {
    // The newest change is never removed (only a newer change of the same id moves a row), and
    // seqs commit in order (see the module doc), so this is the last position a reader can miss.
    let head: i64 = c
        .query_one("SELECT COALESCE(MAX(seq), 0) FROM manifest_change", &[])
        .await
        .ctx("manifest_change_head")?
        .get(0);
    to_u64(head, || "manifest change head".to_string())
}

pub(crate) async fn list(
    c: &Client,
    after: Option<&Digest>,
    limit: usize,
) -> Result<Vec<ManifestSummary>> {
    let st = c
        .prepare_cached(
            "SELECT id, digest, labels, format, packages, created_at, updated_at FROM manifest
             WHERE digest > $1 ORDER BY digest LIMIT $2",
        )
        .await
        .ctx("list_manifests: prepare")?;
    let rows = c
        .query(&st, &[&after.map_or("", |d| d.as_str()), &to_i64(limit)])
        .await
        .ctx("list_manifests: query")?;
    rows.iter()
        .map(|r| {
            let (id, digest): (i64, &str) = (r.get(0), r.get(1));
            let what = || format!("manifest row id {id} ({digest})");
            Ok(ManifestSummary {
                id: ManifestId::try_from(id)
                    .map_err(|_| StoreError::Corrupt(format!("{}: id out of range", what())))?,
                digest: Digest::parse(digest)
                    .map_err(|e| StoreError::Corrupt(format!("{}: digest: {e}", what())))?,
                labels: serde_json::from_str(r.get(2))
                    .map_err(|e| corrupt_json(format!("{}: labels", what()), e))?,
                format: r.get::<_, String>(3),
                packages: to_u64(r.get(4), what)?,
                created_at: from_nanos(r.get(5), what)?,
                updated_at: from_nanos(r.get(6), what)?,
            })
        })
        .collect()
}

pub(crate) async fn by_id(
    c: &Client,
    after: Option<ManifestId>,
    limit: usize,
) -> Result<Vec<(ManifestId, Manifest)>> {
    let st = c
        .prepare_cached(
            "SELECT id, digest, format, labels, report FROM manifest
             WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .await
        .ctx("manifests_by_id: prepare")?;
    let rows = c
        .query(&st, &[&after.map_or(0, i64::from), &to_i64(limit)])
        .await
        .ctx("manifests_by_id: query")?;
    rows.iter()
        .map(|r| decode(r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect()
}
