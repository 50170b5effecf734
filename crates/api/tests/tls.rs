//! The TLS listener on its own: certificates from a throw-away CA (rcgen), clients that trust
//! only that CA (reqwest over HTTP/1.1, a raw rustls client to read ALPN), a reload that swaps
//! the certificate for new connections, client certificates required, and start-up errors that
//! name the file. `tocsin serve` over TLS is tested in the binary's `tls.rs`.
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use tocsin_api::{ServerTls, ServerTlsFiles, TlsError};
use tocsin_testdata::tls::{Ca, Leaf};
use tokio::io::AsyncWriteExt;

fn app() -> Router {
    Router::new().route("/hello", get(|| async { "hello over TLS" }))
}

/// Serves `app()` with `tls` on a loopback port; the server stops when the sender drops.
async fn serve(tls: ServerTls) -> (u16, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        tocsin_api::serve_tls(listener, tls, app(), async move {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    (port, stop)
}

/// A client that trusts only `ca` (and no connection reuse, so each request handshakes).
fn client(ca: &Ca, identity: Option<&Leaf>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap())
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(20));
    if let Some(leaf) = identity {
        let pem = format!("{}{}", leaf.cert_pem, leaf.key_pem);
        b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    b.build().unwrap()
}

async fn hello(client: &reqwest::Client, port: u16) -> Result<String, String> {
    let r = client
        .get(format!("https://localhost:{port}/hello"))
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    r.text().await.map_err(|e| format!("{e:?}"))
}

fn files(dir: &Path, leaf: &Leaf, client_ca: Option<&Ca>) -> ServerTlsFiles {
    let (cert, key) = leaf.write(dir, "server");
    ServerTlsFiles {
        cert,
        key,
        client_ca: client_ca.map(|ca| ca.write(dir, "clients.crt")),
    }
}

/// The protocol the server picks when a client offers `offer` (ALPN).
async fn alpn(ca: &Ca, port: u16, offer: &[&[u8]]) -> Option<Vec<u8>> {
    use tokio_rustls::rustls;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut ca.pem().as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = offer.iter().map(|p| p.to_vec()).collect();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .unwrap();
    tls.get_ref().1.alpn_protocol().map(|p| p.to_vec())
}

#[tokio::test]
async fn https_with_alpn_and_a_reloaded_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (first_ca, second_ca) = (Ca::new("first CA"), Ca::new("second CA"));
    let tls = ServerTls::load(files(
        dir.path(),
        &first_ca.leaf(&["localhost", "127.0.0.1"]),
        None,
    ))
    .unwrap();
    assert!(!tls.requires_client_certificates());
    let (port, _stop) = serve(tls.clone()).await;

    assert_eq!(
        hello(&client(&first_ca, None), port).await.unwrap(),
        "hello over TLS"
    );
    let err = hello(&client(&second_ca, None), port).await.unwrap_err();
    assert!(err.contains("UnknownIssuer"), "{err}");
    // Plain HTTP on the TLS port gets no answer.
    assert!(reqwest::get(format!("http://127.0.0.1:{port}/hello"))
        .await
        .is_err());
    // ALPN: h2 for gRPC clients, http/1.1 for the others.
    assert_eq!(
        alpn(&first_ca, port, &[b"h2", b"http/1.1"])
            .await
            .as_deref(),
        Some(&b"h2"[..])
    );
    assert_eq!(
        alpn(&first_ca, port, &[b"http/1.1"]).await.as_deref(),
        Some(&b"http/1.1"[..])
    );

    // A client stalled in its handshake holds up nobody.
    let mut stalled = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    stalled.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    assert!(hello(&client(&first_ca, None), port).await.is_ok());

    // Unchanged files: nothing to do.
    assert!(!tls.reload_if_changed().unwrap());
    // Rotation, first half: the new certificate is written, its key not yet. The pair is
    // refused and the old certificate keeps being served.
    let next = second_ca.leaf(&["localhost"]);
    std::fs::write(&tls.files().cert, &next.cert_pem).unwrap();
    let err = tls.reload_if_changed().unwrap_err();
    assert!(
        matches!(&err, TlsError::Pair { message, .. } if message.contains("does not belong")),
        "{err}"
    );
    assert!(
        !tls.reload_if_changed().unwrap(),
        "a broken pair is reported once"
    );
    assert!(hello(&client(&first_ca, None), port).await.is_ok());
    // Second half: the key. New connections get the new certificate.
    std::fs::write(&tls.files().key, &next.key_pem).unwrap();
    assert!(tls.reload_if_changed().unwrap());
    assert!(hello(&client(&second_ca, None), port).await.is_ok());
    let err = hello(&client(&first_ca, None), port).await.unwrap_err();
    assert!(err.contains("UnknownIssuer"), "{err}");
    drop(stalled);

    // The watcher does the same on its own.
    let third_ca = Ca::new("third CA");
    let watcher = tokio::spawn(
        tls.clone()
            .watch(Duration::from_millis(100), std::future::pending::<()>()),
    );
    third_ca.leaf(&["localhost"]).write(dir.path(), "server");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while hello(&client(&third_ca, None), port).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the watcher did not reload"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    watcher.abort();
}

#[tokio::test]
async fn client_certificates_can_be_required() {
    let dir = tempfile::tempdir().unwrap();
    let (server_ca, client_ca, stranger_ca) = (
        Ca::new("server CA"),
        Ca::new("client CA"),
        Ca::new("stranger CA"),
    );
    let tls = ServerTls::load(files(
        dir.path(),
        &server_ca.leaf(&["localhost"]),
        Some(&client_ca),
    ))
    .unwrap();
    assert!(tls.requires_client_certificates());
    let (port, _stop) = serve(tls).await;

    let err = hello(&client(&server_ca, None), port).await.unwrap_err();
    assert!(
        err.contains("CertificateRequired") || err.contains("HandshakeFailure"),
        "{err}"
    );
    let stranger = stranger_ca.leaf(&["intruder"]);
    assert!(hello(&client(&server_ca, Some(&stranger)), port)
        .await
        .is_err());
    let friend = client_ca.leaf(&["quay"]);
    assert_eq!(
        hello(&client(&server_ca, Some(&friend)), port)
            .await
            .unwrap(),
        "hello over TLS"
    );
}

#[tokio::test]
async fn bad_files_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("CA");
    let good = files(dir.path(), &ca.leaf(&["localhost"]), None);
    let load = |f: &ServerTlsFiles| ServerTls::load(f.clone()).map(|_| ()).unwrap_err();

    let missing = ServerTlsFiles {
        cert: dir.path().join("nope.crt"),
        ..good.clone()
    };
    let err = load(&missing);
    assert!(
        matches!(
            err,
            TlsError::Read {
                what: "certificate",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("nope.crt"), "{err}");

    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let err = load(&ServerTlsFiles {
        cert: garbage.clone(),
        ..good.clone()
    });
    assert!(
        err.to_string().contains("holds no PEM certificate"),
        "{err}"
    );
    let err = load(&ServerTlsFiles {
        key: garbage.clone(),
        ..good.clone()
    });
    assert!(
        err.to_string()
            .contains("holds no unencrypted PEM private key"),
        "{err}"
    );
    // A key and certificate swapped: the certificate file has no key.
    let err = load(&ServerTlsFiles {
        key: good.cert.clone(),
        ..good.clone()
    });
    assert!(err.to_string().contains("private key"), "{err}");
    let other = ca.leaf(&["localhost"]).write(dir.path(), "other");
    let err = load(&ServerTlsFiles {
        key: other.1,
        ..good.clone()
    });
    assert!(err.to_string().contains("does not belong"), "{err}");
    let err = load(&ServerTlsFiles {
        client_ca: Some(garbage),
        ..good
    });
    assert!(
        matches!(
            err,
            TlsError::Invalid {
                what: "client CA",
                ..
            }
        ),
        "{err}"
    );
}
