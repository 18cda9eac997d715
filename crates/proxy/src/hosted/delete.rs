//! Deletes in hosted repositories (the spec's "Content Management"):
//!
//! ```text
//! [hosted] delete = false (default)   -> 405 UNSUPPORTED, as the spec lets a registry that
//!                                        disables deletes answer (distribution does the same
//!                                        with storage.delete.enabled off)
//! rights                               -> the delete right for the repository (rights.rs,
//!                                         checked before any handler: rights::check)
//! DELETE .../manifests/<tag>           -> the tag only: 202; an unknown tag: 404 MANIFEST_UNKNOWN
//! DELETE .../manifests/<digest>        -> the repository no longer holds the manifest, and its
//!                                         tags there pointing at it are gone, and it leaves
//!                                         its subject's referrers (referrers.rs): 202; not a
//!                                         manifest this repository holds: 404 MANIFEST_UNKNOWN
//! DELETE .../blobs/<digest>            -> the repository no longer holds the blob: 202; not
//!                                         held here (or a manifest): 404 BLOB_UNKNOWN
//! ```
//!
//! A delete unlinks: it removes the (hosted, repository, digest) scope pair, so the content is
//! no longer served through that repository even while another still holds it. The bytes stay
//! until garbage collection finds nothing referencing them (`gc.rs`). Deleting a blob an image
//! of the repository names breaks pulls of that image, as the spec warns; the blob stays
//! stored as long as such a manifest is held.
//!
//! distribution deletes a tag the same way (`DeleteManifest` with a tag untags it, 202; an
//! unknown tag is MANIFEST_UNKNOWN), untags every tag of a deleted manifest, and answers
//! UNSUPPORTED when deletes are disabled or the repository is a pull-through cache's.

use http::{HeaderValue, Response, StatusCode, header};
use wharf_cache::TagKey;
use wharf_oci::{Digest, ErrorCode, Reference, RepositoryName};

use super::{HOSTED, Hosted};
use crate::body::{self, Body};
use crate::error::ProxyError;

impl Hosted {
    /// 405 UNSUPPORTED unless `hosted.delete` is on.
    pub(super) fn check_delete_enabled(&self) -> Result<(), ProxyError> {
        if self.delete {
            return Ok(());
        }
        Err(ProxyError::oci(
            ErrorCode::Unsupported,
            "deleting is disabled on this registry: set [hosted] delete = true to allow it",
        ))
    }

    /// `DELETE .../manifests/<tag|digest>`.
    pub(super) fn delete_manifest(
        &self,
        repo: &RepositoryName,
        reference: &Reference,
    ) -> Result<Response<Body>, ProxyError> {
        let digest = match reference {
            Reference::Tag(tag) => {
                let key = TagKey {
                    upstream: HOSTED,
                    repository: repo.as_str(),
                    tag,
                };
                if self.store.remove_tag(key).is_none() {
                    return Err(ProxyError::oci(
                        ErrorCode::ManifestUnknown,
                        format!("manifest unknown: {repo} has no tag {tag}"),
                    ));
                }
                tracing::info!(repo = %repo, %tag, "tag deleted");
                return Ok(accepted());
            }
            Reference::Digest(d) => d,
        };
        let is_manifest = self.store.media_type(digest).is_some();
        if !is_manifest || !self.store.remove_scope(Hosted::key(repo, digest)) {
            return Err(ProxyError::oci(
                ErrorCode::ManifestUnknown,
                format!("manifest unknown: {repo} does not hold a manifest {digest}"),
            ));
        }
        self.referrers.remove(repo.as_str(), digest);
        let tags = self.untag(repo, digest);
        self.deleted(repo, digest);
        tracing::info!(repo = %repo, %digest, tags, "manifest deleted");
        Ok(accepted())
    }

    /// `DELETE .../blobs/<digest>`.
    pub(super) fn delete_blob(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<Response<Body>, ProxyError> {
        let unknown = |why: &str| {
            ProxyError::oci(
                ErrorCode::BlobUnknown,
                format!("blob unknown: {repo} {why} {digest}"),
            )
        };
        if !self.store.in_scope(Hosted::key(repo, digest)) {
            return Err(unknown("does not hold"));
        }
        if self.store.media_type(digest).is_some() {
            // Unlinked here, the manifest would stay tagged but unservable.
            return Err(unknown(
                "holds it as a manifest: DELETE .../manifests/<digest> instead, not the blob",
            ));
        }
        if !self.store.remove_scope(Hosted::key(repo, digest)) {
            return Err(unknown("does not hold"));
        }
        self.deleted(repo, digest);
        tracing::info!(repo = %repo, %digest, "blob deleted");
        Ok(accepted())
    }

    /// Removes `repo`'s tags that point at `digest`; how many there were.
    fn untag(&self, repo: &RepositoryName, digest: &Digest) -> usize {
        let tags: Vec<_> = self
            .store
            .tags()
            .into_iter()
            .filter(|t| {
                t.upstream == HOSTED && t.repository == repo.as_str() && t.record.digest == *digest
            })
            .collect();
        for t in &tags {
            self.store.remove_tag(t.key());
        }
        tags.len()
    }

    /// What follows any delete: a garbage collection soon, which frees the bytes if nothing
    /// else references them.
    fn deleted(&self, _repo: &RepositoryName, _digest: &Digest) {
        self.gc.wake();
    }
}

/// `202 Accepted`, empty.
fn accepted() -> Response<Body> {
    let mut resp = Response::new(body::empty());
    *resp.status_mut() = StatusCode::ACCEPTED;
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    resp
}
