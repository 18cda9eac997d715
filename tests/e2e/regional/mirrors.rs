//! An upstream with a mirror: two real registries holding the same images, the first as
//! `url`, the second in `mirrors`. The first is stopped, then SIGSTOPped, then answers 503
//! (a small fault server on its port): skopeo's pulls keep working through the second within
//! the connect and response deadlines; when the first comes back it is used again.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wharf_e2e::expect;
use wharf_e2e::util::toml_str;
use wharf_e2e::{Image, Skopeo, Upstream, UpstreamCfg, Wharf, images};

/// `connect_timeout` and `response_timeout` of the upstream in these tests.
const DEADLINE: Duration = Duration::from_secs(2);

fn wharf_with_mirror(first: &Upstream, second: &Upstream) -> Wharf {
    Wharf::builder()
        .upstream(
            UpstreamCfg::oracle(first)
                // Every pull revalidates its tag: each one asks the upstream something.
                .tag_ttl("0s")
                .extra(&format!(
                    "mirrors = [{}]\nconnect_timeout = \"2s\"\nresponse_timeout = \"2s\"",
                    toml_str(&second.url())
                )),
        )
        .start()
}

/// A cold pull through a fresh wharf: served by `second`, each blob fetched from it once,
/// within `bound`.
fn cold_pull_served_by_second(
    first: &Upstream,
    second: &Upstream,
    img: &Image,
    bound: Duration,
    what: &str,
) -> Wharf {
    let wharf = wharf_with_mirror(first, second);
    let m = second.mark();
    let c = Skopeo::new()
        .copy_direct(&wharf.host_port(), &img.reference(), &[])
        .expect_ok(what);
    assert_eq!(c.digest(), img.manifest.digest, "{what}");
    eprintln!("{what}: {:?}", c.out.elapsed);
    assert!(c.out.elapsed < bound, "{what}: took {:?}", c.out.elapsed);
    let reqs = expect::upstream_requests(second, m, what);
    expect::each_blob_fetched_once(&reqs, &img.blobs(), what);
    wharf
}

/// Answers every request on `port` with 503, until dropped.
struct Answers503 {
    stop: Arc<AtomicBool>,
    served: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl Answers503 {
    fn on(port: u16) -> Answers503 {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the fault server");
        listener.set_nonblocking(true).expect("nonblocking");
        let (stop, served) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(0)),
        );
        let thread = std::thread::spawn({
            let (stop, served) = (stop.clone(), served.clone());
            move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok((mut conn, _)) = listener.accept() else {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    };
                    let _ = conn.set_nonblocking(false);
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    served.fetch_add(1, Ordering::Relaxed);
                    let _ = conn.write_all(
                        b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n\
                          Content-Length: 53\r\nConnection: close\r\n\r\n\
                          {\"errors\":[{\"code\":\"UNAVAILABLE\",\"message\":\"down\"}]}\n",
                    );
                }
            }
        });
        Answers503 {
            stop,
            served,
            thread: Some(thread),
        }
    }
}

impl Drop for Answers503 {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn pulls_fail_over_to_the_mirror_and_come_back_to_the_first_url() {
    let set = images();
    let img = &set.oraclelinux;
    let mut first = Upstream::plain();
    let second = Upstream::plain();
    let slack = Duration::from_secs(3);

    // Stopped: connections are refused, the mirror answers at once.
    first.stop();
    cold_pull_served_by_second(&first, &second, img, slack, "first url stopped");

    // Hung: the first request waits out response_timeout, then the mirror answers; the hung
    // url is left alone for its back-off (a probe after it may cost one more deadline).
    first.start_again();
    first.hang();
    cold_pull_served_by_second(&first, &second, img, DEADLINE * 2 + slack, "first url hung");
    first.resume();
    first.stop();

    // 503: the mirror answers at once.
    let fault = Answers503::on(first.port());
    let wharf = cold_pull_served_by_second(&first, &second, img, slack, "first url answers 503");
    assert!(
        fault.served.load(Ordering::Relaxed) > 0,
        "the 503s were asked"
    );
    drop(fault);

    // Back: once its back-off has passed, the first url is asked again (the tag revalidation of
    // the next pull goes there) and keeps serving.
    first.start_again();
    let m = first.mark();
    let mut back = false;
    for _ in 0..10 {
        std::thread::sleep(Duration::from_secs(1));
        Skopeo::new()
            .copy_direct(&wharf.host_port(), &img.reference(), &[])
            .expect_ok("pull once the first url is back");
        if !first.since(m).is_empty() {
            back = true;
            break;
        }
    }
    assert!(back, "the first url was never used again");
    let metrics = wharf_e2e::http::get(&format!("{}/metrics", wharf.admin_url()), &[]).text();
    let url_line = |host: &str, result: &str| {
        metrics.lines().any(|l| {
            l.starts_with("wharf_upstream_url_requests_total")
                && l.contains(&format!("url=\"{host}\""))
                && l.contains(&format!("result=\"{result}\""))
                && !l.ends_with(" 0")
        })
    };
    assert!(url_line(&first.host_port(), "failed"), "{metrics}");
    assert!(url_line(&first.host_port(), "ok"), "{metrics}");
    assert!(url_line(&second.host_port(), "ok"), "{metrics}");
}
