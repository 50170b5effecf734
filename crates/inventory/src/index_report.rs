//! claircore IndexReports: already the canonical form, so they are checked, not converted.
use tocsin_model::claircore::IndexReport;
use tocsin_model::inventory::InventoryFormat;
use tocsin_model::Digest;

use crate::error::{from_json, InventoryError};
use crate::ParseStats;

const F: InventoryFormat = InventoryFormat::IndexReport;

/// Reads an IndexReport; its digest is `manifest_hash`, which must agree with `given` when both
/// exist. An empty `manifest_hash` takes the given digest.
pub(crate) fn parse(
    bytes: &[u8],
    given: Option<&Digest>,
) -> Result<(Digest, IndexReport, ParseStats), InventoryError> {
    let mut report: IndexReport = from_json(F, bytes)?;
    let digest = if report.manifest_hash.is_empty() {
        given
            .cloned()
            .ok_or(InventoryError::MissingDigest { format: F })?
    } else {
        let own =
            Digest::parse(&report.manifest_hash).map_err(|error| InventoryError::BadDigest {
                format: F,
                at: "manifest_hash".into(),
                error,
            })?;
        if let Some(g) = given {
            if *g != own {
                return Err(InventoryError::DigestMismatch {
                    in_report: own,
                    given: g.clone(),
                });
            }
        }
        own
    };
    // Only the spelling may change (digests are held in lower case); the content stays as sent.
    report.manifest_hash = digest.to_string();
    let stats = ParseStats {
        packages: report.packages.len(),
        ..Default::default()
    };
    Ok((digest, report, stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn digest_comes_from_the_report_and_must_agree() {
        let json = format!(r#"{{"manifest_hash":"{}","packages":{{}}}}"#, hash('A'));
        let (d, r, _) = parse(json.as_bytes(), None).unwrap();
        assert_eq!(d.as_str(), hash('a'));
        assert_eq!(r.manifest_hash, hash('a'));
        let same = Digest::parse(&hash('a')).unwrap();
        assert!(parse(json.as_bytes(), Some(&same)).is_ok());
        let other = Digest::parse(&hash('b')).unwrap();
        let e = parse(json.as_bytes(), Some(&other))
            .unwrap_err()
            .to_string();
        assert!(e.contains("must agree"), "{e}");
    }

    #[test]
    fn bad_or_missing_digests() {
        let e = parse(br#"{"manifest_hash":"sha256:abc"}"#, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("manifest_hash") && e.contains("hex"), "{e}");
        let e = parse(br#"{"manifest_hash":""}"#, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("digest is required"), "{e}");
        let given = Digest::parse(&hash('c')).unwrap();
        let (d, r, _) = parse(br#"{"manifest_hash":""}"#, Some(&given)).unwrap();
        assert_eq!((d, r.manifest_hash), (given.clone(), given.to_string()));
    }

    #[test]
    fn wrong_types_name_the_path() {
        let e = parse(
            br#"{"manifest_hash":"x","packages":{"1":{"id":"1","name":5}}}"#,
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("packages.1.name"), "{e}");
    }
}
