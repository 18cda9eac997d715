//! The listener: TCP, or rustls when a certificate is configured (`tls.rs`), then hyper-util's
//! auto builder (HTTP/1.1, and HTTP/2 by ALPN or the h2c preface), with the bounds of
//! `limits.rs` and graceful shutdown. Both listeners run on it: the registry API ([`Proxy`])
//! and the admin API (`admin.rs`), each a [`Service`].
//!
//! ```text
//! accept (a connection permit first: at max_connections the loop waits, it does not refuse)
//!   -> task: [TLS handshake, bounded | SendfileIo on plain TCP] -> Tracked IO (idle timeout)
//!      -> hyper auto
//!      -> per request: Service::call (Proxy::handle, or the admin API)
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::Proxy;
use crate::body::Body;
use crate::limits::{Activity, H1_MAX_BUF, Limits, Tracked};
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
    loop {
        // Back-pressure: at the bound, stop calling accept; the kernel queues the rest.
        let permit = tokio::select! {
            p = connections.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
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
        let _ = stream.set_nodelay(true);
        let conn = Conn {
            service: service.clone(),
            builder: builder.clone(),
            graceful: graceful.watcher(),
            limits: limits.clone(),
            peer,
            _permit: permit,
        };
        match &acceptor {
            None => {
                let (io, pending) = SendfileIo::new(stream);
                tokio::spawn(conn.run(io, Some(pending)));
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let handshake = acceptor.accept(stream);
                    match tokio::time::timeout(conn.limits.tls_handshake_timeout, handshake).await {
                        Ok(Ok(tls)) => conn.run(tls, None).await,
                        Ok(Err(e)) => {
                            tracing::debug!(peer = %conn.peer, error = %e, "TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(peer = %conn.peer, "TLS handshake timed out"),
                    }
                });
            }
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(drain) => tracing::info!("drain time over; closing open connections"),
    }
}

/// One accepted connection, holding its share of `max_connections` until it ends.
struct Conn<S> {
    service: Arc<S>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    graceful: Watcher,
    limits: Limits,
    peer: SocketAddr,
    _permit: OwnedSemaphorePermit,
}

impl<S: Service> Conn<S> {
    /// Serves the connection; `sendfile` on plain TCP, for HTTP/1.x requests (`sendfile.rs`).
    async fn run<IO>(self, io: IO, sendfile: Option<Pending>)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Activity::new();
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
            async move {
                let _guard = guard;
                Ok::<_, Infallible>(app.call(req).await)
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
        }
    }
}
