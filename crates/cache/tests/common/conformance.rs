//! The behaviour every store must show, whatever keeps its bytes: the [`Store`] checks below,
//! and in `blobs` the cases every `BlobStore` backend passes. A new backend (object store,
//! metadata index) runs this same suite against a fresh instance.

pub(crate) mod blobs;

use std::io::Read as _;
use wharf_cache::{Store, StoreError};
use wharf_oci::Digest;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// Runs every check on a fresh, empty store.
pub(crate) async fn run_all(store: &Store) {
    misses_are_empty(store).await;
    manifest_round_trips(store).await;
    manifest_put_is_idempotent(store).await;
    sha512_manifest_round_trips(store).await;
    digest_mismatch_stores_nothing(store).await;
    bad_media_type_stores_nothing(store).await;
}

pub(crate) async fn misses_are_empty(store: &Store) {
    let d = Digest::sha256_of(b"never stored");
    assert_eq!(store.blob_size(&d).await, None);
    assert!(store.open_blob(&d).await.expect("open_blob").is_none());
    assert!(
        store
            .get_manifest(&d)
            .await
            .expect("get_manifest")
            .is_none()
    );
}

pub(crate) async fn manifest_round_trips(store: &Store) {
    // Stored byte-exact: odd whitespace and key order survive.
    let bytes =
        br#"{ "schemaVersion":2,   "mediaType":"application/vnd.oci.image.manifest.v1+json" }"#;
    let d = Digest::sha256_of(bytes);
    store
        .put_manifest(&d, OCI_MANIFEST, bytes)
        .await
        .expect("put_manifest");

    let (media_type, got) = store
        .get_manifest(&d)
        .await
        .expect("get_manifest")
        .expect("manifest stored");
    assert_eq!(media_type, OCI_MANIFEST);
    assert_eq!(&got[..], &bytes[..]);
    assert_eq!(store.blob_size(&d).await, Some(bytes.len() as u64));

    let (mut file, size) = store
        .open_blob(&d)
        .await
        .expect("open_blob")
        .expect("manifest is content too");
    assert_eq!(size, bytes.len() as u64);
    let mut read = Vec::new();
    file.read_to_end(&mut read).expect("read blob");
    assert_eq!(read, bytes);
}

pub(crate) async fn manifest_put_is_idempotent(store: &Store) {
    let bytes = br#"{"schemaVersion":2,"manifests":[]}"#;
    let d = Digest::sha256_of(bytes);
    let index = "application/vnd.oci.image.index.v1+json";
    for _ in 0..2 {
        store
            .put_manifest(&d, index, bytes)
            .await
            .expect("put_manifest");
    }
    let (media_type, got) = store
        .get_manifest(&d)
        .await
        .expect("get_manifest")
        .expect("stored");
    assert_eq!((media_type.as_str(), &got[..]), (index, &bytes[..]));
}

pub(crate) async fn sha512_manifest_round_trips(store: &Store) {
    let bytes = br#"{"schemaVersion":2}"#;
    let mut v = wharf_oci::Verifier::new(wharf_oci::Algorithm::Sha512);
    v.update(bytes);
    let d = v.finish();
    store
        .put_manifest(&d, OCI_MANIFEST, bytes)
        .await
        .expect("put_manifest");
    let (_, got) = store
        .get_manifest(&d)
        .await
        .expect("get_manifest")
        .expect("stored");
    assert_eq!(&got[..], &bytes[..]);
}

pub(crate) async fn digest_mismatch_stores_nothing(store: &Store) {
    let claimed = Digest::sha256_of(b"what the client asked for");
    let err = store
        .put_manifest(&claimed, OCI_MANIFEST, b"what the upstream sent")
        .await
        .expect_err("mismatch must be refused");
    match &err {
        StoreError::DigestMismatch { expected, actual } => {
            assert_eq!(expected, &claimed);
            assert_eq!(actual, &Digest::sha256_of(b"what the upstream sent"));
        }
        other => panic!("expected DigestMismatch, got {other}"),
    }
    assert!(err.is_digest_mismatch());
    assert_eq!(store.blob_size(&claimed).await, None);
    assert!(store.get_manifest(&claimed).await.expect("get").is_none());
    let actual = Digest::sha256_of(b"what the upstream sent");
    assert_eq!(store.blob_size(&actual).await, None);
}

pub(crate) async fn bad_media_type_stores_nothing(store: &Store) {
    let bytes = br#"{"schemaVersion":2,"bad":true}"#;
    let d = Digest::sha256_of(bytes);
    for bad in ["", "application/json\r\nX-Injected: 1"] {
        let err = store
            .put_manifest(&d, bad, bytes)
            .await
            .expect_err("bad media type refused");
        assert!(matches!(err, StoreError::InvalidMediaType { .. }), "{err}");
    }
    assert_eq!(store.blob_size(&d).await, None);
}
