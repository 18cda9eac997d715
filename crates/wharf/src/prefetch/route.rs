//! Which upstream serves an image reference (`wharf_oci::ImageReference`), and the repository
//! path wharf serves it under: `<upstream path prefix>/<repo>`, the same path a podman mirror
//! location from `wharf client-config podman` produces, so a pull after a prefetch finds the
//! same tag record and the same blobs.

use wharf_oci::ImageReference;

use crate::config::{Config, UpstreamConfig};
use crate::mirror;

/// Where on wharf an image lives.
pub(super) struct Route<'a> {
    pub upstream: &'a UpstreamConfig,
    /// The repository path on wharf: `/v2/<repo>/manifests/...`.
    pub repo: String,
}

/// The upstream serving `r` (by registry host: a prefix or the URL's host; with no registry,
/// the default upstream, as wharf routes bare names) and the path wharf serves it under.
pub(super) fn route<'a>(config: &'a Config, r: &ImageReference) -> Result<Route<'a>, String> {
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
        Some(p) => format!("{p}/{}", r.repository),
        None if upstream.default => r.repository.to_string(),
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
    fn routes_by_the_configured_prefixes() {
        let c = Config::embedded().expect("embedded");
        let path = |s: &str| {
            route(&c, &ImageReference::parse(s).expect("parse"))
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
