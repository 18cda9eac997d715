//! Online garbage collection of the hosted store: content no hosted repository references
//! goes, while pushes and pulls go on.
//!
//! Referenced is: held by a repository (a scope pair: pushed or mounted there, not deleted
//! since), named by a tag, or named by a manifest that is itself referenced (an index's
//! children, an image's config and layers, transitively). Anything else stored is garbage:
//! what `DELETE` unlinked from its last repository, or content a crash left stored but never
//! scoped. A `subject` is a weak link: a referrer does not keep its subject.
//!
//! ```text
//! collect()
//!   one collection at a time (running)
//!   start   exclusive lock: touched := {} (marking)          <- no mutation is half-done
//!   mark    no lock: scope pairs (the metadata store, after all recorded so far), tags,
//!           manifests walked from them -> live
//!   list    no lock: stored content not live -> candidates
//!   sweep   exclusive lock: candidates - touched -> removed; marking ends
//! mutation (upload finished, mount, manifest PUT)
//!   shared lock (Pin) from before the content is stored until it is scoped or tagged;
//!   every digest it stores or relies on is touched while a mark is under way
//! ```
//!
//! The races, and why each is safe:
//!
//! - **An upload or mount against the sweep.** The store publishes a blob before the scope pair
//!   that keeps it is recorded. The mutation holds the shared lock across both, so the start
//!   and the sweep (exclusive) never fall between them. A mutation wholly before the start is
//!   in the mark's scope pairs (the listing is answered after every pair recorded before it);
//!   one that takes the lock after the start touches its digest, and the sweep spares what is
//!   touched. Content stored after the start is touched by the mutation that stored it, so it
//!   is younger than the collection and kept: this is the grace period, by generation, with
//!   no clock involved.
//! - **A manifest PUT whose blobs are checked present, then swept.** The PUT checks that the
//!   repository holds every blob and child it names, stores the manifest and scopes it under
//!   one shared lock, touching the manifest and everything it names. A `DELETE` of one of those
//!   blobs racing the PUT may unlink it from the repository, but the manifest now names it, so
//!   it stays stored (referenced through the manifest) and the next mark finds it so.
//! - **A pull streaming what is being swept.** A pull opens the file and streams from the open
//!   descriptor; the sweep removes the digest from the index and the metadata writer unlinks
//!   the file, which the open descriptor keeps readable until the pull ends (unlink
//!   semantics, as for the cache's evictions). A pull that arrives after the sweep finds no
//!   scope pair for it anyway: garbage is by definition served through no repository.
//! - **A DELETE during a mark.** Deletes only take references away: the mark may keep
//!   something a delete just released; the next collection takes it.
//! - **Pulls never wait.** Only mutations take the lock; the exclusive sections are short
//!   (resetting a set; removing index entries, the unlinks happen on the writer thread). A
//!   mutation in flight delays a sweep's start by its own length (an fsync of a finished
//!   upload at most), and new mutations queue behind a waiting sweep for that long.
//!
//! Triggers: every `hosted.gc_interval` (default 1h), soon after a `DELETE` (debounced), and
//! `POST /admin/gc` on the admin listener. Counted in `wharf_hosted_gc_*`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::{Notify, RwLock, RwLockReadGuard};
use wharf_cache::{Store, StoreError};
use wharf_metrics::HostedGcSnapshot;
use wharf_oci::Digest;
use wharf_oci::manifest;

use super::HOSTED;

/// How long after a `DELETE` the collection it asks for starts: deletes come in bursts (a
/// script untagging a repository), and one collection after the burst does for all of them.
const AFTER_DELETE: Duration = Duration::from_secs(5);

/// The collector's state, shared by the hosted repositories and their background task.
pub(crate) struct Gc {
    store: Arc<Store>,
    /// Shared by mutations across "stored .. scoped"; exclusive for a collection's start
    /// and sweep.
    lock: RwLock<()>,
    /// `Some` while a collection marks: what mutations stored or relied on since it started.
    touched: Mutex<Option<HashSet<Digest>>>,
    /// One collection at a time.
    running: tokio::sync::Mutex<()>,
    /// A `DELETE` asks for a collection (shared with the task, which holds the rest weakly).
    wake: Arc<Notify>,
    runs: AtomicU64,
    blobs: AtomicU64,
    bytes: AtomicU64,
}

/// What one collection did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Stored pieces of content referenced (kept).
    pub live: u64,
    /// Pieces removed, and their bytes.
    pub collected: u64,
    pub collected_bytes: u64,
    /// Unreferenced at the mark, but stored or relied on by a mutation since: kept.
    pub spared: u64,
}

impl GcReport {
    /// As the admin API answers it.
    pub fn to_json(self) -> serde_json::Value {
        serde_json::json!({
            "live": self.live,
            "collected": self.collected,
            "collected_bytes": self.collected_bytes,
            "spared": self.spared,
        })
    }
}

/// A mutation in progress: no collection starts or sweeps until it is dropped.
pub(crate) struct Pin<'a> {
    gc: &'a Gc,
    _shared: RwLockReadGuard<'a, ()>,
}

impl Pin<'_> {
    /// `d` is stored or relied on by this mutation: a collection marking now keeps it.
    pub(crate) fn touch(&self, d: &Digest) {
        let mut touched = self
            .gc
            .touched
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(set) = touched.as_mut() {
            set.insert(d.clone());
        }
    }
}

impl Gc {
    /// The collector of `store`; collects every `interval` on the current runtime (if there
    /// is one), and soon after deletes, for as long as it lives.
    pub(crate) fn start(store: Arc<Store>, interval: Duration) -> Arc<Gc> {
        let gc = Arc::new(Gc {
            store,
            lock: RwLock::new(()),
            touched: Mutex::new(None),
            running: tokio::sync::Mutex::new(()),
            wake: Arc::new(Notify::new()),
            runs: AtomicU64::new(0),
            blobs: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        });
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(run(Arc::downgrade(&gc), gc.wake.clone(), interval));
        }
        gc
    }

    /// Holds off collections while a mutation stores content and records what keeps it.
    pub(crate) async fn pin(&self) -> Pin<'_> {
        Pin {
            gc: self,
            _shared: self.lock.read().await,
        }
    }

    /// Asks for a collection soon (after a `DELETE`).
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    /// Counts since start-up, for `/metrics`.
    pub(crate) fn totals(&self) -> HostedGcSnapshot {
        HostedGcSnapshot {
            runs: self.runs.load(Ordering::Relaxed),
            collected: self.blobs.load(Ordering::Relaxed),
            collected_bytes: self.bytes.load(Ordering::Relaxed),
        }
    }

    /// One collection: mark, then sweep what is neither live nor touched since the start.
    pub(crate) async fn collect(&self) -> Result<GcReport, StoreError> {
        let _one = self.running.lock().await;
        {
            let _exclusive = self.lock.write().await;
            *self.touched() = Some(HashSet::new());
        }
        let marked = self.mark().await;
        let live = match marked {
            Ok(live) => live,
            Err(e) => {
                *self.touched() = None;
                return Err(e);
            }
        };
        let candidates: Vec<_> = self
            .store
            .contents()
            .into_iter()
            .filter(|c| !live.contains(&c.digest))
            .collect();
        let mut report = GcReport {
            live: live.len() as u64,
            ..GcReport::default()
        };
        {
            let _exclusive = self.lock.write().await;
            let touched = self.touched().take().unwrap_or_default();
            for c in candidates {
                if touched.contains(&c.digest) {
                    report.spared += 1;
                    continue;
                }
                if let Some(size) = self.store.remove(&c.digest) {
                    report.collected += 1;
                    report.collected_bytes += size;
                    tracing::debug!(digest = %c.digest, size, "collected");
                }
            }
        }
        self.runs.fetch_add(1, Ordering::Relaxed);
        self.blobs.fetch_add(report.collected, Ordering::Relaxed);
        self.bytes
            .fetch_add(report.collected_bytes, Ordering::Relaxed);
        tracing::info!(
            live = report.live,
            collected = report.collected,
            collected_bytes = report.collected_bytes,
            spared = report.spared,
            "hosted garbage collection"
        );
        Ok(report)
    }

    fn touched(&self) -> std::sync::MutexGuard<'_, Option<HashSet<Digest>>> {
        self.touched.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every digest some hosted repository references (stored or not).
    async fn mark(&self) -> Result<HashSet<Digest>, StoreError> {
        let mut live: HashSet<Digest> = self
            .store
            .scope_pairs(HOSTED)
            .await?
            .into_iter()
            .map(|(_, d)| d)
            .collect();
        live.extend(
            self.store
                .tags()
                .into_iter()
                .filter(|t| t.upstream == HOSTED)
                .map(|t| t.record.digest),
        );
        let mut queue: Vec<Digest> = live.iter().cloned().collect();
        while let Some(d) = queue.pop() {
            if self.store.media_type(&d).is_none() {
                continue; // a blob, or not stored
            }
            // A manifest that cannot be parsed names nothing the mark can follow (it is live
            // itself). One that cannot be *read* (EIO, no file descriptors) ends the collection:
            // what it names is unknown, and sweeping on would take what it keeps alive.
            let Some((media_type, bytes)) = self.store.get_manifest(&d).await? else {
                continue;
            };
            let Ok(doc) = manifest::parse(&media_type, &bytes) else {
                continue;
            };
            for named in doc.digests() {
                if live.insert(named.clone()) {
                    queue.push(named.clone());
                }
            }
        }
        Ok(live)
    }
}

/// Collects every `interval`, and [`AFTER_DELETE`] after a delete asked for it, until the
/// collector is dropped.
async fn run(gc: Weak<Gc>, wake: Arc<Notify>, interval: Duration) {
    loop {
        let woken = tokio::select! {
            () = wake.notified() => true,
            () = tokio::time::sleep(interval) => false,
        };
        if woken {
            tokio::time::sleep(AFTER_DELETE).await;
        }
        let Some(g) = gc.upgrade() else { return };
        if let Err(e) = g.collect().await {
            tracing::warn!(error = %e, "hosted garbage collection failed; trying again later");
        }
    }
}
