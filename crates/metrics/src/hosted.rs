//! The hosted repositories' families (`wharf_hosted_*`): what garbage collection of the hosted
//! store removed. Counted by the collector and copied in when `/metrics` is scraped, as the
//! cache's families are.

use prometheus::{IntCounter, Registry};

use crate::counter;

/// `wharf_hosted_gc_runs_total`, `wharf_hosted_gc_collected_blobs_total`,
/// `wharf_hosted_gc_collected_bytes_total`.
#[derive(Clone)]
pub struct HostedMetrics {
    /// Collections completed.
    pub gc_runs: IntCounter,
    /// Pieces of content (blobs and manifests) removed because nothing referenced them.
    pub gc_collected: IntCounter,
    /// Their bytes.
    pub gc_collected_bytes: IntCounter,
}

/// The collector's counts since start-up.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostedGcSnapshot {
    pub runs: u64,
    pub collected: u64,
    pub collected_bytes: u64,
}

impl HostedMetrics {
    pub(crate) fn new(r: &Registry) -> prometheus::Result<HostedMetrics> {
        Ok(HostedMetrics {
            gc_runs: counter(
                r,
                "wharf_hosted_gc_runs_total",
                "Garbage collections of the hosted store completed.",
            )?,
            gc_collected: counter(
                r,
                "wharf_hosted_gc_collected_blobs_total",
                "Blobs and manifests garbage collection removed from the hosted store.",
            )?,
            gc_collected_bytes: counter(
                r,
                "wharf_hosted_gc_collected_bytes_total",
                "Bytes garbage collection removed from the hosted store.",
            )?,
        })
    }

    /// Follows the collector's counts (they only grow).
    pub fn set_gc(&self, s: HostedGcSnapshot) {
        let grow = |c: &IntCounter, to: u64| {
            let cur = c.get();
            if to > cur {
                c.inc_by(to - cur);
            }
        };
        grow(&self.gc_runs, s.runs);
        grow(&self.gc_collected, s.collected);
        grow(&self.gc_collected_bytes, s.collected_bytes);
    }
}
