//! The OCI distribution vocabulary, with no I/O.
//!
//! Everything a request carries that wharf must parse or validate lives here: digests and their
//! streaming verifier ([`Digest`], [`Verifier`]), repository names ([`RepositoryName`]),
//! references ([`Reference`]), manifest media types and `Accept` negotiation ([`media`]), and the
//! spec's error codes with their JSON rendering ([`ErrorCode`], [`error_json`]).
//!
//! Grammars follow the OCI distribution spec 1.1 and image spec (see `PROTOCOL.md` §1.2).

mod digest;
mod error;
pub mod media;
mod name;

pub use digest::{Algorithm, Digest, DigestError, Verifier};
pub use error::{ErrorCode, error_json};
pub use name::{NameError, Reference, RepositoryName, is_valid_tag};
