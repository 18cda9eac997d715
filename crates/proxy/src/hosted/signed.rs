//! Signatures of hosted images, through the API extension containers/image speaks to a
//! registry that says `X-Registry-Supports-Signatures: 1` (`putSignaturesToAPIExtension` in
//! its `docker/docker_image_dest.go`): `podman push --sign-by` and `skopeo copy --sign-by`
//! into a hosted repository store their simple signatures here, and pulls read them back
//! (`../signatures.rs` renders the list), so a site's own images are verified as Oracle's are.
//!
//! ```text
//! GET/HEAD /extensions/v2/<name>/signatures/<digest>   the stored list ({"signatures": []}
//!                                                      when none); MANIFEST_UNKNOWN when
//!                                                      the repository does not hold it
//! PUT      same path, one signature:                   appended unless the same bytes are
//!   {"schemaVersion": 2, "type": "atomic",             there already; 201 Created
//!    "name": "<digest>@<hex>", "content": <base64>}
//! ```
//!
//! containers/image reads the list first and sends only the signatures it does not find, one
//! PUT each, expecting 201. The signatures are opaque here (clients verify them, or
//! `require_signature` on an upstream); a PUT needs the push right, as any write.

use base64::Engine as _;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use wharf_cache::{MAX_SIGNATURE_BYTES, MAX_SIGNATURES, SignatureKey, SignatureList};
use wharf_oci::{Digest, ErrorCode, RepositoryName};

use super::upload::{body_stream, read_whole, store_error};
use super::{HOSTED, Hosted};
use crate::body::{self, Body};
use crate::error::ProxyError;

/// Writes of signature lists, one at a time: two PUTs for one manifest must not lose either.
static WRITES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The largest PUT body: a signature of [`MAX_SIGNATURE_BYTES`] in base64, and the rest.
const MAX_BODY: usize = MAX_SIGNATURE_BYTES / 3 * 4 + 4096;

fn key<'a>(repo: &'a RepositoryName, digest: &'a Digest) -> SignatureKey<'a> {
    SignatureKey {
        upstream: HOSTED,
        repository: repo.as_str(),
        digest,
    }
}

fn invalid(message: impl Into<String>) -> ProxyError {
    ProxyError::oci(ErrorCode::ManifestInvalid, message)
}

impl Hosted {
    /// The manifest must be held by the repository for its signatures to be read or written.
    fn check_held(&self, repo: &RepositoryName, digest: &Digest) -> Result<(), ProxyError> {
        if self.store.in_scope(Hosted::key(repo, digest)) {
            return Ok(());
        }
        Err(ProxyError::oci(
            ErrorCode::ManifestUnknown,
            format!("manifest unknown: {repo} does not hold {digest}"),
        ))
    }

    /// `GET`/`HEAD /extensions/v2/<name>/signatures/<digest>`.
    pub(super) async fn signatures(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        head: bool,
    ) -> Result<Response<Body>, ProxyError> {
        self.check_held(repo, digest)?;
        let list = self
            .store
            .get_signatures(key(repo, digest))
            .await
            .map_err(store_error)?
            .map(|l| l.signatures)
            .unwrap_or_default();
        Ok(crate::signatures::render(digest, &list, head))
    }

    /// `PUT /extensions/v2/<name>/signatures/<digest>`: one more signature.
    pub(super) async fn put_signature<B>(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        req: Request<B>,
    ) -> Result<Response<Body>, ProxyError>
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.check_held(repo, digest)?;
        let buf = read_whole(
            body_stream(req.into_body()),
            MAX_BODY,
            || {
                invalid(format!(
                    "a signature is at most {MAX_SIGNATURE_BYTES} bytes"
                ))
            },
            |e| invalid(format!("the signature body broke off: {e}")),
        )
        .await?;
        let put: serde_json::Value = serde_json::from_slice(&buf).map_err(|e| {
            invalid(format!(
                "not a signature of the X-Registry-Supports-Signatures extension: {e}"
            ))
        })?;
        let (version, kind) = (&put["schemaVersion"], &put["type"]);
        if version.as_u64() != Some(2) || kind.as_str() != Some("atomic") {
            return Err(invalid(format!(
                "only schemaVersion 2 \"atomic\" signatures are kept (got {version} {kind})"
            )));
        }
        let content = put["content"]
            .as_str()
            .ok_or_else(|| invalid("a signature needs its content, in base64"))?;
        let signature = base64::engine::general_purpose::STANDARD
            .decode(content.as_bytes())
            .map_err(|e| invalid(format!("content is not base64: {e}")))?;
        if signature.is_empty() || signature.len() > MAX_SIGNATURE_BYTES {
            return Err(invalid(format!(
                "a signature is 1 to {MAX_SIGNATURE_BYTES} bytes"
            )));
        }
        let _one_at_a_time = WRITES.lock().await;
        let mut list = self
            .store
            .get_signatures(key(repo, digest))
            .await
            .map_err(store_error)?
            .map(|l| l.signatures)
            .unwrap_or_default();
        if !list.iter().any(|s| s[..] == signature[..]) {
            if list.len() >= MAX_SIGNATURES {
                return Err(ProxyError::oci(
                    ErrorCode::Denied,
                    format!("{repo}@{digest} has {MAX_SIGNATURES} signatures already"),
                ));
            }
            list.push(Bytes::from(signature));
            let record = SignatureList {
                signatures: list,
                fetched_at: std::time::SystemTime::now(),
            };
            self.store
                .put_signatures(key(repo, digest), &record)
                .await
                .map_err(store_error)?;
        }
        let mut resp = Response::new(body::empty());
        *resp.status_mut() = StatusCode::CREATED;
        Ok(resp)
    }
}
