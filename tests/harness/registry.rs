//! An upstream registry: Debian's `docker-registry` (CNCF Distribution 2.8) as a child process.
//!
//! Variants: plain HTTP without auth; HTTPS (self-signed, SAN 127.0.0.1) with htpasswd Basic
//! auth; HTTPS with Bearer-token auth through a [`TokenIssuer`]; HTTPS with a certificate the
//! test made (a guide's `openssl req -x509` one). By default each instance serves
//! its own hardlinked copy of the pushed test images (read-only mode, so the shared files are
//! never written), which keeps its access log to the requests of one test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::access_log::{self, Req};
use crate::http::Http;
use crate::process::{Proc, run};
use crate::token::{TokenIssuer, TokenOptions};
use crate::util::{free_port, tail, temp_dir, wait_for, write_file};
use wharf_testkit::pki::{self, TlsFiles};

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// Which credentials the upstream demands.
#[derive(Debug, Clone)]
pub enum Auth {
    None,
    Htpasswd { user: String, password: String },
    Token(TokenOptions),
}

/// Where the upstream keeps its repositories.
#[derive(Debug, Clone)]
pub enum Storage {
    /// A hardlinked copy of the pushed test images (read-only).
    Template,
    /// An empty, writable storage.
    Empty,
    /// This directory, writable.
    Dir(PathBuf),
}

/// Builds an [`Upstream`].
#[derive(Debug, Clone)]
pub struct UpstreamBuilder {
    tls: bool,
    tls_files: Option<TlsFiles>,
    auth: Auth,
    storage: Storage,
}

impl UpstreamBuilder {
    /// Serve HTTPS with a fresh self-signed certificate.
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Serve HTTPS with `files` as they are, e.g. [`pki::guide_self_signed`]'s `CA:TRUE`
    /// certificate, which rustls (and so [`Upstream::http`]) refuses: readiness is then a TCP
    /// connect, not a request.
    pub fn tls_files(mut self, files: TlsFiles) -> Self {
        self.tls = true;
        self.tls_files = Some(files);
        self
    }

    /// Basic auth from an htpasswd (bcrypt) file; implies HTTPS.
    pub fn htpasswd(mut self, user: &str, password: &str) -> Self {
        self.tls = true;
        self.auth = Auth::Htpasswd {
            user: user.into(),
            password: password.into(),
        };
        self
    }

    /// Bearer-token auth with a [`TokenIssuer`] (HTTPS, same certificate); implies HTTPS.
    pub fn token(mut self, opts: TokenOptions) -> Self {
        self.tls = true;
        self.auth = Auth::Token(opts);
        self
    }

    pub fn storage(mut self, storage: Storage) -> Self {
        self.storage = storage;
        self
    }

    pub fn start(self) -> Upstream {
        Upstream::start(self)
    }
}

/// A request-count position in the access log (see [`Upstream::mark`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark(usize);

/// A running upstream registry. Killed when dropped.
pub struct Upstream {
    dir: tempfile::TempDir,
    _storage_copy: Option<tempfile::TempDir>,
    storage: PathBuf,
    port: u16,
    tls: Option<TlsFiles>,
    /// The TLS files came from the test ([`UpstreamBuilder::tls_files`]).
    tls_given: bool,
    creds: Option<(String, String)>,
    token: Option<TokenIssuer>,
    config: PathBuf,
    access_log: PathBuf,
    app_log: PathBuf,
    proc: Option<Proc>,
}

impl Upstream {
    pub fn builder() -> UpstreamBuilder {
        UpstreamBuilder {
            tls: false,
            tls_files: None,
            auth: Auth::None,
            storage: Storage::Template,
        }
    }

    /// Plain HTTP, no auth, the test images.
    pub fn plain() -> Upstream {
        Upstream::builder().start()
    }

    /// HTTPS + htpasswd Basic auth (`bench` / `benchpass`), the test images.
    pub fn htpasswd_tls() -> Upstream {
        Upstream::builder().htpasswd("bench", "benchpass").start()
    }

    /// HTTPS + Bearer tokens from a [`TokenIssuer`] with `opts`, the test images.
    pub fn token_tls(opts: TokenOptions) -> Upstream {
        Upstream::builder().token(opts).start()
    }

    fn start(b: UpstreamBuilder) -> Upstream {
        let dir = temp_dir("upstream");
        let (storage_copy, storage, readonly) = match b.storage {
            Storage::Template => {
                let copy = crate::template::storage_copy();
                let path = copy.path().join("storage");
                (Some(copy), path, true)
            }
            Storage::Empty => {
                let p = dir.path().join("storage");
                std::fs::create_dir_all(&p).expect("mkdir storage");
                (None, p, false)
            }
            Storage::Dir(p) => (None, p, false),
        };
        let tls_given = b.tls_files.is_some();
        let tls = b
            .tls_files
            .or_else(|| b.tls.then(|| pki::self_signed(&dir.path().join("tls"))));
        let mut auth_yaml = String::new();
        let mut creds = None;
        let mut token = None;
        match b.auth {
            Auth::None => {}
            Auth::Htpasswd { user, password } => {
                let out = run(
                    Command::new("htpasswd").args(["-Bbn", &user, &password]),
                    Duration::from_secs(30),
                )
                .expect_ok("htpasswd -Bbn (apache2-utils)");
                let file = dir.path().join("htpasswd");
                write_file(&file, out.stdout.trim());
                auth_yaml = format!(
                    "auth:\n  htpasswd:\n    realm: wharf-e2e-basic\n    path: {}\n",
                    file.display()
                );
                creds = Some((user, password));
            }
            Auth::Token(opts) => {
                let key = pki::signing_key(&dir.path().join("token"));
                let issuer = TokenIssuer::start(opts.clone(), key, tls.as_ref());
                auth_yaml = format!(
                    "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                    issuer.realm(),
                    opts.service,
                    opts.issuer,
                    issuer.cert_pem().display()
                );
                creds = Some((opts.user, opts.password));
                token = Some(issuer);
            }
        }
        let port = free_port();
        let mut yaml = format!(
            "version: 0.1\n\
             log:\n  level: info\n  formatter: text\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: false\n\
             \x20 cache:\n    blobdescriptor: inmemory\n\
             \x20 maintenance:\n    uploadpurging:\n      enabled: false\n    readonly:\n      enabled: {readonly}\n\
             http:\n  addr: 127.0.0.1:{port}\n  headers:\n    X-Content-Type-Options: [nosniff]\n",
            storage.display()
        );
        if let Some(t) = &tls {
            yaml += &format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                t.cert.display(),
                t.key.display()
            );
        }
        yaml += &auth_yaml;
        let config = dir.path().join("config.yml");
        write_file(&config, yaml);
        let mut up = Upstream {
            access_log: dir.path().join("access.log"),
            app_log: dir.path().join("registry.log"),
            config,
            _storage_copy: storage_copy,
            storage,
            port,
            tls,
            tls_given,
            creds,
            token,
            proc: None,
            dir,
        };
        up.start_again();
        up
    }

    /// Starts the registry process (again): same port, config and storage. The access log
    /// keeps growing, so marks stay valid across restarts.
    pub fn start_again(&mut self) {
        assert!(self.proc.is_none(), "upstream already running");
        let mut cmd = Command::new(REGISTRY_BIN);
        cmd.arg("serve").arg(&self.config);
        let mut proc = Proc::spawn("docker-registry", cmd, &self.access_log, &self.app_log);
        let http = self.http();
        let url = format!("{}/v2/", self.url());
        let ready = wait_for(Duration::from_secs(20), Duration::from_millis(50), || {
            if let Some(st) = proc.exited() {
                panic!(
                    "docker-registry exited ({st}) during start-up:\n{}",
                    tail(&self.app_log, 40)
                );
            }
            if self.tls_given {
                return std::net::TcpStream::connect(("127.0.0.1", self.port))
                    .ok()
                    .map(drop);
            }
            http.try_request("GET", &url, &[], bytes::Bytes::new())
                .ok()
                .map(drop)
        });
        assert!(
            ready.is_some(),
            "docker-registry did not answer {url} within 20 s:\n{}",
            tail(&self.app_log, 40)
        );
        self.proc = Some(proc);
        // The readiness probe is in the access log; callers use marks, so that is harmless.
    }

    /// SIGTERM and wait (10 s, then SIGKILL): the port then refuses connections.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.stop(Duration::from_secs(10));
        }
    }

    /// SIGSTOP: the registry keeps its port (the kernel still accepts connections) but answers
    /// nothing, as a hung registry does. [`Upstream::resume`] undoes it; so does dropping it.
    pub fn hang(&self) {
        if let Some(pid) = self.proc.as_ref().and_then(Proc::pid) {
            crate::process::signal(pid, "STOP");
        }
    }

    /// SIGCONT after [`Upstream::hang`].
    pub fn resume(&self) {
        if let Some(pid) = self.proc.as_ref().and_then(Proc::pid) {
            crate::process::signal(pid, "CONT");
        }
    }

    pub fn is_running(&self) -> bool {
        self.proc.is_some()
    }

    /// The registry's process id while it runs (benchmarks read its CPU time and memory).
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().and_then(Proc::pid)
    }

    /// A client that trusts this upstream's certificate (plain for HTTP).
    pub fn http(&self) -> Http {
        match &self.tls {
            Some(t) => Http::with_ca(&t.cert),
            None => Http::new(),
        }
    }

    /// `http://127.0.0.1:PORT` or `https://...`
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:PORT`
    pub fn host_port(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The self-signed certificate (PEM) of an HTTPS upstream: the CA file clients trust.
    pub fn ca_file(&self) -> Option<&Path> {
        self.tls.as_ref().map(|t| t.cert.as_path())
    }

    /// `(user, password)` that the upstream accepts, if it has auth.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.creds.as_ref().map(|(u, p)| (u.as_str(), p.as_str()))
    }

    pub fn token_issuer(&self) -> Option<&TokenIssuer> {
        self.token.as_ref()
    }

    pub fn storage_dir(&self) -> &Path {
        &self.storage
    }

    /// The directory with this upstream's config and logs.
    pub fn work_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn access_log_path(&self) -> &Path {
        &self.access_log
    }

    /// Waits until the access log has not grown for 500 ms (at most 15 s): Distribution writes
    /// a line after the response is sent, so a just-finished client may not be logged yet.
    pub fn wait_log_stable(&self) {
        let size = || {
            std::fs::metadata(&self.access_log)
                .map(|m| m.len())
                .unwrap_or(0)
        };
        let mut last = size();
        let mut stable_since = tokio::time::Instant::now();
        let _ = wait_for(Duration::from_secs(15), Duration::from_millis(100), || {
            let now = size();
            if now != last {
                last = now;
                stable_since = tokio::time::Instant::now();
            }
            (stable_since.elapsed() >= Duration::from_millis(500)).then_some(())
        });
    }

    /// Every request in the access log so far (after waiting for it to be stable).
    pub fn requests(&self) -> Vec<Req> {
        self.wait_log_stable();
        let text = std::fs::read(&self.access_log).unwrap_or_default();
        access_log::parse(&String::from_utf8_lossy(&text))
    }

    /// The current position in the access log; count what follows with [`Upstream::since`].
    pub fn mark(&self) -> Mark {
        Mark(self.requests().len())
    }

    /// Requests logged after `mark`.
    pub fn since(&self, mark: Mark) -> Vec<Req> {
        let mut all = self.requests();
        all.drain(..mark.0.min(all.len()));
        all
    }

    /// How many requests after `mark` satisfy `pred`.
    pub fn count_since(&self, mark: Mark, pred: impl Fn(&Req) -> bool) -> usize {
        self.since(mark).iter().filter(|r| pred(r)).count()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- upstream {} access log (last 40 lines) ----\n{}\n---- upstream app log (last 20 lines) ----\n{}",
                self.url(),
                tail(&self.access_log, 40),
                tail(&self.app_log, 20)
            );
        }
    }
}
