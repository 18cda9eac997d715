//! The image identity a simple signature names (`critical.identity["docker-reference"]`), read
//! as containers/image reads it: `reference.ParseNormalizedNamed` from its `docker/reference`
//! package (`normalize.go`, `regexp.go`, `reference.go`), so `busybox:1` is
//! `docker.io/library/busybox:1`, `index.docker.io/x/y` is `docker.io/x/y`, and everything else
//! is compared exactly as written (hosts are not lower-cased).
//!
//! [`DockerReference::matches_repo_digest_or_exact`] is `matchRepoDigestOrExact` from
//! `signature/policy_reference_match.go`, the identity rule of a `signedBy` requirement without
//! `signedIdentity`: an image pulled by tag must be signed for exactly that repository and tag;
//! an image pulled by digest for any tag or digest of that repository.

use std::fmt;

use wharf_oci::{RepositoryName, is_docker_hub_host, is_valid_tag};

/// Docker Hub's name in references (`defaultDomain`).
const DOCKER_DOMAIN: &str = "docker.io";
/// The host `ParseNormalizedNamed` rewrites to [`DOCKER_DOMAIN`] (`legacyDefaultDomain`).
const LEGACY_DOCKER_DOMAIN: &str = "index.docker.io";
/// `NameTotalLengthMax`: host, slash and path together.
const NAME_TOTAL_LENGTH_MAX: usize = 255;

/// Why a string is not a reference `ParseNormalizedNamed` accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ReferenceError(String);

/// A normalized image reference: `domain/path[:tag][@digest]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerReference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl DockerReference {
    /// `reference.ParseNormalizedNamed`: a familiar or fully qualified reference, normalized.
    pub fn parse_normalized(s: &str) -> Result<DockerReference, ReferenceError> {
        let bad = |why: &str| Err(ReferenceError(why.to_owned()));
        if s.is_empty() {
            return bad("it is empty");
        }
        if s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return bad("a 64-digit hex string is an image ID, not a reference");
        }
        let (domain, remainder) = split_docker_domain(s);
        let (name_tag, digest) = match remainder.split_once('@') {
            Some((n, d)) => (n, Some(d)),
            None => (remainder.as_str(), None),
        };
        // Past the domain a ':' can only start the tag.
        let (path, tag) = match name_tag.split_once(':') {
            Some((p, t)) => (p, Some(t)),
            None => (name_tag, None),
        };
        if path.bytes().any(|b| b.is_ascii_uppercase()) {
            return bad("the repository name must be lowercase");
        }
        if !valid_domain(&domain) {
            return bad("the registry host is not a valid host name");
        }
        if RepositoryName::parse(path).is_err() {
            return bad("the repository name is not valid");
        }
        if domain.len() + 1 + path.len() > NAME_TOTAL_LENGTH_MAX {
            return bad("the name is longer than 255 characters");
        }
        if let Some(t) = tag
            && !is_valid_tag(t)
        {
            return bad("the tag is not valid");
        }
        if let Some(d) = digest
            && !valid_digest(d)
        {
            return bad("the digest is not a sha256, sha384 or sha512 digest in lowercase hex");
        }
        Ok(DockerReference {
            domain,
            path: path.to_owned(),
            tag: tag.map(str::to_owned),
            digest: digest.map(str::to_owned),
        })
    }

    /// The image a caller serves: a repository (`container-registry.oracle.com/os/oraclelinux`,
    /// `busybox`) and the tag it was asked for, if it was asked for by tag. Any of Docker Hub's
    /// hosts (`registry-1.docker.io`, as a mirror's upstream is configured) is read as
    /// `docker.io`, the name references use for it.
    pub fn for_image(
        repository: &str,
        tag: Option<&str>,
    ) -> Result<DockerReference, ReferenceError> {
        let repository = match repository.split_once('/') {
            Some((host, rest)) if is_docker_hub_host(host) => format!("{DOCKER_DOMAIN}/{rest}"),
            _ => repository.to_owned(),
        };
        let mut r = DockerReference::parse_normalized(&repository)?;
        if !r.is_name_only() {
            return Err(ReferenceError(
                "give the repository without a tag or digest".to_owned(),
            ));
        }
        if let Some(t) = tag {
            if !is_valid_tag(t) {
                return Err(ReferenceError(format!(
                    "{:?} is not a valid tag",
                    clip_tag(t)
                )));
            }
            r.tag = Some(t.to_owned());
        }
        Ok(r)
    }

    /// `Name()`: `domain/path`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// `IsNameOnly`: neither tag nor digest.
    pub fn is_name_only(&self) -> bool {
        self.tag.is_none() && self.digest.is_none()
    }

    /// `matchRepoDigestOrExact(intended = self, signature)`. `self` is the image as it was
    /// asked for: tagged (then the signature must name exactly this name and tag) or not (it
    /// was pulled by digest: the signature must name this repository, with some tag or digest;
    /// the digest itself is checked against the signed manifest digest, not here).
    pub fn matches_repo_digest_or_exact(&self, signature: &DockerReference) -> bool {
        if signature.is_name_only() {
            return false;
        }
        if self.tag.is_some() {
            signature.to_string() == self.to_string()
        } else {
            signature.name() == self.name()
        }
    }
}

impl fmt::Display for DockerReference {
    /// `String()`: `domain/path[:tag][@digest]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// `splitDockerDomain`: the first component is a host if it has a '.' or ':' or is
/// `localhost`; otherwise the reference is on Docker Hub, where one-component names live under
/// `library/`.
fn split_docker_domain(s: &str) -> (String, String) {
    let (mut domain, mut remainder) = match s.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
            (first.to_owned(), rest.to_owned())
        }
        _ => (DOCKER_DOMAIN.to_owned(), s.to_owned()),
    };
    if domain == LEGACY_DOCKER_DOMAIN {
        domain = DOCKER_DOMAIN.to_owned();
    }
    if domain == DOCKER_DOMAIN && !remainder.contains('/') {
        remainder = format!("library/{remainder}");
    }
    (domain, remainder)
}

/// `domainRegexp`: dot-separated labels of `[A-Za-z0-9-]` not starting or ending with '-', or
/// a bracketed IPv6 address, then an optional `:port`.
fn valid_domain(d: &str) -> bool {
    let (host, port) = if let Some(inner) = d.strip_prefix('[') {
        let Some((addr, rest)) = inner.split_once(']') else {
            return false;
        };
        if addr.is_empty() || !addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return false;
        }
        match rest.strip_prefix(':') {
            Some(p) => ("", Some(p)),
            None if rest.is_empty() => ("", None),
            None => return false,
        }
    } else {
        match d.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (d, None),
        }
    };
    let label_ok = |l: &str| {
        !l.is_empty()
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    let host_ok = d.starts_with('[') || host.split('.').all(label_ok);
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    host_ok && port_ok
}

/// A digest go-digest's `Parse` accepts: a registered algorithm and its lowercase hex.
fn valid_digest(d: &str) -> bool {
    let Some((alg, hex)) = d.split_once(':') else {
        return false;
    };
    let len = match alg {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return false,
    };
    hex.len() == len && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn clip_tag(t: &str) -> String {
    t.chars().take(140).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> DockerReference {
        DockerReference::parse_normalized(s).expect(s)
    }

    /// The normalizations `docker/reference`'s own tests expect.
    #[test]
    fn normalizes_like_parse_normalized_named() {
        let d = format!("sha256:{}", "a".repeat(64));
        for (input, want) in [
            ("busybox", "docker.io/library/busybox"),
            ("busybox:1", "docker.io/library/busybox:1"),
            ("library/busybox:1", "docker.io/library/busybox:1"),
            ("docker.io/busybox", "docker.io/library/busybox"),
            ("index.docker.io/busybox", "docker.io/library/busybox"),
            ("index.docker.io/a/b:c", "docker.io/a/b:c"),
            ("dmcgowan/myapp", "docker.io/dmcgowan/myapp"),
            ("localhost/a", "localhost/a"),
            ("localhost:5000/a/b:t", "localhost:5000/a/b:t"),
            ("foo:5000", "docker.io/library/foo:5000"),
            ("Quay.io/a/b:1", "Quay.io/a/b:1"),
            ("[::1]:5000/a:t", "[::1]:5000/a:t"),
            (
                "container-registry.oracle.com/os/oraclelinux:9",
                "container-registry.oracle.com/os/oraclelinux:9",
            ),
        ] {
            assert_eq!(parse(input).to_string(), want, "{input}");
        }
        let r = parse(&format!("quay.io/a/b:1@{d}"));
        assert_eq!(r.name(), "quay.io/a/b");
        assert_eq!((r.tag(), r.digest()), (Some("1"), Some(d.as_str())));
        assert!(parse("busybox").is_name_only());
    }

    #[test]
    fn refuses_what_parse_normalized_named_refuses() {
        for bad in [
            "",
            "Busybox",
            "quay.io/A/b",
            "a b",
            "a:b:c",
            "a@sha256:abc",
            &format!("a@sha256:{}", "A".repeat(64)),
            &format!("a@md5:{}", "a".repeat(32)),
            &"a".repeat(64),
            "-a.com/b",
            "a.com:/b",
            "a.com:x/b",
            "quay.io/a/",
            "quay.io//a",
            "a:-t",
            &format!("quay.io/{}", "a".repeat(250)),
        ] {
            assert!(
                DockerReference::parse_normalized(bad).is_err(),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn repo_digest_or_exact() {
        let by_tag = DockerReference::for_image("busybox", Some("1")).expect("image");
        let by_digest =
            DockerReference::for_image("docker.io/library/busybox", None).expect("image");
        let d = format!("sha256:{}", "b".repeat(64));
        // By tag: exactly this repository and tag.
        assert!(by_tag.matches_repo_digest_or_exact(&parse("docker.io/library/busybox:1")));
        assert!(by_tag.matches_repo_digest_or_exact(&parse("busybox:1")));
        assert!(!by_tag.matches_repo_digest_or_exact(&parse("busybox:2")));
        assert!(!by_tag.matches_repo_digest_or_exact(&parse("busybox")));
        assert!(!by_tag.matches_repo_digest_or_exact(&parse(&format!("busybox:1@{d}"))));
        assert!(!by_tag.matches_repo_digest_or_exact(&parse("quay.io/library/busybox:1")));
        // By digest: this repository, any tag or digest, never a bare name.
        assert!(by_digest.matches_repo_digest_or_exact(&parse("busybox:2")));
        assert!(by_digest.matches_repo_digest_or_exact(&parse(&format!("busybox@{d}"))));
        assert!(!by_digest.matches_repo_digest_or_exact(&parse("busybox")));
        assert!(!by_digest.matches_repo_digest_or_exact(&parse("other:2")));
    }

    #[test]
    fn a_mirrors_docker_hub_host_is_docker_io() {
        let r =
            DockerReference::for_image("registry-1.docker.io/busybox", Some("1")).expect("image");
        assert_eq!(r.to_string(), "docker.io/library/busybox:1");
        // The signature side is read as containers/image reads it: only index.docker.io is
        // rewritten there.
        assert_eq!(
            parse("registry-1.docker.io/busybox:1").to_string(),
            "registry-1.docker.io/busybox:1"
        );
        assert!(DockerReference::for_image("busybox:1", None).is_err());
        assert!(DockerReference::for_image("busybox", Some("-x")).is_err());
    }
}
