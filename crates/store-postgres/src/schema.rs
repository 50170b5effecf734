//! The schema and its migrations.
//!
//! Several processes may start at once against one database, so [`migrate`] takes a session-level
//! advisory lock ([`LOCK_MIGRATE`]) first: the first process applies what is missing, the others
//! wait for it and then find nothing to do. Each migration runs in its own transaction together
//! with its `schema_migrations` row, so a crash mid-migration leaves the previous version intact.
use tocsin_store::StoreError;
use tokio_postgres::Client;

use crate::convert::{PgContext, Result};

/// Advisory lock keys (one namespace per database; the high bytes spell "tocsin" so they are
/// unlikely to collide with another application's keys in a shared database).
const KEY_BASE: i64 = 0x746f_6373_696e_0000;
/// Held while migrating.
pub(crate) const LOCK_MIGRATE: i64 = KEY_BASE + 1;
/// Held (per transaction) while a manifest is written, so feed `seq`s commit in order.
pub(crate) const LOCK_FEED: i64 = KEY_BASE + 2;
/// Held (per transaction) by garbage collection: one collection at a time.
pub(crate) const LOCK_GC: i64 = KEY_BASE + 3;
/// Shared by imports, exclusive for removing unreferenced vulnerabilities: a vulnerability an
/// import is about to link is never collected under it.
pub(crate) const LOCK_VULNS: i64 = KEY_BASE + 4;

/// The channel of `LISTEN`/`NOTIFY` wake-ups.
pub(crate) const NOTIFY_CHANNEL: &str = "tocsin_events";

/// The schema, one entry per version.
///
/// Design notes (why, not what):
/// - Ordered text columns (`digest`, vulnerability ids, updater and channel names) are
///   `COLLATE "C"`: the trait promises byte order, and the database's default collation may be a
///   locale's.
/// - `manifest.id` and the feed's `seq` come from sequences, which never hand a number out twice.
///   A sequence alone does not give commit order, so writers of the feed hold [`LOCK_FEED`] from
///   taking a `seq` until they commit: readers can then never see a larger `seq` before a smaller
///   one.
/// - `vulnerability` is content-addressed; `operation_vulnerability` is the per-snapshot
///   membership, keyed (op, vuln_id) so one operation's ids come back sorted from the index.
/// - `notification_entry` is keyed (set, position) with dense positions 1..n: paging is an index
///   range scan; entries are written with binary `COPY`.
/// - `receipt` is the outbox, written in the same transaction as its set; workers claim rows with
///   `FOR UPDATE SKIP LOCKED` plus a lease, so no two processes deliver the same receipt.
/// - Children of a notification set cascade on delete so garbage collection is one statement.
/// - Times are BIGINT Unix nanoseconds (see `convert`).
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE manifest (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    digest       TEXT COLLATE "C" NOT NULL UNIQUE,
    format       TEXT   NOT NULL,
    labels       TEXT   NOT NULL,
    report       TEXT   NOT NULL,
    content_hash TEXT   NOT NULL,
    packages     BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);

CREATE SEQUENCE manifest_change_seq;
CREATE TABLE manifest_change (
    seq     BIGINT  PRIMARY KEY,
    id      BIGINT  NOT NULL UNIQUE,
    digest  TEXT    NOT NULL,
    deleted BOOLEAN NOT NULL
);

CREATE TABLE vulnerability (
    id   TEXT COLLATE "C" PRIMARY KEY,
    body TEXT NOT NULL
);

CREATE TABLE updater (
    name         TEXT COLLATE "C" PRIMARY KEY,
    processed_op UUID
);

CREATE TABLE operation (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ref         UUID   NOT NULL UNIQUE,
    updater     TEXT COLLATE "C" NOT NULL REFERENCES updater(name),
    fingerprint TEXT   NOT NULL,
    kind        TEXT   NOT NULL,
    date        TEXT   NOT NULL,
    vulns       BIGINT NOT NULL
);
CREATE INDEX operation_by_updater ON operation(updater, seq);

CREATE TABLE operation_vulnerability (
    op      BIGINT NOT NULL REFERENCES operation(seq),
    vuln_id TEXT COLLATE "C" NOT NULL REFERENCES vulnerability(id),
    PRIMARY KEY (op, vuln_id)
);
CREATE INDEX operation_vulnerability_by_vuln ON operation_vulnerability(vuln_id);

CREATE TABLE change_set (
    op   BIGINT PRIMARY KEY REFERENCES operation(seq),
    body TEXT NOT NULL
);

CREATE TABLE notification_set (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id         UUID   NOT NULL UNIQUE,
    updater    TEXT   NOT NULL,
    operation  UUID,
    entries    BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    deleted_at BIGINT
);
CREATE INDEX notification_set_by_age ON notification_set(created_at, seq);

CREATE TABLE notification_entry (
    set_seq  BIGINT NOT NULL REFERENCES notification_set(seq) ON DELETE CASCADE,
    position BIGINT NOT NULL,
    body     TEXT   NOT NULL,
    PRIMARY KEY (set_seq, position)
);

CREATE TABLE receipt (
    set_seq         BIGINT NOT NULL REFERENCES notification_set(seq) ON DELETE CASCADE,
    channel         TEXT COLLATE "C" NOT NULL,
    status          TEXT   NOT NULL CHECK (status IN
                        ('created', 'delivered', 'delivery_failed', 'dead_letter', 'deleted')),
    attempts        BIGINT NOT NULL,
    next_attempt_at BIGINT,
    lease_id        UUID,
    lease_until     BIGINT,
    delivered_at    BIGINT,
    PRIMARY KEY (set_seq, channel)
);
CREATE INDEX receipt_due ON receipt(channel, status, next_attempt_at);

CREATE TABLE attempt (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    set_seq     BIGINT NOT NULL REFERENCES notification_set(seq) ON DELETE CASCADE,
    channel     TEXT    NOT NULL,
    at          BIGINT  NOT NULL,
    duration_ms BIGINT  NOT NULL,
    status_code INTEGER,
    error       TEXT,
    outcome     TEXT    NOT NULL CHECK (outcome IN ('delivered', 'delivered_and_deleted', 'failed')),
    retry_at    BIGINT,
    dead_letter BOOLEAN NOT NULL
);
CREATE INDEX attempt_by_set ON attempt(set_seq, at, seq);
"#,
    // 2: Clair v2/v3 notifications (see `legacy`). A notification is a name pointing at one
    // change of an operation's stored change set, so it holds no content; `legacy_layer` fixes,
    // per operation, each named manifest's index and display name at processing time (no foreign
    // key to `manifest`: the manifest may be deleted while its notifications live on).
    // `next_send_at` NULL means "never send again" (read, or renotifying is off); the partial
    // indexes keep the v2 webhook's due scan to unread rows and garbage collection to read ones.
    // `secret` holds values every process must share, such as the page-token signing key.
    r#"
CREATE TABLE legacy_notification (
    name         UUID   PRIMARY KEY,
    op           BIGINT NOT NULL REFERENCES operation(seq),
    change       BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    notified_at  BIGINT,
    deleted_at   BIGINT,
    next_send_at BIGINT,
    lease_id     UUID,
    lease_until  BIGINT,
    UNIQUE (op, change)
);
CREATE INDEX legacy_notification_due ON legacy_notification(next_send_at)
    WHERE deleted_at IS NULL;
CREATE INDEX legacy_notification_read ON legacy_notification(deleted_at)
    WHERE deleted_at IS NOT NULL;

CREATE TABLE legacy_layer (
    op     BIGINT NOT NULL REFERENCES operation(seq),
    digest TEXT COLLATE "C" NOT NULL,
    idx    BIGINT NOT NULL,
    name   TEXT   NOT NULL,
    PRIMARY KEY (op, digest)
);

CREATE TABLE secret (
    name  TEXT  PRIMARY KEY,
    value BYTEA NOT NULL
);
"#,
    // 3: inventories and change sets at fleet scale. `manifest_packages` holds each manifest's
    // installed packages in the compact form the index is rebuilt from
    // (`tocsin_store::codec::encode_packages`), so a rebuild never decodes report JSON (manifests
    // stored before this version have no row, and their report is read instead). Change sets
    // become bytes: the binary encoding for new rows, the old JSON text converted to its UTF-8
    // bytes (`codec::decode_change_set` reads both).
    r#"
CREATE TABLE manifest_packages (
    id       BIGINT PRIMARY KEY REFERENCES manifest(id) ON DELETE CASCADE,
    packages BYTEA  NOT NULL
);
ALTER TABLE change_set ALTER COLUMN body TYPE BYTEA USING convert_to(body, 'UTF8');
"#,
    // 4: held update operations and followed sources (see `feeds` and `sources`). An operation
    // is `accepted` (every operation stored before this version), `held` by the storm guard with
    // the operator's `held_reason`, or `superseded` (a held one a later import replaced: never
    // processed, removed by garbage collection). Only accepted operations are an updater's
    // operations; the unique partial index makes "at most one held operation per updater" a
    // constraint, and the other one keeps garbage collection's scan to superseded rows (adding a
    // column with a constant default rewrites no rows). `followed_source` is the lease and
    // schedule of one source tocsin fetches itself, claimed by one upsert so that processes
    // racing for it get it once; times are Unix nanoseconds like everywhere else, a NULL
    // `next_run` means due now (never run).
    r#"
ALTER TABLE operation ADD COLUMN status TEXT NOT NULL DEFAULT 'accepted'
    CHECK (status IN ('accepted', 'held', 'superseded'));
ALTER TABLE operation ADD COLUMN held_reason TEXT;
CREATE UNIQUE INDEX operation_held ON operation(updater) WHERE status = 'held';
CREATE INDEX operation_superseded ON operation(seq) WHERE status = 'superseded';

CREATE TABLE followed_source (
    name          TEXT COLLATE "C" PRIMARY KEY,
    lease_holder  UUID,
    lease_until   BIGINT,
    next_run      BIGINT,
    last_attempt  BIGINT,
    last_success  BIGINT,
    last_error_at BIGINT,
    last_error    TEXT,
    failures      BIGINT NOT NULL DEFAULT 0,
    state         TEXT   NOT NULL DEFAULT ''
);
"#,
];

/// The schema version this build writes.
pub(crate) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The newest version recorded, 0 when the versions table does not exist yet.
async fn current_version(c: &Client) -> Result<i64> {
    let exists: bool = c
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
        .await
        .ctx("looking for the schema_migrations table")?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let v: Option<i64> = c
        .query_one("SELECT MAX(version) FROM schema_migrations", &[])
        .await
        .ctx("reading the schema version")?
        .get(0);
    Ok(v.unwrap_or(0))
}

fn too_new(current: i64) -> StoreError {
    StoreError::Invalid(format!(
        "the database has schema version {current}, newer than this build of tocsin supports \
         ({SCHEMA_VERSION}); upgrade tocsin"
    ))
}

/// Brings the schema up to [`SCHEMA_VERSION`] under [`LOCK_MIGRATE`]; a no-op when current.
pub(crate) async fn migrate(c: &mut Client) -> Result<()> {
    migrate_to(c, SCHEMA_VERSION).await
}

/// Applies the migrations up to version `target`.
pub(crate) async fn migrate_to(c: &mut Client, target: i64) -> Result<()> {
    // Session-level: held across the per-migration transactions, released below (and by the
    // server if this process dies).
    c.execute("SELECT pg_advisory_lock($1)", &[&LOCK_MIGRATE])
        .await
        .ctx("taking the migration lock")?;
    let out = apply(c, target).await;
    let unlocked = c
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_MIGRATE])
        .await
        .ctx("releasing the migration lock");
    out.and(unlocked.map(|_| ()))
}

async fn apply(c: &mut Client, target: i64) -> Result<()> {
    c.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    BIGINT PRIMARY KEY,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         )",
    )
    .await
    .ctx("creating schema_migrations")?;
    let current = current_version(c).await?;
    if current > SCHEMA_VERSION {
        return Err(too_new(current));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate() {
        let version = i64::try_from(index).unwrap_or(i64::MAX).saturating_add(1);
        if version <= current || version > target {
            continue;
        }
        let tx = c
            .transaction()
            .await
            .ctx("starting a migration transaction")?;
        tx.batch_execute(sql)
            .await
            .with_ctx(|| format!("applying schema migration {version}"))?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[&version],
        )
        .await
        .with_ctx(|| format!("recording schema migration {version}"))?;
        tx.commit()
            .await
            .with_ctx(|| format!("committing schema migration {version}"))?;
        tracing::info!(version, "applied schema migration");
    }
    Ok(())
}

/// Checks that another process already brought the schema to this build's version (for
/// `notifier.migrations: false`).
pub(crate) async fn check(c: &Client) -> Result<()> {
    let current = current_version(c).await?;
    if current > SCHEMA_VERSION {
        return Err(too_new(current));
    }
    if current < SCHEMA_VERSION {
        return Err(StoreError::Invalid(format!(
            "the database has schema version {current} but this build of tocsin needs \
             {SCHEMA_VERSION}, and notifier.migrations is false; start one process with \
             notifier.migrations: true (or migrate the database) first"
        )));
    }
    Ok(())
}
