//! Manifests: one row per digest, with an AUTOINCREMENT id that is never reused (the matching
//! index keys roaring bitmaps by it, so a reused id would silently attach old postings to a new
//! image).
//!
//! Every put that creates or replaces a manifest, and every delete, also rewrites that id's row in
//! `manifest_change` inside the same transaction, so the change feed can never miss or invent a
//! change. The feed row is deleted and inserted again rather than updated: its `seq` is an
//! AUTOINCREMENT rowid, which is how SQLite hands out a number larger than any ever used, even
//! after rows were removed, and the single writer makes that order the commit order.
//!
//! Storage of the inventory itself (schema version 4):
//! - the IndexReport is stored zlib-compressed (level 1): report JSON repeats its keys for every
//!   package and compresses about tenfold, which at a million manifests is the difference
//!   between a database of 100 GB and one of 10. Rows written before version 4 hold the JSON as
//!   text and are read as such;
//! - the installed packages are stored a second time, in `manifest_packages`, in the compact
//!   form the reverse index is rebuilt from (`tocsin_store::codec::encode_packages`). A table of
//!   its own, because SQLite reads a row's columns in order through its overflow pages: a column
//!   behind the report would cost reading the report. Manifests stored before version 4 have no
//!   row there, and their packages are taken from the report.
use std::io::{Read as _, Write as _};

use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use time::OffsetDateTime;
use tocsin_model::inventory::Manifest;
use tocsin_model::Digest;
use tocsin_store::codec::{decode_index_entry, decode_manifest, encode_manifest, EncodedManifest};
use tocsin_store::{
    BulkItem, BulkOutcome, IndexEntry, ManifestChange, ManifestId, ManifestSummary, PutOutcome,
    StoreError,
};

use crate::convert::{corrupt_json, from_nanos, to_i64, to_nanos, to_u64, Result, SqlContext};

/// A manifest encoded for storage (done before taking the write lock).
pub(crate) struct Encoded {
    m: EncodedManifest,
    report: Vec<u8>,
}

pub(crate) fn encode(m: &Manifest) -> Result<Encoded> {
    let m = encode_manifest(m)?;
    let mut z = flate2::write::ZlibEncoder::new(
        Vec::with_capacity(m.report.len() / 6),
        flate2::Compression::fast(),
    );
    z.write_all(m.report.as_bytes())
        .and_then(|()| z.finish())
        .map(|report| Encoded { m, report })
        .map_err(|e| StoreError::Invalid(format!("compressing a report: {e}")))
}

/// The report JSON of a stored row: zlib-compressed bytes, or text from before schema 4.
fn report_json(v: ValueRef<'_>, what: &dyn Fn() -> String) -> Result<String> {
    match v {
        ValueRef::Text(t) => String::from_utf8(t.to_vec())
            .map_err(|e| StoreError::Corrupt(format!("{}: report: {e}", what()))),
        ValueRef::Blob(b) => {
            let mut out = String::with_capacity(b.len() * 8);
            flate2::read::ZlibDecoder::new(b)
                .read_to_string(&mut out)
                .map_err(|e| StoreError::Corrupt(format!("{}: report: {e}", what())))?;
            Ok(out)
        }
        _ => Err(StoreError::Corrupt(format!(
            "{}: report is neither text nor bytes",
            what()
        ))),
    }
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
    let out = put_in(&tx, m, now)?;
    if out.1 != PutOutcome::Unchanged {
        tx.commit().ctx("put_manifest: commit")?;
    }
    Ok(out)
}

/// Stores a stream of manifests in one transaction (see `Store::put_manifests`).
pub(crate) fn put_stream(
    conn: &mut Connection,
    items: &mut tokio::sync::mpsc::Receiver<BulkItem>,
    now: OffsetDateTime,
) -> Result<BulkOutcome> {
    let now = to_nanos(now, "put_manifests time")?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .ctx("put_manifests: begin")?;
    let mut outcome = BulkOutcome::default();
    loop {
        match items.blocking_recv() {
            Some(BulkItem::Manifest(m)) => {
                let (_, o) = put_in(&tx, &encode(&m)?, now)?;
                outcome.count(o);
            }
            Some(BulkItem::Commit) => {
                tx.commit().ctx("put_manifests: commit")?;
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

/// One put inside the caller's write transaction; writes nothing for identical content.
fn put_in(tx: &Transaction<'_>, e: &Encoded, now: i64) -> Result<(ManifestId, PutOutcome)> {
    let m = &e.m;
    let existing: Option<(i64, String)> = tx
        .prepare_cached("SELECT id, content_hash FROM manifest WHERE digest = ?1")
        .and_then(|mut st| {
            st.query_row([&m.digest], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .ctx("put_manifest: looking up the digest")?;
    let (id, outcome) = match existing {
        Some((id, hash)) if hash == m.content_hash => (id, PutOutcome::Unchanged),
        Some((id, _)) => {
            tx.prepare_cached(
                "UPDATE manifest SET format = ?1, labels = ?2, report = ?3, content_hash = ?4,
                        packages = ?5, updated_at = ?6
                 WHERE id = ?7",
            )
            .and_then(|mut st| {
                st.execute(params![
                    m.format,
                    m.labels,
                    e.report,
                    m.content_hash,
                    m.packages,
                    now,
                    id
                ])
            })
            .ctx("put_manifest: replacing")?;
            (id, PutOutcome::Replaced)
        }
        None => {
            tx.prepare_cached(
                "INSERT INTO manifest
                     (digest, format, labels, report, content_hash, packages, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    m.digest,
                    m.format,
                    m.labels,
                    e.report,
                    m.content_hash,
                    m.packages,
                    now
                ])
            })
            .ctx("put_manifest: inserting")?;
            (tx.last_insert_rowid(), PutOutcome::Created)
        }
    };
    let id = ManifestId::try_from(id).map_err(|_| {
        // The caller's `tx` is dropped on this error, rolling the insert back, so the store stays
        // usable for existing manifests.
        StoreError::Invalid(format!(
            "manifest {}: id {id} exceeds the manifest id space (u32)",
            m.digest
        ))
    })?;
    if outcome != PutOutcome::Unchanged {
        tx.prepare_cached(
            "INSERT OR REPLACE INTO manifest_packages (id, packages) VALUES (?1, ?2)",
        )
        .and_then(|mut st| st.execute(params![id, m.index]))
        .with_ctx(|| format!("put_manifest: storing the packages of {}", m.digest))?;
        record_change(tx, id, &m.digest, false)?;
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
    report: ValueRef<'_>,
) -> Result<(ManifestId, Manifest)> {
    let what = || format!("manifest row id {id} ({digest})");
    decode_manifest(id, digest, format, labels, &report_json(report, &what)?)
}

pub(crate) fn get(conn: &Connection, digest: &Digest) -> Result<Option<Manifest>> {
    let mut st = conn
        .prepare_cached("SELECT id, format, labels, report FROM manifest WHERE digest = ?1")
        .ctx("get_manifest: prepare")?;
    let mut rows = st
        .query([digest.as_str()])
        .with_ctx(|| format!("get_manifest {digest}"))?;
    let Some(r) = rows.next().with_ctx(|| format!("get_manifest {digest}"))? else {
        return Ok(None);
    };
    let read =
        || -> rusqlite::Result<(i64, String, String)> { Ok((r.get(0)?, r.get(1)?, r.get(2)?)) };
    let (id, format, labels) = read().with_ctx(|| format!("get_manifest {digest}"))?;
    let report = r.get_ref(3).with_ctx(|| format!("get_manifest {digest}"))?;
    decode(id, digest.as_str(), &format, &labels, report).map(|(_, m)| Some(m))
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

/// Index entries of manifests with `id > after` (all of them when `ids` is `None`, else only
/// those listed), in id order, at most `limit`.
fn entries(conn: &Connection, sql: &str, bind: &[&dyn rusqlite::ToSql]) -> Result<Vec<IndexEntry>> {
    let mut st = conn.prepare_cached(sql).ctx("index entries: prepare")?;
    let mut rows = st.query(bind).ctx("index entries: query")?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().ctx("index entries: reading rows")? {
        let id: i64 = r.get(0).ctx("index entries: id")?;
        let digest: String = r.get(1).ctx("index entries: digest")?;
        let packages = match r.get_ref(2).ctx("index entries: packages")? {
            ValueRef::Blob(b) => Some(b),
            _ => None,
        };
        let what = || format!("manifest row id {id} ({digest})");
        out.push(decode_index_entry(id, &digest, packages, || {
            report_json(r.get_ref(3).ctx("index entries: report")?, &what).map(Some)
        })?);
    }
    Ok(out)
}

// The CASE reads the report only for rows without stored packages: SQLite evaluates it lazily.
const ENTRY_COLUMNS: &str = "m.id, m.digest, p.packages, \
     CASE WHEN p.packages IS NULL THEN m.report END \
     FROM manifest m LEFT JOIN manifest_packages p ON p.id = m.id";

pub(crate) fn entries_after(
    conn: &Connection,
    after: Option<ManifestId>,
    limit: usize,
) -> Result<Vec<IndexEntry>> {
    let sql = format!("SELECT {ENTRY_COLUMNS} WHERE m.id > ?1 ORDER BY m.id LIMIT ?2");
    entries(conn, &sql, &[&after.map_or(0, i64::from), &to_i64(limit)])
}

/// Ids per statement of an `IN (…)` list (far below SQLite's variable limit).
const IN_CHUNK: usize = 500;

fn in_list(n: usize) -> String {
    let mut s = String::with_capacity(n * 3);
    for i in 0..n {
        if i > 0 {
            s.push(',');
        }
        s.push('?');
    }
    s
}

pub(crate) fn entries_of(conn: &Connection, ids: &[ManifestId]) -> Result<Vec<IndexEntry>> {
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = Vec::with_capacity(sorted.len());
    for chunk in sorted.chunks(IN_CHUNK) {
        let sql = format!(
            "SELECT {ENTRY_COLUMNS} WHERE m.id IN ({}) ORDER BY m.id",
            in_list(chunk.len())
        );
        let bind: Vec<&dyn rusqlite::ToSql> =
            chunk.iter().map(|i| i as &dyn rusqlite::ToSql).collect();
        out.extend(entries(conn, &sql, &bind)?);
    }
    Ok(out)
}

pub(crate) fn labels_of(
    conn: &Connection,
    ids: &[ManifestId],
    label: &str,
) -> Result<std::collections::HashMap<ManifestId, String>> {
    let mut out = std::collections::HashMap::new();
    for chunk in ids.chunks(IN_CHUNK) {
        let sql = format!(
            "SELECT id, labels FROM manifest WHERE id IN ({})",
            in_list(chunk.len())
        );
        let mut st = conn.prepare_cached(&sql).ctx("manifest labels: prepare")?;
        let bind: Vec<&dyn rusqlite::ToSql> =
            chunk.iter().map(|i| i as &dyn rusqlite::ToSql).collect();
        let rows = st
            .query_map(bind.as_slice(), |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })
            .ctx("manifest labels: query")?;
        for row in rows {
            let (id, labels) = row.ctx("manifest labels: reading rows")?;
            let what = || format!("manifest row id {id}: labels");
            let mut labels: std::collections::BTreeMap<String, String> =
                serde_json::from_str(&labels).map_err(|e| corrupt_json(what(), e))?;
            let id = ManifestId::try_from(id)
                .map_err(|_| StoreError::Corrupt(format!("manifest row id {id} out of range")))?;
            if let Some(v) = labels.remove(label) {
                out.insert(id, v);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;
    use tocsin_model::inventory::InventoryFormat;

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
