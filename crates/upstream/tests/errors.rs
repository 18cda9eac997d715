//! Status errors, timeouts, unreachable upstreams, and what goes on the wire.

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

mod common;

use std::time::Duration;
use tokio::time::Instant;

use common::*;
use http::Method;

#[tokio::test]
async fn status_errors_carry_their_oci_code() {
    bounded(async {
        let fake = fake(|seen| match seen.path.as_str() {
            "/v2/lib/gone/manifests/latest" => reply(
                404,
                &[("content-type", "application/json")],
                r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
            ),
            "/v2/lib/busy/manifests/latest" => reply(
                429,
                &[("retry-after", "7")],
                r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#,
            ),
            "/v2/lib/secret/manifests/latest" => reply(403, &[], "denied"),
            _ => reply(502, &[], "bad gateway"),
        });
        let client = client(&fake.url(), true);

        let err = client
            .manifest(Method::GET, "lib/gone", "latest")
            .await
            .expect_err("404");
        assert!(err.is_not_found() && !err.is_unreachable());
        assert_eq!(err.code(), Some("MANIFEST_UNKNOWN"));
        assert_eq!(err.status(), Some(404));
        assert_eq!(err.upstream(), "fake");

        let err = client
            .manifest(Method::GET, "lib/busy", "latest")
            .await
            .expect_err("429");
        assert!(err.is_rate_limited());
        assert_eq!(err.retry_after(), Some(7));
        assert_eq!(err.code(), Some("TOOMANYREQUESTS"));

        let err = client
            .manifest(Method::GET, "lib/secret", "latest")
            .await
            .expect_err("403");
        assert!(err.is_denied());

        let err = client.tags("lib/any", None).await.expect_err("502");
        assert!(err.is_unreachable());
        assert_eq!(err.status(), Some(502));
        assert!(!format!("{err} {err:?}").contains(PASSWORD));
    })
    .await;
}

#[tokio::test]
async fn a_silent_upstream_times_out() {
    bounded(async {
        // Takes every request and never answers it.
        let silent = fake(|_| Reply::hang());
        let mut config = config(&silent.url(), false);
        config.response_timeout = Duration::from_millis(300);
        let client = wharf_upstream::Client::new(config).expect("client");
        let started = Instant::now();
        let err = client
            .manifest(Method::GET, "lib/app", "latest")
            .await
            .expect_err("timeout");
        let elapsed = started.elapsed();
        assert!(err.is_timeout() && err.is_unreachable(), "{err}");
        assert!(
            matches!(
                err,
                wharf_upstream::Error::Timeout {
                    phase: wharf_upstream::TimeoutPhase::ResponseHeaders,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(1800), "{elapsed:?}");
    })
    .await;
}

#[tokio::test]
async fn a_closed_port_is_unreachable() {
    bounded(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let err = client(&format!("http://{addr}"), false)
            .blob(Method::GET, "lib/app", &digest(), None)
            .await
            .expect_err("refused");
        assert!(err.is_unreachable() && !err.is_timeout(), "{err}");
        assert!(
            matches!(err, wharf_upstream::Error::Connect { .. }),
            "{err:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn requests_carry_the_full_accept_set_and_nothing_else() {
    bounded(async {
        let fake = fake(|_| reply(200, &[], "{}"));
        let client = client(&fake.url(), false);
        client
            .manifest(Method::HEAD, "library/alpine", "3.20")
            .await
            .expect("manifest");
        client
            .blob(Method::GET, "library/alpine", &digest(), Some(1024))
            .await
            .expect("blob");
        client
            .tags("library/alpine", Some("n=10&last=foo"))
            .await
            .expect("tags");

        let seen = fake.requests();
        let accepts: Vec<&str> = seen[0]
            .headers
            .get_all("accept")
            .iter()
            .map(|v| v.to_str().expect("ascii"))
            .collect();
        assert_eq!(accepts, wharf_oci::media::UPSTREAM_MANIFEST_ACCEPT);
        assert_eq!(accepts.len(), 4);
        assert_eq!(seen[0].method, Method::HEAD);
        assert_eq!(seen[0].path, "/v2/library/alpine/manifests/3.20");
        let ua = format!("wharf/{}", env!("CARGO_PKG_VERSION"));
        assert!(
            seen.iter()
                .all(|s| s.header("user-agent") == Some(ua.as_str()))
        );
        assert!(seen.iter().all(|s| s.authorization().is_none()));

        assert_eq!(
            seen[1].path,
            format!("/v2/library/alpine/blobs/{}", digest())
        );
        assert_eq!(seen[1].header("range"), Some("bytes=1024-"));
        assert_eq!(seen[1].header("accept-encoding"), Some("identity"));

        assert_eq!(seen[2].path, "/v2/library/alpine/tags/list");
        assert_eq!(seen[2].query, "n=10&last=foo");
    })
    .await;
}

#[tokio::test]
async fn bad_arguments_and_configuration_are_errors() {
    let client = client("http://127.0.0.1:9", false);
    for (repo, reference) in [
        ("lib/../x", "latest"),
        ("lib/app", "a/b"),
        ("lib/app", "x?y"),
    ] {
        let err = client
            .manifest(Method::GET, repo, reference)
            .await
            .expect_err("invalid");
        assert!(
            matches!(err, wharf_upstream::Error::InvalidRequest { .. }),
            "{err:?}"
        );
    }
    let err = client
        .manifest(Method::DELETE, "lib/app", "latest")
        .await
        .expect_err("method");
    assert!(matches!(err, wharf_upstream::Error::InvalidRequest { .. }));

    let err = wharf_upstream::Client::new(config(&format!("http://u:{PASSWORD}@h"), false))
        .expect_err("user info");
    assert!(!err.to_string().contains(PASSWORD), "{err}");
}

#[test]
fn client_and_its_futures_are_send() {
    fn send_sync<T: Send + Sync + Clone>(_: &T) {}
    fn send<T: Send>(_: T) {}
    let client = client("http://127.0.0.1:9", false);
    send_sync(&client);
    send(client.manifest(Method::GET, "lib/app", "latest"));
    send(client.blob(Method::GET, "lib/app", &digest(), None));
    send(client.tags("lib/app", None));
}
