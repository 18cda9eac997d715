//! `[object_store]`: the shared content tier replicas of wharf read and write (an S3-compatible
//! object store), and the checks on it (`Config::validate` calls
//! [`Config::validate_object_store`]).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{Config, ConfigError, invalid};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ObjectStore {
    /// `http(s)://host[:port]` of the S3 API (Garage: port 3900; AWS:
    /// `https://s3.<region>.amazonaws.com`). Requests are path-style.
    pub endpoint: String,
    pub bucket: String,
    /// The region the store signs for (Garage: its `s3_region`, `garage` by default).
    #[serde(default = "default_region")]
    pub region: String,
    pub access_key_id: String,
    /// The secret key, from a file (trailing whitespace ignored) or an environment variable.
    pub secret_access_key_file: Option<PathBuf>,
    pub secret_access_key_env: Option<String>,
    /// Every key starts with this, so fleets may share a bucket. Default: none.
    #[serde(default)]
    pub prefix: String,
    /// TCP/TLS connect. Default `5s`.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Until the store's response headers arrive, and between two chunks of a body: bounds
    /// what a request waits for the store before going on without it. Must be shorter than
    /// `cache.fill_inactivity_timeout`. Default `5s`.
    #[serde(default = "default_response_timeout", with = "humantime_serde")]
    pub response_timeout: Duration,
    /// After the store failed (unreachable, 5xx, timeout), how long replicas go on without it
    /// (local disk, then the upstream) before asking it again. Default `10s`.
    #[serde(default = "default_failure_backoff", with = "humantime_serde")]
    pub failure_backoff: Duration,
}

fn default_region() -> String {
    "us-east-1".into()
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_response_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_failure_backoff() -> Duration {
    wharf_tier::FAILURE_BACKOFF
}

impl ObjectStore {
    /// The secret, read from where the configuration says; the error names the field, never
    /// the secret.
    pub(crate) fn secret(&self) -> Result<String, ConfigError> {
        match (&self.secret_access_key_file, &self.secret_access_key_env) {
            (Some(path), None) => std::fs::read_to_string(path)
                .map(|s| s.trim_end().to_owned())
                .map_err(|e| {
                    invalid(
                        "object_store.secret_access_key_file",
                        format!("{}: {e}", path.display()),
                    )
                }),
            (None, Some(var)) => std::env::var(var).map_err(|_| {
                invalid(
                    "object_store.secret_access_key_env",
                    format!("environment variable {var} is not set"),
                )
            }),
            _ => Err(invalid(
                "object_store.secret_access_key_file",
                "give exactly one of secret_access_key_file and secret_access_key_env",
            )),
        }
    }

    /// What the tier is built from.
    pub(crate) fn tier_config(&self) -> Result<wharf_tier::TierConfig, ConfigError> {
        Ok(wharf_tier::TierConfig {
            endpoint: self.endpoint.clone(),
            bucket: self.bucket.clone(),
            region: self.region.clone(),
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret()?,
            prefix: self.prefix.clone(),
            connect_timeout: self.connect_timeout,
            response_timeout: self.response_timeout,
            failure_backoff: self.failure_backoff,
        })
    }
}

impl Config {
    pub(super) fn validate_object_store(&self) -> Result<(), ConfigError> {
        let Some(o) = &self.object_store else {
            return Ok(());
        };
        let scheme_ok = ["http://", "https://"].iter().any(|s| {
            o.endpoint
                .strip_prefix(s)
                .is_some_and(|rest| !rest.is_empty())
        });
        if !scheme_ok {
            return Err(invalid(
                "object_store.endpoint",
                "give http(s)://host[:port] of the S3 API",
            ));
        }
        if o.bucket.is_empty() {
            return Err(invalid("object_store.bucket", "must not be empty"));
        }
        if o.connect_timeout.is_zero() || o.response_timeout.is_zero() {
            return Err(invalid(
                "object_store.response_timeout",
                "connect_timeout and response_timeout must be more than 0",
            ));
        }
        if o.response_timeout >= self.cache.fill_inactivity_timeout {
            return Err(invalid(
                "object_store.response_timeout",
                "must be shorter than cache.fill_inactivity_timeout, so a fill goes on from the upstream when the store stalls",
            ));
        }
        if o.access_key_id.is_empty() {
            return Err(invalid("object_store.access_key_id", "must not be empty"));
        }
        o.secret()?;
        wharf_tier::Tier::connect(&o.tier_config()?)
            .map(|_| ())
            .map_err(|e| invalid("object_store", e.to_string()))
    }
}
