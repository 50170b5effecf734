//! Harness shared by the binary's integration tests.
//!
//! Every test runs the real `tocsin` executable (`CARGO_BIN_EXE_tocsin`) as a child process, the
//! way an operator would: a YAML configuration in a temporary directory, a loopback port, and, for
//! delivery, a webhook receiver that the test runs inside its own tokio runtime. The child is
//! owned by a [`Server`] guard whose `Drop` kills and reaps it, so a failing assertion never
//! leaves a stray process behind.
//!
//! Crash tests stop the child with SIGKILL ([`Server::kill`]), which gives tocsin no chance to
//! flush or clean up: what survives is exactly what its store had committed.
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use serde_json::Value;

pub mod kube;

/// Environment variables that would change how the child reads its configuration; the tests
/// set what they need explicitly, so nothing leaks in from the developer's shell.
const SCRUBBED_ENV: &[&str] = &[
    "TOCSIN_CONFIG",
    "TOCSIN_DATA_DIR",
    "TOCSIN_LOG",
    "TOCSIN_LOG_FORMAT",
    "NOTIFIER_TEST_MODE",
];

#[allow(unused_imports)] // not every test binary reads the shared data
pub use tocsin_testdata::dir as shared_data;

/// A loopback port that was free a moment ago. The configuration has to name the port before
/// tocsin starts (the webhook callback URL contains it), so port 0 cannot be used.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("binding an ephemeral port");
    l.local_addr().expect("reading the ephemeral port").port()
}

/// A `Command` for the tocsin binary with a clean environment.
pub fn tocsin_command() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tocsin"));
    for k in SCRUBBED_ENV {
        c.env_remove(k);
    }
    c.stdin(Stdio::null());
    c
}

/// Runs a one-shot tocsin command to completion.
pub fn run_cli(args: &[&str]) -> CliOutput {
    let out = tocsin_command()
        .args(args)
        .output()
        .expect("running the tocsin binary");
    CliOutput::from(out, args)
}

/// The result of one CLI run, with text output.
#[derive(Debug)]
pub struct CliOutput {
    /// The arguments, for messages.
    pub args: String,
    /// Exit success.
    pub ok: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl CliOutput {
    fn from(out: Output, args: &[&str]) -> Self {
        CliOutput {
            args: args.join(" "),
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Asserts success and returns stdout.
    pub fn success(self) -> String {
        assert!(
            self.ok,
            "`tocsin {}` failed:\nstdout:\n{}\nstderr:\n{}",
            self.args, self.stdout, self.stderr
        );
        self.stdout
    }

    /// Asserts failure and returns stderr.
    pub fn failure(self) -> String {
        assert!(
            !self.ok,
            "`tocsin {}` succeeded but should have failed:\nstdout:\n{}",
            self.args, self.stdout
        );
        self.stderr
    }
}

/// Settings written into a test configuration.
#[derive(Clone, Debug)]
pub struct ConfigSpec {
    /// HTTP port of the service.
    pub port: u16,
    /// The embedded store's directory.
    pub data_dir: PathBuf,
    /// Webhook target (a receiver URL); `None` for a pull-only service.
    pub webhook: Option<String>,
    /// `notifier.webhook.headers`: name and values.
    pub headers: Vec<(String, Vec<String>)>,
    /// `notifier.disable_summary`.
    pub disable_summary: bool,
    /// Extra `tocsin.delivery` keys (`key: value`).
    pub delivery: Vec<(String, String)>,
    /// Extra `notifier` keys (`key: value`).
    pub notifier: Vec<(String, String)>,
}

impl ConfigSpec {
    /// A pull-only configuration with short intervals.
    pub fn new(port: u16, data_dir: &Path) -> Self {
        ConfigSpec {
            port,
            data_dir: data_dir.to_path_buf(),
            webhook: None,
            headers: Vec::new(),
            disable_summary: false,
            delivery: Vec::new(),
            notifier: Vec::new(),
        }
    }

    /// The callback base tocsin puts in webhooks: its own pull API.
    pub fn callback(&self) -> String {
        format!(
            "http://127.0.0.1:{}/notifier/api/v1/notification/",
            self.port
        )
    }

    /// The YAML text.
    pub fn yaml(&self) -> String {
        let mut y = format!(
            "http_listen_addr: 127.0.0.1:{}\nlog_level: info\nnotifier:\n  disable_summary: {}\n",
            self.port, self.disable_summary
        );
        for (k, v) in &self.notifier {
            y.push_str(&format!("  {k}: {v}\n"));
        }
        if let Some(target) = &self.webhook {
            y.push_str(&format!(
                "  webhook:\n    target: {target}\n    callback: {}\n",
                self.callback()
            ));
            if !self.headers.is_empty() {
                y.push_str("    headers:\n");
                for (name, values) in &self.headers {
                    let list: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
                    y.push_str(&format!("      {name}: [{}]\n", list.join(", ")));
                }
            }
        }
        y.push_str(&format!(
            "tocsin:\n  data_dir: {:?}\n  process_interval: 200ms\n  delivery:\n    initial_backoff: 100ms\n    max_backoff: 1s\n",
            self.data_dir.display().to_string()
        ));
        for (k, v) in &self.delivery {
            y.push_str(&format!("    {k}: {v}\n"));
        }
        y
    }

    /// Writes the YAML to `path` and returns the path.
    pub fn write(&self, path: &Path) -> PathBuf {
        std::fs::write(path, self.yaml()).expect("writing the test configuration");
        path.to_path_buf()
    }
}

/// A running `tocsin serve`, killed and reaped when dropped.
pub struct Server {
    child: Option<Child>,
    config: PathBuf,
    env: Vec<(String, String)>,
    log: PathBuf,
    /// Offset in the log file where the current process's output starts.
    log_start: u64,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// How many processes this guard has started.
    pub starts: usize,
}

impl Server {
    /// Starts `tocsin serve --config CONFIG` on `port`; stderr (JSON logs) is appended to `log`.
    pub fn start(config: &Path, port: u16, log: &Path, env: &[(&str, &str)]) -> Server {
        let mut s = Server {
            child: None,
            config: config.to_path_buf(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            log: log.to_path_buf(),
            log_start: 0,
            base: format!("http://127.0.0.1:{port}"),
            starts: 0,
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        assert!(
            self.child.is_none(),
            "the previous process is still running"
        );
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("opening the server log");
        self.log_start = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut cmd = tocsin_command();
        cmd.arg("--config")
            .arg(&self.config)
            .args(["--log-format", "json", "serve"])
            .stdout(Stdio::null())
            .stderr(file);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("spawning tocsin serve"));
        self.starts += 1;
    }

    /// Starts the process again (after [`kill`](Self::kill)) on the same configuration.
    pub fn restart(&mut self) {
        self.spawn();
    }

    /// Waits until `/readyz` answers 200; panics with the log when the process exits first.
    pub async fn ready(&mut self) {
        let base = self.base.clone();
        self.ready_at(&client(), &base).await
    }

    /// [`ready`](Self::ready) through `http` at `base` (an HTTPS server needs a client that
    /// trusts its certificate).
    pub async fn ready_at(&mut self, http: &reqwest::Client, base: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "tocsin serve exited with {status} before it was ready; log:\n{}",
                    self.log_tail()
                );
            }
            if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "tocsin serve not ready after 60 s; log:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: the process gets no chance to finish anything.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits for a clean exit (tocsin stops its tasks and closes the store).
    /// The running process's id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn terminate(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        let sent = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        let deadline = Instant::now() + Duration::from_secs(20);
        while sent && Instant::now() < deadline {
            if let Ok(Some(status)) = c.try_wait() {
                assert!(
                    status.success(),
                    "tocsin serve exited with {status} on SIGTERM; log:\n{}",
                    self.log_tail()
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
        panic!(
            "tocsin serve did not stop on SIGTERM within 20 s; log:\n{}",
            self.log_tail()
        );
    }

    /// The current process's log (JSON lines) so far.
    pub fn log_since_start(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            if f.seek(SeekFrom::Start(self.log_start)).is_ok() {
                let _ = f.read_to_string(&mut text);
            }
        }
        text
    }

    /// The last lines of the log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An HTTP client with a generous timeout (debug builds on 2 cores are slow).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("building the HTTP client")
}

/// GET a JSON document; panics with the body on a non-2xx answer.
pub async fn get_json(http: &reqwest::Client, url: &str) -> Value {
    let r = http.get(url).send().await.expect("GET request");
    let status = r.status();
    let text = r.text().await.expect("reading the response");
    assert!(status.is_success(), "GET {url}: {status}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {url}: not JSON ({e}): {text}"))
}

/// PUT a body; returns the status and the JSON answer.
pub async fn put(http: &reqwest::Client, url: &str, body: Vec<u8>) -> (u16, Value) {
    let r = http.put(url).body(body).send().await.expect("PUT request");
    let status = r.status().as_u16();
    let text = r.text().await.expect("reading the response");
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, v)
}

/// PUT a body and require a 2xx answer.
pub async fn put_ok(http: &reqwest::Client, url: &str, body: Vec<u8>) -> Value {
    let (status, v) = put(http, url, body).await;
    assert!((200..300).contains(&status), "PUT {url}: {status}: {v}");
    v
}

/// Reads a file of the shared data.
pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// A real IndexReport under another digest (`manifest_hash` replaced): many images, one content.
pub fn index_report_copy(template: &Value, n: u64) -> (String, Vec<u8>) {
    let digest = format!("sha256:{n:064x}");
    let mut report = template.clone();
    report["manifest_hash"] = Value::String(digest.clone());
    (
        digest,
        serde_json::to_vec(&report).expect("serialising an IndexReport"),
    )
}

/// All notification sets, newest first (following `next`).
pub async fn notification_sets(http: &reqwest::Client, base: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let url = match &after {
            Some(a) => format!("{base}/api/v1/notifications?limit=1000&after={a}"),
            None => format!("{base}/api/v1/notifications?limit=1000"),
        };
        let page = get_json(http, &url).await;
        out.extend(
            page["notifications"]
                .as_array()
                .expect("notifications array")
                .iter()
                .cloned(),
        );
        match page["next"].as_str() {
            Some(n) => after = Some(n.to_string()),
            None => return out,
        }
    }
}

/// One notification entry reduced to what identifies it: manifest, reason, vulnerability name
/// and package name (entry ids are random, so they are left out).
pub type EntryKey = (String, String, String, String);

/// Every entry of a set through Clair's pull API, sorted.
pub async fn set_entries(http: &reqwest::Client, base: &str, id: &str) -> Vec<EntryKey> {
    let mut out = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let mut url = format!("{base}/notifier/api/v1/notification/{id}?page_size=10000");
        if let Some(n) = &next {
            url.push_str(&format!("&next={n}"));
        }
        let page = get_json(http, &url).await;
        for n in page["notifications"].as_array().expect("entries array") {
            let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
            out.push((
                s(&n["manifest"]),
                s(&n["reason"]),
                s(&n["vulnerability"]["name"]),
                s(&n["vulnerability"]["package"]["name"]),
            ));
        }
        match page["page"]["next"].as_str() {
            Some(n) => next = Some(n.to_string()),
            None => break,
        }
    }
    out.sort();
    out
}

/// Polls `check` every 100 ms until it returns `Some`, or panics after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---- the webhook receiver ----------------------------------------------------------------------

/// One webhook request as the receiver saw it.
#[derive(Clone, Debug)]
pub struct Hit {
    /// `notification_id` from the body (empty when the body was not the expected JSON).
    pub id: String,
    /// The raw body.
    pub body: Vec<u8>,
    /// The request headers.
    pub headers: HeaderMap,
    /// When the request arrived.
    pub arrived: Instant,
    /// When the receiver answered; `None` while held, or when the caller went away first.
    pub answered: Option<Instant>,
    /// The status the receiver answered (or was going to answer) with.
    pub status: u16,
}

/// How the receiver answers: the status for the n-th request (1-based) of one notification id.
pub type Answer = Arc<dyn Fn(usize) -> u16 + Send + Sync>;

/// What the receiver does with each request.
#[derive(Clone)]
pub struct Behaviour {
    /// How long to hold each request before answering.
    pub hold: Duration,
    /// The status to answer.
    pub answer: Answer,
    /// Before answering, read the set through the callback and DELETE it, as a Clair client does.
    pub delete_via_callback: bool,
}

impl Behaviour {
    /// Answers 200 at once.
    pub fn ok() -> Self {
        Behaviour {
            hold: Duration::ZERO,
            answer: Arc::new(|_| 200),
            delete_via_callback: false,
        }
    }
}

#[derive(Clone)]
struct ReceiverState {
    hits: Arc<Mutex<Vec<Hit>>>,
    behaviour: Behaviour,
    http: reqwest::Client,
}

/// A webhook receiver on a loopback port, recording every request.
pub struct Receiver {
    /// The URL to configure as `notifier.webhook.target`.
    pub url: String,
    hits: Arc<Mutex<Vec<Hit>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Starts a receiver in the current tokio runtime.
    pub async fn start(behaviour: Behaviour) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the receiver");
        let addr = listener.local_addr().expect("receiver address");
        let hits = Arc::new(Mutex::new(Vec::new()));
        let state = ReceiverState {
            hits: Arc::clone(&hits),
            behaviour,
            http: client(),
        };
        let app = Router::new()
            .route("/hook", post(on_hook))
            .with_state(state);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            url: format!("http://{addr}/hook"),
            hits,
            task,
        }
    }

    /// Every request so far, in arrival order.
    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().map(|h| h.clone()).unwrap_or_default()
    }

    /// Requests per notification id.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for h in self.hits() {
            *m.entry(h.id).or_insert(0) += 1;
        }
        m
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn on_hook(
    State(st): State<ReceiverState>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let id = parsed
        .as_ref()
        .and_then(|v| v["notification_id"].as_str())
        .unwrap_or_default()
        .to_string();
    let (index, nth) = {
        let Ok(mut hits) = st.hits.lock() else {
            return (StatusCode::INTERNAL_SERVER_ERROR, "poisoned");
        };
        let nth = hits.iter().filter(|h| h.id == id).count() + 1;
        hits.push(Hit {
            id: id.clone(),
            body: body.to_vec(),
            headers,
            arrived: Instant::now(),
            answered: None,
            status: (st.behaviour.answer)(nth),
        });
        (hits.len() - 1, nth)
    };
    if st.behaviour.delete_via_callback {
        if let Some(cb) = parsed.as_ref().and_then(|v| v["callback"].as_str()) {
            // A Clair client reads the set, then deletes it.
            let _ = st.http.get(cb).send().await;
            let _ = st.http.delete(cb).send().await;
        }
    }
    tokio::time::sleep(st.behaviour.hold).await;
    let status = (st.behaviour.answer)(nth);
    if let Ok(mut hits) = st.hits.lock() {
        if let Some(h) = hits.get_mut(index) {
            h.answered = Some(Instant::now());
        }
    }
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        "answered",
    )
}

/// A child process killed (and reaped) when dropped: test peers (a real Clair, an emulator, a
/// consumer) never outlive a failed test.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
