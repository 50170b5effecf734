//! Both directions agree with the one predicate, on hand-built cases covering names, sources,
//! bare OS ecosystems and version rules.
use tocsin_index::{affects, ManifestIndex, VulnEntry, VulnIndex};
use tocsin_model::inventory::InstalledPackage;
use tocsin_model::vuln::{
    Addressed, Affected, Event, NameKind, OsvRange, PackageSpec, RangeKind, Vulnerability,
};
use tocsin_model::Severity;

fn pkg(eco: &str, name: &str, source: Option<&str>, version: &str) -> InstalledPackage {
    InstalledPackage {
        ecosystem: eco.into(),
        name: name.into(),
        source_name: source.map(Into::into),
        version: version.into(),
        arch: String::new(),
        normalized_version: String::new(),
        package_id: "1".into(),
    }
}

fn vuln(
    name: &str,
    eco: &str,
    pkg: &str,
    kind: NameKind,
    kind_range: RangeKind,
    fixed: &str,
) -> Vulnerability {
    Vulnerability {
        updater: "u".into(),
        name: name.into(),
        aliases: vec![],
        description: String::new(),
        links: String::new(),
        issued: String::new(),
        severity: String::new(),
        normalized_severity: Severity::High,
        package: PackageSpec {
            ecosystem: eco.into(),
            name: pkg.into(),
            kind,
        },
        distribution: None,
        repository: None,
        fixed_in_version: fixed.into(),
        affected: Affected::Osv {
            ranges: vec![OsvRange {
                kind: kind_range,
                events: vec![Event::Introduced("0".into()), Event::Fixed(fixed.into())],
            }],
            versions: vec![],
        },
    }
}

#[test]
fn reverse_and_forward_agree_with_the_predicate() {
    let manifests: Vec<Vec<InstalledPackage>> = vec![
        vec![
            pkg(
                "Debian:10",
                "libssl1.1",
                Some("openssl"),
                "1.1.1d-0+deb10u3",
            ),
            pkg("Go", "github.com/gin-gonic/gin", None, "v1.5.0"),
        ],
        vec![
            pkg("Debian:11", "openssl", None, "1.1.1n-0+deb11u3"),
            pkg("Go", "github.com/gin-gonic/gin", None, "v1.6.0"),
        ],
        vec![
            pkg("Debian:10", "openssl", None, "1.1.1n-0+deb10u3"),
            pkg("npm", "lodash", None, "4.17.20"),
        ],
    ];
    let vulns = vec![
        vuln(
            "DSA-1",
            "Debian:10",
            "openssl",
            NameKind::Source,
            RangeKind::Ecosystem,
            "1.1.1n-0+deb10u1",
        ),
        vuln(
            "DSA-2",
            "Debian",
            "openssl",
            NameKind::Any,
            RangeKind::Ecosystem,
            "1.1.1z",
        ),
        vuln(
            "GO-1",
            "Go",
            "github.com/gin-gonic/gin",
            NameKind::Binary,
            RangeKind::Semver,
            "1.6.0",
        ),
        vuln(
            "NPM-1",
            "npm",
            "lodash",
            NameKind::Binary,
            RangeKind::Semver,
            "4.17.21",
        ),
        vuln(
            "NPM-2",
            "npm",
            "openssl",
            NameKind::Binary,
            RangeKind::Semver,
            "9.9.9",
        ),
    ];

    let mut idx = ManifestIndex::new();
    for (i, m) in manifests.iter().enumerate() {
        idx.add(i as u32, m);
    }
    let mut fwd = VulnIndex::new();
    fwd.set_updater(
        "u",
        vulns
            .iter()
            .map(|v| VulnEntry::new(v.id(), v.clone()))
            .collect(),
    );

    let mut checked = 0;
    for v in &vulns {
        let entry = VulnEntry::new(v.id(), v.clone());
        let got: Vec<u32> = idx.affected(v, &entry.rule).iter().collect();
        let want: Vec<u32> = manifests
            .iter()
            .enumerate()
            .filter(|(_, m)| m.iter().any(|p| affects(v, p)))
            .map(|(i, _)| i as u32)
            .collect();
        assert_eq!(got, want, "reverse direction for {}", v.name);
        for (i, m) in manifests.iter().enumerate() {
            let forward_hit = m
                .iter()
                .any(|p| fwd.matching(p).iter().any(|e| e.vuln.name == v.name));
            assert_eq!(
                forward_hit,
                want.contains(&(i as u32)),
                "forward direction for {} on manifest {i}",
                v.name
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 15);

    // Spot facts, so the agreement above is not vacuous.
    let by_name = |n: &str| vulns.iter().find(|v| v.name == n).unwrap();
    let hits = |n: &str| {
        let v = by_name(n);
        let e = VulnEntry::new(v.id(), v.clone());
        idx.affected(v, &e.rule).iter().collect::<Vec<_>>()
    };
    assert_eq!(
        hits("DSA-1"),
        vec![0],
        "source name openssl on Debian 10, 1.1.1d < fixed"
    );
    assert_eq!(
        hits("DSA-2"),
        vec![0, 1, 2],
        "bare Debian applies to every release"
    );
    assert_eq!(hits("GO-1"), vec![0], "gin v1.5.0 affected, v1.6.0 not");
    assert_eq!(hits("NPM-1"), vec![2]);
    assert!(hits("NPM-2").is_empty(), "ecosystems never cross");
}

#[test]
fn removing_a_manifest_removes_its_references() {
    let mut idx = ManifestIndex::new();
    let m = vec![pkg("npm", "lodash", None, "4.17.20")];
    idx.add(7, &m);
    idx.add(8, &m);
    let v = vuln(
        "NPM-1",
        "npm",
        "lodash",
        NameKind::Binary,
        RangeKind::Semver,
        "4.17.21",
    );
    let e = VulnEntry::new(v.id(), v.clone());
    assert_eq!(idx.affected(&v, &e.rule).len(), 2);
    assert!(idx.remove(7));
    assert_eq!(
        idx.affected(&v, &e.rule).iter().collect::<Vec<_>>(),
        vec![8]
    );
    assert!(idx.remove(8));
    assert!(!idx.remove(8));
    assert_eq!(idx.stats().postings, 0);
    assert!(!idx.contains(8));
}

#[test]
fn adding_a_manifest_again_replaces_its_packages() {
    let mut idx = ManifestIndex::new();
    idx.add(1, &[pkg("npm", "lodash", None, "4.17.20")]);
    let v = vuln(
        "NPM-1",
        "npm",
        "lodash",
        NameKind::Binary,
        RangeKind::Semver,
        "4.17.21",
    );
    let e = VulnEntry::new(v.id(), v.clone());
    assert_eq!(idx.affected(&v, &e.rule).len(), 1);
    idx.add(1, &[pkg("npm", "lodash", None, "4.17.21")]);
    assert!(
        idx.affected(&v, &e.rule).is_empty(),
        "the fixed version replaced the old one"
    );
    assert_eq!(idx.stats().postings, 1, "the emptied posting was freed");
    assert_eq!(idx.stats().references, 1);
}

#[test]
fn replacing_an_updater_keeps_the_other_updaters_entries_on_shared_keys() {
    let fixed = |name: &str, updater: &str| {
        let mut v = vuln(
            name,
            "npm",
            "lodash",
            NameKind::Binary,
            RangeKind::Semver,
            "4.17.21",
        );
        v.updater = updater.into();
        VulnEntry::new(v.id(), v)
    };
    let mut idx = VulnIndex::new();
    idx.set_updater(
        "a",
        (0..50).map(|i| fixed(&format!("A-{i}"), "a")).collect(),
    );
    idx.set_updater("b", vec![fixed("B-1", "b")]);
    let p = pkg("npm", "lodash", None, "4.17.20");
    assert_eq!(idx.matching(&p).len(), 51);
    // Many entries of one updater on one key are removed in one pass, the others' survive.
    idx.set_updater("a", vec![fixed("A-new", "a")]);
    let names: Vec<String> = idx
        .matching(&p)
        .iter()
        .map(|e| e.vuln.name.clone())
        .collect();
    assert_eq!(names, ["A-new", "B-1"]);
    assert_eq!(idx.len(), 2);
    idx.set_updater("a", vec![]);
    idx.set_updater("b", vec![]);
    assert!(idx.matching(&p).is_empty());
    assert!(idx.is_empty());
}

#[test]
fn replacing_from_a_snapshot_reuses_unchanged_entries_and_refiles_changed_ones() {
    let fixed = |name: &str, pkg_name: &str, version: &str| {
        Addressed::new(vuln(
            name,
            "npm",
            pkg_name,
            NameKind::Binary,
            RangeKind::Semver,
            version,
        ))
    };
    let kept = fixed("A-kept", "lodash", "4.17.21");
    let changed_old = fixed("A-changed", "lodash", "4.17.21");
    let changed_new = fixed("A-changed", "lodash", "4.17.10");
    let removed = fixed("A-removed", "express", "4.0.0");
    let added = fixed("A-added", "express", "5.0.0");
    let mut idx = VulnIndex::new();
    idx.replace_updater("osv/npm", &[kept.clone(), changed_old, removed]);
    idx.set_updater("other", {
        let mut v = vuln(
            "B-1",
            "npm",
            "lodash",
            NameKind::Binary,
            RangeKind::Semver,
            "4.17.21",
        );
        v.updater = "other".into();
        vec![VulnEntry::new(v.id(), v)]
    });
    let lodash = pkg("npm", "lodash", None, "4.17.20");
    let express = pkg("npm", "express", None, "4.5.0");
    let before = idx.matching(&lodash);
    let kept_entry = before.iter().find(|e| e.vuln.name == "A-kept").unwrap();

    // Listed twice: still one entry.
    idx.replace_updater(
        "osv/npm",
        &[kept.clone(), changed_new, added.clone(), added],
    );
    let after = idx.matching(&lodash);
    let names: Vec<&str> = after.iter().map(|e| e.vuln.name.as_str()).collect();
    // 4.17.20 is below the old fix of A-changed but not below the new one.
    assert_eq!(names, ["A-kept", "B-1"]);
    let kept_after = after.iter().find(|e| e.vuln.name == "A-kept").unwrap();
    assert!(
        std::sync::Arc::ptr_eq(kept_entry, kept_after),
        "an unchanged record keeps its entry"
    );
    let names: Vec<String> = idx
        .matching(&express)
        .iter()
        .map(|e| e.vuln.name.clone())
        .collect();
    assert_eq!(names, ["A-added"], "the removed record is gone");
    assert_eq!(idx.len(), 4);
    assert_eq!(
        idx.matching(&pkg("npm", "lodash", None, "4.17.0")).len(),
        3,
        "the changed record is filed under its key again"
    );
    idx.replace_updater("osv/npm", &[]);
    assert_eq!(idx.len(), 1);
    assert!(idx.matching(&express).is_empty());
}
