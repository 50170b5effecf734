//! CycloneDX and SPDX JSON SBOMs. Both identify packages by package URL, so both reduce to
//! "walk the document, turn each purl into a package"; the purl → package rules live here once.
//!
//! The purl rules follow the names OSV advisories use, since those are what packages are matched
//! against: Maven is `group:artifact`, PyPI names are PEP 503-normalised, Go modules are the full
//! module path with the `v` kept on the version, Composer is `vendor/package`, npm keeps its
//! `@scope/`. OS packages (`deb`, `rpm`, `apk`) need a distribution release, taken from the
//! `distro` qualifier, or else from the caller's distribution.
use serde::Deserialize;
use tocsin_model::claircore::Distribution;
use tocsin_model::ecosystem;
use tocsin_model::inventory::InventoryFormat;

use crate::distro;
use crate::error::{from_json, InventoryError};
use crate::purl::{Purl, PurlError};
use crate::report::{NewPackage, ReportBuilder, Target};

/// PEP 503 name normalisation: lower case, every run of `-`, `_`, `.` becomes one `-`.
pub(crate) fn pep503(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_run = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !in_run {
                out.push('-');
            }
            in_run = true;
        } else {
            out.push(c.to_ascii_lowercase());
            in_run = false;
        }
    }
    out
}

/// What a purl contributes.
enum Outcome {
    Package(Box<NewPackage>),
    /// A well-formed purl tocsin cannot match (unsupported type, no version, unknown distro).
    Skip(String),
}

/// The source package named by `upstream=` / `source=` qualifiers: `name`, `name@version`, or an
/// RPM source file name (`openssl-1.1.1k-7.el8_6.src.rpm`).
fn source_of(purl: &Purl, binary_version: &str) -> Option<(String, String)> {
    let raw = purl.qualifier("upstream").or(purl.qualifier("source"))?;
    if let Some(nvr) = raw.strip_suffix(".src.rpm") {
        // name-version-release: the name is everything before the last two dashes.
        let mut parts = nvr.rsplitn(3, '-');
        let release = parts.next()?;
        let version = parts.next()?;
        let name = parts.next()?;
        return Some((name.to_string(), format!("{version}-{release}")));
    }
    match raw.split_once('@') {
        Some((name, version)) if !name.is_empty() => Some((name.to_string(), version.to_string())),
        _ => Some((raw.to_string(), binary_version.to_string())),
    }
}

fn convert(
    purl: &Purl,
    fallback_version: Option<&str>,
    caller_distribution: Option<&Distribution>,
    package_db: String,
) -> Result<Outcome, PurlError> {
    let version = match purl
        .version
        .as_deref()
        .or(fallback_version.filter(|v| !v.is_empty()))
    {
        Some(v) => v.to_string(),
        None => {
            return Ok(Outcome::Skip(
                "no version, so it cannot be matched against advisories".into(),
            ))
        }
    };
    let arch = purl.qualifier("arch").unwrap_or("").to_string();
    let require_namespace = || {
        if purl.namespace.is_empty() {
            Err(PurlError::NoNamespace(purl.ty.clone()))
        } else {
            Ok(())
        }
    };
    let with_namespace = |sep: &str| {
        if purl.namespace.is_empty() {
            purl.name.clone()
        } else {
            format!("{}{sep}{}", purl.namespace, purl.name)
        }
    };
    match purl.ty.as_str() {
        "deb" | "rpm" | "apk" => {
            let dist = match purl.qualifier("distro") {
                Some(q) => match distro::from_purl(&purl.namespace, q) {
                    Some(d) => d,
                    None => {
                        return Ok(Outcome::Skip(format!(
                            "distro qualifier {q:?} is not a distribution release tocsin has advisories for"
                        )))
                    }
                },
                None => match caller_distribution {
                    Some(d) => d.clone(),
                    None => {
                        return Ok(Outcome::Skip(
                            "an OS package without a distro qualifier; give the distribution to read it".into(),
                        ))
                    }
                },
            };
            let version = match (purl.ty.as_str(), purl.qualifier("epoch")) {
                // RPM purls carry the epoch as a qualifier; EVR comparison needs it in the version.
                ("rpm", Some(epoch)) if epoch != "0" && !version.contains(':') => {
                    format!("{epoch}:{version}")
                }
                _ => version,
            };
            let source = source_of(purl, &version);
            Ok(Outcome::Package(Box::new(NewPackage {
                target: Target::Os(dist),
                name: purl.name.clone(),
                version,
                arch,
                source,
                package_db,
            })))
        }
        ty => {
            let Some(eco) = ecosystem::from_purl_type(ty) else {
                return Ok(Outcome::Skip(format!(
                    "package URL type {ty:?} is not an ecosystem tocsin has advisories for"
                )));
            };
            let name = match ty {
                "golang" => with_namespace("/"),
                "npm" => with_namespace("/"),
                "maven" => {
                    require_namespace()?;
                    with_namespace(":")
                }
                "composer" => {
                    require_namespace()?;
                    with_namespace("/")
                }
                "pypi" => pep503(&purl.name),
                _ => purl.name.clone(),
            };
            Ok(Outcome::Package(Box::new(NewPackage {
                target: Target::Language(eco),
                name,
                version,
                arch,
                source: None,
                package_db,
            })))
        }
    }
}

/// Parses `text` at `at` and adds what it yields (or records why it yields nothing).
fn add_purl(
    b: &mut ReportBuilder,
    format: InventoryFormat,
    at: &str,
    text: &str,
    fallback_version: Option<&str>,
    distribution: Option<&Distribution>,
) -> Result<(), InventoryError> {
    let bad = |error| InventoryError::BadPurl {
        format,
        at: at.to_string(),
        purl: text.to_string(),
        error,
    };
    let purl = Purl::parse(text).map_err(bad)?;
    match convert(&purl, fallback_version, distribution, at.to_string()).map_err(bad)? {
        Outcome::Package(p) => b.add(*p),
        Outcome::Skip(reason) => b.skip(at, format!("{text}: {reason}")),
    }
    Ok(())
}

#[derive(Deserialize)]
struct Bom {
    #[serde(rename = "bomFormat")]
    bom_format: Option<String>,
    #[serde(rename = "specVersion")]
    spec_version: Option<String>,
    components: Option<Vec<Component>>,
}

#[derive(Deserialize)]
struct Component {
    purl: Option<String>,
    version: Option<String>,
    components: Option<Vec<Component>>,
}

/// Reads a CycloneDX JSON SBOM (spec 1.2 and later 1.x) into `b`. Only `components` (recursively)
/// are inventory: `metadata.component` is the subject the SBOM describes, identified by the
/// manifest digest instead.
pub(crate) fn cyclonedx(
    b: &mut ReportBuilder,
    bytes: &[u8],
    distribution: Option<&Distribution>,
) -> Result<(), InventoryError> {
    const F: InventoryFormat = InventoryFormat::Cyclonedx;
    let bom: Bom = from_json(F, bytes)?;
    let invalid = |at: &str, message: String| InventoryError::Invalid {
        format: F,
        at: at.into(),
        message,
    };
    match bom.bom_format.as_deref() {
        Some("CycloneDX") => {}
        Some(other) => {
            return Err(invalid(
                "bomFormat",
                format!("is {other:?}, expected \"CycloneDX\""),
            ))
        }
        None => return Err(invalid("bomFormat", "is missing".into())),
    }
    let spec = bom
        .spec_version
        .ok_or_else(|| invalid("specVersion", "is missing".into()))?;
    let minor = spec
        .strip_prefix("1.")
        .and_then(|m| m.parse::<u32>().ok())
        .filter(|m| *m >= 2);
    if minor.is_none() {
        return Err(invalid(
            "specVersion",
            format!("{spec:?} is not supported (CycloneDX JSON 1.2 or later 1.x)"),
        ));
    }
    // An explicit stack instead of recursion keeps a hostile nesting depth from mattering.
    let mut stack: Vec<(String, Component)> = bom
        .components
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, c)| (format!("components[{i}]"), c))
        .rev()
        .collect();
    while let Some((at, c)) = stack.pop() {
        match c.purl.as_deref() {
            Some(text) if !text.trim().is_empty() => {
                add_purl(
                    b,
                    F,
                    &format!("{at}.purl"),
                    text,
                    c.version.as_deref(),
                    distribution,
                )?;
            }
            _ => b.skip(at.clone(), "component has no purl"),
        }
        if let Some(children) = c.components {
            for (i, child) in children.into_iter().enumerate().rev() {
                stack.push((format!("{at}.components[{i}]"), child));
            }
        }
    }
    Ok(())
}

#[derive(Deserialize)]
struct SpdxDocument {
    #[serde(rename = "spdxVersion")]
    spdx_version: Option<String>,
    packages: Option<Vec<SpdxPackage>>,
}

#[derive(Deserialize)]
struct SpdxPackage {
    #[serde(rename = "versionInfo")]
    version_info: Option<String>,
    #[serde(rename = "externalRefs")]
    external_refs: Option<Vec<ExternalRef>>,
}

#[derive(Deserialize)]
struct ExternalRef {
    #[serde(rename = "referenceCategory")]
    category: Option<String>,
    #[serde(rename = "referenceType")]
    kind: Option<String>,
    #[serde(rename = "referenceLocator")]
    locator: Option<String>,
}

/// Reads an SPDX 2.x JSON document into `b`: every package's `purl` external references (category
/// `PACKAGE-MANAGER`, or `PACKAGE_MANAGER` as SPDX 2.2 spells it).
pub(crate) fn spdx(
    b: &mut ReportBuilder,
    bytes: &[u8],
    distribution: Option<&Distribution>,
) -> Result<(), InventoryError> {
    const F: InventoryFormat = InventoryFormat::Spdx;
    let doc: SpdxDocument = from_json(F, bytes)?;
    let invalid = |message: String| InventoryError::Invalid {
        format: F,
        at: "spdxVersion".into(),
        message,
    };
    match doc.spdx_version.as_deref() {
        Some(v) if v.starts_with("SPDX-2.") => {}
        Some(v) => {
            return Err(invalid(format!(
                "{v:?} is not supported (SPDX 2.x JSON, e.g. \"SPDX-2.3\")"
            )))
        }
        None => return Err(invalid("is missing".into())),
    }
    for (i, p) in doc.packages.unwrap_or_default().into_iter().enumerate() {
        let mut any = false;
        for (j, r) in p.external_refs.unwrap_or_default().iter().enumerate() {
            let category = r
                .category
                .as_deref()
                .unwrap_or("")
                .to_ascii_uppercase()
                .replace('_', "-");
            let is_purl = r.kind.as_deref() == Some("purl") && category == "PACKAGE-MANAGER";
            let Some(locator) = r.locator.as_deref().filter(|_| is_purl) else {
                continue;
            };
            let at = format!("packages[{i}].externalRefs[{j}].referenceLocator");
            add_purl(b, F, &at, locator, p.version_info.as_deref(), distribution)?;
            // Yielding a package or not, the reference is accounted for: add_purl records skips.
            any = true;
        }
        if !any {
            b.skip(
                format!("packages[{i}]"),
                "package has no purl external reference",
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tocsin_model::inventory::{installed_packages, InstalledPackage};
    use tocsin_model::Digest;

    fn digest() -> Digest {
        Digest::parse(&format!("sha256:{}", "b".repeat(64))).unwrap()
    }

    type Reader =
        fn(&mut ReportBuilder, &[u8], Option<&Distribution>) -> Result<(), InventoryError>;

    fn run(
        f: Reader,
        json: &str,
        dist: Option<&Distribution>,
    ) -> Result<(Vec<InstalledPackage>, crate::ParseStats), InventoryError> {
        let mut b = ReportBuilder::new(&digest());
        f(&mut b, json.as_bytes(), dist)?;
        let (r, s) = b.finish();
        Ok((installed_packages(&r), s))
    }

    fn triples(p: &[InstalledPackage]) -> Vec<(&str, &str, &str)> {
        p.iter()
            .map(|p| (p.ecosystem.as_str(), p.name.as_str(), p.version.as_str()))
            .collect()
    }

    #[test]
    fn pep503_normalises_runs() {
        assert_eq!(pep503("Foo__Bar.-baz"), "foo-bar-baz");
        assert_eq!(pep503("typing_extensions"), "typing-extensions");
        assert_eq!(pep503("Flask"), "flask");
    }

    #[test]
    fn cyclonedx_purls_become_ecosystem_packages() {
        let json = r#"{"bomFormat":"CycloneDX","specVersion":"1.5","metadata":{"component":{"purl":"pkg:npm/app@1.0"}},
          "components":[
            {"name":"a","purl":"pkg:maven/com.fasterxml.jackson.core/jackson-databind@2.9.10?type=jar",
             "components":[{"purl":"pkg:pypi/Typing_Extensions@4.0"},{"name":"nested-no-purl"}]},
            {"purl":"pkg:golang/github.com/gin-gonic/gin@v1.6.3"},
            {"purl":"pkg:composer/laravel/framework@7.12.0"},
            {"purl":"pkg:npm/%40types/node@14.0.23"},
            {"purl":"pkg:cargo/serde@1.0.1"},
            {"purl":"pkg:gem/rails@6.0.0"},
            {"purl":"pkg:nuget/Newtonsoft.Json@12.0.1"},
            {"purl":"pkg:deb/debian/libssl1.1@1.1.1n-0+deb10u3?arch=amd64&distro=debian-10&upstream=openssl"},
            {"purl":"pkg:rpm/redhat/openssl-libs@1.1.1k-7.el8_6?arch=x86_64&epoch=1&distro=rhel-8.6&upstream=openssl-1.1.1k-7.el8_6.src.rpm"},
            {"purl":"pkg:apk/alpine/busybox@1.36.1-r2?arch=x86_64&distro=alpine-3.18.4"},
            {"purl":"pkg:github/actions/checkout@v4"},
            {"purl":"pkg:npm/no-version"},
            {"purl":"pkg:npm/fallback","version":"2.0.0"}
          ]}"#;
        let (pkgs, stats) = run(cyclonedx, json, None).unwrap();
        let mut got = triples(&pkgs);
        got.sort();
        let mut want = vec![
            (
                "Maven",
                "com.fasterxml.jackson.core:jackson-databind",
                "2.9.10",
            ),
            ("PyPI", "typing-extensions", "4.0"),
            ("Go", "github.com/gin-gonic/gin", "v1.6.3"),
            ("Packagist", "laravel/framework", "7.12.0"),
            ("npm", "@types/node", "14.0.23"),
            ("npm", "fallback", "2.0.0"),
            ("crates.io", "serde", "1.0.1"),
            ("RubyGems", "rails", "6.0.0"),
            ("NuGet", "Newtonsoft.Json", "12.0.1"),
            ("Debian:10", "libssl1.1", "1.1.1n-0+deb10u3"),
            ("Red Hat:8", "openssl-libs", "1:1.1.1k-7.el8_6"),
            ("Alpine:v3.18", "busybox", "1.36.1-r2"),
        ];
        want.sort();
        assert_eq!(got, want);
        let deb = pkgs.iter().find(|p| p.name == "libssl1.1").unwrap();
        assert_eq!(deb.source_name.as_deref(), Some("openssl"));
        assert_eq!(deb.arch, "amd64");
        let rpm = pkgs.iter().find(|p| p.name == "openssl-libs").unwrap();
        assert_eq!(rpm.source_name.as_deref(), Some("openssl"));
        assert_eq!(stats.packages, 12);
        let reasons: Vec<&str> = stats.skipped.iter().map(|s| s.at.as_str()).collect();
        assert_eq!(
            reasons,
            vec![
                "components[0].components[1]",
                "components[10].purl",
                "components[11].purl"
            ]
        );
        assert!(stats.skipped[1].reason.contains("github"));
        assert!(stats.skipped[2].reason.contains("no version"));
    }

    #[test]
    fn os_purls_without_distro_use_the_callers_distribution() {
        let json = r#"{"bomFormat":"CycloneDX","specVersion":"1.4","components":[
            {"purl":"pkg:deb/debian/bash@5.2.15-2+b2?arch=amd64"}]}"#;
        let (pkgs, stats) = run(cyclonedx, json, None).unwrap();
        assert!(pkgs.is_empty());
        assert!(
            stats.skipped[0].reason.contains("distro"),
            "{:?}",
            stats.skipped
        );
        let d = distro::known("debian", "12").unwrap();
        let (pkgs, _) = run(cyclonedx, json, Some(&d)).unwrap();
        assert_eq!(triples(&pkgs), vec![("Debian:12", "bash", "5.2.15-2+b2")]);
    }

    #[test]
    fn cyclonedx_errors_name_the_place() {
        let e = run(
            cyclonedx,
            r#"{"bomFormat":"CycloneDX","specVersion":"1.4","components":[{"purl":"pkg:npm/a@1"},{"purl":"npm/left-pad@1.3.0"}]}"#,
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("components[1].purl"), "{e}");
        assert!(e.contains("pkg:"), "{e}");
        let e = run(
            cyclonedx,
            r#"{"bomFormat":"CycloneDX","specVersion":"1.4","components":[{"purl":"pkg:maven/guava@1"}]}"#,
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("needs a namespace"), "{e}");
        let e = run(
            cyclonedx,
            r#"{"bomFormat":"SPDX","specVersion":"1.4"}"#,
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("bomFormat"), "{e}");
        let e = run(
            cyclonedx,
            r#"{"bomFormat":"CycloneDX","specVersion":"1.1"}"#,
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("specVersion"), "{e}");
        let e = run(
            cyclonedx,
            r#"{"bomFormat":"CycloneDX","specVersion":"1.4","components":[{"purl":7}]}"#,
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("components[0].purl"), "{e}");
    }

    #[test]
    fn spdx_purl_references() {
        let json = r#"{"spdxVersion":"SPDX-2.3","SPDXID":"SPDXRef-DOCUMENT","packages":[
            {"SPDXID":"SPDXRef-a","name":"gin","versionInfo":"v1.6.3","externalRefs":[
              {"referenceCategory":"SECURITY","referenceType":"cpe23Type","referenceLocator":"cpe:2.3:a:gin:gin:1.6.3:*:*:*:*:*:*:*"},
              {"referenceCategory":"PACKAGE-MANAGER","referenceType":"purl","referenceLocator":"pkg:golang/github.com/gin-gonic/gin@v1.6.3"}]},
            {"SPDXID":"SPDXRef-b","name":"requests","externalRefs":[
              {"referenceCategory":"PACKAGE_MANAGER","referenceType":"purl","referenceLocator":"pkg:pypi/requests@2.0.0"}]},
            {"SPDXID":"SPDXRef-c","name":"no refs"},
            {"SPDXID":"SPDXRef-d","name":"docker","externalRefs":[
              {"referenceCategory":"PACKAGE-MANAGER","referenceType":"purl","referenceLocator":"pkg:docker/alpine@3.18"}]}
        ]}"#;
        let (pkgs, stats) = run(spdx, json, None).unwrap();
        assert_eq!(
            triples(&pkgs),
            vec![
                ("Go", "github.com/gin-gonic/gin", "v1.6.3"),
                ("PyPI", "requests", "2.0.0")
            ]
        );
        assert_eq!(stats.skipped.len(), 2);
        assert_eq!(stats.skipped[0].at, "packages[2]");
        assert_eq!(
            stats.skipped[1].at,
            "packages[3].externalRefs[0].referenceLocator"
        );
    }

    #[test]
    fn spdx_errors() {
        let e = run(spdx, r#"{"spdxVersion":"SPDX-3.0"}"#, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("SPDX-3.0"), "{e}");
        let e = run(
            spdx,
            r#"{"spdxVersion":"SPDX-2.3","packages":[{"externalRefs":[{"referenceCategory":"PACKAGE-MANAGER","referenceType":"purl","referenceLocator":"pkg:npm/x%zz@1"}]}]}"#,
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("packages[0].externalRefs[0].referenceLocator"),
            "{e}"
        );
        assert!(e.contains("percent-encoding"), "{e}");
    }
}
