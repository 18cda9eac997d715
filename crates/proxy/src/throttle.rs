//! Repeated warnings of one kind, logged once per interval: a flapping upstream under load
//! would otherwise write one line per request (350 MB of log in 15 s under `wrk`).
//!
//! The first occurrence of a kind (a key: the upstream and what went wrong) is logged at once;
//! the next ones within [`WARN_INTERVAL`] are counted, not logged; the first one after the
//! interval is logged with `suppressed = <how many were not>`. Metrics still count every one.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// How often one kind of warning is written at most.
pub(crate) const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// Kinds are few (upstreams × causes); past this many, the oldest are forgotten.
const MAX_KINDS: usize = 1024;

#[derive(Debug)]
struct Kind {
    logged_at: Instant,
    suppressed: u64,
}

/// Decides which occurrences of each kind of warning are written.
#[derive(Debug)]
pub(crate) struct Throttle {
    interval: Duration,
    kinds: Mutex<HashMap<String, Kind>>,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::new(WARN_INTERVAL)
    }
}

impl Throttle {
    pub(crate) fn new(interval: Duration) -> Throttle {
        Throttle {
            interval,
            kinds: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(n)` when this occurrence of `kind` should be logged, `n` being how many were
    /// suppressed since the last logged one; `None` to count it silently.
    pub(crate) fn admit(&self, kind: &str) -> Option<u64> {
        let now = Instant::now();
        let mut kinds = self.kinds.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(k) = kinds.get_mut(kind) {
            if now.duration_since(k.logged_at) < self.interval {
                k.suppressed += 1;
                return None;
            }
            let suppressed = std::mem::take(&mut k.suppressed);
            k.logged_at = now;
            return Some(suppressed);
        }
        if kinds.len() >= MAX_KINDS {
            let interval = self.interval;
            kinds.retain(|_, k| now.duration_since(k.logged_at) < interval);
            if kinds.len() >= MAX_KINDS {
                kinds.clear();
            }
        }
        kinds.insert(
            kind.to_owned(),
            Kind {
                logged_at: now,
                suppressed: 0,
            },
        );
        Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn first_of_a_kind_then_one_per_interval_with_the_count() {
        let t = Throttle::new(Duration::from_secs(10));
        assert_eq!(t.admit("up/failed"), Some(0), "the first is written");
        for _ in 0..1000 {
            assert_eq!(
                t.admit("up/failed"),
                None,
                "a flood is counted, not written"
            );
        }
        assert_eq!(t.admit("other/failed"), Some(0), "kinds are apart");
        tokio::time::advance(Duration::from_secs(9)).await;
        assert_eq!(t.admit("up/failed"), None);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(
            t.admit("up/failed"),
            Some(1001),
            "the summary says how many were not"
        );
        assert_eq!(t.admit("up/failed"), None);
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(t.admit("up/failed"), Some(1));
    }

    #[tokio::test(start_paused = true)]
    async fn kinds_stay_bounded() {
        let t = Throttle::new(Duration::from_secs(10));
        for n in 0..(MAX_KINDS * 3) {
            assert_eq!(t.admit(&format!("k{n}")), Some(0));
        }
        assert!(t.kinds.lock().unwrap().len() <= MAX_KINDS);
    }
}
