//! OSV records (<https://ossf.github.io/osv-schema/>) → tocsin vulnerabilities.
//!
//! Records are deserialised into typed structs (not a generic JSON tree) for two reasons: every
//! schema violation is reported with its JSON path, and YAML scalars such as `1.0` or `0.10`
//! stay the strings they were written as instead of being read as numbers.
use serde::Deserialize;
use tocsin_model::vuln::{
    Affected, Event, NameKind, OsvRange, PackageSpec, RangeKind, Vulnerability,
};
use tocsin_model::Severity;

use crate::eco;
use crate::error::FeedError;
use crate::severity::{cvss_base_score, summary_prefix_word};
use crate::SnapshotStats;

/// Details longer than this are cut to their first paragraph when they stand in for a missing
/// summary: descriptions travel in every notification, whole advisories do not belong there.
const SHORT_DETAILS: usize = 400;

/// One OSV record. Only the fields tocsin uses are read; unknown keys are ignored.
#[derive(Debug, Deserialize)]
pub(crate) struct OsvRecord {
    id: String,
    #[serde(default)]
    summary: Option<String>,
    #[serde(default)]
    details: Option<String>,
    #[serde(default)]
    aliases: Option<Vec<String>>,
    /// Not in every schema version; the Debian conversion lists its CVEs here.
    #[serde(default)]
    upstream: Option<Vec<String>>,
    #[serde(default)]
    published: Option<String>,
    #[serde(default)]
    withdrawn: Option<String>,
    #[serde(default)]
    references: Option<Vec<Reference>>,
    #[serde(default)]
    severity: Option<Vec<SeverityEntry>>,
    #[serde(default)]
    affected: Option<Vec<AffectedEntry>>,
    #[serde(default)]
    database_specific: Option<Specific>,
}

#[derive(Debug, Deserialize)]
struct Reference {
    #[serde(default)]
    url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct SeverityEntry {
    #[serde(rename = "type")]
    kind: String,
    score: String,
}

/// `database_specific` / `ecosystem_specific`: free-form objects of which only `severity` is read.
/// It is kept as a JSON value because databases put strings, numbers or objects there.
#[derive(Debug, Default, Deserialize)]
struct Specific {
    #[serde(default)]
    severity: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct AffectedEntry {
    #[serde(default)]
    package: Option<OsvPackage>,
    #[serde(default)]
    ranges: Option<Vec<RawRange>>,
    #[serde(default)]
    versions: Option<Vec<String>>,
    #[serde(default)]
    severity: Option<Vec<SeverityEntry>>,
    #[serde(default)]
    ecosystem_specific: Option<Specific>,
    #[serde(default)]
    database_specific: Option<Specific>,
}

/// An OSV range as written. Events are read as objects with optional keys rather than as the
/// model's externally tagged enum, because the YAML deserialiser only reads enums from YAML tags
/// (`!fixed 1.0`), while OSV's YAML files write `fixed: 1.0`.
#[derive(Debug, Deserialize)]
struct RawRange {
    #[serde(rename = "type")]
    kind: RangeKind,
    events: Vec<RawEvent>,
}

#[derive(Debug, Deserialize)]
struct RawEvent {
    #[serde(default)]
    introduced: Option<String>,
    #[serde(default)]
    fixed: Option<String>,
    #[serde(default)]
    last_affected: Option<String>,
    #[serde(default)]
    limit: Option<String>,
}

impl RawRange {
    /// The model's range, or the index of the first event that is not exactly one of the four.
    fn to_model(&self) -> Result<OsvRange, usize> {
        let mut events = Vec::with_capacity(self.events.len());
        for (k, e) in self.events.iter().enumerate() {
            let mut set = [
                e.introduced.clone().map(Event::Introduced),
                e.fixed.clone().map(Event::Fixed),
                e.last_affected.clone().map(Event::LastAffected),
                e.limit.clone().map(Event::Limit),
            ]
            .into_iter()
            .flatten();
            match (set.next(), set.next()) {
                (Some(event), None) => events.push(event),
                _ => return Err(k),
            }
        }
        Ok(OsvRange {
            kind: self.kind,
            events,
        })
    }
}

#[derive(Debug, Deserialize)]
struct OsvPackage {
    ecosystem: String,
    name: String,
    #[serde(default)]
    purl: Option<String>,
}

/// The affected entries of one record that name the same package, merged.
struct Group<'r> {
    ecosystem: &'r str,
    name: String,
    kind: NameKind,
    ranges: Vec<OsvRange>,
    versions: Vec<String>,
    entries: Vec<&'r AffectedEntry>,
}

/// A CVSS vector that scored, or did not.
struct ScoredVector<'r> {
    is_v4: bool,
    vector: &'r str,
    score: Option<f64>,
}

fn push_unique<T: PartialEq>(into: &mut Vec<T>, item: T) {
    if !into.contains(&item) {
        into.push(item);
    }
}

/// Converts one record into one vulnerability per affected package, appending them to `out`.
///
/// `file` and `at` (the JSON path prefix of the record within its file, e.g. `[3].` in an array)
/// name the record in errors.
pub(crate) fn convert(
    updater: &str,
    file: &str,
    at: &str,
    record: &OsvRecord,
    stats: &mut SnapshotStats,
    out: &mut Vec<Vulnerability>,
) -> Result<(), FeedError> {
    stats.records += 1;
    if record.withdrawn.is_some() {
        stats.withdrawn += 1;
        return Ok(());
    }
    if record.id.trim().is_empty() {
        return Err(FeedError::record(file, format!("{at}id"), "is empty"));
    }

    let mut groups: Vec<Group<'_>> = Vec::new();
    for (i, entry) in record.affected.iter().flatten().enumerate() {
        let Some(package) = &entry.package else {
            // OSV allows entries that only name git commits of a project; nothing to match.
            stats.affected_without_package += 1;
            continue;
        };
        if package.ecosystem.trim().is_empty() {
            return Err(FeedError::record(
                file,
                format!("{at}affected[{i}].package.ecosystem"),
                "is empty",
            ));
        }
        if package.name.trim().is_empty() {
            return Err(FeedError::record(
                file,
                format!("{at}affected[{i}].package.name"),
                "is empty",
            ));
        }
        let ecosystem = package.ecosystem.as_str();
        let name = eco::normalize_name(ecosystem, &package.name);
        let kind = eco::osv_kind(ecosystem, package.purl.as_deref());
        let group = match groups
            .iter()
            .position(|g| g.ecosystem == ecosystem && g.name == name && g.kind == kind)
        {
            Some(existing) => {
                stats.merged_affected += 1;
                &mut groups[existing]
            }
            None => {
                groups.push(Group {
                    ecosystem,
                    name,
                    kind,
                    ranges: Vec::new(),
                    versions: Vec::new(),
                    entries: Vec::new(),
                });
                let last = groups.len() - 1;
                &mut groups[last]
            }
        };
        // Exact repeats add nothing to the rule; dropping them keeps merged records canonical.
        for (j, range) in entry.ranges.iter().flatten().enumerate() {
            let range = range.to_model().map_err(|k| {
                FeedError::record(
                    file,
                    format!("{at}affected[{i}].ranges[{j}].events[{k}]"),
                    "an event must have exactly one of introduced, fixed, last_affected, limit",
                )
            })?;
            push_unique(&mut group.ranges, range);
        }
        for version in entry.versions.iter().flatten() {
            push_unique(&mut group.versions, version.clone());
        }
        group.entries.push(entry);
    }
    if groups.is_empty() {
        stats.no_affected += 1;
        return Ok(());
    }

    let mut aliases: Vec<String> = Vec::new();
    for alias in record
        .aliases
        .iter()
        .flatten()
        .chain(record.upstream.iter().flatten())
    {
        let alias = alias.trim();
        if !alias.is_empty() && alias != record.id {
            push_unique(&mut aliases, alias.to_string());
        }
    }
    let mut links: Vec<&str> = Vec::new();
    for url in record
        .references
        .iter()
        .flatten()
        .filter_map(|r| r.url.as_deref())
    {
        let url = url.trim();
        if !url.is_empty() {
            push_unique(&mut links, url);
        }
    }
    let description = description(record.summary.as_deref(), record.details.as_deref());
    let record_vectors = score_vectors(record.severity.iter().flatten(), stats);

    for group in groups {
        let (severity, normalized_severity) = severity(record, &group, &record_vectors, stats);
        let fixed_in_version = first_fixed(&group.ranges);
        let is_language = eco::is_language(group.ecosystem);
        out.push(Vulnerability {
            updater: updater.to_string(),
            name: record.id.clone(),
            aliases: aliases.clone(),
            description: description.clone(),
            links: links.join(" "),
            issued: record.published.clone().unwrap_or_default(),
            severity,
            normalized_severity,
            distribution: if is_language {
                None
            } else {
                eco::os_distribution(group.ecosystem)
            },
            repository: if is_language {
                eco::language_repository(group.ecosystem)
            } else {
                None
            },
            package: PackageSpec {
                ecosystem: group.ecosystem.to_string(),
                name: group.name,
                kind: group.kind,
            },
            fixed_in_version,
            affected: Affected::Osv {
                ranges: group.ranges,
                versions: group.versions,
            },
        });
    }
    Ok(())
}

/// The summary, else the details (their first paragraph when long), else "".
fn description(summary: Option<&str>, details: Option<&str>) -> String {
    if let Some(summary) = summary.map(str::trim).filter(|s| !s.is_empty()) {
        return summary.to_string();
    }
    let details = details.map(str::trim).unwrap_or_default();
    if details.chars().count() <= SHORT_DETAILS {
        return details.to_string();
    }
    let normalized;
    let text = if details.contains("\r\n") {
        normalized = details.replace("\r\n", "\n");
        normalized.as_str()
    } else {
        details
    };
    text.split("\n\n")
        .map(str::trim)
        .find(|p| !p.is_empty())
        .unwrap_or_default()
        .to_string()
}

/// The first `fixed` event of the first SEMVER or ECOSYSTEM range: what a report shows as "fixed
/// in". GIT ranges name commits, which mean nothing to someone reading a version.
fn first_fixed(ranges: &[OsvRange]) -> String {
    ranges
        .iter()
        .find(|r| matches!(r.kind, RangeKind::Semver | RangeKind::Ecosystem))
        .and_then(|r| {
            r.events.iter().find_map(|e| match e {
                Event::Fixed(v) => Some(v.clone()),
                _ => None,
            })
        })
        .unwrap_or_default()
}

/// Scores the CVSS_V3 / CVSS_V4 entries of a severity list. Unscorable vectors are counted and
/// passed over rather than failing the import: the schema only says `score` is a string, and one
/// odd vector must not hold back a whole feed.
fn score_vectors<'r>(
    entries: impl Iterator<Item = &'r SeverityEntry>,
    stats: &mut SnapshotStats,
) -> Vec<ScoredVector<'r>> {
    entries
        .filter_map(|e| {
            let is_v4 = match e.kind.as_str() {
                "CVSS_V4" => true,
                "CVSS_V3" => false,
                _ => return None,
            };
            let score = match cvss_base_score(&e.score) {
                Ok(s) => Some(s),
                Err(err) => {
                    stats.invalid_cvss += 1;
                    tracing::debug!(error = %err, "ignoring unscorable CVSS vector");
                    None
                }
            };
            Some(ScoredVector {
                is_v4,
                vector: e.score.trim(),
                score,
            })
        })
        .collect()
}

fn specific_word(s: Option<&Specific>) -> Option<(String, Severity)> {
    let text = s?.severity.as_ref()?.as_str()?.trim();
    let sev = Severity::from_vendor_text(text);
    (sev != Severity::Unknown).then(|| (text.to_string(), sev))
}

fn vendor_entry_word<'r>(
    mut entries: impl Iterator<Item = &'r SeverityEntry>,
) -> Option<(String, Severity)> {
    entries.find_map(|e| {
        if e.kind != "Ubuntu" {
            return None;
        }
        let sev = Severity::from_vendor_text(&e.score);
        (sev != Severity::Unknown).then(|| (e.score.trim().to_string(), sev))
    })
}

/// The severity of one affected package: a CVSS base score (the package's own vectors before the
/// record's, v4 before v3 at each level), else the database's own word, else Unknown.
fn severity(
    record: &OsvRecord,
    group: &Group<'_>,
    record_vectors: &[ScoredVector<'_>],
    stats: &mut SnapshotStats,
) -> (String, Severity) {
    let entry_vectors = score_vectors(
        group
            .entries
            .iter()
            .flat_map(|e| e.severity.iter().flatten()),
        stats,
    );
    for vectors in [entry_vectors.as_slice(), record_vectors] {
        for want_v4 in [true, false] {
            let best = vectors
                .iter()
                .find(|v| v.is_v4 == want_v4 && v.score.is_some());
            if let Some(ScoredVector {
                vector,
                score: Some(score),
                ..
            }) = best
            {
                return (vector.to_string(), Severity::from_cvss_score(*score));
            }
        }
    }

    let words = specific_word(record.database_specific.as_ref())
        .or_else(|| {
            group
                .entries
                .iter()
                .find_map(|e| specific_word(e.ecosystem_specific.as_ref()))
        })
        .or_else(|| {
            group
                .entries
                .iter()
                .find_map(|e| specific_word(e.database_specific.as_ref()))
        })
        .or_else(|| {
            vendor_entry_word(
                group
                    .entries
                    .iter()
                    .flat_map(|e| e.severity.iter().flatten())
                    .chain(record.severity.iter().flatten()),
            )
        })
        .or_else(|| {
            let word = summary_prefix_word(record.summary.as_deref()?.trim())?;
            Some((word.to_string(), Severity::from_vendor_text(word)))
        });
    words.unwrap_or((String::new(), Severity::Unknown))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> OsvRecord {
        match serde_json::from_str(json) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        }
    }

    fn run(json: &str) -> (Vec<Vulnerability>, SnapshotStats) {
        let mut stats = SnapshotStats::default();
        let mut out = Vec::new();
        if let Err(e) = convert("test", "t.json", "", &parse(json), &mut stats, &mut out) {
            panic!("{e}");
        }
        (out, stats)
    }

    #[test]
    fn go_record() {
        let (v, _) = run(r#"{
            "id": "GO-2020-0001", "published": "2021-04-14T20:04:52Z",
            "aliases": ["CVE-2020-36567", "GHSA-6vm3-jj99-7229"],
            "summary": "Arbitrary log line injection", "details": "long",
            "affected": [{"package": {"name": "github.com/gin-gonic/gin", "ecosystem": "Go"},
                "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "1.6.0"}]}],
                "ecosystem_specific": {"imports": [{"path": "x"}]}}],
            "references": [{"type": "FIX", "url": "https://a"}, {"type": "WEB", "url": "https://b"}, {"url": "https://a"}],
            "database_specific": {"url": "https://pkg.go.dev/vuln/GO-2020-0001"}
        }"#);
        assert_eq!(v.len(), 1);
        let v = &v[0];
        assert_eq!(v.name, "GO-2020-0001");
        assert_eq!(v.package.kind, NameKind::Binary);
        assert_eq!(v.fixed_in_version, "1.6.0");
        assert_eq!(v.links, "https://a https://b");
        assert_eq!(v.description, "Arbitrary log line injection");
        assert_eq!(v.issued, "2021-04-14T20:04:52Z");
        assert_eq!(v.aliases, ["CVE-2020-36567", "GHSA-6vm3-jj99-7229"]);
        assert_eq!(v.normalized_severity, Severity::Unknown);
        assert_eq!(v.severity, "");
        assert_eq!(v.repository.as_ref().map(|r| r.name.as_str()), Some("go"));
        assert!(v.distribution.is_none());
    }

    #[test]
    fn same_package_entries_merge() {
        let (v, stats) = run(r#"{
            "id": "GO-X", "affected": [
              {"package": {"name": "stdlib", "ecosystem": "Go"},
               "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "1.20.1"}]}]},
              {"package": {"name": "toolchain", "ecosystem": "Go"},
               "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "1.20.1"}]}]},
              {"package": {"name": "stdlib", "ecosystem": "Go"},
               "ranges": [{"type": "SEMVER", "events": [{"introduced": "1.21.0"}, {"fixed": "1.21.2"}]}],
               "versions": ["1.21.0"]},
              {"package": {"name": "stdlib", "ecosystem": "Go"},
               "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "1.20.1"}]}]}
            ]}"#);
        assert_eq!(v.len(), 2);
        assert_eq!(stats.merged_affected, 2);
        let stdlib = v.iter().find(|x| x.package.name == "stdlib");
        let Some(Vulnerability {
            affected: Affected::Osv { ranges, versions },
            fixed_in_version,
            ..
        }) = stdlib
        else {
            panic!("no stdlib vulnerability: {v:?}");
        };
        assert_eq!(ranges.len(), 2);
        assert_eq!(versions, &["1.21.0"]);
        assert_eq!(fixed_in_version, "1.20.1");
    }

    #[test]
    fn withdrawn_and_empty_records_produce_nothing() {
        let (v, stats) = run(r#"{"id": "A", "withdrawn": "2024-01-01T00:00:00Z",
            "affected": [{"package": {"name": "x", "ecosystem": "Go"}}]}"#);
        assert!(v.is_empty());
        assert_eq!((stats.records, stats.withdrawn), (1, 1));
        let (v, stats) = run(r#"{"id": "B", "affected": []}"#);
        assert!(v.is_empty());
        assert_eq!(stats.no_affected, 1);
        let (v, stats) = run(
            r#"{"id": "C", "affected": [{"ranges": [{"type": "GIT", "repo": "r", "events": [{"introduced": "abc"}]}]}]}"#,
        );
        assert!(v.is_empty());
        assert_eq!((stats.no_affected, stats.affected_without_package), (1, 1));
    }

    #[test]
    fn package_vectors_first_then_v4_before_v3() {
        let (v, _) = run(r#"{"id": "A",
            "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N"},
                         {"type": "CVSS_V4", "score": "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"}],
            "affected": [{"package": {"name": "x", "ecosystem": "crates.io"}},
                         {"package": {"name": "y", "ecosystem": "crates.io"},
                          "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H"}]}]}"#);
        let x = &v[0];
        assert_eq!(x.normalized_severity, Severity::Critical);
        assert!(x.severity.starts_with("CVSS:4.0/"));
        // y's own vector is more specific than the record's, whatever their versions.
        assert_eq!(v[1].normalized_severity, Severity::High);
        assert_eq!(
            v[1].severity,
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H"
        );

        let (v, _) = run(r#"{"id": "A",
            "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N"}],
            "affected": [{"package": {"name": "x", "ecosystem": "crates.io"}},
                         {"package": {"name": "y", "ecosystem": "crates.io"},
                          "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H"}]}]}"#);
        assert_eq!(v[0].normalized_severity, Severity::Medium);
        assert_eq!(v[1].normalized_severity, Severity::High);
        assert_eq!(
            v[1].severity,
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H"
        );
    }

    #[test]
    fn bad_vectors_fall_through_and_are_counted() {
        let (v, stats) = run(r#"{"id": "A",
            "severity": [{"type": "CVSS_V3", "score": "7.5"}],
            "database_specific": {"severity": "MODERATE"},
            "affected": [{"package": {"name": "x", "ecosystem": "npm"}}]}"#);
        assert_eq!(stats.invalid_cvss, 1);
        assert_eq!(v[0].severity, "MODERATE");
        assert_eq!(v[0].normalized_severity, Severity::Medium);
    }

    #[test]
    fn vendor_words_in_order() {
        let (v, _) = run(r#"{"id": "A", "summary": "Important: kernel update",
            "affected": [{"package": {"name": "x", "ecosystem": "AlmaLinux:9"},
                          "ecosystem_specific": {"severity": "low"}}]}"#);
        assert_eq!(
            (v[0].severity.as_str(), v[0].normalized_severity),
            ("low", Severity::Low)
        );
        let (v, _) = run(r#"{"id": "A", "summary": "Important: kernel update",
            "affected": [{"package": {"name": "x", "ecosystem": "AlmaLinux:9"},
                          "database_specific": {"severity": 3}}]}"#);
        assert_eq!(
            (v[0].severity.as_str(), v[0].normalized_severity),
            ("Important", Severity::High)
        );
        let (v, _) = run(r#"{"id": "A",
            "severity": [{"type": "Ubuntu", "score": "medium"}],
            "affected": [{"package": {"name": "x", "ecosystem": "Ubuntu:22.04:LTS"}}]}"#);
        assert_eq!(v[0].normalized_severity, Severity::Medium);
        let (v, _) = run(r#"{"id": "A", "database_specific": {"severity": "UNKNOWN"},
            "affected": [{"package": {"name": "x", "ecosystem": "Go"}}]}"#);
        assert_eq!(
            (v[0].severity.as_str(), v[0].normalized_severity),
            ("", Severity::Unknown)
        );
    }

    #[test]
    fn descriptions() {
        assert_eq!(description(Some("  s  "), Some("d")), "s");
        assert_eq!(
            description(Some(""), Some("short\n\ndetails")),
            "short\n\ndetails"
        );
        let long = format!("{}\n\n{}", "a".repeat(300), "b".repeat(300));
        assert_eq!(description(None, Some(&long)), "a".repeat(300));
        let long_crlf = long.replace('\n', "\r\n");
        assert_eq!(description(None, Some(&long_crlf)), "a".repeat(300));
        assert_eq!(description(None, None), "");
    }

    #[test]
    fn first_fixed_skips_git_ranges_and_takes_first_range_only() {
        let ranges: Vec<OsvRange> = match serde_json::from_str(
            r#"[{"type": "GIT", "events": [{"introduced": "0"}, {"fixed": "abc"}]},
                {"type": "ECOSYSTEM", "events": [{"introduced": "1"}, {"last_affected": "2"}]},
                {"type": "ECOSYSTEM", "events": [{"fixed": "3"}]}]"#,
        ) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(first_fixed(&ranges), "");
        assert_eq!(first_fixed(&ranges[2..]), "3");
    }

    #[test]
    fn empty_names_are_errors_with_paths() {
        let mut stats = SnapshotStats::default();
        let rec = parse(
            r#"{"id": "A", "affected": [{"package": {"name": "x", "ecosystem": "Go"}},
            {"package": {"name": " ", "ecosystem": "Go"}}]}"#,
        );
        let err = convert("u", "f.json", "", &rec, &mut stats, &mut Vec::new());
        let msg = err.map(|_| ()).err().map(|e| e.to_string());
        assert_eq!(
            msg.as_deref(),
            Some("f.json: affected[1].package.name: is empty")
        );
    }

    #[test]
    fn events_need_exactly_one_key() {
        for bad in [r#"{}"#, r#"{"introduced": "0", "fixed": "1"}"#] {
            let mut stats = SnapshotStats::default();
            let rec = parse(&format!(
                r#"{{"id": "A", "affected": [{{"package": {{"name": "x", "ecosystem": "Go"}},
                "ranges": [{{"type": "SEMVER", "events": [{{"introduced": "0"}}, {bad}]}}]}}]}}"#
            ));
            let err = convert("u", "f.json", "[2].", &rec, &mut stats, &mut Vec::new());
            let msg = err
                .map(|_| ())
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                msg.starts_with("f.json: [2].affected[0].ranges[0].events[1]: an event must have"),
                "{msg}"
            );
        }
    }

    #[test]
    fn debian_aliases_from_upstream_and_distribution() {
        let (v, _) = run(
            r#"{"id": "DLA-0001-1", "upstream": ["CVE-2014-3466"], "aliases": ["DLA-0001-1"],
            "summary": "gnutls26 - security update",
            "affected": [{"package": {"ecosystem": "Debian:6", "name": "gnutls26",
                "purl": "pkg:deb/debian/gnutls26?arch=source"},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.8.6-1+squeeze4"}]}]}]}"#,
        );
        let v = &v[0];
        assert_eq!(v.aliases, ["CVE-2014-3466"]);
        assert_eq!(v.package.kind, NameKind::Source);
        assert_eq!(v.package.ecosystem, "Debian:6");
        assert_eq!(v.fixed_in_version, "2.8.6-1+squeeze4");
        let d = v.distribution.clone().unwrap_or_default();
        assert_eq!((d.did.as_str(), d.version_id.as_str()), ("debian", "6"));
        assert!(v.repository.is_none());
    }
}
