//! Criterion micro-benchmarks of the store's read path, what every cache hit costs before a
//! byte reaches the socket: the scope check (`Store::in_scope`), looking the digest up and
//! opening the file (`Store::open_blob`),
//! reading it in the chunks the copying path sends (`file_chunks`, page cache), and a manifest
//! served from memory against one read and hashed from its file.
//!
//! ```sh
//! cargo bench -p wharf-cache --bench hot_paths
//! ```

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures_util::StreamExt;
use wharf_cache::{ScopeKey, Store, StoreOptions, file_chunks};
use wharf_oci::Digest;

const CHUNK: usize = 256 << 10;

fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

fn read_path(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let open = |manifest_memory| {
        let options = StoreOptions {
            manifest_memory,
            ..StoreOptions::default()
        };
        rt.block_on(Store::open_with(dir.path(), options))
            .expect("store")
    };
    // Content is content: put_manifest stores any bytes under their digest, as a fill would.
    let blob = content(1 << 20, 7);
    let blob_digest = Digest::sha256_of(&blob);
    let manifest = content(2 << 10, 9);
    let manifest_digest = Digest::sha256_of(&manifest);
    {
        let store = open(16 << 20);
        rt.block_on(async {
            store
                .put_manifest(&blob_digest, "application/octet-stream", &blob)
                .await
                .expect("put blob");
            store
                .put_manifest(
                    &manifest_digest,
                    "application/vnd.oci.image.manifest.v1+json",
                    &manifest,
                )
                .await
                .expect("put manifest");
            store.flush().await.expect("flush");
        });
    }

    let store = open(16 << 20);
    // The scope check every request for stored content makes first: a known pair among
    // 100 000 (SipHash of the three strings, one shard's read lock, one probe).
    let others: Vec<Digest> = (0..100_000u32)
        .map(|n| Digest::sha256_of(&n.to_be_bytes()))
        .collect();
    for d in &others {
        store.add_scope(ScopeKey {
            upstream: "oracle",
            repository: "os/oraclelinux",
            digest: d,
        });
    }
    let known = ScopeKey {
        upstream: "oracle",
        repository: "os/oraclelinux",
        digest: &blob_digest,
    };
    store.add_scope(known);
    let mut g = c.benchmark_group("store_read");
    g.bench_function("in_scope", |b| {
        b.iter(|| assert!(store.in_scope(black_box(known))))
    });
    g.bench_function("open_blob", |b| {
        b.iter(|| {
            rt.block_on(store.open_blob(black_box(&blob_digest)))
                .expect("open")
                .expect("stored")
        })
    });
    g.throughput(Throughput::Bytes(blob.len() as u64));
    g.bench_function("open_and_read_1MiB", |b| {
        b.iter(|| {
            rt.block_on(async {
                let (file, size) = store
                    .open_blob(&blob_digest)
                    .await
                    .expect("open")
                    .expect("stored");
                let mut chunks = file_chunks(file, 0, size, CHUNK);
                let mut n = 0;
                while let Some(chunk) = chunks.next().await {
                    n += chunk.expect("read").len();
                }
                assert_eq!(n, blob.len());
            })
        })
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("manifest_from_memory", |b| {
        b.iter(|| {
            rt.block_on(store.get_manifest(black_box(&manifest_digest)))
                .expect("get")
                .expect("stored")
        })
    });
    drop(store);
    let store = open(0);
    g.bench_function("manifest_read_and_hashed", |b| {
        b.iter(|| {
            rt.block_on(store.get_manifest(black_box(&manifest_digest)))
                .expect("get")
                .expect("stored")
        })
    });
    g.finish();
}

criterion_group!(benches, read_path);
criterion_main!(benches);
