//! Conversions every storage backend shares, so each implementation states only its SQL.
//!
//! Times are stored as Unix nanoseconds (comparisons such as "due" or "older than the
//! retention" become integer comparisons in SQL, and a caller's timestamp round-trips exactly);
//! counts as signed 64-bit integers; JSON bodies that fail to decode are [`StoreError::Corrupt`].
use std::collections::BTreeSet;
use std::time::Duration;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

use tocsin_model::inventory::{installed_packages, InventoryFormat, Manifest};
use tocsin_model::Digest;

use crate::{
    IndexEntry, ManifestId, NewLegacyNotifications, NewNotificationSet, ProcessedUpdate, Result,
    StoreError,
};

mod changes;
mod packages;
mod snapshot;
pub mod status;
pub mod wire;

pub use changes::{decode_change_set, encode_change_set};
pub use packages::{decode_packages, encode_packages, PackageBlob};
pub use snapshot::{encode_snapshot, split_snapshot, EncodedSnapshot, PendingSnapshot};

/// A time as stored: Unix nanoseconds.
pub fn to_nanos(t: OffsetDateTime, what: &str) -> Result<i64> {
    i64::try_from(t.unix_timestamp_nanos()).map_err(|_| {
        StoreError::Invalid(format!(
            "{what} {t} cannot be stored (times must lie between the years 1678 and 2261)"
        ))
    })
}

/// A stored time back as a UTC `OffsetDateTime`.
pub fn from_nanos(n: i64, what: impl FnOnce() -> String) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(n))
        .map_err(|e| StoreError::Corrupt(format!("{}: timestamp {n}: {e}", what())))
}

/// An optional stored time.
pub fn from_opt_nanos(
    n: Option<i64>,
    what: impl FnOnce() -> String,
) -> Result<Option<OffsetDateTime>> {
    n.map(|n| from_nanos(n, what)).transpose()
}

/// `t + d`, as stored.
pub fn add_nanos(t: i64, d: Duration, what: &str) -> Result<i64> {
    i64::try_from(d.as_nanos())
        .ok()
        .and_then(|d| t.checked_add(d))
        .ok_or_else(|| {
            StoreError::Invalid(format!("{what}: {d:?} after {t} ns is past the year 2261"))
        })
}

/// RFC 3339 text of a time (the update operation's `date`).
pub fn rfc3339(t: OffsetDateTime) -> Result<String> {
    t.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .map_err(|e| StoreError::Invalid(format!("time {t} has no RFC 3339 form: {e}")))
}

/// A stored UUID.
pub fn parse_uuid(s: &str, what: impl FnOnce() -> String) -> Result<Uuid> {
    Uuid::parse_str(s)
        .map_err(|e| StoreError::Corrupt(format!("{}: {s:?} is not a UUID: {e}", what())))
}

/// A row count or size as stored.
pub fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A stored count back as u64.
pub fn to_u64(n: i64, what: impl FnOnce() -> String) -> Result<u64> {
    u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("{}: negative count {n}", what())))
}

/// A stored attempt counter back as u32.
pub fn to_u32(n: i64, what: impl FnOnce() -> String) -> Result<u32> {
    u32::try_from(n).map_err(|_| StoreError::Corrupt(format!("{}: count {n} out of range", what())))
}

/// JSON decoding failure of a stored value.
pub fn corrupt_json(what: String, e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(format!(
        "{what}: stored JSON does not decode (line {}, column {}): {e}",
        e.line(),
        e.column()
    ))
}

/// A notification set encoded for storage.
pub struct EncodedSet {
    /// The set id.
    pub id: Uuid,
    /// The updater.
    pub updater: String,
    /// The update operation.
    pub operation: Option<Uuid>,
    /// Each entry as JSON, in page order.
    pub entries: Vec<String>,
    /// Channels to deliver on.
    pub channels: Vec<String>,
    /// Creation time, Unix nanoseconds.
    pub created_at: i64,
}

/// Validates a new set (channel names non-empty and distinct) and encodes its entries, before
/// any connection or lock is taken.
pub fn encode_set(s: &NewNotificationSet) -> Result<EncodedSet> {
    let mut seen = BTreeSet::new();
    for c in &s.channels {
        if c.is_empty() {
            return Err(StoreError::Invalid(format!(
                "notification set {}: a channel name is empty",
                s.id
            )));
        }
        if !seen.insert(c.as_str()) {
            return Err(StoreError::Invalid(format!(
                "notification set {}: channel {c:?} is listed twice",
                s.id
            )));
        }
    }
    let entries = s
        .entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            serde_json::to_string(e).map_err(|err| {
                StoreError::Invalid(format!("notification set {}: entry #{i}: {err}", s.id))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(EncodedSet {
        id: s.id,
        updater: s.updater.clone(),
        operation: s.operation,
        entries,
        channels: s.channels.clone(),
        created_at: to_nanos(s.created_at, "notification set created_at")?,
    })
}

/// A manifest encoded for storage, before any connection or lock is taken.
pub struct EncodedManifest {
    /// Digest.
    pub digest: String,
    /// Inventory format name.
    pub format: &'static str,
    /// Labels as JSON.
    pub labels: String,
    /// The IndexReport as JSON.
    pub report: String,
    /// Content fingerprint (format, labels, report), as [`Manifest::content_hash`] computes it.
    pub content_hash: String,
    /// Number of packages in the report.
    pub packages: i64,
    /// The installed packages in the binary form the index is rebuilt from
    /// ([`encode_packages`]).
    pub index: Vec<u8>,
}

/// Encodes a manifest: each part is serialised once, and the content hash is taken over those
/// bytes (the same bytes [`Manifest::content_hash`] hashes, without encoding the report again).
pub fn encode_manifest(m: &Manifest) -> Result<EncodedManifest> {
    let what = || format!("manifest {}", m.digest);
    let format = m.format.as_str();
    let labels = serde_json::to_string(&m.labels)
        .map_err(|e| StoreError::Invalid(format!("{}: labels: {e}", what())))?;
    let report = serde_json::to_string(&m.report)
        .map_err(|e| StoreError::Invalid(format!("{}: report: {e}", what())))?;
    let content_hash = tocsin_model::inventory::content_hash_of(format, &labels, &report);
    Ok(EncodedManifest {
        digest: m.digest.as_str().to_string(),
        format,
        labels,
        content_hash,
        packages: to_i64(m.report.packages.len()),
        index: encode_packages(&installed_packages(&m.report)),
        report,
    })
}

/// v2/v3 notifications encoded for storage, as parallel columns.
pub struct EncodedLegacy {
    /// Notification names.
    pub names: Vec<Uuid>,
    /// Their change positions.
    pub changes: Vec<i64>,
    /// Layer digests.
    pub digests: Vec<String>,
    /// Layer indexes.
    pub indexes: Vec<i64>,
    /// Layer display names.
    pub labels: Vec<String>,
    /// Creation time, Unix nanoseconds.
    pub created_at: i64,
}

/// Checks v2/v3 notifications against the change set they point into (`changes` changes), then
/// encodes them. A change position past the end, or a name or digest listed twice, is a caller
/// bug that would otherwise be stored forever.
pub fn encode_legacy(
    l: &NewLegacyNotifications,
    op: Uuid,
    changes: usize,
) -> Result<EncodedLegacy> {
    let mut names = std::collections::HashSet::new();
    let mut positions = std::collections::HashSet::new();
    let mut out = EncodedLegacy {
        names: Vec::with_capacity(l.notifications.len()),
        changes: Vec::with_capacity(l.notifications.len()),
        digests: Vec::with_capacity(l.layers.len()),
        indexes: Vec::with_capacity(l.layers.len()),
        labels: Vec::with_capacity(l.layers.len()),
        created_at: to_nanos(l.created_at, "v2/v3 notifications created_at")?,
    };
    for n in &l.notifications {
        if usize::try_from(n.change).map_or(true, |c| c >= changes) {
            return Err(StoreError::Invalid(format!(
                "v2/v3 notification {} of operation {op} points at change {} but the change set \
                 has {changes}",
                n.name, n.change
            )));
        }
        if !names.insert(n.name) || !positions.insert(n.change) {
            return Err(StoreError::Invalid(format!(
                "v2/v3 notification {} (change {}) of operation {op} is listed twice",
                n.name, n.change
            )));
        }
        out.names.push(n.name);
        out.changes.push(i64::from(n.change));
    }
    let mut digests = std::collections::HashSet::new();
    for layer in &l.layers {
        if !digests.insert(&layer.digest) {
            return Err(StoreError::Invalid(format!(
                "v2/v3 layer {} of operation {op} is listed twice",
                layer.digest
            )));
        }
        out.digests.push(layer.digest.to_string());
        out.indexes.push(i64::from(layer.index));
        out.labels.push(layer.name.clone());
    }
    Ok(out)
}

/// A processed update encoded for storage.
pub struct EncodedProcessed {
    /// The updater.
    pub updater: String,
    /// The processed mark the caller read.
    pub prev: Option<Uuid>,
    /// The operation now processed.
    pub cur: Uuid,
    /// The change set ([`encode_change_set`]).
    pub change_set: Vec<u8>,
    /// The notification set.
    pub set: Option<EncodedSet>,
    /// The v2/v3 notifications.
    pub legacy: Option<EncodedLegacy>,
}

/// Checks that the parts of a [`ProcessedUpdate`] describe one step of one updater, then encodes
/// it. A mismatch is a caller bug that would otherwise be stored forever.
pub fn encode_processed(p: &ProcessedUpdate) -> Result<EncodedProcessed> {
    let cs = &p.change_set;
    if cs.updater != p.updater || cs.cur != p.cur || cs.prev != p.prev {
        return Err(StoreError::Invalid(format!(
            "commit_processed for updater {:?} ({:?} -> {}): the change set is for updater {:?} \
             ({:?} -> {})",
            p.updater, p.prev, p.cur, cs.updater, cs.prev, cs.cur
        )));
    }
    if let Some(s) = &p.notifications {
        if s.updater != p.updater || s.operation != Some(p.cur) {
            return Err(StoreError::Invalid(format!(
                "commit_processed for updater {:?}, operation {}: notification set {} names \
                 updater {:?}, operation {:?}",
                p.updater, p.cur, s.id, s.updater, s.operation
            )));
        }
    }
    Ok(EncodedProcessed {
        updater: p.updater.clone(),
        prev: p.prev,
        cur: p.cur,
        change_set: encode_change_set(cs)?,
        set: p.notifications.as_ref().map(encode_set).transpose()?,
        legacy: p
            .legacy
            .as_ref()
            .map(|l| encode_legacy(l, p.cur, cs.changes.len()))
            .transpose()?,
    })
}

/// A stored manifest row back as a manifest: `report` is its IndexReport JSON.
pub fn decode_manifest(
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

/// A stored manifest's index entry: from its stored packages ([`encode_packages`]), or, for a
/// manifest stored before those were kept, from its report JSON (`report` is read only then).
pub fn decode_index_entry(
    id: i64,
    digest: &str,
    packages: Option<&[u8]>,
    report: impl FnOnce() -> Result<Option<String>>,
) -> Result<IndexEntry> {
    let what = || format!("manifest row id {id} ({digest})");
    let id = ManifestId::try_from(id)
        .map_err(|_| StoreError::Corrupt(format!("{}: id out of range", what())))?;
    let parsed = Digest::parse(digest)
        .map_err(|e| StoreError::Corrupt(format!("{}: digest: {e}", what())))?;
    let packages = match packages {
        Some(b) => PackageBlob::new(b.to_vec(), &format!("{}: packages", what()))?,
        None => {
            let report = report()?.ok_or_else(|| {
                StoreError::Corrupt(format!("{}: neither packages nor a report", what()))
            })?;
            let report = serde_json::from_str(&report)
                .map_err(|e| corrupt_json(format!("{}: report", what()), e))?;
            PackageBlob::of(&installed_packages(&report))
        }
    };
    Ok(IndexEntry {
        id,
        digest: parsed,
        packages,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LegacyLayer, NewLegacyNotification};

    fn layer(n: u8) -> LegacyLayer {
        LegacyLayer {
            digest: Digest::parse(&format!("sha256:{}", format!("{n:02x}").repeat(32)))
                .expect("test digest"),
            index: u32::from(n),
            name: format!("app:{n}"),
        }
    }

    fn new(changes: &[u32], layers: Vec<LegacyLayer>) -> NewLegacyNotifications {
        NewLegacyNotifications {
            notifications: changes
                .iter()
                .map(|&c| NewLegacyNotification {
                    name: Uuid::from_u128(100 + u128::from(c)),
                    change: c,
                })
                .collect(),
            layers,
            created_at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn encode_checks_positions_and_duplicates() {
        let op = Uuid::from_u128(1);
        let ok = encode_legacy(&new(&[0, 2], vec![layer(1), layer(2)]), op, 3).expect("valid");
        assert_eq!(ok.changes, vec![0, 2]);
        assert_eq!(ok.indexes, vec![1, 2]);
        assert!(matches!(
            encode_legacy(&new(&[0, 3], vec![]), op, 3),
            Err(StoreError::Invalid(m)) if m.contains("change 3")
        ));
        assert!(matches!(
            encode_legacy(&new(&[1, 1], vec![]), op, 3),
            Err(StoreError::Invalid(m)) if m.contains("twice")
        ));
        assert!(matches!(
            encode_legacy(&new(&[0], vec![layer(1), layer(1)]), op, 3),
            Err(StoreError::Invalid(m)) if m.contains("layer")
        ));
    }
}
