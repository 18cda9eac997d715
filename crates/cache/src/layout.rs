//! Where things live under the store root, and the filesystem moves every write is made of:
//! spool, fsync, rename, fsync the directory.

use std::io;
use std::path::{Path, PathBuf};

use tokio::fs;
use wharf_oci::Digest;

use crate::error::StoreError;

/// The paths of one store. Every file name below `blobs/` comes from a validated [`Digest`] (an
/// algorithm name and lowercase hex), so no request can name a path outside it.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    root: PathBuf,
    blobs: PathBuf,
    meta: PathBuf,
    spool: PathBuf,
    quarantine: PathBuf,
}

impl Layout {
    pub(crate) fn new(root: &Path) -> Self {
        Layout {
            root: root.to_path_buf(),
            blobs: root.join("blobs"),
            meta: root.join("meta"),
            spool: root.join("spool"),
            quarantine: root.join("quarantine"),
        }
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn spool_dir(&self) -> &Path {
        &self.spool
    }

    pub(crate) fn blobs_dir(&self) -> &Path {
        &self.blobs
    }

    /// `signatures/`: the signature lists of manifests (`signatures.rs`), created when the
    /// first is written.
    pub(crate) fn signatures_dir(&self) -> PathBuf {
        self.root.join("signatures")
    }

    /// `meta/index.redb`: the embedded metadata store.
    pub(crate) fn index_db(&self) -> PathBuf {
        self.meta.join("index.redb")
    }

    /// The directories `open` creates.
    pub(crate) fn dirs(&self) -> [&Path; 4] {
        [&self.blobs, &self.meta, &self.spool, &self.quarantine]
    }

    /// `blobs/<alg>/<2 hex>/<hex>`: content, blobs and manifests alike.
    pub(crate) fn blob(&self, d: &Digest) -> PathBuf {
        fanout(&self.blobs, d)
    }

    /// Where a file that is not what its name says goes: `quarantine/<alg>-<hex>.<unique>`.
    /// Never served, never removed by wharf: an operator may want to look at it.
    pub(crate) fn quarantine_file(&self, name: &str, seq: u64) -> PathBuf {
        let name: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .take(200)
            .collect();
        self.quarantine
            .join(format!("{name}.{}-{seq}", std::process::id()))
    }

    /// A spool file name no other write of this process (nor, by the pid, of another process
    /// sharing the root by mistake) uses.
    pub(crate) fn spool_file(&self, kind: &str, d: &Digest, seq: u64) -> PathBuf {
        self.spool.join(format!(
            "{}-{}-{}-{}.{kind}",
            d.algorithm().as_str(),
            d.hex(),
            std::process::id(),
            seq
        ))
    }
}

fn fanout(base: &Path, d: &Digest) -> PathBuf {
    let hex = d.hex();
    base.join(d.algorithm().as_str()).join(&hex[..2]).join(hex)
}

/// Renames the finished, fsynced `tmp` onto `dest` and fsyncs `dest`'s directory, so that once
/// this returns the file is there after a crash too.
pub(crate) async fn publish(tmp: &Path, dest: &Path) -> Result<(), StoreError> {
    let dir = parent(dest)?;
    ensure_dir(dir).await?;
    fs::rename(tmp, dest)
        .await
        .map_err(StoreError::io("renaming spool file into", dest))?;
    fsync_dir(dir).await
}

/// Removes a spool file whose write failed. Failing to is not worth an error of its own: the
/// file is never served, and the next start-up sweeps it.
pub(crate) async fn remove_if_there(path: &Path) {
    match fs::remove_file(path).await {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            tracing::warn!(path = %path.display(), error = %e, "could not remove spool file");
        }
        _ => {}
    }
}

/// Removes every entry of the spool directory: whatever is there was being written when the
/// process stopped, and was never verified.
pub(crate) async fn sweep(spool: &Path) -> Result<usize, StoreError> {
    let mut entries = fs::read_dir(spool)
        .await
        .map_err(StoreError::io("listing", spool))?;
    let mut swept = 0;
    while let Some(entry) = entries
        .next_entry()
        .await
        .map_err(StoreError::io("listing", spool))?
    {
        let path = entry.path();
        let is_dir = entry.file_type().await.is_ok_and(|t| t.is_dir());
        let removed = if is_dir {
            fs::remove_dir_all(&path).await
        } else {
            fs::remove_file(&path).await
        };
        removed.map_err(StoreError::io("sweeping", &path))?;
        swept += 1;
    }
    Ok(swept)
}

/// Creates `dir` if it is missing. A directory created here is itself an entry of its parent,
/// which is fsynced so the new directory (and what is renamed into it) survives a crash.
pub(crate) async fn ensure_dir(dir: &Path) -> Result<(), StoreError> {
    if fs::metadata(dir).await.is_ok_and(|m| m.is_dir()) {
        return Ok(());
    }
    fs::create_dir_all(dir)
        .await
        .map_err(StoreError::io("creating directory", dir))?;
    fsync_dir(parent(dir)?).await
}

async fn fsync_dir(dir: &Path) -> Result<(), StoreError> {
    let owned = dir.to_path_buf();
    tokio::task::spawn_blocking(move || std::fs::File::open(&owned)?.sync_all())
        .await
        .map_err(io::Error::other)
        .and_then(|r| r)
        .map_err(StoreError::io("fsyncing directory", dir))
}

fn parent(path: &Path) -> Result<&Path, StoreError> {
    path.parent().ok_or_else(|| StoreError::Io {
        op: "finding the directory of",
        path: path.to_path_buf(),
        source: io::Error::from(io::ErrorKind::InvalidInput),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_fans_out_by_algorithm_and_first_two_hex() {
        let layout = Layout::new(Path::new("/var/cache/wharf"));
        let d = Digest::sha256_of(b"");
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(
            layout.blob(&d),
            Path::new("/var/cache/wharf/blobs/sha256/e3").join(hex)
        );
        assert_eq!(
            layout.index_db(),
            Path::new("/var/cache/wharf/meta/index.redb")
        );
        let q = layout.quarantine_file("sha256-../../x", 3);
        assert_eq!(q.parent(), Some(Path::new("/var/cache/wharf/quarantine")));
        let spool = layout.spool_file("fill", &d, 7);
        assert_eq!(spool.parent(), Some(Path::new("/var/cache/wharf/spool")));
        assert_ne!(spool, layout.spool_file("fill", &d, 8));
    }
}
