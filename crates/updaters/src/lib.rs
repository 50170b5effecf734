//! tocsin follows vulnerability feeds itself (`tocsin.updaters`).
//!
//! Each configured *source* is one updater (`osv/debian`, or any name) with a location: an
//! OSV.dev-layout ecosystem (`<base>/<Ecosystem>/all.zip`, `modified_id.csv`, `<ID>.json`), an
//! http(s) URL of a snapshot (tar.gz, zip, JSON), or a local path (directory, archive, JSON).
//! [`Updaters`] runs each source on its period in a task of its own, so one failing source never
//! delays the others, and imports what it fetched through the engine, whose storm guard holds a
//! snapshot that would withdraw too much.
//!
//! Design choices, and why:
//! - **Conditional fetches.** The validators of every download (ETag, Last-Modified) are kept
//!   with the source's state in the store and sent back; a 304 costs one request and creates
//!   nothing. They are trusted only while the updater's latest (or held) operation is the
//!   snapshot they describe, so a database restored from a backup or a snapshot pushed by hand
//!   never leaves tocsin believing it is current.
//! - **Incremental OSV** ([`tocsin_feeds::export`]): after a full `all.zip`, a run reads `modified_id.csv` and
//!   fetches only the records modified since the newest timestamp of the previous run (that
//!   timestamp included: two records of one second may straddle an export), then builds the
//!   next snapshot from the previous operation's records with those advisories replaced.
//!   Every record depends on its advisory alone, so the result is the snapshot the full archive
//!   gives (same fingerprint, same change sets); a missing, malformed, unsorted or too long list,
//!   or a listed record that is missing or names another id, falls back to the full archive, as
//!   does a run a day after the last full one (records deleted outright never appear in the
//!   list).
//! - **Bounded.** Downloads stream to a temporary file under `max_download_size`, within a
//!   connect timeout and a whole-transfer timeout, then go through the feed readers' bounds
//!   (`tocsin.limits`) and the all-or-nothing import.
//! - **Retries** with exponential backoff and full jitter on transport errors, timeouts, 408,
//!   429 and 5xx; other answers fail at once. A failed run is recorded with its time and reason
//!   and retried sooner than the period (one minute, doubling, capped at the period).
//! - **One process at a time.** A run holds the source's lease in the store
//!   ([`tocsin_store::Store::claim_source`]); the schedule (`next_run`) lives there too, so
//!   processes sharing a PostgreSQL database take turns instead of each fetching every period.
//!   A process killed mid-fetch stops renewing; another takes over when the lease expires, and
//!   identical content never creates a second update operation.
//!
//! No crate does conditional, resumable-by-lease feed following; the HTTP is reqwest's.
#![deny(missing_docs)]

mod clair;
mod config;
mod error;
mod http;
mod run;
mod state;

pub use clair::{
    answers as clair_answers, Clair, ClairConfig, ClairFollower, ClairReport, Gap, Mirrored,
    CLAIR_SOURCE,
};
pub use config::{FetchOptions, Location, SourceKind, SourceSpec, UpdatersConfig, OSV_BASE};
pub use error::UpdaterError;
pub use run::{Events, Outcome, RunEvent, RunReport, SourceStatus, Updaters};
