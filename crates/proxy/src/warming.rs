//! Predictive warming: when a revalidation finds that a tag moved, the platforms clients pulled
//! of that tag before are fetched in the background, so the first node of a rollout already
//! hits. Per upstream, `warm_moved_tags` (off unless configured).
//!
//! ```text
//! GET manifests/<tag>, an index      -> its children remembered: child digest -> (tag, platform)
//! GET manifests/<digest>, a child    -> its platform is one that the tag's clients pull
//! GET manifests/<tag>, an image      -> the tag's clients pull the image itself
//! a revalidation finds the tag moved (revalidate.rs)
//!   -> a task of its own: the new index's children for those platforms (or the new image)
//!      fetched and stored; then their config and layers, WARM_CONCURRENCY at a time, each a
//!      fill like a client's, which takes a place among max_concurrent_fills only when one is
//!      free (clients wait in line for places; warming never queues ahead of them)
//!   -> other platforms are not fetched
//! a client's GET of a warmed blob then hits (or joins its fill): wharf_warm_hits_total
//! ```
//!
//! What clients pulled is kept in memory, bounded ([`TAGS`] tags, [`CHILDREN`] child manifests):
//! a restart forgets it, and warming learns again from the next pulls. A tag that was an
//! image and moved to an index is not warmed (which platform the image was is not known).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{Semaphore, TryAcquireError};
use tracing::Instrument as _;
use wharf_oci::Digest;
use wharf_oci::manifest::{self, Blob, Platform};

use crate::Proxy;
use crate::manifest::Manifest;
use crate::observe::FillGauge;
use crate::upstreams::Target;

/// Tags whose pulled platforms are remembered.
const TAGS: u64 = 100_000;
/// Child manifests of those tags' indexes remembered.
const CHILDREN: u64 = 400_000;
/// Warmed blobs remembered until a client asks for them.
const WARMED: u64 = 100_000;
/// Platforms remembered per tag.
const MAX_PLATFORMS: usize = 16;
/// Tags listed per child manifest (one index may be tagged several ways).
const MAX_TAGS_PER_CHILD: usize = 8;
/// Blobs warmed at once, over every warming task.
pub(crate) const WARM_CONCURRENCY: usize = 2;
/// How often a warming fill looks for a free place among `max_concurrent_fills`.
const PLACE_POLL: Duration = Duration::from_millis(50);

/// (upstream, repository, tag or child digest)
type Key = (String, String, String);

fn key(target: &Target, what: &str) -> Key {
    (
        target.upstream.name.clone(),
        target.repo.as_str().to_owned(),
        what.to_owned(),
    )
}

/// What clients pulled of one tag.
#[derive(Debug, Default, Clone)]
struct Pulls {
    /// The manifest the tag was last served as (its children are remembered).
    served: Option<Digest>,
    /// Platforms whose child manifest clients asked for.
    platforms: Vec<Platform>,
    /// The tag was an image manifest when clients pulled it.
    image: bool,
}

impl Pulls {
    fn anything(&self) -> bool {
        self.image || !self.platforms.is_empty()
    }
}

/// The proxy's warming state.
pub(crate) struct Warming {
    tags: moka::sync::Cache<Key, Arc<Mutex<Pulls>>>,
    /// A child manifest -> the tags whose index lists it, with its platform there.
    children: moka::sync::Cache<Key, Arc<[(String, Platform)]>>,
    /// Blobs warming fetched that no client has asked for yet.
    warmed: moka::sync::Cache<Digest, ()>,
    /// Whether anything was ever warmed: until then a blob hit looks nothing up.
    ever: AtomicBool,
    /// [`WARM_CONCURRENCY`].
    slots: Semaphore,
}

impl Default for Warming {
    fn default() -> Self {
        Warming {
            tags: moka::sync::Cache::builder().max_capacity(TAGS).build(),
            children: moka::sync::Cache::builder().max_capacity(CHILDREN).build(),
            warmed: moka::sync::Cache::builder().max_capacity(WARMED).build(),
            ever: AtomicBool::new(false),
            slots: Semaphore::new(WARM_CONCURRENCY),
        }
    }
}

fn lock(p: &Mutex<Pulls>) -> std::sync::MutexGuard<'_, Pulls> {
    p.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Proxy {
    /// `tag` was answered with `m`: remember its children (an index) or that it is an image.
    /// Parses `m` only when the tag was last seen as another manifest.
    pub(crate) fn saw_tag(&self, target: &Target, tag: &str, m: &Manifest) {
        if !target.upstream.warm_moved_tags {
            return;
        }
        let w = &self.warming;
        let entry = w.tags.get_with(key(target, tag), Default::default);
        let mut pulls = lock(&entry);
        if pulls.served.as_ref() == Some(&m.digest) {
            return;
        }
        pulls.served = Some(m.digest.clone());
        match manifest::parse(&m.media_type, &m.bytes) {
            Ok(manifest::Manifest::Index(children)) => {
                drop(pulls);
                for c in children {
                    if let Some(p) = c.platform {
                        w.add_child(key(target, &c.digest.to_string()), tag, p);
                    }
                }
            }
            Ok(manifest::Manifest::Image { .. }) => pulls.image = true,
            Err(_) => {}
        }
    }

    /// A manifest was asked for by `digest`: if it is a child of a remembered tag's index,
    /// its platform is one that tag's clients pull.
    pub(crate) fn saw_child(&self, target: &Target, digest: &Digest) {
        if !target.upstream.warm_moved_tags {
            return;
        }
        let w = &self.warming;
        let Some(tags) = w.children.get(&key(target, &digest.to_string())) else {
            return;
        };
        for (tag, platform) in tags.iter() {
            if let Some(entry) = w.tags.get(&key(target, tag)) {
                let mut pulls = lock(&entry);
                if !pulls.platforms.contains(platform) && pulls.platforms.len() < MAX_PLATFORMS {
                    pulls.platforms.push(platform.clone());
                }
            }
        }
    }

    /// A revalidation found that `tag` moved to `m`: warm what its clients pulled before, in
    /// a task of its own.
    pub(crate) fn tag_moved(&self, target: &Target, tag: &str, m: &Manifest) {
        // An upstream whose manifests must be signed is not warmed: nothing unverified is
        // fetched ahead of the client whose pull verifies it.
        if !target.upstream.warm_moved_tags || target.upstream.policy.is_some() {
            return;
        }
        let Some(entry) = self.warming.tags.get(&key(target, tag)) else {
            return;
        };
        let pulls = lock(&entry).clone();
        let Some(me) = self.me.upgrade() else {
            return;
        };
        if !pulls.anything() {
            return;
        }
        let span = tracing::info_span!(parent: None, "warm", upstream = %target.upstream.name,
            repo = target.repo.as_str(), tag, digest = %m.digest);
        span.follows_from(tracing::Span::current());
        let (target, m) = (target.clone(), m.clone());
        tokio::spawn(async move { me.warm(&target, &m, &pulls).await }.instrument(span));
    }

    async fn warm(&self, target: &Target, m: &Manifest, pulls: &Pulls) {
        let up = &target.upstream;
        self.metrics
            .warming
            .runs
            .with_label_values(&[&up.name])
            .inc();
        let mut images = Vec::new();
        match manifest::parse(&m.media_type, &m.bytes) {
            Ok(manifest::Manifest::Index(children)) => {
                let wanted = children.into_iter().filter(|c| {
                    c.platform
                        .as_ref()
                        .is_some_and(|p| pulls.platforms.iter().any(|w| w.accepts(p)))
                });
                for c in wanted {
                    match self.warm_manifest(target, &c.digest).await {
                        Ok(child) => images.push(child),
                        Err(e) => {
                            tracing::warn!(error = %e, child = %c.digest, "warming: the child manifest could not be fetched");
                        }
                    }
                }
            }
            Ok(manifest::Manifest::Image { .. }) if pulls.image => images.push(m.clone()),
            _ => {}
        }
        let mut seen = HashSet::new();
        let blobs: Vec<Blob> = images
            .iter()
            .filter_map(|i| match manifest::parse(&i.media_type, &i.bytes) {
                Ok(manifest::Manifest::Image { blobs, .. }) => Some(blobs),
                _ => None,
            })
            .flatten()
            .filter(|b| seen.insert(b.digest.clone()))
            .collect();
        let count = blobs.len();
        futures_util::stream::iter(blobs)
            .for_each_concurrent(WARM_CONCURRENCY, |b| async move {
                let result = self.warm_blob(target, &b.digest).await;
                self.metrics
                    .warming
                    .blobs
                    .with_label_values(&[&up.name, result])
                    .inc();
            })
            .await;
        tracing::info!(
            manifests = images.len(),
            blobs = count,
            "warmed the platforms clients pulled of a moved tag"
        );
    }

    /// A child manifest of the moved tag's index, from the store or fetched and stored.
    async fn warm_manifest(
        &self,
        target: &Target,
        digest: &Digest,
    ) -> Result<Manifest, crate::error::ProxyError> {
        if let Some((media_type, bytes)) = self.store.get_manifest(digest).await? {
            return Ok(Manifest {
                digest: digest.clone(),
                media_type,
                bytes,
                outcome: wharf_metrics::Outcome::Hit,
            });
        }
        self.fetch_manifest(target, &digest.to_string(), Some(digest))
            .await
    }

    /// Fetches and stores one blob, unless it is stored or being fetched; its result label.
    async fn warm_blob(&self, target: &Target, digest: &Digest) -> &'static str {
        let up = &target.upstream;
        if self.store.contains(digest) || self.store.fill_in_flight(digest).is_some() {
            return "present";
        }
        let Ok(_slot) = self.warming.slots.acquire().await else {
            return "skipped";
        };
        // A place among max_concurrent_fills, taken only when one is free.
        let permit = loop {
            if up.backoff.remaining().is_some() {
                return "skipped";
            }
            match self.fill_permits.clone().try_acquire_owned() {
                Ok(p) => break p,
                Err(TryAcquireError::NoPermits) => tokio::time::sleep(PLACE_POLL).await,
                Err(TryAcquireError::Closed) => return "skipped",
            }
        };
        if self.store.contains(digest) || self.store.fill_in_flight(digest).is_some() {
            return "present";
        }
        self.warming.warmed.insert(digest.clone(), ());
        self.warming.ever.store(true, Ordering::Relaxed);
        let gauge = FillGauge::new(&self.metrics, &up.name);
        let fill = self.start_fill(target, digest, Some(permit), gauge, false);
        match fill.done().await {
            Ok(()) => {
                let size = fill.ready().await.unwrap_or(0);
                self.metrics
                    .warming
                    .bytes
                    .with_label_values(&[&up.name])
                    .inc_by(size);
                "fetched"
            }
            Err(e) => {
                self.warming.warmed.invalidate(digest);
                tracing::warn!(error = %e, %digest, "warming: the blob could not be fetched");
                "failed"
            }
        }
    }

    /// A client's GET of `digest` (stored, or joining its fill): counted once if warming
    /// fetched it.
    pub(crate) fn warmed_hit(&self, target: &Target, digest: &Digest) {
        if !self.warming.ever.load(Ordering::Relaxed) {
            return;
        }
        if self.warming.warmed.remove(digest).is_some() {
            self.metrics
                .warming
                .hits
                .with_label_values(&[&target.upstream.name])
                .inc();
        }
    }
}

impl Warming {
    fn add_child(&self, child: Key, tag: &str, platform: Platform) {
        let mut tags: Vec<(String, Platform)> = self
            .children
            .get(&child)
            .map(|t| t.to_vec())
            .unwrap_or_default();
        if tags.iter().any(|(t, _)| t == tag) || tags.len() >= MAX_TAGS_PER_CHILD {
            return;
        }
        tags.push((tag.to_owned(), platform));
        self.children.insert(child, tags.into());
    }
}
