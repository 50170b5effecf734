//! `tocsin demo`: the whole flow on real data, in one process, with nothing to set up.
//!
//! A temporary data directory, a local webhook receiver that behaves like a Clair client (on each
//! callback it pages through the notification and deletes it), and a tocsin service on loopback.
//! Real inventories are indexed over the HTTP API, two consecutive real snapshots of one feed are
//! imported over it, and what was notified and delivered is printed.
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::Value;

use crate::cli::DemoArgs;

#[derive(Debug, Clone)]
struct Received {
    notification_id: String,
    entries: Vec<Value>,
    pages: usize,
    deleted: bool,
}

#[derive(Clone)]
struct Receiver {
    http: reqwest::Client,
    got: Arc<Mutex<Vec<Received>>>,
}

/// The consumer side of Clair's protocol: read every page from the callback, then DELETE.
async fn consume(receiver: &Receiver, body: &Value) -> Result<Received> {
    let callback = body["callback"].as_str().context("callback missing")?;
    let id = body["notification_id"]
        .as_str()
        .context("notification_id missing")?;
    let (mut entries, mut pages, mut next) = (Vec::new(), 0, None::<String>);
    loop {
        let mut req = receiver.http.get(callback).query(&[("page_size", "250")]);
        if let Some(n) = &next {
            req = req.query(&[("next", n)]);
        }
        let page: Value = req.send().await?.error_for_status()?.json().await?;
        pages += 1;
        entries.extend(
            page["notifications"]
                .as_array()
                .into_iter()
                .flatten()
                .cloned(),
        );
        match page["page"]["next"].as_str() {
            Some(n) => next = Some(n.to_string()),
            None => break,
        }
    }
    let deleted = receiver
        .http
        .delete(callback)
        .send()
        .await?
        .status()
        .is_success();
    Ok(Received {
        notification_id: id.to_string(),
        entries,
        pages,
        deleted,
    })
}

async fn on_webhook(State(r): State<Receiver>, Json(body): Json<Value>) -> &'static str {
    // Answer at once and do the work after, as real consumers do.
    tokio::spawn(async move {
        match consume(&r, &body).await {
            Ok(got) => r.got.lock().map(|mut g| g.push(got)).unwrap_or(()),
            Err(e) => eprintln!("demo receiver: {e:#}"),
        }
    });
    "ok"
}

struct Inventory {
    path: PathBuf,
    format: &'static str,
    label: String,
    distribution: Option<&'static str>,
}

fn inventories(data: &Path) -> Vec<Inventory> {
    let inv = data.join("inventories");
    let mut out = Vec::new();
    for name in [
        "docker.io-library-debian-10.index.json",
        "indexreport-buster-jackson-databind.json",
        "clair-rhel8-v3.5.5-4-indexreport.json",
    ] {
        out.push(Inventory {
            path: inv.join("clair").join(name),
            format: "index-report",
            label: format!("source=clair/{name}"),
            distribution: None,
        });
    }
    for name in [
        "SBOM_proton-bridge_proton-bridge-v1.6.3.bom.json",
        "SBOM_proton-bridge_proton-bridge-v1.8.0.bom.json",
        "SBOM_juice-shop_v11.1.2_bom.json",
    ] {
        out.push(Inventory {
            path: inv.join("cyclonedx").join(name),
            format: "cyclonedx",
            label: format!("source=cyclonedx/{name}"),
            distribution: None,
        });
    }
    out.push(Inventory {
        path: inv.join("dpkg").join("postgresql.status"),
        format: "dpkg-status",
        label: "source=dpkg/postgresql.status".into(),
        distribution: Some("debian:10"),
    });
    out.push(Inventory {
        path: inv.join("cargo").join("tansu.Cargo.lock"),
        format: "cargo-lock",
        label: "source=cargo/tansu.Cargo.lock".into(),
        distribution: None,
    });
    out
}

/// The demo's configuration, written as a user would write it and loaded through the same path.
fn demo_config(dir: &Path, target: &str, callback: &str) -> Result<crate::config::Config> {
    let yaml = format!(
        "http_listen_addr: 127.0.0.1:0\n\
         notifier:\n  disable_summary: true\n  webhook:\n    target: {target}\n    callback: {callback}\n\
         tocsin:\n  data_dir: {dir}\n  process_interval: 1s\n",
        dir = dir.display()
    );
    let (cfg, _warnings) =
        crate::config::Config::from_yaml(&yaml, "demo configuration", &|_| None)?;
    Ok(cfg)
}

/// Runs the demo.
pub async fn run(args: DemoArgs) -> Result<()> {
    let data = args.data.clone();
    if !data.join("inventories").is_dir() || !data.join("updates").is_dir() {
        bail!(
            "{} does not hold inventories/ and updates/: pass --data to the shared data folder",
            data.display()
        );
    }
    let mut feeds = Vec::new();
    for feed in args
        .feeds
        .split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
    {
        let updates = data.join("updates").join(feed);
        let mut snapshots: Vec<PathBuf> = std::fs::read_dir(&updates)
            .with_context(|| format!("reading {}", updates.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.to_string_lossy().ends_with(".tar.gz"))
            .collect();
        snapshots.sort();
        if snapshots.len() < 2 {
            bail!("{} holds fewer than two snapshots", updates.display());
        }
        snapshots.truncate(2);
        feeds.push((format!("osv/{feed}"), snapshots));
    }

    let dir = tempfile::Builder::new().prefix("tocsin-demo-").tempdir()?;
    println!(
        "tocsin demo — temporary data directory {}",
        dir.path().display()
    );

    // The consumer.
    let receiver = Receiver {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?,
        got: Arc::default(),
    };
    let recv_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let recv_addr = recv_listener.local_addr()?;
    let app = Router::new()
        .route("/webhook", post(on_webhook))
        .with_state(receiver.clone());
    let recv_task = tokio::spawn(async move { axum::serve(recv_listener, app).await });

    // The service.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let cfg = demo_config(
        dir.path(),
        &format!("http://{recv_addr}/webhook"),
        &format!("http://{addr}/notifier/api/v1/notification/"),
    )?;
    let service = crate::serve::start(&cfg, listener, None, None).await?;
    let base = format!("http://{addr}");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()?;

    println!("\n1. Indexing real inventories over PUT /api/v1/manifests/{{digest}}");
    let mut names = std::collections::HashMap::new();
    for inv in inventories(&data) {
        let bytes =
            std::fs::read(&inv.path).with_context(|| format!("reading {}", inv.path.display()))?;
        let digest = if inv.format == "index-report" {
            let v: Value = serde_json::from_slice(&bytes)?;
            v["manifest_hash"].as_str().unwrap_or_default().to_string()
        } else {
            tocsin_model::Digest::sha256_of(&bytes).to_string()
        };
        let mut query = vec![
            ("format", inv.format.to_string()),
            ("label", inv.label.clone()),
        ];
        if let Some(d) = inv.distribution {
            query.push(("distribution", d.to_string()));
        }
        let resp = http
            .put(format!("{base}/api/v1/manifests/{digest}"))
            .query(&query)
            .body(bytes)
            .send()
            .await?;
        let status = resp.status();
        let body: Value = resp.json().await?;
        if !status.is_success() {
            bail!("indexing {} failed: {body}", inv.path.display());
        }
        let name = inv
            .path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        println!(
            "   {:<12} {:>4} packages  {}…  {name}",
            inv.format,
            body["packages"],
            &digest[..19]
        );
        names.insert(digest, name);
    }

    println!("\n2. Importing two consecutive real snapshots of each feed over PUT /api/v1/updaters/{{name}}/snapshot");
    let mut sets = Vec::new();
    for (updater, snapshots) in &feeds {
        for snap in snapshots {
            let bytes = std::fs::read(snap)?;
            let resp = http
                .put(format!("{base}/api/v1/updaters/{updater}/snapshot"))
                .body(bytes)
                .send()
                .await?;
            let status = resp.status();
            let body: Value = resp.json().await?;
            if !status.is_success() {
                bail!("importing {} failed: {body}", snap.display());
            }
            println!(
                "   {updater} {}: {} vulnerabilities, update operation {}",
                snap.file_name().unwrap_or_default().to_string_lossy(),
                body["vulnerabilities"],
                body["operation"]["ref"].as_str().unwrap_or("?")
            );
            for p in body["processed"].as_array().into_iter().flatten() {
                match p["notification_id"].as_str() {
                    Some(id) => {
                        println!(
                            "      {} vulnerabilities changed → notification {id}, {} entries",
                            p["changes"], p["entries"]
                        );
                        sets.push(id.to_string());
                    }
                    None => println!(
                        "      {} vulnerabilities changed → no manifest affected, nothing to notify",
                        p["changes"]
                    ),
                }
            }
        }
    }

    println!("\n3. Delivery: webhook → the consumer pages through the callback URL, then DELETEs");
    println!("   (disable_summary is on: one entry per manifest and vulnerability)");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let n = receiver.got.lock().map(|g| g.len()).unwrap_or(0);
        if n >= sets.len() || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = receiver.got.lock().map(|g| g.clone()).unwrap_or_default();
    for r in &got {
        println!(
            "   notification {}: read {} entries in {} page(s), deleted: {}",
            r.notification_id,
            r.entries.len(),
            r.pages,
            r.deleted
        );
        for n in r.entries.iter().take(6) {
            let manifest = n["manifest"].as_str().unwrap_or("");
            let v = &n["vulnerability"];
            println!(
                "     {:<7} {:<16} {:<8} {:<14} fixed in {:<22} {}",
                n["reason"].as_str().unwrap_or(""),
                v["name"].as_str().unwrap_or(""),
                v["normalized_severity"].as_str().unwrap_or(""),
                v["package"]["name"].as_str().unwrap_or(""),
                v["fixed_in_version"].as_str().unwrap_or(""),
                names.get(manifest).map_or(manifest, String::as_str),
            );
        }
        if r.entries.len() > 6 {
            println!("     … and {} more", r.entries.len() - 6);
        }
    }
    let listing: Value = http
        .get(format!("{base}/api/v1/notifications"))
        .send()
        .await?
        .json()
        .await?;
    println!("\n4. Notification sets afterwards (GET /api/v1/notifications)");
    for s in listing["notifications"].as_array().into_iter().flatten() {
        println!(
            "   {}  {:<14} {:>5} entries  {}",
            s["id"].as_str().unwrap_or(""),
            s["updater"].as_str().unwrap_or(""),
            s["entries"],
            s["status"].as_str().unwrap_or("")
        );
    }
    service.stop().await?;
    recv_task.abort();
    if got.len() < sets.len() {
        bail!(
            "only {} of {} sets were delivered within a minute",
            got.len(),
            sets.len()
        );
    }
    if args.keep {
        let kept = dir.keep();
        println!("\nkept {}", kept.display());
    }
    println!(
        "\ndone: {} notification sets created and delivered.",
        sets.len()
    );
    Ok(())
}
