//! skopeo, podman and ctr straight from an upstream, configured as the wharf tests configure
//! them for the mirror (registries.conf with a dead primary location, hosts.toml with `?ns=`).

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

use wharf_e2e::clients::{Containerd, Podman, Skopeo};
use wharf_e2e::util::dead_host_port;
use wharf_e2e::{REGISTRY_NAME, Upstream, images};

#[test]
fn skopeo_through_registries_conf_mirror_reaches_the_mirror_only() {
    let set = images();
    let up = Upstream::plain();
    let skopeo = Skopeo::new();
    let conf = skopeo.mirror_conf(&up.host_port());
    let m = up.mark();
    let c = skopeo
        .copy_via_mirror(&conf, &set.oraclelinux.reference())
        .expect_ok("skopeo via mirror");
    assert_eq!(c.digest(), set.oraclelinux.manifest.digest);
    assert_eq!(up.count_since(m, |r| r.is_blob_get()), 4);
    let raw = skopeo
        .inspect_raw(
            &format!("{}/{}", up.host_port(), set.multiarch.reference()),
            &[],
        )
        .expect_ok("inspect --raw");
    assert_eq!(
        raw.stdout.as_bytes(),
        set.multiarch.manifest_json.as_bytes()
    );
}

#[test]
fn podman_pulls_through_registries_conf_mirror_and_by_arch() {
    let set = images();
    let up = Upstream::plain();
    let podman = Podman::mirror(&up.host_port());
    let name = format!("{REGISTRY_NAME}/{}", set.oraclelinux.reference());
    podman.pull(&name, &[]).expect_ok("podman pull via mirror");
    assert_eq!(podman.image_digest(&name), set.oraclelinux.manifest.digest);
    let multi = format!("{REGISTRY_NAME}/{}", set.multiarch.reference());
    podman
        .pull(&multi, &["--arch", "arm64"])
        .expect_ok("podman pull --arch arm64");
    let arm = set.multiarch.child("arm64");
    let id = podman.inspect(&multi, "{{.Id}}");
    let digests = podman.inspect(&multi, "{{.Digest}} {{.Architecture}} {{.RepoDigests}}");
    eprintln!("podman --arch arm64: Id={id} Digest/Arch/RepoDigests={digests}");
    assert_eq!(podman.inspect(&multi, "{{.Architecture}}"), "arm64");
    assert_eq!(
        format!("sha256:{id}"),
        arm.config.digest,
        "image id is the arm64 config digest"
    );
    // A second podman with a fresh store pulls everything again.
    let fresh = Podman::plain(&[&up.host_port()]);
    let m = up.mark();
    let direct = format!("{}/{}", up.host_port(), set.oraclelinux.reference());
    fresh.pull(&direct, &[]).expect_ok("podman pull direct");
    assert_eq!(fresh.image_digest(&direct), set.oraclelinux.manifest.digest);
    assert_eq!(up.count_since(m, |r| r.is_blob_get()), 4);
}

#[test]
fn ctr_pulls_through_hosts_toml_with_ns() {
    let set = images();
    let up = Upstream::plain();
    let ctrd = Containerd::start();
    ctrd.mirror_hosts(
        REGISTRY_NAME,
        &format!("http://{}", dead_host_port()),
        &up.url(),
    );
    let m = up.mark();
    let name = format!("{REGISTRY_NAME}/{}", set.oraclelinux.reference());
    ctrd.pull(&name, &[]).expect_ok("ctr pull small");
    assert_eq!(
        ctrd.image_digest(&name).as_deref(),
        Some(set.oraclelinux.manifest.digest.as_str())
    );
    let reqs = up.since(m);
    assert!(
        reqs.iter()
            .any(|r| r.path.contains("?ns=container-registry.oracle.com")),
        "{reqs:?}"
    );
    assert_eq!(reqs.iter().filter(|r| r.is_blob_get()).count(), 4);
    let multi = format!("{REGISTRY_NAME}/{}", set.multiarch.reference());
    ctrd.pull(&multi, &["--platform", "linux/arm64"])
        .expect_ok("ctr pull arm64");
    assert_eq!(
        ctrd.image_digest(&multi).as_deref(),
        Some(set.multiarch.manifest.digest.as_str())
    );
    let content = ctrd.content_digests();
    let arm = set.multiarch.child("arm64");
    assert!(
        content.contains(&arm.manifest.digest),
        "arm64 manifest in {content:?}"
    );
    assert!(arm.layers.iter().all(|l| content.contains(&l.digest)));
    // A fresh containerd fetches the blobs again.
    let fresh = Containerd::start();
    fresh.mirror_hosts(
        REGISTRY_NAME,
        &format!("http://{}", dead_host_port()),
        &up.url(),
    );
    let m = up.mark();
    fresh.pull(&name, &[]).expect_ok("ctr pull into fresh root");
    assert_eq!(up.count_since(m, |r| r.is_blob_get()), 4);
    // Direct, plain HTTP.
    let direct = format!("{}/{}", up.host_port(), set.legacy.reference());
    fresh
        .pull(&direct, &["--plain-http"])
        .expect_ok("ctr pull --plain-http");
    assert_eq!(
        fresh.image_digest(&direct).as_deref(),
        Some(set.legacy.manifest.digest.as_str())
    );
}
