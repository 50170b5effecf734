//! A JSON array of claircore Vulnerabilities (a Clair matcher's dump).
//! Laws: claircore's wire shape round-trips (decode ∘ encode = id on what decodes); the snapshot
//! laws; and the snapshot of the re-encoded array is the same snapshot.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tocsin_feeds::SnapshotFormat;
use tocsin_model::claircore::Vulnerability;

fuzz_target!(|data: &[u8]| {
    if data.starts_with(&[0x1f, 0x8b]) || data.starts_with(b"PK") {
        return; // archives have targets of their own
    }
    let decoded = serde_json::from_slice::<Vec<Vulnerability>>(data).ok();
    if let Some(v) = &decoded {
        let json = serde_json::to_vec(v).expect("claircore vulnerabilities serialise");
        let back: Vec<Vulnerability> =
            serde_json::from_slice(&json).expect("what tocsin writes, it reads");
        assert_eq!(&back, v, "claircore JSON round-trips");
    }
    let Some(snapshot) = tocsin_fuzz::read_and_check(data) else {
        return;
    };
    if let (Some(v), Some(SnapshotFormat::ClaircoreJsonArray)) =
        (&decoded, SnapshotFormat::sniff(data))
    {
        let json = serde_json::to_vec_pretty(v).expect("claircore vulnerabilities serialise");
        let again = tocsin_fuzz::read_and_check(&json).expect("the re-encoded array reads");
        assert_eq!(again.fingerprint, snapshot.fingerprint);
    }
});
