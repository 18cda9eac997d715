//! Small shared helpers: free ports, bounded waiting, digests, the harness's directories.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::Instant;

use sha2::{Digest as _, Sha256};

/// A port nobody listens on right now: bind `127.0.0.1:0`, read the port, drop the listener.
/// Whoever gets the port next may race us; we accept that.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// `N` distinct free ports: every listener is held until all are bound, so two calls of
/// [`free_port`] in a row cannot hand out the same port (they did: the kernel reuses a port
/// just released).
pub fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    std::array::from_fn(|i| listeners[i].local_addr().expect("local_addr").port())
}

/// A loopback `host:port` that refuses connections: used as the primary location of the fake
/// registry name in client configs, so a successful pull proves the mirror served it.
pub fn dead_host_port() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// Polls `f` every `every` until it returns `Some` or `timeout` has passed.
pub fn wait_for<T>(
    timeout: Duration,
    every: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The cargo target directory this test binary was built into, found from the path of the
/// running executable (`<target>/<profile>/deps/<test>`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir)
}

/// `target/e2e-images`: the cached, pushed image storage and the per-test storage copies
/// (the copies must sit on the same filesystem as the template to be hardlinked).
pub fn e2e_dir() -> PathBuf {
    let d = std::env::var_os("WHARF_E2E_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("e2e-images"));
    std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("create {}: {e}", d.display()));
    d
}

/// A fresh temporary directory for one test's files (configs, client stores, logs).
pub fn temp_dir(label: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("wharf-e2e-{label}-"))
        .tempdir()
        .expect("create temp dir")
}

/// Writes `contents` to `path`, creating parent directories; panics with the path on failure.
pub fn write_file(path: &Path, contents: impl AsRef<[u8]>) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .unwrap_or_else(|e| panic!("mkdir {}: {e}", parent.display()));
    }
    std::fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// A TOML basic string (JSON string escaping is valid TOML).
pub fn toml_str(s: &str) -> String {
    serde_json::to_string(s).expect("string to json")
}

/// The last `n` lines of a text file (for failure reports), or a note that it is missing.
pub fn tail(path: &Path, n: usize) -> String {
    match std::fs::read(path) {
        Ok(b) => {
            let s = String::from_utf8_lossy(&b);
            let lines: Vec<&str> = s.lines().collect();
            let from = lines.len().saturating_sub(n);
            lines[from..].join("\n")
        }
        Err(e) => format!("<{}: {e}>", path.display()),
    }
}

/// A log file's text once it has not grown for 100 ms (waiting 5 s at most).
pub fn settled_text(path: &Path) -> String {
    let len = || std::fs::metadata(path).map_or(0, |m| m.len());
    let mut last = len();
    let mut quiet = 0;
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(50));
        let now = len();
        if now == last {
            quiet += 1;
            if quiet >= 2 {
                break;
            }
        } else {
            quiet = 0;
            last = now;
        }
    }
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
}
