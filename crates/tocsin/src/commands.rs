//! The CLI subcommands that work on the store directly (`manifest`, `feed`, `notification`).
use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Context, Result};
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use std::sync::Arc;
use tocsin_engine::{Engine, Guard};
use tocsin_model::inventory::InventoryFormat;
use tocsin_model::notification::ReceiptStatus;
use tocsin_model::Digest;

use tocsin_feeds::{Limit, Limited, Limits};
use tocsin_store::{BulkItem, ImportOutcome, PutOutcome, Store};
use tocsin_updaters::{Outcome, RunEvent, RunReport, Updaters};
use uuid::Uuid;

use crate::cli::{FeedCommand, ManifestAdd, ManifestCommand, ManifestImport, NotificationCommand};

fn parse_labels(raw: &[String]) -> Result<BTreeMap<String, String>> {
    raw.iter()
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .ok_or_else(|| anyhow!("label {l:?} is not KEY=VALUE"))?;
            if k.is_empty() {
                bail!("label {l:?} has an empty key");
            }
            Ok((k.to_string(), v.to_string()))
        })
        .collect()
}

/// `tocsin manifest …` (all but `report`, see [`manifest_report`]).
pub async fn manifest(store: Arc<dyn Store>, cmd: ManifestCommand, limits: &Limits) -> Result<()> {
    match cmd {
        ManifestCommand::Add(a) => manifest_add(&*store, a).await,
        ManifestCommand::Import(a) => manifest_import(store, a, *limits).await,
        ManifestCommand::List { limit } => {
            let list = store.list_manifests(None, limit).await?;
            println!(
                "{:<73} {:<13} {:>8}  labels",
                "digest", "format", "packages"
            );
            for m in list {
                let labels: Vec<String> =
                    m.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                println!(
                    "{:<73} {:<13} {:>8}  {}",
                    m.digest,
                    m.format,
                    m.packages,
                    labels.join(",")
                );
            }
            Ok(())
        }
        ManifestCommand::Rm { digest } => {
            let d = Digest::parse(&digest)?;
            if !store.delete_manifest(&d).await? {
                bail!("manifest {d} not found");
            }
            println!("removed {d}");
            Ok(())
        }
        ManifestCommand::Report { digest } => {
            bail!("internal: `manifest report {digest}` needs the engine (use manifest_report)")
        }
    }
}

/// `tocsin manifest report DIGEST`
pub async fn manifest_report(engine: &Engine, digest: &str) -> Result<()> {
    let d = Digest::parse(digest)?;
    let report = engine
        .vulnerability_report(&d)
        .await?
        .ok_or_else(|| anyhow!("manifest {d} not found"))?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

async fn manifest_add(store: &dyn Store, a: ManifestAdd) -> Result<()> {
    let bytes = std::fs::read(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
    let format = a
        .format
        .as_deref()
        .map(|f| {
            InventoryFormat::parse(f).ok_or_else(|| {
                anyhow!(
                    "unknown format {f:?} (expected one of: {})",
                    InventoryFormat::ALL.map(|f| f.as_str()).join(", ")
                )
            })
        })
        .transpose()?;
    let digest = a.digest.as_deref().map(Digest::parse).transpose()?;
    let manifest = tocsin_inventory::parse(tocsin_inventory::Input {
        bytes: &bytes,
        format,
        content_type: None,
        digest,
        distribution: a.distribution.as_deref(),
        labels: parse_labels(&a.labels)?,
    })
    .with_context(|| format!("parsing {}", a.file.display()))?;
    let (id, outcome) = store
        .put_manifest(&manifest, time::OffsetDateTime::now_utc())
        .await?;
    let what = match outcome {
        PutOutcome::Created => "added",
        PutOutcome::Replaced => "replaced",
        PutOutcome::Unchanged => "unchanged",
    };
    println!(
        "{what} {} (id {id}, {} packages, {})",
        manifest.digest,
        manifest.report.packages.len(),
        manifest.format.as_str()
    );
    Ok(())
}

/// The stream itself, or its decompression when it starts with gzip's magic bytes, bounded by
/// `max_manifest_import_bytes` (nothing expands in plain input, so it is not bounded in total).
fn maybe_gunzip(
    input: Box<dyn std::io::Read + Send>,
    limits: &Limits,
) -> std::io::Result<Box<dyn std::io::BufRead + Send>> {
    use std::io::BufRead as _;
    let mut plain = std::io::BufReader::with_capacity(1 << 20, input);
    let gzip = plain.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    Ok(match gzip {
        true => Box::new(std::io::BufReader::with_capacity(
            1 << 20,
            Limited::new(
                flate2::read::MultiGzDecoder::new(plain),
                Limit::ManifestImportBytes,
                limits,
            ),
        )),
        false => Box::new(plain),
    })
}

/// Reads the next line of `input` into `line` (cleared first, newline kept), at most
/// `max_member_bytes` before its newline: a longer line is refused before it is held whole.
/// Returns the bytes read; 0 at the end.
fn read_bounded_line(
    input: &mut dyn std::io::BufRead,
    line: &mut Vec<u8>,
    limits: &Limits,
) -> std::io::Result<usize> {
    use std::io::BufRead as _;
    line.clear();
    let max = limits.max_member_bytes;
    let read = std::io::Read::take(&mut *input, max.saturating_add(1)).read_until(b'\n', line)?;
    let content = line.strip_suffix(b"\n").unwrap_or(line).len() as u64;
    if content > max {
        return Err(Limit::MemberBytes.exceeded(limits).into_io());
    }
    Ok(read)
}

/// Manifests parsed ahead of the store while it writes.
const IMPORT_QUEUE: usize = 64;

/// Reads a JSON Lines stream of IndexReports on a blocking thread and streams the manifests into
/// one store transaction: parsing (one core) overlaps with encoding and writing (the other). Any
/// bad line stops the reader, which then drops its end of the queue without committing, so the
/// store rolls everything back.
///
/// Bounds (`tocsin.limits`): each line by `max_member_bytes`, a gzip stream's decompressed
/// total by `max_manifest_import_bytes`. Crossing one is an error like a bad line: nothing is
/// imported.
async fn manifest_import(store: Arc<dyn Store>, a: ManifestImport, limits: Limits) -> Result<()> {
    let labels = parse_labels(&a.labels)?;
    let input: Box<dyn std::io::Read + Send> = if a.path.as_os_str() == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(
            std::fs::File::open(&a.path)
                .with_context(|| format!("opening {}", a.path.display()))?,
        )
    };
    let name = match a.path.as_os_str() == "-" {
        true => "standard input".to_string(),
        false => a.path.display().to_string(),
    };
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} importing manifests: {pos} ({per_sec}, {elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let (tx, rx) = tokio::sync::mpsc::channel(IMPORT_QUEUE);
    let reader_bar = bar.clone();
    let reader = tokio::task::spawn_blocking(move || -> Result<u64> {
        let mut lines = maybe_gunzip(input, &limits).with_context(|| format!("reading {name}"))?;
        let mut line = Vec::new();
        let mut n = 0u64;
        for number in 1u64.. {
            let read = read_bounded_line(&mut *lines, &mut line, &limits).with_context(|| {
                format!("reading {name} at line {number}: nothing was imported")
            })?;
            if read == 0 {
                break;
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let manifest = tocsin_inventory::parse(tocsin_inventory::Input {
                bytes: &line,
                format: Some(InventoryFormat::IndexReport),
                labels: labels.clone(),
                ..Default::default()
            })
            .with_context(|| format!("{name}, line {number}: nothing was imported"))?;
            if tx
                .blocking_send(BulkItem::Manifest(Box::new(manifest)))
                .is_err()
            {
                // The store stopped early; its error says why.
                return Ok(n);
            }
            n += 1;
            reader_bar.inc(1);
        }
        // Only a stream read to its end is committed.
        let _ = tx.blocking_send(BulkItem::Commit);
        Ok(n)
    });
    let stored = store
        .put_manifests(rx, time::OffsetDateTime::now_utc())
        .await;
    let read = reader
        .await
        .map_err(|e| anyhow!("the import reader failed: {e}"))?;
    bar.finish_and_clear();
    // A reader error is the cause of the store's "ended before complete"; report it first.
    let read = read?;
    let outcome = stored.context("importing manifests: nothing was imported")?;
    println!(
        "imported {read} manifests: {} added, {} replaced, {} unchanged",
        outcome.created, outcome.replaced, outcome.unchanged
    );
    Ok(())
}

/// `tocsin feed …`
pub async fn feed(
    engine: &Engine,
    updaters: Option<Arc<Updaters>>,
    cmd: FeedCommand,
    limits: &Limits,
) -> Result<()> {
    match cmd {
        FeedCommand::Import { name, path, force } => {
            let snapshot = read_snapshot_with_progress(&name, &path, limits)?;
            let guard = if force { Guard::Skip } else { Guard::Apply };
            let outcome = engine
                .import_with(
                    &name,
                    &snapshot.fingerprint,
                    &snapshot.vulnerabilities,
                    guard,
                )
                .await?;
            match &outcome {
                ImportOutcome::Created(op) => println!(
                    "imported {} vulnerabilities into {name}: update operation {}",
                    snapshot.vulnerabilities.len(),
                    op.reference
                ),
                ImportOutcome::Unchanged(op) => println!(
                    "{name} unchanged (same content as update operation {})",
                    op.reference
                ),
                ImportOutcome::Held(h) => println!(
                    "{name}: update operation {} is held ({}); accept it with `tocsin feed accept {name} {}`",
                    h.operation.reference, h.reason, h.operation.reference
                ),
            }
            print_processed(&engine.process_pending().await?);
            Ok(())
        }
        FeedCommand::List => {
            let store = engine.store();
            for u in store.updaters().await? {
                println!(
                    "{}  ({} operations, {} vulnerabilities in the newest; processed up to {})",
                    u.name,
                    u.operations,
                    u.vulnerabilities,
                    u.processed.map_or("nothing".to_string(), |p| p.to_string())
                );
                if let Some(h) = &u.held {
                    println!(
                        "  HELD {}  {}  {} vulnerabilities: {} (accept: tocsin feed accept {} {})",
                        h.operation.reference,
                        h.operation.date,
                        h.vulnerabilities,
                        h.reason,
                        u.name,
                        h.operation.reference
                    );
                }
                for op in store.update_operations(&u.name).await? {
                    println!(
                        "  {}  {}  {}",
                        op.reference,
                        op.date,
                        &op.fingerprint[..op.fingerprint.len().min(16)]
                    );
                }
            }
            if let Some(updaters) = updaters {
                println!("followed sources:");
                for s in updaters.statuses().await? {
                    let st = s.state.unwrap_or_default();
                    let when = |t: Option<time::OffsetDateTime>| {
                        t.map_or("never".to_string(), |t| t.to_string())
                    };
                    println!(
                        "  {}  {} every {}s; last success {}; next run {}{}",
                        s.name,
                        s.source,
                        s.interval_seconds,
                        when(st.last_success),
                        st.next_run.map_or("now".to_string(), |t| t.to_string()),
                        match (&st.last_error, st.last_error_at) {
                            (Some(e), Some(at)) => format!("; last error at {at}: {e}"),
                            _ => String::new(),
                        }
                    );
                }
            }
            Ok(())
        }
        FeedCommand::Update { names, json } => {
            let Some(updaters) = updaters else {
                bail!("no feeds are followed: configure tocsin.updaters (see the README's \"keep tocsin current\")");
            };
            let names: Vec<String> = if names.is_empty() {
                updaters.sources().iter().map(|s| s.name.clone()).collect()
            } else {
                names
            };
            let mut failed = 0usize;
            for name in &names {
                match update_one(&updaters, name).await {
                    Ok(report) if json => println!("{}", tocsin_api::report_json(report)),
                    Ok(report) => print_report(&report),
                    Err(e) => {
                        failed += 1;
                        eprintln!("{name}: {e}");
                    }
                }
            }
            if failed > 0 {
                bail!("{failed} of {} updaters failed", names.len());
            }
            Ok(())
        }
        FeedCommand::Accept { name, operation } => {
            let op = uuid::Uuid::parse_str(&operation)
                .with_context(|| format!("operation reference {operation:?}"))?;
            let accepted = engine.accept(&name, op).await?;
            println!("accepted update operation {} of {name}", accepted.reference);
            print_processed(&engine.process_pending().await?);
            Ok(())
        }
    }
}

fn print_processed(processed: &[tocsin_engine::Processed]) {
    for p in processed {
        match p.set {
            Some(id) => println!(
                "processed {} of {}: {} vulnerabilities changed, notification {id} with {} entries",
                p.operation, p.updater, p.changes, p.entries
            ),
            None => println!(
                "processed {} of {}: {} vulnerabilities changed, no manifest affected",
                p.operation, p.updater, p.changes
            ),
        }
    }
}

fn print_report(r: &RunReport) {
    let what = match r.outcome {
        Outcome::NotModified => "not modified".to_string(),
        Outcome::Unchanged => "unchanged".to_string(),
        Outcome::Created => format!(
            "new update operation {}",
            r.operation.as_ref().map_or("", |o| o.reference.as_str())
        ),
        Outcome::Held => format!(
            "update operation {} HELD: {} (accept: tocsin feed accept {} {})",
            r.operation.as_ref().map_or("", |o| o.reference.as_str()),
            r.held.as_deref().unwrap_or(""),
            r.updater,
            r.operation.as_ref().map_or("", |o| o.reference.as_str()),
        ),
    };
    println!(
        "{}: {what} ({} read, {} requests, {} bytes, {:.1}s{})",
        r.updater,
        r.mode,
        r.requests,
        r.bytes,
        r.elapsed.as_secs_f64(),
        r.fallback
            .as_deref()
            .map_or(String::new(), |f| format!("; full read: {f}"))
    );
    print_processed(&r.processed);
}

/// One source, now, with a progress bar on a terminal.
async fn update_one(updaters: &Updaters, name: &str) -> Result<RunReport> {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {prefix} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_prefix(name.to_string());
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let shown = bar.clone();
    let events: tocsin_updaters::Events = Arc::new(move |e| {
        let msg = match e {
            RunEvent::Downloading { url, bytes, total } => match total {
                Some(t) => format!("{url}: {} / {}", HumanBytes(bytes), HumanBytes(t)),
                None => format!("{url}: {}", HumanBytes(bytes)),
            },
            RunEvent::Records { done, total } => format!("changed records: {done}/{total}"),
            RunEvent::Reading { done, total } => match total {
                Some(t) => format!("reading records: {done}/{t}"),
                None => format!("reading records: {done}"),
            },
            RunEvent::Importing => "importing and processing".to_string(),
        };
        shown.set_message(msg);
    });
    let result = updaters.run_now(name, events).await;
    bar.finish_and_clear();
    Ok(result?)
}

/// Reads a snapshot, drawing a progress bar on a terminal.
pub fn read_snapshot_with_progress(
    name: &str,
    path: &std::path::Path,
    limits: &Limits,
) -> Result<tocsin_feeds::Snapshot> {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} records ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(format!("reading {}", path.display()));
    let progress = |p: tocsin_feeds::Progress| {
        if let Some(total) = p.total {
            bar.set_length(total);
        }
        bar.set_position(p.done);
    };
    let snapshot = tocsin_feeds::read_path_with_limits(name, path, limits, &progress)
        .with_context(|| format!("importing {}", path.display()));
    bar.finish_and_clear();
    snapshot
}

/// `tocsin notification …`
pub async fn notification(store: &dyn Store, cmd: NotificationCommand) -> Result<()> {
    match cmd {
        NotificationCommand::List { status, limit } => {
            let status = status
                .as_deref()
                .map(|s| ReceiptStatus::parse(s).ok_or_else(|| anyhow!("unknown status {s:?}")))
                .transpose()?;
            println!(
                "{:<36}  {:<16}  {:>7}  {:<20}  created",
                "id", "status", "entries", "updater"
            );
            for s in store.notification_sets(status, None, limit).await? {
                println!(
                    "{}  {:<16}  {:>7}  {:<20}  {}",
                    s.id,
                    s.status.as_str(),
                    s.entries,
                    s.updater,
                    s.created_at
                );
            }
            Ok(())
        }
        NotificationCommand::Show { id, limit } => {
            let id = Uuid::parse_str(&id).with_context(|| format!("{id:?} is not a UUID"))?;
            let info = store
                .notification_set(id)
                .await?
                .ok_or_else(|| anyhow!("notification {id} not found"))?;
            println!(
                "notification {} from {} ({} entries, {})",
                info.id,
                info.updater,
                info.entries,
                info.status.as_str()
            );
            if let Some((entries, _)) = store.notification_page(id, 0, limit).await? {
                for n in entries {
                    println!(
                        "  {:<8} {}  {} [{}] fixed in {:?}",
                        n.reason.as_str(),
                        n.manifest,
                        n.vulnerability.name,
                        n.vulnerability.severity,
                        n.vulnerability.fixed_in_version
                    );
                }
            }
            for a in store.attempts(id).await? {
                println!(
                    "  attempt {} on {}: {} ({} ms){}",
                    a.at,
                    a.channel,
                    serde_json::to_value(&a.outcome)?["outcome"],
                    a.duration_ms,
                    a.error.map(|e| format!(": {e}")).unwrap_or_default()
                );
            }
            Ok(())
        }
        NotificationCommand::Ack { id } => {
            let id = Uuid::parse_str(&id).with_context(|| format!("{id:?} is not a UUID"))?;
            if !store
                .delete_notification_set(id, time::OffsetDateTime::now_utc())
                .await?
            {
                bail!("notification {id} not found (or already acknowledged)");
            }
            println!("acknowledged {id}");
            Ok(())
        }
    }
}
