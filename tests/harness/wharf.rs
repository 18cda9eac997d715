//! The binary under test: `wharf serve --config FILE`, configured through [`WharfBuilder`].
//!
//! The binary is `$WHARF_BIN`, else `wharf` next to the test's `deps/` directory
//! (`target/debug/wharf`). Ready means `GET /v2/` answers 200 with
//! `Docker-Distribution-API-Version: registry/2.0`. Its stdout and stderr go to a file that is
//! printed when the test panics.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::http::Http;
use crate::process::{CmdOut, Proc, run};
use crate::registry::Upstream;
use crate::util::{free_ports, tail, temp_dir, wait_for};
pub use crate::wharf_config::{UpstreamCfg, WharfBuilder};

/// The wharf binary; panics with how to build it if it is missing.
pub fn wharf_bin() -> PathBuf {
    let path = match std::env::var_os("WHARF_BIN") {
        Some(p) => PathBuf::from(p),
        None => {
            let exe = std::env::current_exe().expect("current_exe");
            let deps = exe.parent().expect("test exe has a directory");
            deps.join("..").join("wharf")
        }
    };
    assert!(
        path.is_file(),
        "wharf binary not found at {}: build it with cargo build --bin wharf (or set WHARF_BIN)",
        path.display()
    );
    path
}

/// `wharf check-config FILE`.
pub fn check_config(file: &Path) -> CmdOut {
    check_config_with_env(file, &[])
}

/// `wharf check-config FILE` with these environment variables set (what a pod's `env` gives).
pub fn check_config_with_env(file: &Path, env: &[(&str, &str)]) -> CmdOut {
    run(
        Command::new(wharf_bin())
            .arg("check-config")
            .arg(file)
            .envs(env.iter().copied()),
        Duration::from_secs(30),
    )
}

impl WharfBuilder {
    pub fn start(self) -> Wharf {
        let dir = temp_dir("wharf");
        let [listen, mut admin] = free_ports();
        let listen = self.listen.unwrap_or(listen);
        while admin == listen {
            admin = crate::util::free_port();
        }
        let (config, env) = self.write_config(dir.path(), listen, admin);
        let store = self.store_dir(dir.path());
        let mut w = Wharf {
            store,
            log: dir.path().join("wharf.log"),
            _dir: dir,
            config,
            env,
            listen,
            admin,
            tls: self.tls.is_some(),
            proc: None,
        };
        w.spawn();
        w
    }
}

/// A running wharf. Killed when dropped; its log is printed if the test panicked.
pub struct Wharf {
    /// wharf's directory (config, log, the store unless elsewhere), removed with it.
    _dir: tempfile::TempDir,
    store: PathBuf,
    config: PathBuf,
    env: Vec<(String, String)>,
    listen: u16,
    admin: u16,
    /// The registry listener speaks TLS.
    tls: bool,
    log: PathBuf,
    proc: Option<Proc>,
}

impl Wharf {
    pub fn builder() -> WharfBuilder {
        WharfBuilder::default()
    }

    /// wharf in front of `up` as upstream "oracle" (also the default upstream), no credentials.
    pub fn for_upstream(up: &Upstream) -> Wharf {
        Wharf::builder().upstream(UpstreamCfg::oracle(up)).start()
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(wharf_bin());
        cmd.arg("serve").arg("--config").arg(&self.config);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        if std::env::var_os("RUST_BACKTRACE").is_none() {
            cmd.env("RUST_BACKTRACE", "1");
        }
        let mut proc = Proc::spawn("wharf", cmd, &self.log, &self.log);
        // Over TLS, readiness is the admin listener's (plain HTTP) /readyz.
        let url = if self.tls {
            format!("{}/readyz", self.admin_url())
        } else {
            format!("{}/v2/", self.url())
        };
        let tls = self.tls;
        let http = Http::new().timeout(Duration::from_secs(5));
        let mut last = String::from("no answer");
        let ready = wait_for(Duration::from_secs(20), Duration::from_millis(50), || {
            if let Some(st) = proc.exited() {
                panic!(
                    "wharf exited ({st}) during start-up:\n{}",
                    tail(&self.log, 100)
                );
            }
            // 401 with wharf's Basic challenge: up, with `[auth]` asking for a login on `/v2/`.
            match http.try_request("GET", &url, &[], bytes::Bytes::new()) {
                Ok(r) if tls && r.status == 200 => Some(()),
                Ok(r)
                    if (r.status == 200
                        || (r.status == 401
                            && r.header("WWW-Authenticate").as_deref()
                                == Some("Basic realm=\"wharf\"")))
                        && r.header("Docker-Distribution-API-Version").as_deref()
                            == Some("registry/2.0") =>
                {
                    Some(())
                }
                Ok(r) => {
                    last = r.describe();
                    None
                }
                Err(e) => {
                    last = e;
                    None
                }
            }
        });
        if ready.is_none() {
            proc.kill();
            panic!(
                "wharf did not become ready at {url} within 20 s (last: {last}):\n{}",
                tail(&self.log, 100)
            );
        }
        self.proc = Some(proc);
    }

    /// `http://127.0.0.1:PORT` (`https://` with [`WharfBuilder::tls`])
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.listen)
    }

    /// `127.0.0.1:PORT`
    pub fn host_port(&self) -> String {
        format!("127.0.0.1:{}", self.listen)
    }

    /// `http://127.0.0.1:ADMIN_PORT`
    pub fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin)
    }

    /// The sum of a counter's samples on `/metrics` whose labels contain every one of
    /// `labels` (`result="hit"`), 0 when there are none.
    pub fn metric(&self, name: &str, labels: &[&str]) -> u64 {
        let text = crate::http::get(&format!("{}/metrics", self.admin_url()), &[]).text();
        let (labelled, bare) = (format!("{name}{{"), format!("{name} "));
        text.lines()
            .filter(|l| {
                (l.starts_with(&labelled) || l.starts_with(&bare))
                    && labels.iter().all(|x| l.contains(x))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .map(|v| v as u64)
            .sum()
    }

    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// `[cache] dir`
    pub fn cache_dir(&self) -> PathBuf {
        self.store.clone()
    }

    /// Everything wharf wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// The log once it has not grown for 100 ms (waiting 5 s at most): wharf writes its lines
    /// in batches, up to about 10 ms after what they record. Checks that a line is *absent*
    /// need this, or they could pass on a log that was not written yet.
    pub fn settled_log(&self) -> String {
        crate::util::settled_text(&self.log)
    }

    /// SIGTERM, wait up to 10 s (then SIGKILL).
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.stop(Duration::from_secs(10));
        }
    }

    /// SIGKILL, as a crash or the OOM killer would: no shutdown code runs.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// The process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().and_then(Proc::pid)
    }

    /// Stops (if running) and starts again with the same config, ports and cache.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for Wharf {
    fn drop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
        if std::thread::panicking() || std::env::var_os("WHARF_E2E_SHOW_LOG").is_some() {
            eprintln!(
                "---- wharf log ({}, last 200 lines) ----\n{}\n---- end of wharf log ----",
                self.log.display(),
                tail(&self.log, 200)
            );
        }
    }
}
