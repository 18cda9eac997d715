//! Pushing the test images to a (writable, plain-HTTP) upstream with the Distribution API:
//! monolithic `POST /v2/<name>/blobs/uploads/` + `PUT <location>&digest=`, then
//! `PUT /v2/<name>/manifests/<ref>`.

use bytes::Bytes;

use crate::http::Http;
use crate::images::{Descriptor, Image, ImageSet, ImageSpec, build_image, build_index};

/// A push target: base URL (`http://127.0.0.1:PORT`) and a client for it.
pub struct Pusher<'a> {
    pub base: String,
    pub http: &'a Http,
}

impl Pusher<'_> {
    /// Uploads one blob to `repo` unless the repository already has it.
    pub fn blob(&self, repo: &str, desc: &Descriptor, data: Bytes) {
        let head = self.http.head(
            &format!("{}/v2/{repo}/blobs/{}", self.base, desc.digest),
            &[],
        );
        if head.status == 200 {
            return;
        }
        let start = self.http.request(
            "POST",
            &format!("{}/v2/{repo}/blobs/uploads/", self.base),
            &[("Content-Length", "0")],
            Bytes::new(),
        );
        assert_eq!(
            start.status,
            202,
            "start upload to {repo}: {}",
            start.describe()
        );
        let location = start.header("Location").expect("upload Location header");
        let location = if location.starts_with('/') {
            format!("{}{location}", self.base)
        } else {
            location
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{sep}digest={}", desc.digest.replace(':', "%3A"));
        let len = data.len().to_string();
        let put = self.http.request(
            "PUT",
            &url,
            &[
                ("Content-Type", "application/octet-stream"),
                ("Content-Length", &len),
            ],
            data,
        );
        assert_eq!(
            put.status,
            201,
            "PUT blob {} to {repo}: {}",
            desc.digest,
            put.describe()
        );
    }

    /// Uploads `size` bytes of deterministic random content (from `label`) to `repo` as a
    /// layer blob; its descriptor.
    pub fn random_blob(&self, repo: &str, label: &str, size: usize) -> Descriptor {
        let data = crate::layers::random_content(label, size);
        let desc = Descriptor {
            media_type: crate::images::MT_OCI_LAYER_GZIP.into(),
            digest: crate::util::sha256_digest(&data),
            size: size as u64,
        };
        self.blob(repo, &desc, data);
        desc
    }

    /// Puts manifest bytes under `reference` (tag or digest) with its media type.
    pub fn manifest(&self, repo: &str, reference: &str, media_type: &str, bytes: &str) {
        let resp = self.http.request(
            "PUT",
            &format!("{}/v2/{repo}/manifests/{reference}", self.base),
            &[("Content-Type", media_type)],
            Bytes::copy_from_slice(bytes.as_bytes()),
        );
        assert_eq!(
            resp.status,
            201,
            "PUT manifest {repo}:{reference}: {}",
            resp.describe()
        );
    }

    /// Builds `spec` and pushes it as `repo:tag` (plus `other_tags`).
    pub fn image(&self, spec: &ImageSpec, repo: &str, tag: &str, other_tags: &[&str]) -> Image {
        let mut img = build_image(spec, repo, tag, &mut |d, b| self.blob(repo, d, b));
        for t in std::iter::once(tag).chain(other_tags.iter().copied()) {
            self.manifest(repo, t, &img.manifest.media_type, &img.manifest_json);
        }
        img.other_tags = other_tags.iter().map(|t| t.to_string()).collect();
        img
    }

    /// Builds and pushes every image of the [`ImageSet`].
    pub fn all(&self) -> ImageSet {
        let oraclelinux = self.image(&ImageSpec::small(), "os/oraclelinux", "7-slim", &["7"]);
        let hello = self.image(&ImageSpec::small(), "hello", "latest", &[]);
        assert_eq!(
            oraclelinux.manifest, hello.manifest,
            "hello is the same image"
        );
        let serverjre = self.image(&ImageSpec::large(), "java/serverjre", "latest", &[]);
        let repo = "os/multiarch";
        let mut children = Vec::new();
        for (arch, variant) in [("amd64", None), ("arm64", Some("v8"))] {
            let spec = ImageSpec::oci(&format!("multi-{arch}"), &[512, 512]).arch(arch, variant);
            let child = build_image(&spec, repo, "", &mut |d, b| self.blob(repo, d, b));
            self.manifest(
                repo,
                &child.manifest.digest,
                &child.manifest.media_type,
                &child.manifest_json,
            );
            children.push(child);
        }
        let multiarch = build_index(repo, "latest", children);
        self.manifest(
            repo,
            "latest",
            &multiarch.manifest.media_type,
            &multiarch.manifest_json,
        );
        let legacy = self.image(
            &ImageSpec::oci("legacy", &[256, 256]).docker(),
            "legacy/docker",
            "v2",
            &[],
        );
        ImageSet {
            oraclelinux,
            hello,
            serverjre,
            multiarch,
            legacy,
        }
    }
}
