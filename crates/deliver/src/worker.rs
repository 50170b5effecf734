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

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    /// How long a claim holds; must exceed `timeout`.
    pub lease: Duration,
    /// The longest one delivery can take (the channel's timeout). A claimed set starts only
    /// while its lease still has room for this and as much again to spare.
    pub timeout: Duration,
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
    /// 4096 per pass, 4 in flight, 5 min leases for 30 s deliveries, a pass every 5 s (retries
    /// are due at arbitrary times; new sets wake the worker at once), pages of 1000 entries, 5 s
    /// after a store error.
    fn default() -> Self {
        WorkerOptions {
            batch: 4096,
            lease: Duration::from_secs(300),
            timeout: Duration::from_secs(30),
            poll_interval: Duration::from_secs(5),
            concurrency: 4,
            page_size: 1000,
            error_pause: Duration::from_secs(5),
        }
    }
}

impl WorkerOptions {
    /// How long after its claim a set may still start: half of what its lease leaves beyond one
    /// delivery, so the attempt ends and is recorded well before the lease can pass to another
    /// worker.
    pub fn start_window(&self) -> Duration {
        self.lease.saturating_sub(self.timeout) / 2
    }

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
        if self.lease <= self.timeout {
            return bad("lease", "must be longer than worker.timeout");
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
/// give each worker its own `Notify`). At shutdown, the pass in progress claims nothing more and
/// finishes the sets it holds that can still start inside their start window: shutdown waits at
/// most that window plus one delivery timeout.
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
            &store,
            &deliverer,
            &policy,
            &opts,
            OffsetDateTime::now_utc(),
            &shutdown,
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
    store: Arc<dyn Store>,
    deliverer: Arc<dyn Deliverer>,
    policy: &RetryPolicy,
    opts: &WorkerOptions,
    now: OffsetDateTime,
) -> Result<usize, DeliverError> {
    policy.validate()?;
    opts.validate()?;
    Ok(pass(
        &store,
        &deliverer,
        policy,
        opts,
        now,
        &CancellationToken::new(),
    )
    .await?
    .attempted)
}

#[derive(Debug, Default)]
struct PassStats {
    claimed: usize,
    attempted: usize,
    /// Claimed sets left to their leases (see `start_window`).
    missed: usize,
}

async fn pass(
    store: &Arc<dyn Store>,
    deliverer: &Arc<dyn Deliverer>,
    policy: &RetryPolicy,
    opts: &WorkerOptions,
    now: OffsetDateTime,
    shutdown: &CancellationToken,
) -> Result<PassStats, DeliverError> {
    use futures::future::{BoxFuture, FutureExt as _, OptionFuture};

    let channel = deliverer.channel();
    let shared = Arc::new(Shared {
        store: Arc::clone(store),
        deliverer: Arc::clone(deliverer),
        policy: policy.clone(),
        page_size: opts.page_size,
        pass_time: now,
        meters: Meters::new(channel),
    });
    let store = store.as_ref();
    let clock = Instant::now();
    // A claim is made whenever fewer than a claim's worth of sets wait for a slot, so the slots
    // never wait for the store; at most two claims' worth (64 per slot) waits. A claimed set
    // starts only inside its start window, which leaves room in its lease for the delivery and
    // as much again: when deliveries slow down so much that waiting sets miss it, they are left
    // for their leases to expire (another worker, or a later pass, claims them) and this pass
    // claims no more, so a set is never delivered after its lease could have passed to someone
    // else.
    let claim_size = opts.concurrency.saturating_mul(32).min(opts.batch).max(1);
    let chunk = claim_size.min(RECORD_CHUNK);
    let window = opts.start_window();
    // `concurrency` slot tasks each take the next claimed set and deliver it, like the tasks of a
    // plain load loop: a freed slot starts its next delivery itself, on whichever runtime thread
    // it runs, without a round trip through this task.
    let (work, queue) = tokio::sync::mpsc::unbounded_channel::<(DeliveryTask, Instant)>();
    let queue = Arc::new(tokio::sync::Mutex::new(queue));
    let (done, mut results) = tokio::sync::mpsc::unbounded_channel::<SlotResult>();
    let mut slots = tokio::task::JoinSet::new();
    for _ in 0..opts.concurrency {
        let (shared, queue, done) = (Arc::clone(&shared), Arc::clone(&queue), done.clone());
        slots.spawn(async move {
            loop {
                let next = queue.lock().await.recv().await;
                let Some((task, claimed)) = next else { break };
                let result = if claimed.elapsed() > window {
                    SlotResult::Missed
                } else {
                    let set = task.set_id;
                    match AssertUnwindSafe(deliver_one(Arc::clone(&shared), task, clock))
                        .catch_unwind()
                        .await
                    {
                        Ok(Ok(made)) => SlotResult::Done(made.map(Box::new)),
                        Ok(Err(e)) => SlotResult::Failed(e),
                        Err(_) => SlotResult::Panicked(set),
                    }
                };
                if done.send(result).is_err() {
                    break;
                }
            }
        });
    }
    drop(done);
    // Sets handed to the slots whose result has not come back.
    let mut outstanding = 0usize;
    let mut missed = 0usize;
    // The next claim and the previous chunk's record run beside the deliveries in flight: a
    // store transaction never leaves the delivery slots idle (an SQLite write costs about as
    // much as a local webhook call).
    let mut claim: Option<BoxFuture<'_, Result<Vec<DeliveryTask>, StoreError>>> = None;
    let mut recording: Option<BoxFuture<'_, Recorded>> = None;
    let mut claiming = true;
    // The size of the claim in progress.
    let mut asked = 0;
    let mut stats = PassStats::default();
    let mut finished: Vec<Made> = Vec::new();
    let mut first_error: Option<StoreError> = None;
    loop {
        // Claim ahead while few sets wait, so the slots have work when they free up.
        if claim.is_none()
            && claiming
            && first_error.is_none()
            && outstanding < claim_size + opts.concurrency
        {
            asked = claim_size.min(opts.batch.saturating_sub(stats.claimed));
            let at = now + clock.elapsed();
            claim = Some(
                store
                    .claim_deliveries(channel, at, opts.lease, asked)
                    .boxed(),
            );
        }
        let idle = outstanding == 0 && claim.is_none();
        if recording.is_none() && !finished.is_empty() && (finished.len() >= chunk || idle) {
            // A crash before a chunk is recorded leaves its sets to be delivered again once
            // their leases expire (at-least-once), as a crash during a delivery would.
            let take: Vec<Made> = finished.drain(..finished.len().min(RECORD_CHUNK)).collect();
            recording = Some(record(store, take).boxed());
        }
        if idle && recording.is_none() {
            break;
        }
        tokio::select! {
            // Shutting down: what is claimed is still delivered (at most two claims' worth),
            // nothing more is claimed.
            _ = shutdown.cancelled(), if claiming => claiming = false,
            Some(r) = results.recv(), if outstanding > 0 => {
                outstanding -= 1;
                match r {
                    SlotResult::Done(Some(m)) => finished.push(*m),
                    SlotResult::Done(None) => {}
                    SlotResult::Missed => {
                        missed += 1;
                        claiming = false;
                    }
                    SlotResult::Failed(e) => {
                        first_error.get_or_insert(e);
                    }
                    SlotResult::Panicked(set) => {
                        // Its set stays leased and is retried once the lease ends; the pass
                        // goes on with the others.
                        error!(%channel, %set, "a delivery panicked; the set is retried after its lease");
                    }
                }
            },
            Some(r) = OptionFuture::from(claim.as_mut()), if claim.is_some() => {
                claim = None;
                match r {
                    Ok(v) => {
                        stats.claimed += v.len();
                        claiming = v.len() == asked && stats.claimed < opts.batch;
                        if !v.is_empty() {
                            debug!(%channel, claimed = v.len(), "claimed deliveries");
                        }
                        let claimed = Instant::now();
                        for t in v {
                            // The slots outlive this loop, so the queue is open.
                            if work.send((t, claimed)).is_ok() {
                                outstanding += 1;
                            }
                        }
                    }
                    Err(e) => {
                        claiming = false;
                        first_error.get_or_insert(e);
                    }
                }
            },
            Some(done) = OptionFuture::from(recording.as_mut()), if recording.is_some() => {
                recording = None;
                done.apply(channel, &mut stats, &mut first_error);
            },
        }
    }
    drop(work);
    while slots.join_next().await.is_some() {}
    if missed > 0 {
        warn!(%channel, sets = missed, window = ?window, "claimed sets did not start within their lease's start window; they are delivered once their leases expire");
    }
    stats.missed = missed;
    match first_error {
        Some(e) => Err(e.into()),
        None => Ok(stats),
    }
}

/// What a slot reports for each set it was handed.
enum SlotResult {
    /// Delivered (or failed) and waiting to be recorded; `None` when there was nothing to do.
    Done(Option<Box<Made>>),
    /// Not started: its start window had passed.
    Missed,
    /// The store failed while preparing the delivery.
    Failed(StoreError),
    /// The deliverer panicked.
    Panicked(Uuid),
}

/// Finished deliveries and what recording them in one store call returned.
struct Recorded {
    made: Vec<Made>,
    states: Result<Vec<Result<ReceiptStatus, StoreError>>, StoreError>,
}

/// Records finished deliveries in one store call.
async fn record(store: &dyn Store, made: Vec<Made>) -> Recorded {
    let batch: Vec<(DeliveryTask, Attempt)> = made
        .iter()
        .map(|m| (m.task.clone(), m.attempt.clone()))
        .collect();
    let states = store.record_attempts(&batch).await;
    Recorded { made, states }
}

impl Recorded {
    /// Counts and logs each attempt; keeps the first store error.
    fn apply(self, channel: &str, stats: &mut PassStats, first_error: &mut Option<StoreError>) {
        let states = match self.states {
            Ok(s) => s,
            Err(e) => {
                first_error.get_or_insert(e);
                return;
            }
        };
        for (m, state) in self.made.iter().zip(states) {
            stats.attempted += 1;
            match state {
                Ok(state) => log_attempt(
                    channel,
                    m.task.set_id,
                    m.task.attempts.saturating_add(1),
                    &m.result,
                    &m.attempt.outcome,
                    state,
                    m.took,
                ),
                Err(StoreError::Conflict(why)) => {
                    warn!(%channel, set = %m.task.set_id, %why, "lease lost before the attempt was recorded; another worker owns the set now");
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
    }
}

/// Attempts recorded per store call at most.
const RECORD_CHUNK: usize = 256;

/// A delivery made, waiting to be recorded.
struct Made {
    task: DeliveryTask,
    attempt: Attempt,
    result: DeliveryResult,
    took: Duration,
}

/// What every delivery task of a pass reads.
struct Shared {
    store: Arc<dyn Store>,
    deliverer: Arc<dyn Deliverer>,
    policy: RetryPolicy,
    page_size: usize,
    pass_time: OffsetDateTime,
    meters: Meters,
}

/// The channel's metric handles, looked up once per pass rather than once per delivery.
struct Meters {
    delivered: metrics::Counter,
    delivered_and_deleted: metrics::Counter,
    failed: metrics::Counter,
    dead_letter: metrics::Counter,
    seconds: metrics::Histogram,
}

impl Meters {
    fn new(channel: &str) -> Meters {
        let attempts = |outcome: &'static str| metrics::counter!(METRIC_ATTEMPTS, "channel" => channel.to_owned(), "outcome" => outcome);
        Meters {
            delivered: attempts("delivered"),
            delivered_and_deleted: attempts("delivered_and_deleted"),
            failed: attempts("failed"),
            dead_letter: attempts("dead_letter"),
            seconds: metrics::histogram!(METRIC_SECONDS, "channel" => channel.to_owned()),
        }
    }
}

/// Delivers one claimed set; `None` when there was nothing to deliver.
async fn deliver_one(
    shared: Arc<Shared>,
    task: DeliveryTask,
    pass_clock: Instant,
) -> Result<Option<Made>, StoreError> {
    let Shared {
        store,
        deliverer,
        policy,
        page_size,
        pass_time,
        meters,
    } = shared.as_ref();
    let channel = deliverer.channel();
    let set_id = task.set_id;
    let entries = if deliverer.needs_entries() {
        match load_entries(store.as_ref(), set_id, task.entries, *page_size).await? {
            Some(entries) => Some(entries),
            None => {
                // Deleted by the client since the claim: there is nothing left to deliver, and the
                // store no longer offers the receipt once its lease ends.
                info!(%channel, set = %set_id, "set deleted before delivery; skipped");
                return Ok(None);
            }
        }
    } else {
        None
    };

    let started = Instant::now();
    let at = *pass_time + started.duration_since(pass_clock);
    let result = deliverer
        .deliver(&SetToDeliver {
            id: set_id,
            entries,
        })
        .await;
    let took = started.elapsed();
    let ended = at + took;

    let attempts = task.attempts.saturating_add(1);
    let (outcome, counter, error_text) = match &result {
        DeliveryResult::Delivered { .. } => (AttemptOutcome::Delivered, &meters.delivered, None),
        DeliveryResult::DeliveredAndDeleted { .. } => (
            AttemptOutcome::DeliveredAndDeleted,
            &meters.delivered_and_deleted,
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
            let counter = if dead_letter {
                &meters.dead_letter
            } else {
                &meters.failed
            };
            let outcome = AttemptOutcome::Failed {
                retry_at: ended + delay,
                dead_letter,
            };
            (outcome, counter, Some(error.clone()))
        }
    };
    counter.increment(1);
    meters.seconds.record(took.as_secs_f64());

    let attempt = Attempt {
        set_id,
        channel: channel.to_owned(),
        at,
        duration_ms: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
        status_code: result.status(),
        error: error_text,
        outcome,
    };
    Ok(Some(Made {
        task,
        attempt,
        result,
        took,
    }))
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
