//! dpkg status files (`/var/lib/dpkg/status`): deb822 paragraphs, one per package dpkg knows of.
//!
//! Only packages whose files are on disk count: `Status` with error flag `ok` and state
//! `installed` (so `hold ok installed` and `deinstall ok installed` are kept too — their files
//! are still there). Half-installed, config-files-only and purged entries are skipped and counted.
//! A missing `Source` means the source package has the binary's name (Debian policy); a `Source`
//! without a version means the binary's version.
use tocsin_model::claircore::Distribution;
use tocsin_model::inventory::InventoryFormat;

use crate::error::InventoryError;
use crate::report::{NewPackage, ReportBuilder, Target};

const F: InventoryFormat = InventoryFormat::DpkgStatus;

/// Where claircore records dpkg packages as found.
const PACKAGE_DB: &str = "var/lib/dpkg/status";

/// One paragraph's fields, with the line each started on.
struct Paragraph {
    first_line: usize,
    fields: Vec<(String, String, usize)>,
}

impl Paragraph {
    fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|f| f.0.eq_ignore_ascii_case(name))
            .map(|f| f.1.as_str())
    }
}

fn line_error(line: usize, message: String) -> InventoryError {
    InventoryError::Line {
        format: F,
        line,
        message,
    }
}

/// Splits deb822 text into paragraphs. Field values keep only their first line: continuation
/// lines (descriptions, conffiles) never matter for the fields read here.
fn paragraphs(text: &str) -> Result<Vec<Paragraph>, InventoryError> {
    let mut out = Vec::new();
    let mut current: Option<Paragraph> = None;
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.trim().is_empty() {
            out.extend(current.take());
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if current.is_none() {
                return Err(line_error(
                    n,
                    "continuation line (starting with white space) outside any field".into(),
                ));
            }
            continue;
        }
        if line.starts_with('#') {
            // deb822 allows comment lines; dpkg never writes them, but hand-made fixtures may.
            continue;
        }
        let (name, value) = line.split_once(':').ok_or_else(|| {
            line_error(
                n,
                format!("expected `Field: value` or a continuation line, found {line:?}"),
            )
        })?;
        let name = name.trim();
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(line_error(n, format!("invalid field name {name:?}")));
        }
        current
            .get_or_insert_with(|| Paragraph {
                first_line: n,
                fields: Vec::new(),
            })
            .fields
            .push((name.to_string(), value.trim().to_string(), n));
    }
    out.extend(current);
    Ok(out)
}

/// `Source: name` or `Source: name (version)`.
fn parse_source(
    value: &str,
    binary_version: &str,
    line: usize,
) -> Result<(String, String), InventoryError> {
    match value.split_once('(') {
        None => Ok((value.trim().to_string(), binary_version.to_string())),
        Some((name, rest)) => {
            let version = rest
                .trim()
                .strip_suffix(')')
                .map(str::trim)
                .filter(|v| !v.is_empty() && !v.contains(char::is_whitespace))
                .ok_or_else(|| {
                    line_error(
                        line,
                        format!("Source {value:?} is not `name` or `name (version)`"),
                    )
                })?;
            let name = name.trim();
            if name.is_empty() {
                return Err(line_error(line, format!("Source {value:?} has no name")));
            }
            Ok((name.to_string(), version.to_string()))
        }
    }
}

/// Reads a dpkg status file into `b`, every package belonging to `distribution`.
pub(crate) fn parse(
    b: &mut ReportBuilder,
    bytes: &[u8],
    distribution: &Distribution,
) -> Result<(), InventoryError> {
    // Old status files can carry Latin-1 in descriptions; only ASCII fields are read, so decode
    // leniently rather than reject the whole file for a maintainer's name.
    let text = String::from_utf8_lossy(bytes);
    for p in paragraphs(&text)? {
        let at = p.first_line;
        let package = p.get("Package").filter(|v| !v.is_empty()).ok_or_else(|| {
            line_error(
                at,
                "the paragraph starting here has no Package field".into(),
            )
        })?;
        let status = p.get("Status").unwrap_or("");
        let words: Vec<&str> = status.split_whitespace().collect();
        let installed = words.len() == 3 && words[1] == "ok" && words[2] == "installed";
        if !installed {
            b.skip(
                format!("line {at}"),
                format!("{package}: Status {status:?} is not an installed package"),
            );
            continue;
        }
        let version = p.get("Version").filter(|v| !v.is_empty()).ok_or_else(|| {
            line_error(
                at,
                format!(
                    "installed package {package:?} (paragraph starting here) has no Version field"
                ),
            )
        })?;
        if version.contains(char::is_whitespace) {
            return Err(line_error(
                at,
                format!("package {package:?} has a Version with white space: {version:?}"),
            ));
        }
        let source = match p.fields.iter().find(|f| f.0.eq_ignore_ascii_case("Source")) {
            Some((_, value, line)) if !value.is_empty() => {
                Some(parse_source(value, version, *line)?)
            }
            _ => None,
        };
        b.add(NewPackage {
            target: Target::Os(distribution.clone()),
            name: package.to_string(),
            version: version.to_string(),
            arch: p.get("Architecture").unwrap_or("").to_string(),
            source,
            package_db: PACKAGE_DB.into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tocsin_model::inventory::installed_packages;
    use tocsin_model::Digest;

    fn run(
        text: &str,
    ) -> Result<
        (
            Vec<tocsin_model::inventory::InstalledPackage>,
            crate::ParseStats,
        ),
        InventoryError,
    > {
        let d = Digest::parse(&format!("sha256:{}", "c".repeat(64))).unwrap();
        let mut b = ReportBuilder::new(&d);
        parse(
            &mut b,
            text.as_bytes(),
            &crate::distro::known("debian", "12").unwrap(),
        )?;
        let (r, s) = b.finish();
        Ok((installed_packages(&r), s))
    }

    #[test]
    fn keeps_installed_packages_with_sources() {
        let text = "Package: libc6\r\nStatus: install ok installed\r\nArchitecture: amd64\r\nSource: glibc\r\nVersion: 2.36-9+deb12u4\r\nDescription: GNU C Library\r\n shared libraries\r\n .\r\n\r\n\
Package: bash\nStatus: hold ok installed\nVersion: 5.2.15-2+b2\nSource: bash (5.2.15-2)\nArchitecture: amd64\n\n\n\
Package: gone\nStatus: deinstall ok config-files\nVersion: 1.0\n\n\
Package: purged\nStatus: purge ok not-installed\n\n\
package: lower\nstatus: install ok installed\nversion: 1:2.0\n";
        let (pkgs, stats) = run(text).unwrap();
        let got: Vec<(&str, &str, Option<&str>, &str)> = pkgs
            .iter()
            .map(|p| {
                (
                    p.name.as_str(),
                    p.version.as_str(),
                    p.source_name.as_deref(),
                    p.ecosystem.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("bash", "5.2.15-2+b2", None, "Debian:12"),
                ("libc6", "2.36-9+deb12u4", Some("glibc"), "Debian:12"),
                ("lower", "1:2.0", None, "Debian:12"),
            ]
        );
        assert_eq!(stats.skipped.len(), 2);
        assert_eq!(stats.skipped[0].at, "line 17");
    }

    #[test]
    fn source_versions() {
        assert_eq!(
            parse_source("bash (5.2.15-2)", "5.2.15-2+b2", 1).unwrap(),
            ("bash".to_string(), "5.2.15-2".to_string())
        );
        assert_eq!(
            parse_source("glibc", "2.36", 1).unwrap(),
            ("glibc".to_string(), "2.36".to_string())
        );
        assert!(parse_source("bash (5.2", "1", 7)
            .unwrap_err()
            .to_string()
            .contains("line 7"));
        assert!(parse_source("(1.0)", "1", 7).is_err());
    }

    #[test]
    fn malformed_paragraphs_name_their_line() {
        let e = run("Package: a\nStatus: install ok installed\nVersion: 1\n\nStatus: install ok installed\nVersion: 2\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 5") && e.contains("no Package"), "{e}");
        let e = run("Package: a\nStatus: install ok installed\nArchitecture: all\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 1") && e.contains("no Version"), "{e}");
        let e = run(" leading continuation\n").unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("continuation"), "{e}");
        let e = run("Package: a\nthis is not a field\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2"), "{e}");
    }
}
