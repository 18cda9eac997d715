//! Reader edge cases that need a hand on the fill's channel: the spool vanishing between a
//! reader seeing `Writing` and opening it, the last chunk waiting for verification (and no
//! longer than that), a failure to store after verification, and a fill task that dies. Time is paused: a paused runtime only advances a sleep once every other task
//! waits on something other than time (blocking file I/O included), so "after the reader is
//! parked" is exact, not a guess.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::watch;
use wharf_oci::Digest;

use super::{Fill, Progress};
use crate::error::FillError;

const CONTENT: &[u8] = b"0123456789";

fn fill_at(dir: &Path) -> (Arc<Fill>, watch::Sender<Progress>) {
    let (tx, rx) = watch::channel(Progress::Opening);
    let fill = Fill {
        digest: Digest::sha256_of(CONTENT),
        seq: 0,
        spool: dir.join("spool-file"),
        blob: dir.join("blob-file"),
        progress: rx,
    };
    (Arc::new(fill), tx)
}

/// Reads a reader to its end in a task: the bytes it yielded, and the error it ended with.
fn drain(
    fill: &Arc<Fill>,
    start: u64,
    end: u64,
) -> tokio::task::JoinHandle<(Vec<u8>, Option<io::Error>)> {
    let mut reader = fill.reader(start, end);
    tokio::spawn(async move {
        let mut got = Vec::new();
        while let Some(chunk) = reader.next().await {
            match chunk {
                Ok(b) => got.extend_from_slice(&b),
                Err(e) => return (got, Some(e)),
            }
        }
        (got, None)
    })
}

async fn let_others_park() {
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn reader_goes_on_from_the_stored_file_when_the_spool_moved_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (fill, tx) = fill_at(dir.path());
    // Writing is published, but the spool is already renamed away when the reader looks.
    tx.send_replace(Progress::Writing {
        len: Some(10),
        written: 10,
    });
    let reader = drain(&fill, 2, 10);
    let_others_park().await;
    std::fs::write(&fill.blob, CONTENT).expect("write blob");
    tx.send_replace(Progress::Done { len: 10 });

    let (got, err) = reader.await.expect("reader task");
    assert!(err.is_none(), "{err:?}");
    assert_eq!(got, &CONTENT[2..]);
}

#[tokio::test(start_paused = true)]
async fn last_chunk_waits_for_verification() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (fill, tx) = fill_at(dir.path());
    std::fs::write(&fill.spool, CONTENT).expect("write spool");
    tx.send_replace(Progress::Writing {
        len: Some(10),
        written: 10,
    });

    let failing = drain(&fill, 0, 10);
    let_others_park().await;
    tx.send_replace(Progress::Failed(FillError::DigestMismatch {
        digest: fill.digest.clone(),
        actual: Digest::sha256_of(b"other"),
    }));
    let (got, err) = failing.await.expect("reader task");
    assert!(got.is_empty(), "unverified bytes completed the range");
    let err = err.expect("an error");
    let inner = err.get_ref().and_then(|e| e.downcast_ref::<FillError>());
    assert!(inner.is_some_and(FillError::is_digest_mismatch), "{err}");

    tx.send_replace(Progress::Writing {
        len: Some(10),
        written: 10,
    });
    let passing = drain(&fill, 0, 10);
    let_others_park().await;
    tx.send_replace(Progress::Done { len: 10 });
    let (got, err) = passing.await.expect("reader task");
    assert!(err.is_none(), "{err:?}");
    assert_eq!(got, CONTENT);
}

#[tokio::test(start_paused = true)]
async fn readers_and_waiters_learn_of_a_dead_fill_task() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (fill, tx) = fill_at(dir.path());
    std::fs::write(&fill.spool, &CONTENT[..4]).expect("write spool");
    tx.send_replace(Progress::Writing {
        len: None,
        written: 4,
    });

    let reader = drain(&fill, 0, 10);
    let ready = tokio::spawn({
        let fill = fill.clone();
        async move { fill.ready().await }
    });
    let_others_park().await;
    drop(tx);

    let (got, err) = reader.await.expect("reader task");
    assert_eq!(got, &CONTENT[..4]);
    let err = err.expect("an error");
    let inner = err.get_ref().and_then(|e| e.downcast_ref::<FillError>());
    assert!(matches!(inner, Some(FillError::Aborted { .. })), "{err}");
    let ready = ready.await.expect("ready task");
    assert!(matches!(ready, Err(FillError::Aborted { .. })));
    assert!(matches!(fill.done().await, Err(FillError::Aborted { .. })));
}

#[tokio::test(start_paused = true)]
async fn last_chunk_leaves_once_verified_before_the_blob_is_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (fill, tx) = fill_at(dir.path());
    std::fs::write(&fill.spool, CONTENT).expect("write spool");
    tx.send_replace(Progress::Writing {
        len: Some(10),
        written: 10,
    });
    let reader = drain(&fill, 0, 10);
    let_others_park().await;
    assert!(
        !reader.is_finished(),
        "the last chunk left before verification"
    );

    tx.send_replace(Progress::Verified { len: 10 });
    let (got, err) = reader.await.expect("reader task");
    assert!(err.is_none(), "{err:?}");
    assert_eq!(got, CONTENT);
    assert!(!fill.blob.exists(), "the test never stored it");
    // Waiting for the fill still means waiting for the store.
    let done = tokio::spawn({
        let fill = fill.clone();
        async move { fill.done().await }
    });
    let_others_park().await;
    assert!(!done.is_finished());
    tx.send_replace(Progress::Done { len: 10 });
    done.await.expect("done task").expect("done");
}

#[tokio::test(start_paused = true)]
async fn reader_that_saw_verified_bytes_reads_on_when_storing_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (fill, tx) = fill_at(dir.path());
    // Several chunks, so the failure lands between two of them.
    let content: Vec<u8> = (0..400_000u32).map(|i| (i % 241) as u8).collect();
    std::fs::write(&fill.spool, &content).expect("write spool");
    let len = content.len() as u64;
    tx.send_replace(Progress::Verified { len });
    let mut reader = fill.reader(0, len);
    let first = reader.next().await.expect("a chunk").expect("no error");
    assert!(first.len() < content.len());

    // The fsync failed: the fill removes the spool and publishes the failure.
    std::fs::remove_file(&fill.spool).expect("remove spool");
    tx.send_replace(Progress::Failed(FillError::Aborted {
        digest: fill.digest.clone(),
    }));
    let mut got = first.to_vec();
    while let Some(chunk) = reader.next().await {
        got.extend_from_slice(&chunk.expect("verified bytes keep flowing"));
    }
    assert!(got == content);

    // A reader that never saw the content verified learns of the failure.
    let (got, err) = drain(&fill, 0, len).await.expect("reader task");
    assert!(got.is_empty());
    assert!(err.is_some());
}
