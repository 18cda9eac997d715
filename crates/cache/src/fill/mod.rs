//! Single-flight fills: one task per digest, detached from every client, that every reader tails.
//!
//! [`Store::fill`] either joins the fill in flight for a digest or starts one. The task
//! (`task.rs`) streams the upstream body into a spool file while hashing it (`spool.rs`), and
//! publishes its progress on a `watch` channel; readers (`reader.rs`) open the file themselves and
//! read up to the published byte count, so a late reader catches up at disk speed and then tails.
//! The channel is the only shared state: no lock is held while bytes move. Reads that the page
//! cache can answer happen on the reader's own thread (`chunks.rs`), which is what lets a herd of
//! readers keep up with one fill.
//!
//! Like pingora's cache lock, followers learn when the leader fails: the failure is published to
//! every reader, and the fill leaves the in-flight map before it is published, so the next
//! request after a failure starts a fresh fill.

mod chunks;
mod reader;
mod spool;
mod task;

use std::path::PathBuf;
use std::sync::{Arc, PoisonError};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use tokio::sync::watch;
use tracing::Instrument as _;
use wharf_oci::Digest;

use crate::error::FillError;
use crate::store::Store;

pub(crate) use chunks::POOLED_FROM;
pub use chunks::file_chunks;
pub use reader::CHUNK;

/// An error of the caller's upstream, kept whole so the caller can downcast it again.
pub type SourceError = Arc<dyn std::error::Error + Send + Sync>;

/// An upstream answer: the body, and how many bytes it will yield if the upstream said so.
pub struct FillSource {
    /// The number of bytes `body` yields (a `Content-Length`; for a resumed source, the bytes
    /// from the offset on). `None` when the upstream does not say (chunked).
    pub len: Option<u64>,
    pub body: BoxStream<'static, Result<Bytes, SourceError>>,
}

/// Opens the upstream body starting at byte `offset`: 0 for a fresh fill, more to resume after
/// the body broke. An opener that cannot resume must fail for `offset > 0` rather than start over
/// from byte 0.
pub type Opener =
    Arc<dyn Fn(u64) -> BoxFuture<'static, Result<FillSource, SourceError>> + Send + Sync>;

/// How far a fill is; the value of its watch channel.
#[derive(Clone, Debug)]
pub(crate) enum Progress {
    /// Waiting for the upstream to answer; the spool file may not exist yet.
    Opening,
    /// The spool file exists and holds `written` bytes; `len` is the announced total.
    Writing { len: Option<u64>, written: u64 },
    /// All `len` bytes are in the spool file and match the digest; the file is being fsynced
    /// and renamed. Readers need not wait for the disk: what they send now is verified, and
    /// their handle on the spool stays good across the rename (and a failure to store).
    Verified { len: u64 },
    /// Verified and renamed into place.
    Done { len: u64 },
    /// Nothing stored; the spool file is gone.
    Failed(FillError),
}

/// One fill in flight (or just ended). Hold it through an `Arc`; readers keep it alive.
#[derive(Debug)]
pub struct Fill {
    digest: Digest,
    /// Distinguishes this fill from a later one for the same digest.
    seq: u64,
    spool: PathBuf,
    blob: PathBuf,
    progress: watch::Receiver<Progress>,
}

impl Store {
    /// Returns the fill in flight for `digest` if there is one (a new reader joins it), else
    /// starts one that calls `open`. Never runs two fills for one digest at once. If the content
    /// is already stored, the new fill ends at once without calling `open`.
    ///
    /// Must be called within a tokio runtime: the fill is a spawned task, so it completes even
    /// if every client hangs up. The task runs in the caller's current span (the proxy opens a
    /// `fill` span with the digest and upstream), so its log lines say which fill they are.
    pub fn fill(self: &Arc<Self>, digest: &Digest, open: Opener) -> Arc<Fill> {
        let mut fills = self.fills.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(fill) = fills.get(digest) {
            return fill.clone();
        }
        let seq = self.next_seq();
        let (tx, rx) = watch::channel(Progress::Opening);
        let fill = Arc::new(Fill {
            digest: digest.clone(),
            seq,
            spool: self.layout().spool_file("fill", digest, seq),
            blob: self.layout().blob(digest),
            progress: rx,
        });
        fills.insert(digest.clone(), fill.clone());
        drop(fills);
        tokio::spawn(
            task::run(self.clone(), fill.clone(), tx, open).instrument(tracing::Span::current()),
        );
        fill
    }

    /// The fill in flight for `digest`, if there is one; never starts a fill. Lets a caller that
    /// bounds how many fills run join one without waiting for a place.
    pub fn fill_in_flight(&self, digest: &Digest) -> Option<Arc<Fill>> {
        let fills = self.fills.lock().unwrap_or_else(PoisonError::into_inner);
        fills.get(digest).cloned()
    }
}

impl Fill {
    /// Whether every byte has arrived and matched the digest (stored, or being stored): a
    /// reader joining now is served from local disk, not from the upstream.
    pub fn is_downloaded(&self) -> bool {
        matches!(
            *self.progress.borrow(),
            Progress::Verified { .. } | Progress::Done { .. }
        )
    }

    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// Waits until the upstream answered: the total size, or the error that failed the fill.
    /// When the upstream did not announce a length, the size is only known, and this only
    /// returns, once the whole content has arrived and matched its digest.
    pub async fn ready(&self) -> Result<u64, FillError> {
        self.wait(|p| match p {
            Progress::Opening | Progress::Writing { len: None, .. } => None,
            Progress::Writing { len: Some(len), .. }
            | Progress::Verified { len }
            | Progress::Done { len } => Some(Ok(*len)),
            Progress::Failed(e) => Some(Err(e.clone())),
        })
        .await
    }

    /// Waits for the end of the fill: `Ok` once the content is verified and stored.
    pub async fn done(&self) -> Result<(), FillError> {
        self.wait(|p| match p {
            Progress::Opening | Progress::Writing { .. } | Progress::Verified { .. } => None,
            Progress::Done { .. } => Some(Ok(())),
            Progress::Failed(e) => Some(Err(e.clone())),
        })
        .await
    }

    /// The bytes `[start, end)` of the content, tailing the spool file while the fill writes it
    /// and reading the stored file once it is done. Memory is one chunk at a time, whatever the
    /// size.
    ///
    /// The chunk that ends the range is held back until the whole content is verified (not
    /// until it is stored: the fsync is no reason to keep clients waiting), so a stream that
    /// ends without an error carried verified bytes. If the fill fails, or `end` lies
    /// past the content, the stream ends with an `Err` whose inner error is the [`FillError`]
    /// where there is one (`io::Error::get_ref` + downcast): an HTTP body is cut short of its
    /// `Content-Length`, and a client sees a broken download, never wrong bytes.
    pub fn reader(
        self: &Arc<Self>,
        start: u64,
        end: u64,
    ) -> BoxStream<'static, std::io::Result<Bytes>> {
        reader::stream(self.clone(), start, end)
    }

    /// As [`Fill::reader`], but the file ranges that hold those bytes, at most `max` bytes
    /// each, under the same rules (on disk; the last one verified): for `sendfile`.
    pub fn ranges(
        self: &Arc<Self>,
        start: u64,
        end: u64,
        max: u64,
    ) -> BoxStream<'static, std::io::Result<FileRange>> {
        reader::ranges(self.clone(), start, end, max)
    }

    /// Waits until `ready` has an answer for the fill's progress.
    async fn wait<T>(
        &self,
        mut ready: impl FnMut(&Progress) -> Option<Result<T, FillError>>,
    ) -> Result<T, FillError> {
        let mut rx = self.progress.clone();
        let mut answer = None;
        // The closure runs on every value the channel holds, the current one first; the sender
        // is only dropped after a final value, unless the task died.
        let waited = rx
            .wait_for(|p| {
                answer = ready(p);
                answer.is_some()
            })
            .await;
        drop(waited);
        answer.unwrap_or_else(|| Err(self.aborted()))
    }

    pub(crate) fn aborted(&self) -> FillError {
        FillError::Aborted {
            digest: self.digest.clone(),
        }
    }
}

/// Bytes `[offset, offset + len)` of an open file, ready to be sent.
#[derive(Clone, Debug)]
pub struct FileRange {
    pub file: Arc<std::fs::File>,
    pub offset: u64,
    pub len: u64,
}

/// Runs file I/O on the blocking pool; a panic there becomes an error here.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
}

#[cfg(test)]
mod tests;
