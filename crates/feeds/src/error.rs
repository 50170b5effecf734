use std::path::PathBuf;

use tocsin_model::limits::LimitExceeded;

/// Why a snapshot could not be read. Every variant names the file (inside an archive: the entry's
/// path) and, for record errors, the JSON path or YAML location of the offending value.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// The file or directory could not be read.
    // The I/O error is part of the message, not a `source`: error chains would print it twice.
    #[error("{}: {error}", path.display())]
    Io {
        /// What was being read.
        path: PathBuf,
        /// The underlying error.
        error: std::io::Error,
    },
    /// The archive itself (gzip, tar or zip framing) is corrupt or unreadable.
    #[error("{archive}: {message}")]
    Archive {
        /// The archive (a path, or `(upload)` for bytes).
        archive: String,
        /// What went wrong, with the entry being read when known.
        message: String,
    },
    /// A record does not follow the OSV schema (or the claircore shape), or holds a value tocsin
    /// cannot use.
    #[error("{file}: {}{message}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
    Record {
        /// The file (inside an archive: the entry's path).
        file: String,
        /// The JSON path of the offending value (`affected[0].ranges[1].type`), or "" for the
        /// document as a whole.
        path: String,
        /// What was wrong (parser messages carry the line and column).
        message: String,
    },
    /// One element of a claircore vulnerability array cannot be turned into a vulnerability.
    #[error("{file}: [{index}] ({name}): {message}")]
    Element {
        /// The file holding the array.
        file: String,
        /// The element's index in the array.
        index: usize,
        /// The element's advisory name.
        name: String,
        /// What was wrong.
        message: String,
    },
    /// The input is none of the formats [`crate::SnapshotFormat`] lists.
    #[error("{file}: unrecognised snapshot format: {reason}")]
    UnrecognisedFormat {
        /// The input.
        file: String,
        /// What was seen.
        reason: String,
    },
    /// The input decompresses or expands to more than a [`Limits`](tocsin_model::limits::Limits)
    /// bound allows: a decompression bomb, or a genuine snapshot larger than `tocsin.limits`
    /// is set for. Reading stops at the bound; nothing is kept.
    #[error("{file}: {exceeded}")]
    Limit {
        /// The input (inside an archive: `archive: member`, when the member is known).
        file: String,
        /// Which bound, with its value.
        exceeded: LimitExceeded,
    },
    /// The input held no record at all. Refused because importing it would withdraw every
    /// vulnerability of the updater; this is almost always a wrong path or a truncated download.
    #[error("{file}: no vulnerability records found (an empty snapshot would remove every vulnerability of the updater)")]
    Empty {
        /// The input.
        file: String,
    },
}

impl FeedError {
    pub(crate) fn limit(file: impl Into<String>, exceeded: LimitExceeded) -> Self {
        FeedError::Limit {
            file: file.into(),
            exceeded,
        }
    }

    pub(crate) fn record(file: &str, path: impl Into<String>, message: impl Into<String>) -> Self {
        FeedError::Record {
            file: file.to_string(),
            path: path.into(),
            message: message.into(),
        }
    }
}
