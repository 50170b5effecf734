//! Property tests of the wire shapes: claircore JSON round-trips (what tocsin writes, it and Clair
//! read back unchanged), digests parse what they print, and severities read what they write.
use std::collections::BTreeMap;

use proptest::prelude::*;
use tocsin_model::claircore::{
    Distribution, Environment, IndexReport, NormalizedVersion, Package, Repository, VersionRange,
    Vulnerability,
};
use tocsin_model::{Digest, Severity};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 128,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Short text, including quotes, backslashes, control characters and non-ASCII.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9.:+~_-]{0,8}",
        "\\PC{0,6}",
        "[\"\\\\\u{0}-\u{1f}é☃]{0,4}",
    ]
}

fn package_leaf() -> impl Strategy<Value = Package> {
    (
        (text(), text(), text(), text()),
        (text(), text(), text(), text()),
    )
        .prop_map(
            |((id, name, version, kind), (normalized_version, module, arch, cpe))| Package {
                id,
                name,
                version,
                kind,
                source: None,
                normalized_version,
                module,
                arch,
                cpe,
            },
        )
}

fn package() -> impl Strategy<Value = Package> {
    (package_leaf(), proptest::option::of(package_leaf())).prop_map(|(mut p, source)| {
        p.source = source.map(Box::new);
        p
    })
}

fn distribution() -> impl Strategy<Value = Distribution> {
    (
        (text(), text(), text(), text(), text()),
        (text(), text(), text(), text()),
    )
        .prop_map(
            |(
                (id, did, name, version, version_code_name),
                (version_id, arch, cpe, pretty_name),
            )| {
                Distribution {
                    id,
                    did,
                    name,
                    version,
                    version_code_name,
                    version_id,
                    arch,
                    cpe,
                    pretty_name,
                }
            },
        )
}

fn repository() -> impl Strategy<Value = Repository> {
    (text(), text(), text(), text(), text()).prop_map(|(id, name, key, uri, cpe)| Repository {
        id,
        name,
        key,
        uri,
        cpe,
    })
}

fn environment() -> impl Strategy<Value = Environment> {
    (
        text(),
        text(),
        text(),
        proptest::option::of(proptest::collection::vec(text(), 0..3)),
    )
        .prop_map(
            |(package_db, introduced_in, distribution_id, repository_ids)| Environment {
                package_db,
                introduced_in,
                distribution_id,
                repository_ids,
            },
        )
}

fn index_report() -> impl Strategy<Value = IndexReport> {
    (
        (text(), text(), any::<bool>(), text()),
        proptest::collection::btree_map(text(), package(), 0..4),
        proptest::collection::btree_map(text(), distribution(), 0..2),
        proptest::collection::btree_map(text(), repository(), 0..2),
        proptest::collection::btree_map(
            text(),
            proptest::collection::vec(environment(), 0..2),
            0..3,
        ),
    )
        .prop_map(
            |(
                (manifest_hash, state, success, err),
                packages,
                distributions,
                repository,
                environments,
            )| {
                IndexReport {
                    manifest_hash,
                    state,
                    packages,
                    distributions,
                    repository,
                    environments,
                    success,
                    err,
                }
            },
        )
}

fn severity() -> impl Strategy<Value = Severity> {
    proptest::sample::select(Severity::ALL.to_vec())
}

fn normalized() -> impl Strategy<Value = NormalizedVersion> {
    (text(), proptest::collection::vec(any::<i32>(), 0..11))
        .prop_map(|(kind, v)| NormalizedVersion { kind, v })
}

fn vulnerability() -> impl Strategy<Value = Vulnerability> {
    (
        (text(), text(), text(), text(), text(), text(), text()),
        severity(),
        proptest::option::of(package()),
        proptest::option::of(distribution()),
        proptest::option::of(repository()),
        (
            text(),
            proptest::option::of((
                proptest::option::of(normalized()),
                proptest::option::of(normalized()),
            )),
            text(),
        ),
    )
        .prop_map(
            |(
                (id, updater, name, description, issued, links, severity),
                normalized_severity,
                package,
                distribution,
                repository,
                (fixed_in_version, range, arch_op),
            )| Vulnerability {
                id,
                updater,
                name,
                description,
                issued,
                links,
                severity,
                normalized_severity,
                package,
                distribution,
                repository,
                fixed_in_version,
                range: range.map(|(lower, upper)| VersionRange { lower, upper }),
                arch_op,
            },
        )
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn index_reports_round_trip(r in index_report()) {
        let json = serde_json::to_vec(&r).unwrap();
        let back: IndexReport = serde_json::from_slice(&json).unwrap();
        prop_assert_eq!(&back, &r);
        // Writing is canonical: the second encoding is byte-identical.
        prop_assert_eq!(serde_json::to_vec(&back).unwrap(), json);
    }

    #[test]
    fn vulnerabilities_round_trip(v in proptest::collection::vec(vulnerability(), 0..3)) {
        let json = serde_json::to_vec(&v).unwrap();
        let back: Vec<Vulnerability> = serde_json::from_slice(&json).unwrap();
        prop_assert_eq!(&back, &v);
        prop_assert_eq!(serde_json::to_vec(&back).unwrap(), json);
    }

    #[test]
    fn unknown_keys_are_ignored(r in index_report(), key in "[a-z_]{1,8}", value in text()) {
        let mut json = serde_json::to_value(&r).unwrap();
        let known = json.as_object().is_some_and(|o| o.contains_key(&key));
        prop_assume!(!known);
        json.as_object_mut().unwrap().insert(key, serde_json::Value::String(value));
        let back: IndexReport = serde_json::from_value(json).unwrap();
        prop_assert_eq!(back, r);
    }

    #[test]
    fn digests_parse_what_they_print(
        sha512 in any::<bool>(),
        hex in "[0-9a-fA-F]{128}",
        upper_algo in any::<bool>(),
    ) {
        let hex = if sha512 { &hex[..] } else { &hex[..64] };
        let algo = match (sha512, upper_algo) {
            (true, true) => "SHA512",
            (true, false) => "sha512",
            (false, true) => "SHA256",
            (false, false) => "sha256",
        };
        let d = Digest::parse(&format!("{algo}:{hex}")).unwrap();
        prop_assert_eq!(d.as_str(), format!("{algo}:{hex}").to_ascii_lowercase());
        prop_assert_eq!(Digest::parse(&d.to_string()).unwrap(), d.clone());
        let json = serde_json::to_string(&d).unwrap();
        prop_assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
    }

    #[test]
    fn digests_never_panic_and_accept_only_their_shape(s in "\\PC{0,140}|(sha256|sha512|md5):[0-9a-fA-Fg]{0,130}") {
        if let Ok(d) = Digest::parse(&s) {
            let (algo, hex) = d.as_str().split_once(':').unwrap();
            prop_assert!(matches!((algo, hex.len()), ("sha256", 64) | ("sha512", 128)));
            prop_assert!(hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        }
    }

    #[test]
    fn severities_read_what_they_write(s in severity()) {
        let json = serde_json::to_string(&s).unwrap();
        prop_assert_eq!(serde_json::from_str::<Severity>(&json).unwrap(), s);
        // The canonical name reads back as itself through the lenient vendor reader too.
        prop_assert_eq!(Severity::from_vendor_text(s.as_str()), s);
    }
}

#[test]
fn maps_keep_their_keys() {
    // A sanity anchor for the generators: an empty report round-trips too.
    let r = IndexReport {
        packages: BTreeMap::new(),
        ..Default::default()
    };
    let back: IndexReport = serde_json::from_slice(&serde_json::to_vec(&r).unwrap()).unwrap();
    assert_eq!(back, r);
}
