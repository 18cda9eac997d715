//! Metric families for wharf: every family wharf exports is defined here, registered into a
//! [`prometheus::Registry`] that the caller passes in (no global statics, so a test can build
//! its own and read it).
//!
//! # Naming rule
//!
//! `wharf_<subsystem>_<name>_<unit>[_total]`: subsystem one of `http` (the client-facing
//! registry API), `proxy`, `upstream`, `fill`, `cache`, `tag`, `hosted`, `warm`, `tier`; the unit in base units (`seconds`,
//! `bytes`); counters end in `_total`. `wharf_build_info` follows the Prometheus convention for
//! an info metric.
//!
//! # Labels
//!
//! Only from small fixed sets:
//!
//! | label          | values                                                                  |
//! |----------------|-------------------------------------------------------------------------|
//! | `upstream`     | a configured upstream's name, or `none` before one is selected          |
//! | `endpoint`     | [`Endpoint`]: `ping`, `manifest`, `blob`, `tags`, `referrers`, `upload`, `signatures`, `catalog`, `other` |
//! | `result`       | [`Outcome`]: `hit`, `miss`, `coalesced`, `stale`, `error`, `none`        |
//! | `source`       | `cache`, `upstream`                                                     |
//! | `url`          | `host[:port]` of an upstream's configured `url` or `mirrors`             |
//! | `peer`         | `host:port` of a replica of the fleet (`[cluster]`: configured, or found in DNS) |
//! | `method`       | `GET`, `HEAD`, `other`                                                  |
//! | `status_class` | `2xx`, `3xx`, `4xx`, `5xx`, `error` (no answer), `timeout`              |
//! | `reason`       | stale serves: `upstream_failed`, `rate_limited`, `backing_off`, `revalidation_slow`; cache write failures: `no_space` |
//!
//! Never a repository, a tag, a digest, a user or an error text: those are unbounded, and some
//! are secrets.

pub use prometheus;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder, exponential_buckets,
};

mod hosted;
mod labels;
mod tier;
mod warming;

pub use hosted::{HostedGcSnapshot, HostedMetrics};
pub use labels::{Endpoint, Outcome, method_label, status_class};
pub use tier::TierMetrics;
pub use warming::WarmingMetrics;

/// Every family wharf exports. Cheap to share behind an `Arc`; the families are handles.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,

    /// `wharf_build_info{version}`: always 1.
    pub build_info: IntGaugeVec,

    /// `wharf_http_requests_total{upstream,endpoint,result}`.
    pub http_requests: IntCounterVec,
    /// `wharf_http_request_duration_seconds{endpoint,result}`: until the response body ended.
    pub http_duration: HistogramVec,
    /// `wharf_http_time_to_first_byte_seconds{endpoint}`: until the response head was ready.
    pub http_ttfb: HistogramVec,
    /// `wharf_http_response_bytes_total{endpoint}`: response body bytes sent to clients.
    pub http_response_bytes: IntCounterVec,

    /// `wharf_proxy_served_bytes_total{upstream,source}`: manifest and blob bytes sent to
    /// clients, by where they came from (`cache`, `upstream`).
    pub served_bytes: IntCounterVec,

    /// `wharf_upstream_requests_total{upstream,method,status_class}`.
    pub upstream_requests: IntCounterVec,
    /// `wharf_upstream_url_requests_total{upstream,url,result}`: requests by the configured URL
    /// (`url` or one of `mirrors`, as `host[:port]`) that answered (`ok`) or failed over
    /// (`failed`).
    pub upstream_url_requests: IntCounterVec,
    /// `wharf_upstream_request_duration_seconds{upstream,method}`: until the response head.
    pub upstream_duration: HistogramVec,
    /// `wharf_upstream_received_bytes_total{upstream}`: blob bytes read from upstreams by fills.
    pub upstream_received_bytes: IntCounterVec,
    /// `wharf_upstream_token_fetches_total{upstream,result}`: `ok` or `error`.
    pub token_fetches: IntCounterVec,
    /// `wharf_upstream_ratelimit_remaining_requests{upstream}`: Docker Hub's
    /// `ratelimit-remaining`, when the upstream sends it.
    pub ratelimit_remaining: IntGaugeVec,

    /// `wharf_fill_started_total{upstream}`.
    pub fills_started: IntCounterVec,
    /// `wharf_fill_in_flight_fills{upstream}`.
    pub fills_in_flight: IntGaugeVec,
    /// `wharf_fill_waiting_readers{upstream}`: requests waiting for a fill to start streaming.
    pub fill_waiters: IntGaugeVec,

    /// `wharf_cache_size_bytes`, `wharf_cache_budget_bytes`, `wharf_cache_entries`.
    pub cache_size: IntGauge,
    pub cache_budget: IntGauge,
    pub cache_entries: IntGauge,
    /// `wharf_cache_evictions_total`, `wharf_cache_evicted_bytes_total`.
    pub cache_evictions: IntCounter,
    pub cache_evicted_bytes: IntCounter,
    /// `wharf_cache_scrubbed_bytes_total`: stored bytes read back and hashed by the scrubber.
    pub cache_scrubbed_bytes: IntCounter,
    /// `wharf_cache_scrub_faults_total`: stored content the scrubber found not to match its
    /// digest, and quarantined (fetched again on the next request).
    pub cache_scrub_faults: IntCounter,
    /// `wharf_cache_write_failures_total{reason}`: writes of new content (fills, manifests)
    /// the store's disk refused; `no_space` for a full disk (or quota).
    pub cache_write_failures: IntCounterVec,

    /// `wharf_tag_stale_served_total{upstream,reason}`.
    pub stale_served: IntCounterVec,
    /// `wharf_tag_revalidations_total{upstream,result}`: `unchanged`, `changed`,
    /// `failed_served_stale`, `failed`.
    pub tag_revalidations: IntCounterVec,

    /// `wharf_proxy_scope_checks_total{upstream,result}`: stored content asked for through a
    /// repository not known to hold it, checked with one upstream `HEAD`: `confirmed`,
    /// `not_found`, `refused` (401/403), `failed` (unreachable, backing off, other answers).
    pub scope_checks: IntCounterVec,

    /// `wharf_signature_fetches_total{upstream,result}`: signature lists asked of an
    /// upstream's signature store (lookaside): `found` (one or more), `none`, `failed`.
    pub signature_fetches: IntCounterVec,
    /// `wharf_signature_lists_served_total{upstream,source}`: signature lists answered to
    /// clients (and checked by policy): `store` (fresh), `lookaside` (fetched now), `stale`
    /// (the store's, the lookaside failing), `none` (no lookaside, or failing with nothing
    /// stored).
    pub signature_lists: IntCounterVec,
    /// `wharf_signature_policy_refusals_total{upstream,reason}`: manifests refused because
    /// no signature verified (`require_signature`): `unsigned`, `invalid`, `unavailable`; and
    /// blobs refused because no verified manifest names them: `unverified_blob`.
    pub policy_refusals: IntCounterVec,

    /// `wharf_hosted_*`: the hosted store's garbage collection (hosted.rs).
    pub hosted: HostedMetrics,
    /// `wharf_warm_*`: predictive warming of moved tags (warming.rs).
    pub warming: WarmingMetrics,
    /// `wharf_tier_*`, `wharf_fills_by_source_total`: the object store replicas share (tier.rs).
    pub tier: TierMetrics,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Cache gauges and counters, read from the store when scraped.
#[derive(Debug, Clone, Copy, Default)]
pub struct CacheSnapshot {
    pub size_bytes: u64,
    pub budget_bytes: u64,
    pub entries: u64,
    pub evictions: u64,
    pub evicted_bytes: u64,
    pub scrubbed_bytes: u64,
    pub scrub_faults: u64,
    /// Writes refused for lack of space.
    pub no_space_failures: u64,
}

pub(crate) fn counter_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntCounterVec> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

fn gauge_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntGaugeVec> {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(g.clone()))?;
    Ok(g)
}

fn gauge(r: &Registry, name: &str, help: &str) -> prometheus::Result<IntGauge> {
    let g = IntGauge::new(name, help)?;
    r.register(Box::new(g.clone()))?;
    Ok(g)
}

pub(crate) fn counter(r: &Registry, name: &str, help: &str) -> prometheus::Result<IntCounter> {
    let c = IntCounter::new(name, help)?;
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

fn histogram_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<HistogramVec> {
    // 1 ms .. ~150 s
    let buckets = exponential_buckets(0.001, 2.5, 14)?;
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)?;
    r.register(Box::new(h.clone()))?;
    Ok(h)
}

impl Metrics {
    /// Creates every family and registers it into `registry`. Fails only if a family of the
    /// same name is already registered there.
    pub fn new(registry: &Registry) -> prometheus::Result<Metrics> {
        let r = registry;
        let m = Metrics {
            registry: r.clone(),
            build_info: gauge_vec(
                r,
                "wharf_build_info",
                "wharf's version; always 1.",
                &["version"],
            )?,
            http_requests: counter_vec(
                r,
                "wharf_http_requests_total",
                "Registry API requests by upstream, endpoint kind and result.",
                &["upstream", "endpoint", "result"],
            )?,
            http_duration: histogram_vec(
                r,
                "wharf_http_request_duration_seconds",
                "Registry API request time, until the response body ended.",
                &["endpoint", "result"],
            )?,
            http_ttfb: histogram_vec(
                r,
                "wharf_http_time_to_first_byte_seconds",
                "Registry API time until the response head was ready.",
                &["endpoint"],
            )?,
            http_response_bytes: counter_vec(
                r,
                "wharf_http_response_bytes_total",
                "Response body bytes sent to clients, by endpoint kind.",
                &["endpoint"],
            )?,
            served_bytes: counter_vec(
                r,
                "wharf_proxy_served_bytes_total",
                "Manifest and blob bytes sent to clients, by where they came from.",
                &["upstream", "source"],
            )?,
            upstream_requests: counter_vec(
                r,
                "wharf_upstream_requests_total",
                "Requests to upstream registries, by method and status class.",
                &["upstream", "method", "status_class"],
            )?,
            upstream_url_requests: counter_vec(
                r,
                "wharf_upstream_url_requests_total",
                "Requests to each configured URL of an upstream (url and mirrors), answered or failed over.",
                &["upstream", "url", "result"],
            )?,
            upstream_duration: histogram_vec(
                r,
                "wharf_upstream_request_duration_seconds",
                "Upstream request time until the response head.",
                &["upstream", "method"],
            )?,
            upstream_received_bytes: counter_vec(
                r,
                "wharf_upstream_received_bytes_total",
                "Blob bytes read from upstreams by fills.",
                &["upstream"],
            )?,
            token_fetches: counter_vec(
                r,
                "wharf_upstream_token_fetches_total",
                "Bearer token requests to upstream token realms, by result.",
                &["upstream", "result"],
            )?,
            ratelimit_remaining: gauge_vec(
                r,
                "wharf_upstream_ratelimit_remaining_requests",
                "The upstream's last ratelimit-remaining header (Docker Hub).",
                &["upstream"],
            )?,
            fills_started: counter_vec(
                r,
                "wharf_fill_started_total",
                "Blob fills started (one upstream download each).",
                &["upstream"],
            )?,
            fills_in_flight: gauge_vec(
                r,
                "wharf_fill_in_flight_fills",
                "Blob fills downloading now.",
                &["upstream"],
            )?,
            fill_waiters: gauge_vec(
                r,
                "wharf_fill_waiting_readers",
                "Requests waiting for a fill to start streaming.",
                &["upstream"],
            )?,
            cache_size: gauge(r, "wharf_cache_size_bytes", "Bytes stored.")?,
            cache_budget: gauge(
                r,
                "wharf_cache_budget_bytes",
                "The store's size budget (cache.max_size).",
            )?,
            cache_entries: gauge(r, "wharf_cache_entries", "Manifests and blobs stored.")?,
            cache_evictions: counter(
                r,
                "wharf_cache_evictions_total",
                "Entries evicted to stay within the budget.",
            )?,
            cache_evicted_bytes: counter(
                r,
                "wharf_cache_evicted_bytes_total",
                "Bytes evicted to stay within the budget.",
            )?,
            cache_scrubbed_bytes: counter(
                r,
                "wharf_cache_scrubbed_bytes_total",
                "Stored bytes read back and hashed by the scrubber.",
            )?,
            cache_scrub_faults: counter(
                r,
                "wharf_cache_scrub_faults_total",
                "Stored content the scrubber found not to match its digest, and quarantined.",
            )?,
            cache_write_failures: counter_vec(
                r,
                "wharf_cache_write_failures_total",
                "Writes of new content the store's disk refused, by reason (no_space).",
                &["reason"],
            )?,
            stale_served: counter_vec(
                r,
                "wharf_tag_stale_served_total",
                "Tag requests answered with a record the upstream could not confirm.",
                &["upstream", "reason"],
            )?,
            tag_revalidations: counter_vec(
                r,
                "wharf_tag_revalidations_total",
                "Tag revalidations against the upstream, by result.",
                &["upstream", "result"],
            )?,
            scope_checks: counter_vec(
                r,
                "wharf_proxy_scope_checks_total",
                "Stored content asked for through a repository not known to hold it, checked with one upstream HEAD, by result.",
                &["upstream", "result"],
            )?,
            signature_fetches: counter_vec(
                r,
                "wharf_signature_fetches_total",
                "Signature lists asked of an upstream's signature store (lookaside), by result.",
                &["upstream", "result"],
            )?,
            signature_lists: counter_vec(
                r,
                "wharf_signature_lists_served_total",
                "Signature lists answered to clients or checked by policy, by where they came from.",
                &["upstream", "source"],
            )?,
            policy_refusals: counter_vec(
                r,
                "wharf_signature_policy_refusals_total",
                "Manifests refused because no signature verified with the upstream's key, by reason.",
                &["upstream", "reason"],
            )?,
            hosted: HostedMetrics::new(r)?,
            warming: WarmingMetrics::new(r)?,
            tier: TierMetrics::new(r)?,
        };
        m.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        // Present at zero from the first scrape, so an alert can rate() it.
        m.cache_write_failures.with_label_values(&["no_space"]);
        Ok(m)
    }

    /// Families in a registry of their own: for tests and for callers that do not export.
    pub fn standalone() -> Metrics {
        #[allow(clippy::expect_used)]
        Metrics::new(&Registry::new()).expect("a fresh registry has no families to clash with")
    }

    /// The registry the families are in.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Makes every label combination a dashboard expects present for `upstream` (at zero), so
    /// rate() and ratios work from the first scrape.
    pub fn init_upstream(&self, upstream: &str) {
        for endpoint in [Endpoint::Manifest, Endpoint::Blob] {
            for result in [
                Outcome::Hit,
                Outcome::Miss,
                Outcome::Coalesced,
                Outcome::Stale,
                Outcome::Error,
            ] {
                self.http_requests.with_label_values(&[
                    upstream,
                    endpoint.as_str(),
                    result.as_str(),
                ]);
            }
        }
        for endpoint in [Endpoint::Manifest, Endpoint::Blob] {
            self.http_response_bytes
                .with_label_values(&[endpoint.as_str()]);
        }
        for source in ["cache", "upstream"] {
            self.served_bytes.with_label_values(&[upstream, source]);
        }
        for class in ["2xx", "4xx", "5xx", "error", "timeout"] {
            self.upstream_requests
                .with_label_values(&[upstream, "GET", class]);
        }
        self.upstream_received_bytes.with_label_values(&[upstream]);
        self.fills_started.with_label_values(&[upstream]);
        self.fills_in_flight.with_label_values(&[upstream]);
        self.fill_waiters.with_label_values(&[upstream]);
        self.token_fetches.with_label_values(&[upstream, "ok"]);
        self.token_fetches.with_label_values(&[upstream, "error"]);
        self.stale_served
            .with_label_values(&[upstream, "upstream_failed"]);
        for result in ["unchanged", "changed", "failed_served_stale", "failed"] {
            self.tag_revalidations
                .with_label_values(&[upstream, result]);
        }
        for result in ["confirmed", "not_found", "refused", "failed"] {
            self.scope_checks.with_label_values(&[upstream, result]);
        }
        for result in ["found", "none", "failed"] {
            self.signature_fetches
                .with_label_values(&[upstream, result]);
        }
        for source in ["store", "lookaside", "stale", "none"] {
            self.signature_lists.with_label_values(&[upstream, source]);
        }
        for reason in ["unsigned", "invalid", "unavailable", "unverified_blob"] {
            self.policy_refusals.with_label_values(&[upstream, reason]);
        }
        self.warming.init_upstream(upstream);
        self.tier.init_upstream(upstream);
    }

    /// Sets the cache families from the store's counters (called on each scrape).
    pub fn set_cache(&self, s: CacheSnapshot) {
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.cache_size.set(clamp(s.size_bytes));
        self.cache_budget.set(clamp(s.budget_bytes));
        self.cache_entries.set(clamp(s.entries));
        // The store counts; these counters follow it (they only grow).
        let grow = |c: &IntCounter, to: u64| {
            let cur = c.get();
            if to > cur {
                c.inc_by(to - cur);
            }
        };
        grow(&self.cache_evictions, s.evictions);
        grow(&self.cache_evicted_bytes, s.evicted_bytes);
        grow(&self.cache_scrubbed_bytes, s.scrubbed_bytes);
        grow(&self.cache_scrub_faults, s.scrub_faults);
        grow(
            &self.cache_write_failures.with_label_values(&["no_space"]),
            s.no_space_failures,
        );
    }

    /// The text exposition format (`text/plain; version=0.0.4`).
    pub fn encode(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            return format!("# encoding failed: {e}\n");
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// The `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests;
