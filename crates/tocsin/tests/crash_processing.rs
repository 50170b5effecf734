//! Crash safety of update processing: `tocsin serve` is SIGKILLed at many different moments while
//! it reads, imports and processes real feed snapshots, and restarted on the same data directory
//! each time. At the end every update operation must have been processed exactly once, with the
//! same notification sets as a run of the same sequence that never crashed.
//!
//! The inventories are real (a claircore IndexReport of a Debian 10 image, a real Cargo.lock, a
//! real dpkg status file), indexed under hundreds of digests so that processing an import takes a
//! noticeable time in a debug build, which spreads the kills over reading, importing and
//! processing.
mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{
    client, get_json, index_report_copy, notification_sets, put, put_ok, read, set_entries,
    shared_data, ConfigSpec, EntryKey, Server,
};
use serde_json::Value;

/// Copies of the real Debian 10 IndexReport (20 Debian advisories affect it in the first
/// snapshot): the bulk of the processing work.
const INDEX_REPORT_COPIES: u64 = 300;
/// Copies of the real tansu Cargo.lock (963 crates, a dozen RustSec advisories).
const CARGO_LOCK_COPIES: u64 = 40;

/// One snapshot of the sequence: updater name and file.
struct Step {
    updater: &'static str,
    file: PathBuf,
    /// SIGKILL this long after the PUT starts, once per entry, before the PUT that is let finish.
    kills: &'static [u64],
    /// After the first of those kills, SIGKILL the restarted process again this long after it
    /// was started: while it builds its indexes or finishes the interrupted work.
    kill_at_start: Option<u64>,
}

fn snapshot(data: &Path, feed: &str, index: usize) -> PathBuf {
    tocsin_testdata::snapshots(data, feed)
        .get(index)
        .unwrap_or_else(|| panic!("updates/{feed} has no snapshot {index}"))
        .clone()
}

fn steps(data: &Path) -> Vec<Step> {
    let step = |updater, feed, i, kills, kill_at_start| Step {
        updater,
        file: snapshot(data, feed, i),
        kills,
        kill_at_start,
    };
    // Two updaters interleaved, so one processing pass sometimes has work for both; the kill
    // delays sweep from "before the body arrived" to "after the commit".
    vec![
        step("osv/debian", "debian", 0, &[80, 700, 1100], Some(300)),
        step("osv/crates.io", "crates.io", 0, &[150], None),
        step("osv/debian", "debian", 1, &[450, 900], Some(700)),
        step("osv/crates.io", "crates.io", 1, &[], None),
        step("osv/crates.io", "crates.io", 2, &[250], None),
        step("osv/debian", "debian", 2, &[1300], None),
        step("osv/debian", "debian", 3, &[600], Some(1000)),
        step("osv/crates.io", "crates.io", 3, &[], None),
        step("osv/debian", "debian", 4, &[200, 1000], None),
    ]
}

/// Indexes the real inventories under many digests into `dir`, then stops the service cleanly.
async fn build_base(data: &Path, dir: &Path, work: &Path) {
    let port = common::free_port();
    let cfg = ConfigSpec::new(port, dir).write(&work.join("base.yaml"));
    let mut server = Server::start(&cfg, port, &work.join("base.log"), &[]);
    server.ready().await;
    let http = client();
    let inv = data.join("inventories");
    let template: Value = serde_json::from_slice(&read(
        &inv.join("clair/indexreport-buster-jackson-databind.json"),
    ))
    .expect("the IndexReport is JSON");
    for n in 1..=INDEX_REPORT_COPIES {
        let (digest, body) = index_report_copy(&template, n);
        put_ok(
            &http,
            &format!("{}/api/v1/manifests/{digest}", server.base),
            body,
        )
        .await;
    }
    let lock = read(&inv.join("cargo/tansu.Cargo.lock"));
    for n in 1..=CARGO_LOCK_COPIES {
        let digest = format!("sha256:{:064x}", 0x1000_0000 + n);
        put_ok(
            &http,
            &format!("{}/api/v1/manifests/{digest}?label=app=tansu", server.base),
            lock.clone(),
        )
        .await;
    }
    let status = read(&inv.join("dpkg/postgresql.status"));
    put_ok(
        &http,
        &format!(
            "{}/api/v1/manifests/sha256:{:064x}?distribution=debian:10",
            server.base, 0x2000_0000u64
        ),
        status,
    )
    .await;
    server.terminate();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("creating a data directory");
    for e in std::fs::read_dir(from).expect("reading the base data directory") {
        let e = e.expect("directory entry");
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copying the base data directory");
        }
    }
}

/// What a run left behind, keyed by content rather than by random ids.
#[derive(Debug, PartialEq)]
struct RunResult {
    /// Per updater, the fingerprints of its update operations, oldest first.
    operations: BTreeMap<String, Vec<String>>,
    /// Per (updater, operation fingerprint), the entries of its one notification set.
    sets: BTreeMap<(String, String), Vec<EntryKey>>,
}

/// Reads the outcome of a run and checks the exactly-once invariants that hold for any run: the
/// processed mark is each updater's latest operation, and no operation has two sets.
async fn collect(base: &str) -> RunResult {
    let http = client();
    let updaters = get_json(&http, &format!("{base}/api/v1/updaters")).await;
    let mut operations = BTreeMap::new();
    let mut fingerprint_of: BTreeMap<String, (String, String)> = BTreeMap::new();
    for u in updaters["updaters"].as_array().expect("updaters array") {
        let name = u["name"].as_str().expect("updater name").to_string();
        let latest = u["latest"]["ref"].as_str().expect("latest operation");
        assert_eq!(
            u["processed"].as_str(),
            Some(latest),
            "updater {name}: the processed mark is not the latest operation: {u}"
        );
        let ops = get_json(&http, &format!("{base}/api/v1/updaters/{name}/operations")).await;
        let mut fps = Vec::new();
        for op in ops["operations"]
            .as_array()
            .expect("operations array")
            .iter()
            .rev()
        {
            let fp = op["fingerprint"].as_str().expect("fingerprint").to_string();
            let reference = op["ref"].as_str().expect("operation ref").to_string();
            fingerprint_of.insert(reference, (name.clone(), fp.clone()));
            fps.push(fp);
        }
        operations.insert(name, fps);
    }
    let mut sets = BTreeMap::new();
    for s in notification_sets(&http, base).await {
        let op = s["operation"]
            .as_str()
            .expect("a feed set names its operation");
        let key = fingerprint_of
            .get(op)
            .unwrap_or_else(|| panic!("set {s} names an unknown operation"))
            .clone();
        let id = s["id"].as_str().expect("set id");
        let entries = set_entries(&http, base, id).await;
        assert_eq!(
            entries.len() as u64,
            s["entries"].as_u64().expect("entry count"),
            "set {id}: the pull API and the listing disagree on the entry count"
        );
        if let Some(previous) = sets.insert(key.clone(), entries) {
            panic!(
                "update operation {op} of {} has two notification sets (the other had {} entries)",
                key.0,
                previous.len()
            );
        }
    }
    RunResult { operations, sets }
}

/// Waits until every updater's processed mark is its latest operation.
async fn all_processed(base: &str) -> bool {
    let http = client();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = get_json(&http, &format!("{base}/api/v1/updaters")).await;
        let done = v["updaters"]
            .as_array()
            .expect("updaters array")
            .iter()
            .all(|u| u["processed"] == u["latest"]["ref"]);
        if done {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn operation_count(base: &str) -> u64 {
    let v = get_json(&client(), &format!("{base}/api/v1/updaters")).await;
    v["updaters"]
        .as_array()
        .expect("updaters array")
        .iter()
        .map(|u| u["operations"].as_u64().unwrap_or(0))
        .sum()
}

fn summary(r: &RunResult) -> String {
    r.sets
        .iter()
        .map(|((u, fp), e)| format!("{u} {}: {} entries", &fp[..12], e.len()))
        .collect::<Vec<_>>()
        .join("; ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_update_operation_is_processed_exactly_once_across_kills() {
    let Some(data) = shared_data() else { return };
    let work = tempfile::tempdir().expect("temporary directory");
    let work = work.path();
    let started = Instant::now();

    let base_dir = work.join("base-data");
    build_base(&data, &base_dir, work).await;
    let ref_dir = work.join("reference-data");
    let crash_dir = work.join("crash-data");
    copy_dir(&base_dir, &ref_dir);
    copy_dir(&base_dir, &crash_dir);
    let steps = steps(&data);
    let bodies: Vec<Vec<u8>> = steps.iter().map(|s| read(&s.file)).collect();
    let http = client();

    // The reference: the same sequence, never interrupted.
    let reference = {
        let port = common::free_port();
        let mut spec = ConfigSpec::new(port, &ref_dir);
        spec.disable_summary = true;
        let cfg = spec.write(&work.join("reference.yaml"));
        let mut server = Server::start(&cfg, port, &work.join("reference.log"), &[]);
        server.ready().await;
        for (s, body) in steps.iter().zip(&bodies) {
            let url = format!("{}/api/v1/updaters/{}/snapshot", server.base, s.updater);
            let v = put_ok(&http, &url, body.clone()).await;
            assert_eq!(v["outcome"], "created", "{}: {v}", s.file.display());
        }
        assert!(
            all_processed(&server.base).await,
            "reference run never caught up"
        );
        collect(&server.base).await
    };
    eprintln!(
        "reference run: {} sets ({}), {:?} so far",
        reference.sets.len(),
        summary(&reference),
        started.elapsed()
    );
    assert!(
        reference.sets.len() >= 3,
        "the sequence should notify several times: {}",
        summary(&reference)
    );

    // The crash run.
    let port = common::free_port();
    let mut spec = ConfigSpec::new(port, &crash_dir);
    spec.disable_summary = true;
    let cfg = spec.write(&work.join("crash.yaml"));
    let mut server = Server::start(&cfg, port, &work.join("crash.log"), &[]);
    server.ready().await;
    let (mut kills, mut landed_before_kill, mut pending_at_restart) = (0, 0, 0);
    for (s, body) in steps.iter().zip(&bodies) {
        let url = format!("{}/api/v1/updaters/{}/snapshot", server.base, s.updater);
        let before = operation_count(&server.base).await;
        let mut landed = false;
        for (k, &delay) in s.kills.iter().enumerate() {
            let (c, u, b) = (client(), url.clone(), body.clone());
            // The answer does not matter: the kill may or may not come before it.
            let request = tokio::spawn(async move { c.put(u).body(b).send().await.is_ok() });
            tokio::time::sleep(Duration::from_millis(delay)).await;
            server.kill();
            kills += 1;
            let _ = request.await;
            server.restart();
            if let (0, Some(at_start)) = (k, s.kill_at_start) {
                tokio::time::sleep(Duration::from_millis(at_start)).await;
                server.kill();
                kills += 1;
                server.restart();
            }
            server.ready().await;
            // Whatever the kill interrupted, the restarted service finishes pending work on its
            // own, before anyone asks it to.
            assert!(
                all_processed(&server.base).await,
                "after a kill, pending operations were not processed; log:\n{}",
                server.log_tail()
            );
            if operation_count(&server.base).await > before {
                if !landed {
                    landed_before_kill += 1;
                }
                landed = true;
                if server
                    .log_since_start()
                    .contains("update operation processed")
                {
                    pending_at_restart += 1;
                }
            }
        }
        // The PUT the test is sure of: created, or a no-op when an interrupted one landed.
        let (status, v) = put(&http, &url, body.clone()).await;
        let want = if landed {
            (200, "unchanged")
        } else {
            (201, "created")
        };
        assert_eq!(
            (status, v["outcome"].as_str().unwrap_or_default()),
            want,
            "{}: {v}",
            s.file.display()
        );
    }
    assert!(
        all_processed(&server.base).await,
        "crash run never caught up"
    );
    let crashed = collect(&server.base).await;
    eprintln!(
        "crash run: {kills} kills; a snapshot had landed after {landed_before_kill} of them, \
         {pending_at_restart} times still unprocessed (finished at restart); {} sets; {:?} in all",
        crashed.sets.len(),
        started.elapsed()
    );

    // Nothing lost, nothing duplicated: one operation per snapshot, one set per notifying
    // operation, with the same content as without crashes.
    assert_eq!(
        crashed.operations, reference.operations,
        "the update operations differ from the reference run"
    );
    let keys = |r: &RunResult| r.sets.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        keys(&crashed),
        keys(&reference),
        "the notifying operations differ: crash run {} vs reference {}",
        summary(&crashed),
        summary(&reference)
    );
    for (key, want) in &reference.sets {
        let got = &crashed.sets[key];
        if got != want {
            let missing: Vec<_> = want.iter().filter(|e| !got.contains(e)).take(5).collect();
            let extra: Vec<_> = got.iter().filter(|e| !want.contains(e)).take(5).collect();
            panic!(
                "set of {} operation {}: {} entries vs {} in the reference; missing {missing:?}, \
                 extra {extra:?}",
                key.0,
                key.1,
                got.len(),
                want.len()
            );
        }
    }
}
