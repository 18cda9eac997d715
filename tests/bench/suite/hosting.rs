//! The suite's hosting rows (issue 16): a push and a pull of `java/serverjre:latest` (300 MiB,
//! 5 layers) to a hosted repository of wharf and to the CNCF Distribution registry (Debian's
//! `docker-registry`, plain, with empty writable storage), side by side.
//!
//! The client is the same for both: skopeo copies a local `dir:` layout of the image (taken
//! once from the upstream) to `docker://<server>/bench/serverjre:v1`, then back into a fresh
//! `dir:`, whose manifest digest must be the image's. Each repeat starts both servers afresh,
//! so every blob is really sent. Per server and repeat: the push's and the pull's wall time,
//! the server's CPU time (utime + stime from `/proc/<pid>/stat`) per GiB moved by each, and
//! its peak RSS (`VmHWM`) after both. wharf takes the push with Basic auth (a user of its
//! htpasswd file; bcrypt runs once, then the check is remembered) and serves pulls
//! anonymously; Distribution runs without auth, as a plain registry is usually run behind
//! its own proxy.

use std::process::Command;
use std::time::Duration;

use tokio::time::Instant;
use wharf_e2e::bench::{cpu_time, peak_rss_kib};
use wharf_e2e::process::run;
use wharf_e2e::registry::Storage;
use wharf_e2e::util::temp_dir;
use wharf_e2e::{Skopeo, Upstream, UpstreamCfg, Wharf};

use super::{GIB, f, med};

const USER: &str = "bench";
const PASSWORD: &str = "benchpass";
const REPO: &str = "bench/serverjre:v1";

/// Samples per server: [wharf, Distribution].
#[derive(Default)]
pub(crate) struct Hosting {
    push_s: [Vec<f64>; 2],
    pull_s: [Vec<f64>; 2],
    push_cpu_per_gib: [Vec<f64>; 2],
    pull_cpu_per_gib: [Vec<f64>; 2],
    rss_mib: [Vec<f64>; 2],
}

/// `repeats` pushes and pulls on each server, alternating.
pub(crate) fn measure(up: &Upstream, repeats: usize) -> Hosting {
    let image = &wharf_e2e::images().serverjre;
    let skopeo = Skopeo::new();
    let layout = skopeo
        .copy_direct(&up.host_port(), &image.reference(), &[])
        .expect_ok("a dir: layout of java/serverjre:latest");
    let bytes: u64 =
        image.layers.iter().map(|l| l.size).sum::<u64>() + image.config.size + image.manifest.size;
    let gib = bytes as f64 / GIB;
    let auth = temp_dir("bench-hosting");
    let htpasswd = auth.path().join("htpasswd");
    run(
        Command::new("htpasswd")
            .arg("-cbB")
            .arg(&htpasswd)
            .args([USER, PASSWORD]),
        Duration::from_secs(30),
    )
    .expect_ok("htpasswd (apt-get install apache2-utils)");
    let creds = format!("{USER}:{PASSWORD}");

    let mut h = Hosting::default();
    for r in 0..repeats {
        eprintln!("[suite] hosting: push and pull, {}/{repeats}", r + 1);
        for server in 0..2 {
            let (wharf, dist);
            let (host_port, pid, extra): (String, Option<u32>, Vec<&str>) = if server == 0 {
                wharf = Wharf::builder()
                    .upstream(UpstreamCfg::oracle(up))
                    .extra_toml(&format!(
                        "[auth]\nhtpasswd = {:?}\nanonymous_pull = true\n\n\
                         [hosted]\nrepositories = [\"bench/*\"]\n",
                        htpasswd.display().to_string()
                    ))
                    .start();
                (
                    wharf.host_port(),
                    wharf.pid(),
                    vec!["--dest-creds", creds.as_str()],
                )
            } else {
                dist = Upstream::builder().storage(Storage::Empty).start();
                (dist.host_port(), dist.pid(), Vec::new())
            };
            let cpu = || pid.and_then(cpu_time).unwrap_or_default();
            let dest = format!("{host_port}/{REPO}");

            let (cpu0, t0) = (cpu(), Instant::now());
            let out = skopeo.push_dir(&layout.dest, &dest, &extra);
            let push_s = t0.elapsed().as_secs_f64();
            assert!(out.ok(), "skopeo push to {dest}:\n{out}");
            let (cpu1, t1) = (cpu(), Instant::now());
            let back = skopeo.copy_direct(&host_port, REPO, &[]);
            let pull_s = t1.elapsed().as_secs_f64();
            let cpu2 = cpu();
            assert!(back.ok(), "skopeo pull from {dest}:\n{}", back.out);
            assert_eq!(back.digest(), image.manifest.digest, "{dest}: digest");
            let _ = std::fs::remove_dir_all(&back.dest);

            h.push_s[server].push(push_s);
            h.pull_s[server].push(pull_s);
            h.push_cpu_per_gib[server].push(cpu1.saturating_sub(cpu0).as_secs_f64() / gib);
            h.pull_cpu_per_gib[server].push(cpu2.saturating_sub(cpu1).as_secs_f64() / gib);
            let rss = pid.and_then(peak_rss_kib).unwrap_or_default();
            h.rss_mib[server].push(rss as f64 / 1024.0);
        }
    }
    h
}

/// The hosting table: wharf, Distribution, and their ratio (medians of the repeats).
pub(crate) fn print(h: &Hosting) {
    println!(
        "\n| hosting: java/serverjre:latest (300 MiB, 5 layers), skopeo `dir:` -> registry -> `dir:` \
         (median of the repeats) | wharf (hosted) | Distribution registry | wharf / Distribution |"
    );
    println!("|---|---|---|---|");
    let rows: [(&str, &[Vec<f64>; 2], usize); 5] = [
        ("push, s", &h.push_s, 2),
        ("pull, s", &h.pull_s, 2),
        ("server CPU s per GiB pushed", &h.push_cpu_per_gib, 3),
        ("server CPU s per GiB pulled", &h.pull_cpu_per_gib, 3),
        ("peak RSS (VmHWM) after push and pull, MiB", &h.rss_mib, 1),
    ];
    for (name, [w, d], dec) in rows {
        println!(
            "| {name} | {} | {} | {:.2}x |",
            f(med(w), dec),
            f(med(d), dec),
            med(w) / med(d)
        );
    }
    println!(
        "\nSamples (push s | pull s): wharf {:?} | {:?}; Distribution {:?} | {:?}",
        r2(&h.push_s[0]),
        r2(&h.pull_s[0]),
        r2(&h.push_s[1]),
        r2(&h.pull_s[1])
    );
}

fn r2(v: &[f64]) -> Vec<f64> {
    v.iter().map(|x| (x * 100.0).round() / 100.0).collect()
}
