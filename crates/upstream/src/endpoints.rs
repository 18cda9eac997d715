//! An upstream's URLs: its `url` and its `mirrors`, the same content behind each, and which one
//! a request goes to.
//!
//! ```text
//! order:   URLs not in back-off, fastest first (latency measured from wharf's own requests,
//!          to the response head; within LATENCY_MARGIN of the fastest, configuration order
//!          wins, so `url` stays preferred while it keeps up), then URLs in back-off, the one
//!          whose back-off ends first first
//! failure: connect error, timeout, broken connection, 5xx, 429 (Error::is_failover)
//!          -> back-off of BACKOFF_BASE doubling to BACKOFF_MAX; once it has passed, the URL
//!             is tried again by the next request (the probe), and a success clears it
//! ```

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use http::Uri;
use tokio::time::Instant;

/// The first back-off of a failed URL; each further failure in a row doubles it.
pub(crate) const BACKOFF_BASE: Duration = Duration::from_secs(2);
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Latencies this close to the fastest count as equal.
const LATENCY_MARGIN: Duration = Duration::from_millis(20);

/// One URL of the upstream.
#[derive(Debug)]
pub(crate) struct Endpoint {
    /// `scheme://authority[/path]`, no trailing slash: request paths go after it.
    pub base: String,
    /// `scheme://authority`: the origin redirects and challenges are judged by.
    pub origin: Uri,
    /// `host[:port]`, for metric labels and logs (a bounded set: the configuration's).
    pub label: String,
    health: Mutex<Health>,
}

#[derive(Debug, Default)]
struct Health {
    /// Failures in a row.
    failures: u32,
    /// Not asked before this (unless every URL is failing).
    retry_at: Option<Instant>,
    /// Moving average of the time to the response head.
    latency: Option<Duration>,
}

impl Endpoint {
    pub(crate) fn new(base: String, origin: Uri) -> Endpoint {
        let label = origin
            .authority()
            .map(|a| a.as_str().to_owned())
            .unwrap_or_default();
        Endpoint {
            base,
            origin,
            label,
            health: Mutex::new(Health::default()),
        }
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An answer came (any status but 5xx and 429) after `latency`.
    pub(crate) fn succeeded(&self, latency: Duration) {
        let mut h = self.health();
        h.failures = 0;
        h.retry_at = None;
        h.latency = Some(match h.latency {
            // Weight 1/4 on the newest sample: one slow answer does not reorder the URLs.
            Some(old) => (old * 3 + latency) / 4,
            None => latency,
        });
    }

    /// The URL failed: left alone for its back-off. Returns the back-off.
    pub(crate) fn failed(&self) -> Duration {
        let mut h = self.health();
        h.failures = h.failures.saturating_add(1);
        let backoff = BACKOFF_BASE
            .saturating_mul(1 << (h.failures - 1).min(8))
            .min(BACKOFF_MAX);
        h.retry_at = Some(Instant::now() + backoff);
        backoff
    }
}

/// Every URL of one upstream, `url` first.
#[derive(Debug)]
pub(crate) struct Endpoints {
    all: Vec<Endpoint>,
}

impl Endpoints {
    pub(crate) fn new(all: Vec<Endpoint>) -> Endpoints {
        Endpoints { all }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Endpoint> {
        self.all.iter()
    }

    pub(crate) fn by_label(&self, label: &str) -> Option<&Endpoint> {
        self.all.iter().find(|e| e.label == label)
    }

    /// The URLs in the order to try them (see the module's drawing).
    pub(crate) fn order(&self) -> Vec<&Endpoint> {
        let now = Instant::now();
        let snapshot: Vec<(usize, Option<Instant>, Option<Duration>)> = self
            .all
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let h = e.health();
                (i, h.retry_at.filter(|t| *t > now), h.latency)
            })
            .collect();
        let fastest = snapshot
            .iter()
            .filter(|(_, retry, _)| retry.is_none())
            .filter_map(|(_, _, l)| *l)
            .min()
            .unwrap_or_default();
        let mut up: Vec<_> = snapshot.iter().filter(|(_, r, _)| r.is_none()).collect();
        // Unmeasured URLs count as fast: they get their first measurement.
        up.sort_by_key(|(i, _, l)| {
            let slower = l.is_some_and(|l| l > fastest + LATENCY_MARGIN);
            (slower, if slower { *l } else { None }, *i)
        });
        let mut down: Vec<_> = snapshot.iter().filter(|(_, r, _)| r.is_some()).collect();
        down.sort_by_key(|(i, r, _)| (*r, *i));
        up.into_iter()
            .chain(down)
            .map(|(i, _, _)| &self.all[*i])
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(n: usize) -> Endpoints {
        Endpoints::new(
            (0..n)
                .map(|i| {
                    let origin: Uri = format!("http://m{i}:5000").parse().expect("url");
                    Endpoint::new(format!("http://m{i}:5000"), origin)
                })
                .collect(),
        )
    }

    fn labels(e: &Endpoints) -> Vec<&str> {
        e.order().iter().map(|e| e.label.as_str()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn configuration_order_until_a_url_fails_or_is_clearly_slower() {
        let e = endpoints(3);
        assert_eq!(labels(&e), ["m0:5000", "m1:5000", "m2:5000"]);
        e.all[0].succeeded(Duration::from_millis(5));
        e.all[1].succeeded(Duration::from_millis(12));
        assert_eq!(
            labels(&e),
            ["m0:5000", "m1:5000", "m2:5000"],
            "within the margin"
        );
        e.all[0].succeeded(Duration::from_millis(400));
        e.all[0].succeeded(Duration::from_millis(400));
        assert_eq!(
            labels(&e),
            ["m1:5000", "m2:5000", "m0:5000"],
            "m0 is slower now"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_url_goes_last_and_is_tried_again_after_its_backoff() {
        let e = endpoints(2);
        assert_eq!(e.all[0].failed(), BACKOFF_BASE);
        assert_eq!(labels(&e), ["m1:5000", "m0:5000"]);
        tokio::time::advance(BACKOFF_BASE).await;
        assert_eq!(labels(&e), ["m0:5000", "m1:5000"], "probed again");
        assert_eq!(
            e.all[0].failed(),
            BACKOFF_BASE * 2,
            "failing again doubles it"
        );
        for _ in 0..10 {
            e.all[0].failed();
        }
        assert_eq!(e.all[0].failed(), BACKOFF_MAX);
        e.all[0].succeeded(Duration::from_millis(1));
        assert_eq!(
            labels(&e),
            ["m0:5000", "m1:5000"],
            "a success clears the back-off"
        );
        // Both failing: the one whose back-off ends first leads.
        e.all[1].failed();
        tokio::time::advance(Duration::from_secs(1)).await;
        e.all[0].failed();
        assert_eq!(labels(&e), ["m1:5000", "m0:5000"]);
    }
}
