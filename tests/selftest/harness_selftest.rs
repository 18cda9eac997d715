//! Self-tests of the harness against the real tools, without wharf: the upstream variants
//! start and serve the pushed images, the token issuer is accepted by Distribution, the access
//! log is counted right, and skopeo, podman and ctr pull straight from an upstream with the
//! same client configurations the wharf tests use (the upstream standing in for the mirror).

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

use std::time::Duration;

use bytes::Bytes;
use wharf_e2e::clients::Skopeo;
use wharf_e2e::http::{ACCEPT_ALL_MANIFESTS, Http};
use wharf_e2e::images::{ImageSpec, MT_DOCKER_MANIFEST, MT_OCI_INDEX, MT_OCI_MANIFEST};
use wharf_e2e::push::Pusher;
use wharf_e2e::registry::Storage;
use wharf_e2e::util::sha256_digest;
use wharf_e2e::{Kind, REGISTRY_NAME, Upstream, UpstreamCfg, Wharf, images};

mod auth;
mod clients;

#[test]
fn upstream_serves_every_image_with_its_media_type() {
    let set = images();
    let up = Upstream::plain();
    let http = up.http();
    let cases = [
        (
            &set.oraclelinux.repo,
            &set.oraclelinux.tag,
            &set.oraclelinux.manifest,
            &set.oraclelinux.manifest_json,
        ),
        (
            &set.oraclelinux.repo,
            &"7".to_string(),
            &set.oraclelinux.manifest,
            &set.oraclelinux.manifest_json,
        ),
        (
            &set.hello.repo,
            &set.hello.tag,
            &set.hello.manifest,
            &set.hello.manifest_json,
        ),
        (
            &set.serverjre.repo,
            &set.serverjre.tag,
            &set.serverjre.manifest,
            &set.serverjre.manifest_json,
        ),
        (
            &set.multiarch.repo,
            &set.multiarch.tag,
            &set.multiarch.manifest,
            &set.multiarch.manifest_json,
        ),
        (
            &set.legacy.repo,
            &set.legacy.tag,
            &set.legacy.manifest,
            &set.legacy.manifest_json,
        ),
    ];
    for (repo, tag, desc, json) in cases {
        let r = http.get(
            &format!("{}/v2/{repo}/manifests/{tag}", up.url()),
            &[("Accept", ACCEPT_ALL_MANIFESTS)],
        );
        assert_eq!(r.status, 200, "{repo}:{tag}: {}", r.describe());
        assert_eq!(
            r.header("Content-Type").as_deref(),
            Some(desc.media_type.as_str())
        );
        assert_eq!(
            r.header("Docker-Content-Digest").as_deref(),
            Some(desc.digest.as_str())
        );
        assert_eq!(r.body, json.as_bytes(), "{repo}:{tag} bytes");
    }
    assert_eq!(set.multiarch.manifest.media_type, MT_OCI_INDEX);
    assert_eq!(set.oraclelinux.manifest.media_type, MT_OCI_MANIFEST);
    assert_eq!(set.legacy.manifest.media_type, MT_DOCKER_MANIFEST);
    assert_eq!(set.serverjre.layers.len(), 5);
    assert!(set.serverjre.total_blob_bytes() > 300 << 20);
    // A blob: right bytes, right digest.
    let layer = &set.oraclelinux.layers[0];
    let b = http.get(
        &format!("{}/v2/os/oraclelinux/blobs/{}", up.url(), layer.digest),
        &[],
    );
    assert_eq!(b.status, 200);
    assert_eq!(sha256_digest(&b.body), layer.digest);
    assert_eq!(b.body.len() as u64, layer.size);
    // What Distribution 2.8 does with tags/list?n=1 (wharf must present the client-facing path).
    let t = http.get(
        &format!("{}/v2/os/oraclelinux/tags/list?n=1", up.url()),
        &[],
    );
    eprintln!(
        "upstream tags/list?n=1 -> {} Link={:?} body={}",
        t.status,
        t.header("Link"),
        t.text()
    );
    assert_eq!(t.status, 200);
}

#[test]
fn access_log_marks_count_only_later_requests() {
    let set = images();
    let up = Upstream::plain();
    let skopeo = Skopeo::new();
    let m0 = up.mark();
    let c = skopeo
        .copy_direct(&up.host_port(), &set.oraclelinux.reference(), &[])
        .expect_ok("skopeo copy");
    assert_eq!(c.digest(), set.oraclelinux.manifest.digest);
    let first = up.since(m0);
    eprintln!(
        "cold skopeo copy straight from upstream: {}",
        wharf_e2e::access_log::Counts::of(&first)
    );
    assert_eq!(
        up.count_since(m0, |r| r.is_blob_get()),
        4,
        "config + 3 layers: {first:?}"
    );
    let m1 = up.mark();
    assert_eq!(up.count_since(m1, |_| true), 0);
    let c = skopeo
        .copy_direct(&up.host_port(), &set.hello.reference(), &[])
        .expect_ok("skopeo copy hello");
    assert_eq!(c.digest(), set.hello.manifest.digest);
    let later = up.since(m1);
    assert!(
        later
            .iter()
            .all(|r| r.path.contains("/hello/") || r.kind() == Kind::Ping),
        "{later:?}"
    );
    assert_eq!(later.iter().filter(|r| r.is_blob_get()).count(), 4);
    assert!(up.requests().len() >= first.len() + later.len());
}

#[test]
fn pusher_writes_valid_images_into_an_empty_registry() {
    let up = Upstream::builder().storage(Storage::Empty).start();
    let http = Http::new();
    let p = Pusher {
        base: up.url(),
        http: &http,
    };
    for spec in [
        ImageSpec::oci("selftest", &[64, 32]),
        ImageSpec::oci("selftest-d", &[16]).docker(),
    ] {
        let img = p.image(&spec, "self/test", &spec.label, &[]);
        let r = http.head(
            &format!("{}/v2/self/test/manifests/{}", up.url(), spec.label),
            &[("Accept", ACCEPT_ALL_MANIFESTS)],
        );
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("Docker-Content-Digest").as_deref(),
            Some(img.manifest.digest.as_str())
        );
        assert_eq!(
            r.header("Content-Type").as_deref(),
            Some(img.manifest.media_type.as_str())
        );
    }
    // Monolithic upload of a blob that is already there is skipped (HEAD 200).
    let m = up.mark();
    let img = p.image(
        &ImageSpec::oci("selftest", &[64, 32]),
        "self/test",
        "again",
        &[],
    );
    assert_eq!(up.count_since(m, |r| r.method == "POST"), 0);
    assert_eq!(img.layers.len(), 2);
}

#[test]
fn stop_and_start_again_keep_port_storage_and_log() {
    let set = images();
    let mut up = Upstream::plain();
    let url = format!(
        "{}/v2/{}/manifests/{}",
        up.url(),
        set.hello.repo,
        set.hello.manifest.digest
    );
    let http = up.http().timeout(Duration::from_secs(5));
    // Distribution 2.8 answers 404 to a GET of an OCI manifest without an OCI Accept, even by digest.
    let accept = [("Accept", ACCEPT_ALL_MANIFESTS)];
    assert_eq!(http.get(&url, &[]).status, 404);
    assert_eq!(http.get(&url, &accept).status, 200);
    let m = up.mark();
    up.stop();
    assert!(
        http.try_request("GET", &url, &[], Bytes::new()).is_err(),
        "stopped upstream still answers"
    );
    up.start_again();
    assert_eq!(http.get(&url, &accept).status, 200);
    assert!(up.count_since(m, |r| r.path.contains(&set.hello.manifest.digest)) >= 1);
}

#[test]
fn wharf_config_renders_the_contract_keys() {
    let up = Upstream::htpasswd_tls();
    let dir = tempfile::tempdir().expect("tmp");
    let (path, env) = Wharf::builder()
        .tag_ttl("0s")
        .upstream(
            UpstreamCfg::oracle(&up)
                .username("bench")
                .password_env("E2E_PW", "benchpass")
                .tag_ttl("1m"),
        )
        .upstream(
            UpstreamCfg::new("other", "http://127.0.0.1:1")
                .prefixes(&["other.example"])
                .password_file("s3cret"),
        )
        .write_config(dir.path(), 1111, 2222);
    let v: toml::Value =
        toml::from_str(&std::fs::read_to_string(&path).expect("read")).expect("valid TOML");
    assert_eq!(v["server"]["listen"].as_str(), Some("127.0.0.1:1111"));
    assert_eq!(v["server"]["admin_listen"].as_str(), Some("127.0.0.1:2222"));
    assert_eq!(v["cache"]["tag_ttl"].as_str(), Some("0s"));
    let u = &v["upstream"][0];
    assert_eq!(u["prefixes"][0].as_str(), Some(REGISTRY_NAME));
    assert_eq!(u["default"].as_bool(), Some(true));
    assert_eq!(u["password_env"].as_str(), Some("E2E_PW"));
    assert_eq!(u["ca_file"].as_str(), up.ca_file().and_then(|p| p.to_str()));
    let pw_file = v["upstream"][1]["password_file"]
        .as_str()
        .expect("password_file");
    assert_eq!(std::fs::read_to_string(pw_file).expect("pw"), "s3cret");
    assert_eq!(env, vec![("E2E_PW".to_string(), "benchpass".to_string())]);
}
