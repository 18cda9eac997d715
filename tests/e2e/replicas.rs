//! Replicas of wharf sharing a real object store (Garage on loopback, issue 19): what one
//! replica pulled, another with an empty disk serves from the object store without asking the
//! upstream; with the object store stopped, replicas go on with their disks and the upstream,
//! and use it again once it is back. A fleet that knows its peers (`[cluster]`) is in
//! `replicas/fleet.rs`.

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

#[path = "replicas/fleet.rs"]
mod fleet;

use std::time::Duration;

use tokio::time::Instant;
use wharf_e2e::{Skopeo, Upstream, UpstreamCfg, Wharf, images};
use wharf_testkit::garage::{self, Garage};

/// `[object_store]` for `g` under `prefix` (each test its own).
fn object_store_toml(g: &Garage, dir: &std::path::Path, prefix: &str) -> String {
    wharf_e2e::fleet::object_store_toml(g, dir, prefix, "")
}

/// The object store under `prefix`, as wharf reads it.
fn tier_of(g: &Garage, prefix: &str) -> wharf_tier::Tier {
    wharf_tier::Tier::connect(&wharf_tier::TierConfig {
        endpoint: g.endpoint(),
        bucket: garage::BUCKET.into(),
        region: garage::REGION.into(),
        access_key_id: garage::KEY_ID.into(),
        secret_access_key: garage::SECRET.into(),
        prefix: prefix.into(),
        connect_timeout: Duration::from_secs(5),
        response_timeout: Duration::from_secs(30),
        failure_backoff: Duration::from_secs(1),
    })
    .expect("tier")
}

fn replica(up: &Upstream, store: &str) -> Wharf {
    Wharf::builder()
        .upstream(UpstreamCfg::oracle(up))
        .extra_toml(store)
        .start()
}

/// Waits until `w` has written `blobs` blobs, a manifest and a tag to the object store (its
/// writes follow the pull that caused them).
fn wait_written(w: &Wharf, blobs: u64) {
    let written = |kind: &str| {
        w.metric(
            "wharf_tier_requests_total",
            &[&format!("kind=\"{kind}\""), "result=\"written\""],
        )
    };
    wait_for(
        "every blob, the manifest and the tag written to the object store",
        || written("blob") == blobs && written("manifest") >= 1 && written("tag") >= 1,
    );
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_replica_with_an_empty_disk_serves_a_pulled_image_from_the_object_store() {
    let g = Garage::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = object_store_toml(&g, dir.path(), "empty-disk");
    let up = Upstream::plain();
    let img = &images().oraclelinux;
    let blobs = img.blobs().len() as u64;

    let a = replica(&up, &store);
    let skopeo = Skopeo::new();
    let c = skopeo
        .copy_direct(&a.host_port(), &img.reference(), &[])
        .expect_ok("replica a pulls from the upstream");
    assert_eq!(c.digest(), img.manifest.digest);
    wait_written(&a, blobs);

    // A second replica, empty disk: the pull reaches nothing but the object store.
    up.wait_log_stable();
    let mark = up.mark();
    let b = replica(&up, &store);
    let c = skopeo
        .copy_direct(&b.host_port(), &img.reference(), &[])
        .expect_ok("replica b pulls with an empty disk");
    assert_eq!(c.digest(), img.manifest.digest);
    for d in img.blobs() {
        let got = std::fs::read(c.dest.join(d.digest.trim_start_matches("sha256:")))
            .expect("blob copied");
        assert_eq!(wharf_testkit::sha256_digest(&got), d.digest);
    }
    up.wait_log_stable();
    let reqs = up.since(mark);
    assert!(reqs.is_empty(), "replica b asked the upstream: {reqs:#?}");
    assert_eq!(
        b.metric("wharf_fills_by_source_total", &["source=\"object_store\""]),
        blobs
    );
    assert_eq!(
        b.metric("wharf_fills_by_source_total", &["source=\"upstream\""]),
        0
    );
}

#[test]
fn with_the_object_store_stopped_replicas_go_on_and_use_it_again_once_back() {
    let mut g = Garage::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = object_store_toml(&g, dir.path(), "outage");
    let up = Upstream::plain();
    let set = images();
    let (first, second) = (&set.oraclelinux, &set.multiarch.child("amd64"));
    let a = replica(&up, &store);
    let skopeo = Skopeo::new();
    skopeo
        .copy_direct(&a.host_port(), &first.reference(), &[])
        .expect_ok("a pulls the first image");
    wait_for("a wrote the first image's blobs", || {
        a.metric(
            "wharf_tier_requests_total",
            &["kind=\"blob\"", "result=\"written\""],
        ) == first.blobs().len() as u64
    });

    g.stop();
    // What a has on disk is served as before, at once.
    let started = Instant::now();
    let c = skopeo
        .copy_direct(&a.host_port(), &first.reference(), &[])
        .expect_ok("a serves its disk with the object store down");
    assert_eq!(c.digest(), first.manifest.digest);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // A new replica fills from the upstream, right bytes, and says the store failed.
    let b = replica(&up, &store);
    let c = skopeo
        .copy_direct(&b.host_port(), &first.reference(), &[])
        .expect_ok("b pulls through the upstream with the object store down");
    assert_eq!(c.digest(), first.manifest.digest);
    assert!(b.metric("wharf_tier_requests_total", &["result=\"error\""]) >= 1);
    assert!(
        b.settled_log().contains("object store failed"),
        "the log does not say the object store failed"
    );

    // Back: after the back-off, new content is written there again.
    g.start_again();
    std::thread::sleep(Duration::from_millis(1200));
    let by_digest = format!("{}@{}", second.repo, second.manifest.digest);
    skopeo
        .copy_direct(&b.host_port(), &by_digest, &[])
        .expect_ok("b pulls a second image");
    wait_for("b writes to the object store again", || {
        b.metric(
            "wharf_tier_requests_total",
            &["kind=\"blob\"", "result=\"written\""],
        ) >= second.blobs().len() as u64
    });
}

#[test]
fn a_frozen_object_store_costs_a_pull_its_response_timeout_not_a_hang() {
    let g = Garage::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let store =
        wharf_e2e::fleet::object_store_toml(&g, dir.path(), "frozen", "response_timeout = \"1s\"");
    let up = Upstream::plain();
    let img = &images().oraclelinux;
    let w = replica(&up, &store);
    g.hang();
    let started = Instant::now();
    let c = Skopeo::new()
        .copy_direct(&w.host_port(), &img.reference(), &[])
        .expect_ok("a pull with the object store frozen");
    g.resume();
    assert_eq!(c.digest(), img.manifest.digest);
    // Each read waits at most response_timeout; after the first, the store is left alone.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the pull waited on the frozen store: {:?}",
        started.elapsed()
    );
    assert!(w.metric("wharf_tier_requests_total", &["result=\"error\""]) >= 1);
}

#[test]
fn with_the_upstream_down_an_empty_replica_serves_what_the_object_store_holds() {
    let g = Garage::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = object_store_toml(&g, dir.path(), "upstream-down");
    let mut up = Upstream::plain();
    let img = &images().oraclelinux;
    let a = replica(&up, &store);
    let skopeo = Skopeo::new();
    skopeo
        .copy_direct(&a.host_port(), &img.reference(), &[])
        .expect_ok("a pulls while the upstream is up");
    // The tag too: b reads it from the object store with the upstream down.
    wait_written(&a, img.blobs().len() as u64);

    up.stop();
    let b = replica(&up, &store);
    // Something b does not have and the object store neither: the upstream is asked, fails,
    // and b leaves it alone for a while (its back-off window opens).
    let missing = skopeo.copy_direct(&b.host_port(), "os/oraclelinux:no-such-tag", &[]);
    assert!(!missing.ok(), "a tag nobody has was served");
    // The window is open: a blob nobody holds is refused at once, with when to ask again.
    let nobody = format!("sha256:{}", "0".repeat(64));
    let refused = wharf_e2e::Http::new().get(
        &format!("{}/v2/os/oraclelinux/blobs/{nobody}", b.url()),
        &[],
    );
    wharf_e2e::expect::oci_error(&refused, &[503], "UNAVAILABLE", "a blob nobody holds");
    assert!(
        refused.header("retry-after").is_some(),
        "{}",
        refused.describe()
    );
    let (_, message) = refused.errors().into_iter().next().expect("error JSON");
    assert!(message.contains("will not ask it again"), "{message}");
    // The image a pulled comes from the object store all the same.
    let c = skopeo
        .copy_direct(&b.host_port(), &img.reference(), &[])
        .expect_ok("b pulls from the object store with the upstream down");
    assert_eq!(c.digest(), img.manifest.digest);
    assert_eq!(
        b.metric("wharf_fills_by_source_total", &["source=\"object_store\""]),
        img.blobs().len() as u64
    );
}
