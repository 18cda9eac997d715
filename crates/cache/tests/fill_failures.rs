//! Fills that go wrong: wrong content, refused or broken upstreams, resumes, silence. In every
//! case nothing is stored, the spool is cleaned, readers end in an error, and the next request
//! starts afresh.

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use common::{
    FakeError, Upstream, bounded, collect, content, digest_of, files_under, fill_error,
    stored_bytes,
};
use futures_util::StreamExt;
use wharf_cache::{FillError, Store, StoreOptions};

fn assert_nothing_stored(root: &Path) {
    assert!(
        files_under(&root.join("blobs")).is_empty(),
        "content stored"
    );
    assert!(
        files_under(&root.join("spool")).is_empty(),
        "spool not cleaned"
    );
}

#[tokio::test]
async fn wrong_content_fails_readers_and_next_request_starts_afresh() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).await.expect("open");
    let data = content(200_000);
    let d = digest_of(b"the content the client asked for");
    let mut upstream = Upstream::new(Some(data.len() as u64), false);

    let fill = store.fill(&d, upstream.opener.clone());
    let body = upstream.body().await;
    let size = bounded(fill.ready())
        .await
        .expect("ready: the upstream answered");
    let readers: Vec<_> = (0..3).map(|_| fill.reader(0, size)).collect();
    body.send(&data);
    body.finish();

    for r in readers {
        let err = bounded(collect(r))
            .await
            .expect_err("wrong bytes must not end cleanly");
        assert!(fill_error(&err).is_digest_mismatch(), "{err}");
    }
    let err = bounded(fill.done()).await.expect_err("fill failed");
    assert!(err.is_digest_mismatch() && err.is_bad_content());
    assert_eq!(err.digest(), &d);
    assert_nothing_stored(dir.path());

    let again = store.fill(&d, upstream.opener.clone());
    assert!(!Arc::ptr_eq(&fill, &again), "a failed fill is not joined");
    upstream.body().await.finish();
    assert!(bounded(again.done()).await.is_err());
    assert_eq!(upstream.opens(), 2);
}

#[tokio::test]
async fn refused_open_reaches_the_caller_as_its_own_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).await.expect("open");
    let d = digest_of(b"not upstream");
    let opens = Arc::new(AtomicUsize::new(0));
    let opener = common::refusing_opener("404 blob unknown", opens);

    let fill = store.fill(&d, opener);
    let err = bounded(fill.ready()).await.expect_err("refused");
    let source = err.source_error().expect("the opener's error");
    let fake = source.downcast_ref::<FakeError>().expect("downcasts");
    assert_eq!(fake.0, "404 blob unknown");
    let read = bounded(collect(fill.reader(0, 10)))
        .await
        .expect_err("no bytes");
    assert!(fill_error(&read).source_error().is_some());
    assert_nothing_stored(dir.path());
}

#[tokio::test]
async fn broken_body_is_resumed_from_the_last_byte_on_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).await.expect("open");
    let data = content(500_000);
    let d = digest_of(&data);
    let mut upstream = Upstream::new(Some(data.len() as u64), true);

    let fill = store.fill(&d, upstream.opener.clone());
    let reader = fill.reader(0, data.len() as u64);
    let first = upstream.body().await;
    first.send(&data[..123_456]);
    first.break_off("connection reset");

    let second = upstream.body().await;
    assert_eq!(second.offset, 123_456);
    second.send(&data[123_456..]);
    second.finish();

    assert!(bounded(collect(reader)).await.expect("read") == data);
    bounded(fill.done()).await.expect("done");
    assert_eq!(upstream.opens(), 2);
    assert!(stored_bytes(dir.path(), &d) == data);
}

#[tokio::test]
async fn broken_body_without_ranges_fails_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).await.expect("open");
    let data = content(300_000);
    let d = digest_of(&data);
    let mut upstream = Upstream::new(Some(data.len() as u64), false);

    let fill = store.fill(&d, upstream.opener.clone());
    let mut reader = fill.reader(0, data.len() as u64);
    let body = upstream.body().await;
    body.send(&data[..1_000]);
    let first = bounded(reader.next()).await.expect("chunk").expect("ok");
    assert_eq!(&first[..], &data[..1_000]);
    body.break_off("connection reset");

    let err = bounded(collect(reader)).await.expect_err("cut short");
    let fake = fill_error(&err)
        .source_error()
        .and_then(|e| e.downcast_ref::<FakeError>());
    assert_eq!(
        fake.map(|e| e.0),
        Some("connection reset"),
        "the break is reported"
    );
    assert!(bounded(fill.done()).await.is_err());
    assert_eq!(upstream.opens(), 2, "one resume was tried");
    assert_nothing_stored(dir.path());
}

#[tokio::test]
async fn resumes_are_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = StoreOptions {
        fill_max_resumes: 2,
        ..StoreOptions::default()
    };
    let store = Store::open_with(dir.path(), options).await.expect("open");
    let data = content(10_000);
    let d = digest_of(&data);
    let mut upstream = Upstream::new(Some(data.len() as u64), true);

    let fill = store.fill(&d, upstream.opener.clone());
    for i in 0..3 {
        let body = upstream.body().await;
        body.send(&data[i * 100..(i + 1) * 100]);
        body.break_off("flaky");
    }
    let err = bounded(fill.done()).await.expect_err("gave up");
    assert!(err.source_error().is_some());
    assert_eq!(upstream.opens(), 3);
    assert_nothing_stored(dir.path());
}

#[tokio::test]
async fn wrong_length_fails_the_fill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).await.expect("open");
    let data = content(10_000);
    let d = digest_of(&data);

    // Too short: the body ends before the announced length.
    let mut short = Upstream::new(Some(20_000), false);
    let fill = store.fill(&d, short.opener.clone());
    let body = short.body().await;
    body.send(&data);
    body.finish();
    let err = bounded(fill.done()).await.expect_err("short");
    assert!(
        matches!(
            err,
            FillError::LengthMismatch {
                expected: 20_000,
                actual: 10_000,
                ..
            }
        ),
        "{err}"
    );

    // Too long: the right content, then more than announced.
    let mut long = Upstream::new(Some(10_000), false);
    let fill = store.fill(&d, long.opener.clone());
    let body = long.body().await;
    body.send(&data);
    body.send(b"trailing garbage");
    let err = bounded(fill.done()).await.expect_err("long");
    assert!(err.is_bad_content(), "{err}");
    assert_nothing_stored(dir.path());
}

#[tokio::test(start_paused = true)]
async fn silent_upstream_times_out_but_slow_one_does_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = StoreOptions {
        fill_inactivity_timeout: Duration::from_secs(30),
        ..StoreOptions::default()
    };
    let store = Store::open_with(dir.path(), options).await.expect("open");

    // Slow but moving: a chunk every 20 s, 100 s in all, is never cut off.
    let data = content(5_000);
    let d = digest_of(&data);
    let mut slow = Upstream::new(Some(data.len() as u64), false);
    let fill = store.fill(&d, slow.opener.clone());
    let body = slow.body().await;
    for piece in data.chunks(1_000) {
        tokio::time::sleep(Duration::from_secs(20)).await;
        body.send(piece);
    }
    body.finish();
    fill.done().await.expect("slow fill completes");

    // Stalls mid-body: fails after 30 s of silence.
    let data = content(6_000);
    let d = digest_of(&data);
    let mut stalling = Upstream::new(Some(data.len() as u64), false);
    let fill = store.fill(&d, stalling.opener.clone());
    let body = stalling.body().await;
    body.send(&data[..2_000]);
    let reader = fill.reader(0, data.len() as u64);
    let started = tokio::time::Instant::now();
    let err = fill.done().await.expect_err("timed out");
    assert!(err.is_timeout(), "{err}");
    assert!(started.elapsed() >= Duration::from_secs(30));
    let read = collect(reader).await.expect_err("reader cut short");
    assert!(fill_error(&read).is_timeout());
    drop(body);

    // Never answers at all.
    let d = digest_of(b"behind a black hole");
    let fill = store.fill(&d, common::hanging_opener());
    let err = fill.ready().await.expect_err("timed out");
    assert!(err.is_timeout(), "{err}");

    assert!(files_under(&dir.path().join("spool")).is_empty());
    assert_eq!(
        files_under(&dir.path().join("blobs")).len(),
        1,
        "only the slow one"
    );
}

#[tokio::test]
async fn panicking_fill_is_not_joined_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).await.expect("open");
    let d = digest_of(b"cursed");
    let opener: wharf_cache::Opener = Arc::new(|_| {
        use futures_util::FutureExt;
        async { panic!("the opener panics (this message is expected)") }.boxed()
    });

    let fill = store.fill(&d, opener);
    let err = bounded(fill.ready()).await.expect_err("no answer");
    assert!(matches!(err, FillError::Aborted { .. }), "{err}");

    let mut upstream = Upstream::new(Some(6), false);
    let again = store.fill(&d, upstream.opener.clone());
    assert!(!Arc::ptr_eq(&fill, &again));
    let body = upstream.body().await;
    body.send(b"cursed");
    body.finish();
    bounded(again.done()).await.expect("a fresh fill works");
}
