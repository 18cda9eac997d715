//! The memory benchmark (issue 13): what an idle keep-alive connection costs wharf, whether it
//! comes back when the connections close, and whether the resident set creeps under steady
//! load.
//!
//! ```sh
//! cargo build --release --bin wharf && cargo bench -p wharf-e2e --bench memory
//! ```
//!
//! One real upstream (Debian's `docker-registry` with the harness's test images), and per
//! allocator variant a fresh wharf (the release binary, or `$WHARF_BIN`) in front of it, warmed
//! with one pull of `java/serverjre:latest` (300 MiB) and the manifests and a 1 MiB layer of
//! `os/oraclelinux:7-slim`. Then, on that one process:
//!
//! 1. idle connections: for each N of `MEMORY_CONNS` (default 1000,3000), N keep-alive
//!    connections that each GET the manifest by digest once and then wait; `VmRSS` before,
//!    with them open (2 s after the last one was answered) and once they have closed (wharf's
//!    open descriptors back where they were, then 2 s): bytes per idle connection, and what
//!    stays after they close;
//! 2. `MEMORY_ROUNDS` (default 8) rounds of steady load, `VmRSS` after each phase: a fill (the
//!    serverjre image removed through the admin API, then pulled again: manifest and its five
//!    layers, 300 MiB, from the upstream), `wrk -t2 -c64 -d<MEMORY_WRK_SECS>s` (default 3) on the
//!    1 MiB blob, and the same on the manifest by digest;
//!
//! Variants (`MEMORY_ALLOCATORS`, comma-separated; default `built-in`): `built-in` (the
//! allocator the binary was linked with), `glibc-arena2` (`MALLOC_ARENA_MAX=2`), `jemalloc` and
//! `mimalloc` (Debian's `libjemalloc2` / `libmimalloc2.0` preloaded; only a binary that
//! allocates through glibc's malloc is changed by them, and they are skipped when not
//! installed). One binary under several allocators tells a leak (live allocations: every
//! allocator grows) from an allocator that keeps freed memory (only some do).
//! `MEMORY_CONNS=` (empty) skips the idle connections. Every loop is bounded by a count and
//! every client by a timeout.

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use wharf_e2e::bench::{self, MANIFEST_ACCEPT, env_num, loadavg};
use wharf_e2e::herd::{self, Ask};
use wharf_e2e::memory::{get_request, open_fds, open_idle, raise_fd_limit, rss_kib};
use wharf_e2e::util::wait_for;
use wharf_e2e::{Http, Upstream, UpstreamCfg, Wharf};

const BIG_REPO: &str = "java/serverjre";
const SMALL_REPO: &str = "os/oraclelinux";
const LIB: &str = "/usr/lib/x86_64-linux-gnu";

fn main() {
    let fd_limit = raise_fd_limit();
    let conns: Vec<usize> = std::env::var("MEMORY_CONNS")
        .unwrap_or_else(|_| "1000,3000".into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .map(|n: usize| n.clamp(1, 4000))
        .collect();
    let rounds = env_num("MEMORY_ROUNDS", 8).clamp(1, 30);
    let wrk_secs = env_num("MEMORY_WRK_SECS", 3).clamp(1, 30) as u64;
    let variants: Vec<String> = std::env::var("MEMORY_ALLOCATORS")
        .unwrap_or_else(|_| "built-in".into())
        .split(',')
        .map(|v| v.trim().to_owned())
        .collect();
    let needed = conns.iter().max().copied().unwrap_or(0) as u64 + 256;
    assert!(
        fd_limit >= needed,
        "ulimit -n is {fd_limit}: {needed} descriptors are needed for the idle connections"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let up = Upstream::plain();
    let mut summaries = Vec::new();
    for v in &variants {
        let Some(env) = variant_env(v) else {
            eprintln!("[memory] variant {v}: not available here, skipped");
            continue;
        };
        eprintln!("[memory] variant {v}");
        summaries.push(run_variant(&rt, &up, v, &env, &conns, rounds, wrk_secs));
    }
    println!(
        "\n# wharf memory benchmark\n\nwharf `{}`; {} CPUs; load average at the end {}.\n",
        wharf_e2e::wharf::wharf_bin().display(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg()
    );
    let mut head = String::from("| allocator | RSS warm, MiB |");
    let mut rule = String::from("|---|---|");
    for n in &conns {
        head += &format!(" {n} idle: bytes per connection | after they close, +KiB |");
        rule += "---|---|";
    }
    head += " RSS after round 1 / last, MiB | growth over the second half of the rounds, KiB |";
    rule += "---|---|";
    println!("{head}\n{rule}");
    for s in &summaries {
        let mut row = format!("| {} | {:.1} |", s.variant, mib(s.warm));
        for i in &s.idle {
            row += &format!(
                " {:.0} | {:+} |",
                i.per_conn,
                i.after as i64 - i.before as i64
            );
        }
        let (first, last) = (
            s.rounds[0].after_manifests,
            s.rounds[s.rounds.len() - 1].after_manifests,
        );
        let half = s.rounds[s.rounds.len() / 2].after_manifests;
        row += &format!(
            " {:.1} / {:.1} | {:+} |",
            mib(first),
            mib(last),
            last as i64 - half as i64,
        );
        println!("{row}");
    }
    for s in &summaries {
        println!(
            "\n{}: VmRSS KiB after each phase (fill / {wrk_secs} s of 1 MiB blobs / {wrk_secs} s of manifests; requests per round: blob, manifest):\n",
            s.variant
        );
        for (i, r) in s.rounds.iter().enumerate() {
            println!(
                "- round {}: {} / {} / {} ({:.0} + {:.0} req/s)",
                i + 1,
                r.after_fill,
                r.after_blobs,
                r.after_manifests,
                r.blob_rps,
                r.manifest_rps
            );
        }
    }
}

/// The environment that selects `variant`'s allocator; `None` when it is not installed.
fn variant_env(variant: &str) -> Option<Vec<(&'static str, String)>> {
    let preload = |lib: &str| {
        let path = format!("{LIB}/{lib}");
        Path::new(&path)
            .is_file()
            .then(|| vec![("LD_PRELOAD", path)])
    };
    match variant {
        "built-in" => Some(Vec::new()),
        "glibc-arena2" => Some(vec![("MALLOC_ARENA_MAX", "2".into())]),
        "jemalloc" => preload("libjemalloc.so.2"),
        "mimalloc" => preload("libmimalloc.so.2"),
        other => panic!("unknown MEMORY_ALLOCATORS variant {other:?}"),
    }
}

struct Summary {
    variant: String,
    warm: u64,
    idle: Vec<Idle>,
    rounds: Vec<Round>,
}

/// VmRSS (KiB) around N idle connections.
struct Idle {
    before: u64,
    after: u64,
    per_conn: f64,
}

/// VmRSS (KiB) after each phase of a round of load.
struct Round {
    after_fill: u64,
    after_blobs: u64,
    after_manifests: u64,
    blob_rps: f64,
    manifest_rps: f64,
}

fn run_variant(
    rt: &tokio::runtime::Runtime,
    up: &Upstream,
    variant: &str,
    env: &[(&str, String)],
    conns: &[usize],
    rounds: usize,
    wrk_secs: u64,
) -> Summary {
    let images = wharf_e2e::images();
    let mut builder = Wharf::builder().upstream(UpstreamCfg::oracle(up));
    for (k, v) in env {
        builder = builder.env(k, v);
    }
    let wharf = builder.start();
    let pid = wharf.pid().expect("wharf runs");
    let small = &images.oraclelinux.layers[0];
    let small_url = format!("{}/v2/{SMALL_REPO}/blobs/{}", wharf.url(), small.digest);
    let manifest_path = format!(
        "/v2/{SMALL_REPO}/manifests/{}",
        images.oraclelinux.manifest.digest
    );
    let manifest_url = format!("{}{manifest_path}", wharf.url());
    let http = Http::new().timeout(Duration::from_secs(60));
    for url in [
        format!(
            "{}/v2/{SMALL_REPO}/manifests/{}",
            wharf.url(),
            images.oraclelinux.tag
        ),
        manifest_url.clone(),
    ] {
        let r = http.get(&url, &[("Accept", MANIFEST_ACCEPT)]);
        assert_eq!(r.status, 200, "warm-up {url}: {}", r.describe());
    }
    let o = rt.block_on(herd::fetch(&small_url, &Ask::default(), 0, None));
    assert!(
        o.complete() && o.digest == small.digest,
        "warm-up: {}",
        o.describe()
    );
    fill(rt, &wharf, &http, false);
    settle();
    let warm = rss_kib(pid);

    let addr: SocketAddr = wharf.host_port().parse().expect("wharf address");
    let request = get_request(&manifest_path);
    let mut idle = Vec::new();
    for &n in conns {
        let fds = open_fds(pid);
        let before = rss_kib(pid);
        let open = rt.block_on(open_idle(addr, n, &request));
        settle();
        let with = rss_kib(pid);
        let held = open_fds(pid);
        drop(open);
        let closed = wait_for(Duration::from_secs(20), Duration::from_millis(100), || {
            (open_fds(pid) <= fds + 2).then_some(())
        });
        assert!(
            closed.is_some(),
            "wharf still holds {} descriptors",
            open_fds(pid)
        );
        settle();
        let after = rss_kib(pid);
        let per_conn = (with as f64 - before as f64) * 1024.0 / n as f64;
        eprintln!(
            "[memory] {variant}: {n} idle connections ({} fds): VmRSS {before} -> {with} -> {after} KiB, {per_conn:.0} B each",
            held - fds
        );
        idle.push(Idle {
            before,
            after,
            per_conn,
        });
    }

    let mut done = Vec::new();
    for r in 0..rounds {
        fill(rt, &wharf, &http, true);
        let after_fill = rss_kib(pid);
        let blobs = bench::wrk(&small_url, 2, 64, wrk_secs);
        assert!(
            blobs.requests_per_sec.is_finite() && blobs.non_2xx == 0,
            "wrk:\n{}",
            blobs.output
        );
        let after_blobs = rss_kib(pid);
        let manifests = bench::wrk_with(
            &manifest_url,
            2,
            64,
            wrk_secs,
            &[("Accept", MANIFEST_ACCEPT)],
        );
        assert!(
            manifests.requests_per_sec.is_finite() && manifests.non_2xx == 0,
            "wrk:\n{}",
            manifests.output
        );
        let after_manifests = rss_kib(pid);
        eprintln!(
            "[memory] {variant}: round {}: VmRSS {after_fill} / {after_blobs} / {after_manifests} KiB",
            r + 1
        );
        done.push(Round {
            after_fill,
            after_blobs,
            after_manifests,
            blob_rps: blobs.requests_per_sec,
            manifest_rps: manifests.requests_per_sec,
        });
    }
    Summary {
        variant: variant.into(),
        warm,
        idle,
        rounds: done,
    }
}

/// Pulls serverjre through wharf (manifest by tag, then its layers, checked); with `evict`,
/// removes the image from wharf's cache first, so that the pull is a fill from the upstream.
fn fill(rt: &tokio::runtime::Runtime, wharf: &Wharf, http: &Http, evict: bool) {
    let image = &wharf_e2e::images().serverjre;
    if evict {
        let body = format!(r#"{{"ref":"{BIG_REPO}:{}","image":true}}"#, image.tag);
        let r = http.request(
            "POST",
            &format!("{}/admin/cache/rm", wharf.admin_url()),
            &[("content-type", "application/json")],
            Bytes::from(body),
        );
        assert_eq!(r.status, 200, "cache rm: {}", r.describe());
    }
    let url = format!("{}/v2/{BIG_REPO}/manifests/{}", wharf.url(), image.tag);
    let r = http.get(&url, &[("Accept", MANIFEST_ACCEPT)]);
    assert_eq!(r.status, 200, "{url}: {}", r.describe());
    for layer in &image.layers {
        let url = format!("{}/v2/{BIG_REPO}/blobs/{}", wharf.url(), layer.digest);
        let o = rt.block_on(herd::fetch(&url, &Ask::default(), 0, None));
        assert!(
            o.complete() && o.digest == layer.digest,
            "{url}: {}",
            o.describe()
        );
    }
}

/// Lets the process finish what the last phase left (closing sockets, writing logs).
fn settle() {
    std::thread::sleep(Duration::from_secs(2));
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}
