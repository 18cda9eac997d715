//! What bounds an upload (issue 16, from review): the hosted quota while the bytes arrive,
//! the number of uploads in progress, and a `Content-Range` at the edge of `u64`. Each is
//! answered with the spec's error JSON and stores nothing.

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

use api::Api;
use base64::Engine as _;
use support::{SecureWharf, htpasswd};
use wharf_e2e::expect;
use wharf_e2e::http::Http;
use wharf_e2e::util::{sha256_digest, temp_dir};
use wharf_e2e::{Upstream, UpstreamCfg, Wharf};

#[test]
fn quota_sessions_and_ranges_bound_uploads() {
    let up = Upstream::plain();
    let dir = temp_dir("upload-bounds");
    let file = dir.path().join("htpasswd");
    htpasswd(&file, "alice", "bounds-s3cret");
    let builder = Wharf::builder()
        .upstream(UpstreamCfg::oracle(&up))
        .extra_toml(&format!(
            "[auth]\nhtpasswd = {:?}\n\n[hosted]\nrepositories = [\"team/*\"]\nquota = \"64KiB\"\n",
            file.display().to_string()
        ));
    let wharf = SecureWharf::start(builder, "", None);
    let auth = base64::engine::general_purpose::STANDARD.encode("alice:bounds-s3cret");
    let api = Api {
        http: Http::new(),
        base: wharf.url(),
        auth: format!("Basic {auth}"),
    };

    // Past the quota while the bytes arrive: DENIED, nothing stored.
    let big = vec![7u8; 128 * 1024];
    let d = sha256_digest(&big);
    let r = api.send(
        "POST",
        &format!("/v2/team/a/blobs/uploads/?digest={d}"),
        &[("Content-Type", "application/octet-stream")],
        &big,
    );
    expect::oci_error(&r, &[403], "DENIED", "a monolithic upload past the quota");
    assert!(r.text().contains("hosted.quota"), "{}", r.text());
    assert_eq!(api.blob_status("team/a", &d), 404);
    let location = api.start("team/a");
    let r = api.send(
        "PATCH",
        &location,
        &[("Content-Type", "application/octet-stream")],
        &big,
    );
    expect::oci_error(&r, &[403], "DENIED", "a PATCH past the quota");
    // Within it: stored.
    api.push_blob("team/a", &[1u8; 1024]);

    // A Content-Range whose end is u64::MAX: 416, not an overflow.
    let location = api.start("team/a");
    let r = api.send(
        "PATCH",
        &location,
        &[
            ("Content-Type", "application/octet-stream"),
            ("Content-Range", "0-18446744073709551615"),
        ],
        b"x",
    );
    assert_eq!(r.status, 416, "{}", r.describe());

    // Uploads in progress are bounded per user: the 33rd start is 429 TOOMANYREQUESTS.
    let mut started = 0;
    let refused = loop {
        let r = api.send("POST", "/v2/team/b/blobs/uploads/", &[], b"");
        if r.status != 202 {
            break r;
        }
        started += 1;
        assert!(started <= 64, "uploads are not bounded");
    };
    expect::oci_error(&refused, &[429], "TOOMANYREQUESTS", "one upload too many");
    assert!(started >= 30, "{started} uploads then refused");
}

/// A full disk under the hosted store: the upload fails with a clear error (507), nothing of it
/// is kept, and what was stored before is still served byte-exact; once there is room again,
/// pushes work.
#[test]
fn a_full_disk_fails_the_upload_and_loses_nothing() {
    let Some(disk) = wharf_testkit::disk::Tmpfs::mount("4m") else {
        return;
    };
    let up = Upstream::plain();
    let dir = temp_dir("upload-full-disk");
    let file = dir.path().join("htpasswd");
    htpasswd(&file, "alice", "disk-s3cret");
    let builder = Wharf::builder()
        .upstream(UpstreamCfg::oracle(&up))
        .extra_toml(&format!(
            "[auth]\nhtpasswd = {:?}\n\n[hosted]\nrepositories = [\"team/*\"]\ndir = {:?}\n",
            file.display().to_string(),
            disk.path.join("hosted").display().to_string()
        ));
    let wharf = SecureWharf::start(builder, "", None);
    let auth = base64::engine::general_purpose::STANDARD.encode("alice:disk-s3cret");
    let api = Api {
        http: Http::new(),
        base: wharf.url(),
        auth: format!("Basic {auth}"),
    };
    let kept = vec![3u8; 256 * 1024];
    let kept_digest = api.push_blob("team/a", &kept);

    wharf_testkit::disk::fill_the_disk(&disk.path);
    let more = vec![5u8; 512 * 1024];
    let d = sha256_digest(&more);
    let r = api.send(
        "POST",
        &format!("/v2/team/a/blobs/uploads/?digest={d}"),
        &[("Content-Type", "application/octet-stream")],
        &more,
    );
    assert_eq!(r.status, 507, "{}", r.describe());
    assert!(
        !r.errors().is_empty(),
        "the spec's error JSON: {}",
        r.text()
    );
    assert_eq!(api.blob_status("team/a", &d), 404, "nothing of it is kept");
    let back = api.send("GET", &format!("/v2/team/a/blobs/{kept_digest}"), &[], b"");
    assert_eq!(back.status, 200);
    assert_eq!(
        sha256_digest(&back.body),
        kept_digest,
        "what was stored is intact"
    );

    std::fs::remove_file(disk.path.join("filler")).expect("free the disk");
    api.push_blob("team/a", &more);
}
