//! Wire details of the HTTP surface: the Clair v4 pull API's errors, negotiation and deletion
//! (wire reference §2.5), error bodies on every path, auth, health and the OpenAPI document.
mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, StatusCode};
use common::*;
use tocsin_api::TokenVerifier;
use tocsin_deliver::jwt::{PskKey, PskSigner, INTRASERVICE_ISSUER};
use uuid::Uuid;

const PAGE_MEDIA_TYPE: &str = "application/vnd.clair.notification_page.v1+json";

/// An app holding one notification set made by Clair's test mode; returns the set's path.
async fn app_with_set() -> (TestApp, String) {
    let app = TestApp::new().await;
    let id = app.engine.create_test_set().await.expect("test set");
    (app, format!("/notifier/api/v1/notification/{id}"))
}

#[tokio::test]
async fn notification_id_that_is_not_a_uuid_is_a_json_400() {
    let app = TestApp::new().await;
    for id in ["not-a-uuid", "1234", "00000000-0000-0000-0000-00000000000g"] {
        let r = app
            .get(&format!("/notifier/api/v1/notification/{id}"))
            .await;
        let m = r.expect_error(StatusCode::BAD_REQUEST, "bad-request");
        assert!(m.contains(id), "the message names the bad id: {m}");
        let r = app
            .call(
                Method::DELETE,
                &format!("/notifier/api/v1/notification/{id}"),
            )
            .await;
        r.expect_error(StatusCode::BAD_REQUEST, "bad-request");
    }
}

#[tokio::test]
async fn unknown_notification_id_is_a_json_404() {
    let (app, _) = app_with_set().await;
    let r = app
        .get(&format!("/notifier/api/v1/notification/{}", Uuid::new_v4()))
        .await;
    r.expect_error(StatusCode::NOT_FOUND, "not-found");
}

#[tokio::test]
async fn page_size_rules() {
    let (app, path) = app_with_set().await;
    for bad in [
        "-1",
        "-500",
        "abc",
        "1.5",
        "10001",
        "99999999999999999999",
        "1e3",
    ] {
        let r = app.get(&format!("{path}?page_size={bad}")).await;
        let m = r.expect_error(StatusCode::BAD_REQUEST, "bad-request");
        assert!(m.contains("page_size"), "{bad}: {m}");
    }
    for (asked, echoed) in [
        ("0", 500),
        ("", 500),
        ("1", 1),
        ("10000", 10_000),
        ("500", 500),
    ] {
        let page = app
            .get(&format!("{path}?page_size={asked}"))
            .await
            .expect(StatusCode::OK);
        assert_eq!(page["page"]["size"], echoed, "page_size={asked}: {page}");
        assert_eq!(page["notifications"].as_array().map(Vec::len), Some(1));
        assert!(page["page"].get("next").is_none(), "one entry, no next");
    }
    let page = app.get(&path).await.expect(StatusCode::OK);
    assert_eq!(page["page"]["size"], 500);
}

#[tokio::test]
async fn bad_next_tokens_are_400() {
    let (app, path) = app_with_set().await;
    // Not UUID-shaped, and UUID-shaped but never issued by this server.
    for bad in ["nope", "12", &Uuid::new_v4().to_string()] {
        let r = app.get(&format!("{path}?next={bad}")).await;
        let m = r.expect_error(StatusCode::BAD_REQUEST, "bad-request");
        assert!(m.contains("next"), "{bad}: {m}");
    }
}

#[tokio::test]
async fn accept_negotiation() {
    let (app, path) = app_with_set().await;
    let get = |accept: Option<&'static str>| {
        let mut b = req(Method::GET, &path);
        if let Some(a) = accept {
            b = b.header(header::ACCEPT, a);
        }
        b.body(Body::empty()).expect("request")
    };
    for (accept, want) in [
        (None, PAGE_MEDIA_TYPE),
        (Some("*/*"), PAGE_MEDIA_TYPE),
        (Some("application/json"), "application/json"),
        (Some(PAGE_MEDIA_TYPE), PAGE_MEDIA_TYPE),
        (
            Some("text/html, application/json;q=0.9"),
            "application/json",
        ),
        (Some("text/html, */*;q=0.1"), PAGE_MEDIA_TYPE),
    ] {
        let r = app.send(get(accept)).await;
        let page = r.expect(StatusCode::OK);
        assert_eq!(r.content_type(), want, "Accept: {accept:?}");
        assert_eq!(
            page["notifications"][0]["vulnerability"]["name"],
            "test-vulnerability"
        );
    }
    for accept in ["text/html", "application/xml, text/plain"] {
        let r = app.send(get(Some(accept))).await;
        r.expect_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "bad-request");
    }
}

#[tokio::test]
async fn delete_then_gone() {
    let (app, path) = app_with_set().await;
    let r = app.call(Method::DELETE, &path).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(
        r.body.is_empty(),
        "DELETE answers an empty body: {}",
        r.text()
    );
    app.get(&path)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not-found");
    app.call(Method::DELETE, &path)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not-found");
    // The set is still listed, as deleted, in tocsin's own API.
    let id = path.rsplit('/').next().unwrap_or_default();
    let set = app
        .get(&format!("/api/v1/notifications/{id}"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(set["notification"]["status"], "deleted", "{set}");
}

#[tokio::test]
async fn other_methods_are_405_and_unknown_paths_404_in_json() {
    let (app, path) = app_with_set().await;
    for m in [Method::POST, Method::PUT, Method::PATCH] {
        let r = app.call(m.clone(), &path).await;
        r.expect_error(StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed");
    }
    // The set is untouched by the refused calls.
    app.get(&path).await.expect(StatusCode::OK);
    for unknown in [
        "/nope",
        "/notifier/api/v1/notification",
        "/notifier/api/v1/notification/a/b",
        "/api/v2/manifests",
    ] {
        let r = app.get(unknown).await;
        let m = r.expect_error(StatusCode::NOT_FOUND, "not-found");
        assert!(m.contains(unknown), "{m}");
    }
}

#[tokio::test]
async fn health_and_readiness() {
    let app = TestApp::new().await;
    let r = app.get("/healthz").await;
    assert_eq!((r.status, r.text().trim()), (StatusCode::OK, "ok"));
    let r = app.get("/readyz").await;
    assert_eq!((r.status, r.text().trim()), (StatusCode::OK, "ready"));
    // Without a metrics recorder, /metrics says so in Clair's error body.
    app.get("/metrics")
        .await
        .expect_error(StatusCode::NOT_FOUND, "not-found");
}

/// A verifier built as the binary builds it from `auth.psk` (crates/tocsin/src/main.rs).
fn verifier(key: &PskKey, configured: &[&str]) -> TokenVerifier {
    let key = key.clone();
    let mut issuers: Vec<String> = configured.iter().map(|s| s.to_string()).collect();
    issuers.push(INTRASERVICE_ISSUER.to_string());
    Arc::new(move |token: &str| {
        tocsin_deliver::jwt::verify(token, &key, &issuers)
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
}

#[tokio::test]
async fn psk_auth_guards_the_api_but_not_probes() {
    let key = PskKey::from_base64("c2VjcmV0LWtleS1mb3ItdG9jc2luLXRlc3Rz").expect("key");
    let app = TestApp::with(Options {
        auth: Some(verifier(&key, &["quay"])),
        metrics: Some(Arc::new(|| "# tocsin test metrics\n".to_string())),
        ..Default::default()
    })
    .await;
    let id = app.engine.create_test_set().await.expect("test set");
    let path = format!("/notifier/api/v1/notification/{id}");
    let with = |token: &str| {
        req(Method::GET, &path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .expect("request")
    };

    for guarded in [path.as_str(), "/api/v1/manifests", "/api/v1/updaters"] {
        let r = app.get(guarded).await;
        let m = r.expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
        assert!(m.contains("bearer"), "{m}");
    }
    for issuer in ["quay", INTRASERVICE_ISSUER] {
        let token = PskSigner::with_issuer(&key, issuer).sign().expect("sign");
        let r = app.send(with(&token)).await;
        assert_eq!(r.status, StatusCode::OK, "issuer {issuer}: {}", r.text());
    }
    let wrong_issuer = PskSigner::with_issuer(&key, "mallory")
        .sign()
        .expect("sign");
    let m = app
        .send(with(&wrong_issuer))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert!(m.contains("mallory"), "{m}");
    let other_key = PskKey::from_bytes(b"another key".to_vec()).expect("key");
    let forged = PskSigner::with_issuer(&other_key, "quay")
        .sign()
        .expect("sign");
    app.send(with(&forged))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    let expired = PskSigner::with_issuer(&key, "quay")
        .sign_at(time::OffsetDateTime::now_utc() - time::Duration::minutes(10))
        .expect("sign");
    app.send(with(&expired))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    let r = app
        .send(
            req(Method::GET, &path)
                .header(header::AUTHORIZATION, "Basic dXNlcjpwYXNz")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    r.expect_error(StatusCode::UNAUTHORIZED, "unauthorized");

    // Probes and scrapers stay open, as on Clair's introspection listener; the OpenAPI document
    // is guarded, as Clair guards its own (crates/api/tests/surface.rs walks every route).
    for open in ["/healthz", "/readyz"] {
        let r = app.get(open).await;
        assert_eq!(r.status, StatusCode::OK, "{open}: {}", r.text());
    }
    app.get("/openapi.json")
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    let r = app.get("/metrics").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(r.content_type().starts_with("text/plain"));
    assert!(r.text().contains("# tocsin test metrics"));
}

#[tokio::test]
async fn malformed_query_strings_and_oversized_bodies_get_clair_error_bodies() {
    let (app, path) = app_with_set().await;
    for uri in [
        format!("{path}?page_size=1&page_size=2"),
        "/api/v1/manifests?limit=abc".to_string(),
        "/api/v1/manifests?limit=-1".to_string(),
        "/api/v1/notifications?limit=many".to_string(),
        "/api/v1/manifests/%FF%FE".to_string(),
    ] {
        let r = app.get(&uri).await;
        r.expect_error(StatusCode::BAD_REQUEST, "bad-request");
    }
    let r = app
        .put(
            &format!("/api/v1/manifests/{}", digest_n(1)),
            vec![b' '; MAX_BODY + 1],
        )
        .await;
    let m = r.expect_error(StatusCode::PAYLOAD_TOO_LARGE, "bad-request");
    assert!(m.contains(&MAX_BODY.to_string()), "the limit is named: {m}");
    app.get(&format!("/api/v1/manifests/{}", digest_n(1)))
        .await
        .expect_error(StatusCode::NOT_FOUND, "not-found");
}

/// The answers schemathesis found undocumented or wrong (issue 20, defect 3), one per class; the
/// schemathesis run itself is `crates/tocsin/tests/schemathesis.rs`.
#[tokio::test]
async fn schemathesis_findings_stay_fixed() {
    let (app, path) = app_with_set().await;
    // Updater actions: each path has its own methods and `Allow`.
    for (uri, allow) in [
        ("/api/v1/updaters/osv/go/operations", "GET,HEAD"),
        ("/api/v1/updaters/osv/go/snapshot", "PUT"),
    ] {
        let r = app.call(Method::OPTIONS, uri).await;
        r.expect_error(StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed");
        assert_eq!(
            r.headers.get(header::ALLOW).and_then(|v| v.to_str().ok()),
            Some(allow),
            "{uri}"
        );
    }
    app.call(Method::PUT, "/api/v1/updaters/osv/go/operations")
        .await
        .expect_error(StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed");
    app.get("/api/v1/updaters/osv/go/snapshot")
        .await
        .expect_error(StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed");
    // Updater names: a name the document allows is looked up (404), one it refuses is a 400.
    app.get("/api/v1/updaters/osv%2Fnone/operations")
        .await
        .expect_error(StatusCode::NOT_FOUND, "not-found");
    for bad in ["%2E%2E", "osv/%2E", "a%20b"] {
        app.get(&format!("/api/v1/updaters/{bad}/operations"))
            .await
            .expect_error(StatusCode::BAD_REQUEST, "bad-request");
    }
    // Every UUID spelling Clair (Go's uuid.Parse) reads names the set.
    let id: Uuid = path
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .parse()
        .expect("id");
    for spelling in [
        id.hyphenated().to_string(),
        id.simple().to_string(),
        id.braced().to_string(),
        id.urn().to_string(),
        id.hyphenated().to_string().to_uppercase(),
    ] {
        app.get(&format!("/notifier/api/v1/notification/{spelling}"))
            .await
            .expect(StatusCode::OK);
    }
    // Page tokens are read as they are written; the empty parameters mean "none".
    app.get(&format!("{path}?next=&page_size="))
        .await
        .expect(StatusCode::OK);
    app.get(&format!(
        "{path}?next={}",
        Uuid::from_u64_pair(0, 1).simple()
    ))
    .await
    .expect_error(StatusCode::BAD_REQUEST, "bad-request");
    // Listing limits are 1 to 1000, as documented; an unknown `after` set is a 404.
    for uri in [
        "/api/v1/manifests?limit=0",
        "/api/v1/manifests?limit=1001",
        "/api/v1/notifications?limit=0",
    ] {
        app.get(uri)
            .await
            .expect_error(StatusCode::BAD_REQUEST, "bad-request");
    }
    app.get("/api/v1/notifications?limit=1000")
        .await
        .expect(StatusCode::OK);
    app.get(&format!("/api/v1/notifications?after={}", Uuid::new_v4()))
        .await
        .expect_error(StatusCode::NOT_FOUND, "not-found");
    // Clair v2 reads the first of a repeated parameter, as Go's url.Values.Get does.
    let r = app
        .get(&format!(
            "/v1/notifications/{}?limit=1&limit=x",
            Uuid::new_v4()
        ))
        .await;
    r.expect_family_error(Family::V2, StatusCode::NOT_FOUND);
    let r = app
        .get(&format!(
            "/v1/notifications/{}?limit=x&limit=1",
            Uuid::new_v4()
        ))
        .await;
    r.expect_family_error(Family::V2, StatusCode::BAD_REQUEST);
}
