//! PSK JWTs on the API (`auth.psk`): keys from configuration text and bearer tokens from clients.
//! The first input byte picks the mode:
//! - 0: the rest is a PSK (`auth.psk.key` text); a key that decodes is not empty.
//! - 1: the rest is a token, verified as is.
//! - 2..: the rest is a claims payload, signed here (with the right or a wrong key, under one
//!   of several headers) so that verification gets past the signature.
//!
//! Laws: a verified token has an allowed issuer, an `exp` not past and `nbf`/`iat` not in the
//! future (with the leeway) and is an HS256 token signed with the key; nothing else verifies.
#![no_main]
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;
use time::OffsetDateTime;
use tocsin_deliver::jwt::{verify_at, INTRASERVICE_ISSUER, NOTIFIER_ISSUER};
use tocsin_deliver::PskKey;

const NOW: i64 = 1_750_000_000;
const LEEWAY: Duration = Duration::from_secs(15);

fn key() -> PskKey {
    PskKey::from_bytes(b"tocsin fuzz psk".to_vec()).expect("a non-empty key")
}

fn sign(header: &str, payload: &[u8], key: &[u8]) -> String {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(signing_input.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{sig}")
}

fn verify(token: &str) -> Option<tocsin_deliver::jwt::Claims> {
    let issuers = [NOTIFIER_ISSUER.to_string(), INTRASERVICE_ISSUER.to_string()];
    let now = OffsetDateTime::from_unix_timestamp(NOW).expect("a valid time");
    match verify_at(token, &key(), &issuers, LEEWAY, now) {
        Ok(c) => {
            assert!(c.iss == NOTIFIER_ISSUER || c.iss == INTRASERVICE_ISSUER);
            assert!(c.exp > NOW - 15, "exp {} is past", c.exp);
            for at in [c.nbf, c.iat].into_iter().flatten() {
                assert!(at <= NOW + 15, "{at} is in the future");
            }
            Some(c)
        }
        Err(e) => {
            let _ = e.to_string();
            None
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode {
        0 => {
            let Ok(text) = std::str::from_utf8(rest) else {
                return;
            };
            if let Ok(k) = PskKey::from_base64(text) {
                assert!(!k.as_bytes().is_empty());
            }
        }
        1 => {
            let Ok(text) = std::str::from_utf8(rest) else {
                return;
            };
            verify(text);
        }
        m => {
            let headers = [
                r#"{"alg":"HS256"}"#,
                r#"{"alg":"HS256","typ":"JWT"}"#,
                r#"{"alg":"none"}"#,
                r#"{"alg":"HS512","typ":"JWT"}"#,
            ];
            let header = headers[usize::from(m % 4)];
            let right_key = m & 4 == 0;
            let signing_key: &[u8] = if right_key {
                b"tocsin fuzz psk"
            } else {
                b"another key"
            };
            let token = sign(header, rest, signing_key);
            let verified = verify(&token);
            if verified.is_some() {
                assert!(right_key, "a token signed with another key verified");
                assert!(header.contains("HS256"), "a non-HS256 token verified");
            }
        }
    }
});
