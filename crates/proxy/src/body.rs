//! The response body type and the ways wharf builds one.

use std::io;

use bytes::Bytes;
use futures_util::{Stream, TryStreamExt};
use http_body_util::{BodyExt, Empty, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::Frame;

pub type Body = UnsyncBoxBody<Bytes, io::Error>;

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A document answer (`content_type`, `Content-Length`): the bytes for a GET, the length
/// alone for a HEAD. The JSON answers of the API (tags, catalog, referrers, signatures) use it.
pub fn document(
    bytes: impl Into<Bytes>,
    content_type: &'static str,
    head: bool,
) -> http::Response<Body> {
    let bytes = bytes.into();
    let len = bytes.len();
    let mut resp = http::Response::new(if head { empty() } else { full(bytes) });
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    h.insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(len));
    resp
}

pub fn stream<S>(s: S) -> Body
where
    S: Stream<Item = io::Result<Bytes>> + Send + 'static,
{
    StreamBody::new(s.map_ok(Frame::data)).boxed_unsync()
}

/// The bytes `[start, end)` of an open file, in large chunks, read on the worker when they are
/// in the page cache and on the blocking pool when not ([`wharf_cache::file_chunks`]).
pub fn file_range(file: std::fs::File, start: u64, end: u64) -> Body {
    self::stream(wharf_cache::file_chunks(
        file,
        start,
        end,
        wharf_cache::CHUNK as usize,
    ))
}
