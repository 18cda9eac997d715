//! A hung upstream never holds a pull of a cached tag for long: past its TTL, the tag waits
//! `revalidate_timeout` for the upstream, then is served stale while the revalidation finishes
//! in the background; once the upstream answers, the record is revalidated.

use std::time::Duration;

use wharf_e2e::http::{ACCEPT_ALL_MANIFESTS, Http};
use wharf_e2e::{Kind, Skopeo, Upstream, UpstreamCfg, Wharf, images};

const TAG_TTL: Duration = Duration::from_secs(3);
const REVALIDATE: Duration = Duration::from_secs(2);

#[test]
fn a_hung_upstream_costs_a_stale_tag_the_revalidate_timeout_and_is_revalidated_after() {
    let set = images();
    let img = &set.oraclelinux;
    let up = Upstream::plain();
    // response_timeout stays at its 30 s default: the deadline, not the timeout, bounds the pull.
    let wharf = Wharf::builder()
        .upstream(
            UpstreamCfg::oracle(&up)
                .tag_ttl("3s")
                .extra("revalidate_timeout = \"2s\""),
        )
        .start();
    let skopeo = Skopeo::new();
    skopeo
        .copy_direct(&wharf.host_port(), &img.reference(), &[])
        .expect_ok("warming the cache");
    let warm = skopeo
        .copy_direct(&wharf.host_port(), &img.reference(), &[])
        .expect_ok("warm pull");
    // Tag HEADs the registry answered, before it hangs.
    let head_answered = || {
        up.requests()
            .iter()
            .filter(|r| r.is("HEAD", Kind::ManifestByTag) && r.status == 200)
            .count()
    };
    let before = head_answered();
    std::thread::sleep(TAG_TTL + Duration::from_millis(200));
    up.hang();

    let c = skopeo
        .copy_direct(&wharf.host_port(), &img.reference(), &[])
        .expect_ok("pull by tag past its TTL with the upstream hung");
    up.resume();
    assert_eq!(c.digest(), img.manifest.digest);
    eprintln!(
        "pull with the upstream hung: {:?} (warm pull: {:?}, revalidate_timeout {REVALIDATE:?})",
        c.out.elapsed, warm.out.elapsed
    );
    assert!(
        c.out.elapsed < warm.out.elapsed + REVALIDATE + Duration::from_secs(1),
        "the pull took {:?} (a warm one {:?})",
        c.out.elapsed,
        warm.out.elapsed
    );

    // SIGCONT: the registry answers the HEAD it was holding, the background revalidation
    // records it, and the tag is fresh again: served without a Warning or an upstream request.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while head_answered() == before && tokio::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        head_answered() > before,
        "the held HEAD was never answered: {:#?}",
        up.requests()
    );
    up.wait_log_stable();
    std::thread::sleep(Duration::from_millis(200));
    let m = up.mark();
    let r = Http::new().timeout(Duration::from_secs(10)).get(
        &format!("{}/v2/{}/manifests/{}", wharf.url(), img.repo, img.tag),
        &[("Accept", ACCEPT_ALL_MANIFESTS)],
    );
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.header("warning"), None, "{}", r.describe());
    let reqs = up.since(m);
    assert!(reqs.is_empty(), "the record was not revalidated: {reqs:#?}");
}
