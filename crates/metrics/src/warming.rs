//! Predictive warming's families (`wharf_warm_*`): what was fetched ahead of clients when a tag
//! moved, and how much of it clients then used. Warming itself is the proxy's (`warming.rs`).

use prometheus::{IntCounterVec, Registry};

use crate::counter_vec;

/// `wharf_warm_runs_total`, `wharf_warm_blobs_total`, `wharf_warm_bytes_total`,
/// `wharf_warm_hits_total`, each by `upstream`.
#[derive(Clone)]
pub struct WarmingMetrics {
    /// Moved tags whose pulled platforms were warmed.
    pub runs: IntCounterVec,
    /// Blobs warming considered, by `result`: `fetched`, `present` (stored or being fetched
    /// already), `skipped` (the upstream's back-off window was open), `failed`.
    pub blobs: IntCounterVec,
    /// Bytes warming fetched from the upstream and stored.
    pub bytes: IntCounterVec,
    /// Warmed blobs a client then asked for (each counted once, on its first request).
    pub hits: IntCounterVec,
}

impl WarmingMetrics {
    pub(crate) fn new(r: &Registry) -> prometheus::Result<WarmingMetrics> {
        Ok(WarmingMetrics {
            runs: counter_vec(
                r,
                "wharf_warm_runs_total",
                "Moved tags whose previously pulled platforms were fetched ahead of clients.",
                &["upstream"],
            )?,
            blobs: counter_vec(
                r,
                "wharf_warm_blobs_total",
                "Blobs predictive warming considered, by result (fetched, present, skipped, failed).",
                &["upstream", "result"],
            )?,
            bytes: counter_vec(
                r,
                "wharf_warm_bytes_total",
                "Bytes predictive warming fetched from the upstream and stored.",
                &["upstream"],
            )?,
            hits: counter_vec(
                r,
                "wharf_warm_hits_total",
                "Warmed blobs a client then asked for, each counted on its first request.",
                &["upstream"],
            )?,
        })
    }

    /// Every series of `upstream` at zero, so rate() and ratios work from the first scrape.
    pub(crate) fn init_upstream(&self, upstream: &str) {
        self.runs.with_label_values(&[upstream]);
        for result in ["fetched", "present", "skipped", "failed"] {
            self.blobs.with_label_values(&[upstream, result]);
        }
        self.bytes.with_label_values(&[upstream]);
        self.hits.with_label_values(&[upstream]);
    }
}
