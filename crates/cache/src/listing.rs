//! What the store holds, listed and unlinked piece by piece: the questions a registry that
//! deletes and collects garbage asks (the hosted store, `wharf_proxy::hosted`), and that a
//! cache, which evicts by its budget, never needs.
//!
//! ```text
//! Store::contents       every stored digest with its size and media type (a snapshot)
//! Store::media_type     whether a stored digest is a manifest, and which
//! Store::scope_pairs    every (repository, digest) pair of an upstream, from the metadata
//!                       store, after everything recorded before the call is committed
//! Store::remove_scope   a repository no longer holds a digest: in memory now, persisted next
//! ```

use std::sync::atomic::Ordering;

use tokio::sync::oneshot;
use wharf_oci::Digest;

use crate::error::StoreError;
use crate::scopes::ScopeKey;
use crate::store::Store;
use crate::writer::Op;

/// One piece of stored content, as [`Store::contents`] lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub digest: Digest,
    pub size: u64,
    /// `Some` for a manifest: the media type it was stored with.
    pub media_type: Option<String>,
    /// When it was last read or written, ms since the Unix epoch.
    pub last_access_ms: u64,
}

impl Store {
    /// Every piece of stored content: a snapshot, which may miss what changes meanwhile.
    pub fn contents(&self) -> Vec<Stored> {
        let mut out = Vec::new();
        self.index.scan(|k, e| {
            out.push(Stored {
                digest: k.digest(),
                size: e.size,
                media_type: e.media_type.as_deref().map(str::to_owned),
                last_access_ms: e.last_access.load(Ordering::Relaxed),
            });
        });
        out
    }

    /// The media type `d` was stored with if it is a stored manifest; `None` for a blob or
    /// content not stored. Recorded as an access (which orders only an eviction).
    pub fn media_type(&self, d: &Digest) -> Option<String> {
        self.index
            .get(d)
            .and_then(|e| e.media_type.as_deref().map(str::to_owned))
    }

    /// Every (repository, digest) pair recorded for `upstream`, read from the metadata store
    /// once everything recorded before this call is committed there (pairs added or removed
    /// before the call are in the answer as they stand). A scan of the whole table: for
    /// garbage collection and start-up, not for a request.
    pub async fn scope_pairs(&self, upstream: &str) -> Result<Vec<(String, Digest)>, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.meta.send(Op::ListScopes(upstream.to_owned(), tx));
        let rows = rx
            .await
            .unwrap_or_else(|_| Err("the metadata writer has stopped".into()))
            .map_err(|message| StoreError::Meta {
                op: "listing scopes in",
                message,
            })?;
        Ok(rows
            .into_iter()
            .filter_map(|k| Some((k.repository, Digest::parse(&k.digest).ok()?)))
            .collect())
    }

    /// Records that the repository `key` names no longer holds its digest (the content stays
    /// stored, for other repositories and garbage collection to decide). Whether it held it.
    pub fn remove_scope(&self, key: ScopeKey<'_>) -> bool {
        if !self.scopes.contains(key) {
            return false;
        }
        self.scopes.remove(key);
        self.meta.send(Op::RemoveScope(key.to_owned_key()));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key<'a>(repository: &'a str, digest: &'a Digest) -> ScopeKey<'a> {
        ScopeKey {
            upstream: "hosted",
            repository,
            digest,
        }
    }

    #[tokio::test]
    async fn pairs_are_listed_removed_and_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (Digest::sha256_of(b"a"), Digest::sha256_of(b"b"));
        {
            let store = Store::open(dir.path()).await.expect("open");
            store
                .put_manifest(&a, "application/vnd.oci.image.manifest.v1+json", b"a")
                .await
                .expect("a");
            store.put_manifest(&b, "text/plain", b"b").await.expect("b");
            store.add_scope(key("team/a", &a));
            store.add_scope(key("team/b", &a));
            store.add_scope(key("team/b", &b));
            store.add_scope(ScopeKey {
                upstream: "oracle",
                repository: "os",
                digest: &b,
            });
            assert!(store.remove_scope(key("team/b", &a)));
            assert!(!store.remove_scope(key("team/b", &a)), "gone already");
            assert!(!store.in_scope(key("team/b", &a)));
            let mut pairs = store.scope_pairs("hosted").await.expect("pairs");
            pairs.sort();
            let mut want = vec![
                ("team/a".to_owned(), a.clone()),
                ("team/b".to_owned(), b.clone()),
            ];
            want.sort();
            assert_eq!(pairs, want);
            assert_eq!(
                store.media_type(&a).as_deref(),
                Some("application/vnd.oci.image.manifest.v1+json")
            );
            assert_eq!(store.contents().len(), 2);
            store.flush().await.expect("flush");
        }
        let store = Store::open(dir.path()).await.expect("reopen");
        assert!(store.in_scope(key("team/a", &a)));
        assert!(!store.in_scope(key("team/b", &a)), "the removal persisted");
        assert!(store.in_scope(key("team/b", &b)));
    }
}
