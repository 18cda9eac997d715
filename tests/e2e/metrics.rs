//! `/metrics` on the admin listener of a running wharf: counters that add up over a known pull
//! sequence, every metric the dashboard and the alert rules use exported, the rules valid for
//! `promtool`, and a real Prometheus scraping wharf and computing the dashboard's hit ratio.

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use wharf_e2e::http::{ACCEPT_ALL_MANIFESTS, Http};
use wharf_e2e::process::{Proc, run};
use wharf_e2e::util::{free_port, temp_dir, wait_for, write_file};
use wharf_e2e::{Image, Upstream, Wharf, images};

/// A scrape once no fill is in flight: a fill stores its content (fsync, rename) after its
/// clients got the last byte, so it may still count as in flight when a pull ends. At most 10 s.
fn scrape_settled(wharf: &Wharf) -> (String, BTreeMap<String, f64>) {
    let settled = wait_for(Duration::from_secs(10), Duration::from_millis(50), || {
        let (text, s) = scrape(wharf);
        let in_flight: f64 = s
            .iter()
            .filter(|(k, _)| k.starts_with("wharf_fill_in_flight_fills"))
            .map(|(_, v)| v)
            .sum();
        (in_flight == 0.0).then_some((text, s))
    });
    settled.unwrap_or_else(|| scrape(wharf))
}

/// Samples of the text exposition: `name{labels}` (labels as written, sorted by the encoder)
/// to value.
fn scrape(wharf: &Wharf) -> (String, BTreeMap<String, f64>) {
    let resp = Http::new().get(&format!("{}/metrics", wharf.admin_url()), &[]);
    assert_eq!(resp.status, 200, "{}", resp.describe());
    let ct = resp.header("content-type").unwrap_or_default();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    let text = resp.text();
    let mut samples = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (key, value) = line.rsplit_once(' ').expect("sample line");
        samples.insert(key.to_owned(), value.parse::<f64>().expect("sample value"));
    }
    (text, samples)
}

/// The value of `name{labels}`, where `labels` is `a="x",b="y"` in the encoder's order
/// (alphabetical); 0 when absent.
fn value(samples: &BTreeMap<String, f64>, name: &str, labels: &str) -> f64 {
    let key = if labels.is_empty() {
        name.to_owned()
    } else {
        format!("{name}{{{labels}}}")
    };
    samples.get(&key).copied().unwrap_or(0.0)
}

/// Sum of every sample of `name` whose labels contain all of `having`.
fn sum(samples: &BTreeMap<String, f64>, name: &str, having: &[&str]) -> f64 {
    samples
        .iter()
        .filter(|(k, _)| {
            k.strip_prefix(name)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('{'))
        })
        .filter(|(k, _)| having.iter().all(|h| k.contains(h)))
        .map(|(_, v)| *v)
        .sum()
}

/// A pull by hand: the manifest by tag, then the config and every layer, each read whole.
/// Returns the bytes received.
fn pull(wharf: &Wharf, img: &Image) -> u64 {
    let http = Http::new().timeout(Duration::from_secs(60));
    let base = format!("{}/v2/{}", wharf.url(), img.repo);
    let m = http.get(
        &format!("{base}/manifests/{}", img.tag),
        &[("accept", ACCEPT_ALL_MANIFESTS)],
    );
    assert_eq!(m.status, 200, "manifest: {}", m.describe());
    let mut got = m.body.len() as u64;
    for b in img.blobs() {
        let r = http.get(&format!("{base}/blobs/{}", b.digest), &[]);
        assert_eq!(r.status, 200, "blob {}: {}", b.digest, r.describe());
        got += r.body.len() as u64;
    }
    got
}

/// Every `wharf_*` identifier in `text`.
fn metric_names(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("wharf_") {
        let before = rest[..i].chars().next_back();
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            out.push(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    out.sort();
    out.dedup();
    out
}

fn dashboards() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards")
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Every `expr` of the dashboard's panels, by panel title.
fn dashboard_exprs() -> Vec<(String, String)> {
    let d: serde_json::Value =
        serde_json::from_str(&read(&dashboards().join("wharf.json"))).expect("wharf.json");
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        let title = p["title"].as_str().unwrap_or_default().to_owned();
        for t in p["targets"].as_array().into_iter().flatten() {
            if let Some(e) = t["expr"].as_str() {
                out.push((title.clone(), e.to_owned()));
            }
        }
    }
    out
}

#[test]
fn counters_add_up_over_two_pulls() {
    let set = images();
    let img = &set.oraclelinux;
    let up = Upstream::plain();
    let wharf = Wharf::for_upstream(&up);
    let image_bytes = img.manifest.size + img.total_blob_bytes();
    let blobs = img.blobs().len() as f64;

    assert_eq!(pull(&wharf, img), image_bytes, "first pull");
    assert_eq!(pull(&wharf, img), image_bytes, "second pull");
    let (text, s) = scrape_settled(&wharf);
    let ctx = || format!("/metrics:\n{text}");

    // Bytes served = from cache + from upstream; the first pull from the upstream, the second
    // from the cache.
    let from_upstream = value(
        &s,
        "wharf_proxy_served_bytes_total",
        r#"source="upstream",upstream="oracle""#,
    );
    let from_cache = value(
        &s,
        "wharf_proxy_served_bytes_total",
        r#"source="cache",upstream="oracle""#,
    );
    let served = value(
        &s,
        "wharf_http_response_bytes_total",
        r#"endpoint="manifest""#,
    ) + value(&s, "wharf_http_response_bytes_total", r#"endpoint="blob""#);
    assert_eq!(served, 2.0 * image_bytes as f64, "{}", ctx());
    assert_eq!(served, from_cache + from_upstream, "{}", ctx());
    assert_eq!(from_upstream, image_bytes as f64, "{}", ctx());
    assert_eq!(from_cache, image_bytes as f64, "{}", ctx());
    assert_eq!(
        value(
            &s,
            "wharf_upstream_received_bytes_total",
            r#"upstream="oracle""#
        ),
        img.total_blob_bytes() as f64,
        "blob bytes read from the upstream, once each: {}",
        ctx()
    );

    // Hits and misses as the sequence implies: everything missed once, then hit once.
    let req = |endpoint: &str, result: &str| {
        value(
            &s,
            "wharf_http_requests_total",
            &format!(r#"endpoint="{endpoint}",result="{result}",upstream="oracle""#),
        )
    };
    assert_eq!(req("manifest", "miss"), 1.0, "{}", ctx());
    assert_eq!(req("manifest", "hit"), 1.0, "{}", ctx());
    assert_eq!(req("blob", "miss"), blobs, "{}", ctx());
    assert_eq!(req("blob", "hit"), blobs, "{}", ctx());
    for endpoint in ["manifest", "blob"] {
        for result in ["coalesced", "stale", "error"] {
            assert_eq!(req(endpoint, result), 0.0, "{endpoint} {result}: {}", ctx());
        }
    }
    assert_eq!(
        sum(
            &s,
            "wharf_http_request_duration_seconds_count",
            &[r#"endpoint="blob""#]
        ),
        2.0 * blobs,
        "{}",
        ctx()
    );
    assert_eq!(
        value(&s, "wharf_fill_started_total", r#"upstream="oracle""#),
        blobs,
        "{}",
        ctx()
    );
    assert_eq!(
        value(&s, "wharf_fill_in_flight_fills", r#"upstream="oracle""#),
        0.0,
        "{}",
        ctx()
    );
    assert_eq!(
        value(&s, "wharf_fill_waiting_readers", r#"upstream="oracle""#),
        0.0,
        "{}",
        ctx()
    );

    // The upstream saw one manifest GET and one GET per blob, all answered 2xx (a token-less
    // upstream: no token fetches).
    assert!(
        sum(
            &s,
            "wharf_upstream_requests_total",
            &[
                r#"upstream="oracle""#,
                r#"method="GET""#,
                r#"status_class="2xx""#
            ]
        ) >= 1.0 + blobs,
        "{}",
        ctx()
    );
    assert_eq!(
        sum(&s, "wharf_upstream_token_fetches_total", &[]),
        0.0,
        "{}",
        ctx()
    );

    // The store: everything pulled is stored, within the default budget, nothing evicted.
    assert_eq!(
        value(&s, "wharf_cache_entries", ""),
        1.0 + blobs,
        "{}",
        ctx()
    );
    assert_eq!(
        value(&s, "wharf_cache_size_bytes", ""),
        image_bytes as f64,
        "{}",
        ctx()
    );
    assert!(
        value(&s, "wharf_cache_budget_bytes", "") >= image_bytes as f64,
        "{}",
        ctx()
    );
    assert_eq!(
        value(&s, "wharf_cache_evictions_total", ""),
        0.0,
        "{}",
        ctx()
    );
    assert!(text.contains("wharf_build_info{version=\""), "{}", ctx());

    // Labels never carry a repository or a digest.
    assert!(
        !text.contains(&img.repo) && !text.contains("sha256:"),
        "{}",
        ctx()
    );
}

/// Families exported only once something happens that the test upstream never does.
const ONLY_ON_EVENT: &[&str] = &[
    // Sent by Docker Hub only (`ratelimit-remaining`); CNCF Distribution never sends it.
    "wharf_upstream_ratelimit_remaining_requests",
];

#[test]
fn every_metric_in_the_dashboard_and_the_rules_is_exported() {
    let rules = dashboards().join("alerts.yml");
    let check = run(
        Command::new("promtool")
            .arg("check")
            .arg("rules")
            .arg(&rules),
        Duration::from_secs(60),
    );
    check.expect_ok("promtool check rules dashboards/alerts.yml");

    let set = images();
    let up = Upstream::plain();
    let wharf = Wharf::for_upstream(&up);
    pull(&wharf, &set.hello);
    let (text, _) = scrape(&wharf);
    let exported: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let dashboard: String = dashboard_exprs()
        .into_iter()
        .map(|(_, e)| e + "\n")
        .collect();
    let used = [("wharf.json", dashboard), ("alerts.yml", read(&rules))];
    // What wharf exports once those events happen.
    let m = wharf_metrics::Metrics::standalone();
    m.ratelimit_remaining.with_label_values(&["hub"]).set(76);
    let on_event = m.encode();
    let mut checked = 0;
    for (file, text_of) in &used {
        let names = metric_names(text_of);
        assert!(names.len() >= 5, "{file} uses {names:?}");
        for name in names {
            checked += 1;
            if ONLY_ON_EVENT.contains(&name.as_str()) {
                assert!(
                    on_event.contains(&format!("\n{name}{{")),
                    "{file} uses {name}, which wharf-metrics does not define:\n{on_event}"
                );
                continue;
            }
            assert!(
                exported.contains(&name.as_str()),
                "{file} uses {name}, which wharf's /metrics does not export:\n{text}"
            );
        }
    }
    assert!(checked >= 15, "{checked}");
}

/// Prometheus, scraping wharf's admin listener every second from a temp dir.
struct Prometheus {
    proc: Proc,
    url: String,
    _dir: tempfile::TempDir,
    log: PathBuf,
}

impl Prometheus {
    fn start(target: &str) -> Prometheus {
        let dir = temp_dir("prometheus");
        let port = free_port();
        let config = dir.path().join("prometheus.yml");
        write_file(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files: [{rules:?}]\n\
                 scrape_configs:\n  - job_name: wharf\n    static_configs:\n      - targets: [{target:?}]\n",
                rules = dashboards().join("alerts.yml").display().to_string(),
            ),
        );
        let log = dir.path().join("prometheus.log");
        let mut cmd = Command::new("prometheus");
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--storage.tsdb.retention.time=1h");
        let proc = Proc::spawn("prometheus", cmd, &log, &log);
        let url = format!("http://127.0.0.1:{port}");
        let p = Prometheus {
            proc,
            url,
            _dir: dir,
            log,
        };
        let http = Http::new().timeout(Duration::from_secs(5));
        let ready = wait_for(Duration::from_secs(30), Duration::from_millis(100), || {
            http.try_request(
                "GET",
                &format!("{}/-/ready", p.url),
                &[],
                bytes::Bytes::new(),
            )
            .ok()
            .filter(|r| r.status == 200)
        });
        assert!(
            ready.is_some(),
            "prometheus did not become ready:\n{}",
            p.log()
        );
        p
    }

    fn log(&self) -> String {
        wharf_e2e::util::tail(&self.log, 50)
    }

    /// An instant query; the first sample's value, if any.
    fn query(&self, expr: &str) -> Option<f64> {
        let q: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("query", expr)
            .finish();
        let r = Http::new().get(&format!("{}/api/v1/query?{q}", self.url), &[]);
        if r.status != 200 {
            return None;
        }
        let v = r.json();
        v["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|s| s.parse().ok())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.proc.kill();
    }
}

#[test]
fn prometheus_scrapes_wharf_and_computes_the_dashboards_hit_ratio() {
    let set = images();
    let img = &set.oraclelinux;
    let up = Upstream::plain();
    let wharf = Wharf::for_upstream(&up);
    let target = wharf.admin_url().trim_start_matches("http://").to_owned();
    let prom = Prometheus::start(&target);

    pull(&wharf, img);
    pull(&wharf, img);
    // Two pulls: every manifest and blob request missed once and hit once.
    let expected = 0.5;

    let (_, expr) = dashboard_exprs()
        .into_iter()
        .find(|(title, _)| title == "Hit ratio (since start)")
        .expect("the dashboard's hit ratio panel");
    let expr = expr.replace("$upstream", ".*");
    let (_, s) = scrape(&wharf);
    let total = sum(&s, "wharf_http_requests_total", &[r#"result="hit""#])
        + sum(&s, "wharf_http_requests_total", &[r#"result="miss""#]);
    let got = wait_for(Duration::from_secs(30), Duration::from_millis(250), || {
        // Wait until Prometheus has scraped the state after both pulls.
        let seen = prom.query(r#"sum(wharf_http_requests_total{result=~"hit|miss"})"#)?;
        (seen >= total).then(|| prom.query(&expr)).flatten()
    });
    let got = got.unwrap_or_else(|| {
        panic!(
            "no hit ratio from Prometheus for {expr}:\n{}\nwharf:\n{}",
            prom.log(),
            wharf.log()
        )
    });
    assert!(
        (got - expected).abs() < 1e-9,
        "hit ratio {got}, expected {expected} ({expr})"
    );
    // `wharf cache stats` on the same wharf: one definition, so one figure.
    let stats = run(
        Command::new(wharf_e2e::wharf::wharf_bin())
            .args(["cache", "stats", "--json", "--admin", &target]),
        Duration::from_secs(30),
    )
    .expect_ok("wharf cache stats --json");
    let v: serde_json::Value = serde_json::from_str(&stats.stdout).expect("stats JSON");
    let cli = v["hit_ratio"]
        .as_f64()
        .unwrap_or_else(|| panic!("no hit_ratio: {v}"));
    assert!(
        (cli - got).abs() < 1e-9,
        "wharf cache stats says {cli}, the dashboard {got}: {v}"
    );
    // The scrape target is healthy and the rules loaded.
    assert_eq!(
        prom.query(r#"up{job="wharf"}"#),
        Some(1.0),
        "{}",
        prom.log()
    );
    let rules = Http::new()
        .get(&format!("{}/api/v1/rules", prom.url), &[])
        .json();
    let loaded = rules["data"]["groups"][0]["rules"]
        .as_array()
        .map_or(0, Vec::len);
    assert!(loaded >= 5, "rules loaded: {rules}");
}

#[test]
fn a_herd_on_one_cold_blob_is_one_miss_and_the_rest_coalesced() {
    use wharf_e2e::herd::{Ask, Herd};
    use wharf_e2e::{REGISTRY_NAME, UpstreamCfg};
    use wharf_testkit::{FakeRegistry, Fault};

    const CLIENTS: usize = 8;
    const SIZE: usize = 2 << 20;
    let mut blob = vec![0u8; SIZE];
    wharf_e2e::layers::random_bytes("metrics-herd", &mut blob);
    let digest = wharf_e2e::util::sha256_digest(&blob);
    let faulty = FakeRegistry::builder()
        .image("faulty/app", "latest", &[bytes::Bytes::from(blob)])
        .start();
    faulty.push_faults([Fault::new().hold_at((SIZE / 4) as u64)]);
    let wharf = Wharf::builder()
        .upstream(
            UpstreamCfg::new("oracle", &faulty.url())
                .prefixes(&[REGISTRY_NAME, "oracle"])
                .default(true),
        )
        .start();
    let url = format!("{}/v2/{}/blobs/{}", wharf.url(), "faulty/app", digest);
    let herd = Herd::spawn(&url, CLIENTS, Ask::default());
    herd.wait_first_bytes(CLIENTS, Duration::from_secs(60));

    // While the upstream holds the body: one fill in flight, every client answered.
    let (text, s) = scrape(&wharf);
    let req = |s: &BTreeMap<String, f64>, result: &str| {
        value(
            s,
            "wharf_http_requests_total",
            &format!(r#"endpoint="blob",result="{result}",upstream="oracle""#),
        )
    };
    assert_eq!(
        value(&s, "wharf_fill_in_flight_fills", r#"upstream="oracle""#),
        1.0,
        "{text}"
    );
    assert_eq!(req(&s, "miss"), 1.0, "{text}");
    assert_eq!(req(&s, "coalesced"), (CLIENTS - 1) as f64, "{text}");

    faulty.release();
    for (i, o) in herd.join().iter().enumerate() {
        assert!(
            o.status == 200 && o.received == SIZE as u64,
            "client {i}: {}",
            o.describe()
        );
    }
    let done = wait_for(Duration::from_secs(30), Duration::from_millis(100), || {
        let (_, s) = scrape(&wharf);
        (value(&s, "wharf_fill_in_flight_fills", r#"upstream="oracle""#) == 0.0).then_some(s)
    });
    let s = done.unwrap_or_else(|| panic!("the fill never ended:\n{}", scrape(&wharf).0));
    assert_eq!(
        value(&s, "wharf_fill_started_total", r#"upstream="oracle""#),
        1.0
    );
    assert_eq!(
        value(
            &s,
            "wharf_upstream_received_bytes_total",
            r#"upstream="oracle""#
        ),
        SIZE as f64,
        "the upstream sent the blob once"
    );
    assert_eq!(
        value(
            &s,
            "wharf_proxy_served_bytes_total",
            r#"source="upstream",upstream="oracle""#
        ),
        (CLIENTS * SIZE) as f64,
        "every client got it whole"
    );
    assert_eq!(
        value(&s, "wharf_fill_waiting_readers", r#"upstream="oracle""#),
        0.0
    );
}
