//! pip requirements files and `pip freeze` / `pip list --format=freeze` output.
//!
//! An inventory says what IS installed, so only requirements pinned to one exact version
//! (`name==1.2.3`, or arbitrary equality `name===1.2.3`) become packages. A requirement with a
//! range (`requests>=2`), a wildcard (`==2.*`), a direct URL (`name @ https://…`) or an editable
//! install (`-e …`) names no single version and cannot be matched exactly: it is skipped and
//! counted, as are option lines (`-r other.txt` includes are not followed: the file is read alone).
//! Extras (`name[security]`) and environment markers (`; python_version < "3.12"`) are dropped;
//! names are PEP 503-normalised, as PyPA advisories name packages.
use tocsin_model::inventory::InventoryFormat;

use crate::error::{utf8, InventoryError};
use crate::report::{NewPackage, ReportBuilder, Target};
use crate::sbom::pep503;

const F: InventoryFormat = InventoryFormat::Pip;

const OPERATORS: &[&str] = &["===", "~=", "==", "!=", "<=", ">=", "<", ">"];

/// What one logical line says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line {
    /// A name pinned to one version.
    Pinned { name: String, version: String },
    /// A valid line that names no single installed version; the reason.
    Unpinned(String),
}

fn line_error(line: usize, message: String) -> InventoryError {
    InventoryError::Line {
        format: F,
        line,
        message,
    }
}

/// Removes a `#` comment: at the line start or after white space (a `#` inside a URL fragment,
/// `…#egg=x`, is not a comment).
fn strip_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'#' && (i == 0 || bytes[i - 1].is_ascii_whitespace()) {
            return &line[..i];
        }
    }
    line
}

/// Reads one logical, comment-free, non-blank line. `Err` holds the reason it is malformed.
pub(crate) fn parse_line(line: &str) -> Result<Line, String> {
    let line = line.trim();
    if line.starts_with('-') {
        let option = line.split_whitespace().next().unwrap_or(line);
        return Ok(Line::Unpinned(match option {
            "-e" | "--editable" => "an editable install names no version".into(),
            "-r" | "--requirement" | "-c" | "--constraint" => {
                format!("{option} includes another file, which is not followed")
            }
            _ => format!("option line {option} is not a package"),
        }));
    }
    // Per-requirement options (`--hash=…`) follow the requirement after white space.
    let mut spec = line;
    if let Some(i) = spec.find(" --").or_else(|| spec.find("\t--")) {
        spec = &spec[..i];
    }
    let spec = spec.split(';').next().unwrap_or("").trim();
    let name_len = spec
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        .unwrap_or(spec.len());
    let name = &spec[..name_len];
    let valid_name = !name.is_empty()
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !valid_name {
        return Err(format!(
            "{line:?} is not a requirement (expected `name==version`)"
        ));
    }
    let mut rest = spec[name_len..].trim_start();
    if let Some(extras) = rest.strip_prefix('[') {
        let close = extras
            .find(']')
            .ok_or_else(|| format!("{line:?}: extras `[` is not closed"))?;
        rest = extras[close + 1..].trim_start();
    }
    if rest.starts_with('@') {
        return Ok(Line::Unpinned(format!(
            "{name}: a direct URL reference names no version"
        )));
    }
    let rest = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or(rest)
        .trim();
    if rest.is_empty() {
        return Ok(Line::Unpinned(format!("{name}: no version is pinned")));
    }
    let clauses: Vec<&str> = rest.split(',').map(str::trim).collect();
    let mut pinned = None;
    for clause in &clauses {
        let op = OPERATORS
            .iter()
            .find(|op| clause.starts_with(**op))
            .ok_or_else(|| {
                format!("{line:?}: {clause:?} is not a version specifier (==, ===, >=, …)")
            })?;
        let version = clause[op.len()..].trim();
        if version.is_empty() || version.contains(char::is_whitespace) {
            return Err(format!("{line:?}: {clause:?} has no valid version"));
        }
        if matches!(*op, "==" | "===") {
            pinned = Some(version);
        }
    }
    match pinned {
        Some(v) if clauses.len() == 1 && !v.ends_with(".*") => Ok(Line::Pinned {
            name: pep503(name),
            version: v.to_string(),
        }),
        _ => Ok(Line::Unpinned(format!(
            "{name}: {rest:?} is not one exact version"
        ))),
    }
}

/// The logical lines of a requirements file: (first physical line number, text), with
/// backslash continuations joined and comments and blank lines removed.
pub(crate) fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let (start, mut joined) = pending.take().unwrap_or((i + 1, String::new()));
        if let Some(head) = raw.strip_suffix('\\') {
            joined.push_str(head);
            pending = Some((start, joined));
            continue;
        }
        joined.push_str(raw);
        let line = strip_comment(&joined).trim();
        if !line.is_empty() {
            out.push((start, line.to_string()));
        }
    }
    if let Some((start, joined)) = pending {
        let line = strip_comment(&joined).trim();
        if !line.is_empty() {
            out.push((start, line.to_string()));
        }
    }
    out
}

/// Reads a requirements / freeze list into `b`.
pub(crate) fn parse(b: &mut ReportBuilder, bytes: &[u8]) -> Result<(), InventoryError> {
    let text = utf8(F, bytes)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (n, line) in logical_lines(text) {
        match parse_line(&line).map_err(|m| line_error(n, m))? {
            Line::Pinned { name, version } => b.add(NewPackage {
                target: Target::Language("PyPI"),
                name,
                version,
                arch: String::new(),
                source: None,
                package_db: "requirements.txt".into(),
            }),
            Line::Unpinned(reason) => b.skip(format!("line {n}"), reason),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pinned(name: &str, version: &str) -> Result<Line, String> {
        Ok(Line::Pinned {
            name: name.into(),
            version: version.into(),
        })
    }

    #[test]
    fn pinned_forms() {
        assert_eq!(parse_line("Flask==3.1.3"), pinned("flask", "3.1.3"));
        assert_eq!(
            parse_line("typing_extensions == 4.15.0"),
            pinned("typing-extensions", "4.15.0")
        );
        assert_eq!(
            parse_line("requests[security,socks]==2.31.0"),
            pinned("requests", "2.31.0")
        );
        assert_eq!(
            parse_line("pywin32==306; sys_platform == \"win32\""),
            pinned("pywin32", "306")
        );
        assert_eq!(parse_line("odd===1.0-custom"), pinned("odd", "1.0-custom"));
        assert_eq!(
            parse_line("attrs==26.1.0 --hash=sha256:00 --hash=sha256:11"),
            pinned("attrs", "26.1.0")
        );
        assert_eq!(parse_line("old (==1.0)"), pinned("old", "1.0"));
    }

    #[test]
    fn unpinned_forms_are_skipped_with_a_reason() {
        for l in [
            "requests>=2.0",
            "requests>=2.0,<3",
            "requests==2.*",
            "requests==2.0,!=2.0.1",
            "requests",
            "pkg @ https://example.invalid/pkg.whl",
            "-r other.txt",
            "-e git+https://example.invalid/x.git#egg=x",
            "--index-url https://example.invalid/simple",
        ] {
            assert!(matches!(parse_line(l), Ok(Line::Unpinned(_))), "{l}");
        }
    }

    #[test]
    fn garbage_is_an_error() {
        for l in [
            "==1.0",
            "hello world",
            "x[extra==1",
            "x ?= 1",
            "x==",
            "_x==1",
        ] {
            assert!(parse_line(l).is_err(), "{l}");
        }
    }

    #[test]
    fn logical_lines_join_continuations_and_drop_comments() {
        let text = "# header\n\nsix==1.17.0  # pinned\nattrs==26.1.0 \\\n    --hash=sha256:00\r\nx==1#not-a-comment\n";
        assert_eq!(
            logical_lines(text),
            vec![
                (3, "six==1.17.0".to_string()),
                (4, "attrs==26.1.0     --hash=sha256:00".to_string()),
                (6, "x==1#not-a-comment".to_string()),
            ]
        );
    }

    #[test]
    fn errors_carry_line_numbers() {
        let d = tocsin_model::Digest::parse(&format!("sha256:{}", "e".repeat(64))).unwrap();
        let mut b = ReportBuilder::new(&d);
        let e = parse(&mut b, b"six==1.0\n\nnot a requirement\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3"), "{e}");
    }
}
