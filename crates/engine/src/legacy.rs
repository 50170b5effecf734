//! Clair v2/v3 notifications as projections of the stored change sets.
//!
//! A v2/v3 notification is one changed vulnerability of one processed update operation: its old
//! version (if any) with the manifests it affected, and its new version (if any) with the
//! manifests it affects. The store keeps only the notification's name, the change's position in
//! the change set and its times; everything a client sees is computed here from the change set,
//! the vulnerabilities it names and the operation's layer table.
//!
//! - **Names** are UUID v5 of (operation, vulnerability identity), so every process computes
//!   the same name for the same change.
//! - **Index** is the manifest's [`ManifestId`](tocsin_store::ManifestId), fixed at processing
//!   time in the layer table: stable, never reused, equal in the old and new streams. Streams
//!   are sorted by it, and a page resumes at "the first index ≥ n", so indexes strictly increase
//!   across pages.
//! - **Page tokens** carry where each stream resumes, bound to the notification's name and
//!   signed with HMAC-SHA256 under a key kept in the store ([`PageTokens`]): a client cannot
//!   forge or alter one, and any process sharing the database accepts it. Tokens do not expire:
//!   the pages they address are computed from immutable data, so an old token still means
//!   exactly what it meant (Clair's one-hour expiry only made slow consumers start over).
use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tocsin_model::change::{ChangeSet, ManifestSet, VulnChange};
use tocsin_model::vuln::{Identity, NameKind, Vulnerability};
use tocsin_model::Digest;
use tocsin_store::{LegacyLayer, LegacyNotification};
use uuid::Uuid;

/// The store secret under which the page-token key is kept.
pub const TOKEN_SECRET: &str = "legacy-page-token-key";

/// The namespace of v2/v3 notification names (UUID v5).
const NAME_NAMESPACE: Uuid = Uuid::from_u128(0x7c1b_3a52_64f0_4d0e_9a51_0d6c_5f3e_2b11);

/// The name of the v2/v3 notification for `identity`'s change in update operation `op`.
pub fn notification_name(op: Uuid, identity: &Identity) -> Uuid {
    let kind = match identity.package.kind {
        NameKind::Binary => "binary",
        NameKind::Source => "source",
        NameKind::Any => "any",
    };
    // Newline-separated: no field of an identity contains one, so the encoding is injective.
    let key = format!(
        "{op}\n{}\n{}\n{}\n{}\n{kind}",
        identity.updater, identity.name, identity.package.ecosystem, identity.package.name
    );
    Uuid::new_v5(&NAME_NAMESPACE, key.as_bytes())
}

/// Whether a change gets a v2/v3 notification: it must name at least one manifest, before or
/// after, or the client could do nothing with it (Clair v2 also notified such changes, which
/// for a whole OSV feed is tens of thousands of empty notifications).
pub fn is_notified(c: &VulnChange) -> bool {
    c.names_manifests()
}

/// One manifest as a v2 layer / v3 ancestry on a page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexedLayer {
    /// Stable index (the manifest id).
    pub index: u32,
    /// Display name (digest or configured label).
    pub name: String,
}

/// Where one stream (old or new) of a notification resumes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cursor {
    /// At the first layer whose index is at least this.
    From(u32),
    /// The stream is finished.
    Done,
}

impl Cursor {
    /// The first page.
    pub const START: Cursor = Cursor::From(0);

    fn to_u64(self) -> u64 {
        match self {
            Cursor::From(i) => u64::from(i),
            Cursor::Done => u64::MAX,
        }
    }

    fn from_u64(n: u64) -> Option<Cursor> {
        match n {
            u64::MAX => Some(Cursor::Done),
            n => u32::try_from(n).ok().map(Cursor::From),
        }
    }
}

/// The layers a stream names, sorted by index: each manifest id of `affected` is resolved to its
/// digest through the change set, and the digest to its index and name through the operation's
/// layer table (both written in the same commit); a missing one is an error.
pub fn stream(
    affected: &ManifestSet,
    cs: &ChangeSet,
    layers: &HashMap<Digest, (u32, String)>,
) -> Result<Vec<IndexedLayer>, String> {
    let mut out = affected
        .iter()
        .map(|id| {
            let d = cs
                .digest(id)
                .ok_or_else(|| format!("manifest id {id} has no digest in the change set"))?;
            layers
                .get(d)
                .map(|(index, name)| IndexedLayer {
                    index: *index,
                    name: name.clone(),
                })
                .ok_or_else(|| format!("manifest {d} is not in the operation's layer table"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    out.sort_by_key(|l| l.index);
    Ok(out)
}

/// One page of a sorted stream: up to `limit` layers from `from`, and where the next page
/// resumes (`Done` when none follow).
pub fn page(stream: &[IndexedLayer], from: Cursor, limit: usize) -> (Vec<IndexedLayer>, Cursor) {
    let Cursor::From(start) = from else {
        return (Vec::new(), Cursor::Done);
    };
    let first = stream.partition_point(|l| l.index < start);
    let rest = &stream[first..];
    let take = rest.len().min(limit);
    let next = rest
        .get(take)
        .map_or(Cursor::Done, |l| Cursor::From(l.index));
    (rest[..take].to_vec(), next)
}

/// The layer table of an operation as a lookup.
pub fn layer_map(layers: &[LegacyLayer]) -> HashMap<Digest, (u32, String)> {
    layers
        .iter()
        .map(|l| (l.digest.clone(), (l.index, l.name.clone())))
        .collect()
}

/// A package a v2/v3 vulnerability is fixed in (v2 `FixedIn`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FixedIn {
    /// Package name.
    pub name: String,
    /// Namespace (see [`LegacyVulnerability::namespace_name`]).
    pub namespace_name: String,
    /// Version format (`dpkg`, `rpm`, `apk`, or the ecosystem in lower case).
    pub version_format: String,
    /// The fixed version, or `None` (Clair v2's word for "no fix").
    pub version: String,
}

/// A vulnerability as Clair v2 and v3 present it.
#[derive(Clone, Debug, PartialEq)]
pub struct LegacyVulnerability {
    /// Advisory name.
    pub name: String,
    /// The OSV release ecosystem in lower case for OS advisories (`debian:12`), else the
    /// distribution's `did:version_id`, else the OSV ecosystem (`Go`, `PyPI`, `crates.io`).
    pub namespace_name: String,
    /// Description.
    pub description: String,
    /// The first link.
    pub link: String,
    /// Normalised severity name (v2's scale without `Defcon1`, which nothing produces).
    pub severity: &'static str,
    /// Extra facts: aliases, vendor severity text, every link.
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// The package and its fixed version.
    pub fixed_in: Vec<FixedIn>,
}

impl LegacyVulnerability {
    /// The v2/v3 presentation of one of tocsin's vulnerabilities.
    pub fn of(v: &Vulnerability) -> Self {
        // Clair v2 namespaces are lower-case `os:release` (`debian:9`, `alpine:v3.7`), which is
        // what an OSV release ecosystem becomes in lower case.
        let namespace_name = if tocsin_model::ecosystem::is_os_ecosystem(&v.package.ecosystem) {
            v.package.ecosystem.to_lowercase()
        } else {
            match &v.distribution {
                Some(d) if !d.did.is_empty() && !d.version_id.is_empty() => {
                    format!("{}:{}", d.did, d.version_id)
                }
                _ => v.package.ecosystem.clone(),
            }
        };
        let version_format = match tocsin_model::ecosystem::base(&v.package.ecosystem) {
            "Debian" | "Ubuntu" => "dpkg".to_string(),
            "Alpine" => "apk".to_string(),
            "Red Hat" | "CentOS" | "Rocky Linux" | "AlmaLinux" | "SUSE" | "openSUSE"
            | "Photon OS" | "Mageia" | "Oracle Linux" | "Amazon Linux" => "rpm".to_string(),
            other => other.to_ascii_lowercase(),
        };
        let mut metadata = serde_json::Map::new();
        if !v.aliases.is_empty() {
            metadata.insert("Aliases".into(), v.aliases.clone().into());
        }
        if !v.severity.is_empty() {
            metadata.insert("VendorSeverity".into(), v.severity.clone().into());
        }
        let links: Vec<&str> = v.links.split_whitespace().collect();
        if links.len() > 1 {
            metadata.insert("Links".into(), links.clone().into());
        }
        LegacyVulnerability {
            name: v.name.clone(),
            description: v.description.clone(),
            link: links.first().map(|s| s.to_string()).unwrap_or_default(),
            severity: v.normalized_severity.as_str(),
            metadata,
            fixed_in: vec![FixedIn {
                name: v.package.name.clone(),
                namespace_name: namespace_name.clone(),
                version_format,
                version: match v.fixed_in_version.as_str() {
                    "" => "None".to_string(),
                    f => f.to_string(),
                },
            }],
            namespace_name,
        }
    }
}

/// One stream of a page.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamPage {
    /// The vulnerability version of this stream.
    pub vulnerability: LegacyVulnerability,
    /// The layers on this page, ascending by index.
    pub layers: Vec<IndexedLayer>,
    /// Where the next page of this stream starts.
    pub next: Cursor,
}

/// One page of a v2/v3 notification.
#[derive(Clone, Debug, PartialEq)]
pub struct LegacyPage {
    /// The notification and its times.
    pub notification: LegacyNotification,
    /// The old version's stream (absent for a new vulnerability).
    pub old: Option<StreamPage>,
    /// The new version's stream (absent for a withdrawn one).
    pub new: Option<StreamPage>,
}

/// Why a page token was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// Not a token this server issues (bad encoding or length).
    #[error("page token {0:?} is malformed")]
    Malformed(String),
    /// A token for another notification, another stream or another API.
    #[error("page token {0:?} belongs to another notification or stream")]
    Mismatch(String),
    /// The signature does not match: altered or forged.
    #[error("page token {0:?} has an invalid signature")]
    BadSignature(String),
}

/// What a token addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// v2: both streams in one token.
    V2,
    /// v3: the old stream.
    V3Old,
    /// v3: the new stream.
    V3New,
}

impl TokenKind {
    fn tag(self) -> u8 {
        match self {
            TokenKind::V2 => 2,
            TokenKind::V3Old => 3,
            TokenKind::V3New => 4,
        }
    }
}

const MAC_LEN: usize = 32;

/// Signs and checks page tokens with the key every process shares (see the module doc).
///
/// Layout before base64url: `tag (1) | name (16) | cursor (8, big-endian; all ones = done) |
/// [second cursor (8), v2 only] | HMAC-SHA256 of everything before (32)`.
#[derive(Clone)]
pub struct PageTokens {
    key: Vec<u8>,
}

impl std::fmt::Debug for PageTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PageTokens { key: <redacted> }")
    }
}

impl PageTokens {
    /// Tokens signed with `key`.
    pub fn new(key: Vec<u8>) -> Self {
        PageTokens { key }
    }

    fn mac(&self, bytes: &[u8]) -> Hmac<Sha256> {
        // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.key) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        };
        mac.update(bytes);
        mac
    }

    /// A token for `cursors` (one for v3, old and new for v2) of notification `name`.
    pub fn encode(&self, kind: TokenKind, name: Uuid, cursors: &[Cursor]) -> String {
        let mut bytes = Vec::with_capacity(1 + 16 + 8 * cursors.len() + MAC_LEN);
        bytes.push(kind.tag());
        bytes.extend_from_slice(name.as_bytes());
        for c in cursors {
            bytes.extend_from_slice(&c.to_u64().to_be_bytes());
        }
        let tag = self.mac(&bytes).finalize().into_bytes();
        bytes.extend_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The `n` cursors of a token made by [`encode`](Self::encode) for `kind` and `name`.
    pub fn decode(
        &self,
        kind: TokenKind,
        name: Uuid,
        n: usize,
        token: &str,
    ) -> Result<Vec<Cursor>, TokenError> {
        let malformed = || TokenError::Malformed(token.to_string());
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| malformed())?;
        if bytes.len() != 1 + 16 + 8 * n + MAC_LEN {
            return Err(malformed());
        }
        let (body, tag) = bytes.split_at(bytes.len() - MAC_LEN);
        self.mac(body)
            .verify_slice(tag)
            .map_err(|_| TokenError::BadSignature(token.to_string()))?;
        if body[0] != kind.tag() || &body[1..17] != name.as_bytes() {
            return Err(TokenError::Mismatch(token.to_string()));
        }
        body[17..]
            .chunks_exact(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                Cursor::from_u64(u64::from_be_bytes(b)).ok_or_else(malformed)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tocsin_model::vuln::PackageSpec;

    fn layers(ids: &[u32]) -> Vec<IndexedLayer> {
        ids.iter()
            .map(|i| IndexedLayer {
                index: *i,
                name: format!("l{i}"),
            })
            .collect()
    }

    #[test]
    fn paging_resumes_at_the_next_index_and_ends_with_done() {
        let s = layers(&[3, 5, 8, 13, 21]);
        let (p1, n1) = page(&s, Cursor::START, 2);
        assert_eq!((p1, n1), (layers(&[3, 5]), Cursor::From(8)));
        let (p2, n2) = page(&s, n1, 2);
        assert_eq!((p2, n2), (layers(&[8, 13]), Cursor::From(21)));
        let (p3, n3) = page(&s, n2, 2);
        assert_eq!((p3, n3), (layers(&[21]), Cursor::Done));
        assert_eq!(page(&s, Cursor::Done, 2), (vec![], Cursor::Done));
        // Exactly `limit` left: the stream ends on this page, no empty page follows.
        assert_eq!(
            page(&s, Cursor::From(13), 2),
            (layers(&[13, 21]), Cursor::Done)
        );
        assert_eq!(page(&[], Cursor::START, 2), (vec![], Cursor::Done));
    }

    #[test]
    fn streams_sort_by_index_and_refuse_unknown_manifests() {
        let d =
            |n: u8| Digest::parse(&format!("sha256:{}", format!("{n:02x}").repeat(32))).unwrap();
        let map = HashMap::from([(d(1), (9, "a".to_string())), (d(2), (4, "b".to_string()))]);
        let cs = ChangeSet {
            manifests: [(1, d(1)), (2, d(2)), (3, d(3))].into_iter().collect(),
            ..Default::default()
        };
        let ids = |v: &[u32]| v.iter().copied().collect::<ManifestSet>();
        assert_eq!(
            stream(&ids(&[1, 2]), &cs, &map).unwrap(),
            vec![
                IndexedLayer {
                    index: 4,
                    name: "b".into()
                },
                IndexedLayer {
                    index: 9,
                    name: "a".into()
                }
            ]
        );
        assert!(stream(&ids(&[3]), &cs, &map)
            .unwrap_err()
            .contains(&d(3).to_string()));
        assert!(stream(&ids(&[7]), &cs, &map)
            .unwrap_err()
            .contains("manifest id 7"));
    }

    #[test]
    fn tokens_round_trip_and_resist_tampering() {
        let t = PageTokens::new(b"k1".to_vec());
        let name = Uuid::from_u128(42);
        let tok = t.encode(TokenKind::V2, name, &[Cursor::From(7), Cursor::Done]);
        assert_eq!(
            t.decode(TokenKind::V2, name, 2, &tok).unwrap(),
            vec![Cursor::From(7), Cursor::Done]
        );
        // Another key (another database), another notification, another stream.
        let other = PageTokens::new(b"k2".to_vec());
        assert!(matches!(
            other.decode(TokenKind::V2, name, 2, &tok),
            Err(TokenError::BadSignature(_))
        ));
        assert!(matches!(
            t.decode(TokenKind::V2, Uuid::from_u128(43), 2, &tok),
            Err(TokenError::Mismatch(_))
        ));
        let v3 = t.encode(TokenKind::V3Old, name, &[Cursor::From(1)]);
        assert!(matches!(
            t.decode(TokenKind::V3New, name, 1, &v3),
            Err(TokenError::Mismatch(_))
        ));
        // Flipping any byte breaks the signature or the layout.
        let mut raw = URL_SAFE_NO_PAD.decode(&tok).unwrap();
        raw[20] ^= 1;
        let forged = URL_SAFE_NO_PAD.encode(&raw);
        assert!(matches!(
            t.decode(TokenKind::V2, name, 2, &forged),
            Err(TokenError::BadSignature(_))
        ));
        assert!(matches!(
            t.decode(TokenKind::V2, name, 2, "not a token!"),
            Err(TokenError::Malformed(_))
        ));
        assert!(matches!(
            t.decode(TokenKind::V2, name, 1, &tok),
            Err(TokenError::Malformed(_))
        ));
    }

    #[test]
    fn names_are_stable_and_distinct() {
        let id = |name: &str, kind| Identity {
            updater: "osv/debian".into(),
            name: name.into(),
            package: PackageSpec {
                ecosystem: "Debian:12".into(),
                name: "openssl".into(),
                kind,
            },
        };
        let op = Uuid::from_u128(1);
        let a = notification_name(op, &id("DSA-1", NameKind::Source));
        assert_eq!(a, notification_name(op, &id("DSA-1", NameKind::Source)));
        assert_eq!(a.get_version_num(), 5);
        assert_ne!(a, notification_name(op, &id("DSA-2", NameKind::Source)));
        assert_ne!(a, notification_name(op, &id("DSA-1", NameKind::Binary)));
        assert_ne!(
            a,
            notification_name(Uuid::from_u128(2), &id("DSA-1", NameKind::Source))
        );
    }
}
