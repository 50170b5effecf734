//! Distributions: from a caller's hint (`debian:12`, `ubuntu:jammy`, os-release text) or from a
//! purl's `distro` qualifier and namespace, to a claircore [`Distribution`] whose ecosystem
//! [`tocsin_model::ecosystem::from_distribution`] recognises.
//!
//! The Distribution is filled the way claircore fills it from os-release (`Debian GNU/Linux`,
//! `10 (buster)`, …) so reports we build look like the ones Clair builds.
use tocsin_model::claircore::Distribution;
use tocsin_model::ecosystem;

/// Debian and Ubuntu code names, needed both ways (`bookworm` ↔ `12`).
const CODENAMES: &[(&str, &str, &str)] = &[
    ("debian", "7", "wheezy"),
    ("debian", "8", "jessie"),
    ("debian", "9", "stretch"),
    ("debian", "10", "buster"),
    ("debian", "11", "bullseye"),
    ("debian", "12", "bookworm"),
    ("debian", "13", "trixie"),
    ("debian", "14", "forky"),
    ("ubuntu", "14.04", "trusty"),
    ("ubuntu", "16.04", "xenial"),
    ("ubuntu", "18.04", "bionic"),
    ("ubuntu", "20.04", "focal"),
    ("ubuntu", "22.04", "jammy"),
    ("ubuntu", "23.04", "lunar"),
    ("ubuntu", "23.10", "mantic"),
    ("ubuntu", "24.04", "noble"),
    ("ubuntu", "24.10", "oracular"),
    ("ubuntu", "25.04", "plucky"),
];

/// os-release `NAME`s of the distributions tocsin knows, used when only `ID` is at hand.
const NAMES: &[(&str, &str)] = &[
    ("debian", "Debian GNU/Linux"),
    ("ubuntu", "Ubuntu"),
    ("alpine", "Alpine Linux"),
    ("almalinux", "AlmaLinux"),
    ("rocky", "Rocky Linux"),
    ("rhel", "Red Hat Enterprise Linux"),
    ("centos", "CentOS Linux"),
    ("ol", "Oracle Linux Server"),
    ("sles", "SUSE Linux Enterprise Server"),
    ("opensuse-leap", "openSUSE Leap"),
];

/// The os-release `ID` for the spellings found in purl namespaces and by hand.
fn canonical_id(id: &str) -> String {
    let id = id.trim().to_ascii_lowercase();
    match id.as_str() {
        "redhat" | "red hat" => "rhel".into(),
        "oracle" | "oraclelinux" => "ol".into(),
        "alma" => "almalinux".into(),
        "rockylinux" => "rocky".into(),
        "opensuse" => "opensuse-leap".into(),
        "suse" => "sles".into(),
        _ => id,
    }
}

fn codename_to_version(codename: &str) -> Option<(&'static str, &'static str, &'static str)> {
    let c = codename.to_ascii_lowercase();
    CODENAMES.iter().find(|e| e.2 == c).copied()
}

fn version_to_codename(id: &str, version_id: &str) -> Option<&'static str> {
    CODENAMES
        .iter()
        .find(|e| e.0 == id && e.1 == version_id)
        .map(|e| e.2)
}

/// Builds a Distribution from an os-release `ID` and a version id or code name, filling the other
/// fields as os-release would. `None` when the result is not a distribution advisories exist for.
pub(crate) fn known(id: &str, version_or_codename: &str) -> Option<Distribution> {
    let id = canonical_id(id);
    let v = version_or_codename.trim();
    let (mut version_id, mut codename) = if v.starts_with(|c: char| c.is_ascii_digit()) {
        if !v.chars().all(|c| c.is_ascii_digit() || c == '.') {
            return None;
        }
        (v.to_string(), String::new())
    } else {
        let (did, release, name) = codename_to_version(v)?;
        if did != id {
            return None;
        }
        (release.to_string(), name.to_string())
    };
    if id == "debian" {
        // Debian's os-release VERSION_ID is the major release alone.
        version_id = version_id.split('.').next().unwrap_or("").to_string();
    }
    if codename.is_empty() {
        codename = version_to_codename(&id, &version_id)
            .unwrap_or("")
            .to_string();
    }
    let name = NAMES
        .iter()
        .find(|n| n.0 == id)
        .map_or(id.as_str(), |n| n.1)
        .to_string();
    let version = if codename.is_empty() {
        version_id.clone()
    } else {
        format!("{version_id} ({codename})")
    };
    let pretty_name = match id.as_str() {
        "alpine" => {
            let mut parts = version_id.split('.');
            let short = match (parts.next(), parts.next()) {
                (Some(a), Some(b)) => format!("{a}.{b}"),
                _ => version_id.clone(),
            };
            format!("{name} v{short}")
        }
        _ => format!("{name} {version}"),
    };
    let d = Distribution {
        id: String::new(),
        did: id,
        name,
        version,
        version_code_name: codename,
        version_id,
        arch: String::new(),
        cpe: String::new(),
        pretty_name,
    };
    ecosystem::from_distribution(&d).map(|_| d)
}

/// The list of distribution ids accepted, for error messages.
fn known_ids() -> String {
    NAMES.iter().map(|n| n.0).collect::<Vec<_>>().join(", ")
}

/// Parses the caller's distribution hint: `ID:VERSION` (`debian:12`, `debian:bookworm`,
/// `ubuntu:22.04`, `alpine:3.18`) or the text of an os-release file.
pub(crate) fn from_hint(hint: &str) -> Result<Distribution, crate::InventoryError> {
    let bad = |reason: String| crate::InventoryError::BadDistribution {
        given: hint.to_string(),
        reason,
    };
    if hint.contains('=') {
        return from_os_release(hint).map_err(bad);
    }
    let (id, version) = hint.trim().split_once(':').ok_or_else(|| {
        bad("expected ID:VERSION (e.g. \"debian:12\", \"ubuntu:22.04\") or os-release text".into())
    })?;
    if id.trim().is_empty() || version.trim().is_empty() {
        return Err(bad(
            "expected ID:VERSION with both parts non-empty (e.g. \"debian:12\")".into(),
        ));
    }
    known(id, version).ok_or_else(|| {
        bad(format!(
            "not a distribution release tocsin has advisories for (known ids: {}; the version is a release number or, for Debian and Ubuntu, a code name)",
            known_ids()
        ))
    })
}

/// Reads os-release `KEY=value` lines (values optionally quoted, shell escapes honoured).
fn from_os_release(text: &str) -> Result<Distribution, String> {
    let mut d = Distribution::default();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| format!("os-release line {}: expected KEY=value", n + 1))?;
        let value = unquote(value.trim());
        match key.trim() {
            "ID" => d.did = value.to_ascii_lowercase(),
            "NAME" => d.name = value,
            "VERSION" => d.version = value,
            "VERSION_ID" => d.version_id = value,
            "VERSION_CODENAME" => d.version_code_name = value,
            "PRETTY_NAME" => d.pretty_name = value,
            "CPE_NAME" => d.cpe = value,
            _ => {}
        }
    }
    if d.did.is_empty() {
        return Err("os-release text has no ID= line".into());
    }
    d.did = canonical_id(&d.did);
    // Fill what the file left out from our defaults (testing releases lack VERSION_ID, etc.).
    let release = if d.version_id.is_empty() {
        d.version_code_name.clone()
    } else {
        d.version_id.clone()
    };
    if let Some(defaults) = known(&d.did, &release) {
        for (field, default) in [
            (&mut d.name, defaults.name),
            (&mut d.version, defaults.version),
            (&mut d.version_code_name, defaults.version_code_name),
            (&mut d.pretty_name, defaults.pretty_name),
        ] {
            if field.is_empty() {
                *field = default;
            }
        }
        if d.version_id.is_empty() && d.did != "debian" {
            d.version_id = defaults.version_id;
        }
    }
    if ecosystem::from_distribution(&d).is_none() {
        return Err(format!(
            "os-release ID={:?} VERSION_ID={:?} is not a distribution release tocsin has advisories for (known ids: {})",
            d.did,
            d.version_id,
            known_ids()
        ));
    }
    Ok(d)
}

fn unquote(v: &str) -> String {
    let inner = if v.len() >= 2
        && ((v.starts_with('"') && v.ends_with('"')) || (v.starts_with('\'') && v.ends_with('\'')))
    {
        &v[1..v.len() - 1]
    } else {
        v
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The distribution a purl's `distro` qualifier and namespace name, e.g. (`debian`, `debian-10`),
/// (`debian`, `bookworm`), (`alpine`, `alpine-3.18.4`), (`redhat`, `rhel-8.6`), (`debian`, `10`).
pub(crate) fn from_purl(namespace: &str, distro: &str) -> Option<Distribution> {
    let distro = distro.trim();
    if let Some((id, version)) = distro.split_once(':') {
        return known(id, version);
    }
    if let Some((id, version)) = distro.rsplit_once('-') {
        if version.starts_with(|c: char| c.is_ascii_digit()) {
            return known(id, version);
        }
    }
    if let Some((did, _, _)) = codename_to_version(distro) {
        return known(did, distro);
    }
    if distro.starts_with(|c: char| c.is_ascii_digit()) && !namespace.is_empty() {
        return known(namespace, distro);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eco(d: &Distribution) -> String {
        ecosystem::from_distribution(d).unwrap()
    }

    #[test]
    fn hints_name_releases_or_code_names() {
        let d = from_hint("debian:12").unwrap();
        assert_eq!(eco(&d), "Debian:12");
        assert_eq!(d.version_code_name, "bookworm");
        assert_eq!(d.version, "12 (bookworm)");
        assert_eq!(d.pretty_name, "Debian GNU/Linux 12 (bookworm)");
        assert_eq!(d.name, "Debian GNU/Linux");
        assert_eq!(from_hint("debian:bookworm").unwrap(), d);
        assert_eq!(eco(&from_hint("ubuntu:22.04").unwrap()), "Ubuntu:22.04");
        assert_eq!(eco(&from_hint("ubuntu:jammy").unwrap()), "Ubuntu:22.04");
        let a = from_hint("alpine:3.18.4").unwrap();
        assert_eq!(eco(&a), "Alpine:v3.18");
        assert_eq!(a.pretty_name, "Alpine Linux v3.18");
        assert_eq!(eco(&from_hint("redhat:8").unwrap()), "Red Hat:8");
    }

    #[test]
    fn bad_hints_say_what_is_wrong() {
        let e = from_hint("debian").unwrap_err().to_string();
        assert!(e.contains("ID:VERSION"), "{e}");
        let e = from_hint("plan9:4").unwrap_err().to_string();
        assert!(e.contains("known ids"), "{e}");
        // A Debian code name given for Ubuntu is a mistake, not Debian.
        assert!(from_hint("ubuntu:bookworm").is_err());
        assert!(from_hint("debian:").is_err());
    }

    #[test]
    fn os_release_text() {
        let text = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\nHOME_URL=\"https://www.debian.org/\"\n";
        let d = from_hint(text).unwrap();
        assert_eq!(d, from_hint("debian:12").unwrap());
        let testing = from_hint("ID=debian\nVERSION_CODENAME=trixie\n").unwrap();
        assert_eq!(eco(&testing), "Debian:13");
        let e = from_hint("NAME=x\nVERSION_ID=1\n").unwrap_err().to_string();
        assert!(e.contains("no ID="), "{e}");
        let e = from_hint("ID=plan9\nVERSION_ID=4\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("plan9"), "{e}");
        let e = from_hint("ID=debian\nVERSION_ID=12\ngarbage\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3"), "{e}");
    }

    #[test]
    fn purl_distro_qualifiers() {
        let cases = [
            ("debian", "debian-10", "Debian:10"),
            ("debian", "bookworm", "Debian:12"),
            ("debian", "10", "Debian:10"),
            ("alpine", "alpine-3.18", "Alpine:v3.18"),
            ("almalinux", "almalinux-9.2", "AlmaLinux:9"),
            ("redhat", "rhel-8.6", "Red Hat:8"),
            ("ubuntu", "ubuntu-22.04", "Ubuntu:22.04"),
            ("opensuse", "opensuse-leap-15.4", "openSUSE:15.4"),
        ];
        for (ns, q, want) in cases {
            let d = from_purl(ns, q).unwrap_or_else(|| panic!("{ns} {q}"));
            assert_eq!(eco(&d), want, "{ns} {q}");
        }
        assert!(from_purl("debian", "sid-ish").is_none());
        assert!(from_purl("", "10").is_none());
    }
}
