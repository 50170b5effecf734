//! `tocsin serve` over TLS, through the real binary: Clair's `tls.cert`/`tls.key` with a
//! certificate from a throw-away CA (rcgen). An HTTPS client that trusts only that CA reads
//! `/healthz`, Clair's v4 pull API and stores a manifest; a tonic client calls Clair v3's gRPC
//! service over TLS (ALPN h2) on the same port, and on `tocsin.grpc_listen_addr`; with
//! `tocsin.tls.client_ca`, clients without a certificate from that CA are refused; unusable
//! files stop the start naming the file.
mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{run_cli, shared_data, ConfigSpec, Server};
use serde_json::Value;
use tocsin_api::v3::pb::coreos::clair::notification_service_client::NotificationServiceClient;
use tocsin_api::v3::pb::coreos::clair::GetNotificationRequest;
use tocsin_testdata::tls::{Ca, Leaf};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// Certificates for one test: the CA, the server's pair, a client's pair.
struct Pki {
    ca: Ca,
    dir: tempfile::TempDir,
    server: (PathBuf, PathBuf),
    client: Leaf,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("tocsin test CA");
    let server = ca
        .leaf(&["localhost", "127.0.0.1"])
        .write(dir.path(), "server");
    let client = ca.leaf(&["quay"]);
    Pki {
        ca,
        dir,
        server,
        client,
    }
}

/// The test configuration plus `tls` (and `extra` keys under `tocsin:`).
fn write_config(spec: &ConfigSpec, pki: &Pki, tocsin_extra: &str, path: &Path) -> PathBuf {
    let yaml = format!(
        "{}{tocsin_extra}tls:\n  cert: {}\n  key: {}\n",
        spec.yaml(),
        pki.server.0.display(),
        pki.server.1.display()
    );
    std::fs::write(path, yaml).unwrap();
    path.to_path_buf()
}

/// An HTTPS client trusting only the test CA, optionally with a client certificate.
fn https(pki: &Pki, identity: Option<&Leaf>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca.pem().as_bytes()).unwrap())
        .timeout(Duration::from_secs(60));
    if let Some(leaf) = identity {
        let pem = format!("{}{}", leaf.cert_pem, leaf.key_pem);
        b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    b.build().unwrap()
}

async fn grpc(pki: &Pki, port: u16, identity: Option<&Leaf>) -> Result<Channel, String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(pki.ca.pem()))
        .domain_name("localhost");
    if let Some(leaf) = identity {
        tls = tls.identity(Identity::from_pem(&leaf.cert_pem, &leaf.key_pem));
    }
    Channel::from_shared(format!("https://localhost:{port}"))
        .map_err(|e| e.to_string())?
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(20))
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))
}

/// A v3 `GetNotification` for a name that does not exist: `NOT_FOUND` proves the service
/// itself answered (over TLS).
async fn v3_not_found(channel: Channel) -> Result<(), String> {
    let status = NotificationServiceClient::new(channel)
        .get_notification(GetNotificationRequest {
            name: "00000000-0000-0000-0000-000000000000".into(),
            limit: 10,
            ..Default::default()
        })
        .await
        .map(|_| ())
        .expect_err("an unknown notification");
    if status.code() == tonic::Code::NotFound {
        Ok(())
    } else {
        Err(format!("{status:?}"))
    }
}

// Multi-threaded: `Server::terminate` blocks its thread while tocsin shuts down, and the gRPC
// client's connection task must still answer the server's closing HTTP/2 handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_health_the_pull_api_and_grpc_on_one_port() {
    let pki = pki();
    let port = common::free_port();
    let spec = ConfigSpec::new(port, &pki.dir.path().join("data"));
    let cfg = write_config(&spec, &pki, "", &pki.dir.path().join("tocsin.yaml"));
    // Clair's test mode creates one notification set at start, to read through the pull API.
    let mut server = Server::start(
        &cfg,
        port,
        &pki.dir.path().join("tocsin.log"),
        &[("NOTIFIER_TEST_MODE", "1")],
    );
    let http = https(&pki, None);
    let base = format!("https://localhost:{port}");
    server.ready_at(&http, &base).await;

    let r = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
    let set = common::eventually(Duration::from_secs(30), "the test-mode set", || async {
        let sets = common::notification_sets(&http, &base).await;
        sets.first()
            .and_then(|s| s["id"].as_str().map(str::to_owned))
    })
    .await;
    let page = common::get_json(
        &http,
        &format!("{base}/notifier/api/v1/notification/{set}?page_size=10"),
    )
    .await;
    let entries = page["notifications"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{page}");
    assert_eq!(entries[0]["reason"], "added");
    let r = http
        .delete(format!("{base}/notifier/api/v1/notification/{set}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A request body over TLS: an inventory upload.
    if let Some(data) = shared_data() {
        let body = common::read(&data.join("inventories/cargo/tansu.Cargo.lock"));
        let digest = format!("sha256:{}", tocsin_model::sha256_hex(&body));
        let v: Value =
            common::put_ok(&http, &format!("{base}/api/v1/manifests/{digest}"), body).await;
        assert_eq!(v["outcome"], "created", "{v}");
    }

    // Clients that do not trust the CA, or speak plain HTTP, get nowhere.
    let err = reqwest::Client::new()
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("UnknownIssuer"), "{err:?}");
    assert!(common::client()
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await
        .is_err());

    // Clair v3's gRPC service on the same port, over TLS with ALPN h2.
    let channel = grpc(&pki, port, None).await.unwrap();
    v3_not_found(channel).await.unwrap();
    // The Kubernetes consumer's v3 client, over TLS with the CA it is given (`--clair-v3-ca`):
    // NOT_FOUND reads as "gone"; without the CA the server is not trusted.
    #[cfg(feature = "kube")]
    {
        let url = format!("https://localhost:{port}");
        let ca = pki.ca.pem();
        let consumer = tocsin_kube::v3::Client::new(
            &url,
            Some(ca.as_bytes()),
            None,
            10,
            Duration::from_secs(30),
        )
        .unwrap();
        let at = tocsin_kube::checkpoint::Streams::default();
        let name = "00000000-0000-0000-0000-000000000000";
        assert_eq!(consumer.page(name, &at).await.unwrap(), None);
        let untrusting =
            tocsin_kube::v3::Client::new(&url, None, None, 10, Duration::from_secs(30)).unwrap();
        let err = untrusting.page(name, &at).await.unwrap_err();
        assert!(err.to_string().contains("GetNotification"), "{err}");
    }
    server.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_are_required_on_both_listeners() {
    let pki = pki();
    let (port, grpc_port) = (common::free_port(), common::free_port());
    let spec = ConfigSpec::new(port, &pki.dir.path().join("data"));
    let clients_ca = pki.ca.write(pki.dir.path(), "clients.pem");
    let cfg = write_config(
        &spec,
        &pki,
        // ConfigSpec's YAML ends inside `tocsin:`, so these keys land there.
        &format!(
            "  grpc_listen_addr: 127.0.0.1:{grpc_port}\n  tls:\n    client_ca: {}\n",
            clients_ca.display()
        ),
        &pki.dir.path().join("tocsin.yaml"),
    );
    let mut server = Server::start(&cfg, port, &pki.dir.path().join("tocsin.log"), &[]);
    let with_cert = https(&pki, Some(&pki.client));
    let base = format!("https://localhost:{port}");
    server.ready_at(&with_cert, &base).await;

    let r = with_cert
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let err = https(&pki, None)
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap_err();
    assert!(
        format!("{err:?}").contains("CertificateRequired"),
        "{err:?}"
    );
    let stranger = Ca::new("stranger CA").leaf(&["intruder"]);
    assert!(https(&pki, Some(&stranger))
        .get(format!("{base}/healthz"))
        .send()
        .await
        .is_err());

    // The gRPC listener asks for the same.
    let channel = grpc(&pki, grpc_port, Some(&pki.client)).await.unwrap();
    v3_not_found(channel).await.unwrap();
    match grpc(&pki, grpc_port, None).await {
        Err(_) => {}
        // TLS 1.3 finishes the client's side of the handshake before the server has looked
        // at the (missing) certificate; the first call then fails.
        Ok(channel) => {
            let err = v3_not_found(channel).await.unwrap_err();
            assert!(!err.contains("NotFound"), "{err}");
        }
    }
    server.terminate();
}

#[tokio::test]
async fn unusable_tls_files_stop_the_start_naming_the_file() {
    let pki = pki();
    let port = common::free_port();
    let spec = ConfigSpec::new(port, &pki.dir.path().join("data"));

    // A key that is not a key.
    let garbage = pki.dir.path().join("garbage.key");
    std::fs::write(&garbage, "not a key\n").unwrap();
    let cfg = pki.dir.path().join("bad-key.yaml");
    std::fs::write(
        &cfg,
        format!(
            "{}tls:\n  cert: {}\n  key: {}\n",
            spec.yaml(),
            pki.server.0.display(),
            garbage.display()
        ),
    )
    .unwrap();
    let err = run_cli(&["--config", cfg.to_str().unwrap(), "serve"]).failure();
    assert!(
        err.contains("garbage.key") && err.contains("holds no unencrypted PEM private key"),
        "{err}"
    );

    // The key of another certificate.
    let other = pki.ca.leaf(&["localhost"]).write(pki.dir.path(), "other");
    std::fs::write(
        &cfg,
        format!(
            "{}tls:\n  cert: {}\n  key: {}\n",
            spec.yaml(),
            pki.server.0.display(),
            other.1.display()
        ),
    )
    .unwrap();
    let err = run_cli(&["--config", cfg.to_str().unwrap(), "serve"]).failure();
    assert!(err.contains("does not belong to the certificate"), "{err}");

    // A file that is not there: a configuration error under its key.
    std::fs::write(
        &cfg,
        format!(
            "{}tls:\n  cert: {}\n  key: {}\n",
            spec.yaml(),
            pki.dir.path().join("missing.crt").display(),
            pki.server.1.display()
        ),
    )
    .unwrap();
    let err = run_cli(&["--config", cfg.to_str().unwrap(), "serve"]).failure();
    assert!(
        err.contains("tls.cert") && err.contains("missing.crt"),
        "{err}"
    );
}
