use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A content digest `algo:hex`: `sha256` with 64 hex digits or `sha512` with 128 (claircore's rule).
///
/// Held normalised to lower case so that two spellings of one digest compare equal.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

/// Why a string is not a [`Digest`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    /// No `algo:` prefix.
    #[error("digest {0:?} has no algorithm prefix (expected sha256:<64 hex> or sha512:<128 hex>)")]
    NoAlgorithm(String),
    /// An algorithm other than sha256 or sha512.
    #[error("digest {0:?} uses an unsupported algorithm (only sha256 and sha512 are accepted)")]
    UnsupportedAlgorithm(String),
    /// The hex part has the wrong length or a non-hex character.
    #[error("digest {0:?} has a malformed hex part (sha256 needs 64 hex digits, sha512 128)")]
    BadHex(String),
}

impl Digest {
    /// Parses and validates a digest.
    pub fn parse(s: &str) -> Result<Self, DigestError> {
        let (algo, hex) = s
            .split_once(':')
            .ok_or_else(|| DigestError::NoAlgorithm(s.to_string()))?;
        let want = match algo.to_ascii_lowercase().as_str() {
            "sha256" => 64,
            "sha512" => 128,
            _ => return Err(DigestError::UnsupportedAlgorithm(s.to_string())),
        };
        if hex.len() != want || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(DigestError::BadHex(s.to_string()));
        }
        Ok(Digest(s.to_ascii_lowercase()))
    }

    /// The sha256 digest of `bytes`.
    pub fn sha256_of(bytes: &[u8]) -> Self {
        Digest(format!("sha256:{}", crate::sha256_hex(bytes)))
    }

    /// The digest as `algo:hex`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.0)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_sha256_and_sha512_and_normalises_case() {
        let d = Digest::parse(&format!("SHA256:{}", "AB".repeat(32))).unwrap();
        assert_eq!(d.as_str(), format!("sha256:{}", "ab".repeat(32)));
        assert!(Digest::parse(&format!("sha512:{}", "0".repeat(128))).is_ok());
    }

    #[test]
    fn rejects_other_algorithms_and_bad_hex() {
        assert!(matches!(
            Digest::parse("md5:abc"),
            Err(DigestError::UnsupportedAlgorithm(_))
        ));
        assert!(matches!(
            Digest::parse("sha256:abc"),
            Err(DigestError::BadHex(_))
        ));
        assert!(matches!(
            Digest::parse(&format!("sha256:{}", "g".repeat(64))),
            Err(DigestError::BadHex(_))
        ));
        assert!(matches!(
            Digest::parse("deadbeef"),
            Err(DigestError::NoAlgorithm(_))
        ));
    }
}
