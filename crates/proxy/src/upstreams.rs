//! The configured upstreams and how a request picks one.
//!
//! The order is DESIGN.md's: `?ns=` naming a prefix, a mount before `/v2/` or a first path
//! component naming a prefix ([`Upstreams::select_named`]), then hosted repositories
//! (`hosted/`), then the default upstream ([`Upstreams::select_default`]). An `ns` or prefix that names no
//! configured upstream is answered `NAME_UNKNOWN` and never followed: wharf is not an open proxy.

use std::sync::Arc;
use std::time::Duration;

use wharf_oci::{RepositoryName, is_docker_hub_host};

use crate::freshness::Backoff;

/// One upstream as the proxy sees it.
pub struct Upstream {
    pub name: String,
    pub client: wharf_upstream::Client,
    /// Names that select it: an `ns` value or a first path segment.
    pub prefixes: Vec<String>,
    /// Bare names (no prefix, no `ns`) go here.
    pub is_default: bool,
    /// Docker Hub's rule applies: single-component names get `library/`.
    pub library_prefix: bool,
    /// Within this time since the last validation, a tag is served without asking upstream.
    pub tag_ttl: Duration,
    /// A tag past its TTL waits this long for its revalidation; then the last known digest is
    /// served and the revalidation finishes in the background (`revalidate.rs`).
    pub revalidate_timeout: Duration,
    /// Tags matching any of these are never revalidated once recorded (`immutable_tags`).
    pub immutable_tags: regex::RegexSet,
    /// When a revalidation finds that a tag moved, fetch the platforms clients pulled of it
    /// before, ahead of them (`warm_moved_tags`, `warming.rs`).
    pub warm_moved_tags: bool,
    /// While open, tag records are served without asking this upstream (it failed just now).
    pub backoff: Backoff,
    /// The registry its clients name (`container-registry.oracle.com`, `docker.io`): the host
    /// its images' signatures name them by.
    pub registry: String,
    /// Where its simple-signing signatures live (`lookaside`); `None`: it has none.
    pub lookaside: Option<Lookaside>,
    /// Manifests served only with a signature that verifies (`require_signature`).
    pub policy: Option<crate::policy::SignaturePolicy>,
}

/// An upstream's signature store, and the back-off that keeps a failing one from costing
/// every pull a timeout.
pub struct Lookaside {
    pub client: wharf_upstream::Lookaside,
    /// While open, stored signature lists are served without asking (it failed just now).
    pub backoff: Backoff,
}

impl Lookaside {
    pub fn new(client: wharf_upstream::Lookaside) -> Lookaside {
        Lookaside {
            client,
            backoff: Backoff::default(),
        }
    }
}

impl Upstream {
    /// `tag_ttl` unless configured (`cache.tag_ttl`).
    pub const DEFAULT_TAG_TTL: Duration = Duration::from_secs(300);
    /// The time to connect (TCP and TLS) unless configured (`connect_timeout`).
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
    /// The time until response headers arrive unless configured (`response_timeout`).
    pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
    /// How long a tag past its TTL waits for its revalidation unless configured
    /// (`revalidate_timeout`): a healthy upstream answers a HEAD well within it.
    pub const DEFAULT_REVALIDATE_TIMEOUT: Duration = Duration::from_secs(3);

    /// An upstream reached without credentials, with the configuration's defaults
    /// ([`Self::DEFAULT_CONNECT_TIMEOUT`], [`Self::DEFAULT_RESPONSE_TIMEOUT`],
    /// [`Self::DEFAULT_TAG_TTL`], no immutable tags, no `library/`): for tests, benchmarks and
    /// tools. `wharf serve` builds its upstreams from the configuration.
    pub fn anonymous(
        name: &str,
        url: &str,
        prefixes: &[&str],
        is_default: bool,
    ) -> Result<Upstream, wharf_upstream::Error> {
        let client = wharf_upstream::Client::new(wharf_upstream::Config {
            name: name.into(),
            url: url.into(),
            mirrors: Vec::new(),
            username: None,
            password: None,
            ca_file: None,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            response_timeout: Self::DEFAULT_RESPONSE_TIMEOUT,
        })?;
        Ok(Upstream {
            name: name.into(),
            client,
            prefixes: prefixes.iter().map(|p| (*p).to_owned()).collect(),
            is_default,
            library_prefix: false,
            tag_ttl: Self::DEFAULT_TAG_TTL,
            revalidate_timeout: Self::DEFAULT_REVALIDATE_TIMEOUT,
            immutable_tags: regex::RegexSet::empty(),
            warm_moved_tags: false,
            backoff: Backoff::default(),
            registry: {
                let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
                rest.split('/').next().unwrap_or(rest).to_ascii_lowercase()
            },
            lookaside: None,
            policy: None,
        })
    }

    /// Whether the upstream at `url` (`scheme://host[:port]`), selected by `prefixes`, is Docker
    /// Hub, so that [`Upstream::library_prefix`] applies: its URL is one of Hub's hosts, or it
    /// answers to `docker.io` (a mirror of Hub configured as Hub).
    pub fn is_docker_hub(url: &str, prefixes: &[String]) -> bool {
        let rest = url.split_once("://").map_or("", |(_, rest)| rest);
        let host = rest.split('/').next().unwrap_or(rest);
        is_docker_hub_host(host) || prefixes.iter().any(|p| p.eq_ignore_ascii_case("docker.io"))
    }

    fn answers_to(&self, prefix: &str) -> bool {
        self.prefixes.iter().any(|p| p.eq_ignore_ascii_case(prefix))
    }

    /// Whether `tag` matches one of the upstream's `immutable_tags` patterns.
    pub fn is_immutable(&self, tag: &str) -> bool {
        self.immutable_tags.is_match(tag)
    }
}

/// Where a request goes: the upstream and the repository name in the upstream's namespace.
#[derive(Clone)]
pub struct Target {
    pub upstream: Arc<Upstream>,
    pub repo: RepositoryName,
}

impl Target {
    /// The store's key of `tag` in this target's upstream and repository.
    pub fn tag_key<'a>(&'a self, tag: &'a str) -> wharf_cache::TagKey<'a> {
        wharf_cache::TagKey {
            upstream: &self.upstream.name,
            repository: self.repo.as_str(),
            tag,
        }
    }

    /// `repo` in `upstream`'s namespace, with Docker Hub's `library/` where it applies.
    fn new(upstream: &Arc<Upstream>, repo: RepositoryName) -> Target {
        let repo = if upstream.library_prefix {
            repo.with_library_prefix()
        } else {
            repo
        };
        Target {
            upstream: upstream.clone(),
            repo,
        }
    }
}

/// Why no upstream was chosen; rendered as `NAME_UNKNOWN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoUpstream(pub String);

pub struct Upstreams {
    all: Vec<Arc<Upstream>>,
}

impl Upstreams {
    pub fn new(all: Vec<Upstream>) -> Self {
        Upstreams {
            all: all.into_iter().map(Arc::new).collect(),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Upstream>> {
        self.all.iter()
    }

    fn by_prefix(&self, prefix: &str) -> Option<&Arc<Upstream>> {
        self.all.iter().find(|u| u.answers_to(prefix))
    }

    /// Picks the upstream for `name`, given the request's `ns` parameter and path mount.
    pub fn select(
        &self,
        ns: Option<&str>,
        mount: Option<&str>,
        name: &RepositoryName,
    ) -> Result<Target, NoUpstream> {
        match self.select_named(ns, mount, name)? {
            Some(target) => Ok(target),
            None => self.select_default(name),
        }
    }

    /// The upstream an `ns`, a mount or the name's first component names (steps 1 and 2 of
    /// the routing order), if any; hosted repositories come after these, the default upstream
    /// last ([`Upstreams::select_default`]). An `ns` or mount naming no upstream is an error.
    pub fn select_named(
        &self,
        ns: Option<&str>,
        mount: Option<&str>,
        name: &RepositoryName,
    ) -> Result<Option<Target>, NoUpstream> {
        let first = name.components().next().unwrap_or_default();
        let (upstream, repo) = if let Some(ns) = ns {
            let up = self
                .by_prefix(ns)
                .ok_or_else(|| NoUpstream(format!("no upstream is configured for ns={ns:?}")))?;
            // containerd with `[host."http://m/v2/oracle"]` + override_path sends both the
            // prefix in the path and `ns`: drop the prefix when it names the same upstream.
            let repo = match name.strip_components(1) {
                Some(rest) if up.answers_to(first) => rest,
                _ => name.clone(),
            };
            (up, repo)
        } else if let Some(mount) = mount {
            let up = self
                .by_prefix(mount)
                .ok_or_else(|| NoUpstream(format!("no upstream is configured for /{mount}/v2/")))?;
            (up, name.clone())
        } else if let (Some(up), Some(rest)) = (self.by_prefix(first), name.strip_components(1)) {
            (up, rest)
        } else {
            return Ok(None);
        };
        Ok(Some(Target::new(upstream, repo)))
    }

    /// The default upstream's target for a bare `name` (step 4 of the routing order).
    pub fn select_default(&self, name: &RepositoryName) -> Result<Target, NoUpstream> {
        match self.all.iter().find(|u| u.is_default) {
            Some(up) => Ok(Target::new(up, name.clone())),
            None => Err(NoUpstream(format!(
                "no upstream is configured for {name:?}: start the name with an upstream prefix or configure a default upstream"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_by_url_or_prefix() {
        let hub = |url: &str, prefixes: &[&str]| {
            let prefixes: Vec<String> = prefixes.iter().map(|p| (*p).to_owned()).collect();
            Upstream::is_docker_hub(url, &prefixes)
        };
        assert!(hub("https://registry-1.docker.io", &[]));
        assert!(hub("https://index.docker.io/", &["hub"]));
        assert!(hub("http://127.0.0.1:5000", &["docker.io"]));
        assert!(!hub("https://quay.io", &["quay.io", "quay"]));
        assert!(!hub("https://registry-1.docker.io.example.com", &[]));
    }
}
