//! Bounds on what outside bytes may expand to: decompression bombs.
//!
//! A few megabytes of gzip can hold gigabytes of spaces, a zip can point a thousand entries at
//! one compressed block, and a YAML document can repeat an anchor a million times. Every
//! decoder of outside bytes (snapshot archives, gzip JSON Lines imports, YAML aliases) is
//! bounded by one [`Limits`] value, configured under `tocsin.limits` and threaded from the
//! configuration through the CLI, the HTTP API and the feed readers. Every bound counts bytes
//! actually produced, never a size an archive declares, and none allocates from a declared size.
//!
//! When a bound is crossed the reader stops at once with a [`LimitExceeded`] that names the
//! setting, its value and how to raise it; the HTTP API answers 413 and nothing is stored.
use std::fmt;
use std::io::{self, Read};

/// The defaults, sized from the real feeds in the shared data folder (`../shared/data`, measured
/// 2026-08 over `osv/*` and every `updates/*/*.tar.gz`):
///
/// | measurement | largest real figure | default | headroom |
/// |---|---|---|---|
/// | one member (record file), decompressed | 133,542 B (`almalinux9` `ALSA-2023:3661.json`) | 32 MiB | ≈ 250× |
/// | one archive, decompressed (tar stream) | 13,568,000 B (`updates/almalinux9/11-…tar.gz`, 738,516 B compressed) | 1 GiB | ≈ 79× |
/// | members of one archive | 7,241 (`updates/debian/06-20230403.tar.gz`) | 250,000 | ≈ 34× |
/// | one JSON Lines record (an IndexReport) | 71,256 B (`inventories/clair`); the bench fleet averages ~103 KiB | 32 MiB (`max_member_bytes`) | ≈ 470× |
/// | one gzip JSON Lines import, decompressed | ~103 KiB per manifest | 16 GiB | ≈ 160,000 manifests |
/// | one YAML record | 16,878 B (`osv/pypi`, 2,661 records) | 1 MiB | ≈ 62× |
///
/// YAML has a bound of its own because its parser holds a whole document as events first, about
/// a hundred times the document's size (a 4 MiB flow list took 630 MB), so the member bound
/// would let one YAML member take gigabytes.
///
/// The headroom is deliberate: osv.dev's per-ecosystem dumps are much larger than these samples,
/// and a genuine snapshot refused by a default would be an outage. What the defaults still stop
/// is the thousandfold expansion: 3 MB of gzip holding 3 GiB of spaces stops at 32 MiB.
pub mod defaults {
    /// `tocsin.limits.max_member_bytes`: 32 MiB.
    pub const MAX_MEMBER_BYTES: u64 = 32 << 20;
    /// `tocsin.limits.max_decompressed_bytes`: 1 GiB.
    pub const MAX_DECOMPRESSED_BYTES: u64 = 1 << 30;
    /// `tocsin.limits.max_archive_members`: 250,000.
    pub const MAX_ARCHIVE_MEMBERS: u64 = 250_000;
    /// `tocsin.limits.max_manifest_import_bytes`: 16 GiB.
    pub const MAX_MANIFEST_IMPORT_BYTES: u64 = 16 << 30;
    /// `tocsin.limits.max_yaml_bytes`: 1 MiB.
    pub const MAX_YAML_BYTES: u64 = 1 << 20;
}

/// Bounds on decompressed input. See the [module documentation](self) and [`defaults`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest decompressed size of one archive member (a tar or zip entry, tar metadata
    /// headers included), of one JSON Lines record, and of what one YAML document expands to
    /// through its aliases.
    pub max_member_bytes: u64,
    /// Largest decompressed size of one snapshot archive, all members and framing together.
    pub max_decompressed_bytes: u64,
    /// Most members in one snapshot archive, counting directories, skipped files and tar
    /// metadata headers (a `git archive` tarball has a PAX header per file).
    pub max_archive_members: u64,
    /// Largest decompressed size of one gzip JSON Lines manifest import. Plain (uncompressed)
    /// input is bounded per record only: nothing expands.
    pub max_manifest_import_bytes: u64,
    /// Largest YAML record (a `.yaml`/`.yml` file in a snapshot directory or archive).
    pub max_yaml_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_member_bytes: defaults::MAX_MEMBER_BYTES,
            max_decompressed_bytes: defaults::MAX_DECOMPRESSED_BYTES,
            max_archive_members: defaults::MAX_ARCHIVE_MEMBERS,
            max_manifest_import_bytes: defaults::MAX_MANIFEST_IMPORT_BYTES,
            max_yaml_bytes: defaults::MAX_YAML_BYTES,
        }
    }
}

/// Which of the [`Limits`] was crossed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// [`Limits::max_member_bytes`].
    MemberBytes,
    /// [`Limits::max_decompressed_bytes`].
    DecompressedBytes,
    /// [`Limits::max_archive_members`].
    ArchiveMembers,
    /// [`Limits::max_manifest_import_bytes`].
    ManifestImportBytes,
    /// [`Limits::max_yaml_bytes`].
    YamlBytes,
}

impl Limit {
    /// The configuration key, under `tocsin.limits`.
    pub fn key(self) -> &'static str {
        match self {
            Limit::MemberBytes => "max_member_bytes",
            Limit::DecompressedBytes => "max_decompressed_bytes",
            Limit::ArchiveMembers => "max_archive_members",
            Limit::ManifestImportBytes => "max_manifest_import_bytes",
            Limit::YamlBytes => "max_yaml_bytes",
        }
    }

    /// This limit's value in `limits`.
    pub fn value(self, limits: &Limits) -> u64 {
        match self {
            Limit::MemberBytes => limits.max_member_bytes,
            Limit::DecompressedBytes => limits.max_decompressed_bytes,
            Limit::ArchiveMembers => limits.max_archive_members,
            Limit::ManifestImportBytes => limits.max_manifest_import_bytes,
            Limit::YamlBytes => limits.max_yaml_bytes,
        }
    }

    /// The error for crossing this limit of `limits`.
    pub fn exceeded(self, limits: &Limits) -> LimitExceeded {
        LimitExceeded {
            limit: self,
            value: self.value(limits),
        }
    }
}

/// A bound of [`Limits`] was crossed. Its message names the setting, its value and how to raise
/// it; the caller prefixes the file (and archive member) it was reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitExceeded {
    /// Which limit.
    pub limit: Limit,
    /// Its value when it was crossed.
    pub value: u64,
}

impl fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.limit {
            Limit::MemberBytes => "decompresses (or expands) to more than",
            Limit::DecompressedBytes => "the archive decompresses to more than",
            Limit::ArchiveMembers => "the archive holds more members than",
            Limit::ManifestImportBytes => "the gzip stream decompresses to more than",
            Limit::YamlBytes => "the YAML record is larger than",
        };
        let key = self.limit.key();
        match self.limit {
            Limit::ArchiveMembers => write!(f, "{what} tocsin.limits.{key} = {}", self.value)?,
            _ => write!(
                f,
                "{what} tocsin.limits.{key} = {} bytes ({})",
                self.value,
                human_bytes(self.value)
            )?,
        }
        write!(
            f,
            "; refused as a possible decompression bomb (raise tocsin.limits.{key} in the configuration if this input is genuine)"
        )
    }
}

impl std::error::Error for LimitExceeded {}

impl LimitExceeded {
    /// The limit error carried by an I/O error, when a [`Limited`] reader (possibly under a
    /// decoder or archive reader that passed its error on) produced it.
    pub fn from_io(error: &io::Error) -> Option<LimitExceeded> {
        let mut inner: Option<&(dyn std::error::Error + 'static)> = error
            .get_ref()
            .map(|e| e as &(dyn std::error::Error + 'static));
        while let Some(e) = inner {
            if let Some(l) = e.downcast_ref::<LimitExceeded>() {
                return Some(*l);
            }
            if let Some(io) = e.downcast_ref::<io::Error>() {
                if let Some(l) = LimitExceeded::from_io(io) {
                    return Some(l);
                }
            }
            inner = e.source();
        }
        None
    }

    /// This error as an [`io::Error`], for readers.
    pub fn into_io(self) -> io::Error {
        io::Error::other(self)
    }
}

/// `1 GiB`, `32 MiB`, `1.5 KiB`, `100 B`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value.fract() == 0.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A reader that yields at most `max` bytes of `inner` and fails with [`LimitExceeded`] (inside
/// an [`io::Error`], see [`LimitExceeded::from_io`]) as soon as `inner` has more: a member or
/// stream of exactly `max` bytes is accepted. It counts what `inner` actually produces, so a
/// lying size field cannot get past it, and it never reads more than `max + 1` bytes.
#[derive(Debug)]
pub struct Limited<R> {
    inner: R,
    remaining: u64,
    error: LimitExceeded,
}

impl<R> Limited<R> {
    /// Bounds `inner` by `limit` of `limits`.
    pub fn new(inner: R, limit: Limit, limits: &Limits) -> Self {
        Self::with_max(inner, limit.value(limits), limit.exceeded(limits))
    }

    /// Bounds `inner` by `max` bytes, failing with `error` beyond.
    pub fn with_max(inner: R, max: u64, error: LimitExceeded) -> Self {
        Limited {
            inner,
            remaining: max,
            error,
        }
    }

    /// Bytes still allowed.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// The wrapped reader.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// The wrapped reader.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.remaining == 0 {
            // At the bound: the stream may end here, or have more, which is the error.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(self.error.into_io()),
            };
        }
        let max = usize::try_from(self.remaining)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = self.inner.read(&mut buf[..max])?;
        self.remaining -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: u64) -> Limits {
        Limits {
            max_member_bytes: max,
            ..Limits::default()
        }
    }

    #[test]
    fn exactly_the_limit_passes_one_more_byte_fails() {
        let mut out = Vec::new();
        let mut r = Limited::new(&[7u8; 10][..], Limit::MemberBytes, &limits(10));
        assert_eq!(r.read_to_end(&mut out).ok(), Some(10));
        let mut r = Limited::new(&[7u8; 11][..], Limit::MemberBytes, &limits(10));
        let err = r.read_to_end(&mut out).expect_err("over the limit");
        let l = LimitExceeded::from_io(&err).expect("a limit error");
        assert_eq!(
            l,
            LimitExceeded {
                limit: Limit::MemberBytes,
                value: 10
            }
        );
        let text = err.to_string();
        assert!(
            text.contains("tocsin.limits.max_member_bytes = 10 bytes"),
            "{text}"
        );
        assert!(
            text.contains("raise tocsin.limits.max_member_bytes"),
            "{text}"
        );
    }

    #[test]
    fn a_nested_limit_error_is_found() {
        let inner = Limit::ArchiveMembers.exceeded(&Limits::default()).into_io();
        let outer = io::Error::other(inner);
        assert_eq!(
            LimitExceeded::from_io(&outer).map(|l| l.limit),
            Some(Limit::ArchiveMembers)
        );
        assert_eq!(LimitExceeded::from_io(&io::Error::other("x")), None);
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_bytes(100), "100 B");
        assert_eq!(human_bytes(32 << 20), "32 MiB");
        assert_eq!(human_bytes(1 << 30), "1 GiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        let text = Limit::ArchiveMembers
            .exceeded(&Limits::default())
            .to_string();
        assert!(text.contains("max_archive_members = 250000;"), "{text}");
    }
}
