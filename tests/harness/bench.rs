//! Pieces the benchmarks share: the CNCF Distribution registry in proxy mode, nginx serving an
//! upstream's blob files with sendfile, `/proc` readings of a server's memory and CPU time, a
//! keep-alive latency client and `wrk`.
//!
//! Everything listens on 127.0.0.1 on a free port; every wait is bounded; every process is
//! stopped when its guard drops.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

use crate::Http;
use crate::process::{Proc, run};
use crate::registry::Upstream;
use crate::util::{free_port, tail, temp_dir, wait_for, write_file};

pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
pub const NGINX_BIN: &str = "/usr/sbin/nginx";
pub const WRK_BIN: &str = "/usr/bin/wrk";

/// What a registry client sends for a manifest (OCI and Docker, index and image).
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// CNCF Distribution as a pull-through cache of `up`: its own config, storage and logs.
pub struct DistributionProxy {
    _dir: tempfile::TempDir,
    pub port: u16,
    pub proc: Proc,
}

impl DistributionProxy {
    pub fn start(up: &Upstream) -> DistributionProxy {
        assert!(
            Path::new(REGISTRY_BIN).is_file(),
            "{REGISTRY_BIN} not found: apt-get install docker-registry"
        );
        let dir = temp_dir("bench-distribution");
        let port = free_port();
        let config = dir.path().join("config.yml");
        write_file(
            &config,
            format!(
                "version: 0.1\n\
                 log:\n  level: warn\n  formatter: text\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                 \x20 cache:\n    blobdescriptor: inmemory\n\
                 http:\n  addr: 127.0.0.1:{port}\n\
                 proxy:\n  remoteurl: {}\n",
                dir.path().join("storage").display(),
                up.url()
            ),
        );
        let log = dir.path().join("registry.log");
        let mut cmd = Command::new(REGISTRY_BIN);
        cmd.arg("serve").arg(&config);
        let mut proc = Proc::spawn("distribution-proxy", cmd, &log, &log);
        let http = Http::new().timeout(Duration::from_secs(5));
        let url = format!("http://127.0.0.1:{port}/v2/");
        let ready = wait_for(Duration::from_secs(20), Duration::from_millis(50), || {
            assert!(
                proc.exited().is_none(),
                "Distribution exited:\n{}",
                tail(&log, 40)
            );
            http.try_request("GET", &url, &[], Bytes::new())
                .ok()
                .filter(|r| r.status == 200)
        });
        assert!(
            ready.is_some(),
            "Distribution did not answer {url}:\n{}",
            tail(&log, 40)
        );
        DistributionProxy {
            _dir: dir,
            port,
            proc,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// nginx (master and `worker_processes auto`) serving `GET /v2/<repo>/blobs/sha256:<hex>` from
/// a Distribution storage's `blobs/sha256/<2>/<hex>/data` files with sendfile: what this machine
/// can do serving the same bytes from the page cache.
pub struct Nginx {
    dir: tempfile::TempDir,
    pub port: u16,
    proc: Proc,
    tls: bool,
}

impl Nginx {
    pub fn serving(storage: &Path) -> Nginx {
        Nginx::start(storage, None, 1024)
    }

    /// [`Nginx::serving`] with room for 16,384 connections a worker (20,000 descriptors):
    /// nginx allocates its connection table at start, so only the rows of many clients ask
    /// for it, and the others' memory is what a default nginx holds.
    pub fn serving_many(storage: &Path) -> Nginx {
        Nginx::start(storage, None, 16_384)
    }

    /// [`Nginx::serving`] over TLS 1.2/1.3 with `files` (and HTTP/2 by ALPN), a shared session
    /// cache and keep-alive, as a site would run it.
    pub fn serving_tls(storage: &Path, files: &wharf_testkit::TlsFiles) -> Nginx {
        Nginx::start(storage, Some(files), 1024)
    }

    fn start(storage: &Path, tls: Option<&wharf_testkit::TlsFiles>, connections: u32) -> Nginx {
        assert!(
            Path::new(NGINX_BIN).is_file(),
            "{NGINX_BIN} not found: apt-get install nginx"
        );
        let dir = temp_dir("bench-nginx");
        let port = free_port();
        let d = dir.path();
        let blobs = storage.join("docker/registry/v2/blobs/sha256");
        // The worker processes of a master started as root run as `nobody` unless told.
        let user = if is_root() { "user root;\n" } else { "" };
        let conf = format!(
            "{user}daemon off;\nmaster_process on;\nworker_processes auto;\n\
             pid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             worker_rlimit_nofile 20000;\nevents {{ worker_connections {connections}; }}\n\
             http {{\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n  keepalive_requests 100000;\n\
             \x20 default_type application/octet-stream;\n\
             \x20 client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
             \x20 fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
             \x20 server {{\n    listen 127.0.0.1:{port}{ssl};\n{ssl_conf}\
             \x20   location ~ ^/v2/.+/blobs/sha256:(..)(.+)$ {{ alias {b}/$1/$1$2/data; }}\n  }}\n}}\n",
            d = d.display(),
            b = blobs.display(),
            ssl = if tls.is_some() { " ssl http2" } else { "" },
            ssl_conf = tls.map_or(String::new(), |t| format!(
                "    ssl_certificate {};\n    ssl_certificate_key {};\n    \
                 ssl_protocols TLSv1.2 TLSv1.3;\n    ssl_session_cache shared:SSL:10m;\n",
                t.cert.display(),
                t.key.display()
            )),
        );
        let conf_path = d.join("nginx.conf");
        write_file(&conf_path, conf);
        let log = d.join("nginx.out");
        let mut cmd = Command::new(NGINX_BIN);
        cmd.arg("-p")
            .arg(d)
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(d.join("error.log"));
        let mut proc = Proc::spawn("nginx", cmd, &log, &log);
        let ready = wait_for(Duration::from_secs(10), Duration::from_millis(50), || {
            assert!(
                proc.exited().is_none(),
                "nginx exited:\n{}\n{}",
                tail(&log, 20),
                tail(&d.join("error.log"), 20)
            );
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        assert!(ready.is_some(), "nginx did not listen on {port}");
        Nginx {
            dir,
            port,
            proc,
            tls: tls.is_some(),
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The master and its workers.
    pub fn pids(&self) -> Vec<u32> {
        let Some(master) = self.proc.pid() else {
            return Vec::new();
        };
        let mut pids = vec![master];
        pids.extend(children(master));
        pids
    }

    pub fn error_log(&self) -> String {
        tail(&self.dir.path().join("error.log"), 20)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master takes its workers down with it (SIGKILL would orphan them).
        self.proc.stop(Duration::from_secs(5));
    }
}

/// Whether the tests run as root (nginx's workers must be told to stay root then).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|v| v.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// The PIDs whose parent is `pid` (one pass over `/proc`).
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| stat_fields(p).and_then(|f| f.get(1)?.parse::<u32>().ok()) == Some(pid))
        .collect()
}

/// The fields of `/proc/<pid>/stat` after the command name (field 3, the state, is index 0).
fn stat_fields(pid: impl std::fmt::Display) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(
        stat.rsplit_once(')')?
            .1
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
    )
}

/// `VmHWM` of a process: the most resident memory it has had so far, in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// User + system CPU time of a process so far (all its threads); USER_HZ is 100.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let f = stat_fields(pid)?;
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    // utime and stime are fields 14 and 15 of the line.
    Some(Duration::from_millis((ticks(11)? + ticks(12)?) * 10))
}

/// User + system CPU time of this process's children that have ended and been waited for
/// (cutime and cstime, fields 16 and 17 of `/proc/self/stat`): what a client command cost.
pub fn children_cpu_time() -> Duration {
    let f = stat_fields("self").unwrap_or_default();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Duration::from_millis((ticks(13) + ticks(14)) * 10)
}

/// Latencies of `n` sequential GETs of `url` on one keep-alive connection, sorted; errors
/// (non-200 answers or a broken connection) counted apart. Bounded by `limit` overall.
pub async fn sequential_latencies(
    url: &str,
    headers: &[(&str, &str)],
    n: usize,
    limit: Duration,
) -> Result<(Vec<Duration>, usize), String> {
    let deadline = Instant::now() + limit;
    let uri: http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let authority = uri.authority().ok_or("no host")?.clone();
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let connect = || async {
        let tcp = tokio::net::TcpStream::connect(authority.as_str())
            .await
            .map_err(|e| format!("connect {authority}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        Ok::<_, String>((send, tokio::spawn(conn)))
    };
    let (mut send, mut conn) = connect().await?;
    let mut lat = Vec::with_capacity(n);
    let mut errors = 0;
    for _ in 0..n {
        if Instant::now() > deadline {
            break;
        }
        let mut req = Request::get(path.as_str()).header(http::header::HOST, authority.as_str());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Empty::<Bytes>::new()).map_err(|e| e.to_string())?;
        let t0 = Instant::now();
        let one = async {
            send.ready().await.map_err(|e| e.to_string())?;
            let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status();
            resp.into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(status)
        };
        match tokio::time::timeout(Duration::from_secs(10), one).await {
            Ok(Ok(s)) if s == http::StatusCode::OK => lat.push(t0.elapsed()),
            Ok(Ok(s)) => {
                errors += 1;
                eprintln!("[bench] {url}: status {s}");
            }
            other => {
                // The server closed the connection (or stalled): note it, connect again.
                errors += 1;
                eprintln!("[bench] {url}: {other:?}; connecting again");
                conn.abort();
                if errors > 10 {
                    break;
                }
                (send, conn) = connect().await?;
            }
        }
    }
    conn.abort();
    lat.sort();
    Ok((lat, errors))
}

/// The `q` quantile (0..=1) of sorted samples (nearest rank).
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// What `wrk` reported.
#[derive(Debug, Clone)]
pub struct WrkResult {
    pub requests_per_sec: f64,
    pub non_2xx: u64,
    /// The 99th percentile latency (`--latency`), ms.
    pub p99_ms: f64,
    /// Connect, read, write errors and timeouts (`Socket errors:`), summed.
    pub socket_errors: u64,
    pub output: String,
}

/// `wrk -t<threads> -c<conns> -d<secs>s --timeout 10s <url>`, killed if it overruns.
pub fn wrk(url: &str, threads: usize, conns: usize, secs: u64) -> WrkResult {
    wrk_with(url, threads, conns, secs, &[])
}

/// [`wrk`] with request headers (`-H "name: value"`).
pub fn wrk_with(
    url: &str,
    threads: usize,
    conns: usize,
    secs: u64,
    headers: &[(&str, &str)],
) -> WrkResult {
    assert!(
        Path::new(WRK_BIN).is_file(),
        "{WRK_BIN} not found: apt-get install wrk"
    );
    let mut cmd = Command::new(WRK_BIN);
    cmd.arg(format!("-t{threads}"))
        .arg(format!("-c{conns}"))
        .arg(format!("-d{secs}s"))
        .args(["--timeout", "10s", "--latency"]);
    for (k, v) in headers {
        cmd.arg("-H").arg(format!("{k}: {v}"));
    }
    cmd.arg(url);
    let out = run(&mut cmd, Duration::from_secs(secs + 30));
    let output = format!("{}{}", out.stdout, out.stderr);
    let field = |key: &str| {
        output
            .lines()
            .find(|l| l.trim_start().starts_with(key))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse::<f64>().ok())
    };
    // "     99%    3.21ms" under "Latency Distribution".
    let p99_ms = output
        .lines()
        .find(|l| l.trim_start().starts_with("99%"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(wrk_ms)
        .unwrap_or(f64::NAN);
    // "  Socket errors: connect 0, read 3, write 0, timeout 0"
    let socket_errors = output
        .lines()
        .find(|l| l.trim_start().starts_with("Socket errors:"))
        .map_or(0, |l| {
            l.split([' ', ','])
                .filter_map(|w| w.parse::<u64>().ok())
                .sum()
        });
    WrkResult {
        requests_per_sec: field("Requests/sec:").unwrap_or(f64::NAN),
        p99_ms,
        socket_errors,
        non_2xx: field("Non-2xx").map_or(0, |v| v as u64),
        output,
    }
}

/// wrk's latency (`850.00us`, `3.21ms`, `1.20s`) in ms.
fn wrk_ms(v: &str) -> Option<f64> {
    let (num, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic())?);
    let num: f64 = num.parse().ok()?;
    Some(match unit {
        "us" => num / 1000.0,
        "ms" => num,
        "s" => num * 1000.0,
        "m" => num * 60_000.0,
        _ => return None,
    })
}

/// A benchmark's knob from the environment: `name` parsed, or `default`.
pub fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The 1, 5 and 15 minute load averages, for a benchmark's report.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// A duration in milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
