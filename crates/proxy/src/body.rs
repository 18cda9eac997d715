//! The response body type and the ways wharf builds one.

use std::io;

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, TryStreamExt};
use http_body_util::{BodyExt, Empty, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::Frame;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

pub type Body = UnsyncBoxBody<Bytes, io::Error>;

/// Chunk size for file reads: large enough that per-chunk overhead vanishes next to the copy.
const CHUNK: usize = 256 * 1024;

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn stream<S>(s: S) -> Body
where
    S: Stream<Item = io::Result<Bytes>> + Send + 'static,
{
    StreamBody::new(s.map_ok(Frame::data)).boxed_unsync()
}

/// The bytes `[start, end)` of an open file, read in large chunks.
pub fn file_range(file: tokio::fs::File, start: u64, end: u64) -> Body {
    let chunks = futures_util::stream::unfold(Some((file, None::<u64>)), move |state| async move {
        let (mut file, remaining) = state?;
        let remaining = match remaining {
            Some(r) => r,
            None => match file.seek(io::SeekFrom::Start(start)).await {
                Ok(_) => end.saturating_sub(start),
                Err(e) => return Some((Err(e), None)),
            },
        };
        if remaining == 0 {
            return None;
        }
        match read_chunk(&mut file, CHUNK.min(remaining as usize)).await {
            Ok(chunk) => {
                let left = remaining - chunk.len() as u64;
                Some((Ok(chunk), Some((file, Some(left)))))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    stream(chunks)
}

/// Reads exactly `want` bytes; a file that ends early is an error, never a short blob.
async fn read_chunk(file: &mut tokio::fs::File, want: usize) -> io::Result<Bytes> {
    let mut buf = BytesMut::with_capacity(want);
    while buf.len() < want {
        if (&mut *file)
            .take((want - buf.len()) as u64)
            .read_buf(&mut buf)
            .await?
            == 0
        {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "blob file is shorter than its recorded size",
            ));
        }
    }
    Ok(buf.freeze())
}
