//! Fills that succeed: coalescing, streaming while filling, detachment from readers, ranges.
//! The fake upstream is fed by the test, so every "before" and "after" here is decided, not
//! raced.

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{Upstream, bounded, collect, content, digest_of, files_under, stored_bytes};
use futures_util::StreamExt;
use tokio::sync::Barrier;
use wharf_cache::Store;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_readers_share_one_upstream_fetch() {
    const READERS: usize = 32;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).await.expect("open");
    let data = Arc::new(content(1024 * 1024 + 12_345));
    let d = digest_of(&data);
    let mut upstream = Upstream::new(Some(data.len() as u64), false);

    // Everyone starts together, and the body only flows once all of them have joined.
    let start = Arc::new(Barrier::new(READERS));
    let joined = Arc::new(Barrier::new(READERS + 1));
    let mut readers = Vec::new();
    for _ in 0..READERS {
        let (store, d, opener) = (store.clone(), d.clone(), upstream.opener.clone());
        let (start, joined, data) = (start.clone(), joined.clone(), data.clone());
        readers.push(tokio::spawn(async move {
            start.wait().await;
            let fill = store.fill(&d, opener);
            joined.wait().await;
            let size = fill.ready().await.expect("ready");
            assert_eq!(size, data.len() as u64);
            let got = collect(fill.reader(0, size)).await.expect("read");
            assert!(got == *data, "a reader got other bytes");
        }));
    }
    bounded(joined.wait()).await;
    let body = upstream.body().await;
    for piece in data.chunks(100_000) {
        body.send(piece);
    }
    body.finish();
    for r in readers {
        bounded(r).await.expect("reader task");
    }
    // Readers end once the content is verified; storing it may still be under way.
    let fill = store.fill(&d, upstream.opener.clone());
    bounded(fill.done()).await.expect("stored");

    assert_eq!(upstream.opens(), 1, "the upstream was asked more than once");
    assert_eq!(store.blob_size(&d).await, Some(data.len() as u64));
    assert!(files_under(&dir.path().join("spool")).is_empty());
}

#[tokio::test]
async fn reader_streams_before_the_upstream_finishes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).await.expect("open");
    let data = content(300_000);
    let d = digest_of(&data);
    let mut upstream = Upstream::new(Some(data.len() as u64), false);

    let fill = store.fill(&d, upstream.opener.clone());
    let body = upstream.body().await;
    assert_eq!(bounded(fill.ready()).await.expect("ready"), 300_000);
    body.send(&data[..1000]);

    let mut reader = fill.reader(0, 300_000);
    let first = bounded(reader.next())
        .await
        .expect("a chunk")
        .expect("no error");
    assert_eq!(&first[..], &data[..1000]);
    assert_eq!(store.blob_size(&d).await, None, "not stored before the end");

    body.send(&data[1000..]);
    body.finish();
    let mut got = first.to_vec();
    got.extend(bounded(collect(reader)).await.expect("rest"));
    assert!(got == data);
    bounded(fill.done()).await.expect("done");
}

#[tokio::test]
async fn fill_completes_after_every_reader_hung_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).await.expect("open");
    let data = content(200_000);
    let d = digest_of(&data);
    let mut upstream = Upstream::new(Some(data.len() as u64), false);

    let fill = store.fill(&d, upstream.opener.clone());
    let mut reader = fill.reader(0, data.len() as u64);
    let body = upstream.body().await;
    body.send(&data[..50_000]);
    bounded(reader.next()).await.expect("chunk").expect("ok");
    drop(reader);
    drop(fill);

    body.send(&data[50_000..]);
    body.finish();
    // Asking again joins the fill if it is still running, or finds the content stored; either
    // way the upstream is not asked twice.
    let again = store.fill(&d, upstream.opener.clone());
    bounded(again.done()).await.expect("the fill completed");
    assert_eq!(upstream.opens(), 1);
    let (_, size) = store.open_blob(&d).await.expect("open").expect("stored");
    assert_eq!(size, data.len() as u64);
    assert!(stored_bytes(dir.path(), &d) == data);
}

#[tokio::test]
async fn ranged_reader_gets_exactly_its_range_while_filling_and_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).await.expect("open");
    let data = content(600_000);
    let d = digest_of(&data);
    let mut upstream = Upstream::new(Some(data.len() as u64), false);
    let (start, end) = (1_000u64, 400_123u64);

    let fill = store.fill(&d, upstream.opener.clone());
    let body = upstream.body().await;
    body.send(&data[..3_000]);
    let mut ranged = fill.reader(start, end);
    let first = bounded(ranged.next()).await.expect("chunk").expect("ok");
    assert_eq!(
        &first[..],
        &data[1_000..3_000],
        "the range, as far as it is on disk"
    );

    body.send(&data[3_000..]);
    body.finish();
    let mut got = first.to_vec();
    got.extend(bounded(collect(ranged)).await.expect("rest"));
    assert!(got == data[start as usize..end as usize]);

    bounded(fill.done()).await.expect("done");
    let after = bounded(collect(fill.reader(start, end)))
        .await
        .expect("after");
    assert!(after == data[start as usize..end as usize]);
    let tail = bounded(collect(fill.reader(599_999, 600_000))).await;
    assert_eq!(tail.expect("last byte"), &data[599_999..]);
    assert!(collect(fill.reader(5, 5)).await.expect("empty").is_empty());

    let past_end = bounded(collect(fill.reader(599_000, 600_001))).await;
    assert!(
        past_end.is_err(),
        "a range past the content must not end cleanly"
    );
}

#[tokio::test]
async fn chunked_upstream_is_ready_once_done() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).await.expect("open");
    let data = content(70_000);
    let d = digest_of(&data);
    let mut upstream = Upstream::new(None, false);

    let fill = store.fill(&d, upstream.opener.clone());
    let body = upstream.body().await;
    body.send(&data[..10_000]);
    let ready = tokio::spawn({
        let fill = fill.clone();
        async move { fill.ready().await }
    });
    body.send(&data[10_000..]);
    body.finish();
    let size = bounded(ready).await.expect("task").expect("ready");
    assert_eq!(size, 70_000);
    // Ready waited for the end: the content is verified by now, and stored once done.
    bounded(fill.done()).await.expect("stored");
    assert_eq!(store.blob_size(&d).await, Some(70_000));
    assert!(bounded(collect(fill.reader(0, size))).await.expect("read") == data);
}

#[tokio::test]
async fn stored_content_is_not_fetched_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).await.expect("open");
    let bytes = br#"{"schemaVersion":2}"#;
    let d = digest_of(bytes);
    store
        .put_manifest(&d, "application/vnd.oci.image.manifest.v1+json", bytes)
        .await
        .expect("put");

    let opens = Arc::new(AtomicUsize::new(0));
    let fill = store.fill(
        &d,
        common::refusing_opener("must not be asked", opens.clone()),
    );
    assert_eq!(
        bounded(fill.ready()).await.expect("ready"),
        bytes.len() as u64
    );
    let got = bounded(collect(fill.reader(0, bytes.len() as u64))).await;
    assert_eq!(got.expect("read"), bytes);
    assert_eq!(opens.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn empty_blob_fills() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).await.expect("open");
    let d = digest_of(b"");
    let mut upstream = Upstream::new(Some(0), false);
    let fill = store.fill(&d, upstream.opener.clone());
    upstream.body().await.finish();
    assert_eq!(bounded(fill.ready()).await.expect("ready"), 0);
    bounded(fill.done()).await.expect("done");
    assert_eq!(store.blob_size(&d).await, Some(0));
}
