//! RPM versions (`[epoch:]version[-release]`, RHEL, AlmaLinux, Rocky, CentOS, Oracle Linux,
//! SUSE), ordered as `rpmvercmp` orders them, including `~` (pre-release) and `^` (snapshot).
//!
//! Hand-written: `rpmvercmp` is a short loop and no maintained crate implements the caret rule.
//!
//! Parsing follows rpm's `parseEVR`: an epoch is the all-digit text before the first `:` (an
//! empty one is `0`); anything else before a colon is part of the version (modular package
//! names such as `1.m+el9:1` carry colons that are not epochs). The release is what follows
//! the last `-`. Deviation kept on purpose: a present-but-empty release (`1-`) sorts after an
//! absent one (`1`), so that `1` and `1-` are distinct, deterministic versions; this is the
//! ordering of the reference oracle.
use std::cmp::Ordering;

use crate::num::{ascii, cmp_digits, is_digits};

/// A parsed RPM EVR.
#[derive(Clone, Debug)]
pub(crate) struct RpmVersion {
    epoch: String,
    version: String,
    /// `None` when the string has no `-`.
    release: Option<String>,
}

impl RpmVersion {
    /// Split an EVR string.
    pub(crate) fn parse(s: &str) -> Self {
        let (epoch, vr) = match s.split_once(':') {
            Some((e, rest)) if e.is_empty() || is_digits(e) => (e, rest),
            _ => ("", s),
        };
        let epoch = if epoch.is_empty() { "0" } else { epoch };
        let (version, release) = match vr.rsplit_once('-') {
            Some((v, r)) => (v, Some(r.to_string())),
            None => (vr, None),
        };
        RpmVersion {
            epoch: epoch.to_string(),
            version: version.to_string(),
            release,
        }
    }

    /// Epoch numerically, then version, then release with `rpmvercmp`.
    pub(crate) fn cmp(&self, other: &Self) -> Ordering {
        cmp_digits(&self.epoch, &other.epoch)
            .then_with(|| part_cmp(&self.version, &other.version))
            .then_with(|| match (&self.release, &other.release) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Less,
                (Some(_), None) => Ordering::Greater,
                (Some(a), Some(b)) => rpmvercmp(a, b),
            })
    }
}

/// A version part: empty sorts before anything non-empty, otherwise `rpmvercmp`.
fn part_cmp(a: &str, b: &str) -> Ordering {
    match (a.is_empty(), b.is_empty()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => rpmvercmp(a, b),
    }
}

/// Separators are skipped: anything but ASCII letters, digits, `~` and `^`.
fn is_separator(c: u8) -> bool {
    !(c.is_ascii_alphanumeric() || c == b'~' || c == b'^')
}

/// rpm's segment-wise comparison.
fn rpmvercmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    loop {
        while i < a.len() && is_separator(a[i]) {
            i += 1;
        }
        while j < b.len() && is_separator(b[j]) {
            j += 1;
        }
        let (ca, cb) = (a.get(i).copied(), b.get(j).copied());
        // `~` sorts before everything, even the end of the string.
        if ca == Some(b'~') || cb == Some(b'~') {
            if ca != Some(b'~') {
                return Ordering::Greater;
            }
            if cb != Some(b'~') {
                return Ordering::Less;
            }
            i += 1;
            j += 1;
            continue;
        }
        // `^` sorts after the end of the string but before anything else.
        if ca == Some(b'^') || cb == Some(b'^') {
            if ca.is_none() {
                return Ordering::Less;
            }
            if cb.is_none() {
                return Ordering::Greater;
            }
            if ca != Some(b'^') {
                return Ordering::Greater;
            }
            if cb != Some(b'^') {
                return Ordering::Less;
            }
            i += 1;
            j += 1;
            continue;
        }
        let (Some(ca), Some(_)) = (ca, cb) else {
            break;
        };
        let numeric = ca.is_ascii_digit();
        let same_kind = |c: &u8| {
            if numeric {
                c.is_ascii_digit()
            } else {
                c.is_ascii_alphabetic()
            }
        };
        let na = a[i..].iter().take_while(|c| same_kind(c)).count();
        let nb = b[j..].iter().take_while(|c| same_kind(c)).count();
        if nb == 0 {
            // A number is newer than letters; letters are older than a number.
            return if numeric {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        let (sa, sb) = (ascii(&a[i..i + na]), ascii(&b[j..j + nb]));
        let ord = if numeric {
            cmp_digits(sa, sb)
        } else {
            sa.cmp(sb)
        };
        if ord != Ordering::Equal {
            return ord;
        }
        i += na;
        j += nb;
    }
    // One side is exhausted (after separators): the one with something left is newer.
    match (i >= a.len(), j >= b.len()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, _) => Ordering::Greater,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(a: &str, b: &str) -> Ordering {
        RpmVersion::parse(a).cmp(&RpmVersion::parse(b))
    }

    #[test]
    fn el_releases_order_numerically() {
        assert_eq!(cmp("1.0.9-1.el9", "1.0.9-1.el9_2"), Ordering::Less);
        assert_eq!(cmp("1.0.10-1.el9", "1.0.9-1.el9"), Ordering::Greater);
        assert_eq!(
            cmp("1:2.06-27.el9_0.7.alma", "2.06-99.el9"),
            Ordering::Greater
        );
    }

    #[test]
    fn tilde_and_caret() {
        assert_eq!(cmp("1.0~rc1", "1.0"), Ordering::Less);
        assert_eq!(cmp("1.0^git1", "1.0"), Ordering::Greater);
        assert_eq!(cmp("1.0^git1", "1.0.1"), Ordering::Less);
    }

    #[test]
    fn non_numeric_epoch_is_part_of_the_version() {
        let v = RpmVersion::parse("a:1");
        assert_eq!(v.epoch, "0");
        assert_eq!(v.version, "a:1");
        assert_eq!(RpmVersion::parse(":1").epoch, "0");
        assert_eq!(cmp("01:2", "1:2"), Ordering::Equal);
    }

    #[test]
    fn empty_release_is_after_missing_release() {
        assert_eq!(cmp("1", "1-"), Ordering::Less);
        assert_eq!(cmp("1-", "1-"), Ordering::Equal);
        assert_eq!(cmp("1-1.", "1-1"), Ordering::Equal);
    }

    #[test]
    fn letters_are_older_than_numbers() {
        assert_eq!(cmp("1.a", "1.1"), Ordering::Less);
        assert_eq!(cmp("1-1.el7", "1-123"), Ordering::Less);
    }
}
