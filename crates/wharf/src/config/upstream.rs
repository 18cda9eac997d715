//! `[[upstream]]`: one registry wharf mirrors, and the checks on it (`Config::validate` calls
//! [`UpstreamConfig::validate`] for each).

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, invalid};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpstreamConfig {
    /// Short name for logs and metric labels: `[a-z0-9_-]+`.
    pub name: String,
    /// `https://host[:port][/path]` or `http://host[:port][/path]`. A path is the prefix every
    /// request goes under: `http://regional:5000/oracle` is that wharf's `oracle` prefix.
    pub url: String,
    /// More URLs with the same content (Oracle's regional mirrors, a second regional wharf),
    /// same forms as `url`, same credentials; each request goes to the healthiest and fastest
    /// and fails over to the next. Default: none.
    #[serde(default)]
    pub mirrors: Vec<String>,
    /// Names that select this upstream: an `ns` value or a first path segment.
    #[serde(default)]
    pub prefixes: Vec<String>,
    /// Bare names go here. At most one upstream is the default.
    #[serde(default)]
    pub default: bool,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    /// Name of an environment variable holding the password.
    pub password_env: Option<String>,
    pub ca_file: Option<PathBuf>,
    #[serde(default, with = "humantime_serde")]
    pub tag_ttl: Option<Duration>,
    /// Tags matching any of these regular expressions (searched, so anchor them with `^...$`)
    /// are never revalidated once recorded. Default: none.
    #[serde(default)]
    pub immutable_tags: Vec<String>,
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Time allowed until the upstream's response headers arrive.
    #[serde(default = "default_response_timeout", with = "humantime_serde")]
    pub response_timeout: Duration,
    /// How long a tag past its TTL waits for its revalidation before the last known digest is
    /// served (the revalidation then finishes in the background). Default: `cache.revalidate_timeout`.
    #[serde(default, with = "humantime_serde")]
    pub revalidate_timeout: Option<Duration>,
    /// When a revalidation finds that a tag moved, fetch (in the background, at low priority)
    /// the platforms clients pulled of that tag before, so the next pull hits. Default: off.
    #[serde(default)]
    pub warm_moved_tags: bool,
    /// Hosts besides the upstream's own domain that may receive its credentials as a token realm.
    #[serde(default)]
    pub realm_hosts: Vec<String>,
    /// Its simple-signing signature store (the `sigstore:`/`lookaside:` of containers'
    /// `registries.d`): `http(s)://host[:port][/path]`. wharf fetches and keeps the signatures
    /// and serves them to clients itself.
    pub lookaside: Option<String>,
    /// Serve this upstream's manifests only with a simple signature that verifies with `key`
    /// and names the image (its blobs only when such a manifest names them).
    pub require_signature: Option<RequireSignature>,
}

/// `require_signature = { key = "/etc/wharf/GPG-KEY-oracle" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RequireSignature {
    /// The public key(s) whose signatures are accepted: `gpg --export [--armor]` output.
    pub key: PathBuf,
    /// The registry host the signatures name images by; default: the upstream's registry
    /// (its first host-like prefix, else its URL's host).
    pub identity: Option<String>,
}

impl UpstreamConfig {
    /// `immutable_tags` compiled into one set; the error names the bad pattern.
    pub(crate) fn immutable_set(&self) -> Result<regex::RegexSet, (usize, String)> {
        for (j, p) in self.immutable_tags.iter().enumerate() {
            regex::Regex::new(p)
                .map_err(|e| (j, format!("{p:?} is not a valid regular expression: {e}")))?;
        }
        regex::RegexSet::new(&self.immutable_tags).map_err(|e| (0, e.to_string()))
    }

    /// Checks one table; `names`, `prefixes` and `defaults` carry what earlier tables claimed.
    pub(super) fn validate<'a>(
        &'a self,
        i: usize,
        names: &mut HashSet<&'a str>,
        prefixes: &mut HashSet<String>,
        defaults: &mut usize,
    ) -> Result<(), ConfigError> {
        let f = |key: &str| format!("upstream[{i}].{key}");
        if self.name.is_empty()
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err(invalid(
                f("name"),
                "must be non-empty lowercase letters, digits, '-' or '_'",
            ));
        }
        if !names.insert(self.name.as_str()) {
            return Err(invalid(f("name"), format!("{:?} is used twice", self.name)));
        }
        check_url(&self.url).map_err(|m| invalid(f("url"), m))?;
        for (j, m) in self.mirrors.iter().enumerate() {
            check_url(m).map_err(|e| invalid(f(&format!("mirrors[{j}]")), e))?;
            let same = |a: &str, b: &str| a.trim_end_matches('/') == b.trim_end_matches('/');
            if same(m, &self.url) || self.mirrors[..j].iter().any(|o| same(o, m)) {
                return Err(invalid(
                    f(&format!("mirrors[{j}]")),
                    "the same URL is listed twice (url and mirrors)",
                ));
            }
        }
        if let Some(l) = &self.lookaside {
            check_lookaside(l).map_err(|m| invalid(f("lookaside"), m))?;
        }
        if let Some(r) = &self.require_signature {
            // Read now, so that `check-config` and start-up say what is wrong with it.
            wharf_sign::Keyring::load(&r.key)
                .map_err(|e| invalid(f("require_signature.key"), e.to_string()))?;
            if self.lookaside.is_none() {
                return Err(invalid(
                    f("require_signature"),
                    "needs a lookaside: the signatures come from there",
                ));
            }
        }
        for p in &self.prefixes {
            if p.is_empty() || p.contains('/') || p.contains('%') {
                return Err(invalid(
                    f("prefixes"),
                    format!("{p:?} must be one path segment or a host name"),
                ));
            }
            if !prefixes.insert(p.to_ascii_lowercase()) {
                return Err(invalid(
                    f("prefixes"),
                    format!("{p:?} selects two upstreams"),
                ));
            }
        }
        if self.default {
            *defaults += 1;
            if *defaults > 1 {
                return Err(invalid(
                    f("default"),
                    "only one upstream may be the default",
                ));
            }
        }
        if !self.default && self.prefixes.is_empty() {
            return Err(invalid(
                f("prefixes"),
                "an upstream that is not the default needs at least one prefix",
            ));
        }
        match (&self.username, &self.password_file, &self.password_env) {
            (_, Some(_), Some(_)) => {
                return Err(invalid(
                    f("password_env"),
                    "give password_file or password_env, not both",
                ));
            }
            (None, Some(_), _) | (None, _, Some(_)) => {
                return Err(invalid(f("username"), "a password needs a username"));
            }
            (Some(_), None, None) => {
                return Err(invalid(
                    f("password_file"),
                    "a username needs password_file or password_env",
                ));
            }
            _ => {}
        }
        if let Some(var) = &self.password_env
            && std::env::var_os(var).is_none()
        {
            return Err(invalid(
                f("password_env"),
                format!("environment variable {var} is not set"),
            ));
        }
        if let Some(p) = &self.password_file
            && !p.is_file()
        {
            return Err(invalid(
                f("password_file"),
                format!("{} is not a readable file", p.display()),
            ));
        }
        if let Some(p) = &self.ca_file
            && !p.is_file()
        {
            return Err(invalid(
                f("ca_file"),
                format!("{} is not a readable file", p.display()),
            ));
        }
        if let Err((j, m)) = self.immutable_set() {
            return Err(invalid(f(&format!("immutable_tags[{j}]")), m));
        }
        Ok(())
    }
}

fn default_connect_timeout() -> Duration {
    wharf_proxy::Upstream::DEFAULT_CONNECT_TIMEOUT
}
fn default_response_timeout() -> Duration {
    wharf_proxy::Upstream::DEFAULT_RESPONSE_TIMEOUT
}

/// The upstream client's own rules (one place: `wharf_upstream::check_url`). The URL is echoed
/// only when it carries no user info, which could be a password.
fn check_url(url: &str) -> Result<(), String> {
    wharf_upstream::check_url(url).map_err(|reason| {
        if url.contains('@') {
            reason.to_owned()
        } else {
            format!("{url:?}: {reason}")
        }
    })
}

/// A signature store's URL: a path is allowed (Oracle's is `/podman`), user info and a query
/// are not.
fn check_lookaside(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("{url:?} must start with https:// or http://"))?;
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || rest.contains('?') || rest.contains('#') || host.contains('@') {
        return Err(format!(
            "{url:?} must be scheme://host[:port][/path] with no query or user"
        ));
    }
    Ok(())
}
