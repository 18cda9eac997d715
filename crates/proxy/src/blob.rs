//! `GET`/`HEAD /v2/<name>/blobs/<digest>`.
//!
//! A stored blob is streamed from its file (with `sendfile(2)` on plain HTTP/1.1). A missing one joins (or starts) the fill for its
//! digest and tails the spool as it grows; the upstream sees one GET however many clients ask.
//! `HEAD` of a missing blob asks the upstream with `HEAD` and answers with its size: never a 404
//! that would break chained caches. A request with `Cache-Control: only-if-cached` (RFC 9111
//! section 5.2.1.7; `wharf prefetch` sends it) is answered from the store or a fill in flight,
//! else 504, never by asking the upstream. Stored bytes, and a fill started through another
//! repository, are served only through a repository known to hold the digest (`scope.rs`).

use std::sync::Arc;

use futures_util::{FutureExt, StreamExt, TryStreamExt};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use http_body_util::BodyExt;
use wharf_cache::{FillSource, Opener, ScopeKey, SourceError, Store};
use wharf_metrics::{Metrics, Outcome};
use wharf_oci::Digest;

use crate::body::{self, Body};
use crate::error::{Missing, ProxyError};
use crate::observe::{Answered, FillGauge, Held};
use crate::range::{self, RangeAnswer};
use crate::sendfile::Pending;
use crate::shared::{self, Origin};
use crate::upstreams::Target;
use crate::{Proxy, content_length, scope};

impl Proxy {
    pub(crate) async fn blob(
        &self,
        target: &Target,
        digest: &Digest,
        head: bool,
        req_headers: &HeaderMap,
        sendfile: Option<&Pending>,
    ) -> Result<Response<Body>, ProxyError> {
        if let Some(policy) = &target.upstream.policy {
            self.check_verified_blob(target, policy, digest)?;
        }
        let range = req_headers.get(header::RANGE).and_then(|v| v.to_str().ok());
        // A peer of the fleet asking for the blob it thinks this replica owns (cluster.rs).
        let from_peer = self.cluster.is_some() && crate::cluster::from_peer(req_headers);
        // Stored content is served only through a repository known to hold it (scope.rs);
        // what is not stored is asked for through this repository anyway.
        let known = self.store.in_scope(scope::key(target, digest));
        if !known && self.store.contains(digest) {
            self.check_scope(target, digest, Missing::Blob).await?;
        }
        if let Some((file, size)) = self.store.open_blob(digest).await? {
            if !known {
                // Confirmed above, or stored since then (through another repository).
                self.check_scope(target, digest, Missing::Blob).await?;
            }
            let resp = stored_blob(file, size, digest, head, range, sendfile)?;
            if !head && !from_peer {
                self.warmed_hit(target, digest);
            }
            return Ok(answered(Outcome::Hit, cache_status(CACHE_HIT, resp)));
        }
        let up = &target.upstream;
        if head {
            // A download in flight knows the size (and keeps it until the content is indexed):
            // no upstream request, and no window where a stored blob looks missing.
            // Only for a repository known to hold it: otherwise the upstream's HEAD decides.
            if let Some(fill) = self.store.fill_in_flight(digest)
                && self.store.in_scope(scope::key(target, digest))
                && let Ok(size) = fill.ready().await
            {
                let (outcome, cache) = if fill.is_downloaded() {
                    (Outcome::Hit, CACHE_HIT)
                } else {
                    (Outcome::Coalesced, CACHE_MISS)
                };
                let resp = blob_response(StatusCode::OK, digest, size, None, body::empty());
                return Ok(answered(outcome, cache_status(cache, resp)));
            }
            only_if_cached(req_headers, digest)?;
            ProxyError::backing_off(up)?;
            let resp = up
                .client
                .blob(Method::HEAD, target.repo.as_str(), digest, None)
                .await
                .map_err(|e| {
                    up.backoff.trip_for(&e);
                    ProxyError::upstream(Missing::Blob)(e)
                })?;
            let size =
                content_length(&resp.headers).ok_or_else(|| ProxyError::BadUpstreamAnswer {
                    upstream: up.name.clone(),
                    message: format!("HEAD of blob {digest} came without a Content-Length"),
                })?;
            let resp = blob_response(StatusCode::OK, digest, size, None, body::empty());
            return Ok(answered(Outcome::Miss, cache_status(CACHE_MISS, resp)));
        }

        // cache.max_concurrent_fills bounds the downloads, not the readers: joining a fill in
        // flight needs no place. A new fill waits for a permit (never fails for lack of one);
        // the opener holds it for the fill's life, and drops it at once if another request
        // started the same fill meanwhile.
        if from_peer
            && let Some(cluster) = &self.cluster
            && let Some(owner) = cluster.owner(digest)
        {
            return Err(ProxyError::NotOwner {
                digest: digest.clone(),
                owner,
            });
        }
        let gauge = FillGauge::new(&self.metrics, &up.name);
        let fill = match self.store.fill_in_flight(digest) {
            Some(fill) => fill,
            None => {
                // Joining a download in flight asks nothing; starting one waits for the window.
                only_if_cached(req_headers, digest)?;
                // An upstream in its back-off window is not asked; the object store replicas
                // share still serves what it holds (an outage is when it matters most).
                if up.backoff.remaining().is_some() && !self.tier_holds(digest).await {
                    ProxyError::backing_off(up)?;
                }
                // A peer's request does not queue for a place: the peer holds one of its own
                // for this fill, and two replicas each waiting for the other's places under a
                // fleet-wide burst would stall until their fills time out.
                let permit = if from_peer {
                    self.fill_permits.clone().try_acquire_owned().ok()
                } else {
                    self.fill_permits.clone().acquire_owned().await.ok()
                };
                self.start_fill(target, digest, permit, gauge.clone(), from_peer)
            }
        };
        let waiting = Held::new(self.metrics.fill_waiters.with_label_values(&[&up.name]));
        let size = fill.ready().await.map_err(|source| {
            if let Some(e) = source
                .source_error()
                .and_then(|e| e.downcast_ref::<wharf_upstream::Error>())
            {
                up.backoff.trip_for(e);
            }
            ProxyError::Fill {
                upstream: up.name.clone(),
                missing: Missing::Blob,
                source,
            }
        })?;
        drop(waiting);
        // The fill's upstream GET records its repository's pair when it is answered (see
        // `opener`). Known now unless the fill came through another repository, or found the
        // content stored (it became so since the check above): ask as for stored content.
        if !self.store.in_scope(scope::key(target, digest)) {
            self.check_scope(target, digest, Missing::Blob).await?;
        }
        // This request's opener ran: it started the fill; else it joined one in flight, or
        // one whose download is already complete and verified (being stored): a hit.
        if !gauge.is_opened() && !from_peer {
            self.warmed_hit(target, digest);
        }
        let outcome = if gauge.is_opened() {
            Outcome::Miss
        } else if fill.is_downloaded() {
            Outcome::Hit
        } else {
            Outcome::Coalesced
        };
        let tail = |start, end| match sendfile {
            // A fill's ranges are no larger than the copying path's chunks, so what waits for
            // the digest stays as small.
            Some(pending) => pending.ranges(fill.ranges(start, end, wharf_cache::CHUNK)),
            None => body::stream(fill.reader(start, end)),
        };
        let resp = match range::answer(range, size) {
            RangeAnswer::Full => blob_response(StatusCode::OK, digest, size, None, tail(0, size)),
            RangeAnswer::Partial { start, end } => blob_response(
                StatusCode::PARTIAL_CONTENT,
                digest,
                size,
                Some((start, end)),
                tail(start, end),
            ),
            RangeAnswer::Unsatisfiable => return Err(ProxyError::RangeNotSatisfiable { size }),
        };
        Ok(answered(outcome, cache_status(CACHE_MISS, resp)))
    }
}

impl Proxy {
    /// Starts (or joins) the fill of `digest` through `target`, holding `permit` (a place among
    /// `max_concurrent_fills`) while it downloads. Its bytes come from the object store
    /// replicas share when it has them (shared.rs), else from the replica that owns the digest
    /// unless the request came from a peer (cluster.rs), else from the upstream.
    pub(crate) fn start_fill(
        &self,
        target: &Target,
        digest: &Digest,
        permit: Option<tokio::sync::OwnedSemaphorePermit>,
        gauge: Arc<FillGauge>,
        from_peer: bool,
    ) -> Arc<wharf_cache::Fill> {
        let origin = Arc::new(Origin::default());
        let peer = match &self.cluster {
            Some(cluster) if !from_peer => cluster.owner(digest).and_then(|owner| {
                let client = cluster.client(&owner, &target.upstream)?;
                Some(crate::cluster::Peer {
                    name: owner,
                    client,
                    cluster: cluster.clone(),
                })
            }),
            _ => None,
        };
        let open = opener(
            target,
            digest,
            permit,
            Sources {
                store: &self.store,
                metrics: &self.metrics,
                tier: self.tier.as_ref(),
                peer,
                origin: origin.clone(),
            },
            gauge.clone(),
        );
        // The fill outlives its request: a span of its own, linked to the request's.
        let span =
            tracing::info_span!(parent: None, "fill", %digest, upstream = %target.upstream.name);
        span.follows_from(tracing::Span::current());
        let fill = span.in_scope(|| self.store.fill(digest, open));
        self.after_fill(target, fill.clone(), origin, gauge);
        fill
    }
}

/// What an opener reads from besides the upstream, and where it records what it did.
struct Sources<'a> {
    store: &'a Arc<Store>,
    metrics: &'a Metrics,
    tier: Option<&'a wharf_tier::Tier>,
    /// The replica that owns the digest, if it is another.
    peer: Option<crate::cluster::Peer>,
    origin: Arc<Origin>,
}

fn answered(outcome: Outcome, mut resp: Response<Body>) -> Response<Body> {
    resp.extensions_mut().insert(Answered(outcome));
    resp
}

/// `X-Wharf-Cache: hit` when the blob was already in the store, `miss` when this request had to
/// go upstream (or join a download in progress): `wharf prefetch` reports and skips by it.
const CACHE_HIT: &str = "hit";
const CACHE_MISS: &str = "miss";

fn cache_status(value: &'static str, mut resp: Response<Body>) -> Response<Body> {
    resp.headers_mut()
        .insert("x-wharf-cache", HeaderValue::from_static(value));
    resp
}

/// How a fill opens its body, from byte `offset` on: the shared object store's copy if there
/// is one, else the upstream's. An upstream answer records that the repository holds the
/// digest (before any reader hears the fill is ready).
fn opener(
    target: &Target,
    digest: &Digest,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    sources: Sources<'_>,
    gauge: Arc<FillGauge>,
) -> Opener {
    let Sources {
        store,
        metrics,
        tier,
        peer,
        origin,
    } = sources;
    let tier = tier.cloned();
    let tier_metrics = metrics.clone();
    let store = store.clone();
    let upstream = target.upstream.name.clone();
    let received = metrics
        .upstream_received_bytes
        .with_label_values(&[&target.upstream.name]);
    let client = target.upstream.client.clone();
    let repo = target.repo.as_str().to_owned();
    let digest = digest.clone();
    // The hops of the request that starts the fill: the fill runs in a task of its own.
    let hops = wharf_upstream::incoming_via();
    Arc::new(move |offset: u64| {
        let _fill_permit = &permit;
        gauge.opened();
        let (client, repo, digest) = (client.clone(), repo.clone(), digest.clone());
        let (store, upstream) = (store.clone(), upstream.clone());
        let received = received.clone();
        let (tier, tier_metrics, origin) = (tier.clone(), tier_metrics.clone(), origin.clone());
        let peer = peer.clone();
        // A peer's request carries them too: its own fill goes on with them.
        wharf_upstream::with_incoming_via(hops.clone(), async move {
            if let Some(tier) = &tier
                && let Some(source) =
                    shared::tier_source(tier, &tier_metrics, &digest, offset, &origin).await
            {
                return Ok(source);
            }
            if let Some(peer) = &peer
                && let Some(source) = peer
                    .source(&repo, &digest, offset, &tier_metrics, &origin)
                    .await
            {
                return Ok(source);
            }
            origin.opened_upstream();
            let from = (offset > 0).then_some(offset);
            let resp = client
                .blob(Method::GET, &repo, &digest, from)
                .await
                .map_err(|e| Arc::new(e) as SourceError)?;
            store.add_scope(ScopeKey {
                upstream: &upstream,
                repository: &repo,
                digest: &digest,
            });
            if offset > 0 && resp.status != StatusCode::PARTIAL_CONTENT {
                return Err(Arc::new(ResumeRefused) as SourceError);
            }
            let len = content_length(&resp.headers);
            // A body that breaks sends the fill's resume (from the byte on disk) to another of
            // the upstream's URLs, if it has mirrors.
            let url = resp.url;
            let body = resp
                .body
                .into_data_stream()
                .inspect_ok(move |chunk| received.inc_by(chunk.len() as u64))
                .inspect_err(move |_| client.url_failed(&url))
                .map_err(|e| Arc::new(e) as SourceError)
                .boxed();
            Ok(FillSource { len, body })
        })
        .boxed()
    })
}

#[derive(Debug, thiserror::Error)]
#[error("the upstream ignored the Range request, so the download cannot resume")]
struct ResumeRefused;

/// A stored blob's answer: whole, the one range asked for (206), or its size alone (HEAD).
pub(crate) fn stored_blob(
    file: std::fs::File,
    size: u64,
    digest: &Digest,
    head: bool,
    range: Option<&str>,
    sendfile: Option<&Pending>,
) -> Result<Response<Body>, ProxyError> {
    let file_range = |start, end| match sendfile {
        Some(pending) => pending.file_range(file, start, end),
        None => body::file_range(file, start, end),
    };
    Ok(match range::answer(range, size) {
        _ if head => blob_response(StatusCode::OK, digest, size, None, body::empty()),
        RangeAnswer::Full => blob_response(StatusCode::OK, digest, size, None, file_range(0, size)),
        RangeAnswer::Partial { start, end } => blob_response(
            StatusCode::PARTIAL_CONTENT,
            digest,
            size,
            Some((start, end)),
            file_range(start, end),
        ),
        RangeAnswer::Unsatisfiable => return Err(ProxyError::RangeNotSatisfiable { size }),
    })
}

fn blob_response(
    status: StatusCode,
    digest: &Digest,
    size: u64,
    range: Option<(u64, u64)>,
    body: Body,
) -> Response<Body> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    let len = range.map_or(size, |(s, e)| e - s);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(d) = HeaderValue::from_str(&digest.to_string()) {
        h.insert("docker-content-digest", d);
    }
    if let Ok(e) = HeaderValue::from_str(&format!("\"{digest}\"")) {
        h.insert(header::ETAG, e);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=31536000"),
    );
    if let Some((s, e)) = range
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {}-{}/{}", s, e - 1, size))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    resp
}

/// `Cache-Control: only-if-cached`: what is not held is answered 504 at once, not asked for.
fn only_if_cached(req_headers: &HeaderMap, digest: &Digest) -> Result<(), ProxyError> {
    let asked = req_headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|d| d.trim().eq_ignore_ascii_case("only-if-cached"));
    if asked {
        return Err(ProxyError::NotCached {
            digest: digest.clone(),
        });
    }
    Ok(())
}
