//! What a pull reads from a manifest: an index's children and their platforms, or an image's
//! config and layers; and which platforms to pick.

use serde::Deserialize;
use wharf_oci::{Digest, media};

/// A manifest, as far as pulling it goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Manifest {
    /// An OCI index or Docker manifest list.
    Index(Vec<Child>),
    /// An image manifest: the blobs a pull fetches, and how many foreign layers it names (those
    /// live outside the registry, so no pull asks the registry for them).
    Image { blobs: Vec<Blob>, foreign: usize },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Child {
    pub digest: Digest,
    pub platform: Option<Platform>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub digest: Digest,
    /// From the descriptor; schema 1 manifests give none.
    pub size: Option<u64>,
    pub kind: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl Platform {
    /// `os/arch[/variant]`
    pub fn parse(s: &str) -> Result<Platform, String> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] | [os, arch, _] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
                os: os.to_ascii_lowercase(),
                architecture: normalize_arch(&arch.to_ascii_lowercase()).to_owned(),
                variant: parts.get(2).map(|v| v.to_ascii_lowercase()),
            }),
            _ => Err(format!(
                "--platform {s:?}: give os/arch[/variant], e.g. linux/arm64"
            )),
        }
    }

    /// This machine's platform, in OCI words (x86_64 is amd64, aarch64 is arm64).
    pub fn host() -> Platform {
        Platform {
            os: "linux".to_owned(),
            architecture: normalize_arch(std::env::consts::ARCH).to_owned(),
            variant: None,
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

fn normalize_arch(arch: &str) -> &str {
    match arch {
        "x86_64" | "x86-64" => "amd64",
        "aarch64" => "arm64",
        "x86" | "i386" | "i686" => "386",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    }
}

/// Which children of an index to pull.
pub enum Want {
    One(Platform),
    All,
}

/// The children a pull for `want` takes, or why none fits.
pub fn select<'a>(children: &'a [Child], want: &Want) -> Result<Vec<&'a Child>, String> {
    let Want::One(platform) = want else {
        return Ok(children.iter().collect());
    };
    match children
        .iter()
        .find(|c| c.platform.as_ref().is_some_and(|p| platform.accepts(p)))
    {
        Some(c) => Ok(vec![c]),
        None => {
            let have: Vec<String> = children
                .iter()
                .filter_map(|c| c.platform.as_ref().map(Platform::to_string))
                .collect();
            Err(format!(
                "no {platform} image in the index (it has {}); use --platform or --all-platforms",
                have.join(", ")
            ))
        }
    }
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

/// Reads a manifest served with Content-Type `content_type` (or, without one, its own
/// `mediaType` field).
pub fn parse(content_type: &str, body: &[u8]) -> Result<Manifest, String> {
    let raw: Raw =
        serde_json::from_slice(body).map_err(|e| format!("the manifest is not valid JSON: {e}"))?;
    let declared = media::essence(content_type);
    let media_type = if media::is_manifest_type(&declared) {
        declared
    } else {
        raw.media_type.clone().unwrap_or_default()
    };
    let digest = |s: &str| Digest::parse(s).map_err(|e| format!("in the manifest: {e}"));
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
                    digest: digest(&d.digest)?,
                    platform: d.platform.map(|p| Platform {
                        os: p.os,
                        architecture: p.architecture,
                        variant: p.variant.filter(|v| !v.is_empty()),
                    }),
                })
            })
            .collect::<Result<_, String>>()?;
        return Ok(Manifest::Index(children));
    }
    if let Some(fs_layers) = raw.fs_layers {
        let mut blobs: Vec<Blob> = Vec::new();
        for l in fs_layers {
            let d = digest(&l.blob_sum)?;
            if !blobs.iter().any(|b| b.digest == d) {
                blobs.push(Blob {
                    digest: d,
                    size: None,
                    kind: "layer",
                });
            }
        }
        return Ok(Manifest::Image { blobs, foreign: 0 });
    }
    let config = raw
        .config
        .ok_or("the manifest has neither manifests, config nor fsLayers")?;
    let mut blobs = vec![Blob {
        digest: digest(&config.digest)?,
        size: config.size,
        kind: "config",
    }];
    let mut foreign = 0;
    for l in raw.layers.unwrap_or_default() {
        let is_foreign = !l.urls.is_empty()
            || l.media_type
                .as_deref()
                .is_some_and(|m| m.contains("foreign") || m.contains("nondistributable"));
        if is_foreign {
            foreign += 1;
            continue;
        }
        blobs.push(Blob {
            digest: digest(&l.digest)?,
            size: l.size,
            kind: "layer",
        });
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
    fn reads_an_index_and_picks_a_platform() {
        let body = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_INDEX,
            "manifests": [
                {"digest": d('a'), "size": 1, "mediaType": media::OCI_MANIFEST,
                 "platform": {"os": "linux", "architecture": "amd64"}},
                {"digest": d('b'), "size": 1, "mediaType": media::OCI_MANIFEST,
                 "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
            ]
        })
        .to_string();
        let Manifest::Index(children) = parse("", body.as_bytes()).expect("index") else {
            panic!("not an index");
        };
        let pick = |w: Want| {
            select(&children, &w)
                .map(|v| v.iter().map(|c| c.digest.to_string()).collect::<Vec<_>>())
        };
        let p = |s: &str| Want::One(Platform::parse(s).expect("platform"));
        assert_eq!(pick(p("linux/amd64")), Ok(vec![d('a')]));
        assert_eq!(pick(p("linux/aarch64")), Ok(vec![d('b')]));
        assert_eq!(pick(p("linux/arm64/v8")), Ok(vec![d('b')]));
        assert_eq!(pick(Want::All), Ok(vec![d('a'), d('b')]));
        let e = pick(p("linux/s390x")).expect_err("none");
        assert!(e.contains("linux/amd64, linux/arm64/v8"), "{e}");
        assert!(Platform::parse("linux").is_err());
    }

    #[test]
    fn reads_an_image_skipping_foreign_layers() {
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
        let Manifest::Image { blobs, foreign } = m else {
            panic!("not an image");
        };
        assert_eq!(foreign, 1);
        let got: Vec<_> = blobs.iter().map(|b| (b.kind, b.size)).collect();
        assert_eq!(got, [("config", Some(10)), ("layer", Some(100))]);
        assert!(parse(media::OCI_MANIFEST, b"{}").is_err());
        assert!(parse(media::OCI_MANIFEST, b"not json").is_err());
    }
}
