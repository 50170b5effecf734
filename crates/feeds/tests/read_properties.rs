//! Property tests of the snapshot readers: no input makes them panic (random bytes, or JSON built
//! from the OSV and claircore vocabularies); an accepted snapshot keeps its laws (sorted unique
//! content addresses, unique identities, fingerprint over the ids); and the fingerprint depends
//! only on the set of records, not on their order in the upload.
use std::collections::HashSet;

use proptest::prelude::*;
use serde_json::{json, Value};
use tocsin_feeds::{read_bytes, Progress, Snapshot};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 128,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn no_progress(_: Progress) {}

fn check(s: &Snapshot) -> Result<(), TestCaseError> {
    let mut ids = String::new();
    let mut identities = HashSet::new();
    for pair in s.vulnerabilities.windows(2) {
        prop_assert!(pair[0].id() < pair[1].id(), "sorted by id, no duplicates");
    }
    for a in &s.vulnerabilities {
        prop_assert_eq!(a.id(), &a.vuln().id());
        prop_assert!(identities.insert(a.vuln().identity()));
        ids.push_str(&a.id().0);
        ids.push('\n');
    }
    prop_assert_eq!(&s.fingerprint, &tocsin_model::sha256_hex(ids.as_bytes()));
    Ok(())
}

fn read(bytes: &[u8]) -> Result<Option<Snapshot>, TestCaseError> {
    match read_bytes("prop", bytes, &no_progress) {
        Ok(s) => {
            check(&s)?;
            Ok(Some(s))
        }
        Err(e) => {
            prop_assert!(!e.to_string().is_empty());
            Ok(None)
        }
    }
}

fn version() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0".to_string()),
        "[0-9]{1,2}(\\.[0-9]{1,2}){0,2}",
        "[0-9]:[0-9.]{1,4}-[0-9a-z.+~]{1,4}",
        "[ -~]{0,6}",
    ]
}

fn event() -> impl Strategy<Value = Value> {
    (
        proptest::sample::select(vec![
            "introduced",
            "fixed",
            "last_affected",
            "limit",
            "other",
        ]),
        version(),
    )
        .prop_map(|(k, v)| json!({ k: v }))
}

fn ecosystem() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(vec![
            "crates.io",
            "Go",
            "PyPI",
            "npm",
            "Maven",
            "Debian:11",
            "AlmaLinux:9",
            "Alpine:v3.18",
            "Ubuntu:22.04",
            "",
        ])
        .prop_map(str::to_string),
        "[ -~]{0,8}",
    ]
}

/// An OSV record: valid shapes most of the time, with odd values throughout.
fn osv_record() -> impl Strategy<Value = Value> {
    let range = (
        proptest::sample::select(vec!["SEMVER", "ECOSYSTEM", "GIT", "BOGUS"]),
        proptest::collection::vec(event(), 0..4),
    )
        .prop_map(|(t, events)| json!({"type": t, "events": events}));
    let affected = (
        ecosystem(),
        "[a-zA-Z0-9_./@-]{0,10}",
        proptest::collection::vec(range, 0..3),
        proptest::collection::vec(version(), 0..3),
        proptest::option::of(proptest::sample::select(vec![
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
            "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
            "CVSS:3.1/AV:X",
            "HIGH",
        ])),
    )
        .prop_map(|(eco, name, ranges, versions, cvss)| {
            let mut a = json!({
                "package": {"ecosystem": eco, "name": name},
                "ranges": ranges,
                "versions": versions,
            });
            if let Some(v) = cvss {
                a["severity"] = json!([{"type": "CVSS_V3", "score": v}]);
            }
            a
        });
    (
        "[A-Z]{2,4}-[0-9]{1,4}|[ -~]{0,4}",
        proptest::option::of("\\PC{0,20}"),
        proptest::collection::vec(affected, 0..3),
        any::<bool>(),
        proptest::option::of(proptest::sample::select(vec![
            "LOW", "MODERATE", "HIGH", "CRITICAL", "bogus",
        ])),
    )
        .prop_map(|(id, summary, affected, withdrawn, word)| {
            let mut r = json!({"id": id, "modified": "2024-01-01T00:00:00Z", "affected": affected});
            if let Some(s) = summary {
                r["summary"] = json!(s);
            }
            if withdrawn {
                r["withdrawn"] = json!("2024-01-02T00:00:00Z");
            }
            if let Some(w) = word {
                r["database_specific"] = json!({"severity": w});
            }
            r
        })
}

fn claircore_element() -> impl Strategy<Value = Value> {
    (
        "[A-Z]{2,4}-[0-9]{1,4}",
        "[a-z0-9._-]{0,8}",
        proptest::option::of(proptest::sample::select(vec!["debian", "rhel", "alpine", "ubuntu"])),
        "[0-9]{0,2}(\\.[0-9]{1,2})?",
        proptest::option::of(proptest::sample::select(vec!["pypi", "go", "maven", "npm"])),
        prop_oneof![
            version(),
            Just("fixed=3.9.1&introduced=0".to_string()),
            "(introduced|fixed|lastAffected)=[0-9.]{1,4}(&(introduced|fixed|lastAffected)=[0-9.]{1,4})?",
        ],
        proptest::sample::select(vec!["", "equals", "not equals", "pattern match", "bogus"]),
    )
        .prop_map(|(name, pkg, did, version_id, repo, fixed, arch_op)| {
            let mut v = json!({
                "name": name,
                "updater": "u",
                "package": {"name": pkg, "arch": "x86_64|amd64"},
                "fixed_in_version": fixed,
                "arch_op": arch_op,
            });
            if let Some(d) = did {
                v["distribution"] = json!({"did": d, "version_id": version_id});
            }
            if let Some(r) = repo {
                v["repository"] = json!({"name": r});
            }
            v
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        read(&bytes)?;
    }

    #[test]
    fn odd_osv_records_never_panic(r in osv_record()) {
        read(r.to_string().as_bytes())?;
    }

    #[test]
    fn odd_claircore_arrays_never_panic(a in proptest::collection::vec(claircore_element(), 1..4)) {
        read(Value::Array(a).to_string().as_bytes())?;
    }

    #[test]
    fn the_fingerprint_ignores_record_order(
        records in proptest::collection::vec(osv_record(), 1..6),
        seed in any::<u64>(),
    ) {
        let forward = Value::Array(records.clone()).to_string();
        let Some(a) = read(forward.as_bytes())? else {
            return Ok(());
        };
        let mut shuffled = records;
        // A deterministic shuffle driven by the generated seed.
        let mut s = seed | 1;
        for i in (1..shuffled.len()).rev() {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            shuffled.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let b = read(Value::Array(shuffled).to_string().as_bytes())?;
        let b = b.expect("the same records in another order read too");
        prop_assert_eq!(&a.fingerprint, &b.fingerprint);
        prop_assert_eq!(a.vulnerabilities.len(), b.vulnerabilities.len());
    }
}
