//! The scrubber: stored content is read back in the background, the least recently verified
//! first, at a bounded rate, and what no longer hashes to its name is quarantined.
//!
//! Start-up trusts a file whose size, mtime and inode match what was verified (`recover.rs`),
//! and a blob is served with `sendfile`, never hashed on the way out. A media error flips bytes
//! without touching any of those, so without this it would be served forever. As ZFS and Ceph
//! scrub, so does the store:
//!
//! ```text
//! pass: every indexed digest, oldest verification first (a snapshot of the index)
//!   skip: no longer indexed, being filled, or verified again since the snapshot
//!   open the file; read it a chunk at a time, hashing, sleeping so that bytes <= rate x time
//!   match     -> verified now: the index entry, and the `verified` table via the writer
//!   mismatch  -> the same file still in place? quarantine/, out of the index, a fault counted
//!                (the next request is a miss and fetches it again)
//! next pass: when this one ends, and no sooner than MIN_PASS after it began
//! ```
//!
//! The task holds no reference to the [`Store`](crate::Store), only handles to its parts (the
//! index, the files, the writer's channel), so it never keeps a dropped store alive; the store
//! holds a [`ScrubGuard`] that ends the task when the store is dropped. No lock is held while
//! bytes are read: the fills map is looked at once per digest, as `Store::stats` does.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::Duration;

use tokio::task::AbortHandle;
use tokio::time::{Instant, sleep_until};
use wharf_oci::Digest;

use crate::blobs::FsBlobStore;
use crate::fill::{CHUNK, Fill};
use crate::index::{Entry, IndexHandle, Key, now_ms};
use crate::writer::Op;

/// The shortest time between the starts of two passes. A small store would otherwise be read
/// again and again at the full rate, finding nothing a read an hour later would not.
pub(crate) const MIN_PASS: Duration = Duration::from_secs(3600);

/// What the scrubber has done since the store opened, for [`StoreStats`](crate::StoreStats).
#[derive(Debug, Default)]
pub(crate) struct ScrubCounters {
    /// Bytes read back and hashed.
    pub(crate) bytes: AtomicU64,
    /// Content found not to match its digest (or unreadable), and quarantined.
    pub(crate) faults: AtomicU64,
}

/// Ends the scrubber's task when dropped (with the store that holds it).
#[derive(Debug)]
pub(crate) struct ScrubGuard(AbortHandle);

impl Drop for ScrubGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Fills in flight, by digest: the store's own map.
pub(crate) type Fills = Arc<Mutex<HashMap<Digest, Arc<Fill>>>>;

/// The parts of the store the scrubber works with.
pub(crate) struct Scrubber {
    pub(crate) index: IndexHandle,
    pub(crate) blobs: FsBlobStore,
    pub(crate) fills: Fills,
    pub(crate) meta: mpsc::Sender<Op>,
    pub(crate) counters: Arc<ScrubCounters>,
    /// Bytes per second; more than 0.
    pub(crate) rate: u64,
    /// True once the metadata writer has read the verification times into the index: the
    /// first pass is planned after that, or it would go by when content was written.
    pub(crate) verified_loaded: tokio::sync::watch::Receiver<bool>,
}

/// One digest of a pass, with the verification time it had when the pass was planned.
type Planned = (Key, Arc<Entry>, u64);

/// How one digest's scrub ended.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Verified,
    Fault,
    Skipped,
}

impl Scrubber {
    /// Starts the task on the current runtime; `None` when the rate is 0 (scrubbing off).
    pub(crate) fn start(self) -> Option<ScrubGuard> {
        if self.rate == 0 {
            return None;
        }
        let task = tokio::spawn(self.run());
        Some(ScrubGuard(task.abort_handle()))
    }

    async fn run(mut self) {
        // A closed channel (the writer gone) means the store is closing: nothing to wait for.
        let _ = self.verified_loaded.wait_for(|loaded| *loaded).await;
        loop {
            let began = Instant::now();
            let mut pacer = Pacer::new(self.rate, began);
            // Scanning and sorting a million entries takes a good part of a second: on the
            // blocking pool, not on a worker thread the requests queued behind it wait for.
            let index = self.index.clone();
            let plan = tokio::task::spawn_blocking(move || plan(&index))
                .await
                .unwrap_or_default();
            tracing::debug!(
                entries = plan.len(),
                ms = began.elapsed().as_millis() as u64,
                "store scrub pass planned"
            );
            let (mut verified, mut faults) = (0u64, 0u64);
            for item in &plan {
                match self.scrub(item, &mut pacer).await {
                    Outcome::Verified => verified += 1,
                    Outcome::Fault => faults += 1,
                    Outcome::Skipped => {}
                }
            }
            if !plan.is_empty() {
                tracing::info!(
                    entries = plan.len(),
                    verified,
                    faults,
                    bytes = pacer.bytes,
                    secs = began.elapsed().as_secs(),
                    "store scrub pass done"
                );
            }
            sleep_until(began + MIN_PASS).await;
        }
    }

    /// Reads back one digest's file and acts on what it finds.
    async fn scrub(&self, (key, entry, planned): &Planned, pacer: &mut Pacer) -> Outcome {
        let digest = key.digest();
        let d = &digest;
        if !self.index.contains(d)
            || entry.verified.load(Ordering::Relaxed) != *planned
            || self.filling(d)
        {
            return Outcome::Skipped;
        }
        let blob = match self.blobs.open_now(d) {
            Ok(Some(blob)) => blob,
            // Evicted (or removed) since the plan: nothing to check.
            Ok(None) => return Outcome::Skipped,
            Err(e) => {
                tracing::warn!(digest = %d, error = %e, "the scrubber cannot open stored content");
                return Outcome::Skipped;
            }
        };
        let ino = inode(&blob.file);
        let why = if blob.size != entry.size {
            Some("its size changed since it was verified".to_owned())
        } else {
            match self.hash(d, blob.file, blob.size, pacer).await {
                Ok(true) => None,
                Ok(false) => Some("the scrubber found it does not match its digest".to_owned()),
                Err(e) => Some(format!("the scrubber could not read it: {e}")),
            }
        };
        let Some(why) = why else {
            let at = now_ms();
            entry.verified.store(at, Ordering::Relaxed);
            let _ = self.meta.send(Op::Verified(d.clone(), at));
            return Outcome::Verified;
        };
        // Only the file that was read is condemned: one evicted and fetched again meanwhile
        // has another inode, and was verified as it was written.
        if !self.index.contains(d) || self.filling(d) || self.inode_at(d) != ino {
            return Outcome::Skipped;
        }
        self.blobs.quarantine(d, &why).await;
        self.index.remove(d);
        self.counters.faults.fetch_add(1, Ordering::Relaxed);
        Outcome::Fault
    }

    /// Whether `file` (of `size` bytes) hashes to `d`, read at most at the pacer's rate.
    async fn hash(&self, d: &Digest, file: File, size: u64, pacer: &mut Pacer) -> io::Result<bool> {
        let mut verifier = d.verifier();
        let mut file = Some(file);
        pacer.pay_file().await;
        let mut buf = vec![0u8; pacer.chunk()];
        let mut done = 0u64;
        while done < size {
            let (f, b, n) = read_chunk(file.take(), buf).await?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            verifier.update(&b[..n]);
            (file, buf) = (Some(f), b);
            done += n as u64;
            self.counters.bytes.fetch_add(n as u64, Ordering::Relaxed);
            pacer.pay(n as u64).await;
        }
        Ok(done == size && verifier.finish() == *d)
    }

    fn filling(&self, d: &Digest) -> bool {
        self.fills
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(d)
    }

    fn inode_at(&self, d: &Digest) -> Option<u64> {
        std::fs::metadata(self.blobs.layout().blob(d))
            .ok()
            .map(|m| ino_of(&m))
    }
}

/// Every indexed digest, the least recently verified first (ties by digest, so a pass is
/// reproducible).
pub(crate) fn plan(index: &IndexHandle) -> Vec<Planned> {
    let mut plan: Vec<Planned> = Vec::new();
    index.scan(|k, e| plan.push((k.clone(), e.clone(), e.verified.load(Ordering::Relaxed))));
    plan.sort_by(|a, b| (a.2, &a.0).cmp(&(b.2, &b.0)));
    plan
}

/// Reads the next chunk of `file` into `buf` on the blocking pool: the scrubber reads what is
/// not in memory, and a worker thread must not wait on the disk.
async fn read_chunk(file: Option<File>, mut buf: Vec<u8>) -> io::Result<(File, Vec<u8>, usize)> {
    let mut file = file.ok_or_else(|| io::Error::other("no file to read"))?;
    tokio::task::spawn_blocking(move || {
        let n = loop {
            match file.read(&mut buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => break other?,
            }
        };
        Ok((file, buf, n))
    })
    .await
    .unwrap_or_else(|e| Err(io::Error::other(e)))
}

fn inode(file: &File) -> Option<u64> {
    file.metadata().ok().map(|m| ino_of(&m))
}

#[cfg(unix)]
fn ino_of(m: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(m)
}

/// Without inodes, the length is what can tell two files apart.
#[cfg(not(unix))]
fn ino_of(m: &std::fs::Metadata) -> u64 {
    m.len()
}

/// The rate bound: after `bytes` have been read since `start`, the next read waits until
/// `start + bytes / rate`. So by any time `t`, at most `rate x (t - start)` plus one chunk has
/// been read, whatever the reads themselves cost, and time spent reading is not slept again.
struct Pacer {
    rate: u64,
    start: Instant,
    /// Bytes read.
    bytes: u64,
    /// What the files opened cost besides their bytes (`PER_FILE` each).
    files: u64,
}

/// What opening a file costs the pacer, in bytes: a million files of 1 KiB at 8 MiB/s were
/// 8000 opens, reads and metadata writes a second, which doubled the p99 of requests on two
/// cores (issue 18); at this charge a small file costs what 64 KiB of a large one does.
const PER_FILE: u64 = 64 * 1024;

impl Pacer {
    fn new(rate: u64, start: Instant) -> Pacer {
        Pacer {
            rate: rate.max(1),
            start,
            bytes: 0,
            files: 0,
        }
    }

    /// Pays for opening a file.
    async fn pay_file(&mut self) {
        self.files += PER_FILE;
        self.pay(0).await;
    }

    /// Bytes read at once: a second's worth at most, so a low rate reads in small steps
    /// rather than bursts.
    fn chunk(&self) -> usize {
        // CHUNK is 256 KiB: the cast cannot truncate.
        self.rate.clamp(1, CHUNK) as usize
    }

    async fn pay(&mut self, n: u64) {
        self.bytes += n;
        let owed = u128::from(self.bytes) + u128::from(self.files);
        let nanos = owed * 1_000_000_000 / u128::from(self.rate);
        let due = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
        sleep_until(self.start + due).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{Index, Times};

    fn d(n: u32) -> Digest {
        Digest::sha256_of(&n.to_be_bytes())
    }

    #[test]
    fn the_least_recently_verified_come_first() {
        let index = Index::new(1 << 30, Arc::new(|_, _| {}));
        // Access order, digest order and verification order all differ.
        let verified = [(1, 500), (2, 100), (3, 900), (4, 300), (5, 100)];
        for (n, at) in verified {
            let times = Times {
                access_ms: 1000 - u64::from(n),
                verified_ms: at,
            };
            index.load(&d(n), 10, None, times);
        }
        index.settle();
        let got: Vec<(Digest, u64)> = plan(&index.handle())
            .into_iter()
            .map(|(k, _, at)| (k.digest(), at))
            .collect();
        let mut want: Vec<(Digest, u64)> = verified.iter().map(|&(n, at)| (d(n), at)).collect();
        want.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
        assert_eq!(got, want);
        assert_eq!(got[0].1, 100);
        assert_eq!(got[4], (d(3), 900));
    }

    #[tokio::test]
    async fn dropping_the_store_ends_the_scrubber() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::Store::open(dir.path()).await.expect("open");
        let counters = store.scrubbed.clone();
        // The store and the task hold the counters.
        assert_eq!(Arc::strong_count(&counters), 3);
        drop(store);
        // The guard aborted the task; it is dropped when the runtime next runs it.
        for _ in 0..100 {
            if Arc::strong_count(&counters) == 1 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(
            Arc::strong_count(&counters),
            1,
            "the task let go of its parts"
        );
        // And the same root opens again at once.
        drop(crate::Store::open(dir.path()).await.expect("reopen"));
    }

    #[tokio::test(start_paused = true)]
    async fn the_pacer_holds_the_rate() {
        let start = Instant::now();
        let mut pacer = Pacer::new(1 << 20, start);
        assert_eq!(pacer.chunk(), CHUNK as usize);
        for _ in 0..8 {
            pacer.pay(CHUNK).await;
        }
        // 2 MiB at 1 MiB/s: two seconds, to the nanosecond.
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        assert_eq!(Pacer::new(1000, start).chunk(), 1000);
    }
}
