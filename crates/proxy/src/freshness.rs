//! When a tag record is served without asking the upstream.
//!
//! ```text
//! tag matches the upstream's immutable_tags        -> serve the record, never revalidate
//! validated less than tag_ttl ago                  -> serve the record
//! the upstream failed within its back-off window   -> serve the record (stale), do not ask
//! otherwise                                        -> one HEAD upstream, waited for at
//!                                                     most revalidate_timeout (revalidate.rs)
//!   no answer by then      -> record served (stale); the HEAD goes on in the background
//!   same digest            -> record revalidated, served
//!   new digest             -> GET by digest, record replaced
//!   404                    -> record dropped, 404
//!   unreachable, 5xx, 429, timeout -> record served (stale-if-error), back-off window opens
//! ```
//!
//! The back-off window keeps a failing upstream from costing every tag request its timeout
//! again (a hung upstream would otherwise make each pull wait `response_timeout` per tag), and
//! keeps a rate-limited one from being asked before its `Retry-After`. It covers what is not
//! cached too: a manifest or blob wharf does not have is not asked for while the window is
//! open; the client gets 429 (the window came from a 429) or 503, with the time left as
//! `Retry-After` ([`crate::ProxyError::BackingOff`]).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// How long an upstream that was unreachable, failing or timing out is left alone before tags
/// are revalidated against it again.
pub const FAILURE_BACKOFF: Duration = Duration::from_secs(10);

/// `Retry-After` of a 429 is honoured up to this; a 429 without one waits [`RATE_LIMIT_DEFAULT`].
pub const RATE_LIMIT_MAX: Duration = Duration::from_secs(600);
pub const RATE_LIMIT_DEFAULT: Duration = Duration::from_secs(60);

/// One upstream's back-off window. The lock is taken only when the upstream would be asked
/// (a tag past its TTL, content not in the store), never on a stored blob or a fresh tag.
#[derive(Debug, Default)]
pub struct Backoff {
    window: Mutex<Option<Window>>,
}

/// An open back-off window: until when, whether a 429 opened it, and what the upstream did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub until: Instant,
    pub rate_limited: bool,
    /// The failure that opened (or last extended) it, as the client is told.
    pub reason: Option<Arc<str>>,
}

impl Window {
    /// Time left, if any.
    pub fn remaining(&self) -> Option<Duration> {
        Some(self.until.saturating_duration_since(Instant::now())).filter(|d| !d.is_zero())
    }
}

impl Backoff {
    /// Time left in the window, if one is open.
    pub fn remaining(&self) -> Option<Duration> {
        self.open().and_then(|w| w.remaining())
    }

    /// The window, if one is open now.
    pub fn open(&self) -> Option<Window> {
        let window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        window.as_ref().filter(|w| w.remaining().is_some()).cloned()
    }

    /// Opens (or extends) the window for `d`, for a failure.
    pub fn trip(&self, d: Duration) {
        self.trip_with(d, false, None);
    }

    /// Opens (or extends) the window that `e` calls for, if it calls for one; says whether.
    pub fn trip_for(&self, e: &wharf_upstream::Error) -> bool {
        match backoff_for(e) {
            Some(d) => {
                self.trip_with(d, e.is_rate_limited(), Some(e.to_string().into()));
                true
            }
            None => false,
        }
    }

    fn trip_with(&self, d: Duration, rate_limited: bool, reason: Option<Arc<str>>) {
        let until = Instant::now() + d;
        let mut cur = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        let was_rate_limited = cur
            .as_ref()
            .is_some_and(|w| w.rate_limited && w.remaining().is_some());
        let w = cur.get_or_insert(Window {
            until,
            rate_limited,
            reason: None,
        });
        w.until = w.until.max(until);
        w.rate_limited = rate_limited || was_rate_limited;
        if reason.is_some() {
            w.reason = reason;
        }
    }

    /// The upstream answered: close the window.
    pub fn clear(&self) {
        *self.window.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

/// How long to leave an upstream alone after `e`, if `e` is a failure stale-if-error covers.
pub fn backoff_for(e: &wharf_upstream::Error) -> Option<Duration> {
    if e.is_rate_limited() {
        Some(
            e.retry_after()
                .map_or(RATE_LIMIT_DEFAULT, Duration::from_secs)
                .min(RATE_LIMIT_MAX),
        )
    } else if e.is_unreachable() || e.is_timeout() {
        Some(FAILURE_BACKOFF)
    } else {
        None
    }
}

/// Why a record was served without a successful revalidation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stale {
    /// The upstream failed just now (unreachable, 5xx, timeout).
    Failed,
    /// The upstream answered 429 just now.
    RateLimited,
    /// The upstream failed a moment ago; its back-off window is open.
    BackingOff,
    /// The upstream has not answered within `revalidate_timeout`; the revalidation goes on in
    /// the background.
    Slow,
}

impl Stale {
    pub fn of(e: &wharf_upstream::Error) -> Stale {
        if e.is_rate_limited() {
            Stale::RateLimited
        } else {
            Stale::Failed
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Stale::Failed => "upstream_failed",
            Stale::RateLimited => "rate_limited",
            Stale::BackingOff => "backing_off",
            Stale::Slow => "revalidation_slow",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_window_opens_extends_and_closes() {
        let b = Backoff::default();
        assert_eq!(b.remaining(), None);
        b.trip(Duration::from_secs(10));
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(b.remaining(), Some(Duration::from_secs(6)));
        // A shorter trip never shortens an open window.
        b.trip(Duration::from_secs(1));
        assert_eq!(b.remaining(), Some(Duration::from_secs(6)));
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(b.remaining(), None);
        b.trip(Duration::from_secs(60));
        b.clear();
        assert_eq!(b.remaining(), None);
    }

    #[test]
    fn rate_limits_wait_for_retry_after_within_bounds() {
        let limited = |retry_after| wharf_upstream::Error::RateLimited {
            upstream: "u".into(),
            request: "HEAD /v2/x/manifests/y".into(),
            retry_after,
            code: None,
        };
        assert_eq!(backoff_for(&limited(Some(7))), Some(Duration::from_secs(7)));
        assert_eq!(backoff_for(&limited(None)), Some(RATE_LIMIT_DEFAULT));
        assert_eq!(backoff_for(&limited(Some(86_400))), Some(RATE_LIMIT_MAX));
        let denied = wharf_upstream::Error::Denied {
            upstream: "u".into(),
            request: "HEAD /v2/x/manifests/y".into(),
            code: None,
        };
        assert_eq!(backoff_for(&denied), None);
    }
}
