//! The crate's two error types: [`StoreError`] for direct store operations, and [`FillError`],
//! which one failed fill hands to every reader, so it is cheap to clone.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use wharf_oci::Digest;

use crate::fill::SourceError;

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The filesystem refused; `op` says what the store was doing.
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Bytes offered for a digest hash to something else; nothing was stored.
    #[error("content for {expected} hashes to {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    /// The bytes offered for a digest broke off before their end; nothing was stored.
    #[error("content for {digest} broke off: {source}")]
    Body {
        digest: Digest,
        #[source]
        source: io::Error,
    },
    /// Stored content could not be read back.
    #[error("reading stored content for {digest}: {source}")]
    Read {
        digest: Digest,
        #[source]
        source: io::Error,
    },
    /// A media type that could never be sent back as a `Content-Type`; nothing was stored.
    #[error("media type {media_type:?} for {digest} is empty or holds control characters")]
    InvalidMediaType { digest: Digest, media_type: String },
    /// The embedded metadata store (`meta/index.redb`) failed.
    #[error("metadata store: {op}: {message}")]
    Meta { op: &'static str, message: String },
    /// A remote tier (the shared object store) failed; `op` says what the store was doing.
    #[error("object store: {op} {key}: {source}")]
    Remote {
        op: &'static str,
        key: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Another process has the store open: two wharfs must not share one directory.
    #[error("{} is in use by another process (two wharfs cannot share a store)", path.display())]
    InUse { path: PathBuf },
}

impl StoreError {
    /// Builds the `map_err` closure for an I/O step on `path`.
    pub(crate) fn io(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
        let path = path.to_path_buf();
        move |source| StoreError::Io { op, path, source }
    }

    pub fn is_digest_mismatch(&self) -> bool {
        matches!(self, StoreError::DigestMismatch { .. })
    }

    /// The file system (or a quota on it) had no room for a write.
    pub fn is_no_space(&self) -> bool {
        matches!(self, StoreError::Io { source, .. } if crate::no_space::is_no_space(source))
    }
}

/// Why a fill stored nothing. Every reader of the fill gets a clone of the same error.
#[derive(Clone, Debug, thiserror::Error)]
pub enum FillError {
    /// The upstream failed: the opener refused (not found, unreachable, denied...) or the body
    /// broke and could not be resumed. [`FillError::source_error`] gives the caller's own error
    /// back, to downcast.
    #[error("fill of {digest}: upstream: {source}")]
    Source {
        digest: Digest,
        #[source]
        source: SourceError,
    },
    /// No byte arrived for `after`, neither an answer to the opener nor a body chunk.
    #[error("fill of {digest}: upstream sent nothing for {after:?}")]
    Timeout { digest: Digest, after: Duration },
    /// The upstream's bytes hash to another digest.
    #[error("fill of {digest}: upstream content hashes to {actual}")]
    DigestMismatch { digest: Digest, actual: Digest },
    /// The upstream announced one length and sent another (`actual` may stop counting at the
    /// first byte too many).
    #[error("fill of {digest}: upstream announced {expected} bytes and sent {actual}")]
    LengthMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    /// The local disk failed.
    #[error("fill of {digest}: {source}")]
    Store {
        digest: Digest,
        #[source]
        source: Arc<StoreError>,
    },
    /// The fill task ended without a result (it panicked, or the runtime shut down).
    #[error("fill of {digest} ended without a result")]
    Aborted { digest: Digest },
}

impl FillError {
    pub(crate) fn store(digest: &Digest, e: StoreError) -> Self {
        FillError::Store {
            digest: digest.clone(),
            source: Arc::new(e),
        }
    }

    /// The digest being filled.
    pub fn digest(&self) -> &Digest {
        match self {
            FillError::Source { digest, .. }
            | FillError::Timeout { digest, .. }
            | FillError::DigestMismatch { digest, .. }
            | FillError::LengthMismatch { digest, .. }
            | FillError::Store { digest, .. }
            | FillError::Aborted { digest } => digest,
        }
    }

    /// The error the [`Opener`](crate::Opener) or its body returned, if that is what failed the
    /// fill; downcast it to map an upstream 404 or an unreachable host to an answer.
    pub fn source_error(&self) -> Option<&SourceError> {
        match self {
            FillError::Source { source, .. } => Some(source),
            _ => None,
        }
    }

    pub fn is_digest_mismatch(&self) -> bool {
        matches!(self, FillError::DigestMismatch { .. })
    }

    /// The local disk had no room for the content.
    pub fn is_no_space(&self) -> bool {
        matches!(self, FillError::Store { source, .. } if source.is_no_space())
    }

    /// The upstream went quiet for longer than the inactivity timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self, FillError::Timeout { .. })
    }

    /// The upstream sent other content than the digest names, by hash or by length: it, not
    /// the mirror nor the network, is at fault.
    pub fn is_bad_content(&self) -> bool {
        matches!(
            self,
            FillError::DigestMismatch { .. } | FillError::LengthMismatch { .. }
        )
    }
}
