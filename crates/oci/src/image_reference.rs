//! Image references as people type them (`[registry/]repository[:tag][@digest]`), read by the
//! rules Docker and podman share: the first component is a registry host only if it looks like
//! one, a reference with neither tag nor digest means `latest`, and Docker Hub's hosts are
//! [`DOCKER_HUB_HOSTS`].

use std::fmt;

use crate::digest::Digest;
use crate::name::{Reference, RepositoryName, is_valid_tag};

/// The hosts that are Docker Hub: a reference may name any of them, and on Docker Hub a
/// single-component repository lives under `library/` ([`RepositoryName::with_library_prefix`]).
pub const DOCKER_HUB_HOSTS: [&str; 3] = ["docker.io", "registry-1.docker.io", "index.docker.io"];

/// The tag a reference without tag or digest asks for.
pub const DEFAULT_TAG: &str = "latest";

/// Whether `host` (`host[:port]`, any case) is one of Docker Hub's hosts.
pub fn is_docker_hub_host(host: &str) -> bool {
    DOCKER_HUB_HOSTS
        .iter()
        .any(|h| h.eq_ignore_ascii_case(host))
}

/// Whether the first component of a reference names a registry (`quay.io`, `localhost:5000`,
/// `localhost`) rather than a namespace (`library`, `oracle`): Docker's and podman's rule.
pub fn looks_like_host(component: &str) -> bool {
    component.contains('.') || component.contains(':') || component == "localhost"
}

/// Why a string is not an image reference; the message quotes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not an image reference ({why})")]
pub struct ImageReferenceError {
    text: String,
    why: String,
}

/// `[registry/]repository[:tag][@digest]`, parsed and validated.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageReference {
    /// The registry host the reference names (`container-registry.oracle.com`), lowercased.
    pub registry: Option<String>,
    /// The repository within that registry (`os/oraclelinux`).
    pub repository: RepositoryName,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl ImageReference {
    /// Parses what a user typed; surrounding whitespace and a `docker://` transport prefix (as
    /// skopeo writes references) are ignored.
    pub fn parse(s: &str) -> Result<ImageReference, ImageReferenceError> {
        let bad = |why: String| ImageReferenceError {
            // Bounded, so a huge input does not make a huge message.
            text: s.chars().take(160).collect(),
            why,
        };
        let text = s.trim();
        let text = text.strip_prefix("docker://").unwrap_or(text);
        if text.is_empty() || text.contains(char::is_whitespace) {
            return Err(bad("empty or contains spaces".to_owned()));
        }
        let (name_tag, digest) = match text.split_once('@') {
            Some((n, d)) => (n, Some(Digest::parse(d).map_err(|e| bad(e.to_string()))?)),
            None => (text, None),
        };
        // A ':' after the last '/' starts the tag; before it, it is a registry's port.
        let (name, tag) = match name_tag.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => (n, Some(t.to_owned())),
            _ => (name_tag, None),
        };
        if let Some(t) = &tag
            && !is_valid_tag(t)
        {
            return Err(bad(format!("bad tag {t:?}")));
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest)) if looks_like_host(first) => {
                (Some(first.to_ascii_lowercase()), rest)
            }
            _ => (None, name),
        };
        let repository = RepositoryName::parse(repository).map_err(|e| bad(e.to_string()))?;
        Ok(ImageReference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// What to ask a registry for: the digest if given (it pins the content, as podman reads
    /// `name:tag@digest`), else the tag, else [`DEFAULT_TAG`].
    pub fn reference(&self) -> Reference {
        match (&self.digest, &self.tag) {
            (Some(d), _) => Reference::Digest(d.clone()),
            (None, Some(t)) => Reference::Tag(t.clone()),
            (None, None) => Reference::Tag(DEFAULT_TAG.to_owned()),
        }
    }
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(r) = &self.registry {
            write!(f, "{r}/")?;
        }
        write!(f, "{}", self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> ImageReference {
        ImageReference::parse(s).expect("parse")
    }

    #[test]
    fn parses_like_podman() {
        let r = parse("container-registry.oracle.com/os/oraclelinux:7-slim");
        assert_eq!(r.registry.as_deref(), Some("container-registry.oracle.com"));
        assert_eq!(r.repository.as_str(), "os/oraclelinux");
        assert_eq!(r.reference().to_string(), "7-slim");
        let r = parse("localhost:5000/hello");
        assert_eq!(r.registry.as_deref(), Some("localhost:5000"));
        assert_eq!(r.reference().to_string(), "latest");
        let r = parse("alpine");
        assert_eq!((r.registry, r.repository.as_str()), (None, "alpine"));
        let d = format!("sha256:{}", "a".repeat(64));
        let r = parse(&format!("quay.io/a/b:1@{d}"));
        assert_eq!(r.reference().to_string(), d);
        assert_eq!(r.to_string(), format!("quay.io/a/b:1@{d}"));
        assert_eq!(parse("docker://quay.io/a/b").to_string(), "quay.io/a/b");
        assert!(ImageReference::parse("Bad/Name").is_err());
        assert!(ImageReference::parse("a b").is_err());
        assert!(ImageReference::parse("x@sha256:12").is_err());
        assert!(ImageReference::parse("").is_err());
    }

    /// The shapes `wharf cache rm` is given: a wharf prefix as the first component, a registry
    /// host, a port, a digest.
    #[test]
    fn references_split_like_docker_does() {
        let r = parse("oracle/os/oraclelinux:7-slim");
        assert!(r.registry.is_none() && r.repository.as_str() == "oracle/os/oraclelinux");
        assert_eq!(r.reference(), Reference::Tag("7-slim".into()));
        let r = parse("registry.local:5000/hello");
        assert_eq!(r.registry.as_deref(), Some("registry.local:5000"));
        assert_eq!(r.repository.as_str(), "hello");
        assert_eq!(r.reference(), Reference::Tag("latest".into()));
        let d = Digest::sha256_of(b"x");
        let r = parse(&format!("hello@{d}"));
        assert_eq!(r.repository.as_str(), "hello");
        assert_eq!(r.reference(), Reference::Digest(d));
        assert!(ImageReference::parse("hello:").is_err());
        assert!(ImageReference::parse("hello@sha256:nothex").is_err());
    }

    #[test]
    fn errors_quote_the_input() {
        let e = ImageReference::parse("hello:-x").expect_err("bad tag");
        assert_eq!(
            e.to_string(),
            "\"hello:-x\" is not an image reference (bad tag \"-x\")"
        );
    }

    #[test]
    fn docker_hub_hosts() {
        assert!(is_docker_hub_host("docker.io") && is_docker_hub_host("Registry-1.Docker.io"));
        assert!(!is_docker_hub_host("quay.io") && !is_docker_hub_host("docker.io:5000"));
        assert!(looks_like_host("localhost") && looks_like_host("a:1") && !looks_like_host("a"));
    }
}
