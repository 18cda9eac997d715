//! Real clients, each with its own temporary configuration and storage; nothing under `/etc` is
//! changed, and the configs are passed by flag or environment variable:
//!
//! - [`Skopeo`]: `skopeo --registries-conf FILE copy ... dir:<fresh dir>` (skopeo 1.9 ignores
//!   `CONTAINERS_REGISTRIES_CONF`), or straight from `docker://127.0.0.1:PORT/...`.
//! - [`Podman`]: `CONTAINERS_REGISTRIES_CONF`, `CONTAINERS_STORAGE_CONF` (vfs in a temp dir),
//!   `CONTAINERS_CONF`.
//! - [`Containerd`]: a private `containerd` process and `ctr --hosts-dir`.
//! - [`Docker`]: a private `dockerd` (its `daemon.json` as `--config-file`) and `docker -H`.
//!
//! Mirror configs name [`crate::REGISTRY_NAME`] with a dead loopback port as its primary
//! location: a pull that succeeds was served by the mirror.

pub mod containerd;
pub mod docker;
pub mod podman;
pub mod skopeo;

pub use containerd::Containerd;
pub use docker::Docker;
pub use podman::Podman;
pub use skopeo::{Copied, Skopeo};

use std::path::Path;

use crate::util::write_file;

/// A signature policy that accepts everything (our images are unsigned).
pub fn write_policy(path: &Path) {
    write_file(path, r#"{"default": [{"type": "insecureAcceptAnything"}]}"#);
}

/// registries.conf (v2): `registry` -> `dead` primary location, with `mirror_location` as its
/// only mirror (if given); both insecure (plain HTTP / unverified TLS allowed).
pub fn registries_conf(registry: &str, dead: &str, mirror_location: Option<&str>) -> String {
    let mut s = format!(
        "# written by the wharf-e2e harness\n\
         unqualified-search-registries = []\n\
         short-name-mode = \"disabled\"\n\n\
         [[registry]]\n\
         prefix = \"{registry}\"\n\
         location = \"{dead}\"\n\
         insecure = true\n"
    );
    if let Some(m) = mirror_location {
        s += &format!("\n[[registry.mirror]]\nlocation = \"{m}\"\ninsecure = true\n");
    }
    s
}

/// registries.conf without mirrors: only `short-name-mode = "disabled"`, plus `insecure`
/// entries for `insecure_hosts` (`127.0.0.1:PORT`).
pub fn plain_registries_conf(insecure_hosts: &[&str]) -> String {
    let mut s = String::from(
        "# written by the wharf-e2e harness\nunqualified-search-registries = []\nshort-name-mode = \"disabled\"\n",
    );
    for h in insecure_hosts {
        s += &format!("\n[[registry]]\nlocation = \"{h}\"\ninsecure = true\n");
    }
    s
}
