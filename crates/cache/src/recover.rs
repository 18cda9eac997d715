//! Start-up: reconcile what is on disk with what the metadata store says.
//!
//! ```text
//! walk blobs/<alg>/<2 hex>/   (the fan-out directories split over a few threads), stat each file
//!   name is not a digest in its place     -> quarantine/
//!   size, mtime, inode match its row      -> trusted: kept without reading a byte
//!   anything else (no row, changed file)  -> hashed: kept with a new row, or quarantine/
//! rows with no file                       -> dropped
//! tags whose manifest is not kept         -> dropped (the next pull fetches the tag again)
//! scopes of content not kept              -> dropped (scopes.rs)
//! ```
//!
//! So a start-up reads no content it verified before unless the file changed since, and a
//! file flipped on disk while wharf was down (its mtime moves) is hashed, found out and
//! quarantined, never served. The entries come back in access order for the index to load.

use std::collections::HashSet;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use redb::Database;
use wharf_oci::Digest;

use crate::error::StoreError;
use crate::index::{Key, Times, now_ms};
use crate::layout::Layout;
use crate::meta::{self, BlobRow, Fingerprint, Repairs, TagRow};
use crate::scopes::OwnedScopeKey;
use crate::tags::OwnedTagKey;

/// One piece of content kept.
pub(crate) struct Kept {
    pub(crate) key: Key,
    pub(crate) size: u64,
    pub(crate) media_type: Option<Arc<str>>,
    pub(crate) times: Times,
}

impl Kept {
    /// Content found as `f`, verified at `verified_ms`, last used at `access_ms` if that was
    /// recorded.
    fn new(f: Found, media_type: Option<String>, verified_ms: u64, access_ms: Option<u64>) -> Kept {
        // Content nobody recorded an access for: its mtime (when it was stored) is the best
        // guess.
        let access_ms = access_ms.unwrap_or(f.fingerprint.mtime_ns / 1_000_000);
        Kept {
            key: f.key,
            size: f.fingerprint.len,
            media_type: media_type.map(Arc::from),
            times: Times {
                access_ms,
                verified_ms,
            },
        }
    }
}

/// What start-up found, and what it did about it.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Report {
    pub(crate) trusted: usize,
    pub(crate) verified: usize,
    pub(crate) quarantined: usize,
    pub(crate) dropped_rows: usize,
    pub(crate) dropped_tags: usize,
    pub(crate) dropped_scopes: usize,
    /// Milliseconds reading the database, listing the files (both at once), and the rest.
    pub(crate) load_ms: u64,
    pub(crate) walk_ms: u64,
    pub(crate) reconcile_ms: u64,
}

pub(crate) struct Recovered {
    /// Least recently used first.
    pub(crate) kept: Vec<Kept>,
    pub(crate) tags: Vec<(OwnedTagKey, TagRow)>,
    /// The pairs of content kept, with their digest parsed.
    pub(crate) scopes: Vec<(OwnedScopeKey, Digest)>,
    pub(crate) report: Report,
}

/// A file found under `blobs/` (its path is the layout's for its digest). The key, not a
/// [`Digest`]: a million files are a million hex strings less to allocate.
pub(crate) struct Found {
    pub(crate) key: Key,
    pub(crate) fingerprint: Fingerprint,
}

/// What walking `blobs/` finds: files in their places, and strays.
pub(crate) type Walked = (Vec<Found>, Vec<PathBuf>);

/// Threads for walking and hashing: the work is syscalls and reads more than CPU.
fn workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8))
}

pub(crate) fn recover(
    layout: &Layout,
    db: &Database,
    seq: &AtomicU64,
) -> Result<Recovered, StoreError> {
    let started = tokio::time::Instant::now();
    let ms = |since: tokio::time::Instant| u64::try_from(since.elapsed().as_millis()).unwrap_or(0);
    // Reading the database and listing the files are independent: do both at once.
    let (loaded, walked, load_ms, walk_ms) = std::thread::scope(|s| {
        let loading = s.spawn(|| {
            let loaded = meta::load(db);
            (loaded, ms(started))
        });
        let walked = walk(layout.blobs_dir());
        let walk_ms = ms(started);
        let (loaded, load_ms) = loading.join().unwrap_or_else(|_| {
            let panicked = StoreError::Meta {
                op: "reading",
                message: "the reader panicked".into(),
            };
            (Err(panicked), 0)
        });
        (loaded, walked, load_ms, walk_ms)
    });
    let reconciling = tokio::time::Instant::now();
    let (loaded, (found, strays)) = (loaded?, walked?);
    let mut rows = loaded.blobs;
    let mut report = Report {
        load_ms,
        walk_ms,
        ..Report::default()
    };
    let quarantine = |path: &Path, name: &str| {
        let to = layout.quarantine_file(name, seq.fetch_add(1, Ordering::Relaxed));
        match std::fs::rename(path, &to) {
            Ok(()) => tracing::warn!(file = %path.display(), moved_to = %to.display(),
                "quarantined a file whose content does not match its name"),
            Err(e) => tracing::error!(file = %path.display(), error = %e,
                "could not quarantine a file whose content does not match its name"),
        }
    };
    for stray in &strays {
        let name = stray
            .strip_prefix(layout.blobs_dir())
            .unwrap_or(stray)
            .to_string_lossy()
            .into_owned();
        quarantine(stray, &name);
        report.quarantined += 1;
    }

    let mut kept = Vec::with_capacity(found.len());
    let mut check = Vec::new();
    for f in found {
        match rows.remove(&f.key) {
            Some(b) if b.row.fingerprint == f.fingerprint => {
                report.trusted += 1;
                // Trusted, not read: verified when it was written, until the metadata writer
                // reads when its row says (`meta::load_verified`, right after opening).
                let verified = f.fingerprint.mtime_ns / 1_000_000;
                kept.push(Kept::new(f, b.row.media_type, verified, b.access_ms));
            }
            // Changed (or never recorded): hashed below; what the rows knew of it stays.
            b => check.push((f, b.map(|b| (b.row.media_type, b.access_ms)))),
        }
    }
    // What is hashed below counts as verified now.
    let now = now_ms();
    let mut repairs = Repairs {
        drop: rows
            .into_keys()
            .map(|k| k.digest().to_string())
            .chain(loaded.unreadable)
            .collect(),
        verified_ms: now,
        ..Repairs::default()
    };
    report.dropped_rows = repairs.drop.len();

    for ((f, known), ok) in verify_all(layout, check) {
        let (media_type, access_ms) = known.unwrap_or_default();
        let digest = f.key.digest();
        let key = digest.to_string();
        if ok {
            report.verified += 1;
            let row = BlobRow {
                fingerprint: f.fingerprint,
                media_type: media_type.clone(),
            };
            repairs.put.push((key, row));
            kept.push(Kept::new(f, media_type, now, access_ms));
        } else {
            quarantine(
                &layout.blob(&digest),
                &format!("{}-{}", digest.algorithm().as_str(), digest.hex()),
            );
            report.quarantined += 1;
            repairs.drop.push(key);
        }
    }

    let manifests: HashSet<&Key> = kept
        .iter()
        .filter(|k| k.media_type.is_some())
        .map(|k| &k.key)
        .collect();
    let (tags, gone): (Vec<_>, Vec<_>) = loaded
        .tags
        .into_iter()
        .partition(|(_, row)| Key::parse(&row.digest).is_some_and(|k| manifests.contains(&k)));
    drop(manifests);
    report.dropped_tags = gone.len();
    repairs.drop_tags = gone.into_iter().map(|(k, _)| k).collect();
    // Pairs of content not kept say nothing any more: when it is stored again, it comes
    // through a repository that records its pair then.
    // The set of the scopes' digests, not of all content (a million blobs, a few scopes).
    let mut named: HashSet<Key> = loaded
        .scopes
        .iter()
        .filter_map(|k| Key::parse(&k.digest))
        .collect();
    let stored: HashSet<Key> = if named.is_empty() {
        HashSet::new()
    } else {
        kept.iter().filter_map(|k| named.take(&k.key)).collect()
    };
    let mut scopes = Vec::with_capacity(loaded.scopes.len());
    for k in loaded.scopes {
        match Key::parse(&k.digest) {
            Some(key) if stored.contains(&key) => scopes.push((k, key.digest())),
            _ => repairs.drop_scopes.push(k),
        }
    }
    drop(stored);
    report.dropped_scopes = repairs.drop_scopes.len();
    // The corrections only persist what this start-up found (and finds again next time): a
    // store on a full disk must still open and serve what it has.
    if let Err(e) = meta::repair(db, &repairs) {
        tracing::warn!(error = %e, "could not record the start-up repairs in the metadata store (is the disk full?); the next start makes them again");
    }

    kept.sort_by_key(|k| k.times.access_ms);
    report.reconcile_ms = ms(reconciling);
    Ok(Recovered {
        kept,
        tags,
        scopes,
        report,
    })
}

/// Lists `blobs/`: the files in their fan-out places, and the strays (files anywhere else, or
/// whose name is not the digest of their place).
pub(crate) fn walk(blobs: &Path) -> Result<Walked, StoreError> {
    let mut shards = Vec::new();
    let mut strays = Vec::new();
    for alg in list(blobs)? {
        if !alg.is_dir() {
            strays.push(alg);
            continue;
        }
        for shard in list(&alg)? {
            if shard.is_dir() {
                shards.push(shard);
            } else {
                strays.push(shard);
            }
        }
    }
    let n = workers();
    let results: Vec<Result<Walked, StoreError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|w| {
                let mine: Vec<&PathBuf> = shards.iter().skip(w).step_by(n).collect();
                s.spawn(move || {
                    let mut found = Vec::new();
                    let mut strays = Vec::new();
                    for shard in mine {
                        walk_shard(shard, &mut found, &mut strays)?;
                    }
                    Ok((found, strays))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(StoreError::io("walking", blobs)(io::Error::other(
                        "a walker panicked",
                    )))
                })
            })
            .collect()
    });
    let mut found = Vec::new();
    for r in results {
        let (f, s) = r?;
        found.extend(f);
        strays.extend(s);
    }
    Ok((found, strays))
}

fn walk_shard(
    shard: &Path,
    found: &mut Vec<Found>,
    strays: &mut Vec<PathBuf>,
) -> Result<(), StoreError> {
    let prefix = shard.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let alg = shard
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("");
    let entries = std::fs::read_dir(shard).map_err(StoreError::io("listing", shard))?;
    for entry in entries {
        let entry = entry.map_err(StoreError::io("listing", shard))?;
        let meta = match entry.metadata() {
            Ok(m) => m,
            // Gone between listing and stat: nothing to keep.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(StoreError::io("reading metadata of", &entry.path())(e)),
        };
        if !meta.is_file() {
            tracing::warn!(path = %entry.path().display(), "ignoring a non-file in the blob store");
            continue;
        }
        let name = entry.file_name();
        let key = name
            .to_str()
            .filter(|hex| hex.starts_with(prefix) && prefix.len() == 2)
            .and_then(|hex| match alg {
                "sha256" => Key::sha256_hex(hex),
                _ => Key::parse(&format!("{alg}:{hex}")),
            });
        match key {
            Some(key) => found.push(Found {
                key,
                fingerprint: Fingerprint::of(&meta),
            }),
            None => strays.push(entry.path()),
        }
    }
    Ok(())
}

fn list(dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
    std::fs::read_dir(dir)
        .and_then(|entries| entries.map(|e| e.map(|e| e.path())).collect())
        .map_err(StoreError::io("listing", dir))
}

/// Hashes each file against its name, a few at a time.
fn verify_all<T: Send>(layout: &Layout, items: Vec<(Found, T)>) -> Vec<((Found, T), bool)> {
    if items.is_empty() {
        return Vec::new();
    }
    let n = workers().min(items.len());
    let mut buckets: Vec<Vec<(Found, T)>> = (0..n).map(|_| Vec::new()).collect();
    for (i, item) in items.into_iter().enumerate() {
        buckets[i % n].push(item);
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = buckets
            .into_iter()
            .map(|bucket| {
                s.spawn(move || {
                    bucket
                        .into_iter()
                        .map(|item| {
                            let digest = item.0.key.digest();
                            let path = layout.blob(&digest);
                            let ok = verify(&path, &digest).unwrap_or_else(|e| {
                                tracing::warn!(path = %path.display(), error = %e, "cannot read stored content to verify it");
                                false
                            });
                            (item, ok)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

/// Whether the file at `path` hashes to `digest`.
pub(crate) fn verify(path: &Path, digest: &Digest) -> io::Result<bool> {
    let mut file = std::fs::File::open(path)?;
    let mut verifier = digest.verifier();
    let mut buf = vec![0; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        verifier.update(&buf[..n]);
    }
    Ok(verifier.finish() == *digest)
}
