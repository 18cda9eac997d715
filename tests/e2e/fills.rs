//! Coalesced streaming fills, end to end: one upstream GET per digest however many clients ask,
//! every client streaming while the blob arrives, and what happens when the upstream or a client
//! misbehaves. The first test runs against the real upstream registry; the others against
//! a fake registry (`wharf_testkit::FakeRegistry`), which holds, breaks or corrupts a body on cue, so every "before" and
//! "after" is decided by the test, not raced.

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use wharf_e2e::herd::{self, Ask, Herd, Outcome};
use wharf_e2e::images::{Descriptor, MT_OCI_LAYER_GZIP};
use wharf_e2e::layers::random_content as content;
use wharf_e2e::push::Pusher;
use wharf_e2e::registry::Storage;
use wharf_e2e::util::{sha256_digest, wait_for};
use wharf_e2e::{Http, REGISTRY_NAME, Upstream, UpstreamCfg, Wharf};
use wharf_testkit::{FakeRegistry, Fault, Seen};

const MIB: usize = 1 << 20;
/// The faulty upstream's blob: big enough that a hold and a break land well inside it, and
/// that every client's first bytes leave wharf before the hold is released.
const SIZE: usize = 4 * MIB;
const HOLD: u64 = MIB as u64;
const FIRST_BYTES_WITHIN: Duration = Duration::from_secs(60);

/// The repository of the faulty upstream's one image.
const REPO: &str = "faulty/app";

/// A fake upstream serving one image, `REPO:latest`, whose layer is `blob` (honouring
/// `Range: bytes=N-` on it if `ranges`), and the layer's digest. Its blob `GET`s hold, break
/// or corrupt on cue.
fn faulty_upstream(blob: Bytes, ranges: bool) -> (FakeRegistry, String) {
    let digest = sha256_digest(&blob);
    let fake = FakeRegistry::builder()
        .image(REPO, "latest", &[blob])
        .ranges(ranges)
        .start();
    (fake, digest)
}

fn wharf_for(faulty: &FakeRegistry) -> Wharf {
    Wharf::builder()
        .upstream(
            UpstreamCfg::new("oracle", &faulty.url())
                .prefixes(&[REGISTRY_NAME, "oracle"])
                .default(true),
        )
        .start()
}

fn blob_url(wharf: &Wharf, repo: &str, digest: &str) -> String {
    format!("{}/v2/{repo}/blobs/{digest}", wharf.url())
}

/// Where wharf keeps a verified blob: `blobs/sha256/<2 hex>/<hex>` under its store.
fn stored(wharf: &Wharf, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    wharf
        .cache_dir()
        .join("blobs")
        .join("sha256")
        .join(&hex[..2])
        .join(hex)
}

fn spool_files(wharf: &Wharf) -> Vec<PathBuf> {
    match std::fs::read_dir(wharf.cache_dir().join("spool")) {
        Ok(dir) => dir.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(_) => Vec::new(),
    }
}

fn assert_nothing_stored(wharf: &Wharf, digest: &str) {
    assert!(
        !stored(wharf, digest).exists(),
        "an unverified blob was stored"
    );
    assert_eq!(
        spool_files(wharf),
        Vec::<PathBuf>::new(),
        "spool left behind"
    );
}

/// Waits (bounded) until wharf has stored the blob.
fn wait_stored(wharf: &Wharf, digest: &str) {
    let path = stored(wharf, digest);
    let found = wait_for(Duration::from_secs(30), Duration::from_millis(20), || {
        path.exists().then_some(())
    });
    assert!(found.is_some(), "{digest} was not stored within 30 s");
}

fn assert_all_right(outcomes: &[Outcome], digest: &str, size: usize) {
    for (i, o) in outcomes.iter().enumerate() {
        assert_eq!(o.status, 200, "client {i}: {}", o.describe());
        assert!(o.complete(), "client {i}: {}", o.describe());
        assert_eq!(o.received, size as u64, "client {i}");
        assert_eq!(o.digest, digest, "client {i} got other bytes");
    }
}

fn assert_all_cut_short(outcomes: &[Outcome], size: usize) {
    for (i, o) in outcomes.iter().enumerate() {
        assert_eq!(o.status, 200, "client {i}: {}", o.describe());
        assert_eq!(o.content_length(), Some(size as u64), "client {i}");
        assert!(
            o.cut_short(),
            "client {i} was not cut short: {}",
            o.describe()
        );
    }
}

/// wharf asks for the blob itself, never an encoded form of it.
fn assert_identity(requests: &[Seen]) {
    for r in requests {
        assert!(
            matches!(r.header("accept-encoding"), None | Some("identity")),
            "{} {} asked for Accept-Encoding {:?}",
            r.method,
            r.path,
            r.header("accept-encoding")
        );
    }
}

#[test]
fn cold_blob_herd_of_32_makes_one_upstream_get_and_everyone_gets_the_bytes() {
    const CLIENTS: usize = 32;
    const REPO: &str = "herd/layer";
    let up = Upstream::builder().storage(Storage::Empty).start();
    let data = content("fills-herd-64mib", 64 * MIB);
    let desc = Descriptor {
        media_type: MT_OCI_LAYER_GZIP.into(),
        digest: sha256_digest(&data),
        size: data.len() as u64,
    };
    Pusher {
        base: up.url(),
        http: &Http::new(),
    }
    .blob(REPO, &desc, data);
    let wharf = Wharf::for_upstream(&up);
    let mark = up.mark();

    let outcomes = herd::run_blocking(
        &blob_url(&wharf, REPO, &desc.digest),
        CLIENTS,
        Ask::default(),
    );

    assert_all_right(&outcomes, &desc.digest, 64 * MIB);
    let for_blob: Vec<_> = up
        .since(mark)
        .into_iter()
        .filter(|r| r.path_only().ends_with(&desc.digest))
        .collect();
    let gets = for_blob.iter().filter(|r| r.is_blob_get()).count();
    assert_eq!(gets, 1, "upstream requests for the blob: {for_blob:?}");
    assert_eq!(for_blob.len(), 1, "more than the GET: {for_blob:?}");
}

#[test]
fn held_body_streams_to_every_client_before_the_upstream_finishes() {
    const CLIENTS: usize = 32;
    let (faulty, digest) = faulty_upstream(content("fills-hold", SIZE), true);
    faulty.push_faults([Fault::new().hold_at(HOLD)]);
    let wharf = wharf_for(&faulty);
    let url = blob_url(&wharf, REPO, &digest);

    let herd = Herd::spawn(&url, CLIENTS, Ask::default());
    // Every client has bytes while the upstream has sent only the first MiB of four.
    herd.wait_first_bytes(CLIENTS, FIRST_BYTES_WITHIN);
    assert!(!stored(&wharf, &digest).exists(), "stored before the end");
    faulty.release();
    let outcomes = herd.join();

    assert_all_right(&outcomes, &digest, SIZE);
    for (i, o) in outcomes.iter().enumerate() {
        assert_eq!(
            o.header("docker-content-digest").as_deref(),
            Some(digest.as_str()),
            "client {i}"
        );
    }
    assert_eq!(
        faulty.blob_requests("GET", &digest).len(),
        1,
        "{:?}",
        faulty.requests()
    );
    assert_identity(&faulty.requests());
    wait_stored(&wharf, &digest);
}

#[test]
fn broken_body_is_resumed_with_a_range_and_the_stored_blob_is_right() {
    const CLIENTS: usize = 8;
    let data = content("fills-resume", SIZE);
    let (faulty, digest) = faulty_upstream(data.clone(), true);
    let broken_at = 3 * MIB as u64;
    faulty.push_faults([Fault::new().hold_at(HOLD).break_at(broken_at)]);
    let wharf = wharf_for(&faulty);
    let url = blob_url(&wharf, REPO, &digest);

    let herd = Herd::spawn(&url, CLIENTS, Ask::default());
    herd.wait_first_bytes(CLIENTS, FIRST_BYTES_WITHIN);
    faulty.release();
    let outcomes = herd.join();

    // Every client streamed across the break and the resume.
    assert_all_right(&outcomes, &digest, SIZE);
    let gets = faulty.blob_requests("GET", &digest);
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert_eq!(gets[0].header("range"), None);
    let from: u64 = gets[1]
        .header("range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the second GET is no resume: {:?}", gets[1]));
    assert!(
        from > 0 && from <= broken_at,
        "resumed from {from}, broken at {broken_at}"
    );
    assert_identity(&faulty.requests());

    wait_stored(&wharf, &digest);
    let on_disk = std::fs::read(stored(&wharf, &digest)).expect("read stored blob");
    assert!(
        on_disk == data,
        "the stored blob differs from the upstream's"
    );
    let before = faulty.requests().len();
    let again = herd::run_blocking(&url, 1, Ask::default());
    assert_all_right(&again, &digest, SIZE);
    assert_eq!(
        faulty.requests().len(),
        before,
        "the stored blob was fetched again"
    );
}

#[test]
fn broken_body_without_ranges_fails_cleanly_and_the_next_request_fetches_afresh() {
    const CLIENTS: usize = 8;
    let (faulty, digest) = faulty_upstream(content("fills-no-ranges", SIZE), false);
    faulty.push_faults([Fault::new().hold_at(HOLD).break_at(3 * MIB as u64)]);
    let wharf = wharf_for(&faulty);
    let url = blob_url(&wharf, REPO, &digest);

    let herd = Herd::spawn(&url, CLIENTS, Ask::default());
    herd.wait_first_bytes(CLIENTS, FIRST_BYTES_WITHIN);
    faulty.release();
    let outcomes = herd.join();

    // A broken download each, never a complete one: the fill could not mend the break.
    assert_all_cut_short(&outcomes, SIZE);
    assert_nothing_stored(&wharf, &digest);
    let gets = faulty.blob_requests("GET", &digest).len();
    assert_eq!(
        gets,
        2,
        "the GET and the refused resume: {:?}",
        faulty.requests()
    );

    let again = herd::run_blocking(&url, 2, Ask::default());
    assert_all_right(&again, &digest, SIZE);
    let gets = faulty.blob_requests("GET", &digest);
    assert_eq!(gets.len(), 3, "{gets:?}");
    assert_eq!(
        gets[2].header("range"),
        None,
        "the new fill starts from byte 0"
    );
    assert_identity(&faulty.requests());
}

#[test]
fn wrong_digest_is_never_served_whole_nor_stored() {
    const CLIENTS: usize = 8;
    let (faulty, digest) = faulty_upstream(content("fills-corrupt", SIZE), true);
    faulty.push_faults([Fault::new().hold_at(HOLD).corrupt()]);
    let wharf = wharf_for(&faulty);
    let url = blob_url(&wharf, REPO, &digest);

    let herd = Herd::spawn(&url, CLIENTS, Ask::default());
    herd.wait_first_bytes(CLIENTS, FIRST_BYTES_WITHIN);
    // A range wholly inside the bytes already sent, all of them right: its last chunk still
    // waits for the digest, so it too is cut short.
    let range = Herd::spawn(&url, 1, Ask::default().header("Range", "bytes=1000-699999"));
    range.wait_first_bytes(1, FIRST_BYTES_WITHIN);
    faulty.release();
    let outcomes = herd.join();
    let range = range.join();

    assert_all_cut_short(&outcomes, SIZE);
    assert_eq!(range[0].status, 206, "{}", range[0].describe());
    assert!(
        range[0].cut_short(),
        "a range of a blob that failed verification completed: {}",
        range[0].describe()
    );
    assert_nothing_stored(&wharf, &digest);
    assert_eq!(faulty.blob_requests("GET", &digest).len(), 1);

    // The next request is a new fill, and this time the upstream sends the right bytes.
    let again = herd::run_blocking(&url, 1, Ask::default());
    assert_all_right(&again, &digest, SIZE);
    assert_eq!(faulty.blob_requests("GET", &digest).len(), 2);
}

#[test]
fn fill_completes_after_its_only_client_hung_up() {
    let (faulty, digest) = faulty_upstream(content("fills-hang-up", SIZE), true);
    faulty.push_faults([Fault::new().hold_at(HOLD)]);
    let wharf = wharf_for(&faulty);
    let url = blob_url(&wharf, REPO, &digest);

    let herd = Herd::spawn(&url, 1, Ask::default().hang_up_after_first_bytes());
    herd.wait_first_bytes(1, FIRST_BYTES_WITHIN);
    let gone = herd.join();
    assert!(gone[0].received < SIZE as u64, "{}", gone[0].describe());
    faulty.release();

    wait_stored(&wharf, &digest);
    let before = faulty.requests().len();
    let again = herd::run_blocking(&url, 2, Ask::default());
    assert_all_right(&again, &digest, SIZE);
    let head = Http::new().head(&url, &[]);
    assert_eq!(head.status, 200, "{}", head.describe());
    assert_eq!(head.header("Content-Length"), Some(SIZE.to_string()));
    assert_eq!(
        faulty.requests().len(),
        before,
        "the stored blob went upstream: {:?}",
        &faulty.requests()[before..]
    );
    assert_eq!(faulty.blob_requests("GET", &digest).len(), 1);
}

#[test]
fn head_of_an_uncached_blob_asks_upstream_with_head_and_of_a_cached_one_stays_local() {
    let (faulty, digest) = faulty_upstream(content("fills-head", SIZE), true);
    let wharf = wharf_for(&faulty);
    let url = blob_url(&wharf, REPO, &digest);
    let http = Http::new();

    let head = http.head(&url, &[]);
    assert_eq!(head.status, 200, "{}", head.describe());
    assert_eq!(head.header("Content-Length"), Some(SIZE.to_string()));
    assert_eq!(
        head.header("Docker-Content-Digest").as_deref(),
        Some(digest.as_str())
    );
    assert!(head.body.is_empty());
    assert_eq!(faulty.blob_requests("HEAD", &digest).len(), 1);
    assert_eq!(
        faulty.blob_requests("GET", &digest).len(),
        0,
        "HEAD became a GET"
    );
    assert!(!stored(&wharf, &digest).exists());

    let get = herd::run_blocking(&url, 1, Ask::default());
    assert_all_right(&get, &digest, SIZE);
    wait_stored(&wharf, &digest);
    let before = faulty.requests().len();
    let head = http.head(&url, &[]);
    assert_eq!(head.status, 200, "{}", head.describe());
    assert_eq!(head.header("Content-Length"), Some(SIZE.to_string()));
    assert_eq!(
        head.header("Docker-Content-Digest").as_deref(),
        Some(digest.as_str())
    );
    let after = faulty.requests();
    assert_eq!(
        after.len(),
        before,
        "HEAD of a cached blob went upstream: {:?}",
        after
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect::<Vec<_>>()
    );
    assert_identity(&faulty.requests());
}

#[test]
fn ranges_on_a_cached_blob() {
    let data = content("fills-ranges", SIZE);
    let (faulty, digest) = faulty_upstream(data.clone(), true);
    let wharf = wharf_for(&faulty);
    let url = blob_url(&wharf, REPO, &digest);
    let http = Http::new();
    let fill = http.get(&url, &[]);
    assert_eq!(fill.status, 200, "{}", fill.describe());
    wait_stored(&wharf, &digest);
    let before = faulty.requests().len();
    let size = SIZE as u64;

    let cases = [
        ("bytes=10-19", 10, 20),
        ("bytes=-100", size - 100, size),
        ("bytes=4000000-", 4_000_000, size),
        ("bytes=0-99999999", 0, size),
    ];
    for (range, start, end) in cases {
        let r = http.get(&url, &[("Range", range)]);
        assert_eq!(r.status, 206, "{range}: {}", r.describe());
        let content_ranges = r.headers.get_all("content-range").iter().count();
        assert_eq!(content_ranges, 1, "{range}");
        assert_eq!(
            r.header("Content-Range"),
            Some(format!("bytes {start}-{}/{size}", end - 1)),
            "{range}"
        );
        assert_eq!(r.header("Content-Length"), Some((end - start).to_string()));
        assert!(
            r.body == data[start as usize..end as usize],
            "{range}: other bytes"
        );
    }

    for range in [format!("bytes={size}-"), "bytes=-0".to_owned()] {
        let r = http.get(&url, &[("Range", &range)]);
        assert_eq!(r.status, 416, "{range}: {}", r.describe());
        assert_eq!(
            r.header("Content-Range"),
            Some(format!("bytes */{size}")),
            "{range}"
        );
    }

    let multi = http.get(&url, &[("Range", "bytes=0-1,5-6")]);
    assert_eq!(multi.status, 200, "{}", multi.describe());
    assert!(multi.body == data, "several ranges: not the whole blob");
    assert_eq!(
        faulty.requests().len(),
        before,
        "a cached blob went upstream"
    );
}

#[test]
fn range_of_a_blob_being_filled_is_served_from_the_spool() {
    let data = content("fills-range-while-filling", SIZE);
    let (faulty, digest) = faulty_upstream(data.clone(), true);
    faulty.push_faults([Fault::new().hold_at(HOLD)]);
    let wharf = wharf_for(&faulty);
    let url = blob_url(&wharf, REPO, &digest);

    // Inside the part the upstream has sent: its bytes flow before the fill ends.
    let (a_start, a_end) = (1000_usize, 700_000_usize);
    let a = Herd::spawn(
        &url,
        1,
        Ask::default().header("Range", &format!("bytes={a_start}-{}", a_end - 1)),
    );
    a.wait_first_bytes(1, FIRST_BYTES_WITHIN);
    assert!(!stored(&wharf, &digest).exists());
    // Past it: served once the upstream has sent those bytes.
    let (b_start, b_end) = (2 * MIB, 3 * MIB);
    let b = Herd::spawn(
        &url,
        1,
        Ask::default().header("Range", &format!("bytes={b_start}-{}", b_end - 1)),
    );
    faulty.release();

    for (herd, start, end) in [(a, a_start, a_end), (b, b_start, b_end)] {
        let o = &herd.join()[0];
        assert_eq!(o.status, 206, "{}", o.describe());
        assert!(o.complete(), "{}", o.describe());
        assert_eq!(
            o.header("Content-Range"),
            Some(format!("bytes {start}-{}/{SIZE}", end - 1))
        );
        assert_eq!(o.digest, sha256_digest(&data[start..end]), "other bytes");
    }
    let gets = faulty.blob_requests("GET", &digest);
    assert_eq!(gets.len(), 1, "{gets:?}");
    assert_eq!(
        gets[0].header("range"),
        None,
        "the fill fetches the whole blob"
    );
}

#[test]
fn sigkill_mid_fill_then_restart_sweeps_the_spool_and_fetches_afresh() {
    let (faulty, digest) = faulty_upstream(content("fills-sigkill", SIZE), true);
    faulty.push_faults([Fault::new().hold_at(HOLD)]);
    let mut wharf = wharf_for(&faulty);
    let url = blob_url(&wharf, REPO, &digest);

    let herd = Herd::spawn(&url, 1, Ask::default());
    herd.wait_first_bytes(1, FIRST_BYTES_WITHIN);
    let spool = spool_files(&wharf);
    assert_eq!(spool.len(), 1, "one fill in the spool: {spool:?}");
    wharf.kill();
    let cut = herd.join();
    assert_all_cut_short(&cut, SIZE);

    wharf.restart();
    assert_nothing_stored(&wharf, &digest);
    faulty.release();
    let again = herd::run_blocking(&url, 2, Ask::default());
    assert_all_right(&again, &digest, SIZE);
    let gets = faulty.blob_requests("GET", &digest);
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert_eq!(gets[1].header("range"), None, "fetched afresh, not resumed");
    wait_stored(&wharf, &digest);
}
