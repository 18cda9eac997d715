//! The first bytes of a connection, looked at (not taken) before hyper or rustls reads them, so
//! that what cannot be an HTTP request still gets an answer a person can read: the spec's error
//! JSON with a 400 and the connection closed, where hyper would send an empty 400 and rustls
//! would close without a word.
//!
//! ```text
//! plain port: TLS ClientHello (0x16 0x03)          -> 400 "this port speaks plain HTTP"
//!             h2c preface, an HTTP/1.x request line -> hyper
//!             a request line without HTTP/1.x      -> 400 "HTTP/0.9 is not supported"
//!             anything else                        -> 400 "not an HTTP request"
//! TLS port:   a request line in plain text         -> 400 "this port speaks HTTPS" (as nginx)
//!             anything else                        -> rustls
//! ```

use std::time::Duration;

use http_body_util::BodyExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::ProxyError;

/// How much of the first request is looked at.
const PEEK: usize = 512;
/// How long a refused client is given to read the answer before the socket closes.
const LINGER: Duration = Duration::from_secs(1);

/// What to do with a new connection.
#[derive(Debug)]
pub(crate) enum Preface {
    /// Hand it to hyper (or rustls).
    Serve,
    /// Answer this and close.
    Refuse(ProxyError),
    /// Nothing arrived in time, or the peer went away: close.
    Close,
}

/// Waits (up to `wait`) for the first bytes of `stream` and classifies them.
pub(crate) async fn look(stream: &TcpStream, tls: bool, wait: Duration) -> Preface {
    let mut buf = [0u8; PEEK];
    match tokio::time::timeout(wait, stream.peek(&mut buf)).await {
        Ok(Ok(n)) if n > 0 => classify(&buf[..n], tls),
        _ => Preface::Close,
    }
}

fn refuse(message: &str) -> Preface {
    Preface::Refuse(ProxyError::BadRequest {
        message: message.to_owned(),
    })
}

/// Classifies the first bytes of a connection (what arrived so far: maybe not all of them).
pub(crate) fn classify(first: &[u8], tls: bool) -> Preface {
    let is_tls_hello = first.first() == Some(&0x16) && first.get(1).is_none_or(|b| *b == 0x03);
    let method_len = first.iter().take_while(|b| b.is_ascii_uppercase()).count();
    let looks_like_http =
        method_len > 0 && (method_len == first.len() || first.get(method_len) == Some(&b' '));
    if tls {
        return if looks_like_http && !is_tls_hello {
            refuse("this port speaks HTTPS, and a plain HTTP request arrived: use https://")
        } else {
            Preface::Serve
        };
    }
    const H2C: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    if H2C.starts_with(&first[..first.len().min(H2C.len())]) {
        return Preface::Serve;
    }
    if is_tls_hello {
        return refuse(
            "this port speaks plain HTTP, and a TLS handshake arrived: use http://, or configure \
             server.tls_cert and server.tls_key for HTTPS",
        );
    }
    if !looks_like_http {
        return refuse("not an HTTP request");
    }
    // The request line, if all of it arrived: it must name HTTP/1.x.
    if let Some(end) = first.iter().position(|b| *b == b'\n') {
        let line = first[..end].strip_suffix(b"\r").unwrap_or(&first[..end]);
        if !line.ends_with(b" HTTP/1.1") && !line.ends_with(b" HTTP/1.0") {
            return refuse(
                "HTTP/0.9 and unknown HTTP versions are not supported: use HTTP/1.1 or HTTP/2",
            );
        }
    }
    Preface::Serve
}

/// Answers `e` on the raw connection (HTTP/1.1, `Connection: close`) and closes it gracefully:
/// what the client sent is read first, so closing does not reset the connection under the
/// answer.
pub(crate) async fn answer(mut stream: TcpStream, e: ProxyError) {
    let resp = e.into_response(false);
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nconnection: close\r\n",
        resp.status().as_u16(),
        resp.status().canonical_reason().unwrap_or("")
    );
    for (name, value) in resp.headers() {
        if let Ok(v) = value.to_str() {
            head.push_str(&format!("{name}: {v}\r\n"));
        }
    }
    head.push_str("\r\n");
    let body = match resp.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => bytes::Bytes::new(),
    };
    let mut scratch = [0u8; PEEK];
    let _ = stream.try_read(&mut scratch);
    let written = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&body).await?;
        stream.shutdown().await
    };
    if tokio::time::timeout(LINGER, written).await.is_err() {
        return;
    }
    // Lingering close: drain until the client closes (or a second passes).
    let _ = tokio::time::timeout(LINGER, async {
        while matches!(stream.read(&mut scratch).await, Ok(n) if n > 0) {}
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(first: &[u8], tls: bool) -> bool {
        matches!(classify(first, tls), Preface::Refuse(_))
    }

    #[test]
    fn classifies_first_bytes() {
        assert!(!refused(b"GET /v2/ HTTP/1.1\r\nhost: x\r\n\r\n", false));
        assert!(!refused(b"HEAD /v2/a/blobs/x HTTP/1.0\r\n", false));
        assert!(!refused(b"GE", false), "a request line still arriving");
        assert!(!refused(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", false));
        assert!(!refused(b"PRI * HT", false));
        assert!(refused(
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            false
        ));
        assert!(refused(b"GET /\r\n", false), "HTTP/0.9");
        assert!(refused(b"GET / HTTP/3.0\r\n", false));
        assert!(refused(b"\x00\xffgarbage", false));
        assert!(refused(b"hello there\r\n", false));
        assert!(
            refused(b"GET / HTTP/1.1\r\n\r\n", true),
            "plain HTTP on the TLS port"
        );
        assert!(!refused(b"\x16\x03\x01\x02\x00", true));
        assert!(!refused(b"\x00garbage", true), "rustls refuses it");
    }
}
