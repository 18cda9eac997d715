//! `GET /v2/_catalog` (issue 16): hosted repositories and cached ones (named with the
//! upstream's prefix, as clients name them on wharf), in byte order, paged with `n`/`last` and
//! a `Link` in Distribution's form, listing only what the caller may pull.

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

#[path = "hosting/api.rs"]
#[allow(dead_code, reason = "shared with e2e_hosting, which uses all of it")]
mod api;
#[path = "security/support.rs"]
#[allow(dead_code, reason = "shared with e2e_security, which uses all of it")]
mod support;

use std::process::Command;
use std::time::Duration;

use api::Api;
use base64::Engine;
use support::{SecureWharf, htpasswd};
use wharf_e2e::expect;
use wharf_e2e::http::{ACCEPT_ALL_MANIFESTS, Http, Resp};
use wharf_e2e::process::run;
use wharf_e2e::util::temp_dir;
use wharf_e2e::{Upstream, UpstreamCfg, Wharf, images};

fn api(wharf: &SecureWharf, user: &str) -> Api {
    let v = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{user}-pw"));
    Api {
        http: Http::new(),
        base: wharf.url(),
        auth: format!("Basic {v}"),
    }
}

/// A manifest with one config blob, pushed to `repo:v1`.
fn push(api: &Api, repo: &str) {
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let cd = api.push_blob(repo, config);
    let body = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{}}},"layers":[]}}"#,
        config.len()
    );
    let r = api.send(
        "PUT",
        &format!("/v2/{repo}/manifests/v1"),
        &[("Content-Type", "application/vnd.oci.image.manifest.v1+json")],
        body.as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", r.describe());
}

fn repositories(r: &Resp) -> Vec<String> {
    assert_eq!(r.status, 200, "{}", r.describe());
    serde_json::from_value(r.json()["repositories"].clone()).expect("repositories")
}

#[test]
fn the_catalog_lists_what_the_caller_may_pull_in_pages() {
    let set = images();
    let up = Upstream::plain();
    let dir = temp_dir("catalog");
    let file = dir.path().join("htpasswd");
    htpasswd(&file, "alice", "alice-pw");
    run(
        Command::new("htpasswd")
            .args(["-bB"])
            .arg(&file)
            .args(["bob", "bob-pw"]),
        Duration::from_secs(30),
    )
    .expect_ok("htpasswd -bB");
    let builder = Wharf::builder()
        .upstream(UpstreamCfg::oracle(&up))
        .extra_toml(&format!(
            r#"[auth]
htpasswd = {:?}
anonymous_pull = "mirrored"

[[auth.rights]]
users = ["alice"]
repositories = ["team/*"]
actions = ["push"]

[[auth.rights]]
users = ["bob"]
repositories = ["team/a"]
actions = ["pull"]

[hosted]
repositories = ["team/*"]
"#,
            file.display().to_string()
        ));
    let wharf = SecureWharf::start(builder, "", None);
    let (alice, bob) = (api(&wharf, "alice"), api(&wharf, "bob"));
    let anonymous = Http::new();

    // Cached: two repositories pulled through wharf. Hosted: three pushed.
    for img in [&set.oraclelinux, &set.hello] {
        let r = anonymous.get(
            &format!(
                "{}/v2/oracle/{}/manifests/{}",
                wharf.url(),
                img.repo,
                img.tag
            ),
            &[("Accept", ACCEPT_ALL_MANIFESTS)],
        );
        assert_eq!(r.status, 200, "{}", r.describe());
    }
    for repo in ["team/c", "team/a", "team/b"] {
        push(&alice, repo);
    }
    let all = [
        "oracle/hello",
        "oracle/os/oraclelinux",
        "team/a",
        "team/b",
        "team/c",
    ];
    let m = up.mark();
    let r = alice.send("GET", "/v2/_catalog", &[], b"");
    assert_eq!(repositories(&r), all);
    assert_eq!(r.header("link"), None, "one page holds them all");
    assert_eq!(up.since(m).len(), 0, "the catalog asked the upstream");

    // Pages of 2, following Link as a client does.
    let r = alice.send("GET", "/v2/_catalog?n=2", &[], b"");
    assert_eq!(repositories(&r), all[..2]);
    let link = r.header("link").expect("Link");
    assert_eq!(
        link,
        r#"</v2/_catalog?last=oracle%2Fos%2Foraclelinux&n=2>; rel="next""#
    );
    let next = link
        .trim_start_matches('<')
        .split('>')
        .next()
        .expect("a URL in Link");
    let r = alice.send("GET", next, &[], b"");
    assert_eq!(repositories(&r), all[2..4]);
    assert_eq!(
        r.header("link").as_deref(),
        Some(r#"</v2/_catalog?last=team%2Fb&n=2>; rel="next""#)
    );
    let r = alice.send("GET", "/v2/_catalog?last=team%2Fb&n=2", &[], b"");
    assert_eq!(repositories(&r), all[4..]);
    assert_eq!(r.header("link"), None, "the last page");
    let r = alice.send("GET", "/v2/_catalog?n=0", &[], b"");
    assert!(repositories(&r).is_empty());
    assert_eq!(r.header("link"), None);
    let r = alice.send("GET", "/v2/_catalog?n=two", &[], b"");
    expect::oci_error(&r, &[400], "PAGINATION_NUMBER_INVALID", "n=two");

    // bob may pull team/a only; anonymous callers only mirrored content.
    let r = bob.send("GET", "/v2/_catalog", &[], b"");
    assert_eq!(
        repositories(&r),
        ["oracle/hello", "oracle/os/oraclelinux", "team/a"]
    );
    let r = anonymous.get(&format!("{}/v2/_catalog", wharf.url()), &[]);
    assert_eq!(repositories(&r), all[..2]);
    let r = alice.send("POST", "/v2/_catalog", &[], b"");
    expect::oci_error(&r, &[405], "UNSUPPORTED", "POST /v2/_catalog");
}
