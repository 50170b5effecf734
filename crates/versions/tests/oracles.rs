//! Every comparator against every line of its real-world ordering oracle
//! (`shared/data/versions/*.txt`: `a < b`, `a = b`, `a > b`, `#`/`//` comments).
//!
//! Each line is checked in both directions (`compare(a, b)` and `compare(b, a)`), and all
//! failures of a file are reported together. One line is excluded, for the reason given in
//! [`EXCLUDED`].
use std::cmp::Ordering;

use tocsin_versions::Scheme;

/// Lines that cannot be honoured, with the reason: (file, line text, why). Each entry must say
/// why the oracle and the ecosystem disagree; every other line of every oracle is honoured.
const EXCLUDED: &[(&str, &str, &str)] = &[(
    "alpine-versions.txt",
    "1-ruff2 = 1--ruff1",
    "apk itself never says '=' here (the oracle's own comment: '<' on current apk, '>' on \
     3.x); the '=' comes from osv-scalibr comparing a malformed version's parts against a \
     well-formed one while comparing two malformed versions as whole strings, which no \
     transitive order can do together with lines such as `0..1..0 < 0..1..1`. We keep a \
     total order (needed for sorting and ordered maps) and give current apk's '<'.",
)];

use tocsin_testdata::dir as shared_data;

/// Check one oracle file; returns the number of lines checked.
fn check(scheme: Scheme, file: &str) -> usize {
    let Some(dir) = shared_data() else {
        return 0;
    };
    let path = dir.join("versions").join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read oracle {}: {e}", path.display()));
    let mut checked = 0;
    let mut failures = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line_no = n + 1;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with("//") {
            continue;
        }
        if let Some((_, _, why)) = EXCLUDED
            .iter()
            .find(|(f, l, _)| *f == file && *l == trimmed)
        {
            eprintln!("{file}:{line_no}: excluded `{trimmed}`: {why}");
            continue;
        }
        let pieces: Vec<&str> = trimmed.split(' ').collect();
        let [a, op, b] = pieces[..] else {
            panic!("{file}:{line_no}: expected `a OP b`, got {line:?}");
        };
        let want = match op {
            "<" => Ordering::Less,
            "=" => Ordering::Equal,
            ">" => Ordering::Greater,
            _ => panic!("{file}:{line_no}: unknown operator {op:?} in {line:?}"),
        };
        let forward = scheme.compare(a, b);
        let backward = scheme.compare(b, a);
        if forward != want || backward != want.reverse() {
            failures.push(format!(
                "{file}:{line_no}: {line}  (got compare(a,b) = {forward:?}, compare(b,a) = {backward:?})"
            ));
        }
        checked += 1;
    }
    assert!(
        failures.is_empty(),
        "{scheme}: {} of {checked} lines of {file} disagree:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked > 0, "{file} holds no comparisons");
    eprintln!("{scheme}: {checked} lines of {file} agree (both directions)");
    checked
}

/// Every excluded line must still exist in its oracle, so the list cannot go stale.
#[test]
fn exclusions_name_real_oracle_lines() {
    let Some(dir) = shared_data() else {
        return;
    };
    for (file, line, _) in EXCLUDED {
        let text = std::fs::read_to_string(dir.join("versions").join(file))
            .unwrap_or_else(|e| panic!("cannot read oracle {file}: {e}"));
        assert!(
            text.lines().any(|l| l.trim() == *line),
            "excluded line {line:?} is not in {file}"
        );
    }
}

/// Sorting every oracle version must not panic and must be consistent for the schemes whose
/// order is transitive (all but Maven, whose own ordering is not; see `Version`).
#[test]
fn oracle_versions_sort_consistently() {
    let Some(dir) = shared_data() else {
        return;
    };
    let sets: [(Scheme, &[&str]); 5] = [
        (
            Scheme::Dpkg,
            &["debian-versions.txt", "debian-versions-generated.txt"],
        ),
        (
            Scheme::Apk,
            &["alpine-versions.txt", "alpine-versions-generated.txt"],
        ),
        (Scheme::Rpm, &["redhat-versions.txt"]),
        (
            Scheme::Pep440,
            &["pypi-versions.txt", "pypi-versions-generated.txt"],
        ),
        (Scheme::Semver, &["semver-versions.txt"]),
    ];
    for (scheme, files) in sets {
        let mut versions = std::collections::BTreeSet::new();
        for file in files {
            let text = std::fs::read_to_string(dir.join("versions").join(file))
                .unwrap_or_else(|e| panic!("cannot read oracle {file}: {e}"));
            for line in text.lines().map(str::trim) {
                if line.is_empty() || line.starts_with('#') || line.starts_with("//") {
                    continue;
                }
                let pieces: Vec<&str> = line.split(' ').collect();
                if let [a, _, b] = pieces[..] {
                    versions.insert(a.to_string());
                    versions.insert(b.to_string());
                }
            }
        }
        let mut parsed: Vec<(tocsin_versions::Version, String)> = versions
            .iter()
            .map(|v| (scheme.parse(v), v.clone()))
            .collect();
        parsed.sort_by(|a, b| a.0.cmp(&b.0));
        // In a consistent order, every element is <= every later one; check a spread of pairs.
        let n = parsed.len();
        let mut checked = 0;
        for i in 0..n {
            for j in (i + 1..n).step_by((n / 200).max(1)) {
                assert_ne!(
                    parsed[i].0.cmp(&parsed[j].0),
                    Ordering::Greater,
                    "{scheme}: sorted {} before {}",
                    parsed[i].1,
                    parsed[j].1
                );
                checked += 1;
            }
        }
        eprintln!("{scheme}: {n} distinct oracle versions sort consistently ({checked} pairs)");
    }
}

#[test]
fn dpkg_agrees_with_debian_oracles() {
    check(Scheme::Dpkg, "debian-versions.txt");
    check(Scheme::Dpkg, "debian-versions-generated.txt");
}

#[test]
fn apk_agrees_with_alpine_oracles() {
    check(Scheme::Apk, "alpine-versions.txt");
    check(Scheme::Apk, "alpine-versions-generated.txt");
}

#[test]
fn rpm_agrees_with_redhat_oracle() {
    check(Scheme::Rpm, "redhat-versions.txt");
}

#[test]
fn pep440_agrees_with_pypi_oracles() {
    check(Scheme::Pep440, "pypi-versions.txt");
    check(Scheme::Pep440, "pypi-versions-generated.txt");
}

#[test]
fn maven_agrees_with_maven_oracles() {
    check(Scheme::Maven, "maven-versions.txt");
    check(Scheme::Maven, "maven-versions-generated.txt");
}

#[test]
fn semver_agrees_with_semver_oracle() {
    check(Scheme::Semver, "semver-versions.txt");
}

#[test]
fn go_agrees_with_semver_oracle() {
    check(Scheme::Go, "semver-versions.txt");
}
