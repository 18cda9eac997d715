//! The regional tier (issue 17): a site wharf whose upstreams are a regional wharf's prefixes
//! (a URL with a path), pulled through with podman; each blob crosses each tier once. Chaining
//! (errors, loops, HEAD of a cold blob) is in `regional/chain.rs`; a hung upstream and a stale
//! tag in `regional/revalidate.rs`; an upstream with a mirror in `regional/mirrors.rs`; predictive
//! warming of a moved tag in `regional/warming.rs`.

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

#[path = "regional/tiers.rs"]
mod tiers;

#[path = "regional/chain.rs"]
mod chain;

#[path = "regional/revalidate.rs"]
mod revalidate;

#[path = "regional/mirrors.rs"]
mod mirrors;

#[path = "regional/warming.rs"]
mod warming;

use std::collections::BTreeMap;

use tiers::{Tiers, access_since, log_mark};
use wharf_e2e::expect;
use wharf_e2e::{Podman, REGISTRY_NAME, images};

/// podman pulls `os/oraclelinux` through the site's `oracle` upstream and `hello` (the same
/// blobs under another name) through its `ol` upstream: the registry sends each blob once, the
/// region sends each blob to the site once, and a fresh podman's repeat pulls reach neither.
#[test]
fn podman_pulls_through_site_and_region_one_blob_get_per_tier() {
    let set = images();
    let (ol, hello) = (&set.oraclelinux, &set.hello);
    let t = Tiers::start();
    let site_oracle = format!("{}/oracle", t.site.host_port());
    let site_ol = format!("{}/ol", t.site.host_port());
    let ol_name = format!("{REGISTRY_NAME}/{}", ol.reference());
    let hello_name = format!("{REGISTRY_NAME}/{}", hello.reference());

    let m = t.registry.mark();
    let region_mark = log_mark(&t.region);
    let cold = Podman::mirror(&site_oracle);
    cold.pull(&ol_name, &[])
        .expect_ok("cold pull through site/oracle");
    assert_eq!(cold.image_digest(&ol_name), ol.manifest.digest);
    let cold_ol = Podman::mirror(&site_ol);
    cold_ol
        .pull(&hello_name, &[])
        .expect_ok("cold pull through site/ol");
    assert_eq!(cold_ol.image_digest(&hello_name), hello.manifest.digest);

    let reqs = expect::upstream_requests(&t.registry, m, "cold pulls through two tiers");
    expect::each_blob_fetched_once(&reqs, &ol.blobs(), "registry, both cold pulls");
    let at_region = access_since(&t.region, region_mark);
    let mut region_blob_gets: BTreeMap<String, usize> = BTreeMap::new();
    for a in at_region
        .iter()
        .filter(|a| a.method == "GET" && a.path.contains("/blobs/"))
    {
        *region_blob_gets
            .entry(a.path.rsplit('/').next().unwrap_or("").to_owned())
            .or_default() += 1;
    }
    for b in ol.blobs() {
        assert_eq!(
            region_blob_gets.get(&b.digest).copied().unwrap_or(0),
            1,
            "the site should GET blob {} from the region once: {at_region:#?}",
            b.digest
        );
    }
    assert!(
        at_region
            .iter()
            .any(|a| a.path.starts_with("/ol/v2/hello/") && a.status == 200),
        "the site's `ol` upstream reaches the region's /ol prefix: {at_region:#?}"
    );
    assert!(
        at_region
            .iter()
            .all(|a| a.path.starts_with("/oracle/v2/") || a.path.starts_with("/ol/v2/")),
        "every request from the site goes under a prefix path: {at_region:#?}"
    );

    let m = t.registry.mark();
    let region_mark = log_mark(&t.region);
    let warm = Podman::mirror(&site_oracle);
    warm.pull(&ol_name, &[])
        .expect_ok("warm pull through site/oracle");
    assert_eq!(warm.image_digest(&ol_name), ol.manifest.digest);
    let warm_ol = Podman::mirror(&site_ol);
    warm_ol
        .pull(&hello_name, &[])
        .expect_ok("warm pull through site/ol");
    let reqs = expect::upstream_requests(&t.registry, m, "warm pulls");
    assert!(
        reqs.is_empty(),
        "warm pulls reached the registry: {reqs:#?}"
    );
    let at_region = access_since(&t.region, region_mark);
    assert!(
        at_region.is_empty(),
        "warm pulls reached the region: {at_region:#?}"
    );
}
