//! TLS on the registry listener: rustls with the ring provider, HTTP/2 and HTTP/1.1 by ALPN, and
//! a certificate that can be replaced while connections stay open.
//!
//! The certificate and key are read from PEM files (`server.tls_cert`, a chain: leaf first, then
//! the intermediates; `server.tls_key`, PKCS#8, PKCS#1 or SEC1). Every handshake asks
//! [`ReloadableCert`] for the current `CertifiedKey`; [`Tls::reload`] (on SIGHUP) reads the files
//! again and swaps it. Connections already open keep the session they negotiated; a renewal that
//! fails to load leaves the old certificate in place.
//!
//! Nothing here prints key material: errors about the key name the file and what was wrong with
//! it, never its bytes.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why a certificate or key could not be used. `Display` names the file, never key bytes.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    Cert { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Key { path: PathBuf, message: String },
    #[error("{cert} and {key}: {message}")]
    Pair {
        cert: PathBuf,
        key: PathBuf,
        message: String,
    },
}

impl TlsError {
    /// Which configuration key the problem belongs to (`server.tls_cert` or `server.tls_key`).
    pub fn field(&self) -> &'static str {
        match self {
            TlsError::Cert { .. } => "server.tls_cert",
            TlsError::Key { .. } | TlsError::Pair { .. } => "server.tls_key",
        }
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads the chain and the key and checks that they belong together.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let cert_err = |message: String| TlsError::Cert {
        path: cert.to_owned(),
        message,
    };
    let key_err = |message: &str| TlsError::Key {
        path: key.to_owned(),
        message: message.to_owned(),
    };
    let pem = std::fs::read(cert).map_err(|e| cert_err(format!("cannot read: {e}")))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| cert_err(format!("not a PEM certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(cert_err("holds no PEM CERTIFICATE block".into()));
    }
    let key_pem = std::fs::read(key).map_err(|e| TlsError::Key {
        path: key.to_owned(),
        message: format!("cannot read: {}", e.kind()),
    })?;
    // The parser's own errors may quote what it saw; say what we expected instead.
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|_| key_err("holds no usable PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC)"))?;
    let certified = CertifiedKey::from_der(chain, key_der, &provider()).map_err(|e| {
        let message = match e {
            rustls::Error::InconsistentKeys(_) => {
                "the key does not belong to the first (leaf) certificate".to_owned()
            }
            _ => "the key type is not supported (use RSA, ECDSA P-256/P-384 or Ed25519)".into(),
        };
        TlsError::Pair {
            cert: cert.to_owned(),
            key: key.to_owned(),
            message,
        }
    })?;
    Ok(Arc::new(certified))
}

/// Hands every handshake the current certificate; swapped by [`Tls::reload`].
#[derive(Debug)]
pub struct ReloadableCert {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ReloadableCert {
    pub fn new(key: Arc<CertifiedKey>) -> Self {
        ReloadableCert {
            current: RwLock::new(key),
        }
    }

    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn set(&self, key: Arc<CertifiedKey>) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = key;
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// The listener's TLS setup: the files, the swappable certificate and the rustls config.
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    resolver: Arc<ReloadableCert>,
    config: Arc<ServerConfig>,
}

impl Tls {
    /// Loads `cert` and `key`; the server offers `h2` and `http/1.1` by ALPN.
    pub fn load(cert: &Path, key: &Path) -> Result<Tls, TlsError> {
        let resolver = Arc::new(ReloadableCert::new(load_certified_key(cert, key)?));
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Pair {
                cert: cert.to_owned(),
                key: key.to_owned(),
                message: format!("rustls: {e}"),
            })?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Tls {
            cert: cert.to_owned(),
            key: key.to_owned(),
            resolver,
            config: Arc::new(config),
        })
    }

    /// Reads the files again and, if they load, serves the new certificate to every new
    /// handshake. On error the old one stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let key = load_certified_key(&self.cert, &self.key)?;
        self.resolver.set(key);
        Ok(())
    }

    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.clone())
    }

    /// The DER of the leaf certificate served now (tests compare it).
    pub fn leaf(&self) -> CertificateDer<'static> {
        self.resolver.current().cert[0].clone()
    }
}
