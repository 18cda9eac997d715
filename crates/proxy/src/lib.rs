//! wharf's HTTP front.
//!
//! A request's way through:
//!
//! ```text
//! accept (TCP) -> hyper-util auto (HTTP/1.1, h2c) -> Proxy::handle
//!   -> route::parse_path: /v2/ ping | /[<mount>/]v2/<name>/{manifests,blobs,tags,referrers,blobs/uploads}
//!      (parsed from the end; name, tag and digest validated, never percent-decoded)
//!   -> Upstreams::select: ?ns=<prefix> | /<mount>/v2/ | first name component | default upstream
//!      (anything else: NAME_UNKNOWN; library/ added for Docker Hub)
//!   -> manifest: by digest from the store, else one GET, verified, stored byte-exact
//!      by tag: fresh record (tag_ttl, immutable_tags) -> its digest; else one HEAD upstream;
//!      upstream unreachable / 5xx / 429 / timeout -> last known digest (freshness.rs)
//!   -> blob: stored file (Range honoured) | the digest's fill, tailed while it grows
//!   -> tags/list: passed through, Link rewritten to the client's path
//!   -> errors: ProxyError::into_response, the one place that writes OCI error JSON
//! ```
//!
//! The admin listener (`admin.rs`, `server.admin_listen`) is separate: `/healthz`, `/readyz`
//! and the JSON API behind `wharf cache stats|ls|rm`.

pub mod admin;
mod blob;
pub mod body;
mod error;
pub mod freshness;
mod manifest;
pub mod range;
pub mod route;
mod server;
mod tags;
pub mod upstreams;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::time::Instant;

use http::{HeaderMap, HeaderValue, Method, Request, Response, header};
use wharf_cache::Store;
use wharf_oci::{Digest, ErrorCode, NameError};

pub use body::Body;
pub use error::ProxyError;
pub use server::serve;
pub use upstreams::{Upstream, Upstreams};

use route::{Endpoint, RouteError};

/// The registry API: routes requests to upstreams through the store.
pub struct Proxy {
    upstreams: Upstreams,
    store: Arc<Store>,
    /// Tag requests answered with a record the upstream could not confirm (stale-if-error).
    stale_served: AtomicU64,
}

impl Proxy {
    pub fn new(upstreams: Upstreams, store: Arc<Store>) -> Arc<Self> {
        Arc::new(Proxy {
            upstreams,
            store,
            stale_served: AtomicU64::new(0),
        })
    }

    pub fn upstreams(&self) -> &Upstreams {
        &self.upstreams
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// How many tag requests were answered stale because the upstream failed.
    pub fn stale_served(&self) -> u64 {
        self.stale_served.load(Ordering::Relaxed)
    }

    /// Answers one request. Never fails: every error becomes an OCI error response.
    pub async fn handle<B>(self: Arc<Self>, req: Request<B>) -> Response<Body> {
        let started = Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let head = method == Method::HEAD;
        let mut resp = match self.route(&req).await {
            Ok(r) => r,
            Err(e) => {
                if !matches!(e, ProxyError::Oci { .. }) {
                    tracing::warn!(%method, path, error = %e, "request failed");
                }
                e.into_response(head)
            }
        };
        let h = resp.headers_mut();
        h.insert(
            "docker-distribution-api-version",
            HeaderValue::from_static("registry/2.0"),
        );
        tracing::info!(
            target: "wharf::access",
            %method,
            path,
            status = resp.status().as_u16(),
            ms = started.elapsed().as_millis() as u64,
        );
        resp
    }

    async fn route<B>(&self, req: &Request<B>) -> Result<Response<Body>, ProxyError> {
        let head = match *req.method() {
            Method::GET => false,
            Method::HEAD => true,
            _ => {
                return Err(ProxyError::oci(
                    ErrorCode::Unsupported,
                    "wharf serves pulls: only GET and HEAD are supported",
                ));
            }
        };
        let parsed = route::parse_path(req.uri().path()).map_err(|e| match e {
            RouteError::NotFound => {
                ProxyError::oci(ErrorCode::NameUnknown, "not a registry API path")
            }
            RouteError::Name(NameError::InvalidDigest(e)) => {
                ProxyError::oci(ErrorCode::DigestInvalid, e.to_string())
            }
            RouteError::Name(e @ NameError::InvalidTag(_)) => {
                ProxyError::oci(ErrorCode::TagInvalid, e.to_string())
            }
            RouteError::Name(e) => ProxyError::oci(ErrorCode::NameInvalid, e.to_string()),
        })?;
        let Some(name) = parsed.endpoint.name() else {
            return Ok(ping());
        };
        let query = req.uri().query();
        let ns = route::query_param(query, "ns");
        let target = self
            .upstreams
            .select(ns.as_deref(), parsed.mount.as_deref(), name)
            .map_err(|e| ProxyError::oci(ErrorCode::NameUnknown, e.0))?;
        let mut resp = match &parsed.endpoint {
            Endpoint::Ping => ping(),
            Endpoint::Manifest { reference, .. } => {
                self.manifest(&target, reference, head, req.headers())
                    .await?
            }
            Endpoint::Blob { digest, .. } => {
                self.blob(&target, digest, head, req.headers()).await?
            }
            Endpoint::Tags { .. } => self.tags(&target, &parsed.client_base, query).await?,
            Endpoint::Referrers { .. } => {
                return Err(ProxyError::oci(
                    ErrorCode::ManifestUnknown,
                    "the referrers API is not proxied yet; use the tag schema",
                ));
            }
            Endpoint::Uploads { .. } => {
                return Err(ProxyError::oci(
                    ErrorCode::Unsupported,
                    "pushing to a mirrored repository is not supported",
                ));
            }
        };
        if let Some(ns) = ns.and_then(|ns| HeaderValue::from_str(&ns).ok()) {
            resp.headers_mut().insert("oci-namespace", ns);
        }
        Ok(resp)
    }
}

fn ping() -> Response<Body> {
    let mut resp = Response::new(body::full("{}"));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// The `Docker-Content-Digest` header, if present and valid.
pub(crate) fn header_digest(h: &HeaderMap) -> Option<Digest> {
    h.get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Digest::parse(v.trim()).ok())
}

pub(crate) fn content_length(h: &HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}
