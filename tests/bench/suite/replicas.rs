//! The suite's scale-out rows (issue 19): three replicas of wharf sharing one Garage
//! (`[object_store]`) and knowing each other (`[cluster]`), against one wharf alone, on the
//! same upstream and the same machine.
//!
//! Per repeat, each side gets a fresh 100 MiB blob pushed to the upstream (so it is cold), then:
//!
//! 1. cold herd: 48 clients at once (16 on each replica, or 48 on the one wharf): the time until
//!    the last client is done, and the upstream's GETs and bytes for the blob (its access log);
//! 2. warm: 48 streams again, now every replica holds it: aggregate MiB/s;
//! 3. the object-store hit path: a fourth replica with an empty disk (`[object_store]` only)
//!    GETs the blob once: its CPU time (utime + stime) per GiB, beside a fresh single wharf
//!    filling the same size from the upstream.
//!
//! On two cores shared by the clients, the upstream, Garage and every replica, three replicas
//! cannot serve more than one: the rows show what the fleet costs and saves (upstream bytes),
//! not how it scales across machines. `SUITE_ONLY=replicas` runs only these rows.

use std::time::Duration;

use tokio::time::Instant;
use wharf_e2e::bench::cpu_time;
use wharf_e2e::herd::{self, Ask, Outcome};
use wharf_e2e::images::Descriptor;
use wharf_e2e::push::Pusher;
use wharf_e2e::registry::Storage;
use wharf_e2e::{Http, Upstream, UpstreamCfg, Wharf};
use wharf_testkit::garage::Garage;

use super::{GIB, MIB, f, med};

const SIZE: usize = 100 << 20;
const CLIENTS: usize = 48;
const REPO: &str = "bench/fleet";

/// Samples per side: [3 replicas, 1 wharf].
#[derive(Default)]
pub(crate) struct Replicas {
    cold_s: [Vec<f64>; 2],
    upstream_gets: [Vec<f64>; 2],
    upstream_mib: [Vec<f64>; 2],
    warm_mib_s: [Vec<f64>; 2],
    /// [object-store hit on an empty replica, upstream fill on a fresh wharf]
    cpu_per_gib: [Vec<f64>; 2],
}

fn push_blob(up: &Upstream, label: &str) -> Descriptor {
    Pusher {
        base: up.url(),
        http: &Http::new(),
    }
    .random_blob(REPO, label, SIZE)
}

fn url(w: &Wharf, d: &Descriptor) -> String {
    format!("{}/v2/{REPO}/blobs/{}", w.url(), d.digest)
}

/// `CLIENTS` clients spread evenly over `ws`, all at once; (seconds from the first request to
/// the last byte, aggregate MiB/s).
fn herd_over(rt: &tokio::runtime::Runtime, ws: &[&Wharf], d: &Descriptor) -> (f64, f64) {
    let ask = Ask {
        hash: false,
        timeout: Duration::from_secs(300),
        ..Ask::default()
    };
    let per = CLIENTS / ws.len();
    let urls: Vec<String> = ws.iter().map(|w| url(w, d)).collect();
    let outcomes: Vec<Outcome> = rt.block_on(async {
        let runs = urls.iter().map(|u| herd::run(u, per, &ask, None));
        futures_util::future::join_all(runs)
            .await
            .into_iter()
            .flatten()
            .collect()
    });
    for o in &outcomes {
        assert!(o.complete(), "{}", o.describe());
        assert_eq!(o.received, d.size, "{}", o.describe());
    }
    let first = outcomes.iter().map(|o| o.sent).min().expect("clients");
    let last = outcomes.iter().map(|o| o.done).max().expect("clients");
    let secs = (last - first).as_secs_f64();
    (secs, d.size as f64 * outcomes.len() as f64 / MIB / secs)
}

/// One GET of `d` through `w` (the digest checked); `w`'s CPU seconds per GiB for it.
fn one_get_cpu_per_gib(rt: &tokio::runtime::Runtime, w: &Wharf, d: &Descriptor) -> f64 {
    let pid = w.pid().expect("pid");
    let cpu0 = cpu_time(pid).unwrap_or_default();
    let o = rt.block_on(herd::fetch(&url(w, d), &Ask::default(), 0, None));
    assert_eq!(o.digest, d.digest, "{}", o.describe());
    // The fill's last writes (fsync, rename) finish after the last byte went out.
    std::thread::sleep(Duration::from_millis(300));
    let cpu = cpu_time(pid).unwrap_or_default().saturating_sub(cpu0);
    cpu.as_secs_f64() / (d.size as f64 / GIB)
}

pub(crate) fn measure(rt: &tokio::runtime::Runtime, repeats: usize) -> Replicas {
    let up = Upstream::builder().storage(Storage::Empty).start();
    let garage = Garage::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = UpstreamCfg::oracle(&up);
    let mut res = Replicas::default();
    for r in 0..repeats {
        eprintln!(
            "[suite] replicas: 3 with Garage against 1, {}/{repeats}",
            r + 1
        );
        let store =
            wharf_e2e::fleet::object_store_toml(&garage, dir.path(), &format!("bench-{r}"), "");
        let (fleet, _) = wharf_e2e::fleet::fleet(3, &cfg, &store, "");
        let single = Wharf::builder().upstream(cfg.clone()).start();
        let sides: [Vec<&Wharf>; 2] = [fleet.iter().collect(), vec![&single]];
        for (side, ws) in sides.iter().enumerate() {
            let d = push_blob(&up, &format!("bench-fleet-{r}-{side}"));
            up.wait_log_stable();
            let mark = up.mark();
            let (cold_s, _) = herd_over(rt, ws, &d);
            up.wait_log_stable();
            let gets: Vec<_> = up
                .since(mark)
                .into_iter()
                .filter(|q| q.path_only().ends_with(&d.digest) && q.is_blob_get())
                .collect();
            let (_, warm) = herd_over(rt, ws, &d);
            res.cold_s[side].push(cold_s);
            res.upstream_gets[side].push(gets.len() as f64);
            res.upstream_mib[side].push(gets.iter().map(|q| q.bytes).sum::<u64>() as f64 / MIB);
            res.warm_mib_s[side].push(warm);
        }
        // The object-store hit path: an empty replica reads what the fleet wrote. The fleet's
        // blob of this repeat reached the store once its owner stored it.
        let written = || -> u64 {
            fleet
                .iter()
                .map(|w| {
                    w.metric(
                        "wharf_tier_requests_total",
                        &["kind=\"blob\"", "result=\"written\""],
                    )
                })
                .sum()
        };
        let before = written();
        let d = push_blob(&up, &format!("bench-fleet-{r}-tier"));
        let _ = one_get_cpu_per_gib(rt, &fleet[0], &d);
        let deadline = Instant::now() + Duration::from_secs(60);
        while written() <= before {
            assert!(
                Instant::now() < deadline,
                "the fleet never wrote the blob to the store"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let empty = Wharf::builder()
            .upstream(cfg.clone())
            .extra_toml(&store)
            .start();
        let mark = up.mark();
        res.cpu_per_gib[0].push(one_get_cpu_per_gib(rt, &empty, &d));
        up.wait_log_stable();
        assert!(
            up.since(mark).iter().all(|q| !q.is_blob_get()),
            "the empty replica went to the upstream"
        );
        let fresh = Wharf::builder().upstream(cfg.clone()).start();
        res.cpu_per_gib[1].push(one_get_cpu_per_gib(rt, &fresh, &d));
    }
    res
}

pub(crate) fn print(r: &Replicas) {
    println!(
        "\n| scale-out: a cold 100 MiB blob, {CLIENTS} clients (16 on each of 3 replicas, or 48 on one) \
         (median of the repeats) | 3 replicas + Garage | 1 wharf | 3 / 1 |"
    );
    println!("|---|---|---|---|");
    let rows: [(&str, &[Vec<f64>; 2], usize); 4] = [
        ("cold herd, last client done, s", &r.cold_s, 2),
        ("upstream GETs for the blob", &r.upstream_gets, 0),
        ("upstream MiB for the blob", &r.upstream_mib, 0),
        (
            "warm, the same 48 streams, aggregate MiB/s",
            &r.warm_mib_s,
            0,
        ),
    ];
    for (name, [a, b], dec) in rows {
        println!(
            "| {name} | {} | {} | {:.2}x |",
            f(med(a), dec),
            f(med(b), dec),
            med(a) / med(b)
        );
    }
    println!(
        "| server CPU s per GiB for one GET of a blob it lacks | {} (from the object store, an empty replica) | {} (from the upstream, a fresh wharf) | {:.2}x |",
        f(med(&r.cpu_per_gib[0]), 3),
        f(med(&r.cpu_per_gib[1]), 3),
        med(&r.cpu_per_gib[0]) / med(&r.cpu_per_gib[1])
    );
}
