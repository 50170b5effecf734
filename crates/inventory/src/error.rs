//! The one error type of the crate. Every variant says which format was being read and where
//! the problem is (JSON path, line number or the offending value), so that a rejected upload can
//! be fixed without guessing.
use tocsin_model::inventory::InventoryFormat;
use tocsin_model::{Digest, DigestError};

use crate::purl::PurlError;

/// The human name of a format, as error messages use it.
pub fn format_name(format: InventoryFormat) -> &'static str {
    match format {
        InventoryFormat::IndexReport => "claircore IndexReport",
        InventoryFormat::Cyclonedx => "CycloneDX SBOM",
        InventoryFormat::Spdx => "SPDX SBOM",
        InventoryFormat::DpkgStatus => "dpkg status file",
        InventoryFormat::CargoLock => "Cargo.lock",
        InventoryFormat::Pip => "pip requirements list",
    }
}

/// Why an inventory was rejected. Nothing is partially accepted: any error rejects the whole input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InventoryError {
    /// No format was given and none could be recognised from the content (and content type).
    #[error("cannot tell the inventory format: {0}")]
    UnknownFormat(String),

    /// The JSON could not be read: bad syntax, truncation, or a value of the wrong type.
    #[error("{}: invalid JSON at `{path}`: {message}", format_name(*format))]
    Json {
        /// The format being read.
        format: InventoryFormat,
        /// JSON path of the offending value (`.` for the document itself).
        path: String,
        /// 1-based line (0 when unknown).
        line: usize,
        /// 1-based column (0 when unknown).
        column: usize,
        /// serde_json's description, which includes line and column.
        message: String,
    },

    /// The document parsed but is not what its format requires (wrong `bomFormat`, unsupported
    /// `specVersion`, a Cargo.lock version we do not know, …).
    #[error("{}: `{at}`: {message}", format_name(*format))]
    Invalid {
        /// The format being read.
        format: InventoryFormat,
        /// Where (JSON path, TOML key, …).
        at: String,
        /// What was wrong.
        message: String,
    },

    /// A line of a line-oriented format (dpkg status, pip list, Cargo.lock TOML) is malformed.
    #[error("{}, line {line}: {message}", format_name(*format))]
    Line {
        /// The format being read.
        format: InventoryFormat,
        /// 1-based line number.
        line: usize,
        /// What was wrong.
        message: String,
    },

    /// A package URL could not be parsed.
    #[error("{}: `{at}`: malformed package URL {purl:?}: {error}", format_name(*format))]
    BadPurl {
        /// The format being read.
        format: InventoryFormat,
        /// Where the purl stands (JSON path).
        at: String,
        /// The purl text.
        purl: String,
        /// What is wrong with it.
        error: PurlError,
    },

    /// The format carries no manifest digest and the caller gave none.
    #[error(
        "{}: a manifest digest is required (the format carries none); supply the digest of the image or artifact this inventory describes",
        format_name(*format)
    )]
    MissingDigest {
        /// The format being read.
        format: InventoryFormat,
    },

    /// A digest (the IndexReport's `manifest_hash`) is not a valid digest.
    #[error("{}: `{at}`: {error}", format_name(*format))]
    BadDigest {
        /// The format being read.
        format: InventoryFormat,
        /// Where the digest stands.
        at: String,
        /// Why it is invalid.
        error: DigestError,
    },

    /// The IndexReport names a different manifest than the caller said it was for.
    #[error(
        "claircore IndexReport: `manifest_hash` is {in_report} but the given digest is {given}; they must agree"
    )]
    DigestMismatch {
        /// The report's `manifest_hash`.
        in_report: Digest,
        /// The digest the caller gave.
        given: Digest,
    },

    /// A dpkg status file was given without saying which distribution it belongs to.
    #[error(
        "dpkg status file: a distribution is required (e.g. \"debian:12\", \"ubuntu:22.04\" or the text of /etc/os-release), since advisories are per distribution release"
    )]
    MissingDistribution,

    /// The given distribution could not be understood or is not one advisories exist for.
    #[error("distribution {given:?}: {reason}")]
    BadDistribution {
        /// The text given.
        given: String,
        /// What was wrong.
        reason: String,
    },

    /// A text format is not valid UTF-8.
    #[error("{}, line {line}: not valid UTF-8 text (byte offset {offset})", format_name(*format))]
    NotUtf8 {
        /// The format being read.
        format: InventoryFormat,
        /// 1-based line of the first invalid byte.
        line: usize,
        /// Byte offset of the first invalid byte.
        offset: usize,
    },
}

impl InventoryError {
    /// Wraps a path-tracking serde_json error.
    pub(crate) fn json(
        format: InventoryFormat,
        err: serde_path_to_error::Error<serde_json::Error>,
    ) -> Self {
        let path = err.path().to_string();
        let inner = err.into_inner();
        InventoryError::Json {
            format,
            path,
            line: inner.line(),
            column: inner.column(),
            message: inner.to_string(),
        }
    }
}

/// Reads `bytes` as UTF-8 text, naming the line of the first bad byte.
pub(crate) fn utf8(format: InventoryFormat, bytes: &[u8]) -> Result<&str, InventoryError> {
    std::str::from_utf8(bytes).map_err(|e| {
        let offset = e.valid_up_to();
        let line = bytes[..offset].iter().filter(|b| **b == b'\n').count() + 1;
        InventoryError::NotUtf8 {
            format,
            line,
            offset,
        }
    })
}

/// Deserialises JSON, tracking the path for error messages.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(
    format: InventoryFormat,
    bytes: &[u8],
) -> Result<T, InventoryError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value =
        serde_path_to_error::deserialize(&mut de).map_err(|e| InventoryError::json(format, e))?;
    // Trailing garbage after the document is as much an error as a truncated one.
    de.end().map_err(|e| InventoryError::Json {
        format,
        path: ".".into(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_errors_name_the_line() {
        let err = utf8(InventoryFormat::Pip, b"a==1\nb==\xff2\n").unwrap_err();
        assert!(matches!(
            err,
            InventoryError::NotUtf8 {
                line: 2,
                offset: 8,
                ..
            }
        ));
        assert!(err.to_string().contains("line 2"), "{err}");
    }

    #[test]
    fn json_errors_carry_path_and_position() {
        #[derive(serde::Deserialize, Debug)]
        struct T {
            #[allow(dead_code)]
            a: Vec<u32>,
        }
        let err = from_json::<T>(InventoryFormat::Cyclonedx, b"{\"a\": [1,\n \"x\"]}").unwrap_err();
        match &err {
            InventoryError::Json { path, line, .. } => {
                assert_eq!(path, "a[1]");
                assert_eq!(*line, 2);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().contains("CycloneDX"), "{err}");
        let err = from_json::<T>(InventoryFormat::Cyclonedx, b"{\"a\": []} x").unwrap_err();
        assert!(err.to_string().contains("trailing"), "{err}");
    }
}
