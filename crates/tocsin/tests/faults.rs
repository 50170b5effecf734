//! Storage faults under a running `tocsin serve` on the embedded store:
//!
//! - **A full filesystem.** The data directory is a small tmpfs mounted by the test (root only:
//!   skipped with a message elsewhere, required under `CI=true`, where the suite runs as root).
//!   Once a filler file takes the rest of the space, a manifest PUT and a feed snapshot import
//!   answer 507 with a message saying the disk is full and that nothing was written; reads keep
//!   being served; nothing half-written shows (no manifest, no update operation); and once the
//!   filler is removed the very same requests succeed and the import is processed — the process
//!   recovers by itself, without a restart.
//! - **A second process holding the database.** The test (a process of its own, as far as
//!   SQLite's file locks go) holds the write lock with `BEGIN IMMEDIATE`: writes wait for the busy
//!   timeout, then answer 503 with `Retry-After` and say the database is locked by another process;
//!   reads keep being served; once the lock is released the same write succeeds.
mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{client, get_json, put, read, shared_data, ConfigSpec, Server};
use serde_json::Value;

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A tmpfs of `size` mounted on a directory of its own, unmounted when dropped.
struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    fn mount(size: &str) -> Result<SmallFs, String> {
        if !is_root() {
            return Err("mounting a tmpfs needs root".into());
        }
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tocsin-test"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("running mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(SmallFs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file that takes every free byte (the write stops at ENOSPC).
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write as _;
        let path = self.path().join("filler");
        let mut f = std::fs::File::create(&path).expect("creating the filler file");
        let chunk = vec![0u8; 64 * 1024];
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
                Err(e) => panic!("filling the filesystem: {e}"),
            }
        }
        // Single bytes: the last partial block too.
        while f.write(&[0u8]).is_ok_and(|n| n == 1) {}
        path
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

fn updaters_ops(v: &Value, name: &str) -> u64 {
    v["updaters"]
        .as_array()
        .and_then(|a| a.iter().find(|u| u["name"] == name))
        .and_then(|u| u["operations"].as_u64())
        .unwrap_or(0)
}

/// Waits until `name`'s newest operation is the one processed.
async fn wait_processed(http: &reqwest::Client, base: &str, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = get_json(http, &format!("{base}/api/v1/updaters")).await;
        let u = v["updaters"]
            .as_array()
            .and_then(|a| a.iter().find(|u| u["name"] == name))
            .cloned()
            .unwrap_or_default();
        if !u["processed"].is_null() && u["processed"] == u["latest"]["ref"] {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: not processed after 60 s: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_writes_cleanly_and_recovers_by_itself() {
    let Some(data) = shared_data() else { return };
    let fs = match SmallFs::mount("24m") {
        Ok(fs) => fs,
        Err(why) if in_ci() => panic!("the full-disk test needs a tmpfs: {why}"),
        Err(why) => {
            eprintln!("skipping: {why}");
            return;
        }
    };
    let work = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let data_dir = fs.path().join("data");
    let cfg = ConfigSpec::new(port, &data_dir).write(&work.path().join("tocsin.yaml"));
    let mut server = Server::start(&cfg, port, &work.path().join("tocsin.log"), &[]);
    server.ready().await;
    let http = client();
    let base = server.base.clone();

    // Something stored before the disk fills: reads of it must keep working.
    let tansu = read(&data.join("inventories/cargo/tansu.Cargo.lock"));
    let tansu_digest = format!("sha256:{}", tocsin_model::sha256_hex(&tansu));
    let (status, v) = put(
        &http,
        &format!("{base}/api/v1/manifests/{tansu_digest}"),
        tansu.clone(),
    )
    .await;
    assert!((200..300).contains(&status), "{status} {v}");

    let filler = fs.fill();

    // A new manifest (a large real SBOM, more than any WAL slack) and a real feed snapshot.
    let sbom = read(&data.join("inventories/cyclonedx/SBOM_juice-shop_v11.1.2_bom.json"));
    let sbom_url = format!("{base}/api/v1/manifests/sha256:{}", "ab".repeat(32));
    let (status, v) = put(&http, &sbom_url, sbom.clone()).await;
    assert_eq!(status, 507, "manifest PUT on a full disk: {v}");
    let msg = v["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("full") && msg.contains("nothing was written"),
        "{msg}"
    );
    assert_eq!(v["code"], "insufficient-storage");

    let snapshot = tocsin_testdata::snapshots(&data, "crates.io")[0].clone();
    let snap_url = format!("{base}/api/v1/updaters/osv/crates.io/snapshot");
    let (status, v) = put(&http, &snap_url, read(&snapshot)).await;
    assert_eq!(status, 507, "snapshot import on a full disk: {v}");

    // Reads are served, and nothing of the failed writes shows.
    let r = http.get(&sbom_url).send().await.unwrap();
    assert_eq!(
        r.status().as_u16(),
        404,
        "the refused manifest must not exist"
    );
    let r = http
        .get(format!("{base}/api/v1/manifests/{tansu_digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        200,
        "an earlier manifest is still served"
    );
    let updaters = get_json(&http, &format!("{base}/api/v1/updaters")).await;
    assert_eq!(updaters_ops(&updaters, "osv/crates.io"), 0, "{updaters}");
    let r = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert!(r.status().is_success());

    // Space comes back: the same requests go through, without a restart.
    std::fs::remove_file(&filler).unwrap();
    let (status, v) = put(&http, &sbom_url, sbom).await;
    assert!(
        (200..300).contains(&status),
        "after freeing space: {status} {v}"
    );
    let (status, v) = put(&http, &snap_url, read(&snapshot)).await;
    assert!(
        (200..300).contains(&status),
        "after freeing space: {status} {v}"
    );
    wait_processed(&http, &base, "osv/crates.io").await;
    let sets = common::notification_sets(&http, &base).await;
    assert_eq!(
        sets.len(),
        1,
        "the import notifies tansu's advisories once: {sets:?}"
    );
    assert_eq!(server.starts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_holding_the_database_gets_a_clear_busy_answer() {
    let Some(data) = shared_data() else { return };
    let work = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let data_dir = work.path().join("data");
    let cfg = ConfigSpec::new(port, &data_dir).write(&work.path().join("tocsin.yaml"));
    let mut server = Server::start(&cfg, port, &work.path().join("tocsin.log"), &[]);
    server.ready().await;
    let http = client();
    let base = server.base.clone();

    let tansu = read(&data.join("inventories/cargo/tansu.Cargo.lock"));
    let url = format!("{base}/api/v1/manifests/sha256:{}", "cd".repeat(32));

    // The write lock, held by this process (SQLite's locks are per process).
    let db = rusqlite::Connection::open(data_dir.join("tocsin.db")).unwrap();
    db.execute_batch("BEGIN IMMEDIATE").unwrap();

    let started = Instant::now();
    let r = http.put(&url).body(tansu.clone()).send().await.unwrap();
    let status = r.status().as_u16();
    let retry_after = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        status, 503,
        "a write while another process holds the lock: {v}"
    );
    assert_eq!(v["code"], "unavailable");
    let msg = v["message"].as_str().unwrap_or_default();
    assert!(msg.contains("locked by another process"), "{msg}");
    assert!(retry_after.is_some(), "503 carries Retry-After");
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "the store waits for the lock before giving up"
    );

    // Reads go on beside the held lock (WAL).
    let r = http
        .get(format!("{base}/api/v1/manifests"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(
        r.status().as_u16(),
        404,
        "nothing of the refused write exists"
    );

    db.execute_batch("ROLLBACK").unwrap();
    drop(db);
    let (status, v) = put(&http, &url, tansu).await;
    assert!(
        (200..300).contains(&status),
        "after the lock is released: {status} {v}"
    );
}

/// A `tocsin serve` with short client bounds, for the slow-client tests.
async fn bounded_server(work: &Path) -> Server {
    let port = common::free_port();
    let mut yaml = ConfigSpec::new(port, &work.join("data")).yaml();
    yaml.push_str("  header_read_timeout: 1s\n  upload_timeout: 2s\n  max_concurrent_uploads: 1\n");
    let cfg = work.join("tocsin.yaml");
    std::fs::write(&cfg, yaml).unwrap();
    let mut server = Server::start(&cfg, port, &work.join("tocsin.log"), &[]);
    server.ready().await;
    server
}

fn addr(server: &Server) -> String {
    server.base.trim_start_matches("http://").to_string()
}

/// Reads until the server closes the connection (or `limit` passes); returns what it sent.
async fn read_until_closed(s: &mut tokio::net::TcpStream, limit: Duration) -> Option<String> {
    use tokio::io::AsyncReadExt as _;
    let mut buf = Vec::new();
    let r = tokio::time::timeout(limit, s.read_to_end(&mut buf)).await;
    match r {
        Ok(_) => Some(String::from_utf8_lossy(&buf).into_owned()),
        Err(_) => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_cannot_take_the_server() {
    use tokio::io::AsyncWriteExt as _;
    let work = tempfile::tempdir().unwrap();
    let server = bounded_server(work.path()).await;
    let http = client();
    let base = server.base.clone();

    // Headers trickled and never finished: the connection is closed after the header timeout.
    let mut slow_headers = tokio::net::TcpStream::connect(addr(&server)).await.unwrap();
    slow_headers
        .write_all(b"GET /api/v1/manifests HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let closed = read_until_closed(&mut slow_headers, Duration::from_secs(10)).await;
    assert!(
        closed.is_some(),
        "a connection whose headers never end is closed (header_read_timeout 1s)"
    );
    assert!(started.elapsed() < Duration::from_secs(8));

    // An idle connection that never sends a request is closed too.
    let mut idle = tokio::net::TcpStream::connect(addr(&server)).await.unwrap();
    assert!(
        read_until_closed(&mut idle, Duration::from_secs(10))
            .await
            .is_some(),
        "an idle connection is closed"
    );

    // A body trickled slower than the upload timeout: 408, and its upload slot is freed.
    let mut trickle = tokio::net::TcpStream::connect(addr(&server)).await.unwrap();
    let digest = "ef".repeat(32);
    trickle
        .write_all(
            format!(
                "PUT /api/v1/manifests/sha256:{digest} HTTP/1.1\r\nHost: x\r\n\
                 Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{{"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    // While it holds the only upload slot, another upload is refused at once with 503 …
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = http
        .put(format!(
            "{base}/api/v1/manifests/sha256:{}",
            "12".repeat(32)
        ))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503, "the upload slots are taken");
    assert!(r.headers().get("retry-after").is_some());
    // … and reads are served as usual.
    let r = http
        .get(format!("{base}/api/v1/manifests"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    for _ in 0..12 {
        if trickle.write_all(b" ").await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let answer = read_until_closed(&mut trickle, Duration::from_secs(10))
        .await
        .expect("the server answers and closes the trickled upload");
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "a body slower than upload_timeout gets 408: {answer}"
    );
    assert!(answer.contains("tocsin.upload_timeout"), "{answer}");
    let r = http
        .get(format!("{base}/api/v1/manifests/sha256:{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404, "nothing of it is stored");

    // The slot is free again: a normal upload goes through.
    let (status, v) = put(
        &http,
        &format!("{base}/api/v1/manifests/sha256:{}", "34".repeat(32)),
        read(&work_file(work.path())),
    )
    .await;
    assert!((200..300).contains(&status), "{status} {v}");
}

/// A small real inventory, or a minimal IndexReport when the shared data is absent.
fn work_file(dir: &Path) -> std::path::PathBuf {
    if let Some(data) = shared_data() {
        return data.join("inventories/cargo/tansu.Cargo.lock");
    }
    let p = dir.join("min.json");
    std::fs::write(
        &p,
        r#"{"manifest_hash":"","packages":{},"environments":{}}"#,
    )
    .unwrap();
    p
}
