//! What is attached to a manifest and probed for on every pull by signature-checking clients:
//! the OCI 1.1 referrers list (`GET /v2/<name>/referrers/<digest>`) and sigstore's tag schema
//! (`sha256-<hex>.sig`, `.att`, `.sbom`). Both change over time, so both are treated like tags
//! (DESIGN.md): an answer is kept for the upstream's `tag_ttl`; and both are usually *absent*
//! (most images have no cosign signature, many registries no referrers API), so an absence is
//! remembered too, for a short while ([`MISS_TTL`]), and a client probing again costs the
//! upstream nothing.
//!
//! ```text
//! referrers of (upstream, repo, digest, artifactType)
//!   kept answer younger than tag_ttl (a miss: MISS_TTL)  -> it
//!   else one upstream GET
//!     200 (an image index)         -> kept, served byte-exact with OCI-Filters-Applied
//!     404 (no API, or nothing)     -> kept as a miss; 404 MANIFEST_UNKNOWN (clients then
//!                                     fall back to the tag schema, as the spec says)
//!     failed                       -> the kept answer, stale; else that failure
//! sigstore tag (sha256-<hex>.sig|att|sbom) the upstream answered 404 for
//!   -> remembered MISS_TTL: MANIFEST_UNKNOWN without asking (manifest.rs)
//! ```

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, header};
use http_body_util::{BodyExt, Limited};
use tokio::time::Instant;
use wharf_oci::{Digest, ErrorCode};

use crate::Proxy;
use crate::body::{self, Body};
use crate::error::{Missing, ProxyError};
use crate::upstreams::Target;

/// How long an absence is remembered (at most the upstream's `tag_ttl`): short, so a
/// signature pushed just now is found within it.
pub(crate) const MISS_TTL: Duration = Duration::from_secs(30);

/// The largest referrers list read; an index of thousands of descriptors fits.
const MAX_REFERRERS: usize = 4 * 1024 * 1024;

/// The most misses kept (each a few hundred bytes).
const KEPT: u64 = 10_000;
/// The bytes of referrers lists kept, all together: the key holds the client's `artifactType`,
/// so an upstream that ignores the filter would otherwise have one large list kept once per
/// value a client cares to send.
const KEPT_BYTES: u64 = 64 * 1024 * 1024;

/// A referrers answer: the index and whether the upstream applied the filter.
#[derive(Clone)]
pub(crate) struct Listed {
    body: Bytes,
    content_type: HeaderValue,
    filters_applied: Option<HeaderValue>,
}

/// What the upstream said, and when.
#[derive(Clone)]
pub(crate) struct Kept<T> {
    at: Instant,
    answer: Option<T>,
}

/// (upstream, repository, digest or tag, artifactType)
type Key = (String, String, String, String);

/// The kept answers of both kinds.
pub(crate) struct Attached {
    referrers: moka::sync::Cache<Key, Arc<Kept<Listed>>>,
    missing_tags: moka::sync::Cache<Key, Instant>,
}

impl Default for Attached {
    fn default() -> Self {
        Attached {
            referrers: moka::sync::Cache::builder()
                .max_capacity(KEPT_BYTES)
                .weigher(|_: &Key, kept: &Arc<Kept<Listed>>| {
                    let len = kept.answer.as_ref().map_or(0, |l| l.body.len());
                    u32::try_from(len).unwrap_or(u32::MAX).max(1)
                })
                .build(),
            missing_tags: moka::sync::Cache::builder().max_capacity(KEPT).build(),
        }
    }
}

fn key(target: &Target, what: &str, artifact_type: &str) -> Key {
    (
        target.upstream.name.clone(),
        target.repo.as_str().to_owned(),
        what.to_owned(),
        artifact_type.to_owned(),
    )
}

/// How long a miss is good for `target`'s upstream.
fn miss_ttl(target: &Target) -> Duration {
    MISS_TTL.min(target.upstream.tag_ttl)
}

/// Whether `tag` is one of sigstore's attachment tags (`sha256-<64 hex>.sig|att|sbom`).
pub(crate) fn is_sigstore_tag(tag: &str) -> bool {
    let Some((hex, suffix)) = tag.strip_prefix("sha256-").and_then(|t| t.split_once('.')) else {
        return false;
    };
    hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        && matches!(suffix, "sig" | "att" | "sbom")
}

impl Proxy {
    /// Whether the upstream said of sigstore tag `tag` a moment ago that it does not exist.
    pub(crate) fn known_missing_tag(&self, target: &Target, tag: &str) -> bool {
        is_sigstore_tag(tag)
            && self
                .attached
                .missing_tags
                .get(&key(target, tag, ""))
                .is_some_and(|at| at.elapsed() < miss_ttl(target))
    }

    /// Remembers that the upstream has no tag `tag` (sigstore tags only).
    pub(crate) fn remember_missing_tag(&self, target: &Target, tag: &str) {
        if is_sigstore_tag(tag) {
            self.attached
                .missing_tags
                .insert(key(target, tag, ""), Instant::now());
        }
    }

    /// `GET /v2/<name>/referrers/<digest>[?artifactType=...]`.
    pub(crate) async fn referrers(
        &self,
        target: &Target,
        digest: &Digest,
        artifact_type: Option<&str>,
        head: bool,
    ) -> Result<Response<Body>, ProxyError> {
        let k = key(target, &digest.to_string(), artifact_type.unwrap_or(""));
        let kept = self.attached.referrers.get(&k);
        let fresh = kept.as_ref().filter(|kept| {
            let ttl = match kept.answer {
                Some(_) => target.upstream.tag_ttl,
                None => miss_ttl(target),
            };
            kept.at.elapsed() < ttl
        });
        let answer = match fresh {
            Some(kept) => kept.answer.clone(),
            None => match self.fetch_referrers(target, digest, artifact_type).await {
                Ok(answer) => {
                    self.attached.referrers.insert(
                        k,
                        Arc::new(Kept {
                            at: Instant::now(),
                            answer: answer.clone(),
                        }),
                    );
                    answer
                }
                // The upstream failed: what it said last, however old.
                Err(e) => match kept {
                    Some(kept) => {
                        tracing::debug!(error = %e, "referrers: the upstream failed; serving the kept answer");
                        kept.answer.clone()
                    }
                    None => return Err(e),
                },
            },
        };
        let Some(listed) = answer else {
            return Err(ProxyError::oci(
                ErrorCode::ManifestUnknown,
                format!(
                    "upstream {} has no referrers for {digest} in {} (or no referrers API: use the tag schema)",
                    target.upstream.name,
                    target.repo.as_str()
                ),
            ));
        };
        let len = listed.body.len();
        let mut resp = Response::new(if head {
            body::empty()
        } else {
            body::full(listed.body)
        });
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, listed.content_type);
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        if let Some(f) = listed.filters_applied {
            h.insert("oci-filters-applied", f);
        }
        Ok(resp)
    }

    /// One upstream GET: `Some` list, `None` for a 404, or the failure.
    async fn fetch_referrers(
        &self,
        target: &Target,
        digest: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Option<Listed>, ProxyError> {
        let up = &target.upstream;
        ProxyError::backing_off(up)?;
        let resp = match up
            .client
            .referrers(target.repo.as_str(), digest, artifact_type)
            .await
        {
            Ok(resp) => resp,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => {
                up.backoff.trip_for(&e);
                return Err(ProxyError::upstream(Missing::Manifest)(e));
            }
        };
        let bad = |message: String| ProxyError::BadUpstreamAnswer {
            upstream: up.name.clone(),
            message,
        };
        let content_type = resp
            .headers
            .get(header::CONTENT_TYPE)
            .cloned()
            .unwrap_or(HeaderValue::from_static(wharf_oci::media::OCI_INDEX));
        let filters_applied = resp.headers.get("oci-filters-applied").cloned();
        let body = Limited::new(resp.body, MAX_REFERRERS)
            .collect()
            .await
            .map_err(|e| bad(format!("reading the referrers of {digest}: {e}")))?
            .to_bytes();
        if serde_json::from_slice::<serde_json::Value>(&body).is_err() {
            return Err(bad(format!("the referrers of {digest} are not JSON")));
        }
        Ok(Some(Listed {
            body,
            content_type,
            filters_applied,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigstore_tags() {
        let hex = "a".repeat(64);
        for t in ["sig", "att", "sbom"] {
            assert!(is_sigstore_tag(&format!("sha256-{hex}.{t}")), "{t}");
        }
        for t in [
            format!("sha256-{hex}"),
            format!("sha256-{hex}.txt"),
            format!("sha256-{}.sig", "a".repeat(63)),
            format!("sha256-{}.sig", "A".repeat(64)),
            "latest".to_owned(),
            format!("sha512-{hex}.sig"),
        ] {
            assert!(!is_sigstore_tag(&t), "{t}");
        }
    }
}
