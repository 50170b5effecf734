//! One OSV record as JSON (an upload or a record file), through the snapshot reader.
//! Laws: the snapshot laws (`tocsin_fuzz::check_snapshot`), and content addressing: the same
//! JSON value, formatted differently, is the same snapshot (same fingerprint).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.starts_with(&[0x1f, 0x8b]) || data.starts_with(b"PK") {
        return; // archives have targets of their own
    }
    let Some(snapshot) = tocsin_fuzz::read_and_check(data) else {
        return;
    };
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        let pretty = serde_json::to_vec_pretty(&value).expect("a JSON value serialises");
        let again = tocsin_fuzz::read_and_check(&pretty).expect("reformatted JSON still reads");
        assert_eq!(again.fingerprint, snapshot.fingerprint);
    }
});
