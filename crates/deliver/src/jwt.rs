//! Clair's pre-shared-key (PSK) JWTs: signing outbound webhook calls and verifying inbound API
//! calls (wire reference §2.2, §2.5).
//!
//! Tokens are HS256 over the base64-*decoded* `auth.psk.key`. Outbound tokens are what Quay
//! accepts: the header is exactly `{"alg":"HS256"}` (no `typ`, no `kid`), the claims are
//! `iss: "clair-notifier"`, `iat: now`, `nbf: now - 60 s`, `exp: now + 60 s`, and there is no
//! `aud` (Quay rejects a token with `aud`, or with an `iat` in the future).
//!
//! `jsonwebtoken` is used for the HMAC and the encoding: its [`jsonwebtoken::Header::new`] sets
//! `typ: "JWT"`, but `typ` is an `Option` that is skipped when `None`, so clearing it yields the
//! exact header Clair sends; a unit test pins the header bytes.
//!
//! Verification uses `jsonwebtoken` only for the signature and the algorithm (HS256 alone; `none`
//! and every other algorithm are refused) and checks the times itself against a caller-supplied
//! clock, so that tests control time and the leeway applies uniformly to `exp`, `nbf` and `iat`.
//! Unlike Clair, a token without `exp` is refused: a bearer token that never expires is a
//! standing credential, and every known client (Quay, Clair's own services) sets `exp`.

use std::time::Duration;

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use time::OffsetDateTime;

/// The issuer of outbound notifier tokens.
pub const NOTIFIER_ISSUER: &str = "clair-notifier";
/// The issuer Clair's services use between themselves; callers add it to the allowed list.
pub const INTRASERVICE_ISSUER: &str = "clair-intraservice";
/// The clock-skew leeway for inbound tokens (Clair's).
pub const LEEWAY: Duration = Duration::from_secs(15);
/// How far `nbf` and `exp` of outbound tokens lie from `iat`.
const OUTBOUND_WINDOW_SECS: i64 = 60;

/// What can go wrong with a PSK or a token.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    /// The configured key is not base64 or is empty.
    #[error("auth.psk.key: {0}")]
    Key(String),
    /// Signing failed.
    #[error("signing a JWT: {0}")]
    Sign(#[source] jsonwebtoken::errors::Error),
    /// The token is not a well-formed HS256 JWT signed with the key.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// The token's issuer is not accepted.
    #[error("token issuer {0:?} is not allowed")]
    Issuer(String),
    /// The token has expired.
    #[error("token expired at {exp} (now {now}, leeway {leeway_s} s)")]
    Expired {
        /// `exp`.
        exp: i64,
        /// The verifier's clock.
        now: i64,
        /// The leeway applied.
        leeway_s: u64,
    },
    /// The token is not valid yet (`nbf` or `iat` in the future).
    #[error("token not valid before {claim} = {at} (now {now}, leeway {leeway_s} s)")]
    NotYetValid {
        /// `nbf` or `iat`.
        claim: &'static str,
        /// That claim's value.
        at: i64,
        /// The verifier's clock.
        now: i64,
        /// The leeway applied.
        leeway_s: u64,
    },
    /// A required claim is missing.
    #[error("token lacks the {0:?} claim")]
    Missing(&'static str),
}

/// A pre-shared key, held decoded.
#[derive(Clone, PartialEq, Eq)]
pub struct PskKey(Vec<u8>);

impl std::fmt::Debug for PskKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        write!(f, "PskKey({} bytes)", self.0.len())
    }
}

impl PskKey {
    /// Decodes `auth.psk.key`. Clair writes it in standard base64 with padding; the unpadded and
    /// URL-safe alphabets are accepted too, since operators generate keys with various tools.
    pub fn from_base64(text: &str) -> Result<Self, JwtError> {
        use base64::engine::general_purpose::{
            STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD,
        };
        let text = text.trim();
        if text.is_empty() {
            return Err(JwtError::Key("the key is empty".into()));
        }
        let first_err = match STANDARD.decode(text) {
            Ok(k) => return Self::from_bytes(k),
            Err(e) => e,
        };
        [STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
            .iter()
            .find_map(|engine| engine.decode(text).ok())
            .map_or_else(
                || Err(JwtError::Key(format!("not valid base64: {first_err}"))),
                Self::from_bytes,
            )
    }

    /// A key from raw bytes.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, JwtError> {
        if bytes.is_empty() {
            return Err(JwtError::Key("the key is empty".into()));
        }
        Ok(PskKey(bytes))
    }

    /// The decoded key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// The claims of a verified token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    /// `iss`.
    pub iss: String,
    /// `sub`, when present.
    pub sub: Option<String>,
    /// `iat`, when present (unix seconds).
    pub iat: Option<i64>,
    /// `nbf`, when present (unix seconds).
    pub nbf: Option<i64>,
    /// `exp` (unix seconds).
    pub exp: i64,
}

#[derive(serde::Serialize)]
struct OutClaims<'a> {
    iss: &'a str,
    iat: i64,
    nbf: i64,
    exp: i64,
}

#[derive(serde::Deserialize)]
struct InClaims {
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    sub: Option<String>,
    // RFC 7519 NumericDates may carry fractions; they are truncated to whole seconds.
    #[serde(default)]
    iat: Option<f64>,
    #[serde(default)]
    nbf: Option<f64>,
    #[serde(default)]
    exp: Option<f64>,
}

/// Signs outbound tokens with a PSK.
#[derive(Clone)]
pub struct PskSigner {
    key: EncodingKey,
    issuer: String,
}

impl std::fmt::Debug for PskSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PskSigner")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl PskSigner {
    /// A signer issuing tokens as `clair-notifier`.
    pub fn new(key: &PskKey) -> Self {
        Self::with_issuer(key, NOTIFIER_ISSUER)
    }

    /// A signer with another issuer.
    pub fn with_issuer(key: &PskKey, issuer: &str) -> Self {
        PskSigner {
            key: EncodingKey::from_secret(key.as_bytes()),
            issuer: issuer.to_owned(),
        }
    }

    /// A token valid from one minute before `now` to one minute after.
    pub fn sign_at(&self, now: OffsetDateTime) -> Result<String, JwtError> {
        let iat = now.unix_timestamp();
        let mut header = Header::new(Algorithm::HS256);
        header.typ = None;
        let claims = OutClaims {
            iss: &self.issuer,
            iat,
            nbf: iat - OUTBOUND_WINDOW_SECS,
            exp: iat + OUTBOUND_WINDOW_SECS,
        };
        jsonwebtoken::encode(&header, &claims, &self.key).map_err(JwtError::Sign)
    }

    /// A token for now.
    pub fn sign(&self) -> Result<String, JwtError> {
        self.sign_at(OffsetDateTime::now_utc())
    }
}

/// Verifies an inbound token now with Clair's 15 s leeway; see [`verify_at`].
pub fn verify(token: &str, key: &PskKey, allowed_issuers: &[String]) -> Result<Claims, JwtError> {
    verify_at(
        token,
        key,
        allowed_issuers,
        LEEWAY,
        OffsetDateTime::now_utc(),
    )
}

/// Verifies an inbound token: HS256 with `key`, `iss` in `allowed_issuers`, `exp` present and not
/// past, `nbf` and `iat` (when present) not in the future, each with `leeway`. `aud` is ignored,
/// as Clair does.
pub fn verify_at(
    token: &str,
    key: &PskKey,
    allowed_issuers: &[String],
    leeway: Duration,
    now: OffsetDateTime,
) -> Result<Claims, JwtError> {
    let mut validation = Validation::new(Algorithm::HS256);
    // Times and issuer are checked below against the caller's clock, with clearer errors.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.leeway = 0;
    validation.required_spec_claims.clear();
    let data = jsonwebtoken::decode::<InClaims>(
        token,
        &DecodingKey::from_secret(key.as_bytes()),
        &validation,
    )
    .map_err(|e| JwtError::Invalid(e.to_string()))?;
    let c = data.claims;

    let iss = c.iss.ok_or(JwtError::Missing("iss"))?;
    if !allowed_issuers.contains(&iss) {
        return Err(JwtError::Issuer(iss));
    }
    let secs = |v: Option<f64>, name: &'static str| -> Result<Option<i64>, JwtError> {
        match v {
            None => Ok(None),
            Some(f) if f.is_finite() && f.abs() < 1e15 => Ok(Some(f.trunc() as i64)),
            Some(f) => Err(JwtError::Invalid(format!(
                "claim {name} = {f} is not a time"
            ))),
        }
    };
    let exp = secs(c.exp, "exp")?.ok_or(JwtError::Missing("exp"))?;
    let nbf = secs(c.nbf, "nbf")?;
    let iat = secs(c.iat, "iat")?;

    let now_s = now.unix_timestamp();
    let leeway_s = leeway.as_secs();
    let lw = i64::try_from(leeway_s).unwrap_or(i64::MAX);
    if now_s.saturating_sub(lw) >= exp {
        return Err(JwtError::Expired {
            exp,
            now: now_s,
            leeway_s,
        });
    }
    for (claim, at) in [("nbf", nbf), ("iat", iat)] {
        if let Some(at) = at {
            if at > now_s.saturating_add(lw) {
                return Err(JwtError::NotYetValid {
                    claim,
                    at,
                    now: now_s,
                    leeway_s,
                });
            }
        }
    }
    Ok(Claims {
        iss,
        sub: c.sub,
        iat,
        nbf,
        exp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use hmac::{Hmac, Mac};
    use sha2::Sha256;

    fn key() -> PskKey {
        // "a very secret pre-shared key" in standard base64.
        PskKey::from_base64("YSB2ZXJ5IHNlY3JldCBwcmUtc2hhcmVkIGtleQ==").unwrap()
    }

    fn t0() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_750_000_000).unwrap()
    }

    fn issuers() -> Vec<String> {
        vec![NOTIFIER_ISSUER.to_owned(), INTRASERVICE_ISSUER.to_owned()]
    }

    fn part(token: &str, i: usize) -> serde_json::Value {
        let p = token.split('.').nth(i).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap()
    }

    /// A token with arbitrary header and claims, signed independently of jsonwebtoken.
    fn forge(header: &str, claims: &str, key: &[u8]) -> String {
        let msg = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        mac.update(msg.as_bytes());
        format!(
            "{msg}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    }

    #[test]
    fn key_decodes_and_hides() {
        let k = key();
        assert_eq!(k.as_bytes(), b"a very secret pre-shared key");
        assert_eq!(format!("{k:?}"), "PskKey(28 bytes)");
        // Unpadded and URL-safe spellings of the same key.
        assert_eq!(
            PskKey::from_base64("YSB2ZXJ5IHNlY3JldCBwcmUtc2hhcmVkIGtleQ").unwrap(),
            k
        );
        assert_eq!(
            PskKey::from_base64("-_8").unwrap().as_bytes(),
            &[0xfb, 0xff]
        );
        assert!(matches!(PskKey::from_base64("  "), Err(JwtError::Key(_))));
        let e = PskKey::from_base64("not base64!").unwrap_err();
        assert!(
            e.to_string().starts_with("auth.psk.key: not valid base64"),
            "{e}"
        );
    }

    #[test]
    fn outbound_token_has_clairs_exact_shape() {
        let tok = PskSigner::new(&key()).sign_at(t0()).unwrap();
        let header_b64 = tok.split('.').next().unwrap();
        assert_eq!(
            URL_SAFE_NO_PAD.decode(header_b64).unwrap(),
            br#"{"alg":"HS256"}"#
        );
        let claims = part(&tok, 1);
        let obj = claims.as_object().unwrap();
        let mut keys: Vec<_> = obj.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["exp", "iat", "iss", "nbf"]);
        assert_eq!(claims["iss"], "clair-notifier");
        assert_eq!(claims["iat"], 1_750_000_000);
        assert_eq!(claims["nbf"], 1_750_000_000 - 60);
        assert_eq!(claims["exp"], 1_750_000_000 + 60);
    }

    #[test]
    fn outbound_signature_is_hmac_sha256_over_the_decoded_key() {
        let tok = PskSigner::new(&key()).sign_at(t0()).unwrap();
        let (msg, sig) = tok.rsplit_once('.').unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(b"a very secret pre-shared key").unwrap();
        mac.update(msg.as_bytes());
        mac.verify_slice(&URL_SAFE_NO_PAD.decode(sig).unwrap())
            .expect("signature over the decoded key");
    }

    #[test]
    fn round_trip_and_leeway() {
        let tok = PskSigner::new(&key()).sign_at(t0()).unwrap();
        let c = verify_at(&tok, &key(), &issuers(), LEEWAY, t0()).unwrap();
        assert_eq!(c.iss, "clair-notifier");
        assert_eq!(c.exp, 1_750_000_060);
        // exp = t0+60; with 15 s leeway it holds until t0+74 inclusive.
        let at = |s: i64| t0() + time::Duration::seconds(s);
        assert!(verify_at(&tok, &key(), &issuers(), LEEWAY, at(74)).is_ok());
        assert!(matches!(
            verify_at(&tok, &key(), &issuers(), LEEWAY, at(75)),
            Err(JwtError::Expired {
                exp: 1_750_000_060,
                ..
            })
        ));
        // iat = t0: a verifier whose clock lags by up to 15 s still accepts it.
        assert!(verify_at(&tok, &key(), &issuers(), LEEWAY, at(-15)).is_ok());
        assert!(matches!(
            verify_at(&tok, &key(), &issuers(), LEEWAY, at(-16)),
            Err(JwtError::NotYetValid { claim: "iat", .. })
        ));
    }

    #[test]
    fn nbf_in_the_future_is_refused() {
        let now = t0().unix_timestamp();
        let tok = forge(
            r#"{"alg":"HS256","typ":"JWT"}"#,
            &format!(r#"{{"iss":"quay","nbf":{},"exp":{}}}"#, now + 30, now + 90),
            key().as_bytes(),
        );
        let allowed = vec!["quay".to_owned()];
        assert!(matches!(
            verify_at(&tok, &key(), &allowed, LEEWAY, t0()),
            Err(JwtError::NotYetValid { claim: "nbf", .. })
        ));
        assert!(verify_at(
            &tok,
            &key(),
            &allowed,
            LEEWAY,
            t0() + Duration::from_secs(15)
        )
        .is_ok());
    }

    #[test]
    fn wrong_key_issuer_or_algorithm_is_refused() {
        let tok = PskSigner::new(&key()).sign_at(t0()).unwrap();
        let other = PskKey::from_bytes(b"another key".to_vec()).unwrap();
        assert!(matches!(
            verify_at(&tok, &other, &issuers(), LEEWAY, t0()),
            Err(JwtError::Invalid(_))
        ));
        let only_quay = vec!["quay".to_owned()];
        assert!(matches!(
            verify_at(&tok, &key(), &only_quay, LEEWAY, t0()),
            Err(JwtError::Issuer(i)) if i == "clair-notifier"
        ));

        let now = t0().unix_timestamp();
        let claims = format!(r#"{{"iss":"clair-notifier","exp":{}}}"#, now + 60);
        // HS512 with the same key: a valid signature, but not the algorithm Clair uses.
        let hs512 = {
            let mut h = Header::new(Algorithm::HS512);
            h.typ = None;
            let c: serde_json::Value = serde_json::from_str(&claims).unwrap();
            jsonwebtoken::encode(&h, &c, &EncodingKey::from_secret(key().as_bytes())).unwrap()
        };
        assert!(matches!(
            verify_at(&hs512, &key(), &issuers(), LEEWAY, t0()),
            Err(JwtError::Invalid(_))
        ));
        // alg "none" with an empty signature.
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(&claims)
        );
        assert!(matches!(
            verify_at(&none, &key(), &issuers(), LEEWAY, t0()),
            Err(JwtError::Invalid(_))
        ));
        assert!(matches!(
            verify_at("not.a-token", &key(), &issuers(), LEEWAY, t0()),
            Err(JwtError::Invalid(_))
        ));
    }

    #[test]
    fn exp_and_iss_are_required_aud_is_ignored() {
        let now = t0().unix_timestamp();
        let no_exp = forge(
            r#"{"alg":"HS256"}"#,
            r#"{"iss":"clair-intraservice"}"#,
            key().as_bytes(),
        );
        assert!(matches!(
            verify_at(&no_exp, &key(), &issuers(), LEEWAY, t0()),
            Err(JwtError::Missing("exp"))
        ));
        let no_iss = forge(
            r#"{"alg":"HS256"}"#,
            &format!(r#"{{"exp":{}}}"#, now + 10),
            key().as_bytes(),
        );
        assert!(matches!(
            verify_at(&no_iss, &key(), &issuers(), LEEWAY, t0()),
            Err(JwtError::Missing("iss"))
        ));
        let with_aud = forge(
            r#"{"alg":"HS256"}"#,
            &format!(
                r#"{{"iss":"clair-intraservice","aud":["clair"],"sub":"s","exp":{}.5}}"#,
                now + 10
            ),
            key().as_bytes(),
        );
        let c = verify_at(&with_aud, &key(), &issuers(), LEEWAY, t0()).unwrap();
        assert_eq!(c.exp, now + 10);
        assert_eq!(c.sub.as_deref(), Some("s"));
    }
}
