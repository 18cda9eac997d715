//! Shared helpers of the integration tests: the client under test, pointed at a fake registry
//! (`wharf_testkit::FakeRegistry`, which records every request and answers from closures), the
//! test credentials, and bounds. Fake registries are for tests where a protocol flow or a fault
//! is the point.
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use wharf_upstream::{Client, Config, Secret};

pub(crate) use wharf_testkit::{FakeRegistry, Reply, Seen};

pub(crate) const USER: &str = "alice";
pub(crate) const PASSWORD: &str = "pa55-w0rd-never-shown";

/// `status`, `headers`, `body`: the shape most answers here take.
pub(crate) fn reply(status: u16, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Reply {
    Reply::new(status).headers(headers).body(body)
}

/// A fake registry that answers every request with `handler`.
pub(crate) fn fake(handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> FakeRegistry {
    FakeRegistry::builder().fallback(handler).start()
}

pub(crate) fn config(url: &str, credentials: bool) -> Config {
    Config {
        name: "fake".into(),
        url: url.into(),
        mirrors: Vec::new(),
        username: credentials.then(|| USER.to_owned()),
        password: credentials.then(|| Secret::new(PASSWORD)),
        ca_file: None,
        connect_timeout: Duration::from_secs(2),
        response_timeout: Duration::from_secs(5),
    }
}

pub(crate) fn client(url: &str, credentials: bool) -> Client {
    Client::new(config(url, credentials)).expect("client")
}

pub(crate) fn basic_value() -> String {
    use base64::Engine;
    let raw = format!("{USER}:{PASSWORD}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

pub(crate) async fn body_of(response: wharf_upstream::Response) -> Bytes {
    response.body.collect().await.expect("body").to_bytes()
}

/// Bounds every test: a hung request fails the test instead of hanging CI.
pub(crate) async fn bounded<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .expect("test took too long")
}

pub(crate) fn digest() -> wharf_oci::Digest {
    wharf_oci::Digest::sha256_of(b"layer")
}
