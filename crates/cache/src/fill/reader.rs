//! A reader of a fill: reads a byte range through its own file handle, up to the count the fill
//! has published, and waits on the channel for more.
//!
//! The handle is opened on the spool file while the fill writes, and kept across the rename
//! (same inode), so a reader never looks for the spool after it moved. A reader that starts after
//! the fill is done opens the stored file instead. Should the spool vanish between the reader
//! seeing `Writing` (or `Verified`) and opening it, the fill has just renamed or removed it; the
//! reader waits for the outcome and goes on from there.
//!
//! The last chunk of the range waits for `Verified`, not for `Done`: once the digest matched,
//! the bytes in the spool are right whether or not the fsync and rename that follow succeed.

use std::fs::File;
use std::io;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::{self, BoxStream};
use tokio::sync::watch;

use super::chunks::read_at;
use super::{FileRange, Fill, Progress, blocking};

/// The most a reader holds in memory at once, and the most of a response held back until the
/// content is verified.
pub const CHUNK: u64 = 256 * 1024;

pub(super) fn stream(
    fill: Arc<Fill>,
    start: u64,
    end: u64,
) -> BoxStream<'static, io::Result<Bytes>> {
    let digest = fill.digest.clone();
    ranges(fill, start, end, CHUNK)
        .then(move |range| {
            let digest = digest.clone();
            async move {
                let r = range?;
                // At most CHUNK: the cast cannot truncate.
                read_at(&r.file, r.offset, r.len as usize)
                    .await
                    .map_err(|e| io::Error::new(e.kind(), format!("reading {digest}: {e}")))
            }
        })
        .boxed()
}

/// As [`stream`], but the ranges of the file to send (at most `max` bytes each) rather than
/// their bytes: for a sender that copies inside the kernel (`sendfile`). A range is yielded
/// under the same rules as a chunk: its bytes are on disk, and the one that completes the
/// range only once the content is verified.
pub(super) fn ranges(
    fill: Arc<Fill>,
    start: u64,
    end: u64,
    max: u64,
) -> BoxStream<'static, io::Result<FileRange>> {
    let tail = Tail {
        rx: fill.progress.clone(),
        fill,
        file: None,
        verified: None,
        pos: start,
        end,
    };
    stream::unfold(Some(tail), move |tail| async move {
        let mut tail = tail?;
        match tail.next_range(max.max(1)).await {
            Ok(Some(range)) => Some((Ok(range), Some(tail))),
            Ok(None) => None,
            // An error ends the stream: the next poll sees `None`.
            Err(e) => Some((Err(e), None)),
        }
    })
    .boxed()
}

struct Tail {
    fill: Arc<Fill>,
    rx: watch::Receiver<Progress>,
    file: Option<Arc<File>>,
    /// The content's length, once this reader has seen it verified.
    verified: Option<u64>,
    pos: u64,
    end: u64,
}

impl Tail {
    async fn next_range(&mut self, max: u64) -> io::Result<Option<FileRange>> {
        loop {
            if self.pos >= self.end {
                return Ok(None);
            }
            // Copy out of the channel: its guard must not live across an await.
            let (on_disk, verified, stored) = match &*self.rx.borrow_and_update() {
                Progress::Opening => (None, false, false),
                Progress::Writing { written, .. } => (Some(*written), false, false),
                Progress::Verified { len } => (Some(*len), true, false),
                Progress::Done { len } => (Some(*len), true, true),
                // Storing failed after the digest matched: the open file still holds the right
                // bytes, so a reader that saw them verified reads on.
                Progress::Failed(_) if self.file.is_some() && self.verified.is_some() => {
                    (self.verified, true, false)
                }
                Progress::Failed(e) => return Err(io::Error::other(e.clone())),
            };
            if verified {
                self.verified = on_disk;
            }
            let Some(on_disk) = on_disk else {
                self.changed().await?;
                continue;
            };
            if verified && self.end > on_disk {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "{}: range ends at {} but the content has {on_disk} bytes",
                        self.fill.digest, self.end
                    ),
                ));
            }
            if self.file.is_none() {
                self.file = self.open(stored).await?;
                if self.file.is_none() {
                    self.changed().await?;
                    continue;
                }
            }
            if self.pos >= on_disk {
                self.changed().await?;
                continue;
            }
            let want = max.min(on_disk - self.pos).min(self.end - self.pos);
            // The chunk that completes the range waits for verification, so a stream that ends
            // cleanly never carried unverified bytes to its last one.
            if !verified && self.pos + want == self.end {
                self.changed().await?;
                continue;
            }
            let Some(file) = &self.file else {
                return Err(io::Error::other("fill reader read before opening"));
            };
            let range = FileRange {
                file: file.clone(),
                offset: self.pos,
                len: want,
            };
            self.pos += want;
            return Ok(Some(range));
        }
    }

    /// Opens the spool file (or the stored file once the fill is done).
    /// `None`: the spool is gone, renamed or removed, and the outcome is about to be published.
    async fn open(&self, stored: bool) -> io::Result<Option<Arc<File>>> {
        let path = if stored {
            self.fill.blob.clone()
        } else {
            self.fill.spool.clone()
        };
        blocking(move || match File::open(&path) {
            Ok(f) => Ok(Some(Arc::new(f))),
            Err(e) if e.kind() == io::ErrorKind::NotFound && !stored => Ok(None),
            Err(e) => Err(with_path(e, "opening", &path)),
        })
        .await
    }

    /// Waits for the fill to publish something new. The fill task only drops its sender after
    /// publishing an outcome, so a closed channel means the task died.
    async fn changed(&mut self) -> io::Result<()> {
        self.rx
            .changed()
            .await
            .map_err(|_| io::Error::other(self.fill.aborted()))
    }
}

fn with_path(e: io::Error, op: &str, path: &std::path::Path) -> io::Error {
    io::Error::new(e.kind(), format!("{op} {}: {e}", path.display()))
}
