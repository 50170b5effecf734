//! Where the shared real-world data lives, for tests and benchmarks.
//!
//! The data (`inventories/`, `osv/`, `updates/`, `versions/`) is read in place from the
//! `shared/data` folder beside the repository, never copied into it. `TOCSIN_SHARED_DATA`
//! points elsewhere. Tests skip, saying why, when the folder is absent; they never fail for it.
//!
//! Features: `tls` (module `tls`, a throw-away certificate authority) and `osv-mirror` (module
//! `osv_mirror`, a local HTTP server in the OSV.dev export layout with fault injection, for the
//! updaters' tests).
#![deny(missing_docs)]

use std::path::{Path, PathBuf};

#[cfg(feature = "osv-mirror")]
pub mod osv_mirror;
#[cfg(feature = "tls")]
pub mod tls;

/// The environment variable that overrides the location.
pub const ENV: &str = "TOCSIN_SHARED_DATA";

/// The data folder, or `None` after printing why (so that the caller can skip).
pub fn dir() -> Option<PathBuf> {
    let dir = match std::env::var_os(ENV) {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"),
    };
    if dir.join("inventories").is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "skipping: shared data folder {} not found (set {ENV} to point at it)",
            dir.display()
        );
        None
    }
}

/// The snapshots of one update sequence (`updates/<feed>/*.tar.gz`), oldest first.
pub fn snapshots(data: &Path, feed: &str) -> Vec<PathBuf> {
    let folder = data.join("updates").join(feed);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&folder)
        .unwrap_or_else(|e| panic!("reading {}: {e}", folder.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".tar.gz"))
        .collect();
    v.sort();
    v
}
