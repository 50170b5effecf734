//! Cargo.lock files, lock-file versions 1 to 4 (versions 1 and 2 have no `version` key; all four
//! list `[[package]]` tables with `name`, `version` and `source`).
//!
//! Only packages from crates.io (`registry+https://github.com/rust-lang/crates.io-index` or the
//! sparse `sparse+https://index.crates.io/`) are RustSec's business. Workspace members (no
//! `source`), git dependencies and alternative registries are skipped and counted: an advisory
//! for a crates.io crate says nothing about a same-named crate from elsewhere.
use serde::Deserialize;
use tocsin_model::inventory::InventoryFormat;

use crate::error::{utf8, InventoryError};
use crate::report::{NewPackage, ReportBuilder, Target};

const F: InventoryFormat = InventoryFormat::CargoLock;

const CRATES_IO: &[&str] = &[
    "registry+https://github.com/rust-lang/crates.io-index",
    "sparse+https://index.crates.io/",
];

#[derive(Deserialize)]
struct Lock {
    version: Option<i64>,
    #[serde(default)]
    package: Vec<LockPackage>,
}

#[derive(Deserialize)]
struct LockPackage {
    name: String,
    version: String,
    source: Option<String>,
}

/// Reads a Cargo.lock into `b`.
pub(crate) fn parse(b: &mut ReportBuilder, bytes: &[u8]) -> Result<(), InventoryError> {
    let text = utf8(F, bytes)?;
    let lock: Lock = toml::from_str(text).map_err(|e| {
        let line = e.span().map_or(0, |s| {
            let upto = &text.as_bytes()[..s.start.min(text.len())];
            upto.iter().filter(|b| **b == b'\n').count() + 1
        });
        // toml's message already quotes the offending line; keep only its explanation.
        let message = e.message().trim().to_string();
        InventoryError::Line {
            format: F,
            line,
            message,
        }
    })?;
    if let Some(v) = lock.version {
        if !(1..=4).contains(&v) {
            return Err(InventoryError::Invalid {
                format: F,
                at: "version".into(),
                message: format!("lock-file version {v} is not supported (1 to 4)"),
            });
        }
    }
    for (i, p) in lock.package.into_iter().enumerate() {
        let at = format!("package[{i}]");
        if p.name.is_empty() || p.version.is_empty() {
            return Err(InventoryError::Invalid {
                format: F,
                at,
                message: "a [[package]] has an empty name or version".into(),
            });
        }
        let from_crates_io = p.source.as_deref().is_some_and(|s| {
            // Older locks may end the index URL without the trailing slash.
            CRATES_IO
                .iter()
                .any(|c| s.trim_end_matches('/') == c.trim_end_matches('/'))
        });
        if !from_crates_io {
            let reason = match p.source.as_deref() {
                None => "a workspace member or path dependency, not from crates.io".to_string(),
                Some(s) if s.starts_with("git+") => format!("a git dependency ({s})"),
                Some(s) => format!("from another registry ({s})"),
            };
            b.skip(at, format!("{} {}: {reason}", p.name, p.version));
            continue;
        }
        b.add(NewPackage {
            target: Target::Language("crates.io"),
            name: p.name,
            version: p.version,
            arch: String::new(),
            source: None,
            package_db: "Cargo.lock".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tocsin_model::inventory::installed_packages;
    use tocsin_model::Digest;

    type Triples = Vec<(String, String, String)>;

    fn run(text: &str) -> Result<(Triples, crate::ParseStats), InventoryError> {
        let d = Digest::parse(&format!("sha256:{}", "d".repeat(64))).unwrap();
        let mut b = ReportBuilder::new(&d);
        parse(&mut b, text.as_bytes())?;
        let (r, s) = b.finish();
        let p = installed_packages(&r)
            .into_iter()
            .map(|p| (p.ecosystem, p.name, p.version))
            .collect();
        Ok((p, s))
    }

    #[test]
    fn crates_io_packages_only() {
        let text = r#"
version = 4

[[package]]
name = "me"
version = "0.1.0"
dependencies = ["serde"]

[[package]]
name = "serde"
version = "1.0.200"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "00"

[[package]]
name = "tokio"
version = "1.0.0"
source = "sparse+https://index.crates.io/"

[[package]]
name = "forked"
version = "0.1.0"
source = "git+https://example.invalid/forked#abc"

[[package]]
name = "internal"
version = "0.1.0"
source = "registry+https://example.invalid/index"
"#;
        let (p, stats) = run(text).unwrap();
        assert_eq!(
            p,
            vec![
                ("crates.io".into(), "serde".into(), "1.0.200".into()),
                ("crates.io".into(), "tokio".into(), "1.0.0".into()),
            ]
        );
        assert_eq!(stats.skipped.len(), 3);
        assert!(stats.skipped[1].reason.contains("git"));
        assert!(stats.skipped[2].reason.contains("another registry"));
    }

    #[test]
    fn version_1_locks_have_metadata_and_no_version() {
        let text = "[[package]]\nname = \"libc\"\nversion = \"0.2.40\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n\n[metadata]\n\"checksum libc 0.2.40 (registry+https://github.com/rust-lang/crates.io-index)\" = \"00\"\n";
        let (p, _) = run(text).unwrap();
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn errors_name_the_line_or_key() {
        let e = run("version = 4\n\n[[package]]\nname = \"x\"\nversion = 1.0\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 5"), "{e}");
        let e = run("version = 4\n[[package]\n").unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
        let e = run("version = 9\n").unwrap_err().to_string();
        assert!(e.contains("version 9"), "{e}");
        let e = run("[[package]]\nname = \"x\"\n").unwrap_err().to_string();
        assert!(e.contains("version"), "{e}");
    }
}
