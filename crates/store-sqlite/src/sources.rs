//! Followed sources: the lease and schedule of each source tocsin fetches itself.
//!
//! A claim is one upsert (`INSERT … ON CONFLICT DO UPDATE … WHERE … RETURNING`): the row is
//! created when missing and leased only when nobody else holds an unexpired lease (and, for a
//! scheduled claim, when it is due). Finishing a run is one `UPDATE` guarded by the holder, so it
//! writes nothing once another holder took the source over.
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};
use time::OffsetDateTime;
use tocsin_store::{SourceRun, SourceState, StoreError};
use uuid::Uuid;

use crate::convert::{add_nanos, from_opt_nanos, to_nanos, to_u32, Result, SqlContext};

const COLUMNS: &str = "name, lease_until, next_run, last_attempt, last_success, last_error_at, \
                       last_error, failures, state";

type Row = (
    String,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
    i64,
    String,
);

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
    ))
}

fn to_state(r: Row) -> Result<SourceState> {
    let (name, lease_until, next_run, last_attempt, last_success, last_error_at, last_error) =
        (r.0, r.1, r.2, r.3, r.4, r.5, r.6);
    let at = |column: &'static str| {
        let name = name.clone();
        move || format!("followed source {name:?}: {column}")
    };
    Ok(SourceState {
        lease_until: from_opt_nanos(lease_until, at("lease_until"))?,
        next_run: from_opt_nanos(next_run, at("next_run"))?,
        last_attempt: from_opt_nanos(last_attempt, at("last_attempt"))?,
        last_success: from_opt_nanos(last_success, at("last_success"))?,
        last_error_at: from_opt_nanos(last_error_at, at("last_error_at"))?,
        last_error,
        failures: to_u32(r.7, at("failures"))?,
        state: r.8,
        name,
    })
}

pub(crate) fn claim(
    conn: &Connection,
    name: &str,
    holder: Uuid,
    now: OffsetDateTime,
    lease_for: Duration,
    due_only: bool,
) -> Result<Option<SourceState>> {
    let now = to_nanos(now, "claim_source: now")?;
    let until = add_nanos(now, lease_for, "claim_source: the lease's end")?;
    let claimed = conn
        .query_row(
            &format!(
                "INSERT INTO followed_source (name, lease_holder, lease_until) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE
                     SET lease_holder = excluded.lease_holder, lease_until = excluded.lease_until
                     WHERE (followed_source.lease_holder IS NULL
                            OR followed_source.lease_holder = excluded.lease_holder
                            OR followed_source.lease_until IS NULL
                            OR followed_source.lease_until <= ?4)
                       AND (NOT ?5 OR followed_source.next_run IS NULL
                            OR followed_source.next_run <= ?4)
                 RETURNING {COLUMNS}"
            ),
            params![name, holder.to_string(), until, now, due_only],
            row,
        )
        .optional()
        .with_ctx(|| format!("claiming followed source {name:?}"))?;
    claimed.map(to_state).transpose()
}

pub(crate) fn finish(conn: &Connection, name: &str, holder: Uuid, run: &SourceRun) -> Result<()> {
    let started = to_nanos(run.started, "finish_source_run: started")?;
    let next_run = to_nanos(run.next_run, "finish_source_run: next_run")?;
    let (ok, error) = match &run.outcome {
        Ok(()) => (true, None),
        Err(why) => (false, Some(why.as_str())),
    };
    let written = conn
        .execute(
            "UPDATE followed_source SET
                 last_attempt = ?3,
                 last_success = CASE WHEN ?4 THEN ?3 ELSE last_success END,
                 last_error_at = CASE WHEN ?4 THEN last_error_at ELSE ?3 END,
                 last_error = CASE WHEN ?4 THEN last_error ELSE ?5 END,
                 failures = CASE WHEN ?4 THEN 0 ELSE MIN(failures + 1, 4294967295) END,
                 next_run = ?6,
                 state = COALESCE(?7, state),
                 lease_holder = NULL,
                 lease_until = NULL
             WHERE name = ?1 AND lease_holder = ?2",
            params![
                name,
                holder.to_string(),
                started,
                ok,
                error,
                next_run,
                run.state.as_deref()
            ],
        )
        .with_ctx(|| format!("finishing a run of followed source {name:?}"))?;
    if written == 0 {
        return Err(StoreError::Conflict(format!(
            "followed source {name:?} is not leased to {holder} (another process took it over, \
             the lease was already released, or it was never claimed); the run was not recorded"
        )));
    }
    Ok(())
}

pub(crate) fn all(conn: &Connection) -> Result<Vec<SourceState>> {
    let mut st = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM followed_source ORDER BY name"
        ))
        .ctx("sources: prepare")?;
    let rows = st
        .query_map([], row)
        .ctx("sources: query")?
        .collect::<rusqlite::Result<Vec<_>>>()
        .ctx("sources: reading rows")?;
    rows.into_iter().map(to_state).collect()
}
