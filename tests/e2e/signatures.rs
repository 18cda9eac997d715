//! Signed images through wharf (issue 15): the Oracle Linux guide's signature policy keeps
//! working behind the mirror.
//!
//! An image author's key (`gpg --batch`) signs copies of a test image into the upstream with
//! `skopeo copy --sign-by`; the signatures land in a lookaside tree that nginx serves, and
//! only wharf is told its URL (`lookaside` on the upstream). podman and skopeo get nothing but
//! the drop-in `wharf client-config podman` writes and the guide's `policy.json` (`signedBy`
//! with the author's key, everything else rejected). They pull the signed image through a
//! non-default prefix (`oracle`, the image named `container-registry.oracle.com/...`, whose
//! own location is unreachable) and through the default upstream (the image named by the
//! upstream's own host, signed with that identity); they refuse an unsigned image and an image
//! signed by another key; and once the signature store is down, a fresh client still verifies
//! from what wharf kept.

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

#[path = "security/support.rs"]
#[allow(dead_code, reason = "shared with e2e_security, which uses all of it")]
mod support;

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;

use wharf_e2e::process::{CmdOut, run};
use wharf_e2e::registry::Storage;
use wharf_e2e::signing::{self, Gpg, SignatureStore};
use wharf_e2e::util::{temp_dir, write_file};
use wharf_e2e::wharf::wharf_bin;
use wharf_e2e::{
    Containerd, Http, Podman, REGISTRY_NAME, Skopeo, Upstream, UpstreamCfg, Wharf, images,
};

/// `wharf client-config podman --config <wharf's file> --mirror 127.0.0.1:PORT`: the drop-in.
fn podman_drop_in(w: &Wharf) -> String {
    let mut cmd = std::process::Command::new(wharf_bin());
    cmd.arg("client-config")
        .arg("podman")
        .arg("--config")
        .arg(w.config_path())
        .arg("--mirror")
        .arg(w.host_port());
    run(&mut cmd, Duration::from_secs(30))
        .expect_ok("wharf client-config podman")
        .stdout
}

/// Asserts that `out` failed saying `text`.
fn refused_saying(out: &CmdOut, text: &str, what: &str) {
    eprintln!("[{what}]\n{out}");
    assert!(!out.ok(), "{what}: should be refused:\n{out}");
    assert!(
        out.stderr.contains(text) || out.stdout.contains(text),
        "{what}: should say {text:?}:\n{out}"
    );
}

/// A counter of wharf's `/metrics` with exactly these labels (0 if absent).
fn counter(w: &Wharf, family: &str, labels: &str) -> f64 {
    let text = Http::new()
        .get(&format!("{}/metrics", w.admin_url()), &[])
        .text();
    let prefix = format!("{family}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The user of the enforcing setup's hosted repositories.
const PUSHER: (&str, &str) = ("alice", "mount-s3cret");

struct Signed {
    up: Upstream,
    lookaside: SignatureStore,
    wharf: Wharf,
    key_file: std::path::PathBuf,
    _gpg: Gpg,
    _dir: tempfile::TempDir,
}

/// A writable upstream with copies of test images: `os/signed:1` (the author's key, named as container-registry.oracle.com
/// names it), `os/wrongkey:1` (another key), `os/unsigned:1` (another image, unsigned), and `site/signed:1` (the
/// author's key, named by the upstream's own host); the lookaside serving their signatures;
/// wharf with upstream `oracle` (prefix, not default, `tag_ttl` 1 s so that its lists go
/// stale quickly) and `site` (the default), both with that lookaside.
fn signed_setup() -> Signed {
    setup(false)
}

/// [`signed_setup`]; with `enforce`, upstream `oracle` also requires the author's signature
/// (`require_signature`).
fn setup(enforce: bool) -> Signed {
    let img = &images().hello;
    let template = Upstream::plain();
    let src = format!("{}/{}", template.host_port(), img.reference());
    let up = Upstream::builder().storage(Storage::Empty).start();
    let gpg = Gpg::new();
    let author = gpg.generate("wharf image author <author@wharf.test>");
    let other = gpg.generate("someone else <other@wharf.test>");
    let dir = temp_dir("signatures");
    let key_file = dir.path().join("author.asc");
    gpg.export(&author, &key_file);
    let staging = dir.path().join("lookaside");
    std::fs::create_dir_all(&staging).expect("staging dir");
    let oracle = |repo: &str| format!("{REGISTRY_NAME}/{repo}");
    for (dest, key, identity) in [
        ("os/signed:1", &author, Some(oracle("os/signed:1"))),
        ("os/wrongkey:1", &other, Some(oracle("os/wrongkey:1"))),
        ("site/signed:1", &author, None),
    ] {
        signing::sign_copy(&gpg, key, &src, &up, dest, identity.as_deref(), &staging)
            .expect_ok(&format!("skopeo copy --sign-by into {dest}"));
    }
    // Another image, so that nothing of it reaches a client by way of the signed one.
    let other = format!(
        "{}/{}",
        template.host_port(),
        images().oraclelinux.reference()
    );
    signing::copy_unsigned(&other, &up, "os/unsigned:1").expect_ok("skopeo copy");
    let lookaside = SignatureStore::serving(&staging);
    let lookaside_key = format!("lookaside = {:?}", lookaside.url());
    let mut oracle = UpstreamCfg::new("oracle", &up.url())
        .prefixes(&[REGISTRY_NAME, "oracle"])
        .tag_ttl("1s")
        .extra(&lookaside_key);
    let mut builder = Wharf::builder();
    if enforce {
        oracle = oracle.extra(&format!(
            "require_signature = {{ key = {:?} }}",
            key_file.display().to_string()
        ));
        // A hosted repository and a user who may push, for the mount case.
        let file = dir.path().join("htpasswd");
        support::htpasswd(&file, PUSHER.0, PUSHER.1);
        builder = builder.extra_toml(&format!(
            "[auth]\nhtpasswd = {:?}\nanonymous_pull = true\n\n[hosted]\nrepositories = [\"team/*\"]\n",
            file.display().to_string()
        ));
    }
    let wharf = builder
        .upstream(oracle)
        .upstream(
            UpstreamCfg::new("site", &up.url())
                .default(true)
                .extra(&lookaside_key),
        )
        .start();
    Signed {
        up,
        lookaside,
        wharf,
        key_file,
        _gpg: gpg,
        _dir: dir,
    }
}

impl Signed {
    /// The guide's policy for both names the images go by.
    fn policy(&self) -> String {
        signing::signed_by_policy(&[REGISTRY_NAME, &self.up.host_port()], &self.key_file)
    }
}

#[test]
fn podman_and_skopeo_verify_signatures_through_wharf_with_only_the_generated_files() {
    let mut s = signed_setup();
    let drop_in = podman_drop_in(&s.wharf);
    let policy = s.policy();
    let podman = Podman::with_drop_in(&drop_in);
    podman.set_policy(&policy);

    // Through a prefix that is not the default upstream's.
    let signed = format!("{REGISTRY_NAME}/os/signed:1");
    podman
        .pull(&signed, &[])
        .expect_ok("podman pull of a signed image through wharf's oracle prefix");
    assert!(
        s.lookaside
            .requests()
            .iter()
            .any(|r| r.starts_with("GET /os/signed@sha256=")),
        "wharf asked the signature store: {:?}",
        s.lookaside.requests()
    );
    refused_saying(
        &podman.pull(&format!("{REGISTRY_NAME}/os/unsigned:1"), &[]),
        "A signature was required, but no signature exists",
        "podman pull of an unsigned image",
    );
    refused_saying(
        &podman.pull(&format!("{REGISTRY_NAME}/os/wrongkey:1"), &[]),
        "Source image rejected: Invalid GPG signature",
        "podman pull of an image signed by another key",
    );
    // Through the default upstream: the image named by the upstream's own host, whose
    // signatures name it so; its mirror location is wharf without a prefix.
    podman
        .pull(&format!("{}/site/signed:1", s.up.host_port()), &[])
        .expect_ok("podman pull of a signed image through wharf's default upstream");

    // skopeo, the same drop-in as its registries.conf and the same policy.
    let skopeo = Skopeo::new();
    skopeo.set_policy(&policy);
    let conf_dir = temp_dir("skopeo-conf");
    let conf = conf_dir.path().join("registries.conf");
    write_file(&conf, &drop_in);
    skopeo
        .copy(Some(&conf), &signed, &[])
        .out
        .expect_ok("skopeo copy of a signed image through wharf");
    refused_saying(
        &skopeo
            .copy(Some(&conf), &format!("{REGISTRY_NAME}/os/unsigned:1"), &[])
            .out,
        "A signature was required, but no signature exists",
        "skopeo copy of an unsigned image",
    );
    refused_saying(
        &skopeo
            .copy(Some(&conf), &format!("{REGISTRY_NAME}/os/wrongkey:1"), &[])
            .out,
        "Source image rejected: Invalid GPG signature",
        "skopeo copy of an image signed by another key",
    );

    // The signature store goes down; the lists wharf kept are past the upstream's tag_ttl.
    s.lookaside.stop();
    std::thread::sleep(Duration::from_millis(1200));
    let stale_before = counter(
        &s.wharf,
        "wharf_signature_lists_served_total",
        "source=\"stale\",upstream=\"oracle\"",
    );
    let fresh = Podman::with_drop_in(&drop_in);
    fresh.set_policy(&policy);
    fresh
        .pull(&signed, &[])
        .expect_ok("podman pull of a signed image with the signature store down");
    assert!(
        counter(
            &s.wharf,
            "wharf_signature_lists_served_total",
            "source=\"stale\",upstream=\"oracle\"",
        ) > stale_before,
        "the signatures came from wharf's store, stale:\n{}",
        s.wharf.log()
    );
    refused_saying(
        &fresh.pull(&format!("{REGISTRY_NAME}/os/unsigned:1"), &[]),
        "A signature was required, but no signature exists",
        "podman pull of an unsigned image with the signature store down",
    );
}

#[test]
fn signatures_are_kept_in_the_store_across_a_restart() {
    let mut s = signed_setup();
    let digest = {
        let skopeo = Skopeo::new();
        let copied = skopeo
            .copy_direct(&s.wharf.host_port(), "oracle/os/signed:1", &[])
            .expect_ok("skopeo copy from wharf");
        copied.digest().to_owned()
    };
    let url = format!(
        "{}/extensions/v2/oracle/os/signed/signatures/{digest}",
        s.wharf.url()
    );
    let first = Http::new().get(&url, &[]);
    assert_eq!(first.status, 200, "{}", first.text());
    let body = first.json();
    let sigs = body["signatures"].as_array().expect("a list");
    assert_eq!(sigs.len(), 1, "{body}");
    assert_eq!(sigs[0]["schemaVersion"], 2);
    assert_eq!(sigs[0]["type"], "atomic");
    // A digest the repository is not known to hold: an empty list, the signature store not
    // asked, nothing kept.
    let asked = s.lookaside.requests().len();
    let random = format!("sha256:{}", "0f".repeat(32));
    let none = Http::new().get(
        &format!(
            "{}/extensions/v2/oracle/os/signed/signatures/{random}",
            s.wharf.url()
        ),
        &[],
    );
    assert_eq!(
        (none.status, none.text().as_str()),
        (200, r#"{"signatures":[]}"#)
    );
    assert_eq!(
        s.lookaside.requests().len(),
        asked,
        "the signature store was asked"
    );
    s.lookaside.stop();
    s.wharf.restart();
    let again = Http::new().get(&url, &[]);
    assert_eq!(again.status, 200);
    assert_eq!(again.body, first.body, "the same list, from wharf's store");
    // A repository the signature store has nothing for: an empty list, not an error.
    let none = Http::new().get(
        &format!(
            "{}/extensions/v2/oracle/os/unsigned/signatures/{digest}",
            s.wharf.url()
        ),
        &[],
    );
    assert_eq!(none.status, 200);
    assert_eq!(none.text(), r#"{"signatures":[]}"#);
    let ping = Http::new().get(&format!("{}/v2/", s.wharf.url()), &[]);
    assert_eq!(
        ping.header("x-registry-supports-signatures").as_deref(),
        Some("1")
    );
    assert!(
        Path::new(&s.wharf.cache_dir())
            .join("signatures/oracle/os/signed")
            .is_dir()
    );
}

/// Signature-checking clients probe for sigstore tags and referrers on every pull; most
/// images have neither, and Debian's registry has no referrers API. Asked three times, each
/// costs the upstream one request: the absence is remembered for a while.
#[test]
fn a_missing_sigstore_tag_or_referrers_list_costs_one_upstream_request() {
    let img = &images().hello;
    let up = Upstream::plain();
    let wharf = Wharf::for_upstream(&up);
    let hex = img.manifest.digest.strip_prefix("sha256:").expect("sha256");
    let sig = format!("/v2/oracle/{}/manifests/sha256-{hex}.sig", img.repo);
    let referrers = format!("/v2/oracle/{}/referrers/{}", img.repo, img.manifest.digest);
    let m = up.mark();
    for _ in 0..3 {
        for path in [&sig, &referrers] {
            let r = Http::new().get(&format!("{}{path}", wharf.url()), &[]);
            assert_eq!(r.status, 404, "{path}: {}", r.text());
            assert_eq!(r.error_codes(), ["MANIFEST_UNKNOWN"], "{path}");
        }
    }
    let reqs = up.since(m);
    for (what, tail) in [
        ("the .sig tag", format!("/manifests/sha256-{hex}.sig")),
        (
            "the referrers list",
            format!("/referrers/{}", img.manifest.digest),
        ),
    ] {
        let n = reqs.iter().filter(|r| r.path.ends_with(&tail)).count();
        assert_eq!(n, 1, "{what} asked upstream {n} times: {reqs:?}");
    }
}

/// `require_signature`: wharf serves a manifest of the upstream only when one of its
/// signatures verifies with the configured key and names the image; ctr, which checks no
/// signatures, pulls the signed image and is refused the others with wharf's reason, and
/// nothing of a refused image is served.
#[test]
fn wharf_enforces_signatures_for_clients_that_cannot() {
    let s = setup(true);
    let ctr = Containerd::start();
    // wharf as the registry's server as well as its mirror: with the real registry as the
    // fallback `server`, containerd would take a refused image from there (see the README).
    ctr.mirror_hosts(REGISTRY_NAME, &s.wharf.url(), &s.wharf.url());
    let signed = format!("{REGISTRY_NAME}/os/signed:1");
    ctr.pull(&signed, &[])
        .expect_ok("ctr pull of the signed image through wharf");
    assert_eq!(
        ctr.image_digest(&signed).as_deref(),
        Some(images().hello.manifest.digest.as_str())
    );
    let unsigned_img = &images().oraclelinux;
    let before = ctr.content_digests();
    for (image, reason) in [
        ("os/unsigned:1", "it has no signatures"),
        ("os/wrongkey:1", "which is not in the keyring"),
    ] {
        let out = ctr.pull(&format!("{REGISTRY_NAME}/{image}"), &[]);
        eprintln!("[ctr pull {image}]\n{out}");
        assert!(!out.ok(), "ctr pull {image} must be refused:\n{out}");
        let text = format!("{}{}", out.stdout, out.stderr);
        assert!(
            text.contains("requires images signed") || text.contains("403"),
            "ctr says why (or at least 403):\n{out}"
        );
        let direct = Http::new().get(
            &format!(
                "{}/v2/oracle/{}",
                s.wharf.url(),
                image.replace(':', "/manifests/")
            ),
            &[("accept", "application/vnd.oci.image.manifest.v1+json")],
        );
        assert_eq!(direct.status, 403, "{image}: {}", direct.text());
        assert_eq!(direct.error_codes(), ["DENIED"]);
        assert!(direct.text().contains(reason), "{image}: {}", direct.text());
    }
    // Nothing of the refused image reached ctr, and its config is not served either.
    let after = ctr.content_digests();
    let signed_blobs: Vec<&String> = images().hello.blobs().iter().map(|b| &b.digest).collect();
    for b in unsigned_img.blobs() {
        // Layers the test images share came with the signed image.
        if !signed_blobs.contains(&&b.digest) {
            assert!(
                !after.contains(&b.digest),
                "{} of the refused image is in ctr's store",
                b.digest
            );
        }
    }
    assert_eq!(
        before.len(),
        after.len(),
        "ctr stored nothing new: {after:?}"
    );
    let config = Http::new().get(
        &format!(
            "{}/v2/oracle/os/unsigned/blobs/{}",
            s.wharf.url(),
            unsigned_img.config.digest
        ),
        &[],
    );
    assert_eq!(config.status, 403, "{}", config.text());
    // Nor is it lent to a hosted repository by a mount: the refused manifest is stored (it was
    // fetched to be checked), but a mount of it falls back to an upload (202), and the hosted
    // repository does not serve it.
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", PUSHER.0, PUSHER.1))
    );
    let refused_manifest = &unsigned_img.manifest.digest;
    let mount = Http::new().request(
        "POST",
        &format!(
            "{}/v2/team/x/blobs/uploads/?mount={refused_manifest}&from=oracle/os/unsigned",
            s.wharf.url()
        ),
        &[("authorization", &auth)],
        bytes::Bytes::new(),
    );
    assert_eq!(
        mount.status,
        202,
        "a mount of refused content: {}",
        mount.text()
    );
    let lent = Http::new().get(
        &format!("{}/v2/team/x/blobs/{refused_manifest}", s.wharf.url()),
        &[],
    );
    assert_eq!(lent.status, 404, "{}", lent.text());
    assert!(
        counter(
            &s.wharf,
            "wharf_signature_policy_refusals_total",
            "reason=\"unsigned\",upstream=\"oracle\""
        ) >= 1.0,
        "counted"
    );
}
