//! LRU against TinyLFU on skewed traces: the figures behind the index's policy (README, "Store
//! and cache controls"). Not a check, a measurement; run it with
//!
//! ```sh
//! cargo bench -p wharf-cache --bench hit_ratio
//! ```
//!
//! Each trace is replayed through the store's own [`Index`] (LRU, weighted by size) and through
//! a moka cache with its TinyLFU policy, weighed the same way: a lookup that finds the digest is
//! a hit, a miss admits it, as a fill would. Printed:
//! request hit ratio and byte hit ratio (bytes not fetched upstream).
//!
//! - `zipf`: 20 000 blobs of registry-like sizes (many small, a few of hundreds of MiB),
//!   popularity Zipf(0.9), 300 000 requests.
//! - `releases`: 300 images that get new versions over time, each version a manifest, a config
//!   and two own layers over a base layer shared by all versions of the image; a pull asks for
//!   all of them. Images are Zipf(0.9)-popular; 80 % of pulls are of the newest version, the
//!   rest of older ones, ever less often.
//! - `zipf+scan`: `zipf`, with a one-off bulk pull of 5 000 cold blobs (a prefetch, a CI job
//!   walking every image once) interleaved with the first third of the trace.
//!
//! And one rollout: with the index warm from `zipf` (budget 10 %), a new image (manifest,
//! config, layers of 50, 100 and 200 MiB) is pulled by 10 nodes one after the other, 100
//! regular requests between pulls. Printed: how many of those pulls downloaded the image's
//! layers from the upstream.

use std::sync::Arc;

use wharf_oci::Digest;

use crate::index::Index;

/// The policies compared.
#[derive(Clone, Copy)]
enum Policy {
    /// The store's own index.
    Lru,
    /// moka's TinyLFU admission and eviction, weighed in KiB as the index is.
    TinyLfu,
}

/// A cache under one policy: what a replay asks of it.
enum Cache {
    Lru(Index),
    TinyLfu(moka::sync::Cache<Digest, u64>),
}

impl Cache {
    fn new(budget: u64, policy: Policy) -> Cache {
        match policy {
            Policy::Lru => Cache::Lru(Index::new(budget, Arc::new(|_, _| {}))),
            Policy::TinyLfu => Cache::TinyLfu(
                moka::sync::Cache::builder()
                    .max_capacity((budget / 1024).max(1))
                    .weigher(|_: &Digest, size: &u64| {
                        u32::try_from(size.div_ceil(1024).max(1)).unwrap_or(u32::MAX)
                    })
                    .eviction_policy(moka::policy::EvictionPolicy::tiny_lfu())
                    .build(),
            ),
        }
    }

    /// Whether `d` is cached, recording the access.
    fn hit(&self, d: &Digest) -> bool {
        match self {
            Cache::Lru(index) => index.get(d).is_some(),
            Cache::TinyLfu(c) => c.get(d).is_some(),
        }
    }

    fn admit(&self, d: &Digest, size: u64) {
        match self {
            Cache::Lru(index) => {
                index.admit(d, size, None);
            }
            Cache::TinyLfu(c) => {
                c.insert(d.clone(), size);
                c.run_pending_tasks();
            }
        }
    }
}

/// splitmix64: small, fast and deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, s: f64) -> Zipf {
        let mut acc = 0.0;
        let mut cdf: Vec<f64> = (1..=n)
            .map(|k| {
                acc += 1.0 / (k as f64).powf(s);
                acc
            })
            .collect();
        for c in &mut cdf {
            *c /= acc;
        }
        Zipf { cdf }
    }

    fn sample(&self, rng: &mut Rng) -> usize {
        let u = rng.unit();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
    }
}

/// Registry-like sizes: half small (manifests, configs: 1-16 KiB), half layers log-uniform
/// between 64 KiB and 512 MiB.
fn size(rng: &mut Rng) -> u64 {
    if rng.unit() < 0.5 {
        1024 + rng.next() % (15 * 1024)
    } else {
        let (lo, hi) = ((64.0f64 * 1024.0).ln(), (512.0f64 * 1024.0 * 1024.0).ln());
        (lo + (hi - lo) * rng.unit()).exp() as u64
    }
}

fn digest(n: u64) -> Digest {
    Digest::sha256_of(&n.to_be_bytes())
}

/// One request: which blob, how large.
type Trace = Vec<(u64, u64)>;

fn zipf_trace(rng: &mut Rng, requests: usize) -> Trace {
    let n = 20_000;
    let sizes: Vec<u64> = (0..n).map(|_| size(rng)).collect();
    let z = Zipf::new(n, 0.9);
    (0..requests)
        .map(|_| {
            let i = z.sample(rng);
            (i as u64, sizes[i])
        })
        .collect()
}

fn scan_trace(rng: &mut Rng) -> Trace {
    let mut base = zipf_trace(rng, 300_000);
    let scan: Vec<(u64, u64)> = (0..5_000).map(|i| (1_000_000 + i, size(rng))).collect();
    // Interleave one scan request after every 20 regular ones.
    let mut out = Vec::with_capacity(base.len() + scan.len());
    let mut scan = scan.into_iter();
    for (i, r) in base.drain(..).enumerate() {
        out.push(r);
        if i % 20 == 19
            && let Some(s) = scan.next()
        {
            out.push(s);
        }
    }
    out
}

fn releases_trace(rng: &mut Rng) -> Trace {
    let images = 300;
    let pulls = 60_000;
    let popularity = Zipf::new(images, 0.9);
    let base_sizes: Vec<u64> = (0..images)
        .map(|_| 20 << 20 | (rng.next() % (60 << 20)))
        .collect();
    let mut versions = vec![0u64; images];
    let mut out = Vec::new();
    for p in 0..pulls {
        // Every 50 pulls, one image gets a new version.
        if p % 50 == 0 {
            versions[popularity.sample(rng)] += 1;
        }
        let img = popularity.sample(rng);
        let newest = versions[img];
        let mut v = newest;
        if rng.unit() >= 0.8 {
            while v > 0 && rng.unit() < 0.5 {
                v -= 1;
            }
        }
        let id = |part: u64| ((img as u64) << 32) | (v << 4) | part;
        out.push(((img as u64) << 32 | 0xF, base_sizes[img]));
        // Sizes derived from the id, so a version's blobs always weigh the same.
        let mut r = Rng(id(0));
        out.push((id(1), 1024 + r.next() % 4096)); // manifest
        out.push((id(2), 2048 + r.next() % 8192)); // config
        out.push((id(3), (1 << 20) + r.next() % (30 << 20))); // app layer
        out.push((id(4), (64 << 10) + r.next() % (4 << 20))); // small layer
    }
    out
}

/// (request hit ratio, byte hit ratio)
fn replay(trace: &Trace, budget: u64, policy: Policy) -> (f64, f64) {
    let index = Cache::new(budget, policy);
    let (mut hits, mut hit_bytes, mut bytes) = (0u64, 0u64, 0u64);
    for &(id, size) in trace {
        let d = digest(id);
        bytes += size;
        if index.hit(&d) {
            hits += 1;
            hit_bytes += size;
        } else {
            index.admit(&d, size);
        }
    }
    (
        hits as f64 / trace.len() as f64,
        hit_bytes as f64 / bytes as f64,
    )
}

fn distinct_bytes(trace: &Trace) -> u64 {
    let mut seen = std::collections::HashMap::new();
    for &(id, size) in trace {
        seen.insert(id, size);
    }
    seen.values().sum()
}

/// How many of `pulls` pulls of a new image fetch at least one of its layers upstream.
fn rollout(warm: &Trace, budget: u64, policy: Policy, pulls: usize) -> usize {
    let index = Cache::new(budget, policy);
    let mut rest = warm.iter();
    for &(id, size) in rest.by_ref().take(warm.len() / 2) {
        let d = digest(id);
        if !index.hit(&d) {
            index.admit(&d, size);
        }
    }
    let image = [
        (9_000_001, 2_000),
        (9_000_002, 6_000),
        (9_000_003, 50 << 20),
        (9_000_004, 100 << 20),
        (9_000_005, 200 << 20),
    ];
    let mut fetched = 0;
    for _ in 0..pulls {
        let mut missed = false;
        for &(id, size) in &image {
            let d = digest(id);
            if !index.hit(&d) {
                missed |= size > 1 << 20;
                index.admit(&d, size);
            }
        }
        fetched += usize::from(missed);
        for &(id, size) in rest.by_ref().take(100) {
            let d = digest(id);
            if !index.hit(&d) {
                index.admit(&d, size);
            }
        }
    }
    fetched
}

/// Replays the traces and prints the table (the `hit_ratio` bench target calls it).
pub fn run() {
    let mut rng = Rng(20_240_601);
    let traces = [
        ("zipf", zipf_trace(&mut rng, 300_000)),
        ("releases", releases_trace(&mut rng)),
        ("zipf+scan", scan_trace(&mut rng)),
    ];
    println!("trace      budget   LRU req / bytes    TinyLFU req / bytes");
    for (name, trace) in &traces {
        let total = distinct_bytes(trace);
        for pct in [5u64, 10, 25] {
            let budget = total * pct / 100;
            let (lr, lb) = replay(trace, budget, Policy::Lru);
            let (tr, tb) = replay(trace, budget, Policy::TinyLfu);
            println!(
                "{name:<10} {pct:>3} %    {:>5.1} % / {:>5.1} %    {:>5.1} % / {:>5.1} %",
                lr * 100.0,
                lb * 100.0,
                tr * 100.0,
                tb * 100.0
            );
        }
    }
    let warm = &traces[0].1;
    let budget = distinct_bytes(warm) / 10;
    println!(
        "rollout: of 10 pulls of a new 350 MiB image, {} (LRU) / {} (TinyLFU) downloaded its layers",
        rollout(warm, budget, Policy::Lru, 10),
        rollout(warm, budget, Policy::TinyLfu, 10)
    );
}
