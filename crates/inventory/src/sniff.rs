//! Recognising a format from content, narrowed by an HTTP Content-Type when one is given.
use serde::de::IgnoredAny;
use serde::Deserialize;
use tocsin_model::inventory::InventoryFormat;

use crate::pip;

/// The few top-level keys that tell the JSON formats apart. Everything else is skipped unread.
#[derive(Deserialize)]
struct JsonProbe {
    manifest_hash: Option<IgnoredAny>,
    #[serde(rename = "bomFormat")]
    bom_format: Option<String>,
    #[serde(rename = "spdxVersion")]
    spdx_version: Option<IgnoredAny>,
}

/// What a Content-Type allows.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Hint {
    /// This one format, whatever the content says (the parser then names what is wrong).
    Exactly(InventoryFormat),
    /// One of the JSON formats.
    Json,
    /// One of the text formats.
    Text,
    /// No narrowing.
    Any,
}

fn hint(content_type: Option<&str>) -> Hint {
    let Some(ct) = content_type else {
        return Hint::Any;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/vnd.cyclonedx+json" => Hint::Exactly(InventoryFormat::Cyclonedx),
        "application/spdx+json" => Hint::Exactly(InventoryFormat::Spdx),
        "application/toml" => Hint::Exactly(InventoryFormat::CargoLock),
        "application/json" | "text/json" => Hint::Json,
        e if e.starts_with("text/") => Hint::Text,
        _ => Hint::Any,
    }
}

fn skip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes)
}

/// Whether the content starts like a JSON object.
pub(crate) fn looks_like_json(bytes: &[u8]) -> bool {
    skip_bom(bytes)
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{')
}

fn sniff_json(bytes: &[u8]) -> Option<InventoryFormat> {
    let probe: JsonProbe = serde_json::from_slice(skip_bom(bytes)).ok()?;
    if probe.manifest_hash.is_some() {
        Some(InventoryFormat::IndexReport)
    } else if probe.bom_format.as_deref() == Some("CycloneDX") {
        Some(InventoryFormat::Cyclonedx)
    } else if probe.spdx_version.is_some() {
        Some(InventoryFormat::Spdx)
    } else {
        None
    }
}

fn sniff_text(bytes: &[u8]) -> Option<InventoryFormat> {
    let text = std::str::from_utf8(skip_bom(bytes)).ok()?;
    let mut meaningful = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    let first = meaningful.next()?;
    if first
        .get(..8)
        .is_some_and(|p| p.eq_ignore_ascii_case("package:"))
    {
        return Some(InventoryFormat::DpkgStatus);
    }
    if text.lines().any(|l| l.trim() == "[[package]]") {
        return Some(InventoryFormat::CargoLock);
    }
    // A pip list: the first line reads as a requirement or option, and some line is pinned. A
    // later malformed line is then reported by the pip parser with its number, which helps more
    // than "unknown format".
    let lines = pip::logical_lines(text);
    let first_ok = lines
        .first()
        .is_some_and(|(_, l)| pip::parse_line(l).is_ok());
    let any_pinned = lines
        .iter()
        .take(200)
        .any(|(_, l)| matches!(pip::parse_line(l), Ok(pip::Line::Pinned { .. })));
    (first_ok && any_pinned).then_some(InventoryFormat::Pip)
}

/// Recognises an inventory's format from its content, narrowed by `content_type`. `None` when
/// nothing fits.
pub fn sniff(bytes: &[u8], content_type: Option<&str>) -> Option<InventoryFormat> {
    match hint(content_type) {
        Hint::Exactly(f) => Some(f),
        Hint::Json => sniff_json(bytes),
        Hint::Text => {
            if looks_like_json(bytes) {
                None
            } else {
                sniff_text(bytes)
            }
        }
        Hint::Any => {
            if looks_like_json(bytes) {
                sniff_json(bytes)
            } else {
                sniff_text(bytes)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_decides_without_a_hint() {
        let cases: [(&str, Option<InventoryFormat>); 11] = [
            (
                r#"{"manifest_hash":"sha256:x","packages":{}}"#,
                Some(InventoryFormat::IndexReport),
            ),
            (
                r#" {"bomFormat":"CycloneDX","specVersion":"1.4"}"#,
                Some(InventoryFormat::Cyclonedx),
            ),
            (
                r#"{"spdxVersion":"SPDX-2.3","packages":[]}"#,
                Some(InventoryFormat::Spdx),
            ),
            (r#"{"something":"else"}"#, None),
            (
                "\nPackage: bash\nStatus: install ok installed\n",
                Some(InventoryFormat::DpkgStatus),
            ),
            (
                "version = 4\n\n[[package]]\nname = \"x\"\n",
                Some(InventoryFormat::CargoLock),
            ),
            (
                "# frozen\nsix==1.17.0\nattrs>=1\n",
                Some(InventoryFormat::Pip),
            ),
            ("just some prose\n", None),
            ("six==1.0\nnot valid\n", Some(InventoryFormat::Pip)),
            ("Not a requirement\nsix==1.0\n", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(sniff(text.as_bytes(), None), want, "{text}");
        }
    }

    #[test]
    fn content_type_narrows() {
        let cdx = br#"{"bomFormat":"CycloneDX","specVersion":"1.4"}"#;
        assert_eq!(
            sniff(cdx, Some("application/json; charset=utf-8")),
            Some(InventoryFormat::Cyclonedx)
        );
        assert_eq!(sniff(cdx, Some("text/plain")), None);
        assert_eq!(
            sniff(b"{}", Some("application/vnd.cyclonedx+json")),
            Some(InventoryFormat::Cyclonedx)
        );
        assert_eq!(
            sniff(b"{}", Some("Application/SPDX+JSON")),
            Some(InventoryFormat::Spdx)
        );
        assert_eq!(sniff(b"six==1.0\n", Some("application/json")), None);
        assert_eq!(
            sniff(b"six==1.0\n", Some("text/plain")),
            Some(InventoryFormat::Pip)
        );
    }
}
