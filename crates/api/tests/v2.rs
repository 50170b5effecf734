//! Clair v2's notification API over HTTP, driven by clients that behave like Quay's and Harbor's,
//! on real inventories and consecutive real Debian feed snapshots.
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::http::{header, Method, StatusCode};
use common::*;
use tocsin_engine::{Engine, EngineConfig};
use tocsin_store::Store;
use uuid::Uuid;

/// Copies of the jackson-databind inventory: more than Quay's page size, so streams page.
const COPIES: u64 = 1_100;

/// What a client learned from one notification.
#[derive(Debug, Default)]
struct Seen {
    old: Option<String>,
    new: Option<String>,
    old_layers: Vec<(u64, String)>,
    new_layers: Vec<(u64, String)>,
    pages: usize,
}

async fn names(store: &dyn Store, ops: &[Uuid]) -> Vec<Uuid> {
    let mut out = Vec::new();
    for op in ops {
        out.extend(
            store
                .legacy_notifications(*op)
                .await
                .unwrap()
                .into_iter()
                .map(|n| n.name),
        );
    }
    out
}

fn layers(side: &serde_json::Value) -> Vec<(u64, String)> {
    let ordered: Vec<(u64, String)> = side["OrderedLayersIntroducingVulnerability"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|l| {
                    (
                        l["Index"].as_u64().expect("Index"),
                        l["LayerName"].as_str().expect("LayerName").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let plain: Vec<String> = side["LayersIntroducingVulnerability"]
        .as_array()
        .map(|a| a.iter().map(|l| l.as_str().unwrap().to_string()).collect())
        .unwrap_or_default();
    assert_eq!(
        ordered.iter().map(|(_, n)| n.clone()).collect::<Vec<_>>(),
        plain,
        "both layer lists name the same layers in the same order"
    );
    ordered
}

/// Quay's client: limit=1000, follows `NextPage` until it is absent, checks that no page holds
/// more than the limit and that indexes strictly increase, then DELETEs.
async fn quay(app: &TestApp, name: Uuid) -> Seen {
    const LIMIT: usize = 1000;
    let mut seen = Seen::default();
    let mut page: Option<String> = None;
    loop {
        let uri = match &page {
            Some(t) => format!("/v1/notifications/{name}?limit={LIMIT}&page={t}"),
            None => format!("/v1/notifications/{name}?limit={LIMIT}"),
        };
        let r = app.get(&uri).await;
        assert_eq!(r.content_type(), "application/json;charset=utf-8");
        assert_eq!(r.headers[header::SERVER], "clair");
        let v = r.expect(StatusCode::OK);
        let n = &v["Notification"];
        assert_eq!(n["Name"], name.to_string());
        assert_eq!(n["Limit"], LIMIT);
        assert_eq!(n["Page"].as_str(), page.as_deref(), "Page echoes the token");
        seen.pages += 1;
        for (key, out, vuln) in [
            ("Old", &mut seen.old_layers, &mut seen.old),
            ("New", &mut seen.new_layers, &mut seen.new),
        ] {
            if n[key].is_null() {
                continue;
            }
            let name = n[key]["Vulnerability"]["Name"]
                .as_str()
                .unwrap()
                .to_string();
            assert!(vuln.as_ref().is_none_or(|v| *v == name));
            *vuln = Some(name);
            let got = layers(&n[key]);
            assert!(
                got.len() <= LIMIT,
                "{key}: {} layers on one page",
                got.len()
            );
            for (index, _) in &got {
                if let Some((last, _)) = out.last() {
                    assert!(index > last, "{key}: index {index} after {last}");
                }
            }
            out.extend(got);
        }
        match n["NextPage"].as_str() {
            Some(t) => {
                assert!(!t.is_empty());
                page = Some(t.to_string());
            }
            None => break,
        }
        assert!(seen.pages < 100, "{name}: paging does not end");
    }
    let del = app
        .call(Method::DELETE, &format!("/v1/notifications/{name}"))
        .await;
    assert_eq!(del.status, StatusCode::OK, "{}", del.text());
    assert!(del.body.is_empty());
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quay_like_client_pages_every_notification_and_facts_match_the_change_sets() {
    let Some(data) = data() else { return };
    let (app, ops) = legacy_fixture(&data, COPIES, EngineConfig::default()).await;
    let store = app.engine.store();
    let mut notified = 0;
    let mut both = 0;
    let mut multi_page = 0;
    for op in &ops {
        let cs = store.change_set(*op).await.unwrap().unwrap();
        let legacy = store.legacy_notifications(*op).await.unwrap();
        // One v2 notification per changed vulnerability that names a manifest.
        let expected: Vec<usize> = cs
            .changes
            .iter()
            .enumerate()
            .filter(|(_, c)| !c.old_affected.is_empty() || !c.new_affected.is_empty())
            .map(|(i, _)| i)
            .collect();
        assert_eq!(
            legacy.iter().map(|n| n.change as usize).collect::<Vec<_>>(),
            expected
        );
        for n in legacy {
            let change = &cs.changes[n.change as usize];
            let seen = quay(&app, n.name).await;
            notified += 1;
            if seen.pages > 1 {
                multi_page += 1;
            }
            // Each layer is a manifest the change names: Index is its id, LayerName its digest.
            let layers = |l: &[(u64, String)]| -> Vec<(u64, String)> {
                let mut v = l.to_vec();
                v.sort();
                v
            };
            let named = |ids: &tocsin_model::change::ManifestSet| -> Vec<(u64, String)> {
                ids.iter()
                    .map(|id| (u64::from(id), cs.digest(id).unwrap().to_string()))
                    .collect()
            };
            assert_eq!(layers(&seen.old_layers), named(&change.old_affected));
            assert_eq!(layers(&seen.new_layers), named(&change.new_affected));
            assert_eq!(seen.old.is_some(), change.old.is_some());
            assert_eq!(seen.new.is_some(), change.new.is_some());
            // Index is stable: the same manifest has the same index in Old and New.
            let old: BTreeMap<&String, u64> =
                seen.old_layers.iter().map(|(i, n)| (n, *i)).collect();
            for (i, n) in &seen.new_layers {
                if let Some(o) = old.get(n) {
                    assert_eq!(o, i, "{n}: Index differs between Old and New");
                    both += 1;
                }
            }
            let after = app
                .get(&format!("/v1/notifications/{}?limit=1", n.name))
                .await
                .expect(StatusCode::OK);
            let deleted = after["Notification"]["Deleted"].as_str().expect("Deleted");
            assert!(deleted.parse::<i64>().is_ok(), "{deleted}");
        }
    }
    eprintln!(
        "{notified} v2 notifications, {multi_page} over several pages, {both} manifests in both streams"
    );
    assert!(notified > 0, "the Debian updates notify the buster image");
    assert!(multi_page > 0, "streams longer than 1000 layers page");
    assert!(
        both > 0,
        "changed advisories show the same manifests in Old and New"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harbor_like_client_pages_by_two_and_deletes_with_exactly_200() {
    let Some(data) = data() else { return };
    let (app, ops) = legacy_fixture(&data, COPIES, EngineConfig::default()).await;
    let all = names(app.engine.store().as_ref(), &ops).await;
    let name = all[0];
    let mut page: Option<String> = None;
    let mut indexes: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    let mut pages = 0;
    loop {
        let uri = match &page {
            Some(t) => format!("/v1/notifications/{name}?limit=2&page={t}"),
            None => format!("/v1/notifications/{name}?limit=2"),
        };
        let v = app.get(&uri).await.expect(StatusCode::OK);
        let n = &v["Notification"];
        pages += 1;
        for key in ["Old", "New"] {
            let l = layers(&n[key]);
            assert!(l.len() <= 2);
            indexes
                .entry(key)
                .or_default()
                .extend(l.iter().map(|(i, _)| *i));
        }
        match n["NextPage"].as_str() {
            Some(t) => page = Some(t.to_string()),
            None => break,
        }
    }
    for (key, ix) in &indexes {
        assert!(ix.windows(2).all(|w| w[0] < w[1]), "{key}: {ix:?}");
    }
    let total: usize = indexes.values().map(Vec::len).max().unwrap_or(0);
    assert_eq!(
        pages,
        total.div_ceil(2).max(1),
        "NextPage omitted only at the very end"
    );
    for _ in 0..2 {
        let del = app
            .call(Method::DELETE, &format!("/v1/notifications/{name}"))
            .await;
        assert_eq!(
            del.status,
            StatusCode::OK,
            "DELETE, also repeated, is exactly 200"
        );
        assert!(del.body.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wire_details_errors_and_tokens() {
    let Some(data) = data() else { return };
    let (app, ops) = legacy_fixture(&data, COPIES, EngineConfig::default()).await;
    let all = names(app.engine.store().as_ref(), &ops).await;
    let (a, b) = (all[0], all[1]);

    // Errors: Clair v2's bodies and statuses.
    let r = app.get(&format!("/v1/notifications/{a}")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.text(),
        r#"{"Error":{"Message":"must provide limit query parameter"}}"#
    );
    assert_eq!(r.content_type(), "application/json;charset=utf-8");
    for bad in ["x", "0", "-1"] {
        let r = app.get(&format!("/v1/notifications/{a}?limit={bad}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "limit={bad}");
        assert!(r.json()["Error"]["Message"]
            .as_str()
            .unwrap()
            .starts_with("invalid limit format"));
    }
    let unknown = r#"{"Error":{"Message":"the resource cannot be found"}}"#;
    for name in [Uuid::new_v4().to_string(), "not-a-uuid".to_string()] {
        let r = app.get(&format!("/v1/notifications/{name}?limit=5")).await;
        assert_eq!(
            (r.status, r.text().as_str()),
            (StatusCode::NOT_FOUND, unknown)
        );
        let r = app
            .call(Method::DELETE, &format!("/v1/notifications/{name}"))
            .await;
        assert_eq!(
            (r.status, r.text().as_str()),
            (StatusCode::NOT_FOUND, unknown)
        );
    }

    // The first page of `a`: keys PascalCase, empty fields omitted, times as strings.
    let first = app
        .get(&format!("/v1/notifications/{a}?limit=1"))
        .await
        .expect(StatusCode::OK);
    let n = first["Notification"].as_object().unwrap();
    let keys: BTreeSet<&str> = n.keys().map(String::as_str).collect();
    assert!(
        keys.is_subset(&BTreeSet::from([
            "Name", "Created", "Limit", "NextPage", "Old", "New"
        ])),
        "{keys:?}"
    );
    assert!(n["Created"].as_str().unwrap().parse::<i64>().unwrap() > 1_600_000_000);
    let side = n.get("New").or(n.get("Old")).unwrap();
    let vuln = side["Vulnerability"].as_object().unwrap();
    for k in vuln.keys() {
        assert!(
            [
                "Name",
                "NamespaceName",
                "Description",
                "Link",
                "Severity",
                "Metadata",
                "FixedIn"
            ]
            .contains(&k.as_str()),
            "{k}"
        );
    }
    assert_eq!(vuln["NamespaceName"], "debian:10");
    assert_eq!(vuln["FixedIn"][0]["VersionFormat"], "dpkg");
    let token = n["NextPage"]
        .as_str()
        .expect("more than one layer")
        .to_string();

    // Tokens: bound to their notification, tamper-proof, and valid on another process.
    let r = app
        .get(&format!("/v1/notifications/{b}?limit=1&page={token}"))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert!(r.json()["Error"]["Message"]
        .as_str()
        .unwrap()
        .starts_with("invalid page format"));
    let mut forged = token.clone().into_bytes();
    let mid = forged.len() / 2;
    forged[mid] = if forged[mid] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    let r = app
        .get(&format!("/v1/notifications/{a}?limit=1&page={forged}"))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());

    let here = app
        .get(&format!("/v1/notifications/{a}?limit=1&page={token}"))
        .await
        .expect(StatusCode::OK);
    let path = app.dir().to_path_buf();
    let store: Arc<dyn Store> =
        Arc::new(tocsin_store_sqlite::SqliteStore::open(&path).expect("second process's store"));
    let other = Arc::new(
        Engine::open(store, EngineConfig::default())
            .await
            .expect("second engine"),
    );
    let other_app = tocsin_api::app(tocsin_api::AppState {
        engine: other,
        auth: None,
        metrics: None,
        max_body: MAX_BODY,
        uploads: Default::default(),
        limits: Default::default(),
        updaters: None,
        clair: None,
    });
    let there = send_to(
        &other_app,
        &format!("/v1/notifications/{a}?limit=1&page={token}"),
    )
    .await;
    assert_eq!(
        there, here,
        "another process serves the same page for the token"
    );
}

async fn send_to(router: &axum::Router, uri: &str) -> serde_json::Value {
    use tower::ServiceExt;
    let resp = router
        .clone()
        .oneshot(
            req(Method::GET, uri)
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layer_names_come_from_the_configured_label() {
    let Some(data) = data() else { return };
    const N: u64 = 5;
    let cfg = EngineConfig {
        legacy_layer_label: Some("image".into()),
        ..EngineConfig::default()
    };
    let (app, ops) = legacy_fixture(&data, N, cfg).await;
    let name = names(app.engine.store().as_ref(), &ops).await[0];
    let v = app
        .get(&format!("/v1/notifications/{name}?limit=100"))
        .await
        .expect(StatusCode::OK);
    let n = &v["Notification"];
    let side = if n["New"].is_object() {
        &n["New"]
    } else {
        &n["Old"]
    };
    let got: BTreeSet<String> = layers(side).into_iter().map(|(_, name)| name).collect();
    // Every copy of the image is affected alike: labelled copies show the label, the others
    // their digest.
    let want: BTreeSet<String> = (0..=N)
        .map(|i| match i % 2 {
            0 => format!("registry.example/app:{i}"),
            _ => digest_n(i),
        })
        .collect();
    assert_eq!(got, want);
}
