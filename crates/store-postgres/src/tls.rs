//! TLS to PostgreSQL: libpq's `sslmode`, `sslrootcert`, `sslcert`, `sslkey` and friends, on
//! rustls.
//!
//! tokio-postgres knows only `sslmode=disable|prefer|require` and refuses libpq's other TLS
//! keys, and it leaves the TLS handshake to a [`MakeTlsConnect`] supplied by the caller. This
//! module takes every TLS key out of the connection string (key=value pairs or a URL's query),
//! hands the rest to tokio-postgres, and builds [`PgTls`], the connector that does what libpq
//! does with those keys:
//!
//! | `sslmode` | TLS | server certificate |
//! |---|---|---|
//! | `disable` | never | — |
//! | `allow`, `prefer` (default) | when the server offers it | checked against the root certificate when there is one, else not checked |
//! | `require` | always | checked against the root certificate when there is one, else not checked |
//! | `verify-ca` | always | chain checked against the root certificate |
//! | `verify-full` | always | chain and host name checked |
//!
//! The root certificate is `sslrootcert`, else `~/.postgresql/root.crt` when that file exists
//! (libpq's default); `sslrootcert=system` trusts the system's roots and implies `verify-full`.
//! The client certificate is `sslcert`/`sslkey`, else `~/.postgresql/postgresql.{crt,key}` when
//! they exist. `sslcrl` (default `~/.postgresql/root.crl`) revokes certificates. `sslsni=0` stops
//! sending the host name; `ssl_min_protocol_version`/`ssl_max_protocol_version` bound the TLS
//! version (rustls speaks TLS 1.2 and 1.3). The client offers ALPN `postgresql`, so
//! `sslnegotiation=direct` (PostgreSQL 17) works too. The SCRAM channel binding
//! `tls-server-end-point` is provided, so `channel_binding=require` works over TLS.
//!
//! Differences from libpq, each refused or documented rather than guessed: `allow` behaves as
//! `prefer` (TLS first); a failed handshake under `prefer` is an error, where libpq would retry
//! without TLS; `sslpassword` (encrypted keys), `sslcrldir` and `sslcertmode=require` are refused
//! with a message saying what to do instead; explicitly named files that do not exist are an
//! error (libpq skips some silently); `verify-full` needs `host=` (as in libpq).
use std::fmt;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use sha2::Digest as _;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};
use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

/// The libpq connection-string keys this module handles (taken out before tokio-postgres sees
/// the string).
const TLS_KEYS: &[&str] = &[
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslcrl",
    "sslcrldir",
    "sslpassword",
    "sslsni",
    "sslcompression",
    "sslcertmode",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
];

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// libpq: plain first, TLS if the server insists; here the same as [`SslMode::Prefer`].
    Allow,
    /// TLS when the server offers it (the default).
    Prefer,
    /// TLS always.
    Require,
    /// TLS always, the server's certificate chain checked against the root certificate.
    VerifyCa,
    /// As `VerifyCa`, and the certificate must name the host.
    VerifyFull,
}

impl SslMode {
    fn parse(text: &str) -> Option<SslMode> {
        Some(match text {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    /// The mode as libpq spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// What tokio-postgres is asked for.
    fn driver_mode(self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as D;
        match self {
            SslMode::Disable => D::Disable,
            SslMode::Allow | SslMode::Prefer => D::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => D::Require,
        }
    }
}

/// How much of the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Nothing (the connection is encrypted, not authenticated).
    Nothing,
    /// The chain up to a trusted root, not the name.
    Chain,
    /// Chain and host name.
    Full,
}

/// Why a connection string's TLS settings cannot be used. The message names the key and the
/// file; it never contains the rest of the connection string (which may hold a password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettingsError(pub String);

impl fmt::Display for TlsSettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn bad(message: impl Into<String>) -> TlsSettingsError {
    TlsSettingsError(message.into())
}

// ---- taking the TLS keys out of a connection string ------------------------------------------

/// A connection string without its TLS keys (for tokio-postgres), and those keys in order.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Split {
    pub(crate) rest: String,
    pub(crate) tls: Vec<(String, String)>,
    pub(crate) url: bool,
}

pub(crate) fn is_url(connstring: &str) -> bool {
    connstring.starts_with("postgres://") || connstring.starts_with("postgresql://")
}

/// Splits either form of connection string.
pub(crate) fn split(connstring: &str) -> Result<Split, TlsSettingsError> {
    if is_url(connstring) {
        split_url(connstring)
    } else {
        split_pairs(connstring)
    }
}

/// libpq's key=value syntax: `key = value`, values optionally single-quoted, `\` escaping the
/// next character.
fn parse_pairs(text: &str) -> Result<Vec<(String, String)>, TlsSettingsError> {
    let mut pairs = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(bad(format!(
                "missing \"=\" after {key:?} in the connection string"
            )));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => {
                        return Err(bad(format!(
                            "unterminated quoted value of {key:?} in the connection string"
                        )))
                    }
                    Some('\'') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
}

/// Quotes a value for libpq's key=value syntax.
pub(crate) fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn split_pairs(connstring: &str) -> Result<Split, TlsSettingsError> {
    let mut rest = Vec::new();
    let mut tls = Vec::new();
    for (key, value) in parse_pairs(connstring)? {
        if TLS_KEYS.contains(&key.as_str()) {
            tls.push((key, value));
        } else {
            rest.push(format!("{key}={}", quote(&value)));
        }
    }
    Ok(Split {
        rest: rest.join(" "),
        tls,
        url: false,
    })
}

fn percent_decode(text: &str) -> Result<String, TlsSettingsError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| bad("invalid percent-encoding in the connection URL's query"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad("the connection URL's query is not UTF-8"))
}

fn split_url(connstring: &str) -> Result<Split, TlsSettingsError> {
    let Some((base, query)) = connstring.split_once('?') else {
        return Ok(Split {
            rest: connstring.to_owned(),
            tls: Vec::new(),
            url: true,
        });
    };
    let mut kept = Vec::new();
    let mut tls = Vec::new();
    for piece in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = piece.split_once('=').unwrap_or((piece, ""));
        let key = percent_decode(key)?;
        if TLS_KEYS.contains(&key.as_str()) {
            tls.push((key, percent_decode(value)?));
        } else if key == "ssl" {
            // libpq (and JDBC) accept `ssl=true` in URLs for sslmode=require.
            match percent_decode(value)?.as_str() {
                "true" => tls.push(("sslmode".to_owned(), "require".to_owned())),
                other => {
                    return Err(bad(format!(
                        "ssl={other:?} in the connection URL: only ssl=true is understood (use sslmode=)"
                    )))
                }
            }
        } else {
            kept.push(piece);
        }
    }
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok(Split {
        rest,
        tls,
        url: true,
    })
}

// ---- settings ------------------------------------------------------------------------------------

/// The TLS settings of a connection string, resolved (defaults applied, files found).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Settings {
    pub(crate) mode: SslMode,
    check: Check,
    root: Option<Root>,
    identity: Option<(PathBuf, PathBuf)>,
    crl: Option<PathBuf>,
    sni: bool,
    versions: Versions,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Root {
    File(PathBuf),
    System,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Versions {
    tls12: bool,
    tls13: bool,
}

fn protocol_version(key: &str, value: &str) -> Result<Option<u8>, TlsSettingsError> {
    Ok(match value {
        "" => None,
        "TLSv1" => Some(0),
        "TLSv1.1" => Some(1),
        "TLSv1.2" => Some(2),
        "TLSv1.3" => Some(3),
        other => {
            return Err(bad(format!(
                "{key}={other:?}: expected TLSv1, TLSv1.1, TLSv1.2 or TLSv1.3"
            )))
        }
    })
}

impl Settings {
    /// Resolves the TLS keys of a connection string. `home` is where `~/.postgresql` is looked
    /// for (libpq's default files); files are only looked at when TLS may be used.
    pub(crate) fn resolve(
        keys: &[(String, String)],
        home: Option<&Path>,
    ) -> Result<Settings, TlsSettingsError> {
        // The last occurrence of a key wins, as in libpq.
        let get = |name: &str| {
            keys.iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let nonempty = |name: &str| get(name).filter(|v| !v.is_empty());
        let root_key = nonempty("sslrootcert");
        let mode = match get("sslmode") {
            None | Some("") if root_key == Some("system") => SslMode::VerifyFull,
            None | Some("") => SslMode::Prefer,
            Some(text) => SslMode::parse(text).ok_or_else(|| {
                bad(format!(
                    "sslmode={text:?}: expected disable, allow, prefer, require, verify-ca or verify-full"
                ))
            })?,
        };
        if nonempty("sslpassword").is_some() {
            return Err(bad(
                "sslpassword is not supported (tocsin cannot read encrypted private keys): \
                 decrypt the key, e.g. `openssl pkey -in client.key -out client-plain.key`, and \
                 name that file in sslkey",
            ));
        }
        if nonempty("sslcrldir").is_some() {
            return Err(bad(
                "sslcrldir is not supported: concatenate the CRLs into one PEM file and name it in sslcrl",
            ));
        }
        let send_identity = match get("sslcertmode") {
            None | Some("") | Some("allow") => true,
            Some("disable") => false,
            Some("require") => {
                return Err(bad(
                    "sslcertmode=require is not supported: use sslcertmode=allow (the default) and \
                     let the server's pg_hba.conf demand the certificate (the `cert` method or clientcert=verify-full)",
                ))
            }
            Some(other) => {
                return Err(bad(format!(
                    "sslcertmode={other:?}: expected disable, allow or require"
                )))
            }
        };
        let sni = match get("sslsni") {
            None | Some("") | Some("1") => true,
            Some("0") => false,
            Some(other) => return Err(bad(format!("sslsni={other:?}: expected 0 or 1"))),
        };
        let min = protocol_version(
            "ssl_min_protocol_version",
            get("ssl_min_protocol_version").unwrap_or(""),
        )?
        .unwrap_or(2);
        let max = protocol_version(
            "ssl_max_protocol_version",
            get("ssl_max_protocol_version").unwrap_or(""),
        )?
        .unwrap_or(3);
        if max < 2 {
            return Err(bad(
                "ssl_max_protocol_version below TLSv1.2 is not supported (tocsin speaks TLS 1.2 and 1.3)",
            ));
        }
        if min > max {
            return Err(bad(
                "ssl_min_protocol_version is above ssl_max_protocol_version",
            ));
        }
        let versions = Versions {
            tls12: min <= 2,
            tls13: max >= 3,
        };
        let dot = home.map(|h| h.join(".postgresql"));
        let default_file = |name: &str| dot.as_ref().map(|d| d.join(name)).filter(|p| p.is_file());
        let named_file = |key: &str, value: &str| {
            let path = PathBuf::from(value);
            if path.is_file() {
                Ok(path)
            } else {
                Err(bad(format!(
                    "{key}={}: no such file (or not a regular file)",
                    path.display()
                )))
            }
        };

        if mode == SslMode::Disable {
            return Ok(Settings {
                mode,
                check: Check::Nothing,
                root: None,
                identity: None,
                crl: None,
                sni,
                versions,
            });
        }

        let root = match root_key {
            Some("system") => Some(Root::System),
            Some(path) => Some(Root::File(named_file("sslrootcert", path)?)),
            None => default_file("root.crt").map(Root::File),
        };
        if root == Some(Root::System) && mode != SslMode::VerifyFull {
            return Err(bad(format!(
                "sslmode={} may not be used with sslrootcert=system (use verify-full, as libpq requires)",
                mode.as_str()
            )));
        }
        let check = match (mode, &root) {
            (SslMode::VerifyFull, Some(_)) => Check::Full,
            (SslMode::VerifyCa, Some(_)) => Check::Chain,
            (SslMode::VerifyFull | SslMode::VerifyCa, None) => {
                return Err(bad(format!(
                    "sslmode={} needs the root certificate to check the server against: set \
                     sslrootcert to its PEM file (or sslrootcert=system for the system's roots), \
                     or put it in ~/.postgresql/root.crt",
                    mode.as_str()
                )))
            }
            (_, Some(_)) => Check::Chain,
            (_, None) => Check::Nothing,
        };
        let crl = match nonempty("sslcrl") {
            Some(path) => Some(named_file("sslcrl", path)?),
            None => default_file("root.crl"),
        }
        .filter(|_| check != Check::Nothing);
        let identity = if send_identity {
            let cert = match nonempty("sslcert") {
                Some(path) => Some(named_file("sslcert", path)?),
                None => default_file("postgresql.crt"),
            };
            match cert {
                None => None,
                Some(cert) => {
                    let key = match nonempty("sslkey") {
                        Some(path) => named_file("sslkey", path)?,
                        None => default_file("postgresql.key").ok_or_else(|| {
                            bad(format!(
                                "sslcert={} needs its private key: set sslkey",
                                cert.display()
                            ))
                        })?,
                    };
                    Some((cert, key))
                }
            }
        } else {
            None
        };
        Ok(Settings {
            mode,
            check,
            root,
            identity,
            crl,
            sni,
            versions,
        })
    }

    /// Whether `verify-full` is asked for (the host name must then be known).
    pub(crate) fn checks_name(&self) -> bool {
        self.check == Check::Full
    }

    /// The tokio-postgres mode.
    pub(crate) fn driver_mode(&self) -> tokio_postgres::config::SslMode {
        self.mode.driver_mode()
    }

    /// Reads the files and builds the connector.
    pub(crate) fn connector(&self) -> Result<PgTls, TlsSettingsError> {
        if self.mode == SslMode::Disable {
            return Ok(PgTls {
                inner: None,
                mode: self.mode,
            });
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier: Arc<dyn ServerCertVerifier> = match (&self.root, self.check) {
            (_, Check::Nothing) | (None, _) => Arc::new(NoCheck(Arc::clone(&provider))),
            (Some(root), check) => {
                let roots = load_roots(root)?;
                let mut builder = rustls::client::WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    Arc::clone(&provider),
                );
                if let Some(crl) = &self.crl {
                    builder = builder.with_crls(load_crls(crl)?);
                }
                let webpki = builder
                    .build()
                    .map_err(|e| bad(format!("the server certificate check: {e}")))?;
                match check {
                    Check::Full => webpki,
                    _ => Arc::new(ChainOnly(webpki)),
                }
            }
        };
        let mut versions: Vec<&'static rustls::SupportedProtocolVersion> = Vec::new();
        if self.versions.tls13 {
            versions.push(&rustls::version::TLS13);
        }
        if self.versions.tls12 {
            versions.push(&rustls::version::TLS12);
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&versions)
            .map_err(|e| bad(format!("TLS versions: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match &self.identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = load_certs("sslcert", cert)?;
                let key_der = load_key(key)?;
                builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                    bad(format!(
                        "sslkey={} does not fit sslcert={}: {e}",
                        key.display(),
                        cert.display()
                    ))
                })?
            }
        };
        config.enable_sni = self.sni;
        // PostgreSQL 17 requires this ALPN for direct TLS (sslnegotiation=direct) and accepts it
        // otherwise; older servers ignore it.
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(PgTls {
            inner: Some(Arc::new(Inner {
                config: Arc::new(config),
                check: self.check,
                root: self.root.clone(),
            })),
            mode: self.mode,
        })
    }
}

fn read(key: &str, path: &Path) -> Result<Vec<u8>, TlsSettingsError> {
    std::fs::read(path).map_err(|e| bad(format!("{key}={}: cannot be read: {e}", path.display())))
}

fn load_certs(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSettingsError> {
    let pem = read(key, path)?;
    let certs = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("{key}={}: not valid PEM: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(bad(format!(
            "{key}={}: holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<rustls::pki_types::PrivateKeyDer<'static>, TlsSettingsError> {
    let pem = read("sslkey", path)?;
    match rustls_pemfile::private_key(&mut &pem[..]) {
        Ok(Some(key)) => Ok(key),
        Ok(None) => Err(bad(format!(
            "sslkey={}: holds no unencrypted PEM private key (PKCS#8, PKCS#1 or SEC1)",
            path.display()
        ))),
        Err(e) => Err(bad(format!(
            "sslkey={}: not valid PEM: {e}",
            path.display()
        ))),
    }
}

fn load_roots(root: &Root) -> Result<rustls::RootCertStore, TlsSettingsError> {
    let mut roots = rustls::RootCertStore::empty();
    match root {
        Root::System => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                // One unusable system certificate must not stop the others.
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(bad(
                    "sslrootcert=system: no usable certificate in the system's trust store",
                ));
            }
        }
        Root::File(path) => {
            for cert in load_certs("sslrootcert", path)? {
                roots.add(cert).map_err(|e| {
                    bad(format!(
                        "sslrootcert={}: not a usable CA certificate: {e}",
                        path.display()
                    ))
                })?;
            }
        }
    }
    Ok(roots)
}

fn load_crls(
    path: &Path,
) -> Result<Vec<rustls::pki_types::CertificateRevocationListDer<'static>>, TlsSettingsError> {
    let pem = read("sslcrl", path)?;
    let crls = rustls_pemfile::crls(&mut &pem[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("sslcrl={}: not valid PEM: {e}", path.display())))?;
    if crls.is_empty() {
        return Err(bad(format!(
            "sslcrl={}: holds no PEM CRL (-----BEGIN X509 CRL-----)",
            path.display()
        )));
    }
    Ok(crls)
}

// ---- certificate checks --------------------------------------------------------------------------

/// `prefer`/`require` without a root certificate: any certificate, but the handshake's
/// signatures are still checked (the session key belongs to whoever holds the certificate).
#[derive(Debug)]
struct NoCheck(Arc<CryptoProvider>);

impl ServerCertVerifier for NoCheck {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the full check, with a name mismatch forgiven. The chain is checked before the
/// name, so a name error means the chain was good.
#[derive(Debug)]
struct ChainOnly(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

// ---- the connector -------------------------------------------------------------------------------

/// tokio-postgres's TLS connector for one connection string (cheap to clone; shared by the pool
/// and the `LISTEN` connection).
#[derive(Clone)]
pub struct PgTls {
    inner: Option<Arc<Inner>>,
    mode: SslMode,
}

struct Inner {
    config: Arc<rustls::ClientConfig>,
    check: Check,
    root: Option<Root>,
}

impl fmt::Debug for PgTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgTls")
            .field("sslmode", &self.mode.as_str())
            .finish_non_exhaustive()
    }
}

impl PgTls {
    /// The `sslmode` in force.
    pub fn mode(&self) -> SslMode {
        self.mode
    }
}

impl<S> MakeTlsConnect<S> for PgTls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = PgTlsStream<S>;
    type TlsConnect = PgTlsConnect;
    type Error = HandshakeError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<PgTlsConnect, HandshakeError> {
        // tokio-postgres asks for a connector before it knows whether TLS will be used (and with
        // an empty name for Unix sockets, where it never is); a name that cannot be one is only
        // an error where the name is checked.
        let name = match ServerName::try_from(domain.to_owned()) {
            Ok(name) => name,
            Err(_) if self.inner.as_ref().is_some_and(|i| i.check == Check::Full) => {
                return Err(HandshakeError(format!(
                    "host {domain:?} is not a DNS name or IP address to check the server's certificate against (sslmode=verify-full)"
                )))
            }
            Err(_) => ServerName::try_from("localhost").map_err(|e| HandshakeError(e.to_string()))?,
        };
        Ok(PgTlsConnect {
            inner: self.inner.clone(),
            name,
            host: domain.to_owned(),
        })
    }
}

/// One connection's TLS handshake.
pub struct PgTlsConnect {
    inner: Option<Arc<Inner>>,
    name: ServerName<'static>,
    host: String,
}

/// A failed TLS handshake with PostgreSQL, explained.
#[derive(Debug)]
pub struct HandshakeError(String);

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HandshakeError {}

impl<S> TlsConnect<S> for PgTlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = PgTlsStream<S>;
    type Error = HandshakeError;
    type Future = Pin<Box<dyn Future<Output = Result<PgTlsStream<S>, HandshakeError>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let Some(inner) = self.inner else {
                return Err(HandshakeError(
                    "TLS is disabled (sslmode=disable)".to_owned(),
                ));
            };
            let connector = tokio_rustls::TlsConnector::from(Arc::clone(&inner.config));
            match connector.connect(self.name, stream).await {
                Ok(stream) => Ok(PgTlsStream(stream)),
                Err(e) => Err(explain(&e, &inner, &self.host)),
            }
        })
    }
}

/// Says what a handshake failure means for the settings in use.
fn explain(e: &io::Error, inner: &Inner, host: &str) -> HandshakeError {
    let root = match &inner.root {
        Some(Root::File(p)) => format!("sslrootcert={}", p.display()),
        Some(Root::System) => "the system's roots (sslrootcert=system)".to_owned(),
        None => "no root certificate".to_owned(),
    };
    let cause = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    HandshakeError(match cause {
        Some(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        )) => format!(
            "the server's certificate does not name host {host:?} (sslmode=verify-full checks the \
             name; connect by a name the certificate holds, or use verify-ca): {e}"
        ),
        Some(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        )) => format!("the server's certificate is not signed by a trusted root ({root}): {e}"),
        Some(rustls::Error::InvalidCertificate(_)) => {
            format!("the server's certificate was refused ({root}): {e}")
        }
        Some(rustls::Error::AlertReceived(alert)) => format!(
            "the server refused the TLS handshake ({alert:?}; a client certificate it does not \
             accept, or none where it wants one?): {e}"
        ),
        _ => format!("TLS handshake with the server failed: {e}"),
    })
}

/// A TLS connection to PostgreSQL.
pub struct PgTlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for PgTlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for PgTlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for PgTlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        let (_, session) = self.0.get_ref();
        match session
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(|c| tls_server_end_point(c))
        {
            Some(hash) => ChannelBinding::tls_server_end_point(hash),
            None => ChannelBinding::none(),
        }
    }
}

// ---- channel binding -----------------------------------------------------------------------------

/// One DER element: tag, contents, what follows.
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let (bytes, rest) = rest.split_at_checked(n)?;
        (
            bytes.iter().fold(0usize, |a, &b| (a << 8) | usize::from(b)),
            rest,
        )
    };
    let (contents, rest) = rest.split_at_checked(len)?;
    Some((tag, contents, rest))
}

/// The OID of a certificate's signature algorithm (DER contents).
fn signature_algorithm(cert: &[u8]) -> Option<&[u8]> {
    let (0x30, body, _) = der(cert)? else {
        return None;
    };
    let (_, _tbs, rest) = der(body)?;
    let (0x30, algorithm, _) = der(rest)? else {
        return None;
    };
    let (0x06, oid, _) = der(algorithm)? else {
        return None;
    };
    Some(oid)
}

const RSA_PREFIX: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01];
const ECDSA_PREFIX: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04];

/// RFC 5929's `tls-server-end-point`: the hash of the server's certificate with its signature's
/// hash function (SHA-256 for MD5 and SHA-1), as PostgreSQL computes it. `None` for signature
/// algorithms without one (Ed25519, RSA-PSS), where SCRAM then runs without channel binding.
pub(crate) fn tls_server_end_point(cert: &[u8]) -> Option<Vec<u8>> {
    enum H {
        S224,
        S256,
        S384,
        S512,
    }
    let oid = signature_algorithm(cert)?;
    let hash = if let Some(last) = oid.strip_prefix(RSA_PREFIX) {
        match last {
            [0x04] | [0x05] | [0x0b] => H::S256,
            [0x0c] => H::S384,
            [0x0d] => H::S512,
            [0x0e] => H::S224,
            _ => return None,
        }
    } else if let Some(rest) = oid.strip_prefix(ECDSA_PREFIX) {
        match rest {
            [0x01] | [0x03, 0x02] => H::S256,
            [0x03, 0x01] => H::S224,
            [0x03, 0x03] => H::S384,
            [0x03, 0x04] => H::S512,
            _ => return None,
        }
    } else {
        return None;
    };
    Some(match hash {
        H::S224 => sha2::Sha224::digest(cert).to_vec(),
        H::S256 => sha2::Sha256::digest(cert).to_vec(),
        H::S384 => sha2::Sha384::digest(cert).to_vec(),
        H::S512 => sha2::Sha512::digest(cert).to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn key_value_strings_lose_only_their_tls_keys() {
        let s = split(
            "host=db user = 'o\\'k' password='a b' sslmode=verify-full sslrootcert='/etc/x y.pem' dbname=n",
        )
        .unwrap();
        assert_eq!(s.rest, "host='db' user='o\\'k' password='a b' dbname='n'");
        assert_eq!(
            s.tls,
            keys(&[("sslmode", "verify-full"), ("sslrootcert", "/etc/x y.pem")])
        );
        assert!(!s.url);
        assert!(split("host=db user").is_err());
        assert!(split("host='db").is_err());
    }

    #[test]
    fn urls_lose_only_their_tls_parameters() {
        let s = split("postgres://u:p%40ss@db:5433/n?sslmode=require&application_name=a&sslrootcert=%2Fetc%2Fca.pem").unwrap();
        assert_eq!(s.rest, "postgres://u:p%40ss@db:5433/n?application_name=a");
        assert_eq!(
            s.tls,
            keys(&[("sslmode", "require"), ("sslrootcert", "/etc/ca.pem")])
        );
        let s = split("postgresql://db/n?ssl=true").unwrap();
        assert_eq!(s.rest, "postgresql://db/n");
        assert_eq!(s.tls, keys(&[("sslmode", "require")]));
        assert!(split("postgres://db/n?ssl=false").is_err());
        assert_eq!(split("postgres://db/n").unwrap().rest, "postgres://db/n");
    }

    #[test]
    fn modes_and_defaults_follow_libpq() {
        let none: Option<&Path> = None;
        let s = Settings::resolve(&[], none).unwrap();
        assert_eq!((s.mode, s.check), (SslMode::Prefer, Check::Nothing));
        let s = Settings::resolve(&keys(&[("sslmode", "require")]), none).unwrap();
        assert_eq!(s.check, Check::Nothing);
        let s = Settings::resolve(&keys(&[("sslrootcert", "system")]), none).unwrap();
        assert_eq!((s.mode, s.check), (SslMode::VerifyFull, Check::Full));
        let err = Settings::resolve(
            &keys(&[("sslmode", "require"), ("sslrootcert", "system")]),
            none,
        )
        .unwrap_err();
        assert!(err.0.contains("verify-full"), "{err}");
        let err = Settings::resolve(&keys(&[("sslmode", "verify-ca")]), none).unwrap_err();
        assert!(err.0.contains("sslrootcert"), "{err}");
        let err = Settings::resolve(&keys(&[("sslmode", "sometimes")]), none).unwrap_err();
        assert!(err.0.contains("verify-full"), "{err}");
        let err = Settings::resolve(&keys(&[("sslpassword", "x")]), none).unwrap_err();
        assert!(err.0.contains("decrypt"), "{err}");
        let err = Settings::resolve(
            &keys(&[
                ("sslmode", "require"),
                ("sslrootcert", "/nonexistent/ca.pem"),
            ]),
            none,
        )
        .unwrap_err();
        assert!(err.0.contains("/nonexistent/ca.pem"), "{err}");
        // Disabled TLS looks at no file.
        let s = Settings::resolve(
            &keys(&[
                ("sslmode", "disable"),
                ("sslrootcert", "/nonexistent/ca.pem"),
            ]),
            none,
        )
        .unwrap();
        assert_eq!(s.mode, SslMode::Disable);
        let err =
            Settings::resolve(&keys(&[("ssl_max_protocol_version", "TLSv1.1")]), none).unwrap_err();
        assert!(err.0.contains("TLS 1.2"), "{err}");
    }

    #[test]
    fn default_files_come_from_home() {
        let home = tempfile::tempdir().unwrap();
        let dot = home.path().join(".postgresql");
        std::fs::create_dir(&dot).unwrap();
        std::fs::write(dot.join("root.crt"), "x").unwrap();
        let s = Settings::resolve(&keys(&[("sslmode", "require")]), Some(home.path())).unwrap();
        assert_eq!(
            s.check,
            Check::Chain,
            "a root certificate makes require check the chain"
        );
        let s = Settings::resolve(&keys(&[("sslmode", "verify-full")]), Some(home.path())).unwrap();
        assert_eq!(s.root, Some(Root::File(dot.join("root.crt"))));
        std::fs::write(dot.join("postgresql.crt"), "x").unwrap();
        let err =
            Settings::resolve(&keys(&[("sslmode", "require")]), Some(home.path())).unwrap_err();
        assert!(err.0.contains("sslkey"), "{err}");
        std::fs::write(dot.join("postgresql.key"), "x").unwrap();
        let s = Settings::resolve(&keys(&[("sslmode", "require")]), Some(home.path())).unwrap();
        assert!(s.identity.is_some());
        let s = Settings::resolve(
            &keys(&[("sslmode", "require"), ("sslcertmode", "disable")]),
            Some(home.path()),
        )
        .unwrap();
        assert!(s.identity.is_none());
    }

    #[test]
    fn signature_algorithms_pick_the_channel_binding_hash() {
        // A certificate skeleton: SEQUENCE { tbs SEQUENCE {}, SEQUENCE { OID }, BIT STRING }.
        let cert = |oid: &[u8]| {
            let mut alg = vec![0x06, oid.len() as u8];
            alg.extend_from_slice(oid);
            let mut body = vec![0x30, 0x00, 0x30, alg.len() as u8];
            body.extend_from_slice(&alg);
            body.extend_from_slice(&[0x03, 0x01, 0x00]);
            let mut c = vec![0x30, body.len() as u8];
            c.extend_from_slice(&body);
            c
        };
        let ecdsa_sha384 = cert(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03]);
        assert_eq!(
            tls_server_end_point(&ecdsa_sha384).map(|h| h.len()),
            Some(48)
        );
        let rsa_sha1 = cert(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05]);
        assert_eq!(tls_server_end_point(&rsa_sha1).map(|h| h.len()), Some(32));
        let ed25519 = cert(&[0x2b, 0x65, 0x70]);
        assert_eq!(tls_server_end_point(&ed25519), None);
        assert_eq!(tls_server_end_point(&[0x30, 0x05]), None);
    }
}
