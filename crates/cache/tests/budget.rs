//! The budget: content that no longer fits leaves, least recently used first, file and all;
//! a reader holding an evicted file still gets every byte; manifests are evicted like blobs.

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

mod common;

use std::path::Path;

use std::io::Read as _;
use wharf_oci::Digest;

use common::{blob, blob_path, bounded, files_under, fill, open_with_budget, whole};

const KIB: usize = 1024;

fn bytes_on_disk(root: &Path) -> u64 {
    files_under(&root.join("blobs"))
        .iter()
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum()
}

#[tokio::test]
async fn the_least_recently_used_leaves_and_its_file_goes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_with_budget(dir.path(), 10 * KIB).await;
    let a = fill(&store, blob(1, 4 * KIB)).await;
    let b = fill(&store, blob(2, 4 * KIB)).await;
    // A is used again: B is now the least recently used.
    assert!(store.open_blob(&a).await.expect("open").is_some());
    let c = fill(&store, blob(3, 4 * KIB)).await;
    store.flush().await.expect("flush");

    assert_eq!(store.blob_size(&b).await, None, "B was evicted");
    assert!(!blob_path(dir.path(), &b).exists(), "B's file was removed");
    for kept in [&a, &c] {
        assert_eq!(store.blob_size(kept).await, Some(4 * KIB as u64));
        assert!(blob_path(dir.path(), kept).is_file());
    }
    let stats = store.stats();
    assert_eq!(stats.size_bytes, 8 * KIB as u64);
    assert_eq!(stats.max_size_bytes, 10 * KIB as u64);
    assert_eq!(stats.entries, 2);
    assert!(bytes_on_disk(dir.path()) <= 10 * KIB as u64);

    // An evicted blob is a miss, and a new fill brings it back.
    assert!(store.open_blob(&b).await.expect("open").is_none());
    fill(&store, blob(2, 4 * KIB)).await;
    assert_eq!(store.blob_size(&b).await, Some(4 * KIB as u64));
    store.flush().await.expect("flush");
    assert!(bytes_on_disk(dir.path()) <= 10 * KIB as u64);
}

#[tokio::test]
async fn a_reader_of_an_evicted_blob_gets_every_byte() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_with_budget(dir.path(), 300 * KIB).await;
    let data = blob(1, 200 * KIB);
    let a = fill(&store, data.clone()).await;
    let (mut file, size) = store.open_blob(&a).await.expect("open").expect("stored");
    assert_eq!(size, data.len() as u64);
    let mut first = vec![0; 1000];
    file.read_exact(&mut first).expect("read");

    // Something larger arrives: A must go, while its reader is half-way.
    fill(&store, blob(2, 200 * KIB)).await;
    store.flush().await.expect("flush");
    assert!(!blob_path(dir.path(), &a).exists(), "A's file was unlinked");

    let mut rest = Vec::new();
    file.read_to_end(&mut rest).expect("read the rest");
    first.extend(rest);
    assert_eq!(first, data);
}

#[tokio::test]
async fn manifests_are_evicted_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_with_budget(dir.path(), 8 * KIB).await;
    let manifest =
        br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#;
    let m = Digest::sha256_of(manifest);
    store
        .put_manifest(&m, "application/vnd.oci.image.manifest.v1+json", manifest)
        .await
        .expect("put");
    fill(&store, blob(1, 4 * KIB)).await;
    fill(&store, blob(2, 4 * KIB)).await;
    store.flush().await.expect("flush");
    assert!(store.get_manifest(&m).await.expect("get").is_none());
    assert!(!blob_path(dir.path(), &m).exists());
}

#[tokio::test]
async fn content_larger_than_the_budget_is_served_but_not_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_with_budget(dir.path(), 16 * KIB).await;
    let small = fill(&store, blob(1, 2 * KIB)).await;
    let data = blob(2, 64 * KIB);
    let d = Digest::sha256_of(&data);
    let f = store.fill(&d, whole(data.clone()));
    let reader = f.reader(0, data.len() as u64);
    bounded(f.done()).await.expect("fill");
    store.flush().await.expect("flush");
    // Evicted at once, but the reader that had not opened the file yet still reads it all.
    assert_eq!(store.blob_size(&d).await, None);
    let got = bounded(common::collect(reader)).await.expect("read");
    assert_eq!(got, data);
    // Its fill and readers gone, the file goes.
    drop(f);
    store.flush().await.expect("flush");
    assert_eq!(store.blob_size(&d).await, None);
    assert_eq!(store.blob_size(&small).await, Some(2 * KIB as u64));
    assert!(bytes_on_disk(dir.path()) <= 16 * KIB as u64);
}

#[tokio::test]
async fn hits_and_misses_are_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_with_budget(dir.path(), 64 * KIB).await;
    let a = fill(&store, blob(1, KIB)).await;
    assert!(store.open_blob(&a).await.expect("open").is_some());
    assert!(store.open_blob(&a).await.expect("open").is_some());
    let missing = Digest::sha256_of(b"missing");
    assert!(store.open_blob(&missing).await.expect("open").is_none());
    let s = store.stats();
    assert_eq!((s.hits, s.misses), (2, 1));
}

/// Every byte the store has on disk: its files (blobs and spool) and, as `extra`, what readers
/// still hold open of files that were unlinked.
fn disk_use(root: &Path, extra: u64) -> u64 {
    let spool: u64 = files_under(&root.join("spool"))
        .iter()
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum();
    bytes_on_disk(root) + spool + extra
}

/// Issue 13 #4: the budget is what is on disk. A download in flight holds its announced size
/// before its bytes arrive (room is made first), and a file that left the index while a reader
/// holds it open is counted until it is closed.
#[tokio::test]
async fn the_budget_counts_downloads_in_flight_and_files_held_open() {
    const BUDGET: usize = 64 * KIB;
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let store = open_with_budget(root, BUDGET).await;
    let a = fill(&store, blob(1, 24 * KIB)).await;
    let b = fill(&store, blob(2, 24 * KIB)).await;

    // A 32 KiB download announced: A (the least recently used) leaves before any byte of it
    // is written, so the spool never pushes the disk over the budget.
    let c_bytes = blob(3, 32 * KIB);
    let c = Digest::sha256_of(&c_bytes);
    let mut up = common::Upstream::new(Some(c_bytes.len() as u64), false);
    let download = store.fill(&c, up.opener.clone());
    let body = up.body().await;
    store.flush().await.expect("flush");
    assert_eq!(
        store.blob_size(&a).await,
        None,
        "no room was made for the download"
    );
    body.send(&c_bytes[..16 * KIB]);
    bounded(async {
        while disk_use(root, 0) < (24 + 16) * KIB as u64 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(
        disk_use(root, 0) <= BUDGET as u64,
        "mid-download the disk holds {} bytes, over the budget",
        disk_use(root, 0)
    );
    body.send(&c_bytes[16 * KIB..]);
    body.finish();
    bounded(download.done()).await.expect("fill");
    // The download's readers are gone: an eviction of C may unlink its file at once.
    drop(download);
    store.flush().await.expect("flush");
    assert!(disk_use(root, 0) <= BUDGET as u64);

    // B is removed while a reader holds it open: its blocks stay on disk until the reader
    // closes it, and the store counts them, so the next download makes room for them too.
    let (held, held_len) = store.open_blob(&b).await.expect("open").expect("stored");
    store.remove(&b);
    store.flush().await.expect("flush");
    let counted = bounded(async {
        loop {
            if store.stats().size_bytes >= (32 + 24) * KIB as u64 {
                return store.stats().size_bytes;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(counted <= BUDGET as u64, "{counted}");
    let d = fill(&store, blob(4, 24 * KIB)).await;
    store.flush().await.expect("flush");
    assert_eq!(store.blob_size(&d).await, Some(24 * KIB as u64));
    assert_eq!(
        store.blob_size(&c).await,
        None,
        "the bytes held open were not counted: nothing made room for D"
    );
    assert!(
        disk_use(root, held_len) <= BUDGET as u64,
        "{} bytes on disk with the open file",
        disk_use(root, held_len)
    );
    drop(held);
}

/// The space held for a slow download is never what the LRU evicts: content admitted while it
/// downloads pushes out older content, and the download's share stays counted.
#[tokio::test]
async fn a_slow_download_keeps_its_share_while_other_content_comes_and_goes() {
    const BUDGET: usize = 64 * KIB;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_with_budget(dir.path(), BUDGET).await;
    let big_bytes = blob(9, 32 * KIB);
    let big = Digest::sha256_of(&big_bytes);
    let mut up = common::Upstream::new(Some(big_bytes.len() as u64), false);
    let download = store.fill(&big, up.opener.clone());
    let body = up.body().await;
    store.flush().await.expect("flush");
    for n in 0..6 {
        fill(&store, blob(n, 12 * KIB)).await;
        store.flush().await.expect("flush");
        let size = store.stats().size_bytes;
        assert!(
            size >= 32 * KIB as u64 && size <= BUDGET as u64,
            "after {n} more blobs the store counts {size} bytes: the download's share was evicted"
        );
    }
    body.send(&big_bytes);
    body.finish();
    bounded(download.done()).await.expect("fill");
    drop(download);
    store.flush().await.expect("flush");
    assert_eq!(store.blob_size(&big).await, Some(32 * KIB as u64));
    assert!(store.stats().size_bytes <= BUDGET as u64);
}
