//! HTTPS upstreams: the ring provider, the CA file, a self-signed CA certificate pinned by it (as
//! the Oracle Linux guide's `openssl req -x509` makes), and what each failure says to do.
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

use bytes::Bytes;
use common::*;
use http::Method;
use wharf_testkit::{TlsFiles, pki};

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

/// An HTTPS registry on `127.0.0.1` presenting `tls`, answering `200 tls-ok`, and its URL.
fn https_server_with(tls: TlsFiles) -> (FakeRegistry, String) {
    let fake = FakeRegistry::builder()
        .tls(tls)
        .fallback(|_| reply(200, &[], "tls-ok"))
        .start();
    let url = format!("https://127.0.0.1:{}", fake.addr().port());
    (fake, url)
}

async fn manifest_with(
    url: &str,
    ca_file: Option<PathBuf>,
) -> Result<Bytes, wharf_upstream::Error> {
    let mut config = config(url, false);
    config.ca_file = ca_file;
    let client = wharf_upstream::Client::new(config).expect("client");
    let r = client.manifest(Method::GET, "lib/app", "latest").await?;
    Ok(body_of(r).await)
}

/// The TLS error's text; panics if the error is anything else.
fn tls_reason(err: wharf_upstream::Error) -> String {
    assert!(matches!(err, wharf_upstream::Error::Tls { .. }), "{err:?}");
    err.to_string()
}

#[tokio::test]
async fn a_guide_certificate_pinned_by_ca_file_is_accepted() {
    bounded(async {
        let dir = tempfile::tempdir().expect("tempdir");
        // What the guide makes (CA:TRUE), with a subjectAltName for the address.
        let tls = pki::guide_self_signed(
            dir.path(),
            "registry",
            "127.0.0.1",
            &["subjectAltName=IP:127.0.0.1"],
        );
        let cert = tls.cert.clone();
        let (_fake, url) = https_server_with(tls);
        // A real handshake: the server proves it holds the pinned certificate's key.
        let body = manifest_with(&url, Some(cert)).await.expect("pinned");
        assert_eq!(body.as_ref(), b"tls-ok");
    })
    .await;
}

#[tokio::test]
async fn a_guide_certificate_without_ca_file_says_to_pin_it() {
    bounded(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let tls = pki::guide_self_signed(
            dir.path(),
            "registry",
            "127.0.0.1",
            &["subjectAltName=IP:127.0.0.1"],
        );
        let (_fake, url) = https_server_with(tls);
        let text = tls_reason(manifest_with(&url, None).await.expect_err("not trusted"));
        assert!(
            text.contains("is a CA certificate")
                && text.contains("set ca_file to that exact certificate to pin it"),
            "{text}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_guide_certificate_with_another_ca_file_names_the_file() {
    bounded(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let tls = pki::guide_self_signed(
            dir.path(),
            "registry",
            "127.0.0.1",
            &["subjectAltName=IP:127.0.0.1"],
        );
        let other = pki::guide_self_signed(
            dir.path(),
            "other",
            "127.0.0.1",
            &["subjectAltName=IP:127.0.0.1"],
        );
        let (_fake, url) = https_server_with(tls);
        let text = tls_reason(
            manifest_with(&url, Some(other.cert.clone()))
                .await
                .expect_err("another certificate"),
        );
        assert!(
            text.contains(&format!("ca_file {} does not hold", other.cert.display()))
                && text.contains("to pin it"),
            "{text}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_guide_certificate_with_only_a_common_name_says_to_add_a_san() {
    bounded(async {
        let dir = tempfile::tempdir().expect("tempdir");
        // The guide's command as it is: CN=127.0.0.1, no -addext.
        let tls = pki::guide_self_signed(dir.path(), "registry", "127.0.0.1", &[]);
        let cert = tls.cert.clone();
        let (_fake, url) = https_server_with(tls);
        let text = tls_reason(manifest_with(&url, Some(cert)).await.expect_err("CN only"));
        assert!(
            text.contains("names no host in subjectAltName")
                && text.contains("-addext \"subjectAltName=IP:127.0.0.1\""),
            "{text}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_pinned_certificate_for_another_host_names_both() {
    bounded(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let tls = pki::guide_self_signed(
            dir.path(),
            "registry",
            "registry.example.com",
            &["subjectAltName=DNS:registry.example.com"],
        );
        let cert = tls.cert.clone();
        let (_fake, url) = https_server_with(tls);
        let text = tls_reason(
            manifest_with(&url, Some(cert))
                .await
                .expect_err("wrong name"),
        );
        assert!(
            text.contains("not valid for 127.0.0.1: it names DNS:registry.example.com"),
            "{text}"
        );
    })
    .await;
}

#[tokio::test]
async fn an_unknown_issuer_says_to_set_ca_file() {
    bounded(async {
        let (_fake, url) = https_server();
        let text = tls_reason(manifest_with(&url, None).await.expect_err("unknown issuer"));
        assert!(
            text.contains("unknown issuer")
                && text.contains("set ca_file to the CA that signed it"),
            "{text}"
        );
    })
    .await;
}
