//! Manifests: one row per digest, with an AUTOINCREMENT id that is never reused (the matching
//! index keys roaring bitmaps by it, so a reused id would silently attach old postings to a new
//! image).
//!
//! Every put that creates or replaces a manifest, and every delete, also rewrites that id's row in
//! `manifest_change` inside the same transaction, so the change feed can never miss or invent a
//! change. The feed row is deleted and inserted again rather than updated: its `seq` is an
//! AUTOINCREMENT rowid, which is how SQLite hands out a number larger than any ever used, even
//! after rows were removed, and the single writer makes that order the commit order.
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use time::OffsetDateTime;
use tocsin_model::inventory::{InventoryFormat, Manifest};
use tocsin_model::Digest;
use tocsin_store::{ManifestChange, ManifestId, ManifestSummary, PutOutcome, StoreError};

use crate::convert::{corrupt_json, from_nanos, to_i64, to_nanos, to_u64, Result, SqlContext};

/// A manifest encoded for storage (done before taking the write lock).
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

pub(crate) fn put(
    conn: &mut Connection,
    m: &Encoded,
    now: OffsetDateTime,
) -> Result<(ManifestId, PutOutcome)> {
    let now = to_nanos(now, "put_manifest time")?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .ctx("put_manifest: begin")?;
    let existing: Option<(i64, String)> = tx
        .query_row(
            "SELECT id, content_hash FROM manifest WHERE digest = ?1",
            [&m.digest],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .ctx("put_manifest: looking up the digest")?;
    let (id, outcome) = match existing {
        Some((id, hash)) if hash == m.content_hash => (id, PutOutcome::Unchanged),
        Some((id, _)) => {
            tx.execute(
                "UPDATE manifest SET format = ?1, labels = ?2, report = ?3, content_hash = ?4,
                        packages = ?5, updated_at = ?6
                 WHERE id = ?7",
                params![
                    m.format,
                    m.labels,
                    m.report,
                    m.content_hash,
                    m.packages,
                    now,
                    id
                ],
            )
            .ctx("put_manifest: replacing")?;
            (id, PutOutcome::Replaced)
        }
        None => {
            tx.execute(
                "INSERT INTO manifest
                     (digest, format, labels, report, content_hash, packages, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
                params![m.digest, m.format, m.labels, m.report, m.content_hash, m.packages, now],
            )
            .ctx("put_manifest: inserting")?;
            (tx.last_insert_rowid(), PutOutcome::Created)
        }
    };
    let id = ManifestId::try_from(id).map_err(|_| {
        // Dropping `tx` rolls the insert back, so the store stays usable for existing manifests.
        StoreError::Invalid(format!(
            "manifest {}: id {id} exceeds the manifest id space (u32)",
            m.digest
        ))
    })?;
    if outcome != PutOutcome::Unchanged {
        record_change(&tx, id, &m.digest, false)?;
        tx.commit().ctx("put_manifest: commit")?;
    }
    Ok((id, outcome))
}

/// Makes `(id, digest, deleted)` the manifest's latest change, at a new end of the feed.
fn record_change(tx: &Transaction<'_>, id: ManifestId, digest: &str, deleted: bool) -> Result<()> {
    tx.prepare_cached("DELETE FROM manifest_change WHERE id = ?1")
        .and_then(|mut st| st.execute([id]))
        .with_ctx(|| format!("manifest change feed: dropping the older change of id {id}"))?;
    tx.prepare_cached("INSERT INTO manifest_change (id, digest, deleted) VALUES (?1, ?2, ?3)")
        .and_then(|mut st| st.execute(params![id, digest, deleted]))
        .with_ctx(|| format!("manifest change feed: recording id {id} ({digest})"))?;
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

pub(crate) fn get(conn: &Connection, digest: &Digest) -> Result<Option<Manifest>> {
    let row: Option<(i64, String, String, String)> = conn
        .query_row(
            "SELECT id, format, labels, report FROM manifest WHERE digest = ?1",
            [digest.as_str()],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()
        .with_ctx(|| format!("get_manifest {digest}"))?;
    row.map(|(id, format, labels, report)| {
        decode(id, digest.as_str(), &format, &labels, &report).map(|(_, m)| m)
    })
    .transpose()
}

pub(crate) fn delete(conn: &mut Connection, digest: &Digest) -> Result<bool> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .ctx("delete_manifest: begin")?;
    let id: Option<i64> = tx
        .query_row(
            "DELETE FROM manifest WHERE digest = ?1 RETURNING id",
            [digest.as_str()],
            |r| r.get(0),
        )
        .optional()
        .with_ctx(|| format!("delete_manifest {digest}"))?;
    let Some(id) = id else {
        // Nothing was deleted, so there is no change to record; dropping `tx` ends it.
        return Ok(false);
    };
    let id = ManifestId::try_from(id).map_err(|_| {
        StoreError::Corrupt(format!("manifest row id {id} ({digest}): id out of range"))
    })?;
    record_change(&tx, id, digest.as_str(), true)?;
    tx.commit()
        .with_ctx(|| format!("delete_manifest {digest}: commit"))?;
    Ok(true)
}

pub(crate) fn changes(conn: &Connection, after: u64, limit: usize) -> Result<Vec<ManifestChange>> {
    let mut st = conn
        .prepare_cached(
            "SELECT seq, id, digest, deleted FROM manifest_change
             WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )
        .ctx("manifest_changes: prepare")?;
    // Positions past i64::MAX cannot exist (seq is a SQLite rowid): clamp to "nothing follows".
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let rows = st
        .query_map(params![after, to_i64(limit)], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, bool>(3)?,
            ))
        })
        .ctx("manifest_changes: query")?
        .collect::<rusqlite::Result<Vec<_>>>()
        .ctx("manifest_changes: reading rows")?;
    rows.into_iter()
        .map(|(seq, id, digest, deleted)| {
            let what = || format!("manifest change seq {seq} (id {id}, {digest})");
            Ok(ManifestChange {
                seq: to_u64(seq, what)?,
                id: ManifestId::try_from(id)
                    .map_err(|_| StoreError::Corrupt(format!("{}: id out of range", what())))?,
                digest: Digest::parse(&digest)
                    .map_err(|e| StoreError::Corrupt(format!("{}: digest: {e}", what())))?,
                deleted,
            })
        })
        .collect()
}

pub(crate) fn change_head(conn: &Connection) -> Result<u64> {
    // MAX over the rowid is a single b-tree lookup. The newest change is never removed (only a
    // newer change of the same id replaces a row), so this is also the last number handed out.
    let head: i64 = conn
        .query_row(
            "SELECT COALESCE(MAX(seq), 0) FROM manifest_change",
            [],
            |r| r.get(0),
        )
        .ctx("manifest_change_head")?;
    to_u64(head, || "manifest change head".to_string())
}

pub(crate) fn list(
    conn: &Connection,
    after: Option<&Digest>,
    limit: usize,
) -> Result<Vec<ManifestSummary>> {
    let mut st = conn
        .prepare_cached(
            "SELECT id, digest, labels, format, packages, created_at, updated_at FROM manifest
             WHERE digest > ?1 ORDER BY digest LIMIT ?2",
        )
        .ctx("list_manifests: prepare")?;
    let rows = st
        .query_map(
            params![after.map_or("", |d| d.as_str()), to_i64(limit)],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, i64>(6)?,
                ))
            },
        )
        .ctx("list_manifests: query")?
        .collect::<rusqlite::Result<Vec<_>>>()
        .ctx("list_manifests: reading rows")?;
    rows.into_iter()
        .map(|(id, digest, labels, format, packages, created, updated)| {
            let what = || format!("manifest row id {id} ({digest})");
            Ok(ManifestSummary {
                id: ManifestId::try_from(id)
                    .map_err(|_| StoreError::Corrupt(format!("{}: id out of range", what())))?,
                digest: Digest::parse(&digest)
                    .map_err(|e| StoreError::Corrupt(format!("{}: digest: {e}", what())))?,
                labels: serde_json::from_str(&labels)
                    .map_err(|e| corrupt_json(format!("{}: labels", what()), e))?,
                format,
                packages: to_u64(packages, what)?,
                created_at: from_nanos(created, what)?,
                updated_at: from_nanos(updated, what)?,
            })
        })
        .collect()
}

pub(crate) fn by_id(
    conn: &Connection,
    after: Option<ManifestId>,
    limit: usize,
) -> Result<Vec<(ManifestId, Manifest)>> {
    let mut st = conn
        .prepare_cached(
            "SELECT id, digest, format, labels, report FROM manifest
             WHERE id > ?1 ORDER BY id LIMIT ?2",
        )
        .ctx("manifests_by_id: prepare")?;
    let rows = st
        .query_map(params![after.map_or(0, i64::from), to_i64(limit)], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
            ))
        })
        .ctx("manifests_by_id: query")?
        .collect::<rusqlite::Result<Vec<_>>>()
        .ctx("manifests_by_id: reading rows")?;
    rows.iter()
        .map(|(id, digest, format, labels, report)| decode(*id, digest, format, labels, report))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn db() -> Connection {
        let mut c = Connection::open_in_memory().unwrap();
        crate::schema::configure_writer(&c).unwrap();
        crate::schema::migrate(&mut c).unwrap();
        c
    }

    fn manifest(n: u8) -> Manifest {
        let digest = Digest::parse(&format!("sha256:{}", format!("{n:02x}").repeat(32))).unwrap();
        Manifest {
            report: tocsin_model::claircore::IndexReport {
                manifest_hash: digest.to_string(),
                ..Default::default()
            },
            digest,
            labels: Default::default(),
            format: InventoryFormat::IndexReport,
        }
    }

    #[test]
    fn ids_beyond_u32_are_refused_and_nothing_is_stored() {
        let mut c = db();
        let t = datetime!(2026-01-01 0:00 UTC);
        c.execute(
            "INSERT INTO sqlite_sequence (name, seq) VALUES ('manifest', ?1)",
            [i64::from(u32::MAX)],
        )
        .unwrap();
        let m = manifest(1);
        let err = put(&mut c, &encode(&m).unwrap(), t).unwrap_err();
        assert!(
            matches!(&err, StoreError::Invalid(msg) if msg.contains("u32")),
            "{err}"
        );
        assert_eq!(get(&c, &m.digest).unwrap(), None);
    }

    #[test]
    fn a_corrupt_row_is_reported_with_its_id() {
        let mut c = db();
        let t = datetime!(2026-01-01 0:00 UTC);
        let m = manifest(2);
        put(&mut c, &encode(&m).unwrap(), t).unwrap();
        c.execute("UPDATE manifest SET report = '{not json'", [])
            .unwrap();
        let err = get(&c, &m.digest).unwrap_err();
        assert!(
            matches!(&err, StoreError::Corrupt(msg) if msg.contains("row id 1") && msg.contains("report")),
            "{err}"
        );
    }
}
