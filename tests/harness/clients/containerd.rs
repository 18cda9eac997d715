//! containerd 1.6 as a plain, private process (root, state and sockets in a temp dir; CRI and
//! the heavy snapshotters disabled) and `ctr` against it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::{CmdOut, Proc, run};
use crate::util::{tail, temp_dir, wait_for, write_file};

const TIMEOUT: Duration = Duration::from_secs(300);

/// A running containerd with an empty content store. Killed when dropped.
pub struct Containerd {
    dir: tempfile::TempDir,
    sock: PathBuf,
    proc: Proc,
}

impl Containerd {
    pub fn start() -> Containerd {
        let dir = temp_dir("containerd");
        let d = dir.path();
        let sock = d.join("containerd.sock");
        let config = d.join("config.toml");
        write_file(
            &config,
            format!(
                "# written by the wharf-e2e harness\nversion = 2\nroot = \"{root}\"\nstate = \"{state}\"\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\", \"io.containerd.snapshotter.v1.btrfs\",\n\
                 \x20 \"io.containerd.snapshotter.v1.zfs\", \"io.containerd.snapshotter.v1.aufs\",\n\
                 \x20 \"io.containerd.snapshotter.v1.devmapper\"]\n\
                 [grpc]\n  address = \"{sock}\"\n[ttrpc]\n  address = \"{ttrpc}\"\n\
                 [debug]\n  address = \"\"\n[metrics]\n  address = \"\"\n\
                 [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{opt}\"\n",
                root = d.join("root").display(),
                state = d.join("state").display(),
                sock = sock.display(),
                ttrpc = d.join("containerd-ttrpc.sock").display(),
                opt = d.join("opt").display(),
            ),
        );
        let log = d.join("containerd.log");
        let mut cmd = Command::new("containerd");
        cmd.arg("--config").arg(&config);
        let mut proc = Proc::spawn("containerd", cmd, &log, &log);
        let up = wait_for(Duration::from_secs(20), Duration::from_millis(50), || {
            if let Some(st) = proc.exited() {
                panic!("containerd exited ({st}):\n{}", tail(&log, 40));
            }
            if !sock.exists() {
                return None;
            }
            let out = run(
                Command::new("ctr")
                    .arg("--address")
                    .arg(&sock)
                    .arg("version"),
                Duration::from_secs(10),
            );
            out.ok().then_some(())
        });
        assert!(
            up.is_some(),
            "containerd did not start within 20 s:\n{}",
            tail(&log, 40)
        );
        Containerd { dir, sock, proc }
    }

    /// Writes `<hosts>/<registry>/hosts.toml`: `server = dead_server` and one mirror host
    /// (`http://127.0.0.1:PORT`) with pull and resolve. containerd then adds `?ns=<registry>`.
    pub fn mirror_hosts(&self, registry: &str, dead_server: &str, mirror_url: &str) {
        let path = self.hosts_dir().join(registry).join("hosts.toml");
        write_file(
            &path,
            format!(
                "# written by the wharf-e2e harness\nserver = \"{dead_server}\"\n\n\
                 [host.\"{mirror_url}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
            ),
        );
    }

    /// Writes `<hosts>/<host_port>/hosts.toml` for pulling `host_port/...` straight from a
    /// registry at `server_url` (`https://...` with `ca` trusted). Without such a file ctr
    /// talks plain HTTP to 127.0.0.1, which an HTTPS registry answers with 400. containerd 1.6
    /// rejects a hosts.toml without a `[host]` table ("invalid `host` tree"), so the server is
    /// also listed as its own host.
    pub fn server_hosts(&self, host_port: &str, server_url: &str, ca: Option<&Path>) {
        let mut text = format!(
            "# written by the wharf-e2e harness\nserver = \"{server_url}\"\n\n\
             [host.\"{server_url}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
        );
        if let Some(ca) = ca {
            text += &format!("  ca = \"{}\"\n", ca.display());
        }
        write_file(&self.hosts_dir().join(host_port).join("hosts.toml"), text);
    }

    pub fn hosts_dir(&self) -> PathBuf {
        self.dir.path().join("hosts")
    }

    /// `ctr --address SOCK ARGS`.
    pub fn ctr(&self, args: &[&str]) -> CmdOut {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address").arg(&self.sock).args(args);
        run(&mut cmd, TIMEOUT)
    }

    /// `ctr images pull --hosts-dir HOSTS --snapshotter native EXTRA REFERENCE`.
    pub fn pull(&self, reference: &str, extra: &[&str]) -> CmdOut {
        let hosts = self.hosts_dir();
        std::fs::create_dir_all(&hosts).expect("mkdir hosts");
        let hosts = hosts.display().to_string();
        let mut args = vec![
            "images",
            "pull",
            "--hosts-dir",
            &hosts,
            "--snapshotter",
            "native",
        ];
        args.extend_from_slice(extra);
        args.push(reference);
        self.ctr(&args)
    }

    /// The target digest of an image in the store (`ctr images ls`), if it is there.
    pub fn image_digest(&self, reference: &str) -> Option<String> {
        let out = self.ctr(&["images", "ls"]).expect_ok("ctr images ls");
        out.stdout.lines().find_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.first() == Some(&reference)).then(|| cols.get(2).map(|s| s.to_string()))?
        })
    }

    /// Every digest in the content store (`ctr content ls`).
    pub fn content_digests(&self) -> Vec<String> {
        let out = self.ctr(&["content", "ls"]).expect_ok("ctr content ls");
        out.stdout
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
            .collect()
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.pid()
    }
}
