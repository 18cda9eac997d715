//! The index's table and recency list: a slab of slots, a hash table of slot numbers, and a
//! doubly linked list through the slots (see `index.rs`).

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use hashbrown::HashTable;
use wharf_oci::Digest;

use super::{Entry, weight};

/// A digest as the index keeps it: a sha256 as its 32 bytes (what nearly all content is),
/// anything else as the digest itself.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Key {
    Sha256([u8; 32]),
    Other(Box<Digest>),
}

impl Key {
    pub(crate) fn of(d: &Digest) -> Key {
        match d.sha256() {
            Some(bytes) => Key::Sha256(bytes),
            None => Key::Other(Box::new(d.clone())),
        }
    }

    /// The key of a digest written out (`sha256:<hex>`, as the metadata store keys its rows),
    /// without making a [`Digest`] for a sha256; `None` if it is no digest.
    pub(crate) fn parse(s: &str) -> Option<Key> {
        match s.strip_prefix("sha256:") {
            Some(hex) => Key::sha256_hex(hex),
            None => Digest::parse(s).ok().map(|d| Key::of(&d)),
        }
    }

    /// The key of a sha256 given as its 64 lowercase hex digits (a stored file's name).
    /// Without a branch per digit: start-up decodes a few million of these (issue 18).
    pub(crate) fn sha256_hex(hex: &str) -> Option<Key> {
        let hex: &[u8; 64] = hex.as_bytes().try_into().ok()?;
        let mut out = [0u8; 32];
        let mut bad = 0u8;
        for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
            let (hi, lo) = (NIBBLE[usize::from(pair[0])], NIBBLE[usize::from(pair[1])]);
            bad |= hi | lo;
            *o = hi << 4 | (lo & 0x0f);
        }
        (bad & 0xf0 == 0).then_some(Key::Sha256(out))
    }

    pub(crate) fn digest(&self) -> Digest {
        match self {
            Key::Sha256(bytes) => Digest::from_sha256(*bytes),
            Key::Other(d) => Digest::clone(d),
        }
    }
}

/// The value of each lowercase hex digit; 0xff for any other byte.
static NIBBLE: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 16 {
        t[b"0123456789abcdef"[i] as usize] = i as u8;
        i += 1;
    }
    t
};

/// No slot: the end of a list.
pub(super) const NIL: u32 = u32::MAX;

/// One place in the slab: an entry in the recency list, or a free place in the free list.
pub(super) struct Slot {
    pub(super) key: Key,
    /// `None` while the slot is free.
    pub(super) entry: Option<Arc<Entry>>,
    /// Towards the most recently used (`prev`) and the least (`next`); `next` links the free
    /// list while the slot is free.
    pub(super) prev: u32,
    pub(super) next: u32,
}

/// The entries: a slab of slots, a hash table of slot numbers, and the recency list through
/// the slots, most recently used at `head`.
pub(super) struct Lru {
    pub(super) table: HashTable<u32>,
    pub(super) slots: Vec<Slot>,
    pub(super) free: u32,
    pub(super) head: u32,
    pub(super) tail: u32,
    /// Sum of the entries' weights, in KiB (what the budget counts).
    pub(super) weight: u64,
    /// Sum of the entries' sizes, exact.
    pub(super) bytes: u64,
    /// Entries, reservations among them.
    pub(super) len: u64,
    pub(super) reservations: u64,
    /// Entries with a media type: manifests.
    pub(super) manifests: u64,
}

/// Hashes keys: a sha256's first 8 bytes through a multiply seeded per process (a hash is
/// uniform already, but whoever pushes content upstream can grind digests that share their
/// low bits; seeded, no such set lands in one bucket), anything else with SipHash.
pub(super) struct KeyHash {
    sip: RandomState,
    seed: u64,
}

impl KeyHash {
    pub(super) fn new() -> KeyHash {
        let sip = RandomState::new();
        let seed = sip.hash_one(0x5EED_u64) | 1;
        KeyHash { sip, seed }
    }

    pub(super) fn of(&self, key: &Key) -> u64 {
        match key {
            Key::Sha256(b) => {
                let x = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
                // The folded 128-bit product: every bit of the input reaches the low bits.
                let m = u128::from(x ^ self.seed) * u128::from(self.seed.rotate_left(29) | 1);
                (m >> 64) as u64 ^ m as u64
            }
            Key::Other(d) => self.sip.hash_one(d),
        }
    }
}

impl Lru {
    pub(super) fn find(&self, hasher: &KeyHash, key: &Key) -> Option<u32> {
        let slots = &self.slots;
        self.table
            .find(hasher.of(key), |&i| slots[i as usize].key == *key)
            .copied()
    }

    pub(super) fn entry(&self, i: u32) -> Option<&Arc<Entry>> {
        self.slots[i as usize].entry.as_ref()
    }

    pub(super) fn unlink(&mut self, i: u32) {
        let (prev, next) = {
            let s = &self.slots[i as usize];
            (s.prev, s.next)
        };
        match prev {
            NIL => self.head = next,
            p => self.slots[p as usize].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.slots[n as usize].prev = prev,
        }
    }

    pub(super) fn push_front(&mut self, i: u32) {
        let old = self.head;
        {
            let s = &mut self.slots[i as usize];
            s.prev = NIL;
            s.next = old;
        }
        match old {
            NIL => self.tail = i,
            o => self.slots[o as usize].prev = i,
        }
        self.head = i;
    }

    pub(super) fn move_to_front(&mut self, i: u32) {
        if self.head != i {
            self.unlink(i);
            self.push_front(i);
        }
    }

    /// Adds `entry` under `key` (not in the table) as the most recently used.
    pub(super) fn insert(&mut self, hasher: &KeyHash, key: Key, entry: Arc<Entry>) -> u32 {
        self.weight += u64::from(weight(entry.size));
        self.bytes += entry.size;
        self.len += 1;
        self.reservations += u64::from(entry.reservation);
        self.manifests += u64::from(entry.media_type.is_some());
        let hash = hasher.of(&key);
        let i = match self.free {
            NIL => {
                let i = u32::try_from(self.slots.len()).unwrap_or(NIL);
                self.slots.push(Slot {
                    key,
                    entry: Some(entry),
                    prev: NIL,
                    next: NIL,
                });
                i
            }
            i => {
                let s = &mut self.slots[i as usize];
                self.free = s.next;
                s.key = key;
                s.entry = Some(entry);
                i
            }
        };
        let slots = &self.slots;
        self.table
            .insert_unique(hash, i, |&j| hasher.of(&slots[j as usize].key));
        self.push_front(i);
        i
    }

    /// Takes slot `i` out of the table and the list; its key and entry. `None` for a free
    /// slot, which is left as it is.
    pub(super) fn take(&mut self, hasher: &KeyHash, i: u32) -> Option<(Key, Arc<Entry>)> {
        self.slots[i as usize].entry.as_ref()?;
        let hash = hasher.of(&self.slots[i as usize].key);
        if let Ok(found) = self.table.find_entry(hash, |&j| j == i) {
            found.remove();
        }
        self.unlink(i);
        let s = &mut self.slots[i as usize];
        let entry = s.entry.take()?;
        let key = std::mem::replace(&mut s.key, Key::Sha256([0; 32]));
        s.next = self.free;
        self.free = i;
        self.weight -= u64::from(weight(entry.size));
        self.bytes -= entry.size;
        self.len -= 1;
        self.reservations -= u64::from(entry.reservation);
        self.manifests -= u64::from(entry.media_type.is_some());
        Some((key, entry))
    }
}
