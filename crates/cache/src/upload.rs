//! Uploads: content a client pushes, in one request or in several, that the store hashes as it
//! writes it and publishes only under the digest it hashed to.
//!
//! ```text
//! Store::begin_upload   -> spool/upload-<pid>-<seq>, a sha256 state
//! Upload::append        -> bytes written to the spool and hashed, in order, as they arrive
//!                          (called once per PATCH; the state lives between requests)
//! Store::finish_upload  -> the digest computed while writing == the one the client names?
//!                          fsync -> rename into blobs/ -> fsync the directory -> indexed
//!                          else the spool is removed and nothing is stored
//! ```
//!
//! Nothing is read back to be verified (the bytes were hashed by this module as they were
//! written), and memory does not grow with the blob: one chunk at a time. The spool lives in the
//! store's `spool/`, so a restart sweeps unfinished uploads; the caller drops abandoned ones
//! with [`Upload::discard`].

use std::io;
use std::path::PathBuf;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;
use wharf_oci::{Algorithm, Digest, Verifier};

use crate::blobs::BlobStore as _;
use crate::error::StoreError;
use crate::layout;
use crate::store::Store;

/// Content being pushed: its spool file and the hash of what is in it.
pub struct Upload {
    file: tokio::fs::File,
    path: PathBuf,
    verifier: Verifier,
    /// A write failed: what is in the file is no longer known to match the hash.
    broken: bool,
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload")
            .field("path", &self.path)
            .field("len", &self.len())
            .field("broken", &self.broken)
            .finish()
    }
}

/// Why an [`Upload::append`] stopped before the body's end.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The client's body broke off; the upload keeps what arrived before it (its length says
    /// how much), so the client may go on from there.
    #[error("the request body broke off after {kept} bytes of the upload: {source}")]
    Body {
        kept: u64,
        #[source]
        source: io::Error,
    },
    /// More than the caller allowed arrived; the upload is broken.
    #[error("the upload is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    /// The disk refused; the upload is broken.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Upload {
    /// Bytes written and hashed so far.
    pub fn len(&self) -> u64 {
        self.verifier.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether an earlier write failed, so the upload cannot be finished.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Writes what `body` yields to the end of the upload, hashing each chunk once it is
    /// written. At most `limit` bytes in all (the upload's whole length), if given. Returns the
    /// bytes appended. A failed write or a body past `limit` breaks the upload.
    pub async fn append<S>(&mut self, mut body: S, limit: Option<u64>) -> Result<u64, AppendError>
    where
        S: Stream<Item = io::Result<Bytes>> + Send + Unpin,
    {
        if self.broken {
            return Err(broken(&self.path).into());
        }
        let start = self.len();
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(source) => {
                    // What was written is hashed and counted: flush it, so the length holds.
                    self.flush().await?;
                    return Err(AppendError::Body {
                        kept: self.len(),
                        source,
                    });
                }
            };
            if let Some(limit) = limit
                && self.len() + chunk.len() as u64 > limit
            {
                self.broken = true;
                return Err(AppendError::TooLarge { limit });
            }
            if let Err(e) = self.file.write_all(&chunk).await {
                self.broken = true;
                return Err(StoreError::io("writing upload spool", &self.path)(e).into());
            }
            self.verifier.update(&chunk);
        }
        // tokio's File reports a failed write only on a later write or a flush: a full disk
        // must fail this request, not the one that completes the upload.
        self.flush().await?;
        Ok(self.len() - start)
    }

    async fn flush(&mut self) -> Result<(), StoreError> {
        if let Err(e) = self.file.flush().await {
            self.broken = true;
            return Err(StoreError::io("writing upload spool", &self.path)(e));
        }
        Ok(())
    }

    /// Drops the upload and its spool file.
    pub async fn discard(self) {
        drop(self.file);
        layout::remove_if_there(&self.path).await;
    }
}

fn broken(path: &std::path::Path) -> StoreError {
    StoreError::io("writing upload spool", path)(io::Error::other(
        "an earlier write to this upload failed",
    ))
}

impl Store {
    /// Starts an upload: an empty spool file, hashed with sha256 as it is written.
    pub async fn begin_upload(&self) -> Result<Upload, StoreError> {
        let path = self.layout().spool_dir().join(format!(
            "upload-{}-{}",
            std::process::id(),
            self.next_seq()
        ));
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(StoreError::io("creating upload spool", &path))?;
        Ok(Upload {
            file,
            path,
            verifier: Verifier::new(Algorithm::Sha256),
            broken: false,
        })
    }

    /// Completes an upload as the content for `d`: stored only if what was written hashed to
    /// `d` ([`StoreError::DigestMismatch`] otherwise, and nothing is stored). Returns its size.
    /// Content stored already stays as it is; the spool is dropped either way.
    pub async fn finish_upload(&self, mut upload: Upload, d: &Digest) -> Result<u64, StoreError> {
        if upload.broken {
            let e = broken(&upload.path);
            upload.discard().await;
            return Err(e);
        }
        let finished = self.publish_upload(&mut upload, d).await;
        match &finished {
            Err(e) => {
                self.no_space.failed(e, "upload");
            }
            Ok(_) => self.no_space.succeeded(),
        }
        layout::remove_if_there(&upload.path).await;
        finished
    }

    async fn publish_upload(&self, upload: &mut Upload, d: &Digest) -> Result<u64, StoreError> {
        upload.flush().await?;
        let size = upload.len();
        let actual =
            std::mem::replace(&mut upload.verifier, Verifier::new(Algorithm::Sha256)).finish();
        if actual != *d {
            return Err(StoreError::DigestMismatch {
                expected: d.clone(),
                actual,
            });
        }
        // Stored already (verified when it was written): never written again.
        if self.contains(d) && self.blobs.stat(d).await? == Some(size) {
            self.admit(d, size);
            return Ok(size);
        }
        upload
            .file
            .sync_all()
            .await
            .map_err(StoreError::io("fsyncing upload spool", &upload.path))?;
        layout::publish(&upload.path, &self.layout().blob(d)).await?;
        self.admit(d, size);
        Ok(size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream;

    fn body(parts: &[&'static [u8]]) -> impl Stream<Item = io::Result<Bytes>> + Send + Unpin {
        stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        )
    }

    fn spool_files(root: &std::path::Path) -> usize {
        std::fs::read_dir(root.join("spool"))
            .expect("spool")
            .count()
    }

    #[tokio::test]
    async fn pieces_hash_as_one_and_publish_under_their_digest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).await.expect("open");
        let mut up = store.begin_upload().await.expect("begin");
        assert_eq!(up.append(body(&[b"hello "]), None).await.expect("1"), 6);
        assert_eq!(up.append(body(&[b"wor", b"ld"]), None).await.expect("2"), 5);
        assert_eq!(up.len(), 11);
        let d = Digest::sha256_of(b"hello world");
        assert_eq!(store.finish_upload(up, &d).await.expect("finish"), 11);
        assert!(store.contains(&d));
        let (_, size) = store.open_blob(&d).await.expect("open").expect("stored");
        assert_eq!(size, 11);
        assert_eq!(spool_files(dir.path()), 0);
    }

    #[tokio::test]
    async fn a_wrong_digest_stores_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).await.expect("open");
        let mut up = store.begin_upload().await.expect("begin");
        up.append(body(&[b"these bytes"]), None)
            .await
            .expect("append");
        let claimed = Digest::sha256_of(b"other bytes");
        let e = store
            .finish_upload(up, &claimed)
            .await
            .expect_err("mismatch");
        assert!(e.is_digest_mismatch(), "{e}");
        assert!(!store.contains(&claimed));
        assert!(!store.contains(&Digest::sha256_of(b"these bytes")));
        assert_eq!(spool_files(dir.path()), 0);
    }

    #[tokio::test]
    async fn a_body_past_the_limit_breaks_the_upload() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).await.expect("open");
        let mut up = store.begin_upload().await.expect("begin");
        let e = up.append(body(&[b"0123", b"45678"]), Some(8)).await;
        assert!(matches!(e, Err(AppendError::TooLarge { limit: 8 })));
        assert!(up.is_broken());
        up.discard().await;
        assert_eq!(spool_files(dir.path()), 0);
    }
}
