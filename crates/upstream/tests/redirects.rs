//! Redirects followed by the client (PROTOCOL §1.7): credentials stay home, Range and the method
//! travel, relative Locations resolve, and chains are capped.

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

mod common;

use common::*;
use http::Method;
use wharf_upstream::{Error, RedirectProblem};

/// A CDN on its own port and a Basic-auth registry that redirects blobs to it.
async fn registry_and_cdn() -> (FakeRegistry, FakeRegistry) {
    let cdn = fake(|seen| match seen.header("range") {
        Some("bytes=2-") => reply(206, &[("content-range", "bytes 2-4/5")], "yer"),
        _ => reply(200, &[], "layer"),
    });
    let cdn_url = cdn.url();
    let registry = FakeRegistry::builder()
        .gate(|seen| {
            (seen.authorization() != Some(basic_value().as_str()))
                .then(|| reply(401, &[("www-authenticate", r#"Basic realm="r""#)], ""))
        })
        .route(Method::GET, "/v2/lib/moved/manifests/latest", |_| {
            reply(200, &[], "{}")
        })
        .fallback(move |seen| match seen.path.as_str() {
            p if p.starts_with("/v2/lib/app/blobs/") => {
                let to = format!("{cdn_url}/signed/blob?X-Amz-Signature=s3cr3t");
                reply(307, &[("location", to.as_str())], "")
            }
            "/v2/lib/rel/manifests/latest" => {
                reply(302, &[("location", "../../moved/manifests/latest")], "")
            }
            "/v2/lib/loop/manifests/latest" => {
                reply(301, &[("location", "/v2/lib/loop/manifests/latest")], "")
            }
            "/v2/lib/nowhere/manifests/latest" => reply(308, &[], ""),
            _ => reply(404, &[], ""),
        })
        .start();
    (registry, cdn)
}

#[tokio::test]
async fn a_cross_origin_redirect_drops_authorization_and_keeps_range() {
    bounded(async {
        let (registry, cdn) = registry_and_cdn().await;
        let client = client(&registry.url(), true);

        let r = client
            .blob(Method::GET, "lib/app", &digest(), None)
            .await
            .expect("blob");
        assert_eq!(r.status, 200);
        assert_eq!(body_of(r).await.as_ref(), b"layer");

        let r = client
            .blob(Method::GET, "lib/app", &digest(), Some(2))
            .await
            .expect("range");
        assert_eq!(r.status, 206);
        assert_eq!(body_of(r).await.as_ref(), b"yer");

        let r = client
            .blob(Method::HEAD, "lib/app", &digest(), None)
            .await
            .expect("head");
        assert_eq!(r.status, 200);

        let seen = cdn.requests();
        assert_eq!(seen.len(), 3);
        assert!(seen.iter().all(|s| s.authorization().is_none()));
        assert!(seen.iter().all(|s| s.query == "X-Amz-Signature=s3cr3t"));
        assert_eq!(seen[1].header("range"), Some("bytes=2-"));
        assert_eq!(seen[2].method, Method::HEAD);
        assert!(
            seen.iter()
                .all(|s| s.header("accept-encoding") == Some("identity"))
        );
        // The registry saw the Range too (it is sent on every hop).
        let ranged = registry
            .requests()
            .iter()
            .filter(|s| s.header("range") == Some("bytes=2-"))
            .count();
        assert!(ranged >= 1);
    })
    .await;
}

#[tokio::test]
async fn a_relative_location_on_the_same_origin_keeps_authorization() {
    bounded(async {
        let (registry, _cdn) = registry_and_cdn().await;
        let client = client(&registry.url(), true);
        let r = client
            .manifest(Method::GET, "lib/rel", "latest")
            .await
            .expect("relative redirect");
        assert_eq!(body_of(r).await.as_ref(), b"{}");
        let moved = registry
            .requests()
            .into_iter()
            .find(|s| s.path == "/v2/lib/moved/manifests/latest")
            .expect("followed");
        assert!(moved.authorization().is_some());
    })
    .await;
}

#[tokio::test]
async fn redirect_loops_and_missing_locations_fail() {
    bounded(async {
        let (registry, _cdn) = registry_and_cdn().await;
        let client = client(&registry.url(), true);
        let err = client
            .manifest(Method::GET, "lib/loop", "latest")
            .await
            .expect_err("loop");
        assert!(
            matches!(
                &err,
                Error::Redirect {
                    problem: RedirectProblem::TooMany(5),
                    ..
                }
            ),
            "{err:?}"
        );
        let err = client
            .manifest(Method::GET, "lib/nowhere", "latest")
            .await
            .expect_err("no location");
        assert!(
            matches!(
                &err,
                Error::Redirect {
                    problem: RedirectProblem::MissingLocation(308),
                    ..
                }
            ),
            "{err:?}"
        );
    })
    .await;
}
