//! Debian and Ubuntu package versions (`[epoch:]upstream[-revision]`), ordered as dpkg orders
//! them (deb-version(7)).
//!
//! Hand-written: the algorithm is about forty lines, and the crates that implement it either
//! parse strictly (rejecting versions real feeds and `status` files contain) or bring a
//! dependency tree for what is a string walk.
//!
//! Malformed input still gets a deterministic place: an epoch that is not all digits is not an
//! epoch (the whole string is then upstream-revision with epoch 0), and any byte is allowed in
//! the upstream and revision parts, where dpkg's own character weights order it (non-letters
//! after letters, `~` before everything, even the end of the string).
use std::cmp::Ordering;

use crate::num::{ascii, cmp_digits, digit_run, is_digits};

/// A parsed dpkg version.
#[derive(Clone, Debug)]
pub(crate) struct DpkgVersion {
    epoch: String,
    upstream: String,
    revision: String,
}

impl DpkgVersion {
    /// Split a version into epoch, upstream version and revision.
    pub(crate) fn parse(s: &str) -> Self {
        let s = s.trim();
        let (epoch, rest) = match s.split_once(':') {
            Some((e, rest)) if is_digits(e) => (e, rest),
            _ => ("0", s),
        };
        // The revision is everything after the last hyphen; the upstream version may itself
        // contain hyphens. No revision compares like revision "0" (verrevcmp of "" and "0").
        let (upstream, revision) = rest.rsplit_once('-').unwrap_or((rest, ""));
        DpkgVersion {
            epoch: epoch.to_string(),
            upstream: upstream.to_string(),
            revision: revision.to_string(),
        }
    }

    /// dpkg's ordering: epoch numerically, then upstream, then revision with `verrevcmp`.
    pub(crate) fn cmp(&self, other: &Self) -> Ordering {
        cmp_digits(&self.epoch, &other.epoch)
            .then_with(|| verrevcmp(&self.upstream, &other.upstream))
            .then_with(|| verrevcmp(&self.revision, &other.revision))
    }
}

/// The weight of one byte of a non-digit run; `None` is the end of the string.
///
/// Letters sort first, then every other byte; `~` sorts before anything, including the end of
/// the string (so `1.0~rc1 < 1.0`). The end of the string and a digit weigh the same, which is
/// what ends a non-digit run in step with the other string.
fn weight(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(b'~') => -1,
        Some(c) => i32::from(c) + 256,
    }
}

/// dpkg's comparison of one version part: alternate non-digit runs (compared byte by byte with
/// [`weight`]) and digit runs (compared numerically).
fn verrevcmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        // Non-digit prefix, compared position by position.
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let wa = weight(a.get(i).copied());
            let wb = weight(b.get(j).copied());
            if wa != wb {
                return wa.cmp(&wb);
            }
            // Equal weights here mean both bytes are the same kind of non-digit (a digit or
            // the end weighs 0, every other byte does not), so neither index passes the end.
            i += 1;
            j += 1;
        }
        let na = digit_run(&a[i..]);
        let nb = digit_run(&b[j..]);
        let ord = cmp_digits(ascii(&a[i..i + na]), ascii(&b[j..j + nb]));
        if ord != Ordering::Equal {
            return ord;
        }
        i += na;
        j += nb;
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(a: &str, b: &str) -> Ordering {
        DpkgVersion::parse(a).cmp(&DpkgVersion::parse(b))
    }

    #[test]
    fn tilde_sorts_before_everything() {
        assert_eq!(cmp("1.0~rc1", "1.0"), Ordering::Less);
        assert_eq!(cmp("1.0~rc1~git1", "1.0~rc1"), Ordering::Less);
        assert_eq!(cmp("1.2.3-1~deb7u1", "1.2.3-1"), Ordering::Less);
    }

    #[test]
    fn epoch_wins_and_missing_revision_is_zero() {
        assert_eq!(cmp("1:0.1", "9.9"), Ordering::Greater);
        assert_eq!(cmp("0:1.0", "1.0"), Ordering::Equal);
        assert_eq!(cmp("1.0", "1.0-0"), Ordering::Equal);
        assert_eq!(cmp("1.0", "1.0-1"), Ordering::Less);
    }

    #[test]
    fn letters_sort_before_other_symbols() {
        assert_eq!(cmp("1.0a", "1.0+"), Ordering::Less);
        assert_eq!(cmp("1.0+deb9u1", "1.0ubuntu1"), Ordering::Greater);
    }

    #[test]
    fn malformed_epoch_is_part_of_the_version() {
        let v = DpkgVersion::parse("x:1.0-2");
        assert_eq!(v.epoch, "0");
        assert_eq!(v.upstream, "x:1.0");
        assert_eq!(v.revision, "2");
    }

    #[test]
    fn hyphenated_upstream_splits_at_last_hyphen() {
        let v = DpkgVersion::parse("1.2-beta-3");
        assert_eq!(v.upstream, "1.2-beta");
        assert_eq!(v.revision, "3");
    }
}
