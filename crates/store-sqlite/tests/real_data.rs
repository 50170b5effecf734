//! The embedded store on real data: consecutive Debian feed snapshots, Clair IndexReports, and a
//! notification set of 100,000 entries built from real advisories and image digests.
use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use serde::Deserialize;
use time::macros::datetime;
use time::OffsetDateTime;
use tocsin_model::change::{ChangeSet, VulnChange};
use tocsin_model::claircore::IndexReport;
use tocsin_model::inventory::{InventoryFormat, Manifest};
use tocsin_model::notification::{Notification, Reason, VulnSummary};
use tocsin_model::vuln::{
    Addressed, Affected, Event, NameKind, OsvRange, PackageSpec, RangeKind, Vulnerability,
};
use tocsin_model::{Digest, Severity};
use tocsin_store::{ImportOutcome, NewNotificationSet, ProcessedUpdate, PutOutcome, Store};
use tocsin_store_sqlite::{SqliteStore, DB_FILE};
use uuid::Uuid;

use tocsin_testdata::dir as shared_data;

fn now() -> OffsetDateTime {
    datetime!(2026-08-21 12:00 UTC)
}

// ---- a minimal OSV reader for the Debian conversion (the feeds crate owns the real one) -------

#[derive(Deserialize)]
struct Osv {
    id: String,
    #[serde(default)]
    summary: String,
    #[serde(default)]
    published: String,
    #[serde(default)]
    upstream: Vec<String>,
    #[serde(default)]
    references: Vec<OsvRef>,
    #[serde(default)]
    affected: Vec<OsvAffected>,
}

#[derive(Deserialize)]
struct OsvRef {
    url: String,
}

#[derive(Deserialize)]
struct OsvAffected {
    package: OsvPackage,
    #[serde(default)]
    ranges: Vec<OsvRangeIn>,
}

#[derive(Deserialize)]
struct OsvPackage {
    ecosystem: String,
    name: String,
    #[serde(default)]
    purl: String,
}

#[derive(Deserialize)]
struct OsvRangeIn {
    events: Vec<serde_json::Map<String, serde_json::Value>>,
}

fn to_vulns(updater: &str, osv: Osv) -> Vec<Vulnerability> {
    let links = osv
        .references
        .iter()
        .map(|r| r.url.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    osv.affected
        .into_iter()
        .map(|a| {
            let mut events = Vec::new();
            for r in &a.ranges {
                for e in &r.events {
                    for (k, v) in e {
                        let v = v.as_str().unwrap_or_default().to_string();
                        events.push(match k.as_str() {
                            "introduced" => Event::Introduced(v),
                            "fixed" => Event::Fixed(v),
                            "last_affected" => Event::LastAffected(v),
                            _ => Event::Limit(v),
                        });
                    }
                }
            }
            let fixed = events
                .iter()
                .find_map(|e| match e {
                    Event::Fixed(v) => Some(v.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            Vulnerability {
                updater: updater.into(),
                name: osv.id.clone(),
                aliases: osv.upstream.clone(),
                description: osv.summary.clone(),
                links: links.clone(),
                issued: osv.published.clone(),
                severity: String::new(),
                normalized_severity: Severity::Unknown,
                package: PackageSpec {
                    ecosystem: a.package.ecosystem,
                    name: a.package.name,
                    kind: if a.package.purl.contains("arch=source") {
                        NameKind::Source
                    } else {
                        NameKind::Any
                    },
                },
                distribution: None,
                repository: None,
                fixed_in_version: fixed,
                affected: Affected::Osv {
                    ranges: vec![OsvRange {
                        kind: RangeKind::Ecosystem,
                        events,
                    }],
                    versions: vec![],
                },
            }
        })
        .collect()
}

/// A snapshot tarball as (fingerprint, vulnerabilities).
fn read_snapshot(updater: &str, path: &Path) -> (String, Vec<Addressed>) {
    let bytes = std::fs::read(path).unwrap();
    let fingerprint = tocsin_model::sha256_hex(&bytes);
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes.as_slice()));
    let mut vulns = Vec::new();
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().display().to_string();
        if !name.ends_with(".json") {
            continue;
        }
        let mut text = String::new();
        e.read_to_string(&mut text).unwrap();
        let osv: Osv = serde_json::from_str(&text)
            .unwrap_or_else(|err| panic!("{}: {name}: {err}", path.display()));
        vulns.extend(to_vulns(updater, osv).into_iter().map(Addressed::new));
    }
    (fingerprint, vulns)
}

fn snapshots(data: &Path, feed: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(data.join("updates").join(feed))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".tar.gz"))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn debian_snapshots_import_whole_and_deduplicated() {
    let Some(data) = shared_data() else { return };
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let mut distinct = BTreeSet::new();
    let mut last = None;
    for path in snapshots(&data, "debian") {
        let (fp, vulns) = read_snapshot("debian", &path);
        let ids: BTreeSet<_> = vulns.iter().map(|v| v.vuln().id()).collect();
        distinct.extend(ids.iter().cloned());
        let started = Instant::now();
        let out = store
            .import_snapshot("debian", &fp, &vulns, now())
            .await
            .unwrap();
        let took = started.elapsed();
        eprintln!(
            "{}: {} vulnerabilities ({} distinct) imported in {took:?}",
            path.display(),
            vulns.len(),
            ids.len()
        );
        let ImportOutcome::Created(op) = out else {
            panic!("{}: expected a new operation", path.display())
        };
        let op = Uuid::parse_str(&op.reference).unwrap();
        let stored = store.operation_vulnerabilities(op).await.unwrap();
        assert_eq!(stored, ids.iter().cloned().collect::<Vec<_>>());
        last = Some((fp, vulns, op));
    }
    let Some((fp, vulns, op)) = last else {
        panic!("no debian snapshots found")
    };
    match store
        .import_snapshot("debian", &fp, &vulns, now())
        .await
        .unwrap()
    {
        ImportOutcome::Unchanged(o) => assert_eq!(o.reference, op.to_string()),
        other => panic!("re-import should be unchanged, got {other:?}"),
    }
    // Each distinct record is stored once however many snapshots hold it.
    let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
    let rows: i64 = conn
        .query_row("SELECT COUNT(*) FROM vulnerability", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows as usize, distinct.len());
    // Bodies come back exactly.
    let sample: Vec<_> = vulns.iter().step_by(97).map(|v| v.vuln().clone()).collect();
    let ids: Vec<_> = sample.iter().map(Vulnerability::id).collect();
    let got = store.vulnerabilities(&ids).await.unwrap();
    assert_eq!(got.into_iter().map(|(_, v)| v).collect::<Vec<_>>(), sample);
    assert_eq!(
        store
            .collect_garbage(now(), Duration::ZERO)
            .await
            .unwrap()
            .vulnerabilities,
        0
    );
}

fn clair_manifests(data: &Path) -> Vec<Manifest> {
    let mut out = Vec::new();
    let dir = data.join("inventories/clair");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    for path in paths {
        let text = std::fs::read_to_string(&path).unwrap();
        let report: IndexReport =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let digest = Digest::parse(&report.manifest_hash)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        out.push(Manifest {
            digest,
            labels: [(
                "source".to_string(),
                path.file_name().unwrap().to_string_lossy().into_owned(),
            )]
            .into(),
            format: InventoryFormat::IndexReport,
            report,
        });
    }
    out
}

#[tokio::test]
async fn clair_index_reports_round_trip() {
    let Some(data) = shared_data() else { return };
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let manifests = clair_manifests(&data);
    assert_eq!(manifests.len(), 3);
    for m in &manifests {
        let (_, outcome) = store.put_manifest(m, now()).await.unwrap();
        assert_eq!(outcome, PutOutcome::Created);
        assert_eq!(
            store.get_manifest(&m.digest).await.unwrap().as_ref(),
            Some(m)
        );
        assert_eq!(
            store.put_manifest(m, now()).await.unwrap().1,
            PutOutcome::Unchanged
        );
    }
    let listed = store.list_manifests(None, 10).await.unwrap();
    for s in &listed {
        let m = manifests.iter().find(|m| m.digest == s.digest).unwrap();
        assert_eq!(s.packages, m.report.packages.len() as u64);
    }
    assert!(listed.iter().any(|s| s.packages >= 91));
}

/// The change feed over real IndexReports: every stored report once, a relabelled one moved to
/// the end, a deleted one recorded as such, and a re-stored digest under a new id; replaying the
/// feed gives exactly the stored manifests, also after reopening the database.
#[tokio::test]
async fn clair_index_reports_change_feed() {
    let Some(data) = shared_data() else { return };
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let manifests = clair_manifests(&data);
    let mut ids = Vec::new();
    for m in &manifests {
        ids.push(store.put_manifest(m, now()).await.unwrap().0);
        store.put_manifest(m, now()).await.unwrap();
    }
    let shape = |feed: &[tocsin_store::ManifestChange]| -> Vec<(u32, Digest, bool)> {
        feed.iter()
            .map(|c| (c.id, c.digest.clone(), c.deleted))
            .collect()
    };
    let feed = store.manifest_changes(0, 100).await.unwrap();
    let created: Vec<_> = manifests
        .iter()
        .zip(&ids)
        .map(|(m, id)| (*id, m.digest.clone(), false))
        .collect();
    assert_eq!(
        shape(&feed),
        created,
        "unchanged re-puts must not be recorded"
    );
    let before = store.manifest_change_head().await.unwrap();

    let mut relabelled = manifests[0].clone();
    relabelled.labels.insert("team".into(), "platform".into());
    store.put_manifest(&relabelled, now()).await.unwrap();
    assert!(store.delete_manifest(&manifests[1].digest).await.unwrap());
    let (again, outcome) = store.put_manifest(&manifests[1], now()).await.unwrap();
    assert_eq!(outcome, PutOutcome::Created);
    let since = store.manifest_changes(before, 100).await.unwrap();
    assert_eq!(
        shape(&since),
        vec![
            (ids[0], manifests[0].digest.clone(), false),
            (ids[1], manifests[1].digest.clone(), true),
            (again, manifests[1].digest.clone(), false),
        ]
    );
    drop(store);

    let store = SqliteStore::open(dir.path()).unwrap();
    let mut replayed = std::collections::BTreeMap::new();
    let mut after = 0;
    loop {
        let page = store.manifest_changes(after, 2).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.seq;
        for c in page {
            if c.deleted {
                replayed.remove(&c.id);
            } else {
                replayed.insert(c.id, c.digest);
            }
        }
    }
    let stored: std::collections::BTreeMap<_, _> = store
        .index_entries_after(None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.id, e.digest))
        .collect();
    assert_eq!(replayed, stored);
    assert_eq!(store.manifest_change_head().await.unwrap(), after);
}

#[tokio::test]
async fn a_hundred_thousand_entry_set_commits_quickly_and_pages_completely() {
    let Some(data) = shared_data() else { return };
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let path = snapshots(&data, "debian").pop().unwrap();
    let (fp, vulns) = read_snapshot("debian", &path);
    let ImportOutcome::Created(op) = store
        .import_snapshot("debian", &fp, &vulns, now())
        .await
        .unwrap()
    else {
        panic!("expected a new operation")
    };
    let op = Uuid::parse_str(&op.reference).unwrap();
    let mut digests: Vec<Digest> = clair_manifests(&data)
        .into_iter()
        .map(|m| m.digest)
        .collect();
    digests.extend((0..97u32).map(|n| Digest::sha256_of(&n.to_be_bytes())));
    // 1,000 real advisories × 100 images.
    let entries: Vec<Notification> = vulns
        .iter()
        .take(1000)
        .flat_map(|v| {
            let summary = VulnSummary::of(v);
            digests.iter().map(move |d| Notification {
                id: Uuid::new_v4(),
                manifest: d.clone(),
                reason: Reason::Added,
                vulnerability: summary.clone(),
            })
        })
        .collect();
    assert_eq!(entries.len(), 100_000);
    let set = Uuid::new_v4();
    let p = ProcessedUpdate {
        updater: "debian".into(),
        prev: None,
        cur: op,
        change_set: ChangeSet {
            updater: "debian".into(),
            prev: None,
            cur: op,
            changes: vulns
                .iter()
                .take(1000)
                .map(|v| VulnChange {
                    old: None,
                    new: Some(v.id().clone()),
                    old_affected: Default::default(),
                    new_affected: (0..digests.len() as u32).collect(),
                })
                .collect(),
            manifests: (0..).zip(digests.iter().cloned()).collect(),
        },
        notifications: Some(NewNotificationSet {
            id: set,
            updater: "debian".into(),
            operation: Some(op),
            entries: entries.clone(),
            channels: vec!["webhook".into(), "amqp".into()],
            created_at: now(),
        }),
        legacy: None,
    };
    let started = Instant::now();
    store.commit_processed(&p).await.unwrap();
    let took = started.elapsed();
    eprintln!("committed a 100,000-entry set in {took:?}");
    // A figure, not an assertion (timings belong in BENCHMARKS.md).

    let started = Instant::now();
    let mut after = 0;
    let mut seen = 0usize;
    loop {
        let (page, next) = store
            .notification_page(set, after, 1000)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(page[..], entries[seen..seen + page.len()]);
        seen += page.len();
        match next {
            Some(n) => after = n,
            None => break,
        }
    }
    eprintln!("paged through it in {:?}", started.elapsed());
    assert_eq!(seen, 100_000);
    assert_eq!(store.change_set(op).await.unwrap(), Some(p.change_set));
    let started = Instant::now();
    assert!(store.delete_notification_set(set, now()).await.unwrap());
    let stats = store
        .collect_garbage(now(), Duration::from_secs(3600))
        .await
        .unwrap();
    eprintln!("deleted and collected it in {:?}", started.elapsed());
    assert_eq!(stats.sets, 1);
    let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
    let left: i64 = conn
        .query_row("SELECT COUNT(*) FROM notification_entry", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 0);
}
