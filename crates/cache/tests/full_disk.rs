//! A full disk never costs what is stored: on a small tmpfs filled to the last byte, writing
//! manifests (new ones, and ones already stored), blobs and tag metadata fails or is skipped,
//! and everything stored before is still there, byte for byte, after a restart.
//!
//! Needs root (it mounts a tmpfs), as the tests run in CI; elsewhere it says so and passes.

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

mod common;

use tokio::time::Instant;
use wharf_cache::{Store, TagKey, TagRecord};
use wharf_oci::Digest;

use common::{blob, fill};
use wharf_testkit::disk::{Tmpfs, fill_the_disk};

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
