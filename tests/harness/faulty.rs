//! A fake upstream registry that misbehaves on cue: the point of the tests that use it is the
//! fault, which a real registry will not produce when asked.
//!
//! It speaks just enough of the registry API for wharf: `GET /v2/`, `GET`/`HEAD` of one manifest
//! (tag [`FaultyUpstream::TAG`], an OCI manifest whose single layer is the blob) and of its
//! blobs, and `Range: bytes=N-` on blobs when started with ranges. Each blob `GET` takes the next
//! [`Fault`] from a queue the test fills ([`FaultyUpstream::push_faults`]); an empty queue serves
//! normally. Every request is recorded ([`Seen`]), headers included, so tests can count what
//! reached the upstream and check what wharf asked for.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use futures_util::stream;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

use crate::images::{MT_OCI_LAYER_GZIP, MT_OCI_MANIFEST};
use crate::util::sha256_digest;

/// Bytes per body frame: small enough that a hold or a break lands inside the body.
const FRAME: usize = 64 * 1024;
/// The config blob of the manifest: the OCI empty descriptor's content.
const EMPTY_CONFIG: &[u8] = b"{}";
const MT_EMPTY: &str = "application/vnd.oci.empty.v1+json";

/// What one blob `GET` does: by default serve the body (or the asked range) as a registry
/// would; each builder method adds a fault, applied in this order: hold, break, corrupt.
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

    /// Send the bytes before offset `at`, then nothing until [`FaultyUpstream::release`].
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

/// One request the fake answered.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
    pub accept_encoding: Option<String>,
    pub status: u16,
}

impl Seen {
    pub fn is_blob(&self, digest: &str) -> bool {
        self.path.ends_with(&format!("/blobs/{digest}"))
    }
}

struct State {
    blob: Bytes,
    digest: String,
    manifest: String,
    manifest_digest: String,
    ranges: bool,
    faults: Mutex<VecDeque<Fault>>,
    seen: Mutex<Vec<Seen>>,
    released: watch::Sender<bool>,
}

/// The fake upstream. Stops (its runtime and every connection) when dropped.
pub struct FaultyUpstream {
    state: Arc<State>,
    port: u16,
    rt: Option<tokio::runtime::Runtime>,
}

impl FaultyUpstream {
    /// The repository the manifest is served under (any repository serves the blob).
    pub const REPO: &'static str = "faulty/app";
    pub const TAG: &'static str = "latest";

    /// Serves `blob`; honours `Range: bytes=N-` on blobs if `ranges`, else ignores it (200).
    pub fn start(blob: Bytes, ranges: bool) -> FaultyUpstream {
        let digest = sha256_digest(&blob);
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MT_OCI_MANIFEST,
            "config": {"mediaType": MT_EMPTY, "digest": sha256_digest(EMPTY_CONFIG), "size": EMPTY_CONFIG.len()},
            "layers": [{"mediaType": MT_OCI_LAYER_GZIP, "digest": digest, "size": blob.len()}],
        })
        .to_string();
        let state = Arc::new(State {
            manifest_digest: sha256_digest(manifest.as_bytes()),
            manifest,
            blob,
            digest,
            ranges,
            faults: Mutex::new(VecDeque::new()),
            seen: Mutex::new(Vec::new()),
            released: watch::Sender::new(false),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("local_addr").port();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("faulty-upstream")
            .enable_all()
            .build()
            .expect("tokio runtime");
        rt.spawn(serve(listener, state.clone()));
        FaultyUpstream {
            state,
            port,
            rt: Some(rt),
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `sha256:<hex>` of the blob.
    pub fn digest(&self) -> &str {
        &self.state.digest
    }

    pub fn blob(&self) -> &Bytes {
        &self.state.blob
    }

    pub fn manifest_digest(&self) -> &str {
        &self.state.manifest_digest
    }

    /// What the next blob `GET`s do, in order (after any still queued).
    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        lock(&self.state.faults).extend(faults);
    }

    /// Lets every held body (and every later [`Fault::Hold`]) go on.
    pub fn release(&self) {
        self.state.released.send_replace(true);
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Seen> {
        lock(&self.state.seen).clone()
    }

    /// The requests for the blob with this method.
    pub fn blob_requests(&self, method: &str) -> Vec<Seen> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == method && r.is_blob(&self.state.digest))
            .collect()
    }
}

impl Drop for FaultyUpstream {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn serve(listener: std::net::TcpListener, state: Arc<State>) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(&state, req)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

type Body = BoxBody<Bytes, io::Error>;

fn handle(state: &Arc<State>, req: Request<Incoming>) -> Response<Body> {
    let text = |name| {
        req.headers()
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .map(str::to_owned)
    };
    let mut seen = Seen {
        method: req.method().as_str().to_owned(),
        path: req.uri().path().to_owned(),
        range: text(header::RANGE),
        accept_encoding: text(header::ACCEPT_ENCODING),
        status: 0,
    };
    let head = req.method() == Method::HEAD;
    let resp = if req.method() != Method::GET && !head {
        error(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED")
    } else {
        answer(state, &seen, head)
    };
    seen.status = resp.status().as_u16();
    lock(&state.seen).push(seen);
    resp
}

fn answer(state: &Arc<State>, seen: &Seen, head: bool) -> Response<Body> {
    let path = seen.path.as_str();
    if path == "/v2/" {
        return bytes_response(
            StatusCode::OK,
            "application/json",
            Bytes::from_static(b"{}"),
            head,
        );
    }
    if let Some((_, reference)) = path.rsplit_once("/manifests/") {
        if reference != FaultyUpstream::TAG && reference != state.manifest_digest {
            return error(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN");
        }
        let mut resp = bytes_response(
            StatusCode::OK,
            MT_OCI_MANIFEST,
            Bytes::from(state.manifest.clone()),
            head,
        );
        set(&mut resp, "docker-content-digest", &state.manifest_digest);
        return resp;
    }
    let Some((_, digest)) = path.rsplit_once("/blobs/") else {
        return error(StatusCode::NOT_FOUND, "NAME_UNKNOWN");
    };
    if digest == sha256_digest(EMPTY_CONFIG) {
        let mut resp = bytes_response(
            StatusCode::OK,
            "application/octet-stream",
            Bytes::from_static(EMPTY_CONFIG),
            head,
        );
        set(&mut resp, "docker-content-digest", digest);
        return resp;
    }
    if digest != state.digest {
        return error(StatusCode::NOT_FOUND, "BLOB_UNKNOWN");
    }
    let size = state.blob.len() as u64;
    let start = match seen.range.as_deref().filter(|_| state.ranges && !head) {
        None => 0,
        Some(r) => match r.strip_prefix("bytes=").and_then(|r| r.strip_suffix('-')) {
            Some(n) => match n.parse::<u64>() {
                Ok(n) if n < size => n,
                _ => return error(StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UNKNOWN"),
            },
            // The fake only resumes; any other range is not something wharf sends.
            None => return error(StatusCode::BAD_REQUEST, "UNSUPPORTED"),
        },
    };
    let body = if head {
        empty()
    } else {
        let fault = lock(&state.faults).pop_front().unwrap_or_default();
        blob_body(state.clone(), start, fault)
    };
    let status = if start > 0 {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    set(&mut resp, "content-type", "application/octet-stream");
    set(&mut resp, "content-length", &(size - start).to_string());
    set(&mut resp, "docker-content-digest", &state.digest);
    if state.ranges {
        set(&mut resp, "accept-ranges", "bytes");
    }
    if start > 0 {
        set(
            &mut resp,
            "content-range",
            &format!("bytes {start}-{}/{size}", size - 1),
        );
    }
    resp
}

/// The blob from `start`, in frames, doing what `fault` says on the way.
fn blob_body(state: Arc<State>, start: u64, fault: Fault) -> Body {
    let size = state.blob.len() as u64;
    let corrupt_at = fault.corrupt.then_some(size / 2);
    // Offsets at or before `start` are already behind this body.
    let hold_at = fault.hold_at.filter(|&at| at > start);
    let break_at = fault.break_at.filter(|&at| at > start);
    let frames = stream::unfold(Some((start, hold_at)), move |next| {
        let state = state.clone();
        async move {
            let (pos, hold_at) = next?;
            if pos >= size {
                return None;
            }
            if hold_at == Some(pos) {
                let mut released = state.released.subscribe();
                // Only an error if the sender is gone, and the fake owns it.
                let _ = released.wait_for(|r| *r).await;
            }
            if break_at == Some(pos) {
                let broken = io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    "faulty upstream: connection broken mid-body",
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
            let mut chunk = state.blob.slice(pos as usize..end as usize);
            if let Some(at) = corrupt_at.filter(|&at| (pos..end).contains(&at)) {
                let mut changed = chunk.to_vec();
                changed[(at - pos) as usize] ^= 0xff;
                chunk = Bytes::from(changed);
            }
            Some((Ok(Frame::data(chunk)), Some((end, hold_at))))
        }
    });
    BodyExt::boxed(StreamBody::new(frames))
}

fn empty() -> Body {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed()
}

fn bytes_response(
    status: StatusCode,
    content_type: &str,
    body: Bytes,
    head: bool,
) -> Response<Body> {
    let len = body.len();
    let body = if head {
        empty()
    } else {
        http_body_util::Full::new(body)
            .map_err(|never| match never {})
            .boxed()
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    set(&mut resp, "content-type", content_type);
    set(&mut resp, "content-length", &len.to_string());
    resp
}

fn error(status: StatusCode, code: &str) -> Response<Body> {
    let body = serde_json::json!({"errors": [{"code": code, "message": "faulty upstream"}]});
    bytes_response(
        status,
        "application/json",
        Bytes::from(body.to_string()),
        false,
    )
}

fn set(resp: &mut Response<Body>, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
}
