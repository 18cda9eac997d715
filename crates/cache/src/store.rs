//! [`Store`]: opening the root, content by digest, manifests with their media type, tag records.

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::fs;
use wharf_oci::Digest;

use crate::error::StoreError;
use crate::fill::Fill;
use crate::layout::{self, Layout};
use crate::tags::{TagRecord, Tags};

/// Settings of a [`Store`]; `StoreOptions::default()` holds the defaults each field names.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// A fill fails when the upstream sends no byte for this long, whether it has not answered
    /// yet or stalls mid-body. A slow download that keeps moving is never cut off.
    /// Default: 30 s.
    pub fill_inactivity_timeout: Duration,
    /// How many times a fill whose upstream body breaks mid-way asks the opener to resume from
    /// the last byte on disk before giving up. Default: 3.
    pub fill_max_resumes: u32,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            fill_inactivity_timeout: Duration::from_secs(30),
            fill_max_resumes: 3,
        }
    }
}

/// The digest-addressed store under one root directory. See the crate docs for the layout.
#[derive(Debug)]
pub struct Store {
    pub(crate) layout: Layout,
    pub(crate) options: StoreOptions,
    /// Numbers spool files, so that concurrent writes never share one.
    seq: AtomicU64,
    tags: Tags,
    /// Fills in flight, by digest. A fill removes itself when it ends (see `fill::task`).
    pub(crate) fills: Mutex<HashMap<Digest, Arc<Fill>>>,
}

impl Store {
    /// Opens (creating if needed) the store at `root` with default options.
    pub async fn open(root: &Path) -> Result<Arc<Store>, StoreError> {
        Store::open_with(root, StoreOptions::default()).await
    }

    /// Opens (creating if needed) the store at `root`, and sweeps the spool: files left there by
    /// a crash mid-write were never verified and are never served.
    pub async fn open_with(root: &Path, options: StoreOptions) -> Result<Arc<Store>, StoreError> {
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
        Ok(Arc::new(Store {
            layout,
            options,
            seq: AtomicU64::new(0),
            tags: Tags::default(),
            fills: Mutex::new(HashMap::new()),
        }))
    }

    pub fn root(&self) -> &Path {
        self.layout.root()
    }

    pub fn options(&self) -> &StoreOptions {
        &self.options
    }

    pub(crate) fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    /// The size of the stored content for `d`, if it is stored (a stat, no read).
    pub async fn blob_size(&self, d: &Digest) -> Option<u64> {
        let meta = fs::metadata(self.layout.blob(d)).await.ok()?;
        meta.is_file().then_some(meta.len())
    }

    /// The stored content for `d`, opened, with its size. The open file stays readable if the
    /// content is evicted meanwhile.
    pub async fn open_blob(&self, d: &Digest) -> Result<Option<(fs::File, u64)>, StoreError> {
        let path = self.layout.blob(d);
        let file = match fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io("opening blob", &path)(e)),
        };
        let meta = file
            .metadata()
            .await
            .map_err(StoreError::io("reading metadata of", &path))?;
        Ok(Some((file, meta.len())))
    }

    /// A stored manifest: its media type and bytes, if both are stored.
    pub async fn get_manifest(&self, d: &Digest) -> Result<Option<(String, Bytes)>, StoreError> {
        let type_path = self.layout.media_type(d);
        let Some(media_type) = read_if_there(&type_path).await? else {
            return Ok(None);
        };
        let media_type = String::from_utf8(media_type).map_err(|e| StoreError::Io {
            op: "reading media type",
            path: type_path.clone(),
            source: io::Error::new(io::ErrorKind::InvalidData, e),
        })?;
        let Some(bytes) = read_if_there(&self.layout.blob(d)).await? else {
            return Ok(None);
        };
        Ok(Some((media_type, Bytes::from(bytes))))
    }

    /// Stores a manifest byte-exact with its media type, after checking that `bytes` hash to `d`;
    /// on a mismatch nothing is stored. The bytes are written first, the media type last, so a
    /// crash between the two leaves a blob [`get_manifest`](Store::get_manifest) does not serve.
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
        let mut verifier = d.verifier();
        verifier.update(bytes);
        let actual = verifier.finish();
        if actual != *d {
            return Err(StoreError::DigestMismatch {
                expected: d.clone(),
                actual,
            });
        }
        let tmp = self.layout.spool_file("manifest", d, self.next_seq());
        layout::write_atomic(&tmp, &self.layout.blob(d), bytes).await?;
        let tmp = self.layout.spool_file("mediatype", d, self.next_seq());
        layout::write_atomic(&tmp, &self.layout.media_type(d), media_type.as_bytes()).await
    }

    /// The record of `upstream`'s `repo:tag`, if there is one.
    pub fn get_tag(&self, upstream: &str, repo: &str, tag: &str) -> Option<TagRecord> {
        self.tags.get(upstream, repo, tag)
    }

    /// Records (or replaces) what `upstream`'s `repo:tag` points at.
    pub fn put_tag(&self, upstream: &str, repo: &str, tag: &str, rec: TagRecord) {
        self.tags.put(upstream, repo, tag, rec)
    }

    /// Forgets `upstream`'s `repo:tag`, returning the record it had.
    pub fn remove_tag(&self, upstream: &str, repo: &str, tag: &str) -> Option<TagRecord> {
        self.tags.remove(upstream, repo, tag)
    }
}

async fn read_if_there(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    match fs::read(path).await {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::io("reading", path)(e)),
    }
}
