//! Shared test helpers: a fake upstream whose bodies the test feeds chunk by chunk (so timing is
//! decided by the test, never by sleeps), and small readers of stores and streams.

#![allow(dead_code)] // each test binary uses its own subset

pub(crate) mod conformance;

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{self, BoxStream};
use futures_util::{FutureExt, StreamExt};
use tokio::sync::mpsc;
use wharf_cache::{FillError, FillSource, Opener, SourceError, Store, StoreOptions};
use wharf_oci::Digest;

/// The caller's own upstream error, to check it can be downcast back out of a `FillError`.
#[derive(Debug, thiserror::Error)]
#[error("fake upstream: {0}")]
pub(crate) struct FakeError(pub &'static str);

pub(crate) fn fake_error(msg: &'static str) -> SourceError {
    Arc::new(FakeError(msg))
}

/// One body the fill opened; the test pushes its chunks.
pub(crate) struct Body {
    pub offset: u64,
    tx: mpsc::UnboundedSender<Result<Bytes, SourceError>>,
}

impl Body {
    pub(crate) fn send(&self, bytes: &[u8]) {
        self.tx
            .send(Ok(Bytes::copy_from_slice(bytes)))
            .expect("the fill dropped the body");
    }

    /// Breaks the body mid-way, as a reset connection would.
    pub(crate) fn break_off(&self, msg: &'static str) {
        self.tx
            .send(Err(fake_error(msg)))
            .expect("the fill dropped the body");
    }

    /// Ends the body cleanly.
    pub(crate) fn finish(self) {}
}

/// A fake upstream: counts opens and hands each opened body to the test.
pub(crate) struct Upstream {
    pub opener: Opener,
    pub opens: Arc<AtomicUsize>,
    bodies: mpsc::UnboundedReceiver<Body>,
}

impl Upstream {
    /// `len`: the announced total (`None`: chunked). `resumable`: whether `open(offset > 0)` is
    /// answered or refused.
    pub(crate) fn new(len: Option<u64>, resumable: bool) -> Upstream {
        let opens = Arc::new(AtomicUsize::new(0));
        let (bodies_tx, bodies) = mpsc::unbounded_channel();
        let counter = opens.clone();
        let opener: Opener = Arc::new(move |offset| {
            counter.fetch_add(1, Ordering::SeqCst);
            let answer = if offset > 0 && !resumable {
                Err(fake_error("range requests not supported"))
            } else {
                let (tx, rx) = mpsc::unbounded_channel();
                // The test may have stopped listening for bodies; then the fill sees an empty one.
                let _ = bodies_tx.send(Body { offset, tx });
                Ok(FillSource {
                    len: len.map(|l| l - offset),
                    body: receiver_stream(rx),
                })
            };
            async move { answer }.boxed()
        });
        Upstream {
            opener,
            opens,
            bodies,
        }
    }

    /// The next body a fill opened.
    pub(crate) async fn body(&mut self) -> Body {
        bounded(self.bodies.recv())
            .await
            .expect("the opener was dropped")
    }

    pub(crate) fn opens(&self) -> usize {
        self.opens.load(Ordering::SeqCst)
    }
}

fn receiver_stream<T: Send + 'static>(rx: mpsc::UnboundedReceiver<T>) -> BoxStream<'static, T> {
    stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
    .boxed()
}

/// An opener that always refuses, counting its calls.
pub(crate) fn refusing_opener(msg: &'static str, opens: Arc<AtomicUsize>) -> Opener {
    Arc::new(move |_| {
        opens.fetch_add(1, Ordering::SeqCst);
        async move { Err(fake_error(msg)) }.boxed()
    })
}

/// An opener whose upstream never answers.
pub(crate) fn hanging_opener() -> Opener {
    Arc::new(|_| futures_util::future::pending().boxed())
}

/// Test content: deterministic, not periodic at chunk boundaries.
pub(crate) fn content(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

pub(crate) fn digest_of(bytes: &[u8]) -> Digest {
    Digest::sha256_of(bytes)
}

/// Reads a whole reader stream, or its first error.
pub(crate) async fn collect(mut s: BoxStream<'static, io::Result<Bytes>>) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

/// The `FillError` inside a reader's error.
pub(crate) fn fill_error(e: &io::Error) -> &FillError {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<FillError>())
        .expect("a reader error carries the FillError")
}

/// Every file below `dir`, recursively.
pub(crate) fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Fails the test instead of hanging it. Real time: not for paused-time tests.
pub(crate) async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .expect("test step took more than 20 s")
}

/// An upstream that answers with all of `bytes` at once.
pub(crate) fn whole(bytes: Vec<u8>) -> Opener {
    let bytes = Bytes::from(bytes);
    Arc::new(move |_| {
        let b = bytes.clone();
        async move {
            Ok(FillSource {
                len: Some(b.len() as u64),
                body: stream::iter([Ok(b)]).boxed(),
            })
        }
        .boxed()
    })
}

/// Content `n` of `len` bytes, distinct for each `n`.
pub(crate) fn blob(n: u8, len: usize) -> Vec<u8> {
    let mut b = content(len);
    b[0] = n;
    b
}

/// Stores `bytes` through a fill and returns their digest.
pub(crate) async fn fill(store: &Arc<Store>, bytes: Vec<u8>) -> Digest {
    let d = Digest::sha256_of(&bytes);
    bounded(store.fill(&d, whole(bytes)).done())
        .await
        .expect("fill");
    d
}

/// A store under `root` with a budget of `max_size` bytes.
pub(crate) async fn open_with_budget(root: &Path, max_size: usize) -> Arc<Store> {
    let options = StoreOptions {
        max_size: max_size as u64,
        ..StoreOptions::default()
    };
    Store::open_with(root, options).await.expect("open")
}

/// Where the store keeps the content of `d`.
pub(crate) fn blob_path(root: &Path, d: &Digest) -> PathBuf {
    let hex = d.hex();
    root.join("blobs/sha256").join(&hex[..2]).join(hex)
}

/// What the store holds for `d` on disk.
pub(crate) fn stored_bytes(root: &Path, d: &Digest) -> Vec<u8> {
    std::fs::read(blob_path(root, d)).expect("stored")
}
