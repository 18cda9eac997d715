//! The configuration file: one TOML document, every field with a documented default, unknown
//! fields refused, and a `validate()` that names the bad field.
//!
//! The keys are DESIGN.md's configuration contract; `deploy/wharf.toml` documents each one.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use wharf_cache::StoreOptions;
use wharf_proxy::ProxyOptions;
use wharf_proxy::limits::Limits;

/// What `wharf serve` runs on when no file is given: port 5000, a data folder in the working
/// directory, and the three registries of the Oracle Linux guide, docker.io the default.
pub(crate) const EMBEDDED_DEFAULT: &str = include_str!("default.toml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Config {
    #[serde(default)]
    pub server: Server,
    #[serde(default)]
    pub cache: Cache,
    #[serde(default)]
    pub auth: Auth,
    #[serde(default)]
    pub log: Log,
    #[serde(default)]
    pub upstream: Vec<UpstreamConfig>,
    /// Repositories wharf hosts itself (push and pull). Default: with `[auth] htpasswd`, bare
    /// names hosted on their first push (`hosted.bare_names`); without it, none, and every
    /// push is refused.
    pub hosted: Option<Hosted>,
    /// The shared content tier of a fleet of replicas (an S3-compatible object store). Default:
    /// none, local disk only.
    pub object_store: Option<ObjectStore>,
    /// The fleet of replicas this one is part of. Default: none, a single wharf.
    pub cluster: Option<Cluster>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Log {
    /// `text` (default) or `json`: one object per line, for log shippers.
    #[serde(default)]
    pub format: LogFormat,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Server {
    /// Registry API. Default `0.0.0.0:5000`.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Metrics and admin API, never on the public port. Default `127.0.0.1:5001`.
    #[serde(default = "default_admin_listen")]
    pub admin_listen: SocketAddr,
    /// TLS on `listen`: a PEM certificate chain (leaf first, then intermediates) and its PEM
    /// private key. Both or neither; re-read on SIGHUP. Default: plain HTTP.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Connections served at once; at the bound new ones wait in the kernel's queue. Default 4096.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            listen: default_listen(),
            admin_listen: default_admin_listen(),
            tls_cert: None,
            tls_key: None,
            max_connections: default_max_connections(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Cache {
    /// Where blobs, manifests and the spool live. Default `wharf-data` in the working directory.
    #[serde(default = "default_dir")]
    pub dir: PathBuf,
    /// Size budget of the store. Default `50GiB`.
    #[serde(default = "default_max_size", deserialize_with = "size")]
    pub max_size: u64,
    /// Default tag TTL for every upstream. Default `5m`.
    #[serde(default = "default_tag_ttl", with = "humantime_serde")]
    pub tag_ttl: Duration,
    /// Default `revalidate_timeout` of every upstream: how long a tag past its TTL waits for the
    /// upstream's answer before its last known digest is served. Default `3s`.
    #[serde(default = "default_revalidate_timeout", with = "humantime_serde")]
    pub revalidate_timeout: Duration,
    /// A fill whose upstream sends nothing for this long fails. Default `30s`.
    #[serde(default = "default_inactivity", with = "humantime_serde")]
    pub fill_inactivity_timeout: Duration,
    /// Downloads from upstreams running at once; more wait for a turn. Default 64.
    #[serde(default = "default_max_concurrent_fills")]
    pub max_concurrent_fills: usize,
    /// Bytes per second the scrubber re-reads and re-verifies stored content at, least
    /// recently verified first; `0` turns it off. Default `8MiB`.
    #[serde(default = "default_scrub_rate", deserialize_with = "size")]
    pub scrub_rate: u64,
}

impl Default for Cache {
    fn default() -> Self {
        Cache {
            dir: default_dir(),
            max_size: default_max_size(),
            tag_ttl: default_tag_ttl(),
            revalidate_timeout: default_revalidate_timeout(),
            fill_inactivity_timeout: default_inactivity(),
            max_concurrent_fills: default_max_concurrent_fills(),
            scrub_rate: default_scrub_rate(),
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 5000))
}
fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 5001))
}
fn default_dir() -> PathBuf {
    PathBuf::from("wharf-data")
}
// The numbers below live with the options they configure; the file only names them.
fn default_max_size() -> u64 {
    StoreOptions::default().max_size
}
fn default_scrub_rate() -> u64 {
    StoreOptions::default().scrub_rate
}
fn default_tag_ttl() -> Duration {
    wharf_proxy::Upstream::DEFAULT_TAG_TTL
}
fn default_revalidate_timeout() -> Duration {
    wharf_proxy::Upstream::DEFAULT_REVALIDATE_TIMEOUT
}
fn default_inactivity() -> Duration {
    StoreOptions::default().fill_inactivity_timeout
}
fn default_max_connections() -> usize {
    Limits::default().max_connections
}
fn default_max_concurrent_fills() -> usize {
    ProxyOptions::default().max_concurrent_fills
}
/// A bad configuration, naming the field.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
}

pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

impl Config {
    pub(crate) fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, &path.display().to_string())
    }

    pub(crate) fn embedded() -> Result<Config, ConfigError> {
        Config::parse(EMBEDDED_DEFAULT, "<embedded default>")
    }

    pub(crate) fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_owned(),
            message: redact_secrets(&e.to_string(), text),
        })?;
        config.imply_hosted();
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot: cross-field rules and references to files and variables.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        self.validate_security()?;
        if self.server.listen == self.server.admin_listen {
            return Err(invalid(
                "server.admin_listen",
                "must differ from server.listen",
            ));
        }
        if self.cache.max_size == 0 {
            return Err(invalid("cache.max_size", "must be more than 0"));
        }
        if self.upstream.is_empty() {
            return Err(invalid("upstream", "at least one [[upstream]] is required"));
        }
        let mut names = HashSet::new();
        let mut prefixes = HashSet::new();
        let mut defaults = 0;
        for (i, u) in self.upstream.iter().enumerate() {
            u.validate(i, &mut names, &mut prefixes, &mut defaults)?;
        }
        self.validate_hosted()?;
        self.validate_object_store()?;
        self.validate_cluster()
    }
}

impl Config {
    /// TLS files and `[auth]`: present, readable and parseable, so `check-config`
    /// finds what `serve` would trip over. Messages name the field and the file, never a key's
    /// or a hash's contents.
    fn validate_security(&self) -> Result<(), ConfigError> {
        match (&self.server.tls_cert, &self.server.tls_key) {
            (Some(cert), Some(key)) => {
                wharf_proxy::tls::load_certified_key(cert, key)
                    .map_err(|e| invalid(e.field(), e.to_string()))?;
            }
            (Some(_), None) => {
                return Err(invalid(
                    "server.tls_key",
                    "tls_cert is set: give the private key too",
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "server.tls_cert",
                    "tls_key is set: give the certificate chain too",
                ));
            }
            (None, None) => {}
        }
        self.validate_auth()?;
        if self.server.max_connections == 0 {
            return Err(invalid("server.max_connections", "must be more than 0"));
        }
        if self.cache.max_concurrent_fills == 0 {
            return Err(invalid("cache.max_concurrent_fills", "must be more than 0"));
        }
        Ok(())
    }
}

mod auth;
mod cluster;
mod hosted;
mod object_store;
mod redact;
mod size;
mod upstream;

pub(crate) use auth::Auth;
pub(crate) use cluster::Cluster;
pub(crate) use hosted::Hosted;
pub(crate) use object_store::ObjectStore;
#[cfg(test)]
use size::parse_size;
use size::size;
pub(crate) use upstream::UpstreamConfig;

use redact::redact_secrets;

#[cfg(test)]
mod tests;
