//! tocsin's vocabulary, shared by every stage of the flow and free of I/O.
//!
//! - [`Digest`] and [`Severity`]: the two value types every wire format carries.
//! - [`claircore`]: the JSON shapes Clair speaks (IndexReport, Vulnerability, …), kept
//!   byte-compatible so that Clair's own files and clients work unchanged.
//! - [`inventory`]: how a manifest is held (always as a claircore IndexReport, whatever format it
//!   arrived in) and the [`inventory::InstalledPackage`] view the matching engine uses.
//! - [`vuln`]: tocsin's own vulnerability record, content-addressed, with the exact affected-version
//!   rule it came with (OSV ranges or claircore's `fixed_in_version`/`range`).
//! - [`change`]: the change set — the single source of truth from which every notification format
//!   is projected.
//! - [`notification`]: Clair v4 notification entries and pages.
//! - [`limits`]: bounds on what outside bytes may decompress or expand to, and the reader that
//!   enforces them.
#![deny(missing_docs)]

pub mod change;
pub mod claircore;
mod digest;
pub mod ecosystem;
pub mod inventory;
pub mod limits;
pub mod notification;
mod severity;
pub mod vuln;

pub use digest::{Digest, DigestError};
pub use severity::Severity;

/// Lower-case hex SHA-256 of `bytes`; the one content hash used for fingerprints and vulnerability ids.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest as _, Sha256};
    hex::encode(Sha256::digest(bytes))
}
