//! Vulnerability feed readers: turn a feed snapshot into tocsin's vulnerability records.
//!
//! A *snapshot* is the whole content of one updater (feed) at one moment: a directory or archive
//! of OSV records, or a JSON dump of claircore Vulnerabilities. [`read_path`] and [`read_bytes`]
//! read one into a [`Snapshot`]: [`Vulnerability`] records, one per advisory × affected package,
//! sorted by their content address, plus a fingerprint over those addresses.
//!
//! Design choices, and why:
//! - **All-or-nothing.** Records are collected in memory and only a complete, valid snapshot is
//!   returned; the first malformed record fails the read with an error naming the file (inside
//!   archives: the entry) and the JSON path / YAML line of the bad value. A half-read feed
//!   imported as a snapshot would look like mass withdrawals and notify everyone.
//! - **Content addressing.** The fingerprint depends only on the set of vulnerability ids, so
//!   re-reading the same content (another archive order, other mtimes, a directory instead of a
//!   tar.gz) gives the same fingerprint and the store creates no new update operation.
//! - **Unique identities.** Downstream diffs pair old and new versions by
//!   [`Vulnerability::identity`], so a snapshot never holds two records with one identity: OSV
//!   `affected[]` entries naming the same package are merged, and remaining collisions keep the
//!   record with the smallest id (independent of input order) and are counted in
//!   [`SnapshotStats`].
//! - **Exact rules kept.** OSV ranges and version lists, and claircore's `fixed_in_version` /
//!   `range`, are stored as the feed stated them; interpreting them is the matcher's job.
//! - **Severity.** A CVSS v3.x/v4.0 base score when the record carries a vector (see
//!   [`cvss_base_score`]), else the database's own word (GHSA `MODERATE`, Red Hat-style
//!   `Important:` summaries, …), else Unknown.
//! - **Bounded decompression.** Archives (tar.gz, zip) and YAML aliases are bounded by
//!   [`Limits`] (`tocsin.limits`): per member, in total and in member count, counting bytes
//!   actually produced and never trusting a size the archive declares. A bomb stops at the bound
//!   with [`FeedError::Limit`], which names the setting and how to raise it.
//! - **Refusing empty input.** A path or upload with no record at all is an error
//!   ([`FeedError::Empty`]): it is almost always a wrong path or a truncated download, and
//!   importing it would withdraw every vulnerability of the updater.
#![deny(missing_docs)]

mod claircore;
mod eco;
mod error;
pub mod export;
mod osv;
mod severity;
mod snapshot;
mod source;

pub use claircore::from_clair;
pub use error::FeedError;
pub use severity::{cvss_base_score, InvalidCvss};
pub use snapshot::{Snapshot, SnapshotStats};
pub use source::{
    read_bytes, read_bytes_with_limits, read_path, read_path_with_limits, read_record,
    SnapshotFormat,
};
pub use tocsin_model::limits::{Limit, LimitExceeded, Limited, Limits};
pub use tocsin_model::vuln::Vulnerability;

/// Reading progress, reported after each record file (or document). Callers draw a progress bar
/// from it; `total` is `None` when it is not known up front (tar.gz streams).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Record files read so far.
    pub done: u64,
    /// Record files in the snapshot, when known.
    pub total: Option<u64>,
}
