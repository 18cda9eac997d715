//! Image references as podman and Docker read them (`[registry/]repo[:tag][@digest]`), and the
//! repository path wharf serves each one under: `<upstream path prefix>/<repo>`, the same path
//! a podman mirror location from `wharf client-config podman` produces, so a pull after a
//! prefetch finds the same tag record and the same blobs.

use std::fmt;

use wharf_oci::{Digest, RepositoryName, is_valid_tag};

use crate::config::{Config, Upstream};
use crate::mirror;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// The registry host the reference names (`container-registry.oracle.com`), if any.
    pub registry: Option<String>,
    /// The repository within that registry (`os/oraclelinux`).
    pub repo: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl ImageRef {
    pub fn parse(s: &str) -> Result<ImageRef, String> {
        let bad = |why: &str| format!("{s:?} is not an image reference ({why})");
        let text = s.trim();
        let text = text.strip_prefix("docker://").unwrap_or(text);
        if text.is_empty() || text.contains(char::is_whitespace) {
            return Err(bad("empty or contains spaces"));
        }
        let (name_tag, digest) = match text.split_once('@') {
            Some((n, d)) => (n, Some(Digest::parse(d).map_err(|e| bad(&e.to_string()))?)),
            None => (text, None),
        };
        let (name, tag) = match name_tag.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => (n, Some(t.to_owned())),
            _ => (name_tag, None),
        };
        if let Some(t) = &tag
            && !is_valid_tag(t)
        {
            return Err(bad(&format!("bad tag {t:?}")));
        }
        let (registry, repo) = match name.split_once('/') {
            Some((first, rest)) if mirror::looks_like_host(first) => {
                (Some(first.to_ascii_lowercase()), rest)
            }
            _ => (None, name),
        };
        RepositoryName::parse(repo).map_err(|e| bad(&e.to_string()))?;
        Ok(ImageRef {
            registry,
            repo: repo.to_owned(),
            tag,
            digest,
        })
    }

    /// What to ask for: the digest if given (as podman does), else the tag, else `latest`.
    pub fn reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_owned(),
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(r) = &self.registry {
            write!(f, "{r}/")?;
        }
        f.write_str(&self.repo)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Where on wharf an image lives.
pub struct Route<'a> {
    pub upstream: &'a Upstream,
    /// The repository path on wharf: `/v2/<repo>/manifests/...`.
    pub repo: String,
}

/// The upstream serving `r` (by registry host: a prefix or the URL's host; with no registry,
/// the default upstream, as wharf routes bare names) and the path wharf serves it under.
pub fn route<'a>(config: &'a Config, r: &ImageRef) -> Result<Route<'a>, String> {
    let upstream = match &r.registry {
        Some(host) => config
            .upstream
            .iter()
            .find(|u| {
                mirror::answers_ns(u, host) || mirror::url_host(&u.url).eq_ignore_ascii_case(host)
            })
            .ok_or_else(|| {
                let known: Vec<String> =
                    config.upstream.iter().map(mirror::registry_host).collect();
                format!(
                    "no upstream of wharf serves {host} (it mirrors {})",
                    known.join(", ")
                )
            })?,
        None => config
            .upstream
            .iter()
            .find(|u| u.default)
            .ok_or_else(|| format!("{r} names no registry and no upstream is the default"))?,
    };
    let repo = match mirror::path_prefix(upstream) {
        Some(p) => format!("{p}/{}", r.repo),
        None if upstream.default => r.repo.clone(),
        None => {
            return Err(format!(
                "upstream {:?} has no prefix that can be a path segment; add a short one",
                upstream.name
            ));
        }
    };
    Ok(Route { upstream, repo })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_podman() {
        let r =
            ImageRef::parse("container-registry.oracle.com/os/oraclelinux:7-slim").expect("parse");
        assert_eq!(r.registry.as_deref(), Some("container-registry.oracle.com"));
        assert_eq!(r.repo, "os/oraclelinux");
        assert_eq!(r.reference(), "7-slim");
        let r = ImageRef::parse("localhost:5000/hello").expect("parse");
        assert_eq!(r.registry.as_deref(), Some("localhost:5000"));
        assert_eq!(r.reference(), "latest");
        let r = ImageRef::parse("alpine").expect("parse");
        assert_eq!((r.registry, r.repo.as_str()), (None, "alpine"));
        let d = format!("sha256:{}", "a".repeat(64));
        let r = ImageRef::parse(&format!("quay.io/a/b:1@{d}")).expect("parse");
        assert_eq!(r.reference(), d);
        assert_eq!(r.to_string(), format!("quay.io/a/b:1@{d}"));
        assert!(ImageRef::parse("Bad/Name").is_err());
        assert!(ImageRef::parse("a b").is_err());
        assert!(ImageRef::parse("x@sha256:12").is_err());
        assert!(ImageRef::parse("").is_err());
    }

    #[test]
    fn routes_by_the_configured_prefixes() {
        let c = Config::embedded().expect("embedded");
        let path = |s: &str| {
            route(&c, &ImageRef::parse(s).expect("parse"))
                .map(|r| (r.upstream.name.clone(), r.repo))
        };
        assert_eq!(
            path("container-registry.oracle.com/os/oraclelinux:7-slim"),
            Ok(("oracle".into(), "oracle/os/oraclelinux".into()))
        );
        assert_eq!(
            path("quay.io/podman/hello"),
            Ok(("quay".into(), "quay/podman/hello".into()))
        );
        assert_eq!(
            path("alpine"),
            Ok(("docker".into(), "docker.io/alpine".into()))
        );
        assert_eq!(
            path("registry-1.docker.io/library/alpine"),
            Ok(("docker".into(), "docker.io/library/alpine".into()))
        );
        let e = path("ghcr.io/a/b").expect_err("not configured");
        assert!(e.contains("ghcr.io") && e.contains("quay.io"), "{e}");
    }
}
