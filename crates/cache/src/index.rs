//! The index: which content the store keeps, weighted by size and bounded by the budget.
//!
//! An LRU of every stored digest, weighed in KiB (see `README.md`, "Store and cache controls",
//! for why LRU and not TinyLFU, and `hit_ratio.rs` for the replayed traces behind that
//! choice). Every blob and manifest on disk has an entry; an entry that leaves the index for
//! the budget (or an explicit removal) is handed to the removal sink, which unlinks the file. A
//! reader that already opened the file keeps reading it.
//!
//! ```text
//! table: HashTable<u32>            slot numbers, hashed by key (a sha256 is its own hash)
//! slots: Vec<Slot>                 key (32 bytes) + Arc<Entry> + prev/next in the recency list
//! head <-> ... <-> tail            most recently used first; eviction takes from the tail
//! ```
//!
//! About 150 bytes an entry, so a million blobs take about 150 MiB and load in a fraction of a
//! second. It was a moka cache, which took about 500 bytes an entry (its own per-entry
//! bookkeeping, the digest's hex in a `String`) and three seconds to load a million (issue 18).
//! One mutex guards it: a lookup is a hash probe and a few links moved, well under a
//! microsecond held, and scans of the whole index (the metadata writer's access times, the
//! scrubber's plan) take it a few thousand slots at a time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use hashbrown::HashTable;
use wharf_oci::Digest;

mod lru;

pub(crate) use lru::Key;
use lru::{KeyHash, Lru, NIL};

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

/// Why an entry left the index, as the removal sink needs to know it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Removal {
    /// Pushed out to keep within the budget (or refused for being larger than all of it).
    Evicted,
    /// Removed on purpose: an operator, a quarantine, a file found missing.
    Removed,
}

pub(crate) type Sink = Arc<dyn Fn(Digest, Removal) + Send + Sync>;

/// A reading of what the size policy has evicted since the index was made (explicit removals
/// are not counted).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Evictions {
    pub(crate) entries: u64,
    pub(crate) bytes: u64,
}

/// The index: shared by the store, the metadata writer and the scrubber.
struct Shared {
    lru: Mutex<Lru>,
    /// The budget in KiB.
    capacity: u64,
    max_bytes: u64,
    /// What the size policy evicted (explicit removals are not counted).
    evicted: Mutex<Evictions>,
    sink: Sink,
    hasher: KeyHash,
}

/// The index and its counters.
#[derive(Clone)]
pub(crate) struct Index {
    shared: Arc<Shared>,
}

/// What the metadata writer and the scrubber hold of the index: the same index.
pub(crate) type IndexHandle = Index;

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("entries", &self.entry_count())
            .field("bytes", &self.bytes())
            .field("max_bytes", &self.shared.max_bytes)
            .finish()
    }
}

/// Entries are weighed in KiB, rounded up, so that the budget's arithmetic stays in `u64` for
/// any size and the rounding only ever over-counts.
const UNIT: u64 = 1024;

fn weight(size: u64) -> u32 {
    u32::try_from(size.div_ceil(UNIT).max(1)).unwrap_or(u32::MAX)
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Slots looked at per hold of the lock when the whole index is scanned.
const SCAN_CHUNK: usize = 4096;

/// Verification times set per hold of the lock (`mark_verified`).
const MARK_CHUNK: usize = 256;

/// Entries evicted per hold of the lock: a tenth of a million-entry store leaving at once
/// holds it a fraction of a millisecond at a time, not tens of milliseconds.
const EVICT_BATCH: usize = 1024;

/// What left the index under the lock (key, size, why), for the sink once the lock is released.
type Gone = Vec<(Key, u64, Removal)>;

impl Shared {
    /// Evicts the least recently used content (never a reservation) until the entries fit
    /// in `capacity` KiB or only reservations are left, at most `EVICT_BATCH` entries; whether
    /// it is done.
    fn evict(&self, lru: &mut Lru, gone: &mut Gone) -> bool {
        let mut i = lru.tail;
        while lru.weight > self.capacity && i != NIL {
            if gone.len() >= EVICT_BATCH {
                return false;
            }
            let prev = lru.slots[i as usize].prev;
            if lru.entry(i).is_some_and(|e| !e.reservation)
                && let Some((key, entry)) = lru.take(&self.hasher, i)
            {
                gone.push((key, entry.size, Removal::Evicted));
            }
            i = prev;
        }
        true
    }

    fn lock(&self) -> MutexGuard<'_, Lru> {
        self.lru.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts what the policy evicted and hands what left the index to the sink, outside the
    /// index's lock.
    fn tell(&self, gone: Gone) {
        {
            let mut evicted = self.evicted.lock().unwrap_or_else(PoisonError::into_inner);
            for (_, size, _) in gone.iter().filter(|g| g.2 == Removal::Evicted) {
                evicted.entries += 1;
                evicted.bytes += size;
            }
        }
        for (key, _, why) in gone {
            (self.sink)(key.digest(), why);
        }
    }
}

impl Index {
    pub(crate) fn new(max_bytes: u64, sink: Sink) -> Index {
        Index {
            shared: Arc::new(Shared {
                lru: Mutex::new(Lru {
                    table: HashTable::new(),
                    slots: Vec::new(),
                    free: NIL,
                    head: NIL,
                    tail: NIL,
                    weight: 0,
                    bytes: 0,
                    len: 0,
                    reservations: 0,
                    manifests: 0,
                }),
                capacity: (max_bytes / UNIT).max(1),
                max_bytes,
                evicted: Mutex::default(),
                sink,
                hasher: KeyHash::new(),
            }),
        }
    }

    /// The entry for `d`, recording an access.
    pub(crate) fn get(&self, d: &Digest) -> Option<Arc<Entry>> {
        let key = Key::of(d);
        let mut lru = self.shared.lock();
        let i = lru.find(&self.shared.hasher, &key)?;
        let e = lru.entry(i).filter(|e| !e.reservation)?.clone();
        lru.move_to_front(i);
        drop(lru);
        e.touch(now_ms());
        Some(e)
    }

    pub(crate) fn contains(&self, d: &Digest) -> bool {
        // Reservation keys are no content's digest (`Store::reservation_key`).
        self.shared
            .lock()
            .find(&self.shared.hasher, &Key::of(d))
            .is_some()
    }

    /// Adds `d` (or records an access if it is there), then evicts what no longer fits. A
    /// media type given for content already indexed without one is added. Content larger
    /// than the whole budget is evicted at once, and nothing else for it. Returns whether the
    /// entry is new.
    pub(crate) fn admit(&self, d: &Digest, size: u64, media_type: Option<&str>) -> bool {
        let key = Key::of(d);
        let now = now_ms();
        let shared = &*self.shared;
        let mut gone = Gone::new();
        let mut lru = shared.lock();
        let fresh = match lru.find(&shared.hasher, &key) {
            Some(i) => {
                lru.move_to_front(i);
                if let Some(current) = lru.entry(i).cloned() {
                    current.touch(now);
                    if let Some(mt) = media_type
                        && current.media_type.as_deref() != Some(mt)
                    {
                        let replaced = Entry::new(current.size, Some(Arc::from(mt)), now);
                        replaced.saved_access.store(
                            current.saved_access.load(Ordering::Relaxed),
                            Ordering::Relaxed,
                        );
                        replaced
                            .verified
                            .store(current.verified.load(Ordering::Relaxed), Ordering::Relaxed);
                        // Out and in again: the counters follow, and it stays the most recent.
                        if let Some((key, _)) = lru.take(&shared.hasher, i) {
                            lru.insert(&shared.hasher, key, Arc::new(replaced));
                        }
                    }
                }
                false
            }
            None => {
                if u64::from(weight(size)) > shared.capacity {
                    gone.push((key, size, Removal::Evicted));
                } else {
                    let entry = Arc::new(Entry::new(size, media_type.map(Arc::from), now));
                    lru.insert(&shared.hasher, key, entry);
                }
                true
            }
        };
        let done = shared.evict(&mut lru, &mut gone);
        drop(lru);
        shared.tell(gone);
        if !done {
            self.settle();
        }
        fresh
    }

    /// Adds an entry as loaded at start-up, its access and verification times as the metadata
    /// store has them, as the most recently used (the caller loads in access order), and
    /// evicts nothing: the caller settles once at the end.
    #[cfg(test)]
    pub(crate) fn load(&self, d: &Digest, size: u64, media_type: Option<Arc<str>>, times: Times) {
        self.load_key(Key::of(d), size, media_type, times);
    }

    /// [`Index::load`] by key.
    pub(crate) fn load_key(&self, key: Key, size: u64, media_type: Option<Arc<str>>, times: Times) {
        let entry = Entry::new(size, media_type, times.access_ms);
        entry.saved_access.store(times.access_ms, Ordering::Relaxed);
        entry.verified.store(times.verified_ms, Ordering::Relaxed);
        let mut lru = self.shared.lock();
        if lru.find(&self.shared.hasher, &key).is_none() {
            lru.insert(&self.shared.hasher, key, Arc::new(entry));
        }
    }

    /// Room for `n` more entries at once (start-up knows how many it loads).
    pub(crate) fn reserve_entries(&self, n: usize) {
        let mut lru = self.shared.lock();
        lru.slots.reserve(n);
        let Lru { table, slots, .. } = &mut *lru;
        let hasher = &self.shared.hasher;
        table.reserve(n, |&j| hasher.of(&slots[j as usize].key));
    }

    /// Holds `size` bytes of the budget under `key` (a key no content has: see
    /// `Store::reservation_key`), replacing what it held before, and evicts what no longer
    /// fits. `0` releases it. A reservation is never evicted, never listed or served; one
    /// larger than the whole budget is not held (the content it stands for will not be kept
    /// either, so nothing is evicted for it).
    pub(crate) fn reserve(&self, key: &Digest, size: u64) {
        let key = Key::of(key);
        let shared = &*self.shared;
        let mut gone = Gone::new();
        let mut lru = shared.lock();
        if let Some(i) = lru.find(&shared.hasher, &key) {
            lru.take(&shared.hasher, i);
        }
        if size > 0 && u64::from(weight(size)) <= shared.capacity {
            lru.insert(&shared.hasher, key, Arc::new(Entry::reservation(size)));
        }
        let done = shared.evict(&mut lru, &mut gone);
        drop(lru);
        shared.tell(gone);
        if !done {
            self.settle();
        }
    }

    /// Removes `d`; the sink hears of it as [`Removal::Removed`]. Returns its size.
    pub(crate) fn remove(&self, d: &Digest) -> Option<u64> {
        let key = Key::of(d);
        let shared = &*self.shared;
        let mut lru = shared.lock();
        let i = lru.find(&shared.hasher, &key)?;
        let (key, e) = lru.take(&shared.hasher, i)?;
        drop(lru);
        if !e.reservation {
            shared.tell(vec![(key, e.size, Removal::Removed)]);
        }
        Some(e.size)
    }

    /// Evicts what is over the budget now (after loading).
    pub(crate) fn settle(&self) {
        let shared = &*self.shared;
        loop {
            let mut gone = Gone::new();
            let done = shared.evict(&mut shared.lock(), &mut gone);
            shared.tell(gone);
            if done {
                return;
            }
        }
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.shared.lock().bytes
    }

    /// Entries and bytes evicted by the size policy since the store opened.
    pub(crate) fn evicted(&self) -> Evictions {
        *self
            .shared
            .evicted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn max_bytes(&self) -> u64 {
        self.shared.max_bytes
    }

    /// Entries of content, not counting reservations.
    pub(crate) fn entry_count(&self) -> u64 {
        let lru = self.shared.lock();
        lru.len - lru.reservations
    }

    /// Raises the verification times of these entries to the times given (never lowers one:
    /// the scrubber may have verified it since).
    pub(crate) fn mark_verified(&self, rows: &[(Key, u64)]) {
        // Lookups scattered over the whole index miss the CPU's caches: a few hundred per hold
        // of the lock keep it short while requests are being served.
        for chunk in rows.chunks(MARK_CHUNK) {
            let lru = self.shared.lock();
            for (key, at) in chunk {
                if let Some(e) = lru
                    .find(&self.shared.hasher, key)
                    .and_then(|i| lru.entry(i))
                {
                    e.verified.fetch_max(*at, Ordering::Relaxed);
                }
            }
        }
    }

    /// Entries with a media type (manifests).
    pub(crate) fn manifest_count(&self) -> u64 {
        self.shared.lock().manifests
    }

    /// Calls `f` with every entry of content (reservations are not content), a few thousand
    /// per hold of the lock, so a scan of a million entries never stops requests for long: a
    /// snapshot that may miss what changes meanwhile, and may give an entry twice (removed and
    /// admitted again into a later slot while the scan runs). `f` runs under the index's lock:
    /// it must not call the index.
    pub(crate) fn scan(&self, mut f: impl FnMut(&Key, &Arc<Entry>)) {
        let mut at = 0;
        loop {
            let lru = self.shared.lock();
            let end = lru.slots.len().min(at + SCAN_CHUNK);
            for s in &lru.slots[at.min(end)..end] {
                if let Some(e) = s.entry.as_ref().filter(|e| !e.reservation) {
                    f(&s.key, e);
                }
            }
            if end >= lru.slots.len() {
                return;
            }
            at = end;
        }
    }

    /// The same index, for the metadata writer and the scrubber.
    pub(crate) fn handle(&self) -> IndexHandle {
        self.clone()
    }
}

#[cfg(test)]
mod tests;
