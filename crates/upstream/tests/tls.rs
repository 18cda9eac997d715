//! HTTPS upstreams: the ring provider, the CA file, and what a bad one does.
//!
//! `fixtures/ca.pem` is a test CA (its key was discarded); `fixtures/server.{pem,key}` is a leaf
//! for `localhost` and `127.0.0.1` signed by it, valid until 2126. Made with:
//! `openssl req -x509 ... -addext basicConstraints=critical,CA:TRUE` for the CA, then
//! `openssl x509 -req ... -extfile` with `subjectAltName=DNS:localhost,IP:127.0.0.1`,
//! `extendedKeyUsage=serverAuth`, on P-256 keys in PKCS#8.

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

mod common;

use std::path::PathBuf;

use common::*;
use http::Method;
use wharf_testkit::TlsFiles;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// An HTTPS registry with the fixture leaf that answers every request with `200 tls-ok`, and
/// its URL by name (`localhost`, which the leaf names). Handshake failures are the client's to
/// report.
fn https_server() -> (FakeRegistry, String) {
    let fake = FakeRegistry::builder()
        .tls(TlsFiles {
            cert: fixture("server.pem"),
            key: fixture("server.key"),
        })
        .fallback(|_| reply(200, &[], "tls-ok"))
        .start();
    let url = format!("https://localhost:{}", fake.addr().port());
    (fake, url)
}

#[tokio::test]
async fn https_with_a_ca_file() {
    bounded(async {
        let (_fake, url) = https_server();
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
        let (_fake, url) = https_server();
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
