//! Upstreams that want credentials, over TLS with a self-signed certificate (`ca_file`):
//! Bearer tokens from the harness's issuer, and htpasswd Basic auth.

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

use wharf_e2e::expect;
use wharf_e2e::http::{ACCEPT_ALL_MANIFESTS, Http};
use wharf_e2e::{Skopeo, TokenOptions, Upstream, UpstreamCfg, Wharf, images};

#[test]
fn token_upstream_with_credentials_reuses_its_token() {
    let set = images();
    let up = Upstream::token_tls(TokenOptions::default());
    let issuer = up.token_issuer().expect("token issuer");
    let (user, pass) = up.credentials().expect("credentials");
    // tag_ttl 0s: the second pull must revalidate the tag upstream, with a token.
    let wharf = Wharf::builder()
        .upstream(
            UpstreamCfg::oracle(&up)
                .username(user)
                .password_file(pass)
                .tag_ttl("0s"),
        )
        .start();
    let skopeo = Skopeo::new();
    let img = &set.oraclelinux;

    let first = skopeo
        .copy_direct(&wharf.host_port(), &img.reference(), &[])
        .expect_ok("first pull");
    assert_eq!(first.digest(), img.manifest.digest);
    let reqs = issuer.requests();
    assert!(!reqs.is_empty(), "wharf never asked the token issuer");
    assert!(
        issuer.count_with_credentials() >= 1,
        "no token request carried credentials: {reqs:#?}"
    );
    assert!(
        reqs.iter()
            .all(|r| r.status == 200 && r.user.as_deref() == Some(user)),
        "every token request should present {user}'s right password: {reqs:#?}"
    );

    let tokens_before = issuer.tokens_issued();
    let m = up.mark();
    let second = skopeo
        .copy_direct(&wharf.host_port(), &img.reference(), &[])
        .expect_ok("second pull");
    assert_eq!(second.digest(), img.manifest.digest);
    let up_reqs = expect::upstream_requests(&up, m, "second pull, token upstream, tag_ttl 0s");
    expect::served_from_cache(&up_reqs, "second pull");
    let new_tokens = issuer.tokens_issued() - tokens_before;
    eprintln!(
        "[token] tokens issued: {tokens_before} for the first pull, {new_tokens} for the second"
    );
    assert!(
        new_tokens <= 1,
        "the second pull within the token lifetime fetched {new_tokens} new tokens"
    );
}

#[test]
fn token_upstream_anonymous_pull() {
    let set = images();
    let up = Upstream::token_tls(TokenOptions::default());
    let issuer = up.token_issuer().expect("token issuer");
    let wharf = Wharf::for_upstream(&up);
    let c = Skopeo::new()
        .copy_direct(&wharf.host_port(), &set.hello.reference(), &[])
        .expect_ok("anonymous pull through wharf");
    assert_eq!(c.digest(), set.hello.manifest.digest);
    assert!(issuer.tokens_issued() >= 1, "no token was fetched");
    assert_eq!(
        issuer.count_with_credentials(),
        0,
        "wharf sent credentials it was not given"
    );
}

#[test]
fn token_upstream_answering_only_access_token_without_expires_in() {
    let set = images();
    let opts = TokenOptions {
        access_token_only: true,
        omit_expires_in: true,
        ..TokenOptions::default()
    };
    let up = Upstream::token_tls(opts);
    let (user, pass) = up.credentials().expect("credentials");
    let wharf = Wharf::builder()
        .upstream(UpstreamCfg::oracle(&up).username(user).password_file(pass))
        .start();
    let c = Skopeo::new()
        .copy_direct(&wharf.host_port(), &set.legacy.reference(), &[])
        .expect_ok("pull with access_token-only answers");
    assert_eq!(c.digest(), set.legacy.manifest.digest);
    assert!(up.token_issuer().expect("issuer").count_with_credentials() >= 1);
}

#[test]
fn token_upstream_wrong_password_is_unauthorized() {
    let set = images();
    let up = Upstream::token_tls(TokenOptions {
        anonymous_pull: false,
        ..TokenOptions::default()
    });
    let wharf = Wharf::builder()
        .upstream(
            UpstreamCfg::oracle(&up)
                .username("bench")
                .password_file("not-the-password"),
        )
        .start();
    let url = format!(
        "{}/v2/{}/manifests/{}",
        wharf.url(),
        set.hello.repo,
        set.hello.tag
    );
    let r = Http::new().get(&url, &[("Accept", ACCEPT_ALL_MANIFESTS)]);
    expect::oci_error(&r, &[401], "UNAUTHORIZED", "token upstream, wrong password");
    expect::message_names_upstream(&r, "oracle", &up, "token upstream, wrong password");
}

#[test]
fn htpasswd_upstream_with_password_env() {
    let set = images();
    let up = Upstream::htpasswd_tls();
    let (user, pass) = up.credentials().expect("credentials");
    let wharf = Wharf::builder()
        .upstream(
            UpstreamCfg::oracle(&up)
                .username(user)
                .password_env("WHARF_E2E_ORACLE_PASSWORD", pass),
        )
        .start();
    let m = up.mark();
    let c = Skopeo::new()
        .copy_direct(&wharf.host_port(), &set.oraclelinux.reference(), &[])
        .expect_ok("pull through wharf from a Basic-auth upstream");
    assert_eq!(c.digest(), set.oraclelinux.manifest.digest);
    let reqs = expect::upstream_requests(&up, m, "pull from htpasswd upstream");
    expect::each_blob_fetched_once(&reqs, &set.oraclelinux.blobs(), "htpasswd upstream");
    assert!(
        reqs.iter()
            .filter(|r| r.is_blob_get())
            .all(|r| r.status == 200),
        "{reqs:#?}"
    );
}

#[test]
fn htpasswd_upstream_without_credentials_is_unauthorized() {
    let set = images();
    let up = Upstream::htpasswd_tls();
    let wharf = Wharf::for_upstream(&up);
    let url = format!(
        "{}/v2/{}/manifests/{}",
        wharf.url(),
        set.oraclelinux.repo,
        set.oraclelinux.tag
    );
    let r = Http::new().get(&url, &[("Accept", ACCEPT_ALL_MANIFESTS)]);
    expect::oci_error(
        &r,
        &[401],
        "UNAUTHORIZED",
        "Basic upstream, no credentials configured",
    );
    expect::message_names_upstream(
        &r,
        "oracle",
        &up,
        "Basic upstream, no credentials configured",
    );
}
