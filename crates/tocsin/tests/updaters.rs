//! `tocsin serve` follows feeds itself (`tocsin.updaters`): a real process against a local
//! OSV.dev-layout mirror serving the real crates.io update sequence. The API shows each source's
//! schedule and validators, runs a source on demand, holds a snapshot that would withdraw most
//! records until an operator accepts it (pushed snapshots too, unless forced), exports the
//! updater metrics; `tocsin feed update` and `tocsin feed list` work beside the server.
mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;
use tocsin_testdata::osv_mirror::{read_records, update_steps, OsvMirror};

const NAME: &str = "osv/crates.io";

async fn post(http: &reqwest::Client, url: &str) -> (u16, Value) {
    let r = http.post(url).send().await.expect("POST request");
    let status = r.status().as_u16();
    let text = r.text().await.expect("reading the response");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn updater(http: &reqwest::Client, base: &str) -> Value {
    let all = get_json(http, &format!("{base}/api/v1/updaters")).await;
    all["updaters"]
        .as_array()
        .and_then(|a| a.iter().find(|u| u["name"] == NAME))
        .cloned()
        .unwrap_or(Value::Null)
}

/// A JSON array of OSV records: what a client pushes.
fn json_array(records: &[(String, Vec<u8>)]) -> Vec<u8> {
    let values: Vec<Value> = records
        .iter()
        .map(|(_, b)| serde_json::from_slice(b).expect("a JSON record"))
        .collect();
    serde_json::to_vec(&values).expect("serialising")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_follows_a_mirror() {
    let Some(data) = shared_data() else { return };
    let steps = update_steps("crates.io");
    let mirror = OsvMirror::start().await.expect("mirror");
    mirror
        .publish_path("crates.io", &steps[0])
        .expect("publish");
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "http_listen_addr: 127.0.0.1:{port}\nlog_level: info\ntocsin:\n  data_dir: {:?}\n  \
             process_interval: 200ms\n  updaters:\n    interval: 1h\n    osv: [crates.io]\n    \
             osv_base: {}\n    retries: 1\n    initial_backoff: 10ms\n    withdraw_guard: 50%\n",
            dir.path().join("data").display().to_string(),
            mirror.base_url()
        ),
    )
    .expect("config");
    let http = client();
    let mut server = Server::start(&config, port, &dir.path().join("log"), &[]);
    server.ready().await;
    let base = server.base.clone();
    put_ok(
        &http,
        &format!("{base}/api/v1/manifests/sha256:{:064x}", 1),
        read(&data.join("inventories/cargo/tansu.Cargo.lock")),
    )
    .await;

    // The first run happens by itself, at start.
    let row = eventually(Duration::from_secs(60), "the first scheduled run", || {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let row = updater(&http, &base).await;
            (!row["latest"].is_null() && !row["source"]["last_success"].is_null()).then_some(row)
        }
    })
    .await;
    let source = &row["source"];
    assert_eq!(source["kind"], "osv");
    assert_eq!(
        source["location"],
        format!("{}/crates.io", mirror.base_url())
    );
    assert_eq!(source["interval_seconds"], 3600);
    assert!(source["validator"]["etag"].is_string(), "{row}");
    assert!(source["cursor"].is_string(), "{row}");
    assert!(row["held"].is_null());
    let next: time::OffsetDateTime = time::OffsetDateTime::parse(
        source["next_run"].as_str().expect("next_run"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("an RFC 3339 time");
    assert!(next > time::OffsetDateTime::now_utc() + time::Duration::minutes(55));

    // Run now: nothing changed.
    let run = format!("{base}/api/v1/updaters/{NAME}/run");
    let (status, r) = post(&http, &run).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        (r["outcome"].as_str(), r["requests"].as_u64()),
        (Some("not_modified"), Some(1)),
        "{r}"
    );
    // A new step: read incrementally, imported and processed.
    mirror
        .publish_path("crates.io", &steps[11])
        .expect("publish");
    let (status, r) = post(&http, &run).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        (r["outcome"].as_str(), r["mode"].as_str()),
        (Some("created"), Some("incremental")),
        "{r}"
    );
    assert_eq!(r["processed"].as_array().map(Vec::len), Some(1), "{r}");

    // A broken mirror: held, not processed, shown; accepted by an operator.
    let records = read_records(&steps[11]).expect("records");
    let tenth: Vec<_> = records.iter().step_by(10).cloned().collect();
    mirror
        .publish_records("crates.io", tenth.clone())
        .expect("publish");
    let (status, r) = post(&http, &run).await;
    assert_eq!((status, r["outcome"].as_str()), (200, Some("held")), "{r}");
    let held_ref = r["operation"]["ref"].as_str().expect("a ref").to_string();
    let row = updater(&http, &base).await;
    assert_eq!(row["held"]["operation"]["ref"], held_ref.as_str(), "{row}");
    assert!(row["held"]["reason"]
        .as_str()
        .unwrap_or("")
        .contains("would withdraw"));
    assert_ne!(row["latest"]["ref"], held_ref.as_str());
    let accept = format!("{base}/api/v1/updaters/{NAME}/operations/{held_ref}/accept");
    let (status, r) = post(&http, &accept).await;
    assert_eq!(
        (status, r["outcome"].as_str()),
        (200, Some("accepted")),
        "{r}"
    );
    assert_eq!(r["processed"][0]["operation"], held_ref.as_str(), "{r}");
    let (status, r) = post(&http, &accept).await;
    assert_eq!((status, r["code"].as_str()), (409, Some("conflict")), "{r}");
    let (status, _) = post(
        &http,
        &format!("{base}/api/v1/updaters/{NAME}/operations/not-a-uuid/accept"),
    )
    .await;
    assert_eq!(status, 400);

    // Pushed snapshots meet the same guard, unless forced.
    let snapshot = format!("{base}/api/v1/updaters/{NAME}/snapshot");
    let full = json_array(&records);
    let (status, r) = put(&http, &snapshot, full).await;
    assert_eq!(
        (status, r["outcome"].as_str()),
        (201, Some("created")),
        "{r}"
    );
    let (status, r) = put(&http, &snapshot, json_array(&tenth)).await;
    assert_eq!((status, r["outcome"].as_str()), (202, Some("held")), "{r}");
    assert!(r["held"].as_str().is_some(), "{r}");
    let (status, r) = put(&http, &format!("{snapshot}?force=true"), json_array(&tenth)).await;
    assert_eq!(
        (status, r["outcome"].as_str()),
        (201, Some("created")),
        "{r}"
    );
    assert!(
        updater(&http, &base).await["held"].is_null(),
        "the forced import replaced it"
    );

    // Unknown sources, and the metrics.
    let (status, r) = post(&http, &format!("{base}/api/v1/updaters/osv/go/run")).await;
    assert_eq!(status, 404, "{r}");
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for name in [
        "tocsin_updater_runs_total{",
        "tocsin_updater_last_success_timestamp_seconds{",
        "tocsin_updater_fetch_seconds",
        "tocsin_updater_fetched_bytes_total{",
        "tocsin_updater_held_operations{",
    ] {
        assert!(metrics.contains(name), "{name} missing from:\n{metrics}");
    }
    assert!(metrics.contains("outcome=\"held\""));

    // The command line beside the server: the schedule is shared through the store.
    let cfg = config.to_str().expect("a UTF-8 path");
    let out = run_cli(&["--config", cfg, "feed", "update", NAME]).success();
    assert!(out.contains("osv/crates.io:"), "{out}");
    let out = run_cli(&["--config", cfg, "feed", "list"]).success();
    assert!(
        out.contains("followed sources:") && out.contains("every 3600s"),
        "{out}"
    );
    let err = run_cli(&["--config", cfg, "feed", "update", "osv/nope"]).failure();
    assert!(err.contains("no updater source named"), "{err}");
    server.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_updaters_runs_are_refused_and_pushes_are_not_guarded() {
    let steps = update_steps("crates.io");
    let Some(first) = steps.first() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let config = ConfigSpec::new(port, &dir.path().join("data")).write(&dir.path().join("c.yaml"));
    let http = client();
    let mut server = Server::start(&config, port, &dir.path().join("log"), &[]);
    server.ready().await;
    let base = server.base.clone();
    let (status, r) = post(&http, &format!("{base}/api/v1/updaters/{NAME}/run")).await;
    assert_eq!(status, 404, "{r}");
    assert!(
        r["message"].as_str().unwrap_or("").contains("not followed"),
        "{r}"
    );
    let snapshot = format!("{base}/api/v1/updaters/{NAME}/snapshot");
    let records = read_records(first).expect("records");
    put_ok(&http, &snapshot, json_array(&records)).await;
    let tenth: Vec<_> = records.iter().step_by(10).cloned().collect();
    let (status, r) = put(&http, &snapshot, json_array(&tenth)).await;
    assert_eq!(
        (status, r["outcome"].as_str()),
        (201, Some("created")),
        "push-only as before: {r}"
    );
    let err = run_cli(&["--config", config.to_str().expect("path"), "feed", "update"]).failure();
    assert!(err.contains("no feeds are followed"), "{err}");
    server.terminate();
}
