//! The shared content tier: an S3-compatible object store (AWS S3, Ceph RGW, MinIO, Garage)
//! that every replica of wharf reads and writes, under each replica's own local store.
//!
//! ```text
//! <prefix>/blobs/<alg>/<hex>            verified content (blobs and manifests' bytes alike)
//! <prefix>/manifests/<alg>/<hex>        a manifest's bytes, its media type as Content-Type
//! <prefix>/tags/<upstream>/<repo>/<tag> a tag record: digest, media type, size, when validated
//! ```
//!
//! Only verified content is written: a replica writes a blob after its own store verified it,
//! and [`ObjectBlobStore::write`] hashes it again on the way out. What a replica reads back it
//! verifies once more (the fill that keeps it locally hashes every byte; manifests are hashed
//! here), so an object changed behind wharf's back is never served. wharf invents no storage
//! cluster: replication, durability and placement are the object store's.
//!
//! When the object store fails (unreachable, 5xx, timeout), the tier is left alone for
//! [`FAILURE_BACKOFF`] (`failure_backoff`): requests meanwhile go on without it (local disk, then the upstream)
//! instead of each waiting for the store's timeout.

mod blobs;
mod http;
mod records;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use tokio::time::Instant;

pub use blobs::{ObjectBlob, ObjectBlobStore};
pub use records::SharedTag;

/// How long a failing object store is left alone unless configured.
pub const FAILURE_BACKOFF: Duration = Duration::from_secs(10);
/// Blobs written to the store at once by one replica; more finishing fills skip the write (the
/// owner or the upstream serves the others meanwhile) rather than pile up buffers.
pub const MAX_UPLOADS: usize = 4;
/// The longest one blob write may take.
pub const UPLOAD_DEADLINE: Duration = Duration::from_secs(600);

/// Where the shared tier lives (`[object_store]`).
#[derive(Clone)]
pub struct TierConfig {
    /// `http(s)://host:port` of the S3 API.
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Every key starts with this (several fleets may share a bucket); empty: none.
    pub prefix: String,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    /// How long the store is left alone after it failed ([`FAILURE_BACKOFF`]).
    pub failure_backoff: Duration,
}

impl std::fmt::Debug for TierConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TierConfig")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// The tier could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("object_store: {0}")]
pub struct ConfigError(String);

/// The shared tier, cheap to clone.
#[derive(Debug, Clone)]
pub struct Tier {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    blobs: ObjectBlobStore,
    /// Until when the store is left alone after a failure.
    failed_until: Arc<Mutex<Option<Instant>>>,
    failure_backoff: Duration,
    /// Bounds every read on a request's path (a tag record, a manifest, a blob's first bytes
    /// and each later chunk): `response_timeout`.
    request_timeout: Duration,
    uploads: Arc<tokio::sync::Semaphore>,
    endpoint: Arc<str>,
}

impl Tier {
    /// A tier on the S3 API at `config.endpoint` (path-style requests, as Garage, MinIO and
    /// Ceph serve them; AWS accepts them too). Nothing is asked of the store until first used.
    pub fn connect(config: &TierConfig) -> Result<Tier, ConfigError> {
        let retry = object_store::RetryConfig {
            // One quick retry of what failed to connect or answered 5xx: a store that keeps
            // failing is left alone (FAILURE_BACKOFF) rather than waited for.
            max_retries: 1,
            retry_timeout: config.response_timeout,
            backoff: object_store::BackoffConfig {
                init_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_millis(200),
                base: 2.0,
            },
        };
        let s3 = AmazonS3Builder::new()
            .with_endpoint(config.endpoint.trim_end_matches('/'))
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_access_key_id(&config.access_key_id)
            .with_secret_access_key(&config.secret_access_key)
            .with_allow_http(config.endpoint.starts_with("http://"))
            .with_virtual_hosted_style_request(false)
            .with_retry(retry)
            .with_http_connector(http::Connector {
                connect_timeout: config.connect_timeout,
                response_timeout: config.response_timeout,
            })
            .build()
            .map_err(|e| ConfigError(e.to_string()))?;
        let prefix = Path::parse(config.prefix.trim_matches('/'))
            .map_err(|e| ConfigError(format!("prefix: {e}")))?;
        let mut tier = Tier::with_store(Arc::new(s3), prefix, &config.endpoint);
        tier.failure_backoff = config.failure_backoff;
        tier.request_timeout = config.response_timeout;
        Ok(tier)
    }

    /// A tier over `store`, with the default request timeout and back-off ([`Tier::connect`]
    /// sets the configured ones).
    fn with_store(store: Arc<dyn ObjectStore>, prefix: Path, endpoint: &str) -> Tier {
        Tier {
            blobs: ObjectBlobStore::new(store.clone(), &prefix),
            store,
            prefix,
            failed_until: Arc::new(Mutex::new(None)),
            failure_backoff: FAILURE_BACKOFF,
            request_timeout: Duration::from_secs(5),
            uploads: Arc::new(tokio::sync::Semaphore::new(MAX_UPLOADS)),
            endpoint: endpoint.into(),
        }
    }

    /// The content: the [`wharf_cache::BlobStore`] seam over the object store.
    pub fn blobs(&self) -> &ObjectBlobStore {
        &self.blobs
    }

    /// How long a read on a request's path may wait for the store (each chunk, for a blob).
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// A place among [`MAX_UPLOADS`], if one is free.
    pub fn upload_slot(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.uploads.clone().try_acquire_owned().ok()
    }

    /// The endpoint, for logs and errors (never the credentials).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Whether the store failed within its back-off ([`FAILURE_BACKOFF`] unless configured):
    /// then it is not asked.
    pub fn backing_off(&self) -> bool {
        let until = self
            .failed_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        until.is_some_and(|t| Instant::now() < t)
    }

    /// Records a failure of the store (not a miss): it is left alone for a while.
    pub fn failed(&self, error: &dyn std::fmt::Display) {
        let mut until = self
            .failed_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !until.is_some_and(|t| Instant::now() < t) {
            tracing::warn!(endpoint = %self.endpoint, %error,
                backoff_ms = self.failure_backoff.as_millis() as u64,
                "object store failed; going on without it for a while");
        }
        *until = Some(Instant::now() + self.failure_backoff);
    }

    /// The store answered: it is asked again at once.
    pub fn answered(&self) {
        *self
            .failed_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// `<prefix>/<part>/...`; a part with `/` (a repository name) is several segments.
    fn key(&self, parts: &[&str]) -> Path {
        parts
            .iter()
            .flat_map(|p| p.split('/'))
            .fold(self.prefix.clone(), |p, part| p.join(part))
    }
}
