//! What the fake serves as a registry would: manifests by tag and by digest, blobs by digest,
//! `GET` and `HEAD`, `Range: bytes=N-` on blobs, `Docker-Content-Digest` on everything.

use std::collections::HashMap;

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode};

use crate::body::{Body, empty, full};
use crate::fault::{Fault, blob_body};
use crate::media::{OCI_EMPTY, OCI_LAYER_GZIP, OCI_MANIFEST};
use crate::{Seen, sha256_digest};

/// The config blob of the images the fake builds: the OCI empty descriptor's content.
const EMPTY_CONFIG: &[u8] = b"{}";

#[derive(Debug, Clone)]
struct Manifest {
    bytes: Bytes,
    media_type: String,
    digest: String,
}

/// Manifests and blobs, per repository.
#[derive(Debug, Clone, Default)]
pub(crate) struct Content {
    /// `(repo, tag or digest)`: a manifest is filed under both.
    manifests: HashMap<(String, String), Manifest>,
    /// `(repo, digest)`.
    blobs: HashMap<(String, String), Bytes>,
}

impl Content {
    /// Files `bytes` under `tag` (moving the tag if it was elsewhere) and under its digest.
    pub(crate) fn put_manifest(
        &mut self,
        repo: &str,
        tag: &str,
        bytes: Bytes,
        media_type: &str,
    ) -> String {
        let digest = sha256_digest(&bytes);
        let m = Manifest {
            bytes,
            media_type: media_type.to_owned(),
            digest: digest.clone(),
        };
        self.manifests
            .insert((repo.to_owned(), digest.clone()), m.clone());
        self.manifests.insert((repo.to_owned(), tag.to_owned()), m);
        digest
    }

    pub(crate) fn put_blob(&mut self, repo: &str, bytes: Bytes) -> String {
        let digest = sha256_digest(&bytes);
        self.blobs.insert((repo.to_owned(), digest.clone()), bytes);
        digest
    }

    /// An OCI image: an empty config and `layers`, under `repo:tag`.
    pub(crate) fn put_image(&mut self, repo: &str, tag: &str, layers: &[Bytes]) -> String {
        let config = self.put_blob(repo, Bytes::from_static(EMPTY_CONFIG));
        let layers: Vec<_> = layers
            .iter()
            .map(|layer| {
                let digest = self.put_blob(repo, layer.clone());
                serde_json::json!({"mediaType": OCI_LAYER_GZIP, "digest": digest, "size": layer.len()})
            })
            .collect();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_EMPTY, "digest": config, "size": EMPTY_CONFIG.len()},
            "layers": layers,
        });
        self.put_manifest(repo, tag, Bytes::from(manifest.to_string()), OCI_MANIFEST)
    }

    pub(crate) fn manifest_digest(&self, repo: &str, reference: &str) -> Option<String> {
        let key = (repo.to_owned(), reference.to_owned());
        self.manifests.get(&key).map(|m| m.digest.clone())
    }

    /// The answer for what this content holds; `None` for anything else (the fallback's).
    /// `next_fault` is called only for a blob `GET`.
    pub(crate) fn answer(
        &self,
        seen: &Seen,
        ranges: bool,
        next_fault: impl FnOnce() -> Fault,
        released: tokio::sync::watch::Receiver<bool>,
    ) -> Option<Response<Body>> {
        let head = seen.method == Method::HEAD;
        if !head && seen.method != Method::GET {
            return None;
        }
        let rest = seen.path.strip_prefix("/v2/")?;
        if let Some((repo, reference)) = rest.rsplit_once("/manifests/") {
            let m = self
                .manifests
                .get(&(repo.to_owned(), reference.to_owned()))?;
            let mut resp = bytes_response(StatusCode::OK, &m.media_type, m.bytes.clone(), head);
            set(&mut resp, "docker-content-digest", &m.digest);
            return Some(resp);
        }
        let (repo, digest) = rest.rsplit_once("/blobs/")?;
        let blob = self
            .blobs
            .get(&(repo.to_owned(), digest.to_owned()))?
            .clone();
        let size = blob.len() as u64;
        let start = match seen.header("range").filter(|_| ranges && !head) {
            None => 0,
            Some(r) => match r.strip_prefix("bytes=").and_then(|r| r.strip_suffix('-')) {
                Some(n) => match n.parse::<u64>() {
                    Ok(n) if n < size => n,
                    _ => return Some(oci_error(StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UNKNOWN")),
                },
                // The fake only resumes; any other range is not something wharf sends.
                None => return Some(oci_error(StatusCode::BAD_REQUEST, "UNSUPPORTED")),
            },
        };
        let body = if head {
            empty()
        } else {
            blob_body(blob, start, next_fault(), released)
        };
        let mut resp = Response::new(body);
        if start > 0 {
            *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
            let range = format!("bytes {start}-{}/{size}", size - 1);
            set(&mut resp, "content-range", &range);
        }
        set(&mut resp, "content-type", "application/octet-stream");
        set(&mut resp, "content-length", &(size - start).to_string());
        set(&mut resp, "docker-content-digest", digest);
        if ranges {
            set(&mut resp, "accept-ranges", "bytes");
        }
        Some(resp)
    }
}

/// What a registry says to what nobody routed: `/v2/` is `200 {}`, anything else a 404 (405
/// for a method a pull never uses), with an OCI error body.
pub(crate) fn default_answer(seen: &Seen) -> Response<Body> {
    let head = seen.method == Method::HEAD;
    if !head && seen.method != Method::GET {
        return oci_error(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED");
    }
    if seen.path == "/v2/" {
        return bytes_response(
            StatusCode::OK,
            "application/json",
            Bytes::from_static(b"{}"),
            head,
        );
    }
    let code = if seen.path.contains("/manifests/") {
        "MANIFEST_UNKNOWN"
    } else if seen.path.contains("/blobs/") {
        "BLOB_UNKNOWN"
    } else {
        "NAME_UNKNOWN"
    };
    oci_error(StatusCode::NOT_FOUND, code)
}

fn bytes_response(
    status: StatusCode,
    content_type: &str,
    body: Bytes,
    head: bool,
) -> Response<Body> {
    let len = body.len();
    let mut resp = Response::new(if head { empty() } else { full(body) });
    *resp.status_mut() = status;
    set(&mut resp, "content-type", content_type);
    set(&mut resp, "content-length", &len.to_string());
    resp
}

fn oci_error(status: StatusCode, code: &str) -> Response<Body> {
    let body = serde_json::json!({"errors": [{"code": code, "message": "fake registry"}]});
    bytes_response(
        status,
        "application/json",
        Bytes::from(body.to_string()),
        false,
    )
}

fn set(resp: &mut Response<Body>, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
}
