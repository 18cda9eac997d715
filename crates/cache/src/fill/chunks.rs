//! Reading a file in chunks from async tasks: on the task's own thread when the bytes are in
//! the page cache, on the blocking pool only when the disk has to be waited for.
//!
//! A hop to the blocking pool and back (a thread wake-up each way, and the chunk read on one
//! core and sent from another) costs more than copying a cached chunk, and a herd of readers
//! makes one hop per chunk each: profiling a 64-client herd showed those wake-ups as the largest
//! cost after the copies themselves. `preadv2(RWF_NOWAIT)` reads only what is already in
//! memory and never sleeps, so trying it first on the worker is safe; whatever it could not
//! read goes to the blocking pool. Bytes a fill has just written are always in memory.
//!
//! Chunks of a streamed blob are read into buffers that go back to a small pool when the
//! connection has sent them ([`Pooled`]). A fresh 256 KiB buffer is a fresh mapping: profiling a
//! TLS stream showed the kernel faulting in and zeroing its pages (a quarter of the server's
//! time) before the read could copy into them.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::stream::{self, BoxStream};

/// Exactly `want` bytes of `file` at `pos`; a file that ends first is an error.
pub(crate) async fn read_at(file: &Arc<File>, pos: u64, want: usize) -> io::Result<Bytes> {
    if want < POOLED_FROM {
        return read_into(file, pos, BytesMut::zeroed(want))
            .await
            .map(BytesMut::freeze);
    }
    read_into(file, pos, Pooled::take(want))
        .await
        .map(Bytes::from_owner)
}

/// Fills `buf` from `file` at `pos`: what the page cache holds here, the rest on the blocking
/// pool, which takes the buffer along.
async fn read_into<B>(file: &Arc<File>, pos: u64, mut buf: B) -> io::Result<B>
where
    B: AsMut<[u8]> + Send + 'static,
{
    let cached = read_cached(file, pos, buf.as_mut())?;
    if cached == buf.as_mut().len() {
        return Ok(buf);
    }
    let file = file.clone();
    tokio::task::spawn_blocking(move || {
        file.read_exact_at(&mut buf.as_mut()[cached..], pos + cached as u64)?;
        Ok(buf)
    })
    .await
    .unwrap_or_else(|e| Err(io::Error::other(e)))
}

/// Reads of at least this many bytes take a pooled buffer; smaller ones (most manifests, which
/// the memory cache may keep) get one of their own size. Whoever keeps a larger chunk copies it
/// (`Blobs::read_to_bytes`): a pooled buffer is 256 KiB whatever the chunk's length.
pub(crate) const POOLED_FROM: usize = 64 * 1024;

/// The size of a pooled buffer: the largest chunk read.
const POOLED_SIZE: usize = super::CHUNK as usize;

/// At most this many idle buffers are kept (8 MiB); more are freed.
const POOL_MAX: usize = 32;

static POOL: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// A read buffer that goes back to [`POOL`] when the last `Bytes` of it is dropped.
struct Pooled {
    buf: Vec<u8>,
    len: usize,
}

impl Pooled {
    /// A buffer for `len` bytes: an idle one, or a new one when none is idle or `len` is
    /// larger than a pooled buffer.
    fn take(len: usize) -> Pooled {
        let idle = (len <= POOLED_SIZE)
            .then(|| POOL.lock().unwrap_or_else(PoisonError::into_inner).pop())
            .flatten();
        let buf = idle.unwrap_or_else(|| vec![0; len.max(POOLED_SIZE)]);
        Pooled { buf, len }
    }
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl AsMut<[u8]> for Pooled {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.buf[..self.len]
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if self.buf.len() != POOLED_SIZE {
            return;
        }
        let mut pool = POOL.lock().unwrap_or_else(PoisonError::into_inner);
        if pool.len() < POOL_MAX {
            pool.push(std::mem::take(&mut self.buf));
        }
    }
}

/// Reads what of `buf` is in the page cache, without ever waiting for the disk; 0 when
/// nothing is, or when the kernel or filesystem cannot tell.
#[cfg(target_os = "linux")]
fn read_cached(file: &File, pos: u64, buf: &mut [u8]) -> io::Result<usize> {
    use rustix::io::{Errno, IoSliceMut, ReadWriteFlags, preadv2};

    let mut done = 0;
    while done < buf.len() {
        let mut slice = [IoSliceMut::new(&mut buf[done..])];
        match preadv2(file, &mut slice, pos + done as u64, ReadWriteFlags::NOWAIT) {
            // The end of the file: the blocking read reports it.
            Ok(0) => break,
            Ok(n) => done += n,
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN | Errno::OPNOTSUPP | Errno::NOSYS | Errno::INVAL) => break,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(done)
}

/// Without `RWF_NOWAIT` there is no telling what is cached: everything goes to the blocking pool.
#[cfg(not(target_os = "linux"))]
fn read_cached(_file: &File, _pos: u64, _buf: &mut [u8]) -> io::Result<usize> {
    Ok(0)
}

/// The bytes `[start, end)` of `file`, `chunk` bytes at a time: one chunk in memory at once.
pub fn file_chunks(
    file: File,
    start: u64,
    end: u64,
    chunk: usize,
) -> BoxStream<'static, io::Result<Bytes>> {
    let file = Arc::new(file);
    stream::unfold(Some(start), move |pos| {
        let file = file.clone();
        async move {
            let pos = pos?;
            if pos >= end {
                return None;
            }
            // At most `chunk`, so the cast cannot truncate.
            let want = (end - pos).min(chunk as u64) as usize;
            match read_at(&file, pos, want).await {
                Ok(bytes) => Some((Ok(bytes), Some(pos + want as u64))),
                Err(e) => Some((Err(e), None)),
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_ranges_and_reports_a_short_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).expect("write");
        let open = || File::open(&path).expect("open");

        let mut got = Vec::new();
        let mut chunks = file_chunks(open(), 1_000, 250_001, 64 * 1024);
        while let Some(c) = chunks.next().await {
            let c = c.expect("chunk");
            assert!(c.len() <= 64 * 1024);
            got.extend_from_slice(&c);
        }
        assert!(got == data[1_000..250_001]);

        let mut past = file_chunks(open(), 299_000, 300_100, 64 * 1024);
        let err = past.next().await.expect("an item").expect_err("short file");
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert!(past.next().await.is_none());
    }

    #[tokio::test]
    async fn a_reused_buffer_shows_only_its_own_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, vec![0xAA; POOLED_SIZE]).expect("write");
        std::fs::write(&b, vec![0xBB; POOLED_FROM + 1]).expect("write");
        for _ in 0..3 {
            let full = read_at(&Arc::new(File::open(&a).expect("open")), 0, POOLED_SIZE).await;
            assert!(full.expect("read").iter().all(|&x| x == 0xAA));
            // Dropped above: the next read may take the same buffer, and must not show its tail.
            let short = read_at(&Arc::new(File::open(&b).expect("open")), 0, POOLED_FROM + 1)
                .await
                .expect("read");
            assert_eq!(short.len(), POOLED_FROM + 1);
            assert!(short.iter().all(|&x| x == 0xBB));
        }
    }
}
