//! A full disk never costs what is stored: on a small tmpfs filled to the last byte, writing
//! manifests (new ones, and ones already stored), blobs and tag metadata fails or is skipped,
//! and everything stored before is still there, byte for byte, after a restart.
//!
//! A full disk is counted per refused write and logged once per episode, not once per fill.
//!
//! Needs root (it mounts a tmpfs), as the tests run in CI; elsewhere it says so and passes.

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use tokio::time::Instant;
use wharf_cache::{Store, TagKey, TagRecord};
use wharf_oci::Digest;

use common::{blob, fill};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const TAG: TagKey<'static> = TagKey {
    upstream: "oracle",
    repository: "os/oraclelinux",
    tag: "7-slim",
};
const OTHER_TAG: TagKey<'static> = TagKey {
    upstream: "oracle",
    repository: "os/oraclelinux",
    tag: "8",
};

/// A tmpfs of `size` mounted on a fresh directory, unmounted when dropped.
struct Tmpfs {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        if !is_root() {
            eprintln!("full_disk: not root, cannot mount a tmpfs; skipped");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().to_path_buf();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .status()
            .expect("run mount")
            .success();
        assert!(ok, "mount -t tmpfs failed as root");
        Some(Tmpfs { _dir: dir, path })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

/// One test of this file at a time: the log test's subscriber is the thread's default, and a
/// log line written on another test's thread at the same time was seen to be lost to it
/// (tracing caches per call site whether anyone listens).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Writes a filler file until the file system refuses another byte.
fn fill_the_disk(dir: &Path) {
    let mut f = std::fs::File::create(dir.join("filler")).expect("filler");
    let chunk = vec![0xa5u8; 64 * 1024];
    while f.write_all(&chunk).is_ok() {}
    let mut one = [0u8; 1];
    while f.write_all(&one).is_ok() {
        one[0] ^= 1;
    }
    let _ = f.sync_all();
}

fn manifest(n: u8) -> Vec<u8> {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","n":{n},"pad":"{}"}}"#,
        "x".repeat(600)
    )
    .into_bytes()
}

fn record(d: &Digest, size: usize) -> TagRecord {
    TagRecord {
        digest: d.clone(),
        media_type: OCI_MANIFEST.into(),
        size: size as u64,
        validated_at: Instant::now(),
    }
}

#[tokio::test]
async fn a_full_disk_loses_and_replaces_nothing_stored() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let Some(disk) = Tmpfs::mount("8m") else {
        return;
    };
    let root = disk.path.join("store");
    let (m1, m2) = (manifest(1), manifest(2));
    let (d1, d2) = (Digest::sha256_of(&m1), Digest::sha256_of(&m2));
    let stored_blob = blob(7, 256 * 1024);
    let manifest_path = root.join(format!("blobs/sha256/{}/{}", &d1.hex()[..2], d1.hex()));

    let layer;
    {
        let store = Store::open(&root).await.expect("open");
        store
            .put_manifest(&d1, OCI_MANIFEST, &m1)
            .await
            .expect("put");
        store.put_tag(TAG, record(&d1, m1.len()));
        layer = fill(&store, stored_blob.clone()).await;
        store.flush().await.expect("flush");
        store
            .check_writable()
            .await
            .expect("writable before the disk fills");

        fill_the_disk(&disk.path);
        // /readyz asks this: a full disk is not ready for new content.
        assert!(
            store.check_writable().await.is_err(),
            "ready on a full disk"
        );

        // The same manifest again (a revalidation that found the same digest, a second
        // client): stored already, so never rewritten, and never emptied.
        let again = store.put_manifest(&d1, OCI_MANIFEST, &m1).await;
        assert!(again.is_ok(), "a stored manifest needs no space: {again:?}");
        assert_eq!(
            std::fs::read(&manifest_path).expect("read"),
            m1,
            "rewritten"
        );

        // A new manifest cannot be written: an error, and no file in its place.
        let new = store.put_manifest(&d2, OCI_MANIFEST, &m2).await;
        assert!(new.is_err(), "a full disk stored a manifest: {new:?}");
        assert!(store.get_manifest(&d2).await.expect("get").is_none());

        // A new blob cannot be filled: an error, nothing published.
        let big = blob(8, 1024 * 1024);
        let d_big = Digest::sha256_of(&big);
        let filled = common::bounded(store.fill(&d_big, common::whole(big)).done()).await;
        assert!(filled.is_err(), "a full disk stored a blob");
        assert_eq!(store.blob_size(&d_big).await, None);

        // Metadata: a new tag may not be committed, and the old one must survive.
        store.put_tag(OTHER_TAG, record(&d2, m2.len()));
        let _ = store.flush().await;
        assert!(
            std::fs::read(&manifest_path).expect("read") == m1,
            "rewritten"
        );
    }

    // After a restart, with the disk still full, everything stored before is served.
    let store = Store::open(&root).await.expect("reopen on a full disk");
    let (mt, bytes) = store
        .get_manifest(&d1)
        .await
        .expect("get")
        .expect("the stored manifest survived");
    assert_eq!((mt.as_str(), &bytes[..]), (OCI_MANIFEST, &m1[..]));
    assert_eq!(store.get_tag(TAG).map(|r| r.digest), Some(d1.clone()));
    assert_eq!(
        store.blob_size(&layer).await,
        Some(stored_blob.len() as u64)
    );
    let (file, size) = store
        .open_blob(&layer)
        .await
        .expect("open")
        .expect("blob kept");
    assert_eq!(size, stored_blob.len() as u64);
    let mut read = Vec::new();
    std::io::Read::read_to_end(&mut &file, &mut read).expect("read blob");
    assert_eq!(Digest::sha256_of(&read), layer, "the stored blob changed");
    assert!(store.get_manifest(&d2).await.expect("get").is_none());
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
    let _serial = ONE_AT_A_TIME.lock().await;
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

    // Space comes back: the next write ends the episode with its count.
    std::fs::remove_file(disk.path.join("filler")).expect("free the disk");
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
