//! The suite's many-clients rows (issue 18): wharf and nginx on 2,000 connections at once, and
//! what 10,000 idle keep-alive connections cost each of them.
//!
//! - `wrk -t2 -c2000 -d10s --latency` on the cached 1 MiB blob: requests per second and p99,
//!   and wrk's socket errors (connect, read, write, timeout), per repeat;
//! - 10,000 connections that each GET the image's config blob (a few KiB) once and then stay
//!   open, idle: the server's resident memory (`VmRSS`; nginx: master and workers) with them
//!   open 2 s after the last answer, less before, per connection.
//!
//! wharf runs with `server.max_connections = 12000` (its default, 4096, would close the
//! longest-idle connections to admit new ones), nginx with `worker_connections 16384` and
//! `worker_rlimit_nofile 20000`; this process raises its own descriptor limit to the hard one
//! (both servers inherit it). `SUITE_ONLY=clients` runs only these rows.

use std::net::SocketAddr;
use std::time::Duration;

use wharf_e2e::bench::{self, Nginx};
use wharf_e2e::images::Descriptor;
use wharf_e2e::memory::{get_request, open_idle, raise_fd_limit, rss_kib};
use wharf_e2e::{Http, Upstream, UpstreamCfg, Wharf};

use super::SMALL_REPO;

const CONNS: usize = 2000;
const IDLE: usize = 10_000;
const WRK_SECS: u64 = 10;

/// Per server: [wharf, nginx].
#[derive(Default)]
pub(crate) struct Clients {
    rps: [Vec<f64>; 2],
    p99_ms: [Vec<f64>; 2],
    socket_errors: [u64; 2],
    /// Resident bytes per idle connection.
    idle_bytes: [f64; 2],
}

fn rss(pids: &[u32]) -> u64 {
    pids.iter().map(|p| rss_kib(*p)).sum()
}

/// Resident bytes per connection of `n` idle ones to `addr`, on the processes `pids`.
fn idle_cost(rt: &tokio::runtime::Runtime, addr: SocketAddr, path: &str, pids: &[u32]) -> f64 {
    let before = rss(pids);
    let open = rt.block_on(open_idle(addr, IDLE, &get_request(path)));
    std::thread::sleep(Duration::from_secs(2));
    let with = rss(pids);
    drop(open);
    with.saturating_sub(before) as f64 * 1024.0 / IDLE as f64
}

pub(crate) fn measure(
    rt: &tokio::runtime::Runtime,
    up: &Upstream,
    small: &Descriptor,
    repeats: usize,
) -> Clients {
    let limit = raise_fd_limit();
    assert!(
        limit >= (IDLE + 512) as u64,
        "ulimit -n is {limit}: {IDLE} idle connections need more"
    );
    let wharf = Wharf::builder()
        .upstream(UpstreamCfg::oracle(up))
        .server_extra(&format!("max_connections = {}", IDLE + 2000))
        .start();
    let nginx = Nginx::serving_many(up.storage_dir());
    let config = &wharf_e2e::images().oraclelinux.config;
    let servers: [(String, Vec<u32>); 2] = [
        (wharf.url(), wharf.pid().into_iter().collect()),
        (nginx.url(), nginx.pids()),
    ];
    for d in [small, config] {
        let url = format!("{}/v2/{SMALL_REPO}/blobs/{}", wharf.url(), d.digest);
        assert_eq!(Http::new().get(&url, &[]).status, 200, "warm-up {url}");
    }
    let mut c = Clients::default();
    for r in 0..repeats {
        eprintln!("[suite] clients: {}/{repeats}", r + 1);
        for (i, (base, _)) in servers.iter().enumerate() {
            let url = format!("{base}/v2/{SMALL_REPO}/blobs/{}", small.digest);
            let w = bench::wrk(&url, 2, CONNS, WRK_SECS);
            assert!(
                w.requests_per_sec.is_finite() && w.non_2xx == 0,
                "wrk -c{CONNS}:\n{}",
                w.output
            );
            c.rps[i].push(w.requests_per_sec);
            c.p99_ms[i].push(w.p99_ms);
            c.socket_errors[i] += w.socket_errors;
        }
    }
    let path = format!("/v2/{SMALL_REPO}/blobs/{}", config.digest);
    for (i, (base, pids)) in servers.iter().enumerate() {
        let addr: SocketAddr = base
            .trim_start_matches("http://")
            .parse()
            .expect("server address");
        c.idle_bytes[i] = idle_cost(rt, addr, &path, pids);
    }
    c
}

pub(crate) fn print(c: &Clients) {
    println!("\n| many clients (median of the repeats) | wharf | nginx | wharf / nginx |");
    println!("|---|---|---|---|");
    let rows: [(String, &[Vec<f64>; 2], usize); 2] = [
        (
            format!("1 MiB blob, `wrk -t2 -c{CONNS} -d{WRK_SECS}s`, req/s"),
            &c.rps,
            0,
        ),
        ("the same, p99 ms".to_owned(), &c.p99_ms, 1),
    ];
    super::ratio_rows(&rows);
    println!(
        "| the same, wrk's socket errors (all repeats) | {} | {} | |",
        c.socket_errors[0], c.socket_errors[1]
    );
    // nginx allocates its table of `worker_connections` when it starts: what connections
    // cost it is resident before they open, so its growth says little.
    println!(
        "| {IDLE} idle keep-alive connections, resident KiB each (growth with them open) | {:.1} | {:.1} (preallocated) | |",
        c.idle_bytes[0] / 1024.0,
        c.idle_bytes[1] / 1024.0,
    );
}
