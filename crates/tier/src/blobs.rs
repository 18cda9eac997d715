//! [`ObjectBlobStore`]: the [`BlobStore`] seam over an object store, at
//! `<prefix>/blobs/<algorithm>/<hex>`.
//!
//! A write is hashed while it streams out and published only when it matches its digest: a
//! small blob (under [`PART`]) as one `PUT` once verified, a larger one as a multipart upload
//! whose completion is the publication (an S3 object is visible only once complete), aborted on
//! a mismatch or a broken body. So every object under a verified name holds its digest's bytes,
//! unless something else wrote there; readers that cannot rule that out (the proxy filling its
//! local disk) hash what they read again, and only the local store's verification makes it
//! servable.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::{self, BoxStream, Stream};
use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use wharf_cache::{AsyncSink, Blob, BlobStore, CHUNK, StoreError, StoredBlob, take_verified};
use wharf_oci::Digest;

/// Multipart part size; smaller content goes up in one `PUT`.
pub(crate) const PART: usize = 8 * 1024 * 1024;
/// Parts in flight at once per upload.
const PARTS_IN_FLIGHT: usize = 2;

/// Verified content in an object store, under `<prefix>/blobs/`.
#[derive(Debug, Clone)]
pub struct ObjectBlobStore {
    store: Arc<dyn ObjectStore>,
    root: Path,
}

impl ObjectBlobStore {
    pub(crate) fn new(store: Arc<dyn ObjectStore>, prefix: &Path) -> ObjectBlobStore {
        ObjectBlobStore {
            store,
            root: prefix.clone().join("blobs"),
        }
    }

    /// `<prefix>/blobs/sha256/<hex>`
    pub fn key(&self, d: &Digest) -> Path {
        self.root.clone().join(d.algorithm().as_str()).join(d.hex())
    }

    /// The bytes of `d` from `offset` on, and the object's whole size; `None` if it is not
    /// there. Not verified here: a caller hashes what it keeps.
    pub async fn read_from(
        &self,
        d: &Digest,
        offset: u64,
    ) -> Result<Option<(u64, BoxStream<'static, io::Result<Bytes>>)>, StoreError> {
        let key = self.key(d);
        let opts = GetOptions {
            range: (offset > 0).then_some(GetRange::Offset(offset)),
            ..GetOptions::default()
        };
        match self.store.get_opts(&key, opts).await {
            Ok(got) => {
                let size = got.meta.size;
                let body = got.into_stream().map_err(io::Error::other).boxed();
                Ok(Some((size, body)))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(remote("read", &key, e)),
        }
    }
}

pub(crate) fn remote(op: &'static str, key: &Path, e: object_store::Error) -> StoreError {
    StoreError::Remote {
        op,
        key: key.to_string(),
        source: Box::new(e),
    }
}

/// An object opened by [`ObjectBlobStore::open`]: its size, read in ranges on demand.
#[derive(Debug, Clone)]
pub struct ObjectBlob {
    store: Arc<dyn ObjectStore>,
    key: Path,
    size: u64,
}

impl Blob for ObjectBlob {
    fn size(&self) -> u64 {
        self.size
    }

    fn range(self, start: u64, end: u64) -> BoxStream<'static, io::Result<Bytes>> {
        let size = self.size;
        let stop = end.min(size);
        let past_end = (end > size).then(|| {
            Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("range ends at {end} but the content has {size} bytes"),
            ))
        });
        let body = if start >= stop {
            stream::empty().boxed()
        } else {
            let (store, key) = (self.store, self.key);
            stream::once(async move {
                let opts = GetOptions {
                    range: Some(GetRange::Bounded(start..stop)),
                    ..GetOptions::default()
                };
                store
                    .get_opts(&key, opts)
                    .await
                    .map(|got| got.into_stream().map_err(io::Error::other))
                    .map_err(io::Error::other)
            })
            .try_flatten()
            .flat_map(|chunk| stream::iter(rechunk(chunk)))
            .boxed()
        };
        body.chain(stream::iter(past_end)).boxed()
    }
}

/// A chunk no larger than [`CHUNK`], as the trait promises, without copying.
fn rechunk(chunk: io::Result<Bytes>) -> Vec<io::Result<Bytes>> {
    match chunk {
        Ok(b) if b.len() as u64 > CHUNK => (0..b.len())
            .step_by(CHUNK as usize)
            .map(|at| Ok(b.slice(at..(at + CHUNK as usize).min(b.len()))))
            .collect(),
        other => vec![other],
    }
}

impl BlobStore for ObjectBlobStore {
    type Blob = ObjectBlob;

    /// Ranges are read on demand: a blob deleted meanwhile ends its reader with an error.
    const READS_SURVIVE_DELETE: bool = false;

    async fn open(&self, d: &Digest) -> Result<Option<ObjectBlob>, StoreError> {
        let key = self.key(d);
        Ok(self.stat_key(&key).await?.map(|size| ObjectBlob {
            store: self.store.clone(),
            key,
            size,
        }))
    }

    async fn write<S>(&self, d: &Digest, body: S) -> Result<u64, StoreError>
    where
        S: Stream<Item = io::Result<Bytes>> + Send + Unpin,
    {
        let mut sink = Upload {
            store: &self.store,
            key: self.key(d),
            held: Vec::new(),
            upload: None,
        };
        let verdict = take_verified(d, body, &mut sink).await;
        let Upload {
            key, held, upload, ..
        } = sink;
        match (verdict, upload) {
            (Err(e), Some(up)) => {
                // Nothing was published: an aborted upload leaves no object.
                let _ = up.abort().await;
                Err(e)
            }
            (Err(e), None) => Err(e),
            (Ok(size), Some(up)) => {
                up.finish().await.map_err(|e| remote("upload", &key, e))?;
                Ok(size)
            }
            (Ok(size), None) => {
                self.store
                    .put(&key, PutPayload::from_iter(held))
                    .await
                    .map_err(|e| remote("put", &key, e))?;
                Ok(size)
            }
        }
    }

    async fn stat(&self, d: &Digest) -> Result<Option<u64>, StoreError> {
        self.stat_key(&self.key(d)).await
    }

    async fn delete(&self, d: &Digest) -> Result<bool, StoreError> {
        let key = self.key(d);
        // S3 deletes answer the same whether the object was there: ask first.
        let was = self.stat_key(&key).await?.is_some();
        match self.store.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(was),
            Err(e) => Err(remote("delete", &key, e)),
        }
    }

    async fn list(&self) -> Result<Vec<StoredBlob>, StoreError> {
        let metas: Vec<_> = self
            .store
            .list(Some(&self.root))
            .try_collect()
            .await
            .map_err(|e| remote("list", &self.root, e))?;
        Ok(metas
            .into_iter()
            .filter_map(|m| {
                let mut parts = m.location.parts().skip(self.root.parts().count());
                let (alg, hex) = (parts.next()?, parts.next()?);
                let digest = format!("{}:{}", alg.as_ref(), hex.as_ref()).parse().ok()?;
                Some(StoredBlob {
                    digest,
                    size: m.size,
                })
            })
            .collect())
    }
}

/// Where a write's verified-as-they-come chunks go: held until [`PART`] bytes, then a multipart
/// upload that only [`BlobStore::write`] completes, once the digest matched.
struct Upload<'a> {
    store: &'a Arc<dyn ObjectStore>,
    key: Path,
    held: Vec<Bytes>,
    upload: Option<WriteMultipart>,
}

impl AsyncSink for Upload<'_> {
    async fn take(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        if let Some(up) = &mut self.upload {
            up.wait_for_capacity(PARTS_IN_FLIGHT)
                .await
                .map_err(|e| remote("upload", &self.key, e))?;
            up.put(chunk);
            return Ok(());
        }
        self.held.push(chunk);
        if self.held.iter().map(Bytes::len).sum::<usize>() >= PART {
            let mp = self
                .store
                .put_multipart(&self.key)
                .await
                .map_err(|e| remote("upload", &self.key, e))?;
            let mut up = WriteMultipart::new_with_chunk_size(mp, PART);
            for b in self.held.drain(..) {
                up.put(b);
            }
            self.upload = Some(up);
        }
        Ok(())
    }
}

impl ObjectBlobStore {
    async fn stat_key(&self, key: &Path) -> Result<Option<u64>, StoreError> {
        match self.store.head(key).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(remote("stat", key, e)),
        }
    }
}
