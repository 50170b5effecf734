//! HTTPS (and gRPC over TLS) for the API listeners: Clair's `tls.cert`/`tls.key`, optionally
//! requiring client certificates signed by a given CA.
//!
//! # Design
//!
//! - **rustls** (with ring), the TLS stack the rest of tocsin already uses; ALPN offers `h2`
//!   and `http/1.1`, so gRPC clients (which insist on h2) and HTTP/1.1 clients share a port,
//!   as they do over plain TCP.
//! - **A listener, not a server**: [`TlsListener`] implements axum's [`Listener`], so the
//!   API is served by `axum::serve` exactly as over plain TCP (same HTTP/1.1 + HTTP/2
//!   handling, same graceful shutdown). Handshakes run on tasks of their own, each bounded by
//!   [`HANDSHAKE_TIMEOUT`], so a client that stalls mid-handshake holds up nobody else.
//! - **Reload**: [`ServerTls`] holds the current rustls configuration behind a lock; new
//!   connections use whatever is current. [`ServerTls::reload_if_changed`] rereads the files
//!   and swaps in a new configuration when their contents changed and form a valid pair;
//!   [`ServerTls::watch`] calls it on an interval (certificate rotation by cert-manager or a
//!   Kubernetes secret needs no restart). A broken pair mid-rotation (the certificate written,
//!   not yet its key) keeps the old one and is retried on the next tick.
//! - Everything is read and checked at start ([`ServerTls::load`]): a missing file, a file
//!   without a certificate or key, or a key that does not belong to the certificate is an
//!   error naming the file.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::serve::Listener;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::rustls;
use tokio_rustls::server::TlsStream;

/// How long a client may take to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the server's certificate, key and (optionally) client CA are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTlsFiles {
    /// Certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    /// Private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// When set, clients must present a certificate signed by one of these CAs (PEM).
    pub client_ca: Option<PathBuf>,
}

/// Why the TLS files cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("{what} {}: cannot be read: {source}", path.display())]
    Read {
        /// Which file: "certificate", "private key", "client CA".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file holds no usable PEM of its kind.
    #[error("{what} {}: {message}", path.display())]
    Invalid {
        /// Which file.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The key and certificate do not form a pair, or rustls refused them.
    #[error("certificate {} with key {}: {message}", cert.display(), key.display())]
    Pair {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls' reason.
        message: String,
    },
}

/// The file contents a configuration was built from, to notice changes.
#[derive(PartialEq, Eq)]
struct Contents {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

/// The server's TLS configuration, reloadable. Cheap to clone (clones share it).
#[derive(Clone)]
pub struct ServerTls {
    files: Arc<ServerTlsFiles>,
    current: Arc<RwLock<Arc<rustls::ServerConfig>>>,
    /// What `current` was built from, and the last contents that failed (not retried until
    /// they change again, so a broken file is reported once).
    seen: Arc<Mutex<(Contents, Option<Contents>)>>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

fn certs(
    what: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, TlsError> {
    let invalid = |message: String| TlsError::Invalid {
        what,
        path: path.to_owned(),
        message,
    };
    let certs = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    Ok(certs)
}

impl ServerTlsFiles {
    fn read(&self) -> Result<Contents, TlsError> {
        Ok(Contents {
            cert: read("certificate", &self.cert)?,
            key: read("private key", &self.key)?,
            client_ca: match &self.client_ca {
                Some(p) => Some(read("client CA", p)?),
                None => None,
            },
        })
    }

    /// A rustls configuration from file contents.
    fn build(&self, contents: &Contents) -> Result<rustls::ServerConfig, TlsError> {
        let chain = certs("certificate", &self.cert, &contents.cert)?;
        let key = match rustls_pemfile::private_key(&mut &contents.key[..]) {
            Ok(Some(key)) => key,
            Ok(None) => {
                return Err(TlsError::Invalid {
                    what: "private key",
                    path: self.key.clone(),
                    message: "holds no unencrypted PEM private key (PKCS#8, PKCS#1 or SEC1)".into(),
                })
            }
            Err(e) => {
                return Err(TlsError::Invalid {
                    what: "private key",
                    path: self.key.clone(),
                    message: format!("not valid PEM: {e}"),
                })
            }
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let pair = |message: String| TlsError::Pair {
            cert: self.cert.clone(),
            key: self.key.clone(),
            message,
        };
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| pair(e.to_string()))?;
        let builder = match (&self.client_ca, &contents.client_ca) {
            (Some(path), Some(pem)) => {
                let invalid = |message: String| TlsError::Invalid {
                    what: "client CA",
                    path: path.clone(),
                    message,
                };
                let mut roots = rustls::RootCertStore::empty();
                for cert in certs("client CA", path, pem)? {
                    roots
                        .add(cert)
                        .map_err(|e| invalid(format!("not a usable CA certificate: {e}")))?;
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .map_err(|e| invalid(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
            _ => builder.with_no_client_auth(),
        };
        let mut config = builder.with_single_cert(chain, key).map_err(|e| {
            pair(match e {
                rustls::Error::InconsistentKeys(_) => {
                    "the private key does not belong to the certificate".into()
                }
                e => e.to_string(),
            })
        })?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }
}

impl ServerTls {
    /// Reads and checks the files.
    pub fn load(files: ServerTlsFiles) -> Result<ServerTls, TlsError> {
        let contents = files.read()?;
        let config = files.build(&contents)?;
        Ok(ServerTls {
            files: Arc::new(files),
            current: Arc::new(RwLock::new(Arc::new(config))),
            seen: Arc::new(Mutex::new((contents, None))),
        })
    }

    /// The files this configuration comes from.
    pub fn files(&self) -> &ServerTlsFiles {
        &self.files
    }

    /// Whether clients must present a certificate.
    pub fn requires_client_certificates(&self) -> bool {
        self.files.client_ca.is_some()
    }

    /// The configuration new connections get.
    pub fn config(&self) -> Arc<rustls::ServerConfig> {
        match self.current.read() {
            Ok(c) => Arc::clone(&c),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Rereads the files; when their contents changed and form a valid configuration, new
    /// connections use it (`Ok(true)`). Unchanged files: `Ok(false)`. Changed but unusable: the
    /// error, once per distinct content, and the current configuration stays.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let contents = self.files.read()?;
        let mut seen = match self.seen.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        if contents == seen.0 || seen.1.as_ref() == Some(&contents) {
            return Ok(false);
        }
        match self.files.build(&contents) {
            Ok(config) => {
                match self.current.write() {
                    Ok(mut c) => *c = Arc::new(config),
                    Err(poisoned) => *poisoned.into_inner() = Arc::new(config),
                }
                *seen = (contents, None);
                Ok(true)
            }
            Err(e) => {
                seen.1 = Some(contents);
                Err(e)
            }
        }
    }

    /// Calls [`reload_if_changed`](Self::reload_if_changed) every `every` until `stop`
    /// resolves, logging what happened.
    pub async fn watch(self, every: Duration, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = &mut stop => return,
            }
            // Reading three small files; off the async threads all the same.
            let tls = self.clone();
            match tokio::task::spawn_blocking(move || tls.reload_if_changed()).await {
                Ok(Ok(true)) => tracing::info!(
                    cert = %self.files.cert.display(),
                    "TLS certificate reloaded; new connections use it"
                ),
                Ok(Ok(false)) => {}
                Ok(Err(e)) => tracing::warn!(
                    error = %e,
                    "TLS files changed but cannot be used; still serving the previous certificate"
                ),
                Err(e) => tracing::warn!(error = %e, "TLS reload check failed"),
            }
        }
    }
}

/// A TCP listener whose connections complete a TLS handshake before axum sees them.
pub struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    accepting: tokio::task::AbortHandle,
}

impl std::fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsListener")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl TlsListener {
    /// Starts accepting on `tcp` (on the current runtime) with `tls`'s current configuration
    /// for each new connection.
    pub fn new(tcp: TcpListener, tls: ServerTls) -> std::io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let accepting = tokio::spawn(accept_loop(tcp, tls, tx)).abort_handle();
        Ok(TlsListener {
            local,
            ready,
            accepting,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

async fn accept_loop(
    tcp: TcpListener,
    tls: ServerTls,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    loop {
        let (stream, peer) = match tcp.accept().await {
            Ok(c) => c,
            Err(e) => {
                // As axum does: per-connection errors are the client's; anything else (out of
                // file descriptors) gets a pause rather than a busy loop.
                if !matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionRefused
                        | std::io::ErrorKind::ConnectionAborted
                        | std::io::ErrorKind::ConnectionReset
                ) {
                    tracing::error!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                continue;
            }
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.config());
        let ready = ready.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => {
                    // The server is shutting down when nobody receives: drop the connection.
                    let _ = ready.send((stream, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // Only if the accept task died (it never returns): accept nothing more.
            None => {
                tracing::error!("the TLS accept task ended; no new connections are accepted");
                std::future::pending().await
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
