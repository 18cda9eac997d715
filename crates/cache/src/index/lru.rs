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
        fn nibble(c: u8) -> Option<u8> {
            match c {
                b'0'..=b'9' => Some(c - b'0'),
                b'a'..=b'f' => Some(c - b'a' + 10),
                _ => None,
            }
        }
        match s.strip_prefix("sha256:").map(str::as_bytes) {
            Some(hex) if hex.len() == 64 => {
                let mut out = [0u8; 32];
                for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
                    *o = nibble(pair[0])? << 4 | nibble(pair[1])?;
                }
                Some(Key::Sha256(out))
            }
            _ => Digest::parse(s).ok().map(|d| Key::of(&d)),
        }
    }

    pub(crate) fn digest(&self) -> Digest {
        match self {
            Key::Sha256(bytes) => Digest::from_sha256(*bytes),
            Key::Other(d) => Digest::clone(d),
        }
    }
}

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
    /// Sum of the entries' weights, in KiB.
    pub(super) weight: u64,
    /// Entries, reservations among them.
    pub(super) len: u64,
    pub(super) reservations: u64,
    /// Entries with a media type: manifests.
    pub(super) manifests: u64,
}

impl Lru {
    pub(super) fn hash(hasher: &RandomState, key: &Key) -> u64 {
        match key {
            // Content addresses are uniform already; these 8 bytes are as good as any hash.
            Key::Sha256(b) => u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
            Key::Other(d) => hasher.hash_one(d),
        }
    }

    pub(super) fn find(&self, hasher: &RandomState, key: &Key) -> Option<u32> {
        let slots = &self.slots;
        self.table
            .find(Self::hash(hasher, key), |&i| slots[i as usize].key == *key)
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
    pub(super) fn insert(&mut self, hasher: &RandomState, key: Key, entry: Arc<Entry>) -> u32 {
        self.weight += u64::from(weight(entry.size));
        self.len += 1;
        self.reservations += u64::from(entry.reservation);
        self.manifests += u64::from(entry.media_type.is_some());
        let hash = Self::hash(hasher, &key);
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
            .insert_unique(hash, i, |&j| Self::hash(hasher, &slots[j as usize].key));
        self.push_front(i);
        i
    }

    /// Takes slot `i` out of the table and the list; its key and entry.
    pub(super) fn take(&mut self, hasher: &RandomState, i: u32) -> Option<(Key, Arc<Entry>)> {
        let hash = Self::hash(hasher, &self.slots[i as usize].key);
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
        self.len -= 1;
        self.reservations -= u64::from(entry.reservation);
        self.manifests -= u64::from(entry.media_type.is_some());
        Some((key, entry))
    }
}
