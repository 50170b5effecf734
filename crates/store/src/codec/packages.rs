//! The stored form of a manifest's installed packages: what the reverse index is rebuilt from.
//!
//! Rebuilding the index at start, or following another process's manifest changes, needs only
//! each manifest's [`InstalledPackage`]s, not its whole IndexReport: decoding the report JSON
//! costs milliseconds per large manifest, which at a million manifests is most of an hour. The
//! packages are therefore stored a second time, beside the report, in this binary form, which
//! decodes in microseconds.
//!
//! Layout (integers are LEB128 varints, strings length-prefixed): `0x01`, the distinct
//! ecosystems (count, names), then the packages (count, then per package: ecosystem index,
//! name, source as 0 for none or length + 1 followed by the bytes, version, arch, normalized
//! version, package id).
use tocsin_model::inventory::{InstalledPackage, PackageRef};

use super::wire::{put_str, put_varint, Reader};
use crate::{Result, StoreError};

const VERSION: u8 = 1;

/// Encodes installed packages for storage.
pub fn encode_packages(packages: &[InstalledPackage]) -> Vec<u8> {
    let mut ecosystems: Vec<&str> = packages.iter().map(|p| p.ecosystem.as_str()).collect();
    ecosystems.sort_unstable();
    ecosystems.dedup();
    let mut out = Vec::with_capacity(8 + packages.len() * 48);
    out.push(VERSION);
    put_varint(&mut out, ecosystems.len() as u64);
    for e in &ecosystems {
        put_str(&mut out, e);
    }
    put_varint(&mut out, packages.len() as u64);
    for p in packages {
        // Present by construction: the list was built from these very packages.
        let eco = ecosystems
            .binary_search(&p.ecosystem.as_str())
            .unwrap_or_default();
        put_varint(&mut out, eco as u64);
        put_str(&mut out, &p.name);
        match &p.source_name {
            None => out.push(0),
            Some(s) => {
                put_varint(&mut out, s.len() as u64 + 1);
                out.extend_from_slice(s.as_bytes());
            }
        }
        put_str(&mut out, &p.version);
        put_str(&mut out, &p.arch);
        put_str(&mut out, &p.normalized_version);
        put_str(&mut out, &p.package_id);
    }
    out
}

/// Reads one package; `None` at the end. Errors name `what`.
struct Cursor<'a> {
    r: Reader<'a>,
    ecosystems: Vec<&'a str>,
    left: usize,
}

impl<'a> Cursor<'a> {
    fn new(body: &'a [u8], what: &'a str) -> Result<Self> {
        let mut r = Reader::new(body, what);
        let v = r.u8()?;
        if v != VERSION {
            return Err(StoreError::Corrupt(format!(
                "{what}: unknown package encoding version {v}"
            )));
        }
        let ecosystems = (0..r.count()?)
            .map(|_| r.str())
            .collect::<Result<Vec<_>>>()?;
        let left = r.count()?;
        Ok(Cursor {
            r,
            ecosystems,
            left,
        })
    }

    fn next(&mut self) -> Result<Option<(PackageRef<'a>, &'a str)>> {
        if self.left == 0 {
            self.r.finish()?;
            return Ok(None);
        }
        self.left -= 1;
        let r = &mut self.r;
        let eco = r.varint()?;
        let ecosystem = usize::try_from(eco)
            .ok()
            .and_then(|i| self.ecosystems.get(i))
            .copied()
            .ok_or_else(|| r.corrupt(format!("ecosystem index {eco} out of range")))?;
        let name = r.str()?;
        let source_name = match r.varint()? {
            0 => None,
            len => {
                let len = usize::try_from(len - 1).map_err(|_| r.corrupt("source too long"))?;
                let b = r.take(len)?;
                Some(std::str::from_utf8(b).map_err(|e| r.corrupt(format!("invalid UTF-8: {e}")))?)
            }
        };
        let p = PackageRef {
            ecosystem,
            name,
            source_name,
            version: r.str()?,
            arch: r.str()?,
            normalized_version: r.str()?,
        };
        Ok(Some((p, r.str()?)))
    }
}

/// Decodes stored packages; `what` names them in errors.
pub fn decode_packages(body: &[u8], what: &str) -> Result<Vec<InstalledPackage>> {
    let mut c = Cursor::new(body, what)?;
    let mut out = Vec::with_capacity(c.left);
    while let Some((p, id)) = c.next()? {
        out.push(InstalledPackage {
            ecosystem: p.ecosystem.to_string(),
            name: p.name.to_string(),
            source_name: p.source_name.map(str::to_string),
            version: p.version.to_string(),
            arch: p.arch.to_string(),
            normalized_version: p.normalized_version.to_string(),
            package_id: id.to_string(),
        });
    }
    Ok(out)
}

/// A manifest's stored packages, checked once and then read in place: feeding the index from it
/// allocates nothing per package (a rebuild at start reads every manifest this way).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageBlob(Vec<u8>);

impl PackageBlob {
    /// Checks stored bytes; `what` names them in errors.
    pub fn new(bytes: Vec<u8>, what: &str) -> Result<Self> {
        let mut c = Cursor::new(&bytes, what)?;
        while c.next()?.is_some() {}
        Ok(PackageBlob(bytes))
    }

    /// The blob of these packages.
    pub fn of(packages: &[InstalledPackage]) -> Self {
        PackageBlob(encode_packages(packages))
    }

    /// The packages, borrowed from the blob.
    pub fn iter(&self) -> impl Iterator<Item = PackageRef<'_>> {
        // Checked at construction, so reading cannot fail; a failure would only end early.
        let mut c = Cursor::new(&self.0, "checked packages").ok();
        std::iter::from_fn(move || c.as_mut()?.next().ok().flatten().map(|(p, _)| p))
    }

    /// The packages, owned.
    pub fn to_vec(&self) -> Vec<InstalledPackage> {
        decode_packages(&self.0, "checked packages").unwrap_or_default()
    }

    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(eco: &str, name: &str, source: Option<&str>, version: &str) -> InstalledPackage {
        InstalledPackage {
            ecosystem: eco.into(),
            name: name.into(),
            source_name: source.map(Into::into),
            version: version.into(),
            arch: "amd64".into(),
            normalized_version: String::new(),
            package_id: "17".into(),
        }
    }

    #[test]
    fn packages_round_trip() {
        let list = vec![
            p("Debian:10", "libc6", Some("glibc"), "2.28-10"),
            p("PyPI", "requests", None, "2.31.0"),
            p("Debian:10", "bash", Some(""), "5.0-4"),
        ];
        let bytes = encode_packages(&list);
        assert_eq!(decode_packages(&bytes, "pk").unwrap(), list);
        assert_eq!(
            decode_packages(&encode_packages(&[]), "pk").unwrap(),
            vec![]
        );
        for n in 0..bytes.len() {
            assert!(decode_packages(&bytes[..n], "pk").is_err(), "prefix {n}");
        }
        let mut other = bytes.clone();
        other[0] = 9;
        assert!(decode_packages(&other, "pk").is_err());
        assert!(PackageBlob::new(other, "pk").is_err());
        let blob = PackageBlob::new(bytes, "pk").unwrap();
        assert_eq!(blob.to_vec(), list);
        let refs: Vec<PackageRef<'_>> = blob.iter().collect();
        assert_eq!(
            refs,
            list.iter()
                .map(InstalledPackage::as_ref)
                .collect::<Vec<_>>()
        );
    }
}
