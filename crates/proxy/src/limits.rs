//! What one client may cost the listener: request heads, URIs and bodies of bounded size,
//! connections that must keep talking, and a bound on how many there are at once.
//!
//! - The request head: HTTP/1.1 heads larger than [`Limits::max_header_bytes`] or with more
//!   than [`Limits::max_headers`] lines get 431 and the connection closed; HTTP/2 header
//!   lists larger than [`Limits::max_header_bytes`] are refused by the h2 layer.
//! - The URI: a path longer than `route::MAX_PATH_LEN` or a query longer than [`MAX_QUERY_LEN`]
//!   is refused ([`ProxyError::UriTooLong`], 414; no name and reference can be that long).
//! - The body: wharf serves pulls, so a GET or HEAD may carry at most [`MAX_REQUEST_BODY`] bytes
//!   (one of unknown length counts as too long): [`ProxyError::BodyTooLarge`], 413. Other
//!   methods are `UNSUPPORTED`. [`crate::Proxy::handle`] makes both checks; `error.rs` renders them.
//! - Time: an HTTP/1.1 request head must arrive within [`Limits::header_read_timeout`], which
//!   hyper also applies between requests on a kept-alive connection. A connection of either
//!   version with no request in progress and no bytes moving for [`Limits::idle_timeout`] is
//!   closed (slowloris, and HTTP/2 connections that would otherwise stay forever). A TLS
//!   handshake gets [`Limits::tls_handshake_timeout`].
//! - Connections: at most [`Limits::max_connections`] at once. A client that arrives at the
//!   bound makes room: the kept-alive connection that has waited longest for its next request
//!   is closed (as nginx does), so the new one is served at once; with none between requests,
//!   the new one waits until one ends (never refused).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Method, Request};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::ProxyError;
use crate::route::MAX_PATH_LEN;

/// The longest query wharf reads (`ns`, `n`, `last`).
pub const MAX_QUERY_LEN: usize = 1024;
/// The largest body a GET or HEAD may carry.
pub const MAX_REQUEST_BODY: u64 = 1024;
/// hyper's HTTP/1.1 read buffer (a request head is bounded by `max_header_bytes` as well). What hyper queues per
/// connection before it stops asking a response body for more, too: its default, ~400 KiB, let
/// 64 clients of one blob hold 32 MiB in queued chunks; one chunk each is enough, the socket
/// buffer does the rest.
pub const H1_MAX_BUF: usize = 128 * 1024;

/// The listener's bounds; [`Limits::default`] is what `wharf serve` uses unless configured.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections served at once (`server.max_connections`, default 4096).
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub tls_handshake_timeout: Duration,
    /// The largest request head: an HTTP/1.1 head, or an HTTP/2 header list.
    pub max_header_bytes: u32,
    /// The most header lines in one HTTP/1.1 request.
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 4096,
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            tls_handshake_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            max_headers: 100,
        }
    }
}

impl Limits {
    /// The admin listener's: a few scrapers and operators, never thousands of clients.
    pub fn admin() -> Limits {
        Limits {
            max_connections: 64,
            ..Limits::default()
        }
    }
}

/// A 414 ([`ProxyError::UriTooLong`]) when the path or query is longer than any request wharf
/// answers.
pub fn check_uri<B>(req: &Request<B>) -> Result<(), ProxyError> {
    let uri = req.uri();
    if uri.path().len() > MAX_PATH_LEN || uri.query().is_some_and(|q| q.len() > MAX_QUERY_LEN) {
        return Err(ProxyError::UriTooLong);
    }
    Ok(())
}

/// A 413 ([`ProxyError::BodyTooLarge`]) for a GET or HEAD whose body may be longer than
/// [`MAX_REQUEST_BODY`].
pub fn check_body<B: http_body::Body>(req: &Request<B>) -> Result<(), ProxyError> {
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return Ok(());
    }
    let hint = req.body().size_hint();
    let fits = req.body().is_end_stream() || hint.upper().is_some_and(|u| u <= MAX_REQUEST_BODY);
    if fits {
        Ok(())
    } else {
        Err(ProxyError::BodyTooLarge)
    }
}

/// When a connection last moved bytes, how many of its requests are being answered, and
/// whether the listener asked it to close.
#[derive(Debug)]
pub struct Activity {
    base: Instant,
    last_ms: AtomicU64,
    /// Requests whose response head is not ready yet.
    busy: AtomicUsize,
    /// Requests whose response has not ended (head and body): zero on a kept-alive
    /// connection waiting for its next request.
    exchanges: AtomicUsize,
    /// Whether one exchange has ended: a connection still in its handshake or first request
    /// is not idle, however quiet.
    served: std::sync::atomic::AtomicBool,
    close: Notify,
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            base: Instant::now(),
            last_ms: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
            exchanges: AtomicUsize::new(0),
            served: std::sync::atomic::AtomicBool::new(false),
            close: Notify::new(),
        })
    }

    fn touch(&self) {
        let ms = self.base.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// When bytes last moved (or a request was last answered).
    pub fn last_active(&self) -> Instant {
        self.base + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }

    /// Held while a request is being answered (until its response head is ready).
    pub fn busy(self: &Arc<Self>) -> BusyGuard {
        self.busy.fetch_add(1, Ordering::Relaxed);
        BusyGuard(self.clone())
    }

    /// Held from a request's arrival until its response body ends or is dropped.
    pub fn exchange(self: &Arc<Self>) -> ExchangeGuard {
        self.exchanges.fetch_add(1, Ordering::Relaxed);
        ExchangeGuard(self.clone())
    }

    /// A kept-alive connection between requests (it was answered at least once, and nothing
    /// is in progress): nothing to lose by closing it.
    pub fn is_between_requests(&self) -> bool {
        self.served.load(Ordering::Relaxed) && self.exchanges.load(Ordering::Relaxed) == 0
    }

    /// Asks the connection to close (at the connection bound, to make room).
    pub fn ask_to_close(&self) {
        self.close.notify_one();
    }

    /// Resolves once [`Activity::ask_to_close`] was called.
    pub async fn close_asked(&self) {
        self.close.notified().await;
    }

    /// Resolves once the connection has been idle for `idle`: no request in progress and no
    /// bytes read or written.
    pub async fn idle_for(&self, idle: Duration) {
        loop {
            let due = self.last_active() + idle;
            if Instant::now() >= due {
                if self.busy.load(Ordering::Relaxed) == 0 {
                    return;
                }
                tokio::time::sleep(idle).await;
                continue;
            }
            tokio::time::sleep_until(due).await;
        }
    }
}

pub struct BusyGuard(Arc<Activity>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.touch();
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// See [`Activity::exchange`].
pub struct ExchangeGuard(Arc<Activity>);

impl Drop for ExchangeGuard {
    fn drop(&mut self) {
        self.0.touch();
        self.0.served.store(true, Ordering::Relaxed);
        self.0.exchanges.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection's socket (or TLS stream) that records every read and write in an [`Activity`].
pub struct Tracked<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T> Tracked<T> {
    pub fn new(inner: T, activity: Arc<Activity>) -> Self {
        activity.touch();
        Tracked { inner, activity }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    #[tokio::test(start_paused = true)]
    async fn idle_waits_for_requests_in_progress() {
        let a = Activity::new();
        a.touch();
        let guard = a.busy();
        let idle = tokio::spawn({
            let a = a.clone();
            async move { a.idle_for(Duration::from_secs(10)).await }
        });
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!idle.is_finished(), "a request in progress is not idleness");
        drop(guard);
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!idle.is_finished(), "idle only 5 s");
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert!(idle.is_finished());
    }

    #[test]
    fn uri_and_body_bounds() {
        let long = format!("/v2/{}/manifests/x", "a/".repeat(600));
        let req = Request::get(&long).body(()).unwrap();
        let refused = check_uri(&req).expect_err("too long").into_response(false);
        assert_eq!(refused.status(), StatusCode::URI_TOO_LONG);
        let q = format!("/v2/a/tags/list?last={}", "x".repeat(2000));
        assert!(check_uri(&Request::get(&q).body(()).unwrap()).is_err());
        assert!(check_uri(&Request::get("/v2/a/manifests/x").body(()).unwrap()).is_ok());

        let body = http_body_util::Full::new(bytes::Bytes::from(vec![0u8; 4096]));
        let resp = check_body(&Request::get("/v2/").body(body).unwrap())
            .expect_err("refused")
            .into_response(false);
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let empty = http_body_util::Empty::<bytes::Bytes>::new();
        assert!(check_body(&Request::get("/v2/").body(empty).unwrap()).is_ok());
    }
}
