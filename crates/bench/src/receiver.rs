//! A local webhook receiver: answers every POST with 200 at once and records which notification
//! each callback named and when it arrived, so a run can tell the delivery rate and that nothing
//! was lost or sent twice.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use axum::Router;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Log {
    /// notification id → times received.
    seen: HashMap<String, u32>,
    first: Option<Instant>,
    last: Option<Instant>,
    bad: u64,
}

/// A running receiver.
#[derive(Clone)]
pub struct Receiver {
    log: Arc<Mutex<Log>>,
    /// The URL to POST to.
    pub url: String,
    stop: CancellationToken,
}

/// What the receiver saw.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    /// Distinct notifications.
    pub distinct: u64,
    /// Callbacks in all.
    pub total: u64,
    /// Bodies that were not a Clair callback.
    pub bad: u64,
    /// Seconds from the first callback to the last.
    pub span_seconds: f64,
}

async fn hook(State(log): State<Arc<Mutex<Log>>>, body: Bytes) -> &'static str {
    let now = Instant::now();
    let id = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("notification_id")?.as_str().map(str::to_string));
    if let Ok(mut l) = log.lock() {
        match id {
            Some(id) => *l.seen.entry(id).or_default() += 1,
            None => l.bad += 1,
        }
        l.first.get_or_insert(now);
        l.last = Some(now);
    }
    ""
}

impl Receiver {
    /// Starts a receiver on a free loopback port.
    pub async fn start() -> Result<Receiver> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the webhook receiver")?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        let log = Arc::new(Mutex::new(Log::default()));
        let stop = CancellationToken::new();
        let app = Router::new()
            .route("/hook", post(hook))
            .with_state(Arc::clone(&log));
        let token = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { token.cancelled().await })
                .await;
        });
        Ok(Receiver { log, url, stop })
    }

    /// Forgets everything seen so far.
    pub fn reset(&self) {
        if let Ok(mut l) = self.log.lock() {
            *l = Log::default();
        }
    }

    /// What was seen so far.
    pub fn seen(&self) -> Seen {
        let Ok(l) = self.log.lock() else {
            return Seen::default();
        };
        Seen {
            distinct: l.seen.len() as u64,
            total: l.seen.values().map(|n| u64::from(*n)).sum(),
            bad: l.bad,
            span_seconds: match (l.first, l.last) {
                (Some(a), Some(b)) => (b - a).as_secs_f64(),
                _ => 0.0,
            },
        }
    }

    /// Stops serving.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}
