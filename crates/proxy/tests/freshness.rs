//! Tag freshness on paused time: TTL expiry, immutable tags, stale-if-error and its back-off
//! window, rate limits, a hung upstream, an evicted manifest. Nothing sleeps for real.
//!
//! The upstream is a fake registry on a loopback socket (`wharf_testkit::FakeRegistry`, on its
//! own runtime: real time) that records the requests it gets. The proxy runs on the test's paused runtime;
//! while a request that should complete is in flight, [`still`] keeps that runtime busy so the
//! paused clock does not jump ahead to the next timer (a response timeout) before the fake's
//! answer arrives. Time moves only by `tokio::time::advance`, or, for the hung upstream, by the
//! runtime auto-advancing to the response timeout it is waiting on.

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::BodyExt;
use tokio::time::Instant;
use wharf_cache::Store;
use wharf_oci::Digest;
use wharf_proxy::freshness::{Backoff, FAILURE_BACKOFF};
use wharf_proxy::{Proxy, Upstream, Upstreams};
use wharf_testkit::{FakeRegistry, Reply};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const TTL: Duration = Duration::from_secs(300);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
const REVALIDATE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the fake upstream does.
#[derive(Clone)]
enum Mode {
    /// Serves these tags of `app` (tag -> manifest bytes).
    Serve(Vec<(String, Bytes)>),
    /// Answers every request with this status (and `Retry-After` if given).
    Fail(u16, Option<u64>),
    /// Never answers.
    Hang,
}

fn manifest(n: u8) -> Bytes {
    Bytes::from(format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","annotations":{{"n":"{n}"}}}}"#
    ))
}

fn tags(pairs: &[(&str, u8)]) -> Mode {
    Mode::Serve(
        pairs
            .iter()
            .map(|(t, n)| ((*t).to_owned(), manifest(*n)))
            .collect(),
    )
}

struct Setup {
    proxy: Arc<Proxy>,
    fake: FakeRegistry,
    _dir: tempfile::TempDir,
}

impl Setup {
    /// Makes the fake do `mode` from now on.
    fn set(&self, mode: Mode) {
        match mode {
            Mode::Serve(tags) => {
                for (tag, bytes) in tags {
                    self.fake.put_manifest("app", &tag, bytes, OCI_MANIFEST);
                }
                self.fake.serve_normally();
            }
            Mode::Fail(code, retry) => self.fake.respond_with(match retry {
                Some(s) => Reply::new(code).header("retry-after", &s.to_string()),
                None => Reply::new(code),
            }),
            Mode::Hang => self.fake.respond_with(Reply::hang()),
        }
    }

    /// `(method, path)` of the requests received so far, then forgets them.
    fn take(&self) -> Vec<(String, String)> {
        self.fake
            .take_requests()
            .into_iter()
            .map(|s| (s.method.to_string(), s.path))
            .collect()
    }
}

async fn setup(mode: Mode, immutable: &[&str]) -> Setup {
    let fake = FakeRegistry::builder().start();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).await.expect("store");
    let client = wharf_upstream::Client::new(wharf_upstream::Config {
        name: "fake".into(),
        url: fake.url(),
        mirrors: Vec::new(),
        username: None,
        password: None,
        ca_file: None,
        connect_timeout: RESPONSE_TIMEOUT,
        response_timeout: RESPONSE_TIMEOUT,
    })
    .expect("client");
    let up = Upstream {
        name: "fake".into(),
        client,
        prefixes: vec!["fake".into()],
        is_default: true,
        library_prefix: false,
        tag_ttl: TTL,
        revalidate_timeout: REVALIDATE_TIMEOUT,
        immutable_tags: regex::RegexSet::new(immutable).expect("patterns"),
        warm_moved_tags: false,
        backoff: Backoff::default(),
        registry: "fake".into(),
        lookaside: None,
        policy: None,
    };
    let s = Setup {
        proxy: Proxy::new(Upstreams::new(vec![up]), store),
        fake,
        _dir: dir,
    };
    s.set(mode);
    s
}

/// Runs `f` while keeping the paused runtime from auto-advancing its clock.
async fn still<F: Future>(f: F) -> F::Output {
    let spin = async {
        loop {
            tokio::task::yield_now().await;
        }
    };
    tokio::select! {
        out = f => out,
        () = spin => unreachable!(),
    }
}

/// `GET /v2/app/manifests/<tag>`: status, `Docker-Content-Digest`, `Retry-After`, body.
async fn get_tag(proxy: &Arc<Proxy>, tag: &str) -> (u16, Option<String>, Option<String>, Bytes) {
    let req = Request::get(format!("/v2/app/manifests/{tag}"))
        .header("accept", OCI_MANIFEST)
        .body(http_body_util::Empty::<Bytes>::new())
        .expect("request");
    let resp = proxy.clone().handle(req).await;
    let header = |n: &str| {
        resp.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (digest, retry) = (header("docker-content-digest"), header("retry-after"));
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, digest, retry, body)
}

fn digest_of(n: u8) -> Option<String> {
    Some(Digest::sha256_of(&manifest(n)).to_string())
}

fn reqs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_tag_is_served_without_asking_within_its_ttl_and_revalidated_with_one_head_after() {
    let s = setup(tags(&[("latest", 1)]), &[]).await;
    let (status, digest, _, body) = still(get_tag(&s.proxy, "latest")).await;
    assert_eq!((status, digest.clone()), (200, digest_of(1)));
    assert_eq!(body, manifest(1));
    assert_eq!(s.take(), reqs(&[("GET", "/v2/app/manifests/latest")]));

    tokio::time::advance(TTL - Duration::from_secs(1)).await;
    let (status, digest, _, _) = still(get_tag(&s.proxy, "latest")).await;
    assert_eq!((status, digest), (200, digest_of(1)));
    assert_eq!(s.take(), vec![], "within the TTL nothing goes upstream");

    tokio::time::advance(Duration::from_secs(2)).await;
    let (status, digest, _, _) = still(get_tag(&s.proxy, "latest")).await;
    assert_eq!((status, digest), (200, digest_of(1)));
    assert_eq!(
        s.take(),
        reqs(&[("HEAD", "/v2/app/manifests/latest")]),
        "after the TTL: one HEAD, never a GET"
    );
    // Revalidated: fresh again for another TTL.
    tokio::time::advance(TTL - Duration::from_secs(1)).await;
    still(get_tag(&s.proxy, "latest")).await;
    assert_eq!(s.take(), vec![]);
}

#[tokio::test(start_paused = true)]
async fn a_moved_tag_is_followed_once_its_ttl_is_over() {
    let s = setup(tags(&[("latest", 1)]), &[]).await;
    still(get_tag(&s.proxy, "latest")).await;
    s.take();
    s.set(tags(&[("latest", 2)]));
    // Within the TTL the old digest is still served: that is what a TTL means.
    let (_, digest, _, _) = still(get_tag(&s.proxy, "latest")).await;
    assert_eq!(digest, digest_of(1));
    tokio::time::advance(TTL).await;
    let (status, digest, _, body) = still(get_tag(&s.proxy, "latest")).await;
    assert_eq!((status, digest.clone()), (200, digest_of(2)));
    assert_eq!(body, manifest(2));
    let d2 = digest.expect("digest");
    assert_eq!(
        s.take(),
        reqs(&[
            ("HEAD", "/v2/app/manifests/latest"),
            ("GET", &format!("/v2/app/manifests/{d2}")),
        ])
    );
}

#[tokio::test(start_paused = true)]
async fn immutable_tags_are_never_revalidated() {
    let s = setup(
        tags(&[("v1.2.3", 1), ("latest", 1)]),
        &[r"^v\d+\.\d+\.\d+$"],
    )
    .await;
    still(get_tag(&s.proxy, "v1.2.3")).await;
    still(get_tag(&s.proxy, "latest")).await;
    s.take();
    // Someone re-pushes the "immutable" tag upstream; a week passes.
    s.set(tags(&[("v1.2.3", 2), ("latest", 2)]));
    tokio::time::advance(Duration::from_secs(7 * 86_400)).await;
    let (_, digest, _, _) = still(get_tag(&s.proxy, "v1.2.3")).await;
    assert_eq!(digest, digest_of(1), "the recorded digest, not asked again");
    assert_eq!(s.take(), vec![]);
    // A tag outside the pattern is revalidated as usual.
    let (_, digest, _, _) = still(get_tag(&s.proxy, "latest")).await;
    assert_eq!(digest, digest_of(2));
    assert_eq!(s.take().len(), 2, "HEAD, then GET of the new digest");
}

#[tokio::test(start_paused = true)]
async fn a_failing_upstream_gets_the_stale_digest_served_and_is_left_alone_for_a_while() {
    let s = setup(tags(&[("latest", 1)]), &[]).await;
    still(get_tag(&s.proxy, "latest")).await;
    s.take();
    s.set(Mode::Fail(503, None));
    tokio::time::advance(TTL).await;

    let (status, digest, _, body) = still(get_tag(&s.proxy, "latest")).await;
    assert_eq!((status, digest), (200, digest_of(1)), "stale-if-error");
    assert_eq!(body, manifest(1));
    assert_eq!(s.take(), reqs(&[("HEAD", "/v2/app/manifests/latest")]));
    assert_eq!(s.proxy.stale_served(), 1);

    // Within the back-off window: served stale without asking.
    tokio::time::advance(FAILURE_BACKOFF - Duration::from_secs(1)).await;
    let (status, digest, _, _) = still(get_tag(&s.proxy, "latest")).await;
    assert_eq!((status, digest), (200, digest_of(1)));
    assert_eq!(s.take(), vec![]);
    assert_eq!(s.proxy.stale_served(), 2);

    // After it the upstream is asked again; it is back and confirms the digest.
    tokio::time::advance(Duration::from_secs(2)).await;
    s.set(tags(&[("latest", 1)]));
    let (status, digest, _, _) = still(get_tag(&s.proxy, "latest")).await;
    assert_eq!((status, digest), (200, digest_of(1)));
    assert_eq!(s.take(), reqs(&[("HEAD", "/v2/app/manifests/latest")]));
    assert_eq!(s.proxy.stale_served(), 2);
    // Revalidated, so fresh for a TTL.
    tokio::time::advance(TTL - Duration::from_secs(1)).await;
    still(get_tag(&s.proxy, "latest")).await;
    assert_eq!(s.take(), vec![]);

    // The metrics tell the same story: fetched once, stale twice (the failure, then the
    // back-off window), revalidated unchanged, then a hit within the TTL.
    let m = s.proxy.metrics();
    let requests = |result: &str| {
        m.http_requests
            .with_label_values(&["fake", "manifest", result])
            .get()
    };
    assert_eq!(
        (requests("miss"), requests("stale"), requests("hit")),
        (1, 2, 2)
    );
    let stale = |reason: &str| m.stale_served.with_label_values(&["fake", reason]).get();
    assert_eq!((stale("upstream_failed"), stale("backing_off")), (1, 1));
    let revalidated = |result: &str| {
        m.tag_revalidations
            .with_label_values(&["fake", result])
            .get()
    };
    assert_eq!(
        (revalidated("failed_served_stale"), revalidated("unchanged")),
        (1, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn a_rate_limited_upstream_is_not_asked_before_retry_after() {
    let s = setup(tags(&[("latest", 1)]), &[]).await;
    still(get_tag(&s.proxy, "latest")).await;
    s.take();
    s.set(Mode::Fail(429, Some(120)));
    tokio::time::advance(TTL).await;
    let (status, digest, _, _) = still(get_tag(&s.proxy, "latest")).await;
    assert_eq!((status, digest), (200, digest_of(1)));
    assert_eq!(s.take().len(), 1);
    tokio::time::advance(Duration::from_secs(119)).await;
    still(get_tag(&s.proxy, "latest")).await;
    assert_eq!(s.take(), vec![], "not before Retry-After");
    tokio::time::advance(Duration::from_secs(2)).await;
    still(get_tag(&s.proxy, "latest")).await;
    assert_eq!(s.take().len(), 1, "asked again once Retry-After passed");
}

#[tokio::test(start_paused = true)]
async fn a_rate_limit_with_nothing_cached_is_429_toomanyrequests_with_retry_after() {
    let s = setup(Mode::Fail(429, Some(42)), &[]).await;
    let (status, _, retry, body) = still(get_tag(&s.proxy, "latest")).await;
    assert_eq!(status, 429);
    assert_eq!(retry.as_deref(), Some("42"));
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["errors"][0]["code"], "TOOMANYREQUESTS");
}

#[tokio::test(start_paused = true)]
async fn a_hung_upstream_gets_the_stale_digest_served_after_its_timeout() {
    let s = setup(tags(&[("latest", 1)]), &[]).await;
    still(get_tag(&s.proxy, "latest")).await;
    s.set(Mode::Hang);
    tokio::time::advance(TTL).await;
    // No `still`: the paused clock runs ahead to the response timeout the proxy waits on.
    let started = Instant::now();
    let (status, digest, _, _) = get_tag(&s.proxy, "latest").await;
    let waited = started.elapsed();
    assert_eq!((status, digest), (200, digest_of(1)));
    assert!(
        waited <= RESPONSE_TIMEOUT + Duration::from_secs(1),
        "answered after {waited:?} of (paused) time"
    );
    // The next request within the window does not wait again.
    let started = Instant::now();
    let (_, digest, _, _) = get_tag(&s.proxy, "latest").await;
    assert_eq!(digest, digest_of(1));
    assert_eq!(started.elapsed(), Duration::ZERO);
}

/// Revalidation never holds a client for long: a hung upstream costs the first request past
/// the TTL `revalidate_timeout`, not `response_timeout`, and the requests while the HEAD still
/// hangs in the background nothing; the stale answer says why. A tag never seen still waits
/// for the upstream (there is nothing to serve), bounded by `response_timeout`.
#[tokio::test(start_paused = true)]
async fn a_hung_upstream_costs_a_stale_tag_only_the_revalidate_timeout() {
    let s = setup(tags(&[("latest", 1)]), &[]).await;
    still(get_tag(&s.proxy, "latest")).await;
    s.take();
    s.set(Mode::Hang);
    tokio::time::advance(TTL).await;
    let started = Instant::now();
    let req = Request::get("/v2/app/manifests/latest")
        .header("accept", OCI_MANIFEST)
        .body(http_body_util::Empty::<Bytes>::new())
        .expect("request");
    let resp = s.proxy.clone().handle(req).await;
    let waited = started.elapsed();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        digest_of(1)
    );
    assert!(
        waited >= REVALIDATE_TIMEOUT && waited < REVALIDATE_TIMEOUT + Duration::from_millis(100),
        "answered after {waited:?} of (paused) time"
    );
    let warnings: Vec<&str> = resp
        .headers()
        .get_all("warning")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert!(
        warnings.iter().any(|w| w.contains("revalidate_timeout")),
        "{warnings:?}"
    );
    // While the HEAD hangs in the background, the next request does not wait at all.
    let started = Instant::now();
    let (status, digest, _, _) = get_tag(&s.proxy, "latest").await;
    assert_eq!((status, digest), (200, digest_of(1)));
    assert_eq!(started.elapsed(), Duration::ZERO);

    // A tag never seen: nothing to serve, so the request waits for the upstream.
    let started = Instant::now();
    let (status, _, _, _) = get_tag(&s.proxy, "never-seen").await;
    assert!(status >= 500, "{status}");
    assert!(
        started.elapsed() >= RESPONSE_TIMEOUT,
        "waited {:?}",
        started.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn a_tag_whose_manifest_was_evicted_is_fetched_again() {
    let s = setup(tags(&[("latest", 1)]), &[]).await;
    still(get_tag(&s.proxy, "latest")).await;
    s.take();
    let d = Digest::sha256_of(&manifest(1));
    assert!(s.proxy.store().remove(&d).is_some());
    let (status, digest, _, body) = still(get_tag(&s.proxy, "latest")).await;
    assert_eq!((status, digest), (200, digest_of(1)));
    assert_eq!(body, manifest(1));
    assert_eq!(s.take(), reqs(&[("GET", "/v2/app/manifests/latest")]));
}

/// Within a 429's Retry-After, content wharf does not have is not asked for either: the client
/// gets 429 with the time left, and the upstream sees nothing until the window closes.
#[tokio::test(start_paused = true)]
async fn a_rate_limited_upstream_is_not_asked_for_uncached_content_before_retry_after() {
    let s = setup(Mode::Fail(429, Some(7)), &[]).await;
    let (status, _, retry, _) = still(get_tag(&s.proxy, "latest")).await;
    assert_eq!((status, retry.as_deref()), (429, Some("7")));
    assert_eq!(s.take(), reqs(&[("GET", "/v2/app/manifests/latest")]));

    tokio::time::advance(Duration::from_secs(3)).await;
    for tag in ["latest", "other"] {
        let (status, _, retry, body) = still(get_tag(&s.proxy, tag)).await;
        assert_eq!(status, 429, "{tag}");
        assert_eq!(retry.as_deref(), Some("4"), "{tag}: the time left");
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["errors"][0]["code"], "TOOMANYREQUESTS");
        let message = v["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(message.contains("fake"), "names the upstream: {message}");
    }
    assert_eq!(s.take(), vec![], "asked within Retry-After");

    tokio::time::advance(Duration::from_secs(5)).await;
    s.set(tags(&[("latest", 1)]));
    let (status, digest, _, _) = still(get_tag(&s.proxy, "latest")).await;
    assert_eq!((status, digest), (200, digest_of(1)));
    assert_eq!(s.take(), reqs(&[("GET", "/v2/app/manifests/latest")]));
}

/// A failing upstream (503) opens the same window for what is not cached: 503 with the time
/// left, the upstream left alone.
#[tokio::test(start_paused = true)]
async fn a_failing_upstream_is_not_asked_for_uncached_content_within_its_window() {
    let s = setup(Mode::Fail(503, None), &[]).await;
    let (status, _, _, _) = still(get_tag(&s.proxy, "latest")).await;
    assert_eq!(status, 503);
    assert_eq!(s.take().len(), 1);
    let (status, _, retry, body) = still(get_tag(&s.proxy, "other")).await;
    assert_eq!(status, 503);
    assert_eq!(retry, Some(FAILURE_BACKOFF.as_secs().to_string()));
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["errors"][0]["code"], "UNAVAILABLE");
    assert_eq!(s.take(), vec![], "asked within the back-off window");
}
