//! Affected-version rules: OSV ranges and version lists, and claircore's `fixed_in_version`,
//! `range` and architecture rules.
//!
//! A rule is compiled once ([`CompiledRule::new`]): its bounds are parsed with the scheme of
//! its ecosystem and OSV events are sorted, so that evaluating it against an installed
//! version is a few comparisons. [`affected`] is the one-shot form.
//!
//! OSV follows the schema's "Evaluation" pseudocode: a version is affected if it is listed in
//! `versions` (as the same string, or an equal version of the ecosystem's scheme) or if any
//! `SEMVER` or `ECOSYSTEM` range covers it. A range covers `v` if `v` is below one of its
//! `limit`s (when it has any; `*` is infinity) and, walking its events sorted by version
//! (events at equal versions keep the record's order), the last event that applies leaves it
//! vulnerable: `introduced <= v` sets, `fixed <= v` and `last_affected < v` clear. `introduced:
//! "0"` is below every version. `GIT` ranges cannot be evaluated against a version and are
//! ignored; a range without `introduced` affects nothing. `SEMVER` ranges use SemVer (for the
//! `Go` ecosystem the Go spelling, `v` and `go` prefixes); `ECOSYSTEM` ranges the ecosystem's
//! scheme.
//!
//! claircore rules follow Clair (wire reference §1), by the ecosystem's distribution:
//! - `fixed_in_version` a query string `introduced=X&fixed=Y` / `…&lastAffected=Z` (any
//!   ecosystem; values URL-encoded, either key optional): `X <= v` and `v < Y` (or `v <= Z`);
//! - Debian and Alpine: empty → affected, `0` → not affected, else `v < fixed`;
//! - Ubuntu: empty or `0` → affected, else `v < fixed`;
//! - everything else (RPM family, language ecosystems): empty → affected, else `v < fixed`;
//! - Go and npm: the normalised `range` only (`lower <= v < upper` over claircore's integer
//!   arrays, kinds must match), falling back to `fixed_in_version` when there is no range.
//!
//! `arch_op` then filters on the installed architecture: `equals`, `not equals`, or `pattern
//! match` (a regular expression searched in the architecture, as Go's `MatchString`). An empty
//! `arch` or `arch_op` means no filter; an unknown operator or an invalid pattern matches
//! nothing (Clair's behaviour), and [`CompiledRule::try_new`] reports it.
use std::cmp::Ordering;

use tocsin_model::claircore::VersionRange;
use tocsin_model::vuln::{Affected, Event, OsvRange, RangeKind};

use crate::normalized::Normalized;
use crate::{Scheme, Version};

/// A problem in a rule that makes part of it unusable.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// `arch_op` is not one of `equals`, `not equals`, `pattern match`.
    #[error("unknown arch_op {op:?} (expected \"equals\", \"not equals\" or \"pattern match\")")]
    UnknownArchOp {
        /// The operator as given.
        op: String,
    },
    /// The `pattern match` architecture is not a valid regular expression.
    #[error("arch pattern {pattern:?} is not a valid regular expression: {error}")]
    InvalidArchPattern {
        /// The pattern as given.
        pattern: String,
        /// Why it did not compile.
        error: regex_lite::Error,
    },
}

/// One side of an OSV event: a version, or below / above every version.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Bound {
    Min,
    At(Version),
    Max,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EventKind {
    Introduced,
    Fixed,
    LastAffected,
}

impl Bound {
    /// Where `v` lies relative to this bound.
    fn locate(&self, v: &Version) -> Ordering {
        match self {
            Bound::Min => Ordering::Greater,
            Bound::At(b) => v.cmp(b),
            Bound::Max => Ordering::Less,
        }
    }
}

/// An OSV range with its events sorted and its limits parsed.
#[derive(Clone, Debug)]
struct CompiledRange {
    /// Index of the range's scheme in [`Check::Osv`]'s `schemes`.
    scheme: usize,
    events: Vec<(EventKind, Bound)>,
    limits: Vec<Bound>,
}

impl CompiledRange {
    fn new(range: &OsvRange, scheme: Scheme, scheme_index: usize) -> Option<Self> {
        let bound = |v: &str| Bound::At(scheme.parse(v));
        let mut events = Vec::new();
        let mut limits = Vec::new();
        for event in &range.events {
            match event {
                Event::Introduced(v) if v == "0" => {
                    events.push((EventKind::Introduced, Bound::Min))
                }
                Event::Introduced(v) => events.push((EventKind::Introduced, bound(v))),
                Event::Fixed(v) => events.push((EventKind::Fixed, bound(v))),
                Event::LastAffected(v) => events.push((EventKind::LastAffected, bound(v))),
                Event::Limit(v) if v.contains('*') => limits.push(Bound::Max),
                Event::Limit(v) => limits.push(bound(v)),
            }
        }
        if !events.iter().any(|(k, _)| *k == EventKind::Introduced) {
            return None;
        }
        sort_events(&mut events);
        Some(CompiledRange {
            scheme: scheme_index,
            events,
            limits,
        })
    }

    fn covers(&self, v: &Version) -> bool {
        if !self.limits.is_empty() && !self.limits.iter().any(|l| l.locate(v).is_lt()) {
            return false;
        }
        let mut vulnerable = false;
        for (kind, at) in &self.events {
            let here = at.locate(v);
            match kind {
                EventKind::Introduced if here.is_ge() => vulnerable = true,
                EventKind::Fixed if here.is_ge() => vulnerable = false,
                EventKind::LastAffected if here.is_gt() => vulnerable = false,
                _ => {}
            }
        }
        vulnerable
    }
}

/// Sort events by version, keeping the record's order among equal versions.
///
/// A plain insertion sort (ranges hold a handful of events) rather than `slice::sort_by`: the
/// standard sort may panic when an ordering is not transitive, and Maven's ordering, faithful
/// to Maven's own, is not transitive for some mixed-qualifier triples. A feed must not be able
/// to crash the matcher.
fn sort_events(events: &mut [(EventKind, Bound)]) {
    for i in 1..events.len() {
        let mut j = i;
        while j > 0 && events[j - 1].1 > events[j].1 {
            events.swap(j - 1, j);
            j -= 1;
        }
    }
}

/// The positions `0..n` in stable sorted order by `le` (a "less or equal" test).
///
/// A bottom-up merge sort rather than `slice::sort`: the standard sort may panic when an ordering
/// is not total, and a feed must not be able to crash the matcher through a scheme bug; this one
/// only ever yields some permutation.
fn merge_order(n: usize, le: impl Fn(usize, usize) -> bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut buf: Vec<usize> = Vec::with_capacity(n);
    let mut width = 1;
    while width < n {
        buf.clear();
        for start in (0..n).step_by(2 * width) {
            let mid = (start + width).min(n);
            let end = (start + 2 * width).min(n);
            let (mut i, mut j) = (start, mid);
            while i < mid && j < end {
                if le(order[i], order[j]) {
                    buf.push(order[i]);
                    i += 1;
                } else {
                    buf.push(order[j]);
                    j += 1;
                }
            }
            buf.extend_from_slice(&order[i..mid]);
            buf.extend_from_slice(&order[j..end]);
        }
        std::mem::swap(&mut order, &mut buf);
        width *= 2;
    }
    order
}

/// The upper end of a claircore query-string window.
#[derive(Clone, Debug)]
enum Upper {
    None,
    Fixed(Version),
    LastAffected(Version),
}

/// The version part of a compiled rule.
#[derive(Clone, Debug)]
enum Check {
    Osv {
        /// The schemes the installed version must be parsed with: the ecosystem's first
        /// (for `versions`), then SemVer's when a `SEMVER` range needs it.
        schemes: Vec<Scheme>,
        /// The listed versions, parsed with the first scheme.
        versions: Listed,
        ranges: Vec<CompiledRange>,
    },
    Always,
    Never,
    Below(Version),
    Window {
        introduced: Option<Version>,
        upper: Upper,
    },
    Normalized {
        lower: Option<Normalized>,
        upper: Option<Normalized>,
    },
}

/// An OSV `versions` list, parsed. A version is listed if it equals (in its scheme's order) one
/// of them, so `1.0` finds `1.0.0` where the scheme says they are equal, and an identical string
/// always finds itself.
#[derive(Clone, Debug)]
enum Listed {
    /// Sorted and deduplicated, searched by bisection: schemes with a total order. PyPI and
    /// distribution records list hundreds of versions, checked against every installed one.
    Sorted(Vec<Version>),
    /// In record order, searched one by one: Maven, whose order is not transitive, so a sorted
    /// list could hide an equal version from a bisection.
    Scan(Vec<Version>),
}

impl Listed {
    fn new(versions: Vec<Version>, scheme: Scheme) -> Listed {
        if scheme == Scheme::Maven {
            return Listed::Scan(versions);
        }
        let order = merge_order(versions.len(), |a, b| versions[a] <= versions[b]);
        let mut slots: Vec<Option<Version>> = versions.into_iter().map(Some).collect();
        let mut sorted: Vec<Version> = order.into_iter().filter_map(|i| slots[i].take()).collect();
        sorted.dedup();
        Listed::Sorted(sorted)
    }

    fn is_empty(&self) -> bool {
        match self {
            Listed::Sorted(v) | Listed::Scan(v) => v.is_empty(),
        }
    }

    fn contains(&self, v: &Version) -> bool {
        match self {
            Listed::Sorted(list) => list.binary_search(v).is_ok(),
            Listed::Scan(list) => list.iter().any(|l| l == v),
        }
    }
}

/// The architecture part of a compiled claircore rule.
#[derive(Clone, Debug)]
enum ArchCheck {
    Any,
    Equals(String),
    NotEquals(String),
    Pattern(regex_lite::Regex),
    /// An unusable operator or pattern: nothing matches.
    Nothing,
}

impl ArchCheck {
    fn new(op: &str, arch: &str) -> Result<Self, RuleError> {
        if op.is_empty() || arch.is_empty() {
            return Ok(ArchCheck::Any);
        }
        match op {
            "equals" => Ok(ArchCheck::Equals(arch.to_string())),
            "not equals" => Ok(ArchCheck::NotEquals(arch.to_string())),
            "pattern match" => regex_lite::Regex::new(arch)
                .map(ArchCheck::Pattern)
                .map_err(|error| RuleError::InvalidArchPattern {
                    pattern: arch.to_string(),
                    error,
                }),
            _ => Err(RuleError::UnknownArchOp { op: op.to_string() }),
        }
    }

    fn allows(&self, installed: &str) -> bool {
        match self {
            ArchCheck::Any => true,
            ArchCheck::Equals(a) => installed == a,
            ArchCheck::NotEquals(a) => installed != a,
            ArchCheck::Pattern(re) => re.is_match(installed),
            ArchCheck::Nothing => false,
        }
    }
}

/// How a distribution reads claircore's `fixed_in_version`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    /// Empty → affected, `0` → not affected.
    ZeroMeansUnaffected,
    /// Empty or `0` → affected.
    ZeroMeansUnfixed,
    /// Go and npm: the normalised range decides.
    RangeOnly,
    /// Empty → affected.
    Plain,
}

impl Family {
    fn of(ecosystem: &str) -> Family {
        match ecosystem.split(':').next().unwrap_or(ecosystem) {
            "Debian" | "Alpine" => Family::ZeroMeansUnaffected,
            "Ubuntu" => Family::ZeroMeansUnfixed,
            "Go" | "npm" => Family::RangeOnly,
            _ => Family::Plain,
        }
    }
}

/// A rule with its bounds parsed, ready to evaluate against many installed versions.
#[derive(Clone, Debug)]
pub struct CompiledRule {
    check: Check,
    arch: ArchCheck,
}

impl CompiledRule {
    /// Compile a rule for packages of `ecosystem` (an OSV ecosystem name such as `Debian:11`).
    ///
    /// Never fails: an unusable `arch_op` or pattern makes the rule match nothing, as in
    /// Clair. Use [`CompiledRule::try_new`] to be told about it.
    pub fn new(rule: &Affected, ecosystem: &str) -> CompiledRule {
        Self::compile(rule, ecosystem).0
    }

    /// Compile a rule, failing when its architecture filter is unusable.
    pub fn try_new(rule: &Affected, ecosystem: &str) -> Result<CompiledRule, RuleError> {
        match Self::compile(rule, ecosystem) {
            (compiled, None) => Ok(compiled),
            (_, Some(e)) => Err(e),
        }
    }

    /// Compile; an unusable architecture filter yields a rule that matches nothing, and the
    /// reason.
    fn compile(rule: &Affected, ecosystem: &str) -> (CompiledRule, Option<RuleError>) {
        let scheme = Scheme::for_ecosystem(ecosystem);
        match rule {
            Affected::Osv { ranges, versions } => (
                CompiledRule {
                    check: compile_osv(ranges, versions, scheme),
                    arch: ArchCheck::Any,
                },
                None,
            ),
            Affected::Claircore {
                fixed_in_version,
                range,
                arch_op,
                arch,
            } => {
                let check = compile_claircore(fixed_in_version, range.as_ref(), ecosystem, scheme);
                let (arch, error) = match ArchCheck::new(arch_op, arch) {
                    Ok(arch) => (arch, None),
                    Err(e) => (ArchCheck::Nothing, Some(e)),
                };
                (CompiledRule { check, arch }, error)
            }
        }
    }

    /// Whether an installed package is affected: its version (in the ecosystem's syntax), its
    /// claircore normalised version (`kind:v0.….v9`, or "" when it has none) and its
    /// architecture ("" when unknown).
    pub fn matches(&self, installed: &str, normalized_installed: &str, arch: &str) -> bool {
        self.arch.allows(arch) && self.check_version(installed, normalized_installed)
    }

    fn check_version(&self, installed: &str, normalized_installed: &str) -> bool {
        match &self.check {
            Check::Always => true,
            Check::Never => false,
            Check::Below(fixed) => fixed.scheme().parse(installed) < *fixed,
            Check::Window { introduced, upper } => {
                let scheme = match (introduced, upper) {
                    (Some(v), _) | (None, Upper::Fixed(v) | Upper::LastAffected(v)) => v.scheme(),
                    (None, Upper::None) => return true,
                };
                let v = scheme.parse(installed);
                introduced.as_ref().is_none_or(|i| v >= *i)
                    && match upper {
                        Upper::None => true,
                        Upper::Fixed(f) => v < *f,
                        Upper::LastAffected(l) => v <= *l,
                    }
            }
            Check::Normalized { lower, upper } => {
                let Some(v) = Normalized::parse(normalized_installed)
                    .or_else(|| Normalized::from_semver(installed))
                else {
                    return false;
                };
                lower.as_ref().is_none_or(|l| {
                    matches!(v.compare(l), Some(Ordering::Greater | Ordering::Equal))
                }) && upper
                    .as_ref()
                    .is_none_or(|u| v.compare(u) == Some(Ordering::Less))
            }
            Check::Osv {
                schemes,
                versions,
                ranges,
            } => {
                let Some(first) = schemes.first() else {
                    return false;
                };
                if versions.is_empty() && ranges.is_empty() {
                    return false;
                }
                // Parsed once per call, and the second scheme only if a range needs it.
                let v = first.parse(installed);
                if versions.contains(&v) {
                    return true;
                }
                let mut other: Option<Version> = None;
                ranges.iter().any(|r| match r.scheme {
                    0 => r.covers(&v),
                    i => schemes
                        .get(i)
                        .is_some_and(|s| r.covers(other.get_or_insert_with(|| s.parse(installed)))),
                })
            }
        }
    }
}

fn compile_osv(ranges: &[OsvRange], versions: &[String], scheme: Scheme) -> Check {
    // SEMVER ranges of Go modules keep Go's spelling rules (`v`, `go` prefixes).
    let semver = if scheme == Scheme::Go {
        Scheme::Go
    } else {
        Scheme::Semver
    };
    let mut schemes = vec![scheme];
    let ranges = ranges
        .iter()
        .filter_map(|r| {
            let range_scheme = match r.kind {
                RangeKind::Semver => semver,
                RangeKind::Ecosystem => scheme,
                RangeKind::Git => return None,
            };
            let index = match schemes.iter().position(|s| *s == range_scheme) {
                Some(i) => i,
                None => {
                    schemes.push(range_scheme);
                    schemes.len() - 1
                }
            };
            CompiledRange::new(r, range_scheme, index)
        })
        .collect();
    let versions = Listed::new(versions.iter().map(|v| scheme.parse(v)).collect(), scheme);
    Check::Osv {
        schemes,
        versions,
        ranges,
    }
}

fn compile_claircore(
    fixed: &str,
    range: Option<&VersionRange>,
    ecosystem: &str,
    scheme: Scheme,
) -> Check {
    let family = Family::of(ecosystem);
    if family == Family::RangeOnly {
        if let Some(r) = range.filter(|r| r.lower.is_some() || r.upper.is_some()) {
            return Check::Normalized {
                lower: r.lower.as_ref().map(Normalized::from_model),
                upper: r.upper.as_ref().map(Normalized::from_model),
            };
        }
    }
    if let Some(q) = Query::parse(fixed) {
        let upper = match (q.fixed, q.last_affected) {
            (Some(f), _) => Upper::Fixed(scheme.parse(&f)),
            (None, Some(l)) => Upper::LastAffected(scheme.parse(&l)),
            (None, None) => Upper::None,
        };
        return Check::Window {
            introduced: q.introduced.map(|i| scheme.parse(&i)),
            upper,
        };
    }
    match (fixed, family) {
        ("", _) => Check::Always,
        ("0", Family::ZeroMeansUnaffected) => Check::Never,
        ("0", Family::ZeroMeansUnfixed) => Check::Always,
        (f, _) => Check::Below(scheme.parse(f)),
    }
}

/// A claircore query-string `fixed_in_version`.
#[derive(Debug, Default, PartialEq, Eq)]
struct Query {
    introduced: Option<String>,
    fixed: Option<String>,
    last_affected: Option<String>,
}

impl Query {
    /// `Some` when the string is `key=value` pairs joined by `&` naming at least one of
    /// `introduced`, `fixed`, `lastAffected`. The first value of a key counts (Go's
    /// `url.Values.Get`); empty values count as absent; other keys are ignored.
    fn parse(s: &str) -> Option<Query> {
        if !s.contains('=') {
            return None;
        }
        let mut q = Query::default();
        let mut known = false;
        for pair in s.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let slot = match url_decode(key).as_str() {
                "introduced" => &mut q.introduced,
                "fixed" => &mut q.fixed,
                "lastAffected" => &mut q.last_affected,
                _ => continue,
            };
            known = true;
            let value = url_decode(value);
            if slot.is_none() && !value.is_empty() {
                *slot = Some(value);
            }
        }
        known.then_some(q)
    }
}

/// Query-string decoding as Go's `url.QueryUnescape`: `+` is a space, `%XX` a byte. A `%`
/// not followed by two hex digits is kept literally rather than rejected.
fn url_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether an installed package is affected by a rule (see the module documentation).
///
/// `ecosystem` is the package's OSV ecosystem (`Debian:11`, `Go`, …); `installed` its version;
/// `normalized_installed` its claircore normalised version or ""; `arch` its architecture or
/// "". To evaluate one rule against many packages, compile it once with [`CompiledRule`].
pub fn affected(
    rule: &Affected,
    ecosystem: &str,
    installed: &str,
    normalized_installed: &str,
    arch: &str,
) -> bool {
    CompiledRule::new(rule, ecosystem).matches(installed, normalized_installed, arch)
}

#[cfg(test)]
mod tests {
    use tocsin_model::claircore::NormalizedVersion;

    use super::*;

    fn osv(kind: RangeKind, events: Vec<Event>, versions: &[&str]) -> Affected {
        Affected::Osv {
            ranges: vec![OsvRange { kind, events }],
            versions: versions.iter().map(|v| v.to_string()).collect(),
        }
    }

    fn intro(v: &str) -> Event {
        Event::Introduced(v.into())
    }
    fn fixed(v: &str) -> Event {
        Event::Fixed(v.into())
    }
    fn last(v: &str) -> Event {
        Event::LastAffected(v.into())
    }
    fn limit(v: &str) -> Event {
        Event::Limit(v.into())
    }

    fn cc(fixed: &str) -> Affected {
        Affected::Claircore {
            fixed_in_version: fixed.into(),
            range: None,
            arch_op: String::new(),
            arch: String::new(),
        }
    }

    fn hit(rule: &Affected, eco: &str, v: &str) -> bool {
        affected(rule, eco, v, "", "")
    }

    #[test]
    fn osv_introduced_zero_and_fixed() {
        let r = osv(RangeKind::Semver, vec![intro("0"), fixed("1.6.0")], &[]);
        assert!(hit(&r, "Go", "v1.5.0"));
        assert!(hit(&r, "Go", "0.0.1"));
        assert!(!hit(&r, "Go", "1.6.0"));
        assert!(!hit(&r, "Go", "v1.7.0"));
    }

    #[test]
    fn osv_several_pairs_in_unsorted_order() {
        let r = osv(
            RangeKind::Ecosystem,
            vec![intro("2.0"), fixed("2.5"), intro("0"), fixed("1.2")],
            &[],
        );
        for (v, want) in [
            ("1.0", true),
            ("1.2", false),
            ("1.9", false),
            ("2.0", true),
            ("2.4.9", true),
            ("2.5", false),
        ] {
            assert_eq!(hit(&r, "PyPI", v), want, "{v}");
        }
    }

    #[test]
    fn osv_last_affected_is_inclusive() {
        let r = osv(
            RangeKind::Ecosystem,
            vec![intro("1.0"), last("1.11.0")],
            &[],
        );
        assert!(!hit(&r, "PyPI", "0.9"));
        assert!(hit(&r, "PyPI", "1.11.0"));
        assert!(!hit(&r, "PyPI", "1.11.1"));
    }

    #[test]
    fn osv_limit_caps_the_range() {
        let r = osv(RangeKind::Semver, vec![intro("1.0.0"), limit("2.0.0")], &[]);
        assert!(hit(&r, "npm", "1.5.0"));
        assert!(!hit(&r, "npm", "2.0.0"));
        let r = osv(RangeKind::Semver, vec![intro("1.0.0"), limit("*")], &[]);
        assert!(hit(&r, "npm", "99.0.0"));
    }

    #[test]
    fn osv_versions_list_matches_by_string_and_by_value() {
        let r = Affected::Osv {
            ranges: vec![],
            versions: vec!["1.0".into(), "0.8.0-alpha2".into()],
        };
        assert!(hit(&r, "PyPI", "0.8.0-alpha2"));
        assert!(hit(&r, "PyPI", "1.0.0"));
        assert!(!hit(&r, "PyPI", "1.0.1"));
    }

    #[test]
    fn osv_long_versions_lists_find_every_listed_version_in_any_order() {
        // A PyPI-sized list in an order unrelated to the versions' own.
        let listed: Vec<String> = (0..300)
            .map(|i| format!("{}.{}.{}", (i * 7) % 13, (i * 11) % 17, i))
            .collect();
        let r = Affected::Osv {
            ranges: vec![],
            versions: listed.clone(),
        };
        for eco in [
            "PyPI",
            "crates.io",
            "Debian:12",
            "AlmaLinux:9",
            "Maven",
            "Other",
        ] {
            for v in &listed {
                assert!(hit(&r, eco, v), "{eco}: {v} is listed");
            }
            assert!(!hit(&r, eco, "99.0.0"), "{eco}");
            assert!(!hit(&r, eco, "0.0.1000"), "{eco}");
        }
        // Equal by value after sorting: PEP 440 zero padding, listed twice.
        let r = Affected::Osv {
            ranges: vec![],
            versions: vec!["2.0".into(), "1.0".into(), "1.0.0".into(), "0.5".into()],
        };
        assert!(hit(&r, "PyPI", "1.0.0.0"));
        assert!(hit(&r, "PyPI", "0.5.0"));
        assert!(!hit(&r, "PyPI", "1.5"));
    }

    #[test]
    fn merge_order_sorts_stably_and_survives_a_nonsense_order() {
        let keys = [5, 3, 9, 3, 1, 8, 5, 0, 2];
        let order = merge_order(keys.len(), |a, b| keys[a] <= keys[b]);
        assert_eq!(order, [7, 4, 8, 1, 3, 0, 6, 5, 2]);
        for n in [0, 1, 2, 7, 64, 100] {
            // A "comparison" that is not an order at all still yields a permutation.
            let mut order = merge_order(n, |a, b| (a * 31 + b * 17) % 5 < 2);
            order.sort_unstable();
            assert_eq!(order, (0..n).collect::<Vec<_>>());
        }
    }

    #[test]
    fn osv_git_ranges_and_ranges_without_introduced_affect_nothing() {
        let r = osv(RangeKind::Git, vec![intro("0"), fixed("abc123")], &[]);
        assert!(!hit(&r, "Go", "1.0.0"));
        let r = osv(RangeKind::Semver, vec![fixed("1.0.0")], &[]);
        assert!(!hit(&r, "Go", "0.1.0"));
    }

    #[test]
    fn osv_ecosystem_ranges_use_the_ecosystem_scheme() {
        let r = osv(
            RangeKind::Ecosystem,
            vec![intro("0"), fixed("1.2.3-1+deb9u1")],
            &[],
        );
        assert!(hit(&r, "Debian:9", "1.2.3-1"));
        assert!(hit(&r, "Debian:9", "1.2.3-1~deb8u1"));
        assert!(!hit(&r, "Debian:9", "1.2.3-1+deb9u1"));
        let r = osv(
            RangeKind::Ecosystem,
            vec![intro("0"), fixed("1.0.9-1.el9")],
            &[],
        );
        assert!(hit(&r, "AlmaLinux:9", "1.0.8-3.el9"));
        assert!(!hit(&r, "AlmaLinux:9", "1.0.9-1.el9"));
    }

    #[test]
    fn claircore_debian_family() {
        assert!(hit(&cc(""), "Debian:10", "1.0-1"));
        assert!(!hit(&cc("0"), "Debian:10", "1.0-1"));
        assert!(hit(&cc("1.0-2"), "Debian:10", "1.0-1"));
        assert!(!hit(&cc("1.0-2"), "Debian:10", "1.0-2"));
        assert!(!hit(&cc("0"), "Alpine:v3.18", "1.0-r0"));
        assert!(hit(&cc("1.0-r1"), "Alpine:v3.18", "1.0-r0"));
        assert!(hit(&cc(""), "Alpine:v3.18", "1.0-r0"));
    }

    #[test]
    fn claircore_ubuntu_zero_means_unfixed() {
        assert!(hit(&cc("0"), "Ubuntu:22.04", "1.0-1"));
        assert!(hit(&cc(""), "Ubuntu:22.04", "1.0-1"));
        assert!(!hit(&cc("1.0-1"), "Ubuntu:22.04", "1.0-1ubuntu1"));
    }

    #[test]
    fn claircore_rpm_family() {
        assert!(hit(&cc(""), "Red Hat:8", "1.0-1.el8"));
        assert!(hit(&cc("1:1.0-2.el8"), "Red Hat:8", "1.0-9.el8"));
        assert!(!hit(&cc("1.0-2.el8"), "Red Hat:8", "1.0-2.el8"));
    }

    #[test]
    fn claircore_query_strings() {
        let r = cc("introduced=1.0&fixed=1.2.5");
        assert!(!hit(&r, "PyPI", "0.9"));
        assert!(hit(&r, "PyPI", "1.0"));
        assert!(hit(&r, "PyPI", "1.2.4"));
        assert!(!hit(&r, "PyPI", "1.2.5"));
        let r = cc("introduced=2.0.0&lastAffected=2.3.1");
        assert!(hit(&r, "Maven", "2.3.1"));
        assert!(!hit(&r, "Maven", "2.3.2"));
        let r = cc("fixed=1.0%2Blocal");
        assert!(hit(&r, "PyPI", "1.0"));
        assert!(!hit(&r, "PyPI", "1.0+local"));
        let r = cc("introduced=0.5");
        assert!(hit(&r, "RubyGems", "9.9"));
        assert!(!hit(&r, "RubyGems", "0.4"));
    }

    #[test]
    fn query_parsing() {
        assert_eq!(Query::parse("1.2.3"), None);
        assert_eq!(Query::parse("foo=bar"), None);
        let q = Query::parse("introduced=&fixed=1.0+rc%201&fixed=2").unwrap();
        assert_eq!(q.introduced, None);
        assert_eq!(q.fixed.as_deref(), Some("1.0 rc 1"));
        assert_eq!(url_decode("100%"), "100%");
    }

    fn range(lower: Option<[i32; 4]>, upper: Option<[i32; 4]>) -> Option<VersionRange> {
        let nv = |v: [i32; 4]| NormalizedVersion {
            kind: "semver".into(),
            v: [v.to_vec(), vec![0; 6]].concat(),
        };
        Some(VersionRange {
            lower: lower.map(nv),
            upper: upper.map(nv),
        })
    }

    #[test]
    fn claircore_go_and_npm_use_the_range() {
        let r = Affected::Claircore {
            // Ignored while a range is present.
            fixed_in_version: "9.9.9".into(),
            range: range(Some([0, 1, 0, 0]), Some([0, 1, 6, 0])),
            arch_op: String::new(),
            arch: String::new(),
        };
        assert!(affected(&r, "Go", "v1.5.0", "", ""));
        assert!(!affected(&r, "Go", "v1.6.0", "", ""));
        assert!(!affected(&r, "Go", "v0.9.0", "", ""));
        // The installed normalised version wins over the version string.
        assert!(affected(
            &r,
            "npm",
            "garbage",
            "semver:0.1.5.0.0.0.0.0.0.0",
            ""
        ));
        // Other kinds do not compare.
        assert!(!affected(
            &r,
            "npm",
            "1.5.0",
            "pep440:0.1.5.0.0.0.0.0.0.0",
            ""
        ));
        // Without a usable installed version nothing matches.
        assert!(!affected(&r, "Go", "latest", "", ""));
        let open = Affected::Claircore {
            fixed_in_version: String::new(),
            range: range(None, Some([0, 2, 0, 0])),
            arch_op: String::new(),
            arch: String::new(),
        };
        assert!(affected(&open, "Go", "v0.0.1", "", ""));
    }

    #[test]
    fn claircore_go_without_range_falls_back_to_fixed() {
        assert!(hit(&cc("1.6.0"), "Go", "v1.5.0"));
        assert!(!hit(&cc("1.6.0"), "Go", "v1.6.0"));
        assert!(hit(&cc(""), "npm", "1.0.0"));
    }

    fn with_arch(op: &str, arch: &str) -> Affected {
        Affected::Claircore {
            fixed_in_version: String::new(),
            range: None,
            arch_op: op.into(),
            arch: arch.into(),
        }
    }

    #[test]
    fn arch_operators() {
        let eq = with_arch("equals", "x86_64");
        assert!(affected(&eq, "Red Hat:8", "1", "", "x86_64"));
        assert!(!affected(&eq, "Red Hat:8", "1", "", "aarch64"));
        let ne = with_arch("not equals", "x86_64");
        assert!(!affected(&ne, "Red Hat:8", "1", "", "x86_64"));
        assert!(affected(&ne, "Red Hat:8", "1", "", "noarch"));
        let pat = with_arch("pattern match", "^(x86_64|i686)$");
        assert!(affected(&pat, "Red Hat:8", "1", "", "i686"));
        assert!(!affected(&pat, "Red Hat:8", "1", "", "aarch64"));
        let any = with_arch("", "x86_64");
        assert!(affected(&any, "Red Hat:8", "1", "", "aarch64"));
        let no_arch = with_arch("equals", "");
        assert!(affected(&no_arch, "Red Hat:8", "1", "", "aarch64"));
    }

    #[test]
    fn unusable_arch_rules_match_nothing_and_are_reported() {
        let bad_op = with_arch("like", "x86_64");
        assert!(!affected(&bad_op, "Red Hat:8", "1", "", "x86_64"));
        assert!(matches!(
            CompiledRule::try_new(&bad_op, "Red Hat:8"),
            Err(RuleError::UnknownArchOp { .. })
        ));
        let bad_re = with_arch("pattern match", "(x86");
        assert!(!affected(&bad_re, "Red Hat:8", "1", "", "x86"));
        let err = CompiledRule::try_new(&bad_re, "Red Hat:8").unwrap_err();
        assert!(err.to_string().contains("(x86"), "{err}");
        assert!(CompiledRule::try_new(&with_arch("equals", "x86_64"), "Red Hat:8").is_ok());
    }

    #[test]
    fn osv_rules_ignore_arch() {
        let r = osv(RangeKind::Semver, vec![intro("0")], &[]);
        assert!(affected(&r, "crates.io", "1.0.0", "", "anything"));
    }

    #[test]
    fn events_sort_stably() {
        let mut events = vec![
            (EventKind::Fixed, Bound::At(Scheme::Semver.parse("2.0.0"))),
            (EventKind::Introduced, Bound::Min),
            (
                EventKind::Introduced,
                Bound::At(Scheme::Semver.parse("2.0")),
            ),
        ];
        sort_events(&mut events);
        let kinds: Vec<EventKind> = events.iter().map(|e| e.0).collect();
        assert_eq!(
            kinds,
            [
                EventKind::Introduced,
                EventKind::Fixed,
                EventKind::Introduced
            ]
        );
    }
}
