//! Replicas of wharf for the scale-out tests and benchmark (issue 19): an `[object_store]` on a
//! test Garage, and fleets of replicas that know each other (`[cluster]`).

use std::path::Path;

use wharf_testkit::garage::{self, Garage};

use crate::util::free_ports;
use crate::{UpstreamCfg, Wharf};

/// `[object_store]` for `g` under `prefix` (each test its own), the secret in a file under
/// `dir`, a 1 s failure back-off, and `more` lines (`response_timeout = "1s"`).
pub fn object_store_toml(g: &Garage, dir: &Path, prefix: &str, more: &str) -> String {
    let secret = dir.join("s3.secret");
    std::fs::write(&secret, format!("{}\n", garage::SECRET))
        .unwrap_or_else(|e| panic!("{}: {e}", secret.display()));
    format!(
        "[object_store]\nendpoint = \"{}\"\nbucket = \"{}\"\nregion = \"{}\"\naccess_key_id = \"{}\"\n\
         secret_access_key_file = \"{}\"\nprefix = \"{prefix}\"\nfailure_backoff = \"1s\"\n{more}\n",
        g.endpoint(),
        garage::BUCKET,
        garage::REGION,
        garage::KEY_ID,
        secret.display()
    )
}

/// `n` (at most 3) replicas of `upstream` on loopback, each knowing the others, each with
/// `extra` in its configuration (an `[object_store]`, an `[auth]`) and `cluster_extra` in its
/// `[cluster]`; and their `host:port`s, as the peers know them.
pub fn fleet(
    n: usize,
    upstream: &UpstreamCfg,
    extra: &str,
    cluster_extra: &str,
) -> (Vec<Wharf>, Vec<String>) {
    let ports: [u16; 3] = free_ports();
    let ports = &ports[..n.min(3)];
    let peers: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let list = peers
        .iter()
        .map(|p| format!("\"{p}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let replicas = ports
        .iter()
        .map(|p| {
            Wharf::builder()
                .listen_port(*p)
                .upstream(upstream.clone())
                .extra_toml(extra)
                .extra_toml(&format!(
                    "[cluster]\nadvertise = \"127.0.0.1:{p}\"\npeers = [{list}]\n{cluster_extra}\n"
                ))
                .start()
        })
        .collect();
    (replicas, peers)
}
