//! Writes refused for lack of space, counted one by one and logged once per episode.
//!
//! A full disk fails every fill and every new manifest until space comes back: under load that
//! is one failure per request, and a log line each would bury the one that matters. So the
//! first refusal of an episode is logged at once, the rest are counted (`StoreStats`, exported
//! as `wharf_cache_write_failures_total{reason="no_space"}`), a reminder with the count is
//! logged at most once per [`REMIND_INTERVAL`] while it lasts, and the first write that
//! succeeds [`SETTLE`] after the last refusal ends the episode with a summary. What is stored is
//! served throughout.
//!
//! A nearly full disk flaps: a failed fill removes its spool file, an eviction frees a blob, and
//! the next small write fits while the large ones keep failing. The soak test saw 20 episodes
//! in three 10 s fills of the disk when any success ended one; a success within [`SETTLE`] of a
//! refusal is part of the episode.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::error::StoreError;

/// How often a full disk that lasts is logged again, with how many writes it refused.
pub(crate) const REMIND_INTERVAL: Duration = Duration::from_secs(60);

/// How long writes must have been refused no more before a success ends the episode.
pub(crate) const SETTLE: Duration = Duration::from_secs(10);

/// Whether `e` says the file system (or a quota on it) has no room left.
pub(crate) fn is_no_space(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

/// The episode now under way, if any.
#[derive(Debug)]
struct Episode {
    began: Instant,
    failures: u64,
    last_failure: Instant,
    logged_at: Instant,
    /// Refusals since the last line about this episode.
    unlogged: u64,
}

/// Counts refused writes and decides which of them are logged.
#[derive(Debug)]
pub(crate) struct NoSpace {
    interval: Duration,
    /// Every write refused for lack of space since the store opened.
    failures: AtomicU64,
    /// A cheap check for the success path, which runs on every write.
    full: AtomicBool,
    episode: Mutex<Option<Episode>>,
}

impl Default for NoSpace {
    fn default() -> Self {
        NoSpace::new(REMIND_INTERVAL)
    }
}

impl NoSpace {
    pub(crate) fn new(interval: Duration) -> NoSpace {
        NoSpace {
            interval,
            failures: AtomicU64::new(0),
            full: AtomicBool::new(false),
            episode: Mutex::new(None),
        }
    }

    /// Writes refused for lack of space since the store opened.
    pub(crate) fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Counts `e` if it is a refusal for lack of space, logging it when it opens an episode or
    /// when the last line is [`REMIND_INTERVAL`] old; `what` names the write ("fill", "manifest").
    /// Returns whether it was one, so the caller does not log it again.
    pub(crate) fn failed(&self, e: &StoreError, what: &'static str) -> bool {
        if !e.is_no_space() {
            return false;
        }
        self.failures.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut episode = self.episode.lock().unwrap_or_else(PoisonError::into_inner);
        match episode.as_mut() {
            None => {
                *episode = Some(Episode {
                    began: now,
                    failures: 1,
                    last_failure: now,
                    logged_at: now,
                    unlogged: 0,
                });
                self.full.store(true, Ordering::Relaxed);
                tracing::warn!(
                    error = %e,
                    what,
                    "disk full: writes fail until space is freed; stored content is still served"
                );
            }
            Some(ep) => {
                ep.failures += 1;
                ep.last_failure = now;
                ep.unlogged += 1;
                if now.duration_since(ep.logged_at) >= self.interval {
                    // Taken outside the macro: its fields are evaluated only if someone listens.
                    let since_last = std::mem::take(&mut ep.unlogged);
                    tracing::warn!(
                        error = %e,
                        failed = ep.failures,
                        since_last,
                        for_secs = now.duration_since(ep.began).as_secs(),
                        "disk still full"
                    );
                    ep.logged_at = now;
                }
            }
        }
        true
    }

    /// A write succeeded: ends the episode under way, if any and if its last refusal is
    /// [`SETTLE`] old, with a summary.
    pub(crate) fn succeeded(&self) {
        if !self.full.load(Ordering::Relaxed) {
            return;
        }
        let mut episode = self.episode.lock().unwrap_or_else(PoisonError::into_inner);
        if episode
            .as_ref()
            .is_some_and(|ep| ep.last_failure.elapsed() < SETTLE)
        {
            return;
        }
        if let Some(ep) = episode.take() {
            self.full.store(false, Ordering::Relaxed);
            tracing::info!(
                failed = ep.failures,
                for_secs = ep.began.elapsed().as_secs(),
                "disk has space again: writes succeed"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> StoreError {
        StoreError::io("writing", std::path::Path::new("/spool/x"))(io::Error::from(
            io::ErrorKind::StorageFull,
        ))
    }

    fn eio() -> StoreError {
        StoreError::io("writing", std::path::Path::new("/spool/x"))(io::Error::other("EIO"))
    }

    #[tokio::test(start_paused = true)]
    async fn counts_every_refusal_and_keeps_one_episode_until_a_write_succeeds() {
        let n = NoSpace::new(Duration::from_secs(60));
        assert!(!n.failed(&eio(), "fill"), "other errors are not this");
        assert_eq!(n.failures(), 0);
        n.succeeded();
        for _ in 0..5 {
            assert!(n.failed(&full(), "fill"));
        }
        assert_eq!(n.failures(), 5);
        {
            let ep = n.episode.lock().unwrap();
            let ep = ep.as_ref().expect("an episode");
            assert_eq!((ep.failures, ep.unlogged), (5, 4), "one line, four counted");
        }
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(n.failed(&full(), "manifest"));
        assert_eq!(
            n.episode.lock().unwrap().as_ref().map(|e| e.unlogged),
            Some(0),
            "a reminder after the interval"
        );
        n.succeeded();
        assert!(
            n.episode.lock().unwrap().is_some(),
            "a success right after a refusal is the disk flapping, not the end"
        );
        tokio::time::advance(SETTLE).await;
        n.succeeded();
        assert!(n.episode.lock().unwrap().is_none(), "ended");
        assert!(n.failed(&full(), "fill"));
        assert_eq!(n.failures(), 7, "the counter spans episodes");
    }
}
