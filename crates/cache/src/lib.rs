//! The digest store: content on disk addressed by digest, tag records, and single-flight fills.
//!
//! [`Store`] owns one directory:
//!
//! ```text
//! <root>/blobs/<alg>/<2 hex>/<hex>             verified content, blobs and manifests alike
//! <root>/meta/manifests/<alg>/<2 hex>/<hex>    a manifest's media type (a sidecar, until the index)
//! <root>/spool/                                 fills and writes in progress; swept at start-up
//! ```
//!
//! Nothing under `blobs/` was written in place: every file is written in `spool/` while it is
//! hashed, verified, fsynced, renamed into place, and its directory fsynced. A crash leaves at
//! worst a spool file, which [`Store::open`] removes.
//!
//! A miss becomes a [`Fill`] ([`Store::fill`]): one task per digest, detached from every client,
//! that streams the upstream body into the spool and publishes how many bytes are on disk. Every
//! client — the first one included — is a reader that tails that file ([`Fill::reader`]), so all
//! of them stream at once and the upstream is asked once. A fill that fails (upstream error,
//! digest or length mismatch, inactivity) stores nothing and ends every reader with an error.
//!
//! This crate knows nothing of HTTP: the caller supplies an [`Opener`] that turns an offset into
//! a byte stream, and maps [`FillError`]s to answers.

mod error;
mod fill;
mod layout;
mod store;
mod tags;

pub use error::{FillError, StoreError};
pub use fill::{Fill, FillSource, Opener, SourceError};
pub use store::{Store, StoreOptions};
pub use tags::TagRecord;
