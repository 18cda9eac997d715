//! The connection bound (issue 13 #5): a client arriving when every place is taken by idle
//! kept-alive connections is served at once, because the longest-idle one is closed to make
//! room (as nginx does); a connection in the middle of an answer is never the one closed.
//! And what is no HTTP request at all (garbage, a TLS handshake on the plain port, HTTP/0.9,
//! plain HTTP on the TLS port) gets a 400 with the spec's error JSON, not an empty answer
//! (issue 13 #9).

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use wharf_proxy::limits::Limits;
use wharf_proxy::{Body, ServerOptions, Service};

/// Answers `/fast` at once and `/slow` with a body that waits for `release`.
struct App {
    release: Arc<Notify>,
}

impl Service for App {
    async fn call(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        if req.uri().path() == "/slow" {
            let release = self.release.clone();
            let body = futures_util::stream::once(async move {
                release.notified().await;
                Ok::<_, std::io::Error>(http_body::Frame::data(Bytes::from_static(b"late")))
            });
            return Response::new(http_body_util::StreamBody::new(body).boxed_unsync());
        }
        Response::new(
            http_body_util::Full::new(Bytes::from_static(b"ok"))
                .map_err(|never| match never {})
                .boxed_unsync(),
        )
    }
}

async fn start(max_connections: usize) -> (std::net::SocketAddr, Arc<Notify>) {
    start_with(max_connections, None).await
}

async fn start_with(
    max_connections: usize,
    tls: Option<Arc<wharf_proxy::tls::Tls>>,
) -> (std::net::SocketAddr, Arc<Notify>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let release = Arc::new(Notify::new());
    let app = Arc::new(App {
        release: release.clone(),
    });
    let options = ServerOptions {
        tls,
        limits: Limits {
            max_connections,
            ..Limits::default()
        },
    };
    tokio::spawn(wharf_proxy::serve_with(
        listener,
        app,
        std::future::pending(),
        Duration::from_secs(1),
        options,
    ));
    (addr, release)
}

/// Sends one keep-alive GET and reads the head of the answer (and `ok` bodies whole).
async fn get(conn: &mut TcpStream, path: &str) -> String {
    let req = format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n");
    conn.write_all(req.as_bytes()).await.expect("write");
    let mut buf = vec![0u8; 4096];
    let mut got = String::new();
    while !got.contains("\r\n\r\n") || (path == "/fast" && !got.ends_with("ok")) {
        let n = conn.read(&mut buf).await.expect("read");
        assert!(
            n > 0,
            "closed while waiting for an answer to {path}: {got:?}"
        );
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    got
}

/// Whether the server closed `conn` (EOF within `within`).
async fn closed(conn: &mut TcpStream, within: Duration) -> bool {
    let mut b = [0u8; 16];
    matches!(
        tokio::time::timeout(within, conn.read(&mut b)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test]
async fn at_the_bound_the_longest_idle_keepalive_connection_makes_room() {
    let (addr, _release) = start(3).await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        let mut c = TcpStream::connect(addr).await.expect("connect");
        assert!(get(&mut c, "/fast").await.starts_with("HTTP/1.1 200"));
        idle.push(c);
        // Distinct last-activity times, so "longest idle" is the first.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut newcomer = TcpStream::connect(addr).await.expect("connect");
    let answered = tokio::time::timeout(Duration::from_secs(1), get(&mut newcomer, "/fast")).await;
    assert!(
        answered.is_ok_and(|h| h.starts_with("HTTP/1.1 200")),
        "a new client at the bound waited more than a second"
    );
    assert!(
        closed(&mut idle[0], Duration::from_secs(1)).await,
        "the longest-idle connection was not the one closed"
    );
    for c in &mut idle[1..] {
        assert!(
            get(c, "/fast").await.starts_with("HTTP/1.1 200"),
            "a newer idle one was closed"
        );
    }
}

#[tokio::test]
async fn a_connection_in_the_middle_of_an_answer_is_never_closed_to_make_room() {
    let (addr, release) = start(2).await;
    // Both places are taken by answers in progress (head sent, body waiting).
    let mut busy = Vec::new();
    for _ in 0..2 {
        let mut c = TcpStream::connect(addr).await.expect("connect");
        assert!(get(&mut c, "/slow").await.starts_with("HTTP/1.1 200"));
        busy.push(c);
    }
    let mut newcomer = TcpStream::connect(addr).await.expect("connect");
    let early = tokio::time::timeout(Duration::from_millis(500), get(&mut newcomer, "/fast")).await;
    assert!(early.is_err(), "served while every place was busy");
    for c in &mut busy {
        assert!(
            !closed(c, Duration::from_millis(100)).await,
            "a busy connection was closed"
        );
    }
    // The answers end; the connections are now idle kept-alive ones, and one makes room.
    release.notify_waiters();
    let answered = tokio::time::timeout(Duration::from_secs(2), get(&mut newcomer, "/fast")).await;
    assert!(
        answered.is_ok_and(|h| h.starts_with("HTTP/1.1 200")),
        "the waiting client was not served once the answers ended"
    );
}

/// Sends `bytes` on a new connection and reads the answer to its end: status and JSON body.
async fn refusal(addr: std::net::SocketAddr, bytes: &[u8]) -> (u16, serde_json::Value) {
    let mut c = TcpStream::connect(addr).await.expect("connect");
    c.write_all(bytes).await.expect("write");
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut got))
        .await
        .expect("answered and closed within 5 s")
        .expect("read");
    let text = String::from_utf8_lossy(&got).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("{text:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{head:?}"));
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    let json = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}"));
    (status, json)
}

#[tokio::test]
async fn what_is_no_http_request_gets_a_400_with_error_json() {
    let (addr, _release) = start(16).await;
    let client_hello = [
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0x11, 0x22,
    ];
    for (what, bytes, says) in [
        (
            "garbage",
            &b"\x00\x01\x02 garbage\r\n\r\n"[..],
            "not an HTTP request",
        ),
        (
            "a TLS hello on the plain port",
            &client_hello[..],
            "plain HTTP",
        ),
        ("HTTP/0.9", &b"GET /v2/\r\n"[..], "HTTP/0.9"),
    ] {
        let (status, json) = refusal(addr, bytes).await;
        assert_eq!(status, 400, "{what}");
        assert_eq!(json["errors"][0]["code"], "UNSUPPORTED", "{what}");
        let message = json["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{what}: {message}");
    }
    // A real request on the same listener is still answered.
    let mut c = TcpStream::connect(addr).await.expect("connect");
    assert!(get(&mut c, "/fast").await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn plain_http_on_the_tls_port_gets_a_400_that_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = wharf_testkit::pki::self_signed(dir.path());
    let tls = wharf_proxy::tls::Tls::load(&files.cert, &files.key).expect("tls");
    let (addr, _release) = start_with(16, Some(Arc::new(tls))).await;
    let (status, json) = refusal(addr, b"GET /v2/ HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert_eq!(status, 400);
    let message = json["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("https://"), "{message}");
}
