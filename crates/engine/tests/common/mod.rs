//! Helpers shared by the engine's integration tests: locating the shared data, indexing real
//! inventories and reading whole notification sets.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use tocsin_engine::{Engine, EngineConfig};
use tocsin_model::Digest;
use tocsin_store::Store;
use uuid::Uuid;

pub use tocsin_testdata::{dir as data, snapshots};

/// A fresh engine over an embedded store in `dir`.
pub async fn engine(dir: &Path, cfg: EngineConfig) -> Engine {
    let store: Arc<dyn Store> = Arc::new(tocsin_store_sqlite::SqliteStore::open(dir).unwrap());
    Engine::open(store, cfg).await.unwrap()
}

/// Indexes an inventory file; the digest is the file's own for formats that carry none.
pub async fn index(engine: &Engine, path: &Path, distribution: Option<&str>) -> Digest {
    let bytes = std::fs::read(path).unwrap();
    let carries_digest = path.to_string_lossy().contains("/clair/");
    let digest = (!carries_digest).then(|| Digest::sha256_of(&bytes));
    let m = tocsin_inventory::parse(tocsin_inventory::Input {
        bytes: &bytes,
        format: None,
        content_type: None,
        digest,
        distribution,
        labels: BTreeMap::from([("file".to_string(), path.display().to_string())]),
    })
    .unwrap();
    engine.put_manifest(&m).await.unwrap();
    m.digest
}

/// Imports a snapshot path and processes it.
pub async fn import(engine: &Engine, updater: &str, path: &Path) -> Vec<tocsin_engine::Processed> {
    let s = tocsin_feeds::read_path(updater, path, &|_| {}).unwrap();
    engine
        .import(updater, &s.fingerprint, &s.vulnerabilities)
        .await
        .unwrap();
    engine.process_pending().await.unwrap()
}

/// (manifest, reason, vulnerability name, package name) of every entry of a set.
pub async fn entries(store: &dyn Store, set: Uuid) -> BTreeSet<(Digest, String, String, String)> {
    let mut out = BTreeSet::new();
    let mut after = 0;
    loop {
        let (page, next) = store
            .notification_page(set, after, 997)
            .await
            .unwrap()
            .unwrap();
        for n in page {
            let pkg = n.vulnerability.package.map(|p| p.name).unwrap_or_default();
            assert!(
                out.insert((
                    n.manifest,
                    n.reason.as_str().to_string(),
                    n.vulnerability.name,
                    pkg
                )),
                "an entry appears twice"
            );
        }
        match next {
            Some(n) => after = n,
            None => return out,
        }
    }
}

/// (vulnerability name, package name) pairs of a manifest's vulnerability report.
pub async fn report(engine: &Engine, d: &Digest) -> BTreeSet<(String, String)> {
    let r = engine.vulnerability_report(d).await.unwrap().unwrap();
    r.vulnerabilities
        .values()
        .map(|v| {
            (
                v.name.clone(),
                v.package
                    .as_ref()
                    .map(|p| p.name.clone())
                    .unwrap_or_default(),
            )
        })
        .collect()
}
