//! Hosted repositories (issue 16, first slice): the Oracle Linux guide's flow with podman
//! (pull through wharf, tag, login, push, pull from a fresh storage), skopeo copying a
//! multi-arch index into a hosted repository and back, and the push API spoken raw: chunked
//! uploads and their 416, upload status and cancel, digests that do not match, mounts, content
//! scoped to the repository that holds it, manifests naming what is not there, and pushes that
//! are refused (an upstream's name, no credentials). `hosting/clients.rs`: buildah's push,
//! and a push past the quota.

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

#[path = "hosting/api.rs"]
mod api;
#[path = "hosting/clients.rs"]
mod clients;
#[path = "security/support.rs"]
#[allow(dead_code, reason = "shared with e2e_security, which uses all of it")]
mod support;

use std::process::Command;
use std::time::Duration;

use api::{Api, with_digest};
use base64::Engine;
use bytes::Bytes;
use support::{SecureWharf, htpasswd};
use wharf_e2e::expect;
use wharf_e2e::http::{ACCEPT_ALL_MANIFESTS, Http};
use wharf_e2e::process::run;
use wharf_e2e::util::{sha256_digest, temp_dir};
use wharf_e2e::{Podman, Upstream, UpstreamCfg, Wharf, images};

const USER: &str = "alice";
const PASSWORD: &str = "push-s3cret";
const TIMEOUT: Duration = Duration::from_secs(300);

/// wharf in front of `up` (upstream "oracle", also the default), with an htpasswd user,
/// anonymous pulls, and `ol7image` and `team/*` hosted.
fn hosting_wharf(up: &Upstream) -> (SecureWharf, tempfile::TempDir) {
    let dir = temp_dir("hosting");
    let file = dir.path().join("htpasswd");
    htpasswd(&file, USER, PASSWORD);
    let builder = Wharf::builder()
        .upstream(UpstreamCfg::oracle(up))
        .extra_toml(&format!(
            "[auth]\nhtpasswd = {:?}\nanonymous_pull = true\n\n[hosted]\nrepositories = [\"ol7image\", \"team/*\"]\n",
            file.display().to_string()
        ));
    (SecureWharf::start(builder, "", None), dir)
}

fn basic() -> String {
    let v = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    format!("Basic {v}")
}

#[test]
fn the_guides_flow_with_podman_pull_tag_login_push_pull() {
    let set = images();
    let img = &set.oraclelinux;
    let up = Upstream::plain();
    let (wharf, _dir) = hosting_wharf(&up);
    let host = wharf.host_port();
    let podman = Podman::plain(&[&host]);
    let authfile = podman.dir().join("auth.json");
    let authfile = authfile.to_str().expect("utf-8");

    // Pull through wharf, as a mirror user would.
    let mirrored = format!("{host}/oracle/{}", img.reference());
    podman
        .pull(&mirrored, &[])
        .expect_ok("podman pull through wharf");
    let image_id = podman.inspect(&mirrored, "{{.Id}}");

    // podman tag ... <wharf>/ol7image:v1; a push before login is refused.
    let hosted = format!("{host}/ol7image:v1");
    let mut tag = podman.command();
    tag.args(["tag", &mirrored, &hosted]);
    run(&mut tag, TIMEOUT).expect_ok("podman tag");
    let push = |extra: &[&str]| {
        let digestfile = podman.dir().join("pushed.digest");
        let mut cmd = podman.command();
        cmd.args(["push", "--authfile", authfile])
            .arg("--digestfile")
            .arg(&digestfile)
            .args(extra)
            .arg(&hosted);
        let out = run(&mut cmd, TIMEOUT);
        (
            out,
            std::fs::read_to_string(&digestfile).unwrap_or_default(),
        )
    };
    let (refused, _) = push(&[]);
    assert!(!refused.ok(), "a push without login succeeded:\n{refused}");

    let mut login = podman.command();
    login
        .args(["login", "--authfile", authfile, "-u", USER, "-p", PASSWORD])
        .arg(&host);
    run(&mut login, TIMEOUT).expect_ok("podman login");
    let m = up.mark();
    let (pushed, digest) = push(&[]);
    pushed.expect_ok("podman push");
    assert!(digest.starts_with("sha256:"), "digestfile: {digest:?}");
    assert_eq!(
        up.since(m).len(),
        0,
        "a push to a hosted repository asked the upstream"
    );

    // A fresh storage pulls ol7image:v1 back: the digest pushed, the same image.
    let m = up.mark();
    let fresh = Podman::plain(&[&host]);
    fresh
        .pull(&hosted, &["--authfile", authfile])
        .expect_ok("podman pull of the pushed image");
    assert_eq!(fresh.image_digest(&hosted), digest.trim(), "pulled digest");
    assert_eq!(fresh.inspect(&hosted, "{{.Id}}"), image_id, "same image");
    assert_eq!(
        up.since(m).len(),
        0,
        "a pull of hosted content asked the upstream"
    );
}

#[test]
fn skopeo_copies_a_multiarch_index_into_a_hosted_repository_and_back() {
    let set = images();
    let multi = &set.multiarch;
    let up = Upstream::plain();
    let (wharf, _dir) = hosting_wharf(&up);
    let host = wharf.host_port();
    let work = temp_dir("skopeo-hosting");
    let policy = work.path().join("policy.json");
    wharf_e2e::clients::write_policy(&policy);
    let skopeo = |args: &[&str]| {
        let mut cmd = Command::new("skopeo");
        cmd.arg("--policy").arg(&policy).args(args);
        run(&mut cmd, TIMEOUT)
    };
    let creds = format!("{USER}:{PASSWORD}");
    skopeo(&[
        "copy",
        "--all",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        "--dest-creds",
        &creds,
        &format!("docker://{host}/oracle/{}", multi.reference()),
        &format!("docker://{host}/team/multi:v1"),
    ])
    .expect_ok("skopeo copy --all into team/multi");
    let back = work.path().join("back");
    let m = up.mark();
    skopeo(&[
        "copy",
        "--all",
        "--src-tls-verify=false",
        &format!("docker://{host}/team/multi:v1"),
        &format!("dir:{}", back.display()),
    ])
    .expect_ok("skopeo copy --all out of team/multi");
    assert_eq!(
        up.since(m).len(),
        0,
        "hosted content came from the upstream"
    );
    let index = std::fs::read(back.join("manifest.json")).expect("index");
    assert_eq!(sha256_digest(&index), multi.manifest.digest, "index digest");
    assert_eq!(index, multi.manifest_json.as_bytes(), "index bytes");
    let http = Http::new();
    for child in &multi.children {
        let r = http.get(
            &format!(
                "{}/v2/team/multi/manifests/{}",
                wharf.url(),
                child.manifest.digest
            ),
            &[("Accept", ACCEPT_ALL_MANIFESTS)],
        );
        assert_eq!(r.status, 200, "{}", r.describe());
        assert_eq!(sha256_digest(&r.body), child.manifest.digest);
        for blob in child.blobs() {
            let r = http.head(
                &format!("{}/v2/team/multi/blobs/{}", wharf.url(), blob.digest),
                &[],
            );
            assert_eq!(r.status, 200, "{} {}", blob.digest, r.describe());
            assert_eq!(r.header("content-length"), Some(blob.size.to_string()));
        }
    }
}

#[test]
fn the_push_api_uploads_mounts_scopes_and_refusals() {
    let up = Upstream::plain();
    let (wharf, _dir) = hosting_wharf(&up);
    let api = Api {
        http: Http::new(),
        base: wharf.url(),
        auth: basic(),
    };

    // Chunked: 0-9, then 20-29 out of order (416 with where it stands), status, 10-19, and the
    // last chunk with the PUT.
    let blob: Vec<u8> = (0..25u8).collect();
    let d = sha256_digest(&blob);
    let loc = api.start("team/a");
    let patch = |range: &str, bytes: &[u8]| {
        api.send(
            "PATCH",
            &loc,
            &[
                ("Content-Range", range),
                ("Content-Type", "application/octet-stream"),
            ],
            bytes,
        )
    };
    let r = patch("0-9", &blob[..10]);
    assert_eq!(r.status, 202, "{}", r.describe());
    assert_eq!(r.header("range").as_deref(), Some("0-9"));
    let r = patch("20-24", &blob[20..]);
    expect::oci_error(&r, &[416], "RANGE_INVALID", "a chunk out of order");
    assert_eq!(
        r.header("range").as_deref(),
        Some("0-9"),
        "{}",
        r.describe()
    );
    assert_eq!(r.header("location").as_deref(), Some(loc.as_str()));
    let r = patch("5-14", &blob[5..15]);
    expect::oci_error(&r, &[416], "RANGE_INVALID", "an overlapping chunk");
    let r = api.send("GET", &loc, &[], b"");
    assert_eq!(r.status, 204, "{}", r.describe());
    assert_eq!(r.header("range").as_deref(), Some("0-9"));
    assert_eq!(patch("10-19", &blob[10..20]).status, 202);
    assert_eq!(
        api.blob_status("team/a", &d),
        404,
        "visible before it is complete"
    );
    let r = api.send(
        "PUT",
        &with_digest(&loc, &d),
        &[
            ("Content-Range", "20-24"),
            ("Content-Type", "application/octet-stream"),
        ],
        &blob[20..],
    );
    assert_eq!(r.status, 201, "{}", r.describe());
    assert_eq!(r.header("location"), Some(format!("/v2/team/a/blobs/{d}")));
    assert_eq!(r.header("docker-content-digest"), Some(d.clone()));
    let r = api.send("GET", &format!("/v2/team/a/blobs/{d}"), &[], b"");
    assert_eq!((r.status, r.body.as_ref()), (200, blob.as_slice()));
    let r = api.send(
        "GET",
        &format!("/v2/team/a/blobs/{d}"),
        &[("Range", "bytes=5-9")],
        b"",
    );
    assert_eq!((r.status, r.body.as_ref()), (206, &blob[5..10]));
    let r = api.send("GET", &loc, &[], b"");
    expect::oci_error(&r, &[404], "BLOB_UPLOAD_UNKNOWN", "a completed upload");

    // POST then PUT with the whole blob.
    let whole = b"posted, then put whole".to_vec();
    let loc = api.start("team/a");
    let wd = sha256_digest(&whole);
    let r = api.send("PUT", &with_digest(&loc, &wd), &[], &whole);
    assert_eq!(r.status, 201, "{}", r.describe());

    // A wrong digest: 400 DIGEST_INVALID, nothing stored under either digest.
    let bytes = b"the bytes sent".to_vec();
    let claimed = sha256_digest(b"other bytes");
    let r = api.send(
        "POST",
        &format!("/v2/team/a/blobs/uploads/?digest={claimed}"),
        &[],
        &bytes,
    );
    expect::oci_error(
        &r,
        &[400],
        "DIGEST_INVALID",
        "monolithic upload, wrong digest",
    );
    assert_eq!(api.blob_status("team/a", &claimed), 404);
    assert_eq!(api.blob_status("team/a", &sha256_digest(&bytes)), 404);

    // Cancel: the upload is gone.
    let loc = api.start("team/a");
    assert_eq!(api.send("DELETE", &loc, &[], b"").status, 204);
    let r = api.send("PATCH", &loc, &[], b"more");
    expect::oci_error(&r, &[404], "BLOB_UPLOAD_UNKNOWN", "a cancelled upload");

    // Scopes: team/a's blob is not team/b's until mounted there.
    let r = api.send("GET", &format!("/v2/team/b/blobs/{d}"), &[], b"");
    expect::oci_error(&r, &[404], "BLOB_UNKNOWN", "another repository's blob");
    let r = api.send(
        "POST",
        &format!("/v2/team/c/blobs/uploads/?mount={d}&from=team/zzz"),
        &[],
        b"",
    );
    assert_eq!(
        r.status,
        202,
        "a mount from a repository without it: {}",
        r.describe()
    );
    assert!(r.header("location").is_some());
    let r = api.send(
        "POST",
        &format!("/v2/team/b/blobs/uploads/?mount={d}&from=team/a"),
        &[],
        b"",
    );
    assert_eq!(r.status, 201, "{}", r.describe());
    assert_eq!(r.header("location"), Some(format!("/v2/team/b/blobs/{d}")));
    assert_eq!(api.blob_status("team/b", &d), 200);

    // Manifests: one naming a blob team/b lacks is refused; then pushed by tag and by digest.
    let config = api.push_blob("team/b", br#"{"architecture":"amd64","os":"linux"}"#);
    let manifest = |layer: &str, extra: &str| {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":38}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer}","size":25}}]{extra}}}"#
        )
    };
    let oci = [("Content-Type", "application/vnd.oci.image.manifest.v1+json")];
    let r = api.send(
        "PUT",
        "/v2/team/b/manifests/v1",
        &oci,
        manifest(&wd, "").as_bytes(),
    );
    expect::oci_error(&r, &[400], "MANIFEST_BLOB_UNKNOWN", "a layer team/b lacks");
    assert_eq!(r.json()["errors"][0]["detail"]["digest"], wd.as_str());
    let body = manifest(&d, "");
    let md = sha256_digest(body.as_bytes());
    for tag in ["v1", "v2", "v3"] {
        let r = api.send(
            "PUT",
            &format!("/v2/team/b/manifests/{tag}"),
            &oci,
            body.as_bytes(),
        );
        assert_eq!(r.status, 201, "{}", r.describe());
        assert_eq!(r.header("docker-content-digest"), Some(md.clone()));
        assert_eq!(
            r.header("location"),
            Some(format!("/v2/team/b/manifests/{md}"))
        );
    }
    let r = api.send(
        "GET",
        "/v2/team/b/manifests/v2",
        &[("Accept", ACCEPT_ALL_MANIFESTS)],
        b"",
    );
    assert_eq!((r.status, r.text()), (200, body.clone()), "byte-exact");
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/vnd.oci.image.manifest.v1+json")
    );
    let r = api.send("GET", &format!("/v2/team/a/manifests/{md}"), &[], b"");
    expect::oci_error(
        &r,
        &[404],
        "MANIFEST_UNKNOWN",
        "another repository's manifest",
    );
    let with_subject = manifest(
        &d,
        &format!(
            r#","subject":{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{md}","size":{}}}"#,
            body.len()
        ),
    );
    let sd = sha256_digest(with_subject.as_bytes());
    let r = api.send(
        "PUT",
        &format!("/v2/team/b/manifests/{sd}"),
        &oci,
        with_subject.as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", r.describe());
    assert_eq!(r.header("oci-subject"), Some(md.clone()));
    let r = api.send("GET", "/v2/team/b/tags/list?n=2", &[], b"");
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(
        r.json(),
        serde_json::json!({"name": "team/b", "tags": ["v1", "v2"]})
    );
    assert_eq!(
        r.header("link").as_deref(),
        Some(r#"</v2/team/b/tags/list?last=v2&n=2>; rel="next""#)
    );

    // Refused pushes: an upstream's name (prefixed, or bare and served by the default
    // upstream, so never hosted on a first push), and no credentials.
    for repo in ["oracle/os/oraclelinux", "os/oraclelinux"] {
        let r = api.send("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], b"");
        expect::oci_error(&r, &[403], "DENIED", "a push to an upstream's name");
        assert!(
            r.errors()[0].1.contains("upstream oracle"),
            "{}",
            r.describe()
        );
    }
    let anonymous = Http::new();
    let r = anonymous.request(
        "POST",
        &format!("{}/v2/team/a/blobs/uploads/", wharf.url()),
        &[],
        Bytes::new(),
    );
    expect::oci_error(&r, &[401], "UNAUTHORIZED", "a push without credentials");
    assert_eq!(
        r.header("www-authenticate").as_deref(),
        Some(r#"Basic realm="wharf""#)
    );
    let r = anonymous.get(&format!("{}/v2/team/a/blobs/{d}", wharf.url()), &[]);
    assert_eq!(
        r.status,
        200,
        "anonymous pull of hosted content: {}",
        r.describe()
    );
}
