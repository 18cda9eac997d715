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
use crate::meta::TagRow;

/// Which tag a record is for: a tag of a repository of an upstream (or hosted) registry. The
/// three are all strings, so they are named at every call rather than passed in an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TagKey<'a> {
    /// The configured upstream's name (`[[upstream]] name`).
    pub upstream: &'a str,
    pub repository: &'a str,
    pub tag: &'a str,
}

impl TagKey<'_> {
    pub(crate) fn to_owned_key(self) -> OwnedTagKey {
        OwnedTagKey {
            upstream: self.upstream.to_owned(),
            repository: self.repository.to_owned(),
            tag: self.tag.to_owned(),
        }
    }
}

/// A [`TagKey`] that owns its strings: how the map and the metadata writer hold one.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct OwnedTagKey {
    pub(crate) upstream: String,
    pub(crate) repository: String,
    pub(crate) tag: String,
}

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

impl TagEntry {
    /// The key this entry is stored under, to look it up or remove it again.
    pub fn key(&self) -> TagKey<'_> {
        TagKey {
            upstream: &self.upstream,
            repository: &self.repository,
            tag: &self.tag,
        }
    }
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

/// The tag records of all upstreams. The lock is only held to copy a record in or out, never
/// across an await; tag lookups take it shared.
#[derive(Debug, Default)]
pub(crate) struct Tags {
    map: RwLock<HashMap<OwnedTagKey, TagRecord>>,
}

impl Tags {
    pub(crate) fn load(rows: Vec<(OwnedTagKey, TagRow)>) -> Tags {
        let map = rows
            .into_iter()
            .filter_map(|(k, row)| Some((k, TagRecord::from_row(&row)?)))
            .collect();
        Tags {
            map: RwLock::new(map),
        }
    }

    pub(crate) fn get(&self, key: TagKey<'_>) -> Option<TagRecord> {
        // A panic elsewhere while holding the lock cannot leave a record half-written (inserts
        // and removes are single calls), so a poisoned map is still sound to use.
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        map.get(&key.to_owned_key()).cloned()
    }

    pub(crate) fn put(&self, key: TagKey<'_>, rec: TagRecord) -> OwnedTagKey {
        let k = key.to_owned_key();
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        map.insert(k.clone(), rec);
        k
    }

    pub(crate) fn remove(&self, key: TagKey<'_>) -> Option<TagRecord> {
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        map.remove(&key.to_owned_key())
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
            .map(|(k, rec)| TagEntry {
                upstream: k.upstream.clone(),
                repository: k.repository.clone(),
                tag: k.tag.clone(),
                record: rec.clone(),
            })
            .collect();
        drop(map);
        out.sort_by(|a, b| a.key().cmp(&b.key()));
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
