//! Reads the shared real data (OSV exports, consecutive feed snapshots) in place.
use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use tocsin_feeds::{read_bytes, read_path, FeedError, Progress, Snapshot};
use tocsin_model::vuln::{Affected, Event, NameKind, RangeKind, VulnId, Vulnerability};
use tocsin_model::Severity;

use tocsin_testdata::dir as shared_data;

fn no_progress(_: Progress) {}

fn read(updater: &str, path: &Path) -> Snapshot {
    match read_path(updater, path, &no_progress) {
        Ok(s) => s,
        Err(e) => panic!("{}: {e}", path.display()),
    }
}

const OSV_FOLDERS: [&str; 5] = ["crates.io", "go", "pypi", "almalinux9", "debian"];

/// Each OSV folder is read once per test binary (several tests look into the same snapshot), and
/// different folders are read in parallel.
fn osv_snapshot(folder: &str) -> Option<&'static Snapshot> {
    static CACHE: [OnceLock<Snapshot>; 5] = [const { OnceLock::new() }; 5];
    let data = shared_data()?;
    let Some(slot) = OSV_FOLDERS.iter().position(|f| *f == folder) else {
        panic!("unknown OSV folder {folder}");
    };
    Some(CACHE[slot].get_or_init(|| {
        let started = std::time::Instant::now();
        let s = read(&format!("osv/{folder}"), &data.join("osv").join(folder));
        eprintln!(
            "osv/{folder}: {} vulnerabilities in {:.2?}; {}",
            s.vulnerabilities.len(),
            started.elapsed(),
            s.stats
        );
        s
    }))
}

fn named<'a>(s: &'a Snapshot, name: &str) -> Vec<&'a Vulnerability> {
    s.vulnerabilities
        .iter()
        .filter(|v| v.name == name)
        .map(|v| v.vuln())
        .collect()
}

/// Checks the snapshot invariants and returns the ids, recomputed from the content so that a
/// carried id that disagrees with its record is caught.
fn assert_sorted_unique(s: &Snapshot) -> Vec<VulnId> {
    let ids: Vec<VulnId> = s.vulnerabilities.iter().map(|v| v.vuln().id()).collect();
    for (v, id) in s.vulnerabilities.iter().zip(&ids) {
        assert_eq!(v.id(), id, "{}: {} carries a wrong id", s.updater, v.name);
    }
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "{}: ids not sorted/unique",
        s.updater
    );
    let identities: BTreeSet<_> = s.vulnerabilities.iter().map(|v| v.identity()).collect();
    assert_eq!(
        identities.len(),
        s.vulnerabilities.len(),
        "{}: identities not unique",
        s.updater
    );
    let mut lines = String::new();
    for id in &ids {
        lines.push_str(&id.0);
        lines.push('\n');
    }
    assert_eq!(s.fingerprint, tocsin_model::sha256_hex(lines.as_bytes()));
    ids
}

#[test]
fn every_osv_folder_reads_with_the_readme_counts() {
    for (folder, records) in [
        ("crates.io", 1206),
        ("go", 4291),
        ("pypi", 2661),
        ("almalinux9", 1783),
        ("debian", 7240),
    ] {
        let Some(s) = osv_snapshot(folder) else {
            return;
        };
        assert_eq!(s.stats.records, records, "{folder}: {}", s.stats);
        assert_eq!(s.stats.files, records, "{folder}");
        assert!(!s.vulnerabilities.is_empty());
        assert_sorted_unique(s);
        assert_eq!(s.fingerprint.len(), 64);
        assert!(s
            .vulnerabilities
            .iter()
            .all(|v| v.updater == format!("osv/{folder}")));
    }
    // Withdrawn advisories are counted and left out (the README's data has 13 and 17).
    if let (Some(c), Some(g)) = (osv_snapshot("crates.io"), osv_snapshot("go")) {
        assert_eq!(c.stats.withdrawn, 13);
        assert_eq!(g.stats.withdrawn, 17);
    }
    // pypi/.id-allocator is not a record.
    if let Some(p) = osv_snapshot("pypi") {
        assert_eq!(p.stats.ignored_files, 1);
    }
}

#[test]
fn go_2020_0001_is_one_gin_vulnerability() {
    let Some(s) = osv_snapshot("go") else { return };
    let v = named(s, "GO-2020-0001");
    assert_eq!(v.len(), 1);
    let v = v[0];
    assert_eq!(v.package.ecosystem, "Go");
    assert_eq!(v.package.name, "github.com/gin-gonic/gin");
    assert_eq!(v.package.kind, NameKind::Binary);
    assert_eq!(v.fixed_in_version, "1.6.0");
    assert_eq!(v.aliases, ["CVE-2020-36567", "GHSA-6vm3-jj99-7229"]);
    assert_eq!(v.issued, "2021-04-14T20:04:52Z");
    assert_eq!(
        v.description,
        "Arbitrary log line injection in github.com/gin-gonic/gin"
    );
    assert_eq!(
        v.links,
        "https://github.com/gin-gonic/gin/pull/2237 \
         https://github.com/gin-gonic/gin/commit/a71af9c144f9579f6dbe945341c1df37aaf09c0d"
    );
    assert_eq!(v.repository.as_ref().map(|r| r.name.as_str()), Some("go"));
}

#[test]
fn go_entries_for_one_module_merge() {
    let Some(s) = osv_snapshot("go") else { return };
    // GO-2026-4524 lists github.com/mattermost/mattermost-server in four affected entries.
    let v = named(s, "GO-2026-4524");
    assert_eq!(v.len(), 4);
    let server = v
        .iter()
        .find(|v| v.package.name == "github.com/mattermost/mattermost-server");
    let Some(Vulnerability {
        affected: Affected::Osv { ranges, .. },
        ..
    }) = server
    else {
        panic!("no merged mattermost-server record: {v:?}");
    };
    let introduced: Vec<_> = ranges
        .iter()
        .flat_map(|r| &r.events)
        .filter_map(|e| match e {
            Event::Introduced(v) => Some(v.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        introduced,
        [
            "0",
            "10.11.0+incompatible",
            "11.1.0+incompatible",
            "11.2.0+incompatible"
        ]
    );
}

#[test]
fn debian_dla_is_a_source_package_of_debian_6() {
    let Some(s) = osv_snapshot("debian") else {
        return;
    };
    let v = named(s, "DLA-0001-1");
    assert_eq!(v.len(), 1);
    let v = v[0];
    assert_eq!(v.package.ecosystem, "Debian:6");
    assert_eq!(v.package.name, "gnutls26");
    assert_eq!(v.package.kind, NameKind::Source);
    assert_eq!(v.fixed_in_version, "2.8.6-1+squeeze4");
    assert_eq!(v.aliases, ["CVE-2014-3466"]);
    assert_eq!(v.normalized_severity, Severity::Unknown);
    let d = v.distribution.clone().unwrap_or_default();
    assert_eq!(
        (
            d.did.as_str(),
            d.version_id.as_str(),
            d.pretty_name.as_str()
        ),
        ("debian", "6", "Debian GNU/Linux 6")
    );
    // Every Debian record names source packages.
    assert!(s
        .vulnerabilities
        .iter()
        .all(|v| v.package.kind == NameKind::Source));
}

#[test]
fn pypi_yaml_record_keeps_its_versions_and_cvss() {
    let Some(s) = osv_snapshot("pypi") else {
        return;
    };
    let v = named(s, "PYSEC-2020-342");
    assert_eq!(v.len(), 1);
    let v = v[0];
    assert_eq!(v.package.ecosystem, "PyPI");
    assert_eq!(v.package.name, "apache-skywalking");
    assert_eq!(v.issued, "2020-08-05T14:15:00Z");
    assert_eq!(v.severity, "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H");
    assert_eq!(v.normalized_severity, Severity::Critical);
    assert!(v
        .description
        .starts_with("**Resolved** Only when using H2/MySQL/TiDB"));
    let Affected::Osv { ranges, versions } = &v.affected else {
        panic!("not an OSV rule: {:?}", v.affected);
    };
    assert_eq!(
        versions,
        &[
            "0.1.0", "0.2.0", "0.3.0", "0.4.0", "0.5.0", "0.6.0", "0.7.0", "0.8.0", "1.0.0",
            "1.0.1"
        ]
    );
    assert_eq!(ranges.len(), 1);
    assert_eq!(ranges[0].kind, RangeKind::Ecosystem);
    assert_eq!(v.fixed_in_version, "");
    // Every PyPI name is PEP 503-normalised.
    assert!(s.vulnerabilities.iter().all(|v| {
        v.package.name == v.package.name.to_lowercase()
            && !v.package.name.contains(['_', '.'])
            && !v.package.name.contains("--")
    }));
}

#[test]
fn almalinux_record_with_three_packages_is_important() {
    let Some(s) = osv_snapshot("almalinux9") else {
        return;
    };
    let v = named(s, "ALSA-2022:8643");
    let names: BTreeSet<_> = v.iter().map(|v| v.package.name.as_str()).collect();
    assert_eq!(
        names,
        BTreeSet::from(["varnish", "varnish-devel", "varnish-docs"])
    );
    for v in v {
        assert_eq!(v.package.ecosystem, "AlmaLinux:9");
        assert_eq!(v.package.kind, NameKind::Any);
        assert_eq!(v.severity, "Important");
        assert_eq!(v.normalized_severity, Severity::High);
        assert_eq!(
            v.distribution.as_ref().map(|d| d.did.as_str()),
            Some("almalinux")
        );
    }
    // Every AlmaLinux advisory carries a severity word in its summary… except bug-fix and
    // enhancement advisories, which may not; none must be left Unknown when they do.
    let unknown_with_word = s.vulnerabilities.iter().filter(|v| {
        v.normalized_severity == Severity::Unknown
            && ["Critical:", "Important:", "Moderate:", "Low:"]
                .iter()
                .any(|w| v.description.starts_with(w))
    });
    assert_eq!(unknown_with_word.count(), 0);
}

#[test]
fn crates_io_cvss_vectors_are_scored() {
    let Some(s) = osv_snapshot("crates.io") else {
        return;
    };
    let v = named(s, "RUSTSEC-2016-0001");
    assert_eq!(v.len(), 1);
    assert_eq!(
        v[0].severity,
        "CVSS:3.0/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:H/A:H"
    );
    assert_eq!(v[0].normalized_severity, Severity::High); // 8.1
    let v4 = s
        .vulnerabilities
        .iter()
        .filter(|v| v.severity.starts_with("CVSS:4.0/"))
        .count();
    assert!(v4 > 0, "no CVSS v4 vector in the RustSec export");
    assert_eq!(s.stats.invalid_cvss, 0);
}

fn crates_updates() -> Option<Vec<PathBuf>> {
    let dir = shared_data()?.join("updates/crates.io");
    let mut tarballs: Vec<PathBuf> = match fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.to_string_lossy().ends_with(".tar.gz"))
            .collect(),
        Err(e) => panic!("{}: {e}", dir.display()),
    };
    tarballs.sort();
    Some(tarballs)
}

#[test]
fn consecutive_crates_io_snapshots_read_and_differ() {
    let Some(tarballs) = crates_updates() else {
        return;
    };
    assert_eq!(tarballs.len(), 24);
    let snapshots: Vec<Snapshot> = tarballs.iter().map(|p| read("rustsec", p)).collect();
    let ids: Vec<BTreeSet<VulnId>> = snapshots
        .iter()
        .zip(&tarballs)
        .map(|(s, p)| {
            assert!(s.stats.records > 1000, "{}: {}", p.display(), s.stats);
            assert_sorted_unique(s).into_iter().collect()
        })
        .collect();
    let mut removed = 0;
    let mut unchanged = Vec::new();
    for i in 0..snapshots.len() - 1 {
        let same_ids = ids[i] == ids[i + 1];
        let same_fingerprint = snapshots[i].fingerprint == snapshots[i + 1].fingerprint;
        assert_eq!(same_ids, same_fingerprint, "{}", tarballs[i + 1].display());
        if same_ids {
            unchanged.push(i + 1);
        }
        removed += ids[i].difference(&ids[i + 1]).count();
    }
    // Every day's export differs from the previous one for tocsin except three: snapshot 05 drops
    // a reference URL that RUSTSEC-2026-0152 listed twice and 06 adds the duplicate back (links
    // are deduplicated), and 23 only rewrites `details` and `modified` of records that have a
    // summary (the description). Same content, same fingerprint: the store creates no operation
    // and nobody is notified about prose edits.
    assert_eq!(unchanged, [5, 6, 23]);
    assert!(removed > 0, "no snapshot removed or changed anything");
    // Re-reading gives the same snapshot.
    let again = read("rustsec", &tarballs[0]);
    assert_eq!(again.fingerprint, snapshots[0].fingerprint);
    assert_eq!(again.vulnerabilities, snapshots[0].vulnerabilities);
    // The updater name is part of the content.
    let other = read("another", &tarballs[0]);
    assert_ne!(other.fingerprint, snapshots[0].fingerprint);
}

/// Unpacks a tar.gz into memory as (path, bytes) of its regular files.
fn unpack(path: &Path) -> Vec<(String, Vec<u8>)> {
    use std::io::Read;
    let file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) => panic!("{}: {e}", path.display()),
    };
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut out = Vec::new();
    for entry in archive.entries().into_iter().flatten() {
        let mut entry = match entry {
            Ok(e) => e,
            Err(e) => panic!("{e}"),
        };
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry
            .path()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut bytes = Vec::new();
        if let Err(e) = entry.read_to_end(&mut bytes) {
            panic!("{e}");
        }
        out.push((name, bytes));
    }
    out
}

fn tar_gz(files: &[(String, Vec<u8>)], mtime: u64) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(gz);
    for (name, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(mtime);
        header.set_cksum();
        if let Err(e) = builder.append_data(&mut header, name, bytes.as_slice()) {
            panic!("{e}");
        }
    }
    match builder.into_inner().and_then(|gz| gz.finish()) {
        Ok(b) => b,
        Err(e) => panic!("{e}"),
    }
}

fn zip_archive(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    for (name, bytes) in files {
        if let Err(e) = writer.start_file(name.as_str(), options) {
            panic!("{e}");
        }
        if let Err(e) = writer.write_all(bytes) {
            panic!("{e}");
        }
    }
    match writer.finish() {
        Ok(c) => c.into_inner(),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn same_content_same_fingerprint_whatever_the_container() {
    let Some(tarballs) = crates_updates() else {
        return;
    };
    let original = read("rustsec", &tarballs[5]);
    let mut files = unpack(&tarballs[5]);
    assert!(files.len() > 1000);

    // A directory of the same files, plus a README that must be ignored.
    let tmp = match tempfile::tempdir() {
        Ok(t) => t,
        Err(e) => panic!("{e}"),
    };
    for (name, bytes) in &files {
        let path = tmp.path().join("export").join(name);
        if let Some(parent) = path.parent() {
            if let Err(e) = fs::create_dir_all(parent) {
                panic!("{e}");
            }
        }
        if let Err(e) = fs::write(&path, bytes) {
            panic!("{e}");
        }
    }
    if let Err(e) = fs::write(tmp.path().join("export/README.md"), "# not a record") {
        panic!("{e}");
    }
    let from_dir = read("rustsec", &tmp.path().join("export"));
    assert_eq!(from_dir.fingerprint, original.fingerprint);
    assert_eq!(from_dir.stats.ignored_files, 1);

    // A tar.gz in the reverse order with other mtimes, read from a .tgz path and from bytes.
    files.reverse();
    files.push(("crates/README.md".into(), b"not a record".to_vec()));
    let repacked = tar_gz(&files, 1_000_000_000);
    let tgz = tmp.path().join("repacked.tgz");
    if let Err(e) = fs::write(&tgz, &repacked) {
        panic!("{e}");
    }
    assert_eq!(read("rustsec", &tgz).fingerprint, original.fingerprint);
    let seen = Mutex::new(Vec::new());
    let record = |p: Progress| {
        if let Ok(mut s) = seen.lock() {
            s.push(p)
        }
    };
    match read_bytes("rustsec", &repacked, &record) {
        Ok(s) => assert_eq!(s.fingerprint, original.fingerprint),
        Err(e) => panic!("{e}"),
    }
    let seen = seen.into_inner().unwrap_or_default();
    assert_eq!(
        seen.last().map(|p| (p.done, p.total)),
        Some((files.len() as u64 - 1, None))
    );

    // A zip of the same files.
    let zipped = zip_archive(&files);
    match read_bytes("rustsec", &zipped, &no_progress) {
        Ok(s) => {
            assert_eq!(s.fingerprint, original.fingerprint);
            assert_eq!(s.stats.ignored_files, 1);
        }
        Err(e) => panic!("{e}"),
    }
    let zip_path = tmp.path().join("export.zip");
    if let Err(e) = fs::write(&zip_path, &zipped) {
        panic!("{e}");
    }
    assert_eq!(read("rustsec", &zip_path).fingerprint, original.fingerprint);

    // The same records as one JSON array.
    let mut array = b"[".to_vec();
    let records: Vec<_> = files.iter().filter(|(n, _)| n.ends_with(".json")).collect();
    for (i, (_, bytes)) in records.iter().enumerate() {
        if i > 0 {
            array.push(b',');
        }
        array.extend_from_slice(bytes);
    }
    array.push(b']');
    match read_bytes("rustsec", &array, &no_progress) {
        Ok(s) => assert_eq!(s.fingerprint, original.fingerprint),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn one_malformed_record_fails_the_whole_archive() {
    let Some(tarballs) = crates_updates() else {
        return;
    };
    let mut files = unpack(&tarballs[0]);
    let target = "crates/RUSTSEC-2020-0001.json";
    let Some(entry) = files.iter_mut().find(|(n, _)| n == target) else {
        panic!("{target} not in {}", tarballs[0].display());
    };
    let text = String::from_utf8_lossy(&entry.1).replace("\"SEMVER\"", "\"FOO\"");
    entry.1 = text.into_bytes();
    let err = match read_bytes("rustsec", &tar_gz(&files, 0), &no_progress) {
        Ok(s) => panic!("malformed archive accepted: {}", s.stats),
        Err(e) => e,
    };
    let msg = err.to_string();
    assert!(
        msg.starts_with(
            "crates/RUSTSEC-2020-0001.json: affected[0].ranges[0].type: unknown variant `FOO`"
        ),
        "{msg}"
    );
    assert!(matches!(err, FeedError::Record { .. }));

    // Broken JSON syntax names the file and the position.
    let Some(entry) = files.iter_mut().find(|(n, _)| n == target) else {
        return;
    };
    entry.1.truncate(entry.1.len() / 2);
    let msg = read_bytes("rustsec", &tar_gz(&files, 0), &no_progress)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(msg.starts_with("crates/RUSTSEC-2020-0001.json: "), "{msg}");
    assert!(msg.contains("EOF while parsing"), "{msg}");
}

#[test]
fn other_update_series_read() {
    let Some(data) = shared_data() else { return };
    for (folder, count) in [("almalinux9", 12), ("debian", 7)] {
        let dir = data.join("updates").join(folder);
        let mut tarballs: Vec<PathBuf> = fs::read_dir(&dir)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        tarballs.sort();
        assert_eq!(tarballs.len(), count, "{}", dir.display());
        // These snapshots are large; the first and the last two keep this test fast.
        tarballs.drain(1..tarballs.len() - 2);
        let mut previous: Option<String> = None;
        for p in &tarballs {
            let s = read(folder, p);
            assert!(s.stats.records > 0, "{}", p.display());
            if let Some(prev) = &previous {
                assert_ne!(prev, &s.fingerprint, "{}", p.display());
            }
            previous = Some(s.fingerprint);
        }
    }
}

#[test]
fn claircore_array_reads_from_bytes_and_path() {
    let array = br#"[
      {"id": "1", "updater": "debian/updater/buster", "name": "CVE-2021-3711",
       "description": "SM2 decryption buffer overflow", "issued": "2021-08-24T15:15:00Z",
       "links": "https://security-tracker.debian.org/tracker/CVE-2021-3711",
       "severity": "High", "normalized_severity": "High",
       "package": {"id": "", "name": "openssl", "version": "", "kind": "source"},
       "distribution": {"id": "1", "did": "debian", "name": "Debian GNU/Linux", "version": "10 (buster)",
          "version_code_name": "buster", "version_id": "10", "arch": "", "cpe": "",
          "pretty_name": "Debian GNU/Linux 10 (buster)"},
       "fixed_in_version": "1.1.1d-0+deb10u7", "arch_op": ""},
      {"id": "2", "updater": "osv/pypi", "name": "PYSEC-2021-1",
       "description": "", "issued": "2021-01-01T00:00:00Z", "links": "",
       "severity": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "normalized_severity": "Critical",
       "package": {"id": "", "name": "Django", "version": "", "kind": "binary"},
       "repository": {"id": "7", "name": "pypi", "uri": "https://pypi.org/simple", "cpe": ""},
       "fixed_in_version": "fixed=3.1.13&introduced=3.0",
       "range": {"[": {"kind": "pep440", "v": [0,3,0,0,0,0,0,0,0,0]},
                 ")": {"kind": "pep440", "v": [0,3,1,13,0,0,0,0,0,0]}},
       "future_field": true}
    ]"#;
    let s = match read_bytes("clair", array, &no_progress) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(s.vulnerabilities.len(), 2);
    assert_eq!(s.stats.records, 2);
    let debian = named(&s, "CVE-2021-3711")[0];
    assert_eq!(debian.package.ecosystem, "Debian:10");
    assert_eq!(debian.package.kind, NameKind::Source);
    assert_eq!(debian.fixed_in_version, "1.1.1d-0+deb10u7");
    assert_eq!(debian.normalized_severity, Severity::High);
    let pypi = named(&s, "PYSEC-2021-1")[0];
    assert_eq!(pypi.package.ecosystem, "PyPI");
    assert_eq!(pypi.package.name, "django");
    assert_eq!(pypi.package.kind, NameKind::Binary);
    assert_eq!(pypi.normalized_severity, Severity::Critical);
    let Affected::Claircore {
        fixed_in_version,
        range,
        ..
    } = &pypi.affected
    else {
        panic!("not a claircore rule: {:?}", pypi.affected);
    };
    assert_eq!(fixed_in_version, "fixed=3.1.13&introduced=3.0");
    assert_eq!(
        range
            .as_ref()
            .and_then(|r| r.upper.as_ref())
            .map(|u| u.v[3]),
        Some(13)
    );

    let tmp = match tempfile::tempdir() {
        Ok(t) => t,
        Err(e) => panic!("{e}"),
    };
    let path = tmp.path().join("clair-dump.json");
    if let Err(e) = fs::write(&path, array) {
        panic!("{e}");
    }
    assert_eq!(read("clair", &path).fingerprint, s.fingerprint);

    // An element whose ecosystem cannot be told is an error naming it.
    let bad = br#"[{"name": "CVE-1", "package": {"name": "x"}, "normalized_severity": "Low"},
                  {"name": "CVE-2", "package": {"name": "y"}, "distribution": {"did": "plan9"}}]"#;
    let msg = read_bytes("clair", bad, &no_progress)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(msg.starts_with("(upload): [0] (CVE-1): neither"), "{msg}");
}

#[test]
fn single_records_read_from_paths() {
    let Some(data) = shared_data() else { return };
    let s = read("go", &data.join("osv/go/GO-2020-0001.json"));
    assert_eq!(s.vulnerabilities.len(), 1);
    let s = read(
        "pypi",
        &data.join("osv/pypi/apache-skywalking/PYSEC-2020-342.yaml"),
    );
    assert_eq!(s.vulnerabilities.len(), 1);
    assert_eq!(s.vulnerabilities[0].package.name, "apache-skywalking");
    match read_path("x", &data.join("does-not-exist"), &no_progress) {
        Err(FeedError::Io { .. }) => {}
        other => panic!("{other:?}"),
    }
}
