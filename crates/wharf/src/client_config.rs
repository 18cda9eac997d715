//! `wharf client-config podman|containerd|docker`: the client side of a mirror, generated from
//! the configuration the server runs on, so the prefixes and the scheme clients use are the ones
//! wharf routes by (PROTOCOL.md §3).
//!
//! - podman, CRI-O, skopeo, buildah: one v2 drop-in for `/etc/containers/registries.conf.d/`,
//!   a `[[registry]]` per upstream whose `[[registry.mirror]]` is `HOST:PORT/<prefix>`, so wharf
//!   routes by the first path segment.
//! - containerd: `certs.d/<registry>/hosts.toml` per upstream, the mirror with pull and resolve
//!   only; containerd adds `?ns=<registry>`, which wharf routes by.
//! - Docker: `registry-mirrors` for `daemon.json`; Docker sends only Docker Hub names there,
//!   without a prefix, so it needs Docker Hub to be wharf's default upstream.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::config::{Config, UpstreamConfig};
use crate::mirror::{self, Mirror, Unspecified};
use crate::output;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The client to configure.
    #[arg(value_enum)]
    client: Client,
    /// The server's configuration [default: /etc/wharf/wharf.toml if it exists, else the
    /// embedded default].
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// How clients reach wharf: HOST[:PORT], or http(s)://HOST[:PORT] to set the scheme (TLS
    /// terminated in front of wharf) [default: server.listen, 0.0.0.0 replaced by this
    /// machine's hostname; https if server.tls_cert is set].
    #[arg(long, value_name = "HOST:PORT")]
    mirror: Option<String>,
    /// Do not verify the mirror's certificate (podman `insecure`, containerd `skip_verify`,
    /// Docker `insecure-registries`). A plain-HTTP mirror is marked insecure for podman and
    /// Docker anyway: they need it to speak HTTP.
    #[arg(long)]
    insecure: bool,
    /// The CA certificate (PEM) that signed the mirror's certificate: containerd `ca = FILE`;
    /// for podman and Docker the output says where to install it.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Write the files under DIR instead of printing them: podman DIR/wharf.conf, containerd
    /// DIR/<registry>/hosts.toml (DIR is a certs.d), Docker DIR/daemon.json (never overwritten).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Client {
    /// podman, CRI-O, skopeo, buildah (containers-registries.conf v2)
    Podman,
    /// containerd, nerdctl, ctr (hosts.toml)
    Containerd,
    /// the Docker Engine (daemon.json registry-mirrors; Docker Hub only)
    Docker,
}

/// One generated file: its path relative to `--out`, and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct File {
    pub path: PathBuf,
    pub text: String,
}

/// What a generator produced: files, and notes for the operator (printed on stderr).
#[derive(Debug, Default)]
pub(crate) struct Generated {
    pub files: Vec<File>,
    pub notes: Vec<String>,
}

/// The inputs every generator needs.
pub(crate) struct Options<'a> {
    pub config: &'a Config,
    /// Where the configuration came from, named in the generated header.
    pub origin: &'a str,
    pub mirror: &'a Mirror,
    pub insecure: bool,
    pub ca: Option<&'a Path>,
}

pub(crate) fn run(args: Args) -> ExitCode {
    let (config, origin) = match mirror::load_config(args.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("wharf client-config: {e}");
            return ExitCode::from(2);
        }
    };
    let m = match Mirror::resolve(args.mirror.as_deref(), &config, Unspecified::Hostname) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("wharf client-config: {e}");
            return ExitCode::from(2);
        }
    };
    // containerd resolves a relative `ca` against its own working directory, not ours.
    let ca = match args.ca.as_deref().map(absolute_ca).transpose() {
        Ok(ca) => ca,
        Err(e) => {
            eprintln!("wharf client-config: {e}");
            return ExitCode::from(2);
        }
    };
    if args.mirror.is_none() {
        eprintln!(
            "wharf client-config: clients reach wharf at {} (from server.listen in {origin}; \
             --mirror to change)",
            m.url()
        );
    }
    let opts = Options {
        config: &config,
        origin: &origin,
        mirror: &m,
        insecure: args.insecure,
        ca: ca.as_deref(),
    };
    let generated = match args.client {
        Client::Podman => Ok(podman(&opts)),
        Client::Containerd => Ok(containerd(&opts)),
        Client::Docker => docker(&opts),
    };
    let generated = match generated {
        Ok(g) => g,
        Err(e) => {
            eprintln!("wharf client-config: {e}");
            return ExitCode::from(2);
        }
    };
    for n in &generated.notes {
        eprintln!("wharf client-config: {n}");
    }
    if generated.files.is_empty() {
        eprintln!("wharf client-config: nothing to write");
        return ExitCode::FAILURE;
    }
    let Some(dir) = &args.out else {
        // containerd's files only mean something at their path: always name it.
        let many = args.client == Client::Containerd || generated.files.len() > 1;
        let mut text = String::new();
        for (i, f) in generated.files.iter().enumerate() {
            if many {
                if i > 0 {
                    text.push('\n');
                }
                text += &format!("### {}\n", f.path.display());
            }
            text += &f.text;
        }
        return output::finish("wharf client-config", &text, ExitCode::SUCCESS);
    };
    let keep_existing = args.client == Client::Docker;
    if keep_existing && let Some(f) = generated.files.iter().find(|f| dir.join(&f.path).exists()) {
        return kept(&dir.join(&f.path), &f.text);
    }
    match write_files(dir, &generated.files, keep_existing) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wharf client-config: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The CA file as an absolute path, or why it cannot be used.
fn absolute_ca(path: &Path) -> Result<PathBuf, String> {
    std::fs::canonicalize(path).map_err(|e| format!("--ca {}: {e}", path.display()))
}

/// A file the operator already has (Docker's daemon.json holds their other settings too): it
/// stays as it is, and the snippet to merge is printed instead. Still a failure: nothing the
/// command was asked to write was written.
fn kept(path: &Path, text: &str) -> ExitCode {
    if let Err(e) = output::print(text)
        && !output::is_closed(&e)
    {
        return output::failed("wharf client-config", &e);
    }
    eprintln!(
        "wharf client-config: {} exists and is left as it is: merge the snippet printed above \
         into it by hand",
        path.display()
    );
    ExitCode::FAILURE
}

fn write_files(dir: &Path, files: &[File], keep_existing: bool) -> Result<(), String> {
    for f in files {
        let path = dir.join(&f.path);
        if keep_existing && path.exists() {
            return Err(format!(
                "{} appeared meanwhile and is left as it is; run again to see the snippet to \
                 merge into it",
                path.display()
            ));
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("creating {}: {e}", parent.display()))?;
        }
        std::fs::write(&path, &f.text).map_err(|e| format!("writing {}: {e}", path.display()))?;
        eprintln!("wharf client-config: wrote {}", path.display());
    }
    Ok(())
}

/// A TOML basic string.
fn q(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn header(client: &str, opts: &Options<'_>) -> String {
    format!(
        "# Generated by `wharf client-config {client}` from {}.\n\
         # wharf at {}; regenerate after changing the upstreams or prefixes there.\n",
        opts.origin,
        opts.mirror.url()
    )
}

/// Upstreams with the registry host clients name, first one per host (the rest are noted).
fn registries<'a>(
    opts: &Options<'a>,
    notes: &mut Vec<String>,
) -> Vec<(&'a UpstreamConfig, String)> {
    let mut seen: Vec<(&UpstreamConfig, String)> = Vec::new();
    for u in &opts.config.upstream {
        let host = mirror::registry_host(u);
        if let Some((first, _)) = seen.iter().find(|(_, h)| *h == host) {
            notes.push(format!(
                "upstream {:?} names the same registry {host} as upstream {:?}: left out",
                u.name, first.name
            ));
            continue;
        }
        seen.push((u, host));
    }
    seen
}

const PODMAN_V1_NOTE: &str = "\
# Install as /etc/containers/registries.conf.d/wharf.conf (or, per user,
# ~/.config/containers/registries.conf.d/wharf.conf). Files in registries.conf.d are always read
# in the v2 format and merged over the main /etc/containers/registries.conf.
#
# A main file in the v1 format of the Oracle Linux guide ([registries.search],
# [registries.insecure], [registries.block]) can stay as it is beside this drop-in, but these
# [[registry]] tables must not be pasted into it: v1 and v2 keys in one file are an error
# (\"mixing sysregistry v1/v2 is not supported\"). To convert a v1 main file to v2:
#   [registries.search]   registries = ['a.example', 'b.example']
#     -> unqualified-search-registries = ['a.example', 'b.example']
#   [registries.insecure] registries = ['c.example']
#     -> [[registry]] location = \"c.example\" insecure = true
#   [registries.block]    registries = ['d.example']
#     -> [[registry]] location = \"d.example\" blocked = true
#
# Each registry below is pulled through wharf first (wharf picks the upstream by the first path
# segment of the mirror location), then from the registry itself if wharf cannot answer.
";

/// The registries.conf v2 drop-in.
pub(crate) fn podman(opts: &Options<'_>) -> Generated {
    let mut g = Generated::default();
    let insecure = opts.insecure || !opts.mirror.tls;
    let mut text = header("podman", opts);
    text += PODMAN_V1_NOTE;
    if let Some(ca) = opts.ca {
        text += &format!(
            "#\n# The mirror's CA: install {} as /etc/containers/certs.d/{}/ca.crt\n",
            ca.display(),
            opts.mirror.authority
        );
    }
    let mut any = false;
    for (u, host) in registries(opts, &mut g.notes) {
        let location = match mirror::path_prefix(u) {
            Some(p) => format!("{}/{p}", opts.mirror.authority),
            None if u.default => opts.mirror.authority.clone(),
            None => {
                g.notes.push(format!(
                    "podman: upstream {:?} has no prefix that can be a path segment \
                     (add a short one such as \"{}\"): left out",
                    u.name, u.name
                ));
                continue;
            }
        };
        any = true;
        text += &format!(
            "\n# upstream {:?} ({})\n[[registry]]\nprefix = {}\nlocation = {}\n\n\
             [[registry.mirror]]\nlocation = {}\n",
            u.name,
            u.url,
            q(&host),
            q(&host),
            q(&location)
        );
        if insecure {
            let why = if opts.mirror.tls {
                "--insecure: the mirror's certificate is not verified"
            } else {
                "wharf is reached over plain HTTP"
            };
            text += &format!("insecure = true  # {why}\n");
        }
    }
    if any {
        g.files.push(File {
            path: PathBuf::from("wharf.conf"),
            text,
        });
    }
    g
}

/// One `hosts.toml` per upstream, under `<registry>/`.
pub(crate) fn containerd(opts: &Options<'_>) -> Generated {
    let mut g = Generated::default();
    let host_url = opts.mirror.url();
    for (u, registry) in registries(opts, &mut g.notes) {
        if !mirror::answers_ns(u, &registry) {
            g.notes.push(format!(
                "containerd: upstream {:?}: containerd sends ?ns={registry}, which is not among \
                 its prefixes; add \"{registry}\" to them: left out",
                u.name
            ));
            continue;
        }
        let mut text = header("containerd", opts);
        text += &format!(
            "# Install as /etc/containerd/certs.d/{registry}/hosts.toml (the CRI plugin's\n\
             # registry config_path; `ctr images pull --hosts-dir /etc/containerd/certs.d`).\n\
             # containerd pulls {registry}/... through wharf first, adding\n\
             # ?ns={registry}, which selects wharf's upstream {:?}.\n\
             # The mirror may only pull and resolve: a push never goes to it.\n\
             # If wharf cannot answer, containerd falls back to `server`.\n\
             server = {}\n\n[host.{}]\n  capabilities = [\"pull\", \"resolve\"]\n",
            u.name,
            q(u.url.trim_end_matches('/')),
            q(&host_url)
        );
        if let Some(ca) = opts.ca {
            text += &format!("  ca = {}\n", q(&ca.display().to_string()));
        }
        if opts.insecure && opts.mirror.tls {
            text +=
                "  skip_verify = true  # --insecure: the mirror's certificate is not verified\n";
        }
        g.files.push(File {
            path: Path::new(&registry).join("hosts.toml"),
            text,
        });
    }
    g
}

/// Hosts that are Docker Hub.
const DOCKER_HUB: [&str; 3] = ["docker.io", "registry-1.docker.io", "index.docker.io"];

fn is_docker_hub(u: &UpstreamConfig) -> bool {
    DOCKER_HUB.contains(&mirror::url_host(&u.url).to_ascii_lowercase().as_str())
        || u.prefixes
            .iter()
            .any(|p| DOCKER_HUB.iter().any(|h| p.eq_ignore_ascii_case(h)))
}

/// The `daemon.json` snippet. An error when Docker Hub is not wharf's default upstream: Docker
/// sends Hub names with no prefix, and wharf would serve them from another registry.
pub(crate) fn docker(opts: &Options<'_>) -> Result<Generated, String> {
    let mut g = Generated::default();
    let default = opts.config.upstream.iter().find(|u| u.default);
    match default {
        Some(u) if is_docker_hub(u) => {
            if !u
                .prefixes
                .iter()
                .any(|p| p.eq_ignore_ascii_case("docker.io"))
            {
                g.notes.push(format!(
                    "upstream {:?} lacks the prefix \"docker.io\": Docker with the containerd \
                     image store sends ?ns=docker.io and would be refused",
                    u.name
                ));
            }
        }
        Some(u) => {
            return Err(format!(
                "Docker's registry-mirrors carry Docker Hub names without a prefix, and wharf \
                 sends those to its default upstream {:?} ({}), which is not Docker Hub; make \
                 a Docker Hub upstream the default (url = \"https://registry-1.docker.io\")",
                u.name, u.url
            ));
        }
        None => {
            return Err(
                "Docker's registry-mirrors carry Docker Hub names without a prefix, and no \
                 upstream is the default; add a Docker Hub upstream with default = true"
                    .to_owned(),
            );
        }
    }
    let insecure = opts.insecure || !opts.mirror.tls;
    let js = |v: &str| serde_json::Value::from(v).to_string();
    // Written by hand so registry-mirrors comes first, as in Docker's documentation.
    let mut text = format!("{{\n  \"registry-mirrors\": [{}]", js(&opts.mirror.url()));
    if insecure {
        text += &format!(
            ",\n  \"insecure-registries\": [{}]",
            js(&opts.mirror.authority)
        );
    }
    text += "\n}\n";
    g.notes.push(
        "Docker: merge this into /etc/docker/daemon.json and restart dockerd. registry-mirrors \
         covers Docker Hub images only; for other registries use the podman or containerd \
         configuration (Docker with the containerd image store also reads \
         /etc/docker/certs.d/<registry>/hosts.toml)."
            .to_owned(),
    );
    if let Some(ca) = opts.ca {
        g.notes.push(format!(
            "Docker: install {} as /etc/docker/certs.d/{}/ca.crt",
            ca.display(),
            opts.mirror.authority
        ));
    }
    g.files.push(File {
        path: PathBuf::from("daemon.json"),
        text,
    });
    Ok(g)
}

#[cfg(test)]
mod tests;
