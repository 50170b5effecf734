//! What to follow and how: the typed form of `tocsin.updaters` (the binary parses the YAML).
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;

/// OSV.dev's export bucket, the default `osv_base`.
pub const OSV_BASE: &str = "https://osv-vulnerabilities.storage.googleapis.com";

/// Everything [`crate::Updaters`] follows, and the bounds of its fetches.
#[derive(Clone, Debug, PartialEq)]
pub struct UpdatersConfig {
    /// The sources, each one updater.
    pub sources: Vec<SourceSpec>,
    /// Download bounds, timeouts and retries.
    pub fetch: FetchOptions,
    /// More records modified since the last run than this, and an OSV source reads the full
    /// archive instead of fetching them one by one.
    pub max_incremental: usize,
    /// How long a run holds a source's lease before another process may take it over; renewed
    /// between the steps of a run.
    pub lease: Duration,
    /// An incremental OSV source reads its full archive again (conditionally) when its last
    /// full read is older than this: records deleted outright never appear in
    /// `modified_id.csv`.
    pub full_refresh: Duration,
}

impl Default for UpdatersConfig {
    fn default() -> Self {
        UpdatersConfig {
            sources: Vec::new(),
            fetch: FetchOptions::default(),
            max_incremental: 1000,
            lease: Duration::from_secs(15 * 60),
            full_refresh: Duration::from_secs(24 * 3600),
        }
    }
}

/// Bounds, timeouts and retries of every request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FetchOptions {
    /// Time allowed to establish a connection.
    pub connect_timeout: Duration,
    /// Time allowed for one whole request, body included.
    pub timeout: Duration,
    /// Retries after a failed attempt (transport error, timeout, 408, 429, 5xx).
    pub retries: u32,
    /// The first retry's delay ceiling; doubles per retry, full jitter.
    pub initial_backoff: Duration,
    /// The largest delay between retries.
    pub max_backoff: Duration,
    /// Largest download, in bytes: a longer body fails the run (nothing imported).
    pub max_download_size: u64,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(600),
            retries: 3,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            max_download_size: 2 << 30,
        }
    }
}

/// One source: one updater and where its snapshots come from.
#[derive(Clone, PartialEq, Eq)]
pub struct SourceSpec {
    /// The updater name (`osv/debian`).
    pub name: String,
    /// Where and in what layout.
    pub kind: SourceKind,
    /// How often it is fetched.
    pub interval: Duration,
    /// Request headers (e.g. `Authorization`); values are never logged or shown.
    pub headers: Vec<(String, String)>,
}

impl fmt::Debug for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<String> = self
            .headers
            .iter()
            .map(|(k, _)| format!("{k}: <redacted>"))
            .collect();
        f.debug_struct("SourceSpec")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("interval", &self.interval)
            .field("headers", &headers)
            .finish()
    }
}

impl SourceSpec {
    /// The source `osv:` expands an ecosystem to: updater `osv/<lower-case ecosystem>` following
    /// `<base>/<Ecosystem>/`.
    pub fn osv(ecosystem: &str, base: Location, interval: Duration) -> SourceSpec {
        SourceSpec {
            name: format!("osv/{}", ecosystem.to_lowercase()),
            kind: SourceKind::Osv {
                base,
                ecosystem: ecosystem.to_string(),
            },
            interval,
            headers: Vec::new(),
        }
    }

    /// Where it is fetched from, for people (no credentials: URLs with a password are refused
    /// by the configuration).
    pub fn location(&self) -> String {
        match &self.kind {
            SourceKind::Snapshot(l) => l.to_string(),
            SourceKind::Osv { base, ecosystem } => base.join(&[ecosystem.as_str()]).to_string(),
        }
    }
}

/// The layout of a source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceKind {
    /// One snapshot: a URL or path of a tar.gz, zip, JSON document or a directory.
    Snapshot(Location),
    /// An ecosystem of an OSV.dev-layout export: `<base>/<ecosystem>/all.zip`,
    /// `modified_id.csv` and `<ID>.json`; on a local base, `all.zip` or else the directory.
    Osv {
        /// The export's root.
        base: Location,
        /// The ecosystem's folder (`PyPI`, `Debian`, `crates.io`).
        ecosystem: String,
    },
}

/// An http(s) URL or a local path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// Fetched over HTTP.
    Url(Url),
    /// Read from the file system.
    Path(PathBuf),
}

impl Location {
    /// `http://…` and `https://…` are URLs, `file://…` and anything else a path. Other schemes
    /// and URLs carrying a password are refused (it would show in status pages and logs; use
    /// `headers`).
    pub fn parse(text: &str) -> Result<Location, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("is empty".into());
        }
        let lower = text.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            let url = Url::parse(text).map_err(|e| format!("is not a valid URL: {e}"))?;
            if url.password().is_some() || !url.username().is_empty() {
                return Err("must not carry credentials; put them in `headers` \
                            (e.g. Authorization)"
                    .into());
            }
            if url.host_str().is_none_or(str::is_empty) {
                return Err("has no host".into());
            }
            return Ok(Location::Url(url));
        }
        if lower.starts_with("file://") {
            let url = Url::parse(text).map_err(|e| format!("is not a valid file URL: {e}"))?;
            return url
                .to_file_path()
                .map(Location::Path)
                .map_err(|()| "is not a local file URL".into());
        }
        if let Some((scheme, _)) = text.split_once("://") {
            return Err(format!(
                "has scheme {scheme:?}: expected http(s)://, file:// or a local path"
            ));
        }
        Ok(Location::Path(PathBuf::from(text)))
    }

    /// The location of `segments` below this one (each a single path segment, percent-encoded
    /// in URLs).
    pub fn join(&self, segments: &[&str]) -> Location {
        match self {
            Location::Url(u) => {
                let mut u = u.clone();
                if let Ok(mut path) = u.path_segments_mut() {
                    path.pop_if_empty();
                    path.extend(segments);
                }
                Location::Url(u)
            }
            Location::Path(p) => {
                let mut p = p.clone();
                p.extend(segments);
                Location::Path(p)
            }
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Url(u) => u.fmt(f),
            Location::Path(p) => p.display().fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        let Location::Url(u) = Location::parse("https://osv.example/base").unwrap() else {
            panic!()
        };
        assert_eq!(u.as_str(), "https://osv.example/base");
        assert_eq!(
            Location::parse("https://osv.example/base/")
                .unwrap()
                .join(&["GitHub Actions", "all.zip"])
                .to_string(),
            "https://osv.example/base/GitHub%20Actions/all.zip"
        );
        assert_eq!(
            Location::parse(OSV_BASE)
                .unwrap()
                .join(&["crates.io", "modified_id.csv"])
                .to_string(),
            "https://osv-vulnerabilities.storage.googleapis.com/crates.io/modified_id.csv"
        );
        assert_eq!(
            Location::parse("/srv/osv")
                .unwrap()
                .join(&["Debian", "all.zip"]),
            Location::Path(PathBuf::from("/srv/osv/Debian/all.zip"))
        );
        assert_eq!(
            Location::parse("file:///srv/osv").unwrap(),
            Location::Path(PathBuf::from("/srv/osv"))
        );
        assert_eq!(
            Location::parse("./feeds/debian.tar.gz").unwrap(),
            Location::Path(PathBuf::from("./feeds/debian.tar.gz"))
        );
        for bad in [
            "",
            "ftp://x/y",
            "https://user:pw@x/y",
            "https://user@x/y",
            "http://",
        ] {
            assert!(Location::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn osv_names_and_redaction() {
        let s = SourceSpec::osv(
            "crates.io",
            Location::parse(OSV_BASE).unwrap(),
            Duration::from_secs(3600),
        );
        assert_eq!(s.name, "osv/crates.io");
        assert_eq!(
            SourceSpec::osv("PyPI", s.location_base(), s.interval).name,
            "osv/pypi"
        );
        let mut s = s;
        s.headers
            .push(("Authorization".into(), "Bearer sekrit".into()));
        assert!(!format!("{s:?}").contains("sekrit"));
    }

    impl SourceSpec {
        fn location_base(&self) -> Location {
            match &self.kind {
                SourceKind::Osv { base, .. } => base.clone(),
                SourceKind::Snapshot(l) => l.clone(),
            }
        }
    }
}
