//! [`FsBlobStore`]: content as files under `blobs/`, written through `spool/`, the store's own
//! tier. Besides the [`BlobStore`] operations it owns what only a local disk does: spool file
//! names for fills, quarantine, the writability probe, and unlinking from the metadata writer's
//! thread.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures_util::stream::{BoxStream, Stream};
use tokio::fs;
use tokio::io::AsyncWriteExt;
use wharf_oci::Digest;

use super::{AsyncSink, Blob, BlobStore, StoredBlob, take_verified};
use crate::error::StoreError;
use crate::fill::{CHUNK, file_chunks};
use crate::layout::{self, Layout};
use crate::recover;

/// Content on local disk under one root: `blobs/<alg>/<2 hex>/<hex>`, written in `spool/`.
/// Cloning is cheap enough for a thread to keep its own (a few paths and a counter).
#[derive(Clone, Debug)]
pub struct FsBlobStore {
    layout: Layout,
    /// Numbers spool and quarantine files, so that concurrent writes never share one.
    seq: Arc<AtomicU64>,
}

/// A stored file, open, with the size it had when opened. The file stays readable if the
/// content is deleted meanwhile.
#[derive(Debug)]
pub struct FsBlob {
    /// Hand it to `sendfile`, or read it with [`file_chunks`].
    pub file: File,
    pub size: u64,
}

impl Blob for FsBlob {
    fn size(&self) -> u64 {
        self.size
    }

    fn range(self, start: u64, end: u64) -> BoxStream<'static, io::Result<Bytes>> {
        // CHUNK is 256 KiB: the cast cannot truncate.
        file_chunks(self.file, start, end, CHUNK as usize)
    }
}

impl FsBlobStore {
    /// Opens (creating its directories if needed) the content under `root`, and sweeps the
    /// spool: files left there by a crash mid-write were never verified.
    pub async fn open(root: &Path) -> Result<FsBlobStore, StoreError> {
        let layout = Layout::new(root);
        for dir in layout.dirs() {
            fs::create_dir_all(dir)
                .await
                .map_err(StoreError::io("creating directory", dir))?;
        }
        let swept = layout::sweep(layout.spool_dir()).await?;
        if swept > 0 {
            tracing::info!(root = %root.display(), swept, "swept unfinished spool files");
        }
        Ok(FsBlobStore {
            layout,
            seq: Arc::default(),
        })
    }

    pub(crate) fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The counter behind [`FsBlobStore::next_seq`], for start-up's quarantine names.
    pub(crate) fn seq(&self) -> &AtomicU64 {
        &self.seq
    }

    pub(crate) fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Opens the stored file for `d` and reads its size, on the calling thread: both touch only
    /// the inode and directory caches for a file in use, and a hop to the blocking pool costs
    /// more than they do (it was a third of a 1 MiB blob request's time). nginx does the same.
    pub(crate) fn open_now(&self, d: &Digest) -> Result<Option<FsBlob>, StoreError> {
        let path = self.layout.blob(d);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io("opening blob", &path)(e)),
        };
        let meta = file
            .metadata()
            .map_err(StoreError::io("reading metadata of", &path))?;
        Ok(Some(FsBlob {
            file,
            size: meta.len(),
        }))
    }

    /// Unlinks the file for `d`, on the calling thread (the metadata writer's, for evictions);
    /// whether it was there. A failure is logged: the file is no longer indexed, so it is
    /// never served, and the next start-up finds it.
    pub(crate) fn remove_now(&self, d: &Digest) -> bool {
        let path = self.layout.blob(d);
        match std::fs::remove_file(&path) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "could not remove evicted content");
                false
            }
        }
    }

    /// [`FsBlobStore::remove_now`], unless the file there is no longer inode `ino` (the one that
    /// was removed from the index): another copy took its place since.
    pub(crate) fn remove_now_if(&self, d: &Digest, ino: Option<u64>) -> bool {
        #[cfg(unix)]
        if let Some(ino) = ino {
            use std::os::unix::fs::MetadataExt as _;
            match std::fs::metadata(self.layout.blob(d)) {
                Ok(m) if m.ino() != ino => return false,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return false,
                _ => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ino;
        self.remove_now(d)
    }

    /// Moves the file for `d` to `quarantine/`: it is not what its name says, and an operator
    /// may want to look at it.
    pub(crate) async fn quarantine(&self, d: &Digest, why: &str) {
        let from = self.layout.blob(d);
        let name = format!("{}-{}", d.algorithm().as_str(), d.hex());
        let to = self.layout.quarantine_file(&name, self.next_seq());
        match fs::rename(&from, &to).await {
            Ok(()) => {
                tracing::error!(digest = %d, moved_to = %to.display(), "stored content quarantined: {why}")
            }
            Err(e) => {
                tracing::error!(digest = %d, error = %e, "stored content could not be quarantined ({why}); dropping it")
            }
        }
    }

    /// Whether a block of content can be written to the spool. An empty file is not enough
    /// of a test: creating one succeeds on a full disk.
    pub(crate) async fn check_writable(&self) -> Result<(), StoreError> {
        let probe = self.layout.spool_dir().join(format!(
            "probe-{}-{}",
            std::process::id(),
            self.next_seq()
        ));
        let written = fs::write(&probe, [0u8; PROBE_BYTES]).await;
        layout::remove_if_there(&probe).await;
        written.map_err(StoreError::io(
            "writing a probe file in",
            self.layout.spool_dir(),
        ))
    }

    /// Spool, hash, verify, fsync, rename, fsync the directory.
    async fn write_spooled<S>(&self, d: &Digest, tmp: &Path, body: S) -> Result<u64, StoreError>
    where
        S: Stream<Item = io::Result<Bytes>> + Send + Unpin,
    {
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(tmp)
            .await
            .map_err(StoreError::io("creating spool file", tmp))?;
        let mut spool = Spool { file, path: tmp };
        let size = take_verified(d, body, &mut spool).await?;
        // tokio's File queues each write and reports its failure only on a later write or on
        // flush; sync_all does not. Without this flush a full disk renamed an empty file over
        // stored content.
        spool
            .file
            .flush()
            .await
            .map_err(StoreError::io("writing spool file", tmp))?;
        spool
            .file
            .sync_all()
            .await
            .map_err(StoreError::io("fsyncing spool file", tmp))?;
        layout::publish(tmp, &self.layout.blob(d)).await?;
        Ok(size)
    }
}

/// The spool file of one write.
struct Spool<'a> {
    file: fs::File,
    path: &'a Path,
}

impl AsyncSink for Spool<'_> {
    async fn take(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        self.file
            .write_all(&chunk)
            .await
            .map_err(StoreError::io("writing spool file", self.path))
    }
}

/// What the writability probe writes: one page, what the smallest blob needs on any file system.
const PROBE_BYTES: usize = 4096;

impl BlobStore for FsBlobStore {
    type Blob = FsBlob;

    /// Unlinking leaves the inode to those who hold it open.
    const READS_SURVIVE_DELETE: bool = true;

    async fn open(&self, d: &Digest) -> Result<Option<FsBlob>, StoreError> {
        self.open_now(d)
    }

    async fn write<S>(&self, d: &Digest, body: S) -> Result<u64, StoreError>
    where
        S: Stream<Item = io::Result<Bytes>> + Send + Unpin,
    {
        let tmp = self.layout.spool_file("write", d, self.next_seq());
        let written = self.write_spooled(d, &tmp, body).await;
        if written.is_err() {
            layout::remove_if_there(&tmp).await;
        }
        written
    }

    async fn stat(&self, d: &Digest) -> Result<Option<u64>, StoreError> {
        let path = self.layout.blob(d);
        match fs::metadata(&path).await {
            Ok(m) if m.is_file() => Ok(Some(m.len())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io("reading metadata of", &path)(e)),
        }
    }

    async fn delete(&self, d: &Digest) -> Result<bool, StoreError> {
        let path = self.layout.blob(d);
        match fs::remove_file(&path).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StoreError::io("removing", &path)(e)),
        }
    }

    async fn list(&self) -> Result<Vec<StoredBlob>, StoreError> {
        let blobs: PathBuf = self.layout.blobs_dir().to_path_buf();
        let (found, _strays) = tokio::task::spawn_blocking(move || recover::walk(&blobs))
            .await
            .map_err(|e| {
                StoreError::io("listing", self.layout.blobs_dir())(io::Error::other(e))
            })??;
        // Strays (names that are not digests in their place) are not content; start-up
        // quarantines them.
        Ok(found
            .into_iter()
            .map(|f| StoredBlob {
                digest: f.key.digest(),
                size: f.fingerprint.len,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn failed_atomic_write_leaves_no_spool_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blobs = FsBlobStore::open(dir.path()).await.expect("open");
        // The destination's directory cannot be created: a file is in the way.
        std::fs::write(dir.path().join("blobs/sha256"), b"").expect("write");
        let d = Digest::sha256_of(b"bytes");
        let written = blobs.write_bytes(&d, Bytes::from_static(b"bytes")).await;
        assert!(written.is_err());
        let spool = std::fs::read_dir(dir.path().join("spool")).expect("spool");
        assert!(spool.count() == 0);
    }
}
