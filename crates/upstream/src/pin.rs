//! Server certificate verification for an upstream with a `ca_file`: webpki first, then
//! pinning for a server whose own certificate is in the file.
//!
//! `openssl req -x509` (the Oracle Linux guide's way to make a registry certificate) writes a
//! self-signed certificate with openssl.cnf's `v3_ca` extensions, `basicConstraints=CA:TRUE`.
//! webpki refuses a CA certificate as a server certificate (`CaUsedAsEndEntity`), even one the
//! operator trusts explicitly. Go's crypto/x509, which podman, skopeo and docker use, accepts it:
//! `Certificate.Verify` checks the leaf's dates and name, then, when the leaf itself is in the
//! root pool (`if opts.Roots.contains(c)`), takes `[leaf]` as the whole chain without looking
//! at its CA bit or its signature; the extended key usages are checked on that chain last.
//!
//! [`PinningVerifier`] does the same, and only where webpki's refusal is about the missing
//! chain: the server's end-entity certificate byte-for-byte equal to one in `ca_file` and webpki
//! answering `CaUsedAsEndEntity` or `UnknownIssuer` (a CA:FALSE leaf from an unknown CA, pinned
//! the same way). Then the certificate must still be within its dates, name the URL's host in
//! subjectAltName (a Common Name alone is not enough: Go stopped reading it in 1.15, webpki never
//! did) and allow serverAuth if it restricts its extended key usages. Every other result of
//! webpki stands. The handshake signature is checked as always, so the server must hold the
//! pinned certificate's key.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};

use crate::x509::{self, ServerAuth};

#[derive(Debug)]
pub(crate) struct PinningVerifier {
    webpki: Arc<WebPkiServerVerifier>,
    /// Every certificate of `ca_file`, DER.
    pinned: Vec<CertificateDer<'static>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinningVerifier {
    /// `roots` are the system roots plus `pinned` (which must not be empty: webpki wants at
    /// least one trust anchor).
    pub(crate) fn new(
        roots: RootCertStore,
        pinned: Vec<CertificateDer<'static>>,
        provider: Arc<CryptoProvider>,
    ) -> Result<PinningVerifier, rustls::client::VerifierBuilderError> {
        let algorithms = provider.signature_verification_algorithms;
        let webpki =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider).build()?;
        Ok(PinningVerifier {
            webpki,
            pinned,
            algorithms,
        })
    }

    fn is_pinned(&self, end_entity: &CertificateDer<'_>) -> bool {
        self.pinned
            .iter()
            .any(|p| p.as_ref() == end_entity.as_ref())
    }
}

impl ServerCertVerifier for PinningVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(e) if refuses_for_want_of_a_chain(&e) && self.is_pinned(end_entity) => {
                verify_pinned(end_entity, server_name, now)?;
                tracing::debug!(server = ?server_name, "server certificate accepted: pinned by ca_file");
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// webpki's refusals that a pinned leaf answers: it is a CA, or no chain leads from it to a
/// trust anchor. webpki checks the leaf's dates before its CA bit, and its name only after the
/// chain, so [`verify_pinned`] checks both again rather than rely on that order.
fn refuses_for_want_of_a_chain(e: &Error) -> bool {
    match e {
        Error::InvalidCertificate(CertificateError::UnknownIssuer) => true,
        Error::InvalidCertificate(c) => is_ca_used_as_end_entity(c),
        _ => false,
    }
}

/// webpki's refusal of a CA certificate as a server certificate, which rustls passes on only
/// as [`CertificateError::Other`].
pub(crate) fn is_ca_used_as_end_entity(e: &CertificateError) -> bool {
    matches!(e, CertificateError::Other(other) if matches!(
        other.0.downcast_ref::<webpki::Error>(),
        Some(webpki::Error::CaUsedAsEndEntity)
    ))
}

/// What Go checks of a leaf found in its root pool: dates, name, extended key usage.
fn verify_pinned(
    end_entity: &CertificateDer<'_>,
    server_name: &ServerName<'_>,
    now: UnixTime,
) -> Result<(), Error> {
    let unreadable = || Error::InvalidCertificate(CertificateError::BadEncoding);
    let validity = x509::validity(end_entity).ok_or_else(unreadable)?;
    let (not_before, not_after) = (
        UnixTime::since_unix_epoch(std::time::Duration::from_secs(validity.not_before)),
        UnixTime::since_unix_epoch(std::time::Duration::from_secs(validity.not_after)),
    );
    if now < not_before {
        return Err(CertificateError::NotValidYetContext {
            time: now,
            not_before,
        }
        .into());
    }
    if now > not_after {
        return Err(CertificateError::ExpiredContext {
            time: now,
            not_after,
        }
        .into());
    }
    rustls::client::verify_server_name(&ParsedCertificate::try_from(end_entity)?, server_name)?;
    match x509::server_auth(end_entity).ok_or_else(unreadable)? {
        ServerAuth::Unrestricted | ServerAuth::Listed => Ok(()),
        ServerAuth::Missing => Err(CertificateError::InvalidPurpose.into()),
    }
}

#[cfg(test)]
mod tests;
