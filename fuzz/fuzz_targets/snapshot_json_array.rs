//! A JSON array of OSV records or claircore Vulnerabilities, recognised by content.
//! Laws: the snapshot laws, and "the fingerprint depends only on the set of records": an OSV
//! array gives the same fingerprint as a tar.gz holding each of its records as a file.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tocsin_feeds::SnapshotFormat;

fn tar_gz_of(records: &[serde_json::Value]) -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    for (i, r) in records.iter().enumerate() {
        let body = serde_json::to_vec(r).expect("a JSON value serialises");
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, format!("records/r{i}.json"), &body[..])
            .expect("writing to memory");
    }
    builder
        .into_inner()
        .and_then(|gz| gz.finish())
        .expect("writing to memory")
}

fuzz_target!(|data: &[u8]| {
    if data.starts_with(&[0x1f, 0x8b]) || data.starts_with(b"PK") {
        return; // archives have targets of their own
    }
    let Some(snapshot) = tocsin_fuzz::read_and_check(data) else {
        return;
    };
    if SnapshotFormat::sniff(data) != Some(SnapshotFormat::OsvJsonArray) {
        return;
    }
    let Ok(records) = serde_json::from_slice::<Vec<serde_json::Value>>(data) else {
        return;
    };
    let archive = tar_gz_of(&records);
    let again = tocsin_fuzz::read_and_check(&archive).expect("the same records as files read");
    assert_eq!(again.fingerprint, snapshot.fingerprint);
    assert_eq!(again.vulnerabilities.len(), snapshot.vulnerabilities.len());
});
