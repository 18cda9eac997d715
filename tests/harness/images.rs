//! Deterministic test images: valid OCI (and one Docker schema2) images whose layers are gzip'd
//! tars holding one file of pseudo-random bytes.
//!
//! Layer contents are derived from [`SEED`] and the layer's label (see `layers.rs`), so the
//! same spec gives the same digests on every run and machine.
//! Configs carry the right `architecture`, `os` and `rootfs.diff_ids`, which podman and
//! containerd verify when they unpack.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::layers::{gzip_stored, layer_tar};
use crate::util::sha256_digest;

/// Changing it changes every digest (and invalidates the cached template).
pub const SEED: &str = "wharf-e2e-seed-20240601";
const MIB: usize = 1 << 20;

pub const MT_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MT_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MT_OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MT_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MT_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const MT_DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// A content descriptor: media type, digest, size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

/// A single-platform image as pushed to the upstream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Image {
    pub repo: String,
    pub tag: String,
    /// Further tags of the same manifest in the same repository.
    pub other_tags: Vec<String>,
    pub manifest: Descriptor,
    /// The manifest bytes exactly as pushed.
    pub manifest_json: String,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Image {
    /// `repo:tag`
    pub fn reference(&self) -> String {
        format!("{}:{}", self.repo, self.tag)
    }

    /// `repo@sha256:...`
    pub fn by_digest(&self) -> String {
        format!("{}@{}", self.repo, self.manifest.digest)
    }

    /// Config and layers: every blob a pull needs.
    pub fn blobs(&self) -> Vec<&Descriptor> {
        std::iter::once(&self.config).chain(&self.layers).collect()
    }

    pub fn total_blob_bytes(&self) -> u64 {
        self.blobs().iter().map(|d| d.size).sum()
    }
}

/// A multi-platform image (OCI index) and its children.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IndexImage {
    pub repo: String,
    pub tag: String,
    pub manifest: Descriptor,
    pub manifest_json: String,
    pub children: Vec<Image>,
}

impl IndexImage {
    pub fn reference(&self) -> String {
        format!("{}:{}", self.repo, self.tag)
    }

    /// The child for `arch` (`amd64`, `arm64`).
    pub fn child(&self, arch: &str) -> &Image {
        self.children
            .iter()
            .find(|c| c.architecture == arch)
            .unwrap_or_else(|| panic!("no {arch} child in {}", self.reference()))
    }
}

/// Everything the upstream holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageSet {
    /// `os/oraclelinux:7-slim` (also tagged `7`): 3 x 1 MiB layers.
    pub oraclelinux: Image,
    /// `hello:latest`: the same image under a flat name.
    pub hello: Image,
    /// `java/serverjre:latest`: 5 layers of 20/40/60/80/100 MiB.
    pub serverjre: Image,
    /// `os/multiarch:latest`: OCI index of linux/amd64 and linux/arm64/v8.
    pub multiarch: IndexImage,
    /// `legacy/docker:v2`: a Docker schema2 image.
    pub legacy: Image,
}

/// What to build.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// Seeds the content: equal labels give equal images.
    pub label: String,
    pub layer_sizes: Vec<usize>,
    pub architecture: String,
    pub variant: Option<String>,
    /// Docker schema2 media types instead of OCI.
    pub docker: bool,
}

impl ImageSpec {
    pub fn oci(label: &str, layer_sizes_kib: &[usize]) -> ImageSpec {
        ImageSpec {
            label: label.into(),
            layer_sizes: layer_sizes_kib.iter().map(|k| k * 1024).collect(),
            architecture: "amd64".into(),
            variant: None,
            docker: false,
        }
    }

    pub fn arch(mut self, arch: &str, variant: Option<&str>) -> ImageSpec {
        self.architecture = arch.into();
        self.variant = variant.map(Into::into);
        self
    }

    pub fn docker(mut self) -> ImageSpec {
        self.docker = true;
        self
    }

    pub fn small() -> ImageSpec {
        ImageSpec::oci("small", &[1024, 1024, 1024])
    }

    pub fn large() -> ImageSpec {
        let mib: Vec<usize> = [20, 40, 60, 80, 100]
            .iter()
            .map(|m| m * MIB / 1024)
            .collect();
        ImageSpec::oci("large", &mib)
    }
}

/// Builds `spec` for `repo:tag`, handing every blob (layers, then config) to `put_blob` as it
/// is made, so at most one layer is in memory. The manifest is returned, not pushed.
pub fn build_image(
    spec: &ImageSpec,
    repo: &str,
    tag: &str,
    put_blob: &mut dyn FnMut(&Descriptor, Bytes),
) -> Image {
    let (mt_manifest, mt_config, mt_layer) = if spec.docker {
        (MT_DOCKER_MANIFEST, MT_DOCKER_CONFIG, MT_DOCKER_LAYER_GZIP)
    } else {
        (MT_OCI_MANIFEST, MT_OCI_CONFIG, MT_OCI_LAYER_GZIP)
    };
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for (i, size) in spec.layer_sizes.iter().enumerate() {
        let name = format!("{}-{}-layer{i}", spec.label, spec.architecture);
        let tar = layer_tar(&name, *size);
        diff_ids.push(format!("sha256:{}", hex::encode(Sha256::digest(&tar))));
        let gz = gzip_stored(&tar);
        drop(tar);
        let desc = Descriptor {
            media_type: mt_layer.into(),
            digest: sha256_digest(&gz),
            size: gz.len() as u64,
        };
        put_blob(&desc, Bytes::from(gz));
        layers.push(desc);
    }
    let mut config = json!({
        "architecture": spec.architecture,
        "os": "linux",
        "created": "2023-11-14T22:13:20Z",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/sh"],
            "Labels": {"wharf.e2e.image": spec.label},
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": (0..layers.len())
            .map(|i| json!({"created": "2023-11-14T22:13:20Z", "created_by": format!("wharf-e2e layer {i}")}))
            .collect::<Vec<_>>(),
    });
    if let Some(v) = &spec.variant {
        config["variant"] = json!(v);
    }
    let config_bytes = serde_json::to_vec(&config).expect("config json");
    let config_desc = Descriptor {
        media_type: mt_config.into(),
        digest: sha256_digest(&config_bytes),
        size: config_bytes.len() as u64,
    };
    put_blob(&config_desc, Bytes::from(config_bytes));
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": mt_manifest,
        "config": descriptor_json(&config_desc),
        "layers": layers.iter().map(descriptor_json).collect::<Vec<_>>(),
    });
    let manifest_json = serde_json::to_string(&manifest).expect("manifest json");
    Image {
        repo: repo.into(),
        tag: tag.into(),
        other_tags: Vec::new(),
        manifest: Descriptor {
            media_type: mt_manifest.into(),
            digest: sha256_digest(manifest_json.as_bytes()),
            size: manifest_json.len() as u64,
        },
        manifest_json,
        config: config_desc,
        layers,
        architecture: spec.architecture.clone(),
        variant: spec.variant.clone(),
    }
}

/// The OCI index over `children` (which must already be built).
pub fn build_index(repo: &str, tag: &str, children: Vec<Image>) -> IndexImage {
    let manifests: Vec<serde_json::Value> = children
        .iter()
        .map(|c| {
            let mut d = descriptor_json(&c.manifest);
            d["platform"] = json!({"architecture": c.architecture, "os": "linux"});
            if let Some(v) = &c.variant {
                d["platform"]["variant"] = json!(v);
            }
            d
        })
        .collect();
    let index = json!({"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": manifests});
    let manifest_json = serde_json::to_string(&index).expect("index json");
    IndexImage {
        repo: repo.into(),
        tag: tag.into(),
        manifest: Descriptor {
            media_type: MT_OCI_INDEX.into(),
            digest: sha256_digest(manifest_json.as_bytes()),
            size: manifest_json.len() as u64,
        },
        manifest_json,
        children,
    }
}

fn descriptor_json(d: &Descriptor) -> serde_json::Value {
    json!({"mediaType": d.media_type, "digest": d.digest, "size": d.size})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_is_deterministic_and_layers_unpack() {
        let spec = ImageSpec::oci("unit", &[3, 1]);
        let mut blobs = Vec::new();
        let a = build_image(&spec, "r", "t", &mut |d, b| blobs.push((d.clone(), b)));
        let b = build_image(&spec, "r", "t", &mut |_, _| {});
        assert_eq!(a.manifest, b.manifest);
        assert_eq!(blobs.len(), 3);
        for (d, bytes) in &blobs {
            assert_eq!(d.digest, sha256_digest(bytes));
        }
        let gz = &blobs[0].1;
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut raw)
            .expect("gunzip");
        let cfg: serde_json::Value = serde_json::from_slice(&blobs[2].1).expect("config");
        assert_eq!(cfg["rootfs"]["diff_ids"][0], sha256_digest(&raw));
        assert_eq!(&raw[257..262], b"ustar");
    }
}
