//! The suite's TLS and HTTP/2 rows (issue 18): wharf and nginx serving the same 100 MiB and
//! 1 MiB blobs over TLS with the same certificate (an RSA leaf and its intermediate, from the
//! test PKI), side by side. nginx: `ssl_session_cache`, keep-alive, `http2` on the listener,
//! `sendfile` (which TLS turns into copies); wharf: rustls with its ring provider, ALPN h2 and
//! http/1.1.
//!
//! Per repeat and server: one stream with curl over HTTP/1.1 and over HTTP/2 (`SINGLES` GETs
//! each), 16 streams with `curl --parallel` over HTTP/1.1 (16 connections) and over HTTP/2 (16
//! streams multiplexed on one connection), MiB/s; the 1 MiB blob with `wrk -t2 -c16` over TLS,
//! requests per second; the server's CPU time per GiB over the streaming runs.
//! `SUITE_ONLY=tls` runs only these rows.

use std::path::Path;
use std::process::Command;

use tokio::time::Instant;
use wharf_e2e::bench::{self, Nginx};
use wharf_e2e::images::Descriptor;
use wharf_e2e::{Upstream, UpstreamCfg, Wharf};
use wharf_testkit::Pki;

use super::{GIB, MIB, SINGLES, STREAMS, Server, WRK_SECS, med};

/// Samples per server: [wharf, nginx].
#[derive(Default)]
pub(crate) struct Tls {
    one_h1: [Vec<f64>; 2],
    one_h2: [Vec<f64>; 2],
    many_h1: [Vec<f64>; 2],
    many_h2: [Vec<f64>; 2],
    rps: [Vec<f64>; 2],
    cpu_per_gib: [Vec<f64>; 2],
    /// curl's own CPU s per GiB over the one-stream runs, HTTP/1.1 and HTTP/2.
    client_h1: [Vec<f64>; 2],
    client_h2: [Vec<f64>; 2],
}

/// `curl` over TLS trusting `ca`: `n` GETs of `url` at once (`--parallel`), HTTP/2 or 1.1;
/// aggregate MiB/s from the first request to the last byte, and curl's CPU s per GiB. Every GET
/// must bring `size` bytes.
fn curl(url: &str, ca: &Path, h2: bool, n: usize, size: u64) -> (f64, f64) {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "--fail",
        "--max-time",
        "300",
        "-w",
        "%{size_download}\n",
        "--cacert",
    ])
    .arg(ca)
    .arg(if h2 { "--http2" } else { "--http1.1" });
    if n > 1 {
        cmd.args(["--parallel", "--parallel-max", &n.to_string()]);
        if !h2 {
            // One connection per transfer; over h2, curl multiplexes them on one.
            cmd.arg("--parallel-immediate");
        }
    }
    for _ in 0..n {
        cmd.args(["-o", "/dev/null", url]);
    }
    let (t0, cpu0) = (Instant::now(), bench::children_cpu_time());
    let out = cmd.output().expect("curl (apt-get install curl)");
    let secs = t0.elapsed().as_secs_f64();
    let cpu = bench::children_cpu_time()
        .saturating_sub(cpu0)
        .as_secs_f64();
    let got = String::from_utf8_lossy(&out.stdout).into_owned();
    let sizes: Vec<&str> = got.split_whitespace().collect();
    assert!(
        out.status.success() && sizes.len() == n && sizes.iter().all(|s| *s == size.to_string()),
        "curl {url}: sizes {got:?}, {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = size as f64 * n as f64;
    (bytes / MIB / secs, cpu / (bytes / GIB))
}

pub(crate) fn measure(up: &Upstream, big: &Descriptor, small: &Descriptor, repeats: usize) -> Tls {
    let pki = Pki::new();
    let files = pki.leaf("bench-tls", 10);
    let ca = pki.root();
    let wharf = Wharf::builder()
        .upstream(UpstreamCfg::oracle(up))
        .tls(&files)
        .start();
    let nginx = Nginx::serving_tls(up.storage_dir(), &files);
    let servers = [Server::Wharf(&wharf), Server::Nginx(&nginx)];
    // Warm wharf (nginx serves the upstream's files): each blob once, through its repository.
    for (d, repo) in [(big, super::BIG_REPO), (small, super::SMALL_REPO)] {
        curl(&servers[0].blob_url(repo, d), &ca, false, 1, d.size);
    }
    let mut t = Tls::default();
    for r in 0..repeats {
        eprintln!("[suite] tls: {}/{repeats}", r + 1);
        for (i, s) in servers.iter().enumerate() {
            let url = s.blob_url(super::BIG_REPO, big);
            let cpu0 = s.cpu();
            // curl's CPU is counted in 10 ms ticks: summed over the GETs, then averaged.
            let mut client = [0.0; 2];
            for _ in 0..SINGLES {
                for (h2, rates) in [(false, &mut t.one_h1[i]), (true, &mut t.one_h2[i])] {
                    let (rate, cpu) = curl(&url, &ca, h2, 1, big.size);
                    rates.push(rate);
                    client[usize::from(h2)] += cpu / SINGLES as f64;
                }
            }
            t.client_h1[i].push(client[0]);
            t.client_h2[i].push(client[1]);
            t.many_h1[i].push(curl(&url, &ca, false, STREAMS, big.size).0);
            t.many_h2[i].push(curl(&url, &ca, true, STREAMS, big.size).0);
            let gib = big.size as f64 * (2 * SINGLES + 2 * STREAMS) as f64 / GIB;
            t.cpu_per_gib[i].push(s.cpu().saturating_sub(cpu0).as_secs_f64() / gib);
            let w = bench::wrk(&s.blob_url(super::SMALL_REPO, small), 2, STREAMS, WRK_SECS);
            assert!(
                w.requests_per_sec.is_finite() && w.non_2xx == 0,
                "wrk over TLS:\n{}",
                w.output
            );
            t.rps[i].push(w.requests_per_sec);
        }
    }
    t
}

pub(crate) fn print(t: &Tls) {
    println!(
        "\n| TLS (same certificate; median of the repeats) | wharf (rustls) | nginx (OpenSSL) | wharf / nginx |"
    );
    println!("|---|---|---|---|");
    let rows: [(&str, &[Vec<f64>; 2], usize); 6] = [
        ("warm 100 MiB blob, 1 stream, HTTP/1.1, MiB/s", &t.one_h1, 0),
        ("warm 100 MiB blob, 1 stream, HTTP/2, MiB/s", &t.one_h2, 0),
        (
            "warm 100 MiB blob, 16 connections, HTTP/1.1, aggregate MiB/s",
            &t.many_h1,
            0,
        ),
        (
            "warm 100 MiB blob, 16 streams on one HTTP/2 connection, aggregate MiB/s",
            &t.many_h2,
            0,
        ),
        ("1 MiB blob, `wrk -t2 -c16` over TLS, req/s", &t.rps, 0),
        (
            "server CPU s per GiB served (the streaming runs)",
            &t.cpu_per_gib,
            3,
        ),
    ];
    super::ratio_rows(&rows);
    println!(
        "| wharf HTTP/2 / HTTP/1.1, 1 stream; 16 streams | {:.2}x; {:.2}x | {:.2}x; {:.2}x | |",
        med(&t.one_h2[0]) / med(&t.one_h1[0]),
        med(&t.many_h2[0]) / med(&t.many_h1[0]),
        med(&t.one_h2[1]) / med(&t.one_h1[1]),
        med(&t.many_h2[1]) / med(&t.many_h1[1]),
    );
    // One stream over HTTP/2 is as fast as curl can take it: the client's cost is its floor.
    println!(
        "| client (curl) CPU s per GiB, 1 stream, HTTP/1.1; HTTP/2 | {:.3}; {:.3} | {:.3}; {:.3} | |",
        med(&t.client_h1[0]),
        med(&t.client_h2[0]),
        med(&t.client_h1[1]),
        med(&t.client_h2[1]),
    );
}
