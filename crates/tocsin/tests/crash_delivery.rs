//! Crash safety of webhook delivery: `tocsin serve` is SIGKILLed while a webhook request is held
//! by a slow receiver, and restarted on the same data directory. Every notification set must be
//! delivered in the end; a set may reach the receiver twice only when it was in flight at a kill
//! (at-least-once), and every other set exactly once.
mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{
    client, eventually, get_json, notification_sets, put_ok, read, shared_data, Behaviour,
    ConfigSpec, Hit, Receiver, Server,
};
use serde_json::Value;

/// How long the receiver holds each request before answering 200.
const HOLD: Duration = Duration::from_millis(1500);
/// How close to a kill an answer may come and still count as "in flight": the service records
/// the attempt only after reading the answer, so a kill just after the answer also loses it.
const ANSWER_MARGIN: Duration = Duration::from_secs(1);

/// Whether `hit` may have been in flight when the service was killed at `kill`.
fn in_flight_at(hit: &Hit, kill: Instant) -> bool {
    hit.arrived < kill && hit.answered.is_none_or(|a| a + ANSWER_MARGIN > kill)
}

/// Imports the real crates.io snapshot under a new updater name: its first operation notifies
/// the tansu manifest of every advisory affecting it, so each call creates one set.
async fn new_set(http: &reqwest::Client, base: &str, snapshot: &[u8], name: &str) -> String {
    let v = put_ok(
        http,
        &format!("{base}/api/v1/updaters/{name}/snapshot"),
        snapshot.to_vec(),
    )
    .await;
    assert_eq!(v["outcome"], "created", "{v}");
    // The answer lists only what this request processed itself, and the background processor
    // may have got there first; the listing knows either way.
    notification_sets(http, base)
        .await
        .iter()
        .find(|s| s["updater"] == name)
        .and_then(|s| s["id"].as_str())
        .unwrap_or_else(|| panic!("importing {name} created no notification set: {v}"))
        .to_string()
}

/// Waits until a request that arrived after `since` has been held for a while without an answer.
async fn wait_for_held_request(receiver: &Receiver, since: Instant) {
    eventually(
        Duration::from_secs(30),
        "a held webhook request",
        || async {
            receiver
                .hits()
                .iter()
                .any(|h| {
                    h.arrived > since && h.answered.is_none() && h.arrived.elapsed() >= HOLD / 3
                })
                .then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_survive_kills_at_least_once_and_exactly_once_when_not_in_flight() {
    let Some(data) = shared_data() else { return };
    let work = tempfile::tempdir().expect("temporary directory");
    let work = work.path();
    let receiver = Receiver::start(Behaviour {
        hold: HOLD,
        ..Behaviour::ok()
    })
    .await;

    let port = common::free_port();
    let mut spec = ConfigSpec::new(port, &work.join("data"));
    spec.webhook = Some(receiver.url.clone());
    // A short lease so that the deliveries a kill interrupted are taken over soon after the
    // restart; it must exceed the delivery timeout, which must exceed the hold.
    spec.delivery = vec![
        ("timeout".into(), "3s".into()),
        ("connect_timeout".into(), "1s".into()),
        ("lease".into(), "4s".into()),
        ("workers".into(), "2".into()),
    ];
    let cfg = spec.write(&work.join("tocsin.yaml"));
    let mut server = Server::start(&cfg, port, &work.join("tocsin.log"), &[]);
    server.ready().await;
    let http = client();
    let lock = read(&data.join("inventories/cargo/tansu.Cargo.lock"));
    put_ok(
        &http,
        &format!("{}/api/v1/manifests/sha256:{:064x}", server.base, 7),
        lock,
    )
    .await;
    let snapshot = read(
        &std::fs::read_dir(data.join("updates/crates.io"))
            .expect("reading updates/crates.io")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.to_string_lossy().ends_with(".tar.gz"))
            .min()
            .expect("a crates.io snapshot"),
    );

    let mut sets = Vec::new();
    let mut kills = Vec::new();
    // Three rounds: sets are created, a kill lands while one is held by the receiver, restart.
    for round in 0..3 {
        let since = Instant::now();
        for i in 0..3 {
            let name = format!("rustsec-{round}-{i}");
            sets.push(new_set(&http, &server.base, &snapshot, &name).await);
        }
        wait_for_held_request(&receiver, since).await;
        server.kill();
        kills.push(Instant::now());
        server.restart();
        server.ready().await;
    }

    // Everything is delivered in the end.
    let listed = eventually(
        Duration::from_secs(90),
        "every set delivered after the kills",
        || async {
            let all = notification_sets(&http, &server.base).await;
            (all.len() == sets.len() && all.iter().all(|s| s["status"] == "delivered"))
                .then_some(all)
        },
    )
    .await;
    let hits = receiver.hits();
    let counts = receiver.counts();
    let callback = spec.callback();
    let mut redelivered = 0;
    for id in &sets {
        assert!(
            listed.iter().any(|s| s["id"] == id.as_str()),
            "set {id} missing from the listing"
        );
        let detail = get_json(&http, &format!("{}/api/v1/notifications/{id}", server.base)).await;
        let receipt = &detail["notification"]["receipts"][0];
        assert_eq!(receipt["channel"], "webhook", "{detail}");
        assert_eq!(receipt["status"], "delivered", "{detail}");
        let attempts = detail["attempts"].as_array().expect("attempts array");
        let last: &Value = attempts
            .last()
            .unwrap_or_else(|| panic!("{id}: no attempt recorded"));
        assert_eq!(last["outcome"], "delivered", "{detail}");
        assert_eq!(last["status_code"], 200, "{detail}");

        let mine: Vec<&Hit> = hits.iter().filter(|h| &h.id == id).collect();
        assert!(!mine.is_empty(), "set {id} never reached the receiver");
        assert!(
            attempts.len() <= mine.len(),
            "set {id}: {} attempts recorded but only {} requests received",
            attempts.len(),
            mine.len()
        );
        // Every request but the last must have been cut short by a kill.
        for h in &mine[..mine.len() - 1] {
            assert!(
                kills.iter().any(|&k| in_flight_at(h, k)),
                "set {id} was delivered {} times though only in-flight sets may be repeated \
                 (counts: {counts:?})",
                mine.len()
            );
        }
        if mine.len() > 1 {
            redelivered += 1;
        }
        let body = format!(r#"{{"callback":"{callback}{id}","notification_id":"{id}"}}"#);
        for h in &mine {
            assert_eq!(String::from_utf8_lossy(&h.body), body, "webhook body");
        }
    }
    // Each kill interrupted a held request, whose set therefore had to be sent again.
    for (n, &k) in kills.iter().enumerate() {
        let cut: Vec<&Hit> = hits
            .iter()
            .filter(|h| h.arrived < k && h.answered.is_none_or(|a| a > k))
            .collect();
        assert!(!cut.is_empty(), "kill {n} interrupted no delivery");
        for h in cut {
            assert!(
                counts[&h.id] >= 2,
                "set {} was in flight at kill {n} but never delivered again",
                h.id
            );
        }
    }
    let per_set: BTreeMap<&String, &usize> = counts.iter().collect();
    eprintln!(
        "{} sets, {} kills, {redelivered} sets redelivered; requests per set: {per_set:?}",
        sets.len(),
        kills.len()
    );
}
