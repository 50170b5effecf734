//! Followed sources: the lease and schedule of each source tocsin fetches itself, shared by every
//! process on the database.
//!
//! A claim is one statement, `INSERT … ON CONFLICT (name) DO UPDATE … WHERE … RETURNING`: the
//! row is created when missing, and otherwise updated only when nobody else holds an unexpired
//! lease (and, for a scheduled claim, when it is due). PostgreSQL evaluates the `WHERE` on the
//! newest committed version of the row under its row lock (a concurrent insert of the same name
//! is waited for), so of several processes claiming at once exactly one gets a free source.
//! Finishing a run is one `UPDATE` guarded by the holder, so it writes nothing once another
//! holder took the source over.
use std::time::Duration;

use deadpool_postgres::Client;
use time::OffsetDateTime;
use tocsin_store::{SourceRun, SourceState, StoreError};
use uuid::Uuid;

use crate::convert::{add_nanos, from_opt_nanos, to_nanos, to_u32, PgContext, Result};

const COLUMNS: &str = "name, lease_until, next_run, last_attempt, last_success, last_error_at, \
                       last_error, failures, state";

fn to_state(r: &tokio_postgres::Row) -> Result<SourceState> {
    let name: String = r.get(0);
    let at = |column: &'static str| {
        let name = name.clone();
        move || format!("followed source {name:?}: {column}")
    };
    Ok(SourceState {
        lease_until: from_opt_nanos(r.get(1), at("lease_until"))?,
        next_run: from_opt_nanos(r.get(2), at("next_run"))?,
        last_attempt: from_opt_nanos(r.get(3), at("last_attempt"))?,
        last_success: from_opt_nanos(r.get(4), at("last_success"))?,
        last_error_at: from_opt_nanos(r.get(5), at("last_error_at"))?,
        last_error: r.get(6),
        failures: to_u32(r.get(7), at("failures"))?,
        state: r.get(8),
        name,
    })
}

pub(crate) async fn claim(
    c: &Client,
    name: &str,
    holder: Uuid,
    now: OffsetDateTime,
    lease_for: Duration,
    due_only: bool,
) -> Result<Option<SourceState>> {
    let now = to_nanos(now, "claim_source: now")?;
    let until = add_nanos(now, lease_for, "claim_source: the lease's end")?;
    let st = c
        .prepare_cached(&format!(
            "INSERT INTO followed_source (name, lease_holder, lease_until) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE
                 SET lease_holder = EXCLUDED.lease_holder, lease_until = EXCLUDED.lease_until
                 WHERE (followed_source.lease_holder IS NULL
                        OR followed_source.lease_holder = EXCLUDED.lease_holder
                        OR followed_source.lease_until IS NULL
                        OR followed_source.lease_until <= $4)
                   AND (NOT $5 OR followed_source.next_run IS NULL
                        OR followed_source.next_run <= $4)
             RETURNING {COLUMNS}"
        ))
        .await
        .ctx("claim_source: prepare")?;
    let row = c
        .query_opt(&st, &[&name, &holder, &until, &now, &due_only])
        .await
        .with_ctx(|| format!("claiming followed source {name:?}"))?;
    row.as_ref().map(to_state).transpose()
}

pub(crate) async fn finish(c: &Client, name: &str, holder: Uuid, run: &SourceRun) -> Result<()> {
    let started = to_nanos(run.started, "finish_source_run: started")?;
    let next_run = to_nanos(run.next_run, "finish_source_run: next_run")?;
    let (ok, error) = match &run.outcome {
        Ok(()) => (true, None),
        Err(why) => (false, Some(why.as_str())),
    };
    let st = c
        .prepare_cached(
            "UPDATE followed_source SET
                 last_attempt = $3,
                 last_success = CASE WHEN $4 THEN $3 ELSE last_success END,
                 last_error_at = CASE WHEN $4 THEN last_error_at ELSE $3 END,
                 last_error = CASE WHEN $4 THEN last_error ELSE $5 END,
                 failures = CASE WHEN $4 THEN 0 ELSE LEAST(failures + 1, 4294967295) END,
                 next_run = $6,
                 state = COALESCE($7, state),
                 lease_holder = NULL,
                 lease_until = NULL
             WHERE name = $1 AND lease_holder = $2",
        )
        .await
        .ctx("finish_source_run: prepare")?;
    let written = c
        .execute(
            &st,
            &[
                &name,
                &holder,
                &started,
                &ok,
                &error,
                &next_run,
                &run.state.as_deref(),
            ],
        )
        .await
        .with_ctx(|| format!("finishing a run of followed source {name:?}"))?;
    if written == 0 {
        return Err(StoreError::Conflict(format!(
            "followed source {name:?} is not leased to {holder} (another process took it over, \
             the lease was already released, or it was never claimed); the run was not recorded"
        )));
    }
    Ok(())
}

pub(crate) async fn all(c: &Client) -> Result<Vec<SourceState>> {
    let rows = c
        .query(
            &format!("SELECT {COLUMNS} FROM followed_source ORDER BY name"),
            &[],
        )
        .await
        .ctx("sources")?;
    rows.iter().map(to_state).collect()
}
