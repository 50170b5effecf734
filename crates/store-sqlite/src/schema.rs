//! Connection settings and schema migrations.
//!
//! Migrations are an append-only list: entry `i` is schema version `i + 1`. Each is applied in its
//! own IMMEDIATE transaction together with its `schema_migrations` row, so a crash mid-migration
//! leaves the previous version intact, and two processes opening one directory at once apply each
//! migration exactly once (the second waits on the write lock, then sees the new version).
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use tocsin_store::StoreError;

use crate::convert::{Result, SqlContext};

/// How long a connection waits for another process's write lock before failing.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The schema, one entry per version.
///
/// Design notes (why, not what):
/// - `vulnerability` is content-addressed (id = hash of the body), so importing a snapshot writes
///   only bodies never seen before; `operation_vulnerability` is the per-snapshot membership and is
///   keyed (op, vuln_id) so one operation's ids come back sorted straight from the index.
/// - `operation.seq` orders an updater's operations; the UUID `ref` is the public name.
/// - `notification_entry` is keyed (set, position) with dense positions 1..n: paging is an index
///   range scan and the continuation token is just the last position.
/// - `receipt` is the outbox: one row per (set, channel), committed in the same transaction as the
///   set itself, so a crash can never leave a set without its delivery rows.
/// - Children of a notification set cascade on delete so garbage collection is one statement.
/// - Times are INTEGER Unix nanoseconds (see `convert`).
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE manifest (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    digest       TEXT    NOT NULL UNIQUE,
    format       TEXT    NOT NULL,
    labels       TEXT    NOT NULL,
    report       TEXT    NOT NULL,
    content_hash TEXT    NOT NULL,
    packages     INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);

CREATE TABLE vulnerability (
    id   TEXT PRIMARY KEY,
    body TEXT NOT NULL
);

CREATE TABLE updater (
    name         TEXT PRIMARY KEY,
    processed_op TEXT
);

CREATE TABLE operation (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    ref         TEXT    NOT NULL UNIQUE,
    updater     TEXT    NOT NULL REFERENCES updater(name),
    fingerprint TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    date        TEXT    NOT NULL,
    vulns       INTEGER NOT NULL
);
CREATE INDEX operation_by_updater ON operation(updater, seq);

CREATE TABLE operation_vulnerability (
    op      INTEGER NOT NULL REFERENCES operation(seq),
    vuln_id TEXT    NOT NULL REFERENCES vulnerability(id),
    PRIMARY KEY (op, vuln_id)
) WITHOUT ROWID;
CREATE INDEX operation_vulnerability_by_vuln ON operation_vulnerability(vuln_id);

CREATE TABLE change_set (
    op   INTEGER PRIMARY KEY REFERENCES operation(seq),
    body TEXT NOT NULL
);

CREATE TABLE notification_set (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT    NOT NULL UNIQUE,
    updater    TEXT    NOT NULL,
    operation  TEXT,
    entries    INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    deleted_at INTEGER
);
CREATE INDEX notification_set_by_age ON notification_set(created_at, seq);

CREATE TABLE notification_entry (
    set_seq  INTEGER NOT NULL REFERENCES notification_set(seq) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    body     TEXT    NOT NULL,
    PRIMARY KEY (set_seq, position)
) WITHOUT ROWID;

CREATE TABLE receipt (
    set_seq         INTEGER NOT NULL REFERENCES notification_set(seq) ON DELETE CASCADE,
    channel         TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN
                        ('created', 'delivered', 'delivery_failed', 'dead_letter', 'deleted')),
    attempts        INTEGER NOT NULL,
    next_attempt_at INTEGER,
    lease_id        TEXT,
    lease_until     INTEGER,
    delivered_at    INTEGER,
    PRIMARY KEY (set_seq, channel)
) WITHOUT ROWID;
CREATE INDEX receipt_due ON receipt(channel, status, next_attempt_at);

CREATE TABLE attempt (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    set_seq     INTEGER NOT NULL REFERENCES notification_set(seq) ON DELETE CASCADE,
    channel     TEXT    NOT NULL,
    at          INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    status_code INTEGER,
    error       TEXT,
    outcome     TEXT    NOT NULL CHECK (outcome IN ('delivered', 'delivered_and_deleted', 'failed')),
    retry_at    INTEGER,
    dead_letter INTEGER NOT NULL
);
CREATE INDEX attempt_by_set ON attempt(set_seq, at, seq);
"#,
    // 2: the manifest change feed (see `manifests`). `seq` is the AUTOINCREMENT rowid, so it is
    // never handed out twice even though a manifest's older row is removed when it changes again;
    // `id` is UNIQUE because the feed keeps one (latest) change per manifest id. No foreign key to
    // `manifest`: a delete's row must outlive the manifest. Manifests stored before this version
    // are recorded here, in id order, so an upgraded store's feed is complete; deletes from before
    // the upgrade are not known any more, which no reader can miss, since none followed the feed
    // then.
    r#"
CREATE TABLE manifest_change (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    id      INTEGER NOT NULL UNIQUE,
    digest  TEXT    NOT NULL,
    deleted INTEGER NOT NULL CHECK (deleted IN (0, 1))
);
INSERT INTO manifest_change (id, digest, deleted) SELECT id, digest, 0 FROM manifest ORDER BY id;
"#,
    // 3: Clair v2/v3 notifications (see `legacy`). A notification is a name pointing at one
    // change of an operation's stored change set, so it holds no content; `legacy_layer` fixes,
    // per operation, each named manifest's index and display name at processing time (no foreign
    // key to `manifest`: the manifest may be deleted while its notifications live on).
    // `next_send_at` NULL means "never send again" (read, or renotifying is off); the partial
    // index keeps the v2 webhook's due scan to unread notifications. `secret` holds values every
    // process must share, such as the page-token signing key.
    r#"
CREATE TABLE legacy_notification (
    name         TEXT    PRIMARY KEY,
    op           INTEGER NOT NULL REFERENCES operation(seq),
    change       INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    notified_at  INTEGER,
    deleted_at   INTEGER,
    next_send_at INTEGER,
    lease_id     TEXT,
    lease_until  INTEGER,
    UNIQUE (op, change)
);
CREATE INDEX legacy_notification_due ON legacy_notification(next_send_at)
    WHERE deleted_at IS NULL;

CREATE TABLE legacy_layer (
    op     INTEGER NOT NULL REFERENCES operation(seq),
    digest TEXT    NOT NULL,
    idx    INTEGER NOT NULL,
    name   TEXT    NOT NULL,
    PRIMARY KEY (op, digest)
) WITHOUT ROWID;

CREATE TABLE secret (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
"#,
    // 4: inventories at fleet scale (see `manifests`). New rows hold `manifest.report` as
    // zlib-compressed JSON (a BLOB; older rows keep their text, and both read back), and their
    // installed packages in `manifest_packages`, the compact form the index is rebuilt from.
    // `change_set.body` likewise holds the binary change-set encoding for new rows
    // (`tocsin_store::codec::encode_change_set`) and JSON text for older ones. SQLite keeps a
    // BLOB in a TEXT column as a BLOB, so neither column needs rebuilding.
    r#"
CREATE TABLE manifest_packages (
    id       INTEGER PRIMARY KEY REFERENCES manifest(id) ON DELETE CASCADE,
    packages BLOB NOT NULL
);
"#,
    // 5: held update operations and followed sources (see `feeds` and `sources`). An operation
    // is `accepted` (every operation stored before this version), `held` by the storm guard with
    // the operator's `held_reason`, or `superseded` (a held one a later import replaced: never
    // processed, removed by garbage collection). Only accepted operations are an updater's
    // operations; the unique partial index makes "at most one held operation per updater" a
    // constraint, and the other one keeps garbage collection's scan to superseded rows.
    // `followed_source` is the lease and schedule of one source tocsin fetches itself; times are
    // Unix nanoseconds like everywhere else, a NULL `next_run` means due now (never run).
    r#"
ALTER TABLE operation ADD COLUMN status TEXT NOT NULL DEFAULT 'accepted'
    CHECK (status IN ('accepted', 'held', 'superseded'));
ALTER TABLE operation ADD COLUMN held_reason TEXT;
CREATE UNIQUE INDEX operation_held ON operation(updater) WHERE status = 'held';
CREATE INDEX operation_superseded ON operation(seq) WHERE status = 'superseded';

CREATE TABLE followed_source (
    name          TEXT    PRIMARY KEY,
    lease_holder  TEXT,
    lease_until   INTEGER,
    next_run      INTEGER,
    last_attempt  INTEGER,
    last_success  INTEGER,
    last_error_at INTEGER,
    last_error    TEXT,
    failures      INTEGER NOT NULL DEFAULT 0,
    state         TEXT    NOT NULL DEFAULT ''
);
"#,
];

/// The schema version this build writes.
pub(crate) const SCHEMA_VERSION: usize = MIGRATIONS.len();

/// Settings for the one writer connection.
///
/// WAL lets readers run beside the writer. `synchronous=NORMAL` in WAL mode makes a commit
/// durable against a crash or SIGKILL of the process (the WAL is in the OS page cache and is
/// replayed on the next open); only a power loss can drop the newest commits, and never
/// partially. `commit_processed` raises this to FULL for its own transaction (see lib.rs).
pub(crate) fn configure_writer(conn: &Connection) -> Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)
        .ctx("setting the busy timeout")?;
    // journal_mode returns the mode in force ("memory" for in-memory databases).
    let _mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .ctx("enabling WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .ctx("setting synchronous=NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .ctx("enabling foreign keys")?;
    Ok(())
}

/// Settings for a read connection: it can never write by accident.
pub(crate) fn configure_reader(conn: &Connection) -> Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)
        .ctx("setting the busy timeout")?;
    conn.pragma_update(None, "query_only", "ON")
        .ctx("making a read connection query-only")?;
    Ok(())
}

/// Brings the schema up to [`SCHEMA_VERSION`]; a no-op on an up-to-date database.
pub(crate) fn migrate(conn: &mut Connection) -> Result<()> {
    migrate_to(conn, SCHEMA_VERSION)
}

/// Applies the migrations up to version `target` (tests build databases as older releases left
/// them with a smaller target).
pub(crate) fn migrate_to(conn: &mut Connection, target: usize) -> Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    INTEGER PRIMARY KEY,
             applied_at TEXT    NOT NULL
         )",
    )
    .ctx("creating schema_migrations")?;
    for (index, sql) in MIGRATIONS.iter().take(target).enumerate() {
        let version = index + 1;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx("starting a migration transaction")?;
        let current: Option<i64> = tx
            .query_row("SELECT MAX(version) FROM schema_migrations", [], |r| {
                r.get(0)
            })
            .optional()
            .ctx("reading the schema version")?
            .flatten();
        let current = current.unwrap_or(0);
        if current > crate::convert::to_i64(SCHEMA_VERSION) {
            return Err(StoreError::Invalid(format!(
                "the database has schema version {current}, newer than this build of tocsin \
                 supports ({SCHEMA_VERSION}); upgrade tocsin"
            )));
        }
        if current >= crate::convert::to_i64(version) {
            continue;
        }
        tx.execute_batch(sql)
            .with_ctx(|| format!("applying schema migration {version}"))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) \
             VALUES (?1, strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))",
            [crate::convert::to_i64(version)],
        )
        .with_ctx(|| format!("recording schema migration {version}"))?;
        tx.commit()
            .with_ctx(|| format!("committing schema migration {version}"))?;
        tracing::info!(version, "applied schema migration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versions(conn: &Connection) -> Vec<i64> {
        let mut st = conn
            .prepare("SELECT version FROM schema_migrations ORDER BY version")
            .unwrap();
        st.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    #[test]
    fn migrating_twice_applies_each_version_once() {
        let mut conn = Connection::open_in_memory().unwrap();
        configure_writer(&conn).unwrap();
        migrate(&mut conn).unwrap();
        migrate(&mut conn).unwrap();
        let want: Vec<i64> = (1..=crate::convert::to_i64(SCHEMA_VERSION)).collect();
        assert_eq!(versions(&conn), want);
    }

    /// Stores `m` the way version 1 did (the manifests module now also writes the feed, which a
    /// version-1 database does not have).
    fn insert_v1_manifest(conn: &Connection, m: &tocsin_model::inventory::Manifest) {
        conn.execute(
            "INSERT INTO manifest
                 (digest, format, labels, report, content_hash, packages, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, 0)",
            rusqlite::params![
                m.digest.as_str(),
                m.format.as_str(),
                serde_json::to_string(&m.labels).unwrap(),
                serde_json::to_string(&m.report).unwrap(),
                m.content_hash(),
                crate::convert::to_i64(m.report.packages.len()),
            ],
        )
        .unwrap();
    }

    /// Stores an update operation of `updater` the way versions 1 to 4 did (no status).
    fn insert_v1_operation(conn: &Connection, updater: &str, op: uuid::Uuid) {
        conn.execute(
            "INSERT INTO updater (name) VALUES (?1) ON CONFLICT DO NOTHING",
            [updater],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO operation (ref, updater, fingerprint, kind, date, vulns)
             VALUES (?1, ?2, 'fp', 'vulnerability', '2026-08-21T12:00:00Z', 0)",
            rusqlite::params![op.to_string(), updater],
        )
        .unwrap();
    }

    #[tokio::test]
    async fn operations_stored_before_version_5_are_accepted() {
        use tocsin_store::conformance::{hold, t};
        use tocsin_store::Store;

        let dir = tempfile::tempdir().unwrap();
        let op = uuid::Uuid::from_u128(5);
        {
            let mut conn = Connection::open(dir.path().join(crate::DB_FILE)).unwrap();
            configure_writer(&conn).unwrap();
            migrate_to(&mut conn, 4).unwrap();
            insert_v1_operation(&conn, "u", op);
        }
        let store = crate::SqliteStore::open(dir.path()).unwrap();
        let listed = store.update_operations("u").await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].reference, op.to_string());
        let info = store.updaters().await.unwrap();
        assert_eq!(
            (info[0].operations, info[0].held.clone()),
            (1, None),
            "{info:?}"
        );
        // The upgraded operation is the one fingerprints compare with, and the new states work
        // beside it.
        let held = hold(&store, "u", "fp-2", &[], t(0), "everything withdrawn").await;
        assert_eq!(store.updaters().await.unwrap()[0].held, Some(held));
        assert!(store.sources().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn upgrading_seeds_the_manifest_feed_with_existing_manifests() {
        use tocsin_store::conformance::{digest, manifest, t};
        use tocsin_store::{PutOutcome, Store};

        let dir = tempfile::tempdir().unwrap();
        {
            let mut conn = Connection::open(dir.path().join(crate::DB_FILE)).unwrap();
            configure_writer(&conn).unwrap();
            migrate_to(&mut conn, 1).unwrap();
            for n in [3, 1, 2] {
                insert_v1_manifest(&conn, &manifest(n));
            }
            // A manifest deleted before the upgrade leaves a gap in the ids (never reused).
            conn.execute(
                "DELETE FROM manifest WHERE digest = ?1",
                [digest(1).as_str()],
            )
            .unwrap();
            assert_eq!(versions(&conn), vec![1]);
        }

        let store = crate::SqliteStore::open(dir.path()).unwrap();
        let feed = store.manifest_changes(0, 100).await.unwrap();
        let shape: Vec<_> = feed
            .iter()
            .map(|c| (c.id, c.digest.clone(), c.deleted))
            .collect();
        assert_eq!(shape, vec![(1, digest(3), false), (3, digest(2), false)]);
        assert!(feed[0].seq > 0 && feed[0].seq < feed[1].seq, "{feed:?}");
        assert_eq!(store.manifest_change_head().await.unwrap(), feed[1].seq);

        // The seeded feed continues like any other: an unchanged put writes nothing, new changes
        // follow the seeded entries.
        assert_eq!(
            store.put_manifest(&manifest(3), t(0)).await.unwrap(),
            (1, PutOutcome::Unchanged)
        );
        let (id, outcome) = store.put_manifest(&manifest(4), t(0)).await.unwrap();
        assert_eq!((id, outcome), (4, PutOutcome::Created));
        assert!(store.delete_manifest(&digest(2)).await.unwrap());
        let after_seed = store.manifest_changes(feed[1].seq, 100).await.unwrap();
        let shape: Vec<_> = after_seed
            .iter()
            .map(|c| (c.id, c.digest.clone(), c.deleted))
            .collect();
        assert_eq!(shape, vec![(4, digest(4), false), (3, digest(2), true)]);
        drop(store);

        // Re-opening does not seed again.
        let store = crate::SqliteStore::open(dir.path()).unwrap();
        let again = store.manifest_changes(0, 100).await.unwrap();
        assert_eq!(again.len(), 3, "{again:?}");
    }

    #[tokio::test]
    async fn rows_written_before_version_4_still_read() {
        use tocsin_model::inventory::installed_packages;
        use tocsin_store::conformance::{digest, manifest, t};
        use tocsin_store::Store;

        let dir = tempfile::tempdir().unwrap();
        let op = {
            let mut conn = Connection::open(dir.path().join(crate::DB_FILE)).unwrap();
            configure_writer(&conn).unwrap();
            migrate_to(&mut conn, 3).unwrap();
            insert_v1_manifest(&conn, &manifest(7));
            conn.execute(
                "INSERT INTO manifest_change (id, digest, deleted) VALUES (1, ?1, 0)",
                [digest(7).as_str()],
            )
            .unwrap();
            // An operation as version 3 stored it, and its change set as JSON naming manifests
            // by digest.
            let op = uuid::Uuid::from_u128(9);
            insert_v1_operation(&conn, "u", op);
            let json = format!(
                r#"{{"updater":"u","prev":null,"cur":"{op}","changes":[{{"old":null,"new":null,"old_affected":[],"new_affected":["{}","{}"]}}]}}"#,
                digest(7),
                digest(2)
            );
            conn.execute(
                "INSERT INTO change_set (op, body) SELECT seq, ?1 FROM operation",
                [&json],
            )
            .unwrap();
            op
        };

        let store = crate::SqliteStore::open(dir.path()).unwrap();
        let m = manifest(7);
        assert_eq!(
            store.get_manifest(&digest(7)).await.unwrap(),
            Some(m.clone())
        );
        let entries = store.index_entries_after(None, 10).await.unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].packages.to_vec(), installed_packages(&m.report));
        let cs = store.change_set(op).await.unwrap().unwrap();
        let named: Vec<String> = cs
            .digests(&cs.changes[0].new_affected)
            .unwrap()
            .into_iter()
            .map(ToString::to_string)
            .collect();
        let mut want = vec![digest(7).to_string(), digest(2).to_string()];
        want.sort();
        assert_eq!(named, want);
        // Replacing the old row writes the new forms, which read back the same way.
        let mut changed = manifest(8);
        changed.digest = digest(7);
        changed.report.manifest_hash = digest(7).to_string();
        store.put_manifest(&changed, t(1)).await.unwrap();
        assert_eq!(
            store.get_manifest(&digest(7)).await.unwrap(),
            Some(changed.clone())
        );
        let entries = store.index_entries(&[1]).await.unwrap();
        assert_eq!(
            entries[0].packages.to_vec(),
            installed_packages(&changed.report)
        );
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        conn.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (999, 'x')",
            [],
        )
        .unwrap();
        let err = migrate(&mut conn).unwrap_err();
        assert!(
            matches!(&err, StoreError::Invalid(m) if m.contains("999")),
            "{err}"
        );
    }
}
