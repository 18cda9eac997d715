//! The suite every [`BlobStore`] passes, whatever keeps its bytes: one generic function per
//! case, instantiated once per backend by [`blob_store_conformance!`] (as the Distribution
//! registry runs its storage-driver suite over every driver). A new backend adds one line to
//! `tests/store.rs` (or, kept in another crate, includes this suite as `wharf-tier` does for
//! the object store: `crates/tier/tests/garage.rs`).

use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::{self, StreamExt};
use futures_util::{TryStreamExt, future};
use tempfile::TempDir;
use tokio::sync::{Barrier, mpsc};
use wharf_cache::{Blob, BlobStore, FsBlobStore, MemoryBlobStore, StoreError, StoredBlob};
use wharf_oci::{Algorithm, Digest, Verifier};

use crate::common::{content, files_under};

/// One backend under test, fresh and empty, and what to check once a case is done.
pub(crate) struct Backend<B> {
    pub store: Arc<B>,
    /// The filesystem backend's root: its spool must be empty after every case.
    dir: Option<TempDir>,
}

impl<B> Backend<B> {
    pub(crate) fn assert_clean(&self) {
        if let Some(dir) = &self.dir {
            let left = files_under(&dir.path().join("spool"));
            assert!(left.is_empty(), "spool files left behind: {left:?}");
        }
    }
}

pub(crate) async fn fs() -> Backend<FsBlobStore> {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FsBlobStore::open(dir.path()).await.expect("open");
    Backend {
        store: Arc::new(store),
        dir: Some(dir),
    }
}

/// A backend kept elsewhere (an object store): nothing on local disk to check after a case.
pub(crate) fn remote<B>(store: B) -> Backend<B> {
    Backend {
        store: Arc::new(store),
        dir: None,
    }
}

pub(crate) async fn memory() -> Backend<MemoryBlobStore> {
    Backend {
        store: Arc::new(MemoryBlobStore::new()),
        dir: None,
    }
}

/// Instantiates every case for one backend: `blob_store_conformance!(fs, blobs::fs());`
#[macro_export]
macro_rules! blob_store_conformance {
    ($backend:ident, $make:expr) => {
        mod $backend {
            $crate::blob_store_conformance!(@cases $make;
                misses_are_empty,
                write_then_read_back_byte_exact,
                ranges_read_back_and_past_the_end_fails,
                wrong_digest_is_refused_and_leaves_nothing,
                broken_body_is_refused_and_leaves_nothing,
                nothing_is_visible_before_it_is_verified,
                rewriting_is_harmless,
                stat_list_delete,
                concurrent_writes_of_one_digest,
                a_reader_of_a_deleted_blob,
            );
        }
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            let backend = $make.await;
            $crate::common::bounded($crate::common::conformance::blobs::$case(&backend.store))
                .await;
            backend.assert_clean();
        }
    )*};
}

/// `bytes` as a body of `chunk`-sized pieces, as a network or a spool hands them over.
fn body(bytes: &[u8], chunk: usize) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> {
    let pieces: Vec<_> = bytes
        .chunks(chunk.max(1))
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    stream::iter(pieces)
}

async fn read_range<B: Blob>(blob: B, start: u64, end: u64) -> std::io::Result<Vec<u8>> {
    let chunks: Vec<Bytes> = blob.range(start, end).try_collect().await?;
    Ok(chunks.concat())
}

async fn read_back<S: BlobStore>(store: &S, d: &Digest) -> Vec<u8> {
    let blob = store.open(d).await.expect("open").expect("stored");
    let size = blob.size();
    read_range(blob, 0, size).await.expect("read")
}

async fn assert_absent<S: BlobStore>(store: &S, d: &Digest) {
    assert_eq!(store.stat(d).await.expect("stat"), None, "{d} is stored");
    assert!(store.open(d).await.expect("open").is_none(), "{d} opens");
    assert!(store.read_to_bytes(d).await.expect("read").is_none());
}

async fn listed<S: BlobStore>(store: &S) -> Vec<StoredBlob> {
    let mut all = store.list().await.expect("list");
    all.sort();
    all
}

pub(crate) async fn misses_are_empty<S: BlobStore>(store: &Arc<S>) {
    let d = Digest::sha256_of(b"never stored");
    assert_absent(&**store, &d).await;
    assert!(!store.delete(&d).await.expect("delete"));
    assert!(listed(&**store).await.is_empty());
}

pub(crate) async fn write_then_read_back_byte_exact<S: BlobStore>(store: &Arc<S>) {
    // Empty, one byte, and several read chunks written in odd pieces.
    let chunk = wharf_cache::CHUNK as usize;
    for (len, piece) in [(0, 1), (1, 1), (3 * chunk + 5, 7_001)] {
        let bytes = content(len);
        let d = Digest::sha256_of(&bytes);
        let size = store.write(&d, body(&bytes, piece)).await.expect("write");
        assert_eq!(size, len as u64);
        assert_eq!(store.stat(&d).await.expect("stat"), Some(len as u64));
        let blob = store.open(&d).await.expect("open").expect("stored");
        assert_eq!(blob.size(), len as u64);
        assert!(read_back(&**store, &d).await == bytes, "{len} bytes differ");
        let whole = store
            .read_to_bytes(&d)
            .await
            .expect("read")
            .expect("stored");
        assert!(whole[..] == bytes[..]);
    }
    // Another algorithm.
    let bytes = content(1000);
    let mut v = Verifier::new(Algorithm::Sha512);
    v.update(&bytes);
    let d = v.finish();
    store
        .write_bytes(&d, Bytes::from(bytes.clone()))
        .await
        .expect("write sha512");
    assert_eq!(read_back(&**store, &d).await, bytes);
}

pub(crate) async fn ranges_read_back_and_past_the_end_fails<S: BlobStore>(store: &Arc<S>) {
    let chunk = wharf_cache::CHUNK;
    let bytes = content(2 * chunk as usize + 10);
    let d = Digest::sha256_of(&bytes);
    store.write(&d, body(&bytes, 65_536)).await.expect("write");
    let len = bytes.len() as u64;
    for (start, end) in [
        (0, 1),
        (5, chunk + 3),
        (chunk, len),
        (len, len),
        (len - 1, len),
    ] {
        let blob = store.open(&d).await.expect("open").expect("stored");
        let mut chunks = blob.range(start, end);
        let mut got = Vec::new();
        while let Some(c) = chunks.next().await {
            let c = c.expect("chunk");
            assert!(c.len() as u64 <= chunk, "a chunk of {} bytes", c.len());
            got.extend_from_slice(&c);
        }
        assert!(
            got[..] == bytes[start as usize..end as usize],
            "[{start}, {end})"
        );
    }
    let blob = store.open(&d).await.expect("open").expect("stored");
    let err = read_range(blob, len - 4, len + 1)
        .await
        .expect_err("past the end");
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
}

pub(crate) async fn wrong_digest_is_refused_and_leaves_nothing<S: BlobStore>(store: &Arc<S>) {
    let claimed = Digest::sha256_of(b"what the client asked for");
    let sent = b"what the upstream sent";
    let err = store
        .write(&claimed, body(sent, 5))
        .await
        .expect_err("a mismatch is refused");
    match &err {
        StoreError::DigestMismatch { expected, actual } => {
            assert_eq!(expected, &claimed);
            assert_eq!(actual, &Digest::sha256_of(sent));
        }
        other => panic!("expected DigestMismatch, got {other}"),
    }
    assert!(err.is_digest_mismatch());
    assert_absent(&**store, &claimed).await;
    assert_absent(&**store, &Digest::sha256_of(sent)).await;
    assert!(listed(&**store).await.is_empty());
}

pub(crate) async fn broken_body_is_refused_and_leaves_nothing<S: BlobStore>(store: &Arc<S>) {
    let bytes = content(10_000);
    let d = Digest::sha256_of(&bytes);
    let broken = stream::iter([
        Ok(Bytes::copy_from_slice(&bytes[..4000])),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "reset",
        )),
    ]);
    let err = store.write(&d, broken).await.expect_err("a broken body");
    assert!(matches!(err, StoreError::Body { .. }), "{err}");
    assert_absent(&**store, &d).await;
    assert!(listed(&**store).await.is_empty());
}

pub(crate) async fn nothing_is_visible_before_it_is_verified<S: BlobStore>(store: &Arc<S>) {
    let bytes = content(100_000);
    let d = Digest::sha256_of(&bytes);
    let (tx, rx) = mpsc::unbounded_channel::<std::io::Result<Bytes>>();
    let rx = stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    let writing = tokio::spawn({
        let store = store.clone();
        let d = d.clone();
        async move { store.write(&d, Box::pin(rx)).await }
    });
    tx.send(Ok(Bytes::copy_from_slice(&bytes[..99_999])))
        .expect("send");
    // All but the last byte taken in (the write may still be on its way to them): not there.
    for _ in 0..20 {
        tokio::task::yield_now().await;
        assert_absent(&**store, &d).await;
        assert!(listed(&**store).await.is_empty());
    }
    tx.send(Ok(Bytes::copy_from_slice(&bytes[99_999..])))
        .expect("send");
    drop(tx);
    let size = writing.await.expect("task").expect("write");
    assert_eq!(size, bytes.len() as u64);
    assert!(read_back(&**store, &d).await == bytes);
}

pub(crate) async fn rewriting_is_harmless<S: BlobStore>(store: &Arc<S>) {
    let bytes = content(5000);
    let d = Digest::sha256_of(&bytes);
    let blob = {
        store.write(&d, body(&bytes, 999)).await.expect("write");
        store.open(&d).await.expect("open").expect("stored")
    };
    store.write(&d, body(&bytes, 1)).await.expect("rewrite");
    assert_eq!(listed(&**store).await.len(), 1);
    // A reader from before the rewrite reads the same bytes.
    let size = blob.size();
    assert!(read_range(blob, 0, size).await.expect("read") == bytes);
    assert!(read_back(&**store, &d).await == bytes);
}

pub(crate) async fn stat_list_delete<S: BlobStore>(store: &Arc<S>) {
    let blobs: Vec<Vec<u8>> = (0..3u8)
        .map(|n| {
            let mut b = content(100 * (n as usize + 1));
            b[0] = n;
            b
        })
        .collect();
    let mut want = Vec::new();
    for b in &blobs {
        let d = Digest::sha256_of(b);
        store
            .write_bytes(&d, Bytes::from(b.clone()))
            .await
            .expect("write");
        want.push(StoredBlob {
            digest: d,
            size: b.len() as u64,
        });
    }
    want.sort();
    assert_eq!(listed(&**store).await, want);
    for w in &want {
        assert_eq!(store.stat(&w.digest).await.expect("stat"), Some(w.size));
    }
    let gone = want.remove(1);
    assert!(store.delete(&gone.digest).await.expect("delete"));
    assert!(!store.delete(&gone.digest).await.expect("delete again"));
    assert_absent(&**store, &gone.digest).await;
    assert_eq!(listed(&**store).await, want);
    for w in &want {
        assert_eq!(store.stat(&w.digest).await.expect("stat"), Some(w.size));
    }
}

pub(crate) async fn concurrent_writes_of_one_digest<S: BlobStore>(store: &Arc<S>) {
    const WRITERS: usize = 8;
    let bytes = Bytes::from(content(300_000));
    let d = Digest::sha256_of(&bytes);
    let start = Arc::new(Barrier::new(WRITERS));
    let writers: Vec<_> = (0..WRITERS)
        .map(|i| {
            let (store, start, d, bytes) = (store.clone(), start.clone(), d.clone(), bytes.clone());
            tokio::spawn(async move {
                start.wait().await;
                // Different piece sizes, so the writes interleave differently.
                let pieces: Vec<_> = bytes
                    .chunks(1000 * (i + 1))
                    .map(|c| Ok(Bytes::copy_from_slice(c)))
                    .collect();
                store.write(&d, stream::iter(pieces)).await
            })
        })
        .collect();
    for w in future::join_all(writers).await {
        assert_eq!(w.expect("task").expect("write"), bytes.len() as u64);
    }
    assert!(read_back(&**store, &d).await == bytes);
    assert_eq!(
        listed(&**store).await,
        vec![StoredBlob {
            digest: d,
            size: bytes.len() as u64
        }]
    );
}

pub(crate) async fn a_reader_of_a_deleted_blob<S: BlobStore>(store: &Arc<S>) {
    let bytes = content(3 * wharf_cache::CHUNK as usize);
    let d = Digest::sha256_of(&bytes);
    store.write(&d, body(&bytes, 65_536)).await.expect("write");
    let blob = store.open(&d).await.expect("open").expect("stored");
    assert!(store.delete(&d).await.expect("delete"));
    assert_absent(&**store, &d).await;
    let size = blob.size();
    match read_range(blob, 0, size).await {
        Ok(read) => assert!(read == bytes, "a reader of a deleted blob read other bytes"),
        Err(e) => assert!(
            !S::READS_SURVIVE_DELETE,
            "the backend promises readers outlive a delete: {e}"
        ),
    }
}
