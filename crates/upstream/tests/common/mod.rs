//! Fake upstreams for the integration tests: small hyper servers on `127.0.0.1:0` that record
//! every request and answer from a closure. They fake registries only where a protocol flow or a
//! fault is the point.
#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use wharf_upstream::{Client, Config, Secret};

pub const USER: &str = "alice";
pub const PASSWORD: &str = "pa55-w0rd-never-shown";

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn authorization(&self) -> Option<&str> {
        self.header("authorization")
    }
}

pub type Reply = Response<Full<Bytes>>;

pub struct Fake {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Fake {
    /// Serves `handler`, which is given the fake's own address (for realms and redirects).
    pub async fn start<H, F>(make: impl FnOnce(SocketAddr) -> H) -> Fake
    where
        H: Fn(Seen) -> F + Send + Sync + 'static,
        F: Future<Output = Reply> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let handler = Arc::new(make(addr));
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let handler = handler.clone();
                let log = log.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let s = Seen {
                            method: req.method().clone(),
                            path: req.uri().path().to_owned(),
                            query: req.uri().query().unwrap_or_default().to_owned(),
                            headers: req.headers().clone(),
                        };
                        log.lock().expect("log").push(s.clone());
                        let reply = handler(s);
                        async move { Ok::<_, Infallible>(reply.await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Fake { addr, seen }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("log").clone()
    }

    /// Requests whose path starts with `prefix`.
    pub fn count(&self, prefix: &str) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.path.starts_with(prefix))
            .count()
    }
}

pub fn reply(status: u16, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Reply {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = StatusCode::from_u16(status).expect("status");
    for (k, v) in headers {
        let name = http::HeaderName::from_bytes(k.as_bytes()).expect("header name");
        r.headers_mut()
            .append(name, v.parse().expect("header value"));
    }
    r
}

pub fn config(url: &str, credentials: bool) -> Config {
    Config {
        name: "fake".into(),
        url: url.into(),
        username: credentials.then(|| USER.to_owned()),
        password: credentials.then(|| Secret::new(PASSWORD)),
        ca_file: None,
        connect_timeout: Duration::from_secs(2),
        response_timeout: Duration::from_secs(5),
    }
}

pub fn client(url: &str, credentials: bool) -> Client {
    Client::new(config(url, credentials)).expect("client")
}

pub fn basic_value() -> String {
    use base64::Engine;
    let raw = format!("{USER}:{PASSWORD}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

pub async fn body_of(response: wharf_upstream::Response) -> Bytes {
    response.body.collect().await.expect("body").to_bytes()
}

/// Bounds every test: a hung request fails the test instead of hanging CI.
pub async fn bounded<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .expect("test took too long")
}

pub fn digest() -> wharf_oci::Digest {
    wharf_oci::Digest::sha256_of(b"layer")
}
