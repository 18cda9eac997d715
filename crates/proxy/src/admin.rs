//! The admin listener (`server.admin_listen`, loopback by default; never the registry port):
//! health, readiness, and the small JSON API that `wharf cache stats|ls|rm` calls.
//!
//! ```text
//! GET  /healthz              200 "ok" while the process serves
//! GET  /readyz               200 once the store is open and writable, else 503
//! GET  /admin/cache/stats    size, budget, entries, hit ratio (see `Answered`), stale answers
//! GET  /admin/cache/tags     tag records per upstream and repository
//! POST /admin/cache/rm       {"ref": "<name>[:tag|@digest]", "image": bool}: drop a tag (or a
//!                            whole image: its manifests, config and layers) so the next pull
//!                            fetches it again
//! GET  /metrics              Prometheus text exposition (the `wharf-metrics` families)
//! ```
//!
//! References name upstreams as clients do: `oracle/os/oraclelinux:7-slim`,
//! `container-registry.oracle.com/os/oraclelinux:7-slim`, or a bare `hello:latest` for the
//! default upstream (see `upstreams.rs`).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use wharf_cache::TagKey;
use wharf_oci::manifest::{self, Manifest};
use wharf_oci::{Digest, ImageReference, Reference, RepositoryName};

use crate::body::{self, Body};
use crate::limits::Limits;
use crate::server::{self, Service};
use crate::{Proxy, ServerOptions};

/// Largest request body the admin API reads.
const MAX_BODY: usize = 64 * 1024;

/// How long open admin requests may take to finish after `shutdown`.
const DRAIN: Duration = Duration::from_secs(2);

/// The admin API as a listener's [`Service`].
pub struct Admin {
    proxy: Arc<Proxy>,
}

impl Service for Admin {
    async fn call(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        handle(&self.proxy, req).await
    }
}

/// Serves the admin API for `proxy` on `listener` until `shutdown` resolves, on the same
/// accept loop as the registry API (`server.rs`): graceful shutdown, idle and header
/// timeouts, and a bound of [`Limits::admin`] connections.
pub async fn serve(listener: TcpListener, proxy: Arc<Proxy>, shutdown: impl Future<Output = ()>) {
    let options = ServerOptions {
        tls: None,
        limits: Limits::admin(),
    };
    server::serve_with(
        listener,
        Arc::new(Admin { proxy }),
        shutdown,
        DRAIN,
        options,
    )
    .await;
}

/// Answers one admin request.
pub async fn handle<B>(proxy: &Proxy, req: Request<B>) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let resp = match (&method, path.as_str()) {
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::GET, "/readyz") => match proxy.store().check_writable().await {
            Ok(()) => json_response(StatusCode::OK, &json!({"status": "ready"})),
            Err(e) => json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"status": "unavailable", "error": e.to_string()}),
            ),
        },
        (&Method::GET, "/metrics") => metrics(proxy),
        (&Method::GET, "/admin/cache/stats") => json_response(StatusCode::OK, &stats(proxy)),
        (&Method::GET, "/admin/cache/tags") => json_response(StatusCode::OK, &tags(proxy)),
        (&Method::POST, "/admin/cache/rm") => match read_json(req).await {
            Ok(v) => rm(proxy, &v).await,
            Err(e) => error(StatusCode::BAD_REQUEST, e),
        },
        (&Method::POST, "/admin/gc") => gc(proxy).await,
        (
            _,
            "/healthz" | "/readyz" | "/metrics" | "/admin/cache/stats" | "/admin/cache/tags"
            | "/admin/cache/rm" | "/admin/gc",
        ) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not allowed on {path}"),
        ),
        _ => error(
            StatusCode::NOT_FOUND,
            format!("no admin endpoint at {path}"),
        ),
    };
    tracing::debug!(target: "wharf::admin", %method, path, status = resp.status().as_u16());
    resp
}

/// The store's gauges are read now; everything else is counted as it happens.
fn metrics(proxy: &Proxy) -> Response<Body> {
    let s = proxy.store().stats();
    let m = proxy.metrics();
    m.set_cache(wharf_metrics::CacheSnapshot {
        size_bytes: s.size_bytes,
        budget_bytes: s.max_size_bytes,
        entries: s.entries,
        evictions: s.evictions,
        evicted_bytes: s.evicted_bytes,
        scrubbed_bytes: s.scrubbed_bytes,
        scrub_faults: s.scrub_faults,
        no_space_failures: s.no_space_failures,
    });
    if let Some(h) = proxy.hosted() {
        m.hosted.set_gc(h.gc_totals());
    }
    let mut resp = Response::new(body::full(m.encode()));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(wharf_metrics::CONTENT_TYPE),
    );
    resp
}

/// Manifest and blob requests answered from the store, and those answered otherwise: the one
/// hit ratio wharf reports (README, "Metrics"), the same as the dashboard's "Hit ratio" panels
/// and the `WharfHitRatioCollapse` alert compute from `wharf_http_requests_total`.
///
/// Counted by request, since wharf started: `hit` and `stale` (a tag record served while its
/// upstream failed) are from the store; `miss` and `coalesced` (it waited for another request's
/// upstream fetch) are not; errors were not answered and count on neither side. The store's own
/// lookup counters are no substitute: one request can look a digest up more than once (a HEAD,
/// a coalesced wait), so they gave another figure than the dashboard.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Answered {
    hits: u64,
    misses: u64,
}

impl Answered {
    fn of(metrics: &wharf_metrics::Metrics) -> Answered {
        use wharf_metrics::prometheus::core::Collector;
        let mut a = Answered::default();
        for family in metrics.http_requests.collect() {
            for m in family.get_metric() {
                let label = |name: &str| {
                    m.get_label()
                        .iter()
                        .find(|l| l.name() == name)
                        .map(|l| l.value().to_owned())
                };
                if !matches!(label("endpoint").as_deref(), Some("manifest" | "blob")) {
                    continue;
                }
                // Counters hold whole numbers; f64 is only how the exposition carries them.
                let n = m.get_counter().get_value() as u64;
                match label("result").as_deref() {
                    Some("hit" | "stale") => a.hits += n,
                    Some("miss" | "coalesced") => a.misses += n,
                    _ => {}
                }
            }
        }
        a
    }

    fn ratio(self) -> Option<f64> {
        let answered = self.hits + self.misses;
        (answered > 0).then(|| self.hits as f64 / answered as f64)
    }
}

fn stats(proxy: &Proxy) -> Value {
    let s = proxy.store().stats();
    let answered = Answered::of(proxy.metrics());
    json!({
        "size_bytes": s.size_bytes,
        "max_size_bytes": s.max_size_bytes,
        "entries": s.entries,
        "manifests": s.manifests,
        "blobs": s.entries - s.manifests.min(s.entries),
        "tags": s.tags,
        "hits": answered.hits,
        "misses": answered.misses,
        "hit_ratio": answered.ratio(),
        "stale_served": proxy.stale_served(),
    })
}

fn tags(proxy: &Proxy) -> Value {
    let store = proxy.store();
    let mut by_upstream: BTreeMap<String, BTreeMap<String, Vec<Value>>> = BTreeMap::new();
    // Every configured upstream is listed, even with nothing cached.
    for up in proxy.upstreams().iter() {
        by_upstream.entry(up.name.clone()).or_default();
    }
    for t in store.tags() {
        let immutable = proxy
            .upstreams()
            .iter()
            .find(|u| u.name == t.upstream)
            .is_some_and(|u| u.is_immutable(&t.tag));
        by_upstream
            .entry(t.upstream)
            .or_default()
            .entry(t.repository)
            .or_default()
            .push(json!({
                "tag": t.tag,
                "digest": t.record.digest.to_string(),
                "media_type": t.record.media_type,
                "size": t.record.size,
                "validated_secs_ago": t.record.validated_at.elapsed().as_secs(),
                "immutable": immutable,
                "manifest_cached": store.contains(&t.record.digest),
            }));
    }
    let upstreams: Vec<Value> = by_upstream
        .into_iter()
        .map(|(name, repos)| {
            let repositories: Vec<Value> = repos
                .into_iter()
                .map(|(repo, tags)| json!({"name": repo, "tags": tags}))
                .collect();
            json!({"name": name, "repositories": repositories})
        })
        .collect();
    json!({ "upstreams": upstreams })
}

/// The name and reference `r` names, as a client's pull does: a registry host stays the first
/// component (an upstream prefix, see `upstreams.rs`), and no tag means `latest`.
fn split_ref(r: &str) -> Result<(String, Reference), String> {
    let parsed = ImageReference::parse(r).map_err(|e| e.to_string())?;
    let name = match &parsed.registry {
        Some(host) => format!("{host}/{}", parsed.repository),
        None => parsed.repository.to_string(),
    };
    Ok((name, parsed.reference()))
}

async fn rm(proxy: &Proxy, body: &Value) -> Response<Body> {
    let Some(r) = body.get("ref").and_then(Value::as_str) else {
        return error(StatusCode::BAD_REQUEST, "the body needs a \"ref\" string");
    };
    let image = body.get("image").and_then(Value::as_bool).unwrap_or(false);
    let (name, reference) = match split_ref(r) {
        Ok(x) => x,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    // A registry host with a port (`registry.local:5000`) is no prefix wharf routes by.
    let name = match RepositoryName::parse(&name) {
        Ok(n) => n,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("{r:?}: {e}")),
    };
    let target = match proxy.upstreams().select(None, None, &name) {
        Ok(t) => t,
        Err(e) => return error(StatusCode::NOT_FOUND, e.0),
    };
    let (up, repo) = (&target.upstream.name, target.repo.as_str());
    let store = proxy.store();
    let mut removed_tags = Vec::new();
    let digest = match &reference {
        Reference::Tag(tag) => {
            let key = TagKey {
                upstream: up,
                repository: repo,
                tag,
            };
            let Some(rec) = store.remove_tag(key) else {
                return error(
                    StatusCode::NOT_FOUND,
                    format!("no tag record for {repo}:{tag} of upstream {up}"),
                );
            };
            removed_tags.push(tag.clone());
            rec.digest
        }
        Reference::Digest(d) => d.clone(),
    };
    let (mut removed, mut freed) = (0u64, 0u64);
    if image || matches!(reference, Reference::Digest(_)) {
        // The other tags of this repository that point at the image go too, so a pull by any
        // of them fetches it again rather than finding a record without its manifest.
        for t in store.tags() {
            if t.upstream == *up && t.repository == repo && t.record.digest == digest {
                store.remove_tag(t.key());
                removed_tags.push(t.tag);
            }
        }
        for d in image_content(proxy, &digest).await {
            if let Some(size) = store.remove(&d) {
                removed += 1;
                freed += size;
            }
        }
        if removed == 0 && removed_tags.is_empty() {
            return error(
                StatusCode::NOT_FOUND,
                format!("nothing cached for {repo}@{digest} of upstream {up}"),
            );
        }
    }
    if let Err(e) = store.flush().await {
        return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    }
    tracing::info!(upstream = %up, repo, reference = r, image, removed_tags = removed_tags.len(),
        removed, freed, "removed from the cache by an operator");
    json_response(
        StatusCode::OK,
        &json!({
            "upstream": up,
            "repository": repo,
            "digest": digest.to_string(),
            "removed_tags": removed_tags,
            "removed_content": removed,
            "freed_bytes": freed,
        }),
    )
}

/// `POST /admin/gc`: a garbage collection of the hosted store now, and what it did.
async fn gc(proxy: &Proxy) -> Response<Body> {
    match proxy.hosted().map(|h| h.collect_garbage()) {
        None => error(
            StatusCode::NOT_FOUND,
            "no [hosted] repositories are configured",
        ),
        Some(run) => match run.await {
            Ok(report) => json_response(StatusCode::OK, &report.to_json()),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        },
    }
}

/// The manifest `d` and everything it references that is stored: for an index, its child
/// manifests and theirs; for an image, its config and layers.
async fn image_content(proxy: &Proxy, d: &Digest) -> Vec<Digest> {
    let store = proxy.store();
    let mut out = vec![d.clone()];
    let mut manifests = vec![d.clone()];
    // Bounded: an index of indexes of indexes is already unusual.
    for _ in 0..4 {
        let mut next = Vec::new();
        for m in manifests {
            let Ok(Some((media_type, bytes))) = store.get_manifest(&m).await else {
                continue;
            };
            // A manifest wharf cannot read names nothing more to drop; it goes itself.
            let Ok(doc) = manifest::parse(&media_type, &bytes) else {
                continue;
            };
            out.extend(doc.digests().into_iter().cloned());
            if let Manifest::Index(children) = doc {
                next.extend(children.into_iter().map(|c| c.digest));
            }
        }
        if next.is_empty() {
            break;
        }
        manifests = next;
    }
    out.sort();
    out.dedup();
    out
}

async fn read_json<B>(req: Request<B>) -> Result<Value, String>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let bytes = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| format!("reading the request body: {e}"))?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| format!("the request body is not JSON: {e}"))
}

fn text(status: StatusCode, s: &'static str) -> Response<Body> {
    let mut resp = Response::new(body::full(s));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    let mut text = v.to_string();
    text.push('\n');
    let mut resp = Response::new(body::full(text));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn error(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    json_response(status, &json!({ "error": message.into() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `wharf cache stats` once said 62.5 % (the store's lookups) where the dashboard said
    /// 56.1 %: the stats now count what the dashboard counts, 23 requests from the store (hit,
    /// stale) of 41 answered.
    #[test]
    fn the_hit_ratio_is_the_dashboards() {
        let m = wharf_metrics::Metrics::standalone();
        let count = |up: &str, endpoint: &str, result: &str, n: u64| {
            m.http_requests
                .with_label_values(&[up, endpoint, result])
                .inc_by(n);
        };
        count("oracle", "blob", "hit", 12);
        count("oracle", "manifest", "hit", 6);
        count("docker", "manifest", "stale", 5);
        count("oracle", "blob", "miss", 10);
        count("docker", "blob", "coalesced", 8);
        // Neither side: errors were not answered, pings and tag lists hold no content.
        count("oracle", "blob", "error", 7);
        count("oracle", "ping", "none", 30);
        count("docker", "tags", "hit", 4);
        let a = Answered::of(&m);
        assert_eq!(
            a,
            Answered {
                hits: 23,
                misses: 18
            }
        );
        let r = a.ratio().expect("answered requests");
        assert!((r - 23.0 / 41.0).abs() < 1e-12, "{r}");
        assert_eq!(format!("{:.1}", r * 100.0), "56.1");
        assert_eq!(Answered::default().ratio(), None, "nothing answered yet");
    }

    #[test]
    fn references_split_like_docker_does() {
        let (n, r) = split_ref("oracle/os/oraclelinux:7-slim").expect("ref");
        assert!(n == "oracle/os/oraclelinux" && r == Reference::Tag("7-slim".into()));
        let (n, r) = split_ref("registry.local:5000/hello").expect("ref");
        assert!(n == "registry.local:5000/hello" && r == Reference::Tag("latest".into()));
        let d = Digest::sha256_of(b"x");
        let r = format!("hello@{d}");
        let (n, r) = split_ref(&r).expect("ref");
        assert!(n == "hello" && r == Reference::Digest(d));
        assert!(split_ref("hello:").is_err());
        assert!(split_ref("hello@sha256:nothex").is_err());
        let (n, _) = split_ref("Container-Registry.oracle.com/os/oraclelinux:9").expect("ref");
        assert_eq!(n, "container-registry.oracle.com/os/oraclelinux");
    }
}
