//! A herd of clients: many GETs of one URL released together, each on its own connection,
//! hashing the body as it arrives and noting when its first byte came and when it ended.
//!
//! The tests use it for coalescing (a barrier, then every client at once, then a count that must
//! be one, as moka's `entry_api_tokio` tests do) and for faults (a channel tells the test when
//! each client has its first bytes; a client can hang up right then). The benchmark uses the same
//! client for its timings. Nothing here keeps a body: memory is one frame per client.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

/// How each client of a herd asks.
#[derive(Debug, Clone)]
pub struct Ask {
    pub method: &'static str,
    pub headers: Vec<(String, String)>,
    /// Drop the connection as soon as the first body bytes arrived.
    pub hang_up_after_first_bytes: bool,
    /// The most one client may take, connection to last byte.
    pub timeout: Duration,
    /// Hash the body (`Outcome::digest`); a benchmark may leave it to one client afterwards.
    pub hash: bool,
}

impl Default for Ask {
    fn default() -> Self {
        Ask {
            method: "GET",
            headers: Vec::new(),
            hang_up_after_first_bytes: false,
            timeout: Duration::from_secs(120),
            hash: true,
        }
    }
}

impl Ask {
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn hang_up_after_first_bytes(mut self) -> Self {
        self.hang_up_after_first_bytes = true;
        self
    }
}

/// What one client got.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// 0 if no response head arrived.
    pub status: u16,
    pub headers: HeaderMap,
    /// Body bytes received.
    pub received: u64,
    /// `sha256:<hex>` of the bytes received (empty if not asked to hash).
    pub digest: String,
    /// Why the exchange ended early: connection, body or timeout error, or the hang-up.
    pub error: Option<String>,
    /// When the request was sent (after the barrier).
    pub sent: Instant,
    pub first_byte: Option<Instant>,
    pub done: Instant,
}

impl Outcome {
    /// `Content-Length` as announced.
    pub fn content_length(&self) -> Option<u64> {
        self.headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    /// The whole announced body arrived and the exchange ended without an error.
    pub fn complete(&self) -> bool {
        self.error.is_none() && self.content_length() == Some(self.received)
    }

    /// The body ended before its `Content-Length`, with an error: a broken download.
    pub fn cut_short(&self) -> bool {
        self.error.is_some() && self.content_length().is_some_and(|len| self.received < len)
    }

    /// One line for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "status {} content-length {:?} received {} error {:?}",
            self.status,
            self.content_length(),
            self.received,
            self.error
        )
    }
}

/// One request, streamed and hashed. `first_bytes` hears `index` when the first body bytes
/// arrive.
pub async fn fetch(
    url: &str,
    ask: &Ask,
    index: usize,
    first_bytes: Option<&mpsc::Sender<usize>>,
) -> Outcome {
    let sent = Instant::now();
    let mut out = Outcome {
        status: 0,
        headers: HeaderMap::new(),
        received: 0,
        digest: String::new(),
        error: None,
        sent,
        first_byte: None,
        done: sent,
    };
    let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
    let result = tokio::time::timeout(
        ask.timeout,
        exchange(url, ask, index, first_bytes, &mut out, &mut hash),
    )
    .await
    .unwrap_or_else(|_| Err(format!("no end within {:?}", ask.timeout)));
    if let Err(e) = result {
        out.error = Some(e);
    }
    if ask.hash {
        out.digest = format!("sha256:{}", hex::encode(hash.finish()));
    }
    out.done = Instant::now();
    out
}

async fn exchange(
    url: &str,
    ask: &Ask,
    index: usize,
    first_bytes: Option<&mpsc::Sender<usize>>,
    out: &mut Outcome,
    hash: &mut ring::digest::Context,
) -> Result<(), String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let authority = uri
        .authority()
        .ok_or_else(|| format!("{url}: no host"))?
        .clone();
    let tcp = tokio::net::TcpStream::connect(authority.as_str())
        .await
        .map_err(|e| format!("connect {authority}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    // Aborted when this exchange ends, which closes the socket: a hang-up is a real one.
    let conn = AbortOnDrop(tokio::spawn(conn));
    let mut req = Request::builder()
        .method(ask.method)
        .uri(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(http::header::HOST, authority.as_str());
    for (k, v) in &ask.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("request: {e}"))?;
    out.sent = Instant::now();
    let resp = send
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    out.status = resp.status().as_u16();
    out.headers = resp.headers().clone();
    let mut body = resp.into_body();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("body: {e}"))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        if ask.hash {
            hash.update(&data);
        }
        out.received += data.len() as u64;
        if out.first_byte.is_none() {
            out.first_byte = Some(Instant::now());
            if let Some(tx) = first_bytes {
                let _ = tx.send(index);
            }
            if ask.hang_up_after_first_bytes {
                drop(body);
                drop(conn);
                return Err("hung up after the first bytes".into());
            }
        }
    }
    drop(conn);
    Ok(())
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `n` clients of `url`: each connects, waits at a barrier for the others, then asks at once.
pub async fn run(
    url: &str,
    n: usize,
    ask: &Ask,
    first_bytes: Option<mpsc::Sender<usize>>,
) -> Vec<Outcome> {
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let (url, ask, barrier, tx) = (
            url.to_owned(),
            ask.clone(),
            barrier.clone(),
            first_bytes.clone(),
        );
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            fetch(&url, &ask, i, tx.as_ref()).await
        }));
    }
    let mut outcomes = Vec::with_capacity(n);
    for t in tasks {
        outcomes.push(t.await.expect("herd client task panicked"));
    }
    outcomes
}

/// A herd running on its own threads while the test goes on (to release a held upstream, or
/// to kill the mirror under it).
pub struct Herd {
    thread: Option<std::thread::JoinHandle<Vec<Outcome>>>,
    first_bytes: mpsc::Receiver<usize>,
}

impl Herd {
    /// Starts `n` clients of `url` (a runtime of two workers).
    pub fn spawn(url: &str, n: usize, ask: Ask) -> Herd {
        let (tx, rx) = mpsc::channel();
        let url = url.to_owned();
        let thread = std::thread::Builder::new()
            .name("herd".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("tokio runtime");
                rt.block_on(run(&url, n, &ask, Some(tx)))
            })
            .expect("spawn herd thread");
        Herd {
            thread: Some(thread),
            first_bytes: rx,
        }
    }

    /// Waits until `n` clients (counting from the start) have had their first body bytes;
    /// panics after `timeout`.
    pub fn wait_first_bytes(&self, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        for got in 0..n {
            let left = deadline.saturating_duration_since(Instant::now());
            if self.first_bytes.recv_timeout(left).is_err() {
                panic!("only {got} of {n} clients had their first bytes within {timeout:?}");
            }
        }
    }

    /// Waits for every client to end.
    pub fn join(mut self) -> Vec<Outcome> {
        self.thread
            .take()
            .expect("joined once")
            .join()
            .expect("herd thread panicked")
    }
}

/// Runs a herd to its end on a fresh runtime (blocking).
pub fn run_blocking(url: &str, n: usize, ask: Ask) -> Vec<Outcome> {
    Herd::spawn(url, n, ask).join()
}

/// One herd measured through a mirror: the clients' outcomes, what reached the upstream for the
/// blob, whether the bytes were right, and the mirror's CPU time and peak memory.
pub struct HerdRun {
    pub outcomes: Vec<Outcome>,
    /// Clients (or the one extra checking client) whose bytes had the right digest.
    pub right: usize,
    pub checked: usize,
    pub upstream_gets: usize,
    pub upstream_heads: usize,
    /// Bytes of the upstream's GETs for the blob.
    pub upstream_bytes: u64,
    /// The mirror's CPU time during the herd.
    pub cpu: Option<Duration>,
    /// The mirror's peak RSS after the herd.
    pub rss_kib: Option<u64>,
}

impl HerdRun {
    pub fn complete(&self) -> usize {
        self.outcomes.iter().filter(|o| o.complete()).count()
    }

    /// When the first request was sent.
    pub fn origin(&self) -> Instant {
        self.outcomes
            .iter()
            .map(|o| o.sent)
            .min()
            .expect("a herd has clients")
    }

    /// From the first request sent to the last client done.
    pub fn total(&self) -> Duration {
        let last = self.outcomes.iter().map(|o| o.done).max().expect("clients");
        last - self.origin()
    }

    /// Each client's first byte, from the first request sent; sorted.
    pub fn first_bytes(&self) -> Vec<Duration> {
        let origin = self.origin();
        let mut v: Vec<Duration> = self
            .outcomes
            .iter()
            .filter_map(|o| o.first_byte.map(|t| t - origin))
            .collect();
        v.sort();
        v
    }

    /// How much later the last client's first byte came than the first client's.
    pub fn spread(&self) -> Duration {
        let fb = self.first_bytes();
        match (fb.first(), fb.last()) {
            (Some(a), Some(b)) => *b - *a,
            _ => Duration::MAX,
        }
    }
}

/// `n` clients at once on `url` (the blob `digest`) through the mirror running as `mirror_pid`,
/// with `up` behind it. With `hash`, every client hashes what it got; without, the clients only
/// count bytes and one more GET afterwards checks the digest.
pub fn measure(
    rt: &tokio::runtime::Runtime,
    up: &crate::Upstream,
    url: &str,
    digest: &str,
    n: usize,
    hash: bool,
    mirror_pid: Option<u32>,
) -> HerdRun {
    let mark = up.mark();
    let ask = Ask {
        hash,
        timeout: Duration::from_secs(300),
        ..Ask::default()
    };
    let cpu_now = || mirror_pid.and_then(crate::bench::cpu_time);
    let cpu_before = cpu_now();
    let outcomes = rt.block_on(run(url, n, &ask, None));
    let cpu = cpu_now()
        .zip(cpu_before)
        .map(|(after, before)| after.saturating_sub(before));
    let rss_kib = mirror_pid.and_then(crate::bench::peak_rss_kib);
    let (right, checked) = if hash {
        let right = outcomes
            .iter()
            .filter(|o| o.complete() && o.digest == digest)
            .count();
        (right, n)
    } else {
        let check = rt.block_on(fetch(url, &Ask::default(), 0, None));
        (usize::from(check.complete() && check.digest == digest), 1)
    };
    // `since` waits for the upstream's log to settle: a proxy may still be downloading.
    let reqs: Vec<_> = up
        .since(mark)
        .into_iter()
        .filter(|r| r.path_only().ends_with(digest))
        .collect();
    let gets: Vec<_> = reqs.iter().filter(|r| r.method == "GET").collect();
    HerdRun {
        right,
        checked,
        upstream_gets: gets.len(),
        upstream_heads: reqs.iter().filter(|r| r.method == "HEAD").count(),
        upstream_bytes: gets.iter().map(|r| r.bytes).sum(),
        cpu,
        rss_kib,
        outcomes,
    }
}
