//! Stored blobs through wharf's listener: on plain HTTP/1.1 they go out with `sendfile(2)`
//! (sendfile.rs), over h2c they are copied. Either way the client gets the stored bytes, whole
//! or the range it asked for, and the connection goes on serving the next request.

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use wharf_cache::{ScopeKey, Store};
use wharf_oci::Digest;
use wharf_proxy::{Proxy, Upstream, Upstreams};

/// Larger than the socket buffers, so that sending waits for the client many times over.
const SIZE: usize = 24 * 1024 * 1024 + 12_345;

fn content() -> Vec<u8> {
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    (0..SIZE)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// wharf with one stored piece of content (stored as a manifest is: content is content) and an
/// upstream nobody listens on, on a free port.
async fn wharf_with(data: &[u8], dir: &std::path::Path) -> (SocketAddr, Digest) {
    let store = Store::open(dir).await.expect("store");
    let d = Digest::sha256_of(data);
    store
        .put_manifest(&d, "application/octet-stream", data)
        .await
        .expect("store the content");
    // Known to be held by the repository the requests name: the dead upstream is never asked.
    store.add_scope(ScopeKey {
        upstream: "dead",
        repository: "a",
        digest: &d,
    });
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let up =
        Upstream::anonymous("dead", &format!("http://{dead}"), &["dead"], true).expect("upstream");
    let proxy: Arc<Proxy> = Proxy::new(Upstreams::new(vec![up]), store);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(wharf_proxy::serve(
        listener,
        proxy,
        std::future::pending(),
        Duration::from_secs(1),
    ));
    (addr, d)
}

fn request(method: &str, d: &Digest, range: Option<&str>) -> Request<Empty<Bytes>> {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("/v2/dead/a/blobs/{d}"))
        .header(header::HOST, "wharf");
    if let Some(r) = range {
        req = req.header(header::RANGE, r);
    }
    req.body(Empty::new()).expect("request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_keep_alive_gets_whole_blobs_and_ranges() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = content();
    let (addr, d) = wharf_with(&data, dir.path()).await;
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);

    // One connection: whole, a range, HEAD, a suffix range, whole again.
    let cases: [(&str, Option<&str>, StatusCode, &[u8]); 5] = [
        ("GET", None, StatusCode::OK, &data),
        (
            "GET",
            Some("bytes=1000-3000000"),
            StatusCode::PARTIAL_CONTENT,
            &data[1000..=3_000_000],
        ),
        ("HEAD", None, StatusCode::OK, b""),
        (
            "GET",
            Some("bytes=-70000"),
            StatusCode::PARTIAL_CONTENT,
            &data[SIZE - 70_000..],
        ),
        ("GET", None, StatusCode::OK, &data),
    ];
    for (method, range, status, want) in cases {
        send.ready().await.expect("connection still open");
        let resp = send
            .send_request(request(method, &d, range))
            .await
            .expect("answer");
        assert_eq!(resp.status(), status, "{method} {range:?}");
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(body.len(), want.len(), "{method} {range:?}");
        assert!(body[..] == want[..], "{method} {range:?}: other bytes");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_http1_clients_each_get_their_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = Arc::new(content());
    let (addr, d) = wharf_with(&data, dir.path()).await;
    let clients = (0..4u64).map(|i| {
        let (data, d) = (data.clone(), d.clone());
        tokio::spawn(async move {
            let stream = TcpStream::connect(addr).await.expect("connect");
            let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .expect("handshake");
            tokio::spawn(conn);
            let start = i * 1_000_003;
            let range = format!("bytes={start}-");
            let resp = send
                .send_request(request("GET", &d, Some(&range)))
                .await
                .expect("answer");
            let body = resp.into_body().collect().await.expect("body").to_bytes();
            assert!(
                body[..] == data[start as usize..],
                "client {i}: other bytes"
            );
        })
    });
    for c in clients {
        c.await.expect("client");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_gets_the_same_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = content();
    let (addr, d) = wharf_with(&data, dir.path()).await;
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2c handshake");
    tokio::spawn(conn);
    let mut req = request("GET", &d, Some("bytes=5-"));
    *req.uri_mut() = format!("http://wharf/v2/dead/a/blobs/{d}")
        .parse()
        .expect("uri");
    let resp = send.send_request(req).await.expect("answer");
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    assert!(body[..] == data[5..], "h2c: other bytes");
}
