//! `amqps://` against a private RabbitMQ node with a TLS listener that verifies its peers
//! (`verify_peer`, `fail_if_no_peer_cert`): the server is verified against a test CA and tocsin
//! presents a client certificate from it. Certificates are made with rcgen in a temporary
//! directory.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::drain;
use common::node::{free_port, PrivateNode};
use common::tls::{ca, Ca};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair};
use tocsin_deliver::{
    AmqpConfig, AmqpDeliverer, BrokerMode, Callback, DeliverError, Deliverer, DeliveryResult,
    SetToDeliver, TlsFiles,
};
use uuid::Uuid;

/// A leaf certificate signed by `ca`, written as `<stem>.pem` and `<stem>.key` in `dir`.
fn leaf(
    dir: &Path,
    stem: &str,
    ca: &Ca,
    sans: Vec<String>,
    usage: ExtendedKeyUsagePurpose,
) -> (PathBuf, PathBuf) {
    let mut params = CertificateParams::new(sans).unwrap();
    params.distinguished_name.push(DnType::CommonName, stem);
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.cert, &ca.key).unwrap();
    let (cert_path, key_path) = (
        dir.join(format!("{stem}.pem")),
        dir.join(format!("{stem}.key")),
    );
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (cert_path, key_path)
}

fn write(dir: &Path, name: &str, text: String) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn config(uri: String, queue: &str, tls: TlsFiles) -> AmqpConfig {
    let mut c = AmqpConfig::new(
        vec![uri],
        queue,
        BrokerMode::Callback(Callback::new(
            "http://tocsin.local/notifier/api/v1/notification",
        )),
    );
    c.tls = Some(tls);
    c.connect_timeout = Duration::from_secs(5);
    c.timeout = Duration::from_secs(15);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqps_verifies_the_server_and_presents_a_client_certificate() {
    let certs = tempfile::tempdir().unwrap();
    let dir = certs.path();
    let good = ca("tocsin test CA");
    let ca_path = write(dir, "ca.pem", good.cert.pem());
    let (server_cert, server_key) = leaf(
        dir,
        "server",
        &good,
        vec!["127.0.0.1".into(), "localhost".into()],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client_cert, client_key) = leaf(
        dir,
        "client",
        &good,
        vec!["tocsin.client.test".into()],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let tls_port = free_port();
    let conf = format!(
        "listeners.ssl.default = 127.0.0.1:{tls_port}\n\
         ssl_options.cacertfile = {}\n\
         ssl_options.certfile = {}\n\
         ssl_options.keyfile = {}\n\
         ssl_options.verify = verify_peer\n\
         ssl_options.fail_if_no_peer_cert = true\n",
        ca_path.display(),
        server_cert.display(),
        server_key.display()
    );
    let Some(mut node) = PrivateNode::new(&conf) else {
        return;
    };
    tokio::task::block_in_place(|| node.start());
    let amqps = format!("amqps://guest:guest@127.0.0.1:{tls_port}/%2f");

    // A queue to publish to, read back over the plain listener.
    let props = ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio::current());
    let conn = Connection::connect(&node.uri(), props).await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    let queue = format!("tocsin-tls-{}", Uuid::new_v4());
    ch.queue_declare(
        &queue,
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();

    // Server verified against the test CA, client certificate presented: delivered.
    let d = AmqpDeliverer::new(config(
        amqps.clone(),
        &queue,
        TlsFiles {
            root_ca: Some(ca_path.clone()),
            identity: Some((client_cert.clone(), client_key.clone())),
        },
    ))
    .unwrap();
    d.health_check().await.unwrap();
    let s = SetToDeliver {
        id: Uuid::new_v4(),
        entries: None,
    };
    assert_eq!(
        d.deliver(&s).await,
        DeliveryResult::Delivered { status: None }
    );
    let got = drain(&ch, &queue, Duration::from_millis(300)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].0,
        Callback::new("http://tocsin.local/notifier/api/v1/notification").body(s.id)
    );

    // Trusting another CA: the server's certificate is refused, and the error says so.
    let other = ca("some other CA");
    let other_path = write(dir, "other-ca.pem", other.cert.pem());
    let d = AmqpDeliverer::new(config(
        amqps.clone(),
        &queue,
        TlsFiles {
            root_ca: Some(other_path),
            identity: Some((client_cert.clone(), client_key.clone())),
        },
    ))
    .unwrap();
    match d.health_check().await {
        Err(DeliverError::Unhealthy { message, .. }) => {
            assert!(
                message.to_lowercase().contains("certificate"),
                "the error names the certificate problem: {message}"
            );
            assert!(
                !message.contains("guest:guest"),
                "password leaked: {message}"
            );
        }
        other => panic!("expected a TLS verification failure, got {other:?}"),
    }

    // No client certificate: the broker (fail_if_no_peer_cert) refuses the connection.
    let d = AmqpDeliverer::new(config(
        amqps,
        &queue,
        TlsFiles {
            root_ca: Some(ca_path.clone()),
            identity: None,
        },
    ))
    .unwrap();
    let r = d.health_check().await;
    assert!(
        matches!(r, Err(DeliverError::Unhealthy { .. })),
        "a connection without a client certificate must fail: {r:?}"
    );
    assert_eq!(
        drain(&ch, &queue, Duration::from_millis(200)).await.len(),
        0,
        "nothing was delivered by the refused clients"
    );

    // The same through the URI's query parameters, as amqp091-go reads them, no tls section.
    let with_params = |query: String| {
        let mut c = config(
            format!("amqps://guest:guest@127.0.0.1:{tls_port}/?{query}"),
            &queue,
            TlsFiles::default(),
        );
        c.tls = None;
        c
    };
    let files = |ca: &Path| {
        format!(
            "cacertfile={}&certfile={}&keyfile={}",
            ca.display(),
            client_cert.display(),
            client_key.display()
        )
    };
    for query in [
        files(&ca_path),
        // The server's certificate names localhost too.
        format!("{}&server_name_indication=localhost", files(&ca_path)),
    ] {
        let d = AmqpDeliverer::new(with_params(query.clone())).unwrap();
        d.health_check()
            .await
            .unwrap_or_else(|e| panic!("{query}: {e}"));
        let s = SetToDeliver {
            id: Uuid::new_v4(),
            entries: None,
        };
        assert!(d.deliver(&s).await.is_delivered(), "{query}");
        assert_eq!(
            drain(&ch, &queue, Duration::from_millis(300)).await.len(),
            1,
            "{query}"
        );
    }
    // server_name_indication is the name the certificate is checked against.
    let d = AmqpDeliverer::new(with_params(format!(
        "{}&server_name_indication=elsewhere.test",
        files(&ca_path)
    )))
    .unwrap();
    match d.health_check().await {
        Err(DeliverError::Unhealthy { message, .. }) => {
            assert!(message.contains("certificate"), "{message}")
        }
        other => panic!("a certificate for another name must be refused, got {other:?}"),
    }
    // cacertfile is what is trusted: another CA there fails.
    let other_ca = dir.join("other-ca.pem");
    let d = AmqpDeliverer::new(with_params(files(&other_ca))).unwrap();
    assert!(
        matches!(d.health_check().await, Err(DeliverError::Unhealthy { .. })),
        "cacertfile naming another CA must fail"
    );
    // With a tls section as well, the URI's parameters win for that broker: the section trusts
    // the wrong CA and has no client certificate, the URI fixes both.
    let mut c = with_params(files(&ca_path));
    c.tls = Some(TlsFiles {
        root_ca: Some(other_ca),
        identity: None,
    });
    let d = AmqpDeliverer::new(c).unwrap();
    d.health_check().await.unwrap();
    let s = SetToDeliver {
        id: Uuid::new_v4(),
        entries: None,
    };
    assert!(d.deliver(&s).await.is_delivered());
    assert_eq!(
        drain(&ch, &queue, Duration::from_millis(300)).await.len(),
        1
    );

    conn.close(200, "done").await.unwrap();
    tokio::task::block_in_place(|| node.stop());
}
