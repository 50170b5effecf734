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
    assert_eq!(r.status().as_u16(), 404, "the refused manifest must not exist");
    let r = http
        .get(format!("{base}/api/v1/manifests/{tansu_digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "an earlier manifest is still served");
    let updaters = get_json(&http, &format!("{base}/api/v1/updaters")).await;
    assert_eq!(updaters_ops(&updaters, "osv/crates.io"), 0, "{updaters}");
    let r = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert!(r.status().is_success());

    // Space comes back: the same requests go through, without a restart.
    std::fs::remove_file(&filler).unwrap();
    let (status, v) = put(&http, &sbom_url, sbom).await;
    assert!((200..300).contains(&status), "after freeing space: {status} {v}");
    let (status, v) = put(&http, &snap_url, read(&snapshot)).await;
    assert!((200..300).contains(&status), "after freeing space: {status} {v}");
    wait_processed(&http, &base, "osv/crates.io").await;
    let sets = common::notification_sets(&http, &base).await;
    assert_eq!(sets.len(), 1, "the import notifies tansu's advisories once: {sets:?}");
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
    assert_eq!(status, 503, "a write while another process holds the lock: {v}");
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
    assert_eq!(r.status().as_u16(), 404, "nothing of the refused write exists");

    db.execute_batch("ROLLBACK").unwrap();
    drop(db);
    let (status, v) = put(&http, &url, tansu).await;
    assert!((200..300).contains(&status), "after the lock is released: {status} {v}");
}
