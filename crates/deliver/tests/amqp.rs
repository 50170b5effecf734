//! The AMQP channel against a real RabbitMQ on 127.0.0.1:5672. What tocsin publishes is read
//! back by an independent lapin consumer (an exclusive queue bound to the test's own exchange).

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use lapin::options::{ExchangeDeclareOptions, ExchangeDeleteOptions};
use lapin::types::FieldTable;
use lapin::ExchangeKind;
use time::OffsetDateTime;
use tocsin_deliver::worker::deliver_due;
use tocsin_deliver::{
    AmqpConfig, AmqpDeliverer, AmqpExchange, BrokerMode, Callback, DeliverError, Deliverer,
    DeliveryResult, Jitter, RetryPolicy, SetToDeliver, WorkerOptions,
};
use tocsin_model::notification::Notification;
use tocsin_store::{NewNotificationSet, Store};
use tocsin_store_sqlite::SqliteStore;
use uuid::Uuid;

const KEY: &str = "tocsin.notifications";

/// A fresh direct exchange owned by one test (auto-deleted when its queue goes).
async fn exchange(ch: &lapin::Channel) -> String {
    let name = format!("tocsin-test-{}", Uuid::new_v4());
    ch.exchange_declare(
        &name,
        ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    name
}

fn config(exchange: &str, mode: BrokerMode) -> AmqpConfig {
    let mut c = AmqpConfig::new(vec![AMQP_URI.into()], KEY, mode);
    c.exchange = AmqpExchange {
        name: exchange.into(),
        kind: "direct".into(),
        durable: false,
        auto_delete: false,
    };
    c.timeout = Duration::from_secs(30);
    c.connect_timeout = Duration::from_secs(5);
    c
}

fn set(entries: Option<Vec<Notification>>) -> SetToDeliver {
    SetToDeliver {
        id: Uuid::new_v4(),
        entries,
    }
}

async fn cleanup(ch: &lapin::Channel, exchange: &str) {
    let _ = ch
        .exchange_delete(exchange, ExchangeDeleteOptions::default())
        .await;
}

#[tokio::test]
async fn direct_mode_follows_clairs_rollup_table_with_exact_bodies_and_properties() {
    let Some(data) = shared_data() else { return };
    if !broker(5672, "RabbitMQ (AMQP)") {
        return;
    }
    let conn = amqp_connection().await;
    let ch = conn.create_channel().await.unwrap();
    let ex = exchange(&ch).await;
    let queue = bound_queue(&ch, &ex, KEY).await;
    for (n, rollup, messages) in ROLLUP_TABLE {
        let d = AmqpDeliverer::new(config(&ex, BrokerMode::Direct { rollup })).unwrap();
        assert!(d.needs_entries());
        let entries = entries(&data, n);
        let s = set(Some(entries.clone()));
        let r = d.deliver(&s).await;
        assert_eq!(
            r,
            DeliveryResult::DeliveredAndDeleted { status: None },
            "{n}/{rollup}"
        );
        let got = drain(&ch, &queue, Duration::from_millis(300)).await;
        assert_eq!(got.len(), messages, "{n} entries / rollup {rollup}");
        let bodies: Vec<Vec<u8>> = got.iter().map(|(b, _)| b.clone()).collect();
        // Byte-exact: each message is the serialised block plus "\n", in order.
        let expected: Vec<Vec<u8>> = tocsin_deliver::rollup_blocks(n, rollup)
            .map(|r| {
                let mut b = serde_json::to_vec(&entries[r]).unwrap();
                b.push(b'\n');
                b
            })
            .collect();
        assert_eq!(bodies, expected, "{n}/{rollup}");
        assert_eq!(entries_of(&bodies), entries);
        for (i, (_, p)) in got.iter().enumerate() {
            assert_eq!(
                p.content_type().as_ref().map(|s| s.as_str()),
                Some("application/json")
            );
            assert_eq!(
                p.app_id().as_ref().map(|s| s.as_str()),
                Some("clairV4-notifier")
            );
            assert_eq!(*p.delivery_mode(), Some(2), "persistent");
            assert_eq!(
                p.message_id().as_ref().map(|s| s.to_string()),
                Some(format!("{}/{i}", s.id))
            );
        }
    }
    cleanup(&ch, &ex).await;
}

#[tokio::test]
async fn callback_mode_sends_one_exact_message_and_reuses_its_channel() {
    if !broker(5672, "RabbitMQ (AMQP)") {
        return;
    }
    let conn = amqp_connection().await;
    let ch = conn.create_channel().await.unwrap();
    let ex = exchange(&ch).await;
    let queue = bound_queue(&ch, &ex, KEY).await;
    let cb = Callback::new("http://tocsin.local/notifier/api/v1/notification");
    let mut cfg = config(&ex, BrokerMode::Callback(cb.clone()));
    cfg.persistent = false;
    let d = AmqpDeliverer::new(cfg).unwrap();
    assert!(!d.needs_entries());
    d.health_check().await.unwrap();
    let sets: Vec<_> = (0..3).map(|_| set(None)).collect();
    for s in &sets {
        assert_eq!(
            d.deliver(s).await,
            DeliveryResult::Delivered { status: None }
        );
    }
    let got = drain(&ch, &queue, Duration::from_millis(300)).await;
    assert_eq!(got.len(), 3);
    for ((body, props), s) in got.iter().zip(&sets) {
        assert_eq!(body, &cb.body(s.id));
        assert_eq!(
            props.app_id().as_ref().map(|s| s.as_str()),
            Some("clairV4-notifier")
        );
        assert_eq!(*props.delivery_mode(), Some(1), "persistent: false");
    }
    cleanup(&ch, &ex).await;
}

#[tokio::test]
async fn the_default_exchange_routes_by_queue_name() {
    if !broker(5672, "RabbitMQ (AMQP)") {
        return;
    }
    let conn = amqp_connection().await;
    let ch = conn.create_channel().await.unwrap();
    let queue = bound_queue(&ch, "amq.direct", "unused").await;
    let mut cfg = AmqpConfig::new(
        vec![AMQP_URI.into()],
        queue.clone(),
        BrokerMode::Callback(Callback::new("http://x/n")),
    );
    cfg.timeout = Duration::from_secs(10);
    let d = AmqpDeliverer::new(cfg).unwrap();
    let s = set(None);
    assert!(d.deliver(&s).await.is_delivered());
    let got = drain(&ch, &queue, Duration::from_millis(300)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, Callback::new("http://x/n").body(s.id));
}

#[tokio::test]
async fn failover_skips_a_bogus_first_broker() {
    if !broker(5672, "RabbitMQ (AMQP)") {
        return;
    }
    let conn = amqp_connection().await;
    let ch = conn.create_channel().await.unwrap();
    let ex = exchange(&ch).await;
    let queue = bound_queue(&ch, &ex, KEY).await;
    let mut cfg = config(&ex, BrokerMode::Callback(Callback::new("http://x/n")));
    // Port 1 on loopback refuses at once.
    cfg.uris = vec!["amqp://guest:guest@127.0.0.1:1/%2f".into(), AMQP_URI.into()];
    let d = AmqpDeliverer::new(cfg).unwrap();
    d.health_check().await.unwrap();
    let s = set(None);
    assert!(d.deliver(&s).await.is_delivered());
    assert_eq!(
        drain(&ch, &queue, Duration::from_millis(300)).await.len(),
        1
    );
    cleanup(&ch, &ex).await;
}

#[tokio::test]
async fn bad_configuration_is_a_clear_error_or_a_recorded_failure() {
    if !broker(5672, "RabbitMQ (AMQP)") {
        return;
    }
    let cb = || BrokerMode::Callback(Callback::new("http://x/n"));
    // A missing routing key is refused when the deliverer is built.
    match AmqpDeliverer::new(AmqpConfig::new(vec![AMQP_URI.into()], "", cb())) {
        Err(DeliverError::Config { field, .. }) => assert_eq!(field, "amqp.routing_key"),
        other => panic!("{other:?}"),
    }
    // A missing exchange fails the start-up check, naming the exchange.
    let missing = format!("tocsin-missing-{}", Uuid::new_v4());
    let d = AmqpDeliverer::new(config(&missing, cb())).unwrap();
    let e = d.health_check().await.unwrap_err().to_string();
    assert!(e.contains(&missing) && e.contains("must exist"), "{e}");
    // And a delivery attempt to it is a failure, not a panic.
    let r = d.deliver(&set(None)).await;
    assert!(!r.is_delivered(), "{r:?}");
    // Wrong credentials fail the start-up check.
    let mut c = config("", cb());
    c.exchange = AmqpExchange::default();
    c.uris = vec!["amqp://guest:wrong@127.0.0.1:5672/%2f".into()];
    let d = AmqpDeliverer::new(c).unwrap();
    let e = d.health_check().await.unwrap_err();
    assert!(matches!(e, DeliverError::Unhealthy { .. }), "{e}");
    assert!(!e.to_string().contains("wrong"), "password leaked: {e}");
    // Unreachable brokers do not stop the service; the attempt fails with the brokers named.
    let mut c = config("", cb());
    c.exchange = AmqpExchange::default();
    c.uris = vec![
        "amqp://guest:guest@127.0.0.1:1/%2f".into(),
        "amqp://guest:guest@127.0.0.1:2/%2f".into(),
    ];
    let d = AmqpDeliverer::new(c).unwrap();
    d.health_check().await.unwrap();
    match d.deliver(&set(None)).await {
        DeliveryResult::Failed {
            error, permanent, ..
        } => {
            assert!(!permanent);
            assert!(
                error.contains("127.0.0.1:1") && error.contains("127.0.0.1:2"),
                "{error}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_unroutable_message_is_a_failed_attempt_not_a_silent_drop() {
    let Some(data) = shared_data() else { return };
    if !broker(5672, "RabbitMQ (AMQP)") {
        return;
    }
    let conn = amqp_connection().await;
    let ch = conn.create_channel().await.unwrap();
    let ex = exchange(&ch).await; // no queue bound
    let d = AmqpDeliverer::new(config(&ex, BrokerMode::Direct { rollup: 2 })).unwrap();
    let r = d.deliver(&set(Some(entries(&data, 3)))).await;
    match r {
        DeliveryResult::Failed { error, .. } => assert!(error.contains("unroutable"), "{error}"),
        other => panic!("{other:?}"),
    }
    cleanup(&ch, &ex).await;
}

/// Closes the broker-side connections whose client-provided name is `name`, as a broker restart
/// would (a real restart would disturb the other tests running against the same broker).
fn close_connections_named(name: &str) -> usize {
    let out = std::process::Command::new("rabbitmqctl")
        .args(["-q", "list_connections", "pid", "client_properties"])
        .output()
        .expect("rabbitmqctl runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut closed = 0;
    for line in text.lines() {
        if line.contains(name) {
            let pid = line.split('\t').next().unwrap_or_default();
            let ok = std::process::Command::new("rabbitmqctl")
                .args([
                    "-q",
                    "close_connection",
                    pid,
                    "test: simulated broker restart",
                ])
                .status()
                .expect("rabbitmqctl runs")
                .success();
            closed += usize::from(ok);
        }
    }
    closed
}

#[tokio::test]
async fn a_lost_connection_during_a_backlog_loses_and_duplicates_nothing() {
    let Some(data) = shared_data() else { return };
    if !broker(5672, "RabbitMQ (AMQP)") {
        return;
    }
    if std::process::Command::new("rabbitmqctl")
        .arg("-q")
        .arg("status")
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        eprintln!("skipping: rabbitmqctl cannot reach the broker to close connections");
        return;
    }
    let conn = amqp_connection().await;
    let ch = conn.create_channel().await.unwrap();
    let ex = exchange(&ch).await;
    let queue = bound_queue(&ch, &ex, KEY).await;

    // A backlog of sets in the store, delivered by the outbox worker in direct mode.
    let store = Arc::new(SqliteStore::open_in_memory().unwrap());
    let now = OffsetDateTime::now_utc();
    let mut expected: HashMap<Uuid, Vec<Notification>> = HashMap::new();
    for _ in 0..12 {
        let id = Uuid::new_v4();
        let e = entries(&data, 25);
        store
            .create_notification_set(&NewNotificationSet {
                id,
                updater: "debian/updater".into(),
                operation: None,
                entries: e.clone(),
                channels: vec!["amqp".into()],
                created_at: now,
            })
            .await
            .unwrap();
        expected.insert(id, e);
    }
    let name = format!("tocsin-restart-{}", Uuid::new_v4());
    let mut cfg = config(&ex, BrokerMode::Direct { rollup: 10 });
    cfg.connection_name = name.clone();
    let d = Arc::new(AmqpDeliverer::new(cfg).unwrap());
    let policy = RetryPolicy {
        jitter: Jitter::None,
        ..RetryPolicy::default()
    };
    let opts = WorkerOptions {
        batch: 4,
        concurrency: 1,
        ..WorkerOptions::default()
    };
    // First pass: 4 sets over one connection; then the broker drops it.
    let n = deliver_due(store.clone(), d.clone(), &policy, &opts, now)
        .await
        .unwrap();
    assert_eq!(n, 4);
    assert_eq!(close_connections_named(&name), 1, "tocsin's connection");
    // Later passes reconnect and deliver the rest; a failed attempt would be due again later.
    let mut at = now;
    for _ in 0..10 {
        at += time::Duration::hours(1);
        if deliver_due(store.clone(), d.clone(), &policy, &opts, at)
            .await
            .unwrap()
            == 0
        {
            break;
        }
    }
    let got = drain(&ch, &queue, Duration::from_millis(500)).await;
    let mut by_set: HashMap<Uuid, Vec<Notification>> = HashMap::new();
    let mut ids = std::collections::HashSet::new();
    for (body, props) in &got {
        let mid = props.message_id().as_ref().unwrap().to_string();
        assert!(ids.insert(mid.clone()), "message {mid} arrived twice");
        let set: Uuid = mid.split('/').next().unwrap().parse().unwrap();
        by_set
            .entry(set)
            .or_default()
            .extend(entries_of(std::slice::from_ref(body)));
    }
    assert_eq!(
        got.len(),
        12 * 3,
        "25 entries in blocks of 10: 3 messages per set"
    );
    assert_eq!(by_set, expected, "every set, complete and in order");
    // Every set ended as delivered-and-deleted, as in Clair's direct mode, after exactly one
    // successful attempt.
    for id in expected.keys() {
        let info = store.notification_set(*id).await.unwrap();
        assert!(
            info.as_ref()
                .is_none_or(|i| i.status == tocsin_model::notification::ReceiptStatus::Deleted),
            "{info:?}"
        );
        let ok = store
            .attempts(*id)
            .await
            .unwrap()
            .iter()
            .filter(|a| a.error.is_none())
            .count();
        assert_eq!(ok, 1, "set {id}");
    }
    cleanup(&ch, &ex).await;
}

// ---------------------------------------------------------------------------------------------
// Broker URIs as Clair writes them (amqp091-go's `ParseURI` rules), against the real broker.

/// Builds a deliverer for `uri` that publishes to `queue` through the default exchange, checks
/// it at start-up and delivers one set, read back from `queue` over `ch`.
async fn delivers_through(uri: &str, ch: &lapin::Channel, queue: &str) {
    let cb = Callback::new("http://tocsin.local/notifier/api/v1/notification");
    let mut cfg = AmqpConfig::new(vec![uri.into()], queue, BrokerMode::Callback(cb.clone()));
    cfg.timeout = Duration::from_secs(15);
    cfg.connect_timeout = Duration::from_secs(5);
    let d = AmqpDeliverer::new(cfg).unwrap_or_else(|e| panic!("{uri}: {e}"));
    if let Err(e) = d.health_check().await {
        panic!("{uri}: the start-up check failed: {e}");
    }
    let s = set(None);
    let r = d.deliver(&s).await;
    assert_eq!(r, DeliveryResult::Delivered { status: None }, "{uri}");
    let got = drain(ch, queue, Duration::from_millis(300)).await;
    assert_eq!(got.len(), 1, "{uri}: one message in the queue");
    assert_eq!(got[0].0, cb.body(s.id), "{uri}");
}

/// Delivers through each URI to a fresh queue in the default vhost `/`.
async fn reaches_the_default_vhost(uris: &[&str]) {
    let conn = amqp_connection().await;
    let ch = conn.create_channel().await.unwrap();
    let queue = bound_queue(&ch, "amq.direct", "unused").await;
    for uri in uris {
        delivers_through(uri, &ch, &queue).await;
    }
}

#[tokio::test]
async fn a_trailing_slash_is_the_default_vhost_as_in_clair() {
    if !broker(5672, "RabbitMQ (AMQP)") {
        return;
    }
    // The form of Clair's sample configs and CI: amqp091-go reads a path of "/" as vhost "/".
    reaches_the_default_vhost(&["amqp://guest:guest@127.0.0.1:5672/"]).await;
}

#[tokio::test]
async fn no_path_and_an_encoded_slash_are_the_default_vhost() {
    if !broker(5672, "RabbitMQ (AMQP)") {
        return;
    }
    reaches_the_default_vhost(&[
        "amqp://guest:guest@127.0.0.1:5672",
        "amqp://guest:guest@127.0.0.1:5672/%2f",
        "amqp://guest:guest@127.0.0.1:5672/%2F",
    ])
    .await;
}

#[tokio::test]
async fn missing_userinfo_and_port_default_to_guest_and_5672() {
    if !broker(5672, "RabbitMQ (AMQP)") {
        return;
    }
    // guest/guest, port 5672; the scheme is case-insensitive as in Go's net/url.
    reaches_the_default_vhost(&["amqp://127.0.0.1", "AMQP://guest@127.0.0.1/"]).await;
}

#[tokio::test]
async fn an_ipv6_host_in_brackets_reaches_the_broker() {
    if !broker(5672, "RabbitMQ (AMQP)") {
        return;
    }
    if std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 5672)),
        Duration::from_secs(2),
    )
    .is_err()
    {
        eprintln!("skipping: the broker does not listen on [::1]:5672");
        return;
    }
    reaches_the_default_vhost(&["amqp://guest:guest@[::1]:5672/", "amqp://[::1]"]).await;
}

/// `rabbitmqctl` with `args`, or why it failed.
fn rabbitmqctl(args: &[&str]) -> Result<(), String> {
    let out = std::process::Command::new("rabbitmqctl")
        .arg("-q")
        .args(args)
        .output()
        .map_err(|e| format!("rabbitmqctl cannot be run: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "rabbitmqctl {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A vhost of the shared broker made for one test, with full permissions for `guest`; deleted
/// when dropped (the test passed or panicked).
struct TestVhost(String);

impl TestVhost {
    /// `None` (test skipped) when rabbitmqctl cannot manage the broker, outside CI.
    fn create(name: String) -> Option<TestVhost> {
        let made = rabbitmqctl(&["add_vhost", &name]).map(|()| TestVhost(name));
        let made = made.and_then(|v| {
            rabbitmqctl(&["set_permissions", "-p", &v.0, "guest", ".*", ".*", ".*"]).map(|()| v)
        });
        match made {
            Ok(v) => Some(v),
            Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => panic!("{e}"),
            Err(e) => {
                eprintln!("skipping: {e}");
                None
            }
        }
    }
}

impl Drop for TestVhost {
    fn drop(&mut self) {
        if let Err(e) = rabbitmqctl(&["delete_vhost", &self.0]) {
            eprintln!("cleaning up: {e}");
        }
    }
}

/// A consumer-side connection to `vhost` (lapin's own parser handles a non-empty path).
async fn connection_to(vhost_path: &str) -> lapin::Connection {
    let props = lapin::ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio::current());
    lapin::Connection::connect(
        &format!("amqp://guest:guest@127.0.0.1:5672/{vhost_path}"),
        props,
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn a_named_vhost_and_one_with_an_encoded_slash_are_reached() {
    if !broker(5672, "RabbitMQ (AMQP)") {
        return;
    }
    let id = Uuid::new_v4();
    // `/name` is the vhost `name`; `/a%2Fb` is the vhost `a/b`.
    for (name, path) in [
        (format!("tocsin-test-{id}"), format!("tocsin-test-{id}")),
        (format!("tocsin-test/{id}"), format!("tocsin-test%2F{id}")),
    ] {
        let Some(vhost) = TestVhost::create(name) else {
            return;
        };
        let conn = connection_to(&path).await;
        let ch = conn.create_channel().await.unwrap();
        let queue = bound_queue(&ch, "amq.direct", "unused").await;
        delivers_through(
            &format!("amqp://guest:guest@127.0.0.1:5672/{path}"),
            &ch,
            &queue,
        )
        .await;
        // The queue lives in that vhost, not in `/`.
        let root = amqp_connection().await.create_channel().await.unwrap();
        let passive = lapin::options::QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        assert!(
            root.queue_declare(&queue, passive, FieldTable::default())
                .await
                .is_err(),
            "queue {queue} of vhost {:?} is not in /",
            vhost.0
        );
        conn.close(200, "done").await.unwrap();
        drop(vhost);
    }
}

#[tokio::test]
async fn a_missing_vhost_is_a_clear_start_up_error() {
    if !broker(5672, "RabbitMQ (AMQP)") {
        return;
    }
    let missing = format!("tocsin-missing-{}", Uuid::new_v4());
    let mut cfg = AmqpConfig::new(
        vec![format!("amqp://guest:guest@127.0.0.1:5672/{missing}")],
        "q",
        BrokerMode::Callback(Callback::new("http://x/n")),
    );
    cfg.connect_timeout = Duration::from_secs(5);
    let d = AmqpDeliverer::new(cfg).unwrap();
    match d.health_check().await {
        Err(DeliverError::Unhealthy { message, .. }) => {
            assert!(
                message.contains(&format!("vhost \"{missing}\"")) && message.contains("not found"),
                "the error names the vhost: {message}"
            );
            assert!(
                !message.contains("guest:guest"),
                "password leaked: {message}"
            );
        }
        other => panic!("expected a start-up error naming the vhost, got {other:?}"),
    }
}
