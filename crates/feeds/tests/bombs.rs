//! Decompression bombs and other inputs that expand: every bound of `Limits` stops them with
//! `FeedError::Limit` naming the bound, and every real archive still reads under the defaults.
//!
//! The bombs are generated here, small: a few MiB of output against limits of 1 MiB, so the
//! tests stay fast while crossing the same code paths a 3 GiB bomb would.
use std::io::{Read, Write};

use tocsin_feeds::{
    read_bytes_with_limits, read_path_with_limits, FeedError, Limit, Limits, Progress, Snapshot,
};

fn no_progress(_: Progress) {}

const MIB: u64 = 1 << 20;

/// Small bounds, so that bombs of a few MiB cross them.
fn small() -> Limits {
    Limits {
        max_member_bytes: MIB,
        max_decompressed_bytes: 4 * MIB,
        max_archive_members: 1000,
        max_manifest_import_bytes: 4 * MIB,
        max_yaml_bytes: 64 * 1024,
    }
}

fn record(id: &str) -> Vec<u8> {
    format!(
        r#"{{"id": "{id}", "affected": [{{"package": {{"name": "x", "ecosystem": "Go"}},
        "ranges": [{{"type": "SEMVER", "events": [{{"introduced": "0"}}, {{"fixed": "1.0.0"}}]}}]}}]}}"#
    )
    .into_bytes()
}

/// A valid record padded with spaces (valid JSON whitespace) to exactly `len` bytes.
fn padded_record(id: &str, len: u64) -> Vec<u8> {
    let mut r = record(id);
    r.resize(len as usize, b' ');
    r
}

/// A tar.gz of `(name, content)` members, written as a stream (contents are readers).
fn tar_gz(members: Vec<(String, Box<dyn Read>, u64)>) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(gz);
    for (name, data, size) in members {
        let mut header = tar::Header::new_gnu();
        header.set_size(size);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, name, data)
            .expect("append to the tar");
    }
    builder
        .into_inner()
        .and_then(|gz| gz.finish())
        .expect("finish the tar.gz")
}

fn spaces(n: u64) -> Box<dyn Read> {
    Box::new(std::io::repeat(b' ').take(n))
}

fn bytes(b: Vec<u8>) -> Box<dyn Read> {
    Box::new(std::io::Cursor::new(b))
}

fn expect_limit(result: Result<Snapshot, FeedError>, limit: Limit) -> String {
    match result {
        Err(e @ FeedError::Limit { .. }) => {
            let FeedError::Limit { exceeded, .. } = &e else {
                unreachable!()
            };
            assert_eq!(exceeded.limit, limit, "{e}");
            let text = e.to_string();
            assert!(
                text.contains(&format!("raise tocsin.limits.{}", limit.key())),
                "{text}"
            );
            text
        }
        Err(e) => panic!("expected the {} limit, got: {e}", limit.key()),
        Ok(s) => panic!(
            "expected the {} limit, read {} vulnerabilities",
            limit.key(),
            s.vulnerabilities.len()
        ),
    }
}

fn read(bytes: &[u8], limits: &Limits) -> Result<Snapshot, FeedError> {
    read_bytes_with_limits("u", bytes, limits, &no_progress)
}

#[test]
fn a_tar_gz_member_of_spaces_stops_at_the_member_limit() {
    // The issue's bomb, scaled down: one member of spaces, 16× the member limit.
    let bomb = tar_gz(vec![("bomb.json".into(), spaces(16 * MIB), 16 * MIB)]);
    assert!(bomb.len() < 128 * 1024, "{} bytes compressed", bomb.len());
    let text = expect_limit(read(&bomb, &small()), Limit::MemberBytes);
    assert!(
        text.starts_with("bomb.json: decompresses (or expands) to more than tocsin.limits.max_member_bytes = 1048576 bytes (1 MiB)"),
        "{text}"
    );
    // The same from a path.
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("bomb.tar.gz");
    std::fs::write(&path, &bomb).expect("write");
    expect_limit(
        read_path_with_limits("u", &path, &small(), &no_progress),
        Limit::MemberBytes,
    );
}

#[test]
fn a_member_of_exactly_the_limit_is_read() {
    let archive = tar_gz(vec![(
        "a.json".into(),
        bytes(padded_record("GO-1", MIB)),
        MIB,
    )]);
    match read(&archive, &small()) {
        Ok(s) => assert_eq!(s.vulnerabilities.len(), 1),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn skipped_members_count_towards_the_total() {
    // Ten members under the member limit, none of them a record: nothing is parsed, but the
    // decompressor still produces their bytes.
    let members = (0..10)
        .map(|i| (format!("pad{i}.txt"), spaces(MIB - 1024), MIB - 1024))
        .collect();
    let text = expect_limit(read(&tar_gz(members), &small()), Limit::DecompressedBytes);
    assert!(
        text.contains("max_decompressed_bytes = 4194304 bytes (4 MiB)"),
        "{text}"
    );
}

#[test]
fn a_tar_of_many_empty_files_stops_at_the_member_count() {
    let members = (0..1500)
        .map(|i| (format!("n{i}.txt"), spaces(0), 0))
        .collect();
    let text = expect_limit(read(&tar_gz(members), &small()), Limit::ArchiveMembers);
    assert!(text.contains("max_archive_members = 1000;"), "{text}");
}

/// A raw tar header of `kind` with `name` and `size`.
fn raw_header(kind: tar::EntryType, name: &str, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_path(name).expect("short name");
    header.set_size(size);
    header.set_mode(0o644);
    header.set_cksum();
    header
}

fn finish(builder: tar::Builder<flate2::write::GzEncoder<Vec<u8>>>) -> Vec<u8> {
    builder
        .into_inner()
        .and_then(|gz| gz.finish())
        .expect("finish the tar.gz")
}

#[test]
fn a_huge_gnu_long_name_is_a_member_like_any_other() {
    // The tar crate reads long-name and PAX headers whole before the member they describe; read
    // raw, they are bounded members.
    let mut builder = gz_builder();
    let header = raw_header(tar::EntryType::GNULongName, "././@LongLink", 16 * MIB);
    builder
        .append(&header, std::io::repeat(b'a').take(16 * MIB))
        .expect("append");
    let header = raw_header(tar::EntryType::Regular, "a.json", 2);
    builder.append(&header, &b"{}"[..]).expect("append");
    expect_limit(read(&finish(builder), &small()), Limit::MemberBytes);
}

/// One PAX extended header record: `LEN key=value\n`, where LEN counts itself.
fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    loop {
        let text = format!("{len}{body}");
        if text.len() == len {
            return text.into_bytes();
        }
        len = text.len();
    }
}

fn gz_builder() -> tar::Builder<flate2::write::GzEncoder<Vec<u8>>> {
    tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ))
}

/// A path too long for a tar header's 100 bytes.
fn long_path(file: &str) -> String {
    format!(
        "{}{file}",
        "a-directory-name-long-enough-to-need-an-extension/".repeat(3)
    )
}

/// Appends a PAX extended header of `records`, then a regular member `name` of `data`.
fn append_with_pax(
    builder: &mut tar::Builder<flate2::write::GzEncoder<Vec<u8>>>,
    records: &[(&str, &str)],
    name: &str,
    data: &[u8],
) {
    let pax: Vec<u8> = records.iter().flat_map(|(k, v)| pax_record(k, v)).collect();
    let header = raw_header(tar::EntryType::XHeader, "PaxHeaders/x", pax.len() as u64);
    builder.append(&header, pax.as_slice()).expect("append");
    let header = raw_header(tar::EntryType::Regular, name, data.len() as u64);
    builder.append(&header, data).expect("append");
}

#[test]
fn long_names_from_gnu_and_pax_headers_still_name_members() {
    // Read raw, the extension headers are applied here as the tar crate would apply them.
    let mut builder = gz_builder();
    // A global PAX header (as git archive writes one), a GNU long name (as the tar crate
    // writes them), a PAX path on a member whose own header names a non-record.
    let global = pax_record("comment", "0123456789abcdef");
    let header = raw_header(
        tar::EntryType::XGlobalHeader,
        "pax_global_header",
        global.len() as u64,
    );
    builder.append(&header, global.as_slice()).expect("append");
    let data = record("GO-GNU");
    let mut header = raw_header(tar::EntryType::Regular, "x", data.len() as u64);
    builder
        .append_data(&mut header, long_path("GO-GNU.json"), data.as_slice())
        .expect("append");
    let data = record("GO-PAX");
    let size = data.len().to_string();
    let path = long_path("GO-PAX.json");
    append_with_pax(
        &mut builder,
        &[("path", &path), ("size", &size), ("comment", "c")],
        "not-a-record.bin",
        &data,
    );
    match read(&finish(builder), &Limits::default()) {
        Ok(s) => {
            let mut names: Vec<_> = s.vulnerabilities.iter().map(|v| v.name.as_str()).collect();
            names.sort();
            assert_eq!(names, ["GO-GNU", "GO-PAX"]);
            assert_eq!(s.stats.files, 2);
        }
        Err(e) => panic!("{e}"),
    }
    // Errors name the member by its long name.
    let mut builder = gz_builder();
    let path = long_path("BAD.json");
    append_with_pax(&mut builder, &[("path", &path)], "bad.bin", b"{\"id\": 5}");
    let msg = read(&finish(builder), &Limits::default())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        msg.starts_with(&format!("{path}: id: invalid type")),
        "{msg}"
    );
}

#[test]
fn a_pax_size_that_disagrees_with_the_header_is_refused() {
    // GNU tar would frame the member by the PAX size, the raw reader by the header's: refused
    // rather than read differently from other tools.
    let mut builder = gz_builder();
    append_with_pax(&mut builder, &[("size", "7")], "a.json", &record("GO-1"));
    match read(&finish(builder), &Limits::default()) {
        Err(FeedError::Archive { message, .. }) => {
            assert!(message.contains("pax size (7) differs"), "{message}")
        }
        other => panic!("{other:?}"),
    }
}

// ---- zip, built by hand where the zip writer would not lie ----

struct ZipEntry {
    name: String,
    method: u16,
    crc: u32,
    compressed: u32,
    uncompressed: u32,
    offset: u32,
}

fn local_header(e: &ZipEntry) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend(0x0403_4b50u32.to_le_bytes());
    h.extend(20u16.to_le_bytes()); // version needed
    h.extend(0u16.to_le_bytes()); // flags
    h.extend(e.method.to_le_bytes());
    h.extend(0u16.to_le_bytes()); // time
    h.extend(0x21u16.to_le_bytes()); // date: 1980-01-01
    h.extend(e.crc.to_le_bytes());
    h.extend(e.compressed.to_le_bytes());
    h.extend(e.uncompressed.to_le_bytes());
    h.extend((e.name.len() as u16).to_le_bytes());
    h.extend(0u16.to_le_bytes()); // extra
    h.extend(e.name.as_bytes());
    h
}

fn central_header(e: &ZipEntry) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend(0x0201_4b50u32.to_le_bytes());
    h.extend(20u16.to_le_bytes()); // made by
    h.extend(20u16.to_le_bytes()); // needed
    h.extend(0u16.to_le_bytes()); // flags
    h.extend(e.method.to_le_bytes());
    h.extend(0u16.to_le_bytes());
    h.extend(0x21u16.to_le_bytes());
    h.extend(e.crc.to_le_bytes());
    h.extend(e.compressed.to_le_bytes());
    h.extend(e.uncompressed.to_le_bytes());
    h.extend((e.name.len() as u16).to_le_bytes());
    h.extend([0u8; 8]); // extra, comment, disk, internal attributes
    h.extend(0u32.to_le_bytes()); // external attributes
    h.extend(e.offset.to_le_bytes());
    h.extend(e.name.as_bytes());
    h
}

/// Appends the central directory of `entries` (in that order) and its end record.
fn finish_zip(mut out: Vec<u8>, entries: &[&ZipEntry]) -> Vec<u8> {
    let start = out.len() as u32;
    for e in entries {
        out.extend(central_header(e));
    }
    let size = out.len() as u32 - start;
    out.extend(0x0605_4b50u32.to_le_bytes());
    out.extend([0u8; 4]); // disk numbers
    out.extend((entries.len() as u16).to_le_bytes());
    out.extend((entries.len() as u16).to_le_bytes());
    out.extend(size.to_le_bytes());
    out.extend(start.to_le_bytes());
    out.extend(0u16.to_le_bytes());
    out
}

fn deflate(data: &[u8]) -> Vec<u8> {
    let mut d = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    d.write_all(data).expect("deflate");
    d.finish().expect("deflate")
}

fn crc(data: &[u8]) -> u32 {
    let mut c = flate2::Crc::new();
    c.update(data);
    c.sum()
}

#[test]
fn a_zip_entry_that_lies_about_its_size_is_bounded_by_what_it_produces() {
    // The entry says it holds 100 bytes; it inflates to 4 MiB (a valid record and spaces).
    let content = padded_record("GO-1", 4 * MIB);
    let data = deflate(&content);
    let entry = ZipEntry {
        name: "a.json".into(),
        method: 8,
        crc: crc(&content),
        compressed: data.len() as u32,
        uncompressed: 100,
        offset: 0,
    };
    let mut out = local_header(&entry);
    out.extend(&data);
    let zip = finish_zip(out, &[&entry]);
    let text = expect_limit(read(&zip, &small()), Limit::MemberBytes);
    assert!(text.starts_with("a.json: "), "{text}");
}

#[test]
fn zip_entries_count_towards_the_total() {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    for i in 0..6 {
        writer
            .start_file(format!("GO-{i}.json"), options)
            .expect("start");
        writer
            .write_all(&padded_record(&format!("GO-{i}"), MIB - 1))
            .expect("write");
    }
    let zip = writer.finish().expect("finish").into_inner();
    expect_limit(read(&zip, &small()), Limit::DecompressedBytes);
    // Under roomier limits the same archive reads.
    match read(&zip, &Limits::default()) {
        Ok(s) => assert_eq!(s.vulnerabilities.len(), 6),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn a_zip_of_many_entries_stops_before_its_directory_is_parsed() {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    for i in 0..1500 {
        writer
            .start_file(format!("n{i}.txt"), options)
            .expect("start");
    }
    let zip = writer.finish().expect("finish").into_inner();
    expect_limit(read(&zip, &small()), Limit::ArchiveMembers);
}

/// David Fifield's "better zip bomb" (full overlap, quoted local headers): every entry's data
/// runs from just after its own local header to the end of one shared deflate kernel, the local
/// headers in between quoted by stored deflate blocks. Entry `i` inflates to the local headers
/// after it plus the kernel's output, so N entries of one kernel produce N times its output.
fn overlapping_zip(entries: usize, kernel_output: &[u8]) -> Vec<u8> {
    let kernel = deflate(kernel_output);
    let names: Vec<String> = (0..entries).map(|i| format!("f{i:04}.json")).collect();
    // Built back to front: entry i's sizes and CRC depend on the local headers after it.
    let mut headers: Vec<Vec<u8>> = vec![Vec::new(); entries];
    let mut zip_entries: Vec<Option<ZipEntry>> = (0..entries).map(|_| None).collect();
    let mut tail_output = kernel_output.to_vec(); // what entry i inflates to
    let mut tail_compressed = kernel.len(); // its compressed length
    for i in (0..entries).rev() {
        let entry = ZipEntry {
            name: names[i].clone(),
            method: 8,
            crc: crc(&tail_output),
            compressed: tail_compressed as u32,
            uncompressed: tail_output.len() as u32,
            offset: 0, // set below
        };
        let header = local_header(&entry);
        // Entry i-1 quotes this header with a 5-byte stored block, then continues as entry i.
        let mut quoted = header.clone();
        quoted.extend(&tail_output);
        tail_output = quoted;
        tail_compressed += 5 + header.len();
        headers[i] = header;
        zip_entries[i] = Some(entry);
    }
    let mut out = Vec::new();
    let mut entries_out = Vec::new();
    for i in 0..entries {
        let mut entry = zip_entries[i].take().expect("built above");
        entry.offset = out.len() as u32;
        out.extend(&headers[i]);
        if i + 1 < entries {
            let len = headers[i + 1].len() as u16;
            out.push(0); // BFINAL = 0, BTYPE = stored
            out.extend(len.to_le_bytes());
            out.extend((!len).to_le_bytes());
        }
        entries_out.push(entry);
    }
    out.extend(&kernel);
    // The last entry (only the kernel, a valid record) first, so the reader meets a readable
    // entry before the overlapping ones.
    let order: Vec<&ZipEntry> = entries_out.iter().rev().collect();
    finish_zip(out, &order)
}

#[test]
fn an_overlapping_entry_zip_bomb_is_refused() {
    let kernel_output = padded_record("GO-KERNEL", 512 * 1024);
    let bomb = overlapping_zip(200, &kernel_output);
    // 200 entries of 512 KiB each from a few KiB.
    assert!(bomb.len() < 64 * 1024, "{} bytes", bomb.len());
    match read(&bomb, &Limits::default()) {
        Err(FeedError::Archive { message, .. }) => {
            assert!(message.contains("overlaps"), "{message}")
        }
        other => panic!("expected an overlap error, got {other:?}"),
    }
    // Alone, the kernel entry is a valid archive: the construction itself is sound.
    let single = overlapping_zip(1, &kernel_output);
    match read(&single, &Limits::default()) {
        Ok(s) => assert_eq!(s.vulnerabilities[0].name, "GO-KERNEL"),
        Err(e) => panic!("{e}"),
    }
}

// ---- expansion beyond compression ----

#[test]
fn a_yaml_alias_bomb_stops_at_the_member_limit() {
    // 4 KiB repeated 2,000 times through an alias: 8 MiB of strings from ~10 KiB of YAML.
    let mut doc = format!("id: PYSEC-BOMB\nx: &a \"{}\"\naliases: [", "A".repeat(4096));
    doc.push_str(&vec!["*a"; 2000].join(", "));
    doc.push_str("]\n");
    let archive = tar_gz(vec![(
        "bomb.yaml".into(),
        bytes(doc.clone().into_bytes()),
        doc.len() as u64,
    )]);
    let text = expect_limit(read(&archive, &small()), Limit::MemberBytes);
    assert!(text.starts_with("bomb.yaml: "), "{text}");
    // The same document from a directory.
    let dir = tempfile::tempdir().expect("temporary directory");
    std::fs::write(dir.path().join("bomb.yaml"), &doc).expect("write");
    expect_limit(
        read_path_with_limits("u", dir.path(), &small(), &no_progress),
        Limit::MemberBytes,
    );
    // A few aliases are fine.
    let doc = "id: PYSEC-1\nx: &a GHSA-1\naliases: [*a, *a]\naffected:\n- package:\n    ecosystem: PyPI\n    name: a\n  versions: [\"1.0\"]\n";
    let archive = tar_gz(vec![(
        "ok.yaml".into(),
        bytes(doc.as_bytes().to_vec()),
        doc.len() as u64,
    )]);
    match read(&archive, &small()) {
        Ok(s) => assert_eq!(s.vulnerabilities[0].aliases, ["GHSA-1"]),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn a_yaml_record_has_a_size_bound_of_its_own() {
    // Parsed whole into events ~100× its size, a YAML record is bounded below the member bound.
    let doc = format!("id: PYSEC-1\ndetails: \"{}\"\n", "x".repeat(100 * 1024));
    let archive = tar_gz(vec![(
        "big.yaml".into(),
        bytes(doc.clone().into_bytes()),
        doc.len() as u64,
    )]);
    let text = expect_limit(read(&archive, &small()), Limit::YamlBytes);
    assert!(
        text.contains("max_yaml_bytes = 65536 bytes (64 KiB)"),
        "{text}"
    );
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    // serde_json stops at 128 levels wherever a value is built (nothing here turns that off),
    // and skips unknown fields without recursion.
    let nest = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let deep = nest(100_000);
    let cases = [
        (
            "built.json",
            format!("{{\"id\": \"GO-1\", \"database_specific\": {{\"severity\": {deep}}}}}"),
            Some("recursion limit"),
        ),
        (
            "skipped.json",
            format!("{{\"id\": \"GO-1\", \"x\": {deep}}}"),
            None,
        ),
        // libyaml's scanner is quadratic in flow nesting (100,000 levels took 64 s): refused
        // from a count of openers before it runs.
        (
            "skipped.yaml",
            format!("id: GO-1\nx: {deep}\n"),
            Some("flow collection openers"),
        ),
        // Under that count, serde_yaml_ng's own recursion limit (128) holds.
        (
            "built.yaml",
            format!("id: GO-1\ndatabase_specific:\n  severity: {}\n", nest(200)),
            Some("recursion limit"),
        ),
    ];
    for (name, doc, error) in cases {
        let archive = tar_gz(vec![(
            name.into(),
            bytes(doc.clone().into_bytes()),
            doc.len() as u64,
        )]);
        match (read(&archive, &Limits::default()), error) {
            (Err(FeedError::Record { message, .. }), Some(expected)) => {
                assert!(message.contains(expected), "{name}: {message}")
            }
            // A record without `affected` holds no vulnerability: read, then found empty.
            (Ok(_) | Err(FeedError::Empty { .. }), None) => {}
            (other, _) => panic!("{name}: {other:?}"),
        }
    }
    // A JSON array upload, not an archive.
    let array = format!("[{deep}]");
    assert!(read(array.as_bytes(), &Limits::default()).is_err());
}

// ---- the real feeds under the defaults ----

/// Every `updates/*/*.tar.gz` in the shared data.
fn real_archives() -> Vec<std::path::PathBuf> {
    let Some(data) = tocsin_testdata::dir() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for series in std::fs::read_dir(data.join("updates")).expect("updates/") {
        let series = series.expect("entry").path();
        for file in std::fs::read_dir(&series).expect("series") {
            let file = file.expect("entry").path();
            if file.to_string_lossy().ends_with(".tar.gz") {
                out.push(file);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn the_defaults_have_at_least_fourfold_headroom_over_the_real_archives() {
    let archives = real_archives();
    if archives.is_empty() {
        eprintln!("shared data absent: skipped");
        return;
    }
    let (mut member, mut total, mut members) = (0u64, 0u64, 0u64);
    for path in &archives {
        let file = std::fs::File::open(path).expect("open");
        let mut stream = flate2::read::MultiGzDecoder::new(file);
        let mut tar_bytes = Vec::new();
        stream.read_to_end(&mut tar_bytes).expect("gunzip");
        total = total.max(tar_bytes.len() as u64);
        let mut archive = tar::Archive::new(tar_bytes.as_slice());
        let mut n = 0;
        for entry in archive.entries().expect("tar").raw(true) {
            let entry = entry.expect("entry");
            member = member.max(entry.size());
            n += 1;
        }
        members = members.max(n);
    }
    eprintln!(
        "{} archives: largest member {member} B, largest decompressed {total} B, most members {members}",
        archives.len()
    );
    let d = Limits::default();
    assert!(d.max_member_bytes >= 4 * member, "{member}");
    assert!(d.max_decompressed_bytes >= 4 * total, "{total}");
    assert!(d.max_archive_members >= 4 * members, "{members}");
}

#[test]
fn every_real_archive_reads_under_the_defaults() {
    let archives = real_archives();
    if archives.is_empty() {
        eprintln!("shared data absent: skipped");
        return;
    }
    for path in &archives {
        let bytes = std::fs::read(path).expect("read");
        if let Err(e) = read_bytes_with_limits("u", &bytes, &Limits::default(), &no_progress) {
            panic!("{}: {e}", path.display());
        }
    }
    // And the largest one repacked as a zip.
    let largest = archives
        .iter()
        .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .expect("some archive");
    let file = std::fs::File::open(largest).expect("open");
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    for entry in archive.entries().expect("tar") {
        let mut entry = entry.expect("entry");
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry.path().expect("path").to_string_lossy().into_owned();
        let mut content = Vec::new();
        entry.read_to_end(&mut content).expect("read");
        writer.start_file(name, options).expect("start");
        writer.write_all(&content).expect("write");
    }
    let zip = writer.finish().expect("finish").into_inner();
    if let Err(e) = read_bytes_with_limits("u", &zip, &Limits::default(), &no_progress) {
        panic!("{} as zip: {e}", largest.display());
    }
}
