//! The suite's store-at-scale rows (issue 18): wharf on a store of a million small blobs.
//!
//! The store is made through the store's own API (`Store::begin_upload` / `finish_upload`, as
//! a push writes: spool, hash, fsync, rename, a metadata row), `SCALE_BLOBS` blobs (default
//! 1,000,000) of 1 KiB each (the index weighs content in KiB), a store of a tenth of them and
//! one of all, under `$CARGO_TARGET_TMPDIR/scale-store-<n>` and kept there for the next run (making a million takes
//! a while; a run adds only what is missing). At each step a fresh wharf process opens it:
//!
//! - start-up: from spawning the process until `/v2/` answers (the store is open then and the
//!   listeners bound; `/readyz` is then checked to say 200), median of three starts with the
//!   page cache warm, and one more after `drop_caches` when run as root;
//! - resident memory (`VmRSS`) once ready, and after the measurements;
//! - then, 3 s after ready (the metadata writer reads the verification times for the scrubber
//!   for about a second after a million-blob store opens; wharf runs with its defaults, the
//!   scrubber on), the manifest of `os/oraclelinux:7-slim` by digest (500 sequential GETs on
//!   one keep-alive connection, p50 and p99) and the 1 MiB blob with `wrk -t2 -c4 -d5s
//!   --latency` (p99; four connections: the latency of a request, not of a queue of sixteen
//!   on two cores).
//!
//! The first row, the small store, is the same on an empty store (the test images only).
//! Last, eviction while serving: wharf on the whole store with `max_size` just above what it
//! holds; `wrk` on the cached 1 MiB blob for 12 s and, 2 s in, a GET of the cold 100 MiB blob,
//! which makes the store evict a tenth of its blobs (about 100 MiB of 1 KiB files) while `wrk` runs: its p99 against the same `wrk` just before.
//! `SUITE_ONLY=scale` runs only these rows.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{StreamExt, stream};
use tokio::time::Instant;
use wharf_cache::{Store, StoreOptions};
use wharf_e2e::bench::{self, MANIFEST_ACCEPT, env_num, ms, quantile};
use wharf_e2e::images::Descriptor;
use wharf_e2e::memory::rss_kib;
use wharf_e2e::{Http, Upstream, UpstreamCfg, Wharf};
use wharf_oci::Digest;

use super::{SMALL_REPO, WRK_SECS, f, med};

/// Bytes per made blob.
const BLOB_BYTES: usize = 1024;
/// Uploads in flight while making the store: enough for the file system to commit many
/// fsyncs at once.
const MAKING: usize = 64;
/// Connections of the latency runs.
const LATENCY_CONNS: usize = 4;
/// From ready to the latency runs.
const SETTLE: Duration = Duration::from_secs(3);
/// Starts timed per step (page cache warm).
const STARTS: usize = 3;

/// One step: wharf on a store of `blobs` made blobs.
pub(crate) struct Step {
    blobs: usize,
    entries: u64,
    /// What the store holds once the measurements are done, bytes.
    held: u64,
    start_warm_s: Vec<f64>,
    start_cold_s: Option<f64>,
    rss_ready_mib: f64,
    rss_after_mib: f64,
    manifest_p50_ms: f64,
    manifest_p99_ms: f64,
    blob_p99_ms: f64,
}

/// Eviction of a tenth of the store while `wrk` serves the cached 1 MiB blob.
pub(crate) struct Evict {
    evicted: u64,
    /// Seconds from the cold GET until the evicted count stopped growing.
    evict_s: f64,
    p99_before_ms: f64,
    p99_during_ms: f64,
    rps_before: f64,
    rps_during: f64,
}

pub(crate) struct Scale {
    made_s: Vec<(usize, f64)>,
    steps: Vec<Step>,
    evict: Evict,
}

/// The content of made blob `i`: its number, padded.
fn made_blob(i: usize) -> Bytes {
    let mut b = format!("wharf scale blob {i}\n").into_bytes();
    b.resize(BLOB_BYTES, b'.');
    Bytes::from(b)
}

/// The store of `n` made blobs, kept for the next run.
fn store_dir(n: usize) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("scale-store-{n}"))
}

/// Makes the store hold made blobs `0..n` (adds what is missing) and not `absent`; seconds.
fn make(rt: &tokio::runtime::Runtime, root: &Path, n: usize, absent: &Digest) -> f64 {
    rt.block_on(async {
        let options = StoreOptions {
            max_size: u64::MAX / 2,
            scrub_rate: 0,
            ..StoreOptions::default()
        };
        let store = Store::open_with(root, options)
            .await
            .expect("open the store");
        store.remove(absent);
        let t0 = Instant::now();
        let added = stream::iter(0..n)
            .map(|i| {
                let store = store.clone();
                async move {
                    let bytes = made_blob(i);
                    let d = Digest::sha256_of(&bytes);
                    if store.contains(&d) {
                        return 0;
                    }
                    let mut up = store.begin_upload().await.expect("begin upload");
                    up.append(stream::iter([Ok(bytes)]), None)
                        .await
                        .expect("append");
                    store.finish_upload(up, &d).await.expect("finish upload");
                    1
                }
            })
            .buffer_unordered(MAKING)
            .fold(0usize, |sum, one| async move {
                if (sum + one) % 100_000 == 0 && one == 1 {
                    eprintln!("[suite] scale: {} blobs added", sum + one);
                }
                sum + one
            })
            .await;
        store.flush().await.expect("flush the store");
        let secs = t0.elapsed().as_secs_f64();
        eprintln!("[suite] scale: {added} blobs added in {secs:.0} s");
        secs
    })
}

fn drop_caches() -> bool {
    bench::is_root()
        && std::process::Command::new("sync").status().is_ok()
        && std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

/// wharf on `root` with budget `max_size`: started and timed.
fn start(up: &Upstream, root: &Path, max_size: &str) -> (Wharf, f64) {
    let t0 = Instant::now();
    let w = Wharf::builder()
        .upstream(UpstreamCfg::oracle(up))
        .cache_dir(root)
        .max_size(max_size)
        .start();
    let secs = t0.elapsed().as_secs_f64();
    let ready = Http::new().get(&format!("{}/readyz", w.admin_url()), &[]);
    assert_eq!(ready.status, 200, "/readyz once /v2/ answered");
    (w, secs)
}

fn restart_timed(w: &mut Wharf) -> f64 {
    w.stop();
    let t0 = Instant::now();
    w.restart();
    t0.elapsed().as_secs_f64()
}

fn step(
    rt: &tokio::runtime::Runtime,
    up: &Upstream,
    root: &Path,
    blobs: usize,
    small: &Descriptor,
) -> Step {
    let (mut w, first) = start(up, root, "100GiB");
    let mut start_warm_s = vec![first];
    for _ in 1..STARTS {
        start_warm_s.push(restart_timed(&mut w));
    }
    let start_cold_s = drop_caches().then(|| restart_timed(&mut w));
    let pid = w.pid().expect("wharf runs");
    let rss_ready_mib = rss_kib(pid) as f64 / 1024.0;
    // Once open, the metadata writer reads the verification times (for the scrubber) for about
    // a second on the million; latencies are measured after that.
    std::thread::sleep(SETTLE);
    let entries = w.metric("wharf_cache_entries", &[]);
    // Warm: the manifest by tag (it names the digest) and the 1 MiB blob.
    let images = wharf_e2e::images();
    let digest = images.oraclelinux.manifest.digest.clone();
    let url = format!("{}/v2/{SMALL_REPO}/manifests/{digest}", w.url());
    let blob_url = format!("{}/v2/{SMALL_REPO}/blobs/{}", w.url(), small.digest);
    for u in [&url, &blob_url] {
        let r = Http::new().get(u, &[("Accept", MANIFEST_ACCEPT)]);
        assert_eq!(r.status, 200, "warm-up {u}");
    }
    let (lat, errors) = super::manifest_gets(rt, &url);
    assert_eq!(errors, 0, "manifest GETs failed");
    let wrk = bench::wrk(&blob_url, 2, LATENCY_CONNS, WRK_SECS);
    assert!(wrk.non_2xx == 0 && wrk.p99_ms.is_finite(), "{}", wrk.output);
    Step {
        blobs,
        entries,
        start_warm_s,
        start_cold_s,
        rss_ready_mib,
        rss_after_mib: rss_kib(pid) as f64 / 1024.0,
        held: w.metric("wharf_cache_size_bytes", &[]),
        manifest_p50_ms: ms(quantile(&lat, 0.5)),
        manifest_p99_ms: ms(quantile(&lat, 0.99)),
        blob_p99_ms: wrk.p99_ms,
    }
}

/// Wharf on the store at `root`, which holds `held` bytes, with a budget 4 MiB above that.
fn evict(up: &Upstream, root: &Path, held: u64, small: &Descriptor, big: &Descriptor) -> Evict {
    let (w, _) = start(up, root, &format!("{}B", held + (4 << 20)));
    let blob_url = format!("{}/v2/{SMALL_REPO}/blobs/{}", w.url(), small.digest);
    let before = bench::wrk(&blob_url, 2, LATENCY_CONNS, WRK_SECS);
    assert!(before.non_2xx == 0, "{}", before.output);
    let evicted0 = w.metric("wharf_cache_evictions_total", &[]);
    let during = std::thread::scope(|s| {
        let load = s.spawn(|| bench::wrk(&blob_url, 2, LATENCY_CONNS, 12));
        std::thread::sleep(Duration::from_secs(2));
        let t0 = Instant::now();
        let url = format!("{}/v2/{}/blobs/{}", w.url(), super::BIG_REPO, big.digest);
        let r = Http::new().get(&url, &[]);
        assert_eq!(r.status, 200, "the cold 100 MiB blob");
        // Until the count of evictions holds still for half a second (at most 10 s).
        let mut last = (w.metric("wharf_cache_evictions_total", &[]), Instant::now());
        while t0.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(100));
            let now = w.metric("wharf_cache_evictions_total", &[]);
            if now != last.0 {
                last = (now, Instant::now());
            } else if last.1.elapsed() > Duration::from_millis(500) {
                break;
            }
        }
        let evict_s = last.1.duration_since(t0).as_secs_f64();
        (load.join().expect("wrk"), last.0 - evicted0, evict_s)
    });
    let (wrk, evicted, evict_s) = during;
    assert!(wrk.non_2xx == 0, "{}", wrk.output);
    Evict {
        evicted,
        evict_s,
        p99_before_ms: before.p99_ms,
        p99_during_ms: wrk.p99_ms,
        rps_before: before.requests_per_sec,
        rps_during: wrk.requests_per_sec,
    }
}

pub(crate) fn measure(
    rt: &tokio::runtime::Runtime,
    up: &Upstream,
    big: &Descriptor,
    small: &Descriptor,
) -> Scale {
    let n = env_num("SCALE_BLOBS", 1_000_000).clamp(1000, 5_000_000);
    let big_digest: Digest = big.digest.parse().expect("digest");
    let empty = tempfile::tempdir().expect("tempdir");
    let mut steps = vec![step(rt, up, empty.path(), 0, small)];
    let mut made_s = Vec::new();
    for blobs in [n / 10, n] {
        let root = store_dir(blobs);
        made_s.push((blobs, make(rt, &root, blobs, &big_digest)));
        eprintln!("[suite] scale: {blobs} blobs");
        steps.push(step(rt, up, &root, blobs, small));
    }
    let held = steps.last().map_or(0, |st| st.held);
    let evict = evict(up, &store_dir(n), held, small, big);
    Scale {
        made_s,
        steps,
        evict,
    }
}

pub(crate) fn print(s: &Scale) {
    println!(
        "\n| store at scale ({BLOB_BYTES}-byte blobs) | start-up to ready, s (warm; cold cache) | VmRSS ready / after, MiB | manifest by digest p50 / p99, ms | 1 MiB blob `wrk -c4` p99, ms |"
    );
    println!("|---|---|---|---|---|");
    for st in &s.steps {
        println!(
            "| {} blobs ({} entries) | {}; {} | {} / {} | {} / {} | {} |",
            st.blobs,
            st.entries,
            f(med(&st.start_warm_s), 2),
            st.start_cold_s.map_or("—".into(), |c| f(c, 2)),
            f(st.rss_ready_mib, 1),
            f(st.rss_after_mib, 1),
            f(st.manifest_p50_ms, 3),
            f(st.manifest_p99_ms, 3),
            f(st.blob_p99_ms, 2),
        );
    }
    if let (Some(small), Some(big)) = (s.steps.first(), s.steps.last()) {
        println!(
            "\nManifest p99, largest store / small store: {:.2}x. ",
            big.manifest_p99_ms / small.manifest_p99_ms
        );
    }
    let e = &s.evict;
    println!(
        "Eviction while serving: {} entries evicted in {:.1} s; 1 MiB blob p99 {} ms before, {} ms during ({} / {} req/s).",
        e.evicted,
        e.evict_s,
        f(e.p99_before_ms, 2),
        f(e.p99_during_ms, 2),
        f(e.rps_before, 0),
        f(e.rps_during, 0),
    );
    for (blobs, secs) in &s.made_s {
        println!("Making the store up to {blobs} blobs took {secs:.0} s (what was missing).");
    }
}
