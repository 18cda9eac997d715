//! Verifying one simple signature: the OpenPGP signed message (rPGP), the key that made it
//! (the [`Keyring`]'s view of revocation, expiry and signing rights), its signed document
//! ([`crate::payload`]), and then [`Signed::names`], the identity check.
//!
//! Follows containers/image: `internal/signature/signature.go` (`FromBlob`: a simple signature
//! is the raw binary OpenPGP message, optionally behind `\0simple-signing\n`),
//! `signature/mechanism_gpgme.go` (`Verify`: exactly one signature, by a valid key),
//! `signature/mechanism_openpgp.go` (a signature past its expiration time is refused),
//! `signature/simple.go` (`verifyAndExtractSignature`: key, then digest, then identity) and
//! `internal/iolimits` (`MaxSignatureBodySize`, 4 MiB).

use std::io::Read as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::SystemTime;

use pgp::composed::Message;
use pgp::crypto::hash::HashAlgorithm;
use pgp::packet::SignatureType;
use wharf_oci::Digest;

use crate::error::{Refusal, clip};
use crate::keyring::{Keyring, upper_hex};
use crate::payload;
use crate::reference::DockerReference;
use crate::time::rfc3339;

/// `iolimits.MaxSignatureBodySize`: containers/image reads no more of a signature than this,
/// and neither does wharf.
pub const MAX_SIGNATURE_BYTES: usize = 4 << 20;

/// The most signed content read out of a signature: a simple-signing document is a few hundred
/// bytes, and a compressed message must not expand without bound.
pub const MAX_PAYLOAD_BYTES: usize = 1 << 20;

/// The prefix containers/image's tagged signature format puts before a simple signature.
const TAGGED_SIMPLE_SIGNING: &[u8] = b"\0simple-signing\n";

/// Compression layers unwrapped before giving up (gpg writes one).
const MAX_COMPRESSION_LAYERS: usize = 2;

/// A signature that verified: what it asserts, and who asserted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// `critical.image["docker-manifest-digest"]`.
    pub manifest_digest: Digest,
    /// `critical.identity["docker-reference"]`, as signed (not normalized).
    pub docker_reference: String,
    /// The fingerprint of the signer's primary key, upper-case hex (as gpg prints it).
    pub signer: String,
    /// The fingerprint of the key that made the signature: `signer`, or one of its subkeys.
    pub signing_key: String,
    /// When the signature was made, by its own (signed) creation time.
    pub created: SystemTime,
}

/// Verifies `signature` (the bytes of a lookaside `signature-N`) with `keyring`, now.
pub fn verify(keyring: &Keyring, signature: &[u8]) -> Result<Signed, Refusal> {
    verify_at(keyring, signature, SystemTime::now())
}

/// [`verify`] as of `now`: expiry of signatures and keys is judged at that time.
pub fn verify_at(keyring: &Keyring, signature: &[u8], now: SystemTime) -> Result<Signed, Refusal> {
    if signature.len() > MAX_SIGNATURE_BYTES {
        return Err(Refusal::TooLarge {
            len: signature.len(),
        });
    }
    let message = signature
        .strip_prefix(TAGGED_SIMPLE_SIGNING)
        .unwrap_or(signature);
    check_first_byte(message)?;
    // rPGP is fuzzed, yet a few of its readers panic on states they consider unreachable; a
    // signature from the network must not take a worker down with it.
    let opened =
        catch_unwind(AssertUnwindSafe(|| open(keyring, message, now))).unwrap_or_else(|_| {
            Err(Refusal::NotASignature(
                "the OpenPGP parser failed on it".to_owned(),
            ))
        })?;
    let payload = payload::parse(&opened.document).map_err(|why| {
        Refusal::NotASignature(format!("signed, but not a container signature: {why}"))
    })?;
    Ok(Signed {
        manifest_digest: payload.manifest_digest,
        docker_reference: payload.docker_reference,
        signer: opened.signer,
        signing_key: opened.signing_key,
        created: opened.created,
    })
}

/// A signature whose OpenPGP layer checked out: the content it signs, and who signed it.
struct Opened {
    document: Vec<u8>,
    signer: String,
    signing_key: String,
    created: SystemTime,
}

impl Signed {
    /// Whether this signature lets `repository` (fully qualified, as
    /// `container-registry.oracle.com/os/oraclelinux`; `busybox` and `docker.io/busybox` mean
    /// `docker.io/library/busybox`) be served with the manifest whose digest is
    /// `manifest_digest`, asked for by `tag` or, when `tag` is `None`, by digest.
    ///
    /// The digest must be the one the signature names (compute it with the signed digest's
    /// algorithm, `self.manifest_digest.algorithm()`, over the exact bytes served); the
    /// identity must match by `matchRepoDigestOrExact`.
    pub fn names(
        &self,
        manifest_digest: &Digest,
        repository: &str,
        tag: Option<&str>,
    ) -> Result<(), Refusal> {
        if &self.manifest_digest != manifest_digest {
            return Err(Refusal::WrongManifest {
                signed: self.manifest_digest.clone(),
                expected: manifest_digest.clone(),
            });
        }
        let intended =
            DockerReference::for_image(repository, tag).map_err(|e| Refusal::InvalidImage {
                image: clip(&match tag {
                    Some(t) => format!("{repository}:{t}"),
                    None => repository.to_owned(),
                }),
                why: e.to_string(),
            })?;
        let bad_identity = |why: String| Refusal::BadIdentity {
            signed: clip(&self.docker_reference),
            why,
        };
        let signed = DockerReference::parse_normalized(&self.docker_reference)
            .map_err(|e| bad_identity(e.to_string()))?;
        if signed.is_name_only() {
            return Err(bad_identity(
                "it has neither tag nor digest, so it names no particular image".to_owned(),
            ));
        }
        if intended.matches_repo_digest_or_exact(&signed) {
            return Ok(());
        }
        Err(Refusal::WrongIdentity {
            signed: signed.to_string(),
            expected: match tag {
                Some(_) => intended.to_string(),
                None => format!("repository {}", intended.name()),
            },
        })
    }
}

/// `FromBlob`'s test: a simple signature starts with a compressed data, one-pass signature or
/// signature packet. Anything else gets a refusal that says what it looks like instead.
fn check_first_byte(message: &[u8]) -> Result<(), Refusal> {
    let not = |why: &str| Err(Refusal::NotASignature(why.to_owned()));
    let Some(&first) = message.first() else {
        return not("it is empty");
    };
    if message.starts_with(b"-----BEGIN PGP") {
        return not(
            "it is ASCII-armored; a simple signature is the binary OpenPGP message `gpg --sign` writes",
        );
    }
    if first == 0 {
        return not("it is in containers/image's tagged format, but not a simple-signing one");
    }
    // Old-format headers keep the tag in bits 5..2, new-format ones in bits 5..0.
    let tag = if first & 0x40 != 0 {
        first & 0x3f
    } else {
        (first >> 2) & 0x0f
    };
    // Signature (2), one-pass signature (4), compressed data (8).
    if first & 0x80 == 0 || !matches!(tag, 2 | 4 | 8) {
        return Err(Refusal::NotASignature(format!(
            "it starts with byte {first:#04x}, which does not begin a signed OpenPGP message"
        )));
    }
    Ok(())
}

/// Reads the OpenPGP message and checks its one signature against the keyring.
fn open(keyring: &Keyring, bytes: &[u8], now: SystemTime) -> Result<Opened, Refusal> {
    let not = |why: String| Refusal::NotASignature(why);
    // rPGP's error text can quote the input bytes: refusals say what is wrong in fixed words.
    let corrupt = |what: &str| not(format!("its {what} is corrupt"));

    let mut msg = Message::from_bytes(bytes)
        .map_err(|_| not("it is not a well-formed OpenPGP message".to_owned()))?;
    for _ in 0..MAX_COMPRESSION_LAYERS {
        if !msg.is_compressed() {
            break;
        }
        msg = msg.decompress().map_err(|_| corrupt("compressed data"))?;
    }
    // A signed message may also wrap compressed content (one-pass signature, compressed
    // literal data, signature): unwrap that once too.
    if let Message::Signed { reader, .. } = &msg
        && reader.get_ref().is_compressed()
    {
        msg = msg.decompress().map_err(|_| corrupt("compressed data"))?;
    }
    let Message::Signed { reader, .. } = &msg else {
        return Err(not(match &msg {
            Message::Encrypted { .. } => "it is an encrypted message, not a signed one",
            Message::Literal { .. } => "it is an OpenPGP message without a signature",
            _ => "it nests more compression layers than a signature has",
        }
        .to_owned()));
    };
    if !reader.get_ref().is_literal() {
        return Err(not(
            "it nests signed or compressed messages; a simple signature is one signature over its document"
                .to_owned(),
        ));
    }
    let count = reader.num_signatures();
    if count != 1 {
        return Err(not(format!(
            "it carries {count} signatures; a simple signature carries exactly one"
        )));
    }

    // The signature can be checked only once the content has been read through.
    let mut document = Vec::new();
    (&mut msg)
        .take(MAX_PAYLOAD_BYTES as u64 + 1)
        .read_to_end(&mut document)
        .map_err(|_| corrupt("OpenPGP data"))?;
    if document.len() > MAX_PAYLOAD_BYTES {
        return Err(not(format!(
            "its signed content is larger than {MAX_PAYLOAD_BYTES} bytes"
        )));
    }
    let Message::Signed { reader, .. } = &msg else {
        return Err(not("it changed shape while being read".to_owned()));
    };
    let Some(sig) = reader.signature(0) else {
        return Err(not("its signature packet is missing".to_owned()));
    };

    let Some((signer, key)) = keyring.find(sig) else {
        let issuer = sig
            .issuer_fingerprint()
            .first()
            .map(upper_hex)
            .or_else(|| sig.issuer_key_id().first().map(upper_hex));
        return Err(match issuer {
            Some(key) => Refusal::UnknownSigner { key },
            None => not("its signature names no key".to_owned()),
        });
    };
    let key_fpr = key.fingerprint_hex();
    let bad = |why: String| Refusal::BadSignature(why);

    match sig.typ() {
        Some(SignatureType::Binary | SignatureType::Text) => {}
        Some(other) => {
            return Err(bad(format!(
                "it is a {other:?} signature, not a signature of data"
            )));
        }
        None => return Err(bad("its type is unknown".to_owned())),
    }
    if let Some(
        h @ (HashAlgorithm::None
        | HashAlgorithm::Md5
        | HashAlgorithm::Sha1
        | HashAlgorithm::Ripemd160),
    ) = sig.hash_alg()
    {
        return Err(bad(format!(
            "it uses the {h} hash, which is too weak to trust"
        )));
    }
    msg.verify(key.verifying_key()).map_err(|_| {
        bad(format!(
            "it does not verify with key {key_fpr}: the signed content or the signature was altered"
        ))
    })?;

    if key.revoked {
        return Err(Refusal::Revoked { key: key_fpr });
    }
    if let Some(why) = key.cannot_sign {
        return Err(bad(format!("key {key_fpr} may not sign: {why}")));
    }
    let Some(created) = sig.created().map(SystemTime::from) else {
        return Err(bad("it carries no creation time".to_owned()));
    };
    if created < key.created {
        return Err(bad(format!(
            "it is dated {}, before key {key_fpr} was created",
            rfc3339(created)
        )));
    }
    if let Some(until) = sig
        .signature_expiration_time()
        .filter(|d| d.as_secs() != 0)
        .and_then(|d| created.checked_add(d.into()))
        && now >= until
    {
        return Err(Refusal::Expired(format!(
            "the signature expired on {}",
            rfc3339(until)
        )));
    }
    if let Some(until) = key.expires
        && now >= until
    {
        return Err(Refusal::Expired(format!(
            "key {key_fpr} expired on {}",
            rfc3339(until)
        )));
    }

    Ok(Opened {
        document,
        signer: signer.to_owned(),
        signing_key: key_fpr,
        created,
    })
}
