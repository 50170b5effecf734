//! CVSS base scores and vendor severity words.
//!
//! Scoring is delegated to RustSec's `cvss` crate (v3.0/v3.1 formula and the v4.0 MacroVector
//! table); its results were checked against FIRST's published examples and a reference
//! implementation on every vector in the shared data and several thousand random ones. This
//! module only puts vectors into the shape the crate scores as a *base* score: threat, temporal,
//! environmental and supplemental metrics are dropped (they do not belong in a base score, and the
//! crate rejects some of them), and a vector missing a base metric is refused rather than scored
//! with a silent default.
use std::str::FromStr;

/// A CVSS vector that cannot be scored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid CVSS vector {vector:?}: {reason}")]
pub struct InvalidCvss {
    /// The vector as given.
    pub vector: String,
    /// What was wrong.
    pub reason: String,
}

const V3_BASE: &[&str] = &["AV", "AC", "PR", "UI", "S", "C", "I", "A"];
const V4_BASE: &[&str] = &[
    "AV", "AC", "AT", "PR", "UI", "VC", "VI", "VA", "SC", "SI", "SA",
];

/// The CVSS base score (0.0–10.0) of a v3.0, v3.1 or v4.0 vector string.
///
/// Non-base metrics are ignored; every base metric must be present exactly once.
pub fn cvss_base_score(vector: &str) -> Result<f64, InvalidCvss> {
    let invalid = |reason: String| InvalidCvss {
        vector: vector.to_string(),
        reason,
    };
    let trimmed = vector.trim();
    let mut parts = trimmed.split('/');
    let prefix = parts.next().unwrap_or_default();
    let base: &[&str] = match prefix {
        "CVSS:3.0" | "CVSS:3.1" => V3_BASE,
        "CVSS:4.0" => V4_BASE,
        other => {
            return Err(invalid(format!(
                "unsupported prefix {other:?} (expected CVSS:3.0, CVSS:3.1 or CVSS:4.0)"
            )))
        }
    };
    let mut values: Vec<Option<&str>> = vec![None; base.len()];
    for component in parts {
        let (key, value) = component
            .split_once(':')
            .ok_or_else(|| invalid(format!("component {component:?} is not METRIC:VALUE")))?;
        if let Some(i) = base.iter().position(|b| *b == key) {
            if values[i].replace(value).is_some() {
                return Err(invalid(format!("metric {key} given twice")));
            }
        }
    }
    let mut canonical = prefix.to_string();
    for (key, value) in base.iter().zip(&values) {
        let value = value.ok_or_else(|| invalid(format!("base metric {key} is missing")))?;
        canonical.push('/');
        canonical.push_str(key);
        canonical.push(':');
        canonical.push_str(value);
    }
    let parsed = cvss::Cvss::from_str(&canonical).map_err(|e| invalid(e.to_string()))?;
    Ok(parsed.score())
}

/// The vendor severity word at the start of a Red Hat-style summary (`Important: kernel update`).
///
/// Only the four words Red Hat errata use are recognised, capitalised as they write them, so
/// that ordinary summaries that happen to contain a colon are not misread.
pub(crate) fn summary_prefix_word(summary: &str) -> Option<&str> {
    let (word, _) = summary.split_once(':')?;
    matches!(word, "Critical" | "Important" | "Moderate" | "Low").then_some(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score(v: &str) -> f64 {
        match cvss_base_score(v) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn v3_published_scores() {
        // Examples from the CVSS v3.1 specification / NVD.
        assert_eq!(score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"), 9.8);
        assert_eq!(score("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N"), 6.1);
        assert_eq!(score("CVSS:3.0/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:H/A:H"), 8.1);
        assert_eq!(score("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H"), 7.8);
        assert_eq!(score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H"), 10.0);
        assert_eq!(score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N"), 0.0);
        assert_eq!(score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H"), 7.5);
    }

    #[test]
    fn v4_published_scores() {
        // FIRST's v4.0 calculator values; the last three come from RustSec advisories in the
        // shared data, cross-checked with Red Hat's reference implementation.
        assert_eq!(
            score("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"),
            9.3
        );
        assert_eq!(
            score("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:N/VI:N/VA:N/SC:N/SI:N/SA:N"),
            0.0
        );
        assert_eq!(
            score("CVSS:4.0/AV:L/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:H/SI:H/SA:H"),
            9.4
        );
        assert_eq!(
            score("CVSS:4.0/AV:L/AC:L/AT:N/PR:N/UI:A/VC:N/VI:H/VA:L/SC:H/SI:H/SA:H"),
            8.3
        );
        assert_eq!(
            score("CVSS:4.0/AV:L/AC:L/AT:P/PR:L/UI:A/VC:N/VI:N/VA:H/SC:N/SI:N/SA:N"),
            4.1
        );
    }

    #[test]
    fn non_base_metrics_are_ignored() {
        assert_eq!(
            score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/E:U/RL:O/RC:C"),
            9.8
        );
        assert_eq!(
            score("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N/E:U/S:P"),
            9.3
        );
    }

    #[test]
    fn order_of_metrics_does_not_matter() {
        assert_eq!(score("CVSS:3.1/A:H/I:H/C:H/S:U/UI:N/PR:N/AC:L/AV:N"), 9.8);
    }

    #[test]
    fn malformed_vectors_are_refused() {
        for bad in [
            "",
            "9.8",
            "CVSS:2.0/AV:N/AC:L/Au:N/C:P/I:P/A:P",
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H",
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/A:L",
            "CVSS:3.1/AV:X/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A",
            "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N",
        ] {
            assert!(cvss_base_score(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn summary_prefixes() {
        assert_eq!(
            summary_prefix_word("Important: pcs security update"),
            Some("Important")
        );
        assert_eq!(summary_prefix_word("Low: foo"), Some("Low"));
        assert_eq!(summary_prefix_word("Note: something"), None);
        assert_eq!(summary_prefix_word("important: lower case"), None);
        assert_eq!(summary_prefix_word("no colon"), None);
    }
}
