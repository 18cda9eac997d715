//! [`MemoryBlobStore`]: content in a map, for tests, and the shape a remote tier takes (no
//! files, no spool: a write is taken in whole, verified, then inserted).

use std::collections::HashMap;
use std::io;
use std::sync::{PoisonError, RwLock};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::stream::{self, BoxStream, Stream};
use wharf_oci::Digest;

use super::{AsyncSink, Blob, BlobStore, StoredBlob, take_verified};
use crate::error::StoreError;
use crate::fill::CHUNK;

/// Verified content in memory. The lock is held only to copy a handle in or out, never
/// across an await.
#[derive(Debug, Default)]
pub struct MemoryBlobStore {
    blobs: RwLock<HashMap<Digest, Bytes>>,
}

impl MemoryBlobStore {
    pub fn new() -> MemoryBlobStore {
        MemoryBlobStore::default()
    }
}

/// A stored blob's bytes: shared, so a delete does not take them from its readers.
#[derive(Clone, Debug)]
pub struct MemoryBlob {
    pub bytes: Bytes,
}

impl Blob for MemoryBlob {
    fn size(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn range(self, start: u64, end: u64) -> BoxStream<'static, io::Result<Bytes>> {
        let len = self.bytes.len() as u64;
        let stop = end.min(len);
        let chunks = (start..stop).step_by(CHUNK as usize).map(move |at| {
            // Within `bytes`, whose length is a usize: the casts cannot truncate.
            Ok(self
                .bytes
                .slice(at as usize..(at + CHUNK).min(stop) as usize))
        });
        let past_end = (end > len).then(|| {
            Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("range ends at {end} but the content has {len} bytes"),
            ))
        });
        stream::iter(chunks.chain(past_end)).boxed()
    }
}

/// A write's bytes, gathered before they are verified.
struct Gather(BytesMut);

impl AsyncSink for Gather {
    async fn take(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        self.0.extend_from_slice(&chunk);
        Ok(())
    }
}

impl MemoryBlobStore {
    fn map(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Digest, Bytes>> {
        // Inserts and removes are single calls: a panic elsewhere cannot leave the map torn.
        self.blobs.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn map_mut(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Digest, Bytes>> {
        self.blobs.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl BlobStore for MemoryBlobStore {
    type Blob = MemoryBlob;

    /// Readers share the bytes; a delete drops only the map's handle.
    const READS_SURVIVE_DELETE: bool = true;

    async fn open(&self, d: &Digest) -> Result<Option<MemoryBlob>, StoreError> {
        Ok(self.map().get(d).map(|bytes| MemoryBlob {
            bytes: bytes.clone(),
        }))
    }

    async fn write<S>(&self, d: &Digest, body: S) -> Result<u64, StoreError>
    where
        S: Stream<Item = io::Result<Bytes>> + Send + Unpin,
    {
        let mut gathered = Gather(BytesMut::new());
        let size = take_verified(d, body, &mut gathered).await?;
        self.map_mut().insert(d.clone(), gathered.0.freeze());
        Ok(size)
    }

    async fn stat(&self, d: &Digest) -> Result<Option<u64>, StoreError> {
        Ok(self.map().get(d).map(|b| b.len() as u64))
    }

    async fn delete(&self, d: &Digest) -> Result<bool, StoreError> {
        Ok(self.map_mut().remove(d).is_some())
    }

    async fn list(&self) -> Result<Vec<StoredBlob>, StoreError> {
        Ok(self
            .map()
            .iter()
            .map(|(digest, b)| StoredBlob {
                digest: digest.clone(),
                size: b.len() as u64,
            })
            .collect())
    }
}
