//! The storage seam: [`BlobStore`], content addressed by digest, whatever keeps its bytes.
//!
//! ```text
//! Store            index (LRU, budget, eviction), manifests in memory, tags, fills
//!   |  open / write / stat / delete / list          <- this trait
//! FsBlobStore      blobs/<alg>/<2 hex>/<hex> on local disk (the store's own tier)
//! MemoryBlobStore  a map of bytes: tests, and the shape a remote tier (object store) takes
//! ```
//!
//! A backend keeps only verified content: [`BlobStore::write`] hashes what it is given and
//! publishes it only when it matches the digest, so nothing is visible before it is verified and
//! a mismatch leaves nothing. Everything above the seam (what to keep, when to evict, which
//! fills run) is the [`Store`](crate::Store)'s.
//!
//! The trait is generic, not `dyn`: each backend's opened blob is its own type
//! ([`BlobStore::Blob`]), so the filesystem hands the serving path a `std::fs::File` for
//! `sendfile`, and no chunk goes through a virtual call or an extra allocation. Fills tail a
//! spool file while it grows, which a local disk offers and an object store does not, so they
//! use [`FsBlobStore`]'s own spool methods; a remote tier would receive content through `write`
//! once it is verified locally.
//!
//! Every backend passes the one suite in `tests/common/conformance.rs`.

mod fs;
mod memory;

use std::future::Future;
use std::io;

use bytes::Bytes;
use futures_util::stream::{self, BoxStream, Stream};
use futures_util::{StreamExt, TryStreamExt};
use wharf_oci::Digest;

use crate::error::StoreError;

pub use fs::{FsBlob, FsBlobStore};
pub use memory::{MemoryBlob, MemoryBlobStore};

/// Content addressed by digest: only verified content, published atomically.
pub trait BlobStore: Send + Sync + 'static {
    /// An opened blob: its size, and its bytes for as long as it is held.
    type Blob: Blob;

    /// Whether a blob opened before it was deleted still reads to its end. True for the
    /// filesystem (unlink semantics) and for memory (shared bytes); a remote tier that reads
    /// ranges on demand may not promise it, and then its reader ends with an error, never with
    /// other bytes.
    const READS_SURVIVE_DELETE: bool;

    /// Opens the content for `d`, if it is stored.
    fn open(
        &self,
        d: &Digest,
    ) -> impl Future<Output = Result<Option<Self::Blob>, StoreError>> + Send;

    /// Stores the bytes `body` yields as the content for `d`: hashed while they are taken in,
    /// published only if they hash to `d`, and then all at once. Returns the size. On a
    /// mismatch ([`StoreError::DigestMismatch`]) or a broken body ([`StoreError::Body`])
    /// nothing is stored. Writing content that is already stored succeeds and changes nothing
    /// a reader can see; so do concurrent writes of one digest.
    fn write<S>(&self, d: &Digest, body: S) -> impl Future<Output = Result<u64, StoreError>> + Send
    where
        S: Stream<Item = io::Result<Bytes>> + Send + Unpin;

    /// The size of the content for `d`, if it is stored.
    fn stat(&self, d: &Digest) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;

    /// Removes the content for `d`; whether it was there. Readers that opened it before keep
    /// what [`Self::READS_SURVIVE_DELETE`] says.
    fn delete(&self, d: &Digest) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Every stored digest with its size, in no particular order.
    fn list(&self) -> impl Future<Output = Result<Vec<StoredBlob>, StoreError>> + Send;

    /// [`BlobStore::write`] for bytes already in memory.
    fn write_bytes(
        &self,
        d: &Digest,
        bytes: Bytes,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send {
        self.write(d, stream::iter([Ok(bytes)]))
    }

    /// The whole content for `d`, if it is stored. Does not check it against `d` again: a
    /// caller that distrusts the medium hashes it.
    fn read_to_bytes(
        &self,
        d: &Digest,
    ) -> impl Future<Output = Result<Option<Bytes>, StoreError>> + Send {
        async move {
            let Some(blob) = self.open(d).await? else {
                return Ok(None);
            };
            let size = blob.size();
            let chunks: Vec<Bytes> =
                blob.range(0, size)
                    .try_collect()
                    .await
                    .map_err(|source| StoreError::Read {
                        digest: d.clone(),
                        source,
                    })?;
            Ok(Some(match <[Bytes; 1]>::try_from(chunks) {
                // One small chunk (most manifests): no copy. A larger one sits in a pooled
                // buffer of a full chunk's size (fill/chunks.rs): what is kept is copied out.
                Ok([only]) if only.len() < crate::fill::POOLED_FROM => only,
                Ok([only]) => Bytes::copy_from_slice(&only),
                Err(chunks) => chunks.concat().into(),
            }))
        }
    }
}

/// An opened blob of some [`BlobStore`].
pub trait Blob: Send + 'static {
    /// Its size in bytes.
    fn size(&self) -> u64;

    /// The bytes `[start, end)`, at most [`CHUNK`](crate::CHUNK) at a time; a range past the end
    /// ends with an `UnexpectedEof` error. One stream per range (one allocation), not per chunk.
    fn range(self, start: u64, end: u64) -> BoxStream<'static, io::Result<Bytes>>;
}

/// One entry of [`BlobStore::list`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct StoredBlob {
    pub digest: Digest,
    pub size: u64,
}

/// Takes `body` in, hashing it, and says whether it is the content of `d`: what every
/// backend's `write` does before it publishes (a backend in another crate too: the object
/// store's). `sink` receives each chunk as it is hashed.
pub async fn take_verified<S>(
    d: &Digest,
    mut body: S,
    sink: &mut impl AsyncSink,
) -> Result<u64, StoreError>
where
    S: Stream<Item = io::Result<Bytes>> + Send + Unpin,
{
    let mut verifier = d.verifier();
    let mut size = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|source| StoreError::Body {
            digest: d.clone(),
            source,
        })?;
        verifier.update(&chunk);
        size += chunk.len() as u64;
        sink.take(chunk).await?;
    }
    let actual = verifier.finish();
    if actual != *d {
        return Err(StoreError::DigestMismatch {
            expected: d.clone(),
            actual,
        });
    }
    Ok(size)
}

/// Where [`take_verified`] puts the chunks: a spool file, a buffer, an upload.
pub trait AsyncSink: Send {
    fn take(&mut self, chunk: Bytes) -> impl Future<Output = Result<(), StoreError>> + Send;
}
