//! Request metrics: what a handler tells [`crate::Proxy::handle`] about its answer (a response
//! extension), and the response body wrapper that counts bytes as they are sent and observes the
//! request's duration when the body ends.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::time::Instant;
use wharf_metrics::prometheus::{Histogram, IntCounter, IntGauge};
use wharf_metrics::{Metrics, Outcome};

use crate::body::Body;

/// How a manifest or blob request was answered; a response extension set by the handler.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Answered(pub Outcome);

/// The access-log line of one request, written when its body ends (or the client goes away),
/// so it can say how many bytes were sent and how long the whole answer took.
pub(crate) struct Access {
    pub method: http::Method,
    pub path: String,
    pub request_id: String,
    pub upstream: String,
}

/// Counts a response body's bytes into `bytes` (and `served`, for content) as they are sent,
/// and observes `duration` and writes the access line once the body ends or is dropped.
struct Counting {
    inner: Body,
    bytes: IntCounter,
    served: Option<IntCounter>,
    duration: Option<(Histogram, Instant)>,
    access: Option<(Access, u16, Outcome)>,
    sent: u64,
    /// What the response promised: its Content-Length (0 for HEAD), if it had one.
    promised: Option<u64>,
    /// The body reached its end (hyper may also stop polling once `promised` bytes are out).
    ended: bool,
}

impl Counting {
    fn finish(&mut self) {
        let Some((h, started)) = self.duration.take() else {
            return;
        };
        h.observe(started.elapsed().as_secs_f64());
        if let Some((a, status, outcome)) = self.access.take() {
            tracing::info!(
                target: "wharf::access",
                request_id = a.request_id,
                method = %a.method,
                path = a.path,
                status,
                bytes = self.sent,
                complete = self.ended || self.promised == Some(self.sent),
                ms = started.elapsed().as_millis() as u64,
                upstream = a.upstream,
                result = outcome.as_str(),
            );
        }
    }
}

impl Drop for Counting {
    fn drop(&mut self) {
        self.finish();
    }
}

impl HttpBody for Counting {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    self.sent += n;
                    self.bytes.inc_by(n);
                    if let Some(s) = &self.served {
                        s.inc_by(n);
                    }
                }
            }
            Poll::Ready(None) => {
                self.ended = true;
                self.finish();
            }
            Poll::Ready(Some(Err(_))) => self.finish(),
            Poll::Pending => {}
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

/// Records one answered request: counts it, observes its time to first byte, and wraps its
/// body so that bytes and duration are counted as it is sent. Returns how it was answered.
pub(crate) fn record(
    m: &Metrics,
    access: Access,
    endpoint: &str,
    started: Instant,
    resp: http::Response<Body>,
) -> http::Response<Body> {
    let upstream = access.upstream.as_str();
    let outcome = match resp.extensions().get::<Answered>() {
        _ if resp.status().as_u16() >= 400 => Outcome::Error,
        Some(Answered(o)) => *o,
        None => Outcome::None,
    };
    m.http_requests
        .with_label_values(&[upstream, endpoint, outcome.as_str()])
        .inc();
    m.http_ttfb
        .with_label_values(&[endpoint])
        .observe(started.elapsed().as_secs_f64());
    let served = match outcome {
        Outcome::Hit | Outcome::Miss | Outcome::Coalesced | Outcome::Stale => Some(
            m.served_bytes
                .with_label_values(&[upstream, outcome.source()]),
        ),
        Outcome::Error | Outcome::None => None,
    };
    let duration = m
        .http_duration
        .with_label_values(&[endpoint, outcome.as_str()]);
    let bytes = m.http_response_bytes.with_label_values(&[endpoint]);
    let status = resp.status().as_u16();
    let promised = if access.method == http::Method::HEAD {
        Some(0)
    } else {
        resp.headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .or_else(|| resp.body().size_hint().exact())
    };
    resp.map(|inner| {
        Counting {
            inner,
            bytes,
            served,
            duration: Some((duration, started)),
            access: Some((access, status, outcome)),
            sent: 0,
            promised,
            ended: false,
        }
        .boxed_unsync()
    })
}

/// Held by a fill's opener for the fill's life: counts the fill as started and in flight once
/// the opener is first called, and tells the request that started it apart from those that
/// joined (`coalesced`).
pub(crate) struct FillGauge {
    opened: AtomicBool,
    in_flight: IntGauge,
    started: IntCounter,
}

impl FillGauge {
    pub(crate) fn new(m: &Metrics, upstream: &str) -> Arc<FillGauge> {
        Arc::new(FillGauge {
            opened: AtomicBool::new(false),
            in_flight: m.fills_in_flight.with_label_values(&[upstream]),
            started: m.fills_started.with_label_values(&[upstream]),
        })
    }

    pub(crate) fn opened(&self) {
        if !self.opened.swap(true, Ordering::Relaxed) {
            self.in_flight.inc();
            self.started.inc();
        }
    }

    /// Whether this request's opener started the fill.
    pub(crate) fn is_opened(&self) -> bool {
        self.opened.load(Ordering::Relaxed)
    }
}

impl Drop for FillGauge {
    fn drop(&mut self) {
        if self.is_opened() {
            self.in_flight.dec();
        }
    }
}

/// Increments a gauge for as long as it lives.
pub(crate) struct Held(IntGauge);

impl Held {
    pub(crate) fn new(g: IntGauge) -> Held {
        g.inc();
        Held(g)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.dec();
    }
}
