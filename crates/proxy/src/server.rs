//! The listener: TCP, or rustls when a certificate is configured (`tls.rs`), then hyper's
//! HTTP/1.1 or HTTP/2 connection (HTTP/2 by ALPN, or by the h2c preface on plain TCP), with the
//! bounds of `limits.rs` and graceful shutdown. Both listeners run on it: the registry API
//! ([`Proxy`]) and the admin API (`admin.rs`), each a [`Service`].
//!
//! ```text
//! accept -> a connection permit (at max_connections: close the longest-idle kept-alive
//!           connection to make room, else wait; never refuse)
//!   -> task: [TLS handshake, bounded (h2: Coalesce) | SendfileIo on plain TCP]
//!      -> Tracked IO (idle timeout)
//!      -> hyper http1 | http2
//!      -> per request: Service::call (Proxy::handle, or the admin API)
//! ```
//!
//! What an idle kept-alive HTTP/1.1 connection holds is what thousands of them cost (issue 13,
//! `cargo bench -p wharf-e2e --bench memory`): hyper's read and write buffers (8 KiB each), the
//! connection's task, and a box hyper keeps for the request future. So the version is chosen
//! here rather than by hyper-util's auto builder, whose 24-byte sniff made hyper's first read
//! buffer grow to 16 KiB and whose connection future is sized for HTTP/2 too; the request
//! future hyper keeps a box for is a box itself (`Proxy::handle`'s future is ~9 KiB); and the
//! TLS and refusal paths are boxed, so that a plain connection's task is sized for its own path.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulConnection, GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

use crate::Proxy;
use crate::body::Body;
use crate::coalesce::Coalesce;
use crate::limits::{Activity, ExchangeGuard, H1_MAX_BUF, Limits, Tracked};
use crate::preface::{self, Preface};
use crate::sendfile::{Pending, SendfileIo};
use crate::throttle::Throttle;
use crate::tls::Tls;
use crate::version::{Version, sniff};

/// What a listener answers its requests with. Never fails: every error is an answer.
pub trait Service: Send + Sync + 'static {
    fn call(
        self: Arc<Self>,
        req: http::Request<Incoming>,
    ) -> impl Future<Output = http::Response<Body>> + Send + 'static;
}

impl Service for Proxy {
    fn call(
        self: Arc<Self>,
        req: http::Request<Incoming>,
    ) -> impl Future<Output = http::Response<Body>> + Send + 'static {
        self.handle(req)
    }
}

/// How the listener runs: plain or TLS, and its bounds.
#[derive(Clone, Default)]
pub struct ServerOptions {
    pub tls: Option<Arc<Tls>>,
    pub limits: Limits,
}

/// Serves `service` on `listener` (plain HTTP, default limits) until `shutdown` resolves, then
/// lets open requests finish (for at most `drain`).
pub async fn serve<S: Service>(
    listener: TcpListener,
    service: Arc<S>,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) {
    serve_with(listener, service, shutdown, drain, ServerOptions::default()).await;
}

/// [`serve`] with TLS and limits of the caller's choosing.
pub async fn serve_with<S: Service>(
    listener: TcpListener,
    service: Arc<S>,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
    options: ServerOptions,
) {
    let limits = options.limits.clone();
    let builders = Arc::new(Builders::new(&limits));
    let graceful = GracefulShutdown::new();
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let acceptor = options.tls.as_ref().map(|t| t.acceptor());
    let warnings = Throttle::default();
    tokio::pin!(shutdown);
    let live = Live::default();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off rather than spin.
                    if let Some(suppressed) = warnings.admit("accept") {
                        tracing::warn!(error = %e, suppressed, "accept failed");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // At the bound a new client makes room: the kept-alive connection idle the longest
        // is closed. With none idle, it waits for one to end (never refused).
        let permit = match connections.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(TryAcquireError::Closed) => break,
            Err(TryAcquireError::NoPermits) => {
                let Some(p) = make_room(&connections, &live, &mut shutdown).await else {
                    break;
                };
                p
            }
        };
        let _ = stream.set_nodelay(true);
        let activity = Activity::new();
        let conn = Conn {
            service: service.clone(),
            builders: builders.clone(),
            graceful: graceful.watcher(),
            limits: limits.clone(),
            peer,
            _live: live.register(activity.clone()),
            activity,
            _permit: permit,
        };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let wait = conn.limits.header_read_timeout;
            match preface::look(&stream, acceptor.is_some(), wait).await {
                Preface::Serve => {}
                Preface::Close => return,
                Preface::Refuse(e) => {
                    tracing::debug!(peer = %conn.peer, error = %e, "not an HTTP request");
                    // Boxed, as the TLS path below: a task is sized for the path it takes.
                    return Box::pin(preface::answer(stream, e)).await;
                }
            }
            match acceptor {
                None => {
                    let version = sniff(&stream, wait).await;
                    let (io, pending) = SendfileIo::new(stream);
                    conn.run(io, version, Some(pending)).await;
                }
                Some(acceptor) => Box::pin(conn.run_tls(acceptor, stream)).await,
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(drain) => tracing::info!("drain time over; closing open connections"),
    }
}

/// At the bound: asks the longest-idle kept-alive connection to close, and again every
/// [`MAKE_ROOM_EVERY`] while none is idle (answers in progress end), until a place is free.
/// `None` at shutdown.
async fn make_room(
    connections: &Arc<Semaphore>,
    live: &Live,
    shutdown: &mut (impl Future<Output = ()> + Unpin),
) -> Option<OwnedSemaphorePermit> {
    loop {
        live.close_idlest();
        tokio::select! {
            p = connections.clone().acquire_owned() => return p.ok(),
            () = tokio::time::sleep(MAKE_ROOM_EVERY) => {}
            () = &mut *shutdown => return None,
        }
    }
}

/// How often a client waiting at the bound looks again for an idle connection to close.
const MAKE_ROOM_EVERY: Duration = Duration::from_millis(100);

/// hyper's connection builders, with the listener's bounds.
struct Builders {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
}

impl Builders {
    fn new(limits: &Limits) -> Builders {
        let mut http1 = http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_headers(limits.max_headers)
            // The head's bound in bytes, checked on every parsed head. max_buf_size alone is
            // checked only while a head is incomplete: a read that brings in all of a head
            // larger than the buffer's bound got it accepted (200 KiB heads, now and then).
            .max_header_size(limits.max_header_bytes as usize)
            .max_buf_size(H1_MAX_BUF)
            // Body frames are handed to the IO as they are, never copied into hyper's buffer:
            // fewer copies, and what sendfile.rs relies on. Never writev(false) or
            // pipeline_flush(true) here: either makes hyper flatten frames, and placeholders
            // would go out as zeros (crates/proxy/tests/sendfile.rs fails then).
            .writev(true);
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_header_list_size(limits.max_header_bytes)
            .max_concurrent_streams(256);
        Builders { http1, http2 }
    }
}

/// One accepted connection, holding its share of `max_connections` until it ends.
struct Conn<S> {
    service: Arc<S>,
    builders: Arc<Builders>,
    graceful: Watcher,
    limits: Limits,
    peer: SocketAddr,
    activity: Arc<Activity>,
    /// Listed among the live connections until it ends.
    _live: Registered,
    _permit: OwnedSemaphorePermit,
}

impl<S: Service> Conn<S> {
    /// The TLS handshake (bounded), then the connection, HTTP/2 when ALPN chose `h2`. A client
    /// speaks HTTP/2 over TLS only by ALPN (RFC 9113, 3.2), so nothing is sniffed.
    async fn run_tls(self, acceptor: tokio_rustls::TlsAcceptor, stream: TcpStream) {
        let handshake = acceptor.accept(stream);
        match tokio::time::timeout(self.limits.tls_handshake_timeout, handshake).await {
            Ok(Ok(tls)) => {
                match tls.get_ref().1.alpn_protocol() {
                    // Frames gathered into whole records (coalesce.rs).
                    Some(b"h2") => self.run(Coalesce::new(tls), Version::Http2, None).await,
                    _ => self.run(tls, Version::Http1, None).await,
                }
            }
            Ok(Err(e)) => tracing::debug!(peer = %self.peer, error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!(peer = %self.peer, "TLS handshake timed out"),
        }
    }

    /// Serves the connection; `sendfile` on plain TCP, for HTTP/1.x requests (`sendfile.rs`).
    async fn run<IO>(self, io: IO, version: Version, sendfile: Option<Pending>)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = self.activity.clone();
        let io = TokioIo::new(Tracked::new(io, activity.clone()));
        let app = self.service.clone();
        let busy = activity.clone();
        let service = service_fn(move |mut req: http::Request<Incoming>| {
            if let Some(pending) = &sendfile
                && req.version() < http::Version::HTTP_2
            {
                req.extensions_mut().insert(pending.clone());
            }
            let guard = busy.busy();
            let exchange = busy.exchange();
            // hyper keeps a box the size of this future for as long as the connection lives;
            // the answer's own future is large, so it gets a box of its own, per request.
            let call = Box::pin(app.clone().call(req));
            async move {
                let _guard = guard;
                let resp = call.await;
                // The exchange lasts until the body ends: only then is the connection idle.
                Ok::<_, Infallible>(resp.map(|body| Exchange::boxed(body, exchange)))
            }
        });
        match version {
            Version::Http1 => {
                // No upgrades: wharf answers every request itself (no CONNECT, no websockets).
                let conn = self.builders.http1.serve_connection(io, service);
                self.drive(conn).await;
            }
            // Boxed: an HTTP/2 connection's state is larger, and HTTP/1.1 tasks need not
            // be sized for it.
            Version::Http2 => {
                let conn = self.builders.http2.serve_connection(io, service);
                Box::pin(self.drive(conn)).await;
            }
        }
    }

    /// Runs `conn` until it ends, shutdown drains it, it is idle too long, or the listener
    /// asks it to close to make room.
    async fn drive<C, E>(self, conn: C)
    where
        C: GracefulConnection<Error = E>,
        E: std::fmt::Display,
    {
        let conn = self.graceful.watch(conn);
        let peer = self.peer;
        let activity = &self.activity;
        tokio::select! {
            r = conn => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            }
            () = activity.idle_for(self.limits.idle_timeout) => {
                tracing::debug!(%peer, "closing an idle connection");
            }
            () = activity.close_asked() => {
                tracing::debug!(%peer, "closing an idle kept-alive connection to make room");
            }
        }
    }
}

/// The live connections, so that one can be asked to close at the bound.
#[derive(Clone, Default)]
struct Live {
    inner: Arc<LiveInner>,
}

#[derive(Default)]
struct LiveInner {
    next: AtomicU64,
    conns: Mutex<HashMap<u64, Arc<Activity>>>,
}

impl Live {
    fn register(&self, activity: Arc<Activity>) -> Registered {
        let id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        self.inner
            .conns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, activity);
        Registered {
            live: self.inner.clone(),
            id,
        }
    }

    /// Asks the kept-alive connection that has waited longest for its next request to close;
    /// says whether there was one. Connections in the middle of an answer are never chosen.
    fn close_idlest(&self) -> bool {
        let conns = self
            .inner
            .conns
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let idlest = conns
            .values()
            .filter(|a| a.is_between_requests())
            .min_by_key(|a| a.last_active());
        match idlest {
            Some(a) => {
                a.ask_to_close();
                true
            }
            None => false,
        }
    }
}

/// A connection's place in [`Live`], given up when it ends.
struct Registered {
    live: Arc<LiveInner>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.live
            .conns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

/// A response body that holds its request's [`ExchangeGuard`] until it ends or is dropped.
struct Exchange {
    inner: Body,
    guard: Option<ExchangeGuard>,
}

impl Exchange {
    fn boxed(inner: Body, guard: ExchangeGuard) -> Body {
        let guard = (!http_body::Body::is_end_stream(&inner)).then_some(guard);
        Exchange { inner, guard }.boxed_unsync()
    }
}

impl http_body::Body for Exchange {
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, std::io::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            self.guard = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
