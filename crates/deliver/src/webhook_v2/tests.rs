//! The v2 webhook against a local receiver and an embedded store.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use axum::http::StatusCode;
use tocsin_model::change::{ChangeSet, VulnChange};
use tocsin_store::{
    ImportOutcome, MarkRead, NewLegacyNotification, NewLegacyNotifications, ProcessedUpdate,
};

use super::*;

/// A receiver that answers the statuses in `script` in turn (then 200) and records bodies.
struct Receiver {
    url: String,
    bodies: Arc<Mutex<Vec<(String, String)>>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn receiver(script: Vec<u16>) -> Receiver {
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let calls = Arc::new(AtomicUsize::new(0));
    let (b, c) = (Arc::clone(&bodies), Arc::clone(&calls));
    let app = axum::Router::new().route(
        "/notify",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let (b, c, script) = (Arc::clone(&b), Arc::clone(&c), script.clone());
            async move {
                let ct = headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                b.lock().unwrap().push((ct, body));
                let n = c.fetch_add(1, Ordering::SeqCst);
                StatusCode::from_u16(script.get(n).copied().unwrap_or(200)).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    Receiver {
        url: format!("http://{addr}/notify"),
        bodies,
        _stop: stop,
    }
}

fn fast(url: &str) -> LegacyWebhookConfig {
    LegacyWebhookConfig {
        attempts: 3,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(40),
        poll_interval: Duration::from_millis(20),
        ..LegacyWebhookConfig::new(url)
    }
}

/// A store with one processed operation carrying one v2 notification.
async fn store_with_notification() -> (Arc<dyn Store>, Uuid) {
    let store: Arc<dyn Store> =
        Arc::new(tocsin_store_sqlite::SqliteStore::open_in_memory().unwrap());
    let now = OffsetDateTime::now_utc();
    let op = match store.import_snapshot("u", "fp", &[], now).await.unwrap() {
        ImportOutcome::Created(op) => Uuid::parse_str(&op.reference).unwrap(),
        other => panic!("{other:?}"),
    };
    let name = Uuid::from_u128(0xabc);
    let d = tocsin_model::Digest::sha256_of(b"m");
    store
        .commit_processed(&ProcessedUpdate {
            updater: "u".into(),
            prev: None,
            cur: op,
            change_set: ChangeSet {
                updater: "u".into(),
                prev: None,
                cur: op,
                changes: vec![VulnChange {
                    old: None,
                    new: None,
                    old_affected: Default::default(),
                    new_affected: [1].into_iter().collect(),
                }],
                manifests: [(1, d.clone())].into(),
            },
            notifications: None,
            legacy: Some(NewLegacyNotifications {
                notifications: vec![NewLegacyNotification { name, change: 0 }],
                layers: vec![tocsin_store::LegacyLayer {
                    digest: d.clone(),
                    index: 1,
                    name: d.to_string(),
                }],
                created_at: now,
            }),
        })
        .await
        .unwrap();
    (store, name)
}

#[test]
fn backoff_doubles_and_is_capped() {
    let c = LegacyWebhookConfig::new("http://x/");
    let got: Vec<u64> = (1..=12).map(|n| c.backoff(n).as_secs()).collect();
    assert_eq!(got, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900]);
    assert_eq!(c.backoff(100), Duration::from_secs(900));
}

#[tokio::test]
async fn config_errors_name_the_key() {
    for (cfg, field) in [
        (
            LegacyWebhookConfig::new("not a url"),
            "clair.notifier.http.endpoint",
        ),
        (
            LegacyWebhookConfig::new("ftp://h/"),
            "clair.notifier.http.endpoint",
        ),
        (
            LegacyWebhookConfig {
                attempts: 0,
                ..LegacyWebhookConfig::new("http://h/")
            },
            "clair.notifier.attempts",
        ),
        (
            LegacyWebhookConfig {
                root_ca: Some("/nonexistent/ca.pem".into()),
                ..LegacyWebhookConfig::new("https://h/")
            },
            "clair.notifier.http.cafile",
        ),
        (
            LegacyWebhookConfig {
                identity: Some(("/nonexistent/c.pem".into(), "/nonexistent/k.pem".into())),
                ..LegacyWebhookConfig::new("https://h/")
            },
            "clair.notifier.http.certfile",
        ),
    ] {
        match LegacyWebhook::new(cfg).await {
            Err(DeliverError::Config { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: expected a config error, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn retries_within_a_send_then_accepts_201() {
    let r = receiver(vec![500, 503, 201]).await;
    let hook = LegacyWebhook::new(fast(&r.url)).await.unwrap();
    let name = Uuid::from_u128(7);
    assert!(hook.send(name, &CancellationToken::new()).await);
    let bodies = r.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 3);
    for (ct, body) in bodies {
        assert_eq!(ct, "application/json");
        assert_eq!(
            body,
            r#"{"Notification":{"Name":"00000000-0000-0000-0000-000000000007"}}"#
        );
    }
    // 202 is not one of v2's success codes.
    let r = receiver(vec![202, 202, 202]).await;
    let hook = LegacyWebhook::new(fast(&r.url)).await.unwrap();
    assert!(!hook.send(name, &CancellationToken::new()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renotifies_until_read_and_retries_failed_sends() {
    // The first send fails all 3 attempts, is retried after max_backoff and succeeds, then the
    // notification is re-sent every renotify interval until it is marked read.
    let r = receiver(vec![500, 500, 500]).await;
    let (store, name) = store_with_notification().await;
    let hook = Arc::new(
        LegacyWebhook::new(LegacyWebhookConfig {
            renotify_interval: Duration::from_millis(150),
            ..fast(&r.url)
        })
        .await
        .unwrap(),
    );
    let stop = CancellationToken::new();
    let task = tokio::spawn(run(Arc::clone(&store), hook, stop.clone()));
    let wait_for = |n: usize| {
        let bodies = Arc::clone(&r.bodies);
        async move {
            for _ in 0..500 {
                if bodies.lock().unwrap().len() >= n {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("fewer than {n} POSTs");
        }
    };
    wait_for(4).await;
    for _ in 0..200 {
        if store
            .legacy_notification(name)
            .await
            .unwrap()
            .unwrap()
            .notified_at
            .is_some()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(store
        .legacy_notification(name)
        .await
        .unwrap()
        .unwrap()
        .notified_at
        .is_some());
    wait_for(5).await; // a re-notification
    assert_eq!(
        store
            .mark_legacy_read(name, OffsetDateTime::now_utc())
            .await
            .unwrap(),
        MarkRead::Marked
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after_read = r.bodies.lock().unwrap().len();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        r.bodies.lock().unwrap().len(),
        after_read,
        "no sends once read"
    );
    stop.cancel();
    task.await.unwrap();
}
