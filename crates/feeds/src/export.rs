//! OSV.dev's export layout and incremental updates through `modified_id.csv`.
//!
//! The export holds, per ecosystem, `all.zip` (every record), `modified_id.csv` (one
//! `<RFC 3339 modified>,<ID>` line per record, newest first) and `<ID>.json`. A follower that has
//! read the archive once asks the list what changed since ([`parse_list`], [`plan`]), fetches
//! those records, checks the list against what it knew ([`consistent`]), and replaces their
//! advisories in the previous snapshot ([`merge`]). Fetching is the caller's (`tocsin-updaters`);
//! this module is pure so that it can be fuzzed and reasoned about alone. The list is outside
//! input: every line is checked, and nothing is allocated from what a line claims.
use std::collections::HashSet;

use crate::Snapshot;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tocsin_model::vuln::Addressed;

/// One line of `modified_id.csv`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Modified {
    /// When the record last changed.
    pub at: OffsetDateTime,
    /// The record's id.
    pub id: String,
}

/// Whether an id can name a record file: no separators, no dot-only names, printable ASCII.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 256
        && !id.bytes().all(|b| b == b'.')
        && id
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b'\\' && b != b',')
}

/// Parses `modified_id.csv`: every line `<RFC 3339 time>,<id>`, newest first. Any other shape
/// is an error saying where, and makes the caller read the full archive.
pub fn parse_list(bytes: &[u8]) -> Result<Vec<Modified>, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("is not UTF-8: {e}"))?;
    let mut out: Vec<Modified> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let at_line = n + 1;
        let (at, id) = line
            .split_once(',')
            .ok_or_else(|| format!("line {at_line}: expected `<time>,<id>`, got {line:?}"))?;
        let at = OffsetDateTime::parse(at.trim(), &Rfc3339)
            .map_err(|e| format!("line {at_line}: {at:?} is not an RFC 3339 time: {e}"))?;
        let id = id.trim();
        if !valid_id(id) {
            return Err(format!("line {at_line}: {id:?} is not a record id"));
        }
        if let Some(prev) = out.last() {
            if at > prev.at {
                return Err(format!(
                    "line {at_line}: {id} ({at}) is newer than the line before it: the list is \
                     not sorted newest first"
                ));
            }
        }
        out.push(Modified {
            at,
            id: id.to_string(),
        });
    }
    Ok(out)
}

/// What a run does, given the list and the previous run's cursor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Fetch these records (each once, newest first) and merge them.
    Fetch(Vec<String>),
    /// Read the full archive, for this reason.
    Full(String),
}

/// Plans an incremental run: the records modified at or after `cursor` (at: two records of one
/// second may straddle the previous export; fetching one again is harmless). Too many of them,
/// or a list whose newest entry is older than the cursor (the export went backwards), means the
/// full archive.
pub fn plan(list: &[Modified], cursor: OffsetDateTime, max: usize) -> Plan {
    let Some(newest) = list.first() else {
        return Plan::Full("modified_id.csv is empty".into());
    };
    if newest.at < cursor {
        return Plan::Full(format!(
            "modified_id.csv's newest entry ({}) is older than the previous run's ({cursor}): \
             the export went backwards",
            newest.at
        ));
    }
    let mut seen = HashSet::new();
    let ids: Vec<String> = list
        .iter()
        .take_while(|m| m.at >= cursor)
        .filter(|m| seen.insert(m.id.as_str()))
        .map(|m| m.id.clone())
        .collect();
    if ids.len() > max {
        return Plan::Full(format!(
            "{} records changed since the previous run, more than max_incremental ({max})",
            ids.len()
        ));
    }
    Plan::Fetch(ids)
}

/// The next snapshot: the previous one's records without the advisories in `replaced`, plus
/// their fresh records (none for a withdrawn advisory). Sealed as a full read seals, so the
/// fingerprint is the one the full archive of the same content has.
pub fn merge(
    updater: &str,
    previous: Vec<Addressed>,
    replaced: &HashSet<String>,
    fresh: Vec<Addressed>,
) -> Snapshot {
    let records: Vec<Addressed> = previous
        .into_iter()
        .filter(|v| !replaced.contains(&v.name))
        .chain(fresh)
        .collect();
    Snapshot::from_records(updater, records)
}

/// The listed records that yield no vulnerability in `snapshot` (withdrawn, or naming no
/// package), sorted.
pub fn silent(listed: &[String], snapshot: &[Addressed]) -> Vec<String> {
    let names: HashSet<&str> = snapshot.iter().map(|v| v.name.as_str()).collect();
    let mut out: Vec<String> = listed
        .iter()
        .filter(|id| !names.contains(id.as_str()))
        .cloned()
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Whether the list agrees with the previous snapshot: every record listed with a time before
/// `cursor` was known then (an advisory of `previous`, or a `silent` record), and every
/// advisory of `previous` is still listed. A record restored with its old time, or deleted
/// outright, never shows among the changes: either means the full archive.
pub fn consistent(
    list: &[Modified],
    cursor: OffsetDateTime,
    previous: &[Addressed],
    silent: &[String],
) -> Result<(), String> {
    let names: HashSet<&str> = previous.iter().map(|v| v.name.as_str()).collect();
    let silent: HashSet<&str> = silent.iter().map(String::as_str).collect();
    let mut unknown = list
        .iter()
        .filter(|m| m.at < cursor)
        .filter(|m| !names.contains(m.id.as_str()) && !silent.contains(m.id.as_str()));
    if let Some(m) = unknown.next() {
        return Err(format!(
            "record {} is listed at {}, before the previous run's position, but was not in the \
             previous snapshot (restored or re-published with an old time)",
            m.id, m.at
        ));
    }
    let listed: HashSet<&str> = list.iter().map(|m| m.id.as_str()).collect();
    let mut gone: Vec<&&str> = names.iter().filter(|n| !listed.contains(**n)).collect();
    gone.sort();
    if let Some(n) = gone.first() {
        return Err(format!(
            "{} advisories of the previous snapshot are no longer listed (e.g. {n}): deleted \
             records",
            gone.len()
        ));
    }
    Ok(())
}

/// The `id` of one OSV record file, to check it is the record the list names.
pub fn record_id(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Id {
        id: String,
    }
    serde_json::from_slice::<Id>(bytes).ok().map(|r| r.id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn lists_parse_and_refuse() {
        let list = parse_list(b"2024-05-02T10:00:00Z,GHSA-1\n2024-05-02T10:00:00.5Z,GHSA-2\n");
        assert!(list.unwrap_err().contains("not sorted"));
        let list = parse_list(
            b"2024-05-02T10:00:00.5Z,GHSA-2\r\n2024-05-02T10:00:00Z,GHSA-1\n\n2023-01-01T00:00:00+02:00,PYSEC-1\n",
        )
        .unwrap();
        assert_eq!(list.len(), 3);
        assert_eq!(list[2].at, datetime!(2022-12-31 22:00 UTC));
        for bad in [
            &b"2024-05-02,GHSA-1"[..],
            b"2024-05-02T10:00:00Z GHSA-1",
            b"2024-05-02T10:00:00Z,",
            b"2024-05-02T10:00:00Z,../etc/passwd",
            b"2024-05-02T10:00:00Z,..",
            b"\xff",
        ] {
            assert!(parse_list(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_list(b"").unwrap(), vec![]);
    }

    #[test]
    fn plans() {
        let list = parse_list(
            b"2024-05-03T00:00:00Z,A\n2024-05-02T00:00:00Z,B\n2024-05-02T00:00:00Z,A\n2024-05-01T00:00:00Z,C\n",
        )
        .unwrap();
        assert_eq!(
            plan(&list, datetime!(2024-05-02 00:00 UTC), 10),
            Plan::Fetch(vec!["A".into(), "B".into()])
        );
        assert_eq!(
            plan(&list, datetime!(2024-05-03 00:00 UTC), 10),
            Plan::Fetch(vec!["A".into()])
        );
        assert!(matches!(
            plan(&list, datetime!(2024-05-04 00:00 UTC), 10),
            Plan::Full(why) if why.contains("backwards")
        ));
        assert!(matches!(
            plan(&list, datetime!(2024-01-01 00:00 UTC), 2),
            Plan::Full(why) if why.contains("max_incremental")
        ));
        assert!(matches!(
            plan(&[], datetime!(2024-01-01 00:00 UTC), 2),
            Plan::Full(_)
        ));
    }

    fn vuln(name: &str) -> Addressed {
        let record = serde_json::json!({
            "id": name, "modified": "2024-01-01T00:00:00Z",
            "affected": [{"package": {"ecosystem": "crates.io", "name": "p"},
                          "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}]}]}],
        });
        let bytes = serde_json::to_vec(&record).unwrap_or_default();
        crate::read_record("u", "r.json", &bytes, &crate::Limits::default())
            .map(|s| s.vulnerabilities.into_iter().next())
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("a vulnerability from {record}"))
    }

    #[test]
    fn consistency_with_the_previous_snapshot() {
        let list = parse_list(
            b"2024-05-03T00:00:00Z,NEW\n2024-05-02T00:00:00Z,A\n2024-05-01T00:00:00Z,W\n2024-04-01T00:00:00Z,B\n",
        )
        .unwrap();
        let cursor = datetime!(2024-05-02 00:00 UTC);
        let previous = vec![vuln("A"), vuln("B")];
        assert_eq!(
            silent(&["A".into(), "W".into(), "B".into()], &previous),
            vec!["W"]
        );
        assert_eq!(consistent(&list, cursor, &previous, &["W".into()]), Ok(()));
        // W was not known: restored with an old time.
        let e = consistent(&list, cursor, &previous, &[]).unwrap_err();
        assert!(e.contains("record W"), "{e}");
        // C is gone from the list: deleted.
        let e = consistent(
            &list,
            cursor,
            &[vuln("A"), vuln("B"), vuln("C")],
            &["W".into()],
        )
        .unwrap_err();
        assert!(e.contains("e.g. C"), "{e}");
    }

    #[test]
    fn ids() {
        assert_eq!(
            record_id(br#"{"id":"X-1","modified":"t"}"#).as_deref(),
            Some("X-1")
        );
        assert_eq!(record_id(b"[]"), None);
    }
}
