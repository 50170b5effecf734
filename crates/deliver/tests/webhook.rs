//! The webhook channel against a real HTTP receiver on 127.0.0.1.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tocsin_deliver::jwt::{self, PskKey, INTRASERVICE_ISSUER, NOTIFIER_ISSUER};
use tocsin_deliver::{Deliverer, DeliveryResult, SetToDeliver, WebhookConfig, WebhookDeliverer};
use uuid::Uuid;

/// What the receiver saw.
#[derive(Clone, Debug)]
struct Seen {
    headers: HeaderMap,
    body: Bytes,
}

/// How the receiver answers.
#[derive(Clone)]
struct Reply {
    status: StatusCode,
    headers: Vec<(&'static str, &'static str)>,
    body: &'static str,
}

#[derive(Clone)]
struct Receiver {
    seen: Arc<Mutex<Vec<Seen>>>,
    reply: Reply,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> Response {
    r.seen.lock().unwrap().push(Seen { headers, body });
    let mut resp = (r.reply.status, r.reply.body).into_response();
    for (k, v) in &r.reply.headers {
        resp.headers_mut().insert(*k, v.parse().unwrap());
    }
    resp
}

/// Starts a receiver answering `reply` on `POST /hook`; returns its URL and the requests it saw.
async fn receiver(reply: Reply) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(Receiver {
            seen: seen.clone(),
            reply,
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), seen)
}

fn reply(status: u16) -> Reply {
    Reply {
        status: StatusCode::from_u16(status).unwrap(),
        headers: vec![],
        body: "",
    }
}

fn psk() -> PskKey {
    PskKey::from_base64("c2VjcmV0LWtleS1mb3ItdG9jc2luLXRlc3Rz").unwrap()
}

fn set() -> SetToDeliver {
    SetToDeliver {
        id: Uuid::parse_str("0f8c4a2e-5b7d-4f7e-9a1c-3d2e1f0a9b8c").unwrap(),
        entries: None,
    }
}

fn config(target: &str) -> WebhookConfig {
    let mut c = WebhookConfig::new(
        target,
        "http://notifier.local:6060/notifier/api/v1/notification",
    );
    c.timeout = Duration::from_secs(5);
    c
}

#[tokio::test]
async fn success_sends_clairs_exact_request() {
    let (url, seen) = receiver(reply(200)).await;
    let mut cfg = config(&url);
    cfg.headers
        .insert("X-Team".into(), vec!["sec".into(), "ops".into()]);
    cfg.headers.insert("X-Single".into(), vec!["1".into()]);
    cfg.psk = Some(psk());
    let d = WebhookDeliverer::new(&cfg).unwrap();
    assert_eq!(d.channel(), "webhook");
    assert!(!d.needs_entries());

    let r = d.deliver(&set()).await;
    assert_eq!(r, DeliveryResult::Delivered { status: Some(200) });

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let req = &seen[0];
    assert_eq!(
        std::str::from_utf8(&req.body).unwrap(),
        r#"{"callback":"http://notifier.local:6060/notifier/api/v1/notification/0f8c4a2e-5b7d-4f7e-9a1c-3d2e1f0a9b8c","notification_id":"0f8c4a2e-5b7d-4f7e-9a1c-3d2e1f0a9b8c"}"#
    );
    let h = &req.headers;
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(
        h["user-agent"],
        format!("tocsin/{}", env!("CARGO_PKG_VERSION"))
    );
    let team: Vec<_> = h.get_all("x-team").iter().collect();
    assert_eq!(team, ["sec", "ops"]);
    assert_eq!(h["x-single"], "1");

    // The token verifies with the same key, issuer clair-notifier, and has Clair's exact shape.
    let auth = h["authorization"].to_str().unwrap();
    let token = auth.strip_prefix("Bearer ").expect("a bearer token");
    let claims = jwt::verify(
        token,
        &psk(),
        &[NOTIFIER_ISSUER.to_owned(), INTRASERVICE_ISSUER.to_owned()],
    )
    .unwrap();
    assert_eq!(claims.iss, "clair-notifier");
    assert_eq!(claims.nbf, claims.iat.map(|t| t - 60));
    assert_eq!(Some(claims.exp), claims.iat.map(|t| t + 60));
    let decode = |i: usize| -> serde_json::Value {
        use base64::Engine as _;
        let part = token.split('.').nth(i).unwrap();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    };
    assert_eq!(decode(0), serde_json::json!({"alg": "HS256"}));
    let payload = decode(1);
    assert!(payload.get("aud").is_none(), "{payload}");
    assert!(payload.get("typ").is_none() && payload.get("kid").is_none());
}

#[tokio::test]
async fn no_psk_no_authorization_and_custom_user_agent_wins() {
    let (url, seen) = receiver(reply(204)).await;
    let mut cfg = config(&url);
    cfg.headers
        .insert("User-Agent".into(), vec!["quay-tests/1".into()]);
    let d = WebhookDeliverer::new(&cfg).unwrap();
    assert_eq!(
        d.deliver(&set()).await,
        DeliveryResult::Delivered { status: Some(204) }
    );
    let seen = seen.lock().unwrap().clone();
    assert!(seen[0].headers.get("authorization").is_none());
    assert_eq!(seen[0].headers["user-agent"], "quay-tests/1");
}

#[tokio::test]
async fn server_error_fails_with_status_and_body_snippet() {
    let (url, _) = receiver(Reply {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        headers: vec![("retry-after", "30")],
        body: "database\n  is down",
    })
    .await;
    let d = WebhookDeliverer::new(&config(&url)).unwrap();
    match d.deliver(&set()).await {
        DeliveryResult::Failed {
            status,
            error,
            retry_after,
            permanent,
        } => {
            assert_eq!(status, Some(500));
            assert!(
                error.starts_with("HTTP 500 Internal Server Error from http://127.0.0.1:"),
                "{error}"
            );
            assert!(error.ends_with("/hook: database is down"), "{error}");
            // Retry-After is honoured on 429 and 503 only.
            assert_eq!(retry_after, None);
            assert!(!permanent);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn too_many_requests_carries_retry_after() {
    let (url, _) = receiver(Reply {
        status: StatusCode::TOO_MANY_REQUESTS,
        headers: vec![("retry-after", "7")],
        body: "",
    })
    .await;
    let d = WebhookDeliverer::new(&config(&url)).unwrap();
    match d.deliver(&set()).await {
        DeliveryResult::Failed {
            status,
            retry_after,
            permanent,
            error,
        } => {
            assert_eq!(status, Some(429));
            assert_eq!(retry_after, Some(Duration::from_secs(7)));
            assert!(!permanent);
            assert!(error.starts_with("HTTP 429 Too Many Requests"), "{error}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn unavailable_with_an_http_date() {
    let (url, _) = receiver(Reply {
        status: StatusCode::SERVICE_UNAVAILABLE,
        // Long past: the delay is zero (the retry policy raises it to its minimum).
        headers: vec![("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")],
        body: "",
    })
    .await;
    let d = WebhookDeliverer::new(&config(&url)).unwrap();
    assert!(matches!(
        d.deliver(&set()).await,
        DeliveryResult::Failed { status: Some(503), retry_after: Some(d), .. } if d.is_zero()
    ));
}

#[tokio::test]
async fn gone_is_permanent_other_client_errors_are_not() {
    for (code, permanent) in [(410, true), (404, false), (401, false)] {
        let (url, _) = receiver(reply(code)).await;
        let d = WebhookDeliverer::new(&config(&url)).unwrap();
        match d.deliver(&set()).await {
            DeliveryResult::Failed {
                status,
                permanent: p,
                ..
            } => {
                assert_eq!(status, Some(code));
                assert_eq!(p, permanent, "HTTP {code}");
            }
            other => panic!("HTTP {code}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn silent_receiver_times_out() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let mut cfg = config(&format!("http://{addr}/hook"));
    cfg.timeout = Duration::from_millis(300);
    let d = WebhookDeliverer::new(&cfg).unwrap();
    // A generous outer bound: the channel's own timeout must end the call.
    let r = tokio::time::timeout(Duration::from_secs(10), d.deliver(&set()))
        .await
        .expect("the configured timeout bounds the call");
    match r {
        DeliveryResult::Failed {
            status,
            error,
            retry_after,
            permanent,
        } => {
            assert_eq!(status, None);
            assert!(
                error.starts_with("no answer from http://127.0.0.1:"),
                "{error}"
            );
            assert!(error.contains("within the timeout (300ms)"), "{error}");
            assert_eq!(retry_after, None);
            assert!(!permanent);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_password_in_the_target_stays_out_of_errors_and_debug() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut c = config(&format!("http://quay:hunter2-target@{addr}/hook"));
    c.headers
        .insert("X-Api-Key".into(), vec!["hunter2-header".into()]);
    let d = WebhookDeliverer::new(&c).unwrap();
    for shown in [format!("{c:?}"), format!("{d:?}")] {
        assert!(!shown.contains("hunter2"), "{shown}");
    }
    match d.deliver(&set()).await {
        DeliveryResult::Failed { error, .. } => {
            assert!(!error.contains("hunter2"), "{error}");
            assert!(
                error.starts_with(&format!("could not connect to http://quay:***@{addr}/hook")),
                "{error}"
            );
        }
        other => panic!("{other:?}"),
    }
    for (target, callback) in [
        ("htp://quay:hunter2-scheme@quay/hook", "http://tocsin/n"),
        ("http://quay/hook", "http://quay:hunter2-callback@[::1/cb"),
    ] {
        let mut bad = config(target);
        bad.callback = callback.into();
        let e = WebhookDeliverer::new(&bad).unwrap_err().to_string();
        assert!(e.contains("***"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }
}

#[tokio::test]
async fn refused_connection_fails_clearly() {
    // Bind and drop to get a port nobody listens on.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let d = WebhookDeliverer::new(&config(&format!("http://{addr}/hook"))).unwrap();
    match d.deliver(&set()).await {
        DeliveryResult::Failed { status, error, .. } => {
            assert_eq!(status, None);
            assert!(
                error.starts_with("could not connect to http://127.0.0.1:"),
                "{error}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn configured_channel_name_is_used() {
    let mut cfg = config("http://127.0.0.1:9/hook");
    cfg.channel = "webhook-quay".into();
    cfg.headers = BTreeMap::new();
    let d = WebhookDeliverer::new(&cfg).unwrap();
    assert_eq!(d.channel(), "webhook-quay");
}
