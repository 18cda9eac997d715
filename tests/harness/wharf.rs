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
use crate::util::{free_port, tail, temp_dir, toml_str, wait_for, write_file};

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
    run(
        Command::new(wharf_bin()).arg("check-config").arg(file),
        Duration::from_secs(30),
    )
}

#[derive(Debug, Clone)]
enum Secret {
    /// Written to a file in wharf's directory; `password_file` points at it.
    FileContent(String),
    FilePath(PathBuf),
    /// `password_env = VAR`, with VAR=value in wharf's environment.
    Env {
        var: String,
        value: String,
    },
}

/// One `[[upstream]]` table.
#[derive(Debug, Clone)]
pub struct UpstreamCfg {
    name: String,
    url: String,
    prefixes: Vec<String>,
    default: bool,
    username: Option<String>,
    password: Option<Secret>,
    ca_file: Option<PathBuf>,
    tag_ttl: Option<String>,
    extra: String,
}

impl UpstreamCfg {
    pub fn new(name: &str, url: &str) -> UpstreamCfg {
        UpstreamCfg {
            name: name.into(),
            url: url.into(),
            prefixes: Vec::new(),
            default: false,
            username: None,
            password: None,
            ca_file: None,
            tag_ttl: None,
            extra: String::new(),
        }
    }

    /// `name = "oracle"`, the upstream's URL (and CA file if HTTPS),
    /// `prefixes = ["container-registry.oracle.com", "oracle"]`, `default = true`. No credentials.
    pub fn oracle(up: &Upstream) -> UpstreamCfg {
        let mut c = UpstreamCfg::new("oracle", &up.url())
            .prefixes(&[crate::REGISTRY_NAME, "oracle"])
            .default(true);
        c.ca_file = up.ca_file().map(Path::to_path_buf);
        c
    }

    pub fn prefixes(mut self, p: &[&str]) -> Self {
        self.prefixes = p.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn default(mut self, d: bool) -> Self {
        self.default = d;
        self
    }

    pub fn username(mut self, u: &str) -> Self {
        self.username = Some(u.into());
        self
    }

    /// `password_file` pointing at a file (written by the harness) that holds `password`.
    pub fn password_file(mut self, password: &str) -> Self {
        self.password = Some(Secret::FileContent(password.into()));
        self
    }

    /// `password_file` pointing at an existing file.
    pub fn password_file_path(mut self, path: &Path) -> Self {
        self.password = Some(Secret::FilePath(path.into()));
        self
    }

    /// `password_env = var`, and `var=password` in wharf's environment.
    pub fn password_env(mut self, var: &str, password: &str) -> Self {
        self.password = Some(Secret::Env {
            var: var.into(),
            value: password.into(),
        });
        self
    }

    pub fn ca_file(mut self, p: &Path) -> Self {
        self.ca_file = Some(p.into());
        self
    }

    pub fn no_ca_file(mut self) -> Self {
        self.ca_file = None;
        self
    }

    pub fn tag_ttl(mut self, ttl: &str) -> Self {
        self.tag_ttl = Some(ttl.into());
        self
    }

    /// Raw `key = value` lines added to this table.
    pub fn extra(mut self, toml: &str) -> Self {
        self.extra.push_str(toml);
        self.extra.push('\n');
        self
    }

    fn render(&self, dir: &Path, env: &mut Vec<(String, String)>) -> String {
        let mut s = format!(
            "\n[[upstream]]\nname = {}\nurl = {}\n",
            toml_str(&self.name),
            toml_str(&self.url)
        );
        let prefixes: Vec<String> = self.prefixes.iter().map(|p| toml_str(p)).collect();
        s += &format!("prefixes = [{}]\n", prefixes.join(", "));
        if self.default {
            s += "default = true\n";
        }
        if let Some(u) = &self.username {
            s += &format!("username = {}\n", toml_str(u));
        }
        match &self.password {
            None => {}
            Some(Secret::FileContent(p)) => {
                let file = dir.join(format!("{}.password", self.name));
                write_file(&file, p);
                s += &format!(
                    "password_file = {}\n",
                    toml_str(&file.display().to_string())
                );
            }
            Some(Secret::FilePath(f)) => {
                s += &format!("password_file = {}\n", toml_str(&f.display().to_string()));
            }
            Some(Secret::Env { var, value }) => {
                env.push((var.clone(), value.clone()));
                s += &format!("password_env = {}\n", toml_str(var));
            }
        }
        if let Some(ca) = &self.ca_file {
            s += &format!("ca_file = {}\n", toml_str(&ca.display().to_string()));
        }
        if let Some(t) = &self.tag_ttl {
            s += &format!("tag_ttl = {}\n", toml_str(t));
        }
        s + &self.extra
    }
}

/// Builds a wharf configuration and starts the binary.
#[derive(Debug, Clone)]
pub struct WharfBuilder {
    upstreams: Vec<UpstreamCfg>,
    tag_ttl: String,
    max_size: String,
    extra_toml: String,
    env: Vec<(String, String)>,
}

impl WharfBuilder {
    pub fn upstream(mut self, u: UpstreamCfg) -> Self {
        self.upstreams.push(u);
        self
    }

    /// `[cache] tag_ttl` (default `"5m"`).
    pub fn tag_ttl(mut self, ttl: &str) -> Self {
        self.tag_ttl = ttl.into();
        self
    }

    /// `[cache] max_size` (default `"10GiB"`).
    pub fn max_size(mut self, size: &str) -> Self {
        self.max_size = size.into();
        self
    }

    /// Raw TOML appended at the end of the file; start it with a table header.
    pub fn extra_toml(mut self, toml: &str) -> Self {
        self.extra_toml.push('\n');
        self.extra_toml.push_str(toml);
        self
    }

    /// An environment variable for the wharf process.
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    /// Writes `wharf.toml` into `dir` with these listen ports; returns its path and the
    /// environment the process needs.
    pub fn write_config(
        &self,
        dir: &Path,
        listen: u16,
        admin: u16,
    ) -> (PathBuf, Vec<(String, String)>) {
        let mut env = self.env.clone();
        let mut s = format!(
            "# written by the wharf-e2e harness\n[server]\nlisten = \"127.0.0.1:{listen}\"\n\
             admin_listen = \"127.0.0.1:{admin}\"\n\n[cache]\ndir = {}\nmax_size = {}\ntag_ttl = {}\n",
            toml_str(&dir.join("store").display().to_string()),
            toml_str(&self.max_size),
            toml_str(&self.tag_ttl)
        );
        for u in &self.upstreams {
            s += &u.render(dir, &mut env);
        }
        s += &self.extra_toml;
        let path = dir.join("wharf.toml");
        write_file(&path, s);
        (path, env)
    }

    pub fn start(self) -> Wharf {
        let dir = temp_dir("wharf");
        let (listen, admin) = (free_port(), free_port());
        let (config, env) = self.write_config(dir.path(), listen, admin);
        let mut w = Wharf {
            log: dir.path().join("wharf.log"),
            dir,
            config,
            env,
            listen,
            admin,
            proc: None,
        };
        w.spawn();
        w
    }
}

/// A running wharf. Killed when dropped; its log is printed if the test panicked.
pub struct Wharf {
    dir: tempfile::TempDir,
    config: PathBuf,
    env: Vec<(String, String)>,
    listen: u16,
    admin: u16,
    log: PathBuf,
    proc: Option<Proc>,
}

impl Wharf {
    pub fn builder() -> WharfBuilder {
        WharfBuilder {
            upstreams: Vec::new(),
            tag_ttl: "5m".into(),
            max_size: "10GiB".into(),
            extra_toml: String::new(),
            env: Vec::new(),
        }
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
        let url = format!("{}/v2/", self.url());
        let http = Http::new().timeout(Duration::from_secs(5));
        let mut last = String::from("no answer");
        let ready = wait_for(Duration::from_secs(20), Duration::from_millis(50), || {
            if let Some(st) = proc.exited() {
                panic!(
                    "wharf exited ({st}) during start-up:\n{}",
                    tail(&self.log, 100)
                );
            }
            match http.try_request("GET", &url, &[], bytes::Bytes::new()) {
                Ok(r)
                    if r.status == 200
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

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.listen)
    }

    /// `127.0.0.1:PORT`
    pub fn host_port(&self) -> String {
        format!("127.0.0.1:{}", self.listen)
    }

    /// `http://127.0.0.1:ADMIN_PORT`
    pub fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin)
    }

    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// `[cache] dir`
    pub fn cache_dir(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// Everything wharf wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// SIGTERM, wait up to 10 s (then SIGKILL).
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.stop(Duration::from_secs(10));
        }
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
