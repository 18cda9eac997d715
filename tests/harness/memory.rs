//! What a server's memory costs, read from outside: its resident set from `/proc`, and many
//! idle keep-alive connections held open against it (each after one answered request), as a
//! client fleet between pulls does. The memory benchmark (`bench/memory.rs`) and the e2e test
//! of idle connections (`e2e/memory.rs`) share them.
//!
//! Every connection is opened and read with a timeout; at most [`OPENING_AT_ONCE`] are being
//! opened at a time, so the listener's backlog never overflows.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Connections being opened (connect, request, answer) at once.
pub const OPENING_AT_ONCE: usize = 64;
/// The most one connection may take to connect and be answered.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);
/// The largest answer an idle connection's request may get.
const MAX_ANSWER: usize = 64 * 1024;

/// A field of `/proc/<pid>/status` in KiB (`VmRSS`, `RssAnon`, `VmHWM`).
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The resident set (`VmRSS`) in KiB; panics if the process is gone.
pub fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS").unwrap_or_else(|| panic!("no VmRSS for pid {pid}"))
}

/// How many file descriptors the process has open.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Raises this process's soft `RLIMIT_NOFILE` (ulimit -n) to its hard limit, so that it can
/// hold thousands of client sockets; returns the soft limit now in force.
pub fn raise_fd_limit() -> u64 {
    // "Max open files  <soft>  <hard>  files"
    let limits = || -> Option<(u64, u64)> {
        let text = std::fs::read_to_string("/proc/self/limits").ok()?;
        let line = text.lines().find(|l| l.starts_with("Max open files"))?;
        let mut f = line.split_whitespace().skip(3);
        Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
    };
    let Some((soft, hard)) = limits() else {
        return 0;
    };
    if soft < hard {
        // No libc crate in the harness: prlimit(1) from util-linux sets it on this pid.
        let _ = std::process::Command::new("prlimit")
            .args(["--pid", &std::process::id().to_string()])
            .arg(format!("--nofile={hard}:{hard}"))
            .status();
    }
    limits().map_or(soft, |(soft, _)| soft)
}

/// Opens `n` connections to `addr`, sends `request` (a whole HTTP/1.1 request, kept alive) on
/// each and reads its answer to the end; returns the open connections, now idle. Panics with
/// the first failure.
pub async fn open_idle(addr: SocketAddr, n: usize, request: &str) -> Vec<TcpStream> {
    let opened: Vec<Result<TcpStream, String>> = futures_util::stream::iter(0..n)
        .map(|i| async move {
            tokio::time::timeout(ANSWER_TIMEOUT, one_request(addr, request))
                .await
                .unwrap_or_else(|_| Err("timed out".into()))
                .map_err(|e| format!("connection {i}: {e}"))
        })
        .buffer_unordered(OPENING_AT_ONCE)
        .collect()
        .await;
    opened
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|e| panic!("opening {n} idle connections to {addr}: {e}"))
}

/// Connects, sends `request` and reads one answer (head and `Content-Length` body); the answer
/// must be a 200.
async fn one_request(addr: SocketAddr, request: &str) -> Result<TcpStream, String> {
    let mut s = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    s.write_all(request.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut got = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).await.map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err(format!(
                "closed after {} bytes: {:?}",
                got.len(),
                String::from_utf8_lossy(&got)
            ));
        }
        got.extend_from_slice(&chunk[..n]);
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            if !head.starts_with("http/1.1 200") {
                return Err(format!("answer: {head}"));
            }
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| format!("no content-length: {head}"))?;
            if got.len() >= end + 4 + len {
                return Ok(s);
            }
        }
        if got.len() > MAX_ANSWER {
            return Err(format!("answer longer than {MAX_ANSWER} bytes"));
        }
    }
}

/// A keep-alive GET of `path` with the manifest `Accept` of a registry client.
pub fn get_request(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\naccept: {}\r\nuser-agent: wharf-e2e-idle\r\n\r\n",
        crate::bench::MANIFEST_ACCEPT
    )
}
