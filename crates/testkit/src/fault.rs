//! Faults on blob bodies: what one blob `GET` does instead of serving its bytes plainly. A test
//! queues them ([`crate::FakeRegistry::push_faults`]); each blob `GET` takes the next one, an
//! empty queue serves normally.

use std::io;

use bytes::Bytes;
use futures_util::stream;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::sync::watch;

use crate::body::Body;

/// Bytes per body frame: small enough that a hold or a break lands inside the body.
const FRAME: usize = 64 * 1024;

/// By default, serve the body (or the asked range) as a registry would; each method adds a
/// fault, applied in this order: hold, break, corrupt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fault {
    hold_at: Option<u64>,
    break_at: Option<u64>,
    corrupt: bool,
}

impl Fault {
    /// No fault.
    pub fn new() -> Fault {
        Fault::default()
    }

    /// Send the bytes before offset `at` (`0`: the head only), then nothing until
    /// [`crate::FakeRegistry::release`].
    pub fn hold_at(mut self, at: u64) -> Fault {
        self.hold_at = Some(at);
        self
    }

    /// Send the bytes before offset `at` (some may still sit in the server's buffers), then
    /// tear the connection down: the response ends short of its `Content-Length`.
    pub fn break_at(mut self, at: u64) -> Fault {
        self.break_at = Some(at);
        self
    }

    /// Change one byte in the middle: the right length, the wrong digest.
    pub fn corrupt(mut self) -> Fault {
        self.corrupt = true;
        self
    }
}

/// `blob` from `start`, in frames, doing what `fault` says on the way; a hold waits until
/// `released` says `true`.
pub(crate) fn blob_body(
    blob: Bytes,
    start: u64,
    fault: Fault,
    released: watch::Receiver<bool>,
) -> Body {
    let size = blob.len() as u64;
    let corrupt_at = fault.corrupt.then_some(size / 2);
    // Offsets before `start` are already behind this body.
    let hold_at = fault.hold_at.filter(|&at| at >= start);
    let break_at = fault.break_at.filter(|&at| at >= start);
    let frames = stream::unfold(Some((start, hold_at, released)), move |next| {
        let blob = blob.clone();
        async move {
            let (pos, hold_at, mut released) = next?;
            if pos >= size {
                return None;
            }
            if hold_at == Some(pos) {
                // Only an error if the sender is gone, and the fake owns it.
                let _ = released.wait_for(|r| *r).await;
            }
            if break_at == Some(pos) {
                let broken = io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    "fake registry: connection broken mid-body",
                );
                return Some((Err(broken), None));
            }
            let hold_at = hold_at.filter(|&at| at > pos);
            let end = [
                Some(pos + FRAME as u64),
                Some(size),
                hold_at,
                break_at.filter(|&at| at > pos),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(size);
            // The casts cannot truncate: `end` is at most the blob's in-memory length.
            let mut chunk = blob.slice(pos as usize..end as usize);
            if let Some(at) = corrupt_at.filter(|&at| (pos..end).contains(&at)) {
                let mut changed = chunk.to_vec();
                changed[(at - pos) as usize] ^= 0xff;
                chunk = Bytes::from(changed);
            }
            Some((Ok(Frame::data(chunk)), Some((end, hold_at, released))))
        }
    });
    BodyExt::boxed(StreamBody::new(frames))
}
