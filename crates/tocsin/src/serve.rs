//! `tocsin serve`: composes the store, the engine, the HTTP API (with Clair v3's gRPC service on
//! the same listener or its own, both over TLS when `tls` is configured), the update processor,
//! the delivery workers (v4 channel and Clair v2's webhook) and garbage collection, and stops
//! them together.
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tocsin_engine::Engine;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// How often the TLS certificate, key and client CA files are checked for changes (a rotated
/// certificate is served to new connections without a restart).
const TLS_RELOAD_EVERY: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `stop`, over TLS when `tls` is given, with `limits` on every
/// connection.
async fn serve_on(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    tls: Option<tocsin_api::ServerTls>,
    limits: tocsin_api::ConnectionLimits,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let shutdown = async move { stop.cancelled().await };
    match tls {
        None => tocsin_api::serve_with(listener, app, limits, shutdown).await,
        Some(tls) => {
            let listener = tocsin_api::TlsListener::new(listener, tls)?;
            tocsin_api::serve_with(listener, app, limits, shutdown).await
        }
    }
}

/// Reads and checks the serving TLS files (`tls`, `tocsin.tls.client_ca`), if configured.
pub(crate) fn server_tls(cfg: &Config) -> Result<Option<tocsin_api::ServerTls>> {
    let Some(t) = &cfg.tls else { return Ok(None) };
    let tls = tocsin_api::ServerTls::load(tocsin_api::ServerTlsFiles {
        cert: t.cert.clone(),
        key: t.key.clone(),
        client_ca: t.client_ca.clone(),
    })
    .context("serving TLS (tls.cert, tls.key, tocsin.tls.client_ca)")?;
    Ok(Some(tls))
}

/// A running service.
pub struct Service {
    stop: CancellationToken,
    tasks: JoinSet<Result<()>>,
}

impl Service {
    /// Asks every task to stop and waits for them.
    pub async fn stop(mut self) -> Result<()> {
        self.stop.cancel();
        let mut first_err = None;
        while let Some(r) = self.tasks.join_next().await {
            match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(error = %format!("{e:#}"), "task failed");
                    first_err.get_or_insert(e);
                }
                Err(e) => {
                    first_err.get_or_insert(anyhow::anyhow!("task panicked: {e}"));
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Waits until a task ends on its own (an error) or `shutdown` resolves, then stops.
    pub async fn run_until(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<()> {
        tokio::select! {
            _ = shutdown => tracing::info!("shutting down"),
            Some(r) = self.tasks.join_next() => {
                self.stop.cancel();
                match r {
                    Ok(Ok(())) => tracing::warn!("a task ended unexpectedly"),
                    Ok(Err(e)) => { self.drain().await; return Err(e) }
                    Err(e) => { self.drain().await; return Err(anyhow::anyhow!("task panicked: {e}")) }
                }
            }
        }
        self.stop().await
    }

    async fn drain(&mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Sleeps `d`, or returns false early when asked to stop.
async fn pause(stop: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = stop.cancelled() => false,
    }
}

/// Starts everything on `listener`, with Clair v3's gRPC service on `grpc_listener` when one is
/// given (`tocsin.grpc_listen_addr`) and on `listener` otherwise.
pub async fn start(
    cfg: &Config,
    listener: tokio::net::TcpListener,
    grpc_listener: Option<tokio::net::TcpListener>,
    metrics: Option<tocsin_api::MetricsRenderer>,
) -> Result<Service> {
    // A certificate or channel that cannot be used fails the start before anything is created
    // or migrated.
    let tls = server_tls(cfg)?;
    let deliverer = crate::deliverer(cfg).await?;
    let legacy_webhook = crate::legacy_webhook(cfg).await?;
    let store = crate::open_store(cfg).await?;
    let clair = crate::clair(cfg)?;
    let engine = Arc::new(
        Engine::open(store.clone(), crate::engine_config(cfg, clair.as_ref()))
            .await
            .context("building the indexes")?,
    );
    let addr = listener
        .local_addr()
        .context("reading the listen address")?;
    let stop = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let updaters = crate::updaters(cfg, &engine)?;
    let clair_follower =
        clair.map(|c| Arc::new(tocsin_updaters::ClairFollower::new(Arc::clone(&engine), c)));

    // HTTP API.
    let state = tocsin_api::AppState {
        engine: Arc::clone(&engine),
        auth: crate::token_verifier(cfg),
        metrics,
        max_body: usize::try_from(cfg.tocsin.max_body_size).unwrap_or(usize::MAX),
        limits: cfg.tocsin.limits,
        uploads: tocsin_api::UploadLimits::new(
            cfg.tocsin.max_concurrent_uploads,
            cfg.tocsin.upload_timeout,
        ),
        updaters: updaters.clone(),
        clair: clair_follower.clone(),
    };
    let limits = tocsin_api::ConnectionLimits {
        header_read_timeout: cfg.tocsin.header_read_timeout,
        ..tocsin_api::ConnectionLimits::default()
    };
    let http = match grpc_listener {
        None => tocsin_api::app(state),
        Some(grpc_listener) => {
            let grpc_addr = grpc_listener
                .local_addr()
                .context("reading the gRPC listen address")?;
            let app = tocsin_api::grpc_app(state.clone());
            let (token, grpc_tls, grpc_limits) = (stop.clone(), tls.clone(), limits.clone());
            tasks.spawn(async move {
                serve_on(grpc_listener, app, grpc_tls, grpc_limits, token)
                    .await
                    .context("gRPC server")
            });
            tracing::info!(addr = %grpc_addr, tls = tls.is_some(), "Clair v3 gRPC service on its own listener");
            tocsin_api::http_app(state)
        }
    };
    let (token, http_tls) = (stop.clone(), tls.clone());
    tasks.spawn(async move {
        serve_on(listener, http, http_tls, limits, token)
            .await
            .context("HTTP server")
    });
    if let Some(tls) = &tls {
        tracing::info!(
            cert = %tls.files().cert.display(),
            client_certificates = tls.requires_client_certificates(),
            "serving TLS (ALPN h2 and http/1.1)"
        );
        let (tls, token) = (tls.clone(), stop.clone());
        tasks.spawn(async move {
            tls.watch(TLS_RELOAD_EVERY, token.cancelled()).await;
            Ok(())
        });
    }

    // Work done by other processes sharing the store (imports, sets, manifest changes) wakes
    // this one at once instead of at its next interval.
    let (e, token) = (Arc::clone(&engine), stop.clone());
    tasks.spawn(async move {
        e.follow_store_events(token.cancelled()).await;
        // Without events (embedded store) there is nothing to follow: stay until stopped.
        token.cancelled().await;
        Ok(())
    });

    // Update processing: at start, on every interval or wake-up, and in test mode one set per
    // poll.
    let (e, token) = (Arc::clone(&engine), stop.clone());
    let work = engine.work_available();
    let interval = cfg.tocsin.process_interval;
    let test_mode = cfg.test_mode.then_some(cfg.notifier.poll_interval);
    tasks.spawn(async move {
        let mut next_test = tokio::time::Instant::now();
        loop {
            if let Err(err) = e.process_pending().await {
                tracing::error!(error = %err, "processing update operations failed; will retry");
            }
            if let Some(every) = test_mode {
                if tokio::time::Instant::now() >= next_test {
                    match e.create_test_set().await {
                        Ok(id) => tracing::info!(%id, "test mode: notification set created"),
                        Err(err) => {
                            tracing::error!(error = %err, "test mode: creating a set failed")
                        }
                    }
                    next_test = tokio::time::Instant::now() + every;
                }
            }
            tokio::select! {
                _ = work.notified() => {}
                more = pause(&token, interval) => if !more { return Ok(()) },
            }
        }
    });

    // Delivery.
    if let Some(deliverer) = deliverer {
        let (st, token) = (store.clone(), stop.clone());
        let wake = engine.sets_created();
        let (policy, opts) = crate::delivery_settings(cfg);
        tasks.spawn(async move {
            tocsin_deliver::worker::run(st, deliverer, policy, opts, wake, token)
                .await
                .context("delivery worker")
        });
    }

    // Clair v2's webhook: one POST per v2/v3 notification, on its own schedule.
    if let Some(hook) = legacy_webhook {
        let (st, token) = (store.clone(), stop.clone());
        tasks.spawn(async move {
            tocsin_deliver::webhook_v2::run(st, hook, token).await;
            Ok(())
        });
    }

    // Garbage collection. A store shared by several processes runs one collection at a time
    // (the others get zero counts), so every process may run this loop.
    let (st, token) = (store, stop.clone());
    let (every, retention) = (cfg.tocsin.gc_interval, cfg.tocsin.retention);
    tasks.spawn(async move {
        loop {
            match st
                .collect_garbage(time::OffsetDateTime::now_utc(), retention)
                .await
            {
                Ok(s) if s.sets > 0 || s.vulnerabilities > 0 => {
                    tracing::info!(
                        sets = s.sets,
                        vulnerabilities = s.vulnerabilities,
                        "garbage collected"
                    )
                }
                Ok(_) => {}
                Err(err) => tracing::error!(error = %err, "garbage collection failed; will retry"),
            }
            if !pause(&token, every).await {
                return Ok(());
            }
        }
    });

    // Followed feeds: one task per source, on the schedule shared through the store.
    if let Some(u) = updaters {
        tracing::info!(
            sources = u.sources().len(),
            withdraw_guard = cfg.tocsin.withdraw_guard.unwrap_or(0.0),
            "following feeds"
        );
        let token = stop.clone();
        tasks.spawn(async move {
            u.follow(token).await;
            Ok(())
        });
    }

    // A fronted Clair: its update operations mirrored on the poll interval, on the schedule
    // shared through the store.
    if let Some(follower) = clair_follower {
        let c = follower.clair();
        tracing::info!(
            matcher = %c.shown_matcher(),
            indexer = %c.shown_indexer(),
            poll_interval_s = c.poll_interval.as_secs(),
            signed = c.psk.is_some(),
            "fronting a Clair: mirroring its matcher's update operations, affected manifests from its indexer"
        );
        let token = stop.clone();
        tasks.spawn(async move {
            follower.follow(token).await;
            Ok(())
        });
    }

    tracing::info!(%addr, tls = tls.is_some(), "tocsin serving");
    Ok(Service { stop, tasks })
}
