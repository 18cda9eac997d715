//! The scrubber: a byte flipped in place with its mtime kept (what a media error looks like)
//! passes start-up's size, mtime and inode check and would be served forever; the scrubber reads
//! it back, quarantines it and counts it, so the next request fetches it again. It goes least
//! recently verified first, that order survives a restart, and it never reads faster than its
//! rate. Time is paused: the passes and the rate run on tokio's clock.

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]
mod common;

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use wharf_cache::{Store, StoreOptions};
use wharf_oci::Digest;

use common::{blob, blob_path, files_under, whole};

const KIB: usize = 1024;
const MIB: u64 = 1 << 20;
/// Long enough for a whole pass to start and end after any moment: passes start at most an hour
/// apart (`scrub::MIN_PASS`) and these take seconds.
const AFTER_NEXT_PASS: Duration = Duration::from_secs(2 * 3600);

/// Flips one byte in place and puts the mtime back: size, mtime and inode all unchanged.
fn flip_keeping_mtime(path: &Path, at: usize) {
    let mtime = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .expect("mtime");
    let mut bytes = std::fs::read(path).expect("read");
    bytes[at] ^= 0x01;
    std::fs::write(path, bytes).expect("write in place");
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(mtime))
        .expect("restore mtime");
}

async fn open(root: &Path, scrub_rate: u64) -> Arc<Store> {
    let options = StoreOptions {
        scrub_rate,
        ..StoreOptions::default()
    };
    Store::open_with(root, options).await.expect("open")
}

/// Stores `bytes` through a fill. Not `common::fill`: its real-time bound means nothing here.
async fn fill(store: &Arc<Store>, bytes: Vec<u8>) -> Digest {
    let d = Digest::sha256_of(&bytes);
    store.fill(&d, whole(bytes)).done().await.expect("fill");
    d
}

/// What the store serves for `d`, if anything.
async fn served(store: &Store, d: &Digest) -> Option<Vec<u8>> {
    let (mut file, size) = store.open_blob(d).await.expect("open_blob")?;
    let mut out = Vec::new();
    file.read_to_end(&mut out).expect("read");
    assert_eq!(out.len() as u64, size);
    Some(out)
}

#[tokio::test(start_paused = true)]
async fn a_byte_flipped_with_its_mtime_kept_is_found_quarantined_and_no_longer_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), MIB).await;
    let contents: Vec<Vec<u8>> = (1..=3).map(|n| blob(n, 300 * KIB)).collect();
    let mut digests = Vec::new();
    for c in &contents {
        digests.push(fill(&store, c.clone()).await);
    }
    let rotten = &digests[1];
    flip_keeping_mtime(&blob_path(dir.path(), rotten), 123_456);
    // The finding: nothing notices, the changed bytes are served as they are.
    let before = served(&store, rotten)
        .await
        .expect("served before the scrub");
    assert_ne!(before, contents[1]);
    assert_eq!(store.stats().scrub_faults, 0);

    tokio::time::sleep(AFTER_NEXT_PASS).await;

    let stats = store.stats();
    assert_eq!(stats.scrub_faults, 1, "{stats:?}");
    assert!(stats.scrubbed_bytes >= 3 * 300 * KIB as u64, "{stats:?}");
    assert!(!store.contains(rotten));
    assert!(
        served(&store, rotten).await.is_none(),
        "a miss: fetched again"
    );
    assert_eq!(files_under(&dir.path().join("quarantine")).len(), 1);
    for i in [0, 2] {
        let got = served(&store, &digests[i]).await;
        assert_eq!(got.as_ref(), Some(&contents[i]), "blob {i} untouched");
    }
    // Fetched again, it is served again, with the right bytes.
    fill(&store, contents[1].clone()).await;
    assert_eq!(served(&store, rotten).await.as_ref(), Some(&contents[1]));
    // And a restart keeps all three (dropping the store commits its metadata).
    drop(store);
    let store = open(dir.path(), 0).await;
    for (d, c) in digests.iter().zip(&contents) {
        assert_eq!(served(&store, d).await.as_ref(), Some(c));
    }
}

#[tokio::test]
async fn the_least_recently_verified_go_first_and_the_order_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Three blobs of one chunk each, stored in descending digest order (so digest order is not
    // the verification order), then used in the opposite order (so neither is access order).
    let mut contents: Vec<Vec<u8>> = (1..=3).map(|n| blob(n, 256 * KIB)).collect();
    contents.sort_by_key(|c| std::cmp::Reverse(Digest::sha256_of(c)));
    let mut digests = Vec::new();
    {
        let store = open(dir.path(), 0).await;
        for c in &contents {
            digests.push(fill(&store, c.clone()).await);
            // Verification times are wall-clock milliseconds: make the order unambiguous.
            std::thread::sleep(Duration::from_millis(5));
        }
        for d in digests.iter().rev() {
            assert!(served(&store, d).await.is_some());
            std::thread::sleep(Duration::from_millis(5));
        }
        store.flush().await.expect("flush");
    }
    for d in &digests {
        flip_keeping_mtime(&blob_path(dir.path(), d), 1000);
    }
    // 256 KiB/s: a blob (256 KiB, and 64 KiB for opening it) every 1.25 s, each condemned
    // when its last byte is read. The store opens on the real clock: the scrubber's first
    // pass waits for the metadata writer to read the verification times (a thread of its own,
    // which a paused clock would not wait for); the flush returns once it has.
    let store = open(dir.path(), 256 * KIB as u64).await;
    store.flush().await.expect("flush");
    tokio::time::pause();
    let stored =
        |store: &Store| -> Vec<bool> { digests.iter().map(|d| store.contains(d)).collect() };
    assert_eq!(stored(&store), [true, true, true], "start-up trusted them");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(stored(&store), [false, true, true]);
    tokio::time::sleep(Duration::from_millis(1250)).await;
    assert_eq!(stored(&store), [false, false, true]);
    tokio::time::sleep(Duration::from_millis(1250)).await;
    assert_eq!(stored(&store), [false, false, false]);
    assert_eq!(store.stats().scrub_faults, 3);
}

#[tokio::test]
async fn the_scrubber_reads_no_faster_than_its_rate() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = open(dir.path(), 0).await;
        for n in 0..8 {
            fill(&store, blob(n, MIB as usize)).await;
        }
        store.flush().await.expect("flush");
    }
    // Opened on the real clock (see the test above), then paused.
    let store = open(dir.path(), MIB).await;
    store.flush().await.expect("flush");
    tokio::time::pause();
    let start = tokio::time::Instant::now();
    for secs in 1..=3u64 {
        tokio::time::sleep_until(start + Duration::from_secs(secs)).await;
        let read = store.stats().scrubbed_bytes;
        // The next chunk (256 KiB) may be read at the instant it becomes due.
        assert!(
            read <= secs * MIB + 256 * KIB as u64,
            "{read} bytes in {secs} s"
        );
        // Each file also costs the pacer 64 KiB for opening it: 16 MiB of content in the
        // time 17 would take, less the chunk in progress.
        assert!(
            read >= secs * MIB * 16 / 17 - 256 * KIB as u64,
            "{read} bytes in {secs} s"
        );
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    let stats = store.stats();
    assert_eq!(stats.scrubbed_bytes, 8 * MIB);
    assert_eq!(stats.scrub_faults, 0);
    assert_eq!(stats.entries, 8);
}

#[tokio::test(start_paused = true)]
async fn a_rate_of_zero_scrubs_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), 0).await;
    let d = fill(&store, blob(1, 64 * KIB)).await;
    flip_keeping_mtime(&blob_path(dir.path(), &d), 10);
    tokio::time::sleep(AFTER_NEXT_PASS).await;
    let stats = store.stats();
    assert_eq!((stats.scrubbed_bytes, stats.scrub_faults), (0, 0));
    assert!(store.contains(&d));
}
