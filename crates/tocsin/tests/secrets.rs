//! No secret in any log line, error or API answer.
//!
//! Each test runs the real `tocsin serve` with `TOCSIN_LOG=trace` (every crate's every event,
//! hyper, reqwest, lapin and tokio-postgres included) and a configuration holding a distinct
//! secret in every place one can be: the PSK (`auth.psk.key`), a password in the webhook target
//! URL and a secret webhook header, a password in Clair v2's webhook endpoint and proxy, an AMQP
//! URI password, a STOMP passcode, a PostgreSQL password (URL and key=value forms). The brokers,
//! endpoints and databases are closed ports, so every delivery fails and its error is logged and
//! recorded in the attempt history the API serves; the configuration errors and failed starts
//! print theirs. None of it may contain a secret, nor the bearer tokens clients send.
mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use tocsin_deliver::jwt::{PskKey, PskSigner};

/// `secret-psk-key-for-leak-tests`, base64.
const PSK_B64: &str = "c2VjcmV0LXBzay1rZXktZm9yLWxlYWstdGVzdHM=";
const PSK_RAW: &str = "secret-psk-key-for-leak-tests";
const WEBHOOK_PASS: &str = "wh00k-pa55-S3CRET";
const HEADER_SECRET: &str = "hdr-S3CRET-value";
const LEGACY_PASS: &str = "legacy-pa55-S3CRET";
const PROXY_PASS: &str = "proxy-pa55-S3CRET";
const AMQP_PASS: &str = "amqp-pa55-S3CRET";
const STOMP_PASS: &str = "stomp-pa55-S3CRET";
const PG_PASS: &str = "pg-pa55-S3CRET";

const SECRETS: &[&str] = &[
    PSK_B64,
    PSK_RAW,
    WEBHOOK_PASS,
    HEADER_SECRET,
    LEGACY_PASS,
    PROXY_PASS,
    AMQP_PASS,
    STOMP_PASS,
    PG_PASS,
];

/// Fails naming the secret and the line it appears on.
#[track_caller]
fn assert_no_secret(what: &str, text: &str, extra: &[&str]) {
    for secret in SECRETS.iter().chain(extra) {
        if let Some(line) = text.lines().find(|l| l.contains(secret)) {
            panic!("{what} shows the secret {secret:?}:\n{line}");
        }
    }
}

fn yaml(port: u16, data: &Path, notifier: &str, extra: &str) -> String {
    format!(
        "http_listen_addr: 127.0.0.1:{port}\nlog_level: debug\n\
         auth:\n  psk:\n    key: {PSK_B64}\n    iss: [leaktest]\n\
         notifier:\n  poll_interval: 1s\n{notifier}{extra}\
         tocsin:\n  data_dir: {:?}\n  process_interval: 200ms\n  delivery:\n    connect_timeout: 1s\n    timeout: 2s\n    initial_backoff: 100ms\n    max_backoff: 1s\n    lease: 5s\n",
        data.display().to_string()
    )
}

/// The bearer token a client sends, and one signed with another key.
fn tokens() -> (String, String) {
    let key = PskKey::from_base64(PSK_B64).expect("key");
    let good = PskSigner::with_issuer(&key, "leaktest")
        .sign()
        .expect("sign");
    let other = PskKey::from_bytes(b"some other key".to_vec()).expect("key");
    let forged = PskSigner::with_issuer(&other, "leaktest")
        .sign()
        .expect("sign");
    (good, forged)
}

/// Runs `serve` with `notifier` (a channel section) in Clair's test mode, so a set is created
/// and its delivery fails; waits for a recorded failed attempt and for `log_marker` (when
/// given) in the log; returns the log and the API's answers, which are then checked.
async fn failed_deliveries(notifier: &str, extra: &str, log_marker: Option<&str>, seed: bool) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let port = free_port();
    let config = dir.path().join("tocsin.yaml");
    std::fs::write(
        &config,
        yaml(port, &dir.path().join("data"), notifier, extra),
    )
    .expect("writing the configuration");
    let log = dir.path().join("tocsin.log");
    let mut server = Server::start(
        &config,
        port,
        &log,
        &[("TOCSIN_LOG", "trace"), ("NOTIFIER_TEST_MODE", "1")],
    );
    server.ready().await;
    let (good, forged) = tokens();
    let http = client();
    let bearer = format!("Bearer {good}");
    // Refused requests, with a forged token and with none.
    for auth in [Some(format!("Bearer {forged}")), None] {
        let mut r = http.get(format!("{}/api/v1/notifications", server.base));
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        let r = r.send().await.expect("GET");
        assert_eq!(r.status(), 401);
        let body = r.text().await.expect("body");
        assert_no_secret("a 401 answer", &body, &[&good, &forged]);
    }
    if seed {
        // A manifest and a real snapshot: Clair v2/v3 notifications for the v2 webhook.
        let Some(data) = shared_data() else { return };
        let report = read(&data.join("inventories/clair/indexreport-buster-jackson-databind.json"));
        let digest = serde_json::from_slice::<serde_json::Value>(&report).expect("JSON")
            ["manifest_hash"]
            .as_str()
            .expect("manifest_hash")
            .to_string();
        let snapshot = tocsin_testdata::snapshots(&data, "debian")[0].clone();
        for (url, body) in [
            (format!("{}/api/v1/manifests/{digest}", server.base), report),
            (
                format!("{}/api/v1/updaters/osv/debian/snapshot", server.base),
                read(&snapshot),
            ),
        ] {
            let r = http
                .put(url.clone())
                .header("authorization", &bearer)
                .body(body)
                .send()
                .await
                .expect("PUT");
            assert!(r.status().is_success(), "PUT {url}: {}", r.status());
        }
    }
    // Wait for a failed attempt on record, and read every set's history through the API.
    let base = server.base.clone();
    let answers = eventually(Duration::from_secs(60), "a failed delivery attempt", || {
        let (http, base, bearer) = (http.clone(), base.clone(), bearer.clone());
        async move {
            let list = http
                .get(format!("{base}/api/v1/notifications"))
                .header("authorization", &bearer)
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            let v: serde_json::Value = serde_json::from_str(&list).ok()?;
            let mut answers = list.clone();
            let mut failed = false;
            for set in v["notifications"].as_array()? {
                let id = set["id"].as_str()?;
                let detail = http
                    .get(format!("{base}/api/v1/notifications/{id}"))
                    .header("authorization", &bearer)
                    .send()
                    .await
                    .ok()?
                    .text()
                    .await
                    .ok()?;
                failed |= detail.contains("\"outcome\":\"failed\"");
                answers.push_str(&detail);
            }
            failed.then_some(answers)
        }
    })
    .await;
    if let Some(marker) = log_marker {
        let server = &server;
        eventually(Duration::from_secs(60), marker, || async move {
            server.log_since_start().contains(marker).then_some(())
        })
        .await;
    }
    server.terminate();
    let text = std::fs::read_to_string(&log).expect("reading the log");
    assert!(
        text.lines().count() > 20,
        "trace logging is on: {} lines",
        text.lines().count()
    );
    assert_no_secret("the log", &text, &[&good, &forged]);
    assert!(
        answers.contains("\"error\""),
        "attempts with errors: {answers}"
    );
    assert_no_secret("the attempt history", &answers, &[&good, &forged]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_and_clair_v2_webhook_secrets_stay_out_of_logs_and_answers() {
    let closed = free_port();
    let notifier = format!(
        "  webhook:\n    target: \"http://leak:{WEBHOOK_PASS}@127.0.0.1:{closed}/hook\"\n    callback: \"http://127.0.0.1:{closed}/notifier/api/v1/notification/\"\n    headers:\n      X-Api-Key: [\"{HEADER_SECRET}\"]\n"
    );
    let legacy = format!(
        "clair:\n  notifier:\n    attempts: 1\n    http:\n      endpoint: \"http://leak:{LEGACY_PASS}@127.0.0.1:{closed}/v2\"\n      proxy: \"http://proxy:{PROXY_PASS}@127.0.0.1:{}\"\n",
        free_port()
    );
    failed_deliveries(&notifier, &legacy, Some("v2 webhook attempt failed"), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_uri_passwords_stay_out_of_logs_and_answers() {
    let notifier = format!(
        "  amqp:\n    exchange: {{name: \"\"}}\n    routing_key: notifications\n    callback: \"http://127.0.0.1:1/notifier/api/v1/notification/\"\n    uris: [\"amqp://leak:{AMQP_PASS}@127.0.0.1:{}/%2f\"]\n",
        free_port()
    );
    failed_deliveries(&notifier, "", None, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stomp_passcodes_stay_out_of_logs_and_answers() {
    let notifier = format!(
        "  stomp:\n    destination: /queue/leak\n    callback: \"http://127.0.0.1:1/notifier/api/v1/notification/\"\n    uris: [\"127.0.0.1:{}\"]\n    user: {{login: leak, passcode: \"{STOMP_PASS}\"}}\n",
        free_port()
    );
    failed_deliveries(&notifier, "", None, false).await;
}

/// Runs a command that must fail and returns everything it printed.
fn failing(args: &[&str], config: &Path) -> String {
    let out = tocsin_command()
        .arg("--config")
        .arg(config)
        .args(args)
        .env("TOCSIN_LOG", "trace")
        .output()
        .expect("running tocsin");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "tocsin {args:?} succeeded:\n{text}");
    text
}

#[test]
fn postgres_passwords_stay_out_of_failed_starts() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let closed = free_port();
    for connstring in [
        format!("postgres://leak:{PG_PASS}@127.0.0.1:{closed}/tocsin"),
        format!("host=127.0.0.1 port={closed} user=leak password={PG_PASS} dbname=tocsin"),
        format!("postgres://leak:{PG_PASS}@127.0.0.1:{closed}/tocsin?sslmode=require"),
    ] {
        let config = dir.path().join("pg.yaml");
        std::fs::write(
            &config,
            format!(
                "http_listen_addr: 127.0.0.1:{}\nnotifier:\n  connstring: \"{connstring}\"\n",
                free_port()
            ),
        )
        .expect("writing the configuration");
        for args in [&["serve"][..], &["feed", "list"][..]] {
            let text = failing(args, &config);
            assert_no_secret(&format!("tocsin {args:?} ({connstring})"), &text, &[]);
        }
    }
}

#[test]
fn configuration_errors_do_not_echo_secrets() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let cases = [
        // Bad schemes and hosts next to passwords.
        format!(
            "notifier:\n  webhook:\n    target: \"htp://leak:{WEBHOOK_PASS}@quay/hook\"\n    callback: \"http://tocsin/n/\"\n"
        ),
        format!(
            "notifier:\n  webhook:\n    target: \"http://quay/hook\"\n    callback: \"http://leak:{WEBHOOK_PASS}@tocsin/n/?q=1\"\n"
        ),
        format!(
            "notifier:\n  webhook:\n    target: \"http://leak:{WEBHOOK_PASS}@[::1/hook\"\n    callback: \"http://tocsin/n/\"\n"
        ),
        format!(
            "notifier:\n  amqp:\n    routing_key: r\n    callback: \"http://tocsin/n/\"\n    uris: [\"amqp://leak:{AMQP_PASS}@:99999/\", \"http://leak:{AMQP_PASS}@broker/\"]\n"
        ),
        format!(
            "clair:\n  notifier:\n    http:\n      endpoint: \"ftp://leak:{LEGACY_PASS}@harbor/\"\n      proxy: \"socks9://proxy:{PROXY_PASS}@proxy:3128\"\n"
        ),
        format!("notifier:\n  connstring: \"postgres://leak:{PG_PASS}@db:notaport/x\"\n"),
        format!("notifier:\n  connstring: \"leak:{PG_PASS}\"\n"),
        format!("auth:\n  psk:\n    key: \"{PSK_RAW}!\"\n"),
        format!("auth:\n  psk:\n    key: [\"{PSK_B64}\"]\n"),
        format!(
            "notifier:\n  stomp:\n    destination: /queue/x\n    direct: true\n    uris: [\"broker\"]\n    user: {{login: l, passcode: [\"{STOMP_PASS}\"]}}\n"
        ),
    ];
    for (i, case) in cases.iter().enumerate() {
        let config = dir.path().join(format!("bad-{i}.yaml"));
        std::fs::write(&config, case).expect("writing the configuration");
        let text = failing(&["serve"], &config);
        assert!(
            text.contains("configuration") || text.contains("bad-"),
            "a configuration error:\n{text}"
        );
        assert_no_secret(&format!("the error for\n{case}"), &text, &[]);
    }
}
