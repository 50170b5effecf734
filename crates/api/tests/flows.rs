//! tocsin's own API over HTTP with real data: manifests in three real formats, real Debian and
//! RustSec feed snapshots, and the Clair vulnerability report they produce.
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;

use axum::http::{Method, StatusCode};
use common::*;
use tocsin_engine::projection::V4Options;
use tocsin_engine::EngineConfig;
use uuid::Uuid;

const DEBIAN_10: &str = "inventories/clair/docker.io-library-debian-10.index.json";
const PROTON_BRIDGE: &str =
    "inventories/cyclonedx/SBOM_proton-bridge_proton-bridge-v1.8.0.bom.json";
const POSTGRESQL_STATUS: &str = "inventories/dpkg/postgresql.status";
const TANSU_LOCK: &str = "inventories/cargo/tansu.Cargo.lock";
const PIP_LIST: &str = "inventories/pip/python311-site-packages.requirements.txt";
const DEBIAN_SNAPSHOT: &str = "/api/v1/updaters/osv/debian/snapshot";

fn manifest_hash(bytes: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(bytes).expect("IndexReport JSON");
    v["manifest_hash"]
        .as_str()
        .expect("manifest_hash")
        .to_string()
}

fn per_copy_app() -> Options {
    Options {
        engine: EngineConfig {
            v4: V4Options {
                disable_summary: true,
                changed_reason: false,
            },
            ..Default::default()
        },
        ..Default::default()
    }
}

async fn manifest_count(app: &TestApp) -> usize {
    let list = app
        .get("/api/v1/manifests?limit=1000")
        .await
        .expect(StatusCode::OK);
    list["manifests"].as_array().map_or(0, Vec::len)
}

#[tokio::test]
async fn manifests_put_get_list_delete() {
    let Some(data) = data() else { return };
    let app = TestApp::new().await;

    // IndexReport: the digest in the path must be the report's own.
    let jackson = read(&data.join(JACKSON));
    let jackson_digest = manifest_hash(&jackson);
    let uri = format!("/api/v1/manifests/{jackson_digest}");
    let put = app
        .put(&uri, jackson.clone())
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(put["outcome"], "created");
    assert_eq!(put["format"], "index-report");
    assert_eq!(put["digest"], jackson_digest.as_str());
    assert_eq!(put["packages"], 91);
    let again = app.put(&uri, jackson.clone()).await.expect(StatusCode::OK);
    assert_eq!(again["outcome"], "unchanged");
    assert_eq!(again["id"], put["id"], "a re-put keeps the manifest id");
    let other = digest_n(99);
    let m = app
        .put(&format!("/api/v1/manifests/{other}"), jackson.clone())
        .await
        .expect_error(StatusCode::BAD_REQUEST, "bad-request");
    assert!(
        m.contains(&jackson_digest[7..]) || m.contains("manifest_hash"),
        "{m}"
    );
    app.get(&format!("/api/v1/manifests/{other}"))
        .await
        .expect_error(StatusCode::NOT_FOUND, "not-found");

    // CycloneDX carries no digest: the path's is used, labels come from the query.
    let sbom = read(&data.join(PROTON_BRIDGE));
    let sbom_digest = digest_n(1);
    let sbom_uri = format!(
        "/api/v1/manifests/{sbom_digest}?label=image%3Dquay.io%2Fproton%2Fbridge%3Av1.8.0&label=team=mail"
    );
    let put = app
        .put(&sbom_uri, sbom.clone())
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(put["format"], "cyclonedx");
    let sbom_packages = put["packages"].as_u64().expect("packages");
    assert!(sbom_packages >= 200, "{put}");
    let again = app
        .put(&sbom_uri, sbom.clone())
        .await
        .expect(StatusCode::OK);
    assert_eq!(again["outcome"], "unchanged");
    let got = app
        .get(&format!("/api/v1/manifests/{sbom_digest}"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(got["digest"], sbom_digest.as_str());
    assert_eq!(got["format"], "cyclonedx");
    assert_eq!(
        got["labels"],
        serde_json::json!({"image": "quay.io/proton/bridge:v1.8.0", "team": "mail"})
    );
    assert_eq!(got["report"]["manifest_hash"], sbom_digest.as_str());
    let packages = got["report"]["packages"].as_object().expect("packages map");
    assert_eq!(packages.len() as u64, sbom_packages);
    assert!(
        packages
            .values()
            .any(|p| p["name"] == "github.com/gin-gonic/gin"),
        "the SBOM's gin module is in the stored report"
    );
    // Changing only a label replaces the manifest under the same id.
    let relabelled = app
        .put(
            &format!("/api/v1/manifests/{sbom_digest}?label=team=security"),
            sbom.clone(),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(relabelled["outcome"], "replaced");
    assert_eq!(relabelled["id"], put["id"]);

    // dpkg status with the distribution it was taken from.
    let status = read(&data.join(POSTGRESQL_STATUS));
    let status_digest = digest_n(2);
    let put = app
        .put(
            &format!("/api/v1/manifests/{status_digest}?distribution=debian:10"),
            status.clone(),
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(put["format"], "dpkg-status");
    let got = app
        .get(&format!("/api/v1/manifests/{status_digest}"))
        .await
        .expect(StatusCode::OK);
    let dists = got["report"]["distributions"]
        .as_object()
        .expect("distributions");
    assert!(
        dists
            .values()
            .any(|d| d["did"] == "debian" && d["version_id"] == "10"),
        "{dists:?}"
    );

    // Listing: digest order, `limit` per page, `next` to continue after.
    let mut all = [
        jackson_digest.clone(),
        sbom_digest.clone(),
        status_digest.clone(),
    ];
    all.sort();
    let first = app
        .get("/api/v1/manifests?limit=2")
        .await
        .expect(StatusCode::OK);
    let names = |v: &serde_json::Value| -> Vec<String> {
        v["manifests"]
            .as_array()
            .expect("manifests array")
            .iter()
            .map(|m| m["digest"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    assert_eq!(names(&first), all[..2]);
    let next = first["next"].as_str().expect("next when more follow");
    assert_eq!(next, all[1]);
    let second = app
        .get(&format!("/api/v1/manifests?limit=2&after={next}"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(names(&second), all[2..]);
    assert!(
        second["next"].is_null(),
        "no next on the last page: {second}"
    );
    let labelled = first["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(second["manifests"].as_array().into_iter().flatten())
        .find(|m| m["digest"] == sbom_digest.as_str())
        .expect("the SBOM is listed");
    assert_eq!(labelled["labels"]["team"], "security");
    assert_eq!(labelled["packages"].as_u64(), Some(sbom_packages));

    // Rejected bodies store nothing and say what was wrong.
    let bad = digest_n(3);
    let bad_uri = format!("/api/v1/manifests/{bad}");
    let truncated = &sbom[..sbom.len() / 2];
    let m = app
        .put(&bad_uri, truncated.to_vec())
        .await
        .expect_error(StatusCode::BAD_REQUEST, "bad-request");
    assert!(m.contains("CycloneDX") && m.contains("JSON"), "{m}");
    let m = app
        .put(&bad_uri, b"this is not an inventory\x00\x01".to_vec())
        .await
        .expect_error(StatusCode::BAD_REQUEST, "bad-request");
    assert!(m.contains("format"), "{m}");
    let m = app
        .put(&format!("{bad_uri}?label=novalue"), status.clone())
        .await
        .expect_error(StatusCode::BAD_REQUEST, "bad-request");
    assert!(m.contains("novalue"), "{m}");
    let m = app
        .put(&format!("{bad_uri}?colour=blue"), status.clone())
        .await
        .expect_error(StatusCode::BAD_REQUEST, "bad-request");
    assert!(m.contains("colour"), "{m}");
    app.get(&bad_uri)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not-found");
    assert_eq!(manifest_count(&app).await, 3);

    // Malformed digests, on every manifest route.
    for d in [
        "sha256:xyz",
        "nope",
        "sha256:",
        "md5:d41d8cd98f00b204e9800998ecf8427e",
    ] {
        let u = format!("/api/v1/manifests/{d}");
        app.put(&u, status.clone())
            .await
            .expect_error(StatusCode::BAD_REQUEST, "bad-request");
        app.get(&u)
            .await
            .expect_error(StatusCode::BAD_REQUEST, "bad-request");
        app.call(Method::DELETE, &u)
            .await
            .expect_error(StatusCode::BAD_REQUEST, "bad-request");
    }
    app.get("/api/v1/manifests?after=nope")
        .await
        .expect_error(StatusCode::BAD_REQUEST, "bad-request");

    // Delete: 204 with no body, then gone.
    let u = format!("/api/v1/manifests/{status_digest}");
    let r = app.call(Method::DELETE, &u).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    assert!(r.body.is_empty());
    app.get(&u)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not-found");
    app.call(Method::DELETE, &u)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not-found");
    app.get(&format!(
        "/matcher/api/v1/vulnerability_report/{status_digest}"
    ))
    .await
    .expect_error(StatusCode::NOT_FOUND, "not-found");
    assert_eq!(manifest_count(&app).await, 2);
}

/// The real snapshot re-packed with one entry cut short: a snapshot a crashed exporter or an
/// interrupted copy could produce.
fn snapshot_with_truncated_entry(path: &Path, victim: &str) -> Vec<u8> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(
        std::fs::File::open(path).expect("snapshot"),
    ));
    let mut out = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    let mut found = false;
    for entry in archive.entries().expect("tar entries") {
        let mut entry = entry.expect("tar entry");
        let name = entry.path().expect("entry path").display().to_string();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).expect("entry body");
        if name == victim {
            bytes.truncate(bytes.len() / 2);
            found = true;
        }
        let mut header = entry.header().clone();
        header.set_size(bytes.len() as u64);
        header.set_cksum();
        out.append(&header, bytes.as_slice()).expect("append");
    }
    assert!(found, "{victim} is not in {}", path.display());
    out.into_inner().expect("tar").finish().expect("gzip")
}

/// A feed folder as the tar.gz snapshot an exporter would upload.
fn tar_gz_of_dir(dir: &Path, prefix: &str) -> Vec<u8> {
    let mut out = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    out.append_dir_all(prefix, dir)
        .unwrap_or_else(|e| panic!("packing {}: {e}", dir.display()));
    out.into_inner().expect("tar").finish().expect("gzip")
}

/// (vulnerability name, package name) of every entry of a notification set, paged over HTTP.
async fn set_entries(app: &TestApp, id: &str) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    let mut next = String::new();
    loop {
        let page = app
            .get(&format!(
                "/notifier/api/v1/notification/{id}?page_size=100&next={next}"
            ))
            .await
            .expect(StatusCode::OK);
        for n in page["notifications"].as_array().expect("notifications") {
            out.insert((
                n["reason"].as_str().unwrap_or_default().to_string(),
                n["vulnerability"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                n["vulnerability"]["package"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            ));
        }
        match page["page"]["next"].as_str() {
            Some(t) => next = t.to_string(),
            None => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_snapshots_import_once_all_or_nothing() {
    let Some(data) = data() else { return };
    let app = TestApp::with(per_copy_app()).await;
    let jackson = read(&data.join(JACKSON));
    app.put(
        &format!("/api/v1/manifests/{}", manifest_hash(&jackson)),
        jackson.clone(),
    )
    .await
    .expect(StatusCode::CREATED);
    let snaps = snapshots(&data, "debian");
    let no_updaters = serde_json::json!({ "updaters": [], "clair": null });
    assert_eq!(
        app.get("/api/v1/updaters").await.expect(StatusCode::OK),
        no_updaters
    );

    // Broken uploads are refused whole, naming what was broken.
    let victim = "debian/DSA-5000-1.json";
    let broken = snapshot_with_truncated_entry(&snaps[0], victim);
    let m = app
        .put(DEBIAN_SNAPSHOT, broken.clone())
        .await
        .expect_error(StatusCode::BAD_REQUEST, "bad-request");
    assert!(m.contains(victim), "the message names the broken file: {m}");
    let real = read(&snaps[0]);
    let cut_gzip = real[..real.len() / 2].to_vec();
    app.put(DEBIAN_SNAPSHOT, cut_gzip.clone())
        .await
        .expect_error(StatusCode::BAD_REQUEST, "bad-request");
    assert_eq!(
        app.get("/api/v1/updaters").await.expect(StatusCode::OK),
        no_updaters,
        "a refused snapshot stores nothing"
    );
    app.get("/api/v1/updaters/osv/debian/operations")
        .await
        .expect_error(StatusCode::NOT_FOUND, "not-found");

    // The first real snapshot: a new operation, processed into a set at once.
    let first = app
        .put(DEBIAN_SNAPSHOT, real.clone())
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(first["outcome"], "created");
    assert_eq!(first["operation"]["updater"], "osv/debian");
    let first_ref = first["operation"]["ref"].as_str().expect("ref").to_string();
    Uuid::parse_str(&first_ref).expect("operation ref is a UUID");
    let vulns = first["vulnerabilities"].as_u64().expect("vulnerabilities");
    let records = tar::Archive::new(flate2::read::GzDecoder::new(real.as_slice()))
        .entries()
        .expect("tar")
        .filter(|e| {
            e.as_ref().is_ok_and(|e| {
                e.path()
                    .is_ok_and(|p| p.extension().is_some_and(|x| x == "json"))
            })
        })
        .count() as u64;
    assert!(
        vulns >= records,
        "{vulns} vulnerabilities from {records} records"
    );
    let processed = first["processed"].as_array().expect("processed");
    assert_eq!(processed.len(), 1, "{first}");
    assert_eq!(processed[0]["operation"], first_ref.as_str());
    assert!(processed[0]["notification_id"].is_string());
    // Every field the OpenAPI document's `Processed` requires.
    for key in [
        "updater",
        "operation",
        "changes",
        "notification_id",
        "entries",
        "legacy",
        "manifests",
    ] {
        assert!(processed[0].get(key).is_some(), "{key}: {first}");
    }

    // The same bytes again: nothing new, nothing processed.
    let same = app
        .put(DEBIAN_SNAPSHOT, real.clone())
        .await
        .expect(StatusCode::OK);
    assert_eq!(same["outcome"], "unchanged");
    assert_eq!(same["operation"]["ref"], first_ref.as_str());
    assert_eq!(same["processed"], serde_json::json!([]));

    // The next month: exactly what the jackson-databind image newly suffers from (checked
    // independently with `dpkg --compare-versions`, see the engine's real-data test).
    let second = app
        .put(DEBIAN_SNAPSHOT, read(&snaps[1]))
        .await
        .expect(StatusCode::CREATED);
    let second_ref = second["operation"]["ref"]
        .as_str()
        .expect("ref")
        .to_string();
    let set = second["processed"][0]["notification_id"]
        .as_str()
        .expect("the 2022-11 snapshot notifies");
    let fact = |name: &str, pkg: &str| ("added".to_string(), name.to_string(), pkg.to_string());
    assert_eq!(
        set_entries(&app, set).await,
        BTreeSet::from([
            fact("DLA-3134-1", "tzdata"),
            fact("DLA-3152-1", "glibc"),
            fact("DLA-3161-1", "tzdata"),
            fact("DLA-3167-1", "ncurses"),
        ])
    );
    assert_eq!(second["processed"][0]["entries"], 4);

    // A broken upload after good ones changes nothing either.
    app.put(DEBIAN_SNAPSHOT, broken)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "bad-request");

    let ops = app
        .get("/api/v1/updaters/osv/debian/operations")
        .await
        .expect(StatusCode::OK);
    assert_eq!(ops["updater"], "osv/debian");
    let refs: Vec<&str> = ops["operations"]
        .as_array()
        .expect("operations")
        .iter()
        .map(|o| o["ref"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        refs,
        [second_ref.as_str(), first_ref.as_str()],
        "newest first"
    );
    let updaters = app.get("/api/v1/updaters").await.expect(StatusCode::OK);
    let list = updaters["updaters"].as_array().expect("updaters");
    assert_eq!(list.len(), 1, "{updaters}");
    assert_eq!(list[0]["name"], "osv/debian");
    assert_eq!(list[0]["operations"], 2);
    assert_eq!(list[0]["processed"], second_ref.as_str());
    assert_eq!(list[0]["latest"]["ref"], second_ref.as_str());

    // Notification sets of tocsin's own API: both, newest first.
    let sets = app
        .get("/api/v1/notifications")
        .await
        .expect(StatusCode::OK);
    let sets = sets["notifications"].as_array().expect("sets");
    assert_eq!(sets.len(), 2);
    assert_eq!(sets[0]["id"], set);
    assert_eq!(sets[0]["entries"], 4);

    // Unknown updaters and malformed updater paths.
    app.get("/api/v1/updaters/osv/nope/operations")
        .await
        .expect_error(StatusCode::NOT_FOUND, "not-found");
    app.put("/api/v1/updaters/osv/debian", real.clone())
        .await
        .expect_error(StatusCode::NOT_FOUND, "not-found");
    app.put("/api/v1/updaters/osv//debian/snapshot", real)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "bad-request");
}

const SEVERITIES: [&str; 6] = ["Unknown", "Negligible", "Low", "Medium", "High", "Critical"];

fn severity_rank(v: &serde_json::Value) -> usize {
    let s = v["normalized_severity"].as_str().unwrap_or_default();
    SEVERITIES
        .iter()
        .position(|x| *x == s)
        .unwrap_or_else(|| panic!("unknown normalized_severity {s:?}"))
}

/// Checks a VulnerabilityReport's integrity (every id it lists is described, every package it
/// names is in it) and that each package's list is most severe first; returns, per package
/// name, the advisory names reported on it.
fn check_report(report: &serde_json::Value) -> BTreeMap<String, BTreeSet<String>> {
    let packages = report["packages"].as_object().expect("packages");
    let vulns = report["vulnerabilities"]
        .as_object()
        .expect("vulnerabilities");
    let mut by_package: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (pkg_id, list) in report["package_vulnerabilities"]
        .as_object()
        .expect("package_vulnerabilities")
    {
        let pkg = &packages
            .get(pkg_id)
            .unwrap_or_else(|| panic!("package {pkg_id} is not in the report"))["name"];
        let list = list.as_array().expect("a list of ids");
        assert!(!list.is_empty());
        let ranks: Vec<usize> = list
            .iter()
            .map(|id| {
                let id = id.as_str().expect("id");
                let v = vulns
                    .get(id)
                    .unwrap_or_else(|| panic!("vulnerability {id} is not in the report"));
                by_package
                    .entry(pkg.as_str().unwrap_or_default().to_string())
                    .or_default()
                    .insert(v["name"].as_str().unwrap_or_default().to_string());
                severity_rank(v)
            })
            .collect();
        assert!(
            ranks.windows(2).all(|w| w[0] >= w[1]),
            "package {pkg}: not most severe first: {list:?}"
        );
    }
    by_package
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vulnerability_reports_after_real_imports() {
    let Some(data) = data() else { return };
    let app = TestApp::new().await;
    let jackson = read(&data.join(JACKSON));
    let jackson_digest = manifest_hash(&jackson);
    let debian10 = read(&data.join(DEBIAN_10));
    let debian10_digest = manifest_hash(&debian10);
    let tansu_digest = digest_n(7);
    let pip_digest = digest_n(8);
    for (digest, body) in [
        (&jackson_digest, jackson),
        (&debian10_digest, debian10),
        (&tansu_digest, read(&data.join(TANSU_LOCK))),
        (&pip_digest, read(&data.join(PIP_LIST))),
    ] {
        app.put(&format!("/api/v1/manifests/{digest}"), body)
            .await
            .expect(StatusCode::CREATED);
    }
    let newest_debian = snapshots(&data, "debian").pop().expect("a Debian snapshot");
    app.put(DEBIAN_SNAPSHOT, read(&newest_debian))
        .await
        .expect(StatusCode::CREATED);
    let pypi = tar_gz_of_dir(&data.join("osv/pypi"), "pypi");
    app.put("/api/v1/updaters/osv/pypi/snapshot", pypi)
        .await
        .expect(StatusCode::CREATED);
    let newest_rustsec = snapshots(&data, "crates.io")
        .pop()
        .expect("a RustSec snapshot");
    app.put(
        "/api/v1/updaters/osv/crates.io/snapshot",
        read(&newest_rustsec),
    )
    .await
    .expect(StatusCode::CREATED);

    let app = &app;
    let report = |d: &str| {
        let uri = format!("/matcher/api/v1/vulnerability_report/{d}");
        async move { app.get(&uri).await.expect(StatusCode::OK) }
    };

    // jackson-databind's buster image: what the Debian data says about its packages.
    let r = report(&jackson_digest).await;
    assert_eq!(r["manifest_hash"], jackson_digest.as_str());
    let by_package = check_report(&r);
    let dla_3152: serde_json::Value =
        serde_json::from_slice(&read(&data.join("osv/debian/DLA-3152-1.json"))).expect("OSV");
    let fixed_in_buster = dla_3152["affected"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["package"]["ecosystem"] == "Debian:10")
        .flat_map(|a| a["ranges"][0]["events"].as_array().into_iter().flatten())
        .find_map(|e| e["fixed"].as_str())
        .expect("DLA-3152-1 fixes buster");
    // Installed: 2.28-10; a `+debXuY` revision suffix sorts after it in dpkg order.
    assert!(fixed_in_buster.starts_with("2.28-10+"), "{fixed_in_buster}");
    let glibc_hits: Vec<&serde_json::Value> = r["vulnerabilities"]
        .as_object()
        .expect("vulnerabilities")
        .values()
        .filter(|v| v["name"] == "DLA-3152-1")
        .collect();
    assert!(!glibc_hits.is_empty(), "DLA-3152-1 is reported");
    for v in &glibc_hits {
        assert_eq!(v["package"]["name"], "glibc");
        assert_eq!(v["fixed_in_version"], fixed_in_buster);
    }
    for (pkg, advisory) in [
        ("libc6", "DLA-3152-1"),
        ("libc-bin", "DLA-3152-1"),
        ("tzdata", "DLA-3134-1"),
        ("tzdata", "DLA-3161-1"),
        ("libtinfo6", "DLA-3167-1"),
        ("ncurses-base", "DLA-3167-1"),
    ] {
        assert!(
            by_package.get(pkg).is_some_and(|s| s.contains(advisory)),
            "{advisory} on {pkg}: {:?}",
            by_package.get(pkg)
        );
    }
    assert!(
        by_package.values().flatten().any(|n| n.starts_with("DSA-")),
        "DSAs are reported too"
    );
    assert!(
        by_package
            .values()
            .flatten()
            .all(|n| n.starts_with("DSA-") || n.starts_with("DLA-")),
        "only Debian advisories on a Debian image: {by_package:?}"
    );

    // The patched Debian 10 image: every advisory naming its packages is fixed at or below.
    let r = report(&debian10_digest).await;
    assert_eq!(
        r["package_vulnerabilities"],
        serde_json::json!({}),
        "{}",
        r["package_vulnerabilities"]
    );

    // tansu's Cargo.lock: RustSec advisories only.
    let r = report(&tansu_digest).await;
    let by_package = check_report(&r);
    assert!(
        !by_package.is_empty(),
        "tansu names crates with RustSec advisories"
    );
    assert!(
        by_package
            .values()
            .flatten()
            .all(|n| n.starts_with("RUSTSEC-")),
        "{by_package:?}"
    );

    // The CPython site-packages: pip 23.2.1 is before PYSEC-2023-228's fix (23.3), whose CVSS
    // 3.1 vector AV:L/AC:L/PR:L/UI:N/S:U/C:N/I:L/A:N scores 3.3, i.e. Low.
    let r = report(&pip_digest).await;
    let by_package = check_report(&r);
    assert!(
        by_package
            .get("pip")
            .is_some_and(|s| s.contains("PYSEC-2023-228")),
        "{by_package:?}"
    );
    let v = r["vulnerabilities"]
        .as_object()
        .expect("vulnerabilities")
        .values()
        .find(|v| v["name"] == "PYSEC-2023-228")
        .expect("PYSEC-2023-228 is described");
    assert_eq!(v["normalized_severity"], "Low", "{v}");
    assert_eq!(v["fixed_in_version"], "23.3", "{v}");

    app.get(&format!(
        "/matcher/api/v1/vulnerability_report/{}",
        digest_n(404)
    ))
    .await
    .expect_error(StatusCode::NOT_FOUND, "not-found");
    app.get("/matcher/api/v1/vulnerability_report/sha256:nothex")
        .await
        .expect_error(StatusCode::BAD_REQUEST, "bad-request");
}
