//! HTTPS upstreams: the ring provider, the CA file, and what a bad one does.
//!
//! `fixtures/ca.pem` is a test CA (its key was discarded); `fixtures/server.{pem,key}` is a leaf
//! for `localhost` and `127.0.0.1` signed by it, valid until 2126. Made with:
//! `openssl req -x509 ... -addext basicConstraints=critical,CA:TRUE` for the CA, then
//! `openssl x509 -req ... -extfile` with `subjectAltName=DNS:localhost,IP:127.0.0.1`,
//! `extendedKeyUsage=serverAuth`, on P-256 keys in PKCS#8.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;

use common::*;
use http::Method;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A blocking HTTPS/1.1 server on its own thread: answers every request with `200 tls-ok` and
/// closes. Handshake failures are the client's to report.
fn https_server() -> String {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(fixture("server.pem"))
        .expect("server.pem")
        .collect::<Result<_, _>>()
        .expect("certs");
    let key = PrivateKeyDer::from_pem_file(fixture("server.key")).expect("server.key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("server config");
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let config = config.clone();
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(5)));
                let Ok(conn) = rustls::ServerConnection::new(config) else {
                    return;
                };
                let mut tls = rustls::StreamOwned::new(conn, stream);
                let mut reader = BufReader::new(&mut tls);
                let mut line = String::new();
                loop {
                    line.clear();
                    match reader.read_line(&mut line) {
                        Ok(0) | Err(_) => return,
                        Ok(_) if line == "\r\n" => break,
                        Ok(_) => {}
                    }
                }
                let _ = tls.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\nconnection: close\r\n\r\ntls-ok",
                );
                let _ = tls.flush();
                tls.conn.send_close_notify();
                let _ = tls.flush();
            });
        }
    });
    format!("https://localhost:{}", addr.port())
}

#[tokio::test]
async fn https_with_a_ca_file() {
    bounded(async {
        let url = https_server();
        let mut config = config(&url, false);
        config.ca_file = Some(fixture("ca.pem"));
        let client = wharf_upstream::Client::new(config).expect("client");
        let r = client
            .manifest(Method::GET, "lib/app", "latest")
            .await
            .expect("https");
        assert_eq!(body_of(r).await.as_ref(), b"tls-ok");
    })
    .await;
}

#[tokio::test]
async fn https_without_the_ca_is_a_tls_error() {
    bounded(async {
        let url = https_server();
        let err = client(&url, false)
            .manifest(Method::GET, "lib/app", "latest")
            .await
            .expect_err("unknown issuer");
        assert!(matches!(err, wharf_upstream::Error::Tls { .. }), "{err:?}");
        assert!(err.is_unreachable());
    })
    .await;
}

#[test]
fn a_bad_ca_file_is_an_error_naming_it() {
    let mut config = config("https://localhost:1", false);
    config.ca_file = Some(fixture("missing.pem"));
    let err = wharf_upstream::Client::new(config.clone()).expect_err("missing");
    assert!(err.to_string().contains("missing.pem"), "{err}");

    // A PEM file with no certificate in it (a key is not a CA).
    config.ca_file = Some(fixture("server.key"));
    let err = wharf_upstream::Client::new(config).expect_err("no certificates");
    assert!(
        matches!(err, wharf_upstream::Error::CaFile { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("server.key"), "{err}");
}
