//! Requests wharf must refuse, with the spec's status and OCI error code, and without
//! bothering the upstream: malformed names and digests, unknown namespaces, path traversal,
//! and content that does not exist.

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

use wharf_e2e::expect;
use wharf_e2e::http::{ACCEPT_ALL_MANIFESTS, Http};
use wharf_e2e::{Upstream, Wharf, images};

const ACCEPT: (&str, &str) = ("Accept", ACCEPT_ALL_MANIFESTS);

#[test]
fn malformed_names_and_digests_are_400_without_upstream_requests() {
    let up = Upstream::plain();
    let wharf = Wharf::for_upstream(&up);
    let http = Http::new();
    let m = up.mark();
    let r = http.get(
        &format!("{}/v2/Bad..Name/manifests/x", wharf.url()),
        &[ACCEPT],
    );
    expect::oci_error(&r, &[400], "NAME_INVALID", "malformed repository name");
    let r = http.get(
        &format!("{}/v2/os/oraclelinux/blobs/sha256:xyz", wharf.url()),
        &[],
    );
    expect::oci_error(&r, &[400], "DIGEST_INVALID", "malformed blob digest");
    let r = http.head(
        &format!("{}/v2/os/oraclelinux/blobs/sha256:xyz", wharf.url()),
        &[],
    );
    assert_eq!(
        r.status,
        400,
        "HEAD of a malformed digest: {}",
        r.describe()
    );
    assert_eq!(
        up.count_since(m, |_| true),
        0,
        "malformed requests reached the upstream"
    );
}

#[test]
fn unknown_namespace_is_name_unknown_and_never_forwarded() {
    let set = images();
    let up = Upstream::plain();
    let wharf = Wharf::for_upstream(&up);
    let http = Http::new();
    let m = up.mark();
    let img = &set.oraclelinux;
    for path in [
        format!(
            "/v2/{}/manifests/{}?ns=unknown.example.com",
            img.repo, img.tag
        ),
        format!(
            "/v2/{}/blobs/{}?ns=unknown.example.com",
            img.repo, img.layers[0].digest
        ),
    ] {
        let r = http.get(&format!("{}{path}", wharf.url()), &[ACCEPT]);
        expect::oci_error(&r, &[404], "NAME_UNKNOWN", &path);
    }
    let reqs = up.since(m);
    assert!(
        reqs.is_empty(),
        "requests for an unknown ns reached the upstream: {reqs:#?}"
    );
}

#[test]
fn path_traversal_is_rejected_and_never_forwarded() {
    let set = images();
    let up = Upstream::plain();
    let wharf = Wharf::for_upstream(&up);
    let http = Http::new();
    let d = &set.oraclelinux.layers[0].digest;
    let m = up.mark();
    for path in [
        format!("/v2/../../etc/passwd/blobs/{d}"),
        "/v2/os/../../../etc/passwd/manifests/latest".to_string(),
        format!("/v2/%2e%2e/%2e%2e/etc/passwd/blobs/{d}"),
        format!("/v2/os/%2E%2E/%2E%2E/etc/passwd/blobs/{d}"),
        "/v2/os%2f..%2f..%2fetc%2fpasswd/manifests/latest".to_string(),
        "/v2/os/oraclelinux/blobs/sha256:..%2f..%2f..%2fetc%2fpasswd".to_string(),
        "/v2/oracle/../../etc/passwd/manifests/latest".to_string(),
        format!("/oracle/v2/../../etc/passwd/blobs/{d}"),
    ] {
        let r = http.get(&format!("{}{path}", wharf.url()), &[ACCEPT]);
        assert!(
            matches!(r.status, 400 | 404),
            "{path}: want 400 or 404, got {}",
            r.describe()
        );
        assert!(
            !r.error_codes().is_empty(),
            "{path}: want an OCI error body, got {}",
            r.describe()
        );
    }
    let reqs = up.since(m);
    let leaked: Vec<_> = reqs
        .iter()
        .filter(|r| {
            let p = r.path.to_ascii_lowercase();
            p.contains("..") || p.contains("%2e") || p.contains("passwd")
        })
        .collect();
    assert!(
        leaked.is_empty(),
        "traversal attempts reached the upstream: {leaked:#?}"
    );
}

#[test]
fn missing_tag_and_blob_are_unknown() {
    let up = Upstream::plain();
    let wharf = Wharf::for_upstream(&up);
    let http = Http::new();
    let r = http.get(
        &format!("{}/v2/os/oraclelinux/manifests/no-such-tag", wharf.url()),
        &[ACCEPT],
    );
    expect::oci_error(&r, &[404], "MANIFEST_UNKNOWN", "missing tag");
    let r = http.get(
        &format!(
            "{}/v2/oracle/os/oraclelinux/manifests/no-such-tag",
            wharf.url()
        ),
        &[ACCEPT],
    );
    expect::oci_error(&r, &[404], "MANIFEST_UNKNOWN", "missing tag via prefix");
    let zero = format!("sha256:{}", "0".repeat(64));
    let r = http.get(
        &format!("{}/v2/os/oraclelinux/blobs/{zero}", wharf.url()),
        &[],
    );
    expect::oci_error(&r, &[404], "BLOB_UNKNOWN", "missing blob");
}
