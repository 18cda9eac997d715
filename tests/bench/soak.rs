//! The soak test (issue 13): minutes of mixed clients against wharf while its upstream resets,
//! stalls, lies and rate-limits and its disk fills and frees, with invariants checked after
//! every round.
//!
//! ```sh
//! cargo build --release --bin wharf && cargo bench -p wharf-e2e --bench soak
//! # against the debug binary, shorter:
//! SOAK_SECONDS=40 WHARF_BIN=target/debug/wharf cargo test --workspace --bench soak
//! ```
//!
//! The upstream is the test kit's fake registry (the faults are the point): hot content (a few
//! blobs and images fetched before the rounds start, so stored) and cold blobs (more than the
//! store's budget holds, so they are fetched, evicted and fetched again). wharf's `cache.dir` is
//! a small tmpfs the test mounts (it needs root, as the tests run; elsewhere it says so and
//! stops).
//!
//! Each of `SOAK_ROUNDS` rounds (default: one per 40 s) of `SOAK_SECONDS` (default 120) in all runs
//! `SOAK_CLIENTS` clients (default 8), each asking one thing after another until the round ends:
//! blob GETs with and without `Range`, blob HEADs, manifest GETs by tag and by digest, manifest
//! HEADs, hot and cold. Meanwhile, in each round: at 12 % a 1.5 s window of `429` with
//! `Retry-After: 1`; from 25 % to 50 % the disk is full to the last byte (topped up while full),
//! with the upstream behaving; from 52 % to 75 % the upstream's blob GETs get, one at a time and in
//! turn, a body broken mid-way, a reset right after the head, a corrupted body (right length, wrong
//! digest) and a stall (a body that stops and never goes on: wharf's 2 s `fill_inactivity_timeout`
//! ends it); at 78 %, every other round, a 1 s window of `503`. An upstream failure opens wharf's
//! 10 s back-off window (new content is refused with 503 while it lasts), hence rounds of 40 s, so
//! that the disk-full phase sees fills.
//!
//! Checked, after each round and at the end (a violation fails the run, after the summary):
//! - every answer that ended cleanly with 200 or 206 carried exactly the content's bytes (or
//!   the range's), and a HEAD its length and digest: wrong bytes are only ever cut short;
//! - no 5xx for content that was in the store before and after the request (its file under
//!   `blobs/`; a manifest by tag also needs a tag answered before);
//! - once no fill is in flight, `/admin/cache/stats` `size_bytes` equals the files under
//!   `blobs/` (downloads in flight and files held open are counted in it, so it is read quiet);
//! - wharf's open file descriptors after the last round are at most [`FD_SLACK`] more than
//!   after the first (idle upstream connections come and go). RSS is reported with its growth
//!   against [`RSS_BOUND_MIB`] but not failed on: allocator noise on a shared machine.
//!
//! `SOAK_KEEP_LOG=FILE` keeps wharf's log.
//!
//! Every loop is bounded in count or time; everything listens on 127.0.0.1, kernel-chosen ports.

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wharf_testkit::disk::{Tmpfs, is_root};

use bytes::Bytes;
use tokio::time::Instant;
use wharf_e2e::bench::env_num;
use wharf_e2e::herd::{self, Ask, Outcome};
use wharf_e2e::layers::random_bytes;
use wharf_e2e::util::sha256_digest;
use wharf_e2e::wharf::wharf_bin;
use wharf_e2e::{Http, UpstreamCfg, Wharf};
use wharf_testkit::{FakeRegistry, Fault, Reply, media};

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;
const HOT_REPO: &str = "soak/hot";
const COLD_REPO: &str = "soak/cold";
const HOT_TAGS: [&str; 3] = ["v1", "v2", "v3"];
/// Cold blobs: together about three budgets, so they keep being evicted and fetched again.
const COLD_BLOBS: usize = 48;
/// wharf's budget and the tmpfs under it: the disk has room for the budget plus spool files.
const BUDGET: &str = "40MiB";
const DISK: &str = "64m";
/// Allowed growth of wharf's open files from the first round's end to the last's.
const FD_SLACK: usize = 24;
/// RSS growth from the first round's end to the last's that is reported as suspicious.
const RSS_BOUND_MIB: u64 = 64;
/// The most one client request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

fn main() {
    if !is_root() {
        eprintln!("soak: not root, cannot mount a tmpfs for the store; skipped");
        return;
    }
    let seconds = env_num("SOAK_SECONDS", 120).max(10) as u64;
    // Rounds of 40 s: the upstream's failures open wharf's 10 s back-off window, which must be
    // over before the disk-full phase, or no fill would try to write.
    let rounds = env_num("SOAK_ROUNDS", (seconds / 40) as usize).clamp(1, 100) as u64;
    let clients = env_num("SOAK_CLIENTS", 8).clamp(1, 256);
    let round_len = Duration::from_secs(seconds) / rounds as u32;
    let bin = wharf_bin();

    let content = Content::new();
    let mut fake = FakeRegistry::builder().latency(Duration::from_millis(3));
    for (tag, layers) in HOT_TAGS.iter().zip(content.hot_images()) {
        fake = fake.image(HOT_REPO, tag, &layers);
    }
    for b in &content.cold {
        fake = fake.blob(COLD_REPO, b.clone());
    }
    let fake = fake.start();
    let content = Arc::new(content.with_manifests(&fake));

    let disk = Tmpfs::mount(DISK).expect("root: checked above");
    let store_dir = disk.path.join("store");
    let mut wharf = Wharf::builder()
        .upstream(
            UpstreamCfg::new("soak", &fake.url())
                .prefixes(&["soak.invalid"])
                .default(true)
                .extra("connect_timeout = \"2s\"\nresponse_timeout = \"3s\""),
        )
        .cache_dir(&store_dir)
        .max_size(BUDGET)
        .tag_ttl("2s")
        .cache_extra("fill_inactivity_timeout = \"2s\"")
        .start();
    let pid = wharf.pid().expect("wharf runs");
    println!(
        "soak: wharf {} (pid {pid}), {seconds} s in {rounds} rounds of {:?}, {clients} clients, \
         store on a {DISK} tmpfs, budget {BUDGET}",
        bin.display(),
        round_len
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let tally = Arc::new(Tally::default());
    let mut chaos = Chaos::default();
    let started = Instant::now();

    // Warm-up: the hot content is fetched once, so it is stored before the first round.
    let warm = Soak {
        url: wharf.url(),
        store: store_dir.clone(),
        content: content.clone(),
        tally: tally.clone(),
    };
    rt.block_on(warm.warm_up());
    let quiet = wait_quiet(&wharf, &store_dir);
    let start = Sample::of(pid);
    println!("after warm-up: {start}, {quiet}");
    let mut after_first = None;

    for round in 1..=rounds {
        let deadline = Instant::now() + round_len;
        let soak = Soak {
            url: wharf.url(),
            store: store_dir.clone(),
            content: content.clone(),
            tally: tally.clone(),
        };
        std::thread::scope(|s| {
            s.spawn(|| chaos.round(&fake, &disk.path, round, round_len));
            rt.block_on(soak.round(clients, round, deadline));
        });
        let quiet = wait_quiet(&wharf, &store_dir);
        if !quiet.equal {
            tally.violation(format!("round {round}: the store's accounting: {quiet}"));
        }
        let sample = Sample::of(pid);
        println!(
            "round {round}/{rounds}: {} requests so far, {} violations; {sample}, {quiet}",
            tally.requests.load(Ordering::Relaxed),
            tally.violations.load(Ordering::Relaxed)
        );
        after_first.get_or_insert(sample);
    }
    let end = Sample::of(pid);
    let after_first = after_first.unwrap_or(start);
    if end.fds > after_first.fds + FD_SLACK {
        tally.violation(format!(
            "open files grew from {} after round 1 to {} (slack {FD_SLACK})",
            after_first.fds, end.fds
        ));
    }
    let rss_growth = end.rss_kib.saturating_sub(after_first.rss_kib) / 1024;

    let metrics = Http::new()
        .get(&format!("{}/metrics", wharf.admin_url()), &[])
        .text();
    let log = wharf.settled_log();
    wharf.stop();
    if let Some(keep) = std::env::var_os("SOAK_KEEP_LOG") {
        std::fs::write(&keep, &log).expect("SOAK_KEEP_LOG");
    }
    let elapsed = started.elapsed();

    println!("\n==== soak summary ({elapsed:.0?}, {rounds} rounds, {clients} clients) ====");
    tally.print();
    chaos.print();
    println!(
        "upstream: {} requests ({} blob GETs)",
        chaos.upstream_requests, chaos.upstream_blob_gets
    );
    println!("wharf at start (after warm-up): {start}");
    println!("wharf after round 1:            {after_first}");
    println!("wharf at end:                   {end}");
    println!(
        "RSS growth after round 1: {rss_growth} MiB (reported above {RSS_BOUND_MIB} MiB){}",
        if rss_growth > RSS_BOUND_MIB {
            "  <-- above the bound"
        } else {
            ""
        }
    );
    for name in [
        "wharf_cache_scrubbed_bytes_total",
        "wharf_cache_scrub_faults_total",
        "wharf_cache_write_failures_total",
        "wharf_cache_evictions_total",
        "wharf_fill_started_total",
        "wharf_tag_stale_served_total",
    ] {
        println!("{name}: {}", metric_sum(&metrics, name));
    }
    let lines = |needle: &str| log.lines().filter(|l| l.contains(needle)).count();
    println!(
        "wharf log: {} lines; \"disk full\" {}, \"disk has space again\" {}, \"fill failed\" {}, \
         \"request failed\" {}",
        log.lines().count(),
        lines("disk full"),
        lines("disk has space again"),
        lines("fill failed"),
        lines("request failed")
    );
    let violations = tally.violations.load(Ordering::Relaxed);
    if violations > 0 {
        for v in tally.first_violations.lock().expect("violations").iter() {
            eprintln!("VIOLATION: {v}");
        }
        panic!("soak: {violations} violations (first ones above)");
    }
    println!("soak: no violations");
}

/// What the fake serves, and what each piece must hash to.
struct Content {
    /// The layers of each hot image.
    hot: Vec<Vec<Bytes>>,
    cold: Vec<Bytes>,
    /// (tag, manifest digest) of each hot image.
    manifests: Vec<(String, String)>,
}

impl Content {
    fn new() -> Content {
        let bytes = |label: String, len: usize| {
            let mut b = vec![0u8; len];
            random_bytes(&label, &mut b);
            Bytes::from(b)
        };
        let hot = (0..HOT_TAGS.len())
            .map(|i| {
                (0..2)
                    .map(|j| {
                        bytes(
                            format!("soak/hot/{i}/{j}"),
                            96 * KIB + (i * 2 + j) * 160 * KIB,
                        )
                    })
                    .collect()
            })
            .collect();
        let cold = (0..COLD_BLOBS)
            .map(|i| {
                bytes(
                    format!("soak/cold/{i}"),
                    256 * KIB + (i * 7919 % 23) * 80 * KIB,
                )
            })
            .collect();
        Content {
            hot,
            cold,
            manifests: Vec::new(),
        }
    }

    fn hot_images(&self) -> Vec<Vec<Bytes>> {
        self.hot.clone()
    }

    fn with_manifests(self, fake: &FakeRegistry) -> Content {
        let manifests = HOT_TAGS
            .iter()
            .map(|t| {
                let d = fake
                    .manifest_digest(HOT_REPO, t)
                    .expect("the fake serves it");
                ((*t).to_owned(), d)
            })
            .collect();
        Content { manifests, ..self }
    }

    fn hot_blobs(&self) -> impl Iterator<Item = &Bytes> {
        self.hot.iter().flatten()
    }
}

/// What one client does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    HotBlob,
    HotBlobRange,
    ColdBlob,
    ColdBlobRange,
    BlobHead,
    ManifestByTag,
    ManifestByDigest,
    ManifestHead,
}

impl Op {
    fn pick(r: u64) -> Op {
        match r % 100 {
            0..25 => Op::HotBlob,
            25..35 => Op::HotBlobRange,
            35..50 => Op::ColdBlob,
            50..58 => Op::ColdBlobRange,
            58..68 => Op::BlobHead,
            68..82 => Op::ManifestByTag,
            82..94 => Op::ManifestByDigest,
            _ => Op::ManifestHead,
        }
    }
}

/// One request and what a correct answer holds.
struct Ask1 {
    op: Op,
    method: &'static str,
    path: String,
    range: Option<(usize, usize)>,
    /// The whole content (empty for a manifest: its digest is all we check).
    body: Option<Bytes>,
    digest: String,
    /// Its file in the store, which says whether wharf could answer from there.
    stored_at: PathBuf,
    /// A manifest by tag: whether the tag was answered before (its record is in the store).
    tag_known: Option<Arc<AtomicBool>>,
}

#[derive(Default)]
struct Tally {
    requests: AtomicU64,
    by_op: Mutex<BTreeMap<(Op, u16), u64>>,
    verified: AtomicU64,
    bytes_verified: AtomicU64,
    cut_short: AtomicU64,
    no_answer: AtomicU64,
    server_errors_cold: AtomicU64,
    violations: AtomicU64,
    /// A few of the odd answers, for the summary.
    notes: Mutex<Vec<String>>,
    first_violations: Mutex<Vec<String>>,
    tags_known: Mutex<BTreeMap<String, Arc<AtomicBool>>>,
}

impl Tally {
    fn violation(&self, v: String) {
        self.violations.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_violations.lock().expect("violations");
        if first.len() < 40 {
            first.push(v);
        }
    }

    /// No response head: counted, and the first few kept for the summary.
    fn no_answer(&self, what: String) {
        if self.no_answer.fetch_add(1, Ordering::Relaxed) < 5 {
            self.notes
                .lock()
                .expect("notes")
                .push(format!("no answer: {what}"));
        }
    }

    fn tag(&self, tag: &str) -> Arc<AtomicBool> {
        self.tags_known
            .lock()
            .expect("tags")
            .entry(tag.to_owned())
            .or_default()
            .clone()
    }

    fn print(&self) {
        println!(
            "client requests: {} (verified {}, {} MiB verified; cut short {}; no answer {}; \
             5xx for content not stored {})",
            self.requests.load(Ordering::Relaxed),
            self.verified.load(Ordering::Relaxed),
            self.bytes_verified.load(Ordering::Relaxed) / MIB as u64,
            self.cut_short.load(Ordering::Relaxed),
            self.no_answer.load(Ordering::Relaxed),
            self.server_errors_cold.load(Ordering::Relaxed),
        );
        let by = self.by_op.lock().expect("tally");
        let mut line = String::from("  by kind and status:");
        let mut last = None;
        for ((op, status), n) in by.iter() {
            if last != Some(*op) {
                line += &format!("\n    {op:?}:");
                last = Some(*op);
            }
            line += &format!(" {status}×{n}");
        }
        println!("{line}");
        for n in self.notes.lock().expect("notes").iter() {
            println!("  {n}");
        }
    }
}

/// One round's clients.
struct Soak {
    url: String,
    store: PathBuf,
    content: Arc<Content>,
    tally: Arc<Tally>,
}

impl Soak {
    async fn warm_up(&self) {
        let mut asks = Vec::new();
        for b in self.content.hot_blobs() {
            asks.push(self.blob(Op::HotBlob, HOT_REPO, b, None));
        }
        for (tag, digest) in &self.content.manifests {
            asks.push(self.manifest(Op::ManifestByTag, "GET", tag, digest));
        }
        for a in asks {
            let out = self.ask(&a).await;
            assert!(
                out.status == 200 && out.error.is_none(),
                "warm-up of {}: {}",
                a.path,
                out.describe()
            );
        }
    }

    async fn round(&self, clients: usize, round: u64, deadline: Instant) {
        let me = Arc::new(Soak {
            url: self.url.clone(),
            store: self.store.clone(),
            content: self.content.clone(),
            tally: self.tally.clone(),
        });
        let tasks: Vec<_> = (0..clients)
            .map(|c| {
                let me = me.clone();
                tokio::spawn(async move {
                    let mut rng =
                        Rng((0x9e37_79b9_7f4a_7c15 ^ (round << 32) ^ ((c as u64) << 8)) | 1);
                    // Bounded by time, and by count should a request answer at once forever.
                    for _ in 0..1_000_000 {
                        if Instant::now() >= deadline {
                            break;
                        }
                        let a = me.pick(&mut rng);
                        me.run(&a).await;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("a client panicked");
        }
    }

    fn pick(&self, rng: &mut Rng) -> Ask1 {
        let c = &self.content;
        let op = Op::pick(rng.next());
        let hot: Vec<&Bytes> = c.hot_blobs().collect();
        let range = |rng: &mut Rng, len: usize| {
            let a = rng.below(len as u64) as usize;
            let b = a + rng.below((len - a) as u64) as usize;
            Some((a, b))
        };
        match op {
            Op::HotBlob | Op::HotBlobRange => {
                let b = hot[rng.below(hot.len() as u64) as usize];
                let r = if op == Op::HotBlobRange {
                    range(rng, b.len())
                } else {
                    None
                };
                self.blob(op, HOT_REPO, b, r)
            }
            Op::ColdBlob | Op::ColdBlobRange => {
                let b = &c.cold[rng.below(c.cold.len() as u64) as usize];
                let r = if op == Op::ColdBlobRange {
                    range(rng, b.len())
                } else {
                    None
                };
                self.blob(op, COLD_REPO, b, r)
            }
            Op::BlobHead => {
                let mut a = if rng.next().is_multiple_of(2) {
                    self.blob(
                        op,
                        HOT_REPO,
                        hot[rng.below(hot.len() as u64) as usize],
                        None,
                    )
                } else {
                    let b = &c.cold[rng.below(c.cold.len() as u64) as usize];
                    self.blob(op, COLD_REPO, b, None)
                };
                a.method = "HEAD";
                a
            }
            Op::ManifestByTag | Op::ManifestByDigest | Op::ManifestHead => {
                let (tag, digest) = &c.manifests[rng.below(c.manifests.len() as u64) as usize];
                let method = if op == Op::ManifestHead {
                    "HEAD"
                } else {
                    "GET"
                };
                if op == Op::ManifestByDigest {
                    let mut a = self.manifest(op, method, digest, digest);
                    a.tag_known = None;
                    a
                } else {
                    self.manifest(op, method, tag, digest)
                }
            }
        }
    }

    fn blob(&self, op: Op, repo: &str, b: &Bytes, range: Option<(usize, usize)>) -> Ask1 {
        let digest = sha256_digest(b);
        Ask1 {
            op,
            method: "GET",
            path: format!("/v2/{repo}/blobs/{digest}"),
            range,
            body: Some(b.clone()),
            stored_at: stored_at(&self.store, &digest),
            digest,
            tag_known: None,
        }
    }

    fn manifest(&self, op: Op, method: &'static str, reference: &str, digest: &str) -> Ask1 {
        Ask1 {
            op,
            method,
            path: format!("/v2/{HOT_REPO}/manifests/{reference}"),
            range: None,
            body: None,
            stored_at: stored_at(&self.store, digest),
            digest: digest.to_owned(),
            tag_known: Some(self.tally.tag(reference)),
        }
    }

    async fn ask(&self, a: &Ask1) -> Outcome {
        let mut ask = Ask {
            method: a.method,
            timeout: REQUEST_TIMEOUT,
            hash: true,
            ..Ask::default()
        }
        .header(
            "accept",
            &format!(
                "{}, application/vnd.oci.image.index.v1+json",
                media::OCI_MANIFEST
            ),
        );
        if let Some((from, to)) = a.range {
            ask = ask.header("range", &format!("bytes={from}-{to}"));
        }
        herd::fetch(&format!("{}{}", self.url, a.path), &ask, 0, None).await
    }

    /// Asks, and checks the answer against the content and the store.
    async fn run(&self, a: &Ask1) {
        let tag_known = a
            .tag_known
            .as_ref()
            .is_none_or(|k| k.load(Ordering::Relaxed));
        let stored_before = tag_known && a.stored_at.is_file();
        let out = self.ask(a).await;
        let stored_after = a.stored_at.is_file();
        let t = &self.tally;
        t.requests.fetch_add(1, Ordering::Relaxed);
        *t.by_op
            .lock()
            .expect("tally")
            .entry((a.op, out.status))
            .or_default() += 1;
        let what = || format!("{} {} {:?}: {}", a.method, a.path, a.range, out.describe());
        match out.status {
            0 => t.no_answer(what()),
            200 | 206 if out.error.is_some() => {
                t.cut_short.fetch_add(1, Ordering::Relaxed);
            }
            200 | 206 => match self.check(a, &out) {
                Ok(n) => {
                    t.verified.fetch_add(1, Ordering::Relaxed);
                    t.bytes_verified.fetch_add(n, Ordering::Relaxed);
                    if let Some(k) = &a.tag_known {
                        k.store(true, Ordering::Relaxed);
                    }
                }
                Err(e) => t.violation(format!("wrong answer ({e}): {}", what())),
            },
            500..=599 if stored_before && stored_after => {
                t.violation(format!("5xx for stored content: {}", what()));
            }
            500..=599 => {
                t.server_errors_cold.fetch_add(1, Ordering::Relaxed);
            }
            // 429 in a back-off window, 416 for a range: counted by status above.
            _ => {}
        }
    }

    /// The bytes (or the head) are the content's: returns how many bytes were verified.
    fn check(&self, a: &Ask1, out: &Outcome) -> Result<u64, String> {
        if a.method == "HEAD" {
            if let Some(want) = a.body.as_ref().map(|b| b.len() as u64)
                && out.content_length() != Some(want)
            {
                return Err(format!("HEAD length, want {want}"));
            }
            return match out.header("docker-content-digest") {
                Some(d) if d != a.digest => Err(format!("HEAD digest {d}, want {}", a.digest)),
                _ => Ok(0),
            };
        }
        let want = match (out.status, a.range, &a.body) {
            (206, Some(_), Some(body)) => {
                let (from, to) = content_range(out).ok_or("206 without a Content-Range")?;
                if to >= body.len() {
                    return Err(format!("Content-Range past the end ({to})"));
                }
                sha256_digest(&body[from..=to])
            }
            (206, ..) => return Err("206 to a request without Range".into()),
            _ => a.digest.clone(),
        };
        if out.digest != want {
            return Err(format!(
                "received bytes hash to {}, want {want}",
                out.digest
            ));
        }
        Ok(out.received)
    }
}

/// `Content-Range: bytes FROM-TO/LEN`.
fn content_range(out: &Outcome) -> Option<(usize, usize)> {
    let v = out.header("content-range")?;
    let range = v.strip_prefix("bytes ")?.split('/').next()?;
    let (from, to) = range.split_once('-')?;
    Some((from.parse().ok()?, to.parse().ok()?))
}

fn stored_at(store: &Path, digest: &str) -> PathBuf {
    let hex = digest.trim_start_matches("sha256:");
    store.join("blobs/sha256").join(&hex[..2]).join(hex)
}

/// xorshift64*: the clients' choices, the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The faults of each round, and how many of each kind the upstream served.
#[derive(Default)]
struct Chaos {
    injected: BTreeMap<&'static str, u64>,
    upstream_requests: u64,
    upstream_blob_gets: u64,
    next_fault: usize,
}

const FAULTS: [&str; 4] = ["break mid-body", "reset after head", "corrupt", "stall"];

impl Chaos {
    /// Runs one round's schedule on the upstream and the disk, ending by `round_len`.
    fn round(&mut self, fake: &FakeRegistry, disk: &Path, round: u64, round_len: Duration) {
        let start = Instant::now();
        let at = |f: f64| round_len.mul_f64(f);
        // Whether a fault is queued and not yet taken by a blob GET.
        let mut queued: Option<&'static str> = None;
        let mut last_fault = start;
        let (mut rate_limited, mut unavailable, mut full) = (false, false, false);
        let filler = disk.join("filler");
        let tick = Duration::from_millis(100);
        while start.elapsed() < round_len.saturating_sub(tick) {
            let now = start.elapsed();
            let seen = fake.take_requests();
            let blob_gets = seen
                .iter()
                .filter(|s| s.method == "GET" && s.path.contains("/blobs/"))
                .count() as u64;
            self.upstream_requests += seen.len() as u64;
            self.upstream_blob_gets += blob_gets;
            if rate_limited {
                *self.injected.entry("429 answers").or_default() += seen.len() as u64;
            }
            if unavailable {
                *self.injected.entry("503 answers").or_default() += seen.len() as u64;
            }
            if let Some(kind) = queued
                && blob_gets > 0
            {
                *self.injected.entry(kind).or_default() += 1;
                queued = None;
            }
            // Blob faults from half the round to three quarters, one at a time: a failed fill
            // opens wharf's back-off window (10 s), which the disk-full phase should not see.
            let faulting = now >= at(0.52) && now < at(0.75);
            if faulting && queued.is_none() && last_fault.elapsed() >= Duration::from_millis(700) {
                let kind = FAULTS[self.next_fault % FAULTS.len()];
                self.next_fault += 1;
                let mid = 100 * KIB as u64 + (self.next_fault as u64 * 37 % 64) * KIB as u64;
                fake.push_faults([match kind {
                    "break mid-body" => Fault::new().break_at(mid),
                    "reset after head" => Fault::new().break_at(0),
                    "corrupt" => Fault::new().corrupt(),
                    _ => Fault::new().hold_at(mid),
                }]);
                queued = Some(kind);
                last_fault = Instant::now();
            }
            // A 429 window of 1.5 s at 12 % of the round, with Retry-After: 1.
            let want_429 = now >= at(0.12) && now < at(0.12) + Duration::from_millis(1500);
            // A 503 window of 1 s at 78 %, every other round (wharf then backs off for 10 s).
            let want_503 =
                round % 2 == 1 && now >= at(0.78) && now < at(0.78) + Duration::from_secs(1);
            if want_429 != rate_limited || want_503 != unavailable {
                if want_429 {
                    fake.respond_with(
                        Reply::oci_error(429, "TOOMANYREQUESTS").header("retry-after", "1"),
                    );
                    *self.injected.entry("429 windows").or_default() += 1;
                } else if want_503 {
                    fake.respond_with(Reply::oci_error(503, "UNAVAILABLE"));
                    *self.injected.entry("503 windows").or_default() += 1;
                } else {
                    fake.serve_normally();
                }
                (rate_limited, unavailable) = (want_429, want_503);
            }
            // The disk is full from a quarter of the round to half of it, while the upstream
            // behaves (and wharf's back-off from the last round's faults is over).
            let want_full = now >= at(0.25) && now < at(0.50);
            if want_full {
                if !full {
                    *self.injected.entry("disk full episodes").or_default() += 1;
                }
                // Topped up every tick: wharf removes spool files of failed writes.
                fill_up(&filler);
            } else if full {
                std::fs::remove_file(&filler).expect("remove the filler");
            }
            full = want_full;
            std::thread::sleep(tick);
        }
        fake.serve_normally();
        if full {
            std::fs::remove_file(&filler).expect("remove the filler");
        }
    }

    fn print(&self) {
        let kinds: Vec<String> = self
            .injected
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        println!("faults injected: {}", kinds.join(", "));
    }
}

/// Appends to `filler` until the file system refuses another byte.
fn fill_up(filler: &Path) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(filler)
        .expect("filler");
    let chunk = vec![0x5au8; 64 * KIB];
    // Bounded: the tmpfs is DISK in size.
    for _ in 0..4096 {
        if f.write_all(&chunk).is_err() {
            break;
        }
    }
    for _ in 0..(64 * KIB) {
        if f.write_all(&[0x5a]).is_err() {
            break;
        }
    }
}

/// wharf's open files and resident memory.
#[derive(Debug, Clone, Copy)]
struct Sample {
    fds: usize,
    rss_kib: u64,
}

impl Sample {
    fn of(pid: u32) -> Sample {
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count())
            .unwrap_or(0);
        let rss_kib = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(0);
        Sample { fds, rss_kib }
    }
}

impl std::fmt::Display for Sample {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} fds, RSS {} MiB", self.fds, self.rss_kib / 1024)
    }
}

/// The store's accounting against its files, read once no fill is in flight.
struct Quiet {
    size_bytes: u64,
    files: u64,
    equal: bool,
    waited: Duration,
}

impl std::fmt::Display for Quiet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "size_bytes {} vs files {} ({}; quiet after {:.1?})",
            self.size_bytes,
            self.files,
            if self.equal { "equal" } else { "DIFFER" },
            self.waited
        )
    }
}

/// Waits (up to 20 s) until no fill is in flight and the store's size equals its files.
fn wait_quiet(wharf: &Wharf, store: &Path) -> Quiet {
    let http = Http::new().timeout(Duration::from_secs(5));
    let started = Instant::now();
    loop {
        let metrics = http
            .get(&format!("{}/metrics", wharf.admin_url()), &[])
            .text();
        let in_flight = metric_sum(&metrics, "wharf_fill_in_flight_fills");
        let stats = http
            .get(&format!("{}/admin/cache/stats", wharf.admin_url()), &[])
            .json();
        let size_bytes = stats["size_bytes"].as_u64().unwrap_or(u64::MAX);
        let files = dir_bytes(&store.join("blobs"));
        let equal = in_flight == 0.0 && size_bytes == files;
        if equal || started.elapsed() > Duration::from_secs(20) {
            return Quiet {
                size_bytes,
                files,
                equal,
                waited: started.elapsed(),
            };
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Bytes in the files under `dir`, at any depth.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// The sum of a family's samples in the text exposition format.
fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
