//! Restarts: content, tag records with their validation times and the access order survive;
//! start-up quarantines files that are not what their name says (and so does a manifest read);
//! two processes never share a store.

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

mod common;

use std::path::Path;
use std::time::Duration;

use tokio::time::Instant;
use wharf_cache::{Store, StoreError, StoreOptions, TagKey, TagRecord};
use wharf_oci::Digest;

use common::{blob, blob_path, files_under, fill, open_with_budget};

const KIB: usize = 1024;
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// Flips one byte in place, as a failing disk (or a careless operator) would.
fn flip_byte(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).expect("read");
    bytes[at] ^= 0xff;
    std::fs::write(path, bytes).expect("write");
}

const SLIM: TagKey<'static> = TagKey {
    upstream: "oracle",
    repository: "os/oraclelinux",
    tag: "7-slim",
};
const HELLO: TagKey<'static> = TagKey {
    upstream: "oracle",
    repository: "hello",
    tag: "latest",
};

#[tokio::test]
async fn content_tags_and_validation_times_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = br#"{"schemaVersion":2}"#;
    let m = Digest::sha256_of(manifest);
    let layer;
    {
        let store = open_with_budget(dir.path(), 1 << 20).await;
        layer = fill(&store, blob(1, 10 * KIB)).await;
        store
            .put_manifest(&m, OCI_MANIFEST, manifest)
            .await
            .expect("put");
        let validated_at = Instant::now()
            .checked_sub(Duration::from_secs(100))
            .expect("instant");
        let rec = TagRecord {
            digest: m.clone(),
            media_type: OCI_MANIFEST.into(),
            size: manifest.len() as u64,
            validated_at,
        };
        store.put_tag(SLIM, rec);
        // Dropping the store commits what is pending (no explicit flush).
    }
    let store = open_with_budget(dir.path(), 1 << 20).await;
    assert_eq!(store.blob_size(&layer).await, Some(10 * KIB as u64));
    let (mt, bytes) = store.get_manifest(&m).await.expect("get").expect("kept");
    assert_eq!((mt.as_str(), &bytes[..]), (OCI_MANIFEST, &manifest[..]));
    let rec = store.get_tag(SLIM).expect("tag kept");
    assert_eq!(rec.digest, m);
    let age = rec.validated_at.elapsed();
    assert!(
        age >= Duration::from_secs(99) && age < Duration::from_secs(110),
        "validated {age:?} ago, want about 100 s"
    );
    let tags = store.tags();
    assert_eq!(tags.len(), 1);
    assert_eq!(tags[0].repository, "os/oraclelinux");
}

/// A store in `dir` (budget 13 KiB) with three 4 KiB blobs A, B, C stored in that order and
/// A read last: B is the least recently used. The store is closed again.
async fn three_blobs_the_first_used_last(dir: &Path) -> (Digest, Digest, Digest) {
    let store = open_with_budget(dir, 13 * KIB).await;
    // Access times are kept in milliseconds: space every access so that no two share one and
    // the order after a restart is unambiguous.
    let mut filled = Vec::new();
    for n in 1..=3 {
        filled.push(fill(&store, blob(n, 4 * KIB)).await);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(store.open_blob(&filled[0]).await.expect("open").is_some());
    store.flush().await.expect("flush");
    let [a, b, c] = <[Digest; 3]>::try_from(filled).expect("three");
    (a, b, c)
}

#[tokio::test]
async fn the_access_order_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b, c) = three_blobs_the_first_used_last(dir.path()).await;
    let store = open_with_budget(dir.path(), 13 * KIB).await;
    fill(&store, blob(4, 4 * KIB)).await;
    store.flush().await.expect("flush");
    // B was the least recently used before the restart, so it is the one that left.
    assert_eq!(store.blob_size(&b).await, None);
    for kept in [&a, &c] {
        assert!(store.blob_size(kept).await.is_some(), "{kept} kept");
    }
}

#[tokio::test]
async fn content_hashed_again_at_start_up_keeps_its_access_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b, c) = three_blobs_the_first_used_last(dir.path()).await;
    // A's file copied over itself (a restore from a backup): a new inode, and an mtime an
    // hour old. Start-up hashes it again, and must keep its recorded access, not its mtime.
    let path = blob_path(dir.path(), &a);
    let bytes = std::fs::read(&path).expect("read");
    std::fs::remove_file(&path).expect("remove");
    std::fs::write(&path, bytes).expect("write");
    let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_modified(hour_ago))
        .expect("set mtime");
    let store = open_with_budget(dir.path(), 13 * KIB).await;
    assert_eq!(store.stats().entries, 3);
    fill(&store, blob(4, 4 * KIB)).await;
    store.flush().await.expect("flush");
    assert_eq!(
        store.blob_size(&b).await,
        None,
        "B was the least recently used"
    );
    for kept in [&a, &c] {
        assert!(store.blob_size(kept).await.is_some(), "{kept} kept");
    }
}

#[tokio::test]
async fn a_lower_budget_at_start_up_evicts_the_oldest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut digests = Vec::new();
    {
        let store = open_with_budget(dir.path(), 100 * KIB).await;
        for n in 0..5 {
            digests.push(fill(&store, blob(n, 4 * KIB)).await);
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        store.flush().await.expect("flush");
    }
    let store = open_with_budget(dir.path(), 9 * KIB).await;
    store.flush().await.expect("flush");
    let kept: Vec<bool> = {
        let mut v = Vec::new();
        for d in &digests {
            v.push(store.blob_size(d).await.is_some());
        }
        v
    };
    assert_eq!(kept, [false, false, false, true, true]);
    assert_eq!(files_under(&dir.path().join("blobs")).len(), 2);
}

#[tokio::test]
async fn a_file_changed_on_disk_while_stopped_is_quarantined_at_start_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = blob(1, 8 * KIB);
    let manifest = br#"{"schemaVersion":2,"layers":[]}"#;
    let m = Digest::sha256_of(manifest);
    let d;
    {
        let store = open_with_budget(dir.path(), 1 << 20).await;
        d = fill(&store, data.clone()).await;
        store
            .put_manifest(&m, OCI_MANIFEST, manifest)
            .await
            .expect("put");
    }
    flip_byte(&blob_path(dir.path(), &d), 4000);
    flip_byte(&blob_path(dir.path(), &m), 3);

    let store = open_with_budget(dir.path(), 1 << 20).await;
    assert_eq!(store.blob_size(&d).await, None);
    assert!(store.open_blob(&d).await.expect("open").is_none());
    assert!(store.get_manifest(&m).await.expect("get").is_none());
    assert!(!blob_path(dir.path(), &d).exists());
    assert_eq!(files_under(&dir.path().join("quarantine")).len(), 2);
    // The next fill stores the right bytes again.
    fill(&store, data.clone()).await;
    let stored = std::fs::read(blob_path(dir.path(), &d)).expect("refilled");
    assert_eq!(stored, data);
}

#[tokio::test]
async fn unknown_files_are_verified_and_misnamed_ones_quarantined() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = blob(1, 3 * KIB);
    let g = Digest::sha256_of(&good);
    let liar = Digest::sha256_of(b"what the name says");
    for (d, bytes) in [(&g, &good[..]), (&liar, &b"something else"[..])] {
        let p = blob_path(dir.path(), d);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, bytes).expect("write");
    }
    std::fs::write(dir.path().join("blobs/sha256/stray"), b"?").expect("write stray");

    let store = open_with_budget(dir.path(), 1 << 20).await;
    assert_eq!(store.blob_size(&g).await, Some(good.len() as u64));
    assert_eq!(store.blob_size(&liar).await, None);
    assert_eq!(files_under(&dir.path().join("quarantine")).len(), 2);
    assert_eq!(files_under(&dir.path().join("blobs")).len(), 1);
}

#[tokio::test]
async fn a_manifest_changed_on_disk_while_running_is_never_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Nothing kept in memory: every read goes to the file and hashes it.
    let options = StoreOptions {
        manifest_memory: 0,
        ..StoreOptions::default()
    };
    let store = Store::open_with(dir.path(), options).await.expect("open");
    let manifest = br#"{"schemaVersion":2,"config":{}}"#;
    let m = Digest::sha256_of(manifest);
    store
        .put_manifest(&m, OCI_MANIFEST, manifest)
        .await
        .expect("put");
    flip_byte(&blob_path(dir.path(), &m), 5);
    assert!(store.get_manifest(&m).await.expect("get").is_none());
    assert_eq!(files_under(&dir.path().join("quarantine")).len(), 1);
    // Stored again (as a refetch would), it is served again.
    store
        .put_manifest(&m, OCI_MANIFEST, manifest)
        .await
        .expect("put");
    let (_, got) = store.get_manifest(&m).await.expect("get").expect("served");
    assert_eq!(&got[..], &manifest[..]);
}

#[tokio::test]
async fn a_manifest_in_memory_is_served_as_verified_and_the_changed_file_caught_at_start_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = br#"{"schemaVersion":2,"config":{"size":1}}"#;
    let m = Digest::sha256_of(manifest);
    {
        let store = open_with_budget(dir.path(), 1 << 20).await;
        store
            .put_manifest(&m, OCI_MANIFEST, manifest)
            .await
            .expect("put");
        // The file's fingerprint recorded first, and the change after it moves its mtime.
        store.flush().await.expect("flush");
        tokio::time::sleep(Duration::from_millis(50)).await;
        flip_byte(&blob_path(dir.path(), &m), 5);
        // The bytes verified when stored, not the changed file.
        let (_, got) = store.get_manifest(&m).await.expect("get").expect("served");
        assert_eq!(&got[..], &manifest[..]);
        // Another one, dropped from the index (as `cache rm` does): memory does not answer.
        let other = br#"{"schemaVersion":2,"config":{"size":2}}"#;
        let o = Digest::sha256_of(other);
        store
            .put_manifest(&o, OCI_MANIFEST, other)
            .await
            .expect("put");
        assert!(store.get_manifest(&o).await.expect("get").is_some());
        assert_eq!(store.remove(&o), Some(other.len() as u64));
        assert!(store.get_manifest(&o).await.expect("get").is_none());
        store.flush().await.expect("flush");
    }
    let store = open_with_budget(dir.path(), 1 << 20).await;
    assert!(store.get_manifest(&m).await.expect("get").is_none());
    assert_eq!(files_under(&dir.path().join("quarantine")).len(), 1);
}

#[tokio::test]
async fn a_blob_cut_short_on_disk_is_not_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_with_budget(dir.path(), 1 << 20).await;
    let d = fill(&store, blob(1, 8 * KIB)).await;
    let p = blob_path(dir.path(), &d);
    let bytes = std::fs::read(&p).expect("read");
    std::fs::write(&p, &bytes[..100]).expect("truncate");
    assert!(store.open_blob(&d).await.expect("open").is_none());
    assert_eq!(files_under(&dir.path().join("quarantine")).len(), 1);
}

#[tokio::test]
async fn tags_whose_manifest_is_gone_are_dropped_at_start_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = br#"{"schemaVersion":2}"#;
    let m = Digest::sha256_of(manifest);
    {
        let store = open_with_budget(dir.path(), 1 << 20).await;
        store
            .put_manifest(&m, OCI_MANIFEST, manifest)
            .await
            .expect("put");
        let rec = TagRecord {
            digest: m.clone(),
            media_type: OCI_MANIFEST.into(),
            size: manifest.len() as u64,
            validated_at: Instant::now(),
        };
        store.put_tag(HELLO, rec);
    }
    std::fs::remove_file(blob_path(dir.path(), &m)).expect("rm");
    let store = open_with_budget(dir.path(), 1 << 20).await;
    assert!(store.get_tag(HELLO).is_none());
    assert!(store.tags().is_empty());
}

#[tokio::test]
async fn two_stores_never_share_a_root() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = open_with_budget(dir.path(), 1 << 20).await;
    let second = Store::open(dir.path()).await;
    assert!(
        matches!(second, Err(StoreError::InUse { .. })),
        "{second:?}"
    );
    first.check_writable().await.expect("writable");
    drop(first);
    Store::open(dir.path()).await.expect("free again");
}
