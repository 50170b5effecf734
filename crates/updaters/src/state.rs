//! What a source remembers between runs, kept in the store ([`tocsin_store::SourceState::state`])
//! as JSON so that every process sharing the database continues where another left off.
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// HTTP validators of one downloaded file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validators {
    /// `ETag`, sent back as `If-None-Match`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// `Last-Modified`, sent back as `If-Modified-Since`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
}

impl Validators {
    pub(crate) fn is_empty(&self) -> bool {
        self.etag.is_none() && self.last_modified.is_none()
    }
}

/// A source's remembered state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SourceMemory {
    /// Where the source was fetched from: everything below describes that location only (a
    /// configuration pointing the updater elsewhere starts afresh).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// The fingerprint of the snapshot everything below describes; validators and cursor are
    /// trusted only while the updater's latest or held operation has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// Validators of the snapshot file (a URL source, or an OSV ecosystem's `all.zip`).
    #[serde(default, skip_serializing_if = "Validators::is_empty")]
    pub archive: Validators,
    /// Validators of `modified_id.csv`.
    #[serde(default, skip_serializing_if = "Validators::is_empty")]
    pub list: Validators,
    /// The newest `modified` time the snapshot includes (OSV sources).
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub cursor: Option<OffsetDateTime>,
    /// When the full archive was last read (OSV sources).
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_full: Option<OffsetDateTime>,
    /// Records listed in `modified_id.csv` that yield no vulnerability (withdrawn, or naming no
    /// package), sorted: with the previous snapshot's advisories they are every id the list may
    /// hold with a time before the cursor (OSV sources).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub silent: Vec<String>,
    /// A local file's size and modification time, to skip re-reading it unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

impl SourceMemory {
    /// Reads the stored text; anything unreadable (another version's, or damaged) is forgotten:
    /// the next run is then a full, unconditional one, which is always correct.
    pub(crate) fn parse(text: &str) -> SourceMemory {
        if text.trim().is_empty() {
            return SourceMemory::default();
        }
        serde_json::from_str(text).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "forgetting an unreadable updater state; the next fetch is a full one");
            SourceMemory::default()
        })
    }

    pub(crate) fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let m = SourceMemory {
            base: Some("ab".into()),
            archive: Validators {
                etag: Some("\"x\"".into()),
                last_modified: None,
            },
            cursor: Some(time::macros::datetime!(2024-01-02 03:04:05.5 UTC)),
            ..SourceMemory::default()
        };
        assert_eq!(SourceMemory::parse(&m.to_text()), m);
        assert_eq!(SourceMemory::parse(""), SourceMemory::default());
        assert_eq!(SourceMemory::parse("{not json"), SourceMemory::default());
    }
}
