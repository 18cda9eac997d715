//! The token and Basic flows against fake registries on loopback (PROTOCOL §2).

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use http::Method;

const CT: (&str, &str) = ("content-type", "application/vnd.oci.image.manifest.v1+json");

/// A registry whose token endpoint is on the same host: accepts `Bearer tok-<generation>`.
fn bearer_registry(token_json: &'static str, generation: Arc<AtomicUsize>) -> FakeRegistry {
    fake(move |seen| {
        let current = generation.load(Ordering::SeqCst);
        if seen.path == "/token" {
            if seen.authorization() != Some(basic_value().as_str()) {
                return reply(401, &[], "");
            }
            // Give concurrent requests time to pile up behind this fetch.
            return reply(200, &[], token_json.replace("GEN", &current.to_string()))
                .delay(Duration::from_millis(50));
        }
        if seen.authorization() == Some(format!("Bearer tok-{current}").as_str()) {
            return reply(200, &[CT], "{}");
        }
        let challenge = format!(
            r#"Bearer realm="http://{}/token",service="wharf test",scope="repository:lib/app:pull""#,
            seen.local_addr
        );
        reply(
            401,
            &[("www-authenticate", challenge.as_str())],
            r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#,
        )
    })
}

#[tokio::test]
async fn bearer_token_is_fetched_once_and_reused() {
    bounded(async {
        let generation = Arc::new(AtomicUsize::new(1));
        let fake = bearer_registry(r#"{"token":"tok-GEN","expires_in":300}"#, generation);
        let client = client(&fake.url(), true);

        let r = client
            .manifest(Method::GET, "lib/app", "latest")
            .await
            .expect("first");
        assert_eq!(r.status, 200);
        assert_eq!(body_of(r).await.as_ref(), b"{}");
        assert_eq!(fake.count("/token"), 1);
        assert_eq!(fake.count("/v2/"), 2, "401, then the retry");
        let token_request = &fake.requests()[1];
        assert_eq!(
            token_request.query,
            "service=wharf%20test&scope=repository%3Alib%2Fapp%3Apull"
        );

        client
            .manifest(Method::HEAD, "lib/app", "latest")
            .await
            .expect("second");
        client
            .blob(Method::GET, "lib/app", &digest(), None)
            .await
            .expect("blob");
        assert_eq!(fake.count("/token"), 1, "token reused");
        assert_eq!(fake.count("/v2/"), 4, "one round trip per warm request");
    })
    .await;
}

#[tokio::test]
async fn access_token_only_without_expires_in() {
    bounded(async {
        let fake = bearer_registry(r#"{"access_token":"tok-GEN"}"#, Arc::default());
        let client = client(&fake.url(), true);
        for _ in 0..2 {
            client
                .manifest(Method::GET, "lib/app", "v1")
                .await
                .expect("manifest");
        }
        assert_eq!(fake.count("/token"), 1);
    })
    .await;
}

#[tokio::test]
async fn concurrent_misses_share_one_token_fetch() {
    bounded(async {
        let fake = bearer_registry(r#"{"token":"tok-GEN"}"#, Arc::default());
        let client = client(&fake.url(), true);
        let barrier = Arc::new(tokio::sync::Barrier::new(16));
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let client = client.clone();
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    client.manifest(Method::GET, "lib/app", "latest").await
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("join").expect("manifest");
        }
        assert_eq!(fake.count("/token"), 1);
    })
    .await;
}

#[tokio::test]
async fn a_refused_cached_token_is_replaced_once() {
    bounded(async {
        let generation = Arc::new(AtomicUsize::new(1));
        let fake = bearer_registry(r#"{"token":"tok-GEN"}"#, generation.clone());
        let client = client(&fake.url(), true);
        client
            .manifest(Method::GET, "lib/app", "latest")
            .await
            .expect("first");
        generation.store(2, Ordering::SeqCst);
        let before = fake.count("/v2/");
        client
            .manifest(Method::GET, "lib/app", "latest")
            .await
            .expect("after revocation");
        assert_eq!(fake.count("/token"), 2);
        assert_eq!(
            fake.count("/v2/") - before,
            2,
            "stale token, then the new one"
        );
    })
    .await;
}

/// A registry that wants `Basic` with the test credentials.
fn basic_registry() -> FakeRegistry {
    fake(|seen| {
        if seen.authorization() == Some(basic_value().as_str()) {
            reply(200, &[CT], "{}")
        } else {
            reply(401, &[("www-authenticate", r#"Basic realm="fake""#)], "")
        }
    })
}

#[tokio::test]
async fn basic_registry_is_answered_then_sent_basic_proactively() {
    bounded(async {
        let fake = basic_registry();
        let client = client(&fake.url(), true);
        client
            .manifest(Method::GET, "lib/app", "latest")
            .await
            .expect("first");
        assert_eq!(fake.count("/v2/"), 2);
        client
            .manifest(Method::GET, "lib/app", "latest")
            .await
            .expect("second");
        assert_eq!(fake.count("/v2/"), 3);
    })
    .await;
}

#[tokio::test]
async fn basic_without_or_with_wrong_credentials_is_unauthorized() {
    bounded(async {
        let fake = basic_registry();
        let err = client(&fake.url(), false)
            .manifest(Method::GET, "lib/app", "latest")
            .await
            .expect_err("no credentials");
        assert!(err.is_unauthorized(), "{err}");
        assert_eq!(err.status(), Some(401));

        let mut config = config(&fake.url(), true);
        config.password = Some(wharf_upstream::Secret::new("wrong-secret-value"));
        let err = wharf_upstream::Client::new(config)
            .expect("client")
            .manifest(Method::GET, "lib/app", "latest")
            .await
            .expect_err("wrong password");
        assert!(err.is_unauthorized(), "{err}");
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("wrong-secret-value"), "{shown}");
        assert!(!shown.contains("Basic "), "{shown}");
        assert_eq!(
            fake.count("/v2/"),
            3,
            "one attempt, then one with credentials"
        );
    })
    .await;
}

/// A registry on 127.0.0.1 whose realm is on `localhost`: another host.
async fn foreign_realm(allow: bool) -> (FakeRegistry, FakeRegistry) {
    let realm = fake(|_| reply(200, &[], r#"{"token":"anon"}"#));
    let realm_url = format!("http://localhost:{}/token", realm.addr().port());
    let registry = fake(move |seen| {
        if seen.authorization() == Some("Bearer anon") {
            return reply(200, &[CT], "{}");
        }
        let challenge = format!(r#"Bearer realm="{realm_url}",service="s""#);
        reply(401, &[("www-authenticate", challenge.as_str())], "")
    });
    let client = client(&registry.url(), true);
    let client = if allow {
        client.with_allowed_realm_hosts(vec!["localhost".into()])
    } else {
        client
    };
    client
        .manifest(Method::GET, "lib/app", "latest")
        .await
        .expect("anonymous token works");
    (registry, realm)
}

#[tokio::test]
async fn a_realm_on_another_host_never_sees_the_credentials() {
    bounded(async {
        let (_registry, realm) = foreign_realm(false).await;
        assert_eq!(realm.count("/token"), 1);
        let with_auth = realm
            .requests()
            .iter()
            .filter(|s| s.authorization().is_some())
            .count();
        assert_eq!(with_auth, 0);
        assert_eq!(
            realm.requests()[0].query,
            "service=s&scope=repository%3Alib%2Fapp%3Apull"
        );
    })
    .await;
}

#[tokio::test]
async fn an_allowed_realm_host_gets_the_credentials() {
    bounded(async {
        let (_registry, realm) = foreign_realm(true).await;
        let basic = basic_value();
        assert_eq!(realm.requests()[0].authorization(), Some(basic.as_str()));
    })
    .await;
}

#[tokio::test]
async fn quay_style_line_prefers_bearer() {
    bounded(async {
        let fake = fake(|seen| match (seen.path.as_str(), seen.authorization()) {
            ("/v2/auth", _) => reply(200, &[], r#"{"token":"q"}"#),
            (_, Some("Bearer q")) => reply(200, &[CT], "{}"),
            _ => {
                let c = format!(
                    r#"Basic realm="quay.io", Bearer realm="http://{}/v2/auth",service="quay.io",scope="repository:x/y:pull""#,
                    seen.local_addr
                );
                reply(401, &[("www-authenticate", c.as_str())], "")
            }
        });
        client(&fake.url(), false)
            .manifest(Method::GET, "x/y", "latest")
            .await
            .expect("bearer");
        assert_eq!(fake.count("/v2/auth"), 1);
    })
    .await;
}

#[tokio::test]
async fn token_endpoint_failures() {
    bounded(async {
        for (status, body, unreachable) in [(503, "", true), (200, "<html>", false)] {
            let fake = fake(move |seen| {
                if seen.path == "/token" {
                    return reply(status, &[], body);
                }
                let c = format!(r#"Bearer realm="http://{}/token""#, seen.local_addr);
                reply(401, &[("www-authenticate", c.as_str())], "")
            });
            let err = client(&fake.url(), true)
                .manifest(Method::GET, "lib/app", "latest")
                .await
                .expect_err("token failure");
            assert!(
                matches!(err, wharf_upstream::Error::TokenFetch { .. }),
                "{err:?}"
            );
            assert_eq!(err.is_unreachable(), unreachable, "{err}");
            assert!(!err.to_string().contains(PASSWORD));
        }
    })
    .await;
}

#[tokio::test]
async fn a_realm_that_is_not_http_is_refused() {
    bounded(async {
        let fake = fake(|_| {
            reply(
                401,
                &[("www-authenticate", r#"Bearer realm="file:///etc/passwd""#)],
                "",
            )
        });
        let err = client(&fake.url(), true)
            .manifest(Method::GET, "lib/app", "latest")
            .await
            .expect_err("refused");
        assert!(
            matches!(err, wharf_upstream::Error::RealmRefused { .. }),
            "{err:?}"
        );
    })
    .await;
}
