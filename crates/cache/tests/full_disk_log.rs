//! A full disk is counted per refused write and logged once per episode, not once per fill: on a
//! small tmpfs filled to the last byte, several fills and a manifest fail, every one is counted
//! (`StoreStats::no_space_failures`), one line says the disk is full, and one says when writes
//! succeed again. A binary of its own: it sets the thread's log subscriber.
//!
//! Needs root (it mounts a tmpfs), as the tests run in CI; elsewhere it says so and passes.

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use wharf_cache::Store;
use wharf_oci::Digest;

use common::{blob, fill};
use wharf_testkit::disk::{Tmpfs, fill_the_disk};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn manifest(n: u8) -> Vec<u8> {
    format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","n":{n}}}"#).into_bytes()
}

/// Everything logged while it is the thread's default subscriber, as text.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl Log {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log")).into_owned()
    }

    fn lines_with(&self, needle: &str) -> usize {
        self.text().lines().filter(|l| l.contains(needle)).count()
    }
}

impl std::io::Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Log {
    type Writer = Log;

    fn make_writer(&'a self) -> Log {
        self.clone()
    }
}

#[tokio::test]
async fn a_full_disk_is_counted_per_write_and_logged_once() {
    let Some(disk) = Tmpfs::mount("8m") else {
        return;
    };
    let log = Log::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(log.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    // The test's runtime runs the fill tasks on this thread, so they log here.
    let _guard = tracing::subscriber::set_default(subscriber);

    let root = disk.path.join("store");
    let store = Store::open(&root).await.expect("open");
    let stored = blob(1, 128 * 1024);
    let layer = fill(&store, stored.clone()).await;
    assert_eq!(store.stats().no_space_failures, 0);

    fill_the_disk(&disk.path);
    const FILLS: u8 = 6;
    for n in 0..FILLS {
        let big = blob(10 + n, 1024 * 1024);
        let d = Digest::sha256_of(&big);
        let filled = common::bounded(store.fill(&d, common::whole(big)).done()).await;
        let e = filled.expect_err("a full disk stored a blob");
        assert!(e.is_no_space(), "not told it was the disk: {e}");
        // What is stored is still served, whole.
        let (file, size) = store
            .open_blob(&layer)
            .await
            .expect("open")
            .expect("stored");
        let mut read = Vec::new();
        std::io::Read::read_to_end(&mut &file, &mut read).expect("read");
        assert_eq!((size, read.as_slice()), (stored.len() as u64, &stored[..]));
    }
    let (m, d_m) = (manifest(3), Digest::sha256_of(&manifest(3)));
    let refused = store.put_manifest(&d_m, OCI_MANIFEST, &m).await;
    assert!(refused.is_err_and(|e| e.is_no_space()));

    assert_eq!(
        store.stats().no_space_failures,
        u64::from(FILLS) + 1,
        "every refused write is counted"
    );
    assert_eq!(
        log.lines_with("disk full"),
        1,
        "one line for the episode:\n{}",
        log.text()
    );
    assert_eq!(
        log.lines_with("fill failed"),
        0,
        "no line per fill:\n{}",
        log.text()
    );

    // Space comes back. A write right after the last refusal may be the disk flapping (a
    // failed fill freed its spool file): it does not end the episode.
    std::fs::remove_file(disk.path.join("filler")).expect("free the disk");
    fill(&store, blob(29, 64 * 1024)).await;
    assert_eq!(log.lines_with("disk has space again"), 0, "{}", log.text());
    // Ten seconds without a refusal later (on tokio's clock, moved on rather than waited
    // for), the next write ends the episode with its count.
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(11)).await;
    tokio::time::resume();
    fill(&store, blob(30, 64 * 1024)).await;
    let text = log.text();
    let summary: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("disk has space again"))
        .collect();
    assert_eq!(summary.len(), 1, "{text}");
    assert!(
        summary[0].contains(&format!("failed={}", u64::from(FILLS) + 1)),
        "{text}"
    );
    fill(&store, blob(31, 64 * 1024)).await;
    assert_eq!(log.lines_with("disk has space again"), 1, "{text}");

    // A second episode is logged again; the counter carries on.
    fill_the_disk(&disk.path);
    let big = blob(40, 1024 * 1024);
    let d = Digest::sha256_of(&big);
    let again = common::bounded(store.fill(&d, common::whole(big)).done()).await;
    assert!(again.is_err());
    assert_eq!(log.lines_with("disk full"), 2, "{}", log.text());
    assert_eq!(store.stats().no_space_failures, u64::from(FILLS) + 2);
}
