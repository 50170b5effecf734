//! Reading OSV records from the shared data (folders and archives), the `modified` timestamp as
//! `modified_id.csv` writes it, and the churn between two snapshots.
use std::collections::{BTreeMap, HashSet};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

/// One record: its `id` and its bytes exactly as stored.
pub type Record = (String, Vec<u8>);

/// The snapshots of `updates/<feed>/` (`*.tar.gz`), oldest first (their names sort by time).
///
/// Empty, after [`crate::dir`] printed why, when the shared data folder is absent: callers skip.
pub fn update_steps(feed: &str) -> Vec<PathBuf> {
    crate::dir()
        .map(|data| crate::snapshots(&data, feed))
        .unwrap_or_default()
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// The `id` field of one record.
pub(crate) fn record_id(bytes: &[u8], origin: &dyn std::fmt::Display) -> io::Result<String> {
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| invalid(format!("{origin}: {e}")))?;
    match v.get("id").and_then(|i| i.as_str()) {
        Some(id) if !id.is_empty() => Ok(id.to_string()),
        _ => Err(invalid(format!("{origin}: no string `id` field"))),
    }
}

/// Every record file (`*.json`) of `path`, sorted by id:
/// - a folder: every `*.json` below it (recursively);
/// - a `.tar.gz` / `.tgz`: every regular `*.json` member, whatever its folder (`crates/`,
///   `advisories/almalinux9/`, `debian/` in the update sequences);
/// - a `.zip` (as OSV.dev's `all.zip`): every `*.json` entry;
/// - a single `.json` file: that record.
///
/// The id is the record's `id` field; the bytes are the file's, unchanged. A file that is not a
/// JSON object with a string `id`, or two files with one id, is an error naming them.
pub fn read_records(path: &Path) -> io::Result<Vec<Record>> {
    let ctx = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    let mut found: Vec<(String, Record)> = Vec::new(); // (origin, record)
    let name = path.to_string_lossy();
    if path.is_dir() {
        let mut files = Vec::new();
        walk(path, &mut files).map_err(ctx)?;
        files.sort();
        for f in files {
            let bytes = std::fs::read(&f).map_err(ctx)?;
            let id = record_id(&bytes, &f.display())?;
            found.push((f.display().to_string(), (id, bytes)));
        }
    } else if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
        let file = std::fs::File::open(path).map_err(ctx)?;
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
        for entry in archive.entries().map_err(ctx)? {
            let mut entry = entry.map_err(ctx)?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let member = entry.path().map_err(ctx)?.to_string_lossy().into_owned();
            if !member.ends_with(".json") {
                continue;
            }
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).map_err(ctx)?;
            let origin = format!("{}!{member}", path.display());
            let id = record_id(&bytes, &origin)?;
            found.push((origin, (id, bytes)));
        }
    } else if name.ends_with(".zip") {
        let file = std::fs::File::open(path).map_err(ctx)?;
        let mut zip = zip::ZipArchive::new(file).map_err(|e| ctx(io::Error::other(e)))?;
        for i in 0..zip.len() {
            let mut entry = zip.by_index(i).map_err(|e| ctx(io::Error::other(e)))?;
            if !entry.is_file() || !entry.name().ends_with(".json") {
                continue;
            }
            let origin = format!("{}!{}", path.display(), entry.name());
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).map_err(ctx)?;
            let id = record_id(&bytes, &origin)?;
            found.push((origin, (id, bytes)));
        }
    } else {
        let bytes = std::fs::read(path).map_err(ctx)?;
        let id = record_id(&bytes, &path.display())?;
        found.push((path.display().to_string(), (id, bytes)));
    }
    found.sort_by(|a, b| a.1 .0.cmp(&b.1 .0));
    for w in found.windows(2) {
        if w[0].1 .0 == w[1].1 .0 {
            return Err(invalid(format!(
                "{} and {} both hold id {}",
                w[0].0, w[1].0, w[0].1 .0
            )));
        }
    }
    Ok(found.into_iter().map(|(_, r)| r).collect())
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let p = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(&p, out)?;
        } else if kind.is_file() && p.extension().is_some_and(|e| e == "json") {
            out.push(p);
        }
    }
    Ok(())
}

/// An RFC 3339 timestamp as `modified_id.csv` writes it: converted to UTC, truncated to whole
/// seconds, `YYYY-MM-DDTHH:MM:SSZ` (`2024-07-30T14:43:15.123+02:00` → `2024-07-30T12:43:15Z`).
/// `None` if `s` is not RFC 3339.
pub fn normalise_modified(s: &str) -> Option<String> {
    let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    format_modified(t)
}

pub(crate) fn format_modified(t: OffsetDateTime) -> Option<String> {
    let t = t.to_offset(UtcOffset::UTC).replace_nanosecond(0).ok()?;
    t.format(format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
    ))
    .ok()
}

/// One second after a normalised time ([`normalise_modified`]'s form).
pub(crate) fn one_second_after(listed: &str) -> Option<String> {
    let t = OffsetDateTime::parse(listed, &Rfc3339).ok()?;
    format_modified(t + time::Duration::seconds(1))
}

/// The record's `modified` field, normalised ([`normalise_modified`]); `None` when the record is
/// not JSON, has no `modified` string or it is not RFC 3339.
pub fn record_modified(bytes: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    normalise_modified(v.get("modified")?.as_str()?)
}

/// What changed between two snapshots of one feed (by record id).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Churn {
    /// Records in the old snapshot.
    pub old: usize,
    /// Records in the new snapshot.
    pub new: usize,
    /// Ids only in the new snapshot.
    pub added: usize,
    /// Of `added`: those whose `modified` is not after the old snapshot's newest `modified`, so
    /// that a client reading `modified_id.csv` only down to its previous high-water mark misses
    /// them.
    pub added_not_newer: usize,
    /// Ids only in the old snapshot.
    pub removed: usize,
    /// Ids in both whose bytes differ.
    pub changed_bytes: usize,
    /// Ids in both whose JSON value differs (formatting aside).
    pub changed: usize,
    /// Of `changed`: those whose (normalised) `modified` is the same in both, which an
    /// incremental fetch driven by `modified_id.csv` cannot see.
    pub changed_same_modified: usize,
    /// Of `changed`: those whose `modified` went backwards.
    pub changed_modified_backwards: usize,
    /// Of `changed`: those that differ only in `modified` (a bump without another edit).
    pub modified_only: usize,
}

/// The churn from `old` to `new` (records as [`read_records`] returns them).
pub fn churn(old: &[Record], new: &[Record]) -> Churn {
    let parse = |rs: &[Record]| -> BTreeMap<String, (Vec<u8>, serde_json::Value)> {
        rs.iter()
            .map(|(id, b)| {
                let v = serde_json::from_slice(b).unwrap_or(serde_json::Value::Null);
                (id.clone(), (b.clone(), v))
            })
            .collect()
    };
    let (o, n) = (parse(old), parse(new));
    let modified = |v: &serde_json::Value| {
        v.get("modified")
            .and_then(|m| m.as_str())
            .and_then(normalise_modified)
    };
    let high_water = o.values().filter_map(|(_, v)| modified(v)).max();
    let mut c = Churn {
        old: o.len(),
        new: n.len(),
        ..Churn::default()
    };
    let old_ids: HashSet<&String> = o.keys().collect();
    for (id, (bytes, v)) in &n {
        let Some((obytes, ov)) = o.get(id) else {
            c.added += 1;
            if modified(v) <= high_water {
                c.added_not_newer += 1;
            }
            continue;
        };
        if bytes != obytes {
            c.changed_bytes += 1;
        }
        if v != ov {
            c.changed += 1;
            let (m, om) = (modified(v), modified(ov));
            if m == om {
                c.changed_same_modified += 1;
            }
            if m < om {
                c.changed_modified_backwards += 1;
            }
            let strip = |v: &serde_json::Value| {
                let mut v = v.clone();
                if let Some(obj) = v.as_object_mut() {
                    obj.remove("modified");
                }
                v
            };
            if m != om && strip(v) == strip(ov) {
                c.modified_only += 1;
            }
        }
    }
    c.removed = old_ids.iter().filter(|id| !n.contains_key(**id)).count();
    c
}
