//! Helpers shared by the broker tests: real entries, broker discovery, an independent AMQP
//! consumer (lapin, used directly and not through the code under test).

#![allow(dead_code, unused_imports)] // each test binary uses its own subset

use std::time::Duration;

use lapin::options::{BasicGetOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use tocsin_model::claircore::IndexReport;
use tocsin_model::notification::{Notification, Reason, VulnSummary};
use tocsin_model::{Digest, Severity};
use uuid::Uuid;

pub mod node;
pub mod tls;

pub const AMQP_URI: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

pub use tocsin_testdata::dir as shared_data;

/// Whether a broker listens on 127.0.0.1:`port`. In CI (`CI=true`) an absent broker fails the
/// test; elsewhere the test is skipped with a message.
pub fn broker(port: u16, what: &str) -> bool {
    let up = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(2),
    )
    .is_ok();
    if !up {
        let msg =
            format!("{what} is not reachable on 127.0.0.1:{port} (scripts/services.sh starts it)");
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{msg}");
        }
        eprintln!("skipping: {msg}");
    }
    up
}

/// `n` entries built from the packages of a real Debian 10 IndexReport (cycled when `n` exceeds
/// them), each with its own id, so that order and content can be checked.
pub fn entries(data: &std::path::Path, n: usize) -> Vec<Notification> {
    let path = data.join("inventories/clair/docker.io-library-debian-10.index.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let report: IndexReport =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let manifest = Digest::parse(&report.manifest_hash).unwrap();
    let dist = report.distributions.values().next().cloned();
    let mut packages: Vec<_> = report.packages.values().cloned().collect();
    packages.sort_by(|a, b| a.name.cmp(&b.name));
    let severities = [
        Severity::Unknown,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];
    (0..n)
        .map(|i| {
            let p = &packages[i % packages.len()];
            Notification {
                id: Uuid::new_v4(),
                manifest: manifest.clone(),
                reason: if i % 3 == 2 {
                    Reason::Removed
                } else {
                    Reason::Added
                },
                vulnerability: VulnSummary {
                    name: format!("DSA-TEST-{i:05} {}", p.name),
                    description: format!("test advisory for {} {}", p.name, p.version),
                    package: Some(p.clone()),
                    distribution: dist.clone(),
                    repository: None,
                    severity: severities[i % severities.len()],
                    fixed_in_version: String::new(),
                    links: format!("https://security-tracker.debian.org/tracker/{}", p.name),
                },
            }
        })
        .collect()
}

/// A plain AMQP connection for the test side.
pub async fn amqp_connection() -> Connection {
    let props = ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio::current());
    Connection::connect(AMQP_URI, props)
        .await
        .expect("test consumer connects to RabbitMQ")
}

/// An exclusive, server-named queue bound to `exchange` with `key`.
pub async fn bound_queue(ch: &Channel, exchange: &str, key: &str) -> String {
    let q = ch
        .queue_declare(
            "",
            QueueDeclareOptions {
                exclusive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let name = q.name().as_str().to_owned();
    ch.queue_bind(
        &name,
        exchange,
        key,
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    name
}

/// Takes every message from `queue` until it has been empty for `quiet`, acknowledging them.
pub async fn drain(ch: &Channel, queue: &str, quiet: Duration) -> Vec<(Vec<u8>, BasicProperties)> {
    let mut out = Vec::new();
    let mut idle_since = std::time::Instant::now();
    loop {
        match ch
            .basic_get(queue, BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            Some(m) => {
                out.push((m.delivery.data.clone(), m.delivery.properties.clone()));
                idle_since = std::time::Instant::now();
            }
            None => {
                if idle_since.elapsed() >= quiet {
                    return out;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Splits direct-mode bodies back into entries, checking each is a JSON array plus `\n`.
pub fn entries_of(bodies: &[Vec<u8>]) -> Vec<Notification> {
    let mut all = Vec::new();
    for b in bodies {
        assert_eq!(b.last(), Some(&b'\n'), "every message ends in a newline");
        assert_eq!(b.first(), Some(&b'['), "every message is a JSON array");
        let part: Vec<Notification> = serde_json::from_slice(b).unwrap();
        all.extend(part);
    }
    all
}

/// Clair's rollup table (entries, rollup, messages), wire reference §2.3.
pub const ROLLUP_TABLE: [(usize, usize, usize); 7] = [
    (1, 0, 1),
    (5, 1, 5),
    (5, 10, 1),
    (7, 3, 3),
    (8, 3, 3),
    (7, 4, 2),
    (1000, 100, 10),
];
