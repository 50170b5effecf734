//! Throw-away databases for tests (feature `test-support`).
//!
//! Each test gets its own database, `tocsin_t_<random>`, created from a maintenance connection to
//! the `postgres` database of the server named by `TOCSIN_TEST_PG` (default
//! `host=127.0.0.1 user=postgres`), and dropped `WITH (FORCE)` when the guard is dropped. Tests
//! never share state, and advisory locks (per database) never cross between them.
//!
//! When the server cannot be reached, [`throwaway_database`] panics with the reason if `CI=true`
//! (a CI run must not silently skip the PostgreSQL tests) and otherwise prints why and returns
//! `None` so the caller can skip.
use std::str::FromStr;

use rand::Rng as _;
use tokio_postgres::NoTls;

use crate::{describe, PgOptions, PgStore};

/// The environment variable naming the test server (a maintenance connection string).
pub const TEST_PG_ENV: &str = "TOCSIN_TEST_PG";
/// The server used when [`TEST_PG_ENV`] is unset.
pub const DEFAULT_TEST_PG: &str = "host=127.0.0.1 user=postgres";

/// A database that exists until this guard is dropped.
pub struct TestDatabase {
    name: String,
    admin: tokio_postgres::Config,
    connstring: String,
}

impl std::fmt::Debug for TestDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDatabase")
            .field("name", &self.name)
            .field("server", &describe(&self.admin))
            .finish()
    }
}

impl TestDatabase {
    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A key=value connection string for it (with the server's password, if any).
    pub fn connstring(&self) -> &str {
        &self.connstring
    }

    /// Brings its schema to `version` only, as an older release of tocsin left it (upgrade
    /// tests write rows in the older shapes, then open a [`store`](Self::store)).
    pub async fn migrate_to(&self, version: i64) {
        let (mut client, conn) = match tokio_postgres::connect(&self.connstring, NoTls).await {
            Ok(c) => c,
            Err(e) => panic!("connecting to test database {}: {e}", self.name),
        };
        let task = tokio::spawn(conn);
        if let Err(e) = crate::schema::migrate_to(&mut client, version).await {
            panic!("migrating test database {} to {version}: {e}", self.name);
        }
        drop(client);
        let _ = task.await;
    }

    /// A store on it, schema migrated.
    pub async fn store(&self) -> PgStore {
        match PgStore::connect(&PgOptions::new(self.connstring.clone(), true)).await {
            Ok(s) => s,
            Err(e) => panic!("opening a store on test database {}: {e}", self.name),
        }
    }
}

fn admin_config() -> Result<tokio_postgres::Config, String> {
    let s = std::env::var(TEST_PG_ENV).unwrap_or_else(|_| DEFAULT_TEST_PG.to_string());
    let mut c = tokio_postgres::Config::from_str(&s)
        .map_err(|e| format!("{TEST_PG_ENV} is not a connection string: {e}"))?;
    c.dbname("postgres");
    c.connect_timeout(std::time::Duration::from_secs(5));
    Ok(c)
}

/// Quotes a libpq key=value value.
fn quote(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// A key=value connection string for `dbname` on the server of `c`.
fn connstring_for(c: &tokio_postgres::Config, dbname: &str) -> String {
    let mut parts = Vec::new();
    for h in c.get_hosts() {
        match h {
            tokio_postgres::config::Host::Tcp(h) => parts.push(format!("host={}", quote(h))),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(p) => {
                parts.push(format!("host={}", quote(&p.display().to_string())))
            }
        }
    }
    if let Some(p) = c.get_ports().first() {
        parts.push(format!("port={p}"));
    }
    if let Some(u) = c.get_user() {
        parts.push(format!("user={}", quote(u)));
    }
    if let Some(pw) = c.get_password() {
        parts.push(format!("password={}", quote(&String::from_utf8_lossy(pw))));
    }
    parts.push(format!("dbname={}", quote(dbname)));
    parts.join(" ")
}

async fn admin_client(c: &tokio_postgres::Config) -> Result<tokio_postgres::Client, String> {
    let (client, connection) = c.connect(NoTls).await.map_err(|e| {
        let why = match std::error::Error::source(&e) {
            Some(s) => format!("{e}: {s}"),
            None => e.to_string(),
        };
        format!("cannot connect to PostgreSQL at {}: {why}", describe(c))
    })?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// Creates a fresh database, or explains why it cannot (see the module doc for what happens
/// then).
pub async fn try_throwaway_database() -> Result<TestDatabase, String> {
    let admin = admin_config()?;
    let client = admin_client(&admin).await?;
    let name = format!("tocsin_t_{:016x}", rand::thread_rng().gen::<u64>());
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .map_err(|e| format!("creating test database {name}: {e}"))?;
    Ok(TestDatabase {
        connstring: connstring_for(&admin, &name),
        name,
        admin,
    })
}

/// Whether this run is CI's (`CI=true`), where PostgreSQL must be there.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A fresh database; `None` (with a message) when PostgreSQL is unreachable outside CI.
///
/// # Panics
/// In CI (`CI=true`) when PostgreSQL is unreachable: the tests must not pass by skipping.
pub async fn throwaway_database() -> Option<TestDatabase> {
    match try_throwaway_database().await {
        Ok(db) => Some(db),
        Err(why) if in_ci() => panic!(
            "PostgreSQL tests need a server ({why}); scripts/test.sh starts one \
             (set {TEST_PG_ENV} to use another)"
        ),
        Err(why) => {
            eprintln!(
                "skipping a PostgreSQL test: {why} (start PostgreSQL, e.g. via scripts/test.sh, \
                 or set {TEST_PG_ENV})"
            );
            None
        }
    }
}

/// A fresh store on a fresh database, with the guard that drops the database.
pub async fn throwaway_store() -> Option<(PgStore, TestDatabase)> {
    let db = throwaway_database().await?;
    let store = db.store().await;
    Some((store, db))
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Drop may run inside a runtime (which must not block on another), so the drop runs on
        // its own thread with its own small runtime.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async {
                let client = admin_client(&admin).await?;
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .map_err(|e| format!("dropping test database {name}: {e}"))
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: {e}"),
            Err(_) => eprintln!("warning: dropping test database {} panicked", self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connstrings_quote_their_values() {
        let c =
            tokio_postgres::Config::from_str("host=h user=o'k password='a b' port=5433").unwrap();
        let s = connstring_for(&c, "db");
        assert_eq!(
            s,
            "host='h' port=5433 user='o\\'k' password='a b' dbname='db'"
        );
        let back = tokio_postgres::Config::from_str(&s).unwrap();
        assert_eq!(back.get_user(), Some("o'k"));
        assert_eq!(back.get_password(), Some(&b"a b"[..]));
    }
}
