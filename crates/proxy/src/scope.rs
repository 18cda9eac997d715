//! Content scoped to the repository that holds it.
//!
//! The store keeps a digest once, whoever fetched it; a registry answers for a digest per
//! repository. Stored content is served for an (upstream, repository) only when that pair is
//! known to hold it (`wharf_cache` keeps the pairs, `scopes.rs` there):
//!
//! ```text
//! stored content asked for through (upstream, repo)
//!   pair known                     -> served (one lookup in memory)
//!   else, the upstream backing off -> its 503/429, not served: an unknown pair is never
//!                                     served without the upstream's word
//!   else one HEAD with repo's own scope (and credentials)
//!     2xx                          -> pair recorded, served from the store
//!     404                          -> BLOB_UNKNOWN / MANIFEST_UNKNOWN
//!     401 / 403                    -> the upstream's refusal, as it gave it
//!     unreachable, 5xx, 429        -> that failure (502/503/504/429), not served
//! ```
//!
//! Pairs are learnt without asking too: a fill's upstream GET through a repository records its
//! pair when the upstream answers (`blob.rs`), and a manifest fetched through a repository
//! records itself and everything it names — config, layers, child manifests — for that
//! repository, so the blob requests of a pull that follow are known pairs.

use http::Method;
use wharf_cache::ScopeKey;
use wharf_oci::Digest;

use crate::Proxy;
use crate::error::{Missing, ProxyError};
use crate::upstreams::Target;

/// The pair a request for `digest` through `target` asks about.
pub(crate) fn key<'a>(target: &'a Target, digest: &'a Digest) -> ScopeKey<'a> {
    ScopeKey {
        upstream: &target.upstream.name,
        repository: target.repo.as_str(),
        digest,
    }
}

impl Proxy {
    /// Whether stored content for `digest` may be served through `target`: at once if the
    /// pair is known, else after the upstream confirmed it with one `HEAD` (remembered). An
    /// error is the answer to give instead; the stored bytes are not served.
    pub(crate) async fn check_scope(
        &self,
        target: &Target,
        digest: &Digest,
        missing: Missing,
    ) -> Result<(), ProxyError> {
        if self.store.in_scope(key(target, digest)) {
            return Ok(());
        }
        let up = &target.upstream;
        let counted = |result: &str| {
            self.metrics
                .scope_checks
                .with_label_values(&[up.name.as_str(), result])
                .inc();
        };
        if let Err(e) = ProxyError::backing_off(up) {
            counted("failed");
            return Err(e);
        }
        let repo = target.repo.as_str();
        let head = match missing {
            Missing::Manifest => {
                up.client
                    .manifest(Method::HEAD, repo, &digest.to_string())
                    .await
            }
            Missing::Blob | Missing::Name => up.client.blob(Method::HEAD, repo, digest, None).await,
        };
        match head {
            Ok(_) => {
                up.backoff.clear();
                counted("confirmed");
                self.store.add_scope(key(target, digest));
                Ok(())
            }
            Err(e) => {
                up.backoff.trip_for(&e);
                counted(if e.is_not_found() {
                    "not_found"
                } else if e.is_unauthorized() || e.is_denied() {
                    "refused"
                } else {
                    "failed"
                });
                tracing::debug!(upstream = %up.name, repo, %digest, error = %e,
                    "stored content not served: the upstream did not confirm the repository holds it");
                Err(ProxyError::upstream(missing)(e))
            }
        }
    }

    /// Records that `target`'s repository holds the manifest `digest` and everything it names.
    /// Called when the manifest was fetched through that repository, or confirmed for it; a
    /// manifest that cannot be read still records itself.
    pub(crate) fn record_manifest_scope(
        &self,
        target: &Target,
        digest: &Digest,
        media_type: &str,
        bytes: &[u8],
    ) {
        self.store.add_scope(key(target, digest));
        // Children and the blobs a pull fetches from this repository; never foreign layers: a
        // registry accepts a manifest naming them without holding them, so naming one is no
        // evidence (a manifest could name another repository's private layer that way).
        match wharf_oci::manifest::parse(media_type, bytes) {
            Ok(wharf_oci::manifest::Manifest::Index(children)) => {
                for child in &children {
                    self.store.add_scope(key(target, &child.digest));
                }
            }
            Ok(wharf_oci::manifest::Manifest::Image { blobs, .. }) => {
                for blob in &blobs {
                    self.store.add_scope(key(target, &blob.digest));
                }
            }
            Err(_) => {}
        }
    }
}
