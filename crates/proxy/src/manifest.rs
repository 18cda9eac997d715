//! `GET`/`HEAD /v2/<name>/manifests/<reference>`.
//!
//! By digest: the store (through a repository known to hold it: `scope.rs`), else one upstream
//! GET, verified and stored byte-exact with its `Content-Type`; a fetched manifest records
//! itself and what it names for the repository it came through. By tag: a tag record validated within the upstream's `tag_ttl` (or matching
//! its `immutable_tags`) is served without asking; an older one is revalidated with one `HEAD`
//! (never a GET, which would spend Docker Hub's rate limit); when the upstream is unreachable,
//! answers 5xx or 429, or times out, the last known digest is served (`freshness.rs`). A tag
//! whose manifest was evicted is fetched again, never served half.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use tokio::time::Instant;
use wharf_cache::TagRecord;
use wharf_metrics::Outcome;
use wharf_oci::{Digest, ErrorCode, Reference, media::AcceptSet};

use crate::body::{self, Body};
use crate::error::{Missing, ProxyError};
use crate::freshness::Stale;
use crate::upstreams::Target;
use crate::{Proxy, header_digest, scope};

/// Manifests larger than this are refused; clients accept at least 4 MiB.
const MAX_MANIFEST: usize = 8 * 1024 * 1024;

/// A manifest ready to serve.
#[derive(Clone)]
pub(crate) struct Manifest {
    pub(crate) digest: Digest,
    pub(crate) media_type: String,
    pub(crate) bytes: Bytes,
    /// For the metrics: from the store (`hit`, `stale`) or fetched (`miss`).
    pub(crate) outcome: Outcome,
}

impl Proxy {
    pub(crate) async fn manifest(
        &self,
        target: &Target,
        reference: &Reference,
        head: bool,
        req_headers: &HeaderMap,
    ) -> Result<Response<Body>, ProxyError> {
        let (m, stale) = match reference {
            Reference::Digest(d) => {
                self.saw_child(target, d);
                (self.manifest_by_digest(target, d).await?, None)
            }
            Reference::Tag(tag) => {
                // A sigstore tag the upstream said it lacks a moment ago: not asked again.
                if self.known_missing_tag(target, tag) {
                    return Err(ProxyError::oci(
                        ErrorCode::ManifestUnknown,
                        format!(
                            "upstream {} has no tag {tag} in {} (asked within the last {}s)",
                            target.upstream.name,
                            target.repo.as_str(),
                            crate::attached::MISS_TTL.as_secs()
                        ),
                    ));
                }
                let tagged = match self.manifest_by_tag(target, tag).await {
                    Err(ProxyError::Upstream { missing, source }) if source.is_not_found() => {
                        self.remember_missing_tag(target, tag);
                        return Err(ProxyError::Upstream { missing, source });
                    }
                    m => m?,
                };
                self.saw_tag(target, tag, &tagged.0);
                tagged
            }
        };
        if let Some(policy) = &target.upstream.policy {
            let tag = match reference {
                Reference::Tag(t) => Some(t.as_str()),
                Reference::Digest(_) => None,
            };
            self.enforce(target, policy, &m.digest, tag, &m.media_type, &m.bytes)
                .await?;
        }
        let accept = AcceptSet::parse(
            req_headers
                .get_all(header::ACCEPT)
                .iter()
                .filter_map(|v| v.to_str().ok()),
        );
        if !accept.allows(&m.media_type) {
            return Err(ProxyError::oci(
                ErrorCode::ManifestUnknown,
                format!(
                    "the manifest is of type {}, which the request's Accept header does not list",
                    m.media_type
                ),
            ));
        }
        Ok(serve(m, head, req_headers, stale))
    }

    async fn manifest_by_digest(
        &self,
        target: &Target,
        digest: &Digest,
    ) -> Result<Manifest, ProxyError> {
        // Stored manifests only through a repository known to hold them (scope.rs).
        let known = self.store.in_scope(scope::key(target, digest));
        if !known && self.store.contains(digest) {
            self.check_scope(target, digest, Missing::Manifest).await?;
        }
        if let Some((media_type, bytes)) = self.store.get_manifest(digest).await? {
            if !known {
                // Stored since the look above (through another repository): asked now. Else
                // confirmed above; either way what it names is this repository's too.
                self.check_scope(target, digest, Missing::Manifest).await?;
                self.record_manifest_scope(target, digest, &media_type, &bytes);
            }
            return Ok(Manifest {
                digest: digest.clone(),
                media_type,
                bytes,
                outcome: Outcome::Hit,
            });
        }
        // In scope but not on this disk: another replica may have kept it (shared.rs).
        if known && let Some(m) = self.manifest_from_tier(target, digest).await {
            return Ok(m);
        }
        self.fetch_manifest(target, &digest.to_string(), Some(digest))
            .await
    }

    /// See `freshness.rs` for the decision drawn out.
    async fn manifest_by_tag(&self, target: &Target, tag: &str) -> Result<Tagged, ProxyError> {
        let up = &target.upstream;
        let record = self.store.get_tag(target.tag_key(tag));
        let cached = match &record {
            Some(rec) => self
                .store
                .get_manifest(&rec.digest)
                .await?
                .map(|(media_type, bytes)| Manifest {
                    digest: rec.digest.clone(),
                    media_type,
                    bytes,
                    outcome: Outcome::Hit,
                }),
            None => None,
        };
        let (Some(rec), Some(cached)) = (record, cached) else {
            // Nothing usable (never seen, or its manifest was evicted): another replica's
            // record within the TTL (shared.rs), else fetch it.
            if let Some(m) = self.tag_from_tier(target, tag).await {
                return Ok((m, None));
            }
            return Ok((self.fetch_tag(target, tag).await?, None));
        };
        if up.is_immutable(tag) || rec.validated_at.elapsed() < up.tag_ttl {
            return Ok((cached, None));
        }
        // Past its TTL here; another replica may have revalidated it since.
        if let Some(m) = self.tag_from_tier(target, tag).await {
            return Ok((m, None));
        }
        if up.backoff.remaining().is_some() {
            self.served_stale(target, tag, Stale::BackingOff, None);
            return Ok(stale(target, tag, cached, backoff_reason(target)));
        }
        self.revalidate_within_deadline(target, tag, rec, cached)
            .await
    }

    pub(crate) fn revalidated(&self, target: &Target, result: &'static str) {
        self.metrics
            .tag_revalidations
            .with_label_values(&[target.upstream.name.as_str(), result])
            .inc();
    }

    /// Every stale answer goes through here: the log line, and the counter the admin API
    /// reports. It also counts `wharf_tag_stale_served_total{upstream,reason}`.
    pub(crate) fn served_stale(
        &self,
        target: &Target,
        tag: &str,
        why: Stale,
        error: Option<&wharf_upstream::Error>,
    ) {
        self.stale_served.fetch_add(1, Ordering::Relaxed);
        let up = &target.upstream;
        self.metrics
            .stale_served
            .with_label_values(&[up.name.as_str(), why.as_str()])
            .inc();
        // One line per upstream and cause per interval, not per request (throttle.rs).
        let Some(suppressed) = self
            .warnings
            .admit(&format!("stale/{}/{}", up.name, why.as_str()))
        else {
            return;
        };
        match error {
            Some(e) => tracing::warn!(upstream = %up.name, repo = target.repo.as_str(), tag,
                reason = why.as_str(), error = %e, suppressed,
                "upstream failed; serving the last known digest (stale)"),
            None if why == Stale::Slow => tracing::warn!(upstream = %up.name,
                repo = target.repo.as_str(), tag, reason = why.as_str(), suppressed,
                revalidate_timeout_ms = up.revalidate_timeout.as_millis() as u64,
                "upstream has not answered in time; serving the last known digest (stale) while revalidating in the background"),
            None => tracing::warn!(upstream = %up.name, repo = target.repo.as_str(), tag,
                reason = why.as_str(), suppressed,
                backoff_left_ms = up.backoff.remaining().map_or(0, |d| d.as_millis() as u64),
                "upstream failed recently; serving the last known digest (stale)"),
        }
    }

    pub(crate) async fn fetch_tag(
        &self,
        target: &Target,
        tag: &str,
    ) -> Result<Manifest, ProxyError> {
        let m = self.fetch_manifest(target, tag, None).await?;
        self.remember_tag(target, tag, &m);
        Ok(m)
    }

    /// Records that the upstream named `m` for `tag` just now, here and for other replicas.
    pub(crate) fn remember_tag(&self, target: &Target, tag: &str, m: &Manifest) {
        self.publish_tag(target, tag, m);
        let rec = TagRecord {
            digest: m.digest.clone(),
            media_type: m.media_type.clone(),
            size: m.bytes.len() as u64,
            validated_at: Instant::now(),
        };
        let key = target.tag_key(tag);
        self.store.put_tag(key, rec);
    }

    /// One upstream GET; the body is verified against `expected` (or the upstream's
    /// `Docker-Content-Digest`) and stored before it is served.
    pub(crate) async fn fetch_manifest(
        &self,
        target: &Target,
        reference: &str,
        expected: Option<&Digest>,
    ) -> Result<Manifest, ProxyError> {
        let up = &target.upstream;
        ProxyError::backing_off(up)?;
        let resp = up
            .client
            .manifest(Method::GET, target.repo.as_str(), reference)
            .await
            .map_err(|e| {
                up.backoff.trip_for(&e);
                ProxyError::upstream(Missing::Manifest)(e)
            })?;
        let bad = |message: String| ProxyError::BadUpstreamAnswer {
            upstream: up.name.clone(),
            message,
        };
        let media_type = resp
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(wharf_oci::media::essence)
            .ok_or_else(|| bad(format!("manifest {reference} came without a Content-Type")))?;
        let claimed = header_digest(&resp.headers);
        let bytes = Limited::new(resp.body, MAX_MANIFEST)
            .collect()
            .await
            .map_err(|e| bad(format!("reading manifest {reference}: {e}")))?
            .to_bytes();
        let expected = expected.cloned().or(claimed);
        let digest = match &expected {
            Some(d) => {
                let mut v = d.verifier();
                v.update(&bytes);
                let actual = v.finish();
                if &actual != d {
                    return Err(bad(format!(
                        "manifest {reference} hashes to {actual}, not {d}"
                    )));
                }
                actual
            }
            None => Digest::sha256_of(&bytes),
        };
        self.store
            .put_manifest(&digest, &media_type, &bytes)
            .await?;
        self.publish_manifest(&digest, &media_type, &bytes);
        self.record_manifest_scope(target, &digest, &media_type, &bytes);
        Ok(Manifest {
            digest,
            media_type,
            bytes,
            outcome: Outcome::Miss,
        })
    }
}

/// A tag's manifest, and the `Warning` text when it is served stale (why the upstream did not
/// confirm it).
pub(crate) type Tagged = (Manifest, Option<String>);

/// `cached`, answered as stale: `{repo}:{tag} is served from the cache without revalidation:
/// {reason}`.
pub(crate) fn stale(target: &Target, tag: &str, cached: Manifest, reason: String) -> Tagged {
    let warning = format!(
        "{}:{tag} is served from the cache without revalidation: {reason}",
        target.repo.as_str()
    );
    (
        Manifest {
            outcome: Outcome::Stale,
            ..cached
        },
        Some(warning),
    )
}

/// Why the upstream was not asked: the failure that opened its back-off window (it may have
/// closed since, hence the fallback).
pub(crate) fn backoff_reason(target: &Target) -> String {
    let up = &target.upstream;
    up.backoff.open().and_then(|w| w.reason).map_or_else(
        || format!("upstream {} failed recently", up.name),
        |r| r.to_string(),
    )
}

/// `stale`: the manifest is a tag's last known one, not confirmed upstream; the answer then
/// says so in `Warning` headers: RFC 7234's `110` for HTTP tools, and a `299` with the reason,
/// the only code containers/image shows.
pub(crate) fn serve(
    m: Manifest,
    head: bool,
    req_headers: &HeaderMap,
    stale: Option<String>,
) -> Response<Body> {
    let etag = format!("\"{}\"", m.digest);
    let not_modified = req_headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim() == etag || t.trim() == m.digest.to_string())
        });
    let len = m.bytes.len();
    let mut resp = if not_modified || head {
        Response::new(body::empty())
    } else {
        Response::new(body::full(m.bytes))
    };
    if not_modified {
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
    }
    resp.extensions_mut()
        .insert(crate::observe::Answered(m.outcome));
    let h = resp.headers_mut();
    if let Ok(ct) = HeaderValue::from_str(&m.media_type) {
        h.insert(header::CONTENT_TYPE, ct);
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Ok(d) = HeaderValue::from_str(&m.digest.to_string()) {
        h.insert("docker-content-digest", d);
    }
    if let Ok(e) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, e);
    }
    if let Some(reason) = stale {
        h.append(
            header::WARNING,
            HeaderValue::from_static(r#"110 - "Response is Stale""#),
        );
        if let Some(w) = crate::error::warning(&reason) {
            h.append(header::WARNING, w);
        }
    }
    resp
}
