//! skopeo 1.9: copies into fresh `dir:` destinations, so every copy fetches everything.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::process::{CmdOut, run};
use crate::util::{dead_host_port, sha256_digest, temp_dir, write_file};

/// Time allowed for one skopeo command (the 300 MiB image takes seconds here).
const TIMEOUT: Duration = Duration::from_secs(300);

/// A skopeo with its own policy, empty `registries.d` and scratch space.
pub struct Skopeo {
    dir: tempfile::TempDir,
    n: AtomicUsize,
}

/// The result of one `skopeo copy ... dir:DEST`.
#[derive(Debug)]
pub struct Copied {
    pub out: CmdOut,
    pub dest: PathBuf,
    /// sha256 of the copied `manifest.json` (skopeo keeps the bytes as served).
    pub manifest_digest: Option<String>,
}

impl Copied {
    pub fn ok(&self) -> bool {
        self.out.ok() && self.manifest_digest.is_some()
    }

    pub fn expect_ok(self, what: &str) -> Copied {
        assert!(self.ok(), "{what} failed:\n{}", self.out);
        self
    }

    pub fn digest(&self) -> &str {
        self.manifest_digest.as_deref().unwrap_or("<none>")
    }

    pub fn manifest(&self) -> Vec<u8> {
        std::fs::read(self.dest.join("manifest.json")).unwrap_or_default()
    }
}

impl Skopeo {
    pub fn new() -> Skopeo {
        let dir = temp_dir("skopeo");
        crate::clients::write_policy(&dir.path().join("policy.json"));
        std::fs::create_dir_all(dir.path().join("registries.d")).expect("mkdir registries.d");
        Skopeo {
            dir,
            n: AtomicUsize::new(0),
        }
    }

    /// Replaces the signature policy (`policy.json` text) of every later command.
    pub fn set_policy(&self, policy: &str) {
        write_file(&self.dir.path().join("policy.json"), policy);
    }

    /// A registries.conf mapping [`crate::REGISTRY_NAME`] to a dead port with
    /// `mirror_location` (`127.0.0.1:PORT` or `127.0.0.1:PORT/oracle`) as its mirror.
    pub fn mirror_conf(&self, mirror_location: &str) -> PathBuf {
        let n = self.n.fetch_add(1, Ordering::SeqCst);
        let path = self.dir.path().join(format!("registries-{n}.conf"));
        let text = crate::clients::registries_conf(
            crate::REGISTRY_NAME,
            &dead_host_port(),
            Some(mirror_location),
        );
        write_file(&path, text);
        path
    }

    /// `skopeo [--registries-conf CONF] copy --src-tls-verify=false EXTRA docker://SRC dir:NEW`.
    pub fn copy(&self, conf: Option<&Path>, src: &str, extra: &[&str]) -> Copied {
        let n = self.n.fetch_add(1, Ordering::SeqCst);
        let dest = self.dir.path().join(format!("copy-{n}"));
        let mut cmd = Command::new("skopeo");
        cmd.arg("--policy")
            .arg(self.dir.path().join("policy.json"))
            .arg("--registries.d")
            .arg(self.dir.path().join("registries.d"));
        if let Some(c) = conf {
            cmd.arg("--registries-conf").arg(c);
        }
        cmd.args(["copy", "--src-tls-verify=false"])
            .args(extra)
            .arg(format!("docker://{src}"))
            .arg(format!("dir:{}", dest.display()));
        let out = run(&mut cmd, TIMEOUT);
        let manifest_digest = std::fs::read(dest.join("manifest.json"))
            .ok()
            .map(|b| sha256_digest(&b));
        Copied {
            out,
            dest,
            manifest_digest,
        }
    }

    /// Copies `container-registry.oracle.com/<image>` through the mirror config `conf`.
    pub fn copy_via_mirror(&self, conf: &Path, image: &str) -> Copied {
        self.copy(
            Some(conf),
            &format!("{}/{image}", crate::REGISTRY_NAME),
            &[],
        )
    }

    /// Copies `<host_port>/<image>` directly (e.g. from wharf or an upstream).
    pub fn copy_direct(&self, host_port: &str, image: &str, extra: &[&str]) -> Copied {
        self.copy(None, &format!("{host_port}/{image}"), extra)
    }

    /// `skopeo copy --dest-tls-verify=false EXTRA dir:SRC docker://DEST`: a push of a local
    /// layout (e.g. one [`Skopeo::copy`] wrote), so every registry is sent the same bytes by
    /// the same client.
    pub fn push_dir(&self, src: &Path, dest: &str, extra: &[&str]) -> CmdOut {
        let mut cmd = Command::new("skopeo");
        cmd.arg("--policy")
            .arg(self.dir.path().join("policy.json"))
            .arg("--registries.d")
            .arg(self.dir.path().join("registries.d"))
            .args(["copy", "--dest-tls-verify=false"])
            .args(extra)
            .arg(format!("dir:{}", src.display()))
            .arg(format!("docker://{dest}"));
        run(&mut cmd, TIMEOUT)
    }

    /// `skopeo inspect --raw` of `docker://<src>`: the manifest bytes as served.
    pub fn inspect_raw(&self, src: &str, extra: &[&str]) -> CmdOut {
        let mut cmd = Command::new("skopeo");
        cmd.arg("--policy")
            .arg(self.dir.path().join("policy.json"))
            .args(["inspect", "--raw", "--tls-verify=false"])
            .args(extra)
            .arg(format!("docker://{src}"));
        run(&mut cmd, TIMEOUT)
    }
}

impl Default for Skopeo {
    fn default() -> Self {
        Skopeo::new()
    }
}
