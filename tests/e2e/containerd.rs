//! containerd's `ctr` through wharf via hosts.toml: containerd sends
//! `?ns=container-registry.oracle.com`, which selects wharf's upstream.

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

use wharf_e2e::expect;
use wharf_e2e::util::dead_host_port;
use wharf_e2e::{Containerd, REGISTRY_NAME, Upstream, Wharf, images};

fn containerd_via(wharf: &Wharf) -> Containerd {
    let c = Containerd::start();
    c.mirror_hosts(
        REGISTRY_NAME,
        &format!("http://{}", dead_host_port()),
        &wharf.url(),
    );
    c
}

#[test]
fn ctr_pull_via_ns_then_fresh_root_from_cache() {
    let set = images();
    let img = &set.oraclelinux;
    let up = Upstream::plain();
    let wharf = Wharf::for_upstream(&up);
    let name = format!("{REGISTRY_NAME}/{}", img.reference());

    let m = up.mark();
    let cold = containerd_via(&wharf);
    cold.pull(&name, &[]).expect_ok("cold ctr pull");
    assert_eq!(
        cold.image_digest(&name).as_deref(),
        Some(img.manifest.digest.as_str())
    );
    let reqs = expect::upstream_requests(&up, m, "cold ctr pull");
    expect::each_blob_fetched_once(&reqs, &img.blobs(), "cold ctr pull");
    drop(cold);

    let m = up.mark();
    let warm = containerd_via(&wharf);
    warm.pull(&name, &[])
        .expect_ok("warm ctr pull (fresh containerd root)");
    assert_eq!(
        warm.image_digest(&name).as_deref(),
        Some(img.manifest.digest.as_str())
    );
    let reqs = expect::upstream_requests(&up, m, "warm ctr pull");
    expect::served_from_cache(&reqs, "warm ctr pull (fresh containerd root)");
}

#[test]
fn ctr_multiarch_index_arm64_via_ns() {
    let set = images();
    let multi = &set.multiarch;
    let arm = multi.child("arm64");
    let up = Upstream::plain();
    let wharf = Wharf::for_upstream(&up);
    let name = format!("{REGISTRY_NAME}/{}", multi.reference());

    let ctrd = containerd_via(&wharf);
    ctrd.pull(&name, &["--platform", "linux/arm64"])
        .expect_ok("ctr pull --platform linux/arm64");
    assert_eq!(
        ctrd.image_digest(&name).as_deref(),
        Some(multi.manifest.digest.as_str())
    );
    let content = ctrd.content_digests();
    for d in std::iter::once(&arm.manifest).chain(arm.blobs()) {
        assert!(
            content.contains(&d.digest),
            "{} missing from the content store: {content:?}",
            d.digest
        );
    }

    // Every platform, into a fresh root: only the amd64 child's content is new upstream.
    let m = up.mark();
    let all = containerd_via(&wharf);
    all.pull(&name, &["--all-platforms"])
        .expect_ok("ctr pull --all-platforms");
    assert_eq!(
        all.image_digest(&name).as_deref(),
        Some(multi.manifest.digest.as_str())
    );
    let reqs = expect::upstream_requests(&up, m, "ctr pull --all-platforms after arm64");
    let got = expect::blob_gets_by_digest(&reqs);
    for b in arm.blobs() {
        assert!(
            !got.contains_key(&b.digest),
            "arm64 blob {} fetched again: {got:#?}",
            b.digest
        );
    }
}
