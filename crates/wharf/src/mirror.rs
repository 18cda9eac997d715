//! What the client-side commands (`client-config`, `prefetch`) know about a wharf server: its
//! configuration, the address clients reach it at, and for each upstream the registry host that
//! clients name and the path prefix that selects it on wharf.
//!
//! Both commands read the same file `wharf serve` runs on, so the prefixes and the scheme they
//! write or use are the ones the server routes by.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

// A prefix names a registry host (`quay.io`) rather than a path segment (`quay`) by the rule an
// image reference's first component is read by, so a prefix and a reference agree on hosts.
use wharf_oci::{RepositoryName, looks_like_host};

use crate::config::{self, Config, ConfigError, UpstreamConfig};

/// Where the packaged service keeps its configuration; read when `--config` is not given.
pub(crate) const SYSTEM_CONFIG: &str = "/etc/wharf/wharf.toml";

/// Loads `--config FILE`, else [`SYSTEM_CONFIG`] if it exists, else the embedded default.
/// Returns the configuration and where it came from.
///
/// Secrets are not needed to write client configuration, so a `password_env` that is not set in
/// this shell (or a password file this user cannot see) is not an error here.
pub(crate) fn load_config(path: Option<&Path>) -> Result<(Config, String), String> {
    let system = PathBuf::from(SYSTEM_CONFIG);
    let (text, origin) = match path {
        Some(p) => (read(p)?, p.display().to_string()),
        None if system.is_file() => (read(&system)?, SYSTEM_CONFIG.to_owned()),
        None => (
            config::EMBEDDED_DEFAULT.to_owned(),
            "the embedded default configuration".to_owned(),
        ),
    };
    let parsed: Config = toml::from_str(&text).map_err(|e| format!("{origin}: {e}"))?;
    match parsed.validate() {
        Ok(()) => {}
        Err(ConfigError::Invalid { field, .. })
            if field.ends_with(".password_env") || field.ends_with(".password_file") => {}
        Err(e) => return Err(format!("{origin}: {e}")),
    }
    Ok((parsed, origin))
}

fn read(p: &Path) -> Result<String, String> {
    std::fs::read_to_string(p).map_err(|e| format!("reading {}: {e}", p.display()))
}

/// `host[:port]` of an `http(s)://host[:port][/path]` URL.
pub(crate) fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest)
}

/// The registry clients name for this upstream: its first prefix that looks like a host, else
/// the host of its URL.
pub(crate) fn registry_host(u: &UpstreamConfig) -> String {
    u.prefixes
        .iter()
        .find(|p| looks_like_host(p))
        .map(|p| p.to_ascii_lowercase())
        .unwrap_or_else(|| url_host(&u.url).to_ascii_lowercase())
}

/// Whether wharf answers `?ns=<host>` for this upstream (containerd names the registry that way).
pub(crate) fn answers_ns(u: &UpstreamConfig, host: &str) -> bool {
    u.prefixes.iter().any(|p| p.eq_ignore_ascii_case(host))
}

/// The path segment that selects this upstream on wharf (`/v2/<prefix>/<repo>/...`): a short
/// prefix (`oracle`) if it has one, else a host-like one that is a valid path segment
/// (`docker.io`; `host:port` is not). `None` if no prefix can be a path segment.
pub(crate) fn path_prefix(u: &UpstreamConfig) -> Option<String> {
    let usable = |p: &&String| {
        let p = p.to_ascii_lowercase();
        !p.contains(':') && RepositoryName::parse(&p).is_ok()
    };
    u.prefixes
        .iter()
        .filter(usable)
        .find(|p| !looks_like_host(p))
        .or_else(|| u.prefixes.iter().find(usable))
        .map(|p| p.to_ascii_lowercase())
}

/// The address clients use for wharf: scheme and `host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mirror {
    pub tls: bool,
    /// `host:port` (or `host` when a URL with the scheme's default port was given).
    pub authority: String,
}

/// Which host to put in place of an unspecified listen address.
pub(crate) enum Unspecified {
    /// This machine's hostname: what other machines use (client configuration).
    Hostname,
    /// Loopback: the server on this machine (prefetch).
    Loopback,
}

impl Mirror {
    /// `--mirror` as given (`host[:port]`, or `http(s)://host[:port]` to choose the scheme, e.g.
    /// for TLS terminated in front of wharf), else the configured listen address. Without a
    /// scheme, the scheme is https when the server has `tls_cert`, http otherwise, and a missing
    /// port is the listen port.
    pub(crate) fn resolve(
        arg: Option<&str>,
        config: &Config,
        unspec: Unspecified,
    ) -> Result<Self, String> {
        let listen = config.server.listen;
        let server_tls = config.server.tls_cert.is_some();
        let Some(arg) = arg else {
            return Ok(Mirror {
                tls: server_tls,
                authority: default_authority(listen, unspec),
            });
        };
        let (tls, rest, explicit_scheme) = if let Some(r) = arg.strip_prefix("https://") {
            (true, r, true)
        } else if let Some(r) = arg.strip_prefix("http://") {
            (false, r, true)
        } else {
            (server_tls, arg, false)
        };
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
            return Err(format!(
                "--mirror {arg:?}: give host[:port] or http(s)://host[:port], with no path"
            ));
        }
        let has_port = if rest.starts_with('[') {
            rest.contains("]:")
        } else {
            rest.contains(':')
        };
        let authority = if has_port || explicit_scheme {
            rest.to_owned()
        } else {
            format!("{rest}:{}", listen.port())
        };
        Ok(Mirror { tls, authority })
    }

    pub(crate) fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }

    /// `http(s)://host:port`
    pub(crate) fn url(&self) -> String {
        format!("{}://{}", self.scheme(), self.authority)
    }
}

fn default_authority(listen: SocketAddr, unspec: Unspecified) -> String {
    let port = listen.port();
    match (listen.ip(), unspec) {
        (ip, Unspecified::Hostname) if ip.is_unspecified() => format!("{}:{port}", hostname()),
        (IpAddr::V4(ip), Unspecified::Loopback) if ip.is_unspecified() => {
            format!("127.0.0.1:{port}")
        }
        (IpAddr::V6(ip), Unspecified::Loopback) if ip.is_unspecified() => format!("[::1]:{port}"),
        _ => listen.to_string(),
    }
}

/// This machine's name as the kernel knows it.
pub(crate) fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| {
            let s = std::fs::read_to_string(p).ok()?;
            let s = s.trim();
            (!s.is_empty()).then(|| s.to_owned())
        })
        .unwrap_or_else(|| "localhost".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::parse(text, "t").expect("valid config")
    }

    const UP: &str = "[[upstream]]\nname = \"a\"\nurl = \"http://127.0.0.1:1\"\ndefault = true\n";

    #[test]
    fn registry_host_and_path_prefix() {
        let c = Config::embedded().expect("embedded");
        let by_name = |n: &str| c.upstream.iter().find(|u| u.name == n).expect(n);
        assert_eq!(
            registry_host(by_name("oracle")),
            "container-registry.oracle.com"
        );
        assert_eq!(path_prefix(by_name("oracle")).as_deref(), Some("oracle"));
        assert_eq!(registry_host(by_name("docker")), "docker.io");
        assert_eq!(path_prefix(by_name("docker")).as_deref(), Some("docker.io"));
        let c = config(
            "[[upstream]]\nname = \"r\"\nurl = \"https://reg.example.com:5000\"\nprefixes = [\"reg.example.com:5000\"]\n",
        );
        assert_eq!(registry_host(&c.upstream[0]), "reg.example.com:5000");
        assert_eq!(path_prefix(&c.upstream[0]), None);
        let c = config(
            "[[upstream]]\nname = \"q\"\nurl = \"https://quay.io\"\nprefixes = [\"Quay\"]\n",
        );
        assert_eq!(registry_host(&c.upstream[0]), "quay.io");
        assert_eq!(path_prefix(&c.upstream[0]).as_deref(), Some("quay"));
    }

    #[test]
    fn mirror_address() {
        let c = config(&format!(
            "[server]\nlisten = \"0.0.0.0:5000\"\nadmin_listen = \"127.0.0.1:5001\"\n{UP}"
        ));
        let m = Mirror::resolve(None, &c, Unspecified::Hostname).expect("default");
        assert_eq!(m.authority, format!("{}:5000", hostname()));
        assert_eq!(m.url(), format!("http://{}:5000", hostname()));
        let m = Mirror::resolve(None, &c, Unspecified::Loopback).expect("default");
        assert_eq!(m.url(), "http://127.0.0.1:5000");
        let m = Mirror::resolve(Some("mirror.example.com"), &c, Unspecified::Hostname);
        assert_eq!(m.expect("host").authority, "mirror.example.com:5000");
        let m = Mirror::resolve(
            Some("https://mirror.example.com/"),
            &c,
            Unspecified::Hostname,
        )
        .expect("url");
        assert_eq!(m.url(), "https://mirror.example.com");
        let m = Mirror::resolve(Some("[::1]:7000"), &c, Unspecified::Hostname).expect("v6");
        assert_eq!(m.url(), "http://[::1]:7000");
        assert!(Mirror::resolve(Some("m:5000/oracle"), &c, Unspecified::Hostname).is_err());
        let c = config(&format!(
            "[server]\nlisten = \"127.0.0.1:6000\"\nadmin_listen = \"127.0.0.1:6001\"\n{UP}"
        ));
        let m = Mirror::resolve(None, &c, Unspecified::Hostname).expect("loopback");
        assert_eq!(m.authority, "127.0.0.1:6000");
    }

    #[test]
    fn secrets_are_not_needed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("w.toml");
        std::fs::write(
            &file,
            "[[upstream]]\nname = \"a\"\nurl = \"https://a.example\"\ndefault = true\n\
             username = \"u\"\npassword_env = \"WHARF_TEST_SURELY_UNSET_TOO\"\n",
        )
        .expect("write");
        let (c, origin) = load_config(Some(&file)).expect("secrets are not checked");
        assert_eq!(c.upstream.len(), 1);
        assert!(origin.ends_with("w.toml"));
        std::fs::write(
            &file,
            "[[upstream]]\nname = \"a\"\nurl = \"ftp://x\"\ndefault = true\n",
        )
        .expect("write");
        let e = load_config(Some(&file)).expect_err("a bad url is still an error");
        assert!(e.contains("upstream[0].url"), "{e}");
    }
}
