//! The pooled HTTP(S) client: rustls with the ring provider, system roots plus an optional CA file.
//!
//! The provider is passed explicitly rather than installed process-wide: other crates in the
//! binary (the TLS listener) may pick theirs, and a missing process default would panic at the
//! first handshake.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client as LegacyClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::{Config, Error};

pub(crate) type HttpClient = LegacyClient<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// Idle pooled connections are closed after this long; registries and CDNs drop theirs anyway.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

pub(crate) fn http_client(config: &Config) -> Result<HttpClient, Error> {
    let tls = client_config(config)?;
    let mut http = HttpConnector::new();
    // hyper-rustls decides between TLS and plain TCP; the inner connector must accept both.
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(config.connect_timeout));
    let https = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Ok(LegacyClient::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(https))
}

fn client_config(config: &Config) -> Result<rustls::ClientConfig, Error> {
    let mut roots = RootCertStore::empty();
    // A host without a system store (minimal containers) still works with `ca_file` or plain
    // http://, so missing or unreadable system roots are only logged.
    let native = rustls_native_certs::load_native_certs();
    if !native.errors.is_empty() {
        tracing::debug!(upstream = %config.name, errors = ?native.errors, "some system CA certificates could not be loaded");
    }
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    tracing::debug!(upstream = %config.name, added, ignored, "system CA certificates");
    if let Some(path) = &config.ca_file {
        add_ca_file(&mut roots, path).map_err(|reason| Error::CaFile {
            upstream: config.name.clone(),
            path: path.clone(),
            reason,
        })?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config {
            upstream: config.name.clone(),
            reason: format!("TLS setup: {e}"),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tls)
}

fn add_ca_file(roots: &mut RootCertStore, path: &Path) -> Result<(), String> {
    let mut count = 0;
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| e.to_string())? {
        let cert = cert.map_err(|e| e.to_string())?;
        roots
            .add(cert)
            .map_err(|e| format!("certificate {}: {e}", count + 1))?;
        count += 1;
    }
    if count == 0 {
        return Err("no PEM certificates in the file".into());
    }
    Ok(())
}
