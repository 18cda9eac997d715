//! The pooled HTTP(S) client: rustls with the ring provider, system roots plus an optional CA file
//! whose certificates also pin a server that presents one of them ([`crate::pin`]); and what a
//! failed handshake means, in words an operator can act on ([`explain`]).
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

use crate::pin::{self, PinningVerifier};
use crate::x509;
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
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let setup_error = |e: &dyn std::fmt::Display| Error::Config {
        upstream: config.name.clone(),
        reason: format!("TLS setup: {e}"),
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| setup_error(&e))?;
    let Some(path) = &config.ca_file else {
        return Ok(builder.with_root_certificates(roots).with_no_client_auth());
    };
    let pinned = add_ca_file(&mut roots, path).map_err(|reason| Error::CaFile {
        upstream: config.name.clone(),
        path: path.clone(),
        reason,
    })?;
    let verifier = PinningVerifier::new(roots, pinned, provider).map_err(|e| setup_error(&e))?;
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

/// Adds every certificate of the PEM file at `path` to `roots`, and returns them.
fn add_ca_file(
    roots: &mut RootCertStore,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, String> {
    let mut certs = Vec::new();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| e.to_string())? {
        let cert = cert.map_err(|e| e.to_string())?;
        roots
            .add(cert.clone())
            .map_err(|e| format!("certificate {}: {e}", certs.len() + 1))?;
        certs.push(cert);
    }
    if certs.is_empty() {
        return Err("no PEM certificates in the file".into());
    }
    Ok(certs)
}

/// Why a handshake failed and what to do about it, for [`Error::Tls`]'s reason: one sentence for
/// the failures an operator can fix, then rustls's own words in parentheses (what a search
/// finds). `host` is the URL's host; `ca_file` the upstream's, if set.
pub(crate) fn explain(e: &rustls::Error, host: &str, ca_file: Option<&Path>) -> String {
    use rustls::CertificateError as C;
    let ca_file = ca_file.map(|p| p.display().to_string());
    let plain = match e {
        rustls::Error::InvalidCertificate(c) => match c {
            c if pin::is_ca_used_as_end_entity(c) => {
                let held = match &ca_file {
                    None => String::new(),
                    Some(p) => format!(", and ca_file {p} does not hold that certificate"),
                };
                format!(
                    "the upstream's certificate is a CA certificate (basicConstraints CA:TRUE, \
                     as `openssl req -x509` makes by default) used as a server certificate{held}; \
                     set ca_file to that exact certificate to pin it"
                )
            }
            C::UnknownIssuer => {
                let wherein = match &ca_file {
                    None => "the system roots do not hold".to_owned(),
                    Some(p) => format!("neither the system roots nor ca_file {p} hold"),
                };
                format!(
                    "unknown issuer: {wherein} the CA that signed the upstream's certificate; \
                     set ca_file to the CA that signed it (PEM), or to the certificate itself \
                     if it is self-signed"
                )
            }
            C::NotValidForNameContext { presented, .. } if host_names(presented).is_empty() => {
                let bare = host.trim_start_matches('[').trim_end_matches(']');
                let kind = if bare.parse::<std::net::IpAddr>().is_ok() {
                    "IP"
                } else {
                    "DNS"
                };
                format!(
                    "the upstream's certificate names no host in subjectAltName, and its \
                     Common Name does not count (Go clients ignore it too, since Go 1.15): \
                     make the certificate with -addext \"subjectAltName={kind}:{bare}\""
                )
            }
            C::NotValidForNameContext { presented, .. } => format!(
                "the upstream's certificate is not valid for {host}: it names {}; use one of \
                 those in the upstream's url, or a certificate whose subjectAltName names {host}",
                host_names(presented).join(", ")
            ),
            C::NotValidForName => format!("the upstream's certificate is not valid for {host}"),
            C::ExpiredContext { time, not_after } => format!(
                "the upstream's certificate expired on {} (it is {} now): renew it",
                x509::utc(*not_after),
                x509::utc(*time)
            ),
            C::Expired => "the upstream's certificate has expired: renew it".to_owned(),
            C::NotValidYetContext { time, not_before } => format!(
                "the upstream's certificate is not valid before {} (it is {} here): check the \
                 clocks of both hosts",
                x509::utc(*not_before),
                x509::utc(*time)
            ),
            C::NotValidYet => "the upstream's certificate is not valid yet: check the clocks \
                               of both hosts"
                .to_owned(),
            C::InvalidPurpose | C::InvalidPurposeContext { .. } => {
                "the upstream's certificate is not for TLS servers (its extendedKeyUsage lacks \
                 serverAuth)"
                    .to_owned()
            }
            C::BadSignature => "the signature on the upstream's certificate does not verify \
                                against the CA that should have made it"
                .to_owned(),
            _ => return e.to_string(),
        },
        rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType) => {
            "the upstream did not answer with TLS: if it serves plain HTTP, give its url as \
             http://"
                .to_owned()
        }
        _ => return e.to_string(),
    };
    format!("{plain} ({e})")
}

/// The DNS names and addresses among the subjectAltName entries webpki reports (its `Debug`
/// forms `DnsName("h")` and `IpAddress(a)`), as `DNS:h` and `IP:a`, as openssl writes them.
fn host_names(presented: &[String]) -> Vec<String> {
    presented
        .iter()
        .filter_map(|p| {
            if let Some(dns) = p.strip_prefix("DnsName(\"") {
                Some(format!("DNS:{}", dns.strip_suffix("\")")?))
            } else {
                let ip = p.strip_prefix("IpAddress(")?.strip_suffix(')')?;
                Some(format!("IP:{ip}"))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use rustls::{CertificateError, InvalidMessage, OtherError};
    use rustls_pki_types::{ServerName, UnixTime};

    use super::*;

    fn certificate(e: CertificateError) -> rustls::Error {
        rustls::Error::InvalidCertificate(e)
    }

    fn at(secs: u64) -> UnixTime {
        UnixTime::since_unix_epoch(Duration::from_secs(secs))
    }

    #[test]
    fn each_fixable_failure_says_what_to_do() {
        let ca = certificate(CertificateError::Other(OtherError(Arc::new(
            webpki::Error::CaUsedAsEndEntity,
        ))));
        let text = explain(&ca, "reg.example", None);
        assert!(
            text.starts_with("the upstream's certificate is a CA certificate (basicConstraints")
                && text.contains(
                    "used as a server certificate; set ca_file to that exact certificate to pin it"
                ),
            "{text}"
        );
        let text = explain(&ca, "reg.example", Some(Path::new("/etc/wharf/ca.pem")));
        assert!(
            text.contains("ca_file /etc/wharf/ca.pem does not hold that certificate; set ca_file"),
            "{text}"
        );

        let issuer = certificate(CertificateError::UnknownIssuer);
        let text = explain(&issuer, "reg.example", Some(Path::new("/etc/wharf/ca.pem")));
        assert!(
            text.starts_with(
                "unknown issuer: neither the system roots nor ca_file /etc/wharf/ca.pem hold"
            ) && text.contains("set ca_file to the CA that signed it"),
            "{text}"
        );

        let name = certificate(CertificateError::NotValidForNameContext {
            expected: ServerName::try_from("reg.example")
                .expect("name")
                .to_owned(),
            presented: vec![
                "DnsName(\"mirror.example\")".into(),
                "IpAddress(10.0.0.1)".into(),
                "DirectoryName".into(),
            ],
        });
        let text = explain(&name, "reg.example", None);
        assert!(
            text.starts_with(
                "the upstream's certificate is not valid for reg.example: it names \
                 DNS:mirror.example, IP:10.0.0.1; "
            ),
            "{text}"
        );
        let cn_only = certificate(CertificateError::NotValidForNameContext {
            expected: ServerName::try_from("reg.example")
                .expect("name")
                .to_owned(),
            presented: vec!["DirectoryName".into()],
        });
        let text = explain(&cn_only, "reg.example", None);
        assert!(
            text.contains("names no host in subjectAltName")
                && text.contains("-addext \"subjectAltName=DNS:reg.example\""),
            "{text}"
        );
        assert!(explain(&cn_only, "[::1]", None).contains("subjectAltName=IP:::1\""));

        let expired = certificate(CertificateError::ExpiredContext {
            time: at(1_796_467_476),
            not_after: at(1_796_400_000),
        });
        assert!(
            explain(&expired, "reg.example", None).starts_with(
                "the upstream's certificate expired on 2026-12-04 16:00:00 UTC \
                 (it is 2026-12-05 10:44:36 UTC now): renew it"
            ),
            "{}",
            explain(&expired, "reg.example", None)
        );

        let plain_http = rustls::Error::InvalidMessage(InvalidMessage::InvalidContentType);
        assert!(explain(&plain_http, "reg.example", None).contains("give its url as http://"));
    }

    #[test]
    fn other_failures_keep_rustls_words() {
        let e = rustls::Error::HandshakeNotComplete;
        assert_eq!(explain(&e, "reg.example", None), e.to_string());
    }
}
