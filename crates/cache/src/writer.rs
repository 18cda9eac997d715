//! The metadata writer: one thread owns the database after start-up and writes in batches.
//! Requests only send it a message ([`Op`]), so no request waits on a commit (redb serialises
//! write transactions). It also unlinks the files of evicted content (later, if a fill's
//! readers still need the file), and every `flush_every` persists the access times the index
//! recorded since the last time. A crash loses at most the last batch: content without a row is
//! verified at the next start-up, a row without content is dropped then.

// redb's error is large; it is built only when the disk fails, never on a request's path.
#![allow(clippy::result_large_err)]

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use redb::{Database, Durability, ReadableTable};
use tokio::sync::oneshot;
use wharf_oci::Digest;

use crate::blobs::FsBlobStore;
use crate::error::StoreError;
use crate::index::{IndexHandle, now_ms};
use crate::meta::{
    self, ACCESS, BLOBS, BlobRow, Fingerprint, SCOPES, TAGS, TagRow, VERIFIED, blob_row,
    blob_value, into_redb, scope_key_value, tag_key_value,
};
use crate::scopes::{OwnedScopeKey, ScopeKey, Scopes};
use crate::tags::OwnedTagKey;

/// Whether a digest's file must stay on disk although it left the index: a fill that just
/// stored it still has readers that may not have opened it yet.
pub(crate) type Pinned = Arc<dyn Fn(&Digest) -> bool + Send + Sync>;

/// How often pinned files of evicted content are looked at again.
const PIN_RETRY: Duration = Duration::from_millis(200);

/// A message to the writer thread.
pub(crate) enum Op {
    /// Content was admitted: record it (the thread stats the file for its fingerprint), and
    /// when it was verified if it was just now (a fill or a write hashed it).
    Put {
        digest: Digest,
        media_type: Option<Arc<str>>,
        verified_ms: Option<u64>,
    },
    /// The scrubber read the content back and it matched, at this time.
    Verified(Digest, u64),
    /// Content left the index: unlink the file (unless it was admitted again meanwhile) and
    /// drop its rows and its scopes (in memory too).
    Dropped(Digest),
    /// An (upstream, repository) is known to hold a digest (already in the in-memory set).
    PutScope(OwnedScopeKey),
    /// An (upstream, repository) no longer holds a digest (already out of the in-memory set):
    /// a hosted repository's content deleted.
    RemoveScope(OwnedScopeKey),
    /// Answer every pair of this upstream, once everything sent before is committed.
    ListScopes(String, oneshot::Sender<Result<Vec<OwnedScopeKey>, String>>),
    PutTag(OwnedTagKey, TagRow),
    RemoveTag(OwnedTagKey),
    /// Persist access times and everything sent before, then answer.
    Flush(oneshot::Sender<Result<(), String>>),
    Stop,
}

/// The writer thread and the way to reach it.
pub(crate) struct Writer {
    tx: mpsc::Sender<Op>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Writer")
    }
}

/// Most operations written in one transaction.
const BATCH: usize = 4096;

impl Writer {
    pub(crate) fn start(
        db: Database,
        rx: mpsc::Receiver<Op>,
        tx: mpsc::Sender<Op>,
        ctx: Context,
        flush_every: Duration,
    ) -> Result<Writer, StoreError> {
        let thread = std::thread::Builder::new()
            .name("wharf-store-meta".into())
            .spawn(move || run(&db, &rx, &ctx, flush_every))
            .map_err(StoreError::io(
                "starting the metadata writer for",
                Path::new("meta"),
            ))?;
        Ok(Writer {
            tx,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// A sender of its own, for the scrubber's task (which holds no reference to the store).
    pub(crate) fn sender(&self) -> mpsc::Sender<Op> {
        self.tx.clone()
    }

    pub(crate) fn send(&self, op: Op) {
        // Fails only once the thread is gone (the store is closing): nothing left to record.
        let _ = self.tx.send(op);
    }

    /// Waits until everything sent so far, and the current access times, are committed.
    pub(crate) async fn flush(&self) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.send(Op::Flush(tx));
        rx.await
            .unwrap_or_else(|_| Err("the metadata writer has stopped".into()))
    }

    pub(crate) fn is_running(&self) -> bool {
        self.thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|t| !t.is_finished())
    }

    /// Writes what is pending, stops the thread and waits for it (which closes the database).
    pub(crate) fn stop(&self) {
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(t) = thread {
            self.send(Op::Stop);
            let _ = t.join();
        }
    }
}

/// What the writer thread works with besides the database.
pub(crate) struct Context {
    pub(crate) index: IndexHandle,
    /// Where evicted content is unlinked and admitted content is fingerprinted.
    pub(crate) blobs: FsBlobStore,
    pub(crate) pinned: Pinned,
    /// The in-memory pairs, which drop what `Dropped` drops from the table.
    pub(crate) scopes: Arc<Scopes>,
    /// Set once the verification times are read into the index (the scrubber waits for it).
    pub(crate) verified_loaded: tokio::sync::watch::Sender<bool>,
}

fn run(db: &Database, rx: &mpsc::Receiver<Op>, ctx: &Context, every: Duration) {
    // First, what start-up left out: when each piece of content was last verified.
    if let Err(e) = meta::load_verified(db, 4096, |rows| ctx.index.mark_verified(rows)) {
        tracing::warn!(error = %e, "could not read the verification times; the scrubber goes by when content was written");
    }
    ctx.verified_loaded.send_replace(true);
    let every_ms = u64::try_from(every.as_millis()).unwrap_or(u64::MAX);
    let mut last_scan = now_ms();
    // Evicted content whose file is pinned by readers: unlinked once they are gone.
    let mut deferred: Vec<(Digest, Option<u64>)> = Vec::new();
    loop {
        let mut ops = Vec::new();
        let wait = if deferred.is_empty() {
            every
        } else {
            PIN_RETRY.min(every)
        };
        match rx.recv_timeout(wait) {
            Ok(op) => ops.push(op),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        while ops.len() < BATCH {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        let mut acks = Vec::new();
        let mut lists = Vec::new();
        let mut stop = false;
        let mut work = Vec::with_capacity(ops.len());
        for op in ops {
            match op {
                Op::Flush(ack) => acks.push(ack),
                Op::ListScopes(upstream, reply) => lists.push((upstream, reply)),
                Op::Stop => stop = true,
                other => work.push(other),
            }
        }
        let now = now_ms();
        let scan = stop || !acks.is_empty() || now.saturating_sub(last_scan) >= every_ms;
        if scan {
            last_scan = now;
        }
        let result = if work.is_empty() && !scan {
            Ok(())
        } else {
            write(db, work, scan, ctx, &mut deferred).map_err(|e| e.to_string())
        };
        if let Err(e) = &result {
            tracing::error!(error = %e, "writing the store's metadata failed");
        }
        deferred.retain(|(d, ino)| {
            if ctx.index.contains(d) {
                return false; // wanted again
            }
            if (ctx.pinned)(d) && !stop {
                return true;
            }
            ctx.blobs.remove_now_if(d, *ino);
            false
        });
        for ack in acks {
            let _ = ack.send(result.clone());
        }
        for (upstream, reply) in lists {
            let _ = reply.send(list_scopes(db, &upstream).map_err(|e| e.to_string()));
        }
        if stop {
            return;
        }
    }
}

fn write(
    db: &Database,
    ops: Vec<Op>,
    scan: bool,
    ctx: &Context,
    deferred: &mut Vec<(Digest, Option<u64>)>,
) -> Result<(), redb::Error> {
    let (index, layout) = (&ctx.index, ctx.blobs.layout());
    let mut saved = Vec::new();
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate);
    {
        let mut blobs = txn.open_table(BLOBS)?;
        let mut access = txn.open_table(ACCESS)?;
        let mut verified = txn.open_table(VERIFIED)?;
        let mut tags = txn.open_table(TAGS)?;
        let mut scopes = txn.open_table(SCOPES)?;
        for op in ops {
            match op {
                Op::Put {
                    digest,
                    media_type,
                    verified_ms,
                } => {
                    let Ok(m) = std::fs::metadata(layout.blob(&digest)) else {
                        continue; // evicted (or quarantined) before this ran
                    };
                    let key = digest.to_string();
                    let media_type = match media_type {
                        Some(mt) => Some(mt.to_string()),
                        None => blobs
                            .get(key.as_str())?
                            .and_then(|v| blob_row(v.value()).media_type),
                    };
                    let row = BlobRow {
                        fingerprint: Fingerprint::of(&m),
                        media_type,
                    };
                    blobs.insert(key.as_str(), blob_value(&row))?;
                    access.insert(key.as_str(), now_ms())?;
                    if let Some(at) = verified_ms {
                        verified.insert(key.as_str(), at)?;
                    }
                }
                Op::Verified(digest, at) => {
                    let key = digest.to_string();
                    // Only for content still recorded: a row of its own would outlive it.
                    if blobs.get(key.as_str())?.is_some() {
                        verified.insert(key.as_str(), at)?;
                    }
                }
                Op::Dropped(digest) => {
                    if index.contains(&digest) {
                        continue; // admitted again since: the file is wanted
                    }
                    let key = digest.to_string();
                    // The file the row describes: after a quarantine (which moved the file) the
                    // same digest may already be stored again under a new inode, published
                    // but not indexed yet; that file is not this removal's to unlink.
                    let ino = blobs
                        .get(key.as_str())?
                        .map(|v| blob_row(v.value()).fingerprint.ino);
                    blobs.remove(key.as_str())?;
                    access.remove(key.as_str())?;
                    verified.remove(key.as_str())?;
                    drop_scopes(&mut scopes, &ctx.scopes, &digest, &key)?;
                    if (ctx.pinned)(&digest) {
                        deferred.push((digest, ino));
                    } else {
                        ctx.blobs.remove_now_if(&digest, ino);
                    }
                }
                Op::PutTag(key, row) => {
                    tags.insert(
                        tag_key_value(&key),
                        (
                            row.digest.as_str(),
                            row.media_type.as_str(),
                            row.size,
                            row.validated_ms,
                        ),
                    )?;
                }
                Op::RemoveTag(key) => {
                    tags.remove(tag_key_value(&key))?;
                }
                Op::PutScope(key) => {
                    scopes.insert(scope_key_value(&key), now_ms())?;
                    // A `Dropped` of the same digest just before may have taken it from the
                    // set: the pair is true again now.
                    if let Ok(digest) = Digest::parse(&key.digest) {
                        ctx.scopes.insert(ScopeKey {
                            upstream: &key.upstream,
                            repository: &key.repository,
                            digest: &digest,
                        });
                    }
                }
                Op::RemoveScope(key) => {
                    scopes.remove(scope_key_value(&key))?;
                    // As PutScope re-adds: the last word on a pair is the one sent last.
                    if let Ok(digest) = Digest::parse(&key.digest) {
                        ctx.scopes.remove(ScopeKey {
                            upstream: &key.upstream,
                            repository: &key.repository,
                            digest: &digest,
                        });
                    }
                }
                Op::Flush(_) | Op::Stop | Op::ListScopes(..) => {}
            }
        }
        if scan {
            // Only what was used since the last flush: a digest is made for those alone.
            let mut used = Vec::new();
            index.scan(|k, e| {
                let at = e.last_access.load(Ordering::Relaxed);
                if at != e.saved_access.load(Ordering::Relaxed) {
                    used.push((k.digest(), e.clone(), at));
                }
            });
            for (d, e, at) in used {
                let key = d.to_string();
                if blobs.get(key.as_str())?.is_some() {
                    access.insert(key.as_str(), at)?;
                }
                saved.push((e, at));
            }
        }
    }
    txn.commit().map_err(into_redb)?;
    for (e, at) in saved {
        e.saved_access.store(at, Ordering::Relaxed);
    }
    Ok(())
}

/// Every pair of `upstream` in the table (a scan: the table is keyed by digest first; run for
/// the hosted store's garbage collection and start-up, not on a request's path).
fn list_scopes(db: &Database, upstream: &str) -> Result<Vec<OwnedScopeKey>, redb::Error> {
    let txn = db.begin_read()?;
    let mut out = Vec::new();
    for row in txn.open_table(SCOPES)?.iter()? {
        let (k, _) = row?;
        let (digest, up, repository) = k.value();
        if up == upstream {
            out.push(OwnedScopeKey {
                digest: digest.to_owned(),
                upstream: up.to_owned(),
                repository: repository.to_owned(),
            });
        }
    }
    Ok(out)
}

/// Removes every pair of `digest` (whose string is `key`) from the table and from the set.
fn drop_scopes(
    table: &mut redb::Table<'_, (&'static str, &'static str, &'static str), u64>,
    set: &Scopes,
    digest: &Digest,
    key: &str,
) -> Result<(), redb::Error> {
    let mut gone = Vec::new();
    for row in table.range((key, "", "")..)? {
        let (k, _) = row?;
        let (d, upstream, repository) = k.value();
        if d != key {
            break;
        }
        gone.push((upstream.to_owned(), repository.to_owned()));
    }
    for (upstream, repository) in gone {
        table.remove((key, upstream.as_str(), repository.as_str()))?;
        set.remove(ScopeKey {
            upstream: &upstream,
            repository: &repository,
            digest,
        });
    }
    Ok(())
}
