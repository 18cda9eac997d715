//! Verification of "simple signing" container signatures: the format `skopeo copy --sign-by`,
//! `skopeo standalone-sign` and `podman push --sign-by` write, and that registries' lookaside
//! stores (`sigstore:` / `lookaside:` in `registries.d`) serve as `…@sha256=<hex>/signature-N`.
//!
//! A simple signature is a binary OpenPGP *signed message* (not a detached signature) whose
//! literal data is a small JSON document naming a manifest digest and an image reference:
//!
//! ```json
//! {"critical": {"type": "atomic container signature",
//!               "image": {"docker-manifest-digest": "sha256:…"},
//!               "identity": {"docker-reference": "container-registry.oracle.com/os/oraclelinux:9"}},
//!  "optional": {"creator": "atomic 2.0.0", "timestamp": 1700000000}}
//! ```
//!
//! Checking one takes three steps, as containers/image does in `prSignedBy`:
//!
//! 1. [`Keyring::load`]: the public keys a site trusts (`gpg --export [--armor]` output, as
//!    vendors ship `RPM-GPG-KEY-*` files).
//! 2. [`verify`]: the OpenPGP signature is valid, made by a key or signing subkey of the
//!    keyring that is neither revoked nor expired, and its payload parses with containers/image's
//!    strictness. Gives a [`Signed`].
//! 3. [`Signed::names`]: the signature is for this manifest digest and names this image, by
//!    containers/image's default identity rule (`matchRepoDigestOrExact`).
//!
//! Every step answers a [`Refusal`] whose `Display` a person can act on; no input bytes make it
//! panic, and a signature over [`MAX_SIGNATURE_BYTES`] is refused unread.
//!
//! Followed from containers/image: `signature/simple.go` (the payload and its strict parse),
//! `signature/internal/json.go` (`ParanoidUnmarshalJSONObject*`), `signature/mechanism_gpgme.go`
//! (exactly one signature per message, key validity), `signature/mechanism_openpgp.go`
//! (signature expiry, upper-case fingerprints), `internal/signature/signature.go` (`FromBlob`:
//! which first bytes are a simple signature), `signature/policy_reference_match.go`
//! (`matchRepoDigestOrExact`), `docker/reference` (`ParseNormalizedNamed`) and
//! `internal/iolimits` (`MaxSignatureBodySize`).

mod error;
mod keyring;
mod payload;
mod reference;
mod time;
mod verify;

pub use error::{KeyError, Refusal};
pub use keyring::{Keyring, MAX_KEYRING_BYTES};
pub use reference::{DockerReference, ReferenceError};
pub use verify::{MAX_PAYLOAD_BYTES, MAX_SIGNATURE_BYTES, Signed, verify, verify_at};
