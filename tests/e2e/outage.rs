//! The upstream goes away: what is cached still pulls, what is not fails fast with
//! 502/503/504 `UNAVAILABLE` naming the upstream; a restarted wharf keeps its cache. A hung
//! upstream (SIGSTOPped: it accepts connections and answers nothing) costs a cached tag at
//! most its `response_timeout`.

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

use std::time::Duration;

use tokio::time::Instant;

use wharf_e2e::expect;
use wharf_e2e::http::{ACCEPT_ALL_MANIFESTS, Http};
use wharf_e2e::{Skopeo, Upstream, UpstreamCfg, Wharf, images};

const ACCEPT: (&str, &str) = ("Accept", ACCEPT_ALL_MANIFESTS);

#[test]
fn upstream_down_uncached_is_unavailable_cached_pulls_by_digest() {
    let set = images();
    let img = &set.oraclelinux;
    let mut up = Upstream::plain();
    let wharf = Wharf::for_upstream(&up);
    let skopeo = Skopeo::new();
    skopeo
        .copy_direct(&wharf.host_port(), &img.reference(), &[])
        .expect_ok("warming the cache");
    up.stop();

    let http = Http::new().timeout(Duration::from_secs(60));
    let uncached = [
        format!("/v2/{}/manifests/{}", set.multiarch.repo, set.multiarch.tag),
        format!(
            "/v2/{}/manifests/{}",
            set.serverjre.repo, set.serverjre.manifest.digest
        ),
        format!(
            "/v2/{}/blobs/{}",
            set.serverjre.repo, set.serverjre.layers[0].digest
        ),
    ];
    for path in uncached {
        let t = Instant::now();
        let r = http.get(&format!("{}{path}", wharf.url()), &[ACCEPT]);
        expect::oci_error(
            &r,
            &[502, 503, 504],
            "UNAVAILABLE",
            &format!("upstream down, uncached {path}"),
        );
        expect::message_names_upstream(&r, "oracle", &up, &path);
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "{path}: answered only after {:?}",
            t.elapsed()
        );
    }

    let cached = skopeo
        .copy_direct(&wharf.host_port(), &img.by_digest(), &[])
        .expect_ok("pull by digest of a cached image while the upstream is down");
    assert_eq!(cached.digest(), img.manifest.digest);
    let blob = http.get(
        &format!(
            "{}/v2/{}/blobs/{}",
            wharf.url(),
            img.repo,
            img.layers[2].digest
        ),
        &[],
    );
    assert_eq!(
        blob.status,
        200,
        "cached blob with the upstream down: {}",
        blob.describe()
    );
}

#[test]
fn upstream_down_cached_tag_is_served_stale() {
    let set = images();
    let img = &set.hello;
    let mut up = Upstream::plain();
    // tag_ttl 0s: every tag request revalidates, so the outage is noticed.
    let wharf = Wharf::builder()
        .upstream(UpstreamCfg::oracle(&up).tag_ttl("0s"))
        .start();
    let skopeo = Skopeo::new();
    skopeo
        .copy_direct(&wharf.host_port(), &img.reference(), &[])
        .expect_ok("warming the cache");
    up.stop();
    let c = skopeo
        .copy_direct(&wharf.host_port(), &img.reference(), &[])
        .expect_ok("pull by tag with the upstream down (stale-if-error)");
    assert_eq!(c.digest(), img.manifest.digest);

    // The stale warning is tied to the request that met it: it carries the request span's id,
    // and that id is the one in the manifest request's access line.
    let log = wharf.settled_log();
    let stale = log
        .lines()
        .find(|l| l.contains("serving the last known digest"))
        .unwrap_or_else(|| panic!("no stale warning in the log:\n{log}"));
    let id = stale
        .split("request{id=")
        .nth(1)
        .and_then(|rest| rest.split([' ', '}']).next())
        .unwrap_or_else(|| panic!("the stale warning carries no request span: {stale}"));
    assert!(
        log.lines()
            .any(|l| l.contains("wharf::access") && l.contains(id) && l.contains("/manifests/")),
        "no manifest access line with request id {id}:\n{log}"
    );
}

/// A down upstream under load: every request is answered stale and counted, but the log gets
/// one warning per upstream and cause per interval, not one per request.
#[test]
fn a_down_upstream_under_load_does_not_flood_the_log() {
    let set = images();
    let img = &set.hello;
    let mut up = Upstream::plain();
    let wharf = Wharf::builder()
        .upstream(UpstreamCfg::oracle(&up).tag_ttl("0s"))
        .start();
    let http = Http::new().timeout(Duration::from_secs(30));
    let url = format!("{}/v2/{}/manifests/{}", wharf.url(), img.repo, img.tag);
    let warm = http.get(&url, &[ACCEPT]);
    assert_eq!(warm.status, 200, "{}", warm.describe());
    up.stop();
    const REQUESTS: usize = 200;
    for n in 0..REQUESTS {
        let r = http.get(&url, &[ACCEPT]);
        assert_eq!(
            r.status,
            200,
            "request {n} with the upstream down: {}",
            r.describe()
        );
    }
    let stats = http.get(&format!("{}/admin/cache/stats", wharf.admin_url()), &[]);
    assert_eq!(stats.status, 200, "{}", stats.describe());
    let stale = stats.json()["stale_served"].as_u64().unwrap_or(0);
    assert!(
        stale >= REQUESTS as u64,
        "every stale answer is counted: {stale}"
    );
    let log = wharf.settled_log();
    let warnings = log
        .lines()
        .filter(|l| l.contains("serving the last known digest"))
        .count();
    // One for the failure that opened the back-off window, one for the answers inside it.
    assert!(
        (1..=2).contains(&warnings),
        "{warnings} stale warnings for {REQUESTS} stale answers:\n{log}"
    );
    assert!(
        !log.lines().any(|l| l.contains("request failed")),
        "stale answers are not failures:\n{log}"
    );
}

#[test]
fn cache_survives_a_wharf_restart_while_the_upstream_is_down() {
    let set = images();
    let img = &set.legacy;
    let mut up = Upstream::plain();
    let mut wharf = Wharf::for_upstream(&up);
    let skopeo = Skopeo::new();
    skopeo
        .copy_direct(&wharf.host_port(), &img.reference(), &[])
        .expect_ok("warming the cache");
    up.stop();
    wharf.restart();
    let c = skopeo
        .copy_direct(&wharf.host_port(), &img.by_digest(), &[])
        .expect_ok("pull by digest after a restart, upstream down");
    assert_eq!(c.digest(), img.manifest.digest);
    // The upstream comes back: content wharf never saw flows again.
    up.start_again();
    let other = skopeo
        .copy_direct(&wharf.host_port(), &set.oraclelinux.reference(), &[])
        .expect_ok("pull of another image once the upstream is back");
    assert_eq!(other.digest(), set.oraclelinux.manifest.digest);
}

#[test]
fn upstream_hung_cached_tag_pulls_within_the_timeout_uncached_is_a_5xx() {
    let set = images();
    let img = &set.hello;
    let up = Upstream::plain();
    let timeout = Duration::from_secs(3);
    // tag_ttl 0s: every tag request asks the upstream, so the hang is met.
    let wharf = Wharf::builder()
        .upstream(
            UpstreamCfg::oracle(&up)
                .tag_ttl("0s")
                .extra("connect_timeout = \"3s\"\nresponse_timeout = \"3s\""),
        )
        .start();
    let skopeo = Skopeo::new();
    skopeo
        .copy_direct(&wharf.host_port(), &img.reference(), &[])
        .expect_ok("warming the cache");
    // What a pull costs skopeo itself, the upstream answering: the bound below is on top.
    let warm = skopeo
        .copy_direct(&wharf.host_port(), &img.reference(), &[])
        .expect_ok("warm pull");
    up.hang();

    let c = skopeo
        .copy_direct(&wharf.host_port(), &img.reference(), &[])
        .expect_ok("pull by tag with the upstream hung (stale-if-error)");
    assert_eq!(c.digest(), img.manifest.digest);
    eprintln!(
        "pull with the upstream hung: {:?} (warm pull: {:?}, upstream timeout {timeout:?})",
        c.out.elapsed, warm.out.elapsed
    );
    assert!(
        c.out.elapsed < warm.out.elapsed + timeout + Duration::from_secs(1),
        "the pull took {:?} (a warm one {:?}); the upstream timeout is {timeout:?}",
        c.out.elapsed,
        warm.out.elapsed
    );

    let http = Http::new().timeout(Duration::from_secs(60));
    let path = format!("/v2/{}/manifests/{}", set.multiarch.repo, set.multiarch.tag);
    let r = http.get(&format!("{}{path}", wharf.url()), &[ACCEPT]);
    expect::oci_error(
        &r,
        &[502, 503, 504],
        "UNAVAILABLE",
        "upstream hung, uncached manifest",
    );
    expect::message_names_upstream(&r, "oracle", &up, &path);
    let path = format!(
        "/v2/{}/blobs/{}",
        set.legacy.repo, set.legacy.layers[0].digest
    );
    let r = http.get(&format!("{}{path}", wharf.url()), &[]);
    expect::oci_error(
        &r,
        &[502, 503, 504],
        "UNAVAILABLE",
        "upstream hung, uncached blob",
    );
    up.resume();
}
