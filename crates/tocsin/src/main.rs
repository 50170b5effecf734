//! The `tocsin` program: configuration, command line and composition. Everything else lives in
//! the library crates; this crate only wires them together (see ARCHITECTURE.md).
mod cli;
mod commands;
mod config;
mod demo;
mod duration;
#[cfg(feature = "kube")]
mod kube;
mod serve;

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;
use tocsin_deliver::{
    AmqpConfig, AmqpDeliverer, AmqpExchange, BrokerMode, Callback, Deliverer, PskKey, RetryPolicy,
    StompConfig, StompDeliverer, TlsFiles, WebhookConfig, WebhookDeliverer, WorkerOptions,
};
use tocsin_engine::{Engine, EngineConfig, FirstUpdate};
use tocsin_store::Store;

use crate::cli::{Cli, Command, LogFormat};
use crate::config::{Channel, Config, Storage};

/// mimalloc rather than the system allocator: a server that parses inventories of hundreds of
/// kilobytes on many threads while its index grows leaves glibc's per-thread arenas fragmented,
/// holding several times the index's size in freed memory (measured in BENCHMARKS.md); mimalloc
/// returns freed pages to the system.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Storage calls and parsing run on the blocking pool. A few threads suffice on any
        // machine (SQLite has one writer), and each thread that ever allocated keeps freed pages
        // of its own: tokio's default of 512 lets a burst of uploads spread memory over hundreds
        // of threads that then sit idle holding it.
        .max_blocking_threads(16)
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TOCSIN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{level},tower_http=warn")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

fn load_config(cli: &Cli) -> Result<Config> {
    let env = |k: &str| std::env::var(k).ok();
    let (mut cfg, warnings) = Config::load(cli.config.as_deref(), &env)?;
    if let Some(dir) = &cli.data_dir {
        cfg.storage = Storage::Embedded {
            data_dir: dir.clone(),
        };
    }
    // One-shot commands print their results; only serve logs at the configured level.
    let level = match cli.command {
        Command::Serve => cfg.logging.level.as_str(),
        #[cfg(feature = "kube")]
        Command::Kube(_) => "info",
        _ => "warn",
    };
    init_logging(cli.log_format, level);
    for w in warnings {
        tracing::warn!("configuration: {w}");
    }
    for s in &cfg.ignored_sections {
        tracing::info!(section = %s, "configuration section accepted and ignored (not used by tocsin)");
    }
    Ok(cfg)
}

async fn run(cli: Cli) -> Result<()> {
    // The consumer is not a notifier: it takes its settings from flags, not Clair's file.
    let cfg = load_config(&cli)?;
    match cli.command {
        Command::Serve => {
            let metrics = install_metrics()?;
            let addr = cfg.http_listen_addr.to_string();
            let listener = tokio::net::TcpListener::bind(&addr)
                .await
                .with_context(|| format!("listening on {addr}"))?;
            let grpc = match &cfg.tocsin.grpc_listen_addr {
                None => None,
                Some(addr) => {
                    let addr = addr.to_string();
                    Some(
                        tokio::net::TcpListener::bind(&addr)
                            .await
                            .with_context(|| format!("listening for gRPC on {addr}"))?,
                    )
                }
            };
            let service = serve::start(&cfg, listener, grpc, Some(metrics)).await?;
            service.run_until(shutdown_signal()).await
        }
        Command::Demo(args) => demo::run(args).await,
        // The consumer is not a notifier: its settings are its flags, not Clair's file.
        #[cfg(feature = "kube")]
        Command::Kube(args) => kube::run(&args, install_metrics()?, shutdown_signal()).await,
        // Manifest changes reach running servers through the store's change feed, so only a
        // report (which matches) needs the engine and its indexes.
        Command::Manifest(cmd) => match cmd {
            cli::ManifestCommand::Report { digest } => {
                commands::manifest_report(&open_engine(&cfg).await?, &digest).await
            }
            cmd => commands::manifest(open_store(&cfg).await?, cmd, &cfg.tocsin.limits).await,
        },
        Command::Feed(cmd) => {
            let engine = Arc::new(open_engine(&cfg).await?);
            let updaters = updaters(&cfg, &engine)?;
            commands::feed(&engine, updaters, cmd, &cfg.tocsin.limits).await
        }
        Command::Notification(cmd) => commands::notification(&*open_store(&cfg).await?, cmd).await,
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

fn install_metrics() -> Result<tocsin_api::MetricsRenderer> {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .context("installing the metrics recorder")?;
    Ok(Arc::new(move || handle.render()))
}

/// Opens the configured store.
pub(crate) async fn open_store(cfg: &Config) -> Result<Arc<dyn Store>> {
    match &cfg.storage {
        Storage::Embedded { data_dir } => {
            std::fs::create_dir_all(data_dir)
                .with_context(|| format!("creating data directory {}", data_dir.display()))?;
            let store = tocsin_store_sqlite::SqliteStore::open(data_dir)
                .with_context(|| format!("opening the embedded store in {}", data_dir.display()))?;
            Ok(Arc::new(store))
        }
        Storage::Postgres {
            connstring,
            migrations,
        } => {
            let opts = tocsin_store_postgres::PgOptions::new(connstring.expose(), *migrations);
            let store = tocsin_store_postgres::PgStore::connect(&opts)
                .await
                .with_context(|| {
                    format!(
                        "opening the PostgreSQL store at {} (notifier.connstring)",
                        tocsin_store_postgres::redact(connstring.expose())
                    )
                })?;
            Ok(Arc::new(store))
        }
    }
}

/// The channel names every new set gets a receipt for.
fn channels(cfg: &Config) -> Vec<String> {
    match &cfg.notifier.channel {
        Some(Channel::Webhook(_)) => vec!["webhook".to_string()],
        Some(Channel::Amqp(_)) => vec!["amqp".to_string()],
        Some(Channel::Stomp(_)) => vec!["stomp".to_string()],
        None => Vec::new(),
    }
}

/// The Clair tocsin fronts (`notifier.matcher_addr` and `notifier.indexer_addr`), when set.
pub(crate) fn clair(cfg: &Config) -> Result<Option<Arc<tocsin_updaters::Clair>>> {
    let (Some(matcher), Some(indexer)) = (&cfg.notifier.clair_matcher, &cfg.notifier.clair_indexer)
    else {
        return Ok(None);
    };
    let psk = match &cfg.psk {
        Some(p) => Some(PskKey::from_bytes(p.key.expose().clone())?),
        None => None,
    };
    let defaults = tocsin_updaters::UpdatersConfig::default();
    let clair = tocsin_updaters::Clair::new(tocsin_updaters::ClairConfig {
        matcher: matcher.clone(),
        indexer: indexer.clone(),
        psk,
        poll_interval: cfg.notifier.poll_interval,
        fetch: defaults.fetch,
        lease: defaults.lease,
    })
    .context("setting up the Clair client (notifier.matcher_addr, notifier.indexer_addr)")?;
    Ok(Some(clair))
}

/// Engine settings from the configuration; `clair` is the fronted Clair, if any.
pub(crate) fn engine_config(
    cfg: &Config,
    clair: Option<&Arc<tocsin_updaters::Clair>>,
) -> EngineConfig {
    EngineConfig {
        v4: tocsin_engine::projection::V4Options {
            disable_summary: cfg.notifier.disable_summary,
            changed_reason: cfg.tocsin.changed_reason,
        },
        first_update: match cfg.tocsin.first_update {
            config::FirstUpdate::Notify => FirstUpdate::Notify,
            config::FirstUpdate::Baseline => FirstUpdate::Baseline,
        },
        channels: channels(cfg),
        // v2/v3 clients see manifest digests as layer names (no configuration key yet).
        legacy_layer_label: cfg.tocsin.legacy_layer_label.clone(),
        withdraw_guard: cfg.tocsin.withdraw_guard,
        affected_by: clair.map(|c| c.affectedness()),
    }
}

/// The followed feeds of `tocsin.updaters`, when configured.
pub(crate) fn updaters(
    cfg: &Config,
    engine: &Arc<Engine>,
) -> Result<Option<Arc<tocsin_updaters::Updaters>>> {
    let Some(u) = &cfg.tocsin.updaters else {
        return Ok(None);
    };
    let updaters = tocsin_updaters::Updaters::new(Arc::clone(engine), u.clone(), cfg.tocsin.limits)
        .context("setting up tocsin.updaters")?;
    Ok(Some(Arc::new(updaters)))
}

async fn open_engine(cfg: &Config) -> Result<Engine> {
    let store = open_store(cfg).await?;
    let clair = clair(cfg)?;
    Ok(Engine::open(store, engine_config(cfg, clair.as_ref())).await?)
}

/// Inbound PSK verification (Clair's `auth.psk`): HS256, the configured issuers plus
/// `clair-intraservice`.
pub(crate) fn token_verifier(cfg: &Config) -> Option<tocsin_api::TokenVerifier> {
    let psk = cfg.psk.as_ref()?;
    let key = PskKey::from_bytes(psk.key.expose().clone()).ok()?;
    let mut issuers = psk.issuers.clone();
    issuers.push(tocsin_deliver::jwt::INTRASERVICE_ISSUER.to_string());
    Some(Arc::new(move |token: &str| {
        tocsin_deliver::jwt::verify(token, &key, &issuers)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }))
}

/// The configured push channel, ready to deliver.
pub(crate) async fn deliverer(cfg: &Config) -> Result<Option<Arc<dyn Deliverer>>> {
    match &cfg.notifier.channel {
        None => Ok(None),
        Some(Channel::Webhook(w)) => {
            let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for (k, v) in &w.headers {
                headers.entry(k.clone()).or_default().push(v.clone());
            }
            let psk = match &cfg.psk {
                Some(p) => Some(PskKey::from_bytes(p.key.expose().clone())?),
                None => None,
            };
            let wc = WebhookConfig {
                headers,
                connect_timeout: cfg.tocsin.delivery.connect_timeout,
                timeout: cfg.tocsin.delivery.timeout,
                psk,
                ..WebhookConfig::new(w.target.as_str(), w.callback.as_str())
            };
            Ok(Some(Arc::new(WebhookDeliverer::new(&wc)?)))
        }
        Some(Channel::Amqp(a)) => {
            let mut ac = AmqpConfig::new(
                a.uris.iter().map(|u| u.text().to_owned()).collect(),
                a.routing_key.clone(),
                broker_mode(&a.delivery),
            );
            ac.exchange = AmqpExchange {
                name: a.exchange.name.clone(),
                kind: a
                    .exchange
                    .kind
                    .map(|k| k.as_str().to_owned())
                    .unwrap_or_default(),
                durable: a.exchange.durable,
                auto_delete: a.exchange.auto_delete,
            };
            ac.tls = a.tls.as_ref().map(tls_files);
            ac.connect_timeout = cfg.tocsin.delivery.connect_timeout;
            ac.timeout = cfg.tocsin.delivery.timeout;
            ac.persistent = cfg.tocsin.delivery.persistent;
            Ok(Some(Arc::new(AmqpDeliverer::new(ac)?)))
        }
        Some(Channel::Stomp(st)) => {
            let mut sc = StompConfig::new(
                st.destination.clone(),
                st.uris.iter().map(|h| (h.host.clone(), h.port)).collect(),
                broker_mode(&st.delivery),
            );
            sc.login = st
                .login
                .as_ref()
                .map(|l| (l.login.clone(), l.passcode.expose().clone()));
            sc.tls = st.tls.as_ref().map(tls_files);
            sc.connect_timeout = cfg.tocsin.delivery.connect_timeout;
            sc.timeout = cfg.tocsin.delivery.timeout;
            sc.persistent = cfg.tocsin.delivery.persistent;
            Ok(Some(Arc::new(StompDeliverer::new(sc)?)))
        }
    }
}

/// Callback or direct mode of a broker channel.
fn broker_mode(d: &config::Delivery) -> BrokerMode {
    match d {
        config::Delivery::Callback(url) => BrokerMode::Callback(Callback::new(url.as_str())),
        config::Delivery::Direct { rollup } => BrokerMode::Direct {
            rollup: rollup.get(),
        },
    }
}

fn tls_files(t: &config::ClientTls) -> TlsFiles {
    TlsFiles {
        root_ca: t.root_ca.clone(),
        identity: t.identity.as_ref().map(|i| (i.cert.clone(), i.key.clone())),
    }
}

/// Clair v2's webhook (`clair.notifier`), when configured, ready to send.
pub(crate) async fn legacy_webhook(
    cfg: &Config,
) -> Result<Option<Arc<tocsin_deliver::webhook_v2::LegacyWebhook>>> {
    let Some(l) = &cfg.legacy_webhook else {
        return Ok(None);
    };
    let tls = l.tls.as_ref();
    let wc = tocsin_deliver::webhook_v2::LegacyWebhookConfig {
        attempts: l.attempts.get(),
        renotify_interval: l.renotify_interval,
        server_name: l.server_name.clone(),
        root_ca: tls.and_then(|t| t.root_ca.clone()),
        identity: tls
            .and_then(|t| t.identity.as_ref())
            .map(|i| (i.cert.clone(), i.key.clone())),
        proxy: l.proxy.as_ref().map(|p| p.to_string()),
        connect_timeout: cfg.tocsin.delivery.connect_timeout,
        timeout: cfg.tocsin.delivery.timeout,
        ..tocsin_deliver::webhook_v2::LegacyWebhookConfig::new(l.endpoint.as_str())
    };
    Ok(Some(Arc::new(
        tocsin_deliver::webhook_v2::LegacyWebhook::new(wc).await?,
    )))
}

/// Retry policy and worker options from `tocsin.delivery`.
pub(crate) fn delivery_settings(cfg: &Config) -> (RetryPolicy, WorkerOptions) {
    let d = &cfg.tocsin.delivery;
    (
        RetryPolicy {
            initial: d.initial_backoff,
            max: d.max_backoff,
            dead_letter_after: d.dead_letter_after,
            ..RetryPolicy::default()
        },
        WorkerOptions {
            lease: d.lease,
            timeout: d.timeout,
            concurrency: d.workers.get(),
            ..WorkerOptions::default()
        },
    )
}
