//! wharf's configuration file as the tests write it: `[server]` on free loopback ports,
//! `[cache]` in the test's directory, one `[[upstream]]` table per [`UpstreamCfg`], keys as in
//! the configuration contract (DESIGN.md). Passwords go to a file or an environment variable,
//! never into the TOML text.

use std::path::{Path, PathBuf};

use crate::registry::Upstream;
use crate::util::{toml_str, write_file};

#[derive(Debug, Clone)]
enum Secret {
    /// Written to a file in wharf's directory; `password_file` points at it.
    FileContent(String),
    FilePath(PathBuf),
    /// `password_env = VAR`, with VAR=value in wharf's environment.
    Env {
        var: String,
        value: String,
    },
}

/// One `[[upstream]]` table.
#[derive(Debug, Clone)]
pub struct UpstreamCfg {
    name: String,
    url: String,
    prefixes: Vec<String>,
    default: bool,
    username: Option<String>,
    password: Option<Secret>,
    ca_file: Option<PathBuf>,
    tag_ttl: Option<String>,
    extra: String,
}

impl UpstreamCfg {
    pub fn new(name: &str, url: &str) -> UpstreamCfg {
        UpstreamCfg {
            name: name.into(),
            url: url.into(),
            prefixes: Vec::new(),
            default: false,
            username: None,
            password: None,
            ca_file: None,
            tag_ttl: None,
            extra: String::new(),
        }
    }

    /// `name = "oracle"`, the upstream's URL (and CA file if HTTPS),
    /// `prefixes = ["container-registry.oracle.com", "oracle"]`, `default = true`. No credentials.
    pub fn oracle(up: &Upstream) -> UpstreamCfg {
        let mut c = UpstreamCfg::new("oracle", &up.url())
            .prefixes(&[crate::REGISTRY_NAME, "oracle"])
            .default(true);
        c.ca_file = up.ca_file().map(Path::to_path_buf);
        c
    }

    pub fn prefixes(mut self, p: &[&str]) -> Self {
        self.prefixes = p.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn default(mut self, d: bool) -> Self {
        self.default = d;
        self
    }

    pub fn username(mut self, u: &str) -> Self {
        self.username = Some(u.into());
        self
    }

    /// `password_file` pointing at a file (written by the harness) that holds `password`.
    pub fn password_file(mut self, password: &str) -> Self {
        self.password = Some(Secret::FileContent(password.into()));
        self
    }

    /// `password_file` pointing at an existing file.
    pub fn password_file_path(mut self, path: &Path) -> Self {
        self.password = Some(Secret::FilePath(path.into()));
        self
    }

    /// `password_env = var`, and `var=password` in wharf's environment.
    pub fn password_env(mut self, var: &str, password: &str) -> Self {
        self.password = Some(Secret::Env {
            var: var.into(),
            value: password.into(),
        });
        self
    }

    pub fn ca_file(mut self, p: &Path) -> Self {
        self.ca_file = Some(p.into());
        self
    }

    pub fn no_ca_file(mut self) -> Self {
        self.ca_file = None;
        self
    }

    pub fn tag_ttl(mut self, ttl: &str) -> Self {
        self.tag_ttl = Some(ttl.into());
        self
    }

    /// Raw `key = value` lines added to this table.
    pub fn extra(mut self, toml: &str) -> Self {
        self.extra.push_str(toml);
        self.extra.push('\n');
        self
    }

    fn render(&self, dir: &Path, env: &mut Vec<(String, String)>) -> String {
        let mut s = format!(
            "\n[[upstream]]\nname = {}\nurl = {}\n",
            toml_str(&self.name),
            toml_str(&self.url)
        );
        let prefixes: Vec<String> = self.prefixes.iter().map(|p| toml_str(p)).collect();
        s += &format!("prefixes = [{}]\n", prefixes.join(", "));
        if self.default {
            s += "default = true\n";
        }
        if let Some(u) = &self.username {
            s += &format!("username = {}\n", toml_str(u));
        }
        match &self.password {
            None => {}
            Some(Secret::FileContent(p)) => {
                let file = dir.join(format!("{}.password", self.name));
                write_file(&file, p);
                s += &format!(
                    "password_file = {}\n",
                    toml_str(&file.display().to_string())
                );
            }
            Some(Secret::FilePath(f)) => {
                s += &format!("password_file = {}\n", toml_str(&f.display().to_string()));
            }
            Some(Secret::Env { var, value }) => {
                env.push((var.clone(), value.clone()));
                s += &format!("password_env = {}\n", toml_str(var));
            }
        }
        if let Some(ca) = &self.ca_file {
            s += &format!("ca_file = {}\n", toml_str(&ca.display().to_string()));
        }
        if let Some(t) = &self.tag_ttl {
            s += &format!("tag_ttl = {}\n", toml_str(t));
        }
        s + &self.extra
    }
}

/// Builds a wharf configuration (and, with `start`, runs wharf on it).
#[derive(Debug, Clone)]
pub struct WharfBuilder {
    upstreams: Vec<UpstreamCfg>,
    tag_ttl: String,
    max_size: String,
    /// `[cache] scrub_rate`, when set.
    scrub_rate: Option<String>,
    /// `[cache] dir`, when not `store` in wharf's directory.
    cache_dir: Option<PathBuf>,
    /// Raw `key = value` lines added to `[cache]`.
    cache_extra: String,
    /// Raw `key = value` lines added to `[server]`.
    server_extra: String,
    extra_toml: String,
    env: Vec<(String, String)>,
    /// `server.listen`'s port, when the test chose it (a fleet whose peers know each other's).
    pub(crate) listen: Option<u16>,
    /// `server.tls_cert` and `server.tls_key`, when the listener speaks TLS.
    pub(crate) tls: Option<wharf_testkit::TlsFiles>,
}

impl WharfBuilder {
    /// TLS on the registry listener with these files (the admin listener stays plain).
    pub fn tls(mut self, files: &wharf_testkit::TlsFiles) -> Self {
        self.tls = Some(files.clone());
        self
    }

    /// Adds raw `key = value` lines to `[server]` (`max_connections = 12000`).
    pub fn server_extra(mut self, toml: &str) -> Self {
        self.server_extra.push_str(toml);
        self.server_extra.push('\n');
        self
    }

    /// Listen on this port (picked free by the test) instead of one picked at start.
    pub fn listen_port(mut self, port: u16) -> Self {
        self.listen = Some(port);
        self
    }

    pub fn upstream(mut self, u: UpstreamCfg) -> Self {
        self.upstreams.push(u);
        self
    }

    /// `[cache] tag_ttl` (default `"5m"`).
    pub fn tag_ttl(mut self, ttl: &str) -> Self {
        self.tag_ttl = ttl.into();
        self
    }

    /// `[cache] max_size` (default `"10GiB"`).
    pub fn max_size(mut self, size: &str) -> Self {
        self.max_size = size.into();
        self
    }

    /// `[cache] scrub_rate` (default: wharf's own, 8 MiB/s).
    pub fn scrub_rate(mut self, rate: &str) -> Self {
        self.scrub_rate = Some(rate.into());
        self
    }

    /// `[cache] dir` (default: `store` in wharf's temporary directory), e.g. on a file system
    /// the test mounted.
    pub fn cache_dir(mut self, dir: &Path) -> Self {
        self.cache_dir = Some(dir.to_path_buf());
        self
    }

    /// Raw `key = value` lines added to `[cache]`.
    pub fn cache_extra(mut self, toml: &str) -> Self {
        self.cache_extra.push_str(toml);
        self.cache_extra.push('\n');
        self
    }

    /// Where the store will be, given wharf's directory.
    pub(crate) fn store_dir(&self, dir: &Path) -> PathBuf {
        self.cache_dir.clone().unwrap_or_else(|| dir.join("store"))
    }

    /// Raw TOML appended at the end of the file; start it with a table header.
    pub fn extra_toml(mut self, toml: &str) -> Self {
        self.extra_toml.push('\n');
        self.extra_toml.push_str(toml);
        self
    }

    /// An environment variable for the wharf process.
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    /// Writes `wharf.toml` into `dir` with these listen ports; returns its path and the
    /// environment the process needs.
    pub fn write_config(
        &self,
        dir: &Path,
        listen: u16,
        admin: u16,
    ) -> (PathBuf, Vec<(String, String)>) {
        let mut env = self.env.clone();
        let mut s = format!(
            "# written by the wharf-e2e harness\n[server]\nlisten = \"127.0.0.1:{listen}\"\n\
             admin_listen = \"127.0.0.1:{admin}\"\n{}{}\n[cache]\ndir = {}\nmax_size = {}\ntag_ttl = {}\n",
            self.tls.as_ref().map_or(String::new(), |t| format!(
                "tls_cert = {}\ntls_key = {}\n",
                toml_str(&t.cert.display().to_string()),
                toml_str(&t.key.display().to_string())
            )),
            self.server_extra,
            toml_str(&self.store_dir(dir).display().to_string()),
            toml_str(&self.max_size),
            toml_str(&self.tag_ttl)
        );
        if let Some(rate) = &self.scrub_rate {
            s += &format!("scrub_rate = {}\n", toml_str(rate));
        }
        s += &self.cache_extra;
        for u in &self.upstreams {
            s += &u.render(dir, &mut env);
        }
        s += &self.extra_toml;
        let path = dir.join("wharf.toml");
        write_file(&path, s);
        (path, env)
    }
}

impl Default for WharfBuilder {
    fn default() -> Self {
        WharfBuilder {
            upstreams: Vec::new(),
            tag_ttl: "5m".into(),
            max_size: "10GiB".into(),
            scrub_rate: None,
            cache_dir: None,
            cache_extra: String::new(),
            server_extra: String::new(),
            extra_toml: String::new(),
            env: Vec::new(),
            listen: None,
            tls: None,
        }
    }
}
