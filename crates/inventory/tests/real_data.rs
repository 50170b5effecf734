//! Every real inventory in shared/data/inventories, parsed end to end.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tocsin_inventory::{parse, parse_with_stats, sniff, Input, InventoryError, Parsed};
use tocsin_model::claircore::IndexReport;
use tocsin_model::inventory::{installed_packages, InstalledPackage, InventoryFormat};
use tocsin_model::Digest;

fn data_dir() -> Option<PathBuf> {
    tocsin_testdata::dir().map(|d| d.join("inventories"))
}

fn read(dir: &Path, rel: &str) -> Vec<u8> {
    std::fs::read(dir.join(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
}

fn files(dir: &Path, sub: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join(sub))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

fn digest(n: u8) -> Digest {
    Digest::parse(&format!("sha256:{}", format!("{n:02x}").repeat(32))).unwrap()
}

fn parse_as(bytes: &[u8], digest_n: u8, distribution: Option<&str>) -> Parsed {
    parse_with_stats(Input {
        bytes,
        digest: Some(digest(digest_n)),
        distribution,
        ..Default::default()
    })
    .unwrap()
}

/// Ecosystem → number of installed packages.
fn ecosystems(p: &[InstalledPackage]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for pkg in p {
        *m.entry(pkg.ecosystem.clone()).or_insert(0) += 1;
    }
    m
}

fn one(eco: &str, n: usize) -> BTreeMap<String, usize> {
    BTreeMap::from([(eco.to_string(), n)])
}

#[test]
fn every_real_file_is_recognised() {
    let Some(dir) = data_dir() else { return };
    for (sub, want) in [
        ("clair", InventoryFormat::IndexReport),
        ("cyclonedx", InventoryFormat::Cyclonedx),
        ("dpkg", InventoryFormat::DpkgStatus),
        ("cargo", InventoryFormat::CargoLock),
        ("pip", InventoryFormat::Pip),
    ] {
        let found = files(&dir, sub);
        assert!(!found.is_empty(), "{sub} is empty");
        for f in found {
            let bytes = std::fs::read(&f).unwrap();
            assert_eq!(sniff(&bytes, None), Some(want), "{}", f.display());
        }
    }
}

#[test]
fn index_reports_are_kept_and_round_trip() {
    let Some(dir) = data_dir() else { return };
    for f in files(&dir, "clair") {
        let bytes = std::fs::read(&f).unwrap();
        let m = parse(Input::new(&bytes)).unwrap();
        assert_eq!(m.format, InventoryFormat::IndexReport);
        let original: IndexReport = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(m.report, original, "{}", f.display());
        assert_eq!(m.digest.as_str(), original.manifest_hash);
        // What we store re-parses to the same manifest.
        let again = parse(Input {
            bytes: &serde_json::to_vec(&m.report).unwrap(),
            digest: Some(m.digest.clone()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(again, m);
        // A caller's digest that disagrees is refused.
        let e = parse(Input {
            bytes: &bytes,
            digest: Some(digest(1)),
            ..Default::default()
        })
        .unwrap_err();
        assert!(matches!(e, InventoryError::DigestMismatch { .. }), "{e}");
    }
    let debian = parse(Input::new(&read(
        &dir,
        "clair/docker.io-library-debian-10.index.json",
    )))
    .unwrap();
    assert_eq!(debian.report.packages.len(), 91);
    assert_eq!(
        ecosystems(&installed_packages(&debian.report)),
        one("Debian:10", 91)
    );
    let rhel = parse(Input::new(&read(
        &dir,
        "clair/clair-rhel8-v3.5.5-4-indexreport.json",
    )))
    .unwrap();
    assert_eq!(rhel.report.packages.len(), 4);
}

#[test]
fn cyclonedx_sboms() {
    let Some(dir) = data_dir() else { return };
    let cases = [
        (
            "SBOM_proton-bridge_proton-bridge-v1.6.3.bom.json",
            "Go",
            201,
        ),
        (
            "SBOM_proton-bridge_proton-bridge-v1.8.0.bom.json",
            "Go",
            201,
        ),
        ("SBOM_juice-shop_v11.1.2_bom.json", "npm", 840),
        ("SBOM_dropwizard-1.3.15_bom.json", "Maven", 167),
        ("SBOM_laravel-7.12.0_bom.1.4.json", "Packagist", 62),
    ];
    for (file, eco, n) in cases {
        let bytes = read(&dir, &format!("cyclonedx/{file}"));
        let p = parse_as(&bytes, 2, None);
        assert_eq!(p.manifest.format, InventoryFormat::Cyclonedx);
        assert_eq!(p.stats.packages, n, "{file}");
        assert!(p.stats.skipped.is_empty(), "{file}: {:?}", p.stats.skipped);
        let installed = installed_packages(&p.manifest.report);
        assert_eq!(ecosystems(&installed), one(eco, n), "{file}");
        // The content type alone also selects the parser.
        let hinted = parse(Input {
            bytes: &bytes,
            content_type: Some("application/vnd.cyclonedx+json"),
            digest: Some(digest(2)),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(hinted, p.manifest);
    }
    let names = |file: &str| -> Vec<(String, String)> {
        let p = parse_as(&read(&dir, &format!("cyclonedx/{file}")), 2, None);
        installed_packages(&p.manifest.report)
            .into_iter()
            .map(|p| (p.name, p.version))
            .collect()
    };
    let go = names("SBOM_proton-bridge_proton-bridge-v1.8.0.bom.json");
    assert!(go.contains(&(
        "github.com/0xAX/notificator".into(),
        "v0.0.0-20191016112426-3962a5ea8da1".into()
    )));
    assert!(go.iter().all(|(_, v)| v.starts_with('v')));
    let npm = names("SBOM_juice-shop_v11.1.2_bom.json");
    assert!(npm.contains(&("@types/node".into(), "14.0.23".into())));
    let maven = names("SBOM_dropwizard-1.3.15_bom.json");
    assert!(maven.contains(&(
        "com.fasterxml.jackson.core:jackson-annotations".into(),
        "2.9.10".into()
    )));
    let composer = names("SBOM_laravel-7.12.0_bom.1.4.json");
    assert!(composer.contains(&("brick/math".into(), "0.9.3".into())));
}

/// An SPDX 2.3 document carrying the proton-bridge components, as an SPDX generator would
/// write it (document creation info, one package per module with checksums, a purl reference
/// and a CPE, DEPENDS_ON relationships).
fn spdx_from_cyclonedx(cdx: &serde_json::Value) -> serde_json::Value {
    let components = cdx["components"].as_array().unwrap();
    let mut packages = vec![serde_json::json!({
        "SPDXID": "SPDXRef-Package-root",
        "name": "github.com/ProtonMail/proton-bridge",
        "versionInfo": "v1.8.0",
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false
    })];
    let mut relationships = vec![serde_json::json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": "SPDXRef-Package-root"
    })];
    for (i, c) in components.iter().enumerate() {
        let id = format!("SPDXRef-Package-{i}");
        packages.push(serde_json::json!({
            "SPDXID": id,
            "name": c["name"],
            "versionInfo": c["version"],
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "checksums": [{"algorithm": "SHA256", "checksumValue": c["hashes"][0]["content"]}],
            "licenseConcluded": "NOASSERTION",
            "externalRefs": [
                {"referenceCategory": "SECURITY", "referenceType": "cpe23Type",
                 "referenceLocator": format!("cpe:2.3:a:*:{}:*:*:*:*:*:*:*:*", i)},
                {"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                 "referenceLocator": c["purl"]}
            ]
        }));
        relationships.push(serde_json::json!({
            "spdxElementId": "SPDXRef-Package-root",
            "relationshipType": "DEPENDS_ON",
            "relatedSpdxElement": id
        }));
    }
    serde_json::json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": "proton-bridge-v1.8.0",
        "documentNamespace": "https://example.invalid/spdx/proton-bridge-v1.8.0",
        "creationInfo": {"created": "2021-05-16T17:10:53Z", "creators": ["Tool: tocsin-test"]},
        "packages": packages,
        "relationships": relationships
    })
}

#[test]
fn spdx_document_matches_the_cyclonedx_one() {
    let Some(dir) = data_dir() else { return };
    let cdx_bytes = read(
        &dir,
        "cyclonedx/SBOM_proton-bridge_proton-bridge-v1.8.0.bom.json",
    );
    let cdx: serde_json::Value = serde_json::from_slice(&cdx_bytes).unwrap();
    let spdx = serde_json::to_vec_pretty(&spdx_from_cyclonedx(&cdx)).unwrap();
    assert_eq!(sniff(&spdx, None), Some(InventoryFormat::Spdx));
    assert_eq!(
        sniff(&spdx, Some("application/spdx+json")),
        Some(InventoryFormat::Spdx)
    );
    let p = parse_as(&spdx, 3, None);
    assert_eq!(p.manifest.format, InventoryFormat::Spdx);
    assert_eq!(p.stats.packages, 201);
    // The root package has no purl reference.
    assert_eq!(p.stats.skipped.len(), 1);
    assert_eq!(p.stats.skipped[0].at, "packages[0]");
    let from_spdx = installed_packages(&p.manifest.report);
    assert_eq!(ecosystems(&from_spdx), one("Go", 201));
    let from_cdx = installed_packages(&parse_as(&cdx_bytes, 3, None).manifest.report);
    let key = |v: &[InstalledPackage]| -> Vec<(String, String, String)> {
        v.iter()
            .map(|p| (p.ecosystem.clone(), p.name.clone(), p.version.clone()))
            .collect()
    };
    assert_eq!(key(&from_spdx), key(&from_cdx));
}

#[test]
fn dpkg_status_files() {
    let Some(dir) = data_dir() else { return };
    let big = read(&dir, "dpkg/debian12-rust-toolchain.status");
    let p = parse_as(&big, 4, Some("debian:12"));
    assert_eq!(p.manifest.format, InventoryFormat::DpkgStatus);
    // Every one of the 817 paragraphs is `install ok installed` (the data README says 707).
    assert_eq!(p.stats.packages, 817);
    assert!(p.stats.skipped.is_empty());
    let installed = installed_packages(&p.manifest.report);
    assert_eq!(ecosystems(&installed), one("Debian:12", 817));
    let bash = installed.iter().find(|p| p.name == "bash").unwrap();
    assert_eq!(bash.version, "5.2.15-2+b8");
    let bash_source = p.manifest.report.packages[&bash.package_id]
        .source
        .as_ref()
        .unwrap();
    assert_eq!(
        (bash_source.name.as_str(), bash_source.version.as_str()),
        ("bash", "5.2.15-2")
    );
    let libc = installed.iter().find(|p| p.name == "libc6").unwrap();
    assert_eq!(libc.version, "2.36-9+deb12u14");
    assert_eq!(libc.source_name.as_deref(), Some("glibc"));
    assert_eq!(libc.arch, "amd64");
    assert_eq!(p.manifest.report.distributions.len(), 1);

    // os-release text names the same distribution.
    let os_release = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\n";
    let q = parse_as(&big, 4, Some(os_release));
    assert_eq!(q.manifest, p.manifest);

    let pg = parse_as(
        &read(&dir, "dpkg/postgresql.status"),
        5,
        Some("debian:buster"),
    );
    let installed = installed_packages(&pg.manifest.report);
    assert_eq!(ecosystems(&installed), one("Debian:10", 3));
    let client = installed
        .iter()
        .find(|p| p.name == "postgresql-client")
        .unwrap();
    assert_eq!(client.source_name.as_deref(), Some("postgresql-common"));
    let src = pg
        .manifest
        .report
        .packages
        .get(&client.package_id)
        .and_then(|p| p.source.as_ref())
        .unwrap();
    assert_eq!(src.version, "200+deb10u5");

    let only = parse_as(&read(&dir, "dpkg/debian-only.status"), 6, Some("debian:10"));
    assert_eq!(only.stats.packages, 1);

    // Without a distribution a dpkg file cannot be placed.
    let e = parse(Input {
        bytes: &big,
        digest: Some(digest(4)),
        ..Default::default()
    })
    .unwrap_err();
    assert!(e.to_string().contains("distribution is required"), "{e}");
}

#[test]
fn cargo_locks() {
    let Some(dir) = data_dir() else { return };
    for (file, crates_io, skipped) in [
        ("cargo/tansu.Cargo.lock", 963, 17),
        ("cargo/rust-rdkafka.Cargo.lock", 195, 2),
    ] {
        let p = parse_as(&read(&dir, file), 7, None);
        assert_eq!(p.manifest.format, InventoryFormat::CargoLock);
        assert_eq!(p.stats.packages, crates_io, "{file}");
        assert_eq!(p.stats.skipped.len(), skipped, "{file}");
        assert!(p
            .stats
            .skipped
            .iter()
            .all(|s| s.reason.contains("workspace member")));
        assert_eq!(
            ecosystems(&installed_packages(&p.manifest.report)),
            one("crates.io", crates_io),
            "{file}"
        );
    }
}

#[test]
fn pip_list() {
    let Some(dir) = data_dir() else { return };
    let p = parse_as(
        &read(&dir, "pip/python311-site-packages.requirements.txt"),
        8,
        None,
    );
    assert_eq!(p.manifest.format, InventoryFormat::Pip);
    assert_eq!(p.stats.packages, 94);
    let installed = installed_packages(&p.manifest.report);
    assert_eq!(ecosystems(&installed), one("PyPI", 94));
    for (name, version) in [
        ("flask", "3.1.3"),
        ("typing-extensions", "4.15.0"),
        ("pyyaml", "6.0.3"),
    ] {
        assert!(
            installed
                .iter()
                .any(|p| p.name == name && p.version == version),
            "{name}"
        );
    }
}

#[test]
fn bad_inputs_name_the_problem() {
    let Some(dir) = data_dir() else { return };
    let bytes = read(&dir, "cyclonedx/SBOM_juice-shop_v11.1.2_bom.json");

    // Truncated JSON: the intended parser reports where it broke off.
    let cut = &bytes[..bytes.len() / 2];
    let e = parse(Input {
        bytes: cut,
        digest: Some(digest(9)),
        ..Default::default()
    })
    .unwrap_err();
    match &e {
        InventoryError::Json {
            format, path, line, ..
        } => {
            assert_eq!(*format, InventoryFormat::Cyclonedx);
            assert!(path.starts_with("components["), "{path}");
            assert!(*line > 1);
        }
        other => panic!("unexpected {other:?}"),
    }
    let msg = e.to_string();
    assert!(msg.contains("CycloneDX") && msg.contains("EOF"), "{msg}");

    // A malformed purl deep in the document.
    let mut doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    doc["components"][12]["purl"] = "pkg:npm/%zz@1.0.0".into();
    let e = parse(Input {
        bytes: &serde_json::to_vec(&doc).unwrap(),
        digest: Some(digest(9)),
        ..Default::default()
    })
    .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("components[12].purl") && msg.contains("%zz"),
        "{msg}"
    );

    // An SBOM carries no manifest digest.
    let e = parse(Input::new(&bytes)).unwrap_err();
    assert!(matches!(e, InventoryError::MissingDigest { .. }), "{e}");
    assert!(e.to_string().contains("CycloneDX"), "{e}");

    // A wrongly typed value names its JSON path.
    let mut doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    doc["components"][3]["components"] = serde_json::json!([{"purl": false}]);
    let e = parse(Input {
        bytes: &serde_json::to_vec(&doc).unwrap(),
        digest: Some(digest(9)),
        ..Default::default()
    })
    .unwrap_err();
    assert!(
        e.to_string().contains("components[3].components[0].purl"),
        "{e}"
    );
}
