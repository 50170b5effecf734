//! `tocsin kube` against Clair's own v4 notifier: the webhooks Clair sent during the Debian
//! test are given to a consumer talking to kmock's Kubernetes emulator, where a Deployment runs
//! the test image. The consumer pages each notification through Clair's pull API (signed with
//! Clair's PSK, as Quay calls it), records one event per (reason, advisory) of the image, and
//! deletes the notification at Clair; the events must be exactly what Clair's pages name, and
//! Clair's receipts must say each notification was deleted.
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use tocsin_store_postgres::testing::TestDatabase;

use super::{facts, signed, skip, PSK};
use crate::common::*;

/// The emulator's cluster: Deployment `web` → ReplicaSet → a pod running `manifest`.
fn cluster(manifest: &str) -> Vec<Value> {
    let meta = |name: &str, owner: Option<(&str, &str)>| {
        let mut m = json!({"name": name, "namespace": "shop", "uid": format!("uid-{name}")});
        if let Some((kind, owner)) = owner {
            m["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": kind,
                "name": owner, "uid": format!("uid-{owner}"), "controller": true}]);
        }
        m
    };
    vec![
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta("web", None)}),
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": meta("web-1", Some(("Deployment", "web")))}),
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": meta("web-1-a", Some(("ReplicaSet", "web-1"))),
            "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]},
            "status": {"containerStatuses": [{"name": "app", "image": "registry.example/app:1",
                "ready": true, "restartCount": 0,
                "imageID": format!("docker-pullable://registry.example/app@{manifest}")}]}}),
    ]
}

/// (reason, advisory) of every event on Deployment `web`.
async fn events(emulator: &str) -> BTreeSet<(String, String)> {
    let list = get_json(
        &client(),
        &format!("{emulator}/apis/events.k8s.io/v1/events"),
    )
    .await;
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["regarding"]["name"] == "web")
        .map(|e| {
            let text = |v: &Value| v.as_str().unwrap_or("").to_string();
            (
                text(&e["reason"]),
                text(&e["metadata"]["annotations"]["tocsin.dev/vulnerability"]),
            )
        })
        .collect()
}

/// Runs the check on the webhooks Clair sent (`hooks`: their bodies) about `manifest`.
/// `notifier_db` is Clair's notifier database, whose receipts say what was deleted.
pub(crate) async fn consumer_pages_clairs_notifier(
    dir: &Path,
    hooks: &[Value],
    manifest: &str,
    notifier_db: &TestDatabase,
) {
    let dir = dir.join("kube");
    std::fs::create_dir_all(&dir).expect("a directory");
    // What Clair's own pages say, read before the consumer deletes them.
    let mut expected = BTreeSet::new();
    let mut callbacks = Vec::new();
    for hook in hooks {
        let callback = hook["callback"].as_str().expect("a callback").to_string();
        for (m, reason, advisory, _) in facts(&signed(), &callback).await {
            if m == manifest {
                let reason = match reason.as_str() {
                    "added" => "VulnerabilityFound",
                    "removed" => "VulnerabilityResolved",
                    other => panic!("Clair sent reason {other:?}"),
                };
                expected.insert((reason.to_string(), advisory));
            }
        }
        callbacks.push(callback);
    }
    assert!(!expected.is_empty(), "Clair's notifications name the image");

    let Some((_emulator, url)) = kube::emulator(&dir, &cluster(manifest), skip) else {
        return;
    };
    let kubeconfig = kube::kubeconfig(&dir, &url);
    let port = free_port();
    let _consumer = Killed(
        tocsin_command()
            .args(["kube", "--namespace", "shop", "--skip-permission-check"])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--psk", PSK, "--sign-as", "quay", "--page-size", "5"])
            .args(["--psk-issuer", "clair-notifier,quay"])
            // Clair has no manifest labels (its answer to the label lookup is 404): the
            // mapping finds nothing and costs nothing else.
            .args(["--tag-label", "image"])
            .arg("--state-dir")
            .arg(dir.join("state"))
            .env("KUBECONFIG", &kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stderr(std::fs::File::create(dir.join("kube.log")).expect("a log"))
            .spawn()
            .expect("tocsin kube"),
    );
    kube::healthy(port).await;
    let http = client();
    // Clair's webhook bodies, as Clair sent them, signed as Clair's notifier signs them.
    let key = tocsin_deliver::PskKey::from_base64(PSK).expect("the test key");
    for hook in hooks {
        let token = tocsin_deliver::jwt::PskSigner::new(&key)
            .sign()
            .expect("signing");
        let r = http
            .post(format!("http://127.0.0.1:{port}/clair/v4"))
            .bearer_auth(token)
            .json(hook)
            .send()
            .await
            .expect("POST");
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    }
    let log = dir.join("kube.log");
    eventually(
        Duration::from_secs(120),
        "the consumer records what Clair's notifier names",
        || {
            let (url, expected, log) = (url.clone(), expected.clone(), log.clone());
            async move {
                let got = events(&url).await;
                if got != expected {
                    let text = std::fs::read_to_string(&log).unwrap_or_default();
                    eprintln!(
                        "consumer of Clair: {} of {} events; its log ends {:?}",
                        got.len(),
                        expected.len(),
                        text.lines().rev().take(2).collect::<Vec<_>>()
                    );
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                (got == expected).then_some(())
            }
        },
    )
    .await;
    // Deleted at Clair, last. Clair keeps serving a deleted notification's pages until its
    // collector runs, so its receipts say it.
    let ids: BTreeSet<String> = hooks
        .iter()
        .filter_map(|h| h["notification_id"].as_str().map(str::to_string))
        .collect();
    eventually(
        Duration::from_secs(60),
        "the consumer deletes the notifications at Clair",
        || {
            let ids = ids.clone();
            async move {
                let deleted: BTreeSet<String> = notifier_db
                    .query_text(
                        "SELECT notification_id::text FROM receipt WHERE status = 'deleted'",
                    )
                    .await
                    .into_iter()
                    .filter_map(|r| r[0].clone())
                    .collect();
                ids.is_subset(&deleted).then_some(())
            }
        },
    )
    .await;
    eprintln!(
        "tocsin kube paged {} notifications of Clair's notifier: {} events, each deleted at Clair",
        callbacks.len(),
        expected.len()
    );
}
