//! `PUT /v2/<name>/manifests/<tag|digest>` into a hosted repository.
//!
//! ```text
//! body            at most MAX_MANIFEST bytes (4 MiB, what the spec says a registry should take
//!                 at least): 413 MANIFEST_INVALID beyond
//! Content-Type    required, the manifest's media type; a `mediaType` field must agree
//! JSON            an index, an image manifest (config + layers) or schema 1: else
//!                 400 MANIFEST_INVALID
//! references      every child manifest, config and layer held by this repository (pushed
//!                 or mounted here), else 400 MANIFEST_BLOB_UNKNOWN, detail {"digest": ...};
//!                 foreign layers and the `subject` need not be (the spec's words)
//! by digest       the bytes must hash to it: 400 DIGEST_INVALID
//! stored          byte-exact with its Content-Type; a tag records it (checked, stored and
//!                 recorded under one garbage collection pin: gc.rs)
//! referrers       a manifest with a `subject` joins its referrers (referrers.rs)
//! answer          201, Location .../manifests/<digest>, Docker-Content-Digest,
//!                 OCI-Subject: <digest> when it has a subject
//! ```

use bytes::Bytes;
use http::{HeaderValue, Request, Response, header};
use tokio::time::Instant;
use wharf_cache::{TagKey, TagRecord};
use wharf_oci::manifest::{self, Manifest};
use wharf_oci::{Digest, ErrorCode, Reference, RepositoryName};

use super::gc::Pin;
use super::referrers;
use super::upload::{body_stream, read_whole, store_error};
use super::{HOSTED, Hosted, created};
use crate::body::Body;
use crate::error::ProxyError;

/// The largest manifest a hosted repository takes. The spec: a registry SHOULD accept
/// manifests of at least 4 MiB and MAY answer larger ones with 413.
pub(crate) const MAX_MANIFEST: usize = 4 << 20;

impl Hosted {
    pub(super) async fn put_manifest<B>(
        &self,
        repo: &RepositoryName,
        reference: &Reference,
        base: &str,
        req: Request<B>,
    ) -> Result<Response<Body>, ProxyError>
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let media_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                invalid("a manifest PUT needs the manifest's media type as Content-Type")
            })?;
        let bytes = read_whole(
            body_stream(req.into_body()),
            MAX_MANIFEST,
            || ProxyError::ManifestTooLarge {
                limit: MAX_MANIFEST,
            },
            |e| invalid(format!("the manifest body broke off: {e}")),
        )
        .await?;
        let digest = Digest::sha256_of(&bytes);
        if let Reference::Digest(named) = reference
            && *named != digest
        {
            // Another algorithm than sha256: hash with that one before refusing.
            let mut v = named.verifier();
            v.update(&bytes);
            if v.finish() != *named {
                return Err(ProxyError::oci(
                    ErrorCode::DigestInvalid,
                    format!("the manifest's bytes do not hash to {named}"),
                ));
            }
        }
        let digest = match reference {
            Reference::Digest(named) => named.clone(),
            Reference::Tag(_) => digest,
        };
        // From the check of what it names until it is scoped and tagged, no collection sweeps
        // the manifest or what it names (gc.rs).
        let pin = self.gc.pin().await;
        let subject = self.check_references(&pin, repo, &media_type, &bytes)?;
        pin.touch(&digest);
        if !self.store.contains(&digest) {
            self.check_quota(bytes.len() as u64)?;
        }
        self.store
            .put_manifest(&digest, &media_type, &bytes)
            .await
            .map_err(store_error)?;
        self.store.add_scope(Hosted::key(repo, &digest));
        if let Some((subject, listed)) = referrers::describe(&media_type, &bytes) {
            self.referrers
                .add(repo.as_str(), subject, digest.clone(), listed);
        }
        if let Reference::Tag(tag) = reference {
            self.store.put_tag(
                TagKey {
                    upstream: HOSTED,
                    repository: repo.as_str(),
                    tag,
                },
                TagRecord {
                    digest: digest.clone(),
                    media_type: media_type.clone(),
                    size: bytes.len() as u64,
                    validated_at: Instant::now(),
                },
            );
        }
        tracing::info!(repo = %repo, %reference, %digest, "manifest pushed");
        let mut resp = created(&format!("{base}/manifests/{digest}"), &digest);
        if let Some(subject) = subject
            && let Ok(v) = HeaderValue::from_str(&subject.to_string())
        {
            resp.headers_mut().insert("oci-subject", v);
        }
        Ok(resp)
    }

    /// Checks what the manifest names against what `repo` holds, touching each (the PUT will
    /// reference it); returns its `subject`.
    fn check_references(
        &self,
        pin: &Pin<'_>,
        repo: &RepositoryName,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<Option<Digest>, ProxyError> {
        let json: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| invalid(format!("the manifest is not JSON: {e}")))?;
        if let Some(own) = json.get("mediaType").and_then(|m| m.as_str())
            && own != media_type
        {
            return Err(invalid(format!(
                "Content-Type {media_type:?} differs from the manifest's mediaType {own:?}"
            )));
        }
        let parsed = manifest::parse(media_type, bytes).map_err(|e| invalid(e.to_string()))?;
        let needed = match &parsed {
            Manifest::Index(children) => children.iter().map(|c| &c.digest).collect::<Vec<_>>(),
            Manifest::Image { blobs, .. } => blobs.iter().map(|b| &b.digest).collect(),
        };
        for d in needed {
            if !self.holds(repo, d) {
                return Err(ProxyError::ManifestBlobUnknown {
                    digest: d.clone(),
                    message: format!(
                        "the manifest names {d}, which {repo} does not hold: push or mount it first"
                    ),
                });
            }
            pin.touch(d);
        }
        let subject = json
            .get("subject")
            .and_then(|s| s.get("digest"))
            .and_then(|d| d.as_str())
            .map(|d| Digest::parse(d).map_err(|e| invalid(format!("subject.digest {d:?}: {e}"))))
            .transpose()?;
        Ok(subject)
    }
}

fn invalid(message: impl Into<String>) -> ProxyError {
    ProxyError::oci(ErrorCode::ManifestInvalid, message)
}
