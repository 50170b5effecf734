//! Shared set-up of the updaters' tests: engines over throw-away stores with the real
//! inventories, sources over the OSV mirror, and a comparable view of what processing produced.
#![allow(dead_code)]
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tocsin_engine::{Engine, EngineConfig};
use tocsin_model::Digest;
use tocsin_store::Store;
use tocsin_updaters::{
    Events, FetchOptions, Location, SourceKind, SourceSpec, Updaters, UpdatersConfig,
};

/// An engine over an embedded store in a temporary folder.
pub struct Side {
    pub engine: Arc<Engine>,
    _dir: tempfile::TempDir,
}

pub fn withdraw_guard(fraction: Option<f64>) -> EngineConfig {
    EngineConfig {
        withdraw_guard: fraction,
        ..EngineConfig::default()
    }
}

pub async fn side(cfg: EngineConfig) -> Side {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(tocsin_store_sqlite::SqliteStore::open(dir.path()).unwrap());
    Side {
        engine: Arc::new(Engine::open(store, cfg).await.unwrap()),
        _dir: dir,
    }
}

/// Indexes every real inventory a feed can affect.
pub async fn load_inventories(engine: &Engine, data: &Path) {
    let files: &[(&str, Option<&str>)] = &[
        ("inventories/cargo/tansu.Cargo.lock", None),
        ("inventories/cargo/rust-rdkafka.Cargo.lock", None),
        (
            "inventories/clair/indexreport-buster-jackson-databind.json",
            None,
        ),
        (
            "inventories/clair/docker.io-library-debian-10.index.json",
            None,
        ),
        (
            "inventories/clair/clair-rhel8-v3.5.5-4-indexreport.json",
            None,
        ),
        ("inventories/dpkg/debian-only.status", Some("debian:11")),
    ];
    for (file, distribution) in files {
        let path = data.join(file);
        let bytes = std::fs::read(&path).unwrap();
        let digest = (!file.contains("/clair/")).then(|| Digest::sha256_of(&bytes));
        let m = tocsin_inventory::parse(tocsin_inventory::Input {
            bytes: &bytes,
            format: None,
            content_type: None,
            digest,
            distribution: *distribution,
            labels: BTreeMap::new(),
        })
        .unwrap();
        engine.put_manifest(&m).await.unwrap();
    }
    // No real AlmaLinux 9 inventory is in the shared data: an IndexReport of an image holding,
    // at an old version, every package the last AlmaLinux step names, so that its changes
    // reach a manifest.
    let bytes = almalinux_report(data);
    let m = tocsin_inventory::parse(tocsin_inventory::Input {
        bytes: &bytes,
        format: None,
        content_type: None,
        digest: None,
        distribution: None,
        labels: BTreeMap::new(),
    })
    .unwrap();
    engine.put_manifest(&m).await.unwrap();
}

fn almalinux_report(data: &Path) -> Vec<u8> {
    let steps = tocsin_testdata::snapshots(data, "almalinux9");
    let mut names = std::collections::BTreeSet::new();
    if let Some(last) = steps.last() {
        for (_, bytes) in tocsin_testdata::osv_mirror::read_records(last).unwrap() {
            let record: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            for a in record["affected"].as_array().into_iter().flatten() {
                if let Some(name) = a["package"]["name"].as_str() {
                    names.insert(name.to_string());
                }
            }
        }
    }
    let packages: serde_json::Map<String, serde_json::Value> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let id = (i + 1).to_string();
            let p = serde_json::json!({"id": id, "name": name, "version": "0.0.1-0.el9",
                "kind": "binary", "arch": "x86_64"});
            (id, p)
        })
        .collect();
    let environments: serde_json::Map<String, serde_json::Value> = packages
        .keys()
        .map(|id| {
            let env = serde_json::json!([{"package_db": "var/lib/rpm",
                "introduced_in": format!("sha256:{:064x}", 2), "distribution_id": "1"}]);
            (id.clone(), env)
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "manifest_hash": format!("sha256:{:064x}", 0xa1a9),
        "state": "IndexFinished",
        "success": true,
        "err": "",
        "packages": packages,
        "distributions": {"1": {"id": "1", "did": "almalinux", "name": "AlmaLinux",
            "version": "9.2 (Turquoise Kodkod)", "version_id": "9.2", "version_code_name": "",
            "arch": "", "cpe": "", "pretty_name": "AlmaLinux 9.2 (Turquoise Kodkod)"}},
        "repository": {},
        "environments": environments,
    }))
    .unwrap()
}

/// Quick retries, so that fault tests take milliseconds.
pub fn fast_fetch() -> FetchOptions {
    FetchOptions {
        connect_timeout: Duration::from_secs(5),
        timeout: Duration::from_secs(60),
        retries: 2,
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        max_download_size: 1 << 30,
    }
}

pub fn osv_source(updater: &str, base: &str, ecosystem: &str) -> SourceSpec {
    SourceSpec {
        name: updater.to_string(),
        kind: SourceKind::Osv {
            base: Location::parse(base).unwrap(),
            ecosystem: ecosystem.to_string(),
        },
        interval: Duration::from_secs(3600),
        headers: Vec::new(),
    }
}

pub fn url_source(updater: &str, url: &str) -> SourceSpec {
    SourceSpec {
        name: updater.to_string(),
        kind: SourceKind::Snapshot(Location::parse(url).unwrap()),
        interval: Duration::from_secs(3600),
        headers: Vec::new(),
    }
}

pub fn config(sources: Vec<SourceSpec>) -> UpdatersConfig {
    UpdatersConfig {
        sources,
        fetch: fast_fetch(),
        ..UpdatersConfig::default()
    }
}

pub fn updaters(engine: &Arc<Engine>, config: UpdatersConfig) -> Updaters {
    Updaters::new(Arc::clone(engine), config, tocsin_feeds::Limits::default()).unwrap()
}

pub fn quiet() -> Events {
    Arc::new(|_| {})
}

/// What the updater's newest operation is and what processing it produced, in a form that does
/// not depend on the store (operation and set ids are left out).
#[derive(Debug, PartialEq)]
pub struct Produced {
    pub fingerprint: String,
    pub operations: u64,
    pub changes: serde_json::Value,
    pub notifications: Vec<serde_json::Value>,
}

impl Produced {
    /// Whether processing notified anything (so that the comparison says something).
    pub fn notified(&self) -> bool {
        !self.notifications.is_empty()
    }
}

pub async fn produced(engine: &Engine, updater: &str) -> Produced {
    let store = engine.store();
    let info = store
        .updaters()
        .await
        .unwrap()
        .into_iter()
        .find(|u| u.name == updater)
        .expect("updater known");
    let latest = info.latest.expect("an operation");
    let op: uuid::Uuid = latest.reference.parse().unwrap();
    assert_eq!(
        info.processed,
        Some(op),
        "the newest operation is processed"
    );
    let cs = store.change_set(op).await.unwrap().expect("a change set");
    let changes: Vec<serde_json::Value> = cs
        .changes
        .iter()
        .map(|c| {
            serde_json::json!({
                "old": c.old.as_ref().map(|v| v.0.clone()),
                "new": c.new.as_ref().map(|v| v.0.clone()),
                "old_affected": c.old_affected.iter().collect::<Vec<u32>>(),
                "new_affected": c.new_affected.iter().collect::<Vec<u32>>(),
            })
        })
        .collect();
    let changes = serde_json::json!({ "changes": changes, "manifests": cs.manifests });
    let mut notifications = Vec::new();
    for set in store.notification_sets(None, None, 10_000).await.unwrap() {
        if set.operation != Some(op) {
            continue;
        }
        let (entries, _) = store
            .notification_page(set.id, 0, 1_000_000)
            .await
            .unwrap()
            .expect("a set");
        for e in entries {
            let mut v = serde_json::to_value(e).unwrap();
            if let Some(o) = v.as_object_mut() {
                o.remove("id");
            }
            notifications.push(v);
        }
    }
    notifications.sort_by_key(|v| v.to_string());
    Produced {
        fingerprint: latest.fingerprint,
        operations: info.operations,
        changes,
        notifications,
    }
}
