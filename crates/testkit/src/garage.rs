//! A real Garage (the S3-compatible object store, `cargo install garage`) for tests: one node on
//! loopback, free ports, its own directory, one bucket and one key with fixed credentials.
//! Stopped (SIGKILL) when dropped; [`Garage::stop`] and [`Garage::start_again`] keep its data.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::time::Instant;

use tempfile::TempDir;

/// The bucket every [`Garage`] has.
pub const BUCKET: &str = "wharf";
/// Its key: Garage's format, `GK` and 24 hex digits; the secret 64 hex digits.
pub const KEY_ID: &str = "GK0123456789abcdef01234567";
pub const SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
/// The region its S3 API answers for.
pub const REGION: &str = "garage";

/// One running (or stopped) single-node Garage.
#[derive(Debug)]
pub struct Garage {
    dir: TempDir,
    config: PathBuf,
    s3_port: u16,
    child: Option<Child>,
}

/// The `garage` binary: on `PATH`, else cargo's bin directory.
pub fn binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("garage"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
        Some(home.join("bin/garage")).filter(|p| p.is_file())
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

impl Garage {
    /// Starts a node, lays it out, and makes [`BUCKET`] with [`KEY_ID`] allowed to read and
    /// write it. Panics with Garage's own output if any step fails.
    pub fn start() -> Garage {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let (rpc, s3) = (free_port(), free_port());
        let config = dir.path().join("garage.toml");
        let text = format!(
            r#"metadata_dir = "{meta}"
data_dir = "{data}"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{secret}"

[s3_api]
s3_region = "{REGION}"
api_bind_addr = "127.0.0.1:{s3}"
"#,
            meta = dir.path().join("meta").display(),
            data = dir.path().join("data").display(),
            secret = SECRET,
        );
        std::fs::write(&config, text).unwrap_or_else(|e| panic!("garage.toml: {e}"));
        let mut g = Garage {
            dir,
            config,
            s3_port: s3,
            child: None,
        };
        g.start_again();
        let status = g.cli(&["status"]);
        let node = status
            .lines()
            .find_map(|l| {
                let id = l.split_whitespace().next()?;
                (id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
            })
            .unwrap_or_else(|| panic!("no node id in `garage status`:\n{status}"))
            .to_owned();
        g.cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &node]);
        g.cli(&["layout", "apply", "--version", "1"]);
        g.cli(&["bucket", "create", BUCKET]);
        g.cli(&["key", "import", "--yes", "-n", "wharf", KEY_ID, SECRET]);
        g.cli(&[
            "bucket", "allow", "--read", "--write", "--owner", BUCKET, "--key", KEY_ID,
        ]);
        g
    }

    /// `http://127.0.0.1:PORT`: the S3 API.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills the node (SIGKILL); its data stays.
    pub fn stop(&mut self) {
        self.resume();
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the node (again) on the same ports and data, and waits until its S3 port answers.
    pub fn start_again(&mut self) {
        self.stop();
        let bin =
            binary().unwrap_or_else(|| panic!("garage is not installed (cargo install garage)"));
        let log = std::fs::File::create(self.dir.path().join("garage.log"))
            .unwrap_or_else(|e| panic!("garage.log: {e}"));
        let child = Command::new(bin)
            .arg("-c")
            .arg(&self.config)
            .arg("server")
            .env("RUST_LOG", "garage=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting garage: {e}"));
        // Garage must not outlive the test process, even one that never drops this (a
        // static shared by a binary's tests): a watchdog kills it once the test process is gone.
        let watchdog = format!(
            "while kill -0 {me} 2>/dev/null && kill -0 {garage} 2>/dev/null; do sleep 1; done; \
             kill -0 {me} 2>/dev/null || kill -9 {garage} 2>/dev/null",
            me = std::process::id(),
            garage = child.id()
        );
        let _ = Command::new("sh")
            .args(["-c", &watchdog])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.s3_port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "garage's S3 API never listened: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Freezes the node (SIGSTOP): connections are accepted by the kernel, nothing answers.
    pub fn hang(&self) {
        self.signal("-STOP");
    }

    /// Thaws a node [`Garage::hang`] froze (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .args([sig, &c.id().to_string()])
                .status();
        }
    }

    /// What the node wrote to stderr.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("garage.log")).unwrap_or_default()
    }

    /// Runs `garage -c CONFIG ARGS`, retrying while the node is still coming up; its stdout.
    fn cli(&self, args: &[&str]) -> String {
        let bin = binary().unwrap_or_else(|| panic!("garage is not installed"));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = Command::new(&bin)
                .arg("-c")
                .arg(&self.config)
                .args(args)
                .env("RUST_LOG", "garage=warn")
                .output()
                .unwrap_or_else(|e| panic!("garage {args:?}: {e}"));
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).into_owned();
            }
            assert!(
                Instant::now() < deadline,
                "garage {args:?} failed: {}{}\nnode log:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        self.stop();
    }
}
