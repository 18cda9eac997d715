//! The benchmark suite (issue 8): wharf against the CNCF Distribution registry in
//! proxy mode (the anchor) and nginx serving the same blob files with sendfile (what this machine
//! can do), measured in the same run, alternating, `SUITE_REPEATS` times (default 3), medians.
//!
//! ```sh
//! cargo build --release --bin wharf && cargo bench -p wharf-e2e --bench suite
//! ```
//!
//! One real upstream (Debian's `docker-registry`) holds the harness's test images, among them
//! `java/serverjre:latest` (5 layers, 300 MiB, the largest 100 MiB) and `os/oraclelinux:7-slim`
//! (1 MiB layers). In front of it: wharf (the release binary, or `$WHARF_BIN`) and Distribution
//! in proxy mode, each warmed with one GET of everything measured; beside it, nginx with
//! `sendfile on` mapping `/v2/<repo>/blobs/sha256:<hex>` to the upstream's own `data` files.
//! Then, per repeat and per measurement, each server in turn:
//!
//! 1. the 100 MiB blob, warm: one stream (`curl -o /dev/null`, three times, and three more
//!    with curl on the first CPU and the server on the last, by `taskset`), then 16
//!    concurrent streams (an async Rust client that counts and discards the bytes; one extra
//!    GET checks the digest); MiB/s;
//! 2. a 1 MiB blob with `wrk -t2 -c16 -d5s`: requests per second;
//! 3. the manifest of `os/oraclelinux:7-slim` by tag and by digest: 500 sequential GETs on one
//!    keep-alive connection with an OCI/Docker `Accept`, p50 and p99, and the upstream requests
//!    per GET from the upstream's access log, and the server's CPU time per GET (mirrors only;
//!    the tag is within wharf's TTL);
//! 4. the server's CPU time (utime + stime from `/proc/<pid>/stat`, nginx: master + workers) per
//!    GiB served over the runs of (1), and its peak RSS (`VmHWM`) after all warm runs.
//!
//! Last (`SUITE_COLD=0` skips it): a cold `skopeo copy` of `java/serverjre:latest` through a
//! fresh wharf and a fresh Distribution proxy, against the same copy straight from the upstream,
//! with upstream requests and bytes per cold pull and the mirror's CPU time for it.
//!
//! Then (also skipped by `SUITE_COLD=0`) 16 and 64 clients at once on the cold 100 MiB blob,
//! through a fresh wharf and a fresh Distribution proxy each time: upstream GETs and MiB for
//! the blob, and the time until the last client is done (`bench/herd.rs` has more on herds).
//!
//! Last, hosting (`suite/hosting.rs`): a push and a pull of `java/serverjre:latest` with skopeo
//! from a local `dir:` layout to a hosted repository of a fresh wharf and to a fresh plain
//! Distribution registry: time, server CPU per GiB, peak RSS. `SUITE_ONLY=hosting` runs only
//! these rows.
//!
//! Then scale-out (`suite/replicas.rs`): three replicas sharing one Garage against one wharf on
//! a cold 100 MiB blob (48 clients): time, upstream GETs and bytes, warm aggregate MiB/s, and
//! CPU per GiB on the object-store hit path. `SUITE_ONLY=replicas` runs only these rows.
//!
//! Last, TLS and HTTP/2 (`suite/tls.rs`): wharf and nginx over TLS with the same certificate,
//! one stream and 16 over HTTP/1.1 and HTTP/2, 1 MiB blobs with wrk, CPU per GiB.
//! `SUITE_ONLY=tls` runs only these rows.
//!
//! Then the store at scale (`suite/scale.rs`): start-up, memory, manifest and blob latency on
//! stores of 0, 100,000 and 1,000,000 blobs (`SCALE_BLOBS`), and an eviction of a tenth of
//! the store while serving. `SUITE_ONLY=scale` runs only these rows.
//!
//! Then many clients (`suite/clients.rs`): wharf and nginx under `wrk -c2000` on the 1 MiB
//! blob, and the memory each idle keep-alive connection of 10,000 costs them.
//! `SUITE_ONLY=clients` runs only these rows.
//!
//! Criterion micro-benchmarks of the hot paths: `cargo bench -p wharf-oci -p wharf-proxy
//! -p wharf-cache --bench hot_paths`. Everything listens on 127.0.0.1 on free ports; every loop is bounded by a
//! count and every client by a timeout.

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

#[path = "suite/clients.rs"]
mod clients;
#[path = "suite/hosting.rs"]
mod hosting;
#[path = "suite/replicas.rs"]
mod replicas;
#[path = "suite/scale.rs"]
mod scale;
#[path = "suite/tls.rs"]
mod tls;

use std::time::Duration;

use tokio::time::Instant;
use wharf_e2e::bench::{
    self, DistributionProxy, MANIFEST_ACCEPT, Nginx, cpu_time, env_num, loadavg, ms, peak_rss_kib,
    quantile, sequential_latencies,
};
use wharf_e2e::herd::{self, Ask};
use wharf_e2e::images::Descriptor;
use wharf_e2e::{Skopeo, Upstream, Wharf};

const MIB: f64 = 1_048_576.0;
const GIB: f64 = 1_073_741_824.0;
const STREAMS: usize = 16;
/// One-stream GETs per server and repeat.
const SINGLES: usize = 3;
const MANIFEST_GETS: usize = 500;
const HERD_SIZES: [usize; 2] = [16, 64];
const WRK_SECS: u64 = 5;
const BIG_REPO: &str = "java/serverjre";
const SMALL_REPO: &str = "os/oraclelinux";

fn main() {
    let repeats = env_num("SUITE_REPEATS", 3).clamp(1, 20);
    let cold = std::env::var("SUITE_COLD").map_or(true, |v| v != "0");
    let wharf_bin = wharf_e2e::wharf::wharf_bin();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    // One section alone: measured, then printed under the header.
    let only = std::env::var("SUITE_ONLY").unwrap_or_default();
    let (big, small) = blobs_measured();
    let section: Option<Box<dyn FnOnce()>> = match only.as_str() {
        "tls" => {
            let t = tls::measure(&Upstream::plain(), &big, &small, repeats);
            Some(Box::new(move || tls::print(&t)))
        }
        "clients" => {
            let c = clients::measure(&rt, &Upstream::plain(), &small, repeats);
            Some(Box::new(move || clients::print(&c)))
        }
        "scale" => {
            let s = scale::measure(&rt, &Upstream::plain(), &big, &small);
            Some(Box::new(move || scale::print(&s)))
        }
        "replicas" => {
            let r = replicas::measure(&rt, repeats);
            Some(Box::new(move || replicas::print(&r)))
        }
        "hosting" => {
            let h = hosting::measure(&Upstream::plain(), repeats);
            Some(Box::new(move || hosting::print(&h)))
        }
        _ => None,
    };
    if let Some(print) = section {
        let nginx = if only == "tls" {
            "nginx over TLS; "
        } else {
            ""
        };
        print_header(&wharf_bin, repeats, nginx);
        print();
        return;
    }
    let images = wharf_e2e::images();
    let tag = images.oraclelinux.tag.clone();
    let digest = images.oraclelinux.manifest.digest.clone();

    let up = Upstream::plain();
    let wharf = Wharf::for_upstream(&up);
    let dist = DistributionProxy::start(&up);
    let nginx = Nginx::serving(up.storage_dir());
    let servers = [
        Server::Wharf(&wharf),
        Server::Distribution(&dist),
        Server::Nginx(&nginx),
    ];
    eprintln!(
        "[suite] upstream {}, wharf {}, Distribution {}, nginx {}",
        up.url(),
        wharf.url(),
        dist.url(),
        nginx.url()
    );

    // Warm every mirror: one GET of each blob (Distribution stores a blob in the background
    // while it streams it, so a second GET after a pause) and of the manifests.
    for s in &servers {
        for _ in 0..2 {
            for (repo, b) in [(BIG_REPO, &big), (SMALL_REPO, &small)] {
                let o = rt.block_on(herd::fetch(&s.blob_url(repo, b), &Ask::default(), 0, None));
                assert!(
                    o.complete() && o.digest == b.digest,
                    "{} warm-up of {}: {} {}",
                    s.name(),
                    b.digest,
                    o.describe(),
                    s.diagnose()
                );
            }
            if s.is_mirror() {
                for r in [&tag, &digest] {
                    let url = format!("{}/v2/{SMALL_REPO}/manifests/{r}", s.url());
                    let (_, errors) = rt
                        .block_on(sequential_latencies(
                            &url,
                            &[("Accept", MANIFEST_ACCEPT)],
                            3,
                            Duration::from_secs(30),
                        ))
                        .expect("manifest warm-up");
                    assert_eq!(errors, 0, "{} manifest warm-up {url}", s.name());
                }
            }
            std::thread::sleep(Duration::from_secs(2));
        }
    }
    up.wait_log_stable();

    let mut res: Vec<Results> = servers.iter().map(|_| Results::default()).collect();
    for r in 0..repeats {
        eprintln!("[suite] repeat {}/{repeats}", r + 1);
        // 1. warm throughput, 4. CPU per GiB
        for (s, res) in servers.iter().zip(res.iter_mut()) {
            let url = s.blob_url(BIG_REPO, &big);
            let ask = Ask {
                hash: false,
                timeout: Duration::from_secs(120),
                ..Ask::default()
            };
            let cpu0 = s.cpu();
            // One stream is the noisiest figure (a lone client on shared cores): three samples,
            // with curl as ANCHOR-RESULTS.md measured it (an async Rust client adds its own
            // task hand-offs to a lone stream).
            for _ in 0..SINGLES {
                res.single.push(curl_mib_per_s(&url, big.size, None));
            }
            // Where the scheduler puts client, server and the loopback's softirq work moves a
            // lone stream most (issue 18): the same GETs with each on a core of its own.
            let pinned = two_cores();
            if let Some([client, server]) = &pinned {
                let before = s.pids().first().and_then(|p| allowed_cpus(&p.to_string()));
                s.pin(server);
                for _ in 0..SINGLES {
                    res.single_pinned
                        .push(curl_mib_per_s(&url, big.size, Some(client)));
                }
                s.pin(before.as_deref().unwrap_or(server));
            }
            let herd = rt.block_on(herd::run(&url, STREAMS, &ask, None));
            let first = herd.iter().map(|o| o.sent).min().expect("clients");
            let last = herd.iter().map(|o| o.done).max().expect("clients");
            let ok = herd.iter().filter(|o| o.complete()).count();
            assert_eq!(ok, STREAMS, "{}: {}", s.name(), herd[0].describe());
            res.conc
                .push((big.size as f64 * STREAMS as f64) / MIB / (last - first).as_secs_f64());
            let cpu = s.cpu().saturating_sub(cpu0).as_secs_f64();
            let singles = SINGLES * (1 + usize::from(pinned.is_some()));
            let gib = big.size as f64 * (STREAMS + singles) as f64 / GIB;
            res.cpu_per_gib.push(cpu / gib);
            let check = rt.block_on(herd::fetch(&url, &Ask::default(), 0, None));
            assert_eq!(check.digest, big.digest, "{}: digest", s.name());
        }
        // 2. 1 MiB blobs, wrk
        for (s, res) in servers.iter().zip(res.iter_mut()) {
            let w = bench::wrk(&s.blob_url(SMALL_REPO, &small), 2, STREAMS, WRK_SECS);
            assert!(
                w.requests_per_sec.is_finite() && w.non_2xx == 0,
                "{}: wrk:\n{}",
                s.name(),
                w.output
            );
            res.rps.push(w.requests_per_sec);
        }
        // 3. manifests
        for (s, res) in servers.iter().zip(res.iter_mut()) {
            if !s.is_mirror() {
                continue;
            }
            for (by_tag, r) in [(true, &tag), (false, &digest)] {
                let url = format!("{}/v2/{SMALL_REPO}/manifests/{r}", s.url());
                let mark = up.mark();
                let cpu0 = s.cpu();
                let (lat, errors) = manifest_gets(&rt, &url);
                let cpu_us =
                    s.cpu().saturating_sub(cpu0).as_secs_f64() * 1e6 / lat.len().max(1) as f64;
                let upstream = up.since(mark).len() as f64 / lat.len().max(1) as f64;
                let p = [quantile(&lat, 0.5), quantile(&lat, 0.99)].map(ms);
                let m = if by_tag {
                    &mut res.by_tag
                } else {
                    &mut res.by_digest
                };
                m.p50.push(p[0]);
                m.p99.push(p[1]);
                m.upstream.push(upstream);
                m.cpu_us.push(cpu_us);
                m.errors += errors;
            }
        }
    }
    for (s, res) in servers.iter().zip(res.iter_mut()) {
        res.rss_mib = s.peak_rss_kib() as f64 / 1024.0;
    }

    let cold_res = cold.then(|| cold_pulls(&up, repeats));
    let herd_res = cold.then(|| cold_herds(&rt, &up, &big, repeats));

    let hosting_res = hosting::measure(&up, repeats);
    let replicas_res = replicas::measure(&rt, repeats);
    let tls_res = tls::measure(&up, &big, &small, repeats);
    let scale_res = scale::measure(&rt, &up, &big, &small);
    let clients_res = clients::measure(&rt, &up, &small, repeats);

    print_header(
        &wharf_bin,
        repeats,
        &format!(
            "nginx `{}` (sendfile, worker_processes auto); ",
            bench::NGINX_BIN
        ),
    );
    print_table(&res, cold_res.as_ref(), herd_res.as_deref());
    hosting::print(&hosting_res);
    replicas::print(&replicas_res);
    tls::print(&tls_res);
    scale::print(&scale_res);
    clients::print(&clients_res);
}

/// The blobs the warm rows serve: the largest layer of `java/serverjre` (100 MiB) and a 1 MiB
/// layer of `os/oraclelinux`.
fn blobs_measured() -> (Descriptor, Descriptor) {
    let images = wharf_e2e::images();
    let big = images
        .serverjre
        .layers
        .iter()
        .max_by_key(|l| l.size)
        .expect("layers")
        .clone();
    (big, images.oraclelinux.layers[0].clone())
}

fn print_header(wharf_bin: &std::path::Path, repeats: usize, nginx: &str) {
    let load = loadavg();
    println!(
        "# wharf benchmark suite\n\nwharf `{}`; Distribution `{}` (proxy mode, the anchor; \
         a plain registry for hosting); {nginx}upstream Distribution with the test images. \
         {} CPUs, kernel {}; load average at the end {load}. {repeats} repeats, alternating; medians.\n",
        wharf_bin.display(),
        bench::REGISTRY_BIN,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        kernel(),
    );
}

enum Server<'a> {
    Wharf(&'a Wharf),
    Distribution(&'a DistributionProxy),
    Nginx(&'a Nginx),
}

impl Server<'_> {
    fn name(&self) -> &'static str {
        match self {
            Server::Wharf(_) => "wharf",
            Server::Distribution(_) => "Distribution",
            Server::Nginx(_) => "nginx",
        }
    }

    fn url(&self) -> String {
        match self {
            Server::Wharf(w) => w.url(),
            Server::Distribution(d) => d.url(),
            Server::Nginx(n) => n.url(),
        }
    }

    fn is_mirror(&self) -> bool {
        !matches!(self, Server::Nginx(_))
    }

    fn blob_url(&self, repo: &str, b: &Descriptor) -> String {
        format!("{}/v2/{repo}/blobs/{}", self.url(), b.digest)
    }

    fn pids(&self) -> Vec<u32> {
        match self {
            Server::Wharf(w) => w.pid().into_iter().collect(),
            Server::Distribution(d) => d.proc.pid().into_iter().collect(),
            Server::Nginx(n) => n.pids(),
        }
    }

    fn cpu(&self) -> Duration {
        self.pids().into_iter().filter_map(cpu_time).sum()
    }

    /// Keeps every thread of the server on `cpus` (a `taskset` list).
    fn pin(&self, cpus: &str) {
        for pid in self.pids() {
            let out = std::process::Command::new("taskset")
                .args(["-a", "-pc", cpus, &pid.to_string()])
                .output()
                .expect("taskset (util-linux)");
            assert!(
                out.status.success(),
                "taskset: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// Summed over the processes (nginx: master and workers).
    fn peak_rss_kib(&self) -> u64 {
        self.pids().into_iter().filter_map(peak_rss_kib).sum()
    }

    fn diagnose(&self) -> String {
        match self {
            Server::Wharf(w) => w.log(),
            Server::Nginx(n) => n.error_log(),
            Server::Distribution(_) => String::new(),
        }
    }
}

#[derive(Default)]
struct Latency {
    p50: Vec<f64>,
    p99: Vec<f64>,
    upstream: Vec<f64>,
    /// The server's CPU time per GET (user + system), µs.
    cpu_us: Vec<f64>,
    /// Failed GETs (a closed connection is counted, and connected again).
    errors: usize,
}

#[derive(Default)]
struct Results {
    single: Vec<f64>,
    /// One stream with curl and the server each kept on a core of its own.
    single_pinned: Vec<f64>,
    conc: Vec<f64>,
    rps: Vec<f64>,
    cpu_per_gib: Vec<f64>,
    rss_mib: f64,
    by_tag: Latency,
    by_digest: Latency,
}

#[derive(Default)]
struct Cold {
    /// Seconds: wharf, Distribution, straight from the upstream.
    wharf: Vec<f64>,
    dist: Vec<f64>,
    direct: Vec<f64>,
    /// Per cold pull through the mirror: upstream requests and MiB.
    wharf_reqs: Vec<f64>,
    wharf_mib: Vec<f64>,
    dist_reqs: Vec<f64>,
    dist_mib: Vec<f64>,
    /// The mirror's CPU seconds per cold pull (user + system, storing included).
    wharf_cpu: Vec<f64>,
    dist_cpu: Vec<f64>,
}

/// `skopeo copy docker://<mirror>/java/serverjre:latest dir:` on a fresh mirror each time, and
/// the same straight from the upstream; alternating.
fn cold_pulls(up: &Upstream, repeats: usize) -> Cold {
    let image = wharf_e2e::images().serverjre.reference();
    let skopeo = Skopeo::new();
    let mut c = Cold::default();
    for r in 0..repeats {
        eprintln!("[suite] cold pulls {}/{repeats}", r + 1);
        let pull = |host_port: &str| {
            let t0 = Instant::now();
            let out = skopeo.copy_direct(host_port, &image, &[]);
            let dt = t0.elapsed().as_secs_f64();
            assert!(out.ok(), "skopeo copy from {host_port}: {}", out.out);
            let _ = std::fs::remove_dir_all(&out.dest);
            dt
        };
        // Seconds, upstream requests, upstream MiB, the mirror's CPU seconds.
        let mirrored = |host_port: &str, pid: Option<u32>| {
            let mark = up.mark();
            let cpu = || pid.and_then(cpu_time).unwrap_or_default();
            let cpu0 = cpu();
            let secs = pull(host_port);
            // Distribution finishes storing in the background: the log settles in `since`.
            std::thread::sleep(Duration::from_secs(1));
            let seen = up.since(mark);
            let mib = seen.iter().map(|q| q.bytes).sum::<u64>() as f64 / MIB;
            let cpu_s = cpu().saturating_sub(cpu0).as_secs_f64();
            (secs, seen.len() as f64, mib, cpu_s)
        };
        {
            let w = Wharf::for_upstream(up);
            let (secs, reqs, mib, cpu) = mirrored(&w.host_port(), w.pid());
            c.wharf.push(secs);
            c.wharf_reqs.push(reqs);
            c.wharf_mib.push(mib);
            c.wharf_cpu.push(cpu);
        }
        {
            let d = DistributionProxy::start(up);
            let hp = format!("127.0.0.1:{}", d.port);
            let (secs, reqs, mib, cpu) = mirrored(&hp, d.proc.pid());
            c.dist.push(secs);
            c.dist_reqs.push(reqs);
            c.dist_mib.push(mib);
            c.dist_cpu.push(cpu);
        }
        c.direct.push(pull(&up.host_port()));
    }
    c
}

/// One herd size's cold runs on each mirror.
#[derive(Default)]
struct ColdHerd {
    clients: usize,
    /// Per mirror (wharf, Distribution): upstream GETs of the blob, upstream MiB for it,
    /// seconds from the first request sent to the last client done.
    gets: [Vec<f64>; 2],
    mib: [Vec<f64>; 2],
    secs: [Vec<f64>; 2],
}

/// HERD_SIZES clients at once on the cold 100 MiB blob, each time through a fresh wharf and a
/// fresh Distribution proxy; what reached the upstream for that blob, and when the last client
/// was done. (`bench/herd.rs` has more on herds: first-byte spread, warm herds, a 1 GiB blob.)
fn cold_herds(
    rt: &tokio::runtime::Runtime,
    up: &Upstream,
    big: &Descriptor,
    repeats: usize,
) -> Vec<ColdHerd> {
    let mut out = Vec::new();
    for clients in HERD_SIZES {
        let mut h = ColdHerd {
            clients,
            ..ColdHerd::default()
        };
        for r in 0..repeats {
            eprintln!("[suite] cold herd of {clients}, {}/{repeats}", r + 1);
            for mirror in 0..2 {
                let (wharf, dist);
                let (url, pid) = if mirror == 0 {
                    wharf = Wharf::for_upstream(up);
                    (wharf.url(), wharf.pid())
                } else {
                    dist = DistributionProxy::start(up);
                    (dist.url(), dist.proc.pid())
                };
                let url = format!("{url}/v2/{BIG_REPO}/blobs/{}", big.digest);
                let run = herd::measure(rt, up, &url, &big.digest, clients, false, pid);
                assert_eq!(
                    run.complete(),
                    clients,
                    "cold herd: {}",
                    run.outcomes[0].describe()
                );
                assert_eq!(run.right, run.checked, "cold herd: digest after");
                h.gets[mirror].push(run.upstream_gets as f64);
                h.mib[mirror].push(run.upstream_bytes as f64 / MIB);
                h.secs[mirror].push(run.total().as_secs_f64());
            }
        }
        out.push(h);
    }
    out
}

fn print_table(res: &[Results], cold: Option<&Cold>, herds: Option<&[ColdHerd]>) {
    let [w, d, n] = res else {
        unreachable!("three servers")
    };
    println!(
        "| metric (median of the repeats) | wharf | Distribution proxy (anchor) | nginx sendfile | \
         wharf / nginx | wharf / anchor | issue 8 target | met |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    // Higher is better: target is a minimum ratio to nginx.
    let row_vs_nginx = |name: &str, a: f64, b: f64, c: f64, min: f64, dec: usize| {
        let r = a / c;
        println!(
            "| {name} | {} | {} | {} | {:.2}x | {:.2}x | >= {min}x nginx | {} |",
            f(a, dec),
            f(b, dec),
            f(c, dec),
            r,
            a / b,
            yes(r >= min)
        );
    };
    // Its rows: the name, the samples, the least ratio to nginx the issue asks for.
    type Samples = fn(&Results) -> &[f64];
    let higher_is_better: [(&str, Samples, f64); 4] = [
        (
            "warm 100 MiB blob, 1 stream (3 GETs a repeat), MiB/s",
            |r| &r.single,
            0.9,
        ),
        (
            "the same, client and server each on a core of its own (`taskset`), MiB/s",
            |r| &r.single_pinned,
            0.95,
        ),
        (
            "warm 100 MiB blob, 16 streams, aggregate MiB/s",
            |r| &r.conc,
            0.9,
        ),
        ("1 MiB blob, `wrk -t2 -c16 -d5s`, req/s", |r| &r.rps, 0.8),
    ];
    for (name, samples, min) in higher_is_better {
        row_vs_nginx(
            name,
            med(samples(w)),
            med(samples(d)),
            med(samples(n)),
            min,
            0,
        );
    }
    let (a, b, c) = (
        med(&w.cpu_per_gib),
        med(&d.cpu_per_gib),
        med(&n.cpu_per_gib),
    );
    println!(
        "| server CPU s per GiB served (the 3 + 3 + 16 streams) | {} | {} | {} | {:.2}x | {:.2}x | <= nginx | {} |",
        f(a, 3),
        f(b, 3),
        f(c, 3),
        a / c,
        a / b,
        yes(a <= c)
    );
    println!(
        "| peak RSS (VmHWM) after the warm runs, MiB | {} | {} | {} (master + workers) | {:.2}x | {:.2}x | < 32 MiB | {} |",
        f(w.rss_mib, 1),
        f(d.rss_mib, 1),
        f(n.rss_mib, 1),
        w.rss_mib / n.rss_mib,
        w.rss_mib / d.rss_mib,
        yes(w.rss_mib < 32.0)
    );
    for (what, wl, dl, limit) in [
        ("by tag (within TTL)", &w.by_tag, &d.by_tag, 0.5),
        ("by digest", &w.by_digest, &d.by_digest, 0.3),
    ] {
        println!(
            "| manifest {what}, p50 / p99 ms ({MANIFEST_GETS} GETs, one connection) | {} / {} | {} / {} | — | — | {:.2}x / {:.2}x | p99 < {limit} ms | {} |",
            f(med(&wl.p50), 3),
            f(med(&wl.p99), 3),
            f(med(&dl.p50), 3),
            f(med(&dl.p99), 3),
            med(&wl.p50) / med(&dl.p50),
            med(&wl.p99) / med(&dl.p99),
            yes(med(&wl.p99) < limit)
        );
        println!(
            "| manifest {what}, server CPU per GET, µs | {} | {} | — | — | {:.2}x | — | — |",
            f(med(&wl.cpu_us), 0),
            f(med(&dl.cpu_us), 0),
            med(&wl.cpu_us) / med(&dl.cpu_us),
        );
        println!(
            "| manifest {what}, upstream requests per GET (failed GETs, all repeats) | {} ({}) | {} ({}) | — | — | — | 0 | {} |",
            f(med(&wl.upstream), 3),
            wl.errors,
            f(med(&dl.upstream), 3),
            dl.errors,
            yes(med(&wl.upstream) == 0.0)
        );
    }
    if let Some(c) = cold {
        let direct = med(&c.direct);
        println!(
            "| cold pull of java/serverjre:latest (300 MiB, 5 layers), skopeo, s | {} | {} | {} (straight from the upstream) | — | {:.2}x | <= 1.1x direct | {} ({:.2}x) |",
            f(med(&c.wharf), 2),
            f(med(&c.dist), 2),
            f(direct, 2),
            med(&c.wharf) / med(&c.dist),
            yes(med(&c.wharf) <= 1.1 * direct),
            med(&c.wharf) / direct
        );
        println!(
            "| upstream requests / MiB per cold pull | {} / {} | {} / {} | — | — | — | — | — |",
            f(med(&c.wharf_reqs), 0),
            f(med(&c.wharf_mib), 0),
            f(med(&c.dist_reqs), 0),
            f(med(&c.dist_mib), 0),
        );
        println!(
            "| mirror CPU s per cold pull (receive, hash, store, serve) | {} | {} | — | — | {:.2}x | — | — |",
            f(med(&c.wharf_cpu), 2),
            f(med(&c.dist_cpu), 2),
            med(&c.wharf_cpu) / med(&c.dist_cpu),
        );
    }
    for h in herds.unwrap_or_default() {
        let n = h.clients;
        println!(
            "| {n} clients at once on the cold 100 MiB blob: upstream GETs / MiB for it | {} / {} | {} / {} | — | — | — | 1 GET | {} |",
            f(med(&h.gets[0]), 0),
            f(med(&h.mib[0]), 0),
            f(med(&h.gets[1]), 0),
            f(med(&h.mib[1]), 0),
            yes(h.gets[0].iter().all(|g| *g == 1.0)),
        );
        println!(
            "| {n} clients at once on the cold 100 MiB blob: last client done, s | {} | {} | — | — | {:.2}x | — | — |",
            f(med(&h.secs[0]), 2),
            f(med(&h.secs[1]), 2),
            med(&h.secs[0]) / med(&h.secs[1]),
        );
    }
    println!(
        "\nSamples (MiB/s 1 stream | pinned | 16 streams | req/s): wharf {:?} | {:?} | {:?} | {:?}; Distribution {:?} | {:?} | {:?} | {:?}; nginx {:?} | {:?} | {:?} | {:?}",
        r0(&w.single),
        r0(&w.single_pinned),
        r0(&w.conc),
        r0(&w.rps),
        r0(&d.single),
        r0(&d.single_pinned),
        r0(&d.conc),
        r0(&d.rps),
        r0(&n.single),
        r0(&n.single_pinned),
        r0(&n.conc),
        r0(&n.rps)
    );
}

/// The CPUs a process may run on, as `/proc/<pid>/status` lists them (`0-1`, `0,2-3`): a
/// `taskset` list.
fn allowed_cpus(pid: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?;
    Some(list.trim().to_owned())
}

/// The first and the last CPU this process may use, for a client and a server; `None` when it
/// has only one.
fn two_cores() -> Option<[String; 2]> {
    let list = allowed_cpus("self")?;
    let cpus: Vec<&str> = list.split([',', '-']).collect();
    let (first, last) = (cpus.first()?, cpus.last()?);
    (first != last).then(|| [first.to_string(), last.to_string()])
}

/// `curl -o /dev/null` of `url` (on the CPUs `pin` lists, if given): MiB/s over curl's total
/// time, after checking the size.
fn curl_mib_per_s(url: &str, size: u64, pin: Option<&str>) -> f64 {
    let mut cmd = match pin {
        Some(cpus) => {
            let mut c = std::process::Command::new("taskset");
            c.args(["-c", cpus, "curl"]);
            c
        }
        None => std::process::Command::new("curl"),
    };
    let out = cmd
        .args(["-sS", "--max-time", "120", "-o", "/dev/null"])
        .args(["-w", "%{size_download} %{time_total}", url])
        .output()
        .expect("curl (apt-get install curl)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut fields = text.split_whitespace();
    let got: u64 = fields.next().and_then(|v| v.parse().ok()).unwrap_or(0);
    let secs: f64 = fields
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN);
    assert!(
        out.status.success() && got == size,
        "curl {url}: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    size as f64 / MIB / secs
}

/// `MANIFEST_GETS` sequential GETs of the manifest at `url` on one connection, with a
/// registry client's `Accept`: sorted latencies, and the GETs that failed.
fn manifest_gets(rt: &tokio::runtime::Runtime, url: &str) -> (Vec<Duration>, usize) {
    rt.block_on(sequential_latencies(
        url,
        &[("Accept", MANIFEST_ACCEPT)],
        MANIFEST_GETS,
        Duration::from_secs(120),
    ))
    .expect("manifest GETs")
}

/// Rows of `| name | wharf | nginx | wharf / nginx |`, each the medians of its samples with
/// `dec` decimals.
fn ratio_rows<N: std::fmt::Display>(rows: &[(N, &[Vec<f64>; 2], usize)]) {
    for (name, [w, n], dec) in rows {
        println!(
            "| {name} | {} | {} | {:.2}x |",
            f(med(w), *dec),
            f(med(n), *dec),
            med(w) / med(n)
        );
    }
}

fn r0(v: &[f64]) -> Vec<i64> {
    v.iter().map(|x| x.round() as i64).collect()
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "**no**" }
}

fn f(v: f64, dec: usize) -> String {
    format!("{v:.dec$}")
}

fn med(v: &[f64]) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return f64::NAN;
    }
    s.sort_by(f64::total_cmp);
    let m = s.len() / 2;
    if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    }
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}
