//! The index: which content the store keeps, weighted by size and bounded by the budget.
//!
//! A moka cache keyed by digest, weighed in KiB, with LRU eviction (see `README.md`, "Store and
//! cache controls", for why LRU and not moka's default TinyLFU, and `hit_ratio.rs` for the
//! replayed traces behind that choice). Every blob and manifest on disk has an entry; an entry
//! that leaves the index for the budget (or an explicit removal) is handed to the removal sink,
//! which unlinks the file. A reader that already opened the file keeps reading it.
//!
//! Recording an access is a moka `get` (its read buffer is lock-free; the policy is updated in
//! batches) plus a relaxed atomic store of the wall-clock time into the entry, which the
//! metadata writer persists now and then. Nothing on that path takes a lock of ours.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use moka::notification::RemovalCause;
use moka::policy::EvictionPolicy;
use moka::sync::Cache;
use wharf_oci::Digest;

/// One stored piece of content.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) size: u64,
    /// `Some` for a manifest: the `Content-Type` it was stored with.
    pub(crate) media_type: Option<Arc<str>>,
    /// Milliseconds since the Unix epoch of the last access.
    pub(crate) last_access: AtomicU64,
    /// The `last_access` the metadata store holds.
    pub(crate) saved_access: AtomicU64,
    /// Milliseconds since the Unix epoch when the content was last hashed and found to match
    /// (at its fill, at start-up, or by the scrubber): the scrubber's order.
    pub(crate) verified: AtomicU64,
    /// Not content but disk space held for it: a download in flight (its announced size), or
    /// files that left the index but are still on disk (unlinked and open, or kept for a
    /// fill's readers). Weighed like content, so the budget counts it and the policy makes
    /// room for it; never listed, served or handed to the removal sink.
    pub(crate) reservation: bool,
}

impl Entry {
    /// An entry for content verified at `access_ms` (admitted content was verified as it was
    /// written).
    pub(crate) fn new(size: u64, media_type: Option<Arc<str>>, access_ms: u64) -> Self {
        Entry {
            size,
            media_type,
            last_access: AtomicU64::new(access_ms),
            saved_access: AtomicU64::new(0),
            verified: AtomicU64::new(access_ms),
            reservation: false,
        }
    }

    fn reservation(size: u64) -> Self {
        Entry {
            reservation: true,
            ..Entry::new(size, None, now_ms())
        }
    }

    fn touch(&self, now_ms: u64) {
        // Relaxed: the value is a hint for ordering after a restart, nothing synchronises on it.
        self.last_access.store(now_ms, Ordering::Relaxed);
    }
}

/// When stored content was last used and last verified, in ms since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Times {
    pub(crate) access_ms: u64,
    pub(crate) verified_ms: u64,
}

/// Which eviction policy the index runs. The store uses [`Policy::Lru`]; the other exists for
/// the hit-ratio comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Policy {
    Lru,
    #[cfg_attr(not(test), allow(dead_code))]
    TinyLfu,
}

/// Why an entry left the index, as the removal sink needs to know it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Removal {
    /// Pushed out to keep within the budget (or refused for being larger than all of it).
    Evicted,
    /// Removed on purpose: an operator, a quarantine, a file found missing.
    Removed,
}

pub(crate) type Sink = Arc<dyn Fn(Digest, Removal) + Send + Sync>;

/// What the size policy has evicted since the index was made (explicit removals are not
/// counted), shared with the eviction listener that counts it.
#[derive(Debug, Default)]
struct EvictionCounters {
    entries: AtomicU64,
    bytes: AtomicU64,
}

/// A reading of the [`EvictionCounters`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Evictions {
    pub(crate) entries: u64,
    pub(crate) bytes: u64,
}

/// The index and its counters.
pub(crate) struct Index {
    cache: Cache<Digest, Arc<Entry>>,
    /// Bytes of all entries (exact; moka's weighted size is in rounded-up KiB).
    bytes: Arc<AtomicU64>,
    max_bytes: u64,
    /// Entries and bytes the policy evicted (not explicit removals), for the metrics.
    evicted: Arc<EvictionCounters>,
    /// The keys of live reservations: touched before every eviction pass so the LRU never
    /// picks disk space that is still held over content.
    reservations: Reservations,
}

type Reservations = Arc<std::sync::Mutex<std::collections::HashSet<Digest>>>;

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("entries", &self.cache.entry_count())
            .field("bytes", &self.bytes())
            .field("max_bytes", &self.max_bytes)
            .finish()
    }
}

/// Entries are weighed in KiB, rounded up, so that one entry can weigh up to 4 TiB (moka
/// weights are `u32`) and the rounding only ever over-counts.
const UNIT: u64 = 1024;

fn weight(size: u64) -> u32 {
    u32::try_from(size.div_ceil(UNIT).max(1)).unwrap_or(u32::MAX)
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Index {
    pub(crate) fn new(max_bytes: u64, policy: Policy, sink: Sink) -> Index {
        let bytes = Arc::new(AtomicU64::new(0));
        let counted = bytes.clone();
        let evicted: Arc<EvictionCounters> = Arc::default();
        let counted_evictions = evicted.clone();
        let cache = Cache::builder()
            .max_capacity((max_bytes / UNIT).max(1))
            .weigher(|_: &Digest, e: &Arc<Entry>| weight(e.size))
            .eviction_policy(match policy {
                Policy::Lru => EvictionPolicy::lru(),
                Policy::TinyLfu => EvictionPolicy::tiny_lfu(),
            })
            .eviction_listener(move |digest: Arc<Digest>, e: Arc<Entry>, cause| {
                if e.reservation {
                    // Replaced too: a reservation's new size was added when it was inserted.
                    counted.fetch_sub(e.size, Ordering::Relaxed);
                    return;
                }
                let removal = match cause {
                    // Same digest, same bytes: only the media type was added.
                    RemovalCause::Replaced => return,
                    RemovalCause::Size | RemovalCause::Expired => Removal::Evicted,
                    RemovalCause::Explicit => Removal::Removed,
                };
                counted.fetch_sub(e.size, Ordering::Relaxed);
                if removal == Removal::Evicted {
                    counted_evictions.entries.fetch_add(1, Ordering::Relaxed);
                    counted_evictions.bytes.fetch_add(e.size, Ordering::Relaxed);
                }
                sink(Digest::clone(&digest), removal);
            })
            .build();
        Index {
            cache,
            bytes,
            max_bytes,
            evicted,
            reservations: Reservations::default(),
        }
    }

    /// The entry for `d`, recording an access.
    pub(crate) fn get(&self, d: &Digest) -> Option<Arc<Entry>> {
        let e = self.cache.get(d).filter(|e| !e.reservation)?;
        e.touch(now_ms());
        Some(e)
    }

    pub(crate) fn contains(&self, d: &Digest) -> bool {
        // Reservation keys are no content's digest (`Store::reservation_key`).
        self.cache.contains_key(d)
    }

    /// Adds `d` (or records an access if it is there), then lets the policy evict what no
    /// longer fits. A media type given for content already indexed without one is added.
    /// Returns whether the entry is new.
    pub(crate) fn admit(&self, d: &Digest, size: u64, media_type: Option<&str>) -> bool {
        let fresh = self.insert(d, size, media_type.map(Arc::from), now_ms());
        // Eviction runs in moka's housekeeping; run it now so the store is back within its
        // budget when the fill that brought the content in reports done.
        evict(&self.cache, &self.reservations);
        fresh
    }

    /// Adds an entry as loaded at start-up, its access and verification times as the metadata
    /// store has them (no housekeeping: the caller settles once at the end).
    pub(crate) fn load(&self, d: &Digest, size: u64, media_type: Option<Arc<str>>, times: Times) {
        let entry = Entry::new(size, media_type, times.access_ms);
        entry.saved_access.store(times.access_ms, Ordering::Relaxed);
        entry.verified.store(times.verified_ms, Ordering::Relaxed);
        // Digests found on disk are unique: a plain insert, cheaper than the entry API.
        self.cache.insert(d.clone(), Arc::new(entry));
        self.bytes.fetch_add(size, Ordering::Relaxed);
    }

    fn insert(&self, d: &Digest, size: u64, media_type: Option<Arc<str>>, access_ms: u64) -> bool {
        let entry = self
            .cache
            .entry(d.clone())
            .or_insert_with(|| Arc::new(Entry::new(size, media_type.clone(), access_ms)));
        if entry.is_fresh() {
            self.bytes.fetch_add(size, Ordering::Relaxed);
            return true;
        }
        let current = entry.into_value();
        current.touch(access_ms);
        if let Some(mt) = media_type
            && current.media_type.as_deref() != Some(&*mt)
        {
            let replaced = Entry::new(current.size, Some(mt), access_ms);
            replaced.saved_access.store(
                current.saved_access.load(Ordering::Relaxed),
                Ordering::Relaxed,
            );
            replaced
                .verified
                .store(current.verified.load(Ordering::Relaxed), Ordering::Relaxed);
            self.cache.insert(d.clone(), Arc::new(replaced));
        }
        false
    }

    /// Holds `size` bytes of the budget under `key` (a key no content has: see
    /// `Store::reservation_key`), replacing what it held before, and lets the policy evict
    /// what no longer fits. `0` releases it.
    pub(crate) fn reserve(&self, key: &Digest, size: u64) {
        reserve(&self.cache, &self.bytes, &self.reservations, key, size);
    }

    /// Removes `d`; the sink hears of it as [`Removal::Removed`]. Returns its size.
    pub(crate) fn remove(&self, d: &Digest) -> Option<u64> {
        let e = self.cache.remove(d)?;
        Some(e.size)
    }

    /// Runs moka's pending housekeeping (evictions, notifications) now.
    pub(crate) fn settle(&self) {
        evict(&self.cache, &self.reservations);
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Entries and bytes evicted by the size policy since the store opened.
    pub(crate) fn evicted(&self) -> Evictions {
        Evictions {
            entries: self.evicted.entries.load(Ordering::Relaxed),
            bytes: self.evicted.bytes.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Entries of content, not counting reservations (moka's count, which may lag a little).
    pub(crate) fn entry_count(&self) -> u64 {
        // The live reservations are known: no walk over the whole index for them.
        let reservations = self
            .reservations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len() as u64;
        self.cache.entry_count().saturating_sub(reservations)
    }

    /// Every entry of content (a snapshot that may miss concurrent changes); reservations are
    /// not content and are left out.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (Arc<Digest>, Arc<Entry>)> + '_ {
        self.cache.iter().filter(|(_, e)| !e.reservation)
    }

    /// A handle for the metadata writer: the same cache, for access times and `contains`.
    pub(crate) fn handle(&self) -> IndexHandle {
        IndexHandle {
            cache: self.cache.clone(),
            bytes: self.bytes.clone(),
            reservations: self.reservations.clone(),
        }
    }
}

fn reserve(
    cache: &Cache<Digest, Arc<Entry>>,
    bytes: &AtomicU64,
    reservations: &Reservations,
    key: &Digest,
    size: u64,
) {
    let mut live = reservations
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if size == 0 {
        live.remove(key);
        cache.remove(key);
    } else {
        live.insert(key.clone());
        // The listener takes off what the key held before (a `Replaced` reservation).
        bytes.fetch_add(size, Ordering::Relaxed);
        cache.insert(key.clone(), Arc::new(Entry::reservation(size)));
    }
    drop(live);
    evict(cache, reservations);
}

/// Runs moka's housekeeping (evictions) after touching every live reservation, so that the
/// least recently used content leaves, not the space held for a download still arriving.
fn evict(cache: &Cache<Digest, Arc<Entry>>, reservations: &Reservations) {
    let live: Vec<Digest> = reservations
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .cloned()
        .collect();
    for key in &live {
        let _ = cache.get(key);
    }
    cache.run_pending_tasks();
}

/// What the metadata writer thread may see of the index.
#[derive(Clone)]
pub(crate) struct IndexHandle {
    cache: Cache<Digest, Arc<Entry>>,
    bytes: Arc<AtomicU64>,
    reservations: Reservations,
}

impl IndexHandle {
    pub(crate) fn contains(&self, d: &Digest) -> bool {
        // Reservation keys are no content's digest (`Store::reservation_key`).
        self.cache.contains_key(d)
    }

    pub(crate) fn entries(&self) -> impl Iterator<Item = (Arc<Digest>, Arc<Entry>)> + '_ {
        self.cache.iter().filter(|(_, e)| !e.reservation)
    }

    /// As [`Index::reserve`].
    pub(crate) fn reserve(&self, key: &Digest, size: u64) {
        reserve(&self.cache, &self.bytes, &self.reservations, key, size);
    }

    /// Removes `d` as [`Index::remove`] does (the scrubber's quarantine).
    pub(crate) fn remove(&self, d: &Digest) -> Option<u64> {
        self.cache.remove(d).map(|e| e.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn d(n: u32) -> Digest {
        Digest::sha256_of(&n.to_be_bytes())
    }

    type Seen = Arc<Mutex<Vec<(Digest, Removal)>>>;

    fn recording() -> (Sink, Seen) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let sink: Sink = Arc::new(move |d, r| s.lock().expect("lock").push((d, r)));
        (sink, seen)
    }

    #[test]
    fn least_recently_used_leaves_first_and_the_budget_holds() {
        let (sink, seen) = recording();
        let index = Index::new(10 * 1024, Policy::Lru, sink);
        for n in 0..4 {
            index.admit(&d(n), 3 * 1024, None);
        }
        // 4 x 3 KiB do not fit in 10 KiB: the oldest, 0, went.
        assert!(!index.contains(&d(0)));
        assert!(index.bytes() <= 10 * 1024, "{}", index.bytes());
        assert!(index.get(&d(1)).is_some());
        index.settle();
        index.admit(&d(9), 3 * 1024, None);
        // 1 was used after 2 and 3 were added: 2 is now the least recently used.
        assert!(index.contains(&d(1)));
        assert!(!index.contains(&d(2)));
        let seen = seen.lock().expect("lock").clone();
        assert_eq!(
            seen,
            vec![(d(0), Removal::Evicted), (d(2), Removal::Evicted)]
        );
        assert_eq!(index.bytes(), 9 * 1024);
    }

    #[test]
    fn adding_a_media_type_is_not_a_removal() {
        let (sink, seen) = recording();
        let index = Index::new(1 << 20, Policy::Lru, sink);
        assert!(index.admit(&d(1), 100, None));
        assert!(!index.admit(
            &d(1),
            100,
            Some("application/vnd.oci.image.manifest.v1+json")
        ));
        index.settle();
        let e = index.get(&d(1)).expect("entry");
        assert_eq!(
            e.media_type.as_deref(),
            Some("application/vnd.oci.image.manifest.v1+json")
        );
        assert_eq!(index.bytes(), 100);
        assert!(seen.lock().expect("lock").is_empty());
        assert_eq!(index.remove(&d(1)), Some(100));
        index.settle();
        assert_eq!(*seen.lock().expect("lock"), vec![(d(1), Removal::Removed)]);
        assert_eq!(index.bytes(), 0);
    }

    #[test]
    fn content_larger_than_the_budget_is_not_kept() {
        let (sink, seen) = recording();
        let index = Index::new(4 * 1024, Policy::Lru, sink);
        index.admit(&d(1), 1024, None);
        index.admit(&d(2), 8 * 1024, None);
        index.settle();
        assert!(!index.contains(&d(2)));
        assert!(index.contains(&d(1)));
        assert!(index.bytes() <= 4 * 1024);
        assert!(
            seen.lock()
                .expect("lock")
                .contains(&(d(2), Removal::Evicted))
        );
    }

    #[test]
    fn weights_round_up_and_never_overflow() {
        assert_eq!(weight(0), 1);
        assert_eq!(weight(1), 1);
        assert_eq!(weight(1025), 2);
        assert_eq!(weight(u64::MAX), u32::MAX);
    }
}
