//! What can go wrong following a feed.
use std::time::Duration;

use tocsin_engine::EngineError;
use tocsin_feeds::FeedError;
use tocsin_store::StoreError;

/// A failed run (or a refused request to run).
#[derive(Debug, thiserror::Error)]
pub enum UpdaterError {
    /// No source of that name is configured.
    #[error("no updater source named {0:?} is configured (see tocsin.updaters)")]
    UnknownSource(String),
    /// Another process (or run) holds the source's lease.
    #[error("updater {name}: {why}")]
    Busy {
        /// The source.
        name: String,
        /// Who holds it, until when.
        why: String,
    },
    /// The server answered with a status that is not retried, or every retry failed with one.
    #[error("{method} {url}: HTTP {status}{}", attempts_note(*attempts))]
    Status {
        /// The request method.
        method: &'static str,
        /// What was fetched.
        url: String,
        /// The last status.
        status: u16,
        /// Attempts made.
        attempts: u32,
    },
    /// The connection failed or broke, every time it was tried.
    #[error("{method} {url}: {message}{}", attempts_note(*attempts))]
    Transport {
        /// The request method.
        method: &'static str,
        /// What was fetched.
        url: String,
        /// The last error, with its causes.
        message: String,
        /// Attempts made.
        attempts: u32,
    },
    /// The transfer took longer than the timeout, every time it was tried.
    #[error("{method} {url}: no complete answer within {after:?} (tocsin.updaters.timeout){}", attempts_note(*attempts))]
    Timeout {
        /// The request method.
        method: &'static str,
        /// What was fetched.
        url: String,
        /// The timeout.
        after: Duration,
        /// Attempts made.
        attempts: u32,
    },
    /// The body is longer than allowed.
    #[error("{method} {url}: the body is larger than {limit} bytes (tocsin.updaters.max_download_size); nothing was imported")]
    TooLarge {
        /// The request method.
        method: &'static str,
        /// What was fetched.
        url: String,
        /// The bound.
        limit: u64,
    },
    /// A local file could not be read or a temporary file written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// What was fetched is not a valid snapshot: nothing was imported.
    #[error(transparent)]
    Feed(#[from] FeedError),
    /// Importing or processing failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A fronted Clair answered something tocsin cannot use.
    #[error("Clair: {what}: {message}")]
    Clair {
        /// What was asked.
        what: String,
        /// What was wrong with the answer.
        message: String,
    },
}

fn attempts_note(attempts: u32) -> String {
    if attempts > 1 {
        format!(" (after {attempts} attempts)")
    } else {
        String::new()
    }
}

impl UpdaterError {
    /// The label of `tocsin_updater_runs_total{outcome}` for this failure.
    pub fn kind(&self) -> &'static str {
        match self {
            UpdaterError::UnknownSource(_) => "unknown",
            UpdaterError::Busy { .. } => "busy",
            UpdaterError::Status { .. } => "http_status",
            UpdaterError::Transport { .. } => "transport",
            UpdaterError::Timeout { .. } => "timeout",
            UpdaterError::TooLarge { .. } => "too_large",
            UpdaterError::Io { .. } => "io",
            UpdaterError::Feed(_) => "invalid_feed",
            UpdaterError::Engine(_) | UpdaterError::Store(_) => "store",
            UpdaterError::Clair { .. } => "clair",
        }
    }
}
