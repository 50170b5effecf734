//! The outbox worker: claims due deliveries of one channel, delivers them, records every attempt.
//!
//! One worker runs per channel. A pass ([`deliver_due`]) leases up to `batch` due receipts, so
//! that another worker (another process on the same database) cannot deliver the same set at the
//! same time; delivers them with at most `concurrency` in flight; and records each attempt with
//! its outcome: delivered, delivered-and-deleted, or failed with the time of the next attempt
//! (from the [`RetryPolicy`]) and whether the failure is final (dead letter: a permanent failure,
//! or a set older than `dead_letter_after`).
//!
//! Direct-mode channels get the set's entries, paged out of the store into a vector owned by that
//! one delivery; nothing is shared between concurrent deliveries (Clair shares one buffer between
//! workers and so sends one set twice and another never).
//!
//! Failure handling follows from the outbox being the durable state: any pass can be repeated.
//! - A lost lease ([`StoreError::Conflict`] from `record_attempt`) means the lease expired and
//!   another worker took the set over; it is logged and the attempt is left to that worker.
//! - Any other store error ends the pass with an error; [`run`] logs it, pauses, and tries again.
//!   A delivery whose attempt could not be recorded is repeated once its lease expires
//!   (at-least-once), so the lease should comfortably exceed the channel's timeout.
//!
//! Metrics (the `metrics` facade; the service installs the exporter):
//! - counter `tocsin_delivery_attempts_total{channel, outcome}`, outcome one of `delivered`,
//!   `delivered_and_deleted`, `failed`, `dead_letter`;
//! - histogram `tocsin_delivery_seconds{channel}`: the duration of each delivery call.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use time::OffsetDateTime;
use tocsin_model::notification::{Notification, ReceiptStatus};
use tocsin_store::{Attempt, AttemptOutcome, DeliveryTask, Store, StoreError};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};
use uuid::Uuid;

use crate::retry::RetryPolicy;
use crate::{DeliverError, Deliverer, DeliveryResult, SetToDeliver};

/// Metric: delivery attempts by channel and outcome.
pub const METRIC_ATTEMPTS: &str = "tocsin_delivery_attempts_total";
/// Metric: duration of delivery calls by channel, in seconds.
pub const METRIC_SECONDS: &str = "tocsin_delivery_seconds";

/// How a worker paces itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerOptions {
    /// Receipts claimed per pass.
    pub batch: usize,
    /// How long a claim holds; must exceed the time a delivery can take.
    pub lease: Duration,
    /// Sleep between passes when there is nothing more to do (a wake-up cuts it short).
    pub poll_interval: Duration,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// Entries per store page when loading a set for a direct-mode channel.
    pub page_size: usize,
    /// Pause after a store error before the next pass.
    pub error_pause: Duration,
}

impl Default for WorkerOptions {
    /// 32 per pass, 4 in flight, 5 min leases, a pass every 5 s (retries are due at arbitrary
    /// times; new sets wake the worker at once), pages of 1000 entries, 5 s after a store error.
    fn default() -> Self {
        WorkerOptions {
            batch: 32,
            lease: Duration::from_secs(300),
            poll_interval: Duration::from_secs(5),
            concurrency: 4,
            page_size: 1000,
            error_pause: Duration::from_secs(5),
        }
    }
}

impl WorkerOptions {
    /// Checks that the numbers make sense.
    pub fn validate(&self) -> Result<(), DeliverError> {
        let bad = |field: &str, message: &str| {
            Err(DeliverError::Config {
                channel: "delivery",
                field: format!("worker.{field}"),
                message: message.to_owned(),
            })
        };
        if self.batch == 0 {
            return bad("batch", "must be at least 1");
        }
        if self.concurrency == 0 {
            return bad("concurrency", "must be at least 1");
        }
        if self.page_size == 0 {
            return bad("page_size", "must be at least 1");
        }
        if self.lease.is_zero() {
            return bad("lease", "must be positive");
        }
        if self.poll_interval.is_zero() {
            return bad("poll_interval", "must be positive");
        }
        Ok(())
    }
}

/// Runs the worker of `deliverer`'s channel until `shutdown` is cancelled.
///
/// Checks the channel first ([`Deliverer::health_check`]) and returns its error, so that a
/// misconfigured channel fails the service at start rather than filling the attempt history.
/// After that, only invalid options end it early; store errors are logged and retried after
/// `error_pause`. A pass that filled its batch is followed at once by another; otherwise the
/// worker sleeps for `poll_interval` or until `wake` is notified (producers call
/// [`Notify::notify_one`] after committing a set, so a notification sent mid-pass is not lost;
/// give each worker its own `Notify`). A pass in progress at shutdown is finished, since every
/// delivery is bounded by the channel's timeout.
pub async fn run(
    store: Arc<dyn Store>,
    deliverer: Arc<dyn Deliverer>,
    policy: RetryPolicy,
    opts: WorkerOptions,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) -> Result<(), DeliverError> {
    policy.validate()?;
    opts.validate()?;
    let channel = deliverer.channel().to_owned();
    deliverer.health_check().await?;
    info!(%channel, "delivery worker started");
    while !shutdown.is_cancelled() {
        let pause = match pass(
            store.as_ref(),
            deliverer.as_ref(),
            &policy,
            &opts,
            OffsetDateTime::now_utc(),
        )
        .await
        {
            Ok(stats) if stats.claimed >= opts.batch => continue,
            Ok(_) => opts.poll_interval,
            Err(e) => {
                error!(%channel, error = %e, pause = ?opts.error_pause, "delivery pass failed; retrying after a pause");
                opts.error_pause
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(pause) => {}
        }
    }
    info!(%channel, "delivery worker stopped");
    Ok(())
}

/// One pass: claims the deliveries of `deliverer`'s channel due at `now`, delivers them and
/// records the attempts. Returns the number of delivery attempts made.
///
/// `now` is the claim time and the clock of the attempts (advanced by real elapsed time), so that
/// tests can make failed deliveries due again by passing a later time.
pub async fn deliver_due(
    store: &dyn Store,
    deliverer: &dyn Deliverer,
    policy: &RetryPolicy,
    opts: &WorkerOptions,
    now: OffsetDateTime,
) -> Result<usize, DeliverError> {
    policy.validate()?;
    opts.validate()?;
    Ok(pass(store, deliverer, policy, opts, now).await?.attempted)
}

#[derive(Debug, Default)]
struct PassStats {
    claimed: usize,
    attempted: usize,
}

async fn pass(
    store: &dyn Store,
    deliverer: &dyn Deliverer,
    policy: &RetryPolicy,
    opts: &WorkerOptions,
    now: OffsetDateTime,
) -> Result<PassStats, DeliverError> {
    let channel = deliverer.channel();
    let tasks = store
        .claim_deliveries(channel, now, opts.lease, opts.batch)
        .await?;
    let mut stats = PassStats {
        claimed: tasks.len(),
        attempted: 0,
    };
    if tasks.is_empty() {
        return Ok(stats);
    }
    debug!(%channel, claimed = tasks.len(), "claimed deliveries");
    let clock = Instant::now();
    let results: Vec<Result<bool, StoreError>> = futures::stream::iter(tasks)
        .map(|task| deliver_one(store, deliverer, policy, opts, task, now, clock))
        .buffer_unordered(opts.concurrency)
        .collect()
        .await;
    let mut first_error = None;
    for r in results {
        match r {
            Ok(attempted) => stats.attempted += usize::from(attempted),
            Err(e) => {
                if first_error.is_none() {
                    first_error = Some(e);
                }
            }
        }
    }
    match first_error {
        Some(e) => Err(e.into()),
        None => Ok(stats),
    }
}

/// Delivers one claimed set; `Ok(true)` when an attempt was made.
async fn deliver_one(
    store: &dyn Store,
    deliverer: &dyn Deliverer,
    policy: &RetryPolicy,
    opts: &WorkerOptions,
    task: DeliveryTask,
    pass_time: OffsetDateTime,
    pass_clock: Instant,
) -> Result<bool, StoreError> {
    let channel = deliverer.channel();
    let set_id = task.set_id;
    let entries = if deliverer.needs_entries() {
        match load_entries(store, set_id, task.entries, opts.page_size).await? {
            Some(entries) => Some(entries),
            None => {
                // Deleted by the client since the claim: there is nothing left to deliver, and the
                // store no longer offers the receipt once its lease ends.
                info!(%channel, set = %set_id, "set deleted before delivery; skipped");
                return Ok(false);
            }
        }
    } else {
        None
    };

    let started = Instant::now();
    let at = pass_time + started.duration_since(pass_clock);
    let result = deliverer
        .deliver(&SetToDeliver {
            id: set_id,
            entries,
        })
        .await;
    let took = started.elapsed();
    let ended = at + took;

    let attempts = task.attempts.saturating_add(1);
    let (outcome, label, error_text) = match &result {
        DeliveryResult::Delivered { .. } => (AttemptOutcome::Delivered, "delivered", None),
        DeliveryResult::DeliveredAndDeleted { .. } => (
            AttemptOutcome::DeliveredAndDeleted,
            "delivered_and_deleted",
            None,
        ),
        DeliveryResult::Failed {
            error,
            retry_after,
            permanent,
            ..
        } => {
            let delay = policy.next_delay(attempts, *retry_after, &mut rand::thread_rng());
            let dead_letter = policy.is_dead_letter(task.created_at, ended, *permanent);
            let label = if dead_letter { "dead_letter" } else { "failed" };
            let outcome = AttemptOutcome::Failed {
                retry_at: ended + delay,
                dead_letter,
            };
            (outcome, label, Some(error.clone()))
        }
    };
    metrics::counter!(METRIC_ATTEMPTS, "channel" => channel.to_owned(), "outcome" => label)
        .increment(1);
    metrics::histogram!(METRIC_SECONDS, "channel" => channel.to_owned()).record(took.as_secs_f64());

    let attempt = Attempt {
        set_id,
        channel: channel.to_owned(),
        at,
        duration_ms: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
        status_code: result.status(),
        error: error_text,
        outcome: outcome.clone(),
    };
    let state = match store.record_attempt(&task, &attempt).await {
        Ok(state) => state,
        Err(StoreError::Conflict(why)) => {
            warn!(%channel, set = %set_id, %why, "lease lost before the attempt was recorded; another worker owns the set now");
            return Ok(true);
        }
        Err(e) => return Err(e),
    };
    log_attempt(channel, set_id, attempts, &result, &outcome, state, took);
    Ok(true)
}

fn log_attempt(
    channel: &str,
    set: Uuid,
    attempt: u32,
    result: &DeliveryResult,
    outcome: &AttemptOutcome,
    state: ReceiptStatus,
    took: Duration,
) {
    let status = result.status();
    let state = state.as_str();
    match (result, outcome) {
        (
            DeliveryResult::Failed { error, .. },
            AttemptOutcome::Failed {
                dead_letter: true, ..
            },
        ) => {
            error!(%channel, %set, attempt, ?status, %error, state, ?took, "delivery failed for good (dead letter)")
        }
        (DeliveryResult::Failed { error, .. }, AttemptOutcome::Failed { retry_at, .. }) => {
            warn!(%channel, %set, attempt, ?status, %error, %retry_at, state, ?took, "delivery failed; will retry")
        }
        _ => info!(%channel, %set, attempt, ?status, state, ?took, "delivered"),
    }
}

/// Pages a set's entries out of the store; `None` when the set is gone.
async fn load_entries(
    store: &dyn Store,
    set: Uuid,
    expected: u64,
    page_size: usize,
) -> Result<Option<Vec<Notification>>, StoreError> {
    // The expected count only sizes the buffer; a bogus stored count must not allocate wildly.
    let mut entries = Vec::with_capacity(usize::try_from(expected.min(1 << 16)).unwrap_or(0));
    let mut after = 0;
    loop {
        let Some((page, next)) = store.notification_page(set, after, page_size).await? else {
            return Ok(None);
        };
        entries.extend(page);
        match next {
            None => return Ok(Some(entries)),
            Some(n) if n > after => after = n,
            Some(n) => {
                return Err(StoreError::Corrupt(format!(
                    "notification_page of set {set} after {after} returned next position {n}, which does not advance"
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_validate_names_the_field() {
        WorkerOptions::default().validate().unwrap();
        let cases = [
            (
                WorkerOptions {
                    batch: 0,
                    ..Default::default()
                },
                "worker.batch",
            ),
            (
                WorkerOptions {
                    concurrency: 0,
                    ..Default::default()
                },
                "worker.concurrency",
            ),
            (
                WorkerOptions {
                    page_size: 0,
                    ..Default::default()
                },
                "worker.page_size",
            ),
            (
                WorkerOptions {
                    lease: Duration::ZERO,
                    ..Default::default()
                },
                "worker.lease",
            ),
            (
                WorkerOptions {
                    poll_interval: Duration::ZERO,
                    ..Default::default()
                },
                "worker.poll_interval",
            ),
        ];
        for (o, want) in cases {
            match o.validate() {
                Err(DeliverError::Config { field, .. }) => assert_eq!(field, want),
                other => panic!("{want}: {other:?}"),
            }
        }
    }
}
