//! [`FakeRegistry`]: its builder, and the handle a test holds to script it and read what it saw.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use tokio::sync::watch;

use crate::body::Counters;
use crate::content::Content;
use crate::{Fault, Reply, Seen, TlsFiles, serve};

/// Answers a request itself.
pub(crate) type Handler = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;
/// Answers a request itself, or lets it through (`None`).
pub(crate) type Gate = Arc<dyn Fn(&Seen) -> Option<Reply> + Send + Sync>;

/// Everything the server reads; the handle writes the mutable parts.
pub(crate) struct State {
    pub(crate) content: Mutex<Content>,
    pub(crate) gate: Option<Gate>,
    pub(crate) routes: Vec<(Method, String, Handler)>,
    pub(crate) fallback: Option<Handler>,
    pub(crate) latency: Duration,
    pub(crate) ranges: bool,
    /// Set by [`FakeRegistry::respond_with`]: the answer to every request.
    pub(crate) script: Mutex<Option<Reply>>,
    pub(crate) faults: Mutex<VecDeque<Fault>>,
    pub(crate) released: watch::Sender<bool>,
    pub(crate) seen: Mutex<Vec<Seen>>,
    pub(crate) counters: Arc<Counters>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking handler is the test's failure to report, not a reason to stop recording.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How a fake registry is put together. Each request is answered by the first of: a scripted
/// answer ([`FakeRegistry::respond_with`]), the [`gate`](Builder::gate), a
/// [`route`](Builder::route), the content ([`manifest`](Builder::manifest),
/// [`blob`](Builder::blob), [`image`](Builder::image)), the [`fallback`](Builder::fallback),
/// and last what a registry says to what it does not know (`/v2/` is `200 {}`, else 404).
#[must_use]
pub struct Builder {
    content: Content,
    gate: Option<Gate>,
    routes: Vec<(Method, String, Handler)>,
    fallback: Option<Handler>,
    latency: Duration,
    ranges: bool,
    faults: VecDeque<Fault>,
    tls: Option<TlsFiles>,
}

impl Builder {
    /// Serves `bytes` as `repo:tag` and `repo@digest`, with `Content-Type: media_type`.
    pub fn manifest(
        mut self,
        repo: &str,
        tag: &str,
        bytes: impl Into<Bytes>,
        media_type: &str,
    ) -> Builder {
        self.content
            .put_manifest(repo, tag, bytes.into(), media_type);
        self
    }

    /// Serves `bytes` as the blob `repo@sha256:<hex of bytes>`.
    pub fn blob(mut self, repo: &str, bytes: impl Into<Bytes>) -> Builder {
        self.content.put_blob(repo, bytes.into());
        self
    }

    /// Serves an OCI image `repo:tag`: an empty config (`{}`) and `layers` as its blobs.
    pub fn image(mut self, repo: &str, tag: &str, layers: &[Bytes]) -> Builder {
        self.content.put_image(repo, tag, layers);
        self
    }

    /// Whether blobs honour `Range: bytes=N-` (default: yes); if not, a `Range` is ignored.
    pub fn ranges(mut self, ranges: bool) -> Builder {
        self.ranges = ranges;
        self
    }

    /// Answers `method path` (the path exactly, without the query) with `handler`.
    pub fn route(
        mut self,
        method: Method,
        path: &str,
        handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
    ) -> Builder {
        self.routes
            .push((method, path.to_owned(), Arc::new(handler)));
        self
    }

    /// Answers whatever nothing else does.
    pub fn fallback(mut self, handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Builder {
        self.fallback = Some(Arc::new(handler));
        self
    }

    /// Looks at every request before routes and content: answers it (`Some`, e.g. a 401 with
    /// a challenge) or lets it through (`None`).
    pub fn gate(
        mut self,
        gate: impl Fn(&Seen) -> Option<Reply> + Send + Sync + 'static,
    ) -> Builder {
        self.gate = Some(Arc::new(gate));
        self
    }

    /// Delays every answer's head by `latency` (real time).
    pub fn latency(mut self, latency: Duration) -> Builder {
        self.latency = latency;
        self
    }

    /// Queues a fault for the next blob `GET` (see [`FakeRegistry::push_faults`]).
    pub fn fault(mut self, fault: Fault) -> Builder {
        self.faults.push_back(fault);
        self
    }

    /// Speaks HTTPS (HTTP/1.1) with this certificate chain and key.
    pub fn tls(mut self, files: TlsFiles) -> Builder {
        self.tls = Some(files);
        self
    }

    /// Binds `127.0.0.1:0` and serves on a runtime of its own, until the handle is dropped.
    ///
    /// # Panics
    /// If the socket, the runtime or the TLS files cannot be set up.
    pub fn start(self) -> FakeRegistry {
        let state = Arc::new(State {
            content: Mutex::new(self.content),
            gate: self.gate,
            routes: self.routes,
            fallback: self.fallback,
            latency: self.latency,
            ranges: self.ranges,
            script: Mutex::new(None),
            faults: Mutex::new(self.faults),
            released: watch::Sender::new(false),
            seen: Mutex::new(Vec::new()),
            counters: Arc::new(Counters::new()),
        });
        let tls = self.tls.is_some();
        let (addr, rt) = serve::start(state.clone(), self.tls.as_ref());
        FakeRegistry {
            state,
            addr,
            tls,
            rt: Some(rt),
        }
    }
}

/// A running fake registry. Stops (its runtime and every connection) when dropped.
pub struct FakeRegistry {
    state: Arc<State>,
    addr: SocketAddr,
    tls: bool,
    rt: Option<tokio::runtime::Runtime>,
}

impl FakeRegistry {
    pub fn builder() -> Builder {
        Builder {
            content: Content::default(),
            gate: None,
            routes: Vec::new(),
            fallback: None,
            latency: Duration::ZERO,
            ranges: true,
            faults: VecDeque::new(),
            tls: None,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` (`https` with [`Builder::tls`]).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Seen> {
        lock(&self.state.seen).clone()
    }

    /// Every request so far, forgetting them: the next call returns only newer ones.
    pub fn take_requests(&self) -> Vec<Seen> {
        std::mem::take(&mut *lock(&self.state.seen))
    }

    /// How many requests' paths start with `prefix`.
    pub fn count(&self, prefix: &str) -> usize {
        lock(&self.state.seen)
            .iter()
            .filter(|s| s.path.starts_with(prefix))
            .count()
    }

    /// The requests with `method` for the blob `digest`, in any repository.
    pub fn blob_requests(&self, method: &str, digest: &str) -> Vec<Seen> {
        lock(&self.state.seen)
            .iter()
            .filter(|s| s.method == method && s.is_blob(digest))
            .cloned()
            .collect()
    }

    /// Requests that arrived and whose answer has not been sent whole yet.
    pub fn in_flight(&self) -> usize {
        self.state.counters.in_flight.load(Ordering::SeqCst)
    }

    /// The most requests there were in flight at once.
    pub fn max_in_flight(&self) -> usize {
        self.state.counters.most.load(Ordering::SeqCst)
    }

    /// Returns once `cond` holds; checked on every arrival and every answer's end. Unbounded:
    /// the caller bounds it (a timeout that fails the test).
    pub async fn wait_until(&self, cond: impl Fn(&FakeRegistry) -> bool) {
        let mut changed = self.state.counters.changed.subscribe();
        while !cond(self) {
            if changed.changed().await.is_err() {
                return;
            }
        }
    }

    /// What the next blob `GET`s do, in order (after any still queued).
    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        lock(&self.state.faults).extend(faults);
    }

    /// Lets every held body (and every later hold) go on.
    pub fn release(&self) {
        self.state.released.send_replace(true);
    }

    /// Answers every request with `reply` (a `503`, a `429` with `Retry-After`, a hang) until
    /// [`FakeRegistry::serve_normally`].
    pub fn respond_with(&self, reply: Reply) {
        *lock(&self.state.script) = Some(reply);
    }

    /// [`FakeRegistry::respond_with`] an empty answer with this status.
    pub fn set_status(&self, status: u16) {
        self.respond_with(Reply::new(status));
    }

    /// Ends [`FakeRegistry::respond_with`]: requests are routed again.
    pub fn serve_normally(&self) {
        *lock(&self.state.script) = None;
    }

    /// Files `bytes` under `repo:tag` (moving the tag) and its digest, which it returns.
    pub fn put_manifest(
        &self,
        repo: &str,
        tag: &str,
        bytes: impl Into<Bytes>,
        media_type: &str,
    ) -> String {
        lock(&self.state.content).put_manifest(repo, tag, bytes.into(), media_type)
    }

    /// The digest of the manifest `repo:reference`, if served.
    pub fn manifest_digest(&self, repo: &str, reference: &str) -> Option<String> {
        lock(&self.state.content).manifest_digest(repo, reference)
    }
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            // Not `drop(rt)`: that blocks, and may run inside a test's async context.
            rt.shutdown_background();
        }
    }
}
