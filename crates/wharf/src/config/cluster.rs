//! `[cluster]`: the fleet this replica is one of (`Config::validate` calls
//! [`Config::validate_cluster`]). Each digest has an owner among the peers, which alone asks
//! the upstream for it (`wharf_proxy::cluster`).

use serde::Deserialize;

use super::{Config, ConfigError, invalid};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Cluster {
    /// How the peers reach this replica, `host:port`, exactly as it appears among the peers.
    /// `${VAR}` is replaced by the environment variable (Kubernetes: `"${POD_IP}:5000"`).
    pub advertise: String,
    /// Every replica, this one included: `host:port` each.
    #[serde(default)]
    pub peers: Vec<String>,
    /// Or: a DNS name whose addresses are the replicas (a Kubernetes headless service),
    /// `name[:port]` (the port defaults to `advertise`'s), resolved again every 10 s.
    pub peers_dns: Option<String>,
    /// A secret every replica shares (a file; trailing whitespace ignored): peers send it as
    /// Basic `wharf-peer:<secret>`, which this replica accepts as another replica's pull of
    /// mirrored content. Needed when `[auth]` refuses anonymous pulls of mirrored content.
    pub secret_file: Option<std::path::PathBuf>,
}

impl Cluster {
    /// The fleet's secret, if configured.
    pub(crate) fn secret(&self) -> Result<Option<String>, ConfigError> {
        let Some(path) = &self.secret_file else {
            return Ok(None);
        };
        let s = std::fs::read_to_string(path)
            .map_err(|e| invalid("cluster.secret_file", format!("{}: {e}", path.display())))?;
        let s = s.trim_end().to_owned();
        if s.len() < 16 {
            return Err(invalid(
                "cluster.secret_file",
                format!(
                    "{}: the secret must be at least 16 characters",
                    path.display()
                ),
            ));
        }
        Ok(Some(s))
    }

    /// `advertise` with `${VAR}` replaced from the environment.
    pub(crate) fn advertise(&self) -> Result<String, ConfigError> {
        expand(&self.advertise).map_err(|m| invalid("cluster.advertise", m))
    }

    /// `peers_dns` as (name, port).
    pub(crate) fn dns(&self) -> Result<Option<(String, u16)>, ConfigError> {
        let Some(d) = &self.peers_dns else {
            return Ok(None);
        };
        let field = |m: String| invalid("cluster.peers_dns", m);
        let default_port =
            || port_of(&self.advertise()?).ok_or_else(|| field("advertise has no port".into()));
        match d.rsplit_once(':') {
            Some((name, port)) => Ok(Some((
                name.to_owned(),
                port.parse()
                    .map_err(|_| field(format!("{port:?} is no port")))?,
            ))),
            None => Ok(Some((d.clone(), default_port()?))),
        }
    }
}

fn port_of(host_port: &str) -> Option<u16> {
    host_port.rsplit_once(':')?.1.parse().ok()
}

/// `${VAR}` replaced by the environment variable `VAR`; an unset one is an error.
fn expand(s: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let end = after.find('}').ok_or("an unclosed ${")?;
        let var = &after[..end];
        out.push_str(
            &std::env::var(var).map_err(|_| format!("environment variable {var} is not set"))?,
        );
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

impl Config {
    pub(super) fn validate_cluster(&self) -> Result<(), ConfigError> {
        let Some(c) = &self.cluster else {
            return Ok(());
        };
        let me = c.advertise()?;
        if port_of(&me).is_none() {
            return Err(invalid(
                "cluster.advertise",
                format!("{me:?}: give host:port, as the peers reach this replica"),
            ));
        }
        if c.peers.is_empty() && c.peers_dns.is_none() {
            return Err(invalid(
                "cluster.peers",
                "list the replicas (host:port each), or give peers_dns",
            ));
        }
        if let Some(bad) = c.peers.iter().find(|p| port_of(p).is_none()) {
            return Err(invalid("cluster.peers", format!("{bad:?}: give host:port")));
        }
        c.dns()?;
        let secret = c.secret()?;
        let pulls_need_a_user =
            self.auth.htpasswd.is_some() && !self.auth.anonymous_pull().covers(false);
        if pulls_need_a_user && secret.is_none() {
            return Err(invalid(
                "cluster.secret_file",
                "[auth] refuses anonymous pulls of mirrored content, so replicas must authenticate to each other: give a secret file every replica shares",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertise_takes_variables_from_the_environment() {
        assert_eq!(expand("10.0.0.1:5000").as_deref(), Ok("10.0.0.1:5000"));
        assert_eq!(
            expand("${PATH}x").ok(),
            std::env::var("PATH").ok().map(|p| p + "x")
        );
        assert!(expand("${WHARF_SURELY_UNSET_VARIABLE}:5000").is_err());
        assert!(expand("${PATH").is_err());
    }
}
