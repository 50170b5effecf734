//! Inventory parsers: every format tocsin accepts, turned into one claircore IndexReport.
//!
//! # Design
//!
//! The matching engine reads exactly one representation of an inventory,
//! [`tocsin_model::inventory::Manifest`] holding a claircore
//! [`IndexReport`](tocsin_model::claircore::IndexReport), and learns each package's ecosystem
//! through [`tocsin_model::inventory::installed_packages`]: a package's Environment points at a
//! Distribution (`Debian:12`, `AlmaLinux:9`, …) or at a language Repository (`Go`, `npm`,
//! `crates.io`, …). So every parser here does one thing: read its format and hand packages, each
//! with its target ecosystem, to one shared report builder that creates those links. The
//! ecosystem rules therefore live in one place and cannot drift between formats, and an
//! IndexReport coming from Clair itself — already in canonical form — is kept as it is.
//!
//! | format | digest from | packages |
//! |---|---|---|
//! | claircore IndexReport JSON | `manifest_hash` | as sent |
//! | CycloneDX 1.2+ JSON | the caller | every `components` purl, recursively |
//! | SPDX 2.x JSON | the caller | every package's `purl` external reference |
//! | dpkg status | the caller | installed paragraphs; distribution from the caller |
//! | Cargo.lock v1–v4 | the caller | `[[package]]`s from crates.io |
//! | pip requirements / freeze | the caller | `name==version` lines |
//!
//! Inputs that yield no package but are not errors (a component without a purl, an
//! unsupported purl type, a path dependency, an unpinned requirement, a removed dpkg package)
//! are skipped and listed with their location and reason in [`ParseStats::skipped`], because a
//! silently shorter inventory would mean silently missed vulnerabilities. Anything malformed is
//! an error naming the format and the place (JSON path, line number), and rejects the whole
//! input: a partial inventory is never stored.
//!
//! Reports built here use report-local ids `"1"`, `"2"`, …; `normalized_version` is left empty
//! (version semantics live in `tocsin-versions`) and each Environment's `introduced_in` is the
//! manifest digest, since the layers are not known and claircore clients expect a digest there.
#![deny(missing_docs)]

use std::collections::BTreeMap;

use tocsin_model::claircore::{Distribution, IndexReport};
use tocsin_model::inventory::{InventoryFormat, Manifest};
use tocsin_model::Digest;

mod cargo_lock;
mod distro;
mod dpkg;
mod error;
mod index_report;
mod pip;
mod purl;
mod report;
mod sbom;
mod sniff;

pub use error::{format_name, InventoryError};
pub use purl::{Purl, PurlError};
pub use sniff::sniff;

/// One inventory to parse, with what the caller knows about it.
#[derive(Clone, Debug, Default)]
pub struct Input<'a> {
    /// The raw content.
    pub bytes: &'a [u8],
    /// The format, or `None` to recognise it from the content (see [`sniff`]).
    pub format: Option<InventoryFormat>,
    /// The HTTP Content-Type it arrived with, to narrow recognition
    /// (e.g. `application/vnd.cyclonedx+json`).
    pub content_type: Option<&'a str>,
    /// The manifest digest. Required for every format but the IndexReport, which carries its
    /// own (and must then agree with this one when both are given).
    pub digest: Option<Digest>,
    /// The distribution the packages belong to: `ID:VERSION` (`debian:12`, `debian:bookworm`,
    /// `ubuntu:22.04`, `alpine:3.18`) or the text of an os-release file. Required for dpkg status
    /// files; used by SBOMs for `deb`/`rpm`/`apk` purls without a `distro` qualifier.
    pub distribution: Option<&'a str>,
    /// Labels stored with the manifest.
    pub labels: BTreeMap<String, String>,
}

impl<'a> Input<'a> {
    /// An input of `bytes`, everything else unknown.
    pub fn new(bytes: &'a [u8]) -> Self {
        Input {
            bytes,
            ..Default::default()
        }
    }
}

/// An input item that yielded no package, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// Where it is: a JSON path (`components[3].purl`), `line N`, or `package[N]`.
    pub at: String,
    /// Why it yields no package.
    pub reason: String,
}

/// What parsing found besides the manifest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParseStats {
    /// Packages in the report.
    pub packages: usize,
    /// Exact duplicates dropped (same ecosystem, name, version, architecture and source).
    pub duplicates: usize,
    /// Items that yielded no package, in input order.
    pub skipped: Vec<Skipped>,
}

/// A parsed inventory and its statistics.
#[derive(Clone, Debug, PartialEq)]
pub struct Parsed {
    /// The manifest, ready to store.
    pub manifest: Manifest,
    /// Counts and skipped items, for the caller to report.
    pub stats: ParseStats,
}

/// Parses an inventory into a [`Manifest`]. See [`parse_with_stats`] for what was skipped.
pub fn parse(input: Input<'_>) -> Result<Manifest, InventoryError> {
    parse_with_stats(input).map(|p| p.manifest)
}

/// Parses an inventory into a [`Manifest`], also returning what was counted and skipped.
pub fn parse_with_stats(input: Input<'_>) -> Result<Parsed, InventoryError> {
    let format = match input.format {
        Some(f) => f,
        None => recognise(input.bytes, input.content_type)?,
    };
    let bytes = input.bytes;
    let (digest, report, stats) = match format {
        InventoryFormat::IndexReport => index_report::parse(bytes, input.digest.as_ref())?,
        InventoryFormat::Cyclonedx => build(&input, format, |b, d| sbom::cyclonedx(b, bytes, d))?,
        InventoryFormat::Spdx => build(&input, format, |b, d| sbom::spdx(b, bytes, d))?,
        InventoryFormat::DpkgStatus => build(&input, format, |b, d| {
            dpkg::parse(b, bytes, d.ok_or(InventoryError::MissingDistribution)?)
        })?,
        InventoryFormat::CargoLock => build(&input, format, |b, _| cargo_lock::parse(b, bytes))?,
        InventoryFormat::Pip => build(&input, format, |b, _| pip::parse(b, bytes))?,
    };
    Ok(Parsed {
        manifest: Manifest {
            digest,
            labels: input.labels,
            format,
            report,
        },
        stats,
    })
}

/// Runs a parser for a format that carries no digest: the caller's digest and distribution are
/// checked first, so that a missing one is reported before any content error.
fn build(
    input: &Input<'_>,
    format: InventoryFormat,
    read: impl FnOnce(&mut report::ReportBuilder, Option<&Distribution>) -> Result<(), InventoryError>,
) -> Result<(Digest, IndexReport, ParseStats), InventoryError> {
    let digest = input
        .digest
        .clone()
        .ok_or(InventoryError::MissingDigest { format })?;
    let distribution = input.distribution.map(distro::from_hint).transpose()?;
    let mut b = report::ReportBuilder::new(&digest);
    read(&mut b, distribution.as_ref())?;
    let (report, stats) = b.finish();
    Ok((digest, report, stats))
}

/// [`sniff`], but when nothing fits, an error that says why — and for broken JSON, the format the
/// document was evidently meant to be, so that its parser reports the syntax error with a path.
fn recognise(bytes: &[u8], content_type: Option<&str>) -> Result<InventoryFormat, InventoryError> {
    if let Some(f) = sniff(bytes, content_type) {
        return Ok(f);
    }
    let hint = content_type
        .map(|ct| format!(" (content type {ct:?})"))
        .unwrap_or_default();
    if sniff::looks_like_json(bytes) {
        if serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_err() {
            let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
            for (key, f) in [
                (&b"\"manifest_hash\""[..], InventoryFormat::IndexReport),
                (b"\"bomFormat\"", InventoryFormat::Cyclonedx),
                (b"\"spdxVersion\"", InventoryFormat::Spdx),
            ] {
                if contains(key) {
                    return Ok(f);
                }
            }
        }
        return Err(InventoryError::UnknownFormat(format!(
            "a JSON document{hint} that is neither a claircore IndexReport (manifest_hash), a CycloneDX SBOM (bomFormat: \"CycloneDX\") nor an SPDX document (spdxVersion)"
        )));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(InventoryError::UnknownFormat("the input is empty".into()));
    }
    Err(InventoryError::UnknownFormat(format!(
        "the content{hint} is not a claircore IndexReport, CycloneDX or SPDX JSON, a dpkg status file (Package: paragraphs), a Cargo.lock ([[package]] tables) or a pip list (name==version lines)"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tocsin_model::inventory::installed_packages;

    fn digest() -> Digest {
        Digest::parse(&format!("sha256:{}", "f".repeat(64))).unwrap()
    }

    #[test]
    fn sniffs_and_parses_with_labels() {
        let mut labels = BTreeMap::new();
        labels.insert("image".to_string(), "example/app:1".to_string());
        let m = parse(Input {
            bytes: b"six==1.17.0\nFlask==3.1.3\n",
            digest: Some(digest()),
            labels: labels.clone(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(m.format, InventoryFormat::Pip);
        assert_eq!(m.labels, labels);
        assert_eq!(m.digest, digest());
        assert_eq!(m.report.manifest_hash, digest().to_string());
        let names: Vec<String> = installed_packages(&m.report)
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(names, vec!["flask", "six"]);
    }

    #[test]
    fn formats_without_a_digest_need_one() {
        let e = parse(Input {
            bytes: b"six==1.17.0\n",
            format: Some(InventoryFormat::Pip),
            ..Default::default()
        })
        .unwrap_err();
        assert!(matches!(e, InventoryError::MissingDigest { .. }));
        assert!(e.to_string().contains("pip"), "{e}");
    }

    #[test]
    fn dpkg_needs_a_distribution() {
        let text = b"Package: bash\nStatus: install ok installed\nVersion: 5.2\n";
        let e = parse(Input {
            bytes: text,
            digest: Some(digest()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(matches!(e, InventoryError::MissingDistribution), "{e}");
        let e = parse(Input {
            bytes: text,
            digest: Some(digest()),
            distribution: Some("debian:99x"),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("debian:99x"), "{e}");
    }

    #[test]
    fn broken_json_is_reported_by_the_intended_parser() {
        let e = parse(Input {
            bytes: br#"{"bomFormat":"CycloneDX","specVersion":"1.4","components":[{"purl":"pkg:npm/a@1"},"#,
            digest: Some(digest()),
            ..Default::default()
        })
        .unwrap_err();
        match &e {
            InventoryError::Json { format, path, .. } => {
                assert_eq!(*format, InventoryFormat::Cyclonedx);
                assert!(path.starts_with("components"), "{path}");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(e.to_string().contains("EOF"), "{e}");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        // serde_json's recursion limit (128) is in force: no crate enables `unbounded_depth` and
        // nothing calls `disable_recursion_limit`. Nested components, a nested unknown value,
        // and a document that is only brackets.
        let depth = 100_000;
        let nested_components = format!(
            r#"{{"bomFormat":"CycloneDX","specVersion":"1.4","components":[{}{}]}}"#,
            r#"{"name":"x","components":["#.repeat(depth),
            "]}".repeat(depth)
        );
        let e = parse(Input {
            bytes: nested_components.as_bytes(),
            digest: Some(digest()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("recursion limit"), "{e}");
        let deep_value = format!(
            r#"{{"manifest_hash":"{}","x":{}{}}}"#,
            digest(),
            "[".repeat(depth),
            "]".repeat(depth)
        );
        // Skipped without recursion: parses, and fails only for what it lacks.
        let _ = parse(Input::new(deep_value.as_bytes()));
        let brackets = "[".repeat(depth);
        assert!(parse(Input {
            bytes: brackets.as_bytes(),
            digest: Some(digest()),
            ..Default::default()
        })
        .is_err());
    }

    #[test]
    fn unknown_content_says_what_was_expected() {
        for bytes in [&b"{\"hello\": 1}"[..], b"lorem ipsum\n", b"  \n"] {
            let e = parse(Input {
                bytes,
                digest: Some(digest()),
                ..Default::default()
            })
            .unwrap_err();
            assert!(matches!(e, InventoryError::UnknownFormat(_)), "{e}");
        }
    }
}
