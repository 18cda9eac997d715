//! An upstream with mirrors (`url` and `mirrors`, the same content behind each): a request the
//! first URL fails is retried once on the next, and a fill whose body breaks mid-blob resumes
//! from the byte on disk on the other URL, with the right digest. Faults come from fake
//! registries on loopback (`wharf_testkit::FakeRegistry`); the end-to-end test with two real
//! registries is `tests/e2e/regional/mirrors.rs`.

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::BodyExt;
use wharf_cache::Store;
use wharf_oci::Digest;
use wharf_proxy::{Proxy, Upstream, Upstreams};
use wharf_testkit::{FakeRegistry, Fault};

const SIZE: usize = 3 * 1024 * 1024 + 17;

fn content() -> Bytes {
    Bytes::from((0..SIZE).map(|i| (i * 31 % 251) as u8).collect::<Vec<u8>>())
}

async fn proxy(first: &FakeRegistry, second: &FakeRegistry, dir: &std::path::Path) -> Arc<Proxy> {
    let store = Store::open(dir).await.expect("store");
    let client = wharf_upstream::Client::new(wharf_upstream::Config {
        name: "fake".into(),
        url: first.url(),
        mirrors: vec![second.url()],
        username: None,
        password: None,
        ca_file: None,
        connect_timeout: Duration::from_secs(5),
        response_timeout: Duration::from_secs(5),
    })
    .expect("client");
    let up = Upstream {
        client,
        ..Upstream::anonymous("fake", &first.url(), &["fake"], true).expect("upstream")
    };
    Proxy::new(Upstreams::new(vec![up]), store)
}

async fn get_blob(proxy: &Arc<Proxy>, digest: &Digest) -> (u16, Bytes) {
    let req = Request::get(format!("/v2/app/blobs/{digest}"))
        .body(http_body_util::Empty::<Bytes>::new())
        .expect("request");
    let resp = proxy.clone().handle(req).await;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, body)
}

#[tokio::test]
async fn a_fill_whose_first_url_breaks_mid_blob_completes_from_the_mirror() {
    let blob = content();
    let digest = Digest::sha256_of(&blob);
    let first = FakeRegistry::builder()
        .blob("app", blob.clone())
        .ranges(true)
        .fault(Fault::new().break_at(SIZE as u64 / 2))
        .start();
    let second = FakeRegistry::builder()
        .blob("app", blob.clone())
        .ranges(true)
        .start();
    let dir = tempfile::tempdir().expect("tempdir");
    let proxy = proxy(&first, &second, dir.path()).await;

    let (status, body) = get_blob(&proxy, &digest).await;
    assert_eq!(status, 200);
    assert_eq!(body.len(), SIZE);
    assert_eq!(Digest::sha256_of(&body), digest, "the right bytes, whole");

    let d = digest.to_string();
    assert_eq!(first.blob_requests("GET", &d).len(), 1, "one GET, broken");
    let resumed = second.blob_requests("GET", &d);
    assert_eq!(resumed.len(), 1, "{resumed:#?}");
    let range = resumed[0]
        .header("range")
        .expect("a resume asks for a range");
    let from: u64 = range
        .strip_prefix("bytes=")
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse().ok())
        .expect("bytes=<offset>-");
    assert!(from > 0 && from <= SIZE as u64 / 2, "resumed from {from}");
}

#[tokio::test]
async fn a_request_the_first_url_fails_is_retried_once_on_the_mirror() {
    let blob = content();
    let digest = Digest::sha256_of(&blob);
    let other = Bytes::from_static(b"another blob");
    let other_digest = Digest::sha256_of(&other);
    let fake = || {
        FakeRegistry::builder()
            .blob("app", blob.clone())
            .blob("app", other.clone())
            .start()
    };
    let (first, second) = (fake(), fake());
    first.set_status(503);
    let dir = tempfile::tempdir().expect("tempdir");
    let proxy = proxy(&first, &second, dir.path()).await;

    let (status, body) = get_blob(&proxy, &digest).await;
    assert_eq!(status, 200);
    assert_eq!(Digest::sha256_of(&body), digest);
    let d = digest.to_string();
    assert_eq!(first.blob_requests("GET", &d).len(), 1);
    assert_eq!(second.blob_requests("GET", &d).len(), 1);

    // The failed URL is left alone for its back-off: the next request goes to the mirror only.
    first.take_requests();
    let (status, _) = get_blob(&proxy, &other_digest).await;
    assert_eq!(status, 200);
    assert!(
        first.take_requests().is_empty(),
        "the failed url was asked again at once"
    );
}
