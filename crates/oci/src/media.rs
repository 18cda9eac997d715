//! Manifest media types and `Accept` negotiation.
//!
//! containers/image sends six `Accept:` header lines, containerd one comma list ending in `*/*`;
//! both shapes are merged into one [`AcceptSet`]. `q=` weights are ignored, as distribution does.

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";

/// What wharf asks every upstream for, on every manifest request, whatever the client sent:
/// a narrower set makes Docker-Hub-like registries answer with a different document.
pub const UPSTREAM_MANIFEST_ACCEPT: [&str; 4] = [
    OCI_INDEX,
    OCI_MANIFEST,
    DOCKER_MANIFEST_LIST,
    DOCKER_MANIFEST,
];

/// True for the media types wharf stores as manifests.
pub fn is_manifest_type(media_type: &str) -> bool {
    matches!(
        media_type,
        OCI_MANIFEST
            | OCI_INDEX
            | DOCKER_MANIFEST
            | DOCKER_MANIFEST_LIST
            | DOCKER_SCHEMA1_SIGNED
            | DOCKER_SCHEMA1
    )
}

/// The media type without parameters, trimmed and lowercased.
pub fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// The media types a client accepts, merged over all its `Accept` header lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AcceptSet {
    types: Vec<String>,
    any: bool,
}

impl AcceptSet {
    /// Parses every `Accept` header value given. An empty input accepts anything.
    pub fn parse<'a>(values: impl IntoIterator<Item = &'a str>) -> Self {
        let mut set = AcceptSet::default();
        for value in values {
            for item in value.split(',') {
                let t = essence(item);
                match t.as_str() {
                    "" => {}
                    "*/*" | "application/*" => set.any = true,
                    _ if !set.types.contains(&t) => set.types.push(t),
                    _ => {}
                }
            }
        }
        if set.types.is_empty() {
            set.any = true;
        }
        set
    }

    /// Whether a stored manifest of `media_type` may be served to this client.
    ///
    /// distribution refuses an OCI manifest to a client that lists types but not the OCI ones
    /// (`MANIFEST_UNKNOWN`); wharf keeps that rule for OCI types and serves Docker types to anyone,
    /// since old clients that omit them still parse them.
    pub fn allows(&self, media_type: &str) -> bool {
        if self.any || self.types.iter().any(|t| t == media_type) {
            return true;
        }
        !matches!(media_type, OCI_MANIFEST | OCI_INDEX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn podman_six_lines() {
        let lines = [
            OCI_MANIFEST,
            DOCKER_MANIFEST,
            DOCKER_SCHEMA1_SIGNED,
            DOCKER_SCHEMA1,
            DOCKER_MANIFEST_LIST,
            OCI_INDEX,
        ];
        let a = AcceptSet::parse(lines);
        assert!(a.allows(OCI_INDEX) && a.allows(OCI_MANIFEST) && a.allows(DOCKER_MANIFEST));
    }

    #[test]
    fn containerd_comma_list_with_any() {
        let a = AcceptSet::parse([
            "application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json, */*",
        ]);
        assert!(a.allows(OCI_INDEX));
    }

    #[test]
    fn docker_only_client_does_not_get_oci() {
        let a = AcceptSet::parse([
            DOCKER_MANIFEST,
            "application/vnd.docker.distribution.manifest.list.v2+json;q=0.9",
        ]);
        assert!(!a.allows(OCI_INDEX));
        assert!(a.allows(DOCKER_MANIFEST_LIST));
    }

    #[test]
    fn no_accept_means_anything() {
        assert!(AcceptSet::parse([]).allows(OCI_MANIFEST));
        assert!(AcceptSet::parse([""]).allows(OCI_MANIFEST));
    }

    proptest! {
        #[test]
        fn never_panics_and_listed_types_are_allowed(v in proptest::collection::vec("\\PC{0,60}", 0..6)) {
            let a = AcceptSet::parse(v.iter().map(String::as_str));
            for line in &v {
                for item in line.split(',') {
                    let t = essence(item);
                    if !t.is_empty() { prop_assert!(a.allows(&t)); }
                }
            }
        }
    }
}
