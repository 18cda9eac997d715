//! Content scoped to the repository that holds it: a blob or manifest cached through one
//! repository is not served through a repository, or an upstream, that does not hold it (the
//! upstream, and the Distribution proxy, answer 404 there); a repository that does hold it
//! costs one upstream HEAD the first time and nothing after, across a restart too; with the
//! upstream down, known pairs are served and unknown ones are not.

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

use wharf_e2e::http::{ACCEPT_ALL_MANIFESTS, Http};
use wharf_e2e::registry::Storage;
use wharf_e2e::util::sha256_digest;
use wharf_e2e::{Kind, Mark, Upstream, UpstreamCfg, Wharf, expect, images};

const ACCEPT: (&str, &str) = ("Accept", ACCEPT_ALL_MANIFESTS);

fn blob_url(wharf: &Wharf, name: &str, digest: &str) -> String {
    format!("{}/v2/{name}/blobs/{digest}", wharf.url())
}

fn manifest_url(wharf: &Wharf, name: &str, digest: &str) -> String {
    format!("{}/v2/{name}/manifests/{digest}", wharf.url())
}

/// Exactly one request reached `up` after `mark`: `HEAD path`.
fn one_head(up: &Upstream, mark: Mark, path: &str, what: &str) {
    let reqs = expect::upstream_requests(up, mark, what);
    assert!(
        reqs.len() == 1 && reqs[0].method == "HEAD" && reqs[0].path_only() == path,
        "{what}: want exactly HEAD {path} upstream, got {reqs:#?}"
    );
}

fn nothing_upstream(up: &Upstream, mark: Mark, what: &str) {
    let reqs = expect::upstream_requests(up, mark, what);
    assert!(
        reqs.is_empty(),
        "{what}: nothing should reach the upstream: {reqs:#?}"
    );
}

#[test]
fn content_cached_through_one_repository_is_404_through_others() {
    let set = images();
    let img = &set.serverjre;
    let (config, layer) = (&img.config, &img.layers[0]);
    let manifest = &img.manifest.digest;
    let up = Upstream::plain();
    // A second registry that holds nothing, and the test images behind credentials wharf gets
    // wrong.
    let empty = Upstream::builder().storage(Storage::Empty).start();
    let locked = Upstream::htpasswd_tls();
    let wharf = Wharf::builder()
        .upstream(UpstreamCfg::oracle(&up))
        .upstream(UpstreamCfg::new("empty", &empty.url()).prefixes(&["empty"]))
        .upstream(
            UpstreamCfg::new("locked", &locked.url())
                .prefixes(&["locked"])
                .ca_file(locked.ca_file().expect("tls"))
                .username("bench")
                .password_file("not-the-password"),
        )
        .start();
    let http = Http::new();

    // Cached through java/serverjre.
    let m = http.get(&manifest_url(&wharf, "java/serverjre", manifest), &[ACCEPT]);
    assert_eq!(m.status, 200, "{}", m.describe());
    for b in [config, layer] {
        let r = http.get(&blob_url(&wharf, "java/serverjre", &b.digest), &[]);
        assert_eq!(r.status, 200, "{}", r.describe());
        assert_eq!(sha256_digest(&r.body), b.digest);
    }
    // What the upstream itself says for another repository.
    let direct = http.get(
        &format!("{}/v2/hello/blobs/{}", up.url(), config.digest),
        &[],
    );
    assert_eq!(direct.status, 404, "the registry: {}", direct.describe());

    for name in ["hello", "no/such/repo"] {
        for b in [config, layer] {
            let mark = up.mark();
            let r = http.get(&blob_url(&wharf, name, &b.digest), &[]);
            expect::oci_error(&r, &[404], "BLOB_UNKNOWN", &format!("GET blob via {name}"));
            let path = format!("/v2/{name}/blobs/{}", b.digest);
            one_head(&up, mark, &path, &format!("GET blob via {name}"));
            let r = http.head(&blob_url(&wharf, name, &b.digest), &[]);
            assert_eq!(r.status, 404, "HEAD blob via {name}: {}", r.describe());
        }
        let mark = up.mark();
        let r = http.get(&manifest_url(&wharf, name, manifest), &[ACCEPT]);
        expect::oci_error(
            &r,
            &[404],
            "MANIFEST_UNKNOWN",
            &format!("manifest via {name}"),
        );
        let path = format!("/v2/{name}/manifests/{manifest}");
        one_head(&up, mark, &path, &format!("manifest via {name}"));
        let r = http.head(&manifest_url(&wharf, name, manifest), &[ACCEPT]);
        assert_eq!(r.status, 404, "HEAD manifest via {name}: {}", r.describe());
    }

    // The same repository through another upstream's prefix.
    let mark = empty.mark();
    let r = http.get(
        &blob_url(&wharf, "empty/java/serverjre", &config.digest),
        &[],
    );
    expect::oci_error(&r, &[404], "BLOB_UNKNOWN", "blob via the empty upstream");
    let r = http.get(
        &manifest_url(&wharf, "empty/java/serverjre", manifest),
        &[ACCEPT],
    );
    expect::oci_error(
        &r,
        &[404],
        "MANIFEST_UNKNOWN",
        "manifest via the empty upstream",
    );
    let reqs = expect::upstream_requests(&empty, mark, "the empty upstream");
    assert!(
        reqs.iter()
            .all(|r| r.method == "HEAD" || r.kind() == Kind::Ping),
        "only HEADs: {reqs:#?}"
    );

    let r = http.get(
        &blob_url(&wharf, "locked/java/serverjre", &config.digest),
        &[],
    );
    expect::oci_error(&r, &[401], "UNAUTHORIZED", "blob via refused credentials");
    let r = http.get(
        &manifest_url(&wharf, "locked/java/serverjre", manifest),
        &[ACCEPT],
    );
    expect::oci_error(
        &r,
        &[401],
        "UNAUTHORIZED",
        "manifest via refused credentials",
    );
    assert!(
        r.header("WWW-Authenticate").is_none(),
        "the upstream's refusal carries no challenge of wharf's: {}",
        r.describe()
    );

    // Still served where it came from, without asking.
    let mark = up.mark();
    let r = http.get(&blob_url(&wharf, "java/serverjre", &config.digest), &[]);
    assert_eq!(r.status, 200, "{}", r.describe());
    let r = http.get(&manifest_url(&wharf, "java/serverjre", manifest), &[ACCEPT]);
    assert_eq!(r.status, 200, "{}", r.describe());
    nothing_upstream(&up, mark, "repeats through java/serverjre");
}

#[test]
fn a_repository_that_holds_it_costs_one_head_then_nothing_even_after_a_restart() {
    let set = images();
    // The same image, pushed to both repositories.
    let (a, b) = (&set.oraclelinux, &set.hello);
    assert_eq!(a.manifest, b.manifest);
    let manifest = &a.manifest.digest;
    let up = Upstream::plain();
    let mut wharf = Wharf::for_upstream(&up);
    let http = Http::new();

    let m = http.get(&manifest_url(&wharf, "os/oraclelinux", manifest), &[ACCEPT]);
    assert_eq!(m.status, 200, "{}", m.describe());
    for blob in a.blobs() {
        let r = http.get(&blob_url(&wharf, "os/oraclelinux", &blob.digest), &[]);
        assert_eq!(r.status, 200, "{}", r.describe());
    }

    // The first request through hello: one HEAD, then the stored bytes.
    let layer = &b.layers[0];
    let mark = up.mark();
    let r = http.get(&blob_url(&wharf, "hello", &layer.digest), &[]);
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(sha256_digest(&r.body), layer.digest);
    assert_eq!(r.header("X-Wharf-Cache").as_deref(), Some("hit"));
    one_head(
        &up,
        mark,
        &format!("/v2/hello/blobs/{}", layer.digest),
        "first blob GET via hello",
    );
    let mark = up.mark();
    let r = http.get(&manifest_url(&wharf, "hello", manifest), &[ACCEPT]);
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(sha256_digest(&r.body), *manifest);
    one_head(
        &up,
        mark,
        &format!("/v2/hello/manifests/{manifest}"),
        "first manifest GET via hello",
    );

    // The second costs nothing; nor do the blobs the confirmed manifest names.
    let mark = up.mark();
    let r = http.get(&blob_url(&wharf, "hello", &layer.digest), &[]);
    assert_eq!(r.status, 200, "{}", r.describe());
    let r = http.head(&blob_url(&wharf, "hello", &layer.digest), &[]);
    assert_eq!(r.status, 200, "{}", r.describe());
    let r = http.get(&manifest_url(&wharf, "hello", manifest), &[ACCEPT]);
    assert_eq!(r.status, 200, "{}", r.describe());
    for blob in b.blobs() {
        let r = http.get(&blob_url(&wharf, "hello", &blob.digest), &[]);
        assert_eq!(r.status, 200, "{}", r.describe());
        assert_eq!(sha256_digest(&r.body), blob.digest);
    }
    nothing_upstream(&up, mark, "second requests via hello");

    // Known pairs survive a restart; unknown ones are still asked about.
    wharf.restart();
    let mark = up.mark();
    for name in ["hello", "os/oraclelinux"] {
        let r = http.get(&manifest_url(&wharf, name, manifest), &[ACCEPT]);
        assert_eq!(r.status, 200, "{name}: {}", r.describe());
        for blob in a.blobs() {
            let r = http.get(&blob_url(&wharf, name, &blob.digest), &[]);
            assert_eq!(r.status, 200, "{name}: {}", r.describe());
        }
    }
    nothing_upstream(&up, mark, "known pairs after a restart");
    let mark = up.mark();
    let r = http.get(&blob_url(&wharf, "legacy/docker", &layer.digest), &[]);
    expect::oci_error(&r, &[404], "BLOB_UNKNOWN", "a repository without it");
    one_head(
        &up,
        mark,
        &format!("/v2/legacy/docker/blobs/{}", layer.digest),
        "unknown pair after a restart",
    );

    // The upstream down: what is known is served, what is not is not.
    let mut up = up;
    up.stop();
    let r = http.get(&blob_url(&wharf, "hello", &layer.digest), &[]);
    assert_eq!(r.status, 200, "known pair, upstream down: {}", r.describe());
    let r = http.get(&manifest_url(&wharf, "os/oraclelinux", manifest), &[ACCEPT]);
    assert_eq!(r.status, 200, "known pair, upstream down: {}", r.describe());
    for _ in 0..2 {
        let r = http.get(&blob_url(&wharf, "os/multiarch", &layer.digest), &[]);
        expect::oci_error(
            &r,
            &[502, 503, 504],
            "UNAVAILABLE",
            "unknown pair, upstream down",
        );
    }
}
