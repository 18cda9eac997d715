//! Reading a file in chunks from async tasks: on the task's own thread when the bytes are in
//! the page cache, on the blocking pool only when the disk has to be waited for.
//!
//! A hop to the blocking pool and back (a thread wake-up each way, and the chunk read on one
//! core and sent from another) costs more than copying a cached chunk, and a herd of readers
//! makes one hop per chunk each: profiling a 64-client herd showed those wake-ups as the largest
//! cost after the copies themselves. `preadv2(RWF_NOWAIT)` reads only what is already in
//! memory and never sleeps, so trying it first on the worker is safe; whatever it could not
//! read goes to the blocking pool. Bytes a fill has just written are always in memory.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::stream::{self, BoxStream};

/// Exactly `want` bytes of `file` at `pos`; a file that ends first is an error.
pub(crate) async fn read_at(file: &Arc<File>, pos: u64, want: usize) -> io::Result<Bytes> {
    let mut buf = BytesMut::zeroed(want);
    let cached = read_cached(file, pos, &mut buf)?;
    if cached == want {
        return Ok(buf.freeze());
    }
    let file = file.clone();
    tokio::task::spawn_blocking(move || {
        file.read_exact_at(&mut buf[cached..], pos + cached as u64)?;
        Ok(buf.freeze())
    })
    .await
    .unwrap_or_else(|e| Err(io::Error::other(e)))
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
}
