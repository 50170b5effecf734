//! Where snapshots come from: directories, tar.gz and zip archives, single JSON/YAML documents,
//! and how their format is recognised.
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{BufReader, Read, Seek};
use std::path::{Path, PathBuf};

use serde::de::IgnoredAny;
use tocsin_model::limits::{Limit, LimitExceeded, Limited, Limits};

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
/// Archives are bounded by the default [`Limits`]; see [`read_path_with_limits`].
pub fn read_path(
    updater: &str,
    path: &Path,
    progress: &dyn Fn(Progress),
) -> Result<Snapshot, FeedError> {
    read_path_with_limits(updater, path, &Limits::default(), progress)
}

/// [`read_path`] with explicit bounds on what archives may decompress to (members, total,
/// member count) and YAML records may expand to: crossing one fails the read with
/// [`FeedError::Limit`].
pub fn read_path_with_limits(
    updater: &str,
    path: &Path,
    limits: &Limits,
    progress: &dyn Fn(Progress),
) -> Result<Snapshot, FeedError> {
    let name = path.display().to_string();
    let meta = fs::metadata(path).map_err(io_error(path))?;
    if meta.is_dir() {
        return read_dir(updater, path, limits, progress);
    }
    let mut file = fs::File::open(path).map_err(io_error(path))?;
    let mut head = Vec::with_capacity(4);
    (&mut file)
        .take(4)
        .read_to_end(&mut head)
        .map_err(io_error(path))?;
    file.rewind().map_err(io_error(path))?;
    if head.starts_with(GZIP_MAGIC) {
        let mut c = Collector::new(updater, None, progress).with_limits(limits);
        read_tar_gz(&mut c, &name, BufReader::new(file), limits)?;
        return c.finish(&name);
    }
    if is_zip(&head) {
        return read_zip(updater, &name, BufReader::new(file), limits, progress);
    }
    drop(file);
    let bytes = fs::read(path).map_err(io_error(path))?;
    read_document(updater, &name, &bytes, is_yaml_name(path), limits, progress)
}

/// Reads a snapshot from bytes (an HTTP upload): a tar.gz (gzip magic), a zip (`PK` magic), or
/// JSON: an array of OSV records or of claircore Vulnerabilities, or one OSV record object.
/// Errors name the input `(upload)` and, inside archives, the entry. Archives are bounded by
/// the default [`Limits`]; see [`read_bytes_with_limits`].
pub fn read_bytes(
    updater: &str,
    bytes: &[u8],
    progress: &dyn Fn(Progress),
) -> Result<Snapshot, FeedError> {
    read_bytes_with_limits(updater, bytes, &Limits::default(), progress)
}

/// [`read_bytes`] with explicit bounds on what archives may decompress to and YAML records may
/// expand to: crossing one fails the read with [`FeedError::Limit`].
pub fn read_bytes_with_limits(
    updater: &str,
    bytes: &[u8],
    limits: &Limits,
    progress: &dyn Fn(Progress),
) -> Result<Snapshot, FeedError> {
    const NAME: &str = "(upload)";
    match sniff_bytes(NAME, bytes, false)? {
        SnapshotFormat::OsvTarGz => {
            let mut c = Collector::new(updater, None, progress).with_limits(limits);
            read_tar_gz(&mut c, NAME, bytes, limits)?;
            c.finish(NAME)
        }
        SnapshotFormat::OsvZip => {
            read_zip(updater, NAME, std::io::Cursor::new(bytes), limits, progress)
        }
        _ => read_document(updater, NAME, bytes, false, limits, progress),
    }
}

/// Reads one record document named `name` (an OSV record fetched alone, `GHSA-….json`):
/// errors name it, and a `.yaml`/`.yml` name is read as YAML. A withdrawn record gives an
/// empty snapshot; no record at all is [`FeedError::Empty`].
pub fn read_record(
    updater: &str,
    name: &str,
    bytes: &[u8],
    limits: &Limits,
) -> Result<Snapshot, FeedError> {
    let yaml = {
        let lower = name.to_ascii_lowercase();
        lower.ends_with(".yaml") || lower.ends_with(".yml")
    };
    read_document(updater, name, bytes, yaml, limits, &|_| {})
}

fn read_document(
    updater: &str,
    name: &str,
    bytes: &[u8],
    yaml: bool,
    limits: &Limits,
    progress: &dyn Fn(Progress),
) -> Result<Snapshot, FeedError> {
    let format = sniff_bytes(name, bytes, yaml)?;
    let mut c = Collector::new(updater, Some(1), progress).with_limits(limits);
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
    limits: &Limits,
    progress: &dyn Fn(Progress),
) -> Result<Snapshot, FeedError> {
    let (files, ignored) = walk(root)?;
    let mut c = Collector::new(updater, Some(files.len() as u64), progress).with_limits(limits);
    for _ in 0..ignored {
        c.ignore_file();
    }
    for (rel, path) in files {
        let bytes = fs::read(&path).map_err(io_error(&path))?;
        c.add_osv_document(&rel, &bytes)?;
    }
    c.finish(&root.display().to_string())
}

/// What a limit error inside an archive names: the member, as record errors do (the caller knows
/// the archive), or the archive itself for bounds of the whole.
fn member_name(archive: &str, member: &str) -> String {
    if member.is_empty() {
        archive.to_string()
    } else {
        member.to_string()
    }
}

/// An I/O error met while reading an archive: a [`FeedError::Limit`] when one of our bounded
/// readers (possibly under the tar or zip reader) stopped it, else [`FeedError::Archive`].
fn archive_read_error(archive: &str, member: &str, what: &str, e: std::io::Error) -> FeedError {
    match LimitExceeded::from_io(&e) {
        Some(exceeded) => FeedError::limit(member_name(archive, member), exceeded),
        None => FeedError::Archive {
            archive: archive.to_string(),
            message: if member.is_empty() {
                format!("{what}: {e}")
            } else {
                format!("{member}: {what}: {e}")
            },
        },
    }
}

/// Reads one member into `buf` (cleared first), at most `max` bytes; `error` beyond. The buffer
/// grows with what is actually read, never with a size the archive declares.
fn read_member(
    reader: impl Read,
    max: u64,
    error: LimitExceeded,
    buf: &mut Vec<u8>,
) -> std::io::Result<()> {
    buf.clear();
    Limited::with_max(reader, max, error).read_to_end(buf)?;
    Ok(())
}

/// GNU and PAX metadata that describes the next tar member.
#[derive(Default)]
struct TarMeta {
    long_name: Option<Vec<u8>>,
    pax_path: Option<Vec<u8>>,
    pax_size: Option<u64>,
    pax_seen: bool,
    pending: bool,
}

/// Reads a tar.gz stream. Bounds, all on bytes actually produced:
/// - the whole decompressed stream (framing, skipped members and metadata included) by
///   `max_decompressed_bytes`, under the tar reader;
/// - each member, metadata headers included, by `max_member_bytes`: refused from its header
///   (tar frames members by that size, so it cannot hold more) before anything is read, and
///   read through a bounded reader all the same;
/// - the number of members, metadata headers included, by `max_archive_members`.
///
/// The tar reader runs in raw mode so that GNU long names and PAX headers are bounded members
/// like any other (the tar crate would otherwise read them whole, at any size, before handing
/// out the member they describe); the names they carry are applied here as the tar crate would.
fn read_tar_gz(
    c: &mut Collector<'_>,
    name: &str,
    reader: impl Read,
    limits: &Limits,
) -> Result<(), FeedError> {
    let archive_error = |message: String| FeedError::Archive {
        archive: name.to_string(),
        message,
    };
    // Multi-member gzip (concatenated streams) is valid gzip; a single-member decoder would
    // silently stop after the first member.
    let stream = Limited::new(
        flate2::read::MultiGzDecoder::new(reader),
        Limit::DecompressedBytes,
        limits,
    );
    let mut archive = tar::Archive::new(stream);
    let entries = archive
        .entries()
        .map_err(|e| archive_read_error(name, "", "not a tar.gz archive", e))?
        .raw(true);
    let mut meta = TarMeta::default();
    let mut members = 0u64;
    let mut buf = Vec::new();
    for entry in entries {
        let mut entry = entry.map_err(|e| archive_read_error(name, "", "corrupt archive", e))?;
        members += 1;
        if members > limits.max_archive_members {
            return Err(FeedError::limit(
                name,
                Limit::ArchiveMembers.exceeded(limits),
            ));
        }
        let header = entry.header();
        let kind = header.entry_type();
        let recognised = header.as_gnu().is_some() || header.as_ustar().is_some();
        let is_extension = recognised
            && (kind.is_gnu_longname() || kind.is_gnu_longlink() || kind.is_pax_local_extensions());
        // Metadata describes the next member; a global PAX header describes none.
        let describes_member = !is_extension && !kind.is_pax_global_extensions();
        let path = if describes_member {
            let bytes = match (meta.long_name.take(), meta.pax_path.take()) {
                (Some(mut long), _) => {
                    if long.last() == Some(&0) {
                        long.pop();
                    }
                    long
                }
                (None, Some(pax)) => pax,
                (None, None) => header.path_bytes().into_owned(),
            };
            String::from_utf8_lossy(&bytes).into_owned()
        } else {
            String::from_utf8_lossy(&header.path_bytes()).into_owned()
        };
        let size = entry.size();
        if size > limits.max_member_bytes {
            return Err(FeedError::limit(
                member_name(name, &path),
                Limit::MemberBytes.exceeded(limits),
            ));
        }
        if !is_extension && !describes_member {
            continue;
        }
        let member_limit = Limit::MemberBytes.exceeded(limits);
        if is_extension {
            if kind.is_gnu_longlink() {
                // Link targets mean nothing here; the reader skips the data.
                meta.pending = true;
                continue;
            }
            read_member(&mut entry, limits.max_member_bytes, member_limit, &mut buf)
                .map_err(|e| archive_read_error(name, &path, "corrupt entry", e))?;
            if kind.is_gnu_longname() {
                if meta.long_name.is_some() {
                    return Err(archive_error(
                        "two long name entries describe the same member".into(),
                    ));
                }
                meta.long_name = Some(std::mem::take(&mut buf));
            } else {
                if meta.pax_seen {
                    return Err(archive_error(
                        "two pax extensions entries describe the same member".into(),
                    ));
                }
                meta.pax_seen = true;
                for ext in tar::PaxExtensions::new(&buf) {
                    let ext = ext.map_err(|e| {
                        archive_error(format!("{path}: malformed pax extensions: {e}"))
                    })?;
                    match ext.key_bytes() {
                        b"path" => meta.pax_path = Some(ext.value_bytes().to_vec()),
                        b"size" => {
                            let size = ext
                                .value()
                                .ok()
                                .and_then(|v| v.parse::<u64>().ok())
                                .ok_or_else(|| {
                                    archive_error(format!("{path}: malformed pax size"))
                                })?;
                            meta.pax_size = Some(size);
                        }
                        _ => {}
                    }
                }
            }
            meta.pending = true;
            continue;
        }
        meta.pending = false;
        meta.pax_seen = false;
        if kind.is_gnu_sparse() {
            // Its extra sparse headers are not framed by its size; read raw, what follows would
            // be misread. Feeds have no sparse files.
            return Err(archive_error(format!(
                "{path}: GNU sparse members are not supported"
            )));
        }
        if let Some(declared) = meta.pax_size.take() {
            // The tar reader frames members by their header in raw mode; a PAX size that says
            // otherwise would make this archive read differently here and in other tools.
            if declared != size {
                if declared > limits.max_member_bytes {
                    return Err(FeedError::limit(
                        member_name(name, &path),
                        Limit::MemberBytes.exceeded(limits),
                    ));
                }
                return Err(archive_error(format!(
                    "{path}: its pax size ({declared}) differs from its header's ({size})"
                )));
            }
        }
        if !kind.is_file() {
            continue;
        }
        if !is_record_file(&path) {
            c.ignore_file();
            continue;
        }
        read_member(&mut entry, limits.max_member_bytes, member_limit, &mut buf)
            .map_err(|e| archive_read_error(name, &path, "corrupt entry", e))?;
        c.add_osv_document(&path, &buf)?;
    }
    if meta.pending {
        return Err(archive_error(
            "members found describing a future member but no future member found".into(),
        ));
    }
    Ok(())
}

/// The size of the smallest central directory header: a zip cannot list more entries than its
/// length over this.
const CENTRAL_HEADER_MIN: u64 = 46;

/// How many central directory header signatures (`PK\x01\x02`) `reader` holds: an upper bound on
/// the entries any reading of its central directory can find, since each starts with one.
/// Counted before the zip reader parses the directory, which holds every entry in memory.
fn count_central_headers(reader: &mut impl Read) -> std::io::Result<u64> {
    const SIGNATURE: &[u8] = b"PK\x01\x02";
    let finder = memchr::memmem::Finder::new(SIGNATURE);
    let mut count = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    // The last three bytes of a chunk start the next, so no signature is split.
    let mut carried = 0usize;
    loop {
        let n = reader.read(&mut buf[carried..])?;
        if n == 0 {
            return Ok(count);
        }
        let filled = carried + n;
        count += finder.find_iter(&buf[..filled]).count() as u64;
        carried = filled.min(SIGNATURE.len() - 1);
        buf.copy_within(filled - carried..filled, 0);
    }
}

/// Reads a zip archive. Bounds, all on bytes actually produced (the sizes a zip declares are
/// never trusted or used to allocate):
/// - the entry count by `max_archive_members`, checked on the raw bytes before the central
///   directory is parsed;
/// - each record entry by `max_member_bytes`, and all of them together by
///   `max_decompressed_bytes`;
/// - entries whose data overlaps another's (the "better zip bomb", where thousands of entries
///   share one compressed kernel) are refused as corrupt.
fn read_zip<R: Read + Seek>(
    updater: &str,
    name: &str,
    mut reader: R,
    limits: &Limits,
    progress: &dyn Fn(Progress),
) -> Result<Snapshot, FeedError> {
    let archive_error = |message: String| FeedError::Archive {
        archive: name.to_string(),
        message,
    };
    let too_many = || FeedError::limit(name, Limit::ArchiveMembers.exceeded(limits));
    let length = reader
        .seek(std::io::SeekFrom::End(0))
        .map_err(|e| archive_read_error(name, "", "unreadable", e))?;
    if length / CENTRAL_HEADER_MIN > limits.max_archive_members {
        reader
            .rewind()
            .map_err(|e| archive_read_error(name, "", "unreadable", e))?;
        let headers = count_central_headers(&mut reader)
            .map_err(|e| archive_read_error(name, "", "unreadable", e))?;
        if headers > limits.max_archive_members {
            return Err(too_many());
        }
    }
    reader
        .rewind()
        .map_err(|e| archive_read_error(name, "", "unreadable", e))?;
    let mut zip = zip::ZipArchive::new(reader)
        .map_err(|e| archive_error(format!("not a zip archive: {e}")))?;
    if zip.len() as u64 > limits.max_archive_members {
        return Err(too_many());
    }
    let total = zip.file_names().filter(|n| is_record_file(n)).count() as u64;
    let mut c = Collector::new(updater, Some(total), progress).with_limits(limits);
    let mut buf = Vec::new();
    let mut left = limits.max_decompressed_bytes;
    // Byte ranges (local header to end of compressed data) of the entries read, by start.
    let mut spans: BTreeMap<u64, (u64, String)> = BTreeMap::new();
    for i in 0..zip.len() {
        let entry = zip
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
        let start = entry.header_start();
        let end = entry.data_start().saturating_add(entry.compressed_size());
        let before = spans.range(..=start).next_back();
        let after = spans.range(start..).next();
        let overlapping = before
            .filter(|(_, (e, _))| *e > start)
            .or(after.filter(|(s, _)| **s < end));
        if let Some((_, (_, other))) = overlapping {
            return Err(archive_error(format!(
                "{path}: its data overlaps that of {other} (entries sharing compressed data are \
                 how zip bombs multiply their output)"
            )));
        }
        spans.insert(start, (end, path.clone()));
        // The member bound, or what is left of the total when that is smaller.
        let (max, exceeded) = if left < limits.max_member_bytes {
            (left, Limit::DecompressedBytes.exceeded(limits))
        } else {
            (limits.max_member_bytes, Limit::MemberBytes.exceeded(limits))
        };
        read_member(entry, max, exceeded, &mut buf)
            .map_err(|e| archive_read_error(name, &path, "corrupt entry", e))?;
        left -= buf.len() as u64;
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
