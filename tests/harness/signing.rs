//! Signed images, made the way an image author makes them: a GPG key (`gpg --batch`), then
//! `skopeo copy --sign-by` into the test upstream, which writes each simple-signing signature
//! into a staging lookaside (`sigstore-staging` in a `registries.d` file, as containers'
//! `registries.d(5)` describes). [`SignatureStore`] serves that tree over plain HTTP with
//! nginx, as a static web server is meant to serve a lookaside; only wharf is told its URL.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::{CmdOut, Proc, run};
use crate::registry::Upstream;
use crate::util::{free_port, tail, temp_dir, wait_for, write_file};

const TIMEOUT: Duration = Duration::from_secs(120);

/// A throwaway GPG home with keys made in it.
pub struct Gpg {
    home: tempfile::TempDir,
}

impl Gpg {
    pub fn new() -> Gpg {
        let home = tempfile::Builder::new()
            .prefix("wharf-gpg-")
            .tempdir_in("/tmp")
            .expect("gpg home");
        Gpg { home }
    }

    pub fn home(&self) -> &Path {
        self.home.path()
    }

    fn gpg(&self) -> Command {
        let mut cmd = Command::new("gpg");
        cmd.env("GNUPGHOME", self.home.path()).arg("--batch");
        cmd
    }

    /// Generates a signing key (`rsa2048`, as Oracle's is RSA) for `uid`; returns its
    /// fingerprint.
    pub fn generate(&self, uid: &str) -> String {
        let out = run(
            self.gpg().args([
                "--passphrase",
                "",
                "--quick-gen-key",
                uid,
                "rsa2048",
                "sign",
                "never",
            ]),
            TIMEOUT,
        );
        assert!(
            out.ok(),
            "gpg --quick-gen-key (apt-get install gnupg):\n{out}"
        );
        let listed = run(
            self.gpg().args(["--with-colons", "--list-keys", uid]),
            TIMEOUT,
        )
        .expect_ok("gpg --list-keys");
        listed
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("fpr:"))
            .and_then(|l| l.split(':').find(|f| f.len() == 40))
            .unwrap_or_else(|| panic!("no fingerprint in:\n{}", listed.stdout))
            .to_owned()
    }

    /// The public key `fingerprint`, ASCII-armored, written to `path` (what `GPGKeys` in a
    /// `policy.json` names, and what Oracle ships as its key file).
    pub fn export(&self, fingerprint: &str, path: &Path) {
        let out = run(
            self.gpg().args(["--armor", "--export", fingerprint]),
            TIMEOUT,
        )
        .expect_ok("gpg --export");
        write_file(path, out.stdout);
    }
}

impl Default for Gpg {
    fn default() -> Self {
        Gpg::new()
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.home.path())
            .args(["--kill", "gpg-agent"])
            .output();
    }
}

/// `skopeo copy --sign-by FINGERPRINT [--sign-identity IDENTITY]` of `src`
/// (`host:port/repo:tag`, plain HTTP) to `dest` (`repo:tag`) in `up` (a writable one), with
/// the signatures written under `staging` (a lookaside tree).
pub fn sign_copy(
    gpg: &Gpg,
    fingerprint: &str,
    src: &str,
    up: &Upstream,
    dest: &str,
    identity: Option<&str>,
    staging: &Path,
) -> CmdOut {
    let conf = temp_dir("registries-d");
    write_file(
        &conf.path().join("staging.yaml"),
        format!(
            "docker:\n  {}:\n    sigstore-staging: file://{}\n",
            up.host_port(),
            staging.display()
        ),
    );
    let policy = conf.path().join("policy.json");
    crate::clients::write_policy(&policy);
    let mut cmd = Command::new("skopeo");
    cmd.env("GNUPGHOME", gpg.home())
        .arg("--policy")
        .arg(&policy)
        .arg("--registries.d")
        .arg(conf.path())
        .args([
            "copy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            "--sign-by",
            fingerprint,
        ]);
    if let Some(id) = identity {
        cmd.args(["--sign-identity", id]);
    }
    cmd.arg(format!("docker://{src}"))
        .arg(format!("docker://{}/{dest}", up.host_port()));
    run(&mut cmd, TIMEOUT)
}

/// `skopeo copy` of `src` (`host:port/repo:tag`) to `dest` in `up` without signing: an
/// unsigned image.
pub fn copy_unsigned(src: &str, up: &Upstream, dest: &str) -> CmdOut {
    let dir = temp_dir("copy-policy");
    let policy = dir.path().join("policy.json");
    crate::clients::write_policy(&policy);
    let mut cmd = Command::new("skopeo");
    cmd.arg("--policy")
        .arg(&policy)
        .args(["copy", "--src-tls-verify=false", "--dest-tls-verify=false"])
        .arg(format!("docker://{src}"))
        .arg(format!("docker://{}/{dest}", up.host_port()));
    run(&mut cmd, TIMEOUT)
}

/// A `policy.json` that requires images under each of `scopes` (a registry host, or
/// `host/repository`) to be signed by the key in `key_file`, and rejects everything else: the
/// Oracle Linux guide's policy, for these scopes.
pub fn signed_by_policy(scopes: &[&str], key_file: &Path) -> String {
    let entries: Vec<String> = scopes
        .iter()
        .map(|s| {
            format!(
                "\"{s}\": [{{\"type\": \"signedBy\", \"keyType\": \"GPGKeys\", \"keyPath\": \"{}\"}}]",
                key_file.display()
            )
        })
        .collect();
    format!(
        "{{\"default\": [{{\"type\": \"reject\"}}], \"transports\": {{\"docker\": {{{}}}}}}}",
        entries.join(", ")
    )
}

/// nginx serving a directory as static files, with an access log: a lookaside as its
/// publishers run it. Stopped when dropped.
pub struct SignatureStore {
    dir: tempfile::TempDir,
    root: PathBuf,
    port: u16,
    proc: Option<Proc>,
}

impl SignatureStore {
    pub fn serving(root: &Path) -> SignatureStore {
        let nginx = crate::bench::NGINX_BIN;
        assert!(
            Path::new(nginx).is_file(),
            "{nginx} not found: apt-get install nginx"
        );
        let dir = temp_dir("lookaside");
        let port = free_port();
        let mut s = SignatureStore {
            dir,
            root: root.to_path_buf(),
            port,
            proc: None,
        };
        s.start();
        s
    }

    fn start(&mut self) {
        let d = self.dir.path();
        let user = if crate::bench::is_root() {
            "user root;\n"
        } else {
            ""
        };
        let conf = format!(
            "{user}daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n  access_log {d}/access.log;\n  default_type application/octet-stream;\n\
             \x20 client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
             \x20 fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
             \x20 server {{\n    listen 127.0.0.1:{port};\n    root {root};\n  }}\n}}\n",
            d = d.display(),
            port = self.port,
            root = self.root.display(),
        );
        let conf_path = d.join("nginx.conf");
        write_file(&conf_path, conf);
        let log = d.join("nginx.out");
        let mut cmd = Command::new(crate::bench::NGINX_BIN);
        cmd.arg("-p")
            .arg(d)
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(d.join("error.log"));
        let mut proc = Proc::spawn("lookaside nginx", cmd, &log, &log);
        let port = self.port;
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
        self.proc = Some(proc);
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops the server: the signature store is down.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.stop(Duration::from_secs(5));
        }
    }

    /// The request lines served so far (`GET /os/signed@sha256=.../signature-1 ...`).
    pub fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("access.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split('"').nth(1).map(str::to_owned))
            .collect()
    }
}

impl Drop for SignatureStore {
    fn drop(&mut self) {
        self.stop();
    }
}
