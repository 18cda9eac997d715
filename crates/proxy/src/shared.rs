//! The shared tier (`[object_store]`): what replicas of wharf share through an object store,
//! under each one's local store.
//!
//! ```text
//! blob, local miss  -> the fill's opener asks the object store first (from the byte on disk,
//!                      when resuming), then the upstream; every byte is hashed by the fill,
//!                      so an object changed behind wharf's back fails the fill and is removed
//! fill from the upstream, verified and stored locally -> written to the object store (hashed
//!                      again on the way out; only a verified name is ever written)
//! manifest by digest, local miss, in scope -> the object store (verified), else the upstream
//! manifest fetched from the upstream -> written to the object store with its media type
//! tag, local record missing or past tag_ttl -> the object store's record: validated by some
//!                      replica within tag_ttl? taken as this replica's own (no upstream request;
//!                      the (upstream, repository) is known to hold its digest)
//! tag validated upstream -> its record written to the object store
//! ```
//!
//! The object store failing (unreachable, 5xx, timeout) never fails a request: the replica
//! goes on with its disk and the upstream, and leaves the store alone for a while
//! (`wharf_tier::FAILURE_BACKOFF`). Writes run in tasks of their own, after the client's
//! answer is decided.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use tokio::time::Instant;
use wharf_cache::{BlobStore, Fill, FillSource, SourceError, TagRecord};
use wharf_metrics::Outcome;
use wharf_oci::Digest;
use wharf_tier::{SharedTag, Tier};

use crate::Proxy;
use crate::manifest::Manifest;
use crate::upstreams::Target;

/// A shared tag record dated this far ahead of this replica's clock is not taken.
const MAX_CLOCK_SKEW_MS: u64 = 30_000;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Where a fill's bytes came from: set by its opener each time it opens a source, so a fill
/// that resumed from the upstream after its peer died counts (and is written) as the
/// upstream's.
#[derive(Debug, Default)]
pub(crate) struct Origin(AtomicU8);

impl Origin {
    const UPSTREAM: u8 = 0;
    const TIER: u8 = 1;
    const PEER: u8 = 2;

    pub(crate) fn opened_upstream(&self) {
        self.0.store(Self::UPSTREAM, Ordering::Relaxed);
    }

    pub(crate) fn opened_peer(&self) {
        self.0.store(Self::PEER, Ordering::Relaxed);
    }

    fn opened_tier(&self) {
        self.0.store(Self::TIER, Ordering::Relaxed);
    }

    fn label(&self) -> &'static str {
        match self.0.load(Ordering::Relaxed) {
            Self::TIER => "object_store",
            Self::PEER => "peer",
            _ => "upstream",
        }
    }
}

/// The fill's body from the object store, from `offset` on, if the store has `digest` and is
/// not backing off; `None` sends the opener to the upstream.
pub(crate) async fn tier_source(
    tier: &Tier,
    metrics: &wharf_metrics::Metrics,
    digest: &Digest,
    offset: u64,
    origin: &Origin,
) -> Option<FillSource> {
    if tier.backing_off() {
        metrics.tier.count("blob", "skipped");
        return None;
    }
    match bounded(tier, tier.blobs().read_from(digest, offset)).await {
        Ok(Some((size, body))) => {
            tier.answered();
            metrics.tier.count("blob", "hit");
            origin.opened_tier();
            // A body that stalls or breaks ends the fill's source: it resumes from the owner
            // or the upstream, and the store is left alone for a while.
            let failing = tier.clone();
            let body = crate::cluster::idle_bounded(body, tier.request_timeout())
                .inspect_err(move |e| failing.failed(e))
                .map_err(|e| Arc::new(e) as SourceError)
                .boxed();
            Some(FillSource {
                len: Some(size.saturating_sub(offset)),
                body,
            })
        }
        Ok(None) => {
            tier.answered();
            metrics.tier.count("blob", "miss");
            None
        }
        Err(e) => {
            tier.failed(&e);
            metrics.tier.count("blob", "error");
            None
        }
    }
}

/// `read` within the tier's `request_timeout`: a store that does not answer in time is an
/// error like one that refuses (the caller goes on without it).
async fn bounded<T>(
    tier: &Tier,
    read: impl std::future::Future<Output = Result<T, wharf_cache::StoreError>>,
) -> Result<T, wharf_cache::StoreError> {
    tokio::time::timeout(tier.request_timeout(), read)
        .await
        .unwrap_or_else(|_| {
            Err(wharf_cache::StoreError::Remote {
                op: "read",
                key: tier.endpoint().to_owned(),
                source: format!("no answer within {:?}", tier.request_timeout()).into(),
            })
        })
}

impl Proxy {
    /// Whether the object store holds `digest` (asked within its `request_timeout`); false
    /// without a tier, or while it is failing.
    pub(crate) async fn tier_holds(&self, digest: &Digest) -> bool {
        let Some(tier) = self.tier.as_ref().filter(|t| !t.backing_off()) else {
            return false;
        };
        match bounded(tier, tier.blobs().stat(digest)).await {
            Ok(found) => {
                tier.answered();
                found.is_some()
            }
            Err(e) => {
                tier.failed(&e);
                false
            }
        }
    }

    /// Once `fill` ends: a fill from the upstream, verified and stored, is written to the
    /// object store; one from the object store that did not match its digest has its object
    /// removed (the next request goes to the upstream).
    pub(crate) fn after_fill(
        &self,
        target: &Target,
        fill: Arc<Fill>,
        origin: Arc<Origin>,
        gauge: Arc<crate::observe::FillGauge>,
    ) {
        if self.tier.is_none() && self.cluster.is_none() {
            return;
        }
        let tier = self.tier.clone();
        let cluster = self.cluster.clone();
        let (store, metrics) = (self.store.clone(), self.metrics.clone());
        let upstream = target.upstream.name.clone();
        tokio::spawn(async move {
            let done = fill.done().await;
            // Joined a fill another request started (or the content was stored already):
            // that one's watcher does the rest.
            if !gauge.is_opened() {
                return;
            }
            let d = fill.digest();
            let source = origin.label();
            metrics
                .tier
                .fills
                .with_label_values(&[&upstream, source])
                .inc();
            // Bytes that did not match their digest: the source is not asked for them again.
            let corrupt = matches!(
                &done,
                Err(e) if e.is_digest_mismatch() || matches!(e, wharf_cache::FillError::LengthMismatch { .. })
            );
            if corrupt
                && source == "peer"
                && let Some(cluster) = &cluster
                && let Some(owner) = cluster.owner(d)
            {
                cluster.peer_failed(&owner, &"it sent bytes that do not match the digest");
            }
            let Some(tier) = tier else {
                return;
            };
            match (done, source) {
                (Err(_), "object_store") if corrupt => {
                    tracing::warn!(digest = %d, endpoint = tier.endpoint(),
                        "the object store's copy does not match its digest; removing it");
                    let _ = tier.blobs().delete(d).await;
                }
                // What came from a peer, the peer wrote.
                (Ok(()), "upstream") if !tier.backing_off() => {
                    let Some(_slot) = tier.upload_slot() else {
                        metrics.tier.count("blob", "skipped");
                        return;
                    };
                    let Ok(Some((file, size))) = store.open_blob(d).await else {
                        return;
                    };
                    let body = wharf_cache::file_chunks(file, 0, size, wharf_cache::CHUNK as usize);
                    let write = tier.blobs().write(d, body);
                    let written = tokio::time::timeout(wharf_tier::UPLOAD_DEADLINE, write)
                        .await
                        .unwrap_or_else(|_| {
                            Err(wharf_cache::StoreError::Remote {
                                op: "upload",
                                key: d.to_string(),
                                source: "no end within the upload deadline".into(),
                            })
                        });
                    match written {
                        Ok(n) => {
                            tier.answered();
                            metrics.tier.count("blob", "written");
                            metrics.tier.written_bytes.inc_by(n);
                        }
                        Err(e) => {
                            tier.failed(&e);
                            metrics.tier.count("blob", "error");
                        }
                    }
                }
                _ => {}
            }
        });
    }

    /// Manifest `digest` from the object store (verified), stored locally; `None` when the
    /// tier is off, failing or lacks it. Only for a repository known to hold `digest`.
    pub(crate) async fn manifest_from_tier(
        &self,
        target: &Target,
        digest: &Digest,
    ) -> Option<Manifest> {
        let tier = self.tier.as_ref().filter(|t| !t.backing_off())?;
        let (media_type, bytes) = match bounded(tier, tier.get_manifest(digest)).await {
            Ok(Some(m)) => {
                tier.answered();
                self.metrics.tier.count("manifest", "hit");
                m
            }
            Ok(None) => {
                tier.answered();
                self.metrics.tier.count("manifest", "miss");
                return None;
            }
            Err(e) => {
                if !e.is_digest_mismatch() {
                    tier.failed(&e);
                }
                self.metrics.tier.count("manifest", "error");
                return None;
            }
        };
        if let Err(e) = self.store.put_manifest(digest, &media_type, &bytes).await {
            tracing::warn!(%digest, error = %e, "keeping a manifest from the object store failed");
        }
        self.record_manifest_scope(target, digest, &media_type, &bytes);
        Some(Manifest {
            digest: digest.clone(),
            media_type,
            bytes,
            outcome: Outcome::Hit,
        })
    }

    /// `tag` as another replica validated it within `tag_ttl`, taken as this replica's own
    /// record (its manifest from the local store or the object store); `None` otherwise.
    pub(crate) async fn tag_from_tier(&self, target: &Target, tag: &str) -> Option<Manifest> {
        let tier = self.tier.as_ref().filter(|t| !t.backing_off())?;
        let up = &target.upstream;
        let repo = target.repo.as_str();
        let rec = match bounded(tier, tier.get_tag(&up.name, repo, tag)).await {
            Ok(Some(rec)) => {
                tier.answered();
                rec
            }
            Ok(None) => {
                tier.answered();
                self.metrics.tier.count("tag", "miss");
                return None;
            }
            Err(e) => {
                tier.failed(&e);
                self.metrics.tier.count("tag", "error");
                return None;
            }
        };
        // Another registry's record (a fleet sharing the bucket with an upstream of the same
        // name), or one from a clock far ahead, is no record.
        let now = now_ms();
        let age = Duration::from_millis(now.saturating_sub(rec.validated_ms));
        let from_future = rec.validated_ms > now.saturating_add(MAX_CLOCK_SKEW_MS);
        if age >= up.tag_ttl || rec.origin != up.client.url() || from_future {
            self.metrics.tier.count("tag", "miss");
            return None;
        }
        self.metrics.tier.count("tag", "hit");
        // The upstream named this digest for this repository: it holds it.
        self.store.add_scope(crate::scope::key(target, &rec.digest));
        let m = match self.store.get_manifest(&rec.digest).await.ok().flatten() {
            Some((media_type, bytes)) => {
                self.record_manifest_scope(target, &rec.digest, &media_type, &bytes);
                Manifest {
                    digest: rec.digest.clone(),
                    media_type,
                    bytes,
                    outcome: Outcome::Hit,
                }
            }
            None => self.manifest_from_tier(target, &rec.digest).await?,
        };
        let key = target.tag_key(tag);
        self.store.put_tag(
            key,
            TagRecord {
                digest: m.digest.clone(),
                media_type: m.media_type.clone(),
                size: m.bytes.len() as u64,
                // As old as the other replica's validation: the TTL runs from there.
                validated_at: Instant::now().checked_sub(age).unwrap_or_else(Instant::now),
            },
        );
        Some(m)
    }

    /// Writes that the upstream named `m` for `tag` just now, in a task of its own.
    pub(crate) fn publish_tag(&self, target: &Target, tag: &str, m: &Manifest) {
        let Some(tier) = self.tier.clone().filter(|t| !t.backing_off()) else {
            return;
        };
        let rec = SharedTag {
            digest: m.digest.clone(),
            media_type: m.media_type.clone(),
            size: m.bytes.len() as u64,
            validated_ms: now_ms(),
            origin: target.upstream.client.url().to_owned(),
        };
        let (upstream, repo, tag) = (
            target.upstream.name.clone(),
            target.repo.as_str().to_owned(),
            tag.to_owned(),
        );
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            match tier.put_tag(&upstream, &repo, &tag, &rec).await {
                Ok(()) => metrics.tier.count("tag", "written"),
                Err(e) => {
                    tier.failed(&e);
                    metrics.tier.count("tag", "error");
                }
            }
        });
    }

    /// Writes a manifest verified and stored just now, in a task of its own.
    pub(crate) fn publish_manifest(&self, digest: &Digest, media_type: &str, bytes: &Bytes) {
        let Some(tier) = self.tier.clone().filter(|t| !t.backing_off()) else {
            return;
        };
        let (d, mt, b) = (digest.clone(), media_type.to_owned(), bytes.clone());
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            match tier.put_manifest(&d, &mt, b).await {
                Ok(()) => metrics.tier.count("manifest", "written"),
                Err(e) => {
                    tier.failed(&e);
                    metrics.tier.count("manifest", "error");
                }
            }
        });
    }
}
