//! Gathers HTTP/2's frame writes into larger ones before TLS sees them.
//!
//! hyper's HTTP/2 codec writes each DATA frame on its own: a 9-byte head and up to 16 KiB of
//! payload, 16,393 bytes. rustls makes records of each write as it comes, at most 16 KiB of
//! plaintext each, so every frame became a full record and a 9-byte one, and a `writev` of its
//! own: twice the records the client must open, and four times the system calls of HTTP/1.1.
//! Frames gathered into [`SIZE`] bytes go out as four full records in one system call.
//!
//! The codec flushes after every frame, though, not only when it has nothing more to send. So
//! a flush that follows writes of at least a full record's worth ([`PUT_OFF_FROM`], a frame
//! of a streamed body) is put off: the task is woken, and the flush it makes on its next
//! turn, with nothing written in between, sends what is gathered. A burst of frames thus goes
//! out in whole buffers, and its tail one turn of the task later; nothing waits for more than
//! that. Less than a record (headers, a manifest, a window update) is sent at the first
//! flush, as before. Shutting down sends everything first.
//!
//! The buffer exists only while there is something in it: an idle connection holds none.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How much is gathered before it is written through: four full TLS records.
const SIZE: usize = 64 * 1024;

/// A flush is put off only when at least this much was written since the last one: a full
/// TLS record, a DATA frame of a stream.
const PUT_OFF_FROM: usize = 16 * 1024;

pub(crate) struct Coalesce<IO> {
    io: IO,
    buf: Vec<u8>,
    /// How much of `buf` has been written through.
    sent: usize,
    /// How much was gathered since the last flush.
    wrote: usize,
}

impl<IO> Coalesce<IO> {
    pub(crate) fn new(io: IO) -> Self {
        Coalesce {
            io,
            buf: Vec::new(),
            sent: 0,
            wrote: 0,
        }
    }
}

impl<IO: AsyncWrite + Unpin> Coalesce<IO> {
    /// Writes through what is gathered; the buffer is freed once it is all out.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.buf.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.buf[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.buf = Vec::new();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Coalesce<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Coalesce<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.buf.len() == SIZE {
            ready!(self.poll_drain(cx))?;
        }
        let len: usize = bufs.iter().map(|b| b.len()).sum();
        if self.buf.is_empty() && len >= SIZE {
            // Large enough to go as it is, without a copy.
            return Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        }
        if self.buf.capacity() == 0 {
            self.buf.reserve_exact(SIZE);
        }
        // Up to SIZE, so that what goes out is whole records; the rest is taken next time.
        let mut taken = 0;
        for b in bufs {
            let n = b.len().min(SIZE - self.buf.len());
            self.buf.extend_from_slice(&b[..n]);
            taken += n;
        }
        self.wrote += taken;
        Poll::Ready(Ok(taken))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if std::mem::take(&mut self.wrote) >= PUT_OFF_FROM && self.sent < self.buf.len() {
            // More may follow in this turn of the task; the next turn's flush sends it all.
            cx.waker().wake_by_ref();
            return Poll::Ready(Ok(()));
        }
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures_util::task::ArcWake;
    use tokio::io::AsyncWriteExt;

    use super::*;

    /// Records each write it is given. A slow one takes at most 10,000 bytes a call and says
    /// Pending (waking at once) every other call.
    #[derive(Default)]
    struct Writes {
        sizes: Vec<usize>,
        got: Vec<u8>,
        slow: bool,
        calls: usize,
    }

    impl AsyncWrite for Writes {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.calls += 1;
            if self.slow && self.calls.is_multiple_of(2) {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let n = if self.slow {
                buf.len().min(10_000)
            } else {
                buf.len()
            };
            self.sizes.push(n);
            self.got.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }

        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn frames_go_out_gathered_in_order_and_all_of_them_on_flush() {
        let mut w = Coalesce::new(Writes::default());
        let mut want = Vec::new();
        for i in 0..10u8 {
            let head = [i; 9];
            let payload = vec![i; 16 * 1024];
            // As the codec writes a frame: vectored, again from where a short write stopped.
            let mut at = 0;
            while at < head.len() + payload.len() {
                at += if at < head.len() {
                    w.write_vectored(&[IoSlice::new(&head[at..]), IoSlice::new(&payload)])
                        .await
                } else {
                    w.write(&payload[at - head.len()..]).await
                }
                .expect("write");
            }
            // And flushes after each.
            w.flush().await.expect("flush");
            want.extend_from_slice(&head);
            want.extend_from_slice(&payload);
        }
        // Whole buffers went out as they filled; the rest waits for a flush that follows no
        // writes (the next turn's).
        assert_eq!(w.io.sizes, vec![SIZE; 2]);
        w.flush().await.expect("flush");
        assert_eq!(w.io.sizes, vec![SIZE, SIZE, 10 * 16_393 - 2 * SIZE]);
        assert!(w.io.got == want, "the bytes, in order");
        assert_eq!(w.buf.capacity(), 0, "no buffer held between bursts");

        // A write of SIZE or more goes through as it is.
        let big = vec![7; SIZE];
        w.write_all(&big).await.expect("write");
        assert_eq!(w.io.sizes.last(), Some(&SIZE));
    }

    #[test]
    fn a_put_off_flush_wakes_the_task_and_the_next_one_sends() {
        struct Count(AtomicUsize);
        impl ArcWake for Count {
            fn wake_by_ref(arc_self: &Arc<Self>) {
                arc_self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = futures_util::task::waker(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut w = Coalesce::new(Writes::default());

        // Less than a record (headers, a small answer) goes out at the first flush.
        let wrote = Pin::new(&mut w).poll_write(&mut cx, b"HEADERS");
        assert!(matches!(wrote, Poll::Ready(Ok(7))));
        assert!(Pin::new(&mut w).poll_flush(&mut cx).is_ready());
        assert_eq!(w.io.got, b"HEADERS");
        assert_eq!(count.0.load(Ordering::Relaxed), 0);

        // A frame of a stream is held for what follows it in this turn.
        let frame = vec![1; 9 + 16 * 1024];
        let wrote = Pin::new(&mut w).poll_write(&mut cx, &frame);
        assert!(matches!(wrote, Poll::Ready(Ok(n)) if n == frame.len()));
        assert!(Pin::new(&mut w).poll_flush(&mut cx).is_ready());
        assert_eq!(w.io.got.len(), 7, "put off");
        assert_eq!(count.0.load(Ordering::Relaxed), 1, "the task is woken");

        assert!(Pin::new(&mut w).poll_flush(&mut cx).is_ready());
        assert_eq!(w.io.got.len(), 7 + frame.len());
    }

    #[tokio::test]
    async fn short_and_pending_writes_below_lose_nothing_and_shutdown_sends_the_rest() {
        let mut w = Coalesce::new(Writes {
            slow: true,
            ..Writes::default()
        });
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        // Frame-sized pieces, then one larger than the buffer while it holds something.
        for piece in data[..100_000].chunks(16_393) {
            w.write_all(piece).await.expect("write");
        }
        w.write_all(&data[100_000..]).await.expect("write");
        w.shutdown().await.expect("shutdown");
        assert!(w.io.got == data, "every byte, in order");
    }
}
