//! Rights on hosted repositories (issue 16): `[[auth.rights]]` per user and repository pattern,
//! `anonymous_pull = "mirrored"` (mirrored content without login, hosted content only with
//! one), and the rights a mount needs on its source, spoken raw against the spec's statuses
//! and error JSON.

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

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use api::Api;
use base64::Engine;
use bytes::Bytes;
use support::{SecureWharf, htpasswd};
use wharf_e2e::expect;
use wharf_e2e::http::{ACCEPT_ALL_MANIFESTS, Http};
use wharf_e2e::process::run;
use wharf_e2e::util::{sha256_digest, temp_dir};
use wharf_e2e::{Upstream, UpstreamCfg, Wharf, images};

/// `htpasswd -bB FILE user password`: a further user in an existing file.
fn add_user(file: &Path, user: &str, password: &str) {
    run(
        Command::new("htpasswd")
            .args(["-bB"])
            .arg(file)
            .args([user, password]),
        Duration::from_secs(30),
    )
    .expect_ok("htpasswd -bB");
}

fn api(wharf: &SecureWharf, user: &str) -> Api {
    let v = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{user}-pw"));
    Api {
        http: Http::new(),
        base: wharf.url(),
        auth: format!("Basic {v}"),
    }
}

/// An image manifest of one config and one layer, both pushed to `repo` first.
fn push_image(api: &Api, repo: &str, tag: &str, layer: &[u8]) -> String {
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let cd = api.push_blob(repo, config);
    let ld = api.push_blob(repo, layer);
    let body = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{ld}","size":{}}}]}}"#,
        config.len(),
        layer.len()
    );
    let r = api.send(
        "PUT",
        &format!("/v2/{repo}/manifests/{tag}"),
        &[("Content-Type", "application/vnd.oci.image.manifest.v1+json")],
        body.as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", r.describe());
    sha256_digest(body.as_bytes())
}

#[test]
fn alice_pushes_to_team_bob_only_pulls_anonymous_pulls_only_mirrored() {
    let set = images();
    let up = Upstream::plain();
    let dir = temp_dir("rights");
    let file = dir.path().join("htpasswd");
    htpasswd(&file, "alice", "alice-pw");
    add_user(&file, "bob", "bob-pw");
    let builder = Wharf::builder()
        .upstream(UpstreamCfg::oracle(&up))
        .extra_toml(&format!(
            r#"[auth]
htpasswd = {:?}
anonymous_pull = "mirrored"

[[auth.rights]]
users = ["alice"]
repositories = ["team/*"]
actions = ["push", "delete"]

[[auth.rights]]
users = ["bob"]
repositories = ["team/*"]
actions = ["pull"]

[[auth.rights]]
users = ["bob"]
repositories = ["bob/*"]
actions = ["push"]

[hosted]
repositories = ["team/*", "bob/*"]
"#,
            file.display().to_string()
        ));
    let wharf = SecureWharf::start(builder, "", None);
    let (alice, bob) = (api(&wharf, "alice"), api(&wharf, "bob"));
    let anonymous = Http::new();
    let url = |path: &str| format!("{}{path}", wharf.url());

    // alice pushes to team/*; bob pulls it back.
    let md = push_image(&alice, "team/app", "v1", b"team layer");
    let r = bob.send(
        "GET",
        "/v2/team/app/manifests/v1",
        &[("Accept", ACCEPT_ALL_MANIFESTS)],
        b"",
    );
    assert_eq!(r.status, 200, "bob pulls team/app: {}", r.describe());
    assert_eq!(sha256_digest(&r.body), md);

    // bob may not push to team/*: uploads and manifest PUTs are 403 DENIED naming the right.
    let r = bob.send("POST", "/v2/team/app/blobs/uploads/", &[], b"");
    expect::oci_error(&r, &[403], "DENIED", "bob starts an upload to team/app");
    assert!(
        r.errors()[0].1.contains("bob") && r.errors()[0].1.contains("push"),
        "{}",
        r.describe()
    );
    let r = bob.send(
        "PUT",
        "/v2/team/app/manifests/v2",
        &[("Content-Type", "application/vnd.oci.image.manifest.v1+json")],
        b"{}",
    );
    expect::oci_error(&r, &[403], "DENIED", "bob puts a manifest into team/app");
    let r = bob.send("DELETE", &format!("/v2/team/app/manifests/{md}"), &[], b"");
    expect::oci_error(&r, &[403], "DENIED", "bob deletes from team/app");
    assert!(r.errors()[0].1.contains("delete"), "{}", r.describe());
    // ... nor pull where no right names him, although he pushes there: alice lacks pull on bob/*.
    push_image(&bob, "bob/tool", "v1", b"bob's layer");
    let r = alice.send("GET", "/v2/bob/tool/manifests/v1", &[], b"");
    expect::oci_error(&r, &[403], "DENIED", "alice pulls bob/tool");

    // A mount needs pull on its source: bob (pull on team/*) mounts team/app's layer into
    // bob/*; alice (no pull on bob/*) gets an ordinary upload instead, and learns nothing.
    let layer = sha256_digest(b"team layer");
    let r = bob.send(
        "POST",
        &format!("/v2/bob/copy/blobs/uploads/?mount={layer}&from=team/app"),
        &[],
        b"",
    );
    assert_eq!(r.status, 201, "bob mounts from team/app: {}", r.describe());
    let bobs = sha256_digest(b"bob's layer");
    let r = alice.send(
        "POST",
        &format!("/v2/team/x/blobs/uploads/?mount={bobs}&from=bob/tool"),
        &[],
        b"",
    );
    assert_eq!(
        r.status,
        202,
        "alice mounts from bob/tool: {}",
        r.describe()
    );
    assert_eq!(alice.blob_status("team/x", &bobs), 404);

    // Anonymous: hosted content asks for a login (401, wharf's challenge); mirrored content
    // is served.
    let r = anonymous.get(&url("/v2/team/app/manifests/v1"), &[]);
    expect::oci_error(&r, &[401], "UNAUTHORIZED", "anonymous pull of team/app");
    assert_eq!(
        r.header("www-authenticate").as_deref(),
        Some(r#"Basic realm="wharf""#)
    );
    let r = anonymous.request(
        "POST",
        &url("/v2/team/app/blobs/uploads/"),
        &[],
        Bytes::new(),
    );
    expect::oci_error(&r, &[401], "UNAUTHORIZED", "anonymous push to team/app");
    let img = &set.oraclelinux;
    let r = anonymous.get(
        &url(&format!("/v2/oracle/{}/manifests/{}", img.repo, img.tag)),
        &[("Accept", ACCEPT_ALL_MANIFESTS)],
    );
    assert_eq!(
        r.status,
        200,
        "anonymous pull of mirrored content: {}",
        r.describe()
    );
    assert_eq!(sha256_digest(&r.body), img.manifest.digest);
}

#[test]
fn anonymous_pull_hosted_only_keeps_mirrored_content_for_users() {
    let set = images();
    let up = Upstream::plain();
    let dir = temp_dir("rights-hosted");
    let file = dir.path().join("htpasswd");
    htpasswd(&file, "alice", "alice-pw");
    let builder = Wharf::builder()
        .upstream(UpstreamCfg::oracle(&up))
        .extra_toml(&format!(
            "[auth]\nhtpasswd = {:?}\nanonymous_pull = \"hosted\"\n\n[hosted]\nrepositories = [\"team/*\"]\n",
            file.display().to_string()
        ));
    let wharf = SecureWharf::start(builder, "", None);
    let alice = api(&wharf, "alice");
    let md = push_image(&alice, "team/app", "v1", b"public layer");
    let anonymous = Http::new();
    let r = anonymous.get(
        &format!("{}/v2/team/app/manifests/v1", wharf.url()),
        &[("Accept", ACCEPT_ALL_MANIFESTS)],
    );
    assert_eq!(r.status, 200, "anonymous pull of hosted: {}", r.describe());
    assert_eq!(sha256_digest(&r.body), md);
    let img = &set.oraclelinux;
    let mirrored = format!("/v2/oracle/{}/manifests/{}", img.repo, img.tag);
    let m = up.mark();
    let r = anonymous.get(&format!("{}{mirrored}", wharf.url()), &[]);
    expect::oci_error(&r, &[401], "UNAUTHORIZED", "anonymous pull of mirrored");
    assert_eq!(up.since(m).len(), 0, "a refused pull reached the upstream");
    let r = alice.send("GET", &mirrored, &[("Accept", ACCEPT_ALL_MANIFESTS)], b"");
    assert_eq!(r.status, 200, "alice pulls mirrored: {}", r.describe());
}
