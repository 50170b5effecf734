//! Error context and the conversions between Rust values and PostgreSQL columns.
//!
//! Times are BIGINT Unix nanoseconds, as in the embedded store: "due" and "older than the
//! retention" are integer comparisons, a caller's timestamp round-trips exactly (PostgreSQL's own
//! `timestamptz` keeps only microseconds), and both backends agree on the representable range.

use tocsin_store::StoreError;

/// The result type used throughout the crate.
pub(crate) type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The backend-neutral conversions, shared with the other store.
pub(crate) use tocsin_store::codec::{
    add_nanos, corrupt_json, from_nanos, from_opt_nanos, rfc3339, to_i64, to_nanos, to_u32, to_u64,
};

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
    #[error("{}", describe_pool(.0))]
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

/// The pool's error, with the driver's cause when a new connection failed (the pool's own text
/// leaves it out: "error performing TLS handshake" without saying why).
fn describe_pool(e: &deadpool_postgres::PoolError) -> String {
    match e {
        deadpool_postgres::PoolError::Backend(e) => describe(e),
        other => other.to_string(),
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

/// `Full` for the server's "disk full" and "out of memory" classes (SQLSTATE 53100, 53200): the
/// transaction was rolled back and the call may be retried once space is back; everything else is
/// the backend failing.
fn backend(context: String, cause: PgCause) -> StoreError {
    if let PgCause::Sql(e) = &cause {
        if let Some(db) = e.as_db_error() {
            let code = db.code();
            if *code == tokio_postgres::error::SqlState::DISK_FULL
                || *code == tokio_postgres::error::SqlState::OUT_OF_MEMORY
            {
                return StoreError::Full(format!(
                    "{context}: {}; nothing was written, free some space on the database server \
                     and try again",
                    describe(e)
                ));
            }
        }
    }
    StoreError::Backend(Box::new(PgError { context, cause }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
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
