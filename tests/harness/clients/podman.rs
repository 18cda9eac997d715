//! podman 4.3 as root with a private vfs store, configured through environment variables.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::process::{CmdOut, run};
use crate::util::{dead_host_port, temp_dir, write_file};

const TIMEOUT: Duration = Duration::from_secs(300);

/// A podman with its own registries.conf, storage and containers.conf. A new `Podman` has an
/// empty image store, so its first pull fetches everything.
pub struct Podman {
    dir: tempfile::TempDir,
    /// `$HOME` for podman when it has a per-user drop-in (see [`Podman::with_drop_in`]).
    home: Option<PathBuf>,
}

impl Podman {
    /// `registries.conf` text of your own.
    pub fn with_registries_conf(text: &str) -> Podman {
        let dir = temp_dir("podman");
        let d = dir.path();
        write_file(&d.join("registries.conf"), text);
        write_file(
            &d.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"vfs\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
                d.join("root").display(),
                d.join("runroot").display()
            ),
        );
        write_file(
            &d.join("containers.conf"),
            format!(
                "[engine]\nevents_logger = \"none\"\ncgroup_manager = \"cgroupfs\"\ntmp_dir = \"{}\"\n\
                 volume_path = \"{}\"\n",
                d.join("tmp").display(),
                d.join("volumes").display()
            ),
        );
        crate::clients::write_policy(&d.join("policy.json"));
        Podman { dir, home: None }
    }

    /// The harness's main registries.conf without mirrors, plus `text` as the drop-in
    /// `registries.conf.d/wharf.conf` where podman reads per-user drop-ins
    /// (`$HOME/.config/containers/`, `$HOME` private to this instance): the file
    /// `wharf client-config podman` writes, used as an operator would install it.
    pub fn with_drop_in(text: &str) -> Podman {
        let mut p = Podman::with_registries_conf(&crate::clients::plain_registries_conf(&[]));
        let home = p.dir.path().join("home");
        write_file(
            &home.join(".config/containers/registries.conf.d/wharf.conf"),
            text,
        );
        p.home = Some(home);
        p
    }

    /// [`crate::REGISTRY_NAME`] -> dead port, mirrored at `mirror_location`
    /// (`127.0.0.1:PORT` or `127.0.0.1:PORT/oracle`).
    pub fn mirror(mirror_location: &str) -> Podman {
        Podman::with_registries_conf(&crate::clients::registries_conf(
            crate::REGISTRY_NAME,
            &dead_host_port(),
            Some(mirror_location),
        ))
    }

    /// No mirrors; `insecure_hosts` may be pulled over HTTP / unverified TLS.
    pub fn plain(insecure_hosts: &[&str]) -> Podman {
        Podman::with_registries_conf(&crate::clients::plain_registries_conf(insecure_hosts))
    }

    /// Replaces the signature policy `pull` uses (`policy.json` text).
    pub fn set_policy(&self, policy: &str) {
        write_file(&self.dir.path().join("policy.json"), policy);
    }

    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// `podman` with this instance's configuration in its environment.
    pub fn command(&self) -> Command {
        let d = self.dir.path();
        let mut cmd = Command::new("podman");
        cmd.env("CONTAINERS_REGISTRIES_CONF", d.join("registries.conf"))
            .env("CONTAINERS_STORAGE_CONF", d.join("storage.conf"))
            .env("CONTAINERS_CONF", d.join("containers.conf"));
        if let Some(home) = &self.home {
            cmd.env("HOME", home);
        }
        cmd
    }

    /// `podman pull EXTRA REFERENCE` (with our signature policy).
    pub fn pull(&self, reference: &str, extra: &[&str]) -> CmdOut {
        let mut cmd = self.command();
        cmd.arg("pull")
            .arg("--signature-policy")
            .arg(self.dir.path().join("policy.json"))
            .args(extra)
            .arg(reference);
        run(&mut cmd, TIMEOUT)
    }

    /// `podman image inspect --format FORMAT REFERENCE`, trimmed; panics on failure.
    pub fn inspect(&self, reference: &str, format: &str) -> String {
        let mut cmd = self.command();
        cmd.args(["image", "inspect", "--format", format, reference]);
        run(&mut cmd, Duration::from_secs(60))
            .expect_ok("podman image inspect")
            .stdout
            .trim()
            .to_owned()
    }

    /// The image's `.Digest`: the manifest (or index) digest it was pulled by.
    pub fn image_digest(&self, reference: &str) -> String {
        self.inspect(reference, "{{.Digest}}")
    }

    /// The image's `.RepoDigests` (`name@sha256:...`); after pulling one platform of an index
    /// they hold both the index digest and the chosen child's manifest digest.
    pub fn repo_digests(&self, reference: &str) -> Vec<String> {
        self.inspect(reference, "{{range .RepoDigests}}{{println .}}{{end}}")
            .lines()
            .map(str::to_owned)
            .collect()
    }
}
