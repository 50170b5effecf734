//! The API surface as a whole, walked from the router's own route table
//! ([`tocsin_api::routes`], the list [`tocsin_api::app`] is built from): every route is in the
//! OpenAPI document and every documented route is served, with the methods and `Allow` headers
//! the document states; with `auth.psk` every route refuses a request without a valid token
//! (only the probes Clair serves on its unauthenticated introspection listener stay open); and
//! every route bounds what it reads (bodies, request targets, header sections).
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::http::{header, Method, StatusCode};
use common::*;
use tocsin_api::{Access, RouteInfo, TokenVerifier, MAX_HEADER_BYTES, MAX_REQUEST_TARGET};
use tocsin_deliver::jwt::{PskKey, PskSigner, INTRASERVICE_ISSUER};

const HTTP_METHODS: &[&str] = &[
    "get", "put", "post", "delete", "patch", "head", "options", "trace",
];

/// The routes [`tocsin_api::app`] serves.
fn table() -> Vec<RouteInfo> {
    let routes = tocsin_api::routes();
    assert!(
        routes.len() >= 17,
        "the table lists every route: {routes:?}"
    );
    routes
}

fn method(m: &str) -> Method {
    Method::from_bytes(m.to_ascii_uppercase().as_bytes()).expect("method")
}

/// A method none of the table's routes serves, on this route.
fn unserved(route: &RouteInfo) -> Method {
    ["PATCH", "POST", "PUT", "DELETE"]
        .iter()
        .find(|m| !route.methods.contains(m))
        .map(|m| method(m))
        .expect("some method is not served")
}

/// A request as a gRPC client sends it (for the gRPC routes) or a plain one.
fn request(route: &RouteInfo, m: Method, uri: &str) -> axum::http::request::Builder {
    let b = req(m, uri);
    if route.family == Family::Grpc {
        b.header(header::CONTENT_TYPE, "application/grpc")
            .header("te", "trailers")
    } else {
        b
    }
}

fn key() -> PskKey {
    PskKey::from_base64("c3VyZmFjZS10ZXN0LWtleS1ub3QtYS1zZWNyZXQ=").expect("key")
}

fn verifier(key: &PskKey) -> TokenVerifier {
    let key = key.clone();
    let issuers = vec!["quay".to_string(), INTRASERVICE_ISSUER.to_string()];
    Arc::new(move |token: &str| {
        tocsin_deliver::jwt::verify(token, &key, &issuers)
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
}

#[tokio::test]
async fn every_route_is_documented_and_every_documented_route_is_served() {
    let app = TestApp::with(Options {
        metrics: Some(Arc::new(String::new)),
        ..Default::default()
    })
    .await;
    let r = app.get("/openapi.json").await;
    let doc = r.expect(StatusCode::OK);
    assert_eq!(r.content_type(), "application/json");
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    let paths = doc["paths"].as_object().expect("paths object");
    let documented = documented_methods(&doc);
    let routes = table();
    let served: BTreeMap<String, BTreeSet<String>> = routes
        .iter()
        .filter(|r| r.documented())
        .map(|r| {
            let methods = r.methods.iter().map(|m| m.to_ascii_lowercase()).collect();
            (r.path.to_string(), methods)
        })
        .collect();
    assert_eq!(
        documented, served,
        "OpenAPI paths vs the router's route table"
    );
    // Only Clair v3's gRPC service is left out, and the document says it is there.
    for r in routes.iter().filter(|r| !r.documented()) {
        assert_eq!(r.family, Family::Grpc, "{r:?} is missing from the document");
    }
    let description = doc["info"]["description"].as_str().unwrap_or_default();
    assert!(
        description.contains("gRPC NotificationService"),
        "{description}"
    );

    // Security: PSK everywhere but the probes, which say so.
    assert_eq!(doc["security"], serde_json::json!([{ "psk": [] }]));
    for r in routes.iter().filter(|r| r.documented()) {
        for m in r.methods {
            let op = &paths[r.path][m.to_ascii_lowercase()];
            match r.access {
                Access::Open => {
                    assert_eq!(op["security"], serde_json::json!([]), "{m} {}", r.path);
                    assert!(
                        ["/healthz", "/readyz", "/metrics"].contains(&r.path),
                        "only Clair's introspection probes are open: {}",
                        r.path
                    );
                }
                Access::Psk => assert!(op.get("security").is_none(), "{m} {}", r.path),
            }
            // Every refusal any route can answer is documented, in the family's error shape.
            let responses = op["responses"].as_object().expect("responses");
            let mut refusals = vec!["405", "413", "414", "431", "500"];
            if r.access == Access::Psk {
                refusals.push("401");
            }
            // Response components are named by family: `V2…`, `Gateway…`, Clair's unprefixed.
            let in_family = |name: &str| match r.family {
                Family::V2 => name.starts_with("V2"),
                Family::Gateway => name.starts_with("Gateway"),
                _ => !name.starts_with("V2") && !name.starts_with("Gateway"),
            };
            for status in refusals {
                let reference = responses
                    .get(status)
                    .and_then(|v| v["$ref"].as_str())
                    .unwrap_or_else(|| panic!("{m} {} does not document {status}", r.path));
                let name = reference.rsplit('/').next().unwrap_or_default();
                assert!(
                    in_family(name),
                    "{m} {} documents {status} as {name}",
                    r.path
                );
            }
        }
    }

    for r in routes.iter().filter(|r| r.documented()) {
        let uri = concrete(r.path);
        assert_eq!(Family::of_path(&uri), r.family, "{uri}");
        for m in r.methods {
            let reply = app
                .send(
                    request(r, method(m), &uri)
                        .body(Body::empty())
                        .expect("request"),
                )
                .await;
            assert_ne!(
                reply.status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{m} {uri}: {}",
                reply.text()
            );
            let fell_through =
                reply.status == StatusCode::NOT_FOUND && reply.text().contains("no route for");
            assert!(!fell_through, "{m} {uri} is documented but not routed");
        }
        // Other methods: 405 in the family's shape, with exactly the route's methods in `Allow`
        // (HEAD comes with GET), for OPTIONS too.
        let mut allowed: BTreeSet<String> = r.methods.iter().map(|m| m.to_string()).collect();
        if allowed.contains("GET") {
            allowed.insert("HEAD".into());
        }
        for m in [unserved(r), Method::OPTIONS] {
            let reply = app.call(m.clone(), &uri).await;
            reply.expect_family_error(r.family, StatusCode::METHOD_NOT_ALLOWED);
            let allow: BTreeSet<String> = reply
                .headers
                .get(header::ALLOW)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
            assert_eq!(allow, allowed, "Allow of {m} {uri}");
        }
    }
}

/// The README's HTTP API table names the same paths and methods as the document.
#[tokio::test]
async fn the_readme_lists_the_documented_routes() {
    let readme = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"),
    )
    .expect("reading README.md");
    let section = readme
        .split("## HTTP API")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("README has an HTTP API section");
    let mut listed: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for row in section.lines().filter(|l| l.starts_with("| `")) {
        let first_cell = row.split(" | ").next().unwrap_or_default();
        for chunk in first_cell.split('`').skip(1).step_by(2) {
            let Some((methods, path)) = chunk.split_once(' ') else {
                panic!("README route {chunk:?} names no method");
            };
            let path = path.split(['?', '[']).next().unwrap_or_default();
            listed
                .entry(path.to_string())
                .or_default()
                .extend(methods.split('/').map(str::to_ascii_lowercase));
        }
    }
    let app = TestApp::new().await;
    let doc = app.get("/openapi.json").await.expect(StatusCode::OK);
    let documented = documented_methods(&doc);
    assert_eq!(
        listed, documented,
        "README's HTTP API table vs the OpenAPI document"
    );
}

#[tokio::test]
async fn with_a_psk_every_route_and_method_refuses_a_request_without_a_valid_token() {
    let key = key();
    let app = TestApp::with(Options {
        auth: Some(verifier(&key)),
        metrics: Some(Arc::new(|| "# metrics\n".to_string())),
        ..Default::default()
    })
    .await;
    let other = PskKey::from_bytes(b"not the configured key".to_vec()).expect("key");
    let forged = PskSigner::with_issuer(&other, "quay").sign().expect("sign");
    let wrong_issuer = PskSigner::with_issuer(&key, "mallory")
        .sign()
        .expect("sign");
    let good = PskSigner::with_issuer(&key, "quay").sign().expect("sign");
    let mut checked = 0;
    for r in table() {
        let uri = concrete(r.path);
        let mut methods: Vec<Method> = r.methods.iter().map(|m| method(m)).collect();
        if r.family != Family::Grpc {
            // Methods the route does not serve are refused before routing says so.
            methods.push(unserved(&r));
        }
        for m in methods {
            let send = |authorization: Option<String>| {
                let mut b = request(&r, m.clone(), &uri);
                if let Some(a) = authorization {
                    b = b.header(header::AUTHORIZATION, a);
                }
                app.send(b.body(Body::empty()).expect("request"))
            };
            match r.access {
                Access::Psk => {
                    for authorization in [
                        None,
                        Some("Basic dXNlcjpwYXNz".to_string()),
                        Some(format!("Bearer {forged}")),
                        Some(format!("Bearer {wrong_issuer}")),
                        Some("Bearer ".to_string()),
                    ] {
                        let reply = send(authorization.clone()).await;
                        reply.expect_family_error(r.family, StatusCode::UNAUTHORIZED);
                        if r.family != Family::Grpc {
                            assert_eq!(
                                reply.headers.get(header::WWW_AUTHENTICATE),
                                Some(&header::HeaderValue::from_static("Bearer")),
                                "{m} {uri}"
                            );
                        }
                        checked += 1;
                    }
                    let reply = send(Some(format!("Bearer {good}"))).await;
                    assert_ne!(reply.status, StatusCode::UNAUTHORIZED, "{m} {uri}");
                    assert!(reply.headers.get("grpc-status").is_none_or(|s| s != "16"));
                }
                Access::Open => {
                    let reply = send(None).await;
                    assert_ne!(reply.status, StatusCode::UNAUTHORIZED, "{m} {uri}");
                }
            }
        }
    }
    assert!(checked > 100, "{checked} refusals checked");
    // Unknown paths too: nothing is revealed without a token, as Clair guards its whole mux.
    for unknown in [
        "/nope",
        "/api/v2/manifests",
        "/v1/notifications",
        "/api/v1/updaters/x",
    ] {
        app.get(unknown)
            .await
            .expect_family_error(Family::of_path(unknown), StatusCode::UNAUTHORIZED);
    }
}

/// A request body that counts how much of it was read.
struct Counted {
    left: usize,
    read: Arc<AtomicUsize>,
}

const CHUNK: usize = 64 * 1024;

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(CHUNK);
        self.left -= n;
        self.read.fetch_add(n, Ordering::SeqCst);
        Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from(vec![0u8; n])))))
    }
}

#[tokio::test]
async fn no_route_reads_more_of_a_body_than_the_limit() {
    let app = TestApp::new().await;
    for r in table() {
        let uri = concrete(r.path);
        for m in r.methods {
            let read = Arc::new(AtomicUsize::new(0));
            let body = Body::new(Counted {
                left: 4 * MAX_BODY,
                read: Arc::clone(&read),
            });
            let reply = app
                .send(request(&r, method(m), &uri).body(body).expect("request"))
                .await;
            let read = read.load(Ordering::SeqCst);
            assert!(
                read <= MAX_BODY + CHUNK,
                "{m} {uri} read {read} bytes of a body over the limit of {MAX_BODY}"
            );
            if read > 0 && r.family != Family::Grpc {
                reply.expect_family_error(r.family, StatusCode::PAYLOAD_TOO_LARGE);
            }
            if *m == "PUT" {
                let message = reply.expect_family_error(r.family, StatusCode::PAYLOAD_TOO_LARGE);
                assert!(message.contains(&MAX_BODY.to_string()), "{message}");
            }
            // A larger Content-Length is refused before any body byte is read, in the
            // family's shape too.
            let reply = app
                .send(
                    request(&r, method(m), &uri)
                        .header(header::CONTENT_LENGTH, (MAX_BODY + 1).to_string())
                        .body(Body::empty())
                        .expect("request"),
                )
                .await;
            if r.family == Family::Grpc {
                assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE, "{m} {uri}");
            } else {
                reply.expect_family_error(r.family, StatusCode::PAYLOAD_TOO_LARGE);
            }
        }
    }
}

#[tokio::test]
async fn oversized_request_targets_and_header_sections_are_refused_in_each_family_shape() {
    let app = TestApp::new().await;
    for r in table() {
        let uri = concrete(r.path);
        let m = method(r.methods[0]);
        let long = format!("{uri}?pad={}", "x".repeat(MAX_REQUEST_TARGET));
        let reply = app
            .send(
                request(&r, m.clone(), &long)
                    .body(Body::empty())
                    .expect("request"),
            )
            .await;
        reply.expect_family_error(r.family, StatusCode::URI_TOO_LONG);
        let reply = app
            .send(
                request(&r, m.clone(), &uri)
                    .header("x-padding", "x".repeat(MAX_HEADER_BYTES))
                    .body(Body::empty())
                    .expect("request"),
            )
            .await;
        reply.expect_family_error(r.family, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        // Just under both limits is served.
        let fits = format!("{uri}?pad={}", "x".repeat(MAX_REQUEST_TARGET / 2));
        let reply = app
            .send(request(&r, m, &fits).body(Body::empty()).expect("request"))
            .await;
        assert_ne!(reply.status, StatusCode::URI_TOO_LONG, "{uri}");
    }
}

/// Each documented path with the HTTP methods the document gives it.
fn documented_methods(doc: &serde_json::Value) -> BTreeMap<String, BTreeSet<String>> {
    doc["paths"]
        .as_object()
        .expect("paths object")
        .iter()
        .map(|(p, item)| {
            let methods = item
                .as_object()
                .map(|o| {
                    o.keys()
                        .filter(|k| HTTP_METHODS.contains(&k.as_str()))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            (p.clone(), methods)
        })
        .collect()
}
