//! Error context and the conversions between Rust values and PostgreSQL columns.
//!
//! Times are BIGINT Unix nanoseconds, as in the embedded store: "due" and "older than the
//! retention" are integer comparisons, a caller's timestamp round-trips exactly (PostgreSQL's own
//! `timestamptz` keeps only microseconds), and both backends agree on the representable range.
use std::time::Duration;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tocsin_store::StoreError;

/// The result type used throughout the crate.
pub(crate) type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A PostgreSQL failure with the operation it happened in.
#[derive(Debug, thiserror::Error)]
#[error("{context}: {cause}")]
pub(crate) struct PgError {
    context: String,
    #[source]
    cause: PgCause,
}

/// What failed underneath: the driver, or the connection pool.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PgCause {
    /// A statement, transaction or connection failed.
    #[error("{}", describe(.0))]
    Sql(#[from] tokio_postgres::Error),
    /// No connection could be had from the pool.
    #[error("{0}")]
    Pool(#[from] deadpool_postgres::PoolError),
}

/// The server's message with its SQLSTATE and detail when there is one, else the driver's text.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{} (SQLSTATE {})", db.message(), db.code().code());
            if let Some(d) = db.detail() {
                s.push_str(": ");
                s.push_str(d);
            }
            s
        }
        None => match std::error::Error::source(e) {
            Some(src) => format!("{e}: {src}"),
            None => e.to_string(),
        },
    }
}

/// Adds "what we were doing" to driver and pool results.
pub(crate) trait PgContext<T> {
    /// Context known up front.
    fn ctx(self, context: &'static str) -> Result<T>;
    /// Context built only on failure (messages naming a row).
    fn with_ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: Into<PgCause>> PgContext<T> for std::result::Result<T, E> {
    fn ctx(self, context: &'static str) -> Result<T> {
        self.map_err(|e| backend(context.to_string(), e.into()))
    }

    fn with_ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| backend(context(), e.into()))
    }
}

fn backend(context: String, cause: PgCause) -> StoreError {
    StoreError::Backend(Box::new(PgError { context, cause }))
}

/// A time as stored: Unix nanoseconds.
pub(crate) fn to_nanos(t: OffsetDateTime, what: &str) -> Result<i64> {
    i64::try_from(t.unix_timestamp_nanos()).map_err(|_| {
        StoreError::Invalid(format!(
            "{what} {t} cannot be stored (times must lie between the years 1678 and 2261)"
        ))
    })
}

/// A stored time back as a UTC `OffsetDateTime`.
pub(crate) fn from_nanos(n: i64, what: impl FnOnce() -> String) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(n))
        .map_err(|e| StoreError::Corrupt(format!("{}: timestamp {n}: {e}", what())))
}

/// An optional stored time.
pub(crate) fn from_opt_nanos(
    n: Option<i64>,
    what: impl FnOnce() -> String,
) -> Result<Option<OffsetDateTime>> {
    n.map(|n| from_nanos(n, what)).transpose()
}

/// `t + d`, as stored.
pub(crate) fn add_nanos(t: i64, d: Duration, what: &str) -> Result<i64> {
    i64::try_from(d.as_nanos())
        .ok()
        .and_then(|d| t.checked_add(d))
        .ok_or_else(|| {
            StoreError::Invalid(format!("{what}: {d:?} after {t} ns is past the year 2261"))
        })
}

/// RFC 3339 text of a time (the update operation's `date`).
pub(crate) fn rfc3339(t: OffsetDateTime) -> Result<String> {
    t.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .map_err(|e| StoreError::Invalid(format!("time {t} has no RFC 3339 form: {e}")))
}

/// A row count or size as stored.
pub(crate) fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A stored count back as u64.
pub(crate) fn to_u64(n: i64, what: impl FnOnce() -> String) -> Result<u64> {
    u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("{}: negative count {n}", what())))
}

/// A stored attempt counter back as u32.
pub(crate) fn to_u32(n: i64, what: impl FnOnce() -> String) -> Result<u32> {
    u32::try_from(n).map_err(|_| StoreError::Corrupt(format!("{}: count {n} out of range", what())))
}

/// JSON decoding failure of a stored value.
pub(crate) fn corrupt_json(what: String, e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(format!(
        "{what}: stored JSON does not decode (line {}, column {}): {e}",
        e.line(),
        e.column()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn times_round_trip_to_the_nanosecond() {
        let t = datetime!(2026-08-21 12:34:56.123456789 UTC);
        let n = to_nanos(t, "t").unwrap();
        assert_eq!(from_nanos(n, || "t".into()).unwrap(), t);
    }

    #[test]
    fn out_of_range_times_are_invalid() {
        let far = datetime!(3000-01-01 0:00 UTC);
        assert!(
            matches!(to_nanos(far, "retry_at"), Err(StoreError::Invalid(m)) if m.contains("retry_at"))
        );
        assert!(add_nanos(i64::MAX - 1, Duration::from_secs(1), "lease").is_err());
        assert_eq!(add_nanos(10, Duration::from_nanos(5), "lease").unwrap(), 15);
        assert!(to_u64(-1, || "n".into()).is_err());
        assert!(to_u32(i64::from(u32::MAX) + 1, || "n".into()).is_err());
    }

    #[test]
    fn rfc3339_is_utc() {
        let t = datetime!(2026-08-21 14:00 +02:00);
        assert_eq!(rfc3339(t).unwrap(), "2026-08-21T12:00:00Z");
    }
}
