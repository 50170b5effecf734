//! `tocsin-bench fleet`: the fleet-scale run. Every workload drives a real `tocsin serve` process
//! (or the CLI) the way a user would, on a fleet from [`crate::fleet`], and is timed on its own;
//! the figures are printed as they come and written as JSON at the end.
//!
//! Besides figures, a run checks what it measured and fails when something is wrong: every
//! manifest indexed, every page entry seen once, every webhook delivered exactly once, and the
//! PostgreSQL baseline's affected manifests equal to tocsin's for every advisory. That is what
//! makes the CI smoke run (N = 10,000) a test of the benchmarks rather than a formality; it
//! asserts nothing about time.
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};
use tocsin_index::ManifestIndex;
use tocsin_model::notification::{Notification, Reason, VulnSummary};
use tocsin_model::vuln::{Addressed, VulnId, Vulnerability};
use tocsin_store::{NewNotificationSet, Store};
use tocsin_versions::CompiledRule;
use uuid::Uuid;

use crate::baseline::Baseline;
use crate::fleet::Catalog;
use crate::receiver::Receiver;
use crate::server::{tocsin_binary, Server};
use crate::stats::{round, Samples};

/// The feeds of the first import (folders of `osv/`), in import order.
pub const FEEDS: &[&str] = &["debian", "almalinux9", "crates.io", "go", "pypi"];

/// The update sequences replayed (folders of `updates/`).
pub const SEQUENCES: &[&str] = &["crates.io", "almalinux9", "debian"];

/// Options of a run.
#[derive(Clone, Debug, clap::Args)]
pub struct FleetArgs {
    /// Manifests in the fleet (`--http-share` of them indexed over HTTP, the rest through the
    /// CLI).
    #[arg(long, default_value_t = 10_000)]
    pub manifests: u64,
    /// The share of the fleet indexed over HTTP, from 0 to 1. At 1,000,000 manifests a smaller
    /// share reaches the later workloads sooner; both paths are still measured.
    #[arg(long, default_value_t = 0.5, value_parser = parse_share)]
    pub http_share: f64,
    /// Seed of the fleet.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The shared data folder (inventories/, osv/, updates/).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Where the servers keep their data (a temporary directory inside it).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
    /// Vulnerability-report requests.
    #[arg(long, default_value_t = 5_000)]
    pub reports: usize,
    /// Entries of the set paged through.
    #[arg(long, default_value_t = 100_000)]
    pub page_entries: usize,
    /// Page size for paging.
    #[arg(long, default_value_t = 500)]
    pub page_size: usize,
    /// Notification sets delivered by webhook (and POSTs of the plain load loop).
    #[arg(long, default_value_t = 20_000)]
    pub webhook_sets: usize,
    /// Rounds of the webhook workload (the median ratio is the figure).
    #[arg(long, default_value_t = 3)]
    pub webhook_rounds: usize,
    /// Delivery concurrency: tocsin's `tocsin.delivery.workers` and the load loop's.
    #[arg(long, default_value_t = 8)]
    pub webhook_concurrency: usize,
    /// PostgreSQL server for the baseline (libpq key=value).
    #[arg(long, default_value = "host=127.0.0.1 user=postgres")]
    pub pg: String,
    /// Skip the PostgreSQL baseline.
    #[arg(long)]
    pub skip_baseline: bool,
    /// Run the baseline on every `n`-th advisory only (1 = all); tocsin is timed on the same ones.
    #[arg(long, default_value_t = 1)]
    pub baseline_every: usize,
    /// Stop after this workload (index, first-import, updates, reports, paging, restart,
    /// baseline), for profiling one part.
    #[arg(long)]
    pub until: Option<String>,
    /// Run only the webhook workload, which needs no fleet, for profiling it.
    #[arg(long)]
    pub webhook_only: bool,
    /// Where the JSON figures go (default: bench-fleet-<N>.json).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

fn parse_share(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|e| format!("{s:?} is not a number: {e}"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is not between 0 and 1"))
    }
}

fn data_dir(args: &FleetArgs) -> Result<PathBuf> {
    let dir = match &args.data {
        Some(d) => d.clone(),
        None => match std::env::var_os(tocsin_testdata::ENV) {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            _ => PathBuf::from("../shared/data"),
        },
    };
    ensure!(
        dir.join("osv").is_dir() && dir.join("inventories").is_dir(),
        "shared data not found at {} (pass --data)",
        dir.display()
    );
    Ok(dir)
}

/// A feed folder as a .tar.gz in memory, as a user would upload it.
fn pack(dir: &Path) -> Result<Vec<u8>> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    tar.append_dir_all(".", dir)
        .with_context(|| format!("packing {}", dir.display()))?;
    Ok(tar.into_inner()?.finish()?)
}

fn snapshots(data: &Path, feed: &str) -> Result<Vec<PathBuf>> {
    let folder = data.join("updates").join(feed);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&folder)
        .with_context(|| format!("reading {}", folder.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".tar.gz"))
        .collect();
    v.sort();
    Ok(v)
}

struct Run {
    args: FleetArgs,
    data: PathBuf,
    catalog: Arc<Catalog>,
    http: reqwest::Client,
    figures: serde_json::Map<String, Value>,
}

fn say(line: String) {
    println!("{line}");
    let _ = std::io::stdout().flush();
}

/// Runs everything; returns the figures.
pub async fn run(args: FleetArgs) -> Result<Value> {
    let data = data_dir(&args)?;
    let n = args.manifests;
    ensure!(n >= 2, "--manifests must be at least 2");
    tocsin_binary()?;
    let work = tempfile::Builder::new()
        .prefix("tocsin-bench-")
        .tempdir_in(args.work_dir.clone().unwrap_or_else(std::env::temp_dir))
        .context("creating the work directory")?;

    say(format!(
        "tocsin-bench fleet: {n} manifests, seed {}",
        args.seed
    ));
    let started = Instant::now();
    let mut feeds: BTreeMap<&str, Vec<Addressed>> = BTreeMap::new();
    for f in FEEDS {
        let s = tocsin_feeds::read_path(f, &data.join("osv").join(f), &|_| {})
            .with_context(|| format!("reading osv/{f}"))?;
        feeds.insert(f, s.vulnerabilities);
    }
    let all: Vec<Addressed> = feeds.values().flatten().cloned().collect();
    let catalog = Arc::new(Catalog::new(&data, &all, args.seed)?);
    say(format!(
        "  read {} advisories of {} feeds and {} bases in {:.1} s",
        all.len(),
        FEEDS.len(),
        catalog.bases().len(),
        started.elapsed().as_secs_f64()
    ));
    let mut run = Run {
        args: args.clone(),
        data,
        catalog,
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .timeout(Duration::from_secs(3600))
            .build()?,
        figures: serde_json::Map::new(),
    };
    run.figures.insert(
        "machine".into(),
        json!({
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "memory_bytes": mem_total().unwrap_or(0),
            "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        }),
    );
    run.figures.insert(
        "fleet".into(),
        json!({"manifests": n, "seed": args.seed, "bases": run.catalog.bases()}),
    );
    run.generator()?;

    if args.webhook_only {
        run.webhook(work.path()).await?;
        return Ok(Value::Object(run.figures));
    }
    let stop = |stage: &str| args.until.as_deref() == Some(stage);
    let mut server = Server::start(&work.path().join("main"), "").await?;
    run.index(&mut server).await?;
    if stop("index") {
        return Ok(Value::Object(run.figures));
    }
    run.first_import(&server, &feeds).await?;
    if stop("first-import") {
        return Ok(Value::Object(run.figures));
    }
    let updates = run.updates(&server).await?;
    if stop("updates") {
        return Ok(Value::Object(run.figures));
    }
    run.reports(&server).await?;
    if stop("reports") {
        return Ok(Value::Object(run.figures));
    }
    run.paging(&server).await?;
    if stop("paging") {
        return Ok(Value::Object(run.figures));
    }
    run.restart(&mut server).await?;
    server.stop().await?;
    if stop("restart") {
        return Ok(Value::Object(run.figures));
    }
    if args.skip_baseline {
        say("baseline: skipped".into());
    } else {
        run.baseline(&feeds, &updates).await?;
    }
    if stop("baseline") {
        return Ok(Value::Object(run.figures));
    }
    run.webhook(work.path()).await?;
    Ok(Value::Object(run.figures))
}

fn mem_total() -> Option<u64> {
    let m = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

impl Run {
    fn put(&mut self, key: &str, v: Value) {
        self.figures.insert(key.to_string(), v);
    }

    /// How fast manifests are made, so the clients' share of the two cores is known.
    fn generator(&mut self) -> Result<()> {
        let sample = 2_000.min(self.args.manifests);
        let started = Instant::now();
        let mut bytes = 0usize;
        let mut packages = 0usize;
        for i in 0..sample {
            let m = self.catalog.manifest(i);
            packages += m.report.packages.len();
            bytes += serde_json::to_vec(&m.report)?.len();
        }
        let secs = started.elapsed().as_secs_f64();
        say(format!(
            "generator: {:.0} manifests/s, {:.0} packages and {:.1} KiB of IndexReport JSON per manifest",
            sample as f64 / secs,
            packages as f64 / sample as f64,
            bytes as f64 / sample as f64 / 1024.0
        ));
        self.put(
            "generator",
            json!({
                "manifests_per_second": round(sample as f64 / secs, 0),
                "packages_per_manifest": round(packages as f64 / sample as f64, 1),
                "json_bytes_per_manifest": bytes / sample as usize,
            }),
        );
        Ok(())
    }

    /// Workload 1: `--http-share` of the fleet over HTTP (concurrent PUTs), the rest through
    /// `tocsin manifest import`, then until the server's index holds them all; and the memory
    /// it takes.
    async fn index(&mut self, server: &mut Server) -> Result<()> {
        let n = self.args.manifests;
        // Rounded, and within 0..=n since the share is.
        let over_http = (n as f64 * self.args.http_share).round() as u64;
        let rss_before = server.rss()?;
        let clients = self.args.clients.max(1) as u64;
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for k in 0..clients {
            let (http, catalog, url) = (
                self.http.clone(),
                Arc::clone(&self.catalog),
                server.url.clone(),
            );
            tasks.spawn(async move {
                let mut s = Samples::default();
                let mut i = k;
                while i < over_http {
                    let m = catalog.manifest(i);
                    let body = serde_json::to_vec(&m.report)?;
                    let t = Instant::now();
                    let r = http
                        .put(format!("{url}/api/v1/manifests/{}", m.digest))
                        .body(body)
                        .send()
                        .await?;
                    let status = r.status();
                    if status != reqwest::StatusCode::CREATED {
                        bail!(
                            "PUT manifest {i}: {status}: {}",
                            r.text().await.unwrap_or_default()
                        );
                    }
                    s.push(t.elapsed());
                    i += clients;
                }
                Ok::<_, anyhow::Error>(s)
            });
        }
        let mut samples = Samples::default();
        while let Some(r) = tasks.join_next().await {
            samples.extend(r??);
        }
        let http = samples.summary(started.elapsed());
        let rss_http = server.rss()?;
        say(format!(
            "index over HTTP: {} manifests in {:.1} s = {:.0}/s (PUT p50 {:.1} ms, p99 {:.1} ms; {} clients); RSS {} MiB",
            http.count, http.seconds, http.per_second, http.p50_ms, http.p99_ms, clients, rss_http >> 20
        ));

        // The CLI reads a JSON Lines stream on stdin; a thread of ours writes it.
        let started = Instant::now();
        let mut child = std::process::Command::new(tocsin_binary()?)
            .arg("--config")
            .arg(server.data_dir.join("bench-config.yaml"))
            .args(["manifest", "import", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .context("starting tocsin manifest import")?;
        let mut stdin = child.stdin.take().context("no stdin")?;
        let catalog = Arc::clone(&self.catalog);
        let writer = std::thread::spawn(move || -> Result<()> {
            let mut w = std::io::BufWriter::with_capacity(1 << 20, &mut stdin);
            for i in over_http..n {
                serde_json::to_writer(&mut w, &catalog.manifest(i).report)?;
                w.write_all(b"\n")?;
            }
            w.flush()?;
            Ok(())
        });
        let out = child.wait_with_output().context("waiting for the import")?;
        writer
            .join()
            .map_err(|_| anyhow::anyhow!("the generator thread panicked"))??;
        ensure!(
            out.status.success(),
            "tocsin manifest import failed: {}",
            out.status
        );
        let cli_secs = started.elapsed().as_secs_f64();
        // The server learns of them through the store's change feed.
        let follow = Instant::now();
        loop {
            let indexed = server.metric("tocsin_index_manifests").await?;
            if indexed as u64 >= n {
                break;
            }
            ensure!(
                follow.elapsed() < Duration::from_secs(3600),
                "the server indexed only {indexed} of {n} manifests"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let follow_secs = follow.elapsed().as_secs_f64();
        let cli_n = n - over_http;
        say(format!(
            "index through the CLI: {cli_n} manifests in {cli_secs:.1} s = {:.0}/s; the server's index followed {:.1} s later ({:.0}/s end to end)",
            cli_n as f64 / cli_secs,
            follow_secs,
            cli_n as f64 / (cli_secs + follow_secs)
        ));

        let refs = server.metric("tocsin_index_package_references").await?;
        let bitmap = server.metric("tocsin_index_bitmap_bytes").await?;
        let rss_after = server.rss()?;
        let per_ref = (rss_after.saturating_sub(rss_before)) as f64 / refs.max(1.0);
        say(format!(
            "memory: {refs:.0} package references; RSS {} → {} MiB = {per_ref:.1} B per reference (bitmaps {:.2} B)",
            rss_before >> 20,
            rss_after >> 20,
            bitmap / refs.max(1.0)
        ));
        ensure!(
            server.metric("tocsin_index_manifests").await? as u64 == n,
            "index holds the wrong number of manifests"
        );
        // A restart rebuilds the index from the store alone: what the index itself occupies,
        // without what serving the uploads left behind.
        let rebuild = server.restart().await?;
        let rss_rebuilt = server.rss()?;
        ensure!(
            server.metric("tocsin_index_manifests").await? as u64 == n,
            "the rebuilt index holds the wrong number of manifests"
        );
        let fresh = Server::start(&server.data_dir.with_extension("empty"), "").await?;
        let rss_empty = fresh.rss()?;
        drop(fresh);
        let per_ref_rebuilt = rss_rebuilt.saturating_sub(rss_empty) as f64 / refs.max(1.0);
        say(format!(
            "memory after a restart: index rebuilt from the store in {:.1} s; RSS {} MiB (an empty server: {} MiB) = {per_ref_rebuilt:.1} B per reference",
            rebuild.as_secs_f64(),
            rss_rebuilt >> 20,
            rss_empty >> 20
        ));
        self.put(
            "index",
            json!({
                "http": http,
                "http_clients": clients,
                "cli": {"count": cli_n, "seconds": round(cli_secs, 3), "per_second": round(cli_n as f64 / cli_secs, 1),
                        "server_follow_seconds": round(follow_secs, 3)},
            }),
        );
        self.put(
            "memory",
            json!({
                "package_references": refs,
                "rss_before_bytes": rss_before,
                "rss_after_http_bytes": rss_http,
                "rss_after_bytes": rss_after,
                "bytes_per_reference": round(per_ref, 2),
                "rebuild_seconds": round(rebuild.as_secs_f64(), 3),
                "rss_rebuilt_bytes": rss_rebuilt,
                "rss_empty_server_bytes": rss_empty,
                "bytes_per_reference_rebuilt": round(per_ref_rebuilt, 2),
                "bitmap_bytes_per_reference": round(bitmap / refs.max(1.0), 3),
            }),
        );
        Ok(())
    }

    async fn put_snapshot(&self, server: &Server, updater: &str, body: Vec<u8>) -> Result<Value> {
        let r = self
            .http
            .put(format!("{}/api/v1/updaters/{updater}/snapshot", server.url))
            .body(body)
            .send()
            .await?;
        let status = r.status();
        let text = r.text().await?;
        ensure!(
            status.is_success(),
            "PUT snapshot of {updater}: {status}: {text}"
        );
        Ok(serde_json::from_str(&text)?)
    }

    /// Sums what the processed operations of a snapshot response report.
    fn processed(v: &Value) -> (u64, u64, u64) {
        let list = v["processed"].as_array().cloned().unwrap_or_default();
        let sum = |k: &str| list.iter().map(|p| p[k].as_u64().unwrap_or(0)).sum::<u64>();
        (sum("changes"), sum("entries"), sum("manifests"))
    }

    /// Workload 2: the first import of every OSV feed against the indexed fleet.
    async fn first_import(
        &mut self,
        server: &Server,
        feeds: &BTreeMap<&str, Vec<Addressed>>,
    ) -> Result<()> {
        let mut rows = Vec::new();
        let mut total = Duration::ZERO;
        for f in FEEDS {
            let body = pack(&self.data.join("osv").join(f))?;
            let bytes = body.len();
            let t = Instant::now();
            let v = self.put_snapshot(server, &format!("osv/{f}"), body).await?;
            let took = t.elapsed();
            total += took;
            let (changes, entries, manifests) = Self::processed(&v);
            ensure!(
                changes as usize == feeds[f].len(),
                "osv/{f}: {changes} changes processed for {} advisories",
                feeds[f].len()
            );
            say(format!(
                "first import osv/{f}: {} advisories, {entries} entries on {manifests} manifests, committed in {:.2} s",
                feeds[f].len(),
                took.as_secs_f64()
            ));
            rows.push(json!({"feed": f, "advisories": feeds[f].len(), "upload_bytes": bytes,
                "entries": entries, "manifests": manifests, "seconds": round(took.as_secs_f64(), 3)}));
        }
        say(format!(
            "first import, all feeds: committed in {:.2} s",
            total.as_secs_f64()
        ));
        self.put(
            "first_import",
            json!({"feeds": rows, "seconds": round(total.as_secs_f64(), 3)}),
        );
        Ok(())
    }

    /// Workload 3: each real update sequence, one snapshot after the other, under updaters of
    /// their own. Returns the vulnerabilities each update changed (for the baseline).
    async fn updates(&mut self, server: &Server) -> Result<Vec<(String, Vec<Vulnerability>)>> {
        let mut rows = Vec::new();
        let mut changed_sets = Vec::new();
        let mut steps = Samples::default();
        for f in SEQUENCES {
            let updater = format!("history/{f}");
            let mut prev: Option<BTreeSet<VulnId>> = None;
            for (k, path) in snapshots(&self.data, f)?.iter().enumerate() {
                let body = std::fs::read(path)?;
                let snap = tocsin_feeds::read_bytes(&updater, &body, &|_| {})
                    .with_context(|| format!("reading {}", path.display()))?;
                let ids: BTreeSet<VulnId> = snap
                    .vulnerabilities
                    .iter()
                    .map(|v| v.id().clone())
                    .collect();
                let t = Instant::now();
                let v = self.put_snapshot(server, &updater, body).await?;
                let took = t.elapsed();
                let (changes, entries, manifests) = Self::processed(&v);
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default();
                if let Some(p) = &prev {
                    steps.push(took);
                    let changed: Vec<Vulnerability> = snap
                        .vulnerabilities
                        .iter()
                        .filter(|v| !p.contains(v.id()))
                        .map(|v| v.vuln().clone())
                        .collect();
                    changed_sets.push((format!("{f}/{name}"), changed));
                    rows.push(json!({"sequence": f, "snapshot": name, "changes": changes,
                        "entries": entries, "manifests": manifests, "seconds": round(took.as_secs_f64(), 4)}));
                } else {
                    say(format!(
                        "updates {f}: first snapshot {name} imported in {:.2} s ({entries} entries)",
                        took.as_secs_f64()
                    ));
                }
                if k > 0 {
                    say(format!(
                        "  update {f}/{name}: {changes} changed advisories, {manifests} manifests touched, committed in {:.3} s",
                        took.as_secs_f64()
                    ));
                }
                prev = Some(ids);
            }
        }
        let s = steps.summary(Duration::from_secs_f64(
            rows.iter()
                .map(|r| r["seconds"].as_f64().unwrap_or(0.0))
                .sum(),
        ));
        say(format!(
            "updates: {} incremental updates, p50 {:.3} s, p99 {:.3} s, slowest {:.3} s",
            s.count,
            s.p50_ms / 1000.0,
            s.p99_ms / 1000.0,
            s.max_ms / 1000.0
        ));
        self.put("updates", json!({"steps": rows, "summary": s}));
        Ok(changed_sets)
    }

    /// Workload 4: vulnerability reports for a deterministic sample of the fleet.
    async fn reports(&mut self, server: &Server) -> Result<()> {
        let n = self.args.manifests;
        let total = self.args.reports;
        let clients = self.args.clients.max(1);
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for k in 0..clients {
            let (http, catalog, url) = (
                self.http.clone(),
                Arc::clone(&self.catalog),
                server.url.clone(),
            );
            tasks.spawn(async move {
                let mut s = Samples::default();
                let mut vulns = 0usize;
                for j in (k..total).step_by(clients) {
                    // A fixed stride through the fleet: every base and index range is visited.
                    let i = (j as u64).wrapping_mul(2_654_435_761) % n;
                    let t = Instant::now();
                    let r = http
                        .get(format!(
                            "{url}/matcher/api/v1/vulnerability_report/{}",
                            catalog.digest(i)
                        ))
                        .send()
                        .await?;
                    ensure!(r.status().is_success(), "report {i}: {}", r.status());
                    let body: Value = r.json().await?;
                    s.push(t.elapsed());
                    vulns += body["vulnerabilities"].as_object().map_or(0, |m| m.len());
                }
                Ok::<_, anyhow::Error>((s, vulns))
            });
        }
        let mut samples = Samples::default();
        let mut vulns = 0;
        while let Some(r) = tasks.join_next().await {
            let (s, v) = r??;
            samples.extend(s);
            vulns += v;
        }
        let s = samples.summary(started.elapsed());
        say(format!(
            "vulnerability reports: {:.0} requests/s, p50 {:.2} ms, p99 {:.2} ms ({} clients, {:.1} vulnerabilities per report)",
            s.per_second,
            s.p50_ms,
            s.p99_ms,
            clients,
            vulns as f64 / total.max(1) as f64
        ));
        self.put(
            "reports",
            json!({"summary": s, "clients": clients, "vulnerabilities_per_report": round(vulns as f64 / total.max(1) as f64, 2)}),
        );
        Ok(())
    }

    /// Workload 5: a client paging through one large notification set over Clair's pull API.
    /// The set is written into the server's store by this process (the store is shared by every
    /// process on the data directory), made of real advisories on fleet manifests.
    async fn paging(&mut self, server: &Server) -> Result<()> {
        let want = self.args.page_entries;
        let store = tocsin_store_sqlite::SqliteStore::open(&server.data_dir)?;
        let snap = tocsin_feeds::read_path("debian", &self.data.join("osv/debian"), &|_| {})?;
        let per_vuln = 100usize.min(self.args.manifests as usize);
        let entries: Vec<Notification> = snap
            .vulnerabilities
            .iter()
            .cycle()
            .take(want.div_ceil(per_vuln))
            .enumerate()
            .flat_map(|(k, v)| {
                let summary = VulnSummary::of(v);
                let catalog = Arc::clone(&self.catalog);
                let n = self.args.manifests;
                (0..per_vuln as u64).map(move |j| Notification {
                    id: Uuid::new_v4(),
                    manifest: catalog.digest((k as u64 * per_vuln as u64 + j) % n),
                    reason: Reason::Added,
                    vulnerability: summary.clone(),
                })
            })
            .take(want)
            .collect();
        let id = Uuid::new_v4();
        store
            .create_notification_set(&NewNotificationSet {
                id,
                updater: "bench/paging".into(),
                operation: None,
                entries,
                channels: vec![],
                created_at: time::OffsetDateTime::now_utc(),
            })
            .await?;
        let mut samples = Samples::default();
        let mut seen = BTreeSet::new();
        let mut next: Option<String> = None;
        let started = Instant::now();
        loop {
            let mut url = format!(
                "{}/notifier/api/v1/notification/{id}?page_size={}",
                server.url, self.args.page_size
            );
            if let Some(n) = &next {
                url.push_str(&format!("&next={n}"));
            }
            // Timed until the whole page has arrived; decoding it in this process is not the
            // server's latency.
            let t = Instant::now();
            let r = self.http.get(url).send().await?;
            ensure!(r.status().is_success(), "page: {}", r.status());
            let bytes = r.bytes().await?;
            samples.push(t.elapsed());
            let body: Value = serde_json::from_slice(&bytes)?;
            for e in body["notifications"].as_array().into_iter().flatten() {
                ensure!(
                    seen.insert(e["id"].as_str().unwrap_or_default().to_string()),
                    "an entry came twice"
                );
            }
            match body["page"]["next"].as_str() {
                Some(n) => next = Some(n.to_string()),
                None => break,
            }
        }
        let s = samples.summary(started.elapsed());
        ensure!(seen.len() == want, "paged {} entries of {want}", seen.len());
        say(format!(
            "paging a {want}-entry set by {}: {} pages, {:.0} pages/s, p50 {:.2} ms, p99 {:.2} ms per page",
            self.args.page_size, s.count, s.per_second, s.p50_ms, s.p99_ms
        ));
        self.put(
            "paging",
            json!({"entries": want, "page_size": self.args.page_size, "summary": s}),
        );
        Ok(())
    }

    /// A restart rebuilds the index from the store: how long, and what it then occupies.
    async fn restart(&mut self, server: &mut Server) -> Result<()> {
        let took = server.restart().await?;
        let refs = server.metric("tocsin_index_package_references").await?;
        let rss = server.rss()?;
        say(format!(
            "restart: healthy after {:.1} s (index rebuilt from the store); RSS {} MiB",
            took.as_secs_f64(),
            rss >> 20
        ));
        ensure!(
            server.metric("tocsin_index_manifests").await? as u64 == self.args.manifests,
            "the rebuilt index holds the wrong number of manifests"
        );
        if let Some(Value::Object(m)) = self.figures.get_mut("memory") {
            m.insert("rss_after_restart_bytes".into(), json!(rss));
            m.insert(
                "restart_seconds".into(),
                json!(round(took.as_secs_f64(), 3)),
            );
            m.insert("references_after_restart".into(), json!(refs));
        }
        Ok(())
    }

    /// The Clair-style baseline beside tocsin's own matching, on the same advisories.
    async fn baseline(
        &mut self,
        feeds: &BTreeMap<&str, Vec<Addressed>>,
        updates: &[(String, Vec<Vulnerability>)],
    ) -> Result<()> {
        let n = self.args.manifests;
        let mut pg = Baseline::create(&self.args.pg).await?;
        let catalog = Arc::clone(&self.catalog);
        // One pass over the fleet feeds both: the in-process index and the COPY.
        let index = std::sync::Mutex::new(ManifestIndex::new());
        let t = Instant::now();
        let load = pg
            .load(n, |i| {
                let p = catalog.packages(i);
                if let Ok(mut ix) = index.lock() {
                    ix.add(i as u32, &p);
                }
                p
            })
            .await?;
        let index = index
            .into_inner()
            .map_err(|_| anyhow::anyhow!("index lock poisoned"))?;
        say(format!(
            "baseline: {} manifests, {} package rows, {} links loaded into PostgreSQL in {:.1} s",
            load.manifests,
            load.packages,
            load.links,
            t.elapsed().as_secs_f64()
        ));
        let every = self.args.baseline_every.max(1);
        let mut rows = Vec::new();
        let first: Vec<&Vulnerability> = FEEDS
            .iter()
            .flat_map(|f| feeds[f].iter().map(Addressed::vuln))
            .step_by(every)
            .collect();
        let changed: Vec<&Vulnerability> = updates
            .iter()
            .flat_map(|(_, v)| v.iter())
            .step_by(every)
            .collect();
        for (name, vulns) in [("first_import", first), ("updates", changed)] {
            let (pg_time, pg_sets) = pg.time_all(&vulns).await?;
            let t = Instant::now();
            let ours: Vec<_> = vulns
                .iter()
                .map(|v| index.affected(v, &CompiledRule::new(&v.affected, &v.package.ecosystem)))
                .collect();
            let our_time = t.elapsed();
            let mismatched: Vec<&str> = vulns
                .iter()
                .zip(ours.iter().zip(&pg_sets))
                .filter(|(_, (a, b))| a != b)
                .map(|(v, _)| v.name.as_str())
                .take(5)
                .collect();
            ensure!(
                mismatched.is_empty(),
                "tocsin and the SQL baseline disagree on {mismatched:?}"
            );
            let pairs: u64 = ours.iter().map(|b| b.len()).sum();
            let ratio = pg_time.as_secs_f64() / our_time.as_secs_f64().max(1e-9);
            say(format!(
                "baseline {name}: {} advisories, {pairs} (advisory, manifest) pairs, identical results; SQL per advisory {:.2} s, tocsin's index {:.4} s = {ratio:.0}× faster",
                vulns.len(),
                pg_time.as_secs_f64(),
                our_time.as_secs_f64()
            ));
            rows.push(json!({"workload": name, "advisories": vulns.len(), "pairs": pairs,
                "sql_seconds": round(pg_time.as_secs_f64(), 4), "tocsin_seconds": round(our_time.as_secs_f64(), 5),
                "speedup": round(ratio, 1)}));
        }
        pg.drop_database().await?;
        self.put(
            "baseline",
            json!({"load": load, "every": every, "comparisons": rows}),
        );
        Ok(())
    }

    /// Workload 6: webhook delivery of many sets, beside a plain HTTP load loop against the same
    /// receiver with the same concurrency. A round takes about a second on each side, so the run
    /// alternates `--webhook-rounds` rounds and reports the median ratio with every round.
    async fn webhook(&mut self, work: &Path) -> Result<()> {
        let m = self.args.webhook_sets;
        let c = self.args.webhook_concurrency.max(1);
        let rounds = self.args.webhook_rounds.max(1);
        let receiver = Receiver::start().await?;
        let mut results = Vec::with_capacity(rounds);
        for round in 0..rounds {
            let dir = work.join(format!("webhook-{round}"));
            let r = self.webhook_round(&dir, &receiver, m, c).await?;
            say(format!(
                "webhook round {}: tocsin delivered {m} sets at {:.0}/s; a plain load loop posts {:.0}/s from its own process = {:.2}×, {:.0}/s from the receiver's = {:.2}× ({c} concurrent each)",
                round + 1,
                r.tocsin,
                r.apart,
                r.apart / r.tocsin.max(1e-9),
                r.inside,
                r.inside / r.tocsin.max(1e-9),
            ));
            results.push(r);
        }
        receiver.stop();
        let median = |f: &dyn Fn(&WebhookRound) -> f64| {
            let mut v: Vec<f64> = results.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            (v[v.len() / 2], v[0], v[v.len() - 1])
        };
        let apart = median(&|r| r.apart / r.tocsin.max(1e-9));
        let inside = median(&|r| r.inside / r.tocsin.max(1e-9));
        say(format!(
            "webhook: tocsin takes {:.2}× the time of a plain loop in its own process ({:.2}–{:.2}), {:.2}× that of one inside the receiver's process ({:.2}–{:.2}); medians of {rounds} rounds",
            apart.0, apart.1, apart.2, inside.0, inside.1, inside.2
        ));
        let per_round: Vec<Value> = results
            .iter()
            .map(|r| {
                json!({"tocsin_per_second": round(r.tocsin, 1),
                       "load_loop_per_second": round(r.apart, 1),
                       "load_loop_in_receiver_process_per_second": round(r.inside, 1)})
            })
            .collect();
        self.put(
            "webhook",
            json!({"sets": m, "concurrency": c, "rounds": per_round,
                   "ratio": round(apart.0, 3), "ratio_in_receiver_process": round(inside.0, 3)}),
        );
        Ok(())
    }

    /// One round: `m` fresh sets delivered by a tocsin server, then `m` POSTs of the plain loop;
    /// both rates as the receiver saw them.
    async fn webhook_round(
        &self,
        dir: &Path,
        receiver: &Receiver,
        m: usize,
        c: usize,
    ) -> Result<WebhookRound> {
        receiver.reset();
        let store = tocsin_store_sqlite::SqliteStore::open(dir)?;
        let digest = self.catalog.digest(0);
        for k in 0..m {
            store
                .create_notification_set(&NewNotificationSet {
                    id: Uuid::new_v4(),
                    updater: "bench/webhook".into(),
                    operation: None,
                    entries: vec![Notification {
                        id: Uuid::new_v4(),
                        manifest: digest.clone(),
                        reason: Reason::Added,
                        vulnerability: VulnSummary {
                            name: format!("BENCH-{k}"),
                            description: String::new(),
                            package: None,
                            distribution: None,
                            repository: None,
                            severity: tocsin_model::Severity::Low,
                            fixed_in_version: String::new(),
                            links: String::new(),
                        },
                    }],
                    channels: vec!["webhook".into()],
                    created_at: time::OffsetDateTime::now_utc(),
                })
                .await?;
        }
        drop(store);
        // The first lines continue the `tocsin:` section the server's configuration ends with.
        let extra = format!(
            "  delivery:\n    workers: {c}\nnotifier:\n  webhook:\n    target: {}\n    callback: http://127.0.0.1:1/notifier/api/v1/notification/\n",
            receiver.url
        );
        let mut server = Server::start(dir, &extra).await?;
        let started = Instant::now();
        loop {
            let seen = receiver.seen();
            if seen.distinct as usize >= m {
                break;
            }
            ensure!(
                started.elapsed() < Duration::from_secs(1800),
                "only {} of {m} sets delivered",
                seen.distinct
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Let stragglers (duplicates, if any) arrive before counting.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let tocsin = receiver.seen();
        server.stop().await?;
        ensure!(
            tocsin.total == tocsin.distinct && tocsin.bad == 0,
            "deliveries: {} callbacks for {} sets ({} malformed)",
            tocsin.total,
            tocsin.distinct,
            tocsin.bad
        );
        let store = tocsin_store_sqlite::SqliteStore::open(dir)?;
        let backlog = store.backlog().await?;
        ensure!(
            backlog.delivered as usize == m,
            "{} of {m} receipts delivered",
            backlog.delivered
        );

        let rate = |s: &crate::receiver::Seen| {
            (s.distinct.saturating_sub(1)) as f64 / s.span_seconds.max(1e-9)
        };
        // The loop in a process of its own, as tocsin is: across processes, each side's threads
        // park and are woken, which a loop inside the receiver's process never pays.
        receiver.reset();
        let status = tokio::process::Command::new(std::env::current_exe()?)
            .args(["load-loop", "--url", &receiver.url])
            .args(["--posts", &m.to_string(), "--concurrency", &c.to_string()])
            .status()
            .await
            .context("running the load loop")?;
        ensure!(status.success(), "the load loop failed: {status}");
        let apart = receiver.seen();
        ensure!(
            apart.distinct as usize == m,
            "the load loop delivered {} of {m}",
            apart.distinct
        );
        // And inside this process, beside the receiver.
        receiver.reset();
        load_loop(&self.http, &receiver.url, m, c).await?;
        let inside = receiver.seen();
        Ok(WebhookRound {
            tocsin: rate(&tocsin),
            apart: rate(&apart),
            inside: rate(&inside),
        })
    }
}

/// One webhook round's rates, per second.
struct WebhookRound {
    tocsin: f64,
    /// The plain loop in its own process.
    apart: f64,
    /// The plain loop in the receiver's process.
    inside: f64,
}

/// A plain HTTP load loop: `posts` POSTs of a webhook body, `concurrency` at a time.
pub async fn load_loop(
    http: &reqwest::Client,
    url: &str,
    posts: usize,
    concurrency: usize,
) -> Result<()> {
    let c = concurrency.max(1);
    let body = |id: Uuid| {
        format!(
            r#"{{"callback":"http://127.0.0.1:1/notifier/api/v1/notification/{id}","notification_id":"{id}"}}"#
        )
    };
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..c {
        let (http, url) = (http.clone(), url.to_owned());
        let bodies: Vec<String> = (k..posts)
            .step_by(c)
            .map(|_| body(Uuid::new_v4()))
            .collect();
        tasks.spawn(async move {
            for b in bodies {
                let r = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(b)
                    .send()
                    .await?;
                ensure!(r.status().is_success(), "load loop: {}", r.status());
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(())
}
