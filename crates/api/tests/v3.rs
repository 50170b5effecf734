//! Clair v3's notification API: a gRPC client generated from our own .proto talks to a real
//! listener (HTTP/2 beside HTTP/1.1 on one port), pages both streams, survives a simulated
//! consumer crash by resuming from its saved checkpoint, and the REST gateway answers on the
//! same port. Finally the same real update sequence is read in v2, v3 and v4 form and the facts
//! are compared.
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use axum::http::{Method, StatusCode};
use common::*;
use tocsin_api::v3::pb::clairpb::notification_service_client::NotificationServiceClient as OldClient;
use tocsin_api::v3::pb::coreos::clair::notification_service_client::NotificationServiceClient;
use tocsin_api::v3::pb::coreos::clair::{
    GetNotificationRequest, MarkNotificationAsReadRequest, Notification,
};
use tocsin_engine::projection::V4Options;
use tocsin_engine::EngineConfig;
use tonic::transport::Channel;
use tonic::Code;
use uuid::Uuid;

const COPIES: u64 = 240;

/// Serves the app's router on a loopback port, as `tocsin serve` does.
async fn listen(app: &TestApp) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    listen_router(app.router.clone()).await
}

async fn listen_router(router: axum::Router) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    (addr, stop)
}

async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn request(name: Uuid, limit: i32, old: &str, new: &str) -> GetNotificationRequest {
    GetNotificationRequest {
        old_vulnerability_page: old.to_string(),
        new_vulnerability_page: new.to_string(),
        limit,
        name: name.to_string(),
    }
}

/// Every (index, name) of one stream, paging that stream alone.
async fn page_stream(
    client: &mut NotificationServiceClient<Channel>,
    name: Uuid,
    limit: i32,
    new: bool,
) -> Vec<(i32, String)> {
    let mut out: Vec<(i32, String)> = Vec::new();
    let mut token = String::new();
    for _ in 0..1000 {
        let req = if new {
            request(name, limit, "", &token)
        } else {
            request(name, limit, &token, "")
        };
        let n = client
            .get_notification(req)
            .await
            .unwrap()
            .into_inner()
            .notification
            .unwrap();
        let Some(p) = (if new { n.new } else { n.old }) else {
            return out;
        };
        assert_eq!(p.current_page, token, "current_page echoes the request");
        assert_eq!(p.limit, limit);
        assert!(p.ancestries.len() <= limit as usize);
        for a in p.ancestries {
            if let Some((last, _)) = out.last() {
                assert!(a.index > *last, "index {} after {last}", a.index);
            }
            out.push((a.index, a.name));
        }
        if p.next_page.is_empty() {
            return out;
        }
        token = p.next_page;
    }
    panic!("{name}: paging does not end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_client_pages_both_streams_and_resumes_after_a_crash() {
    let Some(data) = data() else { return };
    let (app, ops) = legacy_fixture(&data, COPIES, EngineConfig::default()).await;
    let (addr, _stop) = listen(&app).await;
    let mut client = NotificationServiceClient::new(channel(addr).await);
    let store = app.engine.store();

    let mut both = 0;
    for op in &ops {
        let cs = store.change_set(*op).await.unwrap().unwrap();
        for n in store.legacy_notifications(*op).await.unwrap() {
            let change = &cs.changes[n.change as usize];
            let old = page_stream(&mut client, n.name, 100, false).await;
            let new = page_stream(&mut client, n.name, 100, true).await;
            let names = |s: &[(i32, String)]| -> BTreeSet<String> {
                s.iter().map(|(_, n)| n.clone()).collect()
            };
            let digests = |ids: &tocsin_model::change::ManifestSet| -> BTreeSet<String> {
                cs.digests(ids)
                    .unwrap()
                    .into_iter()
                    .map(ToString::to_string)
                    .collect()
            };
            assert_eq!(names(&old), digests(&change.old_affected));
            assert_eq!(names(&new), digests(&change.new_affected));
            let old_index: BTreeMap<&String, i32> = old.iter().map(|(i, n)| (n, *i)).collect();
            for (i, name) in &new {
                if let Some(o) = old_index.get(name) {
                    assert_eq!(o, i, "{name}: index differs between old and new");
                    both += 1;
                }
            }
        }
    }
    assert!(
        both > 0,
        "the edited advisory lists manifests in both streams"
    );

    // A consumer (on the older package name) checkpoints the last index it processed and the
    // token of the page after it, then crashes; a new connection resumes from the checkpoint.
    let name = store.legacy_notifications(ops[0]).await.unwrap()[0].name;
    let full = page_stream(&mut client, name, 100, true).await;
    assert!(full.len() > 200, "three pages at limit 100");
    let mut consumer = OldClient::new(channel(addr).await);
    let mut seen: Vec<(i32, String)> = Vec::new();
    let mut token = String::new();
    for _ in 0..2 {
        let p = consumer
            .get_notification(request(name, 100, "", &token))
            .await
            .unwrap()
            .into_inner()
            .notification
            .and_then(|n| n.new)
            .unwrap();
        seen.extend(p.ancestries.into_iter().map(|a| (a.index, a.name)));
        token = p.next_page;
    }
    let checkpoint = (seen.last().map(|(i, _)| *i).unwrap(), token);
    drop(consumer); // the crash

    let mut resumed = OldClient::new(channel(addr).await);
    let mut token = checkpoint.1.clone();
    while !token.is_empty() {
        let p = resumed
            .get_notification(request(name, 100, "", &token))
            .await
            .unwrap()
            .into_inner()
            .notification
            .and_then(|n| n.new)
            .unwrap();
        for a in p.ancestries {
            assert!(a.index > checkpoint.0, "resumed past the checkpoint");
            seen.push((a.index, a.name));
        }
        token = p.next_page;
    }
    assert_eq!(
        seen, full,
        "nothing lost, nothing repeated across the crash"
    );
    resumed
        .mark_notification_as_read(MarkNotificationAsReadRequest {
            name: name.to_string(),
        })
        .await
        .unwrap();
    let again = resumed
        .mark_notification_as_read(MarkNotificationAsReadRequest {
            name: name.to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        again.code(),
        Code::NotFound,
        "marking twice is NOT_FOUND, as in Clair"
    );
    let read = client
        .get_notification(request(name, 1, "", ""))
        .await
        .unwrap()
        .into_inner()
        .notification
        .unwrap();
    assert!(read.deleted.parse::<i64>().is_ok(), "{read:?}");

    // Clair's argument checks.
    for (req, code) in [
        (
            request(name, 10, "", "").tap(|r| r.name.clear()),
            Code::InvalidArgument,
        ),
        (request(name, 0, "", ""), Code::InvalidArgument),
        (request(name, -1, "", ""), Code::InvalidArgument),
        (request(Uuid::new_v4(), 10, "", ""), Code::NotFound),
        (request(name, 10, "bogus", ""), Code::InvalidArgument),
        (
            request(name, 10, "", &checkpoint.1.replace('A', "B")),
            Code::InvalidArgument,
        ),
    ] {
        let err = client.get_notification(req.clone()).await.unwrap_err();
        assert_eq!(err.code(), code, "{req:?}: {err}");
    }
    // A token of one stream is not accepted for the other.
    let err = client
        .get_notification(request(name, 100, &checkpoint.1, ""))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

trait Tap: Sized {
    fn tap(self, f: impl FnOnce(&mut Self)) -> Self;
}

impl<T> Tap for T {
    fn tap(mut self, f: impl FnOnce(&mut Self)) -> Self {
        f(&mut self);
        self
    }
}

/// `tocsin.grpc_listen_addr`: the gRPC service alone on one listener, everything else (the
/// REST gateway included) on the HTTP one, each refusing the other's calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_on_its_own_listener_and_the_gateway_on_http() {
    let Some(data) = data() else { return };
    let (app, ops) = legacy_fixture(&data, 3, EngineConfig::default()).await;
    let name = app
        .engine
        .store()
        .legacy_notifications(ops[0])
        .await
        .unwrap()[0]
        .name;
    let state = || tocsin_api::AppState {
        engine: std::sync::Arc::clone(&app.engine),
        auth: None,
        metrics: None,
        max_body: 1 << 20,
        uploads: Default::default(),
        limits: Default::default(),
        updaters: None,
        clair: None,
    };
    let grpc = tocsin_api::grpc_app(state());
    let http = tocsin_api::http_app(state());
    let (grpc_addr, _g) = listen_router(grpc.clone()).await;
    let (http_addr, _h) = listen_router(http.clone()).await;

    let got = NotificationServiceClient::new(channel(grpc_addr).await)
        .get_notification(request(name, 2, "", ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.notification.unwrap().name, name.to_string());
    let old = OldClient::new(channel(grpc_addr).await)
        .get_notification(request(name, 2, "", ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(old.notification.unwrap().name, name.to_string());
    let refused = NotificationServiceClient::new(channel(http_addr).await)
        .get_notification(request(name, 2, "", ""))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unimplemented, "{refused:?}");
    assert!(
        refused.message().contains("tocsin.grpc_listen_addr"),
        "{refused:?}"
    );

    let gateway = |router: axum::Router| async move {
        use tower::ServiceExt as _;
        let req = axum::http::Request::get(format!("/notifications/{name}?limit=2"))
            .body(axum::body::Body::empty())
            .unwrap();
        router.oneshot(req).await.unwrap().status()
    };
    assert_eq!(gateway(http).await, StatusCode::OK);
    assert_eq!(gateway(grpc).await, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_gateway_snake_case_zero_values_omitted() {
    let Some(data) = data() else { return };
    let (app, ops) = legacy_fixture(&data, 3, EngineConfig::default()).await;
    let name = app
        .engine
        .store()
        .legacy_notifications(ops[0])
        .await
        .unwrap()[0]
        .name;
    let v = app
        .get(&format!("/notifications/{name}?limit=2"))
        .await
        .expect(StatusCode::OK);
    let n = v["notification"].as_object().unwrap();
    let keys: BTreeSet<&str> = n.keys().map(String::as_str).collect();
    assert_eq!(keys, BTreeSet::from(["name", "created", "new"]), "{v}");
    let new = n["new"].as_object().unwrap();
    assert!(
        !new.contains_key("current_page"),
        "empty first-page token omitted"
    );
    assert_eq!(new["limit"], 2);
    assert!(new["ancestries"][0]["index"].as_i64().unwrap() > 0);
    assert_eq!(new["vulnerability"]["namespace_name"], "debian:10");
    assert!(!new["vulnerability"]
        .as_object()
        .unwrap()
        .contains_key("fixed_by"));
    let next = new["next_page"].as_str().unwrap();
    let p2 = app
        .get(&format!(
            "/notifications/{name}?limit=2&new_vulnerability_page={next}"
        ))
        .await
        .expect(StatusCode::OK);
    assert_eq!(p2["notification"]["new"]["current_page"], next);

    let r = app.get(&format!("/notifications/{name}")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "limit is required");
    assert_eq!(r.json()["code"], 3);
    // A field given twice is grpc-gateway's INVALID_ARGUMENT, in its error body (schemathesis
    // found tocsin's own `{"code":"bad-request"}` here).
    let r = app
        .get(&format!("/notifications/{name}?limit=null&limit=null"))
        .await;
    let m = r.expect_family_error(Family::Gateway, StatusCode::BAD_REQUEST);
    assert_eq!(m, r#"too many values for field "limit": null, null"#);
    assert_eq!(r.json()["code"], 3);
    // Parameters that are not fields of the request message (the path's `name` too) are
    // ignored, as grpc-gateway ignores them.
    app.get(&format!(
        "/notifications/{name}?limit=2&name=x&name=y&colour=blue"
    ))
    .await
    .expect(StatusCode::OK);
    // A path that does not decode, and a method the path does not have: still the gateway's.
    app.get("/notifications/%FF")
        .await
        .expect_family_error(Family::Gateway, StatusCode::BAD_REQUEST);
    app.call(Method::PUT, &format!("/notifications/{name}"))
        .await
        .expect_family_error(Family::Gateway, StatusCode::METHOD_NOT_ALLOWED);
    let r = app
        .get(&format!("/notifications/{}?limit=2", Uuid::new_v4()))
        .await;
    assert_eq!(
        (r.status, r.json()["code"].clone()),
        (StatusCode::NOT_FOUND, 5.into())
    );

    let del = app
        .call(Method::DELETE, &format!("/notifications/{name}"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(del, serde_json::json!({}));
    let again = app
        .call(Method::DELETE, &format!("/notifications/{name}"))
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
}

/// (manifest, reason, advisory) facts.
type Facts = BTreeSet<(String, &'static str, String)>;

fn facts_of_streams(
    old: Option<(String, Vec<String>)>,
    new: Option<(String, Vec<String>)>,
    out: &mut Facts,
) {
    let old_set: BTreeSet<String> = old.iter().flat_map(|(_, l)| l.clone()).collect();
    let new_set: BTreeSet<String> = new.iter().flat_map(|(_, l)| l.clone()).collect();
    if let Some((name, _)) = &new {
        for m in new_set.difference(&old_set) {
            out.insert((m.clone(), "added", name.clone()));
        }
    }
    if let Some((name, _)) = &old {
        for m in old_set.difference(&new_set) {
            out.insert((m.clone(), "removed", name.clone()));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_v3_and_v4_tell_the_same_facts_for_one_real_update_sequence() {
    let Some(data) = data() else { return };
    let cfg = EngineConfig {
        v4: V4Options {
            disable_summary: true,
            changed_reason: false,
        },
        ..Default::default()
    };
    let (app, ops) = legacy_fixture(&data, 30, cfg).await;
    let (addr, _stop) = listen(&app).await;
    let mut client = NotificationServiceClient::new(channel(addr).await);
    let store = app.engine.store();
    let (mut v2, mut v3, mut v4) = (Facts::new(), Facts::new(), Facts::new());
    for op in &ops {
        for n in store.legacy_notifications(*op).await.unwrap() {
            // v2, one page of everything.
            let p = app
                .get(&format!("/v1/notifications/{}?limit=10000", n.name))
                .await
                .expect(StatusCode::OK);
            let side = |key: &str| {
                let s = &p["Notification"][key];
                (!s.is_null()).then(|| {
                    let layers = s["LayersIntroducingVulnerability"]
                        .as_array()
                        .map(|a| a.iter().map(|l| l.as_str().unwrap().to_string()).collect())
                        .unwrap_or_default();
                    (
                        s["Vulnerability"]["Name"].as_str().unwrap().to_string(),
                        layers,
                    )
                })
            };
            facts_of_streams(side("Old"), side("New"), &mut v2);
            // v3, one page of everything.
            let n3: Notification = client
                .get_notification(request(n.name, 10_000, "", ""))
                .await
                .unwrap()
                .into_inner()
                .notification
                .unwrap();
            let side3 =
                |s: Option<tocsin_api::v3::pb::coreos::clair::PagedVulnerableAncestries>| {
                    s.map(|s| {
                        (
                            s.vulnerability.unwrap().name,
                            s.ancestries.into_iter().map(|a| a.name).collect(),
                        )
                    })
                };
            facts_of_streams(side3(n3.old), side3(n3.new), &mut v3);
        }
        // v4: the operation's notification set through Clair's pull API.
        let sets = store.notification_sets(None, None, 100).await.unwrap();
        for set in sets.iter().filter(|s| s.operation == Some(*op)) {
            let page = app
                .get(&format!(
                    "/notifier/api/v1/notification/{}?page_size=10000",
                    set.id
                ))
                .await
                .expect(StatusCode::OK);
            for e in page["notifications"].as_array().unwrap() {
                let reason = match e["reason"].as_str().unwrap() {
                    "added" => "added",
                    "removed" => "removed",
                    other => panic!("unexpected reason {other}"),
                };
                v4.insert((
                    e["manifest"].as_str().unwrap().to_string(),
                    reason,
                    e["vulnerability"]["name"].as_str().unwrap().to_string(),
                ));
            }
        }
    }
    eprintln!("{} facts in each form", v4.len());
    assert!(!v4.is_empty());
    assert_eq!(v2, v4, "v2 and v4 disagree");
    assert_eq!(v3, v4, "v3 and v4 disagree");
}
