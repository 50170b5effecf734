//! A real broker restart in the middle of a delivery backlog, on a private RabbitMQ node (see
//! `common/node.rs`) so that the shared broker the other tests use is left alone.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::node::PrivateNode;
use common::*;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use time::OffsetDateTime;
use tocsin_deliver::worker::deliver_due;
use tocsin_deliver::{AmqpConfig, AmqpDeliverer, BrokerMode, Jitter, RetryPolicy, WorkerOptions};
use tocsin_model::notification::Notification;
use tocsin_store::{NewNotificationSet, Store};
use tocsin_store_sqlite::SqliteStore;
use uuid::Uuid;

const QUEUE: &str = "tocsin-backlog";
const SETS: usize = 12;

async fn connect(uri: &str) -> Connection {
    let props = ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio::current());
    Connection::connect(uri, props)
        .await
        .expect("test consumer connects to the private node")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_mid_backlog_loses_nothing_and_delivers_each_message_once() {
    let Some(data) = shared_data() else { return };
    let Some(mut node) = PrivateNode::new("") else {
        return;
    };
    tokio::task::block_in_place(|| node.start());

    // A durable queue on the default exchange: it, and the persistent messages in it, must
    // survive the restart.
    {
        let conn = connect(&node.uri()).await;
        let ch = conn.create_channel().await.unwrap();
        ch.queue_declare(
            QUEUE,
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
        conn.close(200, "setup done").await.unwrap();
    }

    let store = Arc::new(SqliteStore::open_in_memory().unwrap());
    let now = OffsetDateTime::now_utc();
    let mut expected: HashMap<Uuid, Vec<Notification>> = HashMap::new();
    for _ in 0..SETS {
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
    let mut cfg = AmqpConfig::new(vec![node.uri()], QUEUE, BrokerMode::Direct { rollup: 10 });
    cfg.connect_timeout = Duration::from_secs(3);
    cfg.timeout = Duration::from_secs(15);
    let d = Arc::new(AmqpDeliverer::new(cfg).unwrap());
    let policy = RetryPolicy {
        jitter: Jitter::None,
        ..RetryPolicy::default()
    };
    let opts = WorkerOptions {
        batch: 4,
        concurrency: 2,
        ..WorkerOptions::default()
    };

    // 1. Four sets delivered over the live connection.
    let n = deliver_due(store.clone(), d.clone(), &policy, &opts, now)
        .await
        .unwrap();
    assert_eq!(n, 4);
    // 2. The node goes down: the next batch fails (recorded, to be retried), nothing panics.
    tokio::task::block_in_place(|| node.stop());
    let n = deliver_due(store.clone(), d.clone(), &policy, &opts, now)
        .await
        .unwrap();
    assert_eq!(n, 4, "the next batch is attempted");
    let failed: Vec<Uuid> = {
        let mut v = Vec::new();
        for id in expected.keys() {
            let attempts = store.attempts(*id).await.unwrap();
            if attempts.iter().any(|a| a.error.is_some()) {
                v.push(*id);
            }
        }
        v
    };
    assert_eq!(
        failed.len(),
        4,
        "the batch sent while the node was down failed"
    );
    // 3. The node comes back with the same data directory; later passes reconnect and deliver
    // the rest, retries included.
    tokio::task::block_in_place(|| node.start());
    let mut at = now;
    for _ in 0..20 {
        at += time::Duration::hours(1);
        if deliver_due(store.clone(), d.clone(), &policy, &opts, at)
            .await
            .unwrap()
            == 0
        {
            break;
        }
    }

    // Everything is in the queue, including the messages confirmed before the restart.
    let conn = connect(&node.uri()).await;
    let ch = conn.create_channel().await.unwrap();
    let got = drain(&ch, QUEUE, Duration::from_millis(500)).await;
    let mut bodies: HashMap<String, Vec<u8>> = HashMap::new();
    for (body, props) in &got {
        assert_eq!(*props.delivery_mode(), Some(2), "persistent");
        let mid = props.message_id().as_ref().unwrap().to_string();
        match bodies.get(&mid) {
            // A confirm lost with the connection may resend a message: same id, same body.
            Some(seen) => assert_eq!(seen, body, "message {mid} resent with another body"),
            None => {
                bodies.insert(mid, body.clone());
            }
        }
    }
    let mut ids: Vec<(Uuid, usize, &String)> = bodies
        .keys()
        .map(|mid| {
            let (set, block) = mid.split_once('/').expect("direct-mode id <set>/<block>");
            (set.parse().unwrap(), block.parse().unwrap(), mid)
        })
        .collect();
    ids.sort();
    let mut by_set: HashMap<Uuid, Vec<Notification>> = HashMap::new();
    for (set, _, mid) in ids {
        by_set
            .entry(set)
            .or_default()
            .extend(entries_of(std::slice::from_ref(&bodies[mid])));
    }
    assert_eq!(bodies.len(), SETS * 3, "25 entries in blocks of 10");
    assert_eq!(by_set, expected, "every set, complete and in order");
    // Duplicates can only come from a set whose attempt failed; none failed mid-publish here
    // (the node was stopped between passes), so there are none at all.
    assert_eq!(got.len(), bodies.len(), "no message arrived twice");
    for id in expected.keys() {
        let ok = store
            .attempts(*id)
            .await
            .unwrap()
            .iter()
            .filter(|a| a.error.is_none())
            .count();
        assert_eq!(ok, 1, "set {id}: exactly one successful attempt");
    }
    conn.close(200, "done").await.unwrap();
    tokio::task::block_in_place(|| node.stop());
}
