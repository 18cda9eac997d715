//! Chaining: what the far end says reaches the client, a loop is refused at once, and a HEAD of
//! a cold blob costs the tiers no download.

use std::time::Duration;

use tokio::time::Instant;

use wharf_e2e::{Http, Kind, UpstreamCfg, Wharf, images};

use crate::tiers::{Tiers, access_since, log_mark};

/// An error from the region (or the registry behind it) keeps its code and message at the site,
/// prefixed with the site's upstream name.
#[test]
fn the_regions_errors_reach_the_client_intact() {
    let set = images();
    let t = Tiers::start();
    let http = Http::new().timeout(Duration::from_secs(20));

    // The region has no `quay` prefix: its own NAME_UNKNOWN, not the site's MANIFEST_UNKNOWN.
    let path = format!(
        "/v2/{}/manifests/{}",
        set.oraclelinux.repo, set.oraclelinux.tag
    );
    let at_region = http.get(&format!("{}/quay{path}", t.region.url()), &[]);
    let (code, message) = at_region
        .errors()
        .into_iter()
        .next()
        .expect("region's error");
    assert_eq!((at_region.status, code.as_str()), (404, "NAME_UNKNOWN"));
    let at_site = http.get(&format!("{}/quay{path}", t.site.url()), &[]);
    assert_eq!(at_site.status, 404, "{}", at_site.describe());
    assert_eq!(
        at_site.errors(),
        vec![(
            "NAME_UNKNOWN".to_owned(),
            format!("upstream regional-quay: {message}")
        )],
        "{}",
        at_site.describe()
    );

    // A tag the registry lacks: the registry's words, through both tiers.
    let missing = format!("/v2/{}/manifests/no-such-tag", set.oraclelinux.repo);
    let at_region = http.get(&format!("{}/oracle{missing}", t.region.url()), &[]);
    let (code, message) = at_region
        .errors()
        .into_iter()
        .next()
        .expect("region's error");
    assert_eq!((at_region.status, code.as_str()), (404, "MANIFEST_UNKNOWN"));
    assert!(message.starts_with("upstream oracle: "), "{message}");
    let at_site = http.get(&format!("{}/oracle{missing}", t.site.url()), &[]);
    assert_eq!(
        (at_site.status, at_site.errors()),
        (
            404,
            vec![(
                "MANIFEST_UNKNOWN".to_owned(),
                format!("upstream regional: {message}")
            )]
        ),
        "{}",
        at_site.describe()
    );
}

/// A wharf whose upstream URL leads back to itself refuses the looped request at once (508
/// Loop Detected), instead of calling itself until the timeouts run out.
#[test]
fn a_wharf_whose_upstream_is_itself_is_refused_quickly() {
    let set = images();
    let placeholder = "http://127.0.0.1:9/self";
    let mut w = Wharf::builder()
        .upstream(
            UpstreamCfg::new("self", placeholder)
                .prefixes(&["self"])
                .default(true),
        )
        .start();
    let config = std::fs::read_to_string(w.config_path()).expect("read config");
    let own = format!("{}/self", w.url());
    std::fs::write(w.config_path(), config.replace(placeholder, &own)).expect("write config");
    w.restart();

    let http = Http::new().timeout(Duration::from_secs(20));
    let img = &set.oraclelinux;
    for path in [
        format!("/self/v2/{}/manifests/{}", img.repo, img.tag),
        format!("/self/v2/{}/blobs/{}", img.repo, img.layers[0].digest),
    ] {
        let started = Instant::now();
        let r = http.get(&format!("{}{path}", w.url()), &[]);
        let took = started.elapsed();
        assert_eq!(r.status, 508, "{path}: {}", r.describe());
        let (_, message) = r.errors().into_iter().next().expect("error JSON");
        assert!(
            message.starts_with("upstream self: request loop") && message.contains("wharf-"),
            "{path}: {message}"
        );
        assert!(took < Duration::from_secs(2), "{path}: took {took:?}");
    }
}

/// HEAD of a blob nobody has: each tier asks the next with HEAD, nothing is downloaded; the GET
/// that follows downloads it once per tier.
#[test]
fn head_of_a_cold_blob_at_the_site_downloads_nothing() {
    let set = images();
    let img = &set.oraclelinux;
    let blob = &img.layers[0];
    let t = Tiers::start();
    let http = Http::new().timeout(Duration::from_secs(20));
    let url = format!(
        "{}/oracle/v2/{}/blobs/{}",
        t.site.url(),
        img.repo,
        blob.digest
    );

    let m = t.registry.mark();
    let region_mark = log_mark(&t.region);
    let r = http.head(&url, &[]);
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.header("content-length"), Some(blob.size.to_string()));
    let count = |reqs: &[wharf_e2e::Req], method: &str| {
        reqs.iter()
            .filter(|q| q.is(method, Kind::Blob) && q.path.contains(&blob.digest))
            .count()
    };
    let reqs = t.registry.since(m);
    assert_eq!(
        (count(&reqs, "HEAD"), count(&reqs, "GET")),
        (1, 0),
        "{reqs:#?}"
    );
    let at_region = access_since(&t.region, region_mark);
    let region = |method: &str| {
        at_region
            .iter()
            .filter(|a| a.method == method && a.path.contains(&blob.digest))
            .count()
    };
    assert_eq!((region("HEAD"), region("GET")), (1, 0), "{at_region:#?}");

    let r = http.get(&url, &[]);
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.body.len() as u64, blob.size);
    let reqs = t.registry.since(m);
    assert_eq!(count(&reqs, "GET"), 1, "{reqs:#?}");
    let at_region = access_since(&t.region, region_mark);
    assert_eq!(
        at_region
            .iter()
            .filter(|a| a.method == "GET" && a.path.contains(&blob.digest))
            .count(),
        1,
        "{at_region:#?}"
    );
}

/// Two wharfs, each the other's upstream: a request goes A to B to A, and A, seeing its own
/// pseudonym among the hops B passed on, refuses it with 508 at once; B passes the answer back.
#[test]
fn a_loop_through_two_wharfs_is_refused_quickly() {
    let [pa, pb] = wharf_e2e::util::free_ports();
    let via = |port: u16| {
        UpstreamCfg::new("next", &format!("http://127.0.0.1:{port}/next"))
            .prefixes(&["next"])
            .default(true)
    };
    let a = Wharf::builder().listen_port(pa).upstream(via(pb)).start();
    let _b = Wharf::builder().listen_port(pb).upstream(via(pa)).start();
    // A blob goes through each wharf's fill, a task of its own: the hops go with it.
    let blob = &images().oraclelinux.layers[0].digest;
    for path in [
        "/next/v2/os/oraclelinux/manifests/7-slim".to_owned(),
        format!("/next/v2/os/oraclelinux/blobs/{blob}"),
    ] {
        let started = Instant::now();
        let r = Http::new()
            .timeout(Duration::from_secs(20))
            .get(&format!("{}{path}", a.url()), &[]);
        let took = started.elapsed();
        assert_eq!(r.status, 508, "{path}: {}", r.describe());
        let (_, message) = r.errors().into_iter().next().expect("error JSON");
        assert!(message.contains("request loop"), "{path}: {message}");
        assert!(took < Duration::from_secs(2), "{path}: took {took:?}");
    }
}
