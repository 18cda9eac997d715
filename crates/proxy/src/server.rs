//! The listener: TCP, or rustls when a certificate is configured (`tls.rs`), then hyper-util's
//! auto builder (HTTP/1.1, and HTTP/2 by ALPN or the h2c preface), with the bounds of
//! `limits.rs` and graceful shutdown. Both listeners run on it: the registry API ([`Proxy`])
//! and the admin API (`admin.rs`), each a [`Service`].
//!
//! ```text
//! accept -> a connection permit (at max_connections: close the longest-idle kept-alive
//!           connection to make room, else wait; never refuse)
//!   -> task: [TLS handshake, bounded | SendfileIo on plain TCP] -> Tracked IO (idle timeout)
//!      -> hyper auto
//!      -> per request: Service::call (Proxy::handle, or the admin API)
//! ```

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
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

use crate::Proxy;
use crate::body::Body;
use crate::limits::{Activity, ExchangeGuard, H1_MAX_BUF, Limits, Tracked};
use crate::preface::{self, Preface};
use crate::sendfile::{Pending, SendfileIo};
use crate::throttle::Throttle;
use crate::tls::Tls;

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
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_headers(limits.max_headers)
        .max_buf_size(H1_MAX_BUF)
        // Body frames are handed to the IO as they are, never copied into hyper's buffer:
        // fewer copies, and what sendfile.rs relies on. Never writev(false) or
        // pipeline_flush(true) here: either makes hyper flatten frames, and placeholders would
        // go out as zeros (crates/proxy/tests/sendfile.rs fails then).
        .writev(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(limits.max_header_bytes)
        .max_concurrent_streams(256);
    let builder = Arc::new(builder);
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
            builder: builder.clone(),
            graceful: graceful.watcher(),
            limits: limits.clone(),
            peer,
            _live: live.register(activity.clone()),
            activity,
            _permit: permit,
        };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            match preface::look(&stream, acceptor.is_some(), conn.limits.header_read_timeout).await
            {
                Preface::Serve => {}
                Preface::Close => return,
                Preface::Refuse(e) => {
                    tracing::debug!(peer = %conn.peer, error = %e, "not an HTTP request");
                    return preface::answer(stream, e).await;
                }
            }
            match acceptor {
                None => {
                    let (io, pending) = SendfileIo::new(stream);
                    conn.run(io, Some(pending)).await;
                }
                Some(acceptor) => {
                    let handshake = acceptor.accept(stream);
                    match tokio::time::timeout(conn.limits.tls_handshake_timeout, handshake).await {
                        Ok(Ok(tls)) => conn.run(tls, None).await,
                        Ok(Err(e)) => {
                            tracing::debug!(peer = %conn.peer, error = %e, "TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(peer = %conn.peer, "TLS handshake timed out"),
                    }
                }
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

/// One accepted connection, holding its share of `max_connections` until it ends.
struct Conn<S> {
    service: Arc<S>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    graceful: Watcher,
    limits: Limits,
    peer: SocketAddr,
    activity: Arc<Activity>,
    /// Listed among the live connections until it ends.
    _live: Registered,
    _permit: OwnedSemaphorePermit,
}

impl<S: Service> Conn<S> {
    /// Serves the connection; `sendfile` on plain TCP, for HTTP/1.x requests (`sendfile.rs`).
    async fn run<IO>(self, io: IO, sendfile: Option<Pending>)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = self.activity.clone();
        let io = Tracked::new(io, activity.clone());
        let app = self.service.clone();
        let busy = activity.clone();
        let service = service_fn(move |mut req: http::Request<Incoming>| {
            let app = app.clone();
            if let Some(pending) = &sendfile
                && req.version() < http::Version::HTTP_2
            {
                req.extensions_mut().insert(pending.clone());
            }
            let guard = busy.busy();
            let exchange = busy.exchange();
            async move {
                let _guard = guard;
                let resp = app.call(req).await;
                // The exchange lasts until the body ends: only then is the connection idle.
                Ok::<_, Infallible>(resp.map(|body| Exchange::boxed(body, exchange)))
            }
        });
        let conn = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(io), service)
            .into_owned();
        let conn = self.graceful.watch(conn);
        let peer = self.peer;
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
