//! A small package-URL (purl) parser, following the purl specification's parsing rules
//! (`pkg:type/namespace/name@version?qualifiers#subpath`, right-to-left splitting, percent
//! decoding of every component).
//!
//! Written here rather than taken from the `packageurl` crate because that crate's current release
//! needs a newer Rust than the workspace's MSRV, and all tocsin needs is the split into components
//! plus precise error reasons; ecosystem-specific meaning is applied in [`crate::sbom`].
use std::collections::BTreeMap;

/// Why a string is not a valid package URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PurlError {
    /// The `pkg:` scheme is missing.
    #[error("it does not start with the `pkg:` scheme")]
    NoScheme,
    /// The type is empty or has characters the spec does not allow.
    #[error("type {0:?} is invalid (letters, digits, `.`, `+`, `-`; not starting with a digit)")]
    BadType(String),
    /// Nothing follows the type.
    #[error("the package name is missing")]
    NoName,
    /// A `%` escape is not two hex digits, or decodes to invalid UTF-8.
    #[error("bad percent-encoding in {0:?}")]
    BadEncoding(String),
    /// A qualifier is not `key=value` or its key is invalid.
    #[error("qualifier {0:?} is not key=value with a valid key")]
    BadQualifier(String),
    /// The type requires a namespace that is missing (e.g. Maven's group).
    #[error("a {0} package URL needs a namespace")]
    NoNamespace(String),
}

/// A parsed package URL, every component percent-decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purl {
    /// Lower-cased type, e.g. `golang`, `deb`.
    pub ty: String,
    /// Namespace segments joined with `/` (empty when absent).
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Version, when present.
    pub version: Option<String>,
    /// Qualifiers with lower-cased keys; empty values are dropped as the spec says.
    pub qualifiers: BTreeMap<String, String>,
    /// Subpath, when present.
    pub subpath: Option<String>,
}

impl Purl {
    /// Parses a package URL.
    pub fn parse(s: &str) -> Result<Purl, PurlError> {
        let s = s.trim();
        let (rest, subpath) = match s.rsplit_once('#') {
            Some((r, sp)) => {
                let segs: Vec<String> = sp
                    .split('/')
                    .filter(|seg| !seg.is_empty() && *seg != "." && *seg != "..")
                    .map(percent_decode)
                    .collect::<Result<_, _>>()?;
                (r, (!segs.is_empty()).then(|| segs.join("/")))
            }
            None => (s, None),
        };
        let (rest, qualifiers) = match rest.rsplit_once('?') {
            Some((r, q)) => (r, parse_qualifiers(q)?),
            None => (rest, BTreeMap::new()),
        };
        let (scheme, rest) = rest.split_once(':').ok_or(PurlError::NoScheme)?;
        if !scheme.eq_ignore_ascii_case("pkg") {
            return Err(PurlError::NoScheme);
        }
        let rest = rest.trim_start_matches('/');
        let (ty, rest) = rest.split_once('/').ok_or(PurlError::NoName)?;
        let ty = ty.to_ascii_lowercase();
        let valid_type = !ty.is_empty()
            && !ty.starts_with(|c: char| c.is_ascii_digit())
            && ty
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-'));
        if !valid_type {
            return Err(PurlError::BadType(ty));
        }
        let rest = rest.trim_matches('/');
        // The version separator is the last `@` after the last `/`: an unencoded npm scope
        // (`@angular/core`) must not be mistaken for it.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (path, version) = match rest[last_slash..].rfind('@') {
            Some(i) => {
                let at = last_slash + i;
                (&rest[..at], Some(percent_decode(&rest[at + 1..])?))
            }
            None => (rest, None),
        };
        let version = version.filter(|v| !v.is_empty());
        let mut segments: Vec<String> = path
            .split('/')
            .filter(|seg| !seg.is_empty())
            .map(percent_decode)
            .collect::<Result<_, _>>()?;
        let name = segments.pop().ok_or(PurlError::NoName)?;
        if name.is_empty() {
            return Err(PurlError::NoName);
        }
        Ok(Purl {
            ty,
            namespace: segments.join("/"),
            name,
            version,
            qualifiers,
            subpath,
        })
    }

    /// A qualifier's value, by lower-case key.
    pub fn qualifier(&self, key: &str) -> Option<&str> {
        self.qualifiers.get(key).map(String::as_str)
    }
}

fn parse_qualifiers(q: &str) -> Result<BTreeMap<String, String>, PurlError> {
    let mut out = BTreeMap::new();
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| PurlError::BadQualifier(pair.to_string()))?;
        let key = k.to_ascii_lowercase();
        let valid_key = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
        if !valid_key {
            return Err(PurlError::BadQualifier(pair.to_string()));
        }
        let value = percent_decode(v)?;
        if !value.is_empty() {
            out.insert(key, value);
        }
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Result<String, PurlError> {
    if !s.contains('%') {
        return Ok(s.to_string());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| PurlError::BadEncoding(s.to_string()))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| PurlError::BadEncoding(s.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_component() {
        let p = Purl::parse(
            "pkg:deb/debian/libssl1.1@1.1.1n-0%2Bdeb10u3?arch=amd64&distro=debian-10&upstream=openssl#sub/path",
        )
        .unwrap();
        assert_eq!(p.ty, "deb");
        assert_eq!(p.namespace, "debian");
        assert_eq!(p.name, "libssl1.1");
        assert_eq!(p.version.as_deref(), Some("1.1.1n-0+deb10u3"));
        assert_eq!(p.qualifier("arch"), Some("amd64"));
        assert_eq!(p.qualifier("distro"), Some("debian-10"));
        assert_eq!(p.qualifier("upstream"), Some("openssl"));
        assert_eq!(p.subpath.as_deref(), Some("sub/path"));
    }

    #[test]
    fn go_namespaces_have_several_segments() {
        let p = Purl::parse(
            "pkg:golang/github.com/0xAX/notificator@v0.0.0-20191016112426-3962a5ea8da1",
        )
        .unwrap();
        assert_eq!(p.namespace, "github.com/0xAX");
        assert_eq!(p.name, "notificator");
        assert_eq!(
            p.version.as_deref(),
            Some("v0.0.0-20191016112426-3962a5ea8da1")
        );
    }

    #[test]
    fn npm_scopes_encoded_or_not() {
        for s in [
            "pkg:npm/%40types/node@14.0.23",
            "pkg:npm/@types/node@14.0.23",
        ] {
            let p = Purl::parse(s).unwrap();
            assert_eq!(p.namespace, "@types", "{s}");
            assert_eq!(p.name, "node");
            assert_eq!(p.version.as_deref(), Some("14.0.23"));
        }
        let p = Purl::parse("pkg:npm/@types/node").unwrap();
        assert_eq!((p.namespace.as_str(), p.version), ("@types", None));
    }

    #[test]
    fn scheme_and_type_are_case_insensitive_and_slashes_tolerated() {
        let p = Purl::parse("PKG:/Maven/org.apache/commons-io@2.6?Type=jar").unwrap();
        assert_eq!(p.ty, "maven");
        assert_eq!(p.qualifier("type"), Some("jar"));
        let p = Purl::parse("pkg:cargo/serde@1.0.0?empty=").unwrap();
        assert!(p.qualifiers.is_empty());
    }

    #[test]
    fn rejects_malformed_urls() {
        assert_eq!(Purl::parse("npm/left-pad@1.0"), Err(PurlError::NoScheme));
        assert_eq!(Purl::parse("http://x/y"), Err(PurlError::NoScheme));
        assert_eq!(Purl::parse("pkg:npm"), Err(PurlError::NoName));
        assert_eq!(Purl::parse("pkg:npm/@1.0"), Err(PurlError::NoName));
        assert!(matches!(
            Purl::parse("pkg:1np/x@1"),
            Err(PurlError::BadType(_))
        ));
        assert!(matches!(
            Purl::parse("pkg:n_p/x@1"),
            Err(PurlError::BadType(_))
        ));
        assert!(matches!(
            Purl::parse("pkg:npm/x%4@1"),
            Err(PurlError::BadEncoding(_))
        ));
        assert!(matches!(
            Purl::parse("pkg:npm/x%ff@1"),
            Err(PurlError::BadEncoding(_))
        ));
        assert!(matches!(
            Purl::parse("pkg:npm/x@1?arch"),
            Err(PurlError::BadQualifier(_))
        ));
        assert!(matches!(
            Purl::parse("pkg:npm/x@1?a b=c"),
            Err(PurlError::BadQualifier(_))
        ));
    }
}
