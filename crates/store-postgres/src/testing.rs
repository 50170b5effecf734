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
//!
//! Tests that need a server of their own (to restart it, or to configure TLS and `pg_hba.conf`)
//! start a [`PrivateServer`]: `initdb` in a temporary directory and `pg_ctl` on a free loopback
//! port, run as user `postgres` when the tests run as root.
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
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

    /// Runs `sql` (one or more statements, simple query protocol) and returns the rows of its
    /// results as text, for tests that read another program's tables (a real Clair's).
    pub async fn query_text(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        let (client, conn) = match tokio_postgres::connect(&self.connstring, NoTls).await {
            Ok(c) => c,
            Err(e) => panic!("connecting to test database {}: {e}", self.name),
        };
        let task = tokio::spawn(conn);
        let messages = match client.simple_query(sql).await {
            Ok(m) => m,
            Err(e) => panic!("{sql} on test database {}: {e}", self.name),
        };
        drop(client);
        let _ = task.await;
        messages
            .into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => {
                    Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
                }
                _ => None,
            })
            .collect()
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

/// A PostgreSQL server of the test's own, stopped and deleted when dropped.
pub struct PrivateServer {
    bin: PathBuf,
    root: PathBuf,
    dir: PathBuf,
    port: u16,
    as_postgres: bool,
    options: Vec<String>,
}

impl PrivateServer {
    /// `initdb` (trust authentication, superuser `postgres`) and start, or why not.
    pub fn start() -> Result<PrivateServer, String> {
        Self::start_with(Vec::new(), |_| Ok(()))
    }

    /// As [`start`](Self::start), with `-c` settings for the server (e.g. `ssl=on`) and a
    /// `setup` step that runs between `initdb` and the first start (to write certificates
    /// and `pg_hba.conf` into the data directory with [`install`](Self::install)).
    pub fn start_with(
        settings: Vec<String>,
        setup: impl FnOnce(&PrivateServer) -> Result<(), String>,
    ) -> Result<PrivateServer, String> {
        let versions = std::fs::read_dir("/usr/lib/postgresql")
            .map_err(|e| format!("no PostgreSQL server binaries in /usr/lib/postgresql: {e}"))?;
        let mut bins: Vec<PathBuf> = versions
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin"))
            .filter(|b| b.join("initdb").exists())
            .collect();
        bins.sort();
        let bin = bins
            .pop()
            .ok_or("no initdb under /usr/lib/postgresql/*/bin")?;
        let as_postgres = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        let root = std::env::temp_dir().join(format!(
            "tocsin-pg-{:016x}",
            rand::thread_rng().gen::<u64>()
        ));
        std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
        let pg = PrivateServer {
            bin,
            dir: root.join("data"),
            root,
            port: free_port()?,
            as_postgres,
            options: settings,
        };
        if as_postgres {
            pg.chown(&pg.root)?;
        }
        let d = pg.dir.to_string_lossy().to_string();
        let out = pg
            .run(
                "initdb",
                &["-D", &d, "-A", "trust", "-U", "postgres", "--no-sync"],
            )
            .map_err(|e| format!("initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!("initdb: {}", String::from_utf8_lossy(&out.stderr)));
        }
        setup(&pg)?;
        pg.try_pg_ctl(&["start"])?;
        Ok(pg)
    }

    fn chown(&self, path: &Path) -> Result<(), String> {
        let ok = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(path)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            Ok(())
        } else {
            Err(format!("cannot hand {} to user postgres", path.display()))
        }
    }

    fn run(&self, tool: &str, args: &[&str]) -> std::io::Result<std::process::Output> {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        };
        cmd.args(args).stdin(Stdio::null()).output()
    }

    fn try_pg_ctl(&self, args: &[&str]) -> Result<(), String> {
        let dir = self.dir.to_string_lossy().to_string();
        let mut opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port, dir
        );
        for o in &self.options {
            opts.push_str(&format!(" -c {o}"));
        }
        let log = format!("{dir}/server.log");
        let mut all = vec![
            "-D",
            dir.as_str(),
            "-o",
            opts.as_str(),
            "-l",
            log.as_str(),
            "-w",
        ];
        all.extend_from_slice(args);
        let out = self
            .run("pg_ctl", &all)
            .map_err(|e| format!("running pg_ctl: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "pg_ctl {args:?}: {}{}\nserver log:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(&log).unwrap_or_default()
            ))
        }
    }

    /// Runs `pg_ctl` with the server's settings and `args` (e.g. `["-m", "fast", "restart"]`).
    ///
    /// # Panics
    /// When `pg_ctl` fails (with its output and the server log).
    pub fn pg_ctl(&self, args: &[&str]) {
        if let Err(e) = self.try_pg_ctl(args) {
            panic!("{e}");
        }
    }

    /// Writes `contents` to `name` in the data directory, owned by the server's user with
    /// permissions `mode` (PostgreSQL refuses a key file others can read). Returns its path.
    pub fn install(&self, name: &str, contents: &[u8], mode: u32) -> Result<PathBuf, String> {
        use std::os::unix::fs::PermissionsExt as _;
        let path = self.dir.join(name);
        std::fs::write(&path, contents).map_err(|e| format!("{}: {e}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if self.as_postgres {
            self.chown(&path)?;
        }
        Ok(path)
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    /// The loopback port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory of the server's Unix socket (the data directory).
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    /// `host=127.0.0.1 port=… user=postgres dbname=postgres`.
    pub fn connstring(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.port
        )
    }

    /// The same over the Unix socket (never TLS; `local` lines of `pg_hba.conf`).
    pub fn socket_connstring(&self) -> String {
        format!(
            "host={} port={} user=postgres dbname=postgres",
            self.dir.display(),
            self.port
        )
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let dir = self.dir.to_string_lossy().to_string();
        let _ = self.run("pg_ctl", &["-D", &dir, "-m", "immediate", "-w", "stop"]);
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("free port: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("free port: {e}"))
}

/// A [`PrivateServer`] from [`PrivateServer::start_with`]; `None` (with a message) when
/// PostgreSQL is not installed outside CI.
///
/// # Panics
/// In CI (`CI=true`) when the server cannot be started.
pub fn private_server(
    settings: Vec<String>,
    setup: impl FnOnce(&PrivateServer) -> Result<(), String>,
) -> Option<PrivateServer> {
    match PrivateServer::start_with(settings, setup) {
        Ok(pg) => Some(pg),
        Err(why) if in_ci() => panic!("this test needs a private PostgreSQL server: {why}"),
        Err(why) => {
            eprintln!("skipping: cannot run a private PostgreSQL server: {why}");
            None
        }
    }
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
