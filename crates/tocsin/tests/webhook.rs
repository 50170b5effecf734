//! Webhook delivery end to end, through the real binary: the exact body and headers, retries and
//! their recorded attempts, a client that deletes the set through the callback, dead letters, and
//! Clair's `NOTIFIER_TEST_MODE`.
mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{
    client, eventually, get_json, notification_sets, put_ok, read, shared_data, Behaviour,
    ConfigSpec, Receiver, Server,
};
use serde_json::Value;

/// The worker looks for due retries every 5 s, so a retry can take that long to happen.
const RETRY_WAIT: Duration = Duration::from_secs(45);
/// Longer than one worker poll plus the largest backoff: any retry would have happened by then.
const QUIET_PERIOD: Duration = Duration::from_secs(7);

/// A service with a webhook pointing at a receiver, on its own data directory.
struct Setup {
    server: Server,
    receiver: Receiver,
    spec: ConfigSpec,
    http: reqwest::Client,
    _work: tempfile::TempDir,
}

impl Setup {
    async fn start(
        behaviour: Behaviour,
        configure: impl FnOnce(&mut ConfigSpec),
        env: &[(&str, &str)],
    ) -> Setup {
        let work = tempfile::tempdir().expect("temporary directory");
        let receiver = Receiver::start(behaviour).await;
        let port = common::free_port();
        let mut spec = ConfigSpec::new(port, &work.path().join("data"));
        spec.webhook = Some(receiver.url.clone());
        configure(&mut spec);
        let cfg = spec.write(&work.path().join("tocsin.yaml"));
        let mut server = Server::start(&cfg, port, &work.path().join("tocsin.log"), env);
        server.ready().await;
        Setup {
            server,
            receiver,
            spec,
            http: client(),
            _work: work,
        }
    }

    /// Indexes the real tansu Cargo.lock and imports the first real RustSec snapshot: one set.
    async fn create_set(&self, data: &Path) -> String {
        let base = &self.server.base;
        put_ok(
            &self.http,
            &format!("{base}/api/v1/manifests/sha256:{:064x}", 42),
            read(&data.join("inventories/cargo/tansu.Cargo.lock")),
        )
        .await;
        let first = tocsin_testdata::snapshots(data, "crates.io")
            .into_iter()
            .next()
            .expect("a crates.io snapshot");
        put_ok(
            &self.http,
            &format!("{base}/api/v1/updaters/osv/crates.io/snapshot"),
            read(&first),
        )
        .await;
        let sets = notification_sets(&self.http, base).await;
        assert_eq!(sets.len(), 1, "one import, one set: {sets:?}");
        sets[0]["id"].as_str().expect("set id").to_string()
    }

    async fn detail(&self, id: &str) -> Value {
        get_json(
            &self.http,
            &format!("{}/api/v1/notifications/{id}", self.server.base),
        )
        .await
    }

    /// Waits until the set's overall status is `status`, and returns its detail.
    async fn wait_status(&self, id: &str, status: &str) -> Value {
        eventually(RETRY_WAIT, &format!("set {id} {status}"), || async {
            let d = self.detail(id).await;
            (d["notification"]["status"] == status).then_some(d)
        })
        .await
    }

    fn attempts(detail: &Value) -> Vec<Value> {
        detail["attempts"]
            .as_array()
            .expect("attempts array")
            .clone()
    }
}

fn header_values(h: &axum::http::HeaderMap, name: &str) -> Vec<String> {
    h.get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_is_clairs_exact_bytes_and_configured_headers_are_sent() {
    let Some(data) = shared_data() else { return };
    let s = Setup::start(
        Behaviour::ok(),
        |c| {
            c.headers = vec![
                ("X-Clair-Env".into(), vec!["staging".into()]),
                ("Accept-Language".into(), vec!["en".into(), "de".into()]),
            ]
        },
        &[],
    )
    .await;
    let id = s.create_set(&data).await;
    let detail = s.wait_status(&id, "delivered").await;

    let hits = s.receiver.hits();
    assert_eq!(hits.len(), 1, "delivered exactly once: {hits:?}");
    let hit = &hits[0];
    let expected = format!(
        r#"{{"callback":"{}{id}","notification_id":"{id}"}}"#,
        s.spec.callback()
    );
    assert_eq!(String::from_utf8_lossy(&hit.body), expected);
    assert_eq!(
        header_values(&hit.headers, "content-type"),
        ["application/json"]
    );
    assert_eq!(header_values(&hit.headers, "x-clair-env"), ["staging"]);
    assert_eq!(header_values(&hit.headers, "accept-language"), ["en", "de"]);
    assert!(
        header_values(&hit.headers, "user-agent")
            .iter()
            .any(|ua| ua.contains("tocsin")),
        "the User-Agent names the program: {:?}",
        hit.headers
    );
    assert!(
        hit.headers.get("authorization").is_none(),
        "no PSK configured, so no token"
    );

    // The callback in the body is a working pull-API URL for the set.
    let callback = format!("{}{id}", s.spec.callback());
    let page = get_json(&s.http, &format!("{callback}?page_size=1000")).await;
    let entries = page["notifications"].as_array().expect("entries");
    assert_eq!(
        entries.len() as u64,
        detail["notification"]["entries"].as_u64().expect("count")
    );
    assert!(!entries.is_empty());

    let attempts = Setup::attempts(&detail);
    assert_eq!(attempts.len(), 1, "{detail}");
    assert_eq!(attempts[0]["outcome"], "delivered");
    assert_eq!(attempts[0]["status_code"], 200);
    assert_eq!(detail["notification"]["receipts"][0]["attempts"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_attempts_are_retried_and_recorded_until_delivered() {
    let Some(data) = shared_data() else { return };
    let s = Setup::start(
        Behaviour {
            answer: Arc::new(|n| if n <= 2 { 500 } else { 200 }),
            ..Behaviour::ok()
        },
        |_| {},
        &[],
    )
    .await;
    let id = s.create_set(&data).await;
    let detail = s.wait_status(&id, "delivered").await;

    let attempts = Setup::attempts(&detail);
    let codes: Vec<&Value> = attempts.iter().map(|a| &a["status_code"]).collect();
    let outcomes: Vec<&Value> = attempts.iter().map(|a| &a["outcome"]).collect();
    assert_eq!(codes, [500, 500, 200], "{detail}");
    assert_eq!(outcomes, ["failed", "failed", "delivered"], "{detail}");
    for failed in &attempts[..2] {
        assert_eq!(failed["dead_letter"], false, "{detail}");
        assert!(failed["error"].is_string(), "a failure says why: {detail}");
    }
    let receipt = &detail["notification"]["receipts"][0];
    assert_eq!(receipt["status"], "delivered", "{detail}");
    assert_eq!(receipt["attempts"], 3, "{detail}");
    assert!(receipt["delivered_at"].is_string(), "{detail}");
    assert_eq!(s.receiver.counts().get(&id), Some(&3));

    // Delivered means done: no further requests.
    tokio::time::sleep(QUIET_PERIOD).await;
    assert_eq!(s.receiver.counts().get(&id), Some(&3));

    // The metrics the operator watches tell the same story.
    let metrics = s
        .http
        .get(format!("{}/metrics", s.server.base))
        .send()
        .await
        .expect("scraping /metrics")
        .text()
        .await
        .expect("metrics text");
    let value = |series: &str| -> Option<f64> {
        metrics
            .lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    };
    for (series, want) in [
        ("tocsin_imports_total{outcome=\"created\"}", 1.0),
        ("tocsin_update_operations_processed_total", 1.0),
        ("tocsin_processing_seconds_count", 1.0),
        ("tocsin_notification_sets_created_total", 1.0),
        (
            "tocsin_delivery_attempts_total{channel=\"webhook\",outcome=\"failed\"}",
            2.0,
        ),
        (
            "tocsin_delivery_attempts_total{channel=\"webhook\",outcome=\"delivered\"}",
            1.0,
        ),
        ("tocsin_delivery_backlog{state=\"delivered\"}", 1.0),
        ("tocsin_delivery_backlog{state=\"created\"}", 0.0),
        ("tocsin_index_manifests", 1.0),
    ] {
        assert_eq!(value(series), Some(want), "{series} in:\n{metrics}");
    }
    // The index's size figures describe the one manifest: every posting has a key, and the
    // manifest's posting list takes at least a byte per posting.
    let keys = value("tocsin_index_keys").unwrap_or(0.0);
    let postings = value("tocsin_index_postings").unwrap_or(0.0);
    let list_bytes = value("tocsin_index_posting_list_bytes").unwrap_or(0.0);
    assert!(keys >= 1.0, "tocsin_index_keys in:\n{metrics}");
    assert!(postings >= keys, "tocsin_index_postings in:\n{metrics}");
    assert!(
        list_bytes >= postings,
        "tocsin_index_posting_list_bytes in:\n{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_the_client_deleted_through_the_callback_is_never_delivered_again() {
    let Some(data) = shared_data() else { return };
    // The client reads and deletes the set, then answers 500: were the deletion ignored, the
    // failure would be retried.
    let s = Setup::start(
        Behaviour {
            answer: Arc::new(|_| 500),
            delete_via_callback: true,
            ..Behaviour::ok()
        },
        |_| {},
        &[],
    )
    .await;
    let id = s.create_set(&data).await;
    s.wait_status(&id, "deleted").await;
    eventually(Duration::from_secs(10), "the webhook answered", || async {
        s.receiver
            .hits()
            .iter()
            .any(|h| h.answered.is_some())
            .then_some(())
    })
    .await;
    tokio::time::sleep(QUIET_PERIOD).await;
    assert_eq!(
        s.receiver.counts().get(&id),
        Some(&1),
        "a deleted set was delivered again"
    );
    let detail = s.detail(&id).await;
    assert_eq!(detail["notification"]["status"], "deleted", "{detail}");
    let r = s
        .http
        .get(format!("{}{id}", s.spec.callback()))
        .send()
        .await
        .expect("GET the deleted set");
    assert_eq!(r.status(), 404, "a deleted set is gone from the pull API");
    let r = s
        .http
        .delete(format!("{}{id}", s.spec.callback()))
        .send()
        .await
        .expect("DELETE again");
    assert_eq!(r.status(), 404, "deleting twice is a 404");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanently_failing_receiver_ends_in_dead_letter() {
    let Some(data) = shared_data() else { return };
    let s = Setup::start(
        Behaviour {
            answer: Arc::new(|_| 500),
            ..Behaviour::ok()
        },
        |c| c.delivery = vec![("dead_letter_after".into(), "1s".into())],
        &[],
    )
    .await;
    let id = s.create_set(&data).await;
    let detail = s.wait_status(&id, "dead_letter").await;
    let attempts = Setup::attempts(&detail);
    let last = attempts.last().expect("attempts were recorded");
    assert_eq!(last["outcome"], "failed", "{detail}");
    assert_eq!(last["dead_letter"], true, "{detail}");
    assert_eq!(last["status_code"], 500, "{detail}");
    let receipt = &detail["notification"]["receipts"][0];
    assert_eq!(receipt["status"], "dead_letter", "{detail}");
    assert_eq!(receipt["attempts"], attempts.len(), "{detail}");
    let sent = s.receiver.counts()[&id];
    assert_eq!(
        sent,
        attempts.len(),
        "every request was recorded as an attempt"
    );

    // A dead letter is final.
    tokio::time::sleep(QUIET_PERIOD).await;
    assert_eq!(s.receiver.counts()[&id], sent, "a dead letter was retried");
    let listed = get_json(
        &s.http,
        &format!("{}/api/v1/notifications?status=dead_letter", s.server.base),
    )
    .await;
    assert_eq!(listed["notifications"][0]["id"], id.as_str(), "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_mode_creates_and_delivers_test_sets() {
    // No shared data needed: test mode makes up its own sets.
    let s = Setup::start(
        Behaviour::ok(),
        |c| c.notifier = vec![("poll_interval".into(), "1s".into())],
        &[("NOTIFIER_TEST_MODE", "1")],
    )
    .await;
    let sets = eventually(
        Duration::from_secs(30),
        "two delivered test sets",
        || async {
            let sets = notification_sets(&s.http, &s.server.base).await;
            let delivered: Vec<Value> = sets
                .into_iter()
                .filter(|x| x["status"] == "delivered")
                .collect();
            (delivered.len() >= 2).then_some(delivered)
        },
    )
    .await;
    let counts = s.receiver.counts();
    for set in &sets {
        let id = set["id"].as_str().expect("set id");
        assert_eq!(set["updater"], "test-updater", "{set}");
        assert!(set["operation"].is_null(), "{set}");
        assert_eq!(set["entries"], 1, "{set}");
        assert_eq!(counts.get(id), Some(&1), "set {id} delivered once");
        let page = get_json(
            &s.http,
            &format!("{}/notifier/api/v1/notification/{id}", s.server.base),
        )
        .await;
        let entries = page["notifications"].as_array().expect("entries");
        assert_eq!(entries.len(), 1, "{page}");
        let e = &entries[0];
        assert_eq!(e["reason"], "added", "{page}");
        assert_eq!(e["vulnerability"]["name"], "test-vulnerability", "{page}");
        assert_eq!(
            e["vulnerability"]["description"],
            "this vulnerability indicates you are running the notifier in test mode.",
            "{page}"
        );
        assert!(
            e["manifest"]
                .as_str()
                .is_some_and(|m| m.starts_with("sha256:") && m.len() == 71),
            "{page}"
        );
    }
}
