//! A real Clair v4.9.0 (built from the Go module proxy by `scripts/clair.sh`, nothing of it
//! committed) beside tocsin, on the local PostgreSQL, fed and indexed offline from the shared
//! data; the answers are compared with tocsin's on the same inventory and advisories.
//!
//! - The image: one layer holding Debian 10's `os-release` and a dpkg status file of the 91
//!   packages of a real Debian 10 image (`inventories/clair/indexreport-buster-jackson-databind.json`),
//!   served from a local HTTP server and indexed through Clair's own API
//!   (`POST /indexer/api/v1/index_report`).
//! - The advisories: the Debian update sequence (`updates/debian`), each step's `Debian:10`
//!   entries converted to claircore vulnerabilities and loaded with `clairctl import-updaters`
//!   (the matcher's updaters off), the same tar.gz imported into tocsin.
//! - Compared, step by step: the (manifest, reason, advisory, package) facts Clair's own notifier
//!   sends with those of tocsin's set for the same step; the webhook's Content-Type and body
//!   fields and the pull API page's fields (tocsin delivers to the same receiver); after the last
//!   step, the vulnerabilities Clair's matcher reports for the image with tocsin's report.
//!
//! Without Go or PostgreSQL the test skips with a message; under `CI=true` it fails instead.
mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path as UrlPath, State};
use axum::routing::{get, post};
use common::*;
use serde_json::{json, Value};
use sha2::Digest as _;
use tocsin_store_postgres::testing::{in_ci, throwaway_database};

const DEBIAN_10: &str = "PRETTY_NAME=\"Debian GNU/Linux 10 (buster)\"\nNAME=\"Debian GNU/Linux\"\n\
VERSION_ID=\"10\"\nVERSION=\"10 (buster)\"\nVERSION_CODENAME=buster\nID=debian\n";
const UPDATER: &str = "tocsin/debian-osv";
/// Update steps driven through both (each waits for Clair's notifier, which polls once a
/// minute).
const STEPS: usize = 2;

fn skip(why: &str) {
    assert!(
        !in_ci(),
        "the real-Clair test cannot run under CI=true: {why}"
    );
    eprintln!("skipping the real-Clair test: {why}");
}

/// `scripts/clair.sh`: the directory holding `clair` and `clairctl`.
fn clair_bin() -> Option<PathBuf> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/clair.sh");
    let out = Command::new("bash").arg(&script).output().ok()?;
    if !out.status.success() {
        skip(&format!(
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
        return None;
    }
    Some(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// A dpkg status file holding the packages of a real Debian 10 image (a claircore IndexReport of
/// the shared data), so that Clair's indexer and tocsin read the same installed packages.
fn status_from_report(report: &Value) -> Vec<u8> {
    let mut packages: Vec<&Value> = report["packages"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(_, p)| p)
        .filter(|p| p["kind"] == "binary")
        .collect();
    packages.sort_by_key(|p| p["name"].as_str().unwrap_or(""));
    let mut out = String::new();
    for p in packages {
        let name = p["name"].as_str().unwrap_or("");
        // The fixture's scanner once read a package's Conffiles lines into its version
        // (`2019.1 /etc/apt/…`); a dpkg version has no white space, so keep its first word.
        let version = p["version"]
            .as_str()
            .and_then(|v| v.split_whitespace().next())
            .unwrap_or("");
        out.push_str(&format!("Package: {name}\nStatus: install ok installed\n"));
        let arch = p["arch"]
            .as_str()
            .filter(|a| !a.is_empty())
            .unwrap_or("amd64");
        out.push_str(&format!("Architecture: {arch}\n"));
        let source = p["source"]["name"].as_str().unwrap_or("");
        let source_version = p["source"]["version"]
            .as_str()
            .and_then(|v| v.split_whitespace().next())
            .unwrap_or("");
        if !source.is_empty()
            && (source != name || (!source_version.is_empty() && source_version != version))
        {
            if source_version.is_empty() || source_version == version {
                out.push_str(&format!("Source: {source}\n"));
            } else {
                out.push_str(&format!("Source: {source} ({source_version})\n"));
            }
        }
        out.push_str(&format!("Version: {version}\nDescription: {name}\n\n"));
    }
    out.into_bytes()
}

/// A gzip layer: Debian 10's os-release and a dpkg database.
fn layer(status: &[u8]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8], dir: bool| {
        let mut h = tar::Header::new_gnu();
        h.set_mode(if dir { 0o755 } else { 0o644 });
        h.set_size(if dir { 0 } else { data.len() as u64 });
        h.set_entry_type(if dir {
            tar::EntryType::Directory
        } else {
            tar::EntryType::Regular
        });
        h.set_mtime(1_600_000_000);
        tar.append_data(&mut h, path, if dir { &[][..] } else { data })
            .expect("tar entry");
    };
    add("etc/", b"", true);
    add("etc/os-release", DEBIAN_10.as_bytes(), false);
    add("var/", b"", true);
    add("var/lib/", b"", true);
    add("var/lib/dpkg/", b"", true);
    add("var/lib/dpkg/info/", b"", true);
    add("var/lib/dpkg/status", status, false);
    let tar = tar.into_inner().expect("tar");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).expect("gzip");
    gz.finish().expect("gzip")
}

/// The `Debian:10` entries of a snapshot's records as claircore vulnerabilities: JSON lines
/// for `clairctl import-updaters`, one update operation whose fingerprint is the content's.
fn clair_import(records: &[(String, Vec<u8>)]) -> (String, usize) {
    let mut lines = Vec::new();
    let reference = uuid::Uuid::new_v4().to_string();
    let fingerprint = {
        let mut h = sha2::Sha256::new();
        for (id, bytes) in records {
            h.update(id.as_bytes());
            h.update(bytes);
        }
        hex::encode(h.finalize())
    };
    for (_, bytes) in records {
        let r: Value = serde_json::from_slice(bytes).expect("a JSON record");
        for a in r["affected"].as_array().into_iter().flatten() {
            if a["package"]["ecosystem"] != "Debian:10" {
                continue;
            }
            let fixed = a["ranges"][0]["events"]
                .as_array()
                .into_iter()
                .flatten()
                .find_map(|e| e["fixed"].as_str())
                .unwrap_or("");
            let vuln = json!({
                "name": r["id"], "updater": UPDATER, "description": r["summary"],
                "issued": r["published"], "links": "", "severity": "",
                "normalized_severity": "Unknown",
                "package": {"name": a["package"]["name"], "kind": "source"},
                "distribution": {"did": "debian", "name": "Debian GNU/Linux",
                    "version": "10 (buster)", "version_id": "10", "version_code_name": "buster",
                    "pretty_name": "Debian GNU/Linux 10 (buster)", "arch": "", "cpe": ""},
                "fixed_in_version": fixed,
            });
            lines.push(
                json!({"Updater": UPDATER, "Fingerprint": fingerprint, "Date": r["published"],
                    "Ref": reference, "Vuln": vuln, "Kind": "vulnerability"})
                .to_string(),
            );
        }
    }
    let n = lines.len();
    (lines.join("\n") + "\n", n)
}

#[derive(Clone, Default)]
struct Peer {
    blobs: Arc<Mutex<std::collections::HashMap<String, Vec<u8>>>>,
    /// Clair's webhooks: (content type, body).
    hooks: Arc<Mutex<Vec<(String, Value)>>>,
    /// tocsin's.
    tocsin_hooks: Arc<Mutex<Vec<(String, Value)>>>,
}

async fn blob(State(p): State<Peer>, UrlPath(hex): UrlPath<String>) -> axum::response::Response {
    use axum::response::IntoResponse;
    match p.blobs.lock().expect("lock").get(&hex) {
        Some(b) => (
            [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
            b.clone(),
        )
            .into_response(),
        None => axum::http::StatusCode::NOT_FOUND.into_response(),
    }
}

fn received(headers: &axum::http::HeaderMap, body: &[u8]) -> Option<(String, Value)> {
    let ct = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    serde_json::from_slice(body).ok().map(|v| (ct, v))
}

async fn hook(
    State(p): State<Peer>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> &'static str {
    if let Some(r) = received(&headers, &body) {
        p.hooks.lock().expect("lock").push(r);
    }
    "ok"
}

async fn tocsin_hook(
    State(p): State<Peer>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> &'static str {
    if let Some(r) = received(&headers, &body) {
        p.tocsin_hooks.lock().expect("lock").push(r);
    }
    "ok"
}

/// The keys of a JSON object, sorted (nested objects as `key.sub`).
fn shape(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    if let Some(o) = v.as_object() {
        for (k, v) in o {
            let key = format!("{prefix}{k}");
            out.insert(key.clone());
            shape(v, &format!("{key}."), out);
        }
    }
}

fn keys(v: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    shape(v, "", &mut out);
    out
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// (advisory, package) pairs of a claircore VulnerabilityReport.
fn report_pairs(report: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    let packages = &report["packages"];
    let vulns = &report["vulnerabilities"];
    for (pkg, ids) in report["package_vulnerabilities"]
        .as_object()
        .into_iter()
        .flatten()
    {
        let name = packages[pkg]["name"].as_str().unwrap_or("").to_string();
        for id in ids.as_array().into_iter().flatten() {
            let id = id.as_str().unwrap_or("");
            out.insert((
                vulns[id]["name"].as_str().unwrap_or("").to_string(),
                name.clone(),
            ));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clair_and_tocsin_agree_on_a_debian_image() {
    let Some(data) = shared_data() else { return };
    let Some(bin) = clair_bin() else { return };
    let (Some(indexer_db), Some(matcher_db), Some(notifier_db)) = (
        throwaway_database().await,
        throwaway_database().await,
        throwaway_database().await,
    ) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");

    // The layer and webhook server.
    let peer = Peer::default();
    let report: Value = serde_json::from_slice(&read(
        &data.join("inventories/clair/indexreport-buster-jackson-databind.json"),
    ))
    .expect("an IndexReport");
    let status = status_from_report(&report);
    let blob_bytes = layer(&status);
    let blob_hex = hex::encode(sha2::Sha256::digest(&blob_bytes));
    peer.blobs
        .lock()
        .expect("lock")
        .insert(blob_hex.clone(), blob_bytes);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let peer_addr = listener.local_addr().expect("addr");
    let app = axum::Router::new()
        .route("/blob/{hex}", get(blob))
        .route("/hook", post(hook))
        .route("/tocsin-hook", post(tocsin_hook))
        .with_state(peer.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    // Clair, combo mode, its matcher's updaters off.
    let (port, intro) = (free_port(), free_port());
    let config = dir.path().join("clair.yaml");
    // The Red Hat scanners want their mapping files, which they fetch from Red Hat unless
    // given local ones: empty maps, as nothing here is a Red Hat image.
    let map = dir.path().join("empty-mapping.json");
    std::fs::write(&map, r#"{"data":{}}"#).expect("mapping file");
    std::fs::write(
        &config,
        format!(
            "http_listen_addr: 127.0.0.1:{port}\nintrospection_addr: 127.0.0.1:{intro}\n\
             log_level: info\nindexer:\n  connstring: {:?}\n  migrations: true\n  airgap: true\n\
             \x20 scanner:\n    repo:\n      rhel-repository-scanner:\n        \
             repo2cpe_mapping_file: {map:?}\n    package:\n      rhel_containerscanner:\n        \
             name2repos_mapping_file: {map:?}\n\
             matcher:\n  connstring: {:?}\n  migrations: true\n  disable_updaters: true\n\
             notifier:\n  connstring: {:?}\n  migrations: true\n  poll_interval: 1m\n  \
             delivery_interval: 1m\n  disable_summary: true\n  webhook:\n    \
             target: http://{peer_addr}/hook\n    \
             callback: http://127.0.0.1:{port}/notifier/api/v1/notification/\n",
            indexer_db.connstring(),
            matcher_db.connstring(),
            notifier_db.connstring()
        ),
    )
    .expect("config");
    let log = std::fs::File::create(dir.path().join("clair.log")).expect("log");
    let _clair = Killed(
        Command::new(bin.join("clair"))
            .args(["-conf", config.to_str().expect("path"), "-mode", "combo"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting clair"),
    );
    let http = client();
    let base = format!("http://127.0.0.1:{port}");
    eventually(Duration::from_secs(60), "Clair answers", || {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let r = http
                .get(format!("{base}/matcher/api/v1/internal/update_operation"))
                .send()
                .await
                .ok()?;
            (r.status() == 200).then_some(())
        }
    })
    .await;

    // Index the image through Clair's API.
    let manifest = format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(b"tocsin real-clair image"))
    );
    let r = http
        .post(format!("{base}/indexer/api/v1/index_report"))
        .json(&json!({"hash": manifest, "layers": [{
            "hash": format!("sha256:{blob_hex}"),
            "uri": format!("http://{peer_addr}/blob/{blob_hex}"), "headers": {}}]}))
        .send()
        .await
        .expect("index_report");
    let status_code = r.status().as_u16();
    let index: Value = r.json().await.expect("an IndexReport");
    assert_eq!(status_code, 201, "{index}");
    let packages = index["packages"].as_object().map_or(0, |p| p.len());
    assert!(packages > 50, "Clair found {packages} packages: {index}");

    // tocsin beside it, on the same status file.
    let tport = free_port();
    let mut spec = ConfigSpec::new(tport, &dir.path().join("tocsin"));
    // Clair's notifier runs with `disable_summary` too: one entry per vulnerability.
    spec.disable_summary = true;
    spec.webhook = Some(format!("http://{peer_addr}/tocsin-hook"));
    let tconfig = spec.write(&dir.path().join("t.yaml"));
    let mut tocsin = Server::start(&tconfig, tport, &dir.path().join("tocsin.log"), &[]);
    tocsin.ready().await;
    put_ok(
        &http,
        &format!(
            "{}/api/v1/manifests/{manifest}?distribution=debian:10",
            tocsin.base
        ),
        status.clone(),
    )
    .await;
    let cfg = tconfig.to_str().expect("path").to_string();

    // Both through the same update sequence: the Debian cut-offs, step by step.
    let steps = tocsin_testdata::snapshots(&data, "debian");
    for (i, step) in steps.iter().take(STEPS).enumerate() {
        let records = tocsin_testdata::osv_mirror::read_records(step).expect("records");
        let (jsonl, lines) = clair_import(&records);
        let file = dir.path().join(format!("debian-{i}.jsonl"));
        std::fs::write(&file, jsonl).expect("jsonl");
        let out = Command::new(bin.join("clairctl"))
            .args([
                "--config",
                config.to_str().expect("path"),
                "import-updaters",
            ])
            .arg(&file)
            .output()
            .expect("clairctl");
        assert!(
            out.status.success(),
            "clairctl import-updaters: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        run_cli(&[
            "--config",
            &cfg,
            "feed",
            "import",
            "osv/debian",
            step.to_str().expect("path"),
        ])
        .success();

        // Clair's own notifier: one webhook per step (it polls once a minute, so each step is
        // imported after it delivered the previous one, and it diffs the newest operation
        // against the one before).
        let callback = eventually(
            Duration::from_secs(240),
            "Clair's notifier calls the webhook",
            || {
                let hooks = Arc::clone(&peer.hooks);
                async move {
                    let hooks = hooks.lock().expect("lock");
                    hooks
                        .get(i)
                        .and_then(|(_, h)| h["callback"].as_str().map(str::to_string))
                }
            },
        )
        .await;
        let clair_facts = facts(&http, &callback).await;
        let sets = notification_sets(&http, &tocsin.base).await;
        let newest = sets
            .iter()
            .max_by_key(|s| s["created_at"].as_str().unwrap_or("").to_string())
            .expect("a set");
        let id = newest["id"].as_str().expect("a set id");
        let tocsin_facts = facts(
            &http,
            &format!("{}/notifier/api/v1/notification/{id}", tocsin.base),
        )
        .await;
        eprintln!(
            "step {i} ({}): {lines} claircore vulnerabilities; Clair's notifier: {} facts, \
             tocsin: {}",
            step.display(),
            clair_facts.len(),
            tocsin_facts.len()
        );
        assert!(!clair_facts.is_empty(), "step {i}");
        assert_eq!(
            clair_facts, tocsin_facts,
            "step {i}: the notified facts differ"
        );
        assert_eq!(sets.len(), i + 1, "tocsin: one set per step");

        // The wire: webhook bodies and pull-API pages, field by field (values that name a
        // process — ids, the callback's host — aside).
        let tocsin_hook = eventually(Duration::from_secs(30), "tocsin's webhook", || {
            let hooks = Arc::clone(&peer.tocsin_hooks);
            async move { hooks.lock().expect("lock").get(i).cloned() }
        })
        .await;
        let clair_hook = peer.hooks.lock().expect("lock")[i].clone();
        assert_eq!(tocsin_hook.0, clair_hook.0, "webhook Content-Type");
        assert_eq!(
            keys(&tocsin_hook.1),
            keys(&clair_hook.1),
            "webhook body fields"
        );
        let ours = tocsin_hook.1["callback"].as_str().unwrap_or("");
        assert!(
            ours.ends_with(&format!("/notifier/api/v1/notification/{id}")),
            "{ours}"
        );
        let clair_page = get_json(&http, &format!("{callback}?page_size=1")).await;
        let tocsin_page = get_json(
            &http,
            &format!(
                "{}/notifier/api/v1/notification/{id}?page_size=1",
                tocsin.base
            ),
        )
        .await;
        assert_eq!(
            keys(&tocsin_page),
            keys(&clair_page),
            "page fields: Clair {clair_page}, tocsin {tocsin_page}"
        );
    }

    // The forward direction after the last step.
    let clair_report: Value = http
        .get(format!(
            "{base}/matcher/api/v1/vulnerability_report/{manifest}"
        ))
        .send()
        .await
        .expect("report")
        .json()
        .await
        .expect("a VulnerabilityReport");
    let tocsin_report = get_json(
        &http,
        &format!(
            "{}/matcher/api/v1/vulnerability_report/{manifest}",
            tocsin.base
        ),
    )
    .await;
    let (clair_pairs, tocsin_pairs) = (report_pairs(&clair_report), report_pairs(&tocsin_report));
    eprintln!(
        "vulnerability reports: Clair {} (advisory, package) pairs, tocsin {}",
        clair_pairs.len(),
        tocsin_pairs.len()
    );
    assert!(
        !clair_pairs.is_empty(),
        "Clair matched nothing: {clair_report}"
    );
    assert_eq!(
        clair_pairs, tocsin_pairs,
        "the vulnerability reports differ"
    );
    tocsin.terminate();
}

/// (manifest, reason, advisory, package) of every entry of a v4 notification, paging through it.
async fn facts(http: &reqwest::Client, url: &str) -> BTreeSet<(String, String, String, String)> {
    let mut out = BTreeSet::new();
    let mut next: Option<String> = None;
    loop {
        let mut u = format!("{url}?page_size=100");
        if let Some(n) = &next {
            u.push_str(&format!("&next={n}"));
        }
        let page = get_json(http, &u).await;
        for n in page["notifications"].as_array().into_iter().flatten() {
            let text = |v: &Value| v.as_str().unwrap_or("").to_string();
            out.insert((
                text(&n["manifest"]),
                text(&n["reason"]),
                text(&n["vulnerability"]["name"]),
                text(&n["vulnerability"]["package"]["name"]),
            ));
        }
        match page["page"]["next"].as_str() {
            Some(n) => next = Some(n.to_string()),
            None => return out,
        }
    }
}
