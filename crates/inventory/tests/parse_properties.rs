//! Property tests of the inventory parsers: no input makes any of them panic, whether random
//! bytes or documents built from each format's own vocabulary; what a pip list or Cargo.lock
//! names is exactly what the parsed inventory holds; every parsed inventory is a valid
//! IndexReport.
use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use tocsin_inventory::{parse_with_stats, Input};
use tocsin_model::inventory::{installed_packages, InventoryFormat};
use tocsin_model::Digest;

const FORMATS: [InventoryFormat; 6] = [
    InventoryFormat::IndexReport,
    InventoryFormat::Cyclonedx,
    InventoryFormat::Spdx,
    InventoryFormat::DpkgStatus,
    InventoryFormat::CargoLock,
    InventoryFormat::Pip,
];

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 128,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn digest() -> Digest {
    Digest::sha256_of(b"proptest")
}

/// Parses as `format` (or recognised, for `None`); on success the result must be a valid
/// IndexReport that reads back unchanged.
fn parse(bytes: &[u8], format: Option<InventoryFormat>) -> Result<(), TestCaseError> {
    let parsed = parse_with_stats(Input {
        bytes,
        format,
        digest: Some(digest()),
        distribution: Some("debian:12"),
        ..Default::default()
    });
    match parsed {
        Ok(p) => {
            let json = serde_json::to_vec(&p.manifest.report).unwrap();
            let back = parse_with_stats(Input {
                bytes: &json,
                format: Some(InventoryFormat::IndexReport),
                ..Default::default()
            });
            prop_assert!(back.is_ok(), "{:?}", back.err());
            if let Ok(back) = back {
                prop_assert_eq!(back.manifest.report, p.manifest.report);
            }
        }
        Err(e) => {
            prop_assert!(!e.to_string().is_empty());
        }
    }
    Ok(())
}

/// Lines from every line-based format's vocabulary, with odd spacing and continuation.
fn line() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("Package: bash".to_string()),
        Just("Status: install ok installed".to_string()),
        Just("Status: deinstall ok config-files".to_string()),
        "Version: [0-9]{1,2}:?[0-9a-z.+~-]{0,8}",
        "Source: [a-z0-9]{1,5}( \\([0-9.a-z~+-]{0,6}\\)?)?",
        Just("Architecture: amd64".to_string()),
        " [ -~]{0,10}",
        Just("[[package]]".to_string()),
        "name = \"[a-z_-]{0,6}\"",
        "version = \"[0-9.a-z+-]{0,6}\"",
        Just("source = \"registry+https://github.com/rust-lang/crates.io-index\"".to_string()),
        Just("source = \"git+https://x/y#abc\"".to_string()),
        Just("[metadata]".to_string()),
        Just("version = 3".to_string()),
        "[a-zA-Z0-9._-]{1,8}(\\[[a-z,]{0,6}\\])? ?(==|===|>=|~=|@) ?[0-9a-z.*+!-]{0,8}( ?;[ a-z<>=\"'.0-9]{0,12})?( \\\\)?",
        Just("-r other.txt".to_string()),
        Just("-e git+https://x/y.git#egg=y".to_string()),
        "#[ -~]{0,8}",
        Just(String::new()),
        "[ -~]{0,12}",
    ]
}

fn text_document() -> impl Strategy<Value = String> {
    (
        proptest::collection::vec(line(), 0..16),
        prop_oneof![Just("\n"), Just("\r\n")],
    )
        .prop_map(|(lines, eol)| lines.join(eol))
}

/// JSON documents whose keys come from the JSON formats' schemas.
fn json_document() -> impl Strategy<Value = String> {
    let key = proptest::sample::select(vec![
        "bomFormat",
        "specVersion",
        "components",
        "purl",
        "name",
        "version",
        "spdxVersion",
        "packages",
        "externalRefs",
        "referenceCategory",
        "referenceType",
        "referenceLocator",
        "versionInfo",
        "manifest_hash",
        "distributions",
        "repository",
        "environments",
        "source",
        "id",
        "kind",
    ]);
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        proptest::sample::select(vec![
            "CycloneDX",
            "1.4",
            "SPDX-2.3",
            "PACKAGE-MANAGER",
            "purl",
            "pkg:npm/%40types/node@14.0.23",
            "pkg:deb/debian/openssl@3.0.11?distro=debian-12",
            "pkg:golang/golang.org/x/net@v0.17.0",
            "pkg:pypi/Django_Rest@1.0",
            "pkg:maven/org.apache/commons-io@2.6",
            "pkg:cargo/serde",
            "sha256:0000000000000000000000000000000000000000000000000000000000000000",
            "",
        ])
        .prop_map(|s| serde_json::Value::String(s.to_string())),
        "\\PC{0,8}".prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            proptest::collection::btree_map(key.clone(), inner, 0..6).prop_map(|m| {
                serde_json::Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    })
    .prop_map(|v| v.to_string())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        parse(&bytes, None)?;
        for f in FORMATS {
            parse(&bytes, Some(f))?;
        }
    }

    #[test]
    fn line_documents_never_panic(doc in text_document()) {
        parse(doc.as_bytes(), None)?;
        for f in [InventoryFormat::DpkgStatus, InventoryFormat::CargoLock, InventoryFormat::Pip] {
            parse(doc.as_bytes(), Some(f))?;
        }
    }

    #[test]
    fn json_documents_never_panic(doc in json_document()) {
        parse(doc.as_bytes(), None)?;
        for f in [InventoryFormat::IndexReport, InventoryFormat::Cyclonedx, InventoryFormat::Spdx] {
            parse(doc.as_bytes(), Some(f))?;
        }
    }

    #[test]
    fn a_pip_list_is_exactly_its_pins(
        pins in proptest::collection::btree_map("[a-z][a-z0-9]{0,6}", "[0-9]{1,2}(\\.[0-9]{1,2}){0,2}", 1..12),
    ) {
        let text: String = pins.iter().map(|(n, v)| format!("{n}=={v}\n")).collect();
        let parsed = parse_with_stats(Input {
            bytes: text.as_bytes(),
            format: Some(InventoryFormat::Pip),
            digest: Some(digest()),
            ..Default::default()
        }).unwrap();
        let got: BTreeMap<String, String> = installed_packages(&parsed.manifest.report)
            .into_iter()
            .map(|p| (p.name, p.version))
            .collect();
        prop_assert_eq!(got, pins);
    }

    #[test]
    fn a_cargo_lock_is_exactly_its_registry_packages(
        packages in proptest::collection::btree_set(("[a-z][a-z0-9_-]{0,6}", "[0-9]{1,2}\\.[0-9]{1,2}\\.[0-9]{1,2}"), 1..12),
        local in proptest::collection::btree_set("[a-z]{1,6}", 0..3),
    ) {
        let mut text = String::from("version = 3\n");
        for (n, v) in &packages {
            text.push_str(&format!(
                "\n[[package]]\nname = \"{n}\"\nversion = \"{v}\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n"
            ));
        }
        for n in &local {
            text.push_str(&format!("\n[[package]]\nname = \"{n}\"\nversion = \"0.0.0\"\n"));
        }
        let parsed = parse_with_stats(Input {
            bytes: text.as_bytes(),
            format: Some(InventoryFormat::CargoLock),
            digest: Some(digest()),
            ..Default::default()
        }).unwrap();
        let got: BTreeSet<(String, String)> = installed_packages(&parsed.manifest.report)
            .into_iter()
            .map(|p| (p.name, p.version))
            .collect();
        prop_assert_eq!(got, packages);
    }
}
