//! Turns a request path and query into an [`Resource`] and the upstream it is meant for.
//!
//! The path is never percent-decoded: no repository name, tag or digest may contain `%`, so an
//! encoded path simply fails validation. The name is parsed from the end of the path, because a
//! repository component may itself be `blobs` or `manifests`.
//!
//! A manifest reference that is neither a digest nor a valid tag names no manifest: it is
//! [`RouteError::NotATag`], answered 404 `MANIFEST_UNKNOWN` without asking the upstream (the
//! spec's conformance suite requires 404 for HEAD and GET of `.INVALID_MANIFEST_NAME`). A
//! reference with a `:` that is not a valid digest stays a malformed request (400
//! `DIGEST_INVALID`).

use wharf_oci::{Digest, NameError, Reference, RepositoryName};

/// What a request asks for, before the upstream is chosen. Its metrics label is
/// [`Resource::label`], a `wharf_metrics::Endpoint`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    /// `GET /v2/`
    Ping,
    /// `GET /v2/_catalog`: the repositories the caller may pull (catalog.rs).
    Catalog,
    Manifest {
        name: RepositoryName,
        reference: Reference,
    },
    Blob {
        name: RepositoryName,
        digest: Digest,
    },
    Tags {
        name: RepositoryName,
    },
    Referrers {
        name: RepositoryName,
        digest: Digest,
    },
    /// `/v2/<name>/blobs/uploads/<session>`: `session` is empty when an upload starts (`POST
    /// .../uploads/`), else the id wharf gave it (hosted/upload.rs).
    Uploads {
        name: RepositoryName,
        session: String,
    },
    /// `GET /extensions/v2/<name>/signatures/<digest>`: the simple-signing signatures of a
    /// manifest, the API extension containers/image reads from a registry whose `/v2/` answers
    /// `X-Registry-Supports-Signatures: 1` (signatures.rs).
    Signatures {
        name: RepositoryName,
        digest: Digest,
    },
}

impl Resource {
    pub fn name(&self) -> Option<&RepositoryName> {
        match self {
            Resource::Ping | Resource::Catalog => None,
            Resource::Manifest { name, .. }
            | Resource::Blob { name, .. }
            | Resource::Tags { name }
            | Resource::Referrers { name, .. }
            | Resource::Uploads { name, .. }
            | Resource::Signatures { name, .. } => Some(name),
        }
    }

    /// The `endpoint` label of this request's metrics: the label strings are `wharf-metrics`'s.
    pub fn label(&self) -> wharf_metrics::Endpoint {
        match self {
            Resource::Ping => wharf_metrics::Endpoint::Ping,
            Resource::Catalog => wharf_metrics::Endpoint::Catalog,
            Resource::Manifest { .. } => wharf_metrics::Endpoint::Manifest,
            Resource::Blob { .. } => wharf_metrics::Endpoint::Blob,
            Resource::Tags { .. } => wharf_metrics::Endpoint::Tags,
            Resource::Referrers { .. } => wharf_metrics::Endpoint::Referrers,
            Resource::Uploads { .. } => wharf_metrics::Endpoint::Uploads,
            Resource::Signatures { .. } => wharf_metrics::Endpoint::Signatures,
        }
    }
}

/// Why a path is not an API request wharf can route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// Not under `/v2/` at all, or an unknown endpoint shape.
    NotFound,
    Name(NameError),
    /// A manifest reference that is neither a digest nor a tag: no manifest has that name.
    NotATag(String),
}

impl From<NameError> for RouteError {
    fn from(e: NameError) -> Self {
        RouteError::Name(e)
    }
}

/// A parsed request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedPath {
    /// The segment before `/v2/` in `/<mount>/v2/...` (containerd hosts with a path), if any.
    pub mount: Option<String>,
    pub resource: Resource,
    /// The path as the client sent it, up to and including the repository name:
    /// what `Link` headers must be rewritten to.
    pub client_base: String,
}

/// The longest path wharf looks at; longer ones cannot hold a valid name and reference.
pub const MAX_PATH_LEN: usize = 1024;

pub fn parse_path(path: &str) -> Result<ParsedPath, RouteError> {
    if path.len() > MAX_PATH_LEN {
        return Err(RouteError::NotFound);
    }
    if let Some(rest) = path.strip_prefix(SIGNATURES_ROOT) {
        return parse_signatures(path, rest);
    }
    let (mount, rest, api_root) = if let Some(rest) = path.strip_prefix("/v2/") {
        (None, rest, "/v2/".len())
    } else if path == "/v2" {
        (None, "", path.len())
    } else {
        // /<mount>/v2/...
        let after = path.strip_prefix('/').ok_or(RouteError::NotFound)?;
        let (mount, tail) = after.split_once('/').ok_or(RouteError::NotFound)?;
        let rest = if tail == "v2" {
            ""
        } else {
            tail.strip_prefix("v2/").ok_or(RouteError::NotFound)?
        };
        if mount.is_empty() {
            return Err(RouteError::NotFound);
        }
        (Some(mount.to_owned()), rest, path.len() - rest.len())
    };
    if rest.is_empty() {
        return Ok(ParsedPath {
            mount,
            resource: Resource::Ping,
            client_base: path.to_owned(),
        });
    }
    if rest == "_catalog" && mount.is_none() {
        return Ok(ParsedPath {
            mount,
            resource: Resource::Catalog,
            client_base: path.to_owned(),
        });
    }

    let segs: Vec<&str> = rest.split('/').collect();
    let n = segs.len();
    let name_of = |k: usize| -> Result<(RepositoryName, String), RouteError> {
        // The name is the first `k` segments.
        if k == 0 {
            return Err(RouteError::NotFound);
        }
        let name = segs[..k].join("/");
        let base = format!("{}{}", &path[..api_root], name);
        Ok((RepositoryName::parse(&name)?, base))
    };
    let (resource, client_base) = match segs.as_slice() {
        [.., "tags", "list"] => {
            let (name, base) = name_of(n - 2)?;
            (Resource::Tags { name }, base)
        }
        [.., "blobs", "uploads", session] => {
            if !is_session_id(session) {
                return Err(RouteError::NotFound);
            }
            let (name, base) = name_of(n - 3)?;
            let session = (*session).to_owned();
            (Resource::Uploads { name, session }, base)
        }
        [.., "manifests", r] => {
            let (name, base) = name_of(n - 2)?;
            let reference = Reference::parse(r).map_err(|e| match e {
                NameError::InvalidTag(t) => RouteError::NotATag(t),
                e => RouteError::Name(e),
            })?;
            (Resource::Manifest { name, reference }, base)
        }
        [.., "blobs", d] => {
            let (name, base) = name_of(n - 2)?;
            (
                Resource::Blob {
                    name,
                    digest: Digest::parse(d).map_err(NameError::from)?,
                },
                base,
            )
        }
        [.., "referrers", d] => {
            let (name, base) = name_of(n - 2)?;
            (
                Resource::Referrers {
                    name,
                    digest: Digest::parse(d).map_err(NameError::from)?,
                },
                base,
            )
        }
        _ => return Err(RouteError::NotFound),
    };
    Ok(ParsedPath {
        mount,
        resource,
        client_base,
    })
}

/// An upload session id as wharf makes them (hex), or none: at most 64 letters, digits, `-`, `_`.
fn is_session_id(s: &str) -> bool {
    s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Where containers/image asks for signatures (`extensionsSignaturePath` in its
/// `docker/docker_client.go`: `/extensions/v2/%s/signatures/%s`).
const SIGNATURES_ROOT: &str = "/extensions/v2/";

/// `<name>/signatures/<digest>`, after [`SIGNATURES_ROOT`].
fn parse_signatures(path: &str, rest: &str) -> Result<ParsedPath, RouteError> {
    let (name, digest) = rest.rsplit_once('/').ok_or(RouteError::NotFound)?;
    let name = name
        .strip_suffix("/signatures")
        .ok_or(RouteError::NotFound)?;
    let resource = Resource::Signatures {
        name: RepositoryName::parse(name)?,
        digest: Digest::parse(digest).map_err(NameError::from)?,
    };
    Ok(ParsedPath {
        mount: None,
        resource,
        client_base: path[..SIGNATURES_ROOT.len() + name.len()].to_owned(),
    })
}

/// The value of query parameter `key`, decoded.
pub fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn name(s: &str) -> RepositoryName {
        RepositoryName::parse(s).unwrap()
    }

    #[test]
    fn parses_the_endpoints() {
        assert_eq!(parse_path("/v2/").unwrap().resource, Resource::Ping);
        assert_eq!(parse_path("/v2").unwrap().resource, Resource::Ping);
        assert_eq!(
            parse_path("/v2/_catalog").unwrap().resource,
            Resource::Catalog
        );
        assert!(parse_path("/oracle/v2/_catalog").is_err());
        let p = parse_path("/v2/oracle/os/oraclelinux/manifests/7-slim").unwrap();
        assert_eq!(
            p.resource,
            Resource::Manifest {
                name: name("oracle/os/oraclelinux"),
                reference: Reference::Tag("7-slim".into())
            }
        );
        assert_eq!(p.client_base, "/v2/oracle/os/oraclelinux");
        let p = parse_path("/v2/a/blobs/manifests/tags/list").unwrap();
        assert_eq!(
            p.resource,
            Resource::Tags {
                name: name("a/blobs/manifests")
            }
        );
        let d = format!("sha256:{}", "a".repeat(64));
        let p = parse_path(&format!("/v2/x/blobs/blobs/{d}")).unwrap();
        assert_eq!(
            p.resource,
            Resource::Blob {
                name: name("x/blobs"),
                digest: Digest::parse(&d).unwrap()
            }
        );
    }

    #[test]
    fn signatures_are_under_extensions() {
        let d = format!("sha256:{}", "b".repeat(64));
        let p = parse_path(&format!(
            "/extensions/v2/oracle/os/oraclelinux/signatures/{d}"
        ))
        .unwrap();
        assert_eq!(
            p.resource,
            Resource::Signatures {
                name: name("oracle/os/oraclelinux"),
                digest: Digest::parse(&d).unwrap()
            }
        );
        assert_eq!(p.mount, None);
        assert_eq!(p.resource.label().as_str(), "signatures");
        for bad in [
            "/extensions/v2/a/signatures/".to_owned(),
            format!("/extensions/v2/signatures/{d}"),
            format!("/extensions/v2/a/manifests/{d}"),
            "/extensions/v2/a/signatures/sha256:xyz".to_owned(),
            format!("/extensions/v2/../a/signatures/{d}"),
        ] {
            assert!(parse_path(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn labels_are_the_metrics_vocabulary() {
        let label = |path: &str| parse_path(path).unwrap().resource.label().as_str();
        assert_eq!(label("/v2/"), "ping");
        assert_eq!(label("/v2/a/manifests/1"), "manifest");
        assert_eq!(label("/v2/a/tags/list"), "tags");
        assert_eq!(label("/v2/a/blobs/uploads/x"), "upload");
        assert_eq!(
            parse_path("/v2/team/a/blobs/uploads/").unwrap().resource,
            Resource::Uploads {
                name: name("team/a"),
                session: String::new()
            }
        );
        assert_eq!(
            parse_path("/v2/a/blobs/uploads/0f-a").unwrap().resource,
            Resource::Uploads {
                name: name("a"),
                session: "0f-a".into()
            }
        );
        assert!(parse_path("/v2/a/blobs/uploads/x.y").is_err());
    }

    #[test]
    fn mounts_before_v2() {
        let p = parse_path("/oracle/v2/os/oraclelinux/manifests/7-slim").unwrap();
        assert_eq!(p.mount.as_deref(), Some("oracle"));
        assert_eq!(p.client_base, "/oracle/v2/os/oraclelinux");
        assert_eq!(parse_path("/oracle/v2/").unwrap().resource, Resource::Ping);
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(parse_path("/"), Err(RouteError::NotFound));
        assert_eq!(parse_path("/v2/x/unknown/y"), Err(RouteError::NotFound));
        assert!(matches!(
            parse_path("/v2/Bad..Name/manifests/x"),
            Err(RouteError::Name(NameError::InvalidName(_)))
        ));
        assert!(matches!(
            parse_path("/v2/a/blobs/sha256:xyz"),
            Err(RouteError::Name(NameError::InvalidDigest(_)))
        ));
        assert!(matches!(
            parse_path("/v2/../../etc/passwd/manifests/x"),
            Err(RouteError::Name(_))
        ));
        assert!(matches!(
            parse_path("/v2/%2e%2e/manifests/x"),
            Err(RouteError::Name(_))
        ));
        assert!(parse_path("/v2/manifests/x").is_err());
    }

    #[test]
    fn a_reference_that_is_no_tag_names_no_manifest() {
        for r in [".INVALID_MANIFEST_NAME", "-x", &"a".repeat(129)] {
            assert_eq!(
                parse_path(&format!("/v2/a/manifests/{r}")),
                Err(RouteError::NotATag(r.to_owned())),
                "{r}"
            );
        }
        // A name that is wrong is still said first; a digest that is wrong is still malformed.
        assert!(matches!(
            parse_path("/v2/A/manifests/.x"),
            Err(RouteError::Name(NameError::InvalidName(_)))
        ));
        assert!(matches!(
            parse_path("/v2/a/manifests/sha256:totallywrong"),
            Err(RouteError::Name(NameError::InvalidDigest(_)))
        ));
    }

    #[test]
    fn query_params() {
        assert_eq!(
            query_param(Some("ns=docker.io&x=1"), "ns").as_deref(),
            Some("docker.io")
        );
        assert_eq!(query_param(Some("n=1"), "ns"), None);
        assert_eq!(query_param(None, "ns"), None);
    }

    proptest! {
        #[test]
        fn routed_names_never_escape(path in "(/[a-zA-Z0-9._%:-]{0,12}){1,8}/?") {
            if let Ok(p) = parse_path(&path)
                && let Some(n) = p.resource.name() {
                    for c in n.components() {
                        prop_assert!(c != ".." && c != "." && !c.is_empty() && !c.contains('%'));
                    }
                }
        }
    }
}
