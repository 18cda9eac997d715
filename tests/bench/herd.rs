//! The thundering-herd benchmark (issue 7): many clients ask a mirror for one cold blob at once.
//!
//! ```sh
//! cargo build --release --bin wharf && cargo bench -p wharf-e2e --bench herd
//! ```
//!
//! One real upstream (Debian's `docker-registry`, CNCF Distribution 2.8) holds a 100 MiB blob
//! and a big one (`HERD_BIG_MIB`, default 1024). Two mirrors run in front of it, one after the
//! other: wharf (the release binary, or `$WHARF_BIN`) and Distribution itself in proxy mode
//! (`proxy: remoteurl:`). For each mirror and each herd size (16 and 64 clients) a fresh mirror
//! with an empty cache gets the herd on the cold blob, then the same herd on the now-cached blob.
//! Each client has its own connection; all wait at a barrier and then ask at once
//! (`wharf_e2e::herd`). Last, 64 clients on the big cold blob through wharf, for its memory.
//!
//! Printed per mirror and herd: upstream GETs and bytes for the blob (from the upstream's access
//! log), time until the last client is done, each client's time to first byte (from the first
//! request sent), cold/warm ratio, and the mirror's peak RSS (`VmHWM`). Clients count bytes but
//! do not hash them (that would time the client's SHA-256); after each herd one more client
//! fetches the blob and checks its digest. `HERD_HASH=1` makes every client hash.
//!
//! Each case runs `HERD_REPEATS` times (default 3), each time on a fresh mirror, and the table
//! gives medians (the machine is shared, so single runs are noisy); the mirror's CPU time
//! (user + system, from `/proc/<pid>/stat`) during each herd is printed too, as a measure that
//! does not depend on what else the machine is doing.
//!
//! For profiling one case: `HERD_MIRRORS=wharf` (or `distribution`), `HERD_CLIENTS=64`,
//! `HERD_BIG_MIB=0` (skips the big blob), `HERD_REPEATS=1`.
//!
//! Everything listens on 127.0.0.1 on kernel-chosen ports; every client has a deadline.

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

use std::path::Path;
use std::time::Duration;
use wharf_e2e::bench::{DistributionProxy, env_num, loadavg};

use bytes::Bytes;
use tokio::time::Instant;
use wharf_e2e::herd::{self, Ask, HerdRun as Run, Outcome};
use wharf_e2e::images::{Descriptor, MT_OCI_LAYER_GZIP};
use wharf_e2e::layers::random_bytes;
use wharf_e2e::push::Pusher;
use wharf_e2e::registry::Storage;
use wharf_e2e::util::sha256_digest;
use wharf_e2e::{Http, Upstream, Wharf};

const MIB: usize = 1 << 20;
const REPO: &str = "bench/herd";
const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
const HERDS: [usize; 2] = [16, 64];
const BIG_CLIENTS: usize = 64;
/// Each (mirror, herd) case runs this many times, each on a fresh mirror; timings are medians.
const REPEATS: usize = 3;

fn main() {
    // `cargo bench` passes `--bench`; there is nothing to filter, so arguments are ignored.
    let big_mib: usize = env_num("HERD_BIG_MIB", 1024);
    let repeats = env_num("HERD_REPEATS", REPEATS).max(1);
    let herds: Vec<usize> = match std::env::var("HERD_CLIENTS") {
        Ok(v) => v.split(',').filter_map(|n| n.trim().parse().ok()).collect(),
        Err(_) => HERDS.to_vec(),
    };
    let mirrors: Vec<MirrorKind> = [MirrorKind::Wharf, MirrorKind::Distribution]
        .into_iter()
        .filter(|k| std::env::var("HERD_MIRRORS").map_or(true, |v| v.contains(k.key())))
        .collect();
    let hash = std::env::var_os("HERD_HASH").is_some_and(|v| v == "1");
    let wharf_bin = wharf_e2e::wharf::wharf_bin();
    assert!(
        Path::new(REGISTRY_BIN).is_file(),
        "{REGISTRY_BIN} not found: apt-get install docker-registry"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");

    let up = Upstream::builder().storage(Storage::Empty).start();
    let blob = push(&up, "herd-100mib", 100 * MIB);
    let big = (big_mib > 0).then(|| push(&up, &format!("herd-{big_mib}mib"), big_mib * MIB));
    println!(
        "# herd benchmark\n\nwharf: `{}`; Distribution: `{REGISTRY_BIN}`; upstream {} (Distribution, \
         filesystem storage); {} CPUs; load average before: {}.\n\
         Clients: one connection each, released together by a barrier; {}. \
         Each case ran {repeats} times on a fresh mirror: timings are medians, counts are per run.\n",
        wharf_bin.display(),
        up.url(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg(),
        if hash {
            "every client hashes its body"
        } else {
            "clients count bytes, one extra client checks the digest after each herd"
        }
    );

    // What the fill cannot beat: one client straight from the upstream.
    let direct = format!("{}/v2/{REPO}/blobs/{}", up.url(), blob.digest);
    let mut alone: Vec<Duration> = (0..repeats)
        .map(|_| {
            let o = rt.block_on(herd::fetch(&direct, &Ask::default(), 0, None));
            assert!(o.complete() && o.digest == blob.digest, "{}", o.describe());
            o.done - o.sent
        })
        .collect();
    alone.sort();
    println!(
        "One client straight from the upstream (no mirror) takes {} for the {} MiB blob (median).\n",
        secs(alone[alone.len() / 2]),
        blob.size / MIB as u64
    );

    let mut cases = Vec::new();
    for &kind in &mirrors {
        for &n in &herds {
            let mut pairs = Vec::new();
            for _ in 0..repeats {
                let mirror = Mirror::start(kind, &up);
                let cold = measure(&rt, &up, &mirror, &blob, n, hash);
                let warm = measure(&rt, &up, &mirror, &blob, n, hash);
                pairs.push((cold, warm));
            }
            let case = Case { kind, n, pairs };
            case.print(&blob);
            cases.push(case);
        }
    }

    let mut big_run = None;
    if let Some(big) = &big {
        let mirror = Mirror::start(MirrorKind::Wharf, &up);
        let cold = measure(&rt, &up, &mirror, big, BIG_CLIENTS, false);
        print_big(big, &cold);
        big_run = Some(cold);
    }
    print_targets(&cases, big_run.as_ref());
}

/// Pushes `size` deterministic bytes to `REPO` on the upstream.
fn push(up: &Upstream, label: &str, size: usize) -> Descriptor {
    let started = Instant::now();
    let mut buf = vec![0; size];
    random_bytes(label, &mut buf);
    let desc = Descriptor {
        media_type: MT_OCI_LAYER_GZIP.into(),
        digest: sha256_digest(&buf),
        size: size as u64,
    };
    let http = Http::new().timeout(Duration::from_secs(600));
    Pusher {
        base: up.url(),
        http: &http,
    }
    .blob(REPO, &desc, Bytes::from(buf));
    eprintln!(
        "[bench] pushed {} MiB ({}) in {:.1?}",
        size / MIB,
        desc.digest,
        started.elapsed()
    );
    desc
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MirrorKind {
    Wharf,
    Distribution,
}

impl MirrorKind {
    fn key(self) -> &'static str {
        match self {
            MirrorKind::Wharf => "wharf",
            MirrorKind::Distribution => "distribution",
        }
    }

    fn name(self) -> &'static str {
        match self {
            MirrorKind::Wharf => "wharf",
            MirrorKind::Distribution => "Distribution 2.8 (proxy mode)",
        }
    }
}

/// A mirror with an empty cache in front of the upstream.
enum Mirror {
    Wharf(Wharf),
    Distribution(DistributionProxy),
}

impl Mirror {
    fn start(kind: MirrorKind, up: &Upstream) -> Mirror {
        match kind {
            MirrorKind::Wharf => Mirror::Wharf(Wharf::for_upstream(up)),
            MirrorKind::Distribution => Mirror::Distribution(DistributionProxy::start(up)),
        }
    }

    fn url(&self) -> String {
        match self {
            Mirror::Wharf(w) => w.url(),
            Mirror::Distribution(d) => format!("http://127.0.0.1:{}", d.port),
        }
    }

    fn pid(&self) -> Option<u32> {
        match self {
            Mirror::Wharf(w) => w.pid(),
            Mirror::Distribution(d) => d.proc.pid(),
        }
    }
}

/// One herd of `n` through `mirror` on `blob` (`wharf_e2e::herd::measure`).
fn measure(
    rt: &tokio::runtime::Runtime,
    up: &Upstream,
    mirror: &Mirror,
    blob: &Descriptor,
    n: usize,
    hash: bool,
) -> Run {
    let url = format!("{}/v2/{REPO}/blobs/{}", mirror.url(), blob.digest);
    herd::measure(rt, up, &url, &blob.digest, n, hash, mirror.pid())
}

/// Every run of one (mirror, herd size): (cold, warm) pairs, each on a fresh mirror.
struct Case {
    kind: MirrorKind,
    n: usize,
    pairs: Vec<(Run, Run)>,
}

impl Case {
    fn colds(&self) -> impl Iterator<Item = &Run> {
        self.pairs.iter().map(|(c, _)| c)
    }

    fn ratios(&self) -> Vec<f64> {
        self.pairs
            .iter()
            .map(|(c, w)| c.total().as_secs_f64() / w.total().as_secs_f64())
            .collect()
    }

    fn print(&self, blob: &Descriptor) {
        let col = |warm: bool| -> Vec<&Run> {
            self.pairs
                .iter()
                .map(|(c, w)| if warm { w } else { c })
                .collect()
        };
        let (cold, warm) = (col(false), col(true));
        let row = |f: &dyn Fn(&[&Run]) -> String| format!("{} | {}", f(&cold), f(&warm));
        let n = self.n;
        println!(
            "## {}, {n} clients, {} MiB blob\n\n\
             | | cold (empty cache) | warm (cached) |\n|---|---|---|\n\
             | clients complete, digest right | {} |\n\
             | upstream GETs / HEADs for the blob, per run | {} |\n\
             | upstream bytes for the blob, per run | {} |\n\
             | time until the last client is done (median; all runs) | {} |\n\
             | first byte min / median / max (median run) | {} |\n\
             | first-byte spread, last − first client (median; all runs) | {} |\n\
             | cold / warm time (median; all runs) | {} | |\n\
             | mirror CPU time during the herd (median) | {} |\n\
             | mirror peak RSS (VmHWM, highest run) | {} |\n",
            self.kind.name(),
            blob.size / MIB as u64,
            row(&|runs| {
                let complete: usize = runs.iter().map(|r| r.complete()).sum();
                let right: usize = runs.iter().map(|r| r.right).sum();
                let checked: usize = runs.iter().map(|r| r.checked).sum();
                format!("{complete}/{}, {right}/{checked}", n * runs.len())
            }),
            row(&|runs| list(
                runs.iter()
                    .map(|r| format!("{}/{}", r.upstream_gets, r.upstream_heads))
            )),
            row(&|runs| list(
                runs.iter()
                    .map(|r| format!("{:.0} MiB", r.upstream_bytes as f64 / MIB as f64))
            )),
            row(&|runs| timed(runs.iter().map(|r| r.total()).collect(), secs)),
            row(&|runs| first_byte_cell(median_by(runs, |r| r.spread()))),
            row(&|runs| timed(runs.iter().map(|r| r.spread()).collect(), ms)),
            ratio_cell(self.ratios()),
            row(&|runs| {
                let mut cpu: Vec<Duration> = runs.iter().filter_map(|r| r.cpu).collect();
                cpu.sort();
                cpu.get(cpu.len() / 2).map_or("n/a".into(), |d| secs(*d))
            }),
            row(&|runs| mib(runs.iter().filter_map(|r| r.rss_kib).max())),
        );
    }
}

fn list(items: impl Iterator<Item = String>) -> String {
    let items: Vec<String> = items.collect();
    if items.windows(2).all(|w| w[0] == w[1]) {
        items.first().cloned().unwrap_or_default()
    } else {
        items.join(", ")
    }
}

/// The median, then every value in run order.
fn timed(values: Vec<Duration>, fmt: fn(Duration) -> String) -> String {
    let mut sorted = values.clone();
    sorted.sort();
    let all: Vec<String> = values.iter().map(|d| fmt(*d)).collect();
    format!("**{}** ({})", fmt(sorted[sorted.len() / 2]), all.join(", "))
}

fn ratio_cell(ratios: Vec<f64>) -> String {
    let mut sorted = ratios.clone();
    sorted.sort_by(f64::total_cmp);
    let all: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
    format!("**{:.2}x** ({})", sorted[sorted.len() / 2], all.join(", "))
}

fn median_by<'a>(runs: &[&'a Run], key: impl Fn(&Run) -> Duration) -> &'a Run {
    let mut sorted: Vec<&Run> = runs.to_vec();
    sorted.sort_by_key(|r| key(r));
    sorted[sorted.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or("n/a".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

fn first_byte_cell(run: &Run) -> String {
    let fb = run.first_bytes();
    if fb.is_empty() {
        return "none".into();
    }
    format!(
        "{} / {} / {}",
        ms(fb[0]),
        ms(fb[fb.len() / 2]),
        ms(fb[fb.len() - 1])
    )
}

fn print_big(blob: &Descriptor, cold: &Run) {
    let n = cold.outcomes.len();
    println!(
        "## wharf, {n} clients, {} MiB cold blob (memory)\n\n\
         | | cold (empty cache), one run |\n|---|---|\n\
         | clients complete, digest right | {}/{n}, {}/{} |\n\
         | upstream GETs / HEADs for the blob | {} / {} |\n\
         | upstream bytes for the blob | {:.0} MiB |\n\
         | time until the last client is done | {} |\n\
         | first byte min / median / max | {} |\n\
         | first-byte spread, last − first client | {} |\n\
         | wharf CPU time during the herd | {} |\n\
         | wharf peak RSS (VmHWM) | {} |\n",
        blob.size / MIB as u64,
        cold.complete(),
        cold.right,
        cold.checked,
        cold.upstream_gets,
        cold.upstream_heads,
        cold.upstream_bytes as f64 / MIB as f64,
        secs(cold.total()),
        first_byte_cell(cold),
        ms(cold.spread()),
        cold.cpu.map_or("n/a".into(), secs),
        mib(cold.rss_kib),
    );
}

fn print_targets(cases: &[Case], big: Option<&Run>) {
    println!(
        "## wharf against the issue's targets (medians over the runs)\n\n| target | result |\n|---|---|"
    );
    for case in cases.iter().filter(|c| c.kind == MirrorKind::Wharf) {
        let n = case.n;
        let gets: Vec<usize> = case.colds().map(|r| r.upstream_gets).collect();
        let mut spreads: Vec<Duration> = case.colds().map(Run::spread).collect();
        spreads.sort();
        let spread = spreads[spreads.len() / 2];
        let mut ratios = case.ratios();
        ratios.sort_by(f64::total_cmp);
        let ratio = ratios[ratios.len() / 2];
        println!(
            "| {n} clients: 1 upstream GET | {gets:?} {} |\n\
             | {n} clients: every first byte within 50 ms of the first | {} {} |\n\
             | {n} clients: cold herd within 1.2x the warm herd | {ratio:.2}x {} |",
            pass(gets.iter().all(|&g| g == 1)),
            ms(spread),
            pass(spread <= Duration::from_millis(50)),
            pass(ratio <= 1.2),
        );
    }
    if let Some(big) = big {
        let size = big
            .outcomes
            .first()
            .and_then(Outcome::content_length)
            .unwrap_or_default();
        println!(
            "| {} clients, {} MiB cold blob: peak RSS under 64 MiB | {} {} |",
            big.outcomes.len(),
            size / MIB as u64,
            mib(big.rss_kib),
            pass(big.rss_kib.is_some_and(|k| k < 64 * 1024))
        );
    }
    println!();
}

fn pass(ok: bool) -> &'static str {
    if ok { "(met)" } else { "(MISSED)" }
}
