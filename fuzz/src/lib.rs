//! What the fuzz targets share: the laws every feed snapshot and every parsed inventory must
//! satisfy, checked after a successful decode. A violated law panics, which libFuzzer reports as
//! a crash like any other.
//!
//! It also compiles the `tocsin` program's configuration and Go-duration parsers from their
//! source files ([`tocsin_program`]), because the program is a binary-only package: depending on
//! it would build its whole tree (PostgreSQL, SQLite, the HTTP server) into every fuzz build.
use std::collections::{BTreeMap, HashSet};

use tocsin_feeds::{Progress, Snapshot};
use tocsin_inventory::{Input, Parsed};
use tocsin_model::inventory::{installed_packages, InventoryFormat};
use tocsin_model::vuln::{Affected, Event, Vulnerability};
use tocsin_model::Digest;
use tocsin_versions::CompiledRule;

/// `crates/tocsin/src/duration.rs`, at the path `crate::duration` the configuration uses.
#[allow(dead_code, unused_imports)]
#[path = "../../crates/tocsin/src/duration.rs"]
pub mod duration;

/// `crates/tocsin/src/config.rs` (with its `config/` submodules), as the program compiles it.
#[allow(dead_code, unused_imports)]
#[path = "../../crates/tocsin/src"]
pub mod tocsin_program {
    pub mod config;
}

/// The updater name the feed targets read snapshots for.
pub const UPDATER: &str = "fuzz";

/// Progress callbacks are not under test.
pub fn no_progress(_: Progress) {}

/// Reads a snapshot from bytes (as an upload) and, when it is accepted, checks its laws.
pub fn read_and_check(bytes: &[u8]) -> Option<Snapshot> {
    match tocsin_feeds::read_bytes(UPDATER, bytes, &no_progress) {
        Ok(s) => {
            check_snapshot(&s);
            Some(s)
        }
        Err(e) => {
            // Error messages are built from the input; rendering them must not panic either.
            let _ = e.to_string();
            None
        }
    }
}

/// The laws of a [`Snapshot`] (see `tocsin-feeds`' crate documentation and ARCHITECTURE.md,
/// invariant 2):
/// - records are sorted by content address, without duplicates, and each address is the
///   SHA-256 of the record's canonical encoding;
/// - no two records share an identity;
/// - the fingerprint is the SHA-256 of the sorted ids, one per line;
/// - the canonical encoding decodes back to the same record (the store relies on it);
/// - every record's affected rule compiles and evaluates without panicking.
pub fn check_snapshot(s: &Snapshot) {
    let mut ids = String::new();
    let mut identities = HashSet::new();
    let mut previous: Option<&str> = None;
    for a in &s.vulnerabilities {
        let v = a.vuln();
        let id = a.id();
        assert_eq!(*id, v.id(), "a record's id is its content address");
        if let Some(p) = previous {
            assert!(p < id.0.as_str(), "records sorted by id without duplicates");
        }
        previous = Some(&id.0);
        assert!(
            identities.insert(v.identity()),
            "two records with identity {:?}",
            v.identity()
        );
        ids.push_str(&id.0);
        ids.push('\n');
        assert_eq!(v.updater, UPDATER);

        let bytes = v.canonical_bytes();
        let back: Vulnerability =
            serde_json::from_slice(&bytes).expect("the canonical encoding decodes");
        assert_eq!(&back, v, "canonical encoding round-trips");
        assert_eq!(back.canonical_bytes(), bytes);

        exercise_rule(v);
    }
    assert_eq!(s.fingerprint, tocsin_model::sha256_hex(ids.as_bytes()));
}

/// Compiles a record's rule and evaluates it against the versions the rule itself names (the
/// boundary cases of every comparison), checking that the compiled and one-shot forms agree.
fn exercise_rule(v: &Vulnerability) {
    let eco = v.package.ecosystem.as_str();
    let compiled = CompiledRule::new(&v.affected, eco);
    let mut probes: Vec<&str> = vec!["", "0", "1.0"];
    match &v.affected {
        Affected::Osv { ranges, versions } => {
            for r in ranges.iter().take(4) {
                for e in r.events.iter().take(8) {
                    probes.push(match e {
                        Event::Introduced(x)
                        | Event::Fixed(x)
                        | Event::LastAffected(x)
                        | Event::Limit(x) => x,
                    });
                }
            }
            probes.extend(versions.iter().take(8).map(String::as_str));
        }
        Affected::Claircore {
            fixed_in_version, ..
        } => probes.push(fixed_in_version),
    }
    for p in probes {
        let a = compiled.matches(p, "", "");
        let b = tocsin_versions::affected(&v.affected, eco, p, "", "");
        assert_eq!(a, b, "compiled and one-shot evaluation agree on {p:?}");
    }
}

/// The fixed manifest digest given to formats that carry none.
pub fn digest() -> Digest {
    Digest::sha256_of(b"tocsin fuzz")
}

/// Parses `bytes` as `format` (with a digest, except for the IndexReport, which carries its own,
/// and for dpkg, `distribution`) and, when accepted,
/// checks the inventory laws:
/// - every format becomes a claircore IndexReport that reads back unchanged as an IndexReport
///   (JSON round trip through the IndexReport parser, ARCHITECTURE.md "one representation");
/// - the package view of that report is the same before and after;
/// - recognising the format from the content, when it recognises this format, parses the same;
/// - parsing is deterministic.
pub fn parse_inventory(bytes: &[u8], format: InventoryFormat, distribution: Option<&str>) {
    let input = || Input {
        bytes,
        format: Some(format),
        digest: (format != InventoryFormat::IndexReport).then(digest),
        distribution,
        labels: BTreeMap::new(),
        ..Default::default()
    };
    let parsed = match tocsin_inventory::parse_with_stats(input()) {
        Ok(p) => p,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    check_parsed(&parsed, format);
    let again = tocsin_inventory::parse_with_stats(input()).expect("parsing is deterministic");
    assert_eq!(again, parsed, "parsing is deterministic");

    if tocsin_inventory::sniff(bytes, None) == Some(format) {
        let sniffed = tocsin_inventory::parse_with_stats(Input {
            format: None,
            ..input()
        })
        .expect("a recognised format parses as when named");
        assert_eq!(sniffed, parsed, "recognised and named formats parse alike");
    }
}

fn check_parsed(parsed: &Parsed, format: InventoryFormat) {
    let m = &parsed.manifest;
    assert_eq!(m.format, format);
    assert_eq!(m.report.manifest_hash, m.digest.to_string());
    let json = serde_json::to_vec(&m.report).expect("a report serialises");
    let back = tocsin_inventory::parse(Input {
        bytes: &json,
        format: Some(InventoryFormat::IndexReport),
        ..Default::default()
    })
    .expect("every parsed inventory is a valid IndexReport");
    assert_eq!(back.digest, m.digest);
    assert_eq!(back.report, m.report, "the report round-trips through JSON");
    assert_eq!(
        installed_packages(&back.report),
        installed_packages(&m.report)
    );
    // The manifest's own (store) encoding round-trips too.
    let stored = serde_json::to_vec(m).expect("a manifest serialises");
    let m2: tocsin_model::inventory::Manifest =
        serde_json::from_slice(&stored).expect("a manifest deserialises");
    assert_eq!(&m2, m);
}
