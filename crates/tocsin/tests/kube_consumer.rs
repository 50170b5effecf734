//! `tocsin kube` end to end: a real `tocsin serve` indexes two real images and imports the real
//! Debian update sequence; its webhooks go to a real `tocsin kube`, which talks to a Kubernetes
//! API emulator (kmock 0.8 from PyPI, `tests/kube/emulator.py`, installed by
//! `scripts/kmock.sh`) seeded with the workloads of a small cluster. The events recorded are
//! read back from the emulator and compared with what each image is affected by (tocsin's own
//! vulnerability reports), workload by workload, and again with kubectl where it is installed.
//!
//! The cluster, namespace `shop` watched (`--namespace shop`):
//! - Deployment `web` → ReplicaSet → two pods running the Debian 10 image (container statuses'
//!   `imageID`): one workload, so one event per vulnerability;
//! - CronJob `backup` → Job → a pod not started yet, its spec pinning the image by digest;
//! - DaemonSet `agent`: the image as an init container;
//! - a bare pod `lonely` running the image: its own workload;
//! - StatefulSet `db` running the PostgreSQL image;
//! - a pod in namespace `other` running the Debian image: not watched, no events;
//! - Deployment `reports` → ReplicaSet → a pod not started yet, running the PostgreSQL image by
//!   tag: matched through the manifest's `image` label (`--tag-label image`);
//! - a bare pod `moved` running that tag, started on another digest: no events.
//!
//! Without python 3.11 (kmock needs it) the test skips with a message; under `CI=true` it fails.
mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use sha2::Digest as _;

type Fact = (String, String, String, String);

/// The tag the PostgreSQL manifest is labelled with, and a workload runs it by.
const POSTGRES_TAG: &str = "registry.example/db/postgres:15";
const JACKSON: &str = "sha256:0194e59b0b159c8182f2d382953a61d169aa285fe847121f8fc59e7c5a47791a";

fn skip(why: &str) {
    assert!(
        !tocsin_store_postgres::testing::in_ci(),
        "the kube consumer test cannot run under CI=true: {why}"
    );
    eprintln!("skipping the kube consumer test: {why}");
}

fn meta(name: &str, namespace: &str, owner: Option<(&str, &str, &str)>) -> Value {
    let mut m =
        json!({"name": name, "namespace": namespace, "uid": format!("uid-{namespace}-{name}")});
    if let Some((api_version, kind, owner_name)) = owner {
        m["ownerReferences"] = json!([{"apiVersion": api_version, "kind": kind, "name": owner_name,
            "uid": format!("uid-{namespace}-{owner_name}"), "controller": true}]);
    }
    m
}

fn pod(
    name: &str,
    namespace: &str,
    owner: Option<(&str, &str, &str)>,
    spec: Value,
    status: Value,
) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta(name, namespace, owner),
        "spec": spec, "status": status})
}

fn running(image: &str, digest: &str) -> (Value, Value) {
    (
        json!({"containers": [{"name": "app", "image": image}]}),
        json!({"containerStatuses": [{"name": "app", "image": image, "ready": true,
            "restartCount": 0, "imageID": format!("docker-pullable://{image}@{digest}")}]}),
    )
}

fn cluster(postgres: &str) -> Vec<Value> {
    let object = |api_version: &str, kind: &str, name: &str, owner: Option<(&str, &str, &str)>| json!({"apiVersion": api_version, "kind": kind, "metadata": meta(name, "shop", owner)});
    let (spec, status) = running("registry.example/shop/jackson", JACKSON);
    let (db_spec, db_status) = running("registry.example/db/postgres", postgres);
    vec![
        object("apps/v1", "Deployment", "web", None),
        object(
            "apps/v1",
            "ReplicaSet",
            "web-7d4",
            Some(("apps/v1", "Deployment", "web")),
        ),
        pod(
            "web-7d4-a",
            "shop",
            Some(("apps/v1", "ReplicaSet", "web-7d4")),
            spec.clone(),
            status.clone(),
        ),
        pod(
            "web-7d4-b",
            "shop",
            Some(("apps/v1", "ReplicaSet", "web-7d4")),
            spec.clone(),
            status.clone(),
        ),
        object("batch/v1", "CronJob", "backup", None),
        object(
            "batch/v1",
            "Job",
            "backup-29",
            Some(("batch/v1", "CronJob", "backup")),
        ),
        pod(
            "backup-29-x",
            "shop",
            Some(("batch/v1", "Job", "backup-29")),
            json!({"containers": [{"name": "backup",
                "image": format!("registry.example/shop/jackson:1@{JACKSON}")}]}),
            json!({"phase": "Pending"}),
        ),
        object("apps/v1", "DaemonSet", "agent", None),
        pod(
            "agent-x",
            "shop",
            Some(("apps/v1", "DaemonSet", "agent")),
            json!({"initContainers": [{"name": "init", "image": "registry.example/shop/jackson"}],
                "containers": [{"name": "agent", "image": "busybox"}]}),
            json!({"initContainerStatuses": [{"name": "init", "image": "registry.example/shop/jackson",
                "ready": true, "restartCount": 0,
                "imageID": format!("registry.example/shop/jackson@{JACKSON}")}]}),
        ),
        pod("lonely", "shop", None, spec.clone(), status.clone()),
        object("apps/v1", "StatefulSet", "db", None),
        pod(
            "db-0",
            "shop",
            Some(("apps/v1", "StatefulSet", "db")),
            db_spec,
            db_status,
        ),
        pod("stray", "other", None, spec, status),
        // Runs the PostgreSQL image by tag and has not started: no digest is known, so it is
        // matched through the manifest's `image` label (`--tag-label image`).
        object("apps/v1", "Deployment", "reports", None),
        object(
            "apps/v1",
            "ReplicaSet",
            "reports-5c",
            Some(("apps/v1", "Deployment", "reports")),
        ),
        pod(
            "reports-5c-q",
            "shop",
            Some(("apps/v1", "ReplicaSet", "reports-5c")),
            json!({"containers": [{"name": "report", "image": POSTGRES_TAG}]}),
            json!({"phase": "Pending", "containerStatuses": [{"name": "report",
                "image": POSTGRES_TAG, "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ContainerCreating"}}}]}),
        ),
        // The same by tag, but started on a digest that is not the labelled manifest's (the
        // tag has moved since): not affected.
        pod(
            "moved",
            "shop",
            None,
            json!({"containers": [{"name": "report", "image": POSTGRES_TAG}]}),
            json!({"containerStatuses": [{"name": "report", "image": POSTGRES_TAG,
                "imageID": format!("{POSTGRES_TAG}@sha256:{}", "7".repeat(64)),
                "ready": true, "restartCount": 0}]}),
        ),
    ]
}

/// (workload kind, workload name, reason, vulnerability) of every event in the emulator, and
/// how many event objects there are. Events name the package as the notification does (the
/// source package, for Debian) and reports name binary packages, so packages are not compared;
/// every event of a v4 notification must name one (v2/v3 notifications name none).
async fn events(http: &reqwest::Client, emulator: &str) -> (BTreeSet<Fact>, usize) {
    facts(&get_json(http, &format!("{emulator}/apis/events.k8s.io/v1/events")).await)
}

/// [`events`] of an event list.
fn facts(list: &Value) -> (BTreeSet<Fact>, usize) {
    let items = list["items"].as_array().cloned().unwrap_or_default();
    let text = |v: &Value| v.as_str().unwrap_or("").to_string();
    let set = items
        .iter()
        .map(|e| {
            let a = &e["metadata"]["annotations"];
            // v4 entries name a package; v2/v3 notifications name none (and the note says so
            // by not naming one).
            let package = text(&a["tocsin.dev/package"]);
            assert_eq!(
                package.is_empty(),
                !text(&e["note"]).contains(" in package "),
                "{e}"
            );
            (
                text(&e["regarding"]["kind"]),
                text(&e["regarding"]["name"]),
                text(&e["reason"]),
                text(&a["tocsin.dev/vulnerability"]),
            )
        })
        .collect();
    (set, items.len())
}

/// The vulnerabilities tocsin's vulnerability report names for `digest`.
async fn affected(http: &reqwest::Client, base: &str, digest: &str) -> BTreeSet<String> {
    let report = get_json(
        http,
        &format!("{base}/matcher/api/v1/vulnerability_report/{digest}"),
    )
    .await;
    report["package_vulnerabilities"]
        .as_object()
        .into_iter()
        .flatten()
        .flat_map(|(_, ids)| ids.as_array().cloned().unwrap_or_default())
        .map(|id| {
            report["vulnerabilities"][id.as_str().unwrap_or("")]["name"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

/// Which of Clair's notification APIs `tocsin serve` and the consumer speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Generation {
    /// v4: webhooks to `POST /clair/v4`, pages through the callback, `DELETE` at the end.
    V4,
    /// v2/v3: webhooks to `POST /clair`, pages through the v3 gRPC API, marked read at the end.
    V3,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_land_on_the_workloads_that_run_affected_images() {
    end_to_end(Generation::V4).await;
}

/// The same through Clair v2/v3's webhook and tocsin's v3 gRPC API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_v3_webhooks_paged_through_grpc_land_the_same_events() {
    end_to_end(Generation::V3).await;
}

async fn end_to_end(generation: Generation) {
    let Some(data) = shared_data() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let status = read(&data.join("inventories/dpkg/postgresql.status"));
    let postgres = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&status)));
    let Some((_emulator, url)) = kube::emulator(dir.path(), &cluster(&postgres), skip) else {
        return;
    };
    let http = client();

    // tocsin serve, its webhooks to the consumer.
    let (port, kport) = (free_port(), free_port());
    let mut spec = ConfigSpec::new(port, &dir.path().join("tocsin"));
    spec.disable_summary = true;
    let config = dir.path().join("t.yaml");
    match generation {
        Generation::V4 => {
            spec.webhook = Some(format!("http://127.0.0.1:{kport}/clair/v4"));
            spec.write(&config);
        }
        Generation::V3 => {
            // Clair v2's notifier section, as a v2 config file has it.
            let legacy = format!(
                "clair:\n  notifier:\n    attempts: 3\n    renotifyinterval: 2h\n    http:\n      \
                 endpoint: http://127.0.0.1:{kport}/clair\n"
            );
            std::fs::write(&config, spec.yaml() + &legacy).expect("the configuration");
        }
    }
    let mut tocsin = Server::start(&config, port, &dir.path().join("tocsin.log"), &[]);
    tocsin.ready().await;
    put_ok(
        &http,
        &format!("{}/api/v1/manifests/{JACKSON}", tocsin.base),
        read(&data.join("inventories/clair/indexreport-buster-jackson-databind.json")),
    )
    .await;
    put_ok(
        &http,
        &format!(
            "{}/api/v1/manifests/{postgres}?distribution=debian:10&label=image={POSTGRES_TAG}",
            tocsin.base
        ),
        status,
    )
    .await;

    // The consumer.
    let kubeconfig = kube::kubeconfig(dir.path(), &url);
    let base = tocsin.base.clone();
    let start_consumer = |page_size: &str| {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.path().join("kube.log"))
            .expect("log");
        let consumer = Killed(
            tocsin_command()
                .args(["kube", "--namespace", "shop", "--skip-permission-check"])
                .args(["--tag-label", "image"])
                .args(["--page-size", page_size])
                .args(["--listen", &format!("127.0.0.1:{kport}")])
                .args(match generation {
                    Generation::V4 => vec![],
                    Generation::V3 => vec!["--clair-v3".to_string(), base.clone()],
                })
                .arg("--state-dir")
                .arg(dir.path().join("state"))
                .env("KUBECONFIG", &kubeconfig)
                .env_remove("KUBERNETES_SERVICE_HOST")
                .stderr(log)
                .spawn()
                .expect("tocsin kube"),
        );
        async move {
            kube::healthy(kport).await;
            consumer
        }
    };
    let mut consumer = start_consumer("1").await;

    let workloads_of = |digest: &str| -> Vec<(&str, &str)> {
        if digest == JACKSON {
            vec![
                ("Deployment", "web"),
                ("CronJob", "backup"),
                ("DaemonSet", "agent"),
                ("Pod", "lonely"),
            ]
        } else {
            vec![("StatefulSet", "db"), ("Deployment", "reports")]
        }
    };
    let mut found: BTreeSet<Fact> = BTreeSet::new();
    let mut before: Vec<BTreeSet<String>> = vec![BTreeSet::new(), BTreeSet::new()];
    let steps = tocsin_testdata::snapshots(&data, "debian");
    // Two steps; in the first, the consumer (one entry a page, each event creation slowed to
    // 50 ms) is killed (SIGKILL) once it has recorded part of the notification, and started
    // again with larger pages.
    for (i, step) in steps.iter().take(2).enumerate() {
        put_ok(
            &http,
            &format!("{}/api/v1/updaters/osv/debian/snapshot", tocsin.base),
            read(step),
        )
        .await;
        // What each image is affected by now; the events a step adds are its differences.
        let mut expected = found.clone();
        for (k, digest) in [JACKSON, postgres.as_str()].into_iter().enumerate() {
            let now = affected(&http, &tocsin.base, digest).await;
            for (reason, vulns) in [
                ("VulnerabilityFound", now.difference(&before[k])),
                ("VulnerabilityResolved", before[k].difference(&now)),
            ] {
                for vuln in vulns {
                    for (kind, name) in workloads_of(digest) {
                        expected.insert((kind.into(), name.into(), reason.into(), vuln.clone()));
                    }
                }
            }
            before[k] = now;
        }
        if i == 0 {
            eventually(
                Duration::from_secs(60),
                "the consumer starts recording",
                || {
                    let (http, url, found) = (http.clone(), url.clone(), found.clone());
                    async move { (events(&http, &url).await.0 != found).then_some(()) }
                },
            )
            .await;
            drop(consumer);
            let recorded = events(&http, &url).await.0.difference(&found).count();
            let pending = std::fs::read_dir(dir.path().join("state"))
                .map(|d| d.count())
                .unwrap_or(0);
            eprintln!(
                "step {i}: killed the consumer after {recorded} of {} events, {pending} \
                 notification(s) accepted and not acknowledged",
                expected.len()
            );
            assert!(
                recorded > 0 && recorded < expected.len(),
                "killed mid-notification"
            );
            // v4: one notification set; v2/v3: one notification per changed vulnerability.
            assert!(pending >= 1, "checkpoints are on disk");
            if generation == Generation::V4 {
                assert_eq!(pending, 1, "its checkpoint is on disk");
            }
            consumer = start_consumer("7").await;
        }
        let (got, objects) = eventually(
            Duration::from_secs(90),
            "the consumer records the step's events",
            || {
                let (http, url, expected) = (http.clone(), url.clone(), expected.clone());
                let log = dir.path().join("kube.log");
                async move {
                    let (got, n) = events(&http, &url).await;
                    if got != expected {
                        let log = std::fs::read_to_string(&log).unwrap_or_default();
                        let tail: Vec<&str> = log.lines().rev().take(3).collect();
                        eprintln!(
                            "so far {} of {} events; missing {:?}; unexpected {:?}; the \
                             consumer's log ends {tail:?}",
                            got.len(),
                            expected.len(),
                            expected.difference(&got).take(3).collect::<Vec<_>>(),
                            got.difference(&expected).take(3).collect::<Vec<_>>()
                        );
                        tokio::time::sleep(Duration::from_secs(2)).await;
                    }
                    (got == expected).then_some((got, n))
                }
            },
        )
        .await;
        eprintln!(
            "step {i}: {objects} events on {} workloads",
            got.iter().map(|e| &e.1).collect::<BTreeSet<_>>().len()
        );
        assert!(
            got.iter().all(|e| e.1 != "stray"),
            "namespace other is not watched"
        );
        assert!(
            got.iter().all(|e| e.1 != "moved"),
            "a tag that moved does not match"
        );
        found = got;
        if generation == Generation::V3 {
            // Acknowledged: every notification is marked read (its checkpoint goes only
            // after), and tocsin's v2 API says so.
            eventually(
                Duration::from_secs(30),
                "the consumer marks all read",
                || {
                    let state = dir.path().join("state");
                    async move {
                        (std::fs::read_dir(&state).map(|d| d.count()).unwrap_or(0) == 0)
                            .then_some(())
                    }
                },
            )
            .await;
            let names = acknowledged(&dir.path().join("kube.log"));
            assert!(!names.is_empty());
            for name in &names {
                let n = get_json(
                    &http,
                    &format!("{}/v1/notifications/{name}?limit=1", tocsin.base),
                )
                .await;
                assert!(
                    n["Notification"]["Deleted"].is_string(),
                    "{name} is marked read: {n}"
                );
            }
            continue;
        }
        // Acknowledged: every set is gone from the pull API.
        for set in notification_sets(&http, &tocsin.base).await {
            let id = set["id"].as_str().expect("an id");
            let url = format!(
                "{}/notifier/api/v1/notification/{id}?page_size=10",
                tocsin.base
            );
            eventually(Duration::from_secs(30), "the consumer acknowledges", || {
                let (http, url) = (http.clone(), url.clone());
                async move { (http.get(&url).send().await.ok()?.status() == 404).then_some(()) }
            })
            .await;
        }
    }
    assert!(!found.is_empty());
    // Nothing was recorded twice, the killed notification included: no event was aggregated
    // (in these two steps every (workload, vulnerability) pair is found once).
    let list = get_json(&http, &format!("{url}/apis/events.k8s.io/v1/events")).await;
    let repeated: Vec<&Value> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| !e["series"].is_null())
        .collect();
    assert!(repeated.is_empty(), "recorded twice: {repeated:?}");

    // The same webhook again: the notification is gone, nothing is recorded.
    let r = match generation {
        Generation::V4 => {
            let set = &notification_sets(&http, &tocsin.base).await[0];
            let id = set["id"].as_str().expect("an id");
            http.post(format!("http://127.0.0.1:{kport}/clair/v4"))
                .json(&json!({"notification_id": id,
                    "callback": format!("{}/notifier/api/v1/notification/{id}", tocsin.base)}))
        }
        Generation::V3 => {
            let names = acknowledged(&dir.path().join("kube.log"));
            http.post(format!("http://127.0.0.1:{kport}/clair"))
                .json(&json!({"Notification": {"Name": names[0]}}))
        }
    }
    .send()
    .await
    .expect("POST");
    assert_eq!(r.status(), 200);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        events(&http, &url).await.0,
        found,
        "a replayed webhook records nothing"
    );

    // kubectl, an independent client, reads the same events.
    match Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args([
            "get",
            "events.events.k8s.io",
            "--namespace",
            "shop",
            "-o",
            "json",
        ])
        .output()
    {
        Ok(out) => {
            assert!(
                out.status.success(),
                "kubectl: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let list: Value = serde_json::from_slice(&out.stdout).expect("kubectl's JSON");
            assert_eq!(facts(&list).0, found, "kubectl reads the same events");
            eprintln!("kubectl reads the same {} events", found.len());
        }
        Err(e) => eprintln!("kubectl not run ({e}): the events were read over HTTP only"),
    }
    // Its metrics: nothing pending, no lag, and the events it recorded.
    eventually(Duration::from_secs(30), "the lag gauges settle", || {
        let http = http.clone();
        async move {
            let text = http
                .get(format!("http://127.0.0.1:{kport}/metrics"))
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            (text.contains("tocsin_kube_notifications_pending 0")
                && text.contains("tocsin_kube_checkpoint_lag_seconds 0")
                && text.contains(
                    "tocsin_kube_events_total{reason=\"VulnerabilityFound\",outcome=\"created\"}",
                ))
            .then_some(())
        }
    })
    .await;
    drop(consumer);
    tocsin.terminate();
    // The API server never failed a call: a failure here is the emulator's or the consumer's
    // fault and would have hidden behind the retry.
    let log = std::fs::read_to_string(dir.path().join("kube.log")).unwrap_or_default();
    let failed: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("processing a notification failed"))
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
}

/// The notifications the consumer's log says it processed and acknowledged.
fn acknowledged(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("notification processed and acknowledged"))
        .filter_map(|l| {
            let rest = &l[l.find("notification=")? + "notification=".len()..];
            Some(
                rest.split_whitespace()
                    .next()?
                    .trim_matches('"')
                    .to_string(),
            )
        })
        .collect()
}
