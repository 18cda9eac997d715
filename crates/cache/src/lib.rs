//! The digest store: content on disk addressed by digest, tag records, and single-flight fills.
//!
//! [`Store`] owns one directory:
//!
//! ```text
//! <root>/blobs/<alg>/<2 hex>/<hex>   verified content, blobs and manifests alike
//! <root>/meta/index.redb             the metadata store: media types, fingerprints of verified
//!                                     files, access times, tag records, which repository
//!                                     holds which content (meta.rs, scopes.rs)
//! <root>/spool/                       fills and writes in progress; swept at start-up
//! <root>/quarantine/                  files found not to match their name; never served
//! <root>/signatures/                  the signature lists of manifests (signatures.rs)
//! ```
//!
//! Nothing under `blobs/` was written in place: every file is written in `spool/` while it is
//! hashed, verified, fsynced, renamed into place, and its directory fsynced. A crash leaves at
//! worst a spool file, which [`Store::open`] removes.
//!
//! What stays is decided by the index (`index.rs`): an LRU of every stored digest,
//! weighted by size, bounded by `max_size`, evicting the least recently used; evicted files are
//! unlinked (a reader holding one open reads on). Start-up (`recover.rs`) rebuilds the index
//! from the files and the metadata store in access order, hashing only files it did not verify
//! before or that changed since.
//!
//! A miss becomes a [`Fill`] ([`Store::fill`]): one task per digest, detached from every client,
//! that streams the upstream body into the spool and publishes how many bytes are on disk. Every
//! client — the first one included — is a reader that tails that file ([`Fill::reader`]), so all
//! of them stream at once and the upstream is asked once. A fill that fails (upstream error,
//! digest or length mismatch, inactivity) stores nothing and ends every reader with an error.
//!
//! Bit rot is caught in the background: the scrubber (`scrub.rs`) reads stored content back at
//! a bounded rate (`scrub_rate`), the least recently verified first, and quarantines what no
//! longer matches its digest, so the next request for it fetches it again.
//!
//! The content itself sits behind [`BlobStore`] (`blobs/`): digest-addressed, verified before
//! it is visible. [`FsBlobStore`] is the store's tier on local disk (its opened blob is a
//! `std::fs::File`, which the serving path hands to `sendfile`); [`MemoryBlobStore`] is for
//! tests and is the shape a remote tier takes. One conformance suite runs over both.
//!
//! Pushed content arrives through an [`Upload`] ([`Store::begin_upload`], `upload.rs`): written
//! to the spool and hashed as it arrives, over as many requests as the client likes, and
//! published by [`Store::finish_upload`] only under the digest it hashed to.
//!
//! This crate knows nothing of HTTP: the caller supplies an [`Opener`] that turns an offset into
//! a byte stream, and maps [`FillError`]s to answers.

mod blobs;
mod error;
mod fill;
mod held;
/// The figures behind the index's policy; run by the `hit_ratio` bench target.
#[doc(hidden)]
pub mod hit_ratio;
mod index;
mod layout;
mod listing;
mod meta;
mod no_space;
mod options;
mod recover;
mod scopes;
mod scrub;
mod signatures;
mod store;
mod tags;
mod upload;
mod writer;

pub use blobs::{
    AsyncSink, Blob, BlobStore, FsBlob, FsBlobStore, MemoryBlob, MemoryBlobStore, StoredBlob,
    take_verified,
};
pub use error::{FillError, StoreError};
pub use fill::{CHUNK, FileRange, Fill, FillSource, Opener, SourceError, file_chunks};
pub use listing::Stored;
pub use scopes::ScopeKey;
pub use signatures::{MAX_SIGNATURE_BYTES, MAX_SIGNATURES, SignatureKey, SignatureList};
pub use store::{Store, StoreOptions, StoreStats};
pub use tags::{TagEntry, TagKey, TagRecord};
pub use upload::{AppendError, Upload};
