//! PyPI and Go advisories through a real Clair, its own OSV updater feeding its matcher.
//!
//! The image is one layer of what Clair's indexer reads for those ecosystems: a `*.dist-info/
//! METADATA` for each of the 94 pinned packages of `inventories/pip/python311-site-packages.
//! requirements.txt`, and a Go program built here against `golang.org/x/text` v0.3.7 (its build
//! information names the module, as in any Go binary). The advisories are the shared OSV records
//! of those packages (`osv/pypi`, and `osv/go` for `golang.org/x/text` and the standard
//! library), served in OSV.dev's layout by the test mirror; Clair's OSV updater fetches them
//! itself (`updaters.sets: [osv]`, its `url` pointed at the mirror), so the vulnerabilities are
//! stored exactly as Clair stores them.
//!
//! Clair is started twice: first with its updaters off, to index the image, then with them on,
//! so that its notifier sees the update operations after the image is indexed (as for an image
//! indexed before an advisory is published). Compared: the facts of Clair's own notifier (read
//! through its pull API once its receipts say it finished each operation), of tocsin fronting
//! that Clair, and of tocsin standalone given Clair's IndexReport and the same records; and both
//! vulnerability reports.
//!
//! Clair v4.9.0 (claircore v1.5.48) is run as released, and again built against claircore
//! v1.5.54 (`CLAIRCORE_VERSION`, `scripts/clair.sh`), the newest claircore the module proxy
//! serves: the affected-manifest lookup changed in between (`docs/clair-differences.md`, rows
//! 4 and 5). On v1.5.54 the lookup answers every Go advisory of the image's modules whatever
//! the version; tocsin fronting it confirms those answers with Clair's own vulnerability
//! report (`tocsin_updaters::clair`), so it notifies only the affected ones.
use super::*;

const REQUIREMENTS: &str = "inventories/pip/python311-site-packages.requirements.txt";
/// Where the Go program lies in the layer (an executable, as Clair's Go scanner wants).
const GO_PROGRAM: &str = "usr/local/bin/tocsin-gotext";

/// `name==version` lines of a requirements file.
fn pinned(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.split_once("=="))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// PEP 503's normal form of a project name.
fn pep503(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// The shared PyPI records (YAML, one folder per project) of the given projects, as JSON.
fn pypi_records(data: &Path, projects: &[(String, String)]) -> Vec<(String, Vec<u8>)> {
    let wanted: BTreeSet<String> = projects.iter().map(|(n, _)| pep503(n)).collect();
    let mut out = Vec::new();
    for folder in std::fs::read_dir(data.join("osv/pypi")).expect("osv/pypi") {
        let folder = folder.expect("an entry").path();
        let name = folder.file_name().map(|n| n.to_string_lossy().into_owned());
        if !name.is_some_and(|n| wanted.contains(&pep503(&n))) {
            continue;
        }
        for file in std::fs::read_dir(&folder).expect("a project folder") {
            let file = file.expect("an entry").path();
            let record: Value = serde_yaml_ng::from_slice(&read(&file)).expect("a YAML OSV record");
            let id = record["id"].as_str().expect("an id").to_string();
            out.push((id, serde_json::to_vec(&record).expect("JSON")));
        }
    }
    out.sort();
    out
}

/// The shared Go records that name one of `modules`.
fn go_records(data: &Path, modules: &[&str]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for file in std::fs::read_dir(data.join("osv/go")).expect("osv/go") {
        let file = file.expect("an entry").path();
        let bytes = read(&file);
        let record: Value = serde_json::from_slice(&bytes).expect("a JSON OSV record");
        let names = record["affected"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["package"]["name"].as_str());
        if names.into_iter().any(|n| modules.contains(&n)) {
            out.push((record["id"].as_str().expect("an id").to_string(), bytes));
        }
    }
    out.sort();
    out
}

/// A small Go program using `golang.org/x/text` v0.3.7 (vulnerable to GO-2021-0113 and
/// GO-2022-1059), built with the local toolchain from the module proxy.
fn go_program(dir: &Path) -> Vec<u8> {
    let src = dir.join("gotext");
    std::fs::create_dir_all(&src).expect("a folder");
    std::fs::write(
        src.join("go.mod"),
        "module tocsin.test/gotext\n\ngo 1.22\n\nrequire golang.org/x/text v0.3.7\n",
    )
    .expect("go.mod");
    std::fs::write(
        src.join("main.go"),
        "package main\n\nimport (\n\t\"fmt\"\n\n\t\"golang.org/x/text/language\"\n)\n\n\
         func main() { fmt.Println(language.MustParse(\"en-GB\")) }\n",
    )
    .expect("main.go");
    let out = Command::new("go")
        .args(["build", "-trimpath", "-ldflags=-s -w", "-o", "gotext", "."])
        .current_dir(&src)
        .env("GOFLAGS", "-mod=mod")
        .env("CGO_ENABLED", "0")
        .output()
        .expect("go build");
    assert!(
        out.status.success(),
        "go build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    read(&src.join("gotext"))
}

/// What one run found, for the comparison across Clair builds.
#[derive(Debug)]
struct Found {
    /// Clair's vulnerability report: (advisory, package).
    clair_report: BTreeSet<(String, String)>,
    /// tocsin standalone's, on Clair's IndexReport.
    tocsin_report: BTreeSet<(String, String)>,
    /// (manifest, reason, advisory, package) of Clair's notifier.
    clair_notified: Facts,
    /// Of tocsin fronting that Clair.
    fronting_notified: Facts,
    /// Of tocsin standalone.
    standalone_notified: Facts,
}

type Facts = BTreeSet<(String, String, String, String)>;

/// (advisory, package) of notification facts.
fn pairs(facts: &Facts) -> BTreeSet<(String, String)> {
    facts
        .iter()
        .map(|(_, _, v, p)| (v.clone(), p.clone()))
        .collect()
}

fn is_go(pair: &(String, String)) -> bool {
    pair.0.starts_with("GO-")
}

/// The whole exchange with one Clair build (`core`: the claircore it is built against, `None`
/// for Clair v4.9.0 as released).
async fn through_clair(core: Option<&str>) -> Option<Found> {
    let data = shared_data()?;
    let bin = clair_bin_with(core)?;
    let (Some((indexer_db, matcher_db, notifier_db)), Some(fronting_db)) =
        (clair_databases().await, throwaway_database().await)
    else {
        return None;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let label = core.unwrap_or("v1.5.48 (Clair v4.9.0 as released)");

    // The image.
    let projects = pinned(&String::from_utf8_lossy(&read(&data.join(REQUIREMENTS))));
    assert!(projects.len() > 50, "{REQUIREMENTS}: {projects:?}");
    let metadata: Vec<(String, Vec<u8>)> = projects
        .iter()
        .map(|(name, version)| {
            (
                format!(
                    "usr/local/lib/python3.11/site-packages/{name}-{version}.dist-info/METADATA"
                ),
                format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n").into_bytes(),
            )
        })
        .collect();
    let program = go_program(dir.path());
    let mut files: Vec<(&str, &[u8], u32)> = metadata
        .iter()
        .map(|(p, b)| (p.as_str(), b.as_slice(), 0o644))
        .collect();
    files.push((GO_PROGRAM, &program, 0o755));
    let blob_bytes = layer_of(&files);
    let manifest = format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(b"tocsin real-clair pypi and go image"))
    );

    // The advisories, in OSV.dev's layout.
    let pypi = pypi_records(&data, &projects);
    let go = go_records(&data, &["golang.org/x/text", "stdlib"]);
    let mirror = tocsin_testdata::osv_mirror::OsvMirror::start()
        .await
        .expect("the OSV mirror");
    mirror.publish_records("PyPI", pypi.clone()).expect("PyPI");
    mirror.publish_records("Go", go.clone()).expect("Go");

    let peer = Peer::default();
    let blob_hex = peer.put_blob(blob_bytes);
    let peer_addr = peer.serve().await;

    // Clair with its updaters off indexes the image; then again with its OSV updater on.
    let (port, intro) = (free_port(), free_port());
    let config = dir.path().join("clair.yaml");
    let map = empty_mapping(dir.path());
    let mut yaml = ClairYaml {
        port,
        intro,
        indexer: indexer_db.connstring(),
        matcher: matcher_db.connstring(),
        notifier: notifier_db.connstring(),
        map: &map,
        target: format!("http://{peer_addr}/hook"),
        osv_mirror: None,
    };
    std::fs::write(&config, yaml.render()).expect("config");
    let log = dir.path().join("clair.log");
    let base = format!("http://127.0.0.1:{port}");
    let clair = spawn_clair(&bin, &config, &log);
    clair_answers(&base).await;
    let index = clair_index(&base, peer_addr, &manifest, &blob_hex).await;
    let packages: Vec<String> = index["packages"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(_, p)| {
            format!(
                "{} {}",
                p["name"].as_str().unwrap_or(""),
                p["version"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert!(
        packages.iter().any(|p| p.starts_with("golang.org/x/text "))
            && packages.iter().any(|p| p.starts_with("orjson ")),
        "Clair indexed the pip metadata and the Go program: {packages:?}"
    );
    drop(clair);
    yaml.osv_mirror = Some(mirror.base_url());
    std::fs::write(&config, yaml.render()).expect("config");
    let clair = spawn_clair(&bin, &config, &log);
    clair_answers(&base).await;
    let operations = eventually(
        Duration::from_secs(180),
        "Clair's OSV updater makes osv/pypi and osv/go operations",
        || {
            let base = base.clone();
            async move {
                let ops = get_json(
                    &signed(),
                    &format!("{base}/matcher/api/v1/internal/update_operation?kind=vulnerability"),
                )
                .await;
                let refs: Vec<String> = ["osv/pypi", "osv/go"]
                    .iter()
                    .filter_map(|u| ops[u][0]["ref"].as_str().map(str::to_string))
                    .collect();
                (refs.len() == 2).then_some(refs)
            }
        },
    )
    .await;

    // tocsin standalone: Clair's IndexReport, the same records.
    let http = client();
    let tport = free_port();
    let mut spec = ConfigSpec::new(tport, &dir.path().join("tocsin"));
    spec.disable_summary = true;
    let tconfig = spec.write(&dir.path().join("t.yaml"));
    let mut tocsin = Server::start(&tconfig, tport, &dir.path().join("tocsin.log"), &[]);
    tocsin.ready().await;
    let report_bytes = signed()
        .get(format!("{base}/indexer/api/v1/index_report/{manifest}"))
        .send()
        .await
        .expect("GET index_report")
        .bytes()
        .await
        .expect("an IndexReport")
        .to_vec();
    put_ok(
        &http,
        &format!("{}/api/v1/manifests/{manifest}", tocsin.base),
        report_bytes,
    )
    .await;
    for (updater, ecosystem) in [("osv/pypi", "PyPI"), ("osv/go", "Go")] {
        let zip = mirror
            .file(&format!("{ecosystem}/all.zip"))
            .expect("all.zip");
        put_ok(
            &http,
            &format!("{}/api/v1/updaters/{updater}/snapshot", tocsin.base),
            zip.bytes,
        )
        .await;
    }
    let mut standalone_notified = Facts::new();
    for set in notification_sets(&http, &tocsin.base).await {
        let id = set["id"].as_str().expect("a set id");
        standalone_notified.extend(
            facts(
                &http,
                &format!("{}/notifier/api/v1/notification/{id}", tocsin.base),
            )
            .await,
        );
    }

    // tocsin fronting the same Clair: it mirrors both operations (first contact) and asks
    // Clair's indexer which manifests they affect.
    let fport = free_port();
    let mut fspec = ConfigSpec::new(fport, &dir.path().join("fronting"));
    fspec.disable_summary = true;
    fspec.webhook = Some(format!("http://{peer_addr}/fronting-hook"));
    fspec.notifier = vec![
        (
            "connstring".into(),
            format!("{:?}", fronting_db.connstring()),
        ),
        ("migrations".into(), "true".into()),
        ("matcher_addr".into(), base.clone()),
        ("indexer_addr".into(), base.clone()),
        ("poll_interval".into(), "2s".into()),
    ];
    let fconfig = dir.path().join("fronting.yaml");
    std::fs::write(
        &fconfig,
        fspec.yaml() + &format!("auth:\n  psk:\n    key: {PSK}\n    iss: [quay]\n"),
    )
    .expect("config");
    let mut fronting = Server::start(&fconfig, fport, &dir.path().join("fronting.log"), &[]);
    fronting.ready().await;
    eventually(
        Duration::from_secs(120),
        "the fronting tocsin mirrors and processes both operations",
        || {
            let base = fronting.base.clone();
            async move {
                let u = get_json(&signed(), &format!("{base}/api/v1/updaters")).await;
                let rows = u["updaters"].as_array().cloned().unwrap_or_default();
                let done = ["osv/pypi", "osv/go"].iter().all(|name| {
                    rows.iter().any(|r| {
                        r["name"] == *name
                            && r["processed"].is_string()
                            && r["processed"] == r["latest"]["ref"]
                    })
                });
                done.then_some(())
            }
        },
    )
    .await;
    let mut fronting_notified = Facts::new();
    for set in signed_sets(&fronting.base).await {
        let id = set["id"].as_str().expect("a set id");
        fronting_notified.extend(
            facts(
                &signed(),
                &format!("{}/notifier/api/v1/notification/{id}", fronting.base),
            )
            .await,
        );
    }

    // Clair's notifier: done with an operation once its receipt says "delivered" (at once when
    // nothing is affected, after the webhook otherwise).
    let receipts = eventually(
        Duration::from_secs(300),
        "Clair's notifier finishes both operations",
        || {
            let (db, operations) = (&notifier_db, operations.clone());
            async move {
                let rows = db
                    .query_text(
                        "SELECT uo_id::text, notification_id::text, status::text FROM receipt",
                    )
                    .await;
                let done = operations.iter().all(|op| {
                    rows.iter().any(|r| {
                        r[0].as_deref() == Some(op.as_str()) && r[2].as_deref() == Some("delivered")
                    })
                });
                done.then_some(rows)
            }
        },
    )
    .await;
    let mut clair_notified = Facts::new();
    for r in &receipts {
        if let Some(id) = &r[1] {
            clair_notified.extend(
                facts(
                    &signed(),
                    &format!("{base}/notifier/api/v1/notification/{id}"),
                )
                .await,
            );
        }
    }

    let report_of = |url: String| async move {
        report_pairs(
            &signed()
                .get(url)
                .send()
                .await
                .expect("GET vulnerability_report")
                .json::<Value>()
                .await
                .expect("a VulnerabilityReport"),
        )
    };
    let found = Found {
        clair_report: report_of(format!(
            "{base}/matcher/api/v1/vulnerability_report/{manifest}"
        ))
        .await,
        tocsin_report: report_of(format!(
            "{}/matcher/api/v1/vulnerability_report/{manifest}",
            tocsin.base
        ))
        .await,
        clair_notified,
        fronting_notified,
        standalone_notified,
    };
    eprintln!(
        "claircore {label}: {} PyPI and {} Go records; Clair's report {} pairs {:?}; tocsin's \
         report {} pairs; notified: Clair {} facts, tocsin fronting {}, tocsin standalone {}",
        pypi.len(),
        go.len(),
        found.clair_report.len(),
        found.clair_report,
        found.tocsin_report.len(),
        found.clair_notified.len(),
        found.fronting_notified.len(),
        found.standalone_notified.len(),
    );
    tocsin.terminate();
    fronting.terminate();
    drop(clair);
    Some(found)
}

/// What holds whatever Clair does: both forward reports name PyPI and Go advisories, and tocsin
/// standalone notifies exactly the pairs its report names (every one "added").
fn common_checks(f: &Found) {
    assert!(
        f.clair_report.iter().any(is_go) && f.clair_report.iter().any(|p| !is_go(p)),
        "Clair's vulnerability report names PyPI and Go advisories: {:?}",
        f.clair_report
    );
    assert_eq!(
        f.clair_report, f.tocsin_report,
        "Clair's and tocsin's vulnerability reports"
    );
    assert_eq!(
        pairs(&f.standalone_notified),
        f.tocsin_report,
        "tocsin standalone notifies what its report names"
    );
    assert!(f
        .standalone_notified
        .iter()
        .all(|(_, r, _, _)| r == "added"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clair_4_9_0_notifies_no_pypi_or_go_advisory() {
    let Some(f) = through_clair(None).await else {
        return;
    };
    common_checks(&f);
    // Clair v4.9.0's notifier (claircore v1.5.48) is silent on both ecosystems, its forward
    // report notwithstanding; tocsin fronting it asks the same lookup, so it is silent too.
    assert!(
        f.clair_notified.is_empty(),
        "Clair v4.9.0's notifier: {:?}",
        f.clair_notified
    );
    assert_eq!(f.fronting_notified, f.clair_notified);
    assert!(!f.standalone_notified.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_claircore_notifies_pypi_and_every_go_advisory() {
    let Some(f) = through_clair(Some("v1.5.54")).await else {
        return;
    };
    common_checks(&f);
    // tocsin fronting this Clair confirms the lookup's Go answers with Clair's own
    // vulnerability report of the manifest: it notifies what tocsin standalone does.
    assert_eq!(
        f.fronting_notified, f.standalone_notified,
        "tocsin fronting Clair notifies what tocsin standalone does"
    );
    // PyPI is right now: the same facts as tocsin standalone.
    let (clair_pypi, standalone_pypi): (Facts, Facts) = (
        f.clair_notified
            .iter()
            .filter(|x| !x.2.starts_with("GO-"))
            .cloned()
            .collect(),
        f.standalone_notified
            .iter()
            .filter(|x| !x.2.starts_with("GO-"))
            .cloned()
            .collect(),
    );
    assert!(!clair_pypi.is_empty());
    assert_eq!(clair_pypi, standalone_pypi, "PyPI");
    // Go over-notifies: every advisory naming a module of the image, whatever its version.
    // `update_diff` carries no range, so the lookup's version filter is dropped. The extra
    // facts are Go advisories that Clair's own vulnerability report does not name.
    let notified = pairs(&f.clair_notified);
    assert!(f.clair_report.is_subset(&notified), "{notified:?}");
    let extra: Vec<_> = notified.difference(&f.clair_report).collect();
    assert!(
        !extra.is_empty() && extra.iter().all(|p| is_go(p)),
        "beyond its own report, Clair notifies Go advisories only: {extra:?}"
    );
    eprintln!(
        "claircore v1.5.54: {} Go facts Clair's own report does not support",
        extra.len()
    );
}
