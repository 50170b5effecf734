//! Clair v2/v3 page tokens (HMAC-signed cursors), as clients send them back.
//! Laws: decoding never panics; a token that decodes is exactly the token the server would
//! issue for what it decodes to (no second spelling of a token); every (kind, cursors) pair
//! round-trips; changing any one character of a valid token makes it invalid.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tocsin_engine::legacy::{Cursor, PageTokens, TokenKind};
use uuid::Uuid;

const NAME: Uuid = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);

fn tokens() -> PageTokens {
    PageTokens::new(b"tocsin fuzz page-token key".to_vec())
}

fn kinds() -> [(TokenKind, usize); 3] {
    [
        (TokenKind::V2, 2),
        (TokenKind::V3Old, 1),
        (TokenKind::V3New, 1),
    ]
}

fn cursor(raw: u32, done: bool) -> Cursor {
    if done {
        Cursor::Done
    } else {
        Cursor::From(raw)
    }
}

fuzz_target!(|data: &[u8]| {
    let t = tokens();
    // Structured: cursors from the input, encoded, decoded, and tampered with.
    if data.len() >= 9 {
        let (kind, n) = kinds()[usize::from(data[0] % 3)];
        let a = u32::from_le_bytes([data[1], data[2], data[3], data[4]]);
        let b = u32::from_le_bytes([data[5], data[6], data[7], data[8]]);
        let cursors: Vec<Cursor> = [cursor(a, data[0] & 4 != 0), cursor(b, data[0] & 8 != 0)]
            .into_iter()
            .take(n)
            .collect();
        let token = t.encode(kind, NAME, &cursors);
        assert_eq!(t.decode(kind, NAME, n, &token).ok(), Some(cursors.clone()));
        for (other, m) in kinds() {
            if other != kind {
                assert!(t.decode(other, NAME, m, &token).is_err());
            }
        }
        assert!(t.decode(kind, Uuid::nil(), n, &token).is_err());
        if let Some(&pos) = data.get(9) {
            let mut bytes = token.clone().into_bytes();
            let i = usize::from(pos) % bytes.len();
            let replacement = if bytes[i] == b'A' { b'B' } else { b'A' };
            bytes[i] = replacement;
            let tampered = String::from_utf8(bytes).expect("base64 is ASCII");
            assert!(
                t.decode(kind, NAME, n, &tampered).is_err(),
                "a changed token is refused: {tampered}"
            );
        }
    }
    // Arbitrary text as a token.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for (kind, n) in kinds() {
        match t.decode(kind, NAME, n, text) {
            Ok(cursors) => assert_eq!(t.encode(kind, NAME, &cursors), text),
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
});
