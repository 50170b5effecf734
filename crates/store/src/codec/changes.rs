//! The stored form of a change set: a compact binary encoding.
//!
//! A change set names manifests by id in roaring bitmaps (see `tocsin_model::change`), so its
//! natural stored form is those bitmaps in roaring's portable serialization, beside the digest
//! of each named id. JSON would turn each bitmap into a list of numbers several times larger and
//! slower to read, and the first import of a whole feed against a large fleet names millions of
//! (vulnerability, manifest) pairs.
//!
//! Layout (integers are LEB128 varints, strings and bitmaps length-prefixed):
//!
//! ```text
//! "TCS\x01"  updater  prev-flag [prev uuid]  cur uuid
//! manifests: count, then (id delta from the previous id, digest) in ascending id order
//! changes:   count, then (flags: 1 = old present, 2 = new present, [old id], [new id],
//!                         old bitmap, new bitmap)
//! ```
//!
//! Change sets written before this encoding existed are JSON objects naming manifests by digest
//! (`{"updater":…,"changes":[{"old_affected":["sha256:…"]…}]}`); [`decode_change_set`] still
//! reads them, giving their manifests ids local to the change set (0, 1, … in digest order).
//! Nothing else reads those ids: v2/v3 indexes come from the operation's layer table, by digest.
use std::collections::{BTreeMap, BTreeSet};

use roaring::RoaringBitmap;
use serde::Deserialize;
use tocsin_model::change::{ChangeSet, ManifestSet, VulnChange};
use tocsin_model::vuln::VulnId;
use tocsin_model::Digest;
use uuid::Uuid;

use super::wire::{put_bytes, put_str, put_varint, Reader};
use crate::{Result, StoreError};

const MAGIC: &[u8; 4] = b"TCS\x01";

/// A digest as its algorithm (1 = sha256, 2 = sha512) and raw bytes: half the size of its text.
fn put_digest(out: &mut Vec<u8>, d: &Digest) {
    let (algo, hex) = d.as_str().split_once(':').unwrap_or(("", ""));
    match (algo, hex::decode(hex)) {
        ("sha256", Ok(b)) if b.len() == 32 => out.push(1),
        ("sha512", Ok(b)) if b.len() == 64 => out.push(2),
        // A Digest is always one of the two; text keeps anything else exact anyway.
        _ => {
            out.push(0);
            put_str(out, d.as_str());
            return;
        }
    }
    out.extend_from_slice(&hex::decode(hex).unwrap_or_default());
}

fn read_digest(r: &mut Reader<'_>) -> Result<Digest> {
    let text = match r.u8()? {
        1 => format!("sha256:{}", hex::encode(r.take(32)?)),
        2 => format!("sha512:{}", hex::encode(r.take(64)?)),
        0 => r.str()?.to_string(),
        a => return Err(r.corrupt(format!("unknown digest algorithm {a}"))),
    };
    Digest::parse(&text).map_err(|e| r.corrupt(e))
}

/// Encodes a change set for storage. Fails when a named manifest has no digest: such a change
/// set could not be read back whole.
pub fn encode_change_set(cs: &ChangeSet) -> Result<Vec<u8>> {
    if let Some(id) = cs.named().iter().find(|id| !cs.manifests.contains_key(id)) {
        return Err(StoreError::Invalid(format!(
            "change set of operation {}: manifest id {id} is named but has no digest",
            cs.cur
        )));
    }
    let mut out = Vec::with_capacity(64 + cs.manifests.len() * 72);
    out.extend_from_slice(MAGIC);
    put_str(&mut out, &cs.updater);
    match cs.prev {
        Some(p) => {
            out.push(1);
            out.extend_from_slice(p.as_bytes());
        }
        None => out.push(0),
    }
    out.extend_from_slice(cs.cur.as_bytes());
    put_varint(&mut out, cs.manifests.len() as u64);
    let mut last = 0u32;
    for (id, digest) in &cs.manifests {
        put_varint(&mut out, u64::from(id - last));
        last = *id;
        put_digest(&mut out, digest);
    }
    put_varint(&mut out, cs.changes.len() as u64);
    let mut bitmap = Vec::new();
    for c in &cs.changes {
        out.push(u8::from(c.old.is_some()) | (u8::from(c.new.is_some()) << 1));
        for id in c.old.iter().chain(&c.new) {
            put_str(&mut out, &id.0);
        }
        for set in [&c.old_affected, &c.new_affected] {
            bitmap.clear();
            set.serialize_into(&mut bitmap).map_err(|e| {
                StoreError::Invalid(format!("change set of operation {}: {e}", cs.cur))
            })?;
            put_bytes(&mut out, &bitmap);
        }
    }
    Ok(out)
}

/// Decodes a stored change set (either encoding; see the module doc). `what` names it in errors.
pub fn decode_change_set(body: &[u8], what: &str) -> Result<ChangeSet> {
    if body.first() == Some(&b'{') {
        return decode_json(body, what);
    }
    let mut r = Reader::new(body, what);
    if r.take(4)? != MAGIC {
        return Err(r.corrupt("not a stored change set (unknown leading bytes)"));
    }
    let uuid = |r: &mut Reader<'_>| -> Result<Uuid> {
        let b = r.take(16)?;
        Uuid::from_slice(b).map_err(|e| r.corrupt(e))
    };
    let updater = r.str()?.to_string();
    let prev = match r.u8()? {
        0 => None,
        1 => Some(uuid(&mut r)?),
        f => return Err(r.corrupt(format!("bad prev flag {f}"))),
    };
    let cur = uuid(&mut r)?;
    let mut manifests = BTreeMap::new();
    let mut id = 0u32;
    for i in 0..r.count()? {
        let delta = r.u32()?;
        if i > 0 && delta == 0 {
            return Err(r.corrupt("manifest ids are not strictly increasing"));
        }
        id = id
            .checked_add(delta)
            .ok_or_else(|| r.corrupt("manifest id overflows 32 bits"))?;
        manifests.insert(id, read_digest(&mut r)?);
    }
    let n = r.count()?;
    let mut changes = Vec::with_capacity(n);
    for _ in 0..n {
        let flags = r.u8()?;
        if flags > 3 {
            return Err(r.corrupt(format!("bad change flags {flags}")));
        }
        let mut vuln = |present: bool| -> Result<Option<VulnId>> {
            Ok(match present {
                true => Some(VulnId(r.str()?.to_string())),
                false => None,
            })
        };
        let old = vuln(flags & 1 != 0)?;
        let new = vuln(flags & 2 != 0)?;
        let mut bitmap = || -> Result<ManifestSet> {
            let b = r.bytes()?;
            RoaringBitmap::deserialize_from(b).map_err(|e| r.corrupt(format!("bitmap: {e}")))
        };
        let old_affected = bitmap()?;
        let new_affected = bitmap()?;
        changes.push(VulnChange {
            old,
            new,
            old_affected,
            new_affected,
        });
    }
    r.finish()?;
    let cs = ChangeSet {
        updater,
        prev,
        cur,
        changes,
        manifests,
    };
    if !cs.is_complete() {
        return Err(StoreError::Corrupt(format!(
            "{what}: a change names a manifest id without a digest"
        )));
    }
    Ok(cs)
}

#[derive(Deserialize)]
struct JsonChange {
    old: Option<VulnId>,
    new: Option<VulnId>,
    old_affected: Vec<Digest>,
    new_affected: Vec<Digest>,
}

#[derive(Deserialize)]
struct JsonChangeSet {
    updater: String,
    prev: Option<Uuid>,
    cur: Uuid,
    changes: Vec<JsonChange>,
}

fn decode_json(body: &[u8], what: &str) -> Result<ChangeSet> {
    let j: JsonChangeSet =
        serde_json::from_slice(body).map_err(|e| super::corrupt_json(what.to_string(), e))?;
    let all: BTreeSet<&Digest> = j
        .changes
        .iter()
        .flat_map(|c| c.old_affected.iter().chain(&c.new_affected))
        .collect();
    let ids: BTreeMap<&Digest, u32> = all
        .iter()
        .enumerate()
        .map(|(i, d)| (*d, i as u32))
        .collect();
    let set = |ds: &[Digest]| ds.iter().filter_map(|d| ids.get(d).copied()).collect();
    let changes = j
        .changes
        .iter()
        .map(|c| VulnChange {
            old: c.old.clone(),
            new: c.new.clone(),
            old_affected: set(&c.old_affected),
            new_affected: set(&c.new_affected),
        })
        .collect();
    Ok(ChangeSet {
        updater: j.updater.clone(),
        prev: j.prev,
        cur: j.cur,
        changes,
        manifests: ids.into_iter().map(|(d, i)| (i, d.clone())).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> Digest {
        Digest::sha256_of(&[n])
    }

    fn sample() -> ChangeSet {
        let mut big = ManifestSet::new();
        big.insert_range(10..70_000);
        let mut manifests: BTreeMap<u32, Digest> = BTreeMap::new();
        for id in big.iter().chain([3, 5]) {
            manifests.insert(id, d((id % 251) as u8));
        }
        ChangeSet {
            updater: "osv/debian".into(),
            prev: Some(Uuid::from_u128(7)),
            cur: Uuid::from_u128(8),
            changes: vec![
                VulnChange {
                    old: None,
                    new: Some(VulnId("ab".repeat(32))),
                    old_affected: ManifestSet::new(),
                    new_affected: [3, 5].into_iter().collect(),
                },
                VulnChange {
                    old: Some(VulnId("cd".repeat(32))),
                    new: None,
                    old_affected: big,
                    new_affected: ManifestSet::new(),
                },
            ],
            manifests,
        }
    }

    #[test]
    fn change_sets_round_trip_compactly() {
        let cs = sample();
        let bytes = encode_change_set(&cs).unwrap();
        assert_eq!(decode_change_set(&bytes, "cs").unwrap(), cs);
        // 70,000 named manifests: the digests dominate (33 bytes each, plus the id delta); the
        // bitmaps are a few hundred bytes.
        assert!(bytes.len() < 70_000 * 36, "{} bytes", bytes.len());
        let empty = ChangeSet {
            cur: Uuid::from_u128(1),
            ..Default::default()
        };
        let bytes = encode_change_set(&empty).unwrap();
        assert_eq!(decode_change_set(&bytes, "cs").unwrap(), empty);
    }

    #[test]
    fn a_named_manifest_without_a_digest_is_refused() {
        let mut cs = sample();
        cs.manifests.remove(&5);
        assert!(matches!(
            encode_change_set(&cs),
            Err(StoreError::Invalid(m)) if m.contains("manifest id 5")
        ));
    }

    #[test]
    fn every_truncation_is_corrupt_not_a_panic() {
        let mut cs = sample();
        cs.changes[1].old_affected = [11, 12].into_iter().collect();
        cs.manifests.retain(|id, _| *id < 20);
        let bytes = encode_change_set(&cs).unwrap();
        for n in 0..bytes.len() {
            assert!(decode_change_set(&bytes[..n], "cs").is_err(), "prefix {n}");
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(decode_change_set(&extra, "cs").is_err());
    }

    #[test]
    fn json_change_sets_of_earlier_versions_still_read() {
        let json = format!(
            r#"{{"updater":"u","prev":null,"cur":"{}","changes":[
                {{"old":null,"new":"{}","old_affected":[],"new_affected":["{}","{}"]}},
                {{"old":"{}","new":null,"old_affected":["{}"],"new_affected":[]}}]}}"#,
            Uuid::from_u128(9),
            "ab".repeat(32),
            d(2),
            d(1),
            "cd".repeat(32),
            d(2)
        );
        let cs = decode_change_set(json.as_bytes(), "cs").unwrap();
        assert_eq!(cs.cur, Uuid::from_u128(9));
        let named: Vec<&Digest> = cs.digests(&cs.changes[0].new_affected).unwrap();
        let (d1, d2) = (d(1), d(2));
        let mut want = vec![&d1, &d2];
        want.sort();
        assert_eq!(named, want);
        assert_eq!(cs.digests(&cs.changes[1].old_affected).unwrap(), vec![&d2]);
        assert!(cs.is_complete());
    }
}
