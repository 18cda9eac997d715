//! skopeo through wharf: a registries.conf mirror with a bare location (wharf's default
//! upstream) and with a path prefix (`127.0.0.1:PORT/oracle`), and direct addressing.
//! The second copy into a fresh directory must be served from wharf's cache.

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

use wharf_e2e::expect;
use wharf_e2e::{Skopeo, Upstream, Wharf, images};

/// Copies `os/oraclelinux:7-slim` twice through the mirror `location(wharf)`.
fn copy_twice_through_mirror(location: impl Fn(&Wharf) -> String) {
    let set = images();
    let img = &set.oraclelinux;
    let up = Upstream::plain();
    let wharf = Wharf::for_upstream(&up);
    let skopeo = Skopeo::new();
    let conf = skopeo.mirror_conf(&location(&wharf));

    let m = up.mark();
    let cold = skopeo
        .copy_via_mirror(&conf, &img.reference())
        .expect_ok("cold skopeo copy");
    assert_eq!(cold.digest(), img.manifest.digest, "cold copy digest");
    assert_eq!(
        cold.manifest(),
        img.manifest_json.as_bytes(),
        "manifest bytes"
    );
    let reqs = expect::upstream_requests(&up, m, "cold skopeo copy");
    expect::each_blob_fetched_once(&reqs, &img.blobs(), "cold skopeo copy");

    let m = up.mark();
    let warm = skopeo
        .copy_via_mirror(&conf, &img.reference())
        .expect_ok("warm skopeo copy");
    assert_eq!(warm.digest(), img.manifest.digest, "warm copy digest");
    let reqs = expect::upstream_requests(&up, m, "warm skopeo copy");
    expect::served_from_cache(&reqs, "warm skopeo copy");
}

#[test]
fn skopeo_mirror_bare_location_second_copy_from_cache() {
    copy_twice_through_mirror(|w| w.host_port());
}

#[test]
fn skopeo_mirror_path_prefix_location_second_copy_from_cache() {
    copy_twice_through_mirror(|w| format!("{}/oracle", w.host_port()));
}

#[test]
fn skopeo_direct_copies_keep_docker_schema2_and_index_digests() {
    let set = images();
    let up = Upstream::plain();
    let wharf = Wharf::for_upstream(&up);
    let skopeo = Skopeo::new();
    // A Docker schema2 image: same bytes, so same digest, as upstream.
    let legacy = skopeo
        .copy_direct(&wharf.host_port(), &set.legacy.reference(), &[])
        .expect_ok("skopeo copy legacy/docker:v2");
    assert_eq!(legacy.digest(), set.legacy.manifest.digest);
    // The index as served (inspect --raw), then the platform skopeo picks (amd64).
    let raw = skopeo
        .inspect_raw(
            &format!("{}/{}", wharf.host_port(), set.multiarch.reference()),
            &[],
        )
        .expect_ok("skopeo inspect --raw os/multiarch");
    assert_eq!(
        raw.stdout.as_bytes(),
        set.multiarch.manifest_json.as_bytes(),
        "index bytes"
    );
    let amd = skopeo
        .copy_direct(&wharf.host_port(), &set.multiarch.reference(), &[])
        .expect_ok("skopeo copy os/multiarch");
    assert_eq!(amd.digest(), set.multiarch.child("amd64").manifest.digest);
    // Through the prefix path, by digest.
    let by_digest = skopeo
        .copy_direct(
            &format!("{}/oracle", wharf.host_port()),
            &set.hello.by_digest(),
            &[],
        )
        .expect_ok("skopeo copy oracle/hello@digest");
    assert_eq!(by_digest.digest(), set.hello.manifest.digest);
}
