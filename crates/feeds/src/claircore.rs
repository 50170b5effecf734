//! claircore Vulnerability arrays (a Clair matcher's dump) → tocsin vulnerabilities.
//!
//! claircore already stores one vulnerability per advisory × package × distribution/repository,
//! so each element maps to one record; only the ecosystem has to be derived, from the
//! distribution (OS advisories) or the repository (language advisories).
use tocsin_model::claircore;
use tocsin_model::ecosystem;
use tocsin_model::vuln::{Affected, NameKind, PackageSpec, Vulnerability};

use crate::eco;
use crate::error::FeedError;

/// Converts element `index` of the array in `file`.
///
/// Store-local ids of the element's distribution and repository are cleared: they differ between
/// Clair databases and would make identical content hash differently.
pub(crate) fn convert(
    updater: &str,
    file: &str,
    index: usize,
    v: claircore::Vulnerability,
) -> Result<Vulnerability, FeedError> {
    convert_as(updater, file, index, v, false)
}

/// A vulnerability a fronted Clair's matcher handed out (an update diff), kept as Clair has it:
/// the package name verbatim (Clair's indexer matches it byte for byte, and notifications show
/// it), and an ecosystem tocsin does not know kept under a `Clair:` name instead of refused —
/// Clair, not tocsin, decides what it affects.
pub fn from_clair(
    updater: &str,
    index: usize,
    v: claircore::Vulnerability,
) -> Result<Vulnerability, FeedError> {
    convert_as(updater, "update_diff", index, v, true)
}

fn convert_as(
    updater: &str,
    file: &str,
    index: usize,
    v: claircore::Vulnerability,
    verbatim: bool,
) -> Result<Vulnerability, FeedError> {
    let element_error = |message: &str| FeedError::Element {
        file: file.to_string(),
        index,
        name: v.name.clone(),
        message: message.to_string(),
    };
    if v.name.trim().is_empty() {
        return Err(element_error("the advisory name is empty"));
    }
    let Some(package) = v.package.as_ref() else {
        return Err(element_error("has no package"));
    };
    if package.name.trim().is_empty() {
        return Err(element_error("the package name is empty"));
    }
    let from_distribution = v
        .distribution
        .as_ref()
        .and_then(ecosystem::from_distribution);
    let (eco_name, is_os) =
        match from_distribution {
            Some(e) => (e, true),
            None => match v.repository.as_ref().and_then(ecosystem::from_repository) {
                Some(e) => (e.to_string(), false),
                None if verbatim => {
                    let (what, is_os) = match (&v.distribution, &v.repository) {
                        (Some(d), _) if !d.did.is_empty() => (d.did.clone(), true),
                        (_, Some(r)) if !r.name.is_empty() => (r.name.clone(), false),
                        _ => (updater.to_string(), false),
                    };
                    (format!("Clair:{what}"), is_os)
                }
                None => return Err(element_error(
                    "neither its distribution nor its repository names an ecosystem tocsin knows",
                )),
            },
        };
    let kind = if package.kind == "source" {
        NameKind::Source
    } else if is_os {
        NameKind::Any
    } else {
        NameKind::Binary
    };
    let name = if verbatim {
        package.name.clone()
    } else {
        eco::normalize_name(&eco_name, &package.name)
    };
    let arch = package.arch.clone();
    Ok(Vulnerability {
        updater: updater.to_string(),
        name: v.name,
        aliases: Vec::new(),
        description: v.description,
        links: v.links,
        issued: v.issued,
        severity: v.severity,
        normalized_severity: v.normalized_severity,
        package: PackageSpec {
            ecosystem: eco_name,
            name,
            kind,
        },
        distribution: v.distribution.map(|d| claircore::Distribution {
            id: String::new(),
            ..d
        }),
        repository: v.repository.map(|r| claircore::Repository {
            id: String::new(),
            ..r
        }),
        fixed_in_version: v.fixed_in_version.clone(),
        affected: Affected::Claircore {
            fixed_in_version: v.fixed_in_version,
            range: v.range,
            arch_op: v.arch_op,
            arch,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tocsin_model::Severity;

    fn element(json: &str) -> claircore::Vulnerability {
        match serde_json::from_str(json) {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn debian_source_package() {
        let v = convert(
            "clair",
            "dump.json",
            0,
            element(
                r#"{"id": "17", "updater": "debian/updater/buster", "name": "CVE-2021-3711",
                "description": "d", "issued": "2021-08-24T15:15:00Z", "links": "https://x",
                "severity": "High", "normalized_severity": "High",
                "package": {"id": "", "name": "openssl", "version": "", "kind": "source", "arch": "amd64"},
                "distribution": {"id": "4", "did": "debian", "name": "Debian GNU/Linux",
                    "version": "10 (buster)", "version_code_name": "buster", "version_id": "10",
                    "arch": "", "cpe": "", "pretty_name": "Debian GNU/Linux 10 (buster)"},
                "fixed_in_version": "1.1.1d-0+deb10u7", "arch_op": "equals"}"#,
            ),
        );
        let v = match v {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(v.package.ecosystem, "Debian:10");
        assert_eq!(v.package.kind, NameKind::Source);
        assert_eq!(v.updater, "clair");
        assert_eq!(v.normalized_severity, Severity::High);
        assert_eq!(v.distribution.as_ref().map(|d| d.id.as_str()), Some(""));
        assert_eq!(
            v.affected,
            Affected::Claircore {
                fixed_in_version: "1.1.1d-0+deb10u7".into(),
                range: None,
                arch_op: "equals".into(),
                arch: "amd64".into(),
            }
        );
    }

    #[test]
    fn pypi_binary_package_is_normalised() {
        let v = convert(
            "clair",
            "dump.json",
            3,
            element(
                r#"{"name": "PYSEC-1", "package": {"name": "Django_Rest.framework"},
                "repository": {"id": "9", "name": "pypi", "uri": "https://pypi.org/simple", "cpe": ""},
                "fixed_in_version": "fixed=3.9.1&introduced=0"}"#,
            ),
        );
        let v = match v {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(v.package.ecosystem, "PyPI");
        assert_eq!(v.package.name, "django-rest-framework");
        assert_eq!(v.package.kind, NameKind::Binary);
        assert_eq!(v.fixed_in_version, "fixed=3.9.1&introduced=0");
        assert_eq!(v.repository.as_ref().map(|r| r.id.as_str()), Some(""));
    }

    #[test]
    fn unknown_ecosystem_names_the_element() {
        let err = convert(
            "clair",
            "dump.json",
            5,
            element(
                r#"{"name": "CVE-1", "package": {"name": "x"}, "distribution": {"did": "plan9"}}"#,
            ),
        )
        .map(|_| ())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(err.starts_with("dump.json: [5] (CVE-1): neither"), "{err}");
        let err = convert("c", "d.json", 1, element(r#"{"name": "CVE-2"}"#))
            .map(|_| ())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(err, "d.json: [1] (CVE-2): has no package");
    }
}
