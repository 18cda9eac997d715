//! The OCI distribution vocabulary, with no I/O.
//!
//! Everything a request carries that wharf must parse or validate lives here: digests and their
//! streaming verifier ([`Digest`], [`Verifier`]), repository names ([`RepositoryName`]),
//! references ([`Reference`]), image references as people type them ([`ImageReference`]),
//! manifest media types and `Accept` negotiation ([`media`]), what a manifest points at
//! ([`manifest`]), and the spec's error codes with their JSON rendering ([`ErrorCode`],
//! [`error_json`]).
//!
//! Grammars follow the OCI distribution spec 1.1 and image spec (see `PROTOCOL.md` §1.2).

mod digest;
mod error;
mod image_reference;
pub mod manifest;
pub mod media;
mod name;

pub use digest::{Algorithm, Digest, DigestError, Verifier};
pub use error::{ErrorCode, error_json, one_line};
pub use image_reference::{
    DEFAULT_TAG, DOCKER_HUB_HOSTS, ImageReference, ImageReferenceError, is_docker_hub_host,
    looks_like_host,
};
pub use name::{NameError, Reference, RepositoryName, is_valid_tag};
