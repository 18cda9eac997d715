//! Tag records: what a tag of an upstream repository pointed at when it was last checked.
//!
//! They live in memory for now; the embedded metadata store will persist them behind the same
//! [`Store`](crate::Store) methods.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use tokio::time::Instant;
use wharf_oci::Digest;

/// What a tag resolved to, and when the upstream last confirmed it.
#[derive(Clone, Debug)]
pub struct TagRecord {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    /// A tokio instant, so that TTL tests can run on paused time.
    pub validated_at: Instant,
}

/// (upstream, repository, tag)
type Key = (String, String, String);

/// The tag records of all upstreams. The lock is only held to copy a record in or out, never
/// across an await.
#[derive(Debug, Default)]
pub(crate) struct Tags {
    map: RwLock<HashMap<Key, TagRecord>>,
}

fn key(upstream: &str, repo: &str, tag: &str) -> Key {
    (upstream.to_owned(), repo.to_owned(), tag.to_owned())
}

impl Tags {
    pub(crate) fn get(&self, upstream: &str, repo: &str, tag: &str) -> Option<TagRecord> {
        // A panic elsewhere while holding the lock cannot leave a record half-written (inserts
        // and removes are single calls), so a poisoned map is still sound to use.
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        map.get(&key(upstream, repo, tag)).cloned()
    }

    pub(crate) fn put(&self, upstream: &str, repo: &str, tag: &str, rec: TagRecord) {
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        map.insert(key(upstream, repo, tag), rec);
    }

    pub(crate) fn remove(&self, upstream: &str, repo: &str, tag: &str) -> Option<TagRecord> {
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        map.remove(&key(upstream, repo, tag))
    }
}
