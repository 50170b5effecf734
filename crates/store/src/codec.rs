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

use crate::{NewNotificationSet, Result, StoreError};

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
