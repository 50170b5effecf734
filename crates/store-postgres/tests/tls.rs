//! TLS to PostgreSQL against a real server of the test's own: `initdb`, then `ssl=on` with a
//! certificate from a throw-away CA and a `pg_hba.conf` of `hostssl`/`hostnossl` lines only, so
//! the server itself says which connections were encrypted (`pg_stat_ssl`) and refuses the
//! others. Covers libpq's `sslmode`s in both connection-string forms, `sslrootcert`,
//! `sslcert`/`sslkey` (the `cert` method), SCRAM channel binding, and the messages a wrong CA or
//! host name produce; the store itself (pool and `LISTEN` connection) runs over TLS.
//!
//! Without PostgreSQL installed the tests skip with a message; with `CI=true` they fail.
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tocsin_store::Store;
use tocsin_store_postgres::testing::{private_server, PrivateServer};
use tocsin_store_postgres::{parse_connstring, PgOptions, PgStore};
use tocsin_testdata::tls::Ca;

/// The name in the server's certificate; connections reach it through `hostaddr=127.0.0.1`.
const SERVER_NAME: &str = "db.tocsin.test";

const HBA: &str = "\
local all all trust
hostssl all postgres 127.0.0.1/32 trust
hostssl all certuser 127.0.0.1/32 cert
hostssl all scramuser 127.0.0.1/32 scram-sha-256
hostnossl all plainuser 127.0.0.1/32 trust
";

struct Setup {
    pg: PrivateServer,
    /// Kept for the files' lifetime.
    _files: tempfile::TempDir,
    ca: PathBuf,
    other_ca: PathBuf,
    client: (PathBuf, PathBuf),
}

impl Setup {
    /// `key=value` connection string to the server by its certificate's name.
    fn by_name(&self, user: &str, extra: &str) -> String {
        format!(
            "host={SERVER_NAME} hostaddr=127.0.0.1 port={} user={user} dbname=postgres {extra}",
            self.pg.port()
        )
    }

    /// `key=value` connection string to 127.0.0.1, which the certificate does not name.
    fn by_address(&self, user: &str, extra: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={user} dbname=postgres {extra}",
            self.pg.port()
        )
    }
}

async fn setup() -> Option<Setup> {
    let files = tempfile::tempdir().unwrap();
    let ca = Ca::new("tocsin test PostgreSQL CA");
    let other = Ca::new("some other CA");
    let server = ca.leaf(&[SERVER_NAME]);
    let client = ca.leaf(&["certuser"]);
    let pg = private_server(
        vec![
            "ssl=on".into(),
            "ssl_cert_file=server.crt".into(),
            "ssl_key_file=server.key".into(),
            "ssl_ca_file=root.crt".into(),
        ],
        |pg| {
            pg.install("server.crt", server.cert_pem.as_bytes(), 0o600)?;
            pg.install("server.key", server.key_pem.as_bytes(), 0o600)?;
            pg.install("root.crt", ca.pem().as_bytes(), 0o600)?;
            pg.install("pg_hba.conf", HBA.as_bytes(), 0o600)?;
            Ok(())
        },
    )?;
    let admin = parse_connstring(&pg.socket_connstring())
        .unwrap()
        .connect()
        .await
        .unwrap();
    admin
        .batch_execute(
            "CREATE ROLE certuser LOGIN; CREATE ROLE plainuser LOGIN; \
             CREATE ROLE scramuser LOGIN PASSWORD 'scram-secret';",
        )
        .await
        .unwrap();
    Some(Setup {
        ca: ca.write(files.path(), "ca.crt"),
        other_ca: other.write(files.path(), "other-ca.crt"),
        client: client.write(files.path(), "client"),
        pg,
        _files: files,
    })
}

/// The error and its causes, as one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Connects with `connstring`; Ok(whether the session is encrypted, its TLS version).
async fn session(connstring: &str) -> Result<(bool, Option<String>), String> {
    let connect = parse_connstring(connstring).map_err(|e| e.to_string())?;
    let client = connect.connect().await.map_err(|e| chain(&e))?;
    let row = client
        .query_one(
            "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .map_err(|e| chain(&e))?;
    Ok((row.get(0), row.get(1)))
}

#[tokio::test]
async fn sslmodes_encrypt_as_asked_and_pg_hba_refuses_the_rest() {
    let Some(s) = setup().await else { return };

    let (ssl, version) = session(&s.by_address("postgres", "sslmode=require"))
        .await
        .unwrap();
    assert!(ssl, "sslmode=require must encrypt");
    assert!(
        matches!(version.as_deref(), Some("TLSv1.3" | "TLSv1.2")),
        "{version:?}"
    );
    // prefer (the default) takes TLS when the server offers it, as libpq does.
    assert!(session(&s.by_address("postgres", "")).await.unwrap().0);
    let url = format!(
        "postgres://postgres@127.0.0.1:{}/postgres?sslmode=require",
        s.pg.port()
    );
    assert!(session(&url).await.unwrap().0);
    let url = format!(
        "postgresql://postgres@127.0.0.1:{}/postgres?ssl=true",
        s.pg.port()
    );
    assert!(session(&url).await.unwrap().0);
    // The server only allows postgres over TLS: plain text is refused by pg_hba.conf.
    let err = session(&s.by_address("postgres", "sslmode=disable"))
        .await
        .unwrap_err();
    assert!(
        err.contains("no pg_hba.conf entry") && err.contains("no encryption"),
        "{err}"
    );
    // And plainuser only without TLS.
    let (ssl, _) = session(&s.by_address("plainuser", "sslmode=disable"))
        .await
        .unwrap();
    assert!(!ssl);
    let err = session(&s.by_address("plainuser", "sslmode=require"))
        .await
        .unwrap_err();
    assert!(err.contains("no pg_hba.conf entry"), "{err}");
    // TLS version bounds reach the handshake.
    let (_, version) = session(&s.by_address(
        "postgres",
        "sslmode=require ssl_max_protocol_version=TLSv1.2",
    ))
    .await
    .unwrap();
    assert_eq!(version.as_deref(), Some("TLSv1.2"));
}

#[tokio::test]
async fn verify_full_checks_the_root_and_the_name() {
    let Some(s) = setup().await else { return };
    let ca = s.ca.display().to_string();

    let good = s.by_name(
        "postgres",
        &format!("sslmode=verify-full sslrootcert='{ca}'"),
    );
    assert!(session(&good).await.unwrap().0);
    // The same as a URL, with the path percent-encoded.
    let url = format!(
        "postgres://postgres@{SERVER_NAME}:{}/postgres?hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={}",
        s.pg.port(),
        ca.replace('/', "%2F")
    );
    assert!(session(&url).await.unwrap().0);

    // A root that did not sign the server's certificate.
    let err = session(&s.by_name(
        "postgres",
        &format!("sslmode=verify-full sslrootcert={}", s.other_ca.display()),
    ))
    .await
    .unwrap_err();
    assert!(
        err.contains("not signed by a trusted root") && err.contains("UnknownIssuer"),
        "{err}"
    );
    // require with a root certificate checks the chain too (libpq).
    let err = session(&s.by_address(
        "postgres",
        &format!("sslmode=require sslrootcert={}", s.other_ca.display()),
    ))
    .await
    .unwrap_err();
    assert!(err.contains("UnknownIssuer"), "{err}");

    // The right root, the wrong name: verify-full refuses, verify-ca accepts.
    let wrong_name = format!(
        "host=localhost hostaddr=127.0.0.1 port={} user=postgres dbname=postgres sslrootcert='{ca}'",
        s.pg.port()
    );
    let err = session(&format!("{wrong_name} sslmode=verify-full"))
        .await
        .unwrap_err();
    assert!(
        err.contains("does not name host \"localhost\"") && err.contains(SERVER_NAME),
        "{err}"
    );
    assert!(
        session(&format!("{wrong_name} sslmode=verify-ca"))
            .await
            .unwrap()
            .0
    );
    // An address the certificate does not hold fails verify-full as well.
    let err = session(&s.by_address(
        "postgres",
        &format!("sslmode=verify-full sslrootcert='{ca}'"),
    ))
    .await
    .unwrap_err();
    assert!(err.contains("does not name host \"127.0.0.1\""), "{err}");

    // The store reports the same reason when it cannot open its pool.
    let err = PgStore::connect(&PgOptions::new(
        s.by_name(
            "postgres",
            &format!("sslmode=verify-full sslrootcert={}", s.other_ca.display()),
        ),
        true,
    ))
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("not signed by a trusted root"), "{err}");
}

#[tokio::test]
async fn client_certificates_and_channel_binding() {
    let Some(s) = setup().await else { return };
    let ca = s.ca.display().to_string();
    let (cert, key) = (s.client.0.display(), s.client.1.display());

    // The `cert` method: the certificate's common name is the user.
    let with_cert = s.by_name(
        "certuser",
        &format!("sslmode=verify-full sslrootcert='{ca}' sslcert='{cert}' sslkey='{key}'"),
    );
    assert!(session(&with_cert).await.unwrap().0);
    let err = session(&s.by_name(
        "certuser",
        &format!("sslmode=verify-full sslrootcert='{ca}'"),
    ))
    .await
    .unwrap_err();
    assert!(err.contains("certificate"), "{err}");
    // sslcertmode=disable keeps the certificate back.
    assert!(session(&format!("{with_cert} sslcertmode=disable"))
        .await
        .is_err());

    // SCRAM-SHA-256-PLUS: only works when tls-server-end-point matches the server's own hash.
    let scram = s.by_name(
        "scramuser",
        &format!(
            "password=scram-secret sslmode=verify-full sslrootcert='{ca}' channel_binding=require"
        ),
    );
    assert!(session(&scram).await.unwrap().0);
    let err = session(&s.by_name(
        "scramuser",
        &format!("password=wrong sslmode=verify-full sslrootcert='{ca}' channel_binding=require"),
    ))
    .await
    .unwrap_err();
    assert!(err.contains("password authentication failed"), "{err}");
}

#[tokio::test]
async fn the_store_runs_over_tls() {
    let Some(s) = setup().await else { return };
    let connstring = s.by_name(
        "postgres",
        &format!(
            "sslmode=verify-full sslrootcert='{}' application_name=tocsin_tls_test",
            s.ca.display()
        ),
    );
    let store = PgStore::connect(&PgOptions::new(connstring, true))
        .await
        .unwrap();
    assert!(store.updaters().await.unwrap().is_empty());
    // Subscribing starts the LISTEN connection, which must use the same TLS settings.
    let _events = store.events().expect("the PostgreSQL store has events");
    let admin = parse_connstring(&s.pg.socket_connstring())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let row = admin
            .query_one(
                "SELECT count(*), coalesce(bool_and(s.ssl), false), \
                        count(*) FILTER (WHERE a.query ILIKE 'LISTEN%') \
                 FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
                 WHERE a.application_name = 'tocsin_tls_test'",
                &[],
            )
            .await
            .unwrap();
        let (sessions, all_tls, listening): (i64, bool, i64) = (row.get(0), row.get(1), row.get(2));
        if listening > 0 {
            assert!(sessions >= 2, "{sessions} sessions");
            assert!(all_tls, "every session of the store must be encrypted");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the store's LISTEN connection did not appear"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
