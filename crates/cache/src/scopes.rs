//! Scopes: which (upstream, repository) is known to hold which content.
//!
//! Content is stored once per digest, but a registry answers for a digest per repository: a
//! blob cached through one repository must not be served through another that does not hold
//! it. The proxy serves stored content for a repository only when the pair is known here
//! (it came through that repository, a manifest of that repository names it, or the upstream
//! confirmed it), and records pairs as it learns them.
//!
//! In memory the pairs are a set of 64-bit keyed hashes (SipHash with keys drawn at start-up,
//! so nobody can pick a repository name that collides with a known pair), split over shards
//! behind `RwLock`s: a lookup hashes the three strings and takes one shard's read lock for a
//! probe, never across an await, allocating nothing. A pair costs 8 bytes in a hash table kept
//! at most 7/8 full, so 10-20 bytes with the table's slack; a store of 100 000 pieces of content
//! each held by 3 repositories keeps about 300 000 pairs, 3-6 MiB.
//!
//! They are persisted in the metadata store's `scopes` table, keyed (digest, upstream,
//! repository) so that content leaving the store drops its pairs with one range scan (the
//! metadata writer does it, in memory too). Start-up loads the pairs of the content it keeps
//! and drops the rest, so what is held stays bounded by the stored content times the
//! repositories that hold each: pairs recorded for content not stored (the children a manifest
//! names before they are pulled) last until it is stored and evicted, or the next start-up.

use std::collections::HashSet;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::{PoisonError, RwLock};

use wharf_oci::Digest;

/// A digest as held by a repository of an upstream. All three are named at every call, as
/// [`TagKey`](crate::TagKey)'s are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScopeKey<'a> {
    /// The configured upstream's name (`[[upstream]] name`).
    pub upstream: &'a str,
    /// The repository in the upstream's namespace.
    pub repository: &'a str,
    pub digest: &'a Digest,
}

impl ScopeKey<'_> {
    pub(crate) fn to_owned_key(self) -> OwnedScopeKey {
        OwnedScopeKey {
            digest: self.digest.to_string(),
            upstream: self.upstream.to_owned(),
            repository: self.repository.to_owned(),
        }
    }
}

/// A [`ScopeKey`] that owns its strings: how the metadata writer and start-up hold one.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct OwnedScopeKey {
    pub(crate) digest: String,
    pub(crate) upstream: String,
    pub(crate) repository: String,
}

/// Shards of the set: enough that concurrent requests rarely meet on one lock.
const SHARDS: usize = 32;

/// The set's keys are already uniform hashes: the table uses them as they are.
#[derive(Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used (the keys are u64); this keeps any other use correct.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Shard = RwLock<HashSet<u64, BuildHasherDefault<Identity>>>;

/// The known pairs, in memory.
pub(crate) struct Scopes {
    keys: RandomState,
    shards: Box<[Shard]>,
}

impl std::fmt::Debug for Scopes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scopes").field("len", &self.len()).finish()
    }
}

impl Default for Scopes {
    fn default() -> Self {
        Scopes {
            keys: RandomState::new(),
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
        }
    }
}

impl Scopes {
    fn hash(&self, k: ScopeKey<'_>) -> u64 {
        // Digest's own Hash covers its algorithm and hex; `&str`s end with a terminator, so
        // the three fields cannot run into each other.
        self.keys.hash_one((k.upstream, k.repository, k.digest))
    }

    fn shard(&self, h: u64) -> &Shard {
        // Bits 40.. : the table indexes buckets by the low bits and tags them with the top 7,
        // so the shard is chosen by bits neither uses (a shard never has 2^40 buckets).
        &self.shards[(h >> 40) as usize % SHARDS]
    }

    pub(crate) fn contains(&self, k: ScopeKey<'_>) -> bool {
        let h = self.hash(k);
        self.shard(h)
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&h)
    }

    /// Adds the pair; whether it is new.
    pub(crate) fn insert(&self, k: ScopeKey<'_>) -> bool {
        let h = self.hash(k);
        let shard = self.shard(h);
        // Most inserts find the pair there already: look under the shared lock first.
        if shard
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&h)
        {
            return false;
        }
        shard
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(h)
    }

    pub(crate) fn remove(&self, k: ScopeKey<'_>) {
        let h = self.hash(k);
        self.shard(h)
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&h);
    }

    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }

    /// The set of the rows start-up kept.
    pub(crate) fn load(rows: &[(OwnedScopeKey, Digest)]) -> Scopes {
        let scopes = Scopes::default();
        for (k, digest) in rows {
            scopes.insert(ScopeKey {
                upstream: &k.upstream,
                repository: &k.repository,
                digest,
            });
        }
        scopes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u32) -> Digest {
        Digest::sha256_of(&n.to_be_bytes())
    }

    fn key<'a>(upstream: &'a str, repository: &'a str, digest: &'a Digest) -> ScopeKey<'a> {
        ScopeKey {
            upstream,
            repository,
            digest,
        }
    }

    #[test]
    fn a_pair_is_known_for_its_upstream_and_repository_only() {
        let s = Scopes::default();
        let (a, b) = (d(1), d(2));
        assert!(s.insert(key("oracle", "java/serverjre", &a)));
        assert!(!s.insert(key("oracle", "java/serverjre", &a)), "not new");
        assert!(s.contains(key("oracle", "java/serverjre", &a)));
        assert!(!s.contains(key("oracle", "hello", &a)));
        assert!(!s.contains(key("quay", "java/serverjre", &a)));
        assert!(!s.contains(key("oracle", "java/serverjre", &b)));
        // The strings cannot slide into each other.
        assert!(!s.contains(key("oracle/java", "serverjre", &a)));
        assert!(!s.contains(key("oraclejava/", "serverjre", &a)));
        s.remove(key("oracle", "java/serverjre", &a));
        assert!(!s.contains(key("oracle", "java/serverjre", &a)));
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn many_pairs_spread_over_the_shards() {
        let s = Scopes::default();
        let digests: Vec<Digest> = (0..4000).map(d).collect();
        for (i, dg) in digests.iter().enumerate() {
            let repo = format!("repo{}", i % 7);
            assert!(s.insert(key("up", &repo, dg)));
        }
        assert_eq!(s.len(), 4000);
        let busiest = s
            .shards
            .iter()
            .map(|sh| sh.read().expect("lock").len())
            .max()
            .expect("shards");
        // 125 a shard on average; a shard choice that ignored the hash would put all in one.
        assert!(busiest < 250, "{busiest}");
        for (i, dg) in digests.iter().enumerate() {
            let repo = format!("repo{}", i % 7);
            assert!(s.contains(key("up", &repo, dg)));
            let other = format!("repo{}", (i + 1) % 7);
            assert!(!s.contains(key("up", &other, dg)));
        }
    }
}
