//! The embedded metadata store, `meta/index.redb`: what the store knows that the file names do
//! not say, kept across restarts.
//!
//! ```text
//! blobs   digest -> (size, mtime ns, inode, media type if a manifest)   verified content
//! access  digest -> last access, ms since the Unix epoch                 approximate LRU order
//! verified digest -> last hashed and found to match, ms since the epoch  the scrubber's order
//! tags    (upstream, repository, tag) -> (digest, media type, size, validated, ms since epoch)
//! scopes  (digest, upstream, repository) -> when recorded, ms since the epoch   (scopes.rs)
//! meta    "schema" -> 1
//! ```
//!
//! A `blobs` row says "this file was verified, and looked like this then": start-up trusts a
//! file whose size, mtime and inode still match its row, and hashes any other (see
//! `recover.rs`). Times are wall-clock, so they mean the same after a restart. A `verified` row
//! is written when content is stored (a fill or write verified it), when start-up hashes it, and
//! when the scrubber (`scrub.rs`) reads it back; content with no row (stored by a wharf older
//! than the table) counts as verified at its mtime, when it was written.
//!
//! Start-up reads the blobs, access, tags and scopes (`load`) and corrects them (`repair`);
//! after that one thread owns it and writes in batches (`writer.rs`), having first read the
//! verification times into the index (`load_verified`), which only the scrubber's order needs.

// redb's error is large; it is built only when the disk fails, never on a request's path.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;

use redb::{Database, Durability, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::error::StoreError;
use crate::index::{Key, now_ms};
use crate::layout::Layout;
use crate::scopes::OwnedScopeKey;
use crate::tags::OwnedTagKey;

/// (size, mtime ns, inode, media type)
type BlobValue = (u64, u64, u64, Option<&'static str>);
pub(crate) const BLOBS: TableDefinition<&str, BlobValue> = TableDefinition::new("blobs");
pub(crate) const ACCESS: TableDefinition<&str, u64> = TableDefinition::new("access");
/// A table added without a schema change: an older wharf ignores it, and this one reads a
/// missing row as "verified when written".
pub(crate) const VERIFIED: TableDefinition<&str, u64> = TableDefinition::new("verified");
/// (upstream, repository, tag)
type TagKeyValue = (&'static str, &'static str, &'static str);
/// (digest, media type, size, validated ms)
type TagValue = (&'static str, &'static str, u64, u64);
pub(crate) const TAGS: TableDefinition<TagKeyValue, TagValue> = TableDefinition::new("tags");
/// (digest, upstream, repository): the digest first, so content that leaves the store drops
/// its pairs with one range scan. Added without a schema change, as `verified` was: an older
/// wharf ignores it, and this one starts with no pairs known (each is confirmed once).
type ScopeKeyValue = (&'static str, &'static str, &'static str);
pub(crate) const SCOPES: TableDefinition<ScopeKeyValue, u64> = TableDefinition::new("scopes");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const SCHEMA: u64 = 1;

/// What a verified file looked like when it was verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Fingerprint {
    pub(crate) len: u64,
    pub(crate) mtime_ns: u64,
    pub(crate) ino: u64,
}

impl Fingerprint {
    pub(crate) fn of(m: &std::fs::Metadata) -> Fingerprint {
        #[cfg(unix)]
        let (mtime_ns, ino) = {
            use std::os::unix::fs::MetadataExt;
            let ns = m
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(m.mtime_nsec());
            (u64::try_from(ns).unwrap_or(0), m.ino())
        };
        #[cfg(not(unix))]
        let (mtime_ns, ino) = (
            m.modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(0)),
            0,
        );
        Fingerprint {
            len: m.len(),
            mtime_ns,
            ino,
        }
    }
}

/// A `blobs` row.
#[derive(Clone, Debug)]
pub(crate) struct BlobRow {
    pub(crate) fingerprint: Fingerprint,
    pub(crate) media_type: Option<String>,
}

/// A `tags` row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TagRow {
    pub(crate) digest: String,
    pub(crate) media_type: String,
    pub(crate) size: u64,
    pub(crate) validated_ms: u64,
}

/// redb's page cache. Its default, 1 GiB, held what start-up read of a million rows (0.9 GiB
/// resident, issue 18); the database is read once at start-up and then written in batches by
/// one thread, which needs only the pages on the paths it changes.
const CACHE_BYTES: usize = 16 << 20;

fn meta_err(op: &'static str) -> impl FnOnce(redb::Error) -> StoreError {
    move |e| StoreError::Meta {
        op,
        message: e.to_string(),
    }
}

pub(crate) fn into_redb<E: Into<redb::Error>>(e: E) -> redb::Error {
    e.into()
}

/// Opens (or creates) the database. One that cannot be read is moved to `quarantine/` and
/// replaced by an empty one: the content is then re-verified, nothing is lost but time.
pub(crate) fn open(layout: &Layout) -> Result<Database, StoreError> {
    let path = layout.index_db();
    let db = match Database::builder()
        .set_cache_size(CACHE_BYTES)
        .create(&path)
    {
        Ok(db) => db,
        Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
            return Err(StoreError::InUse { path });
        }
        Err(e) => {
            let aside = layout.quarantine_file("index.redb", now_ms());
            tracing::error!(path = %path.display(), error = %e, moved_to = %aside.display(),
                "the metadata store cannot be opened; starting a new one and re-verifying the content");
            std::fs::rename(&path, &aside).map_err(StoreError::io(
                "moving the unreadable metadata store from",
                &path,
            ))?;
            Database::builder()
                .set_cache_size(CACHE_BYTES)
                .create(&path)
                .map_err(|e| meta_err("creating")(e.into()))?
        }
    };
    let txn = db
        .begin_write()
        .map_err(|e| meta_err("opening")(e.into()))?;
    {
        let created = (|| -> Result<Option<u64>, redb::Error> {
            txn.open_table(BLOBS)?;
            txn.open_table(ACCESS)?;
            txn.open_table(VERIFIED)?;
            txn.open_table(TAGS)?;
            txn.open_table(SCOPES)?;
            let mut meta = txn.open_table(META)?;
            let found = meta.get("schema")?.map(|v| v.value());
            if found.is_none() {
                meta.insert("schema", SCHEMA)?;
            }
            Ok(found)
        })()
        .map_err(meta_err("preparing tables in"))?;
        if let Some(v) = created.filter(|v| *v != SCHEMA) {
            return Err(StoreError::Meta {
                op: "reading",
                message: format!("schema version {v} is not {SCHEMA}, which this wharf knows"),
            });
        }
    }
    txn.commit().map_err(|e| meta_err("preparing")(e.into()))?;
    Ok(db)
}

/// A `blobs` row with its `access` row. The `verified` rows are read after the store opens
/// (`load_verified`): only the scrubber's order needs them, and reading them at start-up was
/// a third of reading the database (issue 18).
pub(crate) struct LoadedBlob {
    pub(crate) row: BlobRow,
    pub(crate) access_ms: Option<u64>,
}

/// Hashes a [`Key`] by its first 8 bytes: a sha256 is uniform already, and SipHash over a
/// million keys was a fifth of reading the database (issue 18). Keys come from the database
/// (content wharf verified), not from clients.
#[derive(Default)]
pub(crate) struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // The discriminant and the length come as integers (below); the bytes once.
        for chunk in bytes.chunks(8).take(1) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 =
                (self.0.rotate_left(5) ^ u64::from_le_bytes(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn write_isize(&mut self, n: isize) {
        self.write_u64(n as u64);
    }
}

pub(crate) type KeyMap<V> = HashMap<Key, V, std::hash::BuildHasherDefault<KeyHasher>>;

/// Everything the database holds, read at start-up. The three tables keyed by digest are read
/// into one map (a key and a value per content, not three: a million blobs are a few hundred
/// MiB less that way while the store opens).
#[derive(Default)]
pub(crate) struct Loaded {
    pub(crate) blobs: KeyMap<LoadedBlob>,
    /// `blobs` rows whose key is no digest: dropped.
    pub(crate) unreadable: Vec<String>,
    pub(crate) tags: Vec<(OwnedTagKey, TagRow)>,
    pub(crate) scopes: Vec<OwnedScopeKey>,
}

pub(crate) fn load(db: &Database) -> Result<Loaded, StoreError> {
    (|| -> Result<Loaded, redb::Error> {
        let txn = db.begin_read()?;
        let mut out = Loaded::default();
        let blobs = txn.open_table(BLOBS)?;
        out.blobs
            .reserve(usize::try_from(blobs.len()?).unwrap_or(0));
        for row in blobs.iter()? {
            let (k, v) = row?;
            let Some(key) = Key::parse(k.value()) else {
                out.unreadable.push(k.value().to_owned());
                continue;
            };
            let loaded = LoadedBlob {
                row: blob_row(v.value()),
                access_ms: None,
            };
            out.blobs.insert(key, loaded);
        }
        // Rows of content with no `blobs` row say nothing: skipped.
        for row in txn.open_table(ACCESS)?.iter()? {
            let (k, v) = row?;
            if let Some(b) = Key::parse(k.value()).and_then(|k| out.blobs.get_mut(&k)) {
                b.access_ms = Some(v.value());
            }
        }
        for row in txn.open_table(TAGS)?.iter()? {
            let (k, v) = row?;
            let (u, r, t) = k.value();
            let (digest, media_type, size, validated_ms) = v.value();
            out.tags.push((
                OwnedTagKey {
                    upstream: u.to_owned(),
                    repository: r.to_owned(),
                    tag: t.to_owned(),
                },
                TagRow {
                    digest: digest.to_owned(),
                    media_type: media_type.to_owned(),
                    size,
                    validated_ms,
                },
            ));
        }
        for row in txn.open_table(SCOPES)?.iter()? {
            let (k, _) = row?;
            let (digest, upstream, repository) = k.value();
            out.scopes.push(OwnedScopeKey {
                digest: digest.to_owned(),
                upstream: upstream.to_owned(),
                repository: repository.to_owned(),
            });
        }
        Ok(out)
    })()
    .map_err(meta_err("reading"))
}

/// Every `verified` row, `batch` rows at a time: (key, ms since the epoch).
pub(crate) fn load_verified(
    db: &Database,
    batch: usize,
    mut each: impl FnMut(&[(Key, u64)]),
) -> Result<(), StoreError> {
    (|| -> Result<(), redb::Error> {
        let txn = db.begin_read()?;
        let mut rows = Vec::with_capacity(batch);
        for row in txn.open_table(VERIFIED)?.iter()? {
            let (k, v) = row?;
            if let Some(key) = Key::parse(k.value()) {
                rows.push((key, v.value()));
            }
            if rows.len() == batch {
                each(&rows);
                rows.clear();
            }
        }
        each(&rows);
        Ok(())
    })()
    .map_err(meta_err("reading verification times from"))
}

/// The start-up corrections: rows for content verified now (at `verified_ms`), rows to drop.
#[derive(Default)]
pub(crate) struct Repairs {
    pub(crate) put: Vec<(String, BlobRow)>,
    pub(crate) verified_ms: u64,
    pub(crate) drop: Vec<String>,
    pub(crate) drop_tags: Vec<OwnedTagKey>,
    pub(crate) drop_scopes: Vec<OwnedScopeKey>,
}

pub(crate) fn repair(db: &Database, r: &Repairs) -> Result<(), StoreError> {
    if r.put.is_empty() && r.drop.is_empty() && r.drop_tags.is_empty() && r.drop_scopes.is_empty() {
        return Ok(());
    }
    (|| -> Result<(), redb::Error> {
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::Immediate);
        {
            let mut blobs = txn.open_table(BLOBS)?;
            let mut access = txn.open_table(ACCESS)?;
            let mut verified = txn.open_table(VERIFIED)?;
            let mut tags = txn.open_table(TAGS)?;
            let mut scopes = txn.open_table(SCOPES)?;
            let now = now_ms();
            for (k, row) in &r.put {
                blobs.insert(k.as_str(), blob_value(row))?;
                if access.get(k.as_str())?.is_none() {
                    access.insert(k.as_str(), now)?;
                }
                verified.insert(k.as_str(), r.verified_ms)?;
            }
            for k in &r.drop {
                blobs.remove(k.as_str())?;
                access.remove(k.as_str())?;
                verified.remove(k.as_str())?;
            }
            for k in &r.drop_tags {
                tags.remove(tag_key_value(k))?;
            }
            for k in &r.drop_scopes {
                scopes.remove(scope_key_value(k))?;
            }
        }
        txn.commit()?;
        Ok(())
    })()
    .map_err(meta_err("repairing"))
}

/// The `blobs` value of `row`. The table stores a tuple (its on-disk format); these two
/// functions are the only places that know its order.
pub(crate) fn blob_value(row: &BlobRow) -> (u64, u64, u64, Option<&str>) {
    let fp = row.fingerprint;
    (fp.len, fp.mtime_ns, fp.ino, row.media_type.as_deref())
}

/// The row a `blobs` value stands for.
pub(crate) fn blob_row((len, mtime_ns, ino, media_type): (u64, u64, u64, Option<&str>)) -> BlobRow {
    BlobRow {
        fingerprint: Fingerprint { len, mtime_ns, ino },
        media_type: media_type.map(str::to_owned),
    }
}

/// The `tags` key of `k`: the table stores a tuple (its on-disk format).
pub(crate) fn tag_key_value(k: &OwnedTagKey) -> (&str, &str, &str) {
    (k.upstream.as_str(), k.repository.as_str(), k.tag.as_str())
}

/// The `scopes` key of `k` (its on-disk order: digest first).
pub(crate) fn scope_key_value(k: &OwnedScopeKey) -> (&str, &str, &str) {
    (
        k.digest.as_str(),
        k.upstream.as_str(),
        k.repository.as_str(),
    )
}
