//! Docker Engine (Debian's `docker.io`, dockerd 20.10) as a private daemon, and the `docker`
//! CLI against it.
//!
//! dockerd runs as root with everything of its own in a temp dir: `--data-root`,
//! `--exec-root` (its containerd's sockets and state too), `--pidfile`, a unix socket for
//! `--host`; the vfs storage driver and no networking set-up (`--iptables=false
//! --ip-forward=false --ip-masq=false --bridge=none`), so it changes nothing on the machine.
//! Its configuration is the `daemon.json` under test, passed as `--config-file`, with one key
//! added: `deprecated-key-path` (dockerd 20.10 otherwise writes its trust key to
//! `/etc/docker/key.json`; it has no flag for it).
//!
//! registry-mirrors cover Docker Hub only, and Docker goes on to Hub after a mirror fails.
//! dockerd runs in a mount namespace of its own (`unshare --mount`) where `/etc/hosts` maps
//! Hub's hosts to 127.0.0.1, so that fallback is refused on loopback at once and no test
//! reaches beyond this machine.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::{CmdOut, Proc, run};
use crate::util::{tail, temp_dir, wait_for, write_file};

const TIMEOUT: Duration = Duration::from_secs(300);
/// dockerd starts in about a second here; the first start on a machine takes longer.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// dockerd stops its containerd on SIGTERM; SIGKILL would leave that behind.
const STOP_GRACE: Duration = Duration::from_secs(20);

/// The hosts Docker pulls Hub images from (and logs in to): loopback inside dockerd's namespace.
const HUB_HOSTS: &str = "registry-1.docker.io index.docker.io docker.io auth.docker.io";

/// A running dockerd with an empty image store. Stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Docker {
    dir: tempfile::TempDir,
    sock: PathBuf,
    log: PathBuf,
    proc: Option<Proc>,
}

impl Docker {
    /// Starts dockerd with `daemon_json` (a JSON object, e.g. what `wharf client-config docker`
    /// writes) as its configuration file; waits until `docker info` answers.
    pub fn start(daemon_json: &str) -> Docker {
        let dir = temp_dir("docker");
        let d = dir.path();
        let mut config: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(daemon_json)
                .unwrap_or_else(|e| panic!("daemon.json is not a JSON object: {e}\n{daemon_json}"));
        config.insert(
            "deprecated-key-path".into(),
            d.join("key.json").display().to_string().into(),
        );
        let config_file = d.join("daemon.json");
        write_file(
            &config_file,
            serde_json::to_vec_pretty(&config).expect("daemon.json"),
        );
        let hosts = d.join("hosts");
        write_file(
            &hosts,
            format!(
                "# written by the wharf-e2e harness\n127.0.0.1 localhost {HUB_HOSTS}\n::1 localhost\n"
            ),
        );
        let sock = d.join("docker.sock");
        let log = d.join("dockerd.log");
        let mut cmd = Command::new("unshare");
        // `unshare` and `sh` exec: the process we hold is dockerd itself.
        cmd.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg("mount --bind \"$0\" /etc/hosts && exec dockerd \"$@\"")
            .arg(&hosts)
            .arg("--config-file")
            .arg(&config_file)
            .arg("--data-root")
            .arg(d.join("data"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("docker.pid"))
            .arg("--host")
            .arg(format!("unix://{}", sock.display()))
            .args([
                "--storage-driver=vfs",
                "--iptables=false",
                "--ip-forward=false",
                "--ip-masq=false",
                "--bridge=none",
            ]);
        let mut proc = Proc::spawn("dockerd", cmd, &log, &log);
        let mut last = String::from("no answer");
        let up = wait_for(START_TIMEOUT, Duration::from_millis(100), || {
            if let Some(st) = proc.exited() {
                panic!("dockerd exited ({st}):\n{}", tail(&log, 60));
            }
            if !sock.exists() {
                return None;
            }
            let out = run(
                Command::new("docker")
                    .arg("-H")
                    .arg(format!("unix://{}", sock.display()))
                    .args(["info", "--format", "{{.ServerVersion}}"]),
                Duration::from_secs(10),
            );
            if out.ok() {
                return Some(());
            }
            last = out.to_string();
            None
        });
        if up.is_none() {
            proc.stop(STOP_GRACE);
            panic!(
                "dockerd did not answer `docker info` within {START_TIMEOUT:?} (last: {last}):\n{}",
                tail(&log, 60)
            );
        }
        Docker {
            dir,
            sock,
            log,
            proc: Some(proc),
        }
    }

    /// `docker -H unix://SOCK`.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new("docker");
        cmd.arg("-H")
            .arg(format!("unix://{}", self.sock.display()))
            // The CLI's own config (credentials, contexts) from this instance's dir.
            .env("DOCKER_CONFIG", self.dir.path().join("cli"));
        cmd
    }

    /// `docker ARGS`.
    pub fn docker(&self, args: &[&str]) -> CmdOut {
        run(self.command().args(args), TIMEOUT)
    }

    /// `docker pull REFERENCE`.
    pub fn pull(&self, reference: &str) -> CmdOut {
        self.docker(&["pull", reference])
    }

    /// The image's `RepoDigests` (`name@sha256:...`); panics on failure.
    pub fn repo_digests(&self, reference: &str) -> Vec<String> {
        self.docker(&[
            "image",
            "inspect",
            "--format",
            "{{range .RepoDigests}}{{println .}}{{end}}",
            reference,
        ])
        .expect_ok("docker image inspect")
        .stdout
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
    }

    /// `docker info` as the daemon reports its registry mirrors.
    pub fn mirrors(&self) -> Vec<String> {
        let out = self
            .docker(&[
                "info",
                "--format",
                "{{range .RegistryConfig.Mirrors}}{{println .}}{{end}}",
            ])
            .expect_ok("docker info");
        out.stdout
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Everything dockerd logged so far (it logs each mirror's failure before it moves on).
    pub fn log(&self) -> String {
        crate::util::settled_text(&self.log)
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().and_then(Proc::pid)
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.stop(STOP_GRACE);
        }
        if std::thread::panicking() {
            eprintln!(
                "---- dockerd log ({}, last 60 lines) ----\n{}\n---- end of dockerd log ----",
                self.log.display(),
                tail(&self.log, 60)
            );
        }
    }
}
