//! Error context and the conversions between Rust values and SQLite columns.
//!
//! Times are stored as INTEGER Unix nanoseconds: comparisons such as "due" and "older than the
//! retention" are then plain integer comparisons in SQL, and a caller's timestamp round-trips
//! exactly. Ids are stored as hyphenated lower-case text so the database stays readable with the
//! `sqlite3` shell.
use tocsin_store::StoreError;

/// The result type used throughout the crate.
pub(crate) type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The backend-neutral conversions, shared with the other store.
pub(crate) use tocsin_store::codec::{
    add_nanos, corrupt_json, from_nanos, from_opt_nanos, parse_uuid, rfc3339, to_i64, to_nanos,
    to_u32, to_u64,
};

/// A SQLite failure with the operation it happened in.
#[derive(Debug, thiserror::Error)]
#[error("{context}: {cause}")]
pub(crate) struct SqlError {
    context: String,
    cause: rusqlite::Error,
}

/// Maps a SQLite failure: value decoding problems mean the stored data is not what this build
/// wrote (`Corrupt`); a full disk (`Full`) and a lock held by another process past the busy
/// timeout (`Busy`) are the storage's state, and the call may be retried as is; everything else is
/// the backend failing (`Backend`). SQLite rolls the statement's transaction back in the first
/// two cases, so nothing of the call is written.
fn map(context: String, cause: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    match cause {
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::IntegralValueOutOfRange(..) => {
            StoreError::Corrupt(format!("{context}: {cause}"))
        }
        rusqlite::Error::SqliteFailure(e, _) if e.code == ErrorCode::DiskFull => {
            StoreError::Full(format!(
                "{context}: the filesystem holding the database is full ({cause}); \
                 nothing was written, free some space and try again"
            ))
        }
        rusqlite::Error::SqliteFailure(e, _)
            if matches!(e.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) =>
        {
            StoreError::Busy(format!(
                "{context}: the database is locked by another process or connection \
                 (waited {} s; {cause}); nothing was written, try again",
                crate::schema::BUSY_TIMEOUT.as_secs()
            ))
        }
        cause => StoreError::Backend(Box::new(SqlError { context, cause })),
    }
}

/// Adds "what we were doing" to rusqlite results.
pub(crate) trait SqlContext<T> {
    /// Context known up front.
    fn ctx(self, context: &'static str) -> Result<T>;
    /// Context built only on failure (for hot loops and messages naming a row).
    fn with_ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> SqlContext<T> for rusqlite::Result<T> {
    fn ctx(self, context: &'static str) -> Result<T> {
        self.map_err(|e| map(context.to_string(), e))
    }

    fn with_ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| map(context(), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use time::macros::datetime;

    #[test]
    fn times_round_trip_exactly() {
        let t = datetime!(2026-08-21 12:34:56.123456789 UTC);
        let n = to_nanos(t, "t").unwrap();
        assert_eq!(from_nanos(n, || "t".into()).unwrap(), t);
    }

    #[test]
    fn out_of_range_times_are_invalid_not_truncated() {
        let far = datetime!(3000-01-01 0:00 UTC);
        assert!(
            matches!(to_nanos(far, "retry_at"), Err(StoreError::Invalid(m)) if m.contains("retry_at"))
        );
        assert!(add_nanos(i64::MAX - 1, Duration::from_secs(1), "lease").is_err());
        assert_eq!(add_nanos(10, Duration::from_nanos(5), "lease").unwrap(), 15);
    }

    #[test]
    fn rfc3339_is_utc() {
        let t = datetime!(2026-08-21 14:00 +02:00);
        assert_eq!(rfc3339(t).unwrap(), "2026-08-21T12:00:00Z");
    }

    #[test]
    fn decoding_errors_are_corrupt_and_sql_errors_backend() {
        let conv = rusqlite::Error::InvalidColumnType(0, "x".into(), rusqlite::types::Type::Blob);
        assert!(matches!(
            Err::<(), _>(conv).ctx("reading x"),
            Err(StoreError::Corrupt(m)) if m.starts_with("reading x")
        ));
        let sql = rusqlite::Error::InvalidQuery;
        let err = Err::<(), _>(sql).ctx("listing y").unwrap_err();
        assert!(matches!(err, StoreError::Backend(_)));
        assert!(err.to_string().contains("listing y"));
        assert!(parse_uuid("nope", || "set".into()).is_err());
    }
}
