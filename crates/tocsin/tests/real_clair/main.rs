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
//! - tocsin **fronting** that Clair (`notifier.matcher_addr` / `indexer_addr`, as a Clair
//!   operator swaps Clair's notifier for tocsin): it mirrors the matcher's update operations and
//!   asks the indexer which manifests are affected; its facts must equal Clair's notifier's on
//!   every step. Clair runs with `auth.psk`, so every call tocsin makes to it is signed, and
//!   the fronting tocsin checks the same key on its own API.
//!   The fronting tocsin runs as two processes on one PostgreSQL database: every set is made
//!   and delivered once.
//! - The pull API's error answers, Clair's notifier beside tocsin, case by case: equal except
//!   where Clair is known to be wrong (each such case pinned to what both answer).
//! - Clair down: the remaining steps are imported while Clair is stopped (clairctl writes to
//!   the matcher's database directly), several update operations at once; the fronting
//!   tocsin's runs fail and are retried, and once Clair is back every operation is mirrored and
//!   processed in order, making the sets tocsin standalone makes for those steps.
//!
//! - `tocsin kube` on the webhooks Clair's notifier sent, paging and deleting at Clair
//!   (`kube.rs`).
//!
//! Without Go or PostgreSQL the test skips with a message; under `CI=true` it fails instead.
#[path = "../common/mod.rs"]
mod common;
mod ecosystems;
mod kube;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path as UrlPath, State};
use axum::routing::{get, post};
use common::*;
use serde_json::{json, Value};
use sha2::Digest as _;
use tocsin_store_postgres::testing::{in_ci, throwaway_database, TestDatabase};

const DEBIAN_10: &str = "PRETTY_NAME=\"Debian GNU/Linux 10 (buster)\"\nNAME=\"Debian GNU/Linux\"\n\
VERSION_ID=\"10\"\nVERSION=\"10 (buster)\"\nVERSION_CODENAME=buster\nID=debian\n";
const UPDATER: &str = "tocsin/debian-osv";
/// `auth.psk.key` of Clair and of the fronting tocsin.
const PSK: &str = "dG9jc2luLXJlYWwtY2xhaXItdGVzdC1wc2stMzJieXQ=";

/// A client whose requests carry a fresh PSK token (`clair-intraservice`, valid for a minute):
/// made anew for each short group of calls to Clair or to the fronting tocsin.
fn signed() -> reqwest::Client {
    let key = tocsin_deliver::PskKey::from_base64(PSK).expect("the test key");
    let token =
        tocsin_deliver::jwt::PskSigner::with_issuer(&key, tocsin_deliver::jwt::INTRASERVICE_ISSUER)
            .sign()
            .expect("signing");
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().expect("a header value"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("a client")
}
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
    clair_bin_with(None)
}

/// [`clair_bin`] for the same Clair built against claircore `core`.
fn clair_bin_with(core: Option<&str>) -> Option<PathBuf> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/clair.sh");
    let mut command = Command::new("bash");
    command.arg(&script);
    match core {
        Some(v) => command.env("CLAIRCORE_VERSION", v),
        None => command.env_remove("CLAIRCORE_VERSION"),
    };
    let out = command.output().ok()?;
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
    layer_of(&[
        ("etc/os-release", DEBIAN_10.as_bytes(), 0o644),
        ("var/lib/dpkg/info/", b"", 0o755),
        ("var/lib/dpkg/status", status, 0o644),
    ])
}

/// A gzip layer of `(path, bytes, mode)` files (a path ending in `/` is a directory), each
/// file's parent directories made first, as an image build writes them.
fn layer_of(files: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut made = BTreeSet::new();
    for (path, data, mode) in files {
        let mut dirs: Vec<String> = Vec::new();
        let mut at = 0;
        while let Some(i) = path[at..].find('/') {
            at += i + 1;
            dirs.push(path[..at].to_string());
        }
        for d in dirs {
            if made.insert(d.clone()) {
                let mut h = tar::Header::new_gnu();
                h.set_mode(0o755);
                h.set_size(0);
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mtime(1_600_000_000);
                tar.append_data(&mut h, &d, &[][..]).expect("tar entry");
            }
        }
        if path.ends_with('/') {
            continue;
        }
        let mut h = tar::Header::new_gnu();
        h.set_mode(*mode);
        h.set_size(data.len() as u64);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mtime(1_600_000_000);
        tar.append_data(&mut h, path, *data).expect("tar entry");
    }
    let tar = tar.into_inner().expect("tar");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).expect("gzip");
    gz.finish().expect("gzip")
}

/// Clair's configuration for one combo-mode process: its three databases, the webhook
/// `target`, `auth.psk`, and either its matcher's updaters off (vulnerabilities come from
/// `clairctl import-updaters`) or, given `osv_mirror`, only Clair's own OSV updater, reading
/// PyPI and Go from that URL. The Red Hat scanners want their mapping files, which they fetch
/// from Red Hat unless given local ones: `map` is an empty one, as nothing here is a Red Hat
/// image.
struct ClairYaml<'a> {
    port: u16,
    intro: u16,
    indexer: &'a str,
    matcher: &'a str,
    notifier: &'a str,
    map: &'a Path,
    target: String,
    osv_mirror: Option<String>,
}

impl ClairYaml<'_> {
    fn render(&self) -> String {
        let ClairYaml {
            port,
            intro,
            indexer,
            matcher,
            notifier,
            map,
            target,
            osv_mirror,
        } = self;
        let updaters = match osv_mirror {
            None => "  disable_updaters: true\n".to_string(),
            Some(_) => "  disable_updaters: false\n".to_string(),
        };
        let sets = match osv_mirror {
            None => String::new(),
            Some(url) => format!(
                "updaters:\n  sets: [osv]\n  config:\n    osv:\n      url: {url:?}\n      \
                 allowlist: [pypi, go]\n"
            ),
        };
        format!(
            "http_listen_addr: 127.0.0.1:{port}\nintrospection_addr: 127.0.0.1:{intro}\n\
             log_level: info\nindexer:\n  connstring: {indexer:?}\n  migrations: true\n  \
             airgap: true\n  scanner:\n    repo:\n      rhel-repository-scanner:\n        \
             repo2cpe_mapping_file: {map:?}\n    package:\n      rhel_containerscanner:\n        \
             name2repos_mapping_file: {map:?}\n\
             matcher:\n  connstring: {matcher:?}\n  migrations: true\n{updaters}\
             notifier:\n  connstring: {notifier:?}\n  migrations: true\n  poll_interval: 1m\n  \
             delivery_interval: 1m\n  disable_summary: true\n  webhook:\n    \
             target: {target}\n    \
             callback: http://127.0.0.1:{port}/notifier/api/v1/notification/\n\
             auth:\n  psk:\n    key: {PSK}\n    iss: [quay]\n{sets}"
        )
    }
}

/// Starts `clair -mode combo` on `config`, its log appended to `log`.
fn spawn_clair(bin: &Path, config: &Path, log: &Path) -> Killed {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log");
    Killed(
        Command::new(bin.join("clair"))
            .args(["-conf", config.to_str().expect("path"), "-mode", "combo"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting clair"),
    )
}

/// Waits until Clair at `base` answers a signed call.
async fn clair_answers(base: &str) {
    eventually(Duration::from_secs(60), "Clair answers", || async move {
        let r = signed()
            .get(format!("{base}/matcher/api/v1/internal/update_operation"))
            .send()
            .await
            .ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
}

/// Indexes the one-layer image `manifest` (its layer served at `peer_addr`) through Clair's
/// API; returns Clair's IndexReport.
async fn clair_index(
    base: &str,
    peer_addr: std::net::SocketAddr,
    manifest: &str,
    blob_hex: &str,
) -> Value {
    let r = signed()
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
    index
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

/// Loads a snapshot's `Debian:10` entries into Clair's matcher database with `clairctl
/// import-updaters` (through `file`): one new update operation. Returns the lines imported.
fn clairctl_import(bin: &Path, config: &Path, step: &Path, file: &Path) -> usize {
    let records = tocsin_testdata::osv_mirror::read_records(step).expect("records");
    let (jsonl, lines) = clair_import(&records);
    std::fs::write(file, jsonl).expect("jsonl");
    let out = Command::new(bin.join("clairctl"))
        .args([
            "--config",
            config.to_str().expect("path"),
            "import-updaters",
        ])
        .arg(file)
        .output()
        .expect("clairctl");
    assert!(
        out.status.success(),
        "clairctl import-updaters: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    lines
}

#[derive(Clone, Default)]
struct Peer {
    blobs: Arc<Mutex<std::collections::HashMap<String, Vec<u8>>>>,
    /// Clair's webhooks: (content type, body).
    hooks: Arc<Mutex<Vec<(String, Value)>>>,
    /// tocsin's.
    tocsin_hooks: Arc<Mutex<Vec<(String, Value)>>>,
    /// The fronting tocsin's.
    fronting_hooks: Arc<Mutex<Vec<(String, Value)>>>,
}

impl Peer {
    /// Serves `bytes` as a layer; returns its hex SHA-256 (its path under `/blob/`).
    fn put_blob(&self, bytes: Vec<u8>) -> String {
        let hex = hex::encode(sha2::Sha256::digest(&bytes));
        self.blobs.lock().expect("lock").insert(hex.clone(), bytes);
        hex
    }

    /// Serves the layers and the three webhook receivers on a loopback port.
    async fn serve(&self) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = axum::Router::new()
            .route("/blob/{hex}", get(blob))
            .route("/hook", post(hook))
            .route("/tocsin-hook", post(tocsin_hook))
            .route("/fronting-hook", post(fronting_hook))
            .with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }
}

/// Clair's indexer, matcher and notifier databases, throw-away ones.
async fn clair_databases() -> Option<(TestDatabase, TestDatabase, TestDatabase)> {
    Some((
        throwaway_database().await?,
        throwaway_database().await?,
        throwaway_database().await?,
    ))
}

/// An empty Red Hat mapping file in `dir` (module doc of [`ClairYaml`]).
fn empty_mapping(dir: &Path) -> PathBuf {
    let map = dir.join("empty-mapping.json");
    std::fs::write(&map, r#"{"data":{}}"#).expect("mapping file");
    map
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

async fn fronting_hook(
    State(p): State<Peer>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> &'static str {
    if let Some(r) = received(&headers, &body) {
        p.fronting_hooks.lock().expect("lock").push(r);
    }
    "ok"
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
    let Some((indexer_db, matcher_db, notifier_db)) = clair_databases().await else {
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
    let blob_hex = peer.put_blob(layer(&status));
    let peer_addr = peer.serve().await;

    // Clair, combo mode, its matcher's updaters off.
    let (port, intro) = (free_port(), free_port());
    let config = dir.path().join("clair.yaml");
    let map = empty_mapping(dir.path());
    let clair_yaml = ClairYaml {
        port,
        intro,
        indexer: indexer_db.connstring(),
        matcher: matcher_db.connstring(),
        notifier: notifier_db.connstring(),
        map: &map,
        target: format!("http://{peer_addr}/hook"),
        osv_mirror: None,
    }
    .render();
    std::fs::write(&config, &clair_yaml).expect("config");
    let start_clair = || spawn_clair(&bin, &config, &dir.path().join("clair.log"));
    let mut clair = start_clair();
    let http = client();
    let base = format!("http://127.0.0.1:{port}");
    clair_answers(&base).await;
    // Clair checks the key: an unsigned call is refused.
    let unsigned = http
        .get(format!("{base}/matcher/api/v1/internal/update_operation"))
        .send()
        .await
        .expect("GET");
    assert_eq!(unsigned.status(), 401, "Clair runs with auth.psk");

    // Index the image through Clair's API.
    let manifest = format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(b"tocsin real-clair image"))
    );
    let index = clair_index(&base, peer_addr, &manifest, &blob_hex).await;
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

    // tocsin fronting the same Clair, as an operator configures it: Clair's keys, Clair's key;
    // two processes on one PostgreSQL database, so that every Clair operation must still be
    // mirrored, processed and delivered once.
    let fronting_db = throwaway_database().await.expect("a database");
    let start_fronting = |name: &str| {
        let fport = free_port();
        let mut fspec = ConfigSpec::new(fport, &dir.path().join(name));
        fspec.disable_summary = true;
        fspec.webhook = Some(format!("http://{peer_addr}/fronting-hook"));
        fspec.notifier = vec![
            (
                "connstring".into(),
                format!("{:?}", fronting_db.connstring()),
            ),
            ("migrations".into(), "true".into()),
            ("matcher_addr".into(), format!("http://127.0.0.1:{port}")),
            ("indexer_addr".into(), format!("127.0.0.1:{port}")),
            ("poll_interval".into(), "2s".into()),
        ];
        let fconfig = dir.path().join(format!("{name}.yaml"));
        std::fs::write(
            &fconfig,
            fspec.yaml() + &format!("auth:\n  psk:\n    key: {PSK}\n    iss: [quay]\n"),
        )
        .expect("config");
        Server::start(
            &fconfig,
            fport,
            &dir.path().join(format!("{name}.log")),
            &[],
        )
    };
    let mut fronting = start_fronting("fronting");
    fronting.ready().await;
    let mut fronting_b = start_fronting("fronting-b");
    fronting_b.ready().await;

    // Both through the same update sequence: the Debian cut-offs, step by step.
    let steps = tocsin_testdata::snapshots(&data, "debian");
    let import = |i: usize, step: &Path| {
        clairctl_import(
            &bin,
            &config,
            step,
            &dir.path().join(format!("debian-{i}.jsonl")),
        )
    };
    for (i, step) in steps.iter().take(STEPS).enumerate() {
        let lines = import(i, step);
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
        let clair_facts = facts(&signed(), &callback).await;
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
        let fronting_facts = fronting_set_facts(&fronting.base, i + 1).await;
        eprintln!(
            "step {i} ({}): {lines} claircore vulnerabilities; Clair's notifier: {} facts, \
             tocsin: {}, tocsin fronting Clair: {}",
            step.display(),
            clair_facts.len(),
            tocsin_facts.len(),
            fronting_facts.len()
        );
        assert_eq!(
            clair_facts, fronting_facts,
            "step {i}: the facts of Clair's notifier and of tocsin fronting the same Clair differ"
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
        let clair_page = get_json(&signed(), &format!("{callback}?page_size=1")).await;
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

    // Error answers of the v4 pull API, Clair's notifier against tocsin, case by case.
    let clair_callback = peer.hooks.lock().expect("lock")[STEPS - 1].1["callback"]
        .as_str()
        .expect("a callback")
        .to_string();
    let tocsin_set = format!(
        "{}/notifier/api/v1/notification/{}",
        tocsin.base,
        notification_sets(&http, &tocsin.base).await[0]["id"]
            .as_str()
            .expect("an id")
    );
    compare_error_answers(&clair_callback, &tocsin_set).await;

    // Clair down, twice. The remaining steps (five on the shared data; three affect the image)
    // land in the matcher's database while Clair is stopped — several update operations between
    // two polls, which Clair's own notifier would diff only newest against previous. The
    // fronting tocsin's runs fail (recorded, retried with backoff); once Clair is back, every
    // operation is mirrored and processed in order, making the sets tocsin standalone makes for
    // the same steps: nothing lost.
    // The second time Clair comes back with `update_retention: 2`, and its start-up garbage
    // collection drops the operation the fronting tocsin mirrored last: tocsin reports the gap,
    // reads Clair's oldest retained operation whole and diffs it against its own copy — still
    // the same sets.
    let rest: Vec<&PathBuf> = steps.iter().skip(STEPS).collect();
    let split = rest.len().min(3);
    let phases = [(0..split, false), (split..rest.len(), true)];
    let mut imported = STEPS;
    for (range, collect) in phases {
        let down = &rest[range];
        if down.is_empty() {
            continue;
        }
        drop(clair);
        let updaters = get_json(&signed(), &format!("{}/api/v1/updaters", fronting.base)).await;
        let row = |u: &Value| {
            u["updaters"]
                .as_array()
                .and_then(|rows| rows.iter().find(|r| r["name"] == UPDATER).cloned())
                .unwrap_or_default()
        };
        let mark = row(&updaters)["latest"]["fingerprint"]
            .as_str()
            .and_then(|f| f.strip_prefix("clair:"))
            .expect("a mirrored operation")
            .to_string();
        let previous_error = updaters["clair"]["last_error_at"].clone();
        let fronting_before = signed_sets(&fronting.base).await.len();
        let standalone_before = notification_sets(&http, &tocsin.base).await.len();
        for step in down {
            import(imported, step);
            imported += 1;
            run_cli(&[
                "--config",
                &cfg,
                "feed",
                "import",
                "osv/debian",
                step.to_str().expect("path"),
            ])
            .success();
        }
        let failed = eventually(Duration::from_secs(60), "a failed run is recorded", || {
            let (base, previous) = (fronting.base.clone(), previous_error.clone());
            async move {
                let u = get_json(&signed(), &format!("{base}/api/v1/updaters")).await;
                (u["clair"]["last_error_at"] != previous)
                    .then(|| u["clair"]["last_error"].as_str().map(str::to_string))
                    .flatten()
            }
        })
        .await;
        eprintln!("Clair down: {failed}");
        assert_eq!(
            signed_sets(&fronting.base).await.len(),
            fronting_before,
            "nothing is made while Clair is down"
        );
        if collect {
            let retained = clair_yaml.replace(
                "disable_updaters: true\n",
                "disable_updaters: true\n  update_retention: 2\n",
            );
            assert_ne!(retained, clair_yaml);
            std::fs::write(&config, retained).expect("config");
        }
        clair = start_clair();
        clair_answers(&base).await;
        if collect {
            // Clair collects at start-up, in the background: wait for it, so that the fronting
            // tocsin's next run surely finds its last mirrored operation gone.
            eventually(Duration::from_secs(60), "Clair's garbage collection", || {
                let base = base.clone();
                async move {
                    let ops = get_json(
                        &signed(),
                        &format!("{base}/matcher/api/v1/internal/update_operation?kind=vulnerability"),
                    )
                    .await;
                    (ops[UPDATER].as_array().map_or(0, Vec::len) <= 2).then_some(())
                }
            })
            .await;
        }
        // The failed run's backoff is a minute; asking for a run now is what an operator does.
        let mirrored = eventually(
            Duration::from_secs(120),
            "the fronting tocsin catches up",
            || {
                let base = fronting.base.clone();
                async move {
                    let r = signed()
                        .post(format!("{base}/api/v1/clair/run"))
                        .send()
                        .await
                        .ok()?;
                    let status = r.status();
                    let report: Value = r.json().await.ok()?;
                    if status != 200 {
                        eprintln!("POST /api/v1/clair/run: {status}: {report}");
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        return None;
                    }
                    Some(report)
                }
            },
        )
        .await;
        eprintln!("after Clair came back: {mirrored}");
        // Every Clair operation is mirrored as one of tocsin's (the run above, or a scheduled
        // one that got there first), and all are processed.
        let expected = imported as u64;
        let now = eventually(
            Duration::from_secs(60),
            "all mirrored and processed",
            || {
                let base = fronting.base.clone();
                async move {
                    let u = get_json(&signed(), &format!("{base}/api/v1/updaters")).await;
                    let r = row(&u);
                    let done = r["operations"].as_u64() == Some(expected)
                        && r["processed"].is_string()
                        && r["processed"] == r["latest"]["ref"];
                    done.then_some(u)
                }
            },
        )
        .await;
        eprintln!("the fronting tocsin's updater: {}", row(&now));
        let gap = &now["clair"]["last_gap"];
        if collect {
            assert_eq!(gap["updater"], UPDATER, "the gap is reported: {now}");
            assert_eq!(gap["missing"], mark.as_str(), "{now}");
        } else {
            assert!(gap.is_null(), "no gap yet: {now}");
        }
        if !collect {
            // Clair's own notifier, for the same operations: it diffs only the newest against
            // the one before, so the earlier ones are never processed (no receipt, nothing
            // notified of their changes).
            let ops = get_json(
                &signed(),
                &format!("{base}/matcher/api/v1/internal/update_operation?kind=vulnerability"),
            )
            .await;
            let refs: Vec<String> = ops[UPDATER]
                .as_array()
                .into_iter()
                .flatten()
                .take(down.len())
                .filter_map(|o| o["ref"].as_str().map(str::to_string))
                .collect();
            assert_eq!(refs.len(), down.len(), "{ops}");
            let receipts = || async {
                notifier_db
                    .query_text("SELECT uo_id::text FROM receipt")
                    .await
                    .into_iter()
                    .filter_map(|r| r[0].clone())
                    .collect::<BTreeSet<String>>()
            };
            eventually(
                Duration::from_secs(180),
                "Clair's notifier processes the newest operation",
                || async { receipts().await.contains(&refs[0]).then_some(()) },
            )
            .await;
            let seen = receipts().await;
            let skipped: Vec<&String> = refs[1..].iter().filter(|r| !seen.contains(*r)).collect();
            eprintln!(
                "Clair's notifier after the restart: processed the newest of {} operations, \
                 never the {} before it",
                refs.len(),
                skipped.len()
            );
            assert_eq!(
                skipped.len(),
                refs.len() - 1,
                "Clair's notifier skips every operation but the newest"
            );
        }
        // Set for set, what tocsin standalone made for the same steps.
        let standalone = notification_sets(&http, &tocsin.base).await.len() - standalone_before;
        let fronting_now = signed_sets(&fronting.base).await.len();
        eprintln!(
            "{} steps while Clair was down{}: tocsin standalone made {standalone} sets, the \
             fronting tocsin {}",
            down.len(),
            if collect { ", then collected" } else { "" },
            fronting_now - fronting_before
        );
        assert_eq!(
            fronting_now - fronting_before,
            standalone,
            "the fronting tocsin makes a set where tocsin standalone does"
        );
        for k in 0..standalone {
            let ours = fronting_set_facts(&fronting.base, fronting_before + k + 1).await;
            let theirs = standalone_set_facts(&tocsin.base, standalone_before + k + 1).await;
            assert_eq!(ours, theirs, "set {k} after Clair came back");
        }
    }

    // The forward direction after the last step.
    let clair_report: Value = signed()
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
    // Two fronting processes, one database: each set delivered once.
    let sets = signed_sets(&fronting.base).await.len();
    eventually(
        Duration::from_secs(60),
        "every fronting set is delivered",
        || {
            let hooks = Arc::clone(&peer.fronting_hooks);
            async move { (hooks.lock().expect("lock").len() >= sets).then_some(()) }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let delivered = peer.fronting_hooks.lock().expect("lock").len();
    eprintln!("two fronting processes: {sets} sets, {delivered} webhooks");
    assert_eq!(delivered, sets, "a set delivered twice, or not at all");
    tocsin.terminate();
    fronting.terminate();
    fronting_b.terminate();
    // tocsin kube on Clair's own webhooks, paging and deleting at Clair.
    let hooks: Vec<Value> = peer
        .hooks
        .lock()
        .expect("lock")
        .iter()
        .map(|(_, h)| h.clone())
        .collect();
    kube::consumer_pages_clairs_notifier(dir.path(), &hooks, &manifest, &notifier_db).await;
    drop(clair);
}

/// Status, error `code` and Content-Type of one answer; the body is read leniently, as Clair
/// aborts the connection after an error body (no final chunk).
async fn answer(method: reqwest::Method, url: &str, accept: Option<&str>) -> (u16, String, String) {
    let mut req = signed().request(method, url);
    if let Some(a) = accept {
        req = req.header(reqwest::header::ACCEPT, a);
    }
    let mut r = req.send().await.expect("a request");
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = r.chunk().await {
        body.extend_from_slice(&chunk);
    }
    let code = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["code"].as_str().map(str::to_string))
        .unwrap_or_default();
    (status, code, ct)
}

/// The pull API's error answers, Clair's notifier (`clair`: a notification URL it serves) beside
/// tocsin (`tocsin`: one of its own): equal, except where Clair is known to be wrong — each such
/// case states what both answer (docs/clair-differences.md).
async fn compare_error_answers(clair: &str, tocsin: &str) {
    use reqwest::Method;
    let base = |u: &str| {
        u.rsplit_once('/')
            .map(|(b, _)| b.to_string())
            .expect("a URL")
    };
    let (cb, tb) = (base(clair), base(tocsin));
    let unknown = "8d3f2c1a-0000-4000-8000-000000000001";
    // (what, method, suffix (`{id}` = the set), Accept, Clair's and tocsin's (status, code)
    // when they differ on purpose)
    type Case = (
        &'static str,
        Method,
        &'static str,
        Option<&'static str>,
        Option<((u16, &'static str), (u16, &'static str))>,
    );
    let cases: Vec<Case> = vec![
        ("id not a UUID", Method::GET, "not-a-uuid", None, None),
        (
            "page_size not an integer",
            Method::GET,
            "{id}?page_size=x",
            None,
            None,
        ),
        ("next not a UUID", Method::GET, "{id}?next=x", None, None),
        (
            "negative page_size",
            Method::GET,
            "{id}?page_size=-1",
            None,
            Some(((500, "internal-error"), (400, "bad-request"))),
        ),
        (
            "unknown id",
            Method::GET,
            unknown,
            None,
            Some(((200, ""), (404, "not-found"))),
        ),
        (
            "DELETE, id not a UUID",
            Method::DELETE,
            "not-a-uuid",
            None,
            None,
        ),
        (
            "DELETE, unknown id",
            Method::DELETE,
            unknown,
            None,
            Some(((500, "internal-error"), (404, "not-found"))),
        ),
        ("POST", Method::POST, "{id}", None, None),
        ("PUT", Method::PUT, "{id}", None, None),
    ];
    for (what, method, suffix, accept, differs) in cases {
        let path = |b: &str, own: &str| match suffix {
            s if s.starts_with("{id}") => format!("{own}{}", &s[4..]),
            s => format!("{b}/{s}"),
        };
        let c = answer(method.clone(), &path(&cb, clair), accept).await;
        let t = answer(method.clone(), &path(&tb, tocsin), accept).await;
        eprintln!(
            "error answer, {what}: Clair {} {:?}, tocsin {} {:?}",
            c.0, c.1, t.0, t.1
        );
        match differs {
            None => {
                assert_eq!((c.0, &c.1), (t.0, &t.1), "{what}: status and code");
                if c.0 >= 400 {
                    assert!(
                        c.2.starts_with("application/json"),
                        "{what}: Clair's {}",
                        c.2
                    );
                    assert!(
                        t.2.starts_with("application/json"),
                        "{what}: tocsin's {}",
                        t.2
                    );
                }
            }
            Some((clair_says, tocsin_says)) => {
                assert_eq!(
                    (c.0, c.1.as_str()),
                    clair_says,
                    "{what}: Clair's known answer"
                );
                assert_eq!((t.0, t.1.as_str()), tocsin_says, "{what}: tocsin's answer");
            }
        }
    }
}

/// The facts of tocsin standalone's `n`th notification set (oldest first).
async fn standalone_set_facts(base: &str, n: usize) -> BTreeSet<(String, String, String, String)> {
    let http = client();
    let mut sets = notification_sets(&http, base).await;
    sets.sort_by_key(|s| s["created_at"].as_str().unwrap_or("").to_string());
    let id = sets[n - 1]["id"].as_str().expect("a set id").to_string();
    facts(&http, &format!("{base}/notifier/api/v1/notification/{id}")).await
}

/// The fronting tocsin's notification sets (its API checks the PSK).
async fn signed_sets(base: &str) -> Vec<Value> {
    notification_sets(&signed(), base).await
}

/// The facts of the fronting tocsin's `n`th notification set, once it has `n`.
async fn fronting_set_facts(base: &str, n: usize) -> BTreeSet<(String, String, String, String)> {
    let sets = eventually(
        Duration::from_secs(120),
        "the fronting tocsin makes its set",
        || async move {
            let sets = signed_sets(base).await;
            (sets.len() >= n).then_some(sets)
        },
    )
    .await;
    let mut sets = sets;
    sets.sort_by_key(|s| s["created_at"].as_str().unwrap_or("").to_string());
    let id = sets[n - 1]["id"].as_str().expect("a set id").to_string();
    facts(
        &signed(),
        &format!("{base}/notifier/api/v1/notification/{id}"),
    )
    .await
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

/// One request a notifier made to Clair, as the recording proxy saw it.
#[derive(Clone, Debug)]
struct Seen {
    at: std::time::Instant,
    path: String,
    status: u16,
}

#[derive(Clone)]
struct Proxy {
    http: reqwest::Client,
    matcher: String,
    indexer: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// Forwards a notifier's call to Clair's matcher or indexer, recording when it was answered.
async fn forward(State(p): State<Proxy>, req: axum::extract::Request) -> axum::response::Response {
    use axum::response::IntoResponse;
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let upstream = if path.starts_with("/indexer/") {
        &p.indexer
    } else {
        &p.matcher
    };
    let method = req.method().clone();
    let headers = req.headers().clone();
    let Ok(body) = axum::body::to_bytes(req.into_body(), usize::MAX).await else {
        return axum::http::StatusCode::BAD_REQUEST.into_response();
    };
    let mut out = p
        .http
        .request(method, format!("{upstream}{path}"))
        .body(body);
    for (k, v) in &headers {
        if k != axum::http::header::HOST && k != axum::http::header::CONTENT_LENGTH {
            out = out.header(k, v);
        }
    }
    let Ok(r) = out.send().await else {
        return axum::http::StatusCode::BAD_GATEWAY.into_response();
    };
    let status = r.status();
    let mut back = axum::http::HeaderMap::new();
    for (k, v) in r.headers() {
        if k != reqwest::header::TRANSFER_ENCODING && k != reqwest::header::CONTENT_LENGTH {
            back.insert(k.clone(), v.clone());
        }
    }
    let bytes = r.bytes().await.unwrap_or_default();
    p.seen.lock().expect("lock").push(Seen {
        at: std::time::Instant::now(),
        path,
        status: status.as_u16(),
    });
    (status, back, bytes).into_response()
}

/// Starts a recording proxy in front of Clair's matcher and indexer; its base URL.
async fn start_proxy(p: Proxy) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = axum::Router::new().fallback(forward).with_state(p);
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// CPU seconds (user + system) a process has used so far, and its peak resident set (KiB).
fn cpu_and_peak(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|t| t.parse::<f64>().ok()).sum())
        .unwrap_or(0.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let peak = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // The kernel's USER_HZ is 100 on every Linux this runs on.
    (ticks / 100.0, peak)
}

#[derive(Clone, Default)]
struct Hooks {
    clair: Arc<Mutex<Vec<(std::time::Instant, Value)>>>,
    tocsin: Arc<Mutex<Vec<(std::time::Instant, Value)>>>,
}

async fn bench_hook_clair(State(h): State<Hooks>, body: axum::body::Bytes) -> &'static str {
    if let Ok(v) = serde_json::from_slice(&body) {
        h.clair
            .lock()
            .expect("lock")
            .push((std::time::Instant::now(), v));
    }
    "ok"
}

async fn bench_hook_tocsin(State(h): State<Hooks>, body: axum::body::Bytes) -> &'static str {
    if let Ok(v) = serde_json::from_slice(&body) {
        h.tocsin
            .lock()
            .expect("lock")
            .push((std::time::Instant::now(), v));
    }
    "ok"
}

/// Every entry of a v4 notification, paged `page_size` at a time: (entries, seconds).
async fn page_all(url: &str, page_size: usize) -> (usize, f64) {
    let http = client();
    let started = std::time::Instant::now();
    let mut n = 0;
    let mut next: Option<String> = None;
    loop {
        let mut u = format!("{url}?page_size={page_size}");
        if let Some(t) = &next {
            u.push_str(&format!("&next={t}"));
        }
        let page = get_json(&http, &u).await;
        n += page["notifications"].as_array().map_or(0, Vec::len);
        match page["page"]["next"].as_str() {
            Some(t) => next = Some(t.to_string()),
            None => return (n, started.elapsed().as_secs_f64()),
        }
    }
}

/// The speed comparison of BENCHMARKS.md ("Clair's notifier and tocsin, side by side"): Clair
/// v4.9.0 as three processes (indexer, matcher, notifier) and tocsin fronting the same indexer
/// and matcher, both polling every minute (Clair's shortest); a fleet of
/// `TOCSIN_CLAIR_BENCH_MANIFESTS` images (default 1000) indexed by Clair, each the real Debian 10
/// image's packages plus a layer of its own; then one real feed update (the first Debian step)
/// imported with clairctl. Printed per notifier: from the poll that saw the update to its
/// webhook, from the import to the webhook, CPU seconds and peak memory of the notifier
/// process, and paging the whole notification. Figures, never assertions on time: run it with
/// `cargo test --release -p tocsin --test real_clair -- --ignored --nocapture speed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: minutes of indexing; run by hand, figures in BENCHMARKS.md"]
async fn speed_beside_clairs_notifier() {
    let manifests: usize = std::env::var("TOCSIN_CLAIR_BENCH_MANIFESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let Some(data) = shared_data() else { return };
    let Some(bin) = clair_bin() else { return };
    let Some((indexer_db, matcher_db, notifier_db)) = clair_databases().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");

    // Layers and webhooks.
    let peer = Peer::default();
    let hooks = Hooks::default();
    let report: Value = serde_json::from_slice(&read(
        &data.join("inventories/clair/indexreport-buster-jackson-databind.json"),
    ))
    .expect("an IndexReport");
    let base_layer = layer(&status_from_report(&report));
    let base_hex = hex::encode(sha2::Sha256::digest(&base_layer));
    peer.blobs
        .lock()
        .expect("lock")
        .insert(base_hex.clone(), base_layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let peer_addr = listener.local_addr().expect("addr");
    let app = axum::Router::new()
        .route("/blob/{hex}", get(blob))
        .with_state(peer.clone())
        .merge(
            axum::Router::new()
                .route("/clair-hook", post(bench_hook_clair))
                .route("/tocsin-hook", post(bench_hook_tocsin))
                .with_state(hooks.clone()),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });

    // Clair as three processes, so that its notifier's CPU and memory are its own.
    let (iport, mport, nport) = (free_port(), free_port(), free_port());
    let map = empty_mapping(dir.path());
    let clair_http = client();
    let proxy_clair = Proxy {
        http: clair_http.clone(),
        matcher: format!("http://127.0.0.1:{mport}"),
        indexer: format!("http://127.0.0.1:{iport}"),
        seen: Default::default(),
    };
    let proxy_tocsin = Proxy {
        seen: Default::default(),
        ..proxy_clair.clone()
    };
    let (via_clair, via_tocsin) = (
        start_proxy(proxy_clair.clone()).await,
        start_proxy(proxy_tocsin.clone()).await,
    );
    let common = format!(
        "log_level: warn\nindexer:\n  connstring: {:?}\n  migrations: true\n  airgap: true\n\
         \x20 scanner:\n    repo:\n      rhel-repository-scanner:\n        \
         repo2cpe_mapping_file: {map:?}\n    package:\n      rhel_containerscanner:\n        \
         name2repos_mapping_file: {map:?}\n\
         matcher:\n  connstring: {:?}\n  migrations: true\n  disable_updaters: true\n  \
         indexer_addr: http://127.0.0.1:{iport}/\n\
         notifier:\n  connstring: {:?}\n  migrations: true\n  poll_interval: 1m\n  \
         delivery_interval: 1m\n  disable_summary: true\n  \
         indexer_addr: {via_clair}/\n  matcher_addr: {via_clair}/\n  webhook:\n    \
         target: http://{peer_addr}/clair-hook\n    \
         callback: http://127.0.0.1:{nport}/notifier/api/v1/notification/\n",
        indexer_db.connstring(),
        matcher_db.connstring(),
        notifier_db.connstring()
    );
    let start = |mode: &str, port: u16| {
        let config = dir.path().join(format!("clair-{mode}.yaml"));
        std::fs::write(
            &config,
            format!(
                "http_listen_addr: 127.0.0.1:{port}\nintrospection_addr: 127.0.0.1:{}\n{common}",
                free_port()
            ),
        )
        .expect("config");
        let log = std::fs::File::create(dir.path().join(format!("clair-{mode}.log"))).expect("log");
        Killed(
            Command::new(bin.join("clair"))
                .args(["-conf", config.to_str().expect("path"), "-mode", mode])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("starting clair"),
        )
    };
    let _indexer = start("indexer", iport);
    let _matcher = start("matcher", mport);
    for (what, port) in [("indexer", iport), ("matcher", mport)] {
        eventually(Duration::from_secs(60), what, || {
            let http = clair_http.clone();
            async move {
                let r = http
                    .get(format!("http://127.0.0.1:{port}/robots.txt"))
                    .send()
                    .await
                    .ok()?;
                r.status().is_success().then_some(())
            }
        })
        .await;
    }

    // The fleet, indexed through Clair's API: the base layer once, a small layer per image.
    let started = std::time::Instant::now();
    for i in 0..manifests {
        let mut tar = tar::Builder::new(Vec::new());
        let text = format!("image {i}\n");
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(text.len() as u64);
        h.set_mtime(1_600_000_000);
        tar.append_data(&mut h, format!("srv/image-{i}.txt"), text.as_bytes())
            .expect("tar entry");
        let own = tar.into_inner().expect("tar");
        let own_hex = hex::encode(sha2::Sha256::digest(&own));
        peer.blobs
            .lock()
            .expect("lock")
            .insert(own_hex.clone(), own);
        let manifest = format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(format!("bench image {i}").as_bytes()))
        );
        let layer_of = |hex: &str| {
            json!({"hash": format!("sha256:{hex}"),
                "uri": format!("http://{peer_addr}/blob/{hex}"), "headers": {}})
        };
        let r = clair_http
            .post(format!(
                "http://127.0.0.1:{iport}/indexer/api/v1/index_report"
            ))
            .json(&json!({"hash": manifest, "layers": [layer_of(&base_hex), layer_of(&own_hex)]}))
            .send()
            .await
            .expect("index_report");
        assert_eq!(r.status(), 201, "indexing image {i}");
    }
    let indexing = started.elapsed().as_secs_f64();
    eprintln!("Clair indexed {manifests} images in {indexing:.1} s");

    // The two notifiers, started together.
    let notifier = start("notifier", nport);
    let tport = free_port();
    let mut spec = ConfigSpec::new(tport, &dir.path().join("tocsin"));
    spec.disable_summary = true;
    spec.webhook = Some(format!("http://{peer_addr}/tocsin-hook"));
    spec.notifier = vec![
        ("matcher_addr".into(), format!("{via_tocsin}/")),
        ("indexer_addr".into(), format!("{via_tocsin}/")),
        ("poll_interval".into(), "1m".into()),
    ];
    // tocsin's defaults, not the test harness's quick intervals: the CPU figure is a service's.
    let yaml = spec
        .yaml()
        .replace("  process_interval: 200ms\n", "")
        .replace(
            "  delivery:\n    initial_backoff: 100ms\n    max_backoff: 1s\n",
            "",
        );
    let tconfig = dir.path().join("t.yaml");
    std::fs::write(&tconfig, yaml).expect("config");
    let mut tocsin = Server::start(&tconfig, tport, &dir.path().join("tocsin.log"), &[]);
    tocsin.ready().await;
    let tocsin_pid = tocsin.pid().expect("tocsin's pid");
    let clair_pid = notifier.0.id();
    eventually(Duration::from_secs(60), "Clair's notifier", || {
        let http = clair_http.clone();
        async move {
            let r = http
                .get(format!("http://127.0.0.1:{nport}/robots.txt"))
                .send()
                .await
                .ok()?;
            r.status().is_success().then_some(())
        }
    })
    .await;
    // Let both settle (first polls, empty matcher), then measure from here.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before = (cpu_and_peak(clair_pid), cpu_and_peak(tocsin_pid));

    // One real feed update: the first Debian step.
    let config = dir.path().join("clair-matcher.yaml");
    let step = &tocsin_testdata::snapshots(&data, "debian")[0];
    let lines = clairctl_import(&bin, &config, step, &dir.path().join("step.jsonl"));
    let imported = std::time::Instant::now();

    let hook = |which: Arc<Mutex<Vec<(std::time::Instant, Value)>>>| async move {
        eventually(Duration::from_secs(300), "a webhook", || {
            let which = Arc::clone(&which);
            async move { which.lock().expect("lock").first().cloned() }
        })
        .await
    };
    let (clair_at, clair_body) = hook(Arc::clone(&hooks.clair)).await;
    let (tocsin_at, tocsin_body) = hook(Arc::clone(&hooks.tocsin)).await;
    let saw = |seen: &Arc<Mutex<Vec<Seen>>>| {
        seen.lock()
            .expect("lock")
            .iter()
            .find(|s| s.at >= imported && s.status == 200 && s.path.contains("latest=true"))
            .map(|s| s.at)
            .expect("the poll that saw the update")
    };
    let (clair_poll, tocsin_poll) = (saw(&proxy_clair.seen), saw(&proxy_tocsin.seen));
    let callback = |b: &Value| b["callback"].as_str().expect("a callback").to_string();
    let (clair_entries, clair_paging) = page_all(&callback(&clair_body), 1000).await;
    let (tocsin_entries, tocsin_paging) = page_all(&callback(&tocsin_body), 1000).await;
    let after = (cpu_and_peak(clair_pid), cpu_and_peak(tocsin_pid));
    let secs = |a: std::time::Instant, b: std::time::Instant| a.duration_since(b).as_secs_f64();
    let calls = |seen: &Arc<Mutex<Vec<Seen>>>, what: &str| {
        seen.lock()
            .expect("lock")
            .iter()
            .filter(|s| s.at >= imported && s.path.contains(what))
            .count()
    };
    eprintln!(
        "fleet: {manifests} images indexed by Clair v4.9.0; update: {} ({lines} claircore \
         vulnerabilities)",
        step.display()
    );
    for (name, poll, at, entries, paging, cpu0, cpu1, seen) in [
        (
            "Clair's notifier",
            clair_poll,
            clair_at,
            clair_entries,
            clair_paging,
            before.0,
            after.0,
            &proxy_clair.seen,
        ),
        (
            "tocsin fronting",
            tocsin_poll,
            tocsin_at,
            tocsin_entries,
            tocsin_paging,
            before.1,
            after.1,
            &proxy_tocsin.seen,
        ),
    ] {
        eprintln!(
            "{name}: poll → webhook {:.3} s; import → webhook {:.3} s; {entries} entries paged \
             (1000 a page) in {paging:.3} s; CPU {:.2} s; peak RSS {} MiB; calls: {} \
             update_diff, {} affected_manifest",
            secs(at, poll),
            secs(at, imported),
            cpu1.0 - cpu0.0,
            cpu1.1 / 1024,
            calls(seen, "update_diff"),
            calls(seen, "affected_manifest"),
        );
    }
    tocsin.terminate();
}
