//! How an OSV ecosystem name decides a record's package kind, name spelling and presentation
//! (claircore Distribution or Repository).
use tocsin_model::claircore::{Distribution, Repository};
use tocsin_model::ecosystem;
use tocsin_model::vuln::NameKind;

/// Language ecosystems OSV defines beyond the ones `tocsin_model::ecosystem::LANGUAGES` can
/// present as a claircore Repository. Their packages are still language packages (kind Binary).
const OTHER_LANGUAGES: &[&str] = &[
    "Hex",
    "Pub",
    "Hackage",
    "CRAN",
    "Bioconductor",
    "SwiftURL",
    "ConanCenter",
    "GitHub Actions",
    "Julia",
    "opam",
    "VSCode",
];

/// OS ecosystems: (OSV base name, os-release ID, os-release NAME). Some are published without a
/// release (`Wolfi`), so the `Name:release` shape alone does not identify them.
const OPERATING_SYSTEMS: &[(&str, &str, &str)] = &[
    ("Debian", "debian", "Debian GNU/Linux"),
    ("Ubuntu", "ubuntu", "Ubuntu"),
    ("Alpine", "alpine", "Alpine Linux"),
    ("AlmaLinux", "almalinux", "AlmaLinux"),
    ("Rocky Linux", "rocky", "Rocky Linux"),
    ("Red Hat", "rhel", "Red Hat Enterprise Linux"),
    ("CentOS", "centos", "CentOS Linux"),
    ("Oracle Linux", "ol", "Oracle Linux Server"),
    ("SUSE", "sles", "SUSE Linux Enterprise Server"),
    ("openSUSE", "opensuse-leap", "openSUSE Leap"),
    ("Mageia", "mageia", "Mageia"),
    ("Photon OS", "photon", "VMware Photon OS"),
    ("openEuler", "openEuler", "openEuler"),
    ("Azure Linux", "azurelinux", "Microsoft Azure Linux"),
    ("Wolfi", "wolfi", "Wolfi"),
    ("Chainguard", "chainguard", "Chainguard"),
    ("Alpaquita", "alpaquita", "Alpaquita Linux"),
    (
        "BellSoft Hardened Containers",
        "alpaquita",
        "BellSoft Hardened Containers",
    ),
    ("Echo", "echo", "Echo"),
    ("MinimOS", "minimos", "MinimOS"),
];

/// Whether packages of `eco` are language (registry) packages.
pub(crate) fn is_language(eco: &str) -> bool {
    ecosystem::language_repository(eco, "").is_some() || OTHER_LANGUAGES.contains(&eco)
}

/// The package name as tocsin compares it. PyPI names are PEP 503-normalised because the
/// registry treats `Foo_Bar`, `foo-bar` and `foo.bar` as one project and inventories spell
/// them every way; every other ecosystem's names are used as given.
pub(crate) fn normalize_name(eco: &str, name: &str) -> String {
    if eco != "PyPI" {
        return name.to_string();
    }
    let mut out = String::with_capacity(name.len());
    let mut in_separator_run = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !in_separator_run {
                out.push('-');
            }
            in_separator_run = true;
        } else {
            out.extend(c.to_lowercase());
            in_separator_run = false;
        }
    }
    out
}

/// Whether a purl names a source package (`pkg:deb/debian/openssl?arch=source`).
pub(crate) fn purl_is_source(purl: &str) -> bool {
    let without_subpath = purl.split('#').next().unwrap_or_default();
    let Some((_, qualifiers)) = without_subpath.split_once('?') else {
        return false;
    };
    qualifiers.split('&').any(|q| {
        q.split_once('=')
            .is_some_and(|(k, v)| k.eq_ignore_ascii_case("arch") && v == "source")
    })
}

/// The name kind of an OSV package: Source when the purl says so, Binary for language
/// ecosystems, else Any (OS advisories name whichever package the distribution tracks).
pub(crate) fn osv_kind(eco: &str, purl: Option<&str>) -> NameKind {
    if purl.is_some_and(purl_is_source) {
        NameKind::Source
    } else if is_language(eco) {
        NameKind::Binary
    } else {
        NameKind::Any
    }
}

/// The repository shown for a language advisory.
pub(crate) fn language_repository(eco: &str) -> Option<Repository> {
    ecosystem::language_repository(eco, "")
}

/// The first `:`-separated segment that starts with a digit, without a leading `v`:
/// `10` → `10`, `v3.18` → `3.18`, `Pro:18.04:LTS` → `18.04`,
/// `enterprise_linux:9::appstream` → `9`.
fn release_of(rest: &str) -> String {
    rest.split(':')
        .map(|s| s.strip_prefix('v').unwrap_or(s))
        .find(|s| s.starts_with(|c: char| c.is_ascii_digit()))
        .unwrap_or_default()
        .to_string()
}

/// The claircore Distribution an OS ecosystem stands for, shaped so that
/// `tocsin_model::ecosystem::from_distribution` maps it back to the same ecosystem for the
/// distributions the model knows. `None` for language and unknown non-OS ecosystems.
pub(crate) fn os_distribution(eco: &str) -> Option<Distribution> {
    let (base, rest) = match eco.split_once(':') {
        Some((b, r)) => (b, Some(r)),
        None => (eco, None),
    };
    let known = OPERATING_SYSTEMS.iter().find(|o| o.0 == base);
    let (did, name) = match (known, rest) {
        (Some(&(_, did, name)), _) => (did.to_string(), name.to_string()),
        // An OS we do not know by name still reads `Name:release`.
        (None, Some(_)) if !is_language(eco) => (
            base.to_ascii_lowercase().replace(' ', "-"),
            base.to_string(),
        ),
        _ => return None,
    };
    let version_id = rest.map(release_of).unwrap_or_default();
    let pretty_name = match (version_id.is_empty(), base) {
        (true, _) => name.clone(),
        (false, "Alpine") => format!("{name} v{version_id}"),
        (false, _) => format!("{name} {version_id}"),
    };
    Some(Distribution {
        did,
        name,
        version_id,
        pretty_name,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pep503() {
        assert_eq!(
            normalize_name("PyPI", "Foo__Bar.baz-Qux"),
            "foo-bar-baz-qux"
        );
        assert_eq!(normalize_name("PyPI", "zope.interface"), "zope-interface");
        assert_eq!(normalize_name("PyPI", "a-._b"), "a-b");
        assert_eq!(
            normalize_name("Go", "github.com/Foo/Bar"),
            "github.com/Foo/Bar"
        );
        assert_eq!(normalize_name("crates.io", "foo_bar"), "foo_bar");
    }

    #[test]
    fn kinds() {
        assert_eq!(
            osv_kind("Debian:6", Some("pkg:deb/debian/gnutls26?arch=source")),
            NameKind::Source
        );
        assert_eq!(
            osv_kind(
                "Ubuntu:22.04:LTS",
                Some("pkg:deb/ubuntu/openssl@3.0?arch=source&distro=jammy")
            ),
            NameKind::Source
        );
        assert_eq!(osv_kind("Debian:11", None), NameKind::Any);
        assert_eq!(
            osv_kind("Debian:11", Some("pkg:deb/debian/libssl3?arch=amd64")),
            NameKind::Any
        );
        assert_eq!(osv_kind("AlmaLinux:9", None), NameKind::Any);
        assert_eq!(osv_kind("Go", None), NameKind::Binary);
        assert_eq!(osv_kind("Hex", Some("pkg:hex/plug")), NameKind::Binary);
        assert_eq!(osv_kind("Linux", None), NameKind::Any);
    }

    #[test]
    fn distributions_round_trip_through_the_model() {
        for eco in [
            "Debian:10",
            "Debian:7",
            "Ubuntu:22.04",
            "AlmaLinux:9",
            "Alpine:v3.18",
            "Rocky Linux:8",
            "Red Hat:9",
        ] {
            let d = match os_distribution(eco) {
                Some(d) => d,
                None => panic!("{eco} has no distribution"),
            };
            assert_eq!(
                ecosystem::from_distribution(&d).as_deref(),
                Some(eco),
                "{eco}: {d:?}"
            );
        }
        let d = os_distribution("Debian:10").unwrap_or_default();
        assert_eq!(d.did, "debian");
        assert_eq!(d.name, "Debian GNU/Linux");
        assert_eq!(d.pretty_name, "Debian GNU/Linux 10");
        assert_eq!(d.version, "");
        let d = os_distribution("Alpine:v3.18").unwrap_or_default();
        assert_eq!(
            (d.version_id.as_str(), d.pretty_name.as_str()),
            ("3.18", "Alpine Linux v3.18")
        );
        let d = os_distribution("Ubuntu:Pro:18.04:LTS").unwrap_or_default();
        assert_eq!(d.version_id, "18.04");
        let d = os_distribution("Red Hat:enterprise_linux:9::appstream").unwrap_or_default();
        assert_eq!(d.version_id, "9");
        let d = os_distribution("Wolfi").unwrap_or_default();
        assert_eq!((d.did.as_str(), d.version_id.as_str()), ("wolfi", ""));
        let d = os_distribution("Plan9OS:4").unwrap_or_default();
        assert_eq!((d.did.as_str(), d.version_id.as_str()), ("plan9os", "4"));
    }

    #[test]
    fn language_and_unknown_ecosystems_have_no_distribution() {
        assert!(os_distribution("Go").is_none());
        assert!(os_distribution("PyPI").is_none());
        assert!(os_distribution("Linux").is_none());
        assert!(language_repository("PyPI").is_some());
        assert!(language_repository("Hex").is_none());
    }
}
