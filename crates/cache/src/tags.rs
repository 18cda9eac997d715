//! Tag records: what a tag of an upstream repository pointed at when it was last checked.
//!
//! The records live in memory, where requests read them, and are written through to the
//! metadata store (`meta.rs`) by its writer thread, so a restart keeps them with their
//! validation times: a tag checked a minute before the restart is still fresh after it, and
//! the tags of a big cache are not all revalidated at once.
//!
//! `validated_at` is a tokio instant (paused-time tests move it); what is persisted is the
//! wall-clock time it stands for, converted back on load.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use tokio::time::Instant;
use wharf_oci::Digest;

use crate::index::now_ms;
use crate::meta::{TagKey, TagRow};

/// What a tag resolved to, and when the upstream last confirmed it.
#[derive(Clone, Debug)]
pub struct TagRecord {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    /// A tokio instant, so that TTL tests can run on paused time.
    pub validated_at: Instant,
}

/// One tag as listed by [`Store::tags`](crate::Store::tags).
#[derive(Clone, Debug)]
pub struct TagEntry {
    pub upstream: String,
    pub repository: String,
    pub tag: String,
    pub record: TagRecord,
}

impl TagRecord {
    pub(crate) fn to_row(&self) -> TagRow {
        TagRow {
            digest: self.digest.to_string(),
            media_type: self.media_type.clone(),
            size: self.size,
            validated_ms: wall_ms(self.validated_at),
        }
    }

    pub(crate) fn from_row(row: &TagRow) -> Option<TagRecord> {
        Some(TagRecord {
            digest: Digest::parse(&row.digest).ok()?,
            media_type: row.media_type.clone(),
            size: row.size,
            validated_at: instant_at(row.validated_ms),
        })
    }
}

/// The wall-clock time (ms since the Unix epoch) that `at` stands for.
fn wall_ms(at: Instant) -> u64 {
    let age = Instant::now().saturating_duration_since(at);
    now_ms().saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX))
}

/// The instant that stands for the wall-clock time `ms`. A time in the future (the clock was
/// set back) counts as now.
fn instant_at(ms: u64) -> Instant {
    let age = Duration::from_millis(now_ms().saturating_sub(ms));
    let now = Instant::now();
    // Cannot fail on Linux (monotonic instants may be negative); elsewhere, a year is older
    // than any TTL anyone configures.
    now.checked_sub(age)
        .or_else(|| now.checked_sub(Duration::from_secs(365 * 86_400)))
        .unwrap_or(now)
}

fn key(upstream: &str, repo: &str, tag: &str) -> TagKey {
    (upstream.to_owned(), repo.to_owned(), tag.to_owned())
}

/// The tag records of all upstreams. The lock is only held to copy a record in or out, never
/// across an await; tag lookups take it shared.
#[derive(Debug, Default)]
pub(crate) struct Tags {
    map: RwLock<HashMap<TagKey, TagRecord>>,
}

impl Tags {
    pub(crate) fn load(rows: Vec<(TagKey, TagRow)>) -> Tags {
        let map = rows
            .into_iter()
            .filter_map(|(k, row)| Some((k, TagRecord::from_row(&row)?)))
            .collect();
        Tags {
            map: RwLock::new(map),
        }
    }

    pub(crate) fn get(&self, upstream: &str, repo: &str, tag: &str) -> Option<TagRecord> {
        // A panic elsewhere while holding the lock cannot leave a record half-written (inserts
        // and removes are single calls), so a poisoned map is still sound to use.
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        map.get(&key(upstream, repo, tag)).cloned()
    }

    pub(crate) fn put(&self, upstream: &str, repo: &str, tag: &str, rec: TagRecord) -> TagKey {
        let k = key(upstream, repo, tag);
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        map.insert(k.clone(), rec);
        k
    }

    pub(crate) fn remove(&self, upstream: &str, repo: &str, tag: &str) -> Option<TagRecord> {
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        map.remove(&key(upstream, repo, tag))
    }

    pub(crate) fn len(&self) -> usize {
        self.map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Every record, sorted by upstream, repository and tag.
    pub(crate) fn list(&self) -> Vec<TagEntry> {
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<TagEntry> = map
            .iter()
            .map(|((u, r, t), rec)| TagEntry {
                upstream: u.clone(),
                repository: r.clone(),
                tag: t.clone(),
                record: rec.clone(),
            })
            .collect();
        drop(map);
        out.sort_by(|a, b| {
            (&a.upstream, &a.repository, &a.tag).cmp(&(&b.upstream, &b.repository, &b.tag))
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn validation_times_survive_the_round_trip_through_wall_clock() {
        let rec = TagRecord {
            digest: Digest::sha256_of(b"x"),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            size: 1,
            validated_at: Instant::now(),
        };
        tokio::time::advance(Duration::from_secs(90)).await;
        let back = TagRecord::from_row(&rec.to_row()).expect("row");
        let age = back.validated_at.elapsed();
        // Paused tokio time and the real wall clock drift by the test's own run time.
        assert!(
            age >= Duration::from_secs(89) && age <= Duration::from_secs(92),
            "{age:?}"
        );
        assert_eq!(back.digest, rec.digest);
    }

    #[test]
    fn a_time_in_the_future_is_now() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("rt");
        rt.block_on(async {
            let at = instant_at(now_ms() + 3_600_000);
            assert!(at.elapsed() < Duration::from_secs(1));
        });
    }
}
