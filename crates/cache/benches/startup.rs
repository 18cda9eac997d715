//! How long `Store::open` takes with 100 000 cached blobs. A measurement, not a check:
//!
//! ```sh
//! cargo bench -p wharf-cache --bench startup
//! ```
//!
//! It writes 100 000 small blobs into a fresh store's fan-out directories, then opens the store
//! three times: the first open knows none of them and hashes every one (what a store from before
//! the metadata store, or one whose `index.redb` was lost, costs once); the next two trust the
//! metadata store and only list and stat the files (every ordinary start-up).

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

use std::time::Duration;

use tokio::time::Instant;
use wharf_cache::{Store, StoreOptions};
use wharf_oci::Digest;

const BLOBS: u32 = 100_000;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(open_with_100k_blobs());
}

async fn open_with_100k_blobs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let made = Instant::now();
    for n in 0..BLOBS {
        let bytes = format!("blob number {n}, a little padding to make it look like a config");
        let d = Digest::sha256_of(bytes.as_bytes());
        let hex = d.hex();
        let shard = dir.path().join("blobs/sha256").join(&hex[..2]);
        if n < 256 || !shard.exists() {
            std::fs::create_dir_all(&shard).expect("mkdir");
        }
        std::fs::write(shard.join(hex), bytes).expect("write");
    }
    println!("wrote {BLOBS} blobs in {:?}", made.elapsed());
    let options = StoreOptions {
        max_size: 1 << 40,
        access_flush_interval: Duration::from_secs(3600),
        ..StoreOptions::default()
    };
    for (n, what) in [
        "first open (every blob hashed)",
        "second open (trusted)",
        "third open (trusted)",
    ]
    .into_iter()
    .enumerate()
    {
        let t = Instant::now();
        let store = Store::open_with(dir.path(), options.clone())
            .await
            .expect("open");
        let took = t.elapsed();
        let stats = store.stats();
        assert_eq!(stats.entries, u64::from(BLOBS), "open {n}");
        println!(
            "{what}: {took:?} ({} entries, {} bytes)",
            stats.entries, stats.size_bytes
        );
        drop(store);
    }
}
