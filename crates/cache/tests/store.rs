//! The store API: the shared conformance suite, restart behaviour, spool sweeping, tag records,
//! and path safety.

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

mod common;

use std::time::Duration;

use common::{conformance, files_under};
use proptest::prelude::*;
use wharf_cache::{Store, TagKey, TagRecord};
use wharf_oci::Digest;

#[tokio::test]
async fn filesystem_store_passes_conformance() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).await.expect("open");
    common::bounded(conformance::run_all(&store)).await;
    // Every write went through the spool and left nothing behind.
    assert!(files_under(&dir.path().join("spool")).is_empty());
}

// The BlobStore suite, once per backend.
blob_store_conformance!(fs_blobs, crate::common::conformance::blobs::fs());
blob_store_conformance!(memory_blobs, crate::common::conformance::blobs::memory());

#[tokio::test]
async fn content_survives_reopen_in_documented_layout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = br#"{"schemaVersion":2}"#;
    let d = Digest::sha256_of(bytes);
    {
        let store = Store::open(dir.path()).await.expect("open");
        store
            .put_manifest(&d, "application/vnd.oci.image.manifest.v1+json", bytes)
            .await
            .expect("put");
    }
    let hex = d.hex();
    let blob = dir.path().join("blobs/sha256").join(&hex[..2]).join(hex);
    assert_eq!(std::fs::read(&blob).expect("blob in layout"), bytes);
    let db = dir.path().join("meta/index.redb");
    assert!(db.is_file(), "metadata store at {}", db.display());

    let store = Store::open(dir.path()).await.expect("reopen");
    let (media_type, got) = store
        .get_manifest(&d)
        .await
        .expect("get")
        .expect("still stored");
    assert_eq!(&got[..], bytes);
    // The media type came back from the metadata store.
    assert_eq!(media_type, "application/vnd.oci.image.manifest.v1+json");
}

#[tokio::test]
async fn content_without_media_type_is_not_a_manifest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = b"a layer, not a manifest";
    let d = Digest::sha256_of(bytes);
    let hex = d.hex();
    let blob_dir = dir.path().join("blobs/sha256").join(&hex[..2]);
    std::fs::create_dir_all(&blob_dir).expect("mkdir");
    std::fs::write(blob_dir.join(hex), bytes).expect("write");

    // Unknown to the metadata store: hashed at open, found right, kept as plain content.
    let store = Store::open(dir.path()).await.expect("open");
    assert_eq!(store.blob_size(&d).await, Some(bytes.len() as u64));
    assert!(store.get_manifest(&d).await.expect("get").is_none());
}

#[tokio::test]
async fn open_sweeps_leftover_spool_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(Store::open(dir.path()).await.expect("open"));
    let spool = dir.path().join("spool");
    // What a crash mid-fill and mid-put leave behind.
    std::fs::write(spool.join("sha256-abcd-123-7.fill"), b"half a layer").expect("write");
    std::fs::write(spool.join("sha256-abcd-123-8.manifest"), b"{").expect("write");
    std::fs::create_dir(spool.join("stray-dir")).expect("mkdir");

    let store = Store::open(dir.path()).await.expect("reopen");
    assert!(std::fs::read_dir(&spool).expect("spool").next().is_none());
    // Nothing from the spool was promoted into content.
    assert!(files_under(&dir.path().join("blobs")).is_empty());
    drop(store);
}

const QUAY_LATEST: TagKey<'static> = TagKey {
    upstream: "quay.io",
    repository: "podman/stable",
    tag: "latest",
};
const DOCKER_LATEST: TagKey<'static> = TagKey {
    upstream: "docker.io",
    ..QUAY_LATEST
};

#[tokio::test(start_paused = true)]
async fn tag_records_are_kept_per_upstream_repo_and_tag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).await.expect("open");
    let rec = |content: &[u8]| TagRecord {
        digest: Digest::sha256_of(content),
        media_type: "application/vnd.oci.image.index.v1+json".into(),
        size: content.len() as u64,
        validated_at: tokio::time::Instant::now(),
    };
    assert!(store.get_tag(QUAY_LATEST).is_none());

    store.put_tag(QUAY_LATEST, rec(b"one"));
    tokio::time::advance(Duration::from_secs(600)).await;
    store.put_tag(DOCKER_LATEST, rec(b"two"));

    let got = store.get_tag(QUAY_LATEST).expect("recorded");
    assert_eq!(got.digest, Digest::sha256_of(b"one"));
    assert_eq!(got.validated_at.elapsed(), Duration::from_secs(600));
    assert!(
        store
            .get_tag(TagKey {
                tag: "v5",
                ..QUAY_LATEST
            })
            .is_none()
    );

    store.put_tag(QUAY_LATEST, rec(b"three"));
    let got = store.get_tag(QUAY_LATEST);
    assert_eq!(got.map(|r| r.digest), Some(Digest::sha256_of(b"three")));

    let removed = store.remove_tag(QUAY_LATEST);
    assert_eq!(removed.map(|r| r.size), Some(5));
    assert!(store.get_tag(QUAY_LATEST).is_none());
    let other = store.get_tag(DOCKER_LATEST);
    assert_eq!(other.map(|r| r.digest), Some(Digest::sha256_of(b"two")));
}

#[test]
fn hostile_digests_never_reach_the_store() {
    // The store takes only `Digest`s, and these are refused before one exists.
    for hostile in [
        "sha256:../../../../etc/passwd",
        "sha256:/etc/passwd",
        "sha256:..",
        "../sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "sha256/../x:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85/",
    ] {
        assert!(Digest::parse(hostile).is_err(), "{hostile:?} accepted");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Whatever a client sends is either refused as a digest or looked up harmlessly: a miss,
    /// no error, nothing created.
    #[test]
    fn any_digest_looks_up_harmlessly(s in prop_oneof![
        "sha(256|512):[0-9a-f]{64}|sha512:[0-9a-f]{128}",
        "sha256:[./a-f0-9]{64}",
        "[a-z0-9./:]{0,140}",
    ]) {
        let Ok(d) = Digest::parse(&s) else { return Ok(()) };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
        let dir = tempfile::tempdir().expect("tempdir");
        rt.block_on(async {
            let store = Store::open(dir.path()).await.expect("open");
            prop_assert_eq!(store.blob_size(&d).await, None);
            prop_assert!(store.get_manifest(&d).await.expect("get").is_none());
            prop_assert!(store.open_blob(&d).await.expect("open").is_none());
            prop_assert!(files_under(&dir.path().join("blobs")).is_empty());
            prop_assert!(files_under(&dir.path().join("quarantine")).is_empty());
            Ok(())
        })?;
    }
}
