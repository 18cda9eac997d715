//! Disk space the index does not see: files that left it but are still on disk because a
//! reader holds them open (an evicted or removed blob is unlinked, and its blocks stay
//! allocated until the last reader closes it). Without counting them, a store with a budget of
//! 150 MiB was seen at 231 MiB on disk.
//!
//! Every [`SCAN_EVERY`] a task looks at this process's open files (`/proc/self/fd`, Linux) for
//! ones under the store's `blobs/` that are unlinked or no longer indexed, and holds their
//! total in the index as one reservation (`Index::reserve`), so the policy evicts other
//! content to keep the total within the budget. Elsewhere it does nothing.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use wharf_oci::Digest;

use crate::index::IndexHandle;

/// How often open files are looked at.
pub(crate) const SCAN_EVERY: Duration = Duration::from_secs(2);

/// Ends the task with the store.
#[derive(Debug)]
pub(crate) struct HeldGuard(tokio::task::JoinHandle<()>);

impl Drop for HeldGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts the task; `key` is the reservation it holds (`Store::reservation_key`).
pub(crate) fn start(index: IndexHandle, blobs_dir: PathBuf, key: Digest) -> HeldGuard {
    // /proc/self/fd links are absolute and resolved: so must the prefix be (the default
    // cache.dir is relative).
    let blobs_dir = std::fs::canonicalize(&blobs_dir).unwrap_or(blobs_dir);
    HeldGuard(tokio::spawn(async move {
        let mut held = 0;
        loop {
            tokio::time::sleep(SCAN_EVERY).await;
            let (dir, idx) = (blobs_dir.clone(), index.clone());
            let Ok(now) = tokio::task::spawn_blocking(move || open_outside_index(&dir, &idx)).await
            else {
                continue;
            };
            if now != held {
                index.reserve(&key, now);
                held = now;
            }
        }
    }))
}

/// Bytes of files this process holds open under `blobs_dir` that are unlinked or not in the
/// index, each file counted once.
pub(crate) fn open_outside_index(blobs_dir: &Path, index: &IndexHandle) -> u64 {
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    let mut seen = HashSet::new();
    let mut total = 0;
    for fd in fds.flatten() {
        let Ok(target) = std::fs::read_link(fd.path()) else {
            continue;
        };
        let Ok(rest) = target.strip_prefix(blobs_dir) else {
            continue;
        };
        let name = rest.to_string_lossy();
        let deleted = name.ends_with(" (deleted)");
        let outside = deleted || digest_of(&name).is_none_or(|d| !index.contains(&d));
        if !outside {
            continue;
        }
        // The open file itself, unlinked or not.
        let Ok(meta) = std::fs::metadata(fd.path()) else {
            continue;
        };
        #[cfg(unix)]
        let id = {
            use std::os::unix::fs::MetadataExt as _;
            (meta.dev(), meta.ino())
        };
        #[cfg(not(unix))]
        let id = (0, total);
        if seen.insert(id) {
            total += meta.len();
        }
    }
    total
}

/// `sha256/ab/<hex>` (as under `blobs/`) to its digest.
fn digest_of(rel: &str) -> Option<Digest> {
    let mut parts = rel.split('/');
    let algorithm = parts.next()?;
    let _fanout = parts.next()?;
    let hex = parts.next()?;
    Digest::parse(&format!("{algorithm}:{hex}")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_digests_from_blob_paths() {
        let hex = "a".repeat(64);
        let d = digest_of(&format!("sha256/aa/{hex}")).expect("digest");
        assert_eq!(d.to_string(), format!("sha256:{hex}"));
        assert!(digest_of(&format!("sha256/aa/{hex} (deleted)")).is_none());
        assert!(digest_of("sha256/aa").is_none());
    }
}
