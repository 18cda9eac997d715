//! Response bodies, and the guard that counts a request as in flight until its body's last byte
//! is handed out (or the body is dropped): the fake's positive signal that a download is running.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use tokio::sync::watch;

pub(crate) type Body = BoxBody<Bytes, io::Error>;

pub(crate) fn full(bytes: Bytes) -> Body {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

pub(crate) fn empty() -> Body {
    full(Bytes::new())
}

/// What tests wait on: requests in flight, the most there were at once, and a version number
/// bumped on every arrival and every end, which wakes [`crate::FakeRegistry::wait_until`].
#[derive(Debug)]
pub(crate) struct Counters {
    pub(crate) in_flight: AtomicUsize,
    pub(crate) most: AtomicUsize,
    pub(crate) changed: watch::Sender<u64>,
}

impl Counters {
    pub(crate) fn new() -> Counters {
        Counters {
            in_flight: AtomicUsize::new(0),
            most: AtomicUsize::new(0),
            changed: watch::Sender::new(0),
        }
    }

    pub(crate) fn bump(&self) {
        self.changed.send_modify(|v| *v += 1);
    }
}

/// One request in flight; ends it when dropped.
pub(crate) struct InFlight(Arc<Counters>);

impl InFlight {
    /// Counts a request that just arrived. The caller records it before calling this, so a
    /// waiter woken by the count also finds the request recorded.
    pub(crate) fn start(counters: &Arc<Counters>) -> InFlight {
        let now = counters.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        counters.most.fetch_max(now, Ordering::SeqCst);
        counters.bump();
        InFlight(counters.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.0.bump();
    }
}

/// A body that ends its request's [`InFlight`] as it hands out its last byte: before the client
/// can have read it, so "the client has it all" implies "no longer in flight".
pub(crate) struct Tracked {
    inner: Body,
    remaining: Option<u64>,
    guard: Option<InFlight>,
}

impl Tracked {
    /// `length`: the announced `Content-Length`, for a streamed body that cannot tell its size.
    pub(crate) fn new(inner: Body, length: Option<u64>, guard: InFlight) -> Tracked {
        let remaining = inner.size_hint().exact().or(length);
        Tracked {
            inner,
            remaining,
            guard: Some(guard),
        }
    }
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        let last = match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                let len = frame.data_ref().map_or(0, |d| d.len() as u64);
                this.remaining = this.remaining.map(|r| r.saturating_sub(len));
                this.remaining == Some(0)
            }
            Poll::Ready(_) => true,
            Poll::Pending => false,
        };
        if last {
            this.guard = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
