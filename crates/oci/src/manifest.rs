//! What a manifest points at, read from its JSON bytes: an index's child manifests with their
//! platforms, or an image's config and layers. Whoever walks an image (a prefetch pulling it,
//! `cache rm --image` dropping it) reads it through [`parse`].
//!
//! Only the fields a walk needs are read; anything else in the document is ignored, as clients
//! ignore it.

use std::fmt;

use serde::Deserialize;

use crate::digest::Digest;
use crate::media;

/// A manifest, as far as walking it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manifest {
    /// An OCI index or Docker manifest list.
    Index(Vec<Child>),
    /// An image manifest: the blobs a pull fetches (config first, then the layers in order, each
    /// digest once for schema 1), and the foreign layers it names: those live outside the
    /// registry, so no pull asks the registry for them.
    Image {
        blobs: Vec<Blob>,
        foreign: Vec<Blob>,
    },
}

impl Manifest {
    /// Every digest the manifest names: child manifests, config, layers, foreign layers.
    pub fn digests(&self) -> Vec<&Digest> {
        match self {
            Manifest::Index(children) => children.iter().map(|c| &c.digest).collect(),
            Manifest::Image { blobs, foreign } => {
                blobs.iter().chain(foreign).map(|b| &b.digest).collect()
            }
        }
    }
}

/// A child manifest of an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Child {
    pub digest: Digest,
    pub platform: Option<Platform>,
}

/// A blob an image manifest names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub digest: Digest,
    /// From the descriptor; schema 1 manifests give none.
    pub size: Option<u64>,
    pub kind: BlobKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobKind {
    Config,
    Layer,
}

impl BlobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BlobKind::Config => "config",
            BlobKind::Layer => "layer",
        }
    }
}

impl fmt::Display for BlobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, not `write_str`: the prefetch report aligns kinds with `{:<6}`.
        f.pad(self.as_str())
    }
}

/// `os/architecture[/variant]`, in OCI words (`amd64`, `arm64`, not `x86_64`, `aarch64`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

/// Why a string is not `os/arch[/variant]`; the message quotes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?}: give os/arch[/variant], e.g. linux/arm64")]
pub struct PlatformError(String);

impl Platform {
    /// `os/arch[/variant]`, any case; architectures by other names (`x86_64`, `aarch64`) are
    /// read as their OCI names.
    pub fn parse(s: &str) -> Result<Platform, PlatformError> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] | [os, arch, _] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
                os: os.to_ascii_lowercase(),
                architecture: normalize_arch(&arch.to_ascii_lowercase()).to_owned(),
                variant: parts.get(2).map(|v| v.to_ascii_lowercase()),
            }),
            _ => Err(PlatformError(s.chars().take(80).collect())),
        }
    }

    /// Whether an index entry's platform satisfies this wanted one. With no variant wanted, any
    /// variant does; arm64 without a variant is v8, as containerd and podman read it.
    pub fn accepts(&self, p: &Platform) -> bool {
        let default_variant = |arch: &str| match arch {
            "arm64" => Some("v8"),
            _ => None,
        };
        self.os == p.os
            && self.architecture == p.architecture
            && match &self.variant {
                None => true,
                Some(v) => {
                    p.variant.as_deref().or(default_variant(&p.architecture)) == Some(v.as_str())
                }
            }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// The OCI name of an architecture known by another (Rust's `std::env::consts::ARCH`, `uname`).
pub fn normalize_arch(arch: &str) -> &str {
    match arch {
        "x86_64" | "x86-64" => "amd64",
        "aarch64" => "arm64",
        "x86" | "i386" | "i686" => "386",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    }
}

/// Why a manifest cannot be walked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("the manifest is not valid JSON: {0}")]
    Json(String),
    #[error("in the manifest: {0}")]
    Digest(#[from] crate::digest::DigestError),
    #[error("the manifest has neither manifests, config nor fsLayers")]
    Empty,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<RawDescriptor>>,
    #[serde(default)]
    config: Option<RawDescriptor>,
    #[serde(default)]
    layers: Option<Vec<RawDescriptor>>,
    /// Docker schema 1.
    #[serde(default)]
    fs_layers: Option<Vec<RawFsLayer>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    digest: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    urls: Vec<String>,
    #[serde(default)]
    platform: Option<RawPlatform>,
}

impl RawDescriptor {
    /// Foreign (non-distributable) layers name URLs outside the registry, or say so in their
    /// media type (Docker's `foreign`, OCI's `nondistributable`).
    fn is_foreign(&self) -> bool {
        !self.urls.is_empty()
            || self
                .media_type
                .as_deref()
                .is_some_and(|m| m.contains("foreign") || m.contains("nondistributable"))
    }
}

#[derive(Deserialize)]
struct RawPlatform {
    os: String,
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawFsLayer {
    blob_sum: String,
}

/// Reads a manifest served with Content-Type `content_type` (or, without a manifest type there,
/// by its own `mediaType` field, or by its shape).
pub fn parse(content_type: &str, body: &[u8]) -> Result<Manifest, ManifestError> {
    let raw: Raw = serde_json::from_slice(body).map_err(|e| ManifestError::Json(e.to_string()))?;
    let declared = media::essence(content_type);
    let media_type = if media::is_manifest_type(&declared) {
        declared
    } else {
        raw.media_type.clone().unwrap_or_default()
    };
    let is_index = media_type == media::OCI_INDEX
        || media_type == media::DOCKER_MANIFEST_LIST
        || (media_type.is_empty() && raw.manifests.is_some());
    if is_index {
        let children = raw
            .manifests
            .unwrap_or_default()
            .into_iter()
            .map(|d| {
                Ok(Child {
                    digest: Digest::parse(&d.digest)?,
                    platform: d.platform.map(|p| Platform {
                        os: p.os,
                        architecture: p.architecture,
                        variant: p.variant.filter(|v| !v.is_empty()),
                    }),
                })
            })
            .collect::<Result<_, ManifestError>>()?;
        return Ok(Manifest::Index(children));
    }
    if let Some(fs_layers) = raw.fs_layers {
        let mut blobs: Vec<Blob> = Vec::new();
        for l in fs_layers {
            let digest = Digest::parse(&l.blob_sum)?;
            // Schema 1 repeats the empty layer's digest for every history entry.
            if !blobs.iter().any(|b| b.digest == digest) {
                blobs.push(Blob {
                    digest,
                    size: None,
                    kind: BlobKind::Layer,
                });
            }
        }
        return Ok(Manifest::Image {
            blobs,
            foreign: Vec::new(),
        });
    }
    let config = raw.config.ok_or(ManifestError::Empty)?;
    let mut blobs = vec![Blob {
        digest: Digest::parse(&config.digest)?,
        size: config.size,
        kind: BlobKind::Config,
    }];
    let mut foreign = Vec::new();
    for l in raw.layers.unwrap_or_default() {
        let blob = Blob {
            digest: Digest::parse(&l.digest)?,
            size: l.size,
            kind: BlobKind::Layer,
        };
        if l.is_foreign() {
            foreign.push(blob);
        } else {
            blobs.push(blob);
        }
    }
    Ok(Manifest::Image { blobs, foreign })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn reads_an_index_with_platforms() {
        let body = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_INDEX,
            "manifests": [
                {"digest": d('a'), "size": 1, "mediaType": media::OCI_MANIFEST,
                 "platform": {"os": "linux", "architecture": "amd64"}},
                {"digest": d('b'), "size": 1, "mediaType": media::OCI_MANIFEST,
                 "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
                {"digest": d('c'), "size": 1, "mediaType": media::OCI_MANIFEST},
            ]
        })
        .to_string();
        let m = parse("", body.as_bytes()).expect("index");
        let Manifest::Index(children) = &m else {
            panic!("not an index");
        };
        let platforms: Vec<_> = children
            .iter()
            .map(|c| c.platform.as_ref().map(Platform::to_string))
            .collect();
        assert_eq!(
            platforms,
            [
                Some("linux/amd64".to_owned()),
                Some("linux/arm64/v8".to_owned()),
                None
            ]
        );
        let digests: Vec<String> = m.digests().iter().map(|d| d.to_string()).collect();
        assert_eq!(digests, [d('a'), d('b'), d('c')]);
    }

    #[test]
    fn reads_an_image_keeping_foreign_layers_apart() {
        let body = serde_json::json!({
            "schemaVersion": 2,
            "config": {"digest": d('c'), "size": 10, "mediaType": "application/vnd.oci.image.config.v1+json"},
            "layers": [
                {"digest": d('1'), "size": 100, "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip"},
                {"digest": d('2'), "size": 200, "mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                 "urls": ["https://example.com/layer"]},
            ]
        })
        .to_string();
        let m = parse(media::OCI_MANIFEST, body.as_bytes()).expect("image");
        let Manifest::Image { blobs, foreign } = &m else {
            panic!("not an image");
        };
        assert_eq!(foreign.len(), 1);
        let got: Vec<_> = blobs.iter().map(|b| (b.kind.as_str(), b.size)).collect();
        assert_eq!(got, [("config", Some(10)), ("layer", Some(100))]);
        assert_eq!(m.digests().len(), 3);
        assert!(parse(media::OCI_MANIFEST, b"{}").is_err());
        assert!(parse(media::OCI_MANIFEST, b"not json").is_err());
    }

    #[test]
    fn reads_schema1_layers_once() {
        let body = serde_json::json!({
            "schemaVersion": 1,
            "fsLayers": [{"blobSum": d('1')}, {"blobSum": d('2')}, {"blobSum": d('1')}],
        })
        .to_string();
        let m = parse(media::DOCKER_SCHEMA1_SIGNED, body.as_bytes()).expect("schema 1");
        assert_eq!(m.digests().len(), 2);
    }

    #[test]
    fn a_bad_digest_is_an_error() {
        let body = serde_json::json!({"config": {"digest": "sha256:zz"}, "layers": []}).to_string();
        let e = parse(media::OCI_MANIFEST, body.as_bytes()).expect_err("bad digest");
        assert!(e.to_string().starts_with("in the manifest: "), "{e}");
    }

    #[test]
    fn platforms() {
        let p = |s: &str| Platform::parse(s).expect("platform");
        assert_eq!(p("Linux/x86_64").to_string(), "linux/amd64");
        assert!(p("linux/arm64/v8").accepts(&p("linux/arm64")));
        assert!(p("linux/arm64").accepts(&p("linux/arm64/v8")));
        assert!(!p("linux/arm/v7").accepts(&p("linux/arm/v6")));
        assert!(Platform::parse("linux").is_err());
        assert!(Platform::parse("/amd64").is_err());
    }
}
