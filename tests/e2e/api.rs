//! The registry API as a client sees it, with direct HTTP requests: ping, manifests (bytes,
//! digests, lengths and the upstream's exact Content-Type), blobs, routing by path prefix,
//! `/<prefix>/v2/` and `?ns=`, Accept negotiation, tag-list paging, and `wharf check-config`.
//! Error statuses and codes are in `api_errors.rs`.

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

use wharf_e2e::expect;
use wharf_e2e::http::{ACCEPT_ALL_MANIFESTS, ACCEPT_DOCKER_ONLY, Http};
use wharf_e2e::images::Descriptor;
use wharf_e2e::util::sha256_digest;
use wharf_e2e::wharf::check_config;
use wharf_e2e::{Upstream, Wharf, images};

const ACCEPT: (&str, &str) = ("Accept", ACCEPT_ALL_MANIFESTS);
const NS: &str = "ns=container-registry.oracle.com";

#[test]
fn ping_answers_registry_2_0() {
    let up = Upstream::plain();
    let wharf = Wharf::for_upstream(&up);
    let r = Http::new().get(&format!("{}/v2/", wharf.url()), &[]);
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(
        r.header("Docker-Distribution-API-Version").as_deref(),
        Some("registry/2.0")
    );
}

#[test]
fn manifests_match_upstream_bytes_digest_length_and_content_type() {
    let set = images();
    let up = Upstream::plain();
    let wharf = Wharf::for_upstream(&up);
    let http = Http::new();
    let manifests: [(&str, &str, &Descriptor, &str); 3] = [
        (
            &set.multiarch.repo,
            &set.multiarch.tag,
            &set.multiarch.manifest,
            &set.multiarch.manifest_json,
        ),
        (
            &set.oraclelinux.repo,
            &set.oraclelinux.tag,
            &set.oraclelinux.manifest,
            &set.oraclelinux.manifest_json,
        ),
        (
            &set.legacy.repo,
            &set.legacy.tag,
            &set.legacy.manifest,
            &set.legacy.manifest_json,
        ),
    ];
    for (repo, tag, desc, json) in manifests {
        let upstream = up.http().get(
            &format!("{}/v2/{repo}/manifests/{tag}", up.url()),
            &[ACCEPT],
        );
        assert_eq!(upstream.status, 200);
        let want_type = upstream
            .header("Content-Type")
            .expect("upstream Content-Type");
        assert_eq!(want_type, desc.media_type);
        for path in [
            format!("/v2/{repo}/manifests/{tag}"),
            format!("/v2/{repo}/manifests/{}", desc.digest),
            format!("/v2/oracle/{repo}/manifests/{tag}"),
            format!("/v2/{repo}/manifests/{tag}?{NS}"),
            format!("/oracle/v2/{repo}/manifests/{}?{NS}", desc.digest),
        ] {
            let url = format!("{}{path}", wharf.url());
            let head = http.head(&url, &[ACCEPT]);
            let get = http.get(&url, &[ACCEPT]);
            for (what, r) in [("HEAD", &head), ("GET", &get)] {
                assert_eq!(r.status, 200, "{what} {path}: {}", r.describe());
                assert_eq!(
                    r.header("Docker-Content-Digest").as_deref(),
                    Some(desc.digest.as_str()),
                    "{what} {path}"
                );
                assert_eq!(
                    r.header("Content-Type").as_deref(),
                    Some(want_type.as_str()),
                    "{what} {path}"
                );
                assert_eq!(
                    r.header("Content-Length"),
                    Some(json.len().to_string()),
                    "{what} {path}"
                );
            }
            assert_eq!(
                get.body, upstream.body,
                "GET {path}: bytes differ from the upstream's"
            );
            assert_eq!(
                get.body,
                json.as_bytes(),
                "GET {path}: bytes differ from what was pushed"
            );
            assert!(head.body.is_empty(), "HEAD {path} has a body");
        }
    }
}

#[test]
fn blobs_carry_digest_and_length() {
    let set = images();
    let up = Upstream::plain();
    let wharf = Wharf::for_upstream(&up);
    let http = Http::new();
    let img = &set.oraclelinux;
    for (blob, path) in [
        (
            &img.layers[0],
            format!("/v2/{}/blobs/{}", img.repo, img.layers[0].digest),
        ),
        (
            &img.config,
            format!("/v2/oracle/{}/blobs/{}", img.repo, img.config.digest),
        ),
        (
            &img.layers[1],
            format!("/v2/{}/blobs/{}?{NS}", img.repo, img.layers[1].digest),
        ),
    ] {
        let url = format!("{}{path}", wharf.url());
        // HEAD first (nothing cached yet), then GET, then HEAD again (cached).
        for method in ["HEAD", "GET", "HEAD"] {
            let r = http.request(method, &url, &[], bytes::Bytes::new());
            assert_eq!(r.status, 200, "{method} {path}: {}", r.describe());
            assert_eq!(
                r.header("Docker-Content-Digest").as_deref(),
                Some(blob.digest.as_str()),
                "{method} {path}"
            );
            assert_eq!(
                r.header("Content-Length"),
                Some(blob.size.to_string()),
                "{method} {path}"
            );
            if method == "GET" {
                assert_eq!(
                    sha256_digest(&r.body),
                    blob.digest,
                    "GET {path}: body digest"
                );
            }
        }
    }
}

#[test]
fn docker_only_accept_for_an_oci_manifest_is_manifest_unknown() {
    let set = images();
    let up = Upstream::plain();
    let wharf = Wharf::for_upstream(&up);
    let http = Http::new();
    let docker_only = [("Accept", ACCEPT_DOCKER_ONLY)];
    let oci = format!(
        "{}/v2/{}/manifests/{}",
        wharf.url(),
        set.oraclelinux.repo,
        set.oraclelinux.tag
    );
    let r = http.get(&oci, &docker_only);
    expect::oci_error(
        &r,
        &[404],
        "MANIFEST_UNKNOWN",
        "OCI manifest asked for with Docker types only",
    );
    // The Docker schema2 image is fine with the same Accept.
    let docker = format!(
        "{}/v2/{}/manifests/{}",
        wharf.url(),
        set.legacy.repo,
        set.legacy.tag
    );
    let r = http.get(&docker, &docker_only);
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.body, set.legacy.manifest_json.as_bytes());
}

#[test]
fn tags_list_paging_link_keeps_the_client_facing_prefix() {
    let set = images();
    let up = Upstream::plain();
    let wharf = Wharf::for_upstream(&up);
    let http = Http::new();
    let mut all_tags = vec![set.oraclelinux.tag.clone()];
    all_tags.extend(set.oraclelinux.other_tags.iter().cloned());
    all_tags.sort();

    let first = http.get(
        &format!("{}/v2/oracle/os/oraclelinux/tags/list?n=1", wharf.url()),
        &[],
    );
    assert_eq!(first.status, 200, "{}", first.describe());
    let tags = first.json()["tags"].as_array().cloned().unwrap_or_default();
    assert_eq!(tags.len(), 1, "n=1 must give one tag: {}", first.text());
    let link = first
        .header("Link")
        .unwrap_or_else(|| panic!("no Link header: {}", first.describe()));
    let target = link
        .trim()
        .strip_prefix('<')
        .and_then(|l| l.split('>').next())
        .unwrap_or_else(|| panic!("malformed Link: {link}"));
    assert!(
        link.contains("rel=\"next\""),
        "Link without rel=\"next\": {link}"
    );
    // The target may be absolute; compare its path.
    let path = match target.find("://") {
        Some(i) => target[i + 3..]
            .find('/')
            .map(|j| &target[i + 3 + j..])
            .unwrap_or("/"),
        None => target,
    };
    assert!(
        path.starts_with("/v2/oracle/os/oraclelinux/tags/list"),
        "Link must point at the client-facing path, got {link}"
    );
    // Following it gives the rest.
    let next = http.get(&format!("{}{path}", wharf.url()), &[]);
    assert_eq!(next.status, 200, "{}", next.describe());
    let mut seen: Vec<String> = tags
        .iter()
        .chain(next.json()["tags"].as_array().into_iter().flatten())
        .filter_map(|t| t.as_str().map(str::to_owned))
        .collect();
    seen.sort();
    assert_eq!(seen, all_tags, "two pages of n=1 must list every tag once");
}

#[test]
fn check_config_accepts_a_valid_file_and_names_an_unknown_field() {
    let up = Upstream::plain();
    let dir = tempfile::tempdir().expect("temp dir");
    let builder = Wharf::builder().upstream(wharf_e2e::UpstreamCfg::oracle(&up));
    let (good, _) = builder.write_config(dir.path(), 5000, 5001);
    let out = check_config(&good);
    assert!(out.ok(), "a valid config was rejected:\n{out}");

    let bad_dir = tempfile::tempdir().expect("temp dir");
    let (bad, _) = Wharf::builder()
        .upstream(wharf_e2e::UpstreamCfg::oracle(&up).extra("bogus_field_e2e = 1"))
        .write_config(bad_dir.path(), 5000, 5001);
    let out = check_config(&bad);
    assert!(!out.ok(), "an unknown field was accepted:\n{out}");
    assert!(
        out.stderr.contains("bogus_field_e2e"),
        "stderr should name the bad field:\n{out}"
    );
}

/// With `[log] format = "json"`, each request leaves one access line: a JSON object carrying the
/// request id the client saw in `X-Request-Id`, the status, the bytes actually sent, the cache
/// result and the upstream, and never the client's credentials.
#[test]
fn access_log_is_one_json_line_per_request_with_its_id_bytes_and_result() {
    let set = images();
    let up = Upstream::plain();
    let wharf = Wharf::builder()
        .upstream(wharf_e2e::UpstreamCfg::oracle(&up))
        .extra_toml("[log]\nformat = \"json\"\n")
        .start();
    let http = Http::new();
    let layer = &set.oraclelinux.layers[0];
    let url = format!(
        "{}/v2/oracle/{}/blobs/{}",
        wharf.url(),
        set.oraclelinux.repo,
        layer.digest
    );
    let secret = "Basic d2hhcmYtdGVzdDpzM2NyZXQtcGFzcw==";
    let mut seen = Vec::new();
    for expected_result in ["miss", "hit"] {
        let r = http.get(&url, &[("Authorization", secret)]);
        assert_eq!(r.status, 200, "{}", r.describe());
        assert_eq!(r.body.len() as u64, layer.size);
        let id = r
            .header("X-Request-Id")
            .expect("X-Request-Id on every answer");
        seen.push((id, expected_result));
        // The download is stored once verified and synced; until then a request joins it.
        let stored = (0..100).any(|_| {
            let h = http.head(&url, &[]);
            let hit = h.header("X-Wharf-Cache").as_deref() == Some("hit");
            if !hit {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            hit
        });
        assert!(stored, "the blob was never stored");
    }
    assert_ne!(seen[0].0, seen[1].0, "request ids must differ");
    let ping = http.get(&format!("{}/v2/", wharf.url()), &[]);
    let ping_id = ping.header("X-Request-Id").expect("X-Request-Id on /v2/");
    // The line is written when the body ends; give the log a moment to reach the file.
    let mut lines = Vec::new();
    for _ in 0..50 {
        let log = wharf.log();
        lines = log
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["target"] == "wharf::access")
            .collect();
        let logged = |id: &str| lines.iter().any(|v| v["fields"]["request_id"] == id);
        if logged(&ping_id) && seen.iter().all(|(id, _)| logged(id)) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    for (id, result) in &seen {
        let line = lines
            .iter()
            .find(|v| v["fields"]["request_id"] == id.as_str())
            .unwrap_or_else(|| panic!("no access line for request {id} in {lines:?}"));
        let f = &line["fields"];
        assert_eq!(f["status"], 200, "{line}");
        assert_eq!(f["bytes"], layer.size, "{line}");
        assert_eq!(f["complete"], true, "{line}");
        assert_eq!(f["result"], *result, "{line}");
        assert_eq!(f["upstream"], "oracle", "{line}");
        assert_eq!(f["method"], "GET", "{line}");
    }
    let ping_line = lines
        .iter()
        .find(|v| v["fields"]["request_id"] == ping_id.as_str())
        .unwrap_or_else(|| panic!("no access line for the ping in {lines:?}"));
    assert_eq!(ping_line["fields"]["bytes"], ping.body.len() as u64);
    assert_eq!(ping_line["fields"]["complete"], true, "{ping_line}");
    assert!(
        !wharf
            .settled_log()
            .contains("d2hhcmYtdGVzdDpzM2NyZXQtcGFzcw"),
        "the client's Authorization reached the log"
    );
}
