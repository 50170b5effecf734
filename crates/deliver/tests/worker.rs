//! The outbox worker against the embedded store, with the webhook channel posting to a real local
//! receiver and test channels for direct mode, concurrency and lost leases. Notification entries
//! are built from real claircore IndexReports in the shared data folder.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use time::OffsetDateTime;
use tocsin_deliver::worker::{self, deliver_due};
use tocsin_deliver::{
    Deliverer, DeliveryResult, Jitter, RetryPolicy, SetToDeliver, WebhookConfig, WebhookDeliverer,
    WorkerOptions,
};
use tocsin_model::claircore::IndexReport;
use tocsin_model::notification::{Notification, Reason, ReceiptStatus, VulnSummary};
use tocsin_model::{Digest, Severity};
use tocsin_store::{AttemptOutcome, NewNotificationSet, Store};
use tocsin_store_sqlite::SqliteStore;
use uuid::Uuid;

// ---- real data ---------------------------------------------------------------------------------

use tocsin_testdata::dir as shared_data;

/// One entry per package of a real Debian 10 IndexReport: the manifest is the report's, the
/// vulnerability names the package, severities cycle through the scale.
fn entries_from_real_report(data: &std::path::Path) -> Vec<Notification> {
    let path = data.join("inventories/clair/docker.io-library-debian-10.index.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let report: IndexReport =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let manifest = Digest::parse(&report.manifest_hash).unwrap();
    let dist = report.distributions.values().next().cloned();
    let severities = [
        Severity::Unknown,
        Severity::Negligible,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];
    report
        .packages
        .values()
        .enumerate()
        .map(|(i, p)| Notification {
            id: Uuid::new_v4(),
            manifest: manifest.clone(),
            reason: if i % 5 == 4 {
                Reason::Removed
            } else {
                Reason::Added
            },
            vulnerability: VulnSummary {
                name: format!("DSA-TEST-{i:03} {}", p.name),
                description: format!("test advisory for {} {}", p.name, p.version),
                package: Some(p.clone()),
                distribution: dist.clone(),
                repository: None,
                severity: severities[i % severities.len()],
                fixed_in_version: String::new(),
                links: format!("https://security-tracker.debian.org/tracker/{}", p.name),
            },
        })
        .collect()
}

async fn store() -> Arc<SqliteStore> {
    Arc::new(SqliteStore::open_in_memory().expect("in-memory store"))
}

async fn new_set(
    store: &SqliteStore,
    channel: &str,
    entries: Vec<Notification>,
    created_at: OffsetDateTime,
) -> Uuid {
    let id = Uuid::new_v4();
    store
        .create_notification_set(&NewNotificationSet {
            id,
            updater: "debian/updater".into(),
            operation: None,
            entries,
            channels: vec![channel.to_owned()],
            created_at,
        })
        .await
        .unwrap();
    id
}

fn policy() -> RetryPolicy {
    RetryPolicy {
        jitter: Jitter::None,
        ..RetryPolicy::default()
    }
}

fn opts() -> WorkerOptions {
    WorkerOptions {
        poll_interval: Duration::from_millis(50),
        ..WorkerOptions::default()
    }
}

fn receipt_status(info: &tocsin_store::NotificationSetInfo, channel: &str) -> ReceiptStatus {
    info.receipts
        .iter()
        .find(|r| r.channel == channel)
        .map(|r| r.status)
        .expect("a receipt for the channel")
}

// ---- a local webhook receiver whose status can be switched ------------------------------------

#[derive(Clone)]
struct Hook {
    status: Arc<AtomicU16>,
    bodies: Arc<Mutex<Vec<Bytes>>>,
}

async fn hook_handler(State(h): State<Hook>, body: Bytes) -> Response {
    h.bodies.lock().unwrap().push(body);
    let status = StatusCode::from_u16(h.status.load(Ordering::SeqCst)).unwrap();
    let mut resp = status.into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut()
            .insert("retry-after", "600".parse().unwrap());
    }
    resp
}

async fn hook(status: u16) -> (Hook, String) {
    let h = Hook {
        status: Arc::new(AtomicU16::new(status)),
        bodies: Arc::default(),
    };
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook_handler))
        .with_state(h.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (h, format!("http://{addr}/hook"))
}

fn webhook(url: &str) -> Arc<WebhookDeliverer> {
    let mut cfg = WebhookConfig::new(url, "http://tocsin.local/notifier/api/v1/notification/");
    cfg.timeout = Duration::from_secs(5);
    Arc::new(WebhookDeliverer::new(&cfg).unwrap())
}

// ---- tests ---------------------------------------------------------------------------------------

#[tokio::test]
async fn webhook_success_is_recorded_once() {
    let Some(data) = shared_data() else { return };
    let store = store().await;
    let (h, url) = hook(200).await;
    let d = webhook(&url);
    let now = OffsetDateTime::now_utc();
    let id = new_set(&store, "webhook", entries_from_real_report(&data), now).await;

    let n = deliver_due(store.clone(), d.clone(), &policy(), &opts(), now)
        .await
        .unwrap();
    assert_eq!(n, 1);
    let bodies = h.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 1);
    assert_eq!(
        std::str::from_utf8(&bodies[0]).unwrap(),
        format!(
            r#"{{"callback":"http://tocsin.local/notifier/api/v1/notification/{id}","notification_id":"{id}"}}"#
        )
    );

    let attempts = store.attempts(id).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].channel, "webhook");
    assert_eq!(attempts[0].status_code, Some(200));
    assert_eq!(attempts[0].error, None);
    assert_eq!(attempts[0].outcome, AttemptOutcome::Delivered);
    assert!(attempts[0].at >= now);
    let info = store.notification_set(id).await.unwrap().unwrap();
    assert_eq!(receipt_status(&info, "webhook"), ReceiptStatus::Delivered);

    // Nothing is due any more: no second delivery, even much later.
    let later = now + Duration::from_secs(86_400);
    assert_eq!(
        deliver_due(store.clone(), d.clone(), &policy(), &opts(), later)
            .await
            .unwrap(),
        0
    );
    assert_eq!(h.bodies.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn failure_backs_off_honours_retry_after_then_succeeds() {
    let Some(data) = shared_data() else { return };
    let store = store().await;
    let (h, url) = hook(503).await; // answers Retry-After: 600
    let d = webhook(&url);
    let now = OffsetDateTime::now_utc();
    let id = new_set(&store, "webhook", entries_from_real_report(&data), now).await;

    assert_eq!(
        deliver_due(store.clone(), d.clone(), &policy(), &opts(), now)
            .await
            .unwrap(),
        1
    );
    let a = store.attempts(id).await.unwrap();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].status_code, Some(503));
    assert!(a[0]
        .error
        .as_deref()
        .unwrap()
        .starts_with("HTTP 503 Service Unavailable"));
    let AttemptOutcome::Failed {
        retry_at,
        dead_letter,
    } = a[0].outcome.clone()
    else {
        panic!("{:?}", a[0].outcome)
    };
    assert!(!dead_letter);
    // Retry-After 600 s beats the first backoff step (5 s).
    let wait = retry_at - a[0].at;
    assert!(
        wait >= time::Duration::seconds(600) && wait < time::Duration::seconds(610),
        "{wait}"
    );
    let info = store.notification_set(id).await.unwrap().unwrap();
    assert_eq!(
        receipt_status(&info, "webhook"),
        ReceiptStatus::DeliveryFailed
    );

    // Not due before retry_at.
    let before = now + Duration::from_secs(300);
    assert_eq!(
        deliver_due(store.clone(), d.clone(), &policy(), &opts(), before)
            .await
            .unwrap(),
        0
    );
    // Due after it; the receiver has recovered.
    h.status.store(200, Ordering::SeqCst);
    let after = retry_at + Duration::from_secs(1);
    assert_eq!(
        deliver_due(store.clone(), d.clone(), &policy(), &opts(), after)
            .await
            .unwrap(),
        1
    );
    let a = store.attempts(id).await.unwrap();
    assert_eq!(a.len(), 2);
    assert_eq!(a[1].outcome, AttemptOutcome::Delivered);
    let info = store.notification_set(id).await.unwrap().unwrap();
    assert_eq!(receipt_status(&info, "webhook"), ReceiptStatus::Delivered);
    assert_eq!(h.bodies.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn old_sets_and_permanent_failures_become_dead_letters() {
    let Some(data) = shared_data() else { return };
    let store = store().await;
    let now = OffsetDateTime::now_utc();

    // A set older than dead_letter_after whose delivery fails.
    let (_h500, url500) = hook(500).await;
    let old = new_set(
        &store,
        "webhook",
        entries_from_real_report(&data),
        now - Duration::from_secs(8 * 86_400),
    )
    .await;
    deliver_due(store.clone(), webhook(&url500), &policy(), &opts(), now)
        .await
        .unwrap();
    let a = store.attempts(old).await.unwrap();
    assert!(matches!(
        a[0].outcome,
        AttemptOutcome::Failed {
            dead_letter: true,
            ..
        }
    ));
    let info = store.notification_set(old).await.unwrap().unwrap();
    assert_eq!(receipt_status(&info, "webhook"), ReceiptStatus::DeadLetter);

    // A fresh set whose receiver answers 410 Gone.
    let (_h410, url410) = hook(410).await;
    let gone = new_set(&store, "webhook", entries_from_real_report(&data), now).await;
    deliver_due(store.clone(), webhook(&url410), &policy(), &opts(), now)
        .await
        .unwrap();
    let info = store.notification_set(gone).await.unwrap().unwrap();
    assert_eq!(receipt_status(&info, "webhook"), ReceiptStatus::DeadLetter);

    // Dead letters are never claimed again.
    let (h200, url200) = hook(200).await;
    let far = now + Duration::from_secs(30 * 86_400);
    assert_eq!(
        deliver_due(store.clone(), webhook(&url200), &policy(), &opts(), far)
            .await
            .unwrap(),
        0
    );
    assert!(h200.bodies.lock().unwrap().is_empty());
}

/// A direct-mode channel: takes the entries and ends the set's life.
struct Direct {
    got: Mutex<Vec<(Uuid, Vec<Notification>)>>,
}

#[async_trait]
impl Deliverer for Direct {
    fn channel(&self) -> &str {
        "direct"
    }
    fn needs_entries(&self) -> bool {
        true
    }
    async fn deliver(&self, set: &SetToDeliver) -> DeliveryResult {
        match &set.entries {
            Some(e) => {
                self.got.lock().unwrap().push((set.id, e.clone()));
                DeliveryResult::DeliveredAndDeleted { status: None }
            }
            None => DeliveryResult::Failed {
                status: None,
                error: "direct mode needs the entries".into(),
                retry_after: None,
                permanent: false,
            },
        }
    }
}

#[tokio::test]
async fn direct_mode_gets_every_entry_in_order_and_deletes() {
    let Some(data) = shared_data() else { return };
    let store = store().await;
    let now = OffsetDateTime::now_utc();
    let entries = entries_from_real_report(&data);
    assert!(
        entries.len() > 50,
        "the real report has {} packages",
        entries.len()
    );
    let id = new_set(&store, "direct", entries.clone(), now).await;
    let d = Arc::new(Direct {
        got: Mutex::default(),
    });
    // Small pages, so that loading takes many round trips.
    let o = WorkerOptions {
        page_size: 7,
        ..opts()
    };
    assert_eq!(
        deliver_due(store.clone(), d.clone(), &policy(), &o, now)
            .await
            .unwrap(),
        1
    );
    let got = d.got.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, id);
    assert_eq!(got[0].1, entries);
    let a = store.attempts(id).await.unwrap();
    assert_eq!(a[0].outcome, AttemptOutcome::DeliveredAndDeleted);
    let info = store.notification_set(id).await.unwrap();
    assert!(
        info.is_none() || info.unwrap().status == ReceiptStatus::Deleted,
        "a direct-mode delivery ends the set"
    );
    assert!(store.notification_page(id, 0, 10).await.unwrap().is_none());
}

/// Counts deliveries in flight.
struct Slow {
    in_flight: AtomicUsize,
    peak: AtomicUsize,
    seen: Mutex<Vec<Uuid>>,
}

#[async_trait]
impl Deliverer for Slow {
    fn channel(&self) -> &str {
        "slow"
    }
    async fn deliver(&self, set: &SetToDeliver) -> DeliveryResult {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(30)).await;
        self.seen.lock().unwrap().push(set.id);
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        DeliveryResult::Delivered { status: None }
    }
}

#[tokio::test]
async fn concurrency_is_bounded_and_each_set_goes_once() {
    let Some(data) = shared_data() else { return };
    let store = store().await;
    let now = OffsetDateTime::now_utc();
    let entries = entries_from_real_report(&data);
    let mut ids = HashSet::new();
    for _ in 0..20 {
        ids.insert(new_set(&store, "slow", entries[..3].to_vec(), now).await);
    }
    let d = Arc::new(Slow {
        in_flight: AtomicUsize::new(0),
        peak: AtomicUsize::new(0),
        seen: Mutex::default(),
    });
    let o = WorkerOptions {
        batch: 8,
        concurrency: 3,
        ..opts()
    };
    let mut total = 0;
    for _ in 0..10 {
        let n = deliver_due(store.clone(), d.clone(), &policy(), &o, now)
            .await
            .unwrap();
        assert!(n <= 8);
        total += n;
        if n == 0 {
            break;
        }
    }
    assert_eq!(total, 20);
    let seen = d.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 20, "no set delivered twice");
    assert_eq!(seen.iter().copied().collect::<HashSet<_>>(), ids);
    let peak = d.peak.load(Ordering::SeqCst);
    assert!((2..=3).contains(&peak), "peak in flight {peak}");
}

/// Takes `pause` per delivery, one at a time.
struct Plodding {
    pause: Duration,
    seen: Mutex<Vec<Uuid>>,
}

#[async_trait]
impl Deliverer for Plodding {
    fn channel(&self) -> &str {
        "plodding"
    }
    async fn deliver(&self, set: &SetToDeliver) -> DeliveryResult {
        tokio::time::sleep(self.pause).await;
        self.seen.lock().unwrap().push(set.id);
        DeliveryResult::Delivered { status: None }
    }
}

#[tokio::test]
async fn claimed_sets_that_cannot_start_in_time_are_left_to_their_leases() {
    let Some(data) = shared_data() else { return };
    let store = store().await;
    let now = OffsetDateTime::now_utc();
    let entries = entries_from_real_report(&data);
    let mut ids = HashSet::new();
    for _ in 0..4 {
        ids.insert(new_set(&store, "plodding", entries[..2].to_vec(), now).await);
    }
    let d = Arc::new(Plodding {
        pause: Duration::from_millis(600),
        seen: Mutex::default(),
    });
    // One slot and a start window of 1 s: the first two sets start at 0 and 0.6 s, the third
    // could only start at 1.2 s, after its window, so it and the fourth are not attempted.
    let o = WorkerOptions {
        concurrency: 1,
        lease: Duration::from_millis(2200),
        timeout: Duration::from_millis(200),
        ..opts()
    };
    assert_eq!(o.start_window(), Duration::from_secs(1));
    assert_eq!(
        deliver_due(store.clone(), d.clone(), &policy(), &o, now)
            .await
            .unwrap(),
        2
    );
    assert_eq!(d.seen.lock().unwrap().len(), 2);
    // Their leases still hold, so nobody else can have them yet.
    assert_eq!(
        deliver_due(store.clone(), d.clone(), &policy(), &o, now)
            .await
            .unwrap(),
        0
    );
    // Once the leases have expired, the two are delivered, and no set twice.
    let later = now + Duration::from_secs(5);
    assert_eq!(
        deliver_due(store.clone(), d.clone(), &policy(), &o, later)
            .await
            .unwrap(),
        2
    );
    let seen = d.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 4, "no set delivered twice");
    assert_eq!(seen.into_iter().collect::<HashSet<_>>(), ids);
    for id in ids {
        let info = store.notification_set(id).await.unwrap().unwrap();
        assert_eq!(receipt_status(&info, "plodding"), ReceiptStatus::Delivered);
        assert_eq!(store.attempts(id).await.unwrap().len(), 1);
    }
}

/// Panics on its first delivery, then delivers.
struct PanicsOnce {
    calls: AtomicUsize,
    seen: Mutex<Vec<Uuid>>,
}

#[async_trait]
impl Deliverer for PanicsOnce {
    fn channel(&self) -> &str {
        "panicky"
    }
    async fn deliver(&self, set: &SetToDeliver) -> DeliveryResult {
        if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
            panic!("deliverer bug");
        }
        self.seen.lock().unwrap().push(set.id);
        DeliveryResult::Delivered { status: None }
    }
}

#[tokio::test]
async fn a_panicking_delivery_loses_nothing_and_stops_nothing() {
    let Some(data) = shared_data() else { return };
    let store = store().await;
    let now = OffsetDateTime::now_utc();
    let entries = entries_from_real_report(&data);
    let mut ids = HashSet::new();
    for _ in 0..3 {
        ids.insert(new_set(&store, "panicky", entries[..1].to_vec(), now).await);
    }
    let d = Arc::new(PanicsOnce {
        calls: AtomicUsize::new(0),
        seen: Mutex::default(),
    });
    let o = WorkerOptions {
        concurrency: 1,
        ..opts()
    };
    // The pass goes on after the panic: the other two are delivered and recorded.
    assert_eq!(
        deliver_due(store.clone(), d.clone(), &policy(), &o, now)
            .await
            .unwrap(),
        2
    );
    // The set whose delivery panicked is still leased, then delivered once its lease ends.
    let later = now + o.lease + Duration::from_secs(1);
    assert_eq!(
        deliver_due(store.clone(), d.clone(), &policy(), &o, later)
            .await
            .unwrap(),
        1
    );
    let seen = d.seen.lock().unwrap().clone();
    assert_eq!(seen.into_iter().collect::<HashSet<_>>(), ids);
}

#[test]
fn the_lease_must_outlast_the_timeout() {
    let o = WorkerOptions {
        lease: Duration::from_secs(30),
        timeout: Duration::from_secs(30),
        ..WorkerOptions::default()
    };
    let e = o.validate().unwrap_err().to_string();
    assert!(e.contains("lease") && e.contains("timeout"), "{e}");
    assert!(WorkerOptions::default().validate().is_ok());
}

/// Loses its lease while delivering: another worker claims the set once the lease has expired.
struct Stolen {
    store: Arc<SqliteStore>,
    steal_at: OffsetDateTime,
}

#[async_trait]
impl Deliverer for Stolen {
    fn channel(&self) -> &str {
        "stolen"
    }
    async fn deliver(&self, _set: &SetToDeliver) -> DeliveryResult {
        let taken = self
            .store
            .claim_deliveries("stolen", self.steal_at, Duration::from_secs(60), 10)
            .await
            .unwrap();
        assert_eq!(taken.len(), 1, "the expired lease is claimable");
        DeliveryResult::Delivered { status: Some(200) }
    }
}

#[tokio::test]
async fn a_lost_lease_is_not_fatal() {
    let Some(data) = shared_data() else { return };
    let store = store().await;
    let now = OffsetDateTime::now_utc();
    let id = new_set(&store, "stolen", entries_from_real_report(&data), now).await;
    let o = WorkerOptions {
        lease: Duration::from_secs(10),
        timeout: Duration::from_secs(1),
        ..opts()
    };
    let d = Arc::new(Stolen {
        store: store.clone(),
        steal_at: now + Duration::from_secs(11),
    });
    // The attempt happened (counted), recording it found the lease gone: logged, not an error.
    assert_eq!(
        deliver_due(store.clone(), d.clone(), &policy(), &o, now)
            .await
            .unwrap(),
        1
    );
    let info = store.notification_set(id).await.unwrap().unwrap();
    assert_ne!(
        receipt_status(&info, "stolen"),
        ReceiptStatus::Delivered,
        "the loser's result must not move the receipt"
    );
}

#[tokio::test]
async fn run_wakes_up_delivers_and_stops() {
    let Some(data) = shared_data() else { return };
    let store = store().await;
    let (h, url) = hook(200).await;
    let wake = Arc::new(tokio::sync::Notify::new());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let o = WorkerOptions {
        // Long enough that only a wake-up explains a prompt delivery.
        poll_interval: Duration::from_secs(3600),
        ..opts()
    };
    let store_dyn: Arc<dyn Store> = store.clone();
    let worker = tokio::spawn(worker::run(
        store_dyn,
        webhook(&url),
        policy(),
        o,
        wake.clone(),
        shutdown.clone(),
    ));
    // Let the first (empty) pass run, then add a set and wake the worker.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let id = new_set(
        &store,
        "webhook",
        entries_from_real_report(&data),
        OffsetDateTime::now_utc(),
    )
    .await;
    wake.notify_one();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while h.bodies.lock().unwrap().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not delivered after a wake-up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let info = store.notification_set(id).await.unwrap().unwrap();
    assert_eq!(receipt_status(&info, "webhook"), ReceiptStatus::Delivered);

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), worker)
        .await
        .expect("the worker stops on shutdown")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn run_refuses_bad_options_and_unhealthy_channels() {
    struct Sick;
    #[async_trait]
    impl Deliverer for Sick {
        fn channel(&self) -> &str {
            "sick"
        }
        async fn deliver(&self, _set: &SetToDeliver) -> DeliveryResult {
            DeliveryResult::Delivered { status: None }
        }
        async fn health_check(&self) -> Result<(), tocsin_deliver::DeliverError> {
            Err(tocsin_deliver::DeliverError::Unhealthy {
                channel: "sick".into(),
                message: "broker unreachable".into(),
            })
        }
    }
    let store: Arc<dyn Store> = store().await;
    let err = worker::run(
        store.clone(),
        Arc::new(Sick),
        policy(),
        opts(),
        Arc::default(),
        Default::default(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("broker unreachable"), "{err}");
    let err = worker::run(
        store,
        Arc::new(Sick),
        policy(),
        WorkerOptions { batch: 0, ..opts() },
        Arc::default(),
        Default::default(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("worker.batch"), "{err}");
}

// ---- metrics -------------------------------------------------------------------------------------

mod metrics_capture {
    //! A minimal in-process recorder, enough to read back counters and histogram sample counts.
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    use metrics::{
        Counter, CounterFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString,
        Unit,
    };

    #[derive(Default)]
    pub struct Capture {
        pub counters: Mutex<BTreeMap<String, Arc<Cell>>>,
        pub histograms: Mutex<BTreeMap<String, Arc<Cell>>>,
    }

    #[derive(Default)]
    pub struct Cell(pub AtomicU64);

    impl CounterFn for Cell {
        fn increment(&self, v: u64) {
            self.0.fetch_add(v, Ordering::SeqCst);
        }
        fn absolute(&self, v: u64) {
            self.0.store(v, Ordering::SeqCst);
        }
    }

    impl HistogramFn for Cell {
        fn record(&self, _v: f64) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn name(key: &Key) -> String {
        let mut labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        format!("{}{{{}}}", key.name(), labels.join(","))
    }

    impl Recorder for Capture {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            let cell = self
                .counters
                .lock()
                .unwrap()
                .entry(name(key))
                .or_default()
                .clone();
            Counter::from_arc(cell)
        }
        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> metrics::Gauge {
            metrics::Gauge::noop()
        }
        fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
            let cell = self
                .histograms
                .lock()
                .unwrap()
                .entry(name(key))
                .or_default()
                .clone();
            Histogram::from_arc(cell)
        }
    }

    impl Capture {
        pub fn snapshot(map: &Mutex<BTreeMap<String, Arc<Cell>>>) -> BTreeMap<String, u64> {
            map.lock()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.0.load(Ordering::SeqCst)))
                .collect()
        }
    }
}

#[test]
fn attempts_are_counted_by_channel_and_outcome() {
    let Some(data) = shared_data() else { return };
    let capture = metrics_capture::Capture::default();
    // The local recorder covers this thread only, so the pass runs on a current-thread runtime.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    metrics::with_local_recorder(&capture, || {
        rt.block_on(async {
            let store = store().await;
            let now = OffsetDateTime::now_utc();
            let (_ok, ok_url) = hook(200).await;
            let (_bad, bad_url) = hook(500).await;
            for _ in 0..2 {
                new_set(&store, "webhook", entries_from_real_report(&data), now).await;
            }
            deliver_due(store.clone(), webhook(&ok_url), &policy(), &opts(), now)
                .await
                .unwrap();
            new_set(&store, "webhook", entries_from_real_report(&data), now).await;
            deliver_due(store.clone(), webhook(&bad_url), &policy(), &opts(), now)
                .await
                .unwrap();
        })
    });
    let counters = metrics_capture::Capture::snapshot(&capture.counters);
    // Every outcome's series exists from the first pass on, so a rate over it starts at zero
    // rather than appearing with the first failure.
    let want: BTreeMap<String, u64> = [
        ("delivered", 2),
        ("delivered_and_deleted", 0),
        ("failed", 1),
        ("dead_letter", 0),
    ]
    .map(|(outcome, n)| {
        (
            format!("tocsin_delivery_attempts_total{{channel=webhook,outcome={outcome}}}"),
            n,
        )
    })
    .into();
    assert_eq!(counters, want);
    let histograms = metrics_capture::Capture::snapshot(&capture.histograms);
    assert_eq!(
        histograms.get("tocsin_delivery_seconds{channel=webhook}"),
        Some(&3)
    );
}
