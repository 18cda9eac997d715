//! wharf's HTTP front.
//!
//! A request's way through:
//!
//! ```text
//! accept (TCP or rustls, server.rs / tls.rs; bounds in limits.rs; first bytes that are no
//!   HTTP request get a 400 with error JSON, preface.rs)
//!   -> hyper http1, or http2 (h2 by ALPN, or the h2c preface) -> Proxy::handle
//!   -> request id + span `request` (id, method, endpoint, upstream)
//!   -> Proxy::admit (admit.rs): a Via naming this wharf (a loop)? 508; URI too long? 414;
//!      body on a pull? 413 (limits.rs); client authentication (auth.rs): 401 with wharf's own
//!      challenge
//!   -> route::parse_path: /v2/ ping | /v2/_catalog (catalog.rs: hosted and cached names the
//!      caller may pull) | /[<mount>/]v2/<name>/{manifests,blobs,tags,referrers,blobs/uploads}
//!      (parsed from the end; name, tag and digest validated, never percent-decoded)
//!   -> routing: ?ns=<prefix> | /<mount>/v2/ | first name component (Upstreams::select_named)
//!      | a hosted repository (hosted/: pushes and their pulls, a store of its own)
//!      | default upstream (anything else: NAME_UNKNOWN; library/ added for Docker Hub)
//!      not GET/HEAD: only to a hosted repository (DENIED when the name is an upstream's;
//!      UNSUPPORTED when nothing is hosted)
//!   -> manifest: by digest from the store, else one GET, verified, stored byte-exact
//!      by tag: fresh record (tag_ttl, immutable_tags) -> its digest; else one HEAD upstream,
//!      waited for at most revalidate_timeout, then finished in the background (revalidate.rs);
//!      upstream unreachable / 5xx / 429 / timeout -> last known digest (freshness.rs);
//!      a tag found moved: the platforms clients pulled of it warmed (warming.rs)
//!   -> blob: stored file (Range honoured; sendfile(2) on plain HTTP/1.1, sendfile.rs)
//!      | the digest's fill, tailed while it grows
//!   (stored content, by digest, only through an (upstream, repository) known to hold it,
//!    else after one HEAD with that repository's scope: scope.rs)
//!   -> an upstream with require_signature: a manifest only with a signature that verifies and
//!      names it, a blob only when a verified manifest names it (policy.rs)
//!   -> referrers: asked upstream, kept like a tag; a 404 (no referrers API) and a sigstore
//!      tag (sha256-<hex>.sig) the upstream lacks are remembered for a while (attached.rs)
//!   -> signatures (/extensions/v2/<name>/signatures/<digest>): the upstream's lookaside,
//!      kept in the store, served stale when it fails (signatures.rs)
//!   -> tags/list: asked upstream (n validated first), sorted, named as the client named it,
//!      Link rewritten to the client's path (tags.rs)
//!   -> errors: every refusal is a ProxyError variant; ProxyError::into_response (error.rs) is
//!      the one place that chooses status, headers (challenge, Content-Range, Retry-After) and
//!      the OCI error JSON
//!   -> observe::record: metrics, and the access line when the body ends
//!   (a fill runs in a span of its own, `fill`: digest, upstream, following the request's)
//!   (with [object_store]: local misses ask the object store replicas share before the
//!    upstream, and what came from the upstream is written there: shared.rs; with [cluster]:
//!    then the replica that owns the digest, so the fleet asks the upstream once: cluster.rs)
//! ```
//!
//! The admin listener (`admin.rs`, `server.admin_listen`) runs on the same accept loop
//! (`server.rs`, a [`Service`] of its own) and answers `/healthz`, `/readyz`,
//! `/metrics` (the families of `wharf-metrics`, counted by `observe.rs`)
//! and the JSON API behind `wharf cache stats|ls|rm`.

pub mod access;
pub mod admin;
mod admit;
mod attached;
pub mod auth;
mod blob;
pub mod body;
mod catalog;
pub mod cluster;
mod coalesce;
mod error;
pub mod freshness;
pub mod hosted;
pub mod limits;
mod manifest;
mod observe;
pub mod policy;
mod preface;
pub mod range;
mod revalidate;
pub mod route;
mod scope;
mod sendfile;
mod server;
mod shared;
mod signatures;
pub mod tags;
mod throttle;
pub mod tls;
pub mod upstreams;
mod version;
mod warming;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::time::Instant;

use http::{HeaderMap, HeaderValue, Method, Request, Response, header};
use tracing::Instrument as _;
use wharf_cache::Store;
use wharf_oci::{Digest, ErrorCode};

pub use body::Body;
pub use error::ProxyError;
pub use server::{ServerOptions, Service, serve, serve_with};
pub use upstreams::{Upstream, Upstreams};

use admit::Routed;
use route::{ParsedPath, Resource, RouteError};
use upstreams::Target;

/// The registry API: routes requests to upstreams through the store.
pub struct Proxy {
    upstreams: Upstreams,
    store: Arc<Store>,
    /// Tag requests answered with a record the upstream could not confirm (stale-if-error).
    stale_served: AtomicU64,
    /// Requests answered so far, for request ids.
    requests: AtomicU64,
    /// Distinguishes this run's request ids from another run's.
    run_id: u32,
    /// Who may pull; `None`: everyone, and `Authorization` is ignored.
    auth: Option<auth::ClientAuth>,
    /// Fills started at once (`cache.max_concurrent_fills`); a fill waits for a permit.
    pub(crate) fill_permits: Arc<tokio::sync::Semaphore>,
    /// Where requests, fills and stale answers are counted (`wharf-metrics`).
    pub(crate) metrics: wharf_metrics::Metrics,
    /// Which repeated warnings are written (one per kind per interval).
    pub(crate) warnings: throttle::Throttle,
    /// Referrers lists and sigstore tags as the upstreams last answered (attached.rs).
    attached: attached::Attached,
    /// What passed `require_signature` (policy.rs).
    verified: policy::Verified,
    /// Hosted repositories, if configured (`[hosted]`).
    hosted: Option<hosted::Hosted>,
    /// Tags (`upstream\0repo\0tag`) whose revalidation overran its deadline and still runs:
    /// served stale at once meanwhile (revalidate.rs).
    revalidating: std::sync::Mutex<std::collections::HashSet<String>>,
    /// What clients pulled of which tags, and what was fetched ahead of them (warming.rs).
    warming: warming::Warming,
    /// The object store replicas share, if configured (`[object_store]`, shared.rs).
    tier: Option<wharf_tier::Tier>,
    /// The other replicas of the fleet, if configured (`[cluster]`, cluster.rs).
    cluster: Option<Arc<cluster::Cluster>>,
    /// This proxy, for the tasks that outlive a request (a revalidation in the background).
    me: std::sync::Weak<Proxy>,
}

/// What a [`Proxy`] is built with besides its upstreams and store.
pub struct ProxyOptions {
    pub auth: Option<auth::ClientAuth>,
    /// Default 64.
    pub max_concurrent_fills: usize,
    /// Default: none; every push is refused.
    pub hosted: Option<hosted::Hosted>,
    /// The object store replicas share. Default: none, local disk only.
    pub tier: Option<wharf_tier::Tier>,
    /// The fleet this replica is one of. Default: none, a single wharf.
    pub cluster: Option<Arc<cluster::Cluster>>,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        ProxyOptions {
            auth: None,
            max_concurrent_fills: 64,
            hosted: None,
            tier: None,
            cluster: None,
        }
    }
}

impl Proxy {
    pub fn new(upstreams: Upstreams, store: Arc<Store>) -> Arc<Self> {
        Proxy::with_options(upstreams, store, ProxyOptions::default())
    }

    pub fn with_options(
        upstreams: Upstreams,
        store: Arc<Store>,
        options: ProxyOptions,
    ) -> Arc<Self> {
        Proxy::with_metrics(
            upstreams,
            store,
            options,
            wharf_metrics::Metrics::standalone(),
        )
    }

    /// As [`Proxy::with_options`], counting into `metrics` (which `/metrics` on the admin
    /// listener exports). Upstream clients count into it once given it with
    /// `Client::with_metrics`.
    pub fn with_metrics(
        upstreams: Upstreams,
        store: Arc<Store>,
        options: ProxyOptions,
        metrics: wharf_metrics::Metrics,
    ) -> Arc<Self> {
        let run_id = run_id();
        for up in upstreams.iter() {
            metrics.init_upstream(&up.name);
            up.client.set_via(&pseudonym(run_id));
        }
        Arc::new_cyclic(|me| Proxy {
            me: me.clone(),
            revalidating: Default::default(),
            warming: Default::default(),
            metrics,
            upstreams,
            store,
            stale_served: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            run_id,
            auth: options.auth,
            fill_permits: Arc::new(tokio::sync::Semaphore::new(
                options.max_concurrent_fills.max(1),
            )),
            warnings: throttle::Throttle::default(),
            attached: attached::Attached::default(),
            verified: policy::Verified::default(),
            hosted: options.hosted,
            tier: options.tier,
            cluster: options.cluster,
        })
    }

    /// Client authentication, if configured (SIGHUP reloads its htpasswd file).
    pub fn auth(&self) -> Option<&auth::ClientAuth> {
        self.auth.as_ref()
    }

    pub fn upstreams(&self) -> &Upstreams {
        &self.upstreams
    }

    pub fn metrics(&self) -> &wharf_metrics::Metrics {
        &self.metrics
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The hosted repositories, if configured.
    pub fn hosted(&self) -> Option<&hosted::Hosted> {
        self.hosted.as_ref()
    }

    /// How many tag requests were answered stale because the upstream failed.
    pub fn stale_served(&self) -> u64 {
        self.stale_served.load(Ordering::Relaxed)
    }

    /// Refuses a request whose `Via` names this run of wharf: it went out to an upstream and
    /// came back (`Via: 1.1 wharf-<run id>`, possibly among other hops).
    fn check_loop(&self, headers: &HeaderMap) -> Result<(), ProxyError> {
        let me = pseudonym(self.run_id);
        let looped = headers
            .get_all(header::VIA)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|hop| hop.split_whitespace().nth(1) == Some(me.as_str()));
        if looped {
            return Err(ProxyError::Loop { pseudonym: me });
        }
        Ok(())
    }

    /// A request id unique to this process run: a per-start random-ish prefix and a counter,
    /// so ids from two runs of wharf do not collide in one log store.
    fn next_request_id(&self) -> String {
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        format!("{:08x}-{n:x}", self.run_id)
    }

    /// Answers one request. Never fails: every error becomes an OCI error response
    /// (`error.rs`). The request gets its id first and a span (`request`: id, method, endpoint,
    /// upstream once chosen) that every log line on its way carries.
    pub async fn handle<B>(self: Arc<Self>, req: Request<B>) -> Response<Body>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + Sync + Unpin + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let started = Instant::now();
        let request_id = self.next_request_id();
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let query = req.uri().query().map(str::to_owned);
        // Parsed once: the metrics label, the auth check (ping or not) and routing all use it.
        let parsed = route::parse_path(&path);
        let is_ping = matches!(&parsed, Ok(p) if p.resource == Resource::Ping);
        let endpoint = parsed
            .as_ref()
            .map_or(wharf_metrics::Endpoint::Other, |p| p.resource.label())
            .as_str();
        let span = tracing::info_span!(
            "request",
            id = %request_id,
            %method,
            endpoint,
            upstream = tracing::field::Empty,
        );
        // A request another proxy forwarded: its hops go on with this wharf's upstream
        // requests, so a loop through several wharfs comes back to one that sees its own.
        let hops: Vec<HeaderValue> = req
            .headers()
            .get_all(header::VIA)
            .iter()
            .take(MAX_VIA_HOPS)
            .cloned()
            .collect();
        let answer = self.answer(req, &parsed).instrument(span.clone());
        let (upstream, result) = if hops.is_empty() {
            answer.await
        } else {
            wharf_upstream::with_incoming_via(hops, answer).await
        };
        // The spec's Registry Proxying: a request an `ns` scoped (it chose the upstream) says
        // so in `OCI-Namespace`, whatever the answer; an `ns` naming no upstream scoped nothing.
        let namespace = upstream
            .as_ref()
            .and(route::query_param(query.as_deref(), "ns"))
            .and_then(|ns| HeaderValue::from_str(&ns).ok());
        let resp = match result {
            Ok(resp) => resp,
            Err(e) => {
                let kind = || {
                    format!(
                        "failed/{}/{}",
                        upstream.as_deref().unwrap_or("none"),
                        e.status()
                    )
                };
                if !e.is_client_error()
                    && let Some(suppressed) = self.warnings.admit(&kind())
                {
                    span.in_scope(
                        || tracing::warn!(path, error = %e, suppressed, "request failed"),
                    );
                }
                e.into_response(method == Method::HEAD)
            }
        };
        let access = observe::Access {
            method,
            path,
            request_id: request_id.clone(),
            upstream: upstream.unwrap_or_else(|| "none".to_owned()),
        };
        let mut resp = observe::record(&self.metrics, access, endpoint, started, resp);
        let h = resp.headers_mut();
        h.insert(
            "docker-distribution-api-version",
            HeaderValue::from_static("registry/2.0"),
        );
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            h.insert("x-request-id", v);
        }
        if let Some(ns) = namespace {
            h.insert("oci-namespace", ns);
        }
        if is_ping {
            // containers/image reads it from the ping (a 401 too) and then asks wharf for
            // signatures through the API extension (signatures.rs).
            h.insert(
                "x-registry-supports-signatures",
                HeaderValue::from_static("1"),
            );
        }
        resp
    }

    /// Admits, routes and answers a request; returns the upstream that was chosen (if one was)
    /// beside the answer, for the metrics and the access line.
    async fn answer<B>(
        &self,
        req: Request<B>,
        parsed: &Result<ParsedPath, RouteError>,
    ) -> (Option<String>, Result<Response<Body>, ProxyError>)
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + Sync + Unpin + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let routed = match self.admit(&req, parsed).await {
            Ok(routed) => routed,
            Err(e) => return (None, Err(e)),
        };
        match routed {
            Routed::Ping => (None, Ok(ping())),
            Routed::Catalog(caller) => {
                let head = *req.method() == Method::HEAD;
                (None, self.catalog(&caller, req.uri().query(), head))
            }
            Routed::To(parsed, target) => {
                let name = target.upstream.name.clone();
                tracing::Span::current().record("upstream", name.as_str());
                (Some(name), self.dispatch(&req, parsed, &target).await)
            }
            Routed::Hosted(parsed, hosted, caller) => {
                tracing::Span::current().record("upstream", hosted::HOSTED);
                let answer = self.answer_hosted(hosted, req, parsed, &caller).await;
                (Some(hosted::HOSTED.to_owned()), answer)
            }
        }
    }

    /// Answers a routed request from the store or its upstream.
    async fn dispatch<B>(
        &self,
        req: &Request<B>,
        parsed: &ParsedPath,
        target: &Target,
    ) -> Result<Response<Body>, ProxyError> {
        let head = *req.method() == Method::HEAD;
        let query = req.uri().query();
        let resp = match &parsed.resource {
            Resource::Ping | Resource::Catalog => ping(),
            Resource::Manifest { reference, .. } => {
                self.manifest(target, reference, head, req.headers())
                    .await?
            }
            Resource::Blob { digest, .. } => {
                let sendfile = req.extensions().get::<sendfile::Pending>();
                self.blob(target, digest, head, req.headers(), sendfile)
                    .await?
            }
            Resource::Tags { name } => self.tags(target, name, &parsed.client_base, query).await?,
            Resource::Referrers { digest, .. } => {
                let artifact_type = route::query_param(query, "artifactType");
                self.referrers(target, digest, artifact_type.as_deref(), head)
                    .await?
            }
            Resource::Signatures { digest, .. } => self.signatures(target, digest, head).await?,
            Resource::Uploads { .. } => {
                return Err(ProxyError::oci(
                    ErrorCode::Unsupported,
                    "pushing to a mirrored repository is not supported",
                ));
            }
        };
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

/// `Via` header lines of a request passed on to the upstream requests made for it.
const MAX_VIA_HOPS: usize = 8;

/// How this run of wharf names itself in `Via` (`wharf-<run id>`, RFC 9110's pseudonym form).
fn pseudonym(run_id: u32) -> String {
    format!("wharf-{run_id:08x}")
}

/// A value that differs between runs of wharf: the start time's nanoseconds mixed with the pid.
fn run_id() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() ^ (d.as_secs() as u32));
    nanos ^ std::process::id().rotate_left(16)
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
