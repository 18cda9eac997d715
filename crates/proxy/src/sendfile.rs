//! Blobs over plain HTTP/1.1 with `sendfile(2)`, stored ones and those still being fetched
//! (their spool file, as `Fill::ranges` releases it): the bytes go from the page cache to the
//! socket inside the kernel, never through a buffer of ours.
//!
//! hyper writes response bodies itself, from the `Bytes` of each frame. A body served this way
//! is made of *placeholder* frames, slices of one static region whose bytes are never sent.
//! As it yields each frame, the body queues the file range the frame stands for on its
//! connection's [`Pending`]. The connection's IO, [`SendfileIo`], recognises a write whose
//! first slice lies in the region and sends that many bytes of the front range with
//! `sendfile` instead. It relies on hyper handing the frames' own memory to the IO, which its
//! vectored ("queue") write strategy does; the listener forces that strategy
//! (`http1().writev(true)`), and [`SendfileIo`] fails the connection rather than write a
//! placeholder it has no range for, or a range that does not match the frame.
//!
//! ```text
//! body:   frame = PLACEHOLDER[..n]  + pending.push(file, offset, n)
//! hyper:  writev([head, frame])     -> SendfileIo: writev(head); sendfile(file, offset, n)
//! ```
//!
//! Only plain-TCP HTTP/1.x connections get a [`Pending`] (the server inserts it into each
//! request's extensions); TLS and HTTP/2 take the copying path (`body::file_range`). A file
//! that is not in the page cache makes `sendfile` wait for the disk on the worker, as nginx's
//! `sendfile on` does; the kernel's readahead keeps that to the first pages of a cold file.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures_util::stream;
use futures_util::{Stream, TryStreamExt as _};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;
use wharf_cache::FileRange;

use crate::body::{self, Body};

/// The largest frame: what one `sendfile` call is asked for at most.
const FRAME: usize = 1 << 20;

/// The placeholder region. A zeroed static: it takes no memory until read, and is never read.
static PLACEHOLDER: [u8; FRAME] = [0; FRAME];

fn is_placeholder(buf: &[u8]) -> bool {
    let start = PLACEHOLDER.as_ptr() as usize;
    let p = buf.as_ptr() as usize;
    !buf.is_empty() && p >= start && p < start + FRAME
}

/// The file ranges of one connection's placeholder frames, in the order they were yielded.
#[derive(Clone, Debug, Default)]
pub(crate) struct Pending(Arc<Mutex<VecDeque<FileRange>>>);

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<FileRange>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The bytes `[start, end)` of `file` as a body of placeholder frames on this connection.
    pub(crate) fn file_range(&self, file: File, start: u64, end: u64) -> Body {
        let range = FileRange {
            file: Arc::new(file),
            offset: start,
            len: end.saturating_sub(start),
        };
        self.ranges(stream::once(async move { Ok(range) }))
    }

    /// File ranges as they become ready (a fill's, `Fill::ranges`) as a body of placeholder
    /// frames on this connection; an error ends the body short, as with copied bytes.
    pub(crate) fn ranges<S>(&self, ranges: S) -> Body
    where
        S: Stream<Item = io::Result<FileRange>> + Send + 'static,
    {
        let pending = self.clone();
        let frames = ranges
            .map_ok(|r| stream::iter(split(r).map(Ok::<_, io::Error>)))
            .try_flatten()
            .map_ok(move |r| {
                // At most FRAME (split), so the cast cannot truncate.
                let frame = Bytes::from_static(&PLACEHOLDER[..r.len as usize]);
                pending.lock().push_back(r);
                frame
            });
        body::stream(frames)
    }
}

/// `r` in pieces of at most FRAME bytes.
fn split(r: FileRange) -> impl Iterator<Item = FileRange> + Send {
    let end = r.offset + r.len;
    (r.offset..end).step_by(FRAME).map(move |offset| FileRange {
        file: r.file.clone(),
        offset,
        len: (end - offset).min(FRAME as u64),
    })
}

/// A plain TCP connection that sends placeholder frames with `sendfile`; every other byte is
/// written as it is.
pub(crate) struct SendfileIo {
    tcp: TcpStream,
    pending: Pending,
}

impl SendfileIo {
    pub(crate) fn new(tcp: TcpStream) -> (SendfileIo, Pending) {
        let pending = Pending::default();
        (
            SendfileIo {
                tcp,
                pending: pending.clone(),
            },
            pending,
        )
    }

    /// Sends up to `len` bytes (the placeholder slice at the front of a write) from the front
    /// range.
    fn poll_sendfile(&mut self, cx: &mut Context<'_>, len: usize) -> Poll<io::Result<usize>> {
        let (file, offset, want) = {
            let pending = self.pending.lock();
            let Some(front) = pending.front() else {
                return Poll::Ready(Err(io::Error::other(
                    "a placeholder frame reached the socket without its file range",
                )));
            };
            // The frame's remaining bytes are the range's remaining bytes, or something copied
            // or split a frame: stop rather than send other bytes than the file's.
            if front.len != len as u64 {
                return Poll::Ready(Err(io::Error::other(
                    "a placeholder frame does not match its file range",
                )));
            }
            (front.file.clone(), front.offset, len)
        };
        loop {
            ready!(self.tcp.poll_write_ready(cx))?;
            let mut at = offset;
            let sent = self.tcp.try_io(Interest::WRITABLE, || {
                rustix::fs::sendfile(&self.tcp, &*file, Some(&mut at), want)
                    .map_err(io::Error::from)
            });
            match sent {
                Ok(0) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "a stored blob ended before its size",
                    )));
                }
                Ok(n) => {
                    let mut pending = self.pending.lock();
                    if let Some(front) = pending.front_mut() {
                        front.offset += n as u64;
                        front.len -= n as u64;
                        if front.len == 0 {
                            pending.pop_front();
                        }
                    }
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncRead for SendfileIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for SendfileIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if is_placeholder(buf) {
            return self.poll_sendfile(cx, buf.len());
        }
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    /// The slices before the first placeholder go out as they are; a placeholder at the front
    /// goes out with `sendfile`.
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let bufs = {
            let skip = bufs.iter().take_while(|b| b.is_empty()).count();
            &bufs[skip..]
        };
        match bufs.iter().position(|b| is_placeholder(b)) {
            Some(0) => self.poll_sendfile(cx, bufs[0].len()),
            Some(n) => Pin::new(&mut self.tcp).poll_write_vectored(cx, &bufs[..n]),
            None => Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}
