//! The shared tier against a real Garage on loopback: the one `BlobStore` conformance suite
//! (`crates/cache/tests/common/conformance/blobs.rs`, the suite the local disk passes), and
//! manifests and tag records round-tripping, verified on the way back.

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

#[path = "../../cache/tests/common/mod.rs"]
mod common;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use wharf_oci::Digest;
use wharf_testkit::garage::{self, Garage};
use wharf_tier::{ObjectBlobStore, SharedTag, Tier, TierConfig};

/// One Garage for the binary's tests; each test has a prefix of its own in its bucket.
fn garage() -> &'static Garage {
    static GARAGE: OnceLock<Garage> = OnceLock::new();
    GARAGE.get_or_init(Garage::start)
}

fn tier() -> Tier {
    static N: AtomicUsize = AtomicUsize::new(0);
    let g = garage();
    Tier::connect(&TierConfig {
        endpoint: g.endpoint(),
        bucket: garage::BUCKET.into(),
        region: garage::REGION.into(),
        access_key_id: garage::KEY_ID.into(),
        secret_access_key: garage::SECRET.into(),
        prefix: format!(
            "test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ),
        connect_timeout: Duration::from_secs(5),
        response_timeout: Duration::from_secs(30),
        failure_backoff: Duration::from_secs(1),
    })
    .expect("tier")
}

async fn garage_blobs() -> common::conformance::blobs::Backend<ObjectBlobStore> {
    common::conformance::blobs::remote(tier().blobs().clone())
}

blob_store_conformance!(garage_backend, crate::garage_blobs());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_keep_their_media_type_and_are_verified_on_the_way_back() {
    let t = tier();
    let bytes = Bytes::from_static(
        br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#,
    );
    let d = Digest::sha256_of(&bytes);
    assert_eq!(t.get_manifest(&d).await.expect("get"), None);
    t.put_manifest(
        &d,
        "application/vnd.oci.image.manifest.v1+json",
        bytes.clone(),
    )
    .await
    .expect("put");
    let (mt, got) = t.get_manifest(&d).await.expect("get").expect("stored");
    assert_eq!(mt, "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(got, bytes);
    // Bytes that do not hash to the name they are kept under are refused, never served.
    let other = Digest::sha256_of(b"another manifest");
    t.put_manifest(&other, "application/json", bytes.clone())
        .await
        .expect("put");
    let e = t.get_manifest(&other).await.expect_err("a mismatch");
    assert!(e.is_digest_mismatch(), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_records_round_trip_per_upstream_repository_and_tag() {
    let t = tier();
    let rec = SharedTag {
        digest: Digest::sha256_of(b"m"),
        media_type: "application/vnd.oci.image.index.v1+json".into(),
        size: 1,
        validated_ms: 1_700_000_000_000,
        origin: "https://container-registry.oracle.com".into(),
    };
    assert_eq!(
        t.get_tag("oracle", "os/oraclelinux", "9")
            .await
            .expect("get"),
        None
    );
    t.put_tag("oracle", "os/oraclelinux", "9", &rec)
        .await
        .expect("put");
    assert_eq!(
        t.get_tag("oracle", "os/oraclelinux", "9")
            .await
            .expect("get"),
        Some(rec.clone())
    );
    assert_eq!(
        t.get_tag("quay", "os/oraclelinux", "9").await.expect("get"),
        None
    );
    assert_eq!(
        t.get_tag("oracle", "os/oraclelinux", "8")
            .await
            .expect("get"),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_store_is_an_error_quickly_not_a_miss() {
    // A tier whose endpoint nothing listens on: an error (the caller goes on without it and
    // backs off), never "not there".
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let t = Tier::connect(&TierConfig {
        endpoint: format!("http://127.0.0.1:{port}"),
        bucket: garage::BUCKET.into(),
        region: garage::REGION.into(),
        access_key_id: garage::KEY_ID.into(),
        secret_access_key: garage::SECRET.into(),
        prefix: String::new(),
        connect_timeout: Duration::from_secs(2),
        response_timeout: Duration::from_secs(5),
        failure_backoff: Duration::from_secs(1),
    })
    .expect("tier");
    let started = tokio::time::Instant::now();
    let e = t
        .get_manifest(&Digest::sha256_of(b"x"))
        .await
        .expect_err("nothing listens");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(e.to_string().contains("object store"), "{e}");
}
