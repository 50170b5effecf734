//! The CLI subcommands that work on the store directly (`manifest`, `feed`, `notification`).
use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use tocsin_engine::Engine;
use tocsin_model::inventory::InventoryFormat;
use tocsin_model::notification::ReceiptStatus;
use tocsin_model::Digest;
use tocsin_store::{ImportOutcome, PutOutcome};
use uuid::Uuid;

use crate::cli::{FeedCommand, ManifestAdd, ManifestCommand, NotificationCommand};

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

/// `tocsin manifest …`
pub async fn manifest(engine: &Engine, cmd: ManifestCommand) -> Result<()> {
    match cmd {
        ManifestCommand::Add(a) => manifest_add(engine, a).await,
        ManifestCommand::List { limit } => {
            let list = engine.store().list_manifests(None, limit).await?;
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
            if !engine.delete_manifest(&d).await? {
                bail!("manifest {d} not found");
            }
            println!("removed {d}");
            Ok(())
        }
        ManifestCommand::Report { digest } => {
            let d = Digest::parse(&digest)?;
            let report = engine
                .vulnerability_report(&d)
                .await?
                .ok_or_else(|| anyhow!("manifest {d} not found"))?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
    }
}

async fn manifest_add(engine: &Engine, a: ManifestAdd) -> Result<()> {
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
    let (id, outcome) = engine.put_manifest(&manifest).await?;
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

/// `tocsin feed …`
pub async fn feed(engine: &Engine, cmd: FeedCommand) -> Result<()> {
    match cmd {
        FeedCommand::Import { name, path } => {
            let snapshot = read_snapshot_with_progress(&name, &path)?;
            let outcome = engine
                .import(&name, &snapshot.fingerprint, &snapshot.vulnerabilities)
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
            }
            for p in engine.process_pending().await? {
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
                for op in store.update_operations(&u.name).await? {
                    println!(
                        "  {}  {}  {}",
                        op.reference,
                        op.date,
                        &op.fingerprint[..op.fingerprint.len().min(16)]
                    );
                }
            }
            Ok(())
        }
    }
}

/// Reads a snapshot, drawing a progress bar on a terminal.
pub fn read_snapshot_with_progress(
    name: &str,
    path: &std::path::Path,
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
    let snapshot = tocsin_feeds::read_path(name, path, &progress)
        .with_context(|| format!("importing {}", path.display()));
    bar.finish_and_clear();
    snapshot
}

/// `tocsin notification …`
pub async fn notification(engine: &Engine, cmd: NotificationCommand) -> Result<()> {
    let store = engine.store();
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
