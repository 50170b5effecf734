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
use tocsin_model::inventory::Manifest;
use tocsin_model::Digest;
use tocsin_store::codec::decode_index_entry;
use tocsin_store::{
    BulkItem, BulkOutcome, IndexEntry, ManifestChange, ManifestId, ManifestSummary, PutOutcome,
    StoreError,
};

use crate::convert::{corrupt_json, from_nanos, to_i64, to_nanos, to_u64, PgContext, Result};
use crate::schema::{LOCK_FEED, NOTIFY_CHANNEL};

pub(crate) use tocsin_store::codec::{encode_manifest as encode, EncodedManifest as Encoded};

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
    let out = put_in(&tx, m, now).await?;
    // Unchanged: nothing was written, and dropping `tx` releases the lock.
    if out.1 != PutOutcome::Unchanged {
        tx.commit().await.ctx("put_manifest: commit")?;
    }
    Ok(out)
}

/// Stores a stream of manifests in one transaction (see `Store::put_manifests`), under the feed
/// lock for the whole of it.
pub(crate) async fn put_stream(
    c: &mut Client,
    items: &mut tokio::sync::mpsc::Receiver<BulkItem>,
    now: OffsetDateTime,
) -> Result<BulkOutcome> {
    let now = to_nanos(now, "put_manifests time")?;
    let tx = c.transaction().await.ctx("put_manifests: begin")?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_FEED])
        .await
        .ctx("put_manifests: taking the feed lock")?;
    let mut outcome = BulkOutcome::default();
    loop {
        match items.recv().await {
            Some(BulkItem::Manifest(m)) => {
                let (_, o) = put_in(&tx, &encode(&m)?, now).await?;
                outcome.count(o);
            }
            Some(BulkItem::Commit) => {
                tx.commit().await.ctx("put_manifests: commit")?;
                return Ok(outcome);
            }
            // Dropping `tx` rolls everything back.
            None => {
                return Err(StoreError::Invalid(format!(
                    "the manifest import ended before it was complete; none of its {} \
                     manifests were stored",
                    outcome.created + outcome.replaced + outcome.unchanged
                )))
            }
        }
    }
}

/// One put inside the caller's transaction, which holds the feed lock; writes nothing for
/// identical content.
async fn put_in(tx: &Transaction<'_>, m: &Encoded, now: i64) -> Result<(ManifestId, PutOutcome)> {
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
    // The caller drops `tx` on this error, rolling the insert back, so the store stays usable.
    let id = manifest_id(id, &m.digest)?;
    let st = tx
        .prepare_cached(
            "INSERT INTO manifest_packages (id, packages) VALUES ($1, $2)
             ON CONFLICT (id) DO UPDATE SET packages = EXCLUDED.packages",
        )
        .await
        .ctx("put_manifest: prepare")?;
    tx.execute(&st, &[&i64::from(id), &m.index])
        .await
        .with_ctx(|| format!("put_manifest: storing the packages of {}", m.digest))?;
    record_change(tx, id, &m.digest, false).await?;
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

use tocsin_store::codec::decode_manifest as decode;

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

// The report is fetched only for manifests stored before packages were kept beside it.
const ENTRY_COLUMNS: &str = "m.id, m.digest, p.packages, \
     CASE WHEN p.packages IS NULL THEN m.report END \
     FROM manifest m LEFT JOIN manifest_packages p ON p.id = m.id";

fn entries(rows: &[tokio_postgres::Row]) -> Result<Vec<IndexEntry>> {
    rows.iter()
        .map(|r| {
            let report: Option<String> = r.get(3);
            decode_index_entry(r.get(0), r.get(1), r.get(2), || Ok(report))
        })
        .collect()
}

pub(crate) async fn entries_after(
    c: &Client,
    after: Option<ManifestId>,
    limit: usize,
) -> Result<Vec<IndexEntry>> {
    let st = c
        .prepare_cached(&format!(
            "SELECT {ENTRY_COLUMNS} WHERE m.id > $1 ORDER BY m.id LIMIT $2"
        ))
        .await
        .ctx("index_entries_after: prepare")?;
    let rows = c
        .query(&st, &[&after.map_or(0, i64::from), &to_i64(limit)])
        .await
        .ctx("index_entries_after: query")?;
    entries(&rows)
}

pub(crate) async fn entries_of(c: &Client, ids: &[ManifestId]) -> Result<Vec<IndexEntry>> {
    let ids: Vec<i64> = ids.iter().map(|i| i64::from(*i)).collect();
    let st = c
        .prepare_cached(&format!(
            "SELECT {ENTRY_COLUMNS} WHERE m.id = ANY($1) ORDER BY m.id"
        ))
        .await
        .ctx("index_entries: prepare")?;
    let rows = c.query(&st, &[&ids]).await.ctx("index_entries: query")?;
    entries(&rows)
}

pub(crate) async fn labels_of(
    c: &Client,
    ids: &[ManifestId],
    label: &str,
) -> Result<std::collections::HashMap<ManifestId, String>> {
    let ids: Vec<i64> = ids.iter().map(|i| i64::from(*i)).collect();
    let rows = c
        .query(
            "SELECT id, labels FROM manifest WHERE id = ANY($1)",
            &[&ids],
        )
        .await
        .ctx("manifest_labels: query")?;
    let mut out = std::collections::HashMap::new();
    for r in rows {
        let id: i64 = r.get(0);
        let mut labels: std::collections::BTreeMap<String, String> = serde_json::from_str(r.get(1))
            .map_err(|e| corrupt_json(format!("manifest row id {id}: labels"), e))?;
        if let Some(v) = labels.remove(label) {
            out.insert(manifest_id(id, "a labelled manifest")?, v);
        }
    }
    Ok(out)
}
