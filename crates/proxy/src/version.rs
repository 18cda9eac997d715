//! Which HTTP version a plain-TCP connection speaks, from its first bytes (looked at, not
//! taken): HTTP/2 when they are the h2c preface ("prior knowledge", RFC 9113, 3.4), else
//! HTTP/1.1. Over TLS the version is ALPN's (server.rs), and nothing is sniffed.

use std::time::Duration;

use tokio::net::TcpStream;

/// The HTTP version a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    Http1,
    Http2,
}

/// The client connection preface of HTTP/2 (RFC 9113, 3.4): h2c "with prior knowledge".
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The version of a plain-TCP connection, from its first bytes (looked at, not taken): HTTP/2
/// when they are the h2c preface. Called once `preface::look` saw bytes; it waits (bounded by
/// `wait`) only while what arrived is a part of the preface.
pub(crate) async fn sniff(stream: &TcpStream, wait: Duration) -> Version {
    let deadline = tokio::time::Instant::now() + wait;
    let mut first = [0u8; H2_PREFACE.len()];
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut first)).await {
            Ok(Ok(n)) if n > 0 => n,
            // Gone or silent: hyper's HTTP/1.1 reports it as the auto builder did.
            _ => return Version::Http1,
        };
        if !H2_PREFACE.starts_with(&first[..n]) {
            return Version::Http1;
        }
        if n == H2_PREFACE.len() {
            return Version::Http2;
        }
        // The preface split across segments: its end is on the way.
        if tokio::time::timeout_at(deadline, tokio::time::sleep(SNIFF_AGAIN))
            .await
            .is_err()
        {
            return Version::Http1;
        }
    }
}

/// How soon the first bytes are looked at again while they are a part of the h2c preface.
const SNIFF_AGAIN: Duration = Duration::from_millis(5);

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt as _;
    use tokio::net::TcpListener;

    /// The version of a connection whose client writes `parts`, a pause between them.
    async fn sniffed(parts: &[&[u8]]) -> Version {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let parts: Vec<Vec<u8>> = parts.iter().map(|p| p.to_vec()).collect();
        let writer = tokio::spawn(async move {
            for p in parts {
                client.write_all(&p).await.unwrap();
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            client
        });
        let version = sniff(&server, Duration::from_secs(5)).await;
        drop(writer.await.unwrap());
        version
    }

    #[tokio::test]
    async fn the_h2c_preface_chooses_http2_even_in_pieces() {
        assert_eq!(sniffed(&[H2_PREFACE]).await, Version::Http2);
        assert_eq!(
            sniffed(&[&H2_PREFACE[..8], &H2_PREFACE[8..]]).await,
            Version::Http2
        );
        assert_eq!(
            sniffed(&[b"GET /v2/ HTTP/1.1\r\nhost: x\r\n\r\n"]).await,
            Version::Http1
        );
        assert_eq!(
            sniffed(&[b"PRI /v2/ HTTP/1.1\r\n\r\n"]).await,
            Version::Http1,
            "a method named PRI is HTTP/1.1 once the bytes differ"
        );
    }
}
