//! Clair v2's webhook over TLS against a real TLS server that requires a client certificate:
//! `http.cafile` verifies the server, `http.servername` names the certificate to expect while
//! connecting to the endpoint's address, and `http.certfile`/`http.keyfile` are presented to
//! the server. Certificates are made with rcgen; the server is rustls (tokio-rustls) with a
//! client verifier over the same test CA, answering HTTP/1.1 by hand.
mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::tls::{ca, Ca};
use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair};
use tocsin_deliver::webhook_v2::{LegacyWebhook, LegacyWebhookConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use uuid::Uuid;

const SERVER_NAME: &str = "notifier.test";

fn leaf(
    ca: &Ca,
    cn: &str,
    sans: Vec<String>,
    usage: ExtendedKeyUsagePurpose,
) -> (rcgen::Certificate, KeyPair) {
    let mut params = CertificateParams::new(sans).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.cert, &ca.key).unwrap();
    (cert, key)
}

fn write(dir: &Path, name: &str, text: String) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// What the server saw: one entry per request that completed a handshake.
#[derive(Default)]
struct Seen {
    bodies: Vec<String>,
    client_certs: usize,
    failed_handshakes: usize,
}

/// A TLS server on a loopback port presenting `server` and requiring a client certificate
/// signed by `ca`; answers every request 201 (a v2 success other than 200).
async fn tls_server(ca: &Ca, server: (rcgen::Certificate, KeyPair)) -> (u16, Arc<Mutex<Seen>>) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let (cert, key) = server;
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from(cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let s = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, s) = (acceptor.clone(), Arc::clone(&s));
            tokio::spawn(async move {
                let mut tls = match acceptor.accept(tcp).await {
                    Ok(t) => t,
                    Err(_) => {
                        s.lock().unwrap().failed_handshakes += 1;
                        return;
                    }
                };
                let has_cert = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .is_some_and(|c| !c.is_empty());
                // One request per connection: headers, then Content-Length bytes of body.
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let body_start = loop {
                    let Ok(n) = tls.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..body_start]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                while buf.len() < body_start + len {
                    let Ok(n) = tls.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let body = String::from_utf8_lossy(&buf[body_start..body_start + len]).to_string();
                {
                    let mut s = s.lock().unwrap();
                    s.bodies.push(body);
                    s.client_certs += usize::from(has_cert);
                }
                let _ = tls
                    .write_all(
                        b"HTTP/1.1 201 Created\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    )
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (port, seen)
}

struct Setup {
    _dir: tempfile::TempDir,
    port: u16,
    seen: Arc<Mutex<Seen>>,
    cafile: PathBuf,
    certfile: PathBuf,
    keyfile: PathBuf,
    /// A client certificate from another CA, which the server must refuse.
    stranger: (PathBuf, PathBuf),
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let test_ca = ca("tocsin test CA");
    let server = leaf(
        &test_ca,
        SERVER_NAME,
        vec![SERVER_NAME.to_string()],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client, client_key) = leaf(
        &test_ca,
        "tocsin",
        vec![],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let other = ca("someone else");
    let (stranger, stranger_key) = leaf(
        &other,
        "intruder",
        vec![],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let cafile = write(dir.path(), "ca.pem", test_ca.cert.pem());
    let certfile = write(dir.path(), "client.pem", client.pem());
    let keyfile = write(dir.path(), "client.key", client_key.serialize_pem());
    let stranger = (
        write(dir.path(), "stranger.pem", stranger.pem()),
        write(dir.path(), "stranger.key", stranger_key.serialize_pem()),
    );
    let (port, seen) = tls_server(&test_ca, server).await;
    Setup {
        _dir: dir,
        port,
        seen,
        cafile,
        certfile,
        keyfile,
        stranger,
    }
}

fn config(s: &Setup) -> LegacyWebhookConfig {
    LegacyWebhookConfig {
        server_name: Some(SERVER_NAME.to_string()),
        root_ca: Some(s.cafile.clone()),
        identity: Some((s.certfile.clone(), s.keyfile.clone())),
        connect_timeout: Duration::from_secs(5),
        timeout: Duration::from_secs(10),
        ..LegacyWebhookConfig::new(format!("https://127.0.0.1:{}/notify", s.port))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presents_the_client_certificate_and_verifies_the_server_by_servername() {
    let s = setup().await;
    let hook = LegacyWebhook::new(config(&s)).await.unwrap();
    let name = Uuid::new_v4();
    assert_eq!(hook.post(name).await, Ok(201));
    let seen = s.seen.lock().unwrap();
    assert_eq!(
        seen.bodies,
        vec![format!(r#"{{"Notification":{{"Name":"{name}"}}}}"#)]
    );
    assert_eq!(seen.client_certs, 1, "the client certificate was presented");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_trusted_client_certificate_the_server_refuses() {
    let s = setup().await;
    let mut no_identity = config(&s);
    no_identity.identity = None;
    let hook = LegacyWebhook::new(no_identity).await.unwrap();
    assert!(hook.post(Uuid::new_v4()).await.is_err());
    let mut stranger = config(&s);
    stranger.identity = Some(s.stranger.clone());
    let hook = LegacyWebhook::new(stranger).await.unwrap();
    assert!(hook.post(Uuid::new_v4()).await.is_err());
    // The server's side of a failed handshake may end after the client has given up.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while s.seen.lock().unwrap().failed_handshakes < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (bodies, failed) = {
        let seen = s.seen.lock().unwrap();
        (seen.bodies.len(), seen.failed_handshakes)
    };
    assert_eq!(bodies, 0, "no request got through");
    assert_eq!(failed, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_is_verified_against_cafile_and_servername() {
    let s = setup().await;
    // Without servername the certificate is checked against 127.0.0.1, which it does not name.
    let mut by_ip = config(&s);
    by_ip.server_name = None;
    let err = LegacyWebhook::new(by_ip)
        .await
        .unwrap()
        .post(Uuid::new_v4())
        .await
        .unwrap_err();
    assert!(err.contains("POST https://127.0.0.1"), "{err}");
    // Without cafile the test CA is not trusted.
    let mut no_ca = config(&s);
    no_ca.root_ca = None;
    assert!(LegacyWebhook::new(no_ca)
        .await
        .unwrap()
        .post(Uuid::new_v4())
        .await
        .is_err());
    assert!(s.seen.lock().unwrap().bodies.is_empty());
}
