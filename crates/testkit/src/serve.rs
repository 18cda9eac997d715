//! The fake's server: the accept loop (plain or TLS) on its own runtime, and the order in which
//! a request is answered. Each request is recorded and counted in flight before anything else.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{HeaderValue, Method, Request, Response, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::body::{Body, InFlight, Tracked, empty, full};
use crate::content::default_answer;
use crate::registry::{State, lock};
use crate::{Reply, Seen, TlsFiles};

/// Binds `127.0.0.1:0` and spawns the accept loop on a new one-worker runtime: real time,
/// whatever the test's runtime does (paused clocks, blocking tests).
pub(crate) fn start(
    state: Arc<State>,
    tls: Option<&TlsFiles>,
) -> (SocketAddr, tokio::runtime::Runtime) {
    let acceptor = tls.map(acceptor);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener
        .set_nonblocking(true)
        .expect("nonblocking listener");
    let addr = listener.local_addr().expect("local_addr");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("fake-registry")
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.spawn(accept_loop(listener, state, acceptor, addr));
    (addr, rt)
}

fn acceptor(files: &TlsFiles) -> tokio_rustls::TlsAcceptor {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .and_then(Iterator::collect)
        .unwrap_or_else(|e| panic!("certificates in {}: {e}", files.cert.display()));
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .unwrap_or_else(|e| panic!("key in {}: {e}", files.key.display()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("TLS server config");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

async fn accept_loop(
    listener: std::net::TcpListener,
    state: Arc<State>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    addr: SocketAddr,
) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let (state, tls) = (state.clone(), tls.clone());
        tokio::spawn(async move {
            match tls {
                // A failed handshake is the client's to report.
                Some(tls) => {
                    if let Ok(stream) = tls.accept(tcp).await {
                        connection(stream, state, addr).await;
                    }
                }
                None => connection(tcp, state, addr).await,
            }
        });
    }
}

async fn connection<S>(io: S, state: Arc<State>, addr: SocketAddr)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req: Request<Incoming>| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(handle(&state, &req, addr).await) }
    });
    // Broken bodies and clients that hang up end the connection; nothing to report.
    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(io), svc)
        .await;
}

async fn handle(
    state: &Arc<State>,
    req: &Request<Incoming>,
    addr: SocketAddr,
) -> Response<Tracked> {
    let seen = Seen {
        method: req.method().clone(),
        path: req.uri().path().to_owned(),
        query: req.uri().query().unwrap_or_default().to_owned(),
        headers: req.headers().clone(),
        local_addr: addr,
    };
    lock(&state.seen).push(seen.clone());
    let guard = InFlight::start(&state.counters);
    if !state.latency.is_zero() {
        tokio::time::sleep(state.latency).await;
    }
    let resp = answer(state, &seen).await;
    let length = resp
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok());
    resp.map(|body| Tracked::new(body, length, guard))
}

/// The first of: the script, the gate, a route, the content, the fallback, the default.
async fn answer(state: &State, seen: &Seen) -> Response<Body> {
    let head = seen.method == Method::HEAD;
    let scripted = lock(&state.script).clone();
    if let Some(reply) = scripted {
        return reply_response(reply, head).await;
    }
    if let Some(reply) = state.gate.as_ref().and_then(|gate| gate(seen)) {
        return reply_response(reply, head).await;
    }
    let route = state
        .routes
        .iter()
        .find(|(method, path, _)| *method == seen.method && *path == seen.path);
    if let Some((_, _, handler)) = route {
        return reply_response(handler(seen), head).await;
    }
    let next_fault = || lock(&state.faults).pop_front().unwrap_or_default();
    let released = state.released.subscribe();
    let content = lock(&state.content).answer(seen, state.ranges, next_fault, released);
    if let Some(resp) = content {
        return resp;
    }
    if let Some(fallback) = &state.fallback {
        return reply_response(fallback(seen), head).await;
    }
    default_answer(seen)
}

async fn reply_response(reply: Reply, head: bool) -> Response<Body> {
    if reply.hang {
        std::future::pending::<()>().await;
    }
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let len = reply.body.len();
    let mut resp = Response::new(if head { empty() } else { full(reply.body) });
    *resp.status_mut() = reply.status;
    for (name, value) in reply.headers {
        resp.headers_mut().append(name, value);
    }
    // A HEAD announces the length the GET would send, as a registry does.
    if head && !resp.headers().contains_key(header::CONTENT_LENGTH) && len > 0 {
        resp.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    resp
}
