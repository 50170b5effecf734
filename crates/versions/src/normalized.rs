//! claircore's normalised versions: a kind and ten integers (`semver:0.1.6.0.0.0.0.0.0.0`).
//!
//! claircore stores Go and npm ranges as `{"[": lower, ")": upper}` over these and compares
//! them as integer arrays (PostgreSQL's `int[]` order); versions of different kinds are not
//! comparable. An installed package carries its own normalised version as the string
//! `kind:v0.v1.….v9`; when it has none, claircore's SemVer mapping is used: index 0 is an
//! epoch (0) and indices 1–3 are major, minor, patch; pre-release and build are dropped.
use std::cmp::Ordering;

use tocsin_model::claircore::NormalizedVersion;

use crate::semver::SemverVersion;

/// A normalised version: kind and integer components.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Normalized {
    pub(crate) kind: String,
    pub(crate) v: Vec<i32>,
}

impl Normalized {
    /// From the model's JSON shape.
    pub(crate) fn from_model(n: &NormalizedVersion) -> Self {
        Normalized {
            kind: n.kind.clone(),
            v: n.v.clone(),
        }
    }

    /// Parse `kind:v0.v1.….v9`; `None` when it is not of that form.
    pub(crate) fn parse(s: &str) -> Option<Self> {
        let (kind, numbers) = s.trim().split_once(':')?;
        if kind.is_empty() {
            return None;
        }
        let v = numbers
            .split('.')
            .map(|n| n.parse::<i32>().ok())
            .collect::<Option<Vec<i32>>>()?;
        Some(Normalized {
            kind: kind.to_string(),
            v,
        })
    }

    /// claircore's SemVer mapping of an installed version string; `None` without a major
    /// number.
    pub(crate) fn from_semver(version: &str) -> Option<Self> {
        let parsed = SemverVersion::parse(version);
        if !parsed.has_core() {
            return None;
        }
        let [major, minor, patch] = parsed.core_i32();
        let mut v = vec![0; 10];
        v[1] = major;
        v[2] = minor;
        v[3] = patch;
        Some(Normalized {
            kind: "semver".to_string(),
            v,
        })
    }

    /// Array order, missing components counting as 0; `None` across kinds.
    pub(crate) fn compare(&self, other: &Self) -> Option<Ordering> {
        if self.kind != other.kind {
            return None;
        }
        let len = self.v.len().max(other.v.len());
        let ord = (0..len)
            .map(|i| {
                let a = self.v.get(i).copied().unwrap_or(0);
                let b = other.v.get(i).copied().unwrap_or(0);
                a.cmp(&b)
            })
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal);
        Some(ord)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_installed_form() {
        let n = Normalized::parse("semver:0.1.6.0.0.0.0.0.0.0").unwrap();
        assert_eq!(n.kind, "semver");
        assert_eq!(n.v, vec![0, 1, 6, 0, 0, 0, 0, 0, 0, 0]);
        assert!(Normalized::parse("").is_none());
        assert!(Normalized::parse("1.2.3").is_none());
        assert!(Normalized::parse("semver:1.x").is_none());
        assert!(Normalized::parse(":1.2").is_none());
    }

    #[test]
    fn semver_mapping_leaves_an_epoch() {
        let n = Normalized::from_semver("v1.5.0-rc1").unwrap();
        assert_eq!(n.v, vec![0, 1, 5, 0, 0, 0, 0, 0, 0, 0]);
        assert!(Normalized::from_semver("latest").is_none());
    }

    #[test]
    fn kinds_do_not_compare() {
        let a = Normalized::parse("semver:0.1").unwrap();
        let b = Normalized::parse("pep440:0.1").unwrap();
        assert_eq!(a.compare(&b), None);
        let c = Normalized::parse("semver:0.1.0.0").unwrap();
        assert_eq!(a.compare(&c), Some(Ordering::Equal));
        let d = Normalized::parse("semver:0.2").unwrap();
        assert_eq!(a.compare(&d), Some(Ordering::Less));
    }
}
