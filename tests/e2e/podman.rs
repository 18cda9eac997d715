//! podman through wharf as a registries.conf mirror (bare location and `/oracle` path
//! prefix); the primary location is a dead port, so success proves wharf served the pull.

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

use wharf_e2e::expect;
use wharf_e2e::{Podman, REGISTRY_NAME, Upstream, Wharf, images};

fn pull_twice_through_mirror(location: impl Fn(&Wharf) -> String) {
    let set = images();
    let img = &set.oraclelinux;
    let up = Upstream::plain();
    let wharf = Wharf::for_upstream(&up);
    let name = format!("{REGISTRY_NAME}/{}", img.reference());

    let m = up.mark();
    let cold = Podman::mirror(&location(&wharf));
    cold.pull(&name, &[]).expect_ok("cold podman pull");
    assert_eq!(
        cold.image_digest(&name),
        img.manifest.digest,
        "cold pull digest"
    );
    let reqs = expect::upstream_requests(&up, m, "cold podman pull");
    expect::each_blob_fetched_once(&reqs, &img.blobs(), "cold podman pull");

    // A fresh image store, so podman really fetches every blob again.
    let m = up.mark();
    let warm = Podman::mirror(&location(&wharf));
    warm.pull(&name, &[]).expect_ok("warm podman pull");
    assert_eq!(
        warm.image_digest(&name),
        img.manifest.digest,
        "warm pull digest"
    );
    let reqs = expect::upstream_requests(&up, m, "warm podman pull");
    expect::served_from_cache(&reqs, "warm podman pull");
}

#[test]
fn podman_mirror_bare_location_second_pull_from_cache() {
    pull_twice_through_mirror(|w| w.host_port());
}

#[test]
fn podman_mirror_path_prefix_location_second_pull_from_cache() {
    pull_twice_through_mirror(|w| format!("{}/oracle", w.host_port()));
}

#[test]
fn podman_multiarch_arm64_gets_the_arm64_child() {
    let set = images();
    let multi = &set.multiarch;
    let arm = multi.child("arm64");
    let up = Upstream::plain();
    let wharf = Wharf::for_upstream(&up);
    let name = format!("{REGISTRY_NAME}/{}", multi.reference());
    let podman = Podman::mirror(&format!("{}/oracle", wharf.host_port()));
    let m = up.mark();
    podman
        .pull(&name, &["--arch", "arm64"])
        .expect_ok("podman pull --arch arm64");
    assert_eq!(
        podman.image_digest(&name),
        multi.manifest.digest,
        "pulled by the index"
    );
    assert_eq!(podman.inspect(&name, "{{.Architecture}}"), "arm64");
    assert_eq!(
        format!("sha256:{}", podman.inspect(&name, "{{.Id}}")),
        arm.config.digest
    );
    let repo_digests = podman.repo_digests(&name);
    assert!(
        repo_digests
            .iter()
            .any(|d| d.ends_with(&format!("@{}", arm.manifest.digest))),
        "arm64 child digest in {repo_digests:?}"
    );
    let reqs = expect::upstream_requests(&up, m, "podman pull --arch arm64");
    let amd = multi.child("amd64");
    assert!(
        !reqs
            .iter()
            .any(|r| amd.layers.iter().any(|l| r.path.contains(&l.digest))),
        "amd64 layers must not be fetched for an arm64 pull: {reqs:#?}"
    );
}
