//! `tocsin-bench brokers`: messages per second of the AMQP and STOMP channels in direct mode for
//! one large notification set, beside the broker's own ceiling measured in the same run by a
//! plain lapin publisher with confirms (the same work minus tocsin).
//!
//! The figures exist to show where tocsin's overhead is, so every run measures the ceiling
//! again: absolute numbers depend on the machine and the broker's state.
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::publisher_confirm::Confirmation;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use tocsin_deliver::{
    AmqpConfig, AmqpDeliverer, BrokerMode, Deliverer, SetToDeliver, StompConfig, StompDeliverer,
};
use tocsin_model::notification::{Notification, Reason, VulnSummary};
use tocsin_model::{Digest, Severity};
use uuid::Uuid;

/// Options of `tocsin-bench brokers`.
#[derive(clap::Args, Debug, Clone)]
pub struct BrokerArgs {
    /// Entries in the set.
    #[arg(long, default_value_t = 100_000)]
    pub entries: usize,
    /// Rollups to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,100")]
    pub rollups: Vec<usize>,
    /// AMQP broker.
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    pub amqp: String,
    /// STOMP broker port on 127.0.0.1 (0 skips STOMP).
    #[arg(long, default_value_t = 61613)]
    pub stomp_port: u16,
    /// Where the JSON results go.
    #[arg(long, default_value = "bench-brokers.json")]
    pub out: std::path::PathBuf,
}

fn entries(n: usize) -> Result<Vec<Notification>> {
    let manifest = Digest::parse(&format!("sha256:{}", "ab".repeat(32)))
        .map_err(|e| anyhow::anyhow!("digest: {e}"))?;
    Ok((0..n)
        .map(|i| Notification {
            id: Uuid::new_v4(),
            manifest: manifest.clone(),
            reason: Reason::Added,
            vulnerability: VulnSummary {
                name: format!("CVE-2024-{i:05}"),
                description: "benchmark entry".into(),
                package: None,
                distribution: None,
                repository: None,
                severity: Severity::Medium,
                fixed_in_version: "1.2.3".into(),
                links: "https://example.invalid/advisory".into(),
            },
        })
        .collect())
}

async fn amqp_conn(uri: &str) -> Result<Connection> {
    let props = ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio::current());
    Connection::connect(uri, props)
        .await
        .with_context(|| format!("connecting to {uri}"))
}

/// A durable queue (as RabbitMQ's STOMP plugin declares `/queue/x`) to publish into.
async fn fresh_queue(ch: &lapin::Channel) -> Result<String> {
    let name = format!("tocsin-bench-{}", Uuid::new_v4());
    ch.queue_declare(
        &name,
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await?;
    Ok(name)
}

/// The ceiling: the same bodies published by lapin alone, confirms awaited at the end.
async fn ceiling(ch: &lapin::Channel, queue: &str, bodies: &[Vec<u8>]) -> Result<Duration> {
    let start = Instant::now();
    let mut confirms = Vec::with_capacity(bodies.len());
    for b in bodies {
        let props = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2);
        confirms.push(
            ch.basic_publish("", queue, BasicPublishOptions::default(), b, props)
                .await?,
        );
    }
    for c in confirms {
        if !matches!(c.await?, Confirmation::Ack(None)) {
            bail!("ceiling publisher: a message was not acked");
        }
    }
    Ok(start.elapsed())
}

fn rate(messages: usize, took: Duration) -> f64 {
    messages as f64 / took.as_secs_f64()
}

/// Runs the broker measurements and writes the JSON figures.
pub async fn run(args: BrokerArgs) -> Result<()> {
    let set = SetToDeliver {
        id: Uuid::new_v4(),
        entries: Some(entries(args.entries)?),
    };
    let conn = amqp_conn(&args.amqp).await?;
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    let mut results = Vec::new();
    println!(
        "{:<8} {:>7} {:>9} {:>12} {:>10}",
        "channel", "rollup", "messages", "msg/s", "seconds"
    );
    for &rollup in &args.rollups {
        let bodies =
            tocsin_deliver::direct_messages(set.entries.as_deref().unwrap_or(&[]), rollup)?;
        let messages = bodies.len();
        let mut row = |channel: &str, took: Duration| {
            println!(
                "{channel:<8} {rollup:>7} {messages:>9} {:>12.0} {:>10.2}",
                rate(messages, took),
                took.as_secs_f64()
            );
            results.push(serde_json::json!({
                "channel": channel, "rollup": rollup, "entries": args.entries,
                "messages": messages, "seconds": took.as_secs_f64(),
                "messages_per_second": rate(messages, took),
            }));
        };

        let q = fresh_queue(&ch).await?;
        row("ceiling", ceiling(&ch, &q, &bodies).await?);
        ch.queue_delete(&q, QueueDeleteOptions::default()).await?;

        let q = fresh_queue(&ch).await?;
        let mut cfg = AmqpConfig::new(
            vec![args.amqp.clone()],
            q.clone(),
            BrokerMode::Direct { rollup },
        );
        cfg.timeout = Duration::from_secs(600);
        let d = AmqpDeliverer::new(cfg)?;
        d.health_check().await?;
        let start = Instant::now();
        let r = d.deliver(&set).await;
        let took = start.elapsed();
        if !r.is_delivered() {
            bail!("amqp delivery failed: {r:?}");
        }
        row("amqp", took);
        ch.queue_delete(&q, QueueDeleteOptions::default()).await?;

        if args.stomp_port != 0 {
            let q = fresh_queue(&ch).await?;
            let mut cfg = StompConfig::new(
                format!("/queue/{q}"),
                vec![("127.0.0.1".into(), args.stomp_port)],
                BrokerMode::Direct { rollup },
            );
            cfg.login = Some(("guest".into(), "guest".into()));
            cfg.timeout = Duration::from_secs(600);
            let d = StompDeliverer::new(cfg)?;
            d.health_check().await?;
            let start = Instant::now();
            let r = d.deliver(&set).await;
            let took = start.elapsed();
            if !r.is_delivered() {
                bail!("stomp delivery failed: {r:?}");
            }
            row("stomp", took);
            ch.queue_delete(&q, QueueDeleteOptions::default()).await?;
        }
    }
    let json = serde_json::json!({ "entries": args.entries, "results": results });
    std::fs::write(&args.out, serde_json::to_vec_pretty(&json)?)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!("wrote {}", args.out.display());
    Ok(())
}
