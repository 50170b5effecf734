//! tocsin's pipeline, from a new update operation to a committed notification set:
//!
//! ```text
//! update operation ──▶ detector ──▶ change set ──▶ projections ──▶ one commit
//!  (store)             (diff vs the    (per vuln:    (v4 entries)    (change set + set +
//!                       last processed  old/new +                      receipts + processed
//!                       operation)      affected)                      mark, compare-and-set)
//! ```
//!
//! [`Engine`] owns the two in-memory indexes (manifests for the reverse direction, current
//! vulnerabilities for the forward one), keeps them in step with the store, and is the facade the
//! HTTP API and the CLI call. Processing is exactly-once: every operation of an updater is
//! processed in order, each diffed against the last one processed, and the result is committed
//! by one compare-and-set transaction ([`tocsin_store::Store::commit_processed`]), so a crash at
//! any point followed by a restart neither loses nor duplicates a set, and several processors
//! never both commit one operation.
//!
//! Clair v2/v3 notifications ([`legacy`]) are committed in the same transaction — one name per
//! changed vulnerability that names a manifest, pointing at its change, plus the layer table that
//! fixes each manifest's index — and their pages are projected from the stored change set on
//! request ([`Engine::legacy_page`]), never recomputed from the index.
//!
//! Fronting a Clair ([`AffectedManifests`]): when the engine is given an affectedness source,
//! the manifests each changed vulnerability affects come from it (a Clair indexer's
//! affected-manifest lookup) instead of tocsin's own index. The change set is built from its
//! answer the same way, with manifest ids local to the change set, and stays the single source
//! of the v4 projection; no v2/v3 notifications are made (their layer table needs tocsin's own
//! inventory, and Clair v4 has none either).
#![deny(missing_docs)]

mod affected;
mod detect;
mod engine;
pub mod legacy;
pub mod projection;

pub use affected::AffectedManifests;
pub use engine::{Engine, EngineConfig, FirstUpdate, Guard, Processed};

/// What can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] tocsin_store::StoreError),
    /// Stored state that should exist does not (e.g. an operation's vulnerabilities).
    #[error("inconsistent store: {0}")]
    Inconsistent(String),
    /// A manifest or feed was rejected.
    #[error("invalid input: {0}")]
    Invalid(String),
    /// The affectedness source ([`AffectedManifests`]) failed: nothing was committed, and the
    /// operation is processed again on the next pass.
    #[error("asking which manifests are affected: {0}")]
    Affectedness(String),
}

/// Publishes one delivery-backlog gauge (`tocsin_delivery_backlog{state}`).
pub fn record_backlog(state: &'static str, n: u64) {
    metrics::gauge!("tocsin_delivery_backlog", "state" => state).set(n as f64);
}
