//! Several `tocsin serve` processes on one PostgreSQL database behave as one service.
//!
//! Each test starts real `tocsin` processes (the built binary) on a throw-away database, a local
//! webhook target that records every delivery (and tells which process made it, from the callback
//! URL, which names the delivering process's own port), imports real feed snapshots from
//! `../shared/data/updates` through different processes, and checks the outcome in the database:
//! - every update operation is processed once: one change set each, at most one notification set
//!   each, every updater's processed mark at its newest operation;
//! - every set is delivered exactly once (or, for the set whose delivery was cut by SIGKILL, at
//!   least once: the survivors take it over when the dead process's lease expires);
//! - a manifest stored through one process reaches every process's index;
//! - PostgreSQL restarting under the processes costs at most some retries.
//!
//! The restart test runs its own PostgreSQL server (initdb in a temporary directory, a free port)
//! rather than restarting the shared one, which other test binaries use at the same time.
//! Without PostgreSQL (or the shared data) the tests skip with a message; in CI (`CI=true`) a
//! missing PostgreSQL fails them.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::post;
use tocsin_model::notification::ReceiptStatus;
use tocsin_store::Store;
use tocsin_store_postgres::testing::{private_server, throwaway_database, TestDatabase};
use tocsin_store_postgres::{PgOptions, PgStore};
use uuid::Uuid;

// ---- shared data ------------------------------------------------------------------------------

use tocsin_testdata::{dir as shared_data, snapshots};

// ---- the webhook target -------------------------------------------------------------------------

/// One webhook received: the set and the port of the process that delivered it.
#[derive(Clone, Debug)]
struct Hit {
    set: Uuid,
    from_port: u16,
}

#[derive(Clone, Default)]
struct Target {
    hits: Arc<Mutex<Vec<Hit>>>,
    /// While set, each request is held this long before it is answered.
    hold: Arc<Mutex<Option<Duration>>>,
    first: Arc<tokio::sync::Notify>,
}

impl Target {
    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    fn count_by_set(&self) -> BTreeMap<Uuid, usize> {
        let mut m = BTreeMap::new();
        for h in self.hits() {
            *m.entry(h.set).or_default() += 1;
        }
        m
    }
}

async fn hook(State(t): State<Target>, body: String) -> axum::http::StatusCode {
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let set = Uuid::parse_str(v["notification_id"].as_str().unwrap()).unwrap();
    let callback = v["callback"].as_str().unwrap();
    let from_port: u16 = callback
        .trim_start_matches("http://127.0.0.1:")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    t.hits.lock().unwrap().push(Hit { set, from_port });
    t.first.notify_one();
    let hold = *t.hold.lock().unwrap();
    if let Some(d) = hold {
        tokio::time::sleep(d).await;
    }
    axum::http::StatusCode::OK
}

async fn start_target() -> (Target, SocketAddr) {
    let target = Target::default();
    let app = axum::Router::new()
        .route("/hook", post(hook))
        .with_state(target.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (target, addr)
}

// ---- tocsin processes ---------------------------------------------------------------------------

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Proc {
    port: u16,
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn kill(&mut self) {
        // SIGKILL: no shutdown code runs, exactly like a crash.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!("--- last lines of tocsin on :{} ---", self.port);
            for l in tail.into_iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

fn config(dir: &Path, port: u16, connstring: &str, target: SocketAddr) -> PathBuf {
    let path = dir.join(format!("tocsin-{port}.yaml"));
    let yaml = format!(
        r#"http_listen_addr: "127.0.0.1:{port}"
notifier:
  connstring: "{connstring}"
  migrations: true
  delivery_interval: 1s
  webhook:
    target: "http://{target}/hook"
    callback: "http://127.0.0.1:{port}/notifier/api/v1/notification/"
tocsin:
  process_interval: 30s
  gc_interval: 1s
  delivery:
    connect_timeout: 1s
    timeout: 4s
    lease: 6s
    initial_backoff: 1s
    max_backoff: 2s
"#
    );
    std::fs::write(&path, yaml).unwrap();
    path
}

async fn spawn(dir: &Path, connstring: &str, target: SocketAddr) -> Proc {
    let port = free_port();
    let cfg = config(dir, port, connstring, target);
    let log = dir.join(format!("tocsin-{port}.log"));
    let child = Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .env("TOCSIN_LOG", "info,tocsin_store_postgres=debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("starting tocsin");
    let mut p = Proc { port, child, log };
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(p.url("/healthz")).send().await {
            if r.status().is_success() {
                return p;
            }
        }
        if let Ok(Some(status)) = p.child.try_wait() {
            let log = std::fs::read_to_string(&p.log).unwrap_or_default();
            panic!("tocsin exited at start ({status}):\n{log}");
        }
        assert!(
            Instant::now() < deadline,
            "tocsin on :{port} did not come up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// PUTs `body` to `path` on `p`, retrying server errors and refused connections for up to
/// `patience` (a restarting database answers 5xx for a moment).
async fn put(p: &Proc, path: &str, body: Vec<u8>, patience: Duration) -> serde_json::Value {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + patience;
    loop {
        let r = client.put(p.url(path)).body(body.clone()).send().await;
        match r {
            Ok(r) if r.status().is_success() => return r.json().await.unwrap_or_default(),
            Ok(r) if r.status().is_client_error() => {
                panic!("PUT {path}: {} {}", r.status(), r.text().await.unwrap())
            }
            other => {
                let why = match other {
                    Ok(r) => format!("{} {}", r.status(), r.text().await.unwrap_or_default()),
                    Err(e) => e.to_string(),
                };
                assert!(Instant::now() < deadline, "PUT {path} kept failing: {why}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

async fn import(p: &Proc, feed: &str, file: &Path, patience: Duration) {
    let body = std::fs::read(file).unwrap();
    put(
        p,
        &format!("/api/v1/updaters/osv/{feed}/snapshot"),
        body,
        patience,
    )
    .await;
}

/// Stores tansu's Cargo.lock (129 crates named in RustSec) through `p`.
async fn put_tansu(p: &Proc, data: &Path) -> String {
    let body = std::fs::read(data.join("inventories/cargo/tansu.Cargo.lock")).unwrap();
    let digest = format!("sha256:{}", tocsin_model::sha256_hex(&body));
    put(
        p,
        &format!("/api/v1/manifests/{digest}"),
        body,
        Duration::from_secs(10),
    )
    .await;
    digest
}

async fn gauge(p: &Proc, name: &str) -> Option<f64> {
    let text = reqwest::get(p.url("/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

// ---- checks on the database ---------------------------------------------------------------------

/// Waits until every updater's newest operation is processed and every set is delivered.
async fn settled(store: &PgStore, patience: Duration) {
    let deadline = Instant::now() + patience;
    loop {
        let updaters = store.updaters().await;
        let sets = store.notification_sets(None, None, 10_000).await;
        let done = match (&updaters, &sets) {
            (Ok(us), Ok(sets)) => {
                us.iter().all(|u| {
                    u.latest
                        .as_ref()
                        .map(|l| Uuid::parse_str(&l.reference).ok())
                        == Some(u.processed)
                }) && sets.iter().all(|s| s.status == ReceiptStatus::Delivered)
            }
            _ => false,
        };
        if done {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "work did not settle in {patience:?}: updaters {updaters:?}, sets {:?}",
            sets.map(|s| s.iter().map(|s| (s.id, s.status)).collect::<Vec<_>>())
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every operation processed exactly once: one change set each, at most one set each, and every
/// set belongs to a known operation. Returns the sets.
async fn each_operation_once(store: &PgStore) -> Vec<Uuid> {
    let mut ops = BTreeSet::new();
    for u in store.updaters().await.unwrap() {
        for op in store.update_operations(&u.name).await.unwrap() {
            let id = Uuid::parse_str(&op.reference).unwrap();
            assert!(
                store.change_set(id).await.unwrap().is_some(),
                "operation {id} of {} was never processed",
                u.name
            );
            ops.insert(id);
        }
    }
    let sets = store.notification_sets(None, None, 10_000).await.unwrap();
    let mut per_op: HashMap<Uuid, usize> = HashMap::new();
    for s in &sets {
        let op = s.operation.expect("sets of update operations name them");
        assert!(
            ops.contains(&op),
            "set {} names unknown operation {op}",
            s.id
        );
        *per_op.entry(op).or_default() += 1;
    }
    for (op, n) in per_op {
        assert_eq!(n, 1, "operation {op} yielded {n} notification sets");
    }
    sets.iter().map(|s| s.id).collect()
}

async fn setup() -> Option<(PathBuf, TestDatabase)> {
    let data = shared_data()?;
    let db = throwaway_database().await?;
    Some((data, db))
}

// ---- the tests ----------------------------------------------------------------------------------

/// Three processes import two real feeds through different processes at once: each operation
/// yields one set at most, each set is delivered exactly once, and a manifest stored through one
/// process is in every process's index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_process_and_deliver_each_set_exactly_once() {
    let Some((data, db)) = setup().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (target, target_addr) = start_target().await;
    let mut procs = Vec::new();
    for _ in 0..3 {
        procs.push(spawn(dir.path(), db.connstring(), target_addr).await);
    }
    let store = PgStore::connect(&PgOptions::new(db.connstring(), false))
        .await
        .unwrap();

    put_tansu(&procs[0], &data).await;
    // Every process's index learns of the manifest (change feed + LISTEN/NOTIFY), without any
    // processing pass to trigger it.
    for p in &procs {
        let deadline = Instant::now() + Duration::from_secs(10);
        while gauge(p, "tocsin_index_manifests").await != Some(1.0) {
            assert!(
                Instant::now() < deadline,
                "process :{} never indexed the manifest stored through :{}",
                p.port,
                procs[0].port
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // Two feeds in parallel, each snapshot through the next process in turn.
    let crates = snapshots(&data, "crates.io");
    let alma = snapshots(&data, "almalinux9");
    let (a, b) = tokio::join!(
        async {
            for (i, f) in crates.iter().take(8).enumerate() {
                import(&procs[i % 3], "crates.io", f, Duration::from_secs(5)).await;
            }
        },
        async {
            for (i, f) in alma.iter().take(4).enumerate() {
                import(&procs[(i + 1) % 3], "almalinux9", f, Duration::from_secs(5)).await;
            }
        }
    );
    let ((), ()) = (a, b);
    settled(&store, Duration::from_secs(60)).await;
    let sets = each_operation_once(&store).await;
    assert!(
        !sets.is_empty(),
        "the first crates.io snapshot affects tansu, so there is at least one set"
    );
    // Let any straggling duplicate show up before counting.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let hits = target.count_by_set();
    for s in &sets {
        assert_eq!(
            hits.get(s),
            Some(&1),
            "set {s} delivered {:?} times",
            hits.get(s)
        );
    }
    assert_eq!(
        hits.len(),
        sets.len(),
        "deliveries of unknown sets: {hits:?}"
    );
}

/// A process killed (SIGKILL) while delivering: the others take its delivery over once the lease
/// expires, and finish the rest; nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_process_work_is_finished_by_the_others() {
    let Some((data, db)) = setup().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (target, target_addr) = start_target().await;
    let mut procs = Vec::new();
    for _ in 0..3 {
        procs.push(spawn(dir.path(), db.connstring(), target_addr).await);
    }
    let store = PgStore::connect(&PgOptions::new(db.connstring(), false))
        .await
        .unwrap();
    put_tansu(&procs[0], &data).await;

    // Deliveries hang until the delivering process is killed.
    *target.hold.lock().unwrap() = Some(Duration::from_secs(3));
    let crates = snapshots(&data, "crates.io");
    import(&procs[0], "crates.io", &crates[0], Duration::from_secs(5)).await;
    tokio::time::timeout(Duration::from_secs(15), target.first.notified())
        .await
        .expect("the first set is delivered");
    let first = target.hits()[0].clone();
    let victim = procs
        .iter()
        .position(|p| p.port == first.from_port)
        .expect("the delivery came from one of our processes");
    procs[victim].kill();
    *target.hold.lock().unwrap() = None;
    let survivors: Vec<&Proc> = procs
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != victim)
        .map(|(_, p)| p)
        .collect();

    // More work through the survivors while the victim's lease runs out.
    for (i, f) in crates.iter().enumerate().skip(1).take(5) {
        import(survivors[i % 2], "crates.io", f, Duration::from_secs(5)).await;
    }
    settled(&store, Duration::from_secs(60)).await;
    let sets = each_operation_once(&store).await;
    assert!(sets.contains(&first.set), "{sets:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let hits = target.hits();
    let counts = target.count_by_set();
    for s in &sets {
        let n = counts.get(s).copied().unwrap_or(0);
        if *s == first.set {
            // Cut mid-delivery: delivered again by a survivor (at-least-once across a crash).
            assert!(
                hits.iter()
                    .any(|h| h.set == *s && h.from_port != first.from_port),
                "the killed process's delivery of {s} was not taken over: {hits:?}"
            );
        } else {
            assert_eq!(n, 1, "set {s} delivered {n} times");
        }
    }
    assert!(hits.iter().skip(1).all(|h| h.from_port != first.from_port));
}

/// PostgreSQL restarts while two processes work: they reconnect (pool and LISTEN connection) and
/// carry on; everything imported is processed once and delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_reconnect_after_postgres_restarts() {
    let Some(data) = shared_data() else { return };
    // A server of its own, to restart at will (other test binaries use the shared one).
    let Some(pg) = private_server(Vec::new(), |_| Ok(())) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (target, target_addr) = start_target().await;
    let a = spawn(dir.path(), &pg.connstring(), target_addr).await;
    let b = spawn(dir.path(), &pg.connstring(), target_addr).await;
    let store = PgStore::connect(&PgOptions::new(pg.connstring(), false))
        .await
        .unwrap();
    put_tansu(&a, &data).await;
    let crates = snapshots(&data, "crates.io");
    import(&a, "crates.io", &crates[0], Duration::from_secs(5)).await;
    settled(&store, Duration::from_secs(30)).await;

    pg.pg_ctl(&["-m", "fast", "restart"]);

    // Both processes serve again: imports through each succeed (after retries at most).
    import(&b, "crates.io", &crates[1], Duration::from_secs(30)).await;
    import(&a, "crates.io", &crates[2], Duration::from_secs(30)).await;
    // A manifest stored through one process after the restart reaches the other's index: its
    // notification connection is back.
    let body = std::fs::read(data.join("inventories/cargo/rust-rdkafka.Cargo.lock")).unwrap();
    let digest = format!("sha256:{}", tocsin_model::sha256_hex(&body));
    put(
        &a,
        &format!("/api/v1/manifests/{digest}"),
        body,
        Duration::from_secs(30),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while gauge(&b, "tocsin_index_manifests").await != Some(2.0) {
        assert!(
            Instant::now() < deadline,
            "process :{} did not follow a manifest stored after the restart",
            b.port
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    settled(&store, Duration::from_secs(60)).await;
    let sets = each_operation_once(&store).await;
    assert!(
        !sets.is_empty(),
        "the first crates.io snapshot affects tansu"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let counts = target.count_by_set();
    for s in &sets {
        assert_eq!(
            counts.get(s),
            Some(&1),
            "set {s}: {:?} deliveries",
            counts.get(s)
        );
    }
    drop((a, b));
}
