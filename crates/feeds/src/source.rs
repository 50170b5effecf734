//! Where snapshots come from: directories, tar.gz and zip archives, single JSON/YAML documents,
//! and how their format is recognised.
use std::collections::HashMap;
use std::fs;
use std::io::{BufReader, Read, Seek};
use std::path::{Path, PathBuf};

use serde::de::IgnoredAny;

use crate::error::FeedError;
use crate::snapshot::{first_json_byte, is_record_file, Collector, Snapshot};
use crate::Progress;

/// The shapes a snapshot can arrive in. Every one but a directory is recognised from content
/// (magic bytes, then the keys of the first array element), not from a file name, because
/// uploads have none and downloads often have the wrong one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SnapshotFormat {
    /// A directory of OSV records (`*.json`, `*.yaml`, `*.yml`, recursively).
    OsvDir,
    /// A zip archive of OSV record files (osv.dev's `all.zip`).
    OsvZip,
    /// A gzip-compressed tar archive of OSV record files.
    OsvTarGz,
    /// A JSON array of OSV records.
    OsvJsonArray,
    /// A JSON array of claircore Vulnerabilities (a Clair matcher's dump).
    ClaircoreJsonArray,
    /// One OSV record: a JSON object, or a YAML file.
    OsvRecord,
}

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];

fn is_zip(head: &[u8]) -> bool {
    // Local file header, or the end-of-central-directory record of an empty archive.
    head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06")
}

/// Keys only OSV records have at the top level, and keys only claircore Vulnerabilities have.
const OSV_KEYS: &[&str] = &[
    "modified",
    "affected",
    "schema_version",
    "withdrawn",
    "aliases",
    "summary",
    "details",
    "references",
];
const CLAIRCORE_KEYS: &[&str] = &[
    "normalized_severity",
    "fixed_in_version",
    "updater",
    "package",
    "distribution",
    "repository",
    "arch_op",
];

/// Tells an OSV array from a claircore array by the keys of its first element.
fn classify_array(file: &str, bytes: &[u8]) -> Result<SnapshotFormat, FeedError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let start = bytes.iter().position(|&b| b == b'[').unwrap_or(0) + 1;
    let rest = &bytes[start.min(bytes.len())..];
    if first_json_byte(rest) == Some(b']') {
        return Ok(SnapshotFormat::OsvJsonArray);
    }
    let first = serde_json::Deserializer::from_slice(rest)
        .into_iter::<HashMap<String, IgnoredAny>>()
        .next();
    let keys = match first {
        Some(Ok(keys)) => keys,
        Some(Err(e)) => return Err(FeedError::record(file, "[0]", e.to_string())),
        None => return Err(FeedError::record(file, "", "unterminated JSON array")),
    };
    let osv = OSV_KEYS.iter().any(|k| keys.contains_key(*k));
    let clair = CLAIRCORE_KEYS.iter().any(|k| keys.contains_key(*k));
    match (osv, clair) {
        (true, false) => Ok(SnapshotFormat::OsvJsonArray),
        (false, true) => Ok(SnapshotFormat::ClaircoreJsonArray),
        _ => Err(FeedError::UnrecognisedFormat {
            file: file.to_string(),
            reason: "the first array element is neither an OSV record nor a claircore \
                     Vulnerability (compare its keys with the two schemas)"
                .into(),
        }),
    }
}

/// Recognises a document or archive held in memory.
fn sniff_bytes(file: &str, bytes: &[u8], yaml_name: bool) -> Result<SnapshotFormat, FeedError> {
    if bytes.starts_with(GZIP_MAGIC) {
        return Ok(SnapshotFormat::OsvTarGz);
    }
    if is_zip(bytes) {
        return Ok(SnapshotFormat::OsvZip);
    }
    if yaml_name {
        return Ok(SnapshotFormat::OsvRecord);
    }
    match first_json_byte(bytes) {
        Some(b'[') => classify_array(file, bytes),
        Some(b'{') => Ok(SnapshotFormat::OsvRecord),
        Some(b) => Err(FeedError::UnrecognisedFormat {
            file: file.to_string(),
            reason: format!(
                "expected a gzip (tar.gz) or zip archive, or JSON; the content starts with {:?}",
                char::from(b)
            ),
        }),
        None => Err(FeedError::Empty {
            file: file.to_string(),
        }),
    }
}

impl SnapshotFormat {
    /// Recognises the format of a snapshot held in memory (an upload): gzip and zip by their
    /// magic bytes, JSON arrays by the keys of their first element, a JSON object as one OSV
    /// record. `None` when it is none of these.
    pub fn sniff(bytes: &[u8]) -> Option<SnapshotFormat> {
        sniff_bytes("", bytes, false).ok()
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> FeedError + '_ {
    move |error| FeedError::Io {
        path: path.to_path_buf(),
        error,
    }
}

fn is_yaml_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"))
}

/// Reads a snapshot from a path: a directory (recursively, `*.json`/`*.yaml`/`*.yml`), a zip, a
/// tar.gz/.tgz, or a `.json` file holding an array of OSV records or of claircore
/// Vulnerabilities (a single OSV record, JSON or YAML, is accepted too).
///
/// All-or-nothing: the first malformed record fails the whole read with an error naming the
/// file (inside archives and directories: its relative path) and the JSON path of the value.
/// `progress` is called after each record file (`total` is unknown for tar.gz streams).
pub fn read_path(
    updater: &str,
    path: &Path,
    progress: &dyn Fn(Progress),
) -> Result<Snapshot, FeedError> {
    let name = path.display().to_string();
    let meta = fs::metadata(path).map_err(io_error(path))?;
    if meta.is_dir() {
        return read_dir(updater, path, progress);
    }
    let mut file = fs::File::open(path).map_err(io_error(path))?;
    let mut head = Vec::with_capacity(4);
    (&mut file)
        .take(4)
        .read_to_end(&mut head)
        .map_err(io_error(path))?;
    file.rewind().map_err(io_error(path))?;
    if head.starts_with(GZIP_MAGIC) {
        let mut c = Collector::new(updater, None, progress);
        read_tar_gz(&mut c, &name, BufReader::new(file))?;
        return c.finish(&name);
    }
    if is_zip(&head) {
        return read_zip(updater, &name, file, progress);
    }
    drop(file);
    let bytes = fs::read(path).map_err(io_error(path))?;
    read_document(updater, &name, &bytes, is_yaml_name(path), progress)
}

/// Reads a snapshot from bytes (an HTTP upload): a tar.gz (gzip magic), a zip (`PK` magic), or
/// JSON: an array of OSV records or of claircore Vulnerabilities, or one OSV record object.
/// Errors name the input `(upload)` and, inside archives, the entry.
pub fn read_bytes(
    updater: &str,
    bytes: &[u8],
    progress: &dyn Fn(Progress),
) -> Result<Snapshot, FeedError> {
    const NAME: &str = "(upload)";
    match sniff_bytes(NAME, bytes, false)? {
        SnapshotFormat::OsvTarGz => {
            let mut c = Collector::new(updater, None, progress);
            read_tar_gz(&mut c, NAME, bytes)?;
            c.finish(NAME)
        }
        SnapshotFormat::OsvZip => read_zip(updater, NAME, std::io::Cursor::new(bytes), progress),
        _ => read_document(updater, NAME, bytes, false, progress),
    }
}

fn read_document(
    updater: &str,
    name: &str,
    bytes: &[u8],
    yaml: bool,
    progress: &dyn Fn(Progress),
) -> Result<Snapshot, FeedError> {
    let format = sniff_bytes(name, bytes, yaml)?;
    let mut c = Collector::new(updater, Some(1), progress);
    // A YAML document is only ever read from a path ending in .yaml/.yml, and the collector
    // tells YAML from JSON by that same name.
    match format {
        SnapshotFormat::ClaircoreJsonArray => c.add_claircore_array(name, bytes)?,
        _ => c.add_osv_document(name, bytes)?,
    }
    c.finish(name)
}

/// Record files under `root`, as (path relative to root with `/` separators, full path), sorted
/// so that reads and their first error are reproducible. Symlinked directories are not followed
/// (a link cycle would never end); symlinked files are read.
/// Also returns how many other files were skipped.
fn walk(root: &Path) -> Result<(Vec<(String, PathBuf)>, u64), FeedError> {
    let mut files = Vec::new();
    let mut ignored = 0;
    let mut pending = vec![(String::new(), root.to_path_buf())];
    while let Some((prefix, dir)) = pending.pop() {
        for entry in fs::read_dir(&dir).map_err(io_error(&dir))? {
            let entry = entry.map_err(io_error(&dir))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            let file_type = entry.file_type().map_err(io_error(&path))?;
            let is_file = if file_type.is_symlink() {
                fs::metadata(&path).map_err(io_error(&path))?.is_file()
            } else {
                file_type.is_file()
            };
            if file_type.is_dir() {
                if name.starts_with('.') {
                    continue;
                }
                pending.push((rel, path));
            } else if is_file && is_record_file(&rel) {
                files.push((rel, path));
            } else if is_file {
                ignored += 1;
            }
        }
    }
    files.sort();
    Ok((files, ignored))
}

fn read_dir(
    updater: &str,
    root: &Path,
    progress: &dyn Fn(Progress),
) -> Result<Snapshot, FeedError> {
    let (files, ignored) = walk(root)?;
    let mut c = Collector::new(updater, Some(files.len() as u64), progress);
    for _ in 0..ignored {
        c.ignore_file();
    }
    for (rel, path) in files {
        let bytes = fs::read(&path).map_err(io_error(&path))?;
        c.add_osv_document(&rel, &bytes)?;
    }
    c.finish(&root.display().to_string())
}

fn read_tar_gz(c: &mut Collector<'_>, name: &str, reader: impl Read) -> Result<(), FeedError> {
    let archive_error = |message: String| FeedError::Archive {
        archive: name.to_string(),
        message,
    };
    // Multi-member gzip (concatenated streams) is valid gzip; a single-member decoder would
    // silently stop after the first member.
    let mut archive = tar::Archive::new(flate2::read::MultiGzDecoder::new(reader));
    let entries = archive
        .entries()
        .map_err(|e| archive_error(format!("not a tar.gz archive: {e}")))?;
    let mut buf = Vec::new();
    for entry in entries {
        let mut entry = entry.map_err(|e| archive_error(format!("corrupt archive: {e}")))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry
            .path()
            .map_err(|e| archive_error(format!("unreadable entry name: {e}")))?
            .to_string_lossy()
            .into_owned();
        if !is_record_file(&path) {
            c.ignore_file();
            continue;
        }
        buf.clear();
        entry
            .read_to_end(&mut buf)
            .map_err(|e| archive_error(format!("{path}: corrupt entry: {e}")))?;
        c.add_osv_document(&path, &buf)?;
    }
    Ok(())
}

fn read_zip<R: Read + Seek>(
    updater: &str,
    name: &str,
    reader: R,
    progress: &dyn Fn(Progress),
) -> Result<Snapshot, FeedError> {
    let archive_error = |message: String| FeedError::Archive {
        archive: name.to_string(),
        message,
    };
    let mut zip = zip::ZipArchive::new(reader)
        .map_err(|e| archive_error(format!("not a zip archive: {e}")))?;
    let total = zip.file_names().filter(|n| is_record_file(n)).count() as u64;
    let mut c = Collector::new(updater, Some(total), progress);
    let mut buf = Vec::new();
    for i in 0..zip.len() {
        let mut entry = zip
            .by_index(i)
            .map_err(|e| archive_error(format!("entry {i}: {e}")))?;
        if entry.is_dir() {
            continue;
        }
        let path = entry.name().to_string();
        if !is_record_file(&path) {
            c.ignore_file();
            continue;
        }
        buf.clear();
        entry
            .read_to_end(&mut buf)
            .map_err(|e| archive_error(format!("{path}: corrupt entry: {e}")))?;
        c.add_osv_document(&path, &buf)?;
    }
    c.finish(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffing() {
        assert_eq!(
            SnapshotFormat::sniff(&[0x1f, 0x8b, 8, 0]),
            Some(SnapshotFormat::OsvTarGz)
        );
        assert_eq!(
            SnapshotFormat::sniff(b"PK\x03\x04rest"),
            Some(SnapshotFormat::OsvZip)
        );
        assert_eq!(
            SnapshotFormat::sniff(b" [ {\"id\": \"GO-1\", \"modified\": \"x\"}, 5"),
            Some(SnapshotFormat::OsvJsonArray)
        );
        assert_eq!(
            SnapshotFormat::sniff(
                b"\xEF\xBB\xBF[{\"name\": \"CVE-1\", \"normalized_severity\": \"High\"}]"
            ),
            Some(SnapshotFormat::ClaircoreJsonArray)
        );
        assert_eq!(
            SnapshotFormat::sniff(b"{\"id\": \"GO-1\"}"),
            Some(SnapshotFormat::OsvRecord)
        );
        assert_eq!(
            SnapshotFormat::sniff(b"[]"),
            Some(SnapshotFormat::OsvJsonArray)
        );
        assert_eq!(SnapshotFormat::sniff(b"[{\"x\": 1}]"), None);
        assert_eq!(SnapshotFormat::sniff(b"[1]"), None);
        assert_eq!(SnapshotFormat::sniff(b"hello"), None);
        assert_eq!(SnapshotFormat::sniff(b""), None);
    }

    #[test]
    fn unrecognised_uploads_say_why() {
        let msg = read_bytes("u", b"id: X\n", &|_| {})
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.contains("unrecognised snapshot format"), "{msg}");
        let msg = read_bytes("u", b"  ", &|_| {})
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.contains("no vulnerability records"), "{msg}");
        let msg = read_bytes("u", b"[]", &|_| {})
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.contains("no vulnerability records"), "{msg}");
    }

    #[test]
    fn corrupt_archives_are_archive_errors() {
        let r = read_bytes("u", &[0x1f, 0x8b, 8, 0, 1, 2, 3], &|_| {});
        assert!(matches!(r, Err(FeedError::Archive { .. })), "{r:?}");
        let r = read_bytes("u", b"PK\x03\x04garbage", &|_| {});
        assert!(matches!(r, Err(FeedError::Archive { .. })), "{r:?}");
    }
}
