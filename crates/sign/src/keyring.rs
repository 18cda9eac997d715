//! The public keys a site trusts, read from `gpg --export` output (binary or ASCII-armored, one
//! or several keys, several armor blocks in one file as `RPM-GPG-KEY-*` files sometimes have),
//! and what each of their keys may do.
//!
//! rPGP parses and checks signatures; what makes a key usable is OpenPGP semantics that rPGP
//! leaves to its users, decided here the way gpg (which containers/image's default gpgme
//! mechanism, `signature/mechanism_gpgme.go`, runs) decides it, per key:
//!
//! - a primary key counts only with a valid self-signature (a user ID certification or a direct
//!   key signature); the newest valid one gives its key flags and expiry. Signatures that do not
//!   verify (third-party certifications among them) are skipped, not fatal.
//! - a subkey counts with a valid binding signature from its primary; the newest gives flags and
//!   expiry; a signing subkey also needs a valid embedded back-signature (RFC 9580 §5.2.1, type
//!   0x19), without which anyone could attach someone else's signing key to their certificate.
//! - a valid key revocation (0x20) revokes the primary and every subkey; a valid subkey
//!   revocation (0x28) revokes that subkey. Expiry depends on the time of verification, so it is
//!   checked in [`crate::verify`].

use std::io::Read as _;
use std::path::Path;
use std::time::SystemTime;

use pgp::composed::{Deserializable as _, SignedPublicKey, SignedPublicSubKey};
use pgp::packet::{self, Signature, SignatureType, SubpacketData};
use pgp::types::{Fingerprint, KeyDetails, KeyId, Tag, VerifyingKey};

use crate::error::KeyError;

/// The largest key file read: exported public keys are a few KiB; vendors' files with many
/// keys and certifications stay far below this.
pub const MAX_KEYRING_BYTES: usize = 16 << 20;

const ARMOR_BEGIN: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----";

/// Public keys to verify signatures with.
#[derive(Debug, Clone)]
pub struct Keyring {
    certs: Vec<Cert>,
}

/// One transferable public key: a primary key and its subkeys.
#[derive(Debug, Clone)]
struct Cert {
    /// The primary key's fingerprint, upper-case hex (as gpg and containers/image print it).
    fingerprint: String,
    keys: Vec<Key>,
}

/// A primary key or subkey, with what its self-signatures say about it.
#[derive(Debug, Clone)]
pub(crate) struct Key {
    material: Material,
    fingerprint: Fingerprint,
    key_id: KeyId,
    pub(crate) created: SystemTime,
    /// When it stops being valid, from its newest valid self- or binding signature.
    pub(crate) expires: Option<SystemTime>,
    pub(crate) revoked: bool,
    /// Why it may not make data signatures, if it may not.
    pub(crate) cannot_sign: Option<&'static str>,
}

#[derive(Debug, Clone)]
enum Material {
    Primary(packet::PublicKey),
    Subkey(packet::PublicSubkey),
}

impl Keyring {
    /// Reads a key file: `gpg --export --armor KEYID > file`, or without `--armor`.
    pub fn load(path: impl AsRef<Path>) -> Result<Keyring, KeyError> {
        let path = path.as_ref();
        let origin = path.display().to_string();
        let read = |source| KeyError::Read {
            origin: origin.clone(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read)?;
        let mut bytes = Vec::new();
        // One byte more than allowed tells "too large" from "exactly the limit".
        file.take(MAX_KEYRING_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(read)?;
        if bytes.len() > MAX_KEYRING_BYTES {
            let len = std::fs::metadata(path).map_or(bytes.len() as u64, |m| m.len());
            return Err(KeyError::TooLarge {
                origin,
                len,
                max: MAX_KEYRING_BYTES,
            });
        }
        Keyring::parse_named(&origin, &bytes)
    }

    /// Reads keys from bytes, as [`Keyring::load`] reads a file.
    pub fn parse(bytes: &[u8]) -> Result<Keyring, KeyError> {
        Keyring::parse_named("the key data", bytes)
    }

    fn parse_named(origin: &str, bytes: &[u8]) -> Result<Keyring, KeyError> {
        // rPGP's own error text can quote the input bytes: it stays out of the message.
        let armored = bytes.first().is_some_and(|b| b & 0x80 == 0);
        let malformed = |_: pgp::errors::Error| KeyError::Malformed {
            origin: origin.to_owned(),
            why: if armored {
                "its ASCII armor, or the key inside it, is damaged"
            } else {
                "its OpenPGP packets are damaged"
            }
            .to_owned(),
        };
        if bytes.len() > MAX_KEYRING_BYTES {
            return Err(KeyError::TooLarge {
                origin: origin.to_owned(),
                len: bytes.len() as u64,
                max: MAX_KEYRING_BYTES,
            });
        }
        let mut parsed = Vec::new();
        if !armored && !bytes.is_empty() {
            if is_secret_key_packet(bytes[0]) {
                return Err(KeyError::SecretKey {
                    origin: origin.to_owned(),
                });
            }
            for key in SignedPublicKey::from_bytes_many(bytes).map_err(malformed)? {
                parsed.push(key.map_err(malformed)?);
            }
        } else {
            let text = String::from_utf8_lossy(bytes);
            if text.contains("-----BEGIN PGP PRIVATE KEY BLOCK-----") {
                return Err(KeyError::SecretKey {
                    origin: origin.to_owned(),
                });
            }
            // rPGP reads one armor block per call; a file may hold several, one per key.
            for (start, _) in text.match_indices(ARMOR_BEGIN) {
                let (keys, _headers) = SignedPublicKey::from_armor_many(text[start..].as_bytes())
                    .map_err(malformed)?;
                for key in keys {
                    parsed.push(key.map_err(malformed)?);
                }
            }
        }
        if parsed.is_empty() {
            return Err(KeyError::NoKeys {
                origin: origin.to_owned(),
            });
        }
        let certs = parsed
            .iter()
            .map(|key| {
                Cert::evaluate(key).ok_or_else(|| KeyError::Unusable {
                    origin: origin.to_owned(),
                    fingerprint: upper_hex(&key.fingerprint()),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Keyring { certs })
    }

    /// The primary key fingerprints, upper-case hex: what a log line can name.
    pub fn fingerprints(&self) -> Vec<String> {
        self.certs.iter().map(|c| c.fingerprint.clone()).collect()
    }

    /// How many certificates (primary keys) it holds.
    pub fn len(&self) -> usize {
        self.certs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }

    /// The key a signature names as its issuer, by fingerprint or else by key ID, with its
    /// certificate's fingerprint.
    pub(crate) fn find(&self, signature: &Signature) -> Option<(&str, &Key)> {
        let fingerprints = signature.issuer_fingerprint();
        let key_ids = signature.issuer_key_id();
        self.certs.iter().find_map(|cert| {
            cert.keys
                .iter()
                .find(|k| {
                    fingerprints.iter().any(|f| **f == k.fingerprint)
                        || (fingerprints.is_empty() && key_ids.iter().any(|id| **id == k.key_id))
                })
                .map(|k| (cert.fingerprint.as_str(), k))
        })
    }
}

impl Cert {
    /// What gpg would make of this certificate; `None` when its primary key has no valid
    /// self-signature (nothing in it can then be trusted).
    fn evaluate(cert: &SignedPublicKey) -> Option<Cert> {
        let primary = &cert.primary_key;
        let self_sigs =
            cert.details
                .users
                .iter()
                .flat_map(|u| {
                    u.signatures.iter().filter(|s| {
                        s.is_certification()
                            && s.verify_certification(primary, Tag::UserId, &u.id).is_ok()
                    })
                })
                .chain(cert.details.user_attributes.iter().flat_map(|a| {
                    a.signatures.iter().filter(|s| {
                        s.is_certification()
                            && s.verify_certification(primary, Tag::UserAttribute, &a.attr)
                                .is_ok()
                    })
                }))
                .chain(cert.details.direct_signatures.iter().filter(|s| {
                    s.typ() == Some(SignatureType::Key) && s.verify_key(primary).is_ok()
                }));
        let newest = newest(self_sigs)?;
        let revoked = cert.details.revocation_signatures.iter().any(|s| {
            s.typ() == Some(SignatureType::KeyRevocation) && s.verify_key(primary).is_ok()
        });
        // A primary key without key flags predates them: gpg lets it sign.
        let cannot_sign = (has_key_flags(newest) && !newest.key_flags().sign())
            .then_some("its self-signature does not allow signing");
        let mut keys = vec![Key {
            material: Material::Primary(primary.clone()),
            fingerprint: primary.fingerprint(),
            key_id: primary.legacy_key_id(),
            created: primary.created_at().into(),
            expires: expiry(primary, newest),
            revoked,
            cannot_sign,
        }];
        keys.extend(
            cert.public_subkeys
                .iter()
                .filter_map(|sub| evaluate_subkey(primary, sub, revoked)),
        );
        Some(Cert {
            fingerprint: upper_hex(&primary.fingerprint()),
            keys,
        })
    }
}

/// A subkey with a valid binding, or `None` (gpg ignores a subkey it cannot bind).
fn evaluate_subkey(
    primary: &packet::PublicKey,
    sub: &SignedPublicSubKey,
    cert_revoked: bool,
) -> Option<Key> {
    let bindings = sub.signatures.iter().filter(|s| {
        s.typ() == Some(SignatureType::SubkeyBinding)
            && s.verify_subkey_binding(primary, &sub.key).is_ok()
    });
    let binding = newest(bindings)?;
    let revoked = cert_revoked
        || sub.signatures.iter().any(|s| {
            s.typ() == Some(SignatureType::SubkeyRevocation)
                && s.verify_subkey_binding(primary, &sub.key).is_ok()
        });
    let cannot_sign = if !binding.key_flags().sign() {
        Some("its binding signature does not allow signing")
    } else if !binding.embedded_signature().is_some_and(|back| {
        back.typ() == Some(SignatureType::KeyBinding)
            && back.verify_primary_key_binding(&sub.key, primary).is_ok()
    }) {
        Some("it is a signing subkey without a valid back-signature to its primary key")
    } else {
        None
    };
    Some(Key {
        material: Material::Subkey(sub.key.clone()),
        fingerprint: sub.key.fingerprint(),
        key_id: sub.key.legacy_key_id(),
        created: sub.key.created_at().into(),
        expires: expiry(&sub.key, binding),
        revoked,
        cannot_sign,
    })
}

impl Key {
    pub(crate) fn verifying_key(&self) -> &dyn VerifyingKey {
        match &self.material {
            Material::Primary(k) => k,
            Material::Subkey(k) => k,
        }
    }

    /// Its own fingerprint (a subkey's, for a subkey), upper-case hex.
    pub(crate) fn fingerprint_hex(&self) -> String {
        upper_hex(&self.fingerprint)
    }
}

/// The signature created last (gpg's rule for which self-signature is current).
fn newest<'a>(sigs: impl Iterator<Item = &'a Signature>) -> Option<&'a Signature> {
    sigs.max_by_key(|s| s.created().map(SystemTime::from))
}

fn has_key_flags(sig: &Signature) -> bool {
    sig.config().is_some_and(|c| {
        c.hashed_subpackets()
            .any(|p| matches!(p.data, SubpacketData::KeyFlags(_)))
    })
}

/// Key creation plus the signature's key expiration time; zero means "does not expire".
fn expiry(key: &impl KeyDetails, sig: &Signature) -> Option<SystemTime> {
    let after = sig.key_expiration_time().filter(|d| d.as_secs() != 0)?;
    SystemTime::from(key.created_at()).checked_add(after.into())
}

/// Secret-Key (5) and Secret-Subkey (7) packet headers, old and new format.
fn is_secret_key_packet(first: u8) -> bool {
    let tag = if first & 0x40 != 0 {
        first & 0x3f
    } else {
        (first >> 2) & 0x0f
    };
    matches!(tag, 5 | 7)
}

pub(crate) fn upper_hex(bytes: &impl AsRef<[u8]>) -> String {
    hex::encode_upper(bytes.as_ref())
}
