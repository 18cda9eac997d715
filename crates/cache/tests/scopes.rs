//! Scopes: which (upstream, repository) holds which content. A pair is known for its own
//! upstream and repository only, survives a restart, and goes with its content (eviction,
//! removal); pairs of content that is not stored do not survive a restart.

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

mod common;

use wharf_cache::{ScopeKey, Store};
use wharf_oci::Digest;

use common::{blob, fill, open_with_budget};

const KIB: usize = 1024;

fn key<'a>(upstream: &'a str, repository: &'a str, digest: &'a Digest) -> ScopeKey<'a> {
    ScopeKey {
        upstream,
        repository,
        digest,
    }
}

#[tokio::test]
async fn pairs_are_per_upstream_and_repository_and_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b);
    {
        let store = open_with_budget(dir.path(), 1 << 20).await;
        a = fill(&store, blob(1, 10 * KIB)).await;
        b = fill(&store, blob(2, 10 * KIB)).await;
        store.add_scope(key("oracle", "java/serverjre", &a));
        store.add_scope(key("oracle", "hello", &b));
        store.add_scope(key("quay", "hello", &b));
        // Twice is once.
        store.add_scope(key("oracle", "hello", &b));
        assert_eq!(store.scope_count(), 3);
        assert!(store.in_scope(key("oracle", "java/serverjre", &a)));
        assert!(!store.in_scope(key("oracle", "hello", &a)));
        assert!(!store.in_scope(key("quay", "java/serverjre", &a)));
        store.flush().await.expect("flush");
    }
    let store = open_with_budget(dir.path(), 1 << 20).await;
    assert_eq!(store.scope_count(), 3);
    assert!(store.in_scope(key("oracle", "java/serverjre", &a)));
    assert!(store.in_scope(key("oracle", "hello", &b)));
    assert!(store.in_scope(key("quay", "hello", &b)));
    assert!(!store.in_scope(key("oracle", "hello", &a)));
    assert!(!store.in_scope(key("oracle", "no/such/repo", &a)));
    assert!(!store.in_scope(key("quay", "java/serverjre", &a)));
}

#[tokio::test]
async fn content_that_leaves_the_store_takes_its_pairs_with_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (gone, evicted, kept);
    {
        // Room for two pieces of 10 KiB, not three.
        let store = open_with_budget(dir.path(), 25 * KIB).await;
        gone = fill(&store, blob(1, 10 * KIB)).await;
        kept = fill(&store, blob(2, 10 * KIB)).await;
        for d in [&gone, &kept] {
            store.add_scope(key("oracle", "a", d));
            store.add_scope(key("oracle", "b", d));
        }
        assert!(store.remove(&gone).is_some(), "cache rm");
        store.flush().await.expect("flush");
        assert!(!store.in_scope(key("oracle", "a", &gone)));
        assert!(!store.in_scope(key("oracle", "b", &gone)));

        // kept is used, so the next fill evicts `evicted`, the least recently used.
        evicted = fill(&store, blob(3, 10 * KIB)).await;
        store.add_scope(key("oracle", "a", &evicted));
        assert!(store.open_blob(&kept).await.expect("open").is_some());
        let newest = fill(&store, blob(4, 10 * KIB)).await;
        store.flush().await.expect("flush");
        assert!(!store.contains(&evicted), "the budget evicted it");
        assert!(!store.in_scope(key("oracle", "a", &evicted)));
        assert!(store.in_scope(key("oracle", "a", &kept)));
        assert!(store.in_scope(key("oracle", "b", &kept)));

        // Stored again through another repository: only that one is known. (Room made first,
        // so that `kept` stays.)
        assert!(store.remove(&newest).is_some());
        let again = fill(&store, blob(1, 10 * KIB)).await;
        assert_eq!(again, gone);
        store.add_scope(key("oracle", "c", &again));
        assert!(store.in_scope(key("oracle", "c", &again)));
        assert!(!store.in_scope(key("oracle", "a", &again)));
        store.flush().await.expect("flush");
    }
    let store = open_with_budget(dir.path(), 25 * KIB).await;
    assert!(store.in_scope(key("oracle", "a", &kept)));
    assert!(store.in_scope(key("oracle", "c", &gone)));
    assert!(!store.in_scope(key("oracle", "a", &gone)));
    assert!(!store.in_scope(key("oracle", "a", &evicted)));
}

#[tokio::test]
async fn pairs_of_content_not_stored_are_dropped_at_start_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A manifest names children before they are pulled: their pairs are recorded then.
    let child = Digest::sha256_of(b"a layer not pulled yet");
    let stored;
    {
        let store = Store::open(dir.path()).await.expect("open");
        stored = fill(&store, blob(1, KIB)).await;
        store.add_scope(key("oracle", "a", &child));
        store.add_scope(key("oracle", "a", &stored));
        assert!(store.in_scope(key("oracle", "a", &child)));
        store.flush().await.expect("flush");
    }
    let store = Store::open(dir.path()).await.expect("open");
    assert_eq!(store.scope_count(), 1);
    assert!(store.in_scope(key("oracle", "a", &stored)));
    assert!(!store.in_scope(key("oracle", "a", &child)));
    drop(store);
    // And the row went too, not only the set entry.
    let store = Store::open(dir.path()).await.expect("open");
    assert_eq!(store.scope_count(), 1);
}
