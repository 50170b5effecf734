//! tocsin's PostgreSQL store: the [`Store`] trait on a database shared by several tocsin
//! processes, selected by `notifier.connstring`.
//!
//! Large installs run several `tocsin serve` processes against one database and expect them to
//! behave as one service. The trait's invariants (all-or-nothing imports, exactly-once processing
//! through the processed mark's compare-and-set, leased deliveries) are the same as the embedded
//! store's; what changes is that the competitors are other processes, so every compare-and-set is
//! a row lock or an advisory lock taken inside the transaction that acts on it.
//!
//! # Design
//!
//! - **Driver and pool.** `tokio-postgres` (async, native binary `COPY`) behind a small
//!   `deadpool-postgres` pool. Broken connections (a restarted server) are dropped by the pool's
//!   recycle check and replaced on the next call, so a restart costs the calls in flight, not the
//!   process. Statements are prepared once per connection and cached.
//! - **Coordination** (details in each module):
//!   - update processing: `commit_processed` locks the updater row and re-checks the processed
//!     mark in its transaction, so exactly one process commits each operation;
//!   - delivery: receipts are claimed `FOR UPDATE SKIP LOCKED` and leased in one transaction, so
//!     no two processes deliver the same receipt; a dead process's leases expire and are taken
//!     over;
//!   - Clair v2/v3 notifications: written in `commit_processed`'s transaction; the v2 webhook's
//!     sends are claimed and leased like receipts; shared secrets (the page-token key) are
//!     first-writer-wins via `INSERT … ON CONFLICT DO NOTHING`, so every process signs alike;
//!   - garbage collection: under `pg_try_advisory_xact_lock`, one process at a time (the others
//!     get zero counts);
//!   - the manifest change feed: writers hold an advisory lock from taking a `seq` to commit, so
//!     feed positions become visible in order and every process's index can follow the feed;
//!   - held update operations: imports supersede, and acceptance accepts, the held operation
//!     under the updater's row lock, so a held operation is accepted or superseded, never both;
//!   - followed sources: a claim is one `INSERT … ON CONFLICT DO UPDATE … WHERE … RETURNING`
//!     on the source's row, so of several processes claiming a free source exactly one gets it,
//!     and finishing a run is guarded by the lease holder.
//! - **Wake-ups.** Writers `pg_notify` in their transaction (delivered at commit); one
//!   `LISTEN` connection per process turns them into [`StoreEvent`]s ([`Store::events`]).
//! - **Bulk writes.** Notification entries go through binary `COPY`; vulnerabilities,
//!   memberships, receipts and leases through single multi-row statements over arrays.
//! - **Schema migrations** (`notifier.migrations: true`, as in Clair) run at connect under a
//!   session advisory lock, each in a transaction with its `schema_migrations` row, so several
//!   processes may start at once. With migrations off the version is checked and a mismatch is a
//!   clear error.
//! - **Times** are BIGINT Unix nanoseconds, as in the embedded store: exact round trips and plain
//!   integer comparisons.
//! - **TLS** follows libpq's connection-string keys (`sslmode` from `disable` to `verify-full`,
//!   `sslrootcert`, `sslcert`, `sslkey`, `sslcrl`, …) on rustls; see [`tls`] for the details and
//!   where it differs from libpq. The pool and the `LISTEN` connection share one connector.
//!
//! Column types are fixed by this crate's own schema (checked by version at connect), so row
//! accessors that would only fail on a different schema are used directly; everything decoded
//! from stored text (JSON, digests, statuses, out-of-range numbers) is checked and reported as
//! [`StoreError::Corrupt`] naming the row.
#![deny(missing_docs)]

mod convert;
mod feeds;
mod legacy;
mod listen;
mod manifests;
mod outbox;
mod schema;
mod sources;
#[cfg(feature = "test-support")]
pub mod testing;
pub mod tls;

use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Client, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use time::OffsetDateTime;
use tocsin_model::change::ChangeSet;
use tocsin_model::claircore::UpdateOperation;
use tocsin_model::inventory::Manifest;
use tocsin_model::notification::{Notification, ReceiptStatus};
use tocsin_model::vuln::{Addressed, VulnId, Vulnerability};
use tocsin_model::Digest;
use tocsin_store::{
    Attempt, Backlog, BulkItem, BulkOutcome, DeliveryTask, GcStats, ImportOutcome, IndexEntry,
    LegacyDeliveryOutcome, LegacyDeliveryTask, LegacyLayer, LegacyNotification, ManifestChange,
    ManifestId, ManifestSummary, MarkRead, NewNotificationSet, NotificationSetInfo,
    ProcessedUpdate, PutOutcome, Result, SourceRun, SourceState, Store, StoreError, StoreEvent,
    UpdaterInfo,
};
use tokio::sync::broadcast;
use uuid::Uuid;

pub use crate::tls::{PgTls, SslMode};

use crate::convert::PgContext;

/// Connections kept by default: enough for the API, processing and a delivery worker's
/// concurrency at once; PostgreSQL's default `max_connections` (100) fits dozens of processes.
pub const DEFAULT_POOL_SIZE: usize = 16;

/// How long connecting (and waiting for a free pooled connection) may take before a call fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Events buffered per subscriber before it is told it lagged.
const EVENT_BUFFER: usize = 1024;

/// How to connect.
#[derive(Clone)]
pub struct PgOptions {
    /// A libpq `key=value` string or a `postgres://` URL (`notifier.connstring`).
    pub connstring: String,
    /// Create and migrate the schema (`notifier.migrations`); else only check its version.
    pub migrations: bool,
    /// Pooled connections at most.
    pub pool_size: usize,
}

impl std::fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOptions")
            .field("connstring", &redact(&self.connstring))
            .field("migrations", &self.migrations)
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

impl PgOptions {
    /// Options with the default pool size.
    pub fn new(connstring: impl Into<String>, migrations: bool) -> Self {
        PgOptions {
            connstring: connstring.into(),
            migrations,
            pool_size: DEFAULT_POOL_SIZE,
        }
    }
}

/// A connection string with its password replaced, for messages and `Debug` (works for both
/// forms; an unparsable string is hidden entirely since we cannot tell where a password is).
pub fn redact(connstring: &str) -> String {
    match driver_config(connstring) {
        Ok((c, _)) => describe(&c),
        Err(_) => "<unparsable connection string>".to_string(),
    }
}

/// `user@host:port/dbname` of a parsed configuration (never the password).
fn describe(c: &tokio_postgres::Config) -> String {
    let host = c
        .get_hosts()
        .iter()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .collect::<Vec<_>>()
        .join(",");
    let port = c
        .get_ports()
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",");
    format!(
        "{}@{}:{}/{}{}",
        c.get_user().unwrap_or("<default user>"),
        if host.is_empty() {
            "<default host>"
        } else {
            &host
        },
        if port.is_empty() { "5432" } else { &port },
        c.get_dbname().unwrap_or("<default database>"),
        if c.get_password().is_some() {
            " (password set)"
        } else {
            ""
        }
    )
}

/// tokio-postgres's view of a connection string (its TLS keys taken out) and those keys.
fn driver_config(connstring: &str) -> Result<(tokio_postgres::Config, Vec<(String, String)>)> {
    let not_a_connstring = |e: &dyn std::fmt::Display| {
        StoreError::Invalid(format!(
            "notifier.connstring is neither libpq key=value pairs nor a postgres:// URL: {e}"
        ))
    };
    let split = tls::split(connstring).map_err(|e| not_a_connstring(&e))?;
    let config = tokio_postgres::Config::from_str(&split.rest).map_err(|e| not_a_connstring(&e))?;
    Ok((config, split.tls))
}

/// A parsed connection string: the driver's settings and the TLS connector that goes with them.
#[derive(Clone, Debug)]
pub struct Connect {
    /// tokio-postgres's settings (TLS mode included; the libpq TLS keys are in `tls`).
    pub config: tokio_postgres::Config,
    /// The TLS connector (rustls) for `config`.
    pub tls: PgTls,
}

impl Connect {
    /// Opens one connection (outside any pool) and drives it on a task of its own.
    pub async fn connect(
        &self,
    ) -> std::result::Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, connection) = self.config.connect(self.tls.clone()).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "PostgreSQL connection ended");
            }
        });
        Ok(client)
    }
}

/// Parses and checks a connection string without connecting: libpq's TLS keys are resolved
/// (their files read) into the connector, the rest goes to tokio-postgres.
pub fn parse_connstring(connstring: &str) -> Result<Connect> {
    let (mut config, keys) = driver_config(connstring)?;
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let settings = tls::Settings::resolve(&keys, home.as_deref()).map_err(|e| {
        StoreError::Invalid(format!("notifier.connstring ({}): {e}", describe(&config)))
    })?;
    let tcp = |h: &tokio_postgres::config::Host| matches!(h, tokio_postgres::config::Host::Tcp(_));
    if config.get_hosts().is_empty() && !config.get_hostaddrs().is_empty() {
        if settings.checks_name() {
            return Err(StoreError::Invalid(format!(
                "notifier.connstring ({}): sslmode=verify-full needs host= (the name the server's \
                 certificate must hold) beside hostaddr=",
                describe(&config)
            )));
        }
        // tokio-postgres does TLS only with a host name: name each address by itself.
        let addrs: Vec<String> = config
            .get_hostaddrs()
            .iter()
            .map(|a| a.to_string())
            .collect();
        for a in addrs {
            config.host(&a);
        }
    }
    let over_tcp = config.get_hosts().iter().any(tcp);
    // libpq ignores sslmode on Unix sockets, where PostgreSQL never speaks TLS.
    config.ssl_mode(if over_tcp || config.get_hosts().is_empty() {
        settings.driver_mode()
    } else {
        tokio_postgres::config::SslMode::Disable
    });
    let tls = settings.connector().map_err(|e| {
        StoreError::Invalid(format!("notifier.connstring ({}): {e}", describe(&config)))
    })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("tocsin");
    }
    Ok(Connect { config, tls })
}

/// The PostgreSQL store. Cheap to clone: clones share the pool and the event listener.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    config: tokio_postgres::Config,
    tls: PgTls,
    events: OnceLock<broadcast::Sender<StoreEvent>>,
    listener: OnceLock<tokio::task::AbortHandle>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(h) = self.listener.get() {
            h.abort();
        }
    }
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("database", &describe(&self.inner.config))
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects, and migrates the schema (or checks its version when `opts.migrations` is off).
    pub async fn connect(opts: &PgOptions) -> Result<PgStore> {
        let Connect { config, tls } = parse_connstring(&opts.connstring)?;
        let target = describe(&config);
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig {
                // Fast: a closed connection (server restarted) is detected and replaced; a
                // half-open one fails its next statement, which the caller retries.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(opts.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(CONNECT_TIMEOUT))
            .wait_timeout(Some(Duration::from_secs(60)))
            .build()
            .map_err(|e| StoreError::Invalid(format!("PostgreSQL pool for {target}: {e}")))?;
        let store = PgStore {
            inner: Arc::new(Inner {
                pool,
                config,
                tls,
                events: OnceLock::new(),
                listener: OnceLock::new(),
            }),
        };
        let mut c = store.client().await?;
        if opts.migrations {
            schema::migrate(&mut c).await?;
        } else {
            schema::check(&c).await?;
        }
        tracing::debug!(database = %target, "opened the PostgreSQL store");
        Ok(store)
    }

    /// A pooled connection.
    async fn client(&self) -> Result<Client> {
        self.inner.pool.get().await.with_ctx(|| {
            format!(
                "connecting to PostgreSQL at {}",
                describe(&self.inner.config)
            )
        })
    }

    /// `user@host:port/dbname` of the database (no password).
    pub fn database(&self) -> String {
        describe(&self.inner.config)
    }

    /// Imports a snapshot, held with the reason when `hold` is given.
    async fn import(
        &self,
        updater: &str,
        fingerprint: &str,
        vulns: &[Addressed],
        now: OffsetDateTime,
        hold: Option<&str>,
    ) -> Result<ImportOutcome> {
        // The connection goes back to the pool while the new records are encoded.
        let stored = feeds::latest_ids(&self.client().await?, updater).await?;
        let encoded = tocsin_store::codec::encode_snapshot(updater, vulns, &stored)?;
        feeds::import(
            &mut self.client().await?,
            updater,
            fingerprint,
            &encoded,
            now,
            hold,
        )
        .await
    }
}

#[async_trait]
impl Store for PgStore {
    async fn put_manifest(
        &self,
        m: &Manifest,
        now: OffsetDateTime,
    ) -> Result<(ManifestId, PutOutcome)> {
        let encoded = manifests::encode(m)?;
        manifests::put(&mut self.client().await?, &encoded, now).await
    }

    async fn get_manifest(&self, digest: &Digest) -> Result<Option<Manifest>> {
        manifests::get(&self.client().await?, digest).await
    }

    async fn delete_manifest(&self, digest: &Digest) -> Result<bool> {
        manifests::delete(&mut self.client().await?, digest).await
    }

    async fn list_manifests(
        &self,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<ManifestSummary>> {
        manifests::list(&self.client().await?, after, limit).await
    }

    async fn put_manifests(
        &self,
        mut items: tokio::sync::mpsc::Receiver<BulkItem>,
        now: OffsetDateTime,
    ) -> Result<BulkOutcome> {
        manifests::put_stream(&mut self.client().await?, &mut items, now).await
    }

    async fn index_entries_after(
        &self,
        after: Option<ManifestId>,
        limit: usize,
    ) -> Result<Vec<IndexEntry>> {
        manifests::entries_after(&self.client().await?, after, limit).await
    }

    async fn index_entries(&self, ids: &[ManifestId]) -> Result<Vec<IndexEntry>> {
        manifests::entries_of(&self.client().await?, ids).await
    }

    async fn manifest_labels(
        &self,
        ids: &[ManifestId],
        label: &str,
    ) -> Result<std::collections::HashMap<ManifestId, String>> {
        manifests::labels_of(&self.client().await?, ids, label).await
    }

    async fn manifest_changes(&self, after: u64, limit: usize) -> Result<Vec<ManifestChange>> {
        manifests::changes(&self.client().await?, after, limit).await
    }

    async fn manifest_change_head(&self) -> Result<u64> {
        manifests::change_head(&self.client().await?).await
    }

    async fn import_snapshot(
        &self,
        updater: &str,
        fingerprint: &str,
        vulns: &[Addressed],
        now: OffsetDateTime,
    ) -> Result<ImportOutcome> {
        self.import(updater, fingerprint, vulns, now, None).await
    }

    async fn import_held(
        &self,
        updater: &str,
        fingerprint: &str,
        vulns: &[Addressed],
        now: OffsetDateTime,
        reason: &str,
    ) -> Result<ImportOutcome> {
        self.import(updater, fingerprint, vulns, now, Some(reason))
            .await
    }

    async fn accept_operation(&self, updater: &str, op: Uuid) -> Result<UpdateOperation> {
        feeds::accept(&mut self.client().await?, updater, op).await
    }

    async fn updaters(&self) -> Result<Vec<UpdaterInfo>> {
        feeds::updaters(&self.client().await?).await
    }

    async fn update_operations(&self, updater: &str) -> Result<Vec<UpdateOperation>> {
        feeds::operations(&self.client().await?, updater).await
    }

    async fn operation_vulnerabilities(&self, op: Uuid) -> Result<Vec<VulnId>> {
        feeds::operation_vulnerabilities(&self.client().await?, op).await
    }

    async fn vulnerabilities(&self, ids: &[VulnId]) -> Result<Vec<(VulnId, Vulnerability)>> {
        feeds::vulnerabilities(&self.client().await?, ids).await
    }

    async fn claim_source(
        &self,
        name: &str,
        holder: Uuid,
        now: OffsetDateTime,
        lease_for: Duration,
        due_only: bool,
    ) -> Result<Option<SourceState>> {
        sources::claim(
            &self.client().await?,
            name,
            holder,
            now,
            lease_for,
            due_only,
        )
        .await
    }

    async fn finish_source_run(&self, name: &str, holder: Uuid, run: &SourceRun) -> Result<()> {
        sources::finish(&self.client().await?, name, holder, run).await
    }

    async fn sources(&self) -> Result<Vec<SourceState>> {
        sources::all(&self.client().await?).await
    }

    async fn commit_processed(&self, p: &ProcessedUpdate) -> Result<()> {
        let encoded = outbox::encode_processed(p)?;
        outbox::commit_processed(&mut self.client().await?, &encoded).await
    }

    async fn change_set(&self, op: Uuid) -> Result<Option<ChangeSet>> {
        outbox::change_set(&self.client().await?, op).await
    }

    async fn create_notification_set(&self, set: &NewNotificationSet) -> Result<()> {
        let encoded = outbox::encode_set(set)?;
        outbox::create_set(&mut self.client().await?, &encoded).await
    }

    async fn notification_page(
        &self,
        set: Uuid,
        after: u64,
        limit: usize,
    ) -> Result<Option<(Vec<Notification>, Option<u64>)>> {
        outbox::page(&self.client().await?, set, after, limit).await
    }

    async fn delete_notification_set(&self, set: Uuid, now: OffsetDateTime) -> Result<bool> {
        outbox::delete_set(&mut self.client().await?, set, now).await
    }

    async fn notification_set(&self, set: Uuid) -> Result<Option<NotificationSetInfo>> {
        outbox::notification_set(&mut self.client().await?, set).await
    }

    async fn notification_sets(
        &self,
        status: Option<ReceiptStatus>,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<NotificationSetInfo>> {
        outbox::notification_sets(&mut self.client().await?, status, after, limit).await
    }

    async fn claim_deliveries(
        &self,
        channel: &str,
        now: OffsetDateTime,
        lease_for: Duration,
        limit: usize,
    ) -> Result<Vec<DeliveryTask>> {
        outbox::claim(&mut self.client().await?, channel, now, lease_for, limit).await
    }

    async fn record_attempts(
        &self,
        batch: &[(DeliveryTask, Attempt)],
    ) -> Result<Vec<Result<ReceiptStatus>>> {
        let encoded = batch
            .iter()
            .map(|(t, a)| outbox::encode_attempt(t, a).map(|e| (t.clone(), e)))
            .collect::<Result<Vec<_>>>()?;
        outbox::record_attempts(&mut self.client().await?, &encoded).await
    }

    async fn record_attempt(
        &self,
        task: &DeliveryTask,
        attempt: &Attempt,
    ) -> Result<ReceiptStatus> {
        let encoded = outbox::encode_attempt(task, attempt)?;
        outbox::record_attempt(&mut self.client().await?, task, &encoded).await
    }

    async fn attempts(&self, set: Uuid) -> Result<Vec<Attempt>> {
        outbox::attempts(&self.client().await?, set).await
    }

    async fn backlog(&self) -> Result<Backlog> {
        outbox::backlog(&self.client().await?).await
    }

    async fn legacy_notification(&self, name: Uuid) -> Result<Option<LegacyNotification>> {
        legacy::get(&self.client().await?, name).await
    }

    async fn legacy_notifications(&self, operation: Uuid) -> Result<Vec<LegacyNotification>> {
        legacy::of_operation(&self.client().await?, operation).await
    }

    async fn legacy_layers(&self, operation: Uuid) -> Result<Vec<LegacyLayer>> {
        legacy::layers(&self.client().await?, operation).await
    }

    async fn mark_legacy_read(&self, name: Uuid, now: OffsetDateTime) -> Result<MarkRead> {
        legacy::mark_read(&mut self.client().await?, name, now).await
    }

    async fn claim_legacy_deliveries(
        &self,
        now: OffsetDateTime,
        lease_for: Duration,
        limit: usize,
    ) -> Result<Vec<LegacyDeliveryTask>> {
        legacy::claim(&mut self.client().await?, now, lease_for, limit).await
    }

    async fn record_legacy_delivery(
        &self,
        task: &LegacyDeliveryTask,
        outcome: LegacyDeliveryOutcome,
    ) -> Result<()> {
        legacy::record(&mut self.client().await?, task, outcome).await
    }

    async fn secret(&self, name: &str, candidate: &[u8]) -> Result<Vec<u8>> {
        legacy::secret(&self.client().await?, name, candidate).await
    }

    async fn collect_garbage(
        &self,
        now: OffsetDateTime,
        delivered_retention: Duration,
    ) -> Result<GcStats> {
        outbox::collect_garbage(&mut self.client().await?, now, delivered_retention).await
    }

    fn events(&self) -> Option<broadcast::Receiver<StoreEvent>> {
        let tx = self
            .inner
            .events
            .get_or_init(|| broadcast::channel(EVENT_BUFFER).0);
        let rx = tx.subscribe();
        // The listener starts with the first subscriber (one-shot CLI commands never pay for
        // it); without a runtime there is nobody to wake, so there is nothing to subscribe to.
        let handle = tokio::runtime::Handle::try_current().ok()?;
        self.inner.listener.get_or_init(|| {
            handle
                .spawn(listen::run(
                    self.inner.config.clone(),
                    self.inner.tls.clone(),
                    tx.clone(),
                ))
                .abort_handle()
        });
        Some(rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_connstring_forms_parse_and_the_password_never_shows() {
        for s in [
            "host=db.example user=tocsin password=hunter2 dbname=notifier",
            "postgres://tocsin:hunter2@db.example/notifier",
        ] {
            let c = parse_connstring(s).unwrap().config;
            assert_eq!(c.get_dbname(), Some("notifier"));
            let shown = redact(s);
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("tocsin@db.example:5432/notifier"), "{shown}");
            let opts = PgOptions::new(s, true);
            assert!(!format!("{opts:?}").contains("hunter2"));
        }
        assert_eq!(
            redact("postgres://a:hunter2@[bad"),
            "<unparsable connection string>"
        );
    }

    #[test]
    fn tls_keys_reach_the_connector_not_the_driver() {
        use tokio_postgres::config::SslMode as D;
        let c = parse_connstring("host=db user=u sslmode=require sslsni=0").unwrap();
        assert_eq!(c.config.get_ssl_mode(), D::Require);
        assert_eq!(c.tls.mode(), SslMode::Require);
        let c = parse_connstring("postgres://u@db/n?sslmode=verify-full&sslrootcert=system");
        // Without a system trust store this fails naming it; with one it is verify-full.
        match c {
            Ok(c) => assert_eq!(c.tls.mode(), SslMode::VerifyFull),
            Err(e) => assert!(e.to_string().contains("system"), "{e}"),
        }
        let c = parse_connstring("host=db user=u sslmode=disable").unwrap();
        assert_eq!(c.config.get_ssl_mode(), D::Disable);
        let c = parse_connstring("host=db user=u").unwrap();
        assert_eq!(c.config.get_ssl_mode(), D::Prefer);
        // Unix sockets never speak TLS: libpq ignores sslmode there.
        let c = parse_connstring("host=/var/run/postgresql user=u sslmode=require").unwrap();
        assert_eq!(c.config.get_ssl_mode(), D::Disable);
        // An address alone is named by itself for TLS; verify-full needs the name.
        let c = parse_connstring("hostaddr=127.0.0.1 user=u sslmode=require").unwrap();
        assert_eq!(c.config.get_hosts().len(), 1);
        let err = parse_connstring(
            "hostaddr=127.0.0.1 user=u password=hunter2 sslmode=verify-full sslrootcert=system",
        )
        .unwrap_err()
        .to_string();
        assert!(!err.contains("hunter2"), "{err}");
        let err = parse_connstring("host=db password=hunter2 sslmode=verify-ca")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("sslrootcert") && !err.contains("hunter2"),
            "{err}"
        );
        assert!(matches!(
            parse_connstring("definitely not = a dsn = ="),
            Err(StoreError::Invalid(_))
        ));
        assert_eq!(
            redact("host=db user=u password=hunter2 sslmode=verify-ca sslrootcert=/nonexistent"),
            "u@db:5432/<default database> (password set)"
        );
    }
}
