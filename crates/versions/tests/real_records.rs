//! Real OSV records from `shared/data/osv`, evaluated against installed versions whose status
//! is known from the advisories themselves.
//!
//! The records' `affected[].ranges` and `versions` are turned into the model's types by hand
//! here (the feeds crate owns real parsing), so these tests exercise only rule evaluation.

use serde_json::Value;
use tocsin_model::vuln::{Affected, Event, OsvRange, RangeKind};
use tocsin_versions::{affected, CompiledRule};

use tocsin_testdata::dir as shared_data;

/// One `affected[]` entry: ecosystem, package name, rule.
struct Entry {
    ecosystem: String,
    name: String,
    rule: Affected,
}

fn text(v: &Value, what: &str) -> String {
    match v {
        Value::String(s) => s.clone(),
        // A YAML number would have lost its spelling (0.10 → 0.1): refuse rather than guess.
        other => panic!("{what}: expected a string, got {other}"),
    }
}

fn load(relative: &str) -> Option<Vec<Entry>> {
    let dir = shared_data()?;
    let path = dir.join("osv").join(relative);
    let raw = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let doc: Value = if relative.ends_with(".yaml") {
        serde_yaml_ng::from_str(&raw).unwrap_or_else(|e| panic!("{relative}: {e}"))
    } else {
        serde_json::from_str(&raw).unwrap_or_else(|e| panic!("{relative}: {e}"))
    };
    let entries = doc["affected"]
        .as_array()
        .unwrap_or_else(|| panic!("{relative}: no affected[]"));
    let mut out = Vec::new();
    for (i, a) in entries.iter().enumerate() {
        let at = format!("{relative}: affected[{i}]");
        let mut ranges = Vec::new();
        for (j, r) in a["ranges"].as_array().into_iter().flatten().enumerate() {
            let kind = match r["type"].as_str() {
                Some("SEMVER") => RangeKind::Semver,
                Some("ECOSYSTEM") => RangeKind::Ecosystem,
                Some("GIT") => RangeKind::Git,
                other => panic!("{at}.ranges[{j}].type: unexpected {other:?}"),
            };
            let mut events = Vec::new();
            for (k, e) in r["events"].as_array().into_iter().flatten().enumerate() {
                let obj = e
                    .as_object()
                    .unwrap_or_else(|| panic!("{at}.ranges[{j}].events[{k}]: not an object"));
                let (key, value) = obj
                    .iter()
                    .next()
                    .unwrap_or_else(|| panic!("{at}.ranges[{j}].events[{k}]: empty"));
                let value = text(value, &format!("{at}.ranges[{j}].events[{k}].{key}"));
                events.push(match key.as_str() {
                    "introduced" => Event::Introduced(value),
                    "fixed" => Event::Fixed(value),
                    "last_affected" => Event::LastAffected(value),
                    "limit" => Event::Limit(value),
                    other => panic!("{at}.ranges[{j}].events[{k}]: unknown event {other}"),
                });
            }
            ranges.push(OsvRange { kind, events });
        }
        let versions = a["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(k, v)| text(v, &format!("{at}.versions[{k}]")))
            .collect();
        out.push(Entry {
            ecosystem: text(
                &a["package"]["ecosystem"],
                &format!("{at}.package.ecosystem"),
            ),
            name: text(&a["package"]["name"], &format!("{at}.package.name")),
            rule: Affected::Osv { ranges, versions },
        });
    }
    Some(out)
}

/// Check `(version, affected?)` pairs for the named package of a record.
fn check(relative: &str, package: &str, cases: &[(&str, bool)]) {
    let Some(entries) = load(relative) else {
        return;
    };
    let entry = entries
        .iter()
        .find(|e| e.name == package)
        .unwrap_or_else(|| panic!("{relative}: no affected package {package}"));
    let compiled = CompiledRule::new(&entry.rule, &entry.ecosystem);
    for (version, want) in cases {
        assert_eq!(
            affected(&entry.rule, &entry.ecosystem, version, "", ""),
            *want,
            "{relative} {package} {version}: expected affected = {want}"
        );
        assert_eq!(
            compiled.matches(version, "", ""),
            *want,
            "{relative} {package} {version} (compiled)"
        );
    }
}

#[test]
fn go_gin_log_injection() {
    check(
        "go/GO-2020-0001.json",
        "github.com/gin-gonic/gin",
        &[
            ("v1.5.0", true),
            ("1.5.0", true),
            ("v1.6.0-rc.1", true),
            ("v0.0.0-20191016112426-3962a5ea8da1", true),
            ("v1.6.0", false),
            ("v1.7.7", false),
        ],
    );
}

#[test]
fn go_stdlib_two_branches() {
    // introduced 0, fixed 1.19.6, introduced 1.20.0-0, fixed 1.20.1
    check(
        "go/GO-2023-1569.json",
        "stdlib",
        &[
            ("1.19.5", true),
            ("go1.19.5", true),
            ("1.19.6", false),
            ("1.19.13", false),
            ("1.20.0-rc.1", true),
            ("go1.20rc3", true),
            ("1.20.0", true),
            ("1.20.1", false),
        ],
    );
}

#[test]
fn debian_dla_fixed_in_lts() {
    // Debian:6 gnutls26, introduced 0, fixed 2.8.6-1+squeeze4.
    check(
        "debian/DLA-0001-1.json",
        "gnutls26",
        &[
            ("2.8.6-1+squeeze3", true),
            ("2.8.6-1", true),
            ("2.8.6-1+squeeze4~bpo1", true),
            ("2.8.6-1+squeeze4", false),
            ("2.8.6-1+squeeze5", false),
            ("1:1.0-1", false),
        ],
    );
}

#[test]
fn pypi_salt_many_pairs_and_versions_list() {
    let relative = "pypi/salt/PYSEC-2021-55.yaml";
    check(
        relative,
        "salt",
        &[
            ("2015.8.9", true),
            ("2015.8.10", false),
            ("2015.8.12", true),
            ("2015.8.13", false),
            ("2016.3.4", false),
            ("2016.3.5", true),
            ("2016.3.6", false),
            ("2018.3.0rc1", true),
            ("2019.1.0", true),
            ("2019.2.0rc1", false),
            ("2019.2.5", false),
            ("3000.5", true),
            ("3000.6", false),
            ("3002.4", true),
            ("3002.5", false),
            ("3003", false),
        ],
    );
    // Every version the record lists is affected.
    let Some(entries) = load(relative) else {
        return;
    };
    let entry = &entries[0];
    let Affected::Osv { versions, .. } = &entry.rule else {
        panic!("{relative}: not an OSV rule");
    };
    assert!(versions.len() > 100, "{relative}: versions list too short");
    let compiled = CompiledRule::new(&entry.rule, &entry.ecosystem);
    for v in versions {
        assert!(
            compiled.matches(v, "", ""),
            "{relative}: listed {v} not affected"
        );
    }
}

#[test]
fn pypi_last_affected_and_legacy_listed_version() {
    // introduced 0, last_affected 1.11.0; versions list includes legacy "0.8.0-alpha2".
    check(
        "pypi/py/PYSEC-2022-42969.yaml",
        "py",
        &[
            ("0.8.0-alpha2", true),
            ("1.4.7.dev3", true),
            ("1.11.0", true),
            ("1.11.0.post1", false),
            ("1.11.1", false),
        ],
    );
}

#[test]
fn almalinux_rpm_evr() {
    check(
        "almalinux9/ALBA-2022:8256.json",
        "qatzip",
        &[
            ("1.0.8-1.el9", true),
            ("1.0.9-0.el9", true),
            ("1.0.9-1.el9", false),
            ("1.0.9-1.el9_1", false),
            ("1.0.10-1.el9", false),
        ],
    );
    // Fixed version with an epoch: 1:2.06-27.el9_0.7.alma.
    check(
        "almalinux9/ALSA-2022:5099.json",
        "grub2-common",
        &[
            ("1:2.06-27.el9", true),
            ("2.06-99.el9", true),
            ("1:2.06-27.el9_0.7.alma", false),
            ("1:2.06-46.el9", false),
        ],
    );
}
