//! The shared tier's families (`wharf_tier_*`): what a replica asked of the object store that
//! replicas share, and where its fills came from. The tier itself is `wharf-tier`; the proxy
//! counts.

use prometheus::{IntCounterVec, Registry};

use crate::counter_vec;

/// `wharf_tier_requests_total{kind,result}`, `wharf_tier_written_bytes_total`,
/// `wharf_fills_by_source_total{upstream,source}`, `wharf_peer_requests_total{peer,result}`.
#[derive(Clone)]
pub struct TierMetrics {
    /// Reads and writes of the object store: `kind` `blob`, `manifest`, `tag`; `result` `hit`,
    /// `miss`, `written`, `error`, `skipped` (the store failed a moment ago and is left alone).
    pub requests: IntCounterVec,
    /// Bytes of verified blobs written to the object store.
    pub written_bytes: prometheus::IntCounter,
    /// Fills (downloads into the local store) by where their bytes came from: `object_store`,
    /// `upstream`, `peer`.
    pub fills: IntCounterVec,
    /// Blob requests to the peer that owns a digest, by `peer` (`host:port`, a replica of
    /// the fleet) and `result`: `ok` (it answered), `failed` (unreachable, an error, or its
    /// body broke: the fill went on from the upstream).
    pub peers: IntCounterVec,
}

impl TierMetrics {
    pub(crate) fn new(r: &Registry) -> prometheus::Result<TierMetrics> {
        let m = TierMetrics {
            requests: counter_vec(
                r,
                "wharf_tier_requests_total",
                "Requests to the object store replicas share, by kind (blob, manifest, tag) and result (hit, miss, written, error, skipped).",
                &["kind", "result"],
            )?,
            written_bytes: crate::counter(
                r,
                "wharf_tier_written_bytes_total",
                "Bytes of verified blobs written to the object store replicas share.",
            )?,
            fills: counter_vec(
                r,
                "wharf_fills_by_source_total",
                "Downloads into the local store by where their bytes came from (object_store, upstream, peer).",
                &["upstream", "source"],
            )?,
            peers: counter_vec(
                r,
                "wharf_peer_requests_total",
                "Blob requests to the replica that owns a digest, by peer and result (ok, failed).",
                &["peer", "result"],
            )?,
        };
        // Present at zero from the first scrape (a dashboard's rate() needs a series).
        for kind in ["blob", "manifest", "tag"] {
            for result in ["hit", "miss", "written", "error"] {
                m.requests.with_label_values(&[kind, result]);
            }
        }
        Ok(m)
    }

    pub(crate) fn init_upstream(&self, upstream: &str) {
        for source in ["object_store", "upstream", "peer"] {
            self.fills.with_label_values(&[upstream, source]);
        }
    }

    /// Counts one request of `kind` with `result`.
    pub fn count(&self, kind: &str, result: &str) {
        self.requests.with_label_values(&[kind, result]).inc();
    }
}
