//! schemathesis against a real `tocsin serve`: the OpenAPI document the server itself serves
//! must describe what it does.
//!
//! The server runs with PSK authentication and a Clair v2 webhook, and is seeded with the real
//! inventories and two consecutive real snapshots of two feeds, so that it holds manifests,
//! updaters, v4 notification sets and Clair v2/v3 notifications. schemathesis (pinned, installed
//! by `scripts/schemathesis.sh` into the user's cache) then runs every check (`--checks all`)
//! through its examples, coverage, fuzzing and stateful phases (the stateful phase follows the
//! document's OpenAPI links), with the seeded ids, digests and names mixed into the generated
//! values. Any failure fails the test, with schemathesis's report.
//!
//! Without python3 (or its venv/pip) the test skips with a message; under `CI=true` it fails.
//! `TOCSIN_SCHEMATHESIS_SEED` replaces the fixed seed, `TOCSIN_SCHEMATHESIS_EXAMPLES` the number
//! of cases per operation and phase.
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// The PSK of the test server (base64 of a throwaway key).
const PSK: &str = "c2NoZW1hdGhlc2lzLXRlc3Qta2V5LW5vdC1hLXNlY3JldA==";
/// Cases per operation in the fuzzing phase (the examples, coverage and stateful phases add
/// theirs): about 2,800 cases in some 30 s on 2 cores (150 gives 4,000 in 45 s, all passing).
const EXAMPLES: u32 = 100;
/// The seed, for a reproducible run.
const SEED: u64 = 20_260_821;
/// The whole schemathesis run may take this long.
const RUN_LIMIT: Duration = Duration::from_secs(600);

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Skips with `why`, or fails under CI.
fn skip(why: &str) {
    assert!(
        !in_ci(),
        "schemathesis test cannot run under CI=true: {why}"
    );
    eprintln!("skipping: {why}");
}

/// Installs schemathesis when missing; `false` after [`skip`] when python3 cannot run it.
fn install_schemathesis(script: &Path) -> bool {
    let out = match Command::new(script)
        .arg("--install-only")
        .stdin(Stdio::null())
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            skip(&format!("cannot run {}: {e}", script.display()));
            return false;
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => {
            eprintln!("{}", String::from_utf8_lossy(&out.stdout).trim());
            true
        }
        Some(3) => {
            skip(&format!("python3 cannot install schemathesis: {stderr}"));
            false
        }
        _ => panic!(
            "{} --install-only failed ({}):\n{stderr}",
            script.display(),
            out.status
        ),
    }
}

/// A PSK token for the whole run (Clair's tokens live a minute; this one, an hour).
fn token() -> String {
    use base64::Engine as _;
    let key = base64::engine::general_purpose::STANDARD
        .decode(PSK)
        .expect("the test PSK is base64");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = serde_json::json!({ "iss": "schemathesis", "iat": now, "exp": now + 3600 });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.typ = None;
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&key),
    )
    .expect("signing the test token")
}

/// What the server holds after seeding, for schemathesis's dictionaries.
#[derive(Default)]
struct Seeded {
    digests: Vec<String>,
    updaters: Vec<String>,
    sets: Vec<String>,
    legacy: Vec<String>,
}

async fn seed(http: &reqwest::Client, base: &str, auth: &str, data: &Path) -> Seeded {
    let mut s = Seeded::default();
    let put = |url: String, body: Vec<u8>| {
        let req = http
            .put(url.clone())
            .header("authorization", auth)
            .body(body);
        async move {
            let r = req.send().await.expect("PUT");
            let status = r.status();
            let text = r.text().await.expect("response body");
            assert!(status.is_success(), "PUT {url}: {status}: {text}");
            serde_json::from_str::<Value>(&text).expect("JSON answer")
        }
    };
    let inv = data.join("inventories");
    let mut uploads: Vec<(PathBuf, String)> = Vec::new();
    for name in [
        "clair/indexreport-buster-jackson-databind.json",
        "clair/docker.io-library-debian-10.index.json",
        "clair/clair-rhel8-v3.5.5-4-indexreport.json",
    ] {
        let bytes = read(&inv.join(name));
        let report: Value = serde_json::from_slice(&bytes).expect("IndexReport JSON");
        let digest = report["manifest_hash"]
            .as_str()
            .expect("manifest_hash")
            .to_string();
        uploads.push((inv.join(name), digest));
    }
    for name in [
        "cargo/tansu.Cargo.lock",
        "cargo/rust-rdkafka.Cargo.lock",
        "pip/python311-site-packages.requirements.txt",
        "cyclonedx/SBOM_proton-bridge_proton-bridge-v1.6.3.bom.json",
    ] {
        let bytes = read(&inv.join(name));
        let digest = tocsin_model::Digest::sha256_of(&bytes).to_string();
        uploads.push((inv.join(name), digest));
    }
    for (path, digest) in &uploads {
        put(
            format!("{base}/api/v1/manifests/{digest}?label=source=schemathesis"),
            read(path),
        )
        .await;
        s.digests.push(digest.clone());
    }
    let dpkg = read(&inv.join("dpkg/postgresql.status"));
    let digest = tocsin_model::Digest::sha256_of(&dpkg).to_string();
    put(
        format!("{base}/api/v1/manifests/{digest}?distribution=debian:10"),
        dpkg,
    )
    .await;
    s.digests.push(digest);

    for (feed, updater) in [("debian", "osv/debian"), ("crates.io", "osv/crates.io")] {
        for snapshot in tocsin_testdata::snapshots(data, feed).iter().take(2) {
            let answer = put(
                format!("{base}/api/v1/updaters/{updater}/snapshot"),
                read(snapshot),
            )
            .await;
            for p in answer["processed"].as_array().into_iter().flatten() {
                if let Some(id) = p["notification_id"].as_str() {
                    s.sets.push(id.to_string());
                }
            }
        }
        s.updaters.push(updater.to_string());
    }
    s
}

/// A TOML string.
fn toml_str(s: &str) -> String {
    serde_json::to_string(s).expect("a JSON string is a TOML basic string")
}

fn toml_list(values: &[String]) -> String {
    let items: Vec<String> = values.iter().map(|v| toml_str(v)).collect();
    format!("[{}]", items.join(", "))
}

/// The repository's settings plus this run's: the token, and the seeded values mixed into
/// generated path parameters.
fn config(seeded: &Seeded, token: &str) -> String {
    let mut c = std::fs::read_to_string(repo_root().join("scripts/schemathesis.toml"))
        .expect("reading scripts/schemathesis.toml");
    c.push_str(&format!(
        "\n# Added by crates/tocsin/tests/schemathesis.rs.\n[auth.openapi.psk]\nbearer = {}\n",
        toml_str(token)
    ));
    let dictionaries = [
        ("set-ids", "path.id", &seeded.sets),
        ("digests", "path.digest", &seeded.digests),
        ("updaters", "path.name", &seeded.updaters),
        ("legacy-names", "path.notification", &seeded.legacy),
    ];
    for (name, _, values) in &dictionaries {
        if !values.is_empty() {
            c.push_str(&format!(
                "\n[dictionaries.{name}]\nvalues = {}\n",
                toml_list(values)
            ));
        }
    }
    c.push_str("\n[parameters]\n");
    for (name, parameter, values) in &dictionaries {
        if !values.is_empty() {
            c.push_str(&format!(
                "{} = {{ dictionary = {}, probability = 0.5 }}\n",
                toml_str(parameter),
                toml_str(name)
            ));
        }
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_openapi_document_passes_schemathesis() {
    // Without the shared data the test skips, as every data-driven test does (tocsin_testdata).
    let Some(data) = shared_data() else { return };
    let script = repo_root().join("scripts/schemathesis.sh");
    if !install_schemathesis(&script) {
        return;
    }

    let dir = tempfile::tempdir().expect("temporary directory");
    let hook = Receiver::start(Behaviour::ok()).await;
    let port = free_port();
    let yaml = format!(
        "http_listen_addr: 127.0.0.1:{port}\nlog_level: info\nauth:\n  psk:\n    key: {PSK}\n    iss: [schemathesis]\n\
         clair:\n  notifier:\n    attempts: 1\n    renotifyinterval: 1h\n    http:\n      endpoint: {}\n\
         tocsin:\n  data_dir: {:?}\n  process_interval: 200ms\n  max_body_size: 16MiB\n",
        hook.url,
        dir.path().join("data").display().to_string(),
    );
    let config_path = dir.path().join("tocsin.yaml");
    std::fs::write(&config_path, yaml).expect("writing the configuration");
    let mut server = Server::start(&config_path, port, &dir.path().join("tocsin.log"), &[]);
    server.ready().await;

    let http = client();
    let token = token();
    let auth = format!("Bearer {token}");
    let mut seeded = seed(&http, &server.base, &auth, &data).await;
    assert!(!seeded.sets.is_empty(), "seeding made no notification set");
    // Clair v2/v3 names reach clients through the v2 webhook, as they did with Clair.
    seeded.legacy = eventually(Duration::from_secs(60), "v2 webhook posts", || {
        let hits = hook.hits();
        async move {
            let names: Vec<String> = hits
                .iter()
                .filter_map(|h| serde_json::from_slice::<Value>(&h.body).ok())
                .filter_map(|v| v["Notification"]["Name"].as_str().map(str::to_string))
                .collect();
            (names.len() >= 2).then_some(names)
        }
    })
    .await;
    seeded.legacy.sort();
    seeded.legacy.dedup();
    seeded.legacy.truncate(20);

    // The document exactly as served (it requires the token, as Clair's does).
    let r = http
        .get(format!("{}/openapi.json", server.base))
        .header("authorization", &auth)
        .send()
        .await
        .expect("GET /openapi.json");
    assert_eq!(r.status(), 200, "GET /openapi.json");
    let doc = r.bytes().await.expect("the document");
    let doc_path = dir.path().join("openapi.json");
    std::fs::write(&doc_path, &doc).expect("writing the document");
    let toml_path = dir.path().join("schemathesis.toml");
    std::fs::write(&toml_path, config(&seeded, &token)).expect("writing the settings");

    let examples = std::env::var("TOCSIN_SCHEMATHESIS_EXAMPLES")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(EXAMPLES);
    let seed = std::env::var("TOCSIN_SCHEMATHESIS_SEED")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(SEED);
    let out_path = dir.path().join("schemathesis.out");
    let out = std::fs::File::create(&out_path).expect("creating the output file");
    let err = out.try_clone().expect("cloning the output file");
    let started = Instant::now();
    let mut st = Command::new(&script)
        .arg("--config-file")
        .arg(&toml_path)
        .arg("--no-color")
        .arg("run")
        .arg(&doc_path)
        .args(["--url", &server.base])
        .args(["--checks", "all"])
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        .args(["--max-examples", &examples.to_string()])
        .args(["--seed", &seed.to_string()])
        // One worker: CPython 3.11's `ast` module can fail with "AST constructor recursion depth
        // mismatch" when hypothesis parses sources on two threads at once (CPython gh-106905).
        .args(["--workers", "1"])
        .args(["--request-timeout", "60"])
        .args(["--generation-database", "none"])
        .args(["--suppress-health-check", "too_slow"])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("starting schemathesis");
    let status = loop {
        if let Some(status) = st.try_wait().expect("waiting for schemathesis") {
            break status;
        }
        if started.elapsed() > RUN_LIMIT {
            let _ = st.kill();
            let _ = st.wait();
            panic!(
                "schemathesis still running after {RUN_LIMIT:?}; output so far:\n{}",
                std::fs::read_to_string(&out_path).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let output = std::fs::read_to_string(&out_path).unwrap_or_default();
    eprintln!(
        "schemathesis (seed {seed}, {examples} examples per operation) took {:.0?}:\n{output}",
        started.elapsed()
    );
    assert!(
        status.success(),
        "schemathesis found failures ({status}); server log:\n{}\n\nschemathesis output:\n{output}",
        server.log_tail()
    );
    drop(hook);
}
