//! Referrers lists and sigstore tags (attached.rs): kept like tags, absences remembered, and
//! a kept list served when the upstream fails. The fake upstream is here for what no Debian
//! registry does: a referrers API, and a failure injected after a good answer.

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
use wharf_proxy::{Proxy, Upstream, Upstreams};
use wharf_testkit::{FakeRegistry, Reply};

const INDEX: &str = "application/vnd.oci.image.index.v1+json";

async fn get(proxy: &Arc<Proxy>, path: &str) -> (u16, http::HeaderMap, Bytes) {
    let req = Request::get(path)
        .body(http_body_util::Empty::<Bytes>::new())
        .expect("request");
    let resp = proxy.clone().handle(req).await;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, headers, body)
}

async fn proxy_for(fake: &FakeRegistry, dir: &std::path::Path) -> Arc<Proxy> {
    proxy_with_ttl(fake, dir, Upstream::DEFAULT_TAG_TTL).await
}

async fn proxy_with_ttl(
    fake: &FakeRegistry,
    dir: &std::path::Path,
    tag_ttl: Duration,
) -> Arc<Proxy> {
    let store = Store::open(dir).await.expect("store");
    let up = Upstream {
        tag_ttl,
        ..Upstream::anonymous("fake", &fake.url(), &["fake"], true).expect("upstream")
    };
    Proxy::new(Upstreams::new(vec![up]), store)
}

fn digest() -> String {
    format!("sha256:{}", "ab".repeat(32))
}

#[tokio::test]
async fn a_referrers_list_is_kept_like_a_tag_and_served_when_the_upstream_fails() {
    let d = digest();
    let list = format!(r#"{{"schemaVersion":2,"mediaType":"{INDEX}","manifests":[]}}"#);
    let body = list.clone();
    let fake = FakeRegistry::builder()
        .route(
            http::Method::GET,
            &format!("/v2/app/referrers/{d}"),
            move |seen| {
                let mut r = Reply::ok(body.clone()).header("content-type", INDEX);
                if seen.query.contains("artifactType=") {
                    r = r.header("oci-filters-applied", "artifactType");
                }
                r
            },
        )
        .start();
    let dir = tempfile::tempdir().expect("tempdir");
    let proxy = proxy_for(&fake, dir.path()).await;
    let path = format!("/v2/app/referrers/{d}");
    for _ in 0..3 {
        let (status, headers, bytes) = get(&proxy, &path).await;
        assert_eq!(status, 200);
        assert_eq!(&bytes[..], list.as_bytes(), "byte-exact");
        assert_eq!(headers["content-type"], INDEX);
    }
    assert_eq!(
        fake.count(&format!("/v2/app/referrers/{d}")),
        1,
        "asked once"
    );
    let filtered =
        format!("{path}?artifactType=application%2Fvnd.dev.cosign.simplesigning.v1%2Bjson");
    let (status, headers, _) = get(&proxy, &filtered).await;
    assert_eq!(status, 200);
    assert_eq!(headers["oci-filters-applied"], "artifactType");
    let seen = fake.requests();
    assert!(
        seen.iter().any(|s| s.query
            == "artifactType=application%2Fvnd.dev.cosign.simplesigning.v1%2Bjson"),
        "the filter went upstream as given: {:?}",
        seen.iter().map(|s| &s.query).collect::<Vec<_>>()
    );

    // Past its tag_ttl, a kept list is asked again; when the upstream fails, it is served.
    let dir = tempfile::tempdir().expect("tempdir");
    let stale = proxy_with_ttl(&fake, dir.path(), Duration::ZERO).await;
    let (status, _, _) = get(&stale, &path).await;
    assert_eq!(status, 200);
    let before = fake.count(&format!("/v2/app/referrers/{d}"));
    fake.respond_with(Reply::new(503));
    let (status, _, bytes) = get(&stale, &path).await;
    assert_eq!(status, 200, "the kept list, the upstream failing");
    assert_eq!(&bytes[..], list.as_bytes());
    assert_eq!(
        fake.count(&format!("/v2/app/referrers/{d}")),
        before + 1,
        "it was asked"
    );
}

#[tokio::test]
async fn no_referrers_api_and_missing_sigstore_tags_cost_one_upstream_request() {
    let fake = FakeRegistry::builder().start();
    let dir = tempfile::tempdir().expect("tempdir");
    let proxy = proxy_for(&fake, dir.path()).await;
    let d = digest();
    let sig_tag = format!("sha256-{}.sig", "ab".repeat(32));
    for _ in 0..3 {
        let (status, _, body) = get(&proxy, &format!("/v2/app/referrers/{d}")).await;
        assert_eq!(status, 404);
        assert!(String::from_utf8_lossy(&body).contains("MANIFEST_UNKNOWN"));
        let (status, _, body) = get(&proxy, &format!("/v2/app/manifests/{sig_tag}")).await;
        assert_eq!(status, 404);
        assert!(String::from_utf8_lossy(&body).contains("MANIFEST_UNKNOWN"));
    }
    assert_eq!(fake.count(&format!("/v2/app/referrers/{d}")), 1);
    assert_eq!(fake.count(&format!("/v2/app/manifests/{sig_tag}")), 1);
    // Ordinary tags are not remembered missing: one that appears is found at once.
    for _ in 0..2 {
        let (status, _, _) = get(&proxy, "/v2/app/manifests/latest").await;
        assert_eq!(status, 404);
    }
    assert_eq!(fake.count("/v2/app/manifests/latest"), 2);
}
