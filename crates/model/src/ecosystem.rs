//! Which advisory ecosystem (OSV naming) an installed package belongs to.
//!
//! OSV's ecosystem names are tocsin's namespaces: OS packages are `Distro:release`
//! (`Debian:10`, `AlmaLinux:9`, `Alpine:v3.18`), language packages a bare registry name
//! (`Go`, `npm`, `PyPI`, `crates.io`, `Maven`, …). Inventories of every format are mapped onto
//! these names here, in one place, so that the forward and reverse matching directions agree.
use crate::claircore::{Distribution, Repository};

/// Known language ecosystems: (OSV name, claircore repository name, purl type, repository URI).
pub const LANGUAGES: &[(&str, &str, &str, &str)] = &[
    ("Go", "go", "golang", "https://pkg.go.dev/"),
    ("npm", "npm", "npm", "https://www.npmjs.com/"),
    (
        "Maven",
        "maven",
        "maven",
        "https://repo1.maven.apache.org/maven2",
    ),
    ("PyPI", "pypi", "pypi", "https://pypi.org/simple"),
    ("crates.io", "crates.io", "cargo", "https://crates.io/"),
    ("RubyGems", "rubygems", "gem", "https://rubygems.org/gems/"),
    (
        "Packagist",
        "packagist",
        "composer",
        "https://packagist.org/",
    ),
    ("NuGet", "nuget", "nuget", "https://www.nuget.org/"),
];

/// The OSV ecosystem of a language package registry named by its purl type (`golang`, `cargo`, …).
pub fn from_purl_type(purl_type: &str) -> Option<&'static str> {
    LANGUAGES
        .iter()
        .find(|l| l.2.eq_ignore_ascii_case(purl_type))
        .map(|l| l.0)
}

/// The claircore Repository that stands for a language ecosystem in reports we build.
pub fn language_repository(ecosystem: &str, id: &str) -> Option<Repository> {
    LANGUAGES
        .iter()
        .find(|l| l.0 == ecosystem)
        .map(|l| Repository {
            id: id.to_string(),
            name: l.1.to_string(),
            key: String::new(),
            uri: l.3.to_string(),
            cpe: String::new(),
        })
}

/// The OSV ecosystem a claircore Repository stands for, when it is a language registry.
pub fn from_repository(repo: &Repository) -> Option<&'static str> {
    let name = repo.name.to_ascii_lowercase();
    let name = match name.as_str() {
        "golang" => "go",
        "cargo" => "crates.io",
        "gem" => "rubygems",
        "composer" => "packagist",
        other => other,
    };
    LANGUAGES.iter().find(|l| l.1 == name).map(|l| l.0)
}

fn major(version_id: &str) -> &str {
    version_id.split('.').next().unwrap_or(version_id)
}

fn debian_release(codename: &str) -> Option<&'static str> {
    Some(match codename {
        "wheezy" => "7",
        "jessie" => "8",
        "stretch" => "9",
        "buster" => "10",
        "bullseye" => "11",
        "bookworm" => "12",
        "trixie" => "13",
        _ => return None,
    })
}

/// The OSV ecosystem of an OS distribution, from os-release fields (`did`, `version_id`, with the
/// code name or the version text as fall-backs). `None` when the distribution is not one we know.
pub fn from_distribution(d: &Distribution) -> Option<String> {
    let did = d.did.to_ascii_lowercase();
    let version_id = if d.version_id.is_empty() {
        // "10 (buster)" → "10"
        d.version
            .split(|c: char| !(c.is_ascii_digit() || c == '.'))
            .next()
            .unwrap_or("")
            .to_string()
    } else {
        d.version_id.clone()
    };
    os_ecosystem(&did, &version_id, &d.version_code_name)
}

/// The OSV ecosystem for an os-release `ID` and `VERSION_ID` (and code name as a fall-back).
pub fn os_ecosystem(did: &str, version_id: &str, codename: &str) -> Option<String> {
    let did = did.to_ascii_lowercase();
    let with_release =
        |name: &str, release: &str| (!release.is_empty()).then(|| format!("{name}:{release}"));
    match did.as_str() {
        "debian" => {
            let release = if version_id.is_empty() {
                debian_release(codename).unwrap_or("")
            } else {
                major(version_id)
            };
            with_release("Debian", release)
        }
        "ubuntu" => with_release("Ubuntu", version_id),
        "alpine" => {
            let mut parts = version_id.split('.');
            match (parts.next(), parts.next()) {
                (Some(a), Some(b)) => Some(format!("Alpine:v{a}.{b}")),
                _ => None,
            }
        }
        "almalinux" => with_release("AlmaLinux", major(version_id)),
        "rocky" => with_release("Rocky Linux", major(version_id)),
        "rhel" | "redhat" => with_release("Red Hat", major(version_id)),
        "centos" => with_release("CentOS", major(version_id)),
        "ol" | "oracle" => with_release("Oracle Linux", major(version_id)),
        "sles" => with_release("SUSE", version_id),
        "opensuse-leap" => with_release("openSUSE", version_id),
        _ => None,
    }
}

/// Whether an ecosystem name is an OS release (`Debian:10`) rather than a language registry (`Go`).
pub fn is_os_ecosystem(ecosystem: &str) -> bool {
    ecosystem.contains(':')
}

/// Whether an advisory published for `vuln_ecosystem` applies to a package of `pkg_ecosystem`.
///
/// Equal names match; an advisory for a bare OS name (`Debian`) applies to every release
/// (`Debian:10`). Ecosystem names compare case-sensitively, as OSV defines them.
pub fn applies(vuln_ecosystem: &str, pkg_ecosystem: &str) -> bool {
    if vuln_ecosystem == pkg_ecosystem {
        return true;
    }
    match pkg_ecosystem.split_once(':') {
        Some((base, _)) => !vuln_ecosystem.contains(':') && vuln_ecosystem == base,
        None => false,
    }
}

/// The part of an ecosystem name before the release (`Debian:10` → `Debian`).
pub fn base(ecosystem: &str) -> &str {
    ecosystem.split_once(':').map_or(ecosystem, |(b, _)| b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dist(did: &str, version_id: &str, codename: &str, version: &str) -> Distribution {
        Distribution {
            did: did.into(),
            version_id: version_id.into(),
            version_code_name: codename.into(),
            version: version.into(),
            ..Default::default()
        }
    }

    #[test]
    fn distributions_map_to_osv_names() {
        assert_eq!(
            from_distribution(&dist("debian", "10", "buster", "10 (buster)")).as_deref(),
            Some("Debian:10")
        );
        assert_eq!(
            from_distribution(&dist("debian", "", "", "11 (bullseye)")).as_deref(),
            Some("Debian:11")
        );
        assert_eq!(
            from_distribution(&dist("debian", "", "bookworm", "")).as_deref(),
            Some("Debian:12")
        );
        assert_eq!(
            from_distribution(&dist("almalinux", "9.2", "", "")).as_deref(),
            Some("AlmaLinux:9")
        );
        assert_eq!(
            from_distribution(&dist("alpine", "3.18.4", "", "")).as_deref(),
            Some("Alpine:v3.18")
        );
        assert_eq!(
            from_distribution(&dist("ubuntu", "22.04", "jammy", "")).as_deref(),
            Some("Ubuntu:22.04")
        );
        assert_eq!(from_distribution(&dist("plan9", "4", "", "")), None);
    }

    #[test]
    fn repositories_and_purls_map_to_languages() {
        let r = language_repository("PyPI", "7").unwrap();
        assert_eq!(r.name, "pypi");
        assert_eq!(from_repository(&r), Some("PyPI"));
        assert_eq!(from_purl_type("golang"), Some("Go"));
        assert_eq!(from_purl_type("cargo"), Some("crates.io"));
        assert_eq!(from_purl_type("deb"), None);
    }

    #[test]
    fn bare_os_advisories_apply_to_every_release() {
        assert!(applies("Debian:10", "Debian:10"));
        assert!(applies("Debian", "Debian:10"));
        assert!(!applies("Debian:11", "Debian:10"));
        assert!(!applies("Go", "npm"));
    }
}
