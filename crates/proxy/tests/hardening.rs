//! The listener's bounds against a real socket (limits.rs, server.rs), the fill bound
//! (`cache.max_concurrent_fills`), and properties of routing: no request path, however encoded,
//! names a file outside the store or an upstream that is not configured.
//!
//! "Still waiting" is always observed, never inferred from a sleep: a connection beyond the bound
//! is seen in the listener's accept queue, a download is seen held by the fake upstream
//! (`wharf_testkit::FakeRegistry`, which holds blob bodies until released).

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

use std::net::SocketAddr;
use std::path::{Component, Path};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wharf_cache::Store;
use wharf_oci::Digest;
use wharf_proxy::limits::Limits;
use wharf_proxy::route::{self, Resource};
use wharf_proxy::{Proxy, ProxyOptions, ServerOptions, Upstream, Upstreams};
use wharf_testkit::{FakeRegistry, Fault};

/// Bounds a wait on a positive signal: a hang fails the test instead of hanging CI.
async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .unwrap_or_else(|_| panic!("{what}: not within 30 s"))
}

fn upstream(name: &str, url: &str, prefixes: &[&str], default: bool) -> Upstream {
    Upstream::anonymous(name, url, prefixes, default).expect("upstream")
}

/// wharf's listener with `proxy` on a free port; stops when the returned sender drops.
async fn listen(
    proxy: Arc<Proxy>,
    limits: Limits,
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let options = ServerOptions { tls: None, limits };
    tokio::spawn(wharf_proxy::serve_with(
        listener,
        proxy,
        async move {
            let _ = rx.await;
        },
        Duration::from_secs(1),
        options,
    ));
    (addr, tx)
}

async fn dead_proxy(dir: &Path, options: ProxyOptions) -> Arc<Proxy> {
    let store = Store::open(dir).await.expect("store");
    // A port nobody listens on: a request that got that far would be a 5xx.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let ups = vec![upstream("dead", &format!("http://{dead}"), &["dead"], true)];
    Proxy::with_options(Upstreams::new(ups), store, options)
}

/// Sends raw bytes and returns the status line's code (0 if the connection closed first).
async fn raw_status(addr: SocketAddr, request: &[u8]) -> u16 {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    // The server may answer and close before it read everything we send.
    let _ = s.write_all(request).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn get(path: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: wharf\r\nConnection: close\r\n{extra}\r\n").into_bytes()
}

#[tokio::test]
async fn oversized_requests_get_4xx_over_http1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let proxy = dead_proxy(dir.path(), ProxyOptions::default()).await;
    let (addr, _stop) = listen(proxy, Limits::default()).await;

    let long = format!("/v2/a/manifests/{}", "x".repeat(5000));
    assert_eq!(raw_status(addr, &get(&long, "")).await, 414);
    let query = format!("/v2/a/tags/list?last={}", "y".repeat(3000));
    assert_eq!(raw_status(addr, &get(&query, "")).await, 414);
    let big_header = format!("X-Pad: {}\r\n", "z".repeat(200 * 1024));
    assert_eq!(raw_status(addr, &get("/v2/", &big_header)).await, 431);
    let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    assert_eq!(raw_status(addr, &get("/v2/", &many)).await, 431);
    let body = format!("Content-Length: 5000\r\n\r\n{}", "b".repeat(5000));
    let with_body = format!("GET /v2/ HTTP/1.1\r\nHost: wharf\r\nConnection: close\r\n{body}");
    assert_eq!(raw_status(addr, with_body.as_bytes()).await, 413);
    let chunked = "GET /v2/ HTTP/1.1\r\nHost: wharf\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    assert_eq!(raw_status(addr, chunked.as_bytes()).await, 413);
    let upload = "POST /v2/a/blobs/uploads/ HTTP/1.1\r\nHost: wharf\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(raw_status(addr, upload.as_bytes()).await, 405);
    // A small GET still works.
    assert_eq!(raw_status(addr, &get("/v2/", "")).await, 200);
}

#[tokio::test]
async fn oversized_requests_get_4xx_over_h2c() {
    let dir = tempfile::tempdir().expect("tempdir");
    let proxy = dead_proxy(dir.path(), ProxyOptions::default()).await;
    let (addr, _stop) = listen(proxy, Limits::default()).await;
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut send, conn) = hyper::client::conn::http2::handshake::<
        _,
        _,
        http_body_util::Empty<Bytes>,
    >(TokioExecutor::new(), TokioIo::new(stream))
    .await
    .expect("h2c handshake");
    tokio::spawn(conn);
    let mut status = |path: String, pad: usize| {
        let req = http::Request::get(format!("http://wharf{path}"))
            .header("x-pad", "p".repeat(pad))
            .body(http_body_util::Empty::new())
            .expect("request");
        send.send_request(req)
    };
    let r = status(format!("/v2/a/manifests/{}", "x".repeat(5000)), 0)
        .await
        .expect("answer");
    assert_eq!(r.status(), 414);
    let r = status("/v2/".into(), 0).await.expect("answer");
    assert_eq!(r.status(), 200);
    // Over the header-list limit: a 431 or a refused stream, never a 5xx.
    match status("/v2/".into(), 100 * 1024).await {
        Ok(r) => assert!(r.status().is_client_error(), "{}", r.status()),
        Err(e) => eprintln!("oversized h2 header list refused at the h2 layer: {e}"),
    }
}

/// At the bound the connections are idle kept-alive ones: the third client is served at once
/// and the longest-idle one is closed, so there are never more than two (connections.rs
/// has the case where every place is busy: then the newcomer waits).
#[tokio::test]
async fn at_max_connections_an_idle_one_makes_room_for_a_new_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let proxy = dead_proxy(dir.path(), ProxyOptions::default()).await;
    let limits = Limits {
        max_connections: 2,
        ..Limits::default()
    };
    let (addr, _stop) = listen(proxy, limits).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: w\r\n\r\n")
            .await
            .expect("write");
        let answer = read_response(&mut s).await;
        assert_eq!(&answer[..12], b"HTTP/1.1 200");
        held.push(s);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = tokio::time::timeout(Duration::from_secs(1), raw_status(addr, &get("/v2/", "")))
        .await
        .expect("a new client at the bound is served within a second");
    assert_eq!(status, 200);
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(1), held[0].read_to_end(&mut rest)).await;
    assert!(
        matches!(read, Ok(Ok(_)) | Ok(Err(_))),
        "the longest-idle connection was not closed: the bound did not hold"
    );
}

/// One HTTP/1.1 response on a keep-alive connection: its head and its `Content-Length` body.
async fn read_response(s: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).await.expect("answered");
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.expect("body");
    buf.extend(body);
    buf
}

fn blob_bytes(n: u8) -> Vec<u8> {
    vec![n; 64 * 1024]
}

/// An upstream serving blobs `b0`..`b7` of `app` whose bodies it holds (the head sent, no byte
/// of the body) until released: a download stays in flight for as long as the test wants.
fn held_blobs() -> FakeRegistry {
    let fake = (0..8)
        .fold(FakeRegistry::builder(), |b, n| b.blob("app", blob_bytes(n)))
        .start();
    fake.push_faults((0..8).map(|_| Fault::new().hold_at(0)));
    fake
}

/// A proxy whose only upstream is `fake`, with at most `max_fills` downloads at once; the
/// store lives in `dir`.
async fn slow_proxy(fake: &FakeRegistry, dir: &Path, max_fills: usize) -> (Arc<Proxy>, Arc<Store>) {
    let store = Store::open(dir).await.expect("store");
    let ups = vec![upstream("slow", &fake.url(), &["slow"], true)];
    let options = ProxyOptions {
        max_concurrent_fills: max_fills,
        ..ProxyOptions::default()
    };
    let proxy = Proxy::with_options(Upstreams::new(ups), store.clone(), options);
    (proxy, store)
}

/// Pulls blobs `b0`.. at once, holding their downloads until as many as `max_fills` run (a
/// positive signal that the bound lets that many start); the most downloads seen at once.
async fn pull_blobs_at_once(max_fills: usize, blobs: u8) -> usize {
    let fake = held_blobs();
    let dir = tempfile::tempdir().expect("tempdir");
    let (proxy, _store) = slow_proxy(&fake, dir.path(), max_fills).await;
    let tasks: Vec<_> = (0..blobs)
        .map(|n| {
            let proxy = proxy.clone();
            tokio::spawn(async move {
                let d = Digest::sha256_of(&blob_bytes(n));
                let req = http::Request::get(format!("/v2/app/blobs/{d}"))
                    .body(http_body_util::Empty::<bytes::Bytes>::new())
                    .expect("req");
                let resp = proxy.handle(req).await;
                assert_eq!(resp.status(), 200);
                let body = resp.into_body().collect().await.expect("body").to_bytes();
                assert_eq!(body.as_ref(), blob_bytes(n).as_slice());
            })
        })
        .collect();
    let running = max_fills.min(usize::from(blobs));
    bounded(
        "downloads held at the upstream",
        fake.wait_until(|f| f.in_flight() >= running),
    )
    .await;
    fake.release();
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .expect("bounded")
            .expect("blob served");
    }
    assert_eq!(fake.in_flight(), 0);
    fake.max_in_flight()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fills_beyond_the_bound_wait_for_a_turn() {
    assert_eq!(pull_blobs_at_once(1, 3).await, 1, "one fill at a time");
    assert_eq!(
        pull_blobs_at_once(3, 3).await,
        3,
        "the bound is what limits them"
    );
}

/// Path pieces an attacker would try.
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("..".to_owned()),
        Just("%2e%2e".to_owned()),
        Just("%2E%2e".to_owned()),
        Just(".".to_owned()),
        Just("".to_owned()),
        Just("%00".to_owned()),
        Just("\0".to_owned()),
        Just("%2f".to_owned()),
        Just("v2".to_owned()),
        Just("blobs".to_owned()),
        Just("manifests".to_owned()),
        Just("tags".to_owned()),
        Just("list".to_owned()),
        Just("dead".to_owned()),
        Just("evil.example.com".to_owned()),
        Just("127.0.0.1:1".to_owned()),
        Just(format!("sha256:{}", "a".repeat(64))),
        Just(format!("sha256:{}", "A".repeat(64))),
        Just("sha256:../../etc/passwd".to_owned()),
        "[a-z0-9._:%-]{1,12}",
        "\\PC{1,8}",
        "x{1000,1100}",
    ]
}

fn path() -> impl Strategy<Value = String> {
    (
        proptest::collection::vec(piece(), 1..10),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(pieces, v2, trailing)| {
            let mut p = String::from(if v2 { "/v2/" } else { "/" });
            p += &pieces.join("/");
            if trailing {
                p.push('/');
            }
            p
        })
}

/// One configured upstream, `dead`, and no default: anything else must be refused.
static ONLY_DEAD: std::sync::LazyLock<Upstreams> = std::sync::LazyLock::new(|| {
    Upstreams::new(vec![upstream(
        "dead",
        "http://127.0.0.1:9",
        &["dead"],
        false,
    )])
});

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn no_path_escapes_the_store_or_reaches_an_unconfigured_upstream(
        path in path(),
        ns in proptest::option::of(prop_oneof![Just("dead".to_owned()), Just("evil.example.com".to_owned()), "\\PC{0,12}"]),
    ) {
        let Ok(parsed) = route::parse_path(&path) else { return Ok(()) };
        prop_assert!(path.len() <= route::MAX_PATH_LEN);
        let digest = match &parsed.resource {
            Resource::Blob { digest, .. } | Resource::Referrers { digest, .. } => Some(digest.clone()),
            Resource::Manifest { reference, .. } => reference.as_digest().cloned(),
            _ => None,
        };
        if let Some(d) = digest {
            prop_assert!(d.hex().bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
            // The store's rule: blobs/<alg>/<2 hex>/<hex>.
            let rel = Path::new("blobs").join(d.algorithm().as_str()).join(&d.hex()[..2]).join(d.hex());
            prop_assert!(rel.components().all(|c| matches!(c, Component::Normal(_))));
        }
        let Some(name) = parsed.resource.name() else { return Ok(()) };
        for c in name.components() {
            prop_assert!(!c.is_empty() && c != "." && c != ".." && !c.contains('%') && !c.contains('\0'));
        }
        if let Ok(target) = ONLY_DEAD.select(ns.as_deref(), parsed.mount.as_deref(), name) {
            prop_assert_eq!(&target.upstream.name, "dead");
            let is_dead = |s: Option<&str>| s.is_some_and(|s| s.eq_ignore_ascii_case("dead"));
            let named = is_dead(ns.as_deref())
                || (ns.is_none() && is_dead(parsed.mount.as_deref()))
                || (ns.is_none() && parsed.mount.is_none() && is_dead(name.components().next()));
            prop_assert!(named, "no default upstream, yet {path} ns={ns:?} was routed");
            for c in target.repo.components() {
                prop_assert!(!c.is_empty() && c != "." && c != "..");
            }
        }
    }
}

/// The bound is on downloads, not readers: with every place taken, a request for a blob that
/// is already being downloaded joins that download instead of waiting for a place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_a_fill_in_flight_needs_no_place() {
    let fake = held_blobs();
    let dir = tempfile::tempdir().expect("tempdir");
    let (proxy, store) = slow_proxy(&fake, dir.path(), 1).await;
    let d = Digest::sha256_of(&blob_bytes(0));
    let path = format!("/v2/app/blobs/{d}");
    let get = |proxy: Arc<Proxy>| {
        let req = http::Request::get(path.clone())
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .expect("req");
        async move { proxy.handle(req).await }
    };
    let first = get(proxy.clone()).await;
    assert_eq!(first.status(), 200);
    // The only place is held by the first download, whose body the fake holds until released.
    let second = tokio::time::timeout(Duration::from_secs(30), get(proxy.clone()))
        .await
        .expect("bounded");
    assert_eq!(second.status(), 200);
    assert!(
        !store.contains(&d) && fake.in_flight() == 1,
        "the second request waited for the first download to end instead of joining it"
    );
    fake.release();
    for resp in [first, second] {
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(body.as_ref(), blob_bytes(0).as_slice());
    }
    assert_eq!(fake.max_in_flight(), 1, "one download");
}
