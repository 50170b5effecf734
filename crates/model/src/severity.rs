use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// claircore's normalised severity, ordered lowest to highest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// No usable severity information.
    #[default]
    Unknown,
    /// Negligible.
    Negligible,
    /// Low.
    Low,
    /// Medium (also "Moderate").
    Medium,
    /// High (also "Important").
    High,
    /// Critical (also v2's "Defcon1").
    Critical,
}

impl Severity {
    /// Every severity, lowest first.
    pub const ALL: [Severity; 6] = [
        Severity::Unknown,
        Severity::Negligible,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    /// The canonical name, as claircore writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Unknown => "Unknown",
            Severity::Negligible => "Negligible",
            Severity::Low => "Low",
            Severity::Medium => "Medium",
            Severity::High => "High",
            Severity::Critical => "Critical",
        }
    }

    /// The CVSS (v3/v4) qualitative mapping of a base score: ≥9 Critical, ≥7 High, ≥4 Medium,
    /// >0 Low, else Unknown.
    pub fn from_cvss_score(score: f64) -> Severity {
        if score >= 9.0 {
            Severity::Critical
        } else if score >= 7.0 {
            Severity::High
        } else if score >= 4.0 {
            Severity::Medium
        } else if score > 0.0 {
            Severity::Low
        } else {
            Severity::Unknown
        }
    }

    /// Reads a vendor's severity word leniently (case-insensitive; "moderate", "important",
    /// "defcon1" and friends); anything unrecognised is `Unknown`.
    pub fn from_vendor_text(s: &str) -> Severity {
        match s.trim().to_ascii_lowercase().as_str() {
            "negligible" | "unimportant" | "none" | "informational" | "info" => {
                Severity::Negligible
            }
            "low" | "minor" => Severity::Low,
            "medium" | "moderate" => Severity::Medium,
            "high" | "important" | "major" => Severity::High,
            "critical" | "defcon1" | "urgent" => Severity::Critical,
            _ => Severity::Unknown,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A severity name that is not one of claircore's six.
#[derive(Debug, thiserror::Error)]
#[error(
    "unknown severity {0:?} (expected one of Unknown, Negligible, Low, Medium, High, Critical)"
)]
pub struct UnknownSeverity(String);

impl FromStr for Severity {
    type Err = UnknownSeverity;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Severity::ALL
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownSeverity(s.to_string()))
    }
}

impl Serialize for Severity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Severity {
    /// Lenient on input: claircore files carry normalised names, but an empty or vendor word must
    /// not fail a whole import.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(s.parse().unwrap_or_else(|_| Severity::from_vendor_text(&s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cvss_thresholds() {
        assert_eq!(Severity::from_cvss_score(9.0), Severity::Critical);
        assert_eq!(Severity::from_cvss_score(8.9), Severity::High);
        assert_eq!(Severity::from_cvss_score(7.0), Severity::High);
        assert_eq!(Severity::from_cvss_score(4.0), Severity::Medium);
        assert_eq!(Severity::from_cvss_score(0.1), Severity::Low);
        assert_eq!(Severity::from_cvss_score(0.0), Severity::Unknown);
    }

    #[test]
    fn ordering_is_lowest_to_highest() {
        assert!(Severity::Unknown < Severity::Negligible);
        assert!(Severity::High < Severity::Critical);
    }

    #[test]
    fn serde_round_trip_and_lenient_input() {
        assert_eq!(serde_json::to_string(&Severity::High).unwrap(), "\"High\"");
        let s: Severity = serde_json::from_str("\"moderate\"").unwrap();
        assert_eq!(s, Severity::Medium);
        let s: Severity = serde_json::from_str("\"\"").unwrap();
        assert_eq!(s, Severity::Unknown);
    }
}
