//! [`Store`]: opening the root, content by digest, manifests with their media type, tag records.

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak, mpsc};

use bytes::Bytes;
use tokio::time::Instant;
use wharf_oci::Digest;

use crate::blobs::{BlobStore, FsBlobStore};
use crate::error::StoreError;
use crate::fill::Fill;
use crate::index::{Index, Sink, now_ms};
use crate::layout::Layout;
use crate::meta;
use crate::no_space::NoSpace;
use crate::recover;
use crate::scopes::{ScopeKey, Scopes};
use crate::scrub::{Fills, ScrubCounters, ScrubGuard, Scrubber};
use crate::tags::{TagEntry, TagKey, TagRecord, Tags};
use crate::writer::{Context, Op, Writer};

pub use crate::options::{StoreOptions, StoreStats};

/// The digest-addressed store under one root directory. See the crate docs for the layout.
#[derive(Debug)]
pub struct Store {
    /// The content: every file the store reads or writes is this tier's.
    pub(crate) blobs: FsBlobStore,
    pub(crate) options: StoreOptions,
    tags: Tags,
    /// Which (upstream, repository) is known to hold which digest (`scopes.rs`).
    pub(crate) scopes: Arc<Scopes>,
    pub(crate) index: Index,
    pub(crate) meta: Writer,
    hits: AtomicU64,
    misses: AtomicU64,
    /// Manifests verified since the store opened, by digest (`manifest_memory`). Consulted only
    /// after the index says the manifest is stored, so what the index drops (eviction,
    /// `cache rm`, quarantine) is never served from here; the bytes are the digest's, so an
    /// entry can outlive its index entry without ever being wrong.
    manifests: Option<moka::sync::Cache<Digest, Bytes>>,
    /// Fills in flight, by digest. A fill removes itself when it ends (see `fill::task`).
    /// Shared with the scrubber, which leaves their content alone.
    pub(crate) fills: Fills,
    /// Fills that stored their content, while their readers live: an eviction of that content
    /// leaves the file on disk until they are gone (a reader opens the stored file only when
    /// it first reads).
    pins: Pins,
    pub(crate) scrubbed: Arc<ScrubCounters>,
    /// Writes refused for lack of space: counted, and logged once per episode.
    pub(crate) no_space: NoSpace,
    /// Ends the scrubber with the store; `None` when it is off.
    _scrub: Option<ScrubGuard>,
    /// Ends the count of open files outside the index (`held.rs`) with the store.
    _held: crate::held::HeldGuard,
}

type Pins = Arc<Mutex<HashMap<Digest, Weak<Fill>>>>;

/// The index key of disk space held for `what` (a fill, files outside the index): a digest no
/// content has, since its preimage is no blob anyone can ask for by this key's hash.
pub(crate) fn reservation_key(what: &str) -> Digest {
    Digest::sha256_of(format!("wharf reservation\0{what}\0{}", std::process::id()).as_bytes())
}

/// The in-memory manifests, weighed by their length, within `budget` bytes; none for 0.
fn manifest_memory(budget: u64) -> Option<moka::sync::Cache<Digest, Bytes>> {
    (budget > 0).then(|| {
        moka::sync::Cache::builder()
            .max_capacity(budget)
            .weigher(|_: &Digest, b: &Bytes| u32::try_from(b.len()).unwrap_or(u32::MAX))
            .build()
    })
}

fn is_pinned(pins: &Pins, d: &Digest) -> bool {
    let mut pins = pins.lock().unwrap_or_else(PoisonError::into_inner);
    let alive = pins.get(d).is_some_and(|w| w.strong_count() > 0);
    if !alive {
        pins.remove(d);
    }
    alive
}

impl Store {
    /// Opens (creating if needed) the store at `root` with default options.
    pub async fn open(root: &Path) -> Result<Arc<Store>, StoreError> {
        Store::open_with(root, StoreOptions::default()).await
    }

    /// Opens (creating if needed) the store at `root`: sweeps the spool (files left there by a
    /// crash mid-write were never verified), reconciles the content with the metadata store
    /// (`recover.rs`: unknown or changed files are hashed, mismatches quarantined), and loads
    /// the index in access order, evicting what is over `max_size`.
    pub async fn open_with(root: &Path, options: StoreOptions) -> Result<Arc<Store>, StoreError> {
        let started = Instant::now();
        let blobs = FsBlobStore::open(root).await?;
        let (tx, rx) = mpsc::channel();
        // Evicted content is unlinked by the writer thread, off the request path.
        let sink_tx = tx.clone();
        let sink: Sink = Arc::new(move |digest, _why| {
            let _ = sink_tx.send(Op::Dropped(digest));
        });
        let max_size = options.max_size;
        let at = blobs.clone();
        let (db, index, tags, scopes, report) = tokio::task::spawn_blocking(move || {
            let db = meta::open(at.layout())?;
            let recovered = recover::recover(at.layout(), &db, at.seq())?;
            let index = Index::new(max_size, sink);
            index.reserve_entries(recovered.kept.len());
            for k in recovered.kept {
                index.load_key(k.key, k.size, k.media_type, k.times);
            }
            index.settle();
            let tags = Tags::load(recovered.tags);
            let scopes = Arc::new(Scopes::load(&recovered.scopes));
            Ok::<_, StoreError>((db, index, tags, scopes, recovered.report))
        })
        .await
        .map_err(|e| StoreError::io("opening", root)(io::Error::other(e)))??;
        let (verified_loaded, verified_loaded_rx) = tokio::sync::watch::channel(false);
        let pins: Pins = Arc::default();
        let pinned = pins.clone();
        let meta = Writer::start(
            db,
            rx,
            tx,
            Context {
                index: index.handle(),
                blobs: blobs.clone(),
                pinned: Arc::new(move |d: &Digest| is_pinned(&pinned, d)),
                scopes: scopes.clone(),
                verified_loaded,
            },
            options.access_flush_interval,
        )?;
        tracing::info!(
            root = %root.display(),
            entries = index.entry_count(),
            bytes = index.bytes(),
            max_size,
            tags = tags.len(),
            scopes = scopes.len(),
            trusted = report.trusted,
            verified = report.verified,
            quarantined = report.quarantined,
            dropped_rows = report.dropped_rows,
            dropped_tags = report.dropped_tags,
            dropped_scopes = report.dropped_scopes,
            load_ms = report.load_ms,
            walk_ms = report.walk_ms,
            reconcile_ms = report.reconcile_ms,
            ms = started.elapsed().as_millis() as u64,
            "store open"
        );
        let fills = Fills::default();
        let scrubbed = Arc::<ScrubCounters>::default();
        let scrub = Scrubber {
            index: index.handle(),
            blobs: blobs.clone(),
            fills: fills.clone(),
            meta: meta.sender(),
            counters: scrubbed.clone(),
            rate: options.scrub_rate,
            verified_loaded: verified_loaded_rx,
        }
        .start();
        let held = crate::held::start(
            index.handle(),
            blobs.layout().blobs_dir().to_path_buf(),
            reservation_key("files outside the index"),
        );
        Ok(Arc::new(Store {
            manifests: manifest_memory(options.manifest_memory),
            blobs,
            options,
            tags,
            scopes,
            index,
            meta,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            fills,
            pins,
            scrubbed,
            no_space: NoSpace::default(),
            _scrub: scrub,
            _held: held,
        }))
    }

    /// Holds `size` bytes of the budget under `key` (0 releases it): see `Index::reserve`.
    pub(crate) fn reserve(&self, key: &Digest, size: u64) {
        self.index.reserve(key, size);
    }

    pub fn root(&self) -> &Path {
        self.blobs.layout().root()
    }

    pub(crate) fn layout(&self) -> &Layout {
        self.blobs.layout()
    }

    pub fn options(&self) -> &StoreOptions {
        &self.options
    }

    pub(crate) fn next_seq(&self) -> u64 {
        self.blobs.next_seq()
    }

    fn counted<T>(&self, found: Option<T>) -> Option<T> {
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// The size of the stored content for `d`, if it is stored (from the index, no I/O).
    pub async fn blob_size(&self, d: &Digest) -> Option<u64> {
        self.index.get(d).map(|e| e.size)
    }

    /// The stored content for `d`, opened, with its size. The open file stays readable if the
    /// content is evicted meanwhile. A file of another size than the one verified is
    /// quarantined, never served.
    pub async fn open_blob(&self, d: &Digest) -> Result<Option<(std::fs::File, u64)>, StoreError> {
        let Some(entry) = self.index.get(d) else {
            return Ok(self.counted(None));
        };
        // The filesystem tier's own type, so the file reaches `sendfile` as it is (see
        // `FsBlobStore::open_now` for why this runs on the worker).
        let Some(blob) = self.blobs.open(d).await? else {
            // Removed behind the index's back (or an unlink raced a new fill): a miss.
            self.index.remove(d);
            return Ok(self.counted(None));
        };
        if blob.size != entry.size {
            self.quarantine(d, "its size changed since it was verified")
                .await;
            return Ok(self.counted(None));
        }
        Ok(self.counted(Some((blob.file, blob.size))))
    }

    /// A stored manifest: its media type and bytes, if both are stored. Served from memory when
    /// verified earlier (`manifest_memory`); otherwise read and hashed: a manifest changed on
    /// disk is quarantined and reported missing, so it is fetched again.
    pub async fn get_manifest(&self, d: &Digest) -> Result<Option<(String, Bytes)>, StoreError> {
        let Some(media_type) = self.index.get(d).and_then(|e| e.media_type.clone()) else {
            return Ok(self.counted(None));
        };
        if let Some(bytes) = self.manifests.as_ref().and_then(|m| m.get(d)) {
            return Ok(self.counted(Some((media_type.to_string(), bytes))));
        }
        let Some(bytes) = self.blobs.read_to_bytes(d).await? else {
            self.index.remove(d);
            return Ok(self.counted(None));
        };
        let mut verifier = d.verifier();
        verifier.update(&bytes);
        if verifier.finish() != *d {
            self.quarantine(d, "its content does not match its digest")
                .await;
            return Ok(self.counted(None));
        }
        if let Some(m) = &self.manifests {
            m.insert(d.clone(), bytes.clone());
        }
        Ok(self.counted(Some((media_type.to_string(), bytes))))
    }

    /// Stores a manifest byte-exact with its media type, after checking that `bytes` hash to `d`;
    /// on a mismatch nothing is stored. The bytes are published first and indexed with their
    /// media type after, so a crash between the two leaves content that is not a manifest.
    pub async fn put_manifest(
        &self,
        d: &Digest,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        if media_type.is_empty() || media_type.chars().any(char::is_control) {
            return Err(StoreError::InvalidMediaType {
                digest: d.clone(),
                media_type: media_type.chars().take(160).collect(),
            });
        }
        let bytes = Bytes::copy_from_slice(bytes);
        // Stored already (verified when it was written): never written again. A rewrite could
        // only lose it (a full disk, a crash mid-write), never improve it.
        if let Some(stored) = self.index.get(d).map(|e| e.size)
            && stored == bytes.len() as u64
            && self.blobs.stat(d).await? == Some(stored)
        {
            let mut verifier = d.verifier();
            verifier.update(&bytes);
            let actual = verifier.finish();
            if actual != *d {
                return Err(StoreError::DigestMismatch {
                    expected: d.clone(),
                    actual,
                });
            }
            // The bytes given were hashed, not the file: not a verification of the file.
            self.admit_with(d, stored, Some(media_type), false);
            if let Some(m) = &self.manifests {
                m.insert(d.clone(), bytes);
            }
            return Ok(());
        }
        // Verified by the write: a mismatch is refused there and stores nothing.
        let size = match self.blobs.write_bytes(d, bytes.clone()).await {
            Ok(size) => size,
            Err(e) => {
                self.no_space.failed(&e, "manifest");
                return Err(e);
            }
        };
        self.no_space.succeeded();
        self.admit_with(d, size, Some(media_type), true);
        if let Some(m) = &self.manifests {
            m.insert(d.clone(), bytes);
        }
        Ok(())
    }

    /// Indexes verified content that was just published at its place under `blobs/` (a fill
    /// calls this when it completes). Evicts what no longer fits in the budget, which may be
    /// this content itself if it is larger than the whole budget.
    pub fn admit(&self, d: &Digest, size: u64) {
        let fill = self
            .fills
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(d)
            .map(Arc::downgrade);
        if let Some(fill) = fill {
            let mut pins = self.pins.lock().unwrap_or_else(PoisonError::into_inner);
            pins.retain(|_, w| w.strong_count() > 0);
            pins.insert(d.clone(), fill);
        }
        self.admit_with(d, size, None, true);
    }

    /// Indexes content; `verified`: its file was just hashed as it was written.
    fn admit_with(&self, d: &Digest, size: u64, media_type: Option<&str>, verified: bool) {
        let fresh = self.index.admit(d, size, media_type);
        if fresh || media_type.is_some() {
            self.meta.send(Op::Put {
                digest: d.clone(),
                media_type: media_type.map(Arc::from),
                // A fresh entry holds the admission time as its verification time.
                verified_ms: verified.then(now_ms),
            });
        }
    }

    /// Drops the content for `d` (blob or manifest): the file goes, readers that have it open
    /// finish. Returns its size if it was stored.
    pub fn remove(&self, d: &Digest) -> Option<u64> {
        let size = self.index.remove(d);
        self.index.settle();
        size
    }

    /// Moves the file for `d` to `quarantine/` and forgets it.
    async fn quarantine(&self, d: &Digest, why: &str) {
        self.blobs.quarantine(d, why).await;
        self.index.remove(d);
    }

    /// The record of the tag `key` names, if there is one.
    pub fn get_tag(&self, key: TagKey<'_>) -> Option<TagRecord> {
        self.tags.get(key)
    }

    /// Records (or replaces) what the tag `key` names points at. Persisted (with its
    /// validation time) by the metadata writer.
    pub fn put_tag(&self, key: TagKey<'_>, rec: TagRecord) {
        let row = rec.to_row();
        let key = self.tags.put(key, rec);
        self.meta.send(Op::PutTag(key, row));
    }

    /// Forgets the tag `key` names, returning the record it had.
    pub fn remove_tag(&self, key: TagKey<'_>) -> Option<TagRecord> {
        let removed = self.tags.remove(key)?;
        self.meta.send(Op::RemoveTag(key.to_owned_key()));
        Some(removed)
    }

    /// Whether the repository `key` names is known to hold its digest (`scopes.rs`): one
    /// lookup in memory, no I/O, no allocation.
    pub fn in_scope(&self, key: ScopeKey<'_>) -> bool {
        self.scopes.contains(key)
    }

    /// Records that the repository `key` names holds its digest; persisted by the metadata
    /// writer if it is new. Dropped with the content when it leaves the store.
    pub fn add_scope(&self, key: ScopeKey<'_>) {
        if self.scopes.insert(key) {
            self.meta.send(Op::PutScope(key.to_owned_key()));
        }
    }

    /// How many (upstream, repository, digest) pairs are known.
    pub fn scope_count(&self) -> u64 {
        self.scopes.len() as u64
    }

    /// Every tag record, sorted by upstream, repository and tag.
    pub fn tags(&self) -> Vec<TagEntry> {
        self.tags.list()
    }

    /// Whether the content for `d` is stored (without counting as an access).
    pub fn contains(&self, d: &Digest) -> bool {
        self.index.contains(d)
    }

    /// Size, budget, entries and hit counts.
    pub fn stats(&self) -> StoreStats {
        self.index.settle();
        let evicted = self.index.evicted();
        let fills_in_flight = self
            .fills
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len() as u64;
        StoreStats {
            evictions: evicted.entries,
            evicted_bytes: evicted.bytes,
            fills_in_flight,
            size_bytes: self.index.bytes(),
            max_size_bytes: self.index.max_bytes(),
            entries: self.index.entry_count(),
            manifests: self.index.manifest_count(),
            tags: self.tags.len() as u64,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            scrubbed_bytes: self.scrubbed.bytes.load(Ordering::Relaxed),
            scrub_faults: self.scrubbed.faults.load(Ordering::Relaxed),
            no_space_failures: self.no_space.failures(),
        }
    }

    /// Waits until every change so far (and the current access times) is committed to the
    /// metadata store. `wharf serve` calls it when it stops.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.meta.flush().await.map_err(|message| StoreError::Meta {
            op: "flushing",
            message,
        })
    }

    /// Whether the store can take new content: the metadata writer runs and a file can be
    /// created in the spool.
    pub async fn check_writable(&self) -> Result<(), StoreError> {
        if !self.meta.is_running() {
            return Err(StoreError::Meta {
                op: "writing",
                message: "the metadata writer has stopped".into(),
            });
        }
        self.blobs.check_writable().await
    }
}

impl Drop for Store {
    /// Commits what is pending and closes the metadata store, so the same root can be opened
    /// again right after.
    fn drop(&mut self) {
        self.meta.stop();
    }
}
