//! The STOMP channel against RabbitMQ's STOMP plugin on 127.0.0.1:61613. Every message is
//! checked twice: through a STOMP subscription (tocsin's own client) and through AMQP (RabbitMQ
//! maps `/queue/x` to queue `x`), so that one consumer is independent of the code under test.

mod common;

use std::time::Duration;

use common::*;
use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use tocsin_deliver::stomp::{ConnectOptions, Frame, StompConnection, StompError};
use tocsin_deliver::{
    BrokerMode, Callback, DeliverError, Deliverer, DeliveryResult, SetToDeliver, StompConfig,
    StompDeliverer,
};
use uuid::Uuid;

const PORT: u16 = 61613;

fn login() -> Option<(String, String)> {
    Some(("guest".into(), "guest".into()))
}

fn config(queue: &str, mode: BrokerMode) -> StompConfig {
    let mut c = StompConfig::new(
        format!("/queue/{queue}"),
        vec![("127.0.0.1".into(), PORT)],
        mode,
    );
    c.login = login();
    c.timeout = Duration::from_secs(30);
    c.connect_timeout = Duration::from_secs(5);
    c
}

fn options() -> ConnectOptions {
    ConnectOptions {
        host: "127.0.0.1".into(),
        port: PORT,
        vhost: "/".into(),
        login: login(),
        tls: None,
        heartbeat: (Duration::from_secs(1), Duration::from_secs(1)),
        connect_timeout: Duration::from_secs(5),
    }
}

/// A durable queue as RabbitMQ's STOMP plugin declares it for `/queue/<name>`, so that the AMQP
/// side can read it; deleted by [`drop_queue`].
async fn queue(ch: &lapin::Channel) -> String {
    let name = format!("tocsin-stomp-test-{}", Uuid::new_v4());
    ch.queue_declare(
        &name,
        QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    name
}

async fn drop_queue(ch: &lapin::Channel, name: &str) {
    let _ = ch.queue_delete(name, QueueDeleteOptions::default()).await;
}

fn set(entries: Option<Vec<tocsin_model::notification::Notification>>) -> SetToDeliver {
    SetToDeliver {
        id: Uuid::new_v4(),
        entries,
    }
}

#[tokio::test]
async fn direct_mode_follows_clairs_rollup_table_read_via_amqp() {
    let Some(data) = shared_data() else { return };
    if !broker(PORT, "RabbitMQ STOMP") || !broker(5672, "RabbitMQ (AMQP)") {
        return;
    }
    let conn = amqp_connection().await;
    let ch = conn.create_channel().await.unwrap();
    let q = queue(&ch).await;
    for (n, rollup, messages) in ROLLUP_TABLE {
        let d = StompDeliverer::new(config(&q, BrokerMode::Direct { rollup })).unwrap();
        let e = entries(&data, n);
        let s = set(Some(e.clone()));
        assert_eq!(
            d.deliver(&s).await,
            DeliveryResult::DeliveredAndDeleted { status: None },
            "{n}/{rollup}"
        );
        let got = drain(&ch, &q, Duration::from_millis(300)).await;
        assert_eq!(got.len(), messages, "{n} entries / rollup {rollup}");
        let bodies: Vec<Vec<u8>> = got.iter().map(|(b, _)| b.clone()).collect();
        let expected: Vec<Vec<u8>> = tocsin_deliver::rollup_blocks(n, rollup)
            .map(|r| tocsin_deliver::direct_body(&e[r]).unwrap())
            .collect();
        assert_eq!(bodies, expected, "{n}/{rollup}");
        assert_eq!(entries_of(&bodies), e);
        for (_, p) in &got {
            assert_eq!(
                p.content_type().as_ref().map(|s| s.as_str()),
                Some("application/json")
            );
            assert_eq!(*p.delivery_mode(), Some(2), "persistent:true");
        }
    }
    drop_queue(&ch, &q).await;
}

#[tokio::test]
async fn callback_mode_is_seen_by_a_stomp_subscriber_and_by_amqp() {
    if !broker(PORT, "RabbitMQ STOMP") || !broker(5672, "RabbitMQ (AMQP)") {
        return;
    }
    let conn = amqp_connection().await;
    let ch = conn.create_channel().await.unwrap();
    let q = queue(&ch).await;
    let cb = Callback::new("http://tocsin.local/notifier/api/v1/notification/");
    let d = StompDeliverer::new(config(&q, BrokerMode::Callback(cb.clone()))).unwrap();
    d.health_check().await.unwrap();

    // First via AMQP.
    let s1 = set(None);
    assert_eq!(
        d.deliver(&s1).await,
        DeliveryResult::Delivered { status: None }
    );
    let got = drain(&ch, &q, Duration::from_millis(300)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, cb.body(s1.id));

    // Then via a STOMP subscription on our own client.
    let sub = StompConnection::connect(&options()).await.unwrap();
    let mut rx = sub.subscribe(&format!("/queue/{q}")).await.unwrap();
    let sets: Vec<_> = (0..3).map(|_| set(None)).collect();
    for s in &sets {
        assert!(d.deliver(s).await.is_delivered());
    }
    for s in &sets {
        let m = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("message within 5 s")
            .expect("subscription open");
        assert_eq!(m.command, "MESSAGE");
        assert_eq!(&m.body[..], &cb.body(s.id)[..]);
        assert_eq!(m.get("content-type"), Some("application/json"));
        assert_eq!(m.get("destination"), Some(format!("/queue/{q}").as_str()));
        assert_eq!(m.get("tocsin-message-id"), Some(s.id.to_string().as_str()));
        assert_eq!(m.get("persistent"), Some("true"));
    }
    sub.disconnect().await.unwrap();
    drop_queue(&ch, &q).await;
}

#[tokio::test]
async fn failover_skips_a_bogus_first_broker() {
    if !broker(PORT, "RabbitMQ STOMP") || !broker(5672, "RabbitMQ (AMQP)") {
        return;
    }
    let conn = amqp_connection().await;
    let ch = conn.create_channel().await.unwrap();
    let q = queue(&ch).await;
    let mut cfg = config(&q, BrokerMode::Callback(Callback::new("http://x/n")));
    cfg.uris.insert(0, ("127.0.0.1".into(), 1));
    let d = StompDeliverer::new(cfg).unwrap();
    d.health_check().await.unwrap();
    assert!(d.deliver(&set(None)).await.is_delivered());
    assert!(d.deliver(&set(None)).await.is_delivered());
    assert_eq!(drain(&ch, &q, Duration::from_millis(300)).await.len(), 2);
    drop_queue(&ch, &q).await;
}

#[tokio::test]
async fn bad_configuration_is_a_clear_error_or_a_recorded_failure() {
    if !broker(PORT, "RabbitMQ STOMP") {
        return;
    }
    let cb = || BrokerMode::Callback(Callback::new("http://x/n"));
    // Wrong credentials: the broker's ERROR frame fails the start-up check.
    let mut c = config("unused", cb());
    c.login = Some(("guest".into(), "wrong".into()));
    let e = StompDeliverer::new(c)
        .unwrap()
        .health_check()
        .await
        .unwrap_err();
    match &e {
        DeliverError::Unhealthy { message, .. } => {
            assert!(message.contains("ERROR"), "{message}");
            assert!(!message.contains("wrong"), "passcode leaked: {message}");
        }
        other => panic!("{other:?}"),
    }
    // An unknown vhost likewise.
    let mut c = config("unused", cb());
    c.vhost = "no-such-vhost".into();
    let e = StompDeliverer::new(c)
        .unwrap()
        .health_check()
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("no-such-vhost") || e.contains("ERROR"), "{e}");
    // Unreachable brokers: start goes on, the attempt fails naming both.
    let mut c = config("unused", cb());
    c.uris = vec![("127.0.0.1".into(), 1), ("127.0.0.1".into(), 2)];
    let d = StompDeliverer::new(c).unwrap();
    d.health_check().await.unwrap();
    match d.deliver(&set(None)).await {
        DeliveryResult::Failed { error, .. } => {
            assert!(
                error.contains("127.0.0.1:1") && error.contains("127.0.0.1:2"),
                "{error}"
            )
        }
        other => panic!("{other:?}"),
    }
    // An invalid destination: RabbitMQ answers ERROR, which fails the attempt with its text.
    let d = StompDeliverer::new({
        let mut c = config("x", cb());
        c.destination = "/nonsense/x".into();
        c
    })
    .unwrap();
    match d.deliver(&set(None)).await {
        DeliveryResult::Failed { error, .. } => assert!(error.contains("ERROR"), "{error}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_failed_transaction_is_aborted_and_delivers_nothing() {
    if !broker(PORT, "RabbitMQ STOMP") || !broker(5672, "RabbitMQ (AMQP)") {
        return;
    }
    let conn = amqp_connection().await;
    let ch = conn.create_channel().await.unwrap();
    let q = queue(&ch).await;
    let c = StompConnection::connect(&options()).await.unwrap();
    let dest = format!("/queue/{q}");
    c.send(Frame::new("BEGIN").header("transaction", "t1"))
        .await
        .unwrap();
    c.send(
        Frame::new("SEND")
            .header("destination", dest.clone())
            .header("transaction", "t1")
            .body(&b"one"[..]),
    )
    .await
    .unwrap();
    c.send_with_receipt(Frame::new("ABORT").header("transaction", "t1"))
        .await
        .unwrap();
    // Committed work in a second transaction does arrive.
    c.send(Frame::new("BEGIN").header("transaction", "t2"))
        .await
        .unwrap();
    c.send(
        Frame::new("SEND")
            .header("destination", dest)
            .header("transaction", "t2")
            .body(&b"two"[..]),
    )
    .await
    .unwrap();
    c.send_with_receipt(Frame::new("COMMIT").header("transaction", "t2"))
        .await
        .unwrap();
    let got = drain(&ch, &q, Duration::from_millis(300)).await;
    assert_eq!(
        got.into_iter().map(|(b, _)| b).collect::<Vec<_>>(),
        vec![b"two".to_vec()]
    );
    // A COMMIT of an unknown transaction is an ERROR frame, reported with the broker's words.
    match c
        .send_with_receipt(Frame::new("COMMIT").header("transaction", "nope"))
        .await
    {
        Err(StompError::Server { message, .. }) => assert!(!message.is_empty()),
        other => panic!("{other:?}"),
    }
    assert!(!c.is_open(), "the connection ends after an ERROR");
    drop_queue(&ch, &q).await;
}

#[tokio::test]
async fn heart_beats_keep_an_idle_connection_alive() {
    if !broker(PORT, "RabbitMQ STOMP") {
        return;
    }
    let c = StompConnection::connect(&options()).await.unwrap();
    // Idle for several negotiated periods (1 s): both sides' heart-beats must keep it open.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert!(c.is_open());
    c.send_with_receipt(Frame::new("BEGIN").header("transaction", "hb"))
        .await
        .unwrap();
    c.disconnect().await.unwrap();
}

#[tokio::test]
async fn non_persistent_messages_carry_no_persistent_header() {
    if !broker(PORT, "RabbitMQ STOMP") || !broker(5672, "RabbitMQ (AMQP)") {
        return;
    }
    let conn = amqp_connection().await;
    let ch = conn.create_channel().await.unwrap();
    let q = queue(&ch).await;
    let cb = Callback::new("http://tocsin.local/notifier/api/v1/notification/");
    let mut cfg = config(&q, BrokerMode::Callback(cb.clone()));
    cfg.persistent = false;
    let d = StompDeliverer::new(cfg).unwrap();

    // Seen by a STOMP subscriber: no `persistent:true` header.
    let sub = StompConnection::connect(&options()).await.unwrap();
    let mut rx = sub.subscribe(&format!("/queue/{q}")).await.unwrap();
    let s = set(None);
    assert!(d.deliver(&s).await.is_delivered());
    let m = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("message within 5 s")
        .expect("subscription open");
    assert_eq!(&m.body[..], &cb.body(s.id)[..]);
    assert_eq!(m.get("persistent"), None, "{:?}", m.headers);
    sub.disconnect().await.unwrap();

    // Seen through AMQP: RabbitMQ did not mark it persistent either.
    let s = set(None);
    assert!(d.deliver(&s).await.is_delivered());
    let got = drain(&ch, &q, Duration::from_millis(300)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, cb.body(s.id));
    assert_ne!(*got[0].1.delivery_mode(), Some(2), "not persistent");
    drop_queue(&ch, &q).await;
}
