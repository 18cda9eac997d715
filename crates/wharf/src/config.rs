//! The configuration file: one TOML document, every field with a documented default, unknown
//! fields refused, and a `validate()` that names the bad field.
//!
//! The keys are DESIGN.md's configuration contract; `deploy/wharf.toml` documents each one.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// What `wharf serve` runs on when no file is given: port 5000, a data folder in the working
/// directory, and the three registries of the Oracle Linux guide, docker.io the default.
pub const EMBEDDED_DEFAULT: &str = include_str!("default.toml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
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
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Log {
    /// `text` (default) or `json`: one object per line, for log shippers.
    #[serde(default)]
    pub format: LogFormat,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
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
pub struct Cache {
    /// Where blobs, manifests and the spool live. Default `wharf-data` in the working directory.
    #[serde(default = "default_dir")]
    pub dir: PathBuf,
    /// Size budget of the store. Default `50GiB`.
    #[serde(default = "default_max_size", deserialize_with = "size")]
    pub max_size: u64,
    /// Default tag TTL for every upstream. Default `5m`.
    #[serde(default = "default_tag_ttl", with = "humantime_serde_compat")]
    pub tag_ttl: Duration,
    /// A fill whose upstream sends nothing for this long fails. Default `30s`.
    #[serde(default = "default_inactivity", with = "humantime_serde_compat")]
    pub fill_inactivity_timeout: Duration,
    /// Downloads from upstreams running at once; more wait for a turn. Default 64.
    #[serde(default = "default_max_concurrent_fills")]
    pub max_concurrent_fills: usize,
}

impl Default for Cache {
    fn default() -> Self {
        Cache {
            dir: default_dir(),
            max_size: default_max_size(),
            tag_ttl: default_tag_ttl(),
            fill_inactivity_timeout: default_inactivity(),
            max_concurrent_fills: default_max_concurrent_fills(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    /// Basic auth for clients: `htpasswd -B` (bcrypt) entries; re-read on SIGHUP.
    pub htpasswd: Option<PathBuf>,
    /// Whether pulls need no credentials. Default: true without `htpasswd`, false with it.
    pub anonymous_pull: Option<bool>,
}

impl Auth {
    pub fn anonymous_pull(&self) -> bool {
        self.anonymous_pull.unwrap_or(self.htpasswd.is_none())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Short name for logs and metric labels: `[a-z0-9_-]+`.
    pub name: String,
    /// `https://host[:port]` or `http://host[:port]`.
    pub url: String,
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
    #[serde(default, with = "humantime_serde_compat::option")]
    pub tag_ttl: Option<Duration>,
    /// Tags matching any of these regular expressions (searched, so anchor them with `^...$`)
    /// are never revalidated once recorded. Default: none.
    #[serde(default)]
    pub immutable_tags: Vec<String>,
    #[serde(default = "default_connect_timeout", with = "humantime_serde_compat")]
    pub connect_timeout: Duration,
    /// Time allowed until the upstream's response headers arrive.
    #[serde(default = "default_response_timeout", with = "humantime_serde_compat")]
    pub response_timeout: Duration,
    /// Hosts besides the upstream's own domain that may receive its credentials as a token realm.
    #[serde(default)]
    pub realm_hosts: Vec<String>,
}

impl UpstreamConfig {
    /// `immutable_tags` compiled into one set; the error names the bad pattern.
    pub fn immutable_set(&self) -> Result<regex::RegexSet, (usize, String)> {
        for (j, p) in self.immutable_tags.iter().enumerate() {
            regex::Regex::new(p)
                .map_err(|e| (j, format!("{p:?} is not a valid regular expression: {e}")))?;
        }
        regex::RegexSet::new(&self.immutable_tags).map_err(|e| (0, e.to_string()))
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
fn default_max_size() -> u64 {
    50 << 30
}
fn default_tag_ttl() -> Duration {
    Duration::from_secs(300)
}
fn default_inactivity() -> Duration {
    Duration::from_secs(30)
}
fn default_max_connections() -> usize {
    4096
}
fn default_max_concurrent_fills() -> usize {
    64
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_response_timeout() -> Duration {
    Duration::from_secs(30)
}

/// A bad configuration, naming the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
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

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, &path.display().to_string())
    }

    pub fn embedded() -> Result<Config, ConfigError> {
        Config::parse(EMBEDDED_DEFAULT, "<embedded default>")
    }

    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_owned(),
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot: cross-field rules and references to files and variables.
    pub fn validate(&self) -> Result<(), ConfigError> {
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
            let f = |key: &str| format!("upstream[{i}].{key}");
            if u.name.is_empty()
                || !u
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            {
                return Err(invalid(
                    f("name"),
                    "must be non-empty lowercase letters, digits, '-' or '_'",
                ));
            }
            if !names.insert(u.name.as_str()) {
                return Err(invalid(f("name"), format!("{:?} is used twice", u.name)));
            }
            check_url(&u.url).map_err(|m| invalid(f("url"), m))?;
            for p in &u.prefixes {
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
            if u.default {
                defaults += 1;
                if defaults > 1 {
                    return Err(invalid(
                        f("default"),
                        "only one upstream may be the default",
                    ));
                }
            }
            if !u.default && u.prefixes.is_empty() {
                return Err(invalid(
                    f("prefixes"),
                    "an upstream that is not the default needs at least one prefix",
                ));
            }
            match (&u.username, &u.password_file, &u.password_env) {
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
            if let Some(var) = &u.password_env
                && std::env::var_os(var).is_none()
            {
                return Err(invalid(
                    f("password_env"),
                    format!("environment variable {var} is not set"),
                ));
            }
            if let Some(p) = &u.password_file
                && !p.is_file()
            {
                return Err(invalid(
                    f("password_file"),
                    format!("{} is not a readable file", p.display()),
                ));
            }
            if let Some(p) = &u.ca_file
                && !p.is_file()
            {
                return Err(invalid(
                    f("ca_file"),
                    format!("{} is not a readable file", p.display()),
                ));
            }
            if let Err((j, m)) = u.immutable_set() {
                return Err(invalid(f(&format!("immutable_tags[{j}]")), m));
            }
        }
        Ok(())
    }
}

impl Config {
    /// TLS files and the htpasswd file: present, readable and parseable, so `check-config`
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
        if let Some(path) = &self.auth.htpasswd {
            wharf_proxy::auth::Htpasswd::load(path)
                .map_err(|e| invalid("auth.htpasswd", e.to_string()))?;
        } else if self.auth.anonymous_pull == Some(false) {
            return Err(invalid(
                "auth.anonymous_pull",
                "false needs auth.htpasswd: without users nobody could pull",
            ));
        }
        if self.server.max_connections == 0 {
            return Err(invalid("server.max_connections", "must be more than 0"));
        }
        if self.cache.max_concurrent_fills == 0 {
            return Err(invalid("cache.max_concurrent_fills", "must be more than 0"));
        }
        Ok(())
    }
}

fn check_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("{url:?} must start with https:// or http://"))?;
    let host = rest.trim_end_matches('/');
    if host.is_empty() || host.contains('/') || host.contains('?') || host.contains('@') {
        return Err(format!(
            "{url:?} must be scheme://host[:port] with no path, query or user"
        ));
    }
    Ok(())
}

/// "50GiB", "500 MB", "1024": binary and decimal units, case-insensitive.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = (s[..split].trim(), s[split..].trim().to_ascii_lowercase());
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size like \"50GiB\""))?;
    let mult: u64 = match unit.as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        "t" | "tb" => 1_000_000_000_000,
        "tib" => 1 << 40,
        _ => {
            return Err(format!(
                "{s:?} has an unknown unit (use B, KiB, MiB, GiB, TiB or KB, MB, GB, TB)"
            ));
        }
    };
    Ok((n * mult as f64) as u64)
}

fn size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        N(u64),
        S(String),
    }
    match Raw::deserialize(d)? {
        Raw::N(n) => Ok(n),
        Raw::S(s) => parse_size(&s).map_err(serde::de::Error::custom),
    }
}

/// Human durations ("5m", "30s", "0s") through humantime.
mod humantime_serde_compat {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s)
            .map_err(|e| serde::de::Error::custom(format!("{s:?}: {e} (use e.g. \"30s\", \"5m\")")))
    }

    pub mod option {
        use super::*;
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            super::deserialize(d).map(Some)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_valid() {
        let c = Config::embedded().unwrap();
        assert_eq!(c.server.listen.port(), 5000);
        assert_eq!(c.upstream.len(), 3);
        assert!(
            c.upstream
                .iter()
                .any(|u| u.default && u.prefixes.iter().any(|p| p == "docker.io"))
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("50GiB").unwrap(), 50 << 30);
        assert_eq!(parse_size("1.5 KiB").unwrap(), 1536);
        assert_eq!(parse_size("10MB").unwrap(), 10_000_000);
        assert_eq!(parse_size("7").unwrap(), 7);
        assert!(parse_size("ten GiB").is_err());
        assert!(parse_size("5 parsecs").is_err());
    }

    fn err(text: &str) -> String {
        Config::parse(text, "t").unwrap_err().to_string()
    }

    #[test]
    fn names_the_bad_field() {
        let up = "[[upstream]]\nname = \"a\"\nurl = \"http://127.0.0.1:1\"\ndefault = true\n";
        assert!(err(&format!("{up}bogus = 1\n")).contains("bogus"));
        assert!(err("[cache]\nmax_size = \"lots\"\n").contains("max_size"));
        assert!(err("[cache]\ntag_ttl = \"soon\"\n").contains("tag_ttl"));
        assert!(err("").contains("upstream"));
        assert!(err(&format!("{up}username = \"u\"\n")).contains("upstream[0].password_file"));
        assert!(
            err(&format!(
                "{up}password_env = \"WHARF_TEST_SURELY_UNSET\"\nusername = \"u\"\n"
            ))
            .contains("WHARF_TEST_SURELY_UNSET")
        );
        assert!(
            err("[[upstream]]\nname = \"a\"\nurl = \"ftp://x\"\ndefault = true\n")
                .contains("upstream[0].url")
        );
        assert!(err(&format!("{up}{up}")).contains("upstream[1].name"));
        assert!(
            err("[[upstream]]\nname = \"a\"\nurl = \"http://x\"\n")
                .contains("upstream[0].prefixes")
        );
        assert!(
            err(&format!("{up}immutable_tags = ['^v[0-9]+$', 'v(1']\n"))
                .contains("upstream[0].immutable_tags[1]")
        );
    }

    #[test]
    fn tls_and_htpasswd_are_checked_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let up = "[[upstream]]\nname = \"a\"\nurl = \"http://127.0.0.1:1\"\ndefault = true\n";
        let key = dir.path().join("k.pem");
        let cert = dir.path().join("c.pem");
        let secret = "-----BEGIN PRIVATE KEY-----\nTOPSECRETKEYBYTES\n-----END PRIVATE KEY-----\n";
        std::fs::write(&key, secret).unwrap();
        std::fs::write(&cert, "not a certificate").unwrap();
        let server = |c: &str, k: &str| format!("[server]\n{c}{k}\n{up}");
        let c = format!("tls_cert = {:?}\n", cert.display().to_string());
        let k = format!("tls_key = {:?}\n", key.display().to_string());
        assert!(err(&server(&c, "")).starts_with("server.tls_key"));
        assert!(err(&server("", &k)).starts_with("server.tls_cert"));
        let e = err(&server(&c, &k));
        assert!(e.starts_with("server.tls_cert"), "{e}");
        let missing = format!(
            "tls_cert = {:?}\n",
            dir.path().join("nope").display().to_string()
        );
        assert!(err(&server(&missing, &k)).contains("cannot read"));
        assert!(!e.contains("TOPSECRET"));

        let htpasswd = dir.path().join("htpasswd");
        std::fs::write(&htpasswd, "alice:{SHA}SECRETHASH=\n").unwrap();
        let auth = format!(
            "[auth]\nhtpasswd = {:?}\n{up}",
            htpasswd.display().to_string()
        );
        let e = err(&auth);
        assert!(
            e.starts_with("auth.htpasswd") && e.contains("htpasswd -B"),
            "{e}"
        );
        assert!(!e.contains("SECRETHASH"), "{e}");
        assert!(
            err(&format!("[auth]\nanonymous_pull = false\n{up}"))
                .starts_with("auth.anonymous_pull")
        );

        std::fs::write(
            &htpasswd,
            "alice:$2y$05$6oDSXHgbzDv.k3jEX/jlaubEbNHKJw/l0YmbzfQnb0BG5YpVPwju2\n",
        )
        .unwrap();
        let c = Config::parse(&auth, "t").unwrap();
        assert!(
            !c.auth.anonymous_pull(),
            "htpasswd set: pulls need credentials by default"
        );
        assert!(Config::parse(up, "t").unwrap().auth.anonymous_pull());
        assert!(
            err(&format!("[server]\nmax_connections = 0\n{up}")).contains("server.max_connections")
        );
        assert!(
            err(&format!("[cache]\nmax_concurrent_fills = 0\n{up}"))
                .contains("cache.max_concurrent_fills")
        );
    }

    #[test]
    fn immutable_tags_compile_into_one_set() {
        let c = Config::parse(
            "[[upstream]]\nname = \"a\"\nurl = \"http://127.0.0.1:1\"\ndefault = true\n\
             immutable_tags = ['^v?[0-9]+\\.[0-9]+\\.[0-9]+$', '^sha256-']\n",
            "t",
        )
        .unwrap();
        let set = c.upstream[0].immutable_set().unwrap();
        assert!(set.is_match("v1.2.3") && set.is_match("1.2.3") && set.is_match("sha256-ab"));
        assert!(!set.is_match("latest") && !set.is_match("v1.2") && !set.is_match("1.2.3-rc"));
    }
}
