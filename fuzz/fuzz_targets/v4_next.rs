//! Clair v4's `next` page token (a UUID holding the position), as clients send it back.
//! Laws: a token that decodes names a position that encodes and decodes to itself; every
//! position round-trips.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tocsin_api::v4::{decode_token, encode_token};

fuzz_target!(|data: &[u8]| {
    if let Some(n) = data.get(..8) {
        let mut b = [0u8; 8];
        b.copy_from_slice(n);
        let pos = u64::from_le_bytes(b);
        assert_eq!(decode_token(&encode_token(pos)).ok(), Some(pos));
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match decode_token(text) {
        Ok(pos) => assert_eq!(decode_token(&encode_token(pos)).ok(), Some(pos)),
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
