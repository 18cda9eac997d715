//! The two ways this crate says no: [`KeyError`] when a configured key file cannot be used (an
//! operator's mistake, reported at startup), and [`Refusal`] when a signature does not let an
//! image through (reported per manifest, to a client and the log).
//!
//! Messages name the file, the key (by fingerprint or key ID, which are public) and the digests
//! or references involved; they never quote key material or signature bytes.

use wharf_oci::Digest;

use crate::verify::MAX_SIGNATURE_BYTES;

/// Why a key file cannot be used as a keyring.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the key file {origin}: {source}")]
    Read {
        origin: String,
        source: std::io::Error,
    },
    #[error("the key file {origin} is {len} bytes; more than {max} is not a public key file")]
    TooLarge {
        origin: String,
        len: u64,
        max: usize,
    },
    #[error(
        "{origin} holds no OpenPGP public key (expected the output of `gpg --export --armor KEYID` or `gpg --export KEYID`)"
    )]
    NoKeys { origin: String },
    #[error(
        "{origin} holds a private key: give wharf the public key only (`gpg --export --armor KEYID`)"
    )]
    SecretKey { origin: String },
    #[error("{origin} is not an OpenPGP public key file: {why}")]
    Malformed { origin: String, why: String },
    #[error(
        "{origin}: key {fingerprint} carries no valid self-signature, so it cannot be trusted (export it again with `gpg --export`)"
    )]
    Unusable { origin: String, fingerprint: String },
}

/// Why a signature does not let an image through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("not a signature (it is {len} bytes; more than {max} bytes is refused unread)", max = MAX_SIGNATURE_BYTES)]
    TooLarge { len: usize },
    /// The bytes are not a simple signature: not OpenPGP, not a signed message, or signed
    /// content that is not a container signature document.
    #[error("not a signature ({0})")]
    NotASignature(String),
    /// Signed by a key the keyring does not hold: `key` is the issuer fingerprint, or the
    /// 16-digit key ID when the signature carries no fingerprint.
    #[error("signed by key {key}, which is not in the keyring")]
    UnknownSigner { key: String },
    /// The signature does not verify, or its key may not make it.
    #[error("bad signature ({0})")]
    BadSignature(String),
    #[error("signed by key {key}, which is revoked")]
    Revoked { key: String },
    /// The signature or the key that made it has expired.
    #[error("expired ({0})")]
    Expired(String),
    #[error("the signature is for manifest {signed}, not {expected}")]
    WrongManifest { signed: Digest, expected: Digest },
    #[error("the signature names {signed}, not {expected}")]
    WrongIdentity { signed: String, expected: String },
    /// The signed reference is not one containers/image accepts as an identity.
    #[error("the signature names {signed:?}, which cannot identify an image ({why})")]
    BadIdentity { signed: String, why: String },
    /// The image the caller asked about is not a valid reference: a caller's mistake, refused
    /// so that it never lets anything through.
    #[error("cannot check a signature against {image:?} ({why})")]
    InvalidImage { image: String, why: String },
}

impl Refusal {
    /// A short fixed name per kind of refusal, for a metric label or a log field.
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::TooLarge { .. } => "too_large",
            Refusal::NotASignature(_) => "not_a_signature",
            Refusal::UnknownSigner { .. } => "unknown_signer",
            Refusal::BadSignature(_) => "bad_signature",
            Refusal::Revoked { .. } => "revoked",
            Refusal::Expired(_) => "expired",
            Refusal::WrongManifest { .. } => "wrong_manifest",
            Refusal::WrongIdentity { .. } | Refusal::BadIdentity { .. } => "wrong_identity",
            Refusal::InvalidImage { .. } => "invalid_image",
        }
    }
}

/// Bounds a message built from untrusted text.
pub(crate) fn clip(s: &str) -> String {
    const MAX: usize = 200;
    if s.chars().count() <= MAX {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(MAX).collect();
        out.push('…');
        out
    }
}
