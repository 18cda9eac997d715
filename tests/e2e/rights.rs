//! Rights on hosted repositories (issue 16): `[[auth.rights]]` per user and repository pattern,
//! `anonymous_pull = "mirrored"` (mirrored content without login, hosted content only with
//! one), and the rights a mount needs on its source, spoken raw against the spec's statuses
//! and error JSON; and the guide's bare-name push with podman on the default configuration's
//! shape plus a user: hosted on the first push only when the default upstream lacks the name.

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
use wharf_e2e::{Podman, Upstream, UpstreamCfg, Wharf, images};

const TIMEOUT: Duration = Duration::from_secs(300);

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
delete = true
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

/// The guide's flow on the embedded default's shape (a default upstream for bare names, no
/// `[hosted]`) plus a user: `ol7image` becomes hosted on its first push because the upstream
/// lacks it (asked once), survives a restart, and a bare name the upstream serves is refused.
#[test]
fn the_guides_bare_name_push_is_hosted_only_when_the_default_upstream_lacks_it() {
    let set = images();
    let img = &set.oraclelinux;
    let mut up = Upstream::plain();
    let dir = temp_dir("bare-names");
    let file = dir.path().join("htpasswd");
    htpasswd(&file, "alice", "alice-pw");
    let cache = dir.path().join("cache");
    let start = |up: &Upstream| {
        let builder = Wharf::builder()
            .upstream(UpstreamCfg::oracle(up))
            .cache_dir(&cache)
            .extra_toml(&format!(
                "[auth]\nhtpasswd = {:?}\nanonymous_pull = true\n",
                file.display().to_string()
            ));
        SecureWharf::start(builder, "", None)
    };
    let wharf = start(&up);
    let host = wharf.host_port();
    let podman = Podman::plain(&[&host]);
    let authfile = podman.dir().join("auth.json");
    let authfile = authfile.to_str().expect("utf-8");
    let mirrored = format!("{host}/oracle/{}", img.reference());
    podman
        .pull(&mirrored, &[])
        .expect_ok("podman pull through wharf");
    let mut login = podman.command();
    login
        .args([
            "login",
            "--authfile",
            authfile,
            "-u",
            "alice",
            "-p",
            "alice-pw",
        ])
        .arg(&host);
    run(&mut login, TIMEOUT).expect_ok("podman login");
    let push = |name: &str| {
        let mut tag = podman.command();
        tag.args(["tag", &mirrored, name]);
        run(&mut tag, TIMEOUT).expect_ok("podman tag");
        let digestfile = podman.dir().join("pushed.digest");
        let _ = std::fs::remove_file(&digestfile);
        let mut cmd = podman.command();
        cmd.args(["push", "--authfile", authfile, "--digestfile"])
            .arg(&digestfile)
            .arg(name);
        let out = run(&mut cmd, TIMEOUT);
        (
            out,
            std::fs::read_to_string(&digestfile).unwrap_or_default(),
        )
    };

    let hosted = format!("{host}/ol7image:v1");
    let m = up.mark();
    let (out, digest) = push(&hosted);
    out.expect_ok("podman push <wharf>/ol7image:v1");
    // Before its first upload podman HEADs the blobs: still the upstream's name then (a pull).
    let asked = up.since(m);
    let questions: Vec<_> = asked
        .iter()
        .filter(|r| r.path.starts_with("/v2/ol7image/tags/list"))
        .collect();
    assert_eq!(questions.len(), 1, "the upstream is asked once: {asked:?}");
    assert!(
        asked
            .iter()
            .all(|r| r.method == "GET" || r.method == "HEAD"),
        "a push reached the upstream: {asked:?}"
    );
    let fresh = Podman::plain(&[&host]);
    fresh
        .pull(&hosted, &[])
        .expect_ok("podman pull of the pushed bare name");
    assert_eq!(fresh.image_digest(&hosted), digest.trim());

    // A bare name the default upstream serves (the test image's repository) stays its own.
    let m = up.mark();
    let (out, _) = push(&format!("{host}/{}:mine", img.repo));
    assert!(
        !out.ok(),
        "a push shadowed the upstream's {}:\n{out}",
        img.repo
    );
    assert!(out.stderr.contains("upstream oracle"), "{out}");
    let alice = api(&wharf, "alice");
    let r = alice.send(
        "POST",
        &format!("/v2/{}/blobs/uploads/", img.repo),
        &[],
        b"",
    );
    expect::oci_error(
        &r,
        &[403],
        "DENIED",
        "a push to a bare name the upstream serves",
    );
    assert!(
        r.errors()[0].1.contains("upstream oracle"),
        "{}",
        r.describe()
    );
    assert_eq!(
        up.count_since(m, |r| r.path.contains("/tags/list")),
        1,
        "the answer is remembered"
    );
    let r = alice.send(
        "GET",
        &format!("/v2/{}/manifests/{}", img.repo, img.tag),
        &[("Accept", ACCEPT_ALL_MANIFESTS)],
        b"",
    );
    assert_eq!(
        sha256_digest(&r.body),
        img.manifest.digest,
        "still mirrored"
    );

    // A restart keeps ol7image hosted: served without asking the upstream.
    drop(wharf);
    let wharf = start(&up);
    let host = wharf.host_port();
    let m = up.mark();
    let again = Podman::plain(&[&host]);
    let hosted = format!("{host}/ol7image:v1");
    again
        .pull(&hosted, &[])
        .expect_ok("podman pull of ol7image after a restart");
    assert_eq!(again.image_digest(&hosted), digest.trim());
    assert_eq!(
        up.since(m).len(),
        0,
        "hosted content came from the upstream"
    );

    // An upstream that cannot be asked: refused, not guessed (503, retried by clients).
    up.stop();
    let alice = api(&wharf, "alice");
    let r = alice.send("POST", "/v2/newimage/blobs/uploads/", &[], b"");
    expect::oci_error(&r, &[503], "UNAVAILABLE", "the upstream cannot be asked");
    assert!(
        r.errors()[0].1.contains("upstream oracle"),
        "{}",
        r.describe()
    );
    let r = alice.send("POST", "/v2/ol7image/blobs/uploads/", &[], b"");
    assert_eq!(
        r.status,
        202,
        "a hosted bare name needs no upstream: {}",
        r.describe()
    );
}
