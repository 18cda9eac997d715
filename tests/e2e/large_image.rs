//! The 300 MiB, 5-layer `java/serverjre:latest` through wharf with skopeo: the cold pull
//! fetches each blob from the upstream exactly once, the warm pull fetches none. The upstream
//! request counts of both pulls are printed (we quote them).

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

use tokio::time::Instant;

use wharf_e2e::access_log::Counts;
use wharf_e2e::expect;
use wharf_e2e::{Skopeo, Upstream, Wharf, images};

#[test]
fn large_image_cold_then_warm_pull() {
    let img = &images().serverjre;
    let up = Upstream::plain();
    let wharf = Wharf::for_upstream(&up);
    let skopeo = Skopeo::new();
    let mib = img.total_blob_bytes() as f64 / f64::from(1 << 20);

    let m = up.mark();
    let t = Instant::now();
    let cold = skopeo
        .copy_direct(&wharf.host_port(), &img.reference(), &[])
        .expect_ok("cold skopeo copy of java/serverjre:latest");
    let cold_time = t.elapsed();
    assert_eq!(cold.digest(), img.manifest.digest);
    let cold_reqs = up.since(m);
    let cold_counts = Counts::of(&cold_reqs);

    let m = up.mark();
    let t = Instant::now();
    let warm = skopeo
        .copy_direct(&wharf.host_port(), &img.reference(), &[])
        .expect_ok("warm skopeo copy of java/serverjre:latest");
    let warm_time = t.elapsed();
    assert_eq!(warm.digest(), img.manifest.digest);
    let warm_reqs = up.since(m);
    let warm_counts = Counts::of(&warm_reqs);

    eprintln!(
        "[large image] {} ({mib:.1} MiB in {} blobs)\n\
         [large image] cold pull: {cold_time:.2?}, upstream: {cold_counts}\n\
         [large image] warm pull: {warm_time:.2?}, upstream: {warm_counts}",
        img.reference(),
        img.blobs().len()
    );
    expect::each_blob_fetched_once(&cold_reqs, &img.blobs(), "cold pull");
    let warm_blob_gets = warm_reqs.iter().filter(|r| r.is_blob_get()).count();
    assert_eq!(
        warm_blob_gets, 0,
        "warm pull sent blob GETs upstream: {warm_reqs:#?}"
    );
    expect::served_from_cache(&warm_reqs, "warm pull");
}
