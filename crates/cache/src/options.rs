//! What a [`Store`](crate::Store) is opened with ([`StoreOptions`], the defaults written once)
//! and what it reports ([`StoreStats`]).

use std::time::Duration;

/// Settings of a [`Store`]; `StoreOptions::default()` holds the defaults each field names.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// A fill fails when the upstream sends no byte for this long, whether it has not answered
    /// yet or stalls mid-body. A slow download that keeps moving is never cut off.
    /// Default: 30 s.
    pub fill_inactivity_timeout: Duration,
    /// How many times a fill whose upstream body breaks mid-way asks the opener to resume from
    /// the last byte on disk before giving up. Default: 3.
    pub fill_max_resumes: u32,
    /// The budget: blobs and manifests together stay within this many bytes, the least
    /// recently used leaving first. Default: 50 GiB.
    pub max_size: u64,
    /// How often the access times recorded since the last time are written to the metadata
    /// store (they order eviction after a restart). Default: 30 s.
    pub access_flush_interval: Duration,
    /// Verified manifests kept in memory (bytes of manifest JSON), so that a manifest GET is
    /// answered without a file read and a hash. 0 reads and hashes the file every time.
    /// Default: 16 MiB, thousands of typical manifests.
    pub manifest_memory: u64,
    /// Bytes per second the scrubber reads back stored content at, to find what changed on
    /// disk since it was verified (`scrub.rs`): the least recently verified first, a pass no
    /// more often than hourly. 0 turns it off. Default: 8 MiB/s (a 50 GiB store in under two
    /// hours, a small share of any disk).
    pub scrub_rate: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            fill_inactivity_timeout: Duration::from_secs(30),
            fill_max_resumes: 3,
            max_size: 50 << 30,
            access_flush_interval: Duration::from_secs(30),
            manifest_memory: 16 << 20,
            scrub_rate: 8 << 20,
        }
    }
}

/// What [`Store::stats`] reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreStats {
    /// Bytes the budget counts: stored content (blobs and manifests), plus what downloads in
    /// flight and files held open outside the index hold on disk.
    pub size_bytes: u64,
    /// The budget, `max_size`.
    pub max_size_bytes: u64,
    /// Pieces of content stored, manifests included.
    pub entries: u64,
    /// Of those, manifests.
    pub manifests: u64,
    /// Tag records.
    pub tags: u64,
    /// Blob and manifest lookups answered from the store, and those that were not.
    pub hits: u64,
    pub misses: u64,
    /// Entries and bytes evicted to stay within the budget since the store opened.
    pub evictions: u64,
    pub evicted_bytes: u64,
    /// Blob fills downloading now.
    pub fills_in_flight: u64,
    /// Bytes the scrubber read back and hashed, and what it found not to match (and
    /// quarantined), since the store opened.
    pub scrubbed_bytes: u64,
    pub scrub_faults: u64,
    /// Writes of new content (fills, manifests) the disk refused for lack of space, since the
    /// store opened. Logged once per episode (`no_space.rs`), counted every time.
    pub no_space_failures: u64,
}
