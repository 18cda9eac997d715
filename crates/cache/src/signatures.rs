//! Signature lists: the simple-signing signatures of one manifest as one repository of one
//! upstream publishes them, kept beside the content so that clients never need the signature
//! store (an air-gapped site keeps verifying) and so that a list can be served stale when the
//! store is unreachable.
//!
//! ```text
//! <root>/signatures/<upstream>/<repository>/<alg>-<hex>   one list: when it was fetched, then
//!                                                         each signature, length-prefixed
//! ```
//!
//! A list is keyed by repository as well as digest: a signature names the image it signs
//! (`docker-reference`), so the same manifest in two repositories has two lists. Every path
//! component comes from a validated name (the upstream's configured name, a repository name
//! whose components were checked, a digest), so no request names a file outside the folder.
//!
//! Lists are written as content is: spool, fsync, rename, fsync the directory (a full disk or a
//! crash leaves the old list or none, never a cut one); the signatures themselves are opaque
//! here (`wharf-sign` verifies them). They are small and outside the cache budget; a list stays
//! when the manifest it signs is evicted, so a pull that fetches the manifest again finds it.

use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use wharf_oci::Digest;

use crate::error::StoreError;
use crate::layout;
use crate::store::Store;

/// Which list: the upstream's name, the repository in the upstream's namespace, the manifest.
#[derive(Debug, Clone, Copy)]
pub struct SignatureKey<'a> {
    pub upstream: &'a str,
    pub repository: &'a str,
    pub digest: &'a Digest,
}

/// The signatures of one manifest, in the signature store's order (`signature-1` first), and
/// when the signature store was last asked for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureList {
    pub signatures: Vec<Bytes>,
    pub fetched_at: SystemTime,
}

impl SignatureList {
    /// How long ago the list was fetched (zero if the clock went back).
    pub fn age(&self) -> Duration {
        SystemTime::now()
            .duration_since(self.fetched_at)
            .unwrap_or_default()
    }
}

impl Store {
    /// The stored signature list of `key`'s manifest, if one was stored (`signatures.rs`).
    pub async fn get_signatures(
        &self,
        key: SignatureKey<'_>,
    ) -> Result<Option<SignatureList>, StoreError> {
        match path(&self.layout().signatures_dir(), key) {
            Some(path) => read(&path).await,
            None => Ok(None),
        }
    }

    /// Stores `list` as `key`'s signature list, replacing the one before; on failure the one
    /// before is kept. A key whose names cannot be a path stores nothing.
    pub async fn put_signatures(
        &self,
        key: SignatureKey<'_>,
        list: &SignatureList,
    ) -> Result<(), StoreError> {
        let Some(dest) = path(&self.layout().signatures_dir(), key) else {
            return Ok(());
        };
        let tmp = self
            .layout()
            .spool_file("signatures", key.digest, self.next_seq());
        let written = write(tmp, &dest, list).await;
        match &written {
            Err(e) => {
                self.no_space.failed(e, "signatures");
            }
            Ok(()) => self.no_space.succeeded(),
        }
        written
    }
}

/// The most signatures a list holds; containers/image stops at 128 too
/// (`maxLookasideSignatures`), calling more a server error.
pub const MAX_SIGNATURES: usize = 128;
/// The largest signature kept; containers/image reads at most 4 MiB of one
/// (`iolimits.MaxSignatureBodySize`).
pub const MAX_SIGNATURE_BYTES: usize = 4 * 1024 * 1024;

const MAGIC: &[u8; 8] = b"wharfsg1";

/// The file of `key` under `dir` (`<root>/signatures`), or `None` if a component could name
/// something else than a plain file name.
pub(crate) fn path(dir: &Path, key: SignatureKey<'_>) -> Option<PathBuf> {
    let plain = |c: &str| {
        !c.is_empty()
            && c != "."
            && c != ".."
            && c.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    };
    if !plain(key.upstream) || !key.repository.split('/').all(plain) {
        return None;
    }
    let mut p = dir.join(key.upstream);
    for c in key.repository.split('/') {
        p.push(c);
    }
    p.push(format!(
        "{}-{}",
        key.digest.algorithm().as_str(),
        key.digest.hex()
    ));
    Some(p)
}

/// The bytes of `list` on disk.
fn encode(list: &SignatureList) -> Vec<u8> {
    let ms = list
        .fetched_at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let mut out =
        Vec::with_capacity(20 + list.signatures.iter().map(|s| 4 + s.len()).sum::<usize>());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&ms.to_le_bytes());
    out.extend_from_slice(&(list.signatures.len() as u32).to_le_bytes());
    for s in &list.signatures {
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        out.extend_from_slice(s);
    }
    out
}

/// A list read back, or `None` if the bytes are not one (cut, or another format).
fn decode(bytes: &[u8]) -> Option<SignatureList> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if b.len() < n {
            return None;
        }
        let (head, rest) = b.split_at(n);
        *b = rest;
        Some(head)
    }
    let mut b = bytes;
    if take(&mut b, MAGIC.len())? != MAGIC {
        return None;
    }
    let ms = u64::from_le_bytes(take(&mut b, 8)?.try_into().ok()?);
    let count = u32::from_le_bytes(take(&mut b, 4)?.try_into().ok()?) as usize;
    if count > MAX_SIGNATURES {
        return None;
    }
    let mut signatures = Vec::with_capacity(count);
    for _ in 0..count {
        let len = u32::from_le_bytes(take(&mut b, 4)?.try_into().ok()?) as usize;
        if len > MAX_SIGNATURE_BYTES {
            return None;
        }
        signatures.push(Bytes::copy_from_slice(take(&mut b, len)?));
    }
    if !b.is_empty() {
        return None;
    }
    Some(SignatureList {
        signatures,
        fetched_at: UNIX_EPOCH + Duration::from_millis(ms),
    })
}

/// Reads the list at `path`; a missing file is `None`, and so is one that does not decode
/// (written by something else: the next fetch replaces it).
pub(crate) async fn read(path: &Path) -> Result<Option<SignatureList>, StoreError> {
    match tokio::fs::read(path).await {
        Ok(bytes) => {
            let list = decode(&bytes);
            if list.is_none() {
                tracing::warn!(path = %path.display(), "a signature list that does not decode: ignored");
            }
            Ok(list)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::io("reading signature list", path)(e)),
    }
}

/// Writes `list` to `dest` through `tmp` in the spool: written and fsynced with std's file
/// (whose errors surface, unlike a queued tokio write), renamed, directory fsynced.
pub(crate) async fn write(
    tmp: PathBuf,
    dest: &Path,
    list: &SignatureList,
) -> Result<(), StoreError> {
    if let Some(dir) = dest.parent() {
        layout::ensure_dir(dir).await?;
    }
    let bytes = encode(list);
    let at = tmp.clone();
    let written = tokio::task::spawn_blocking(move || -> io::Result<()> {
        let mut f = std::fs::File::create(&at)?;
        f.write_all(&bytes)?;
        f.sync_all()
    })
    .await
    .map_err(io::Error::other)
    .and_then(|r| r);
    if let Err(e) = written {
        layout::remove_if_there(&tmp).await;
        return Err(StoreError::io("writing signature list", &tmp)(e));
    }
    let published = layout::publish(&tmp, dest).await;
    if published.is_err() {
        layout::remove_if_there(&tmp).await;
    }
    published
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(sigs: &[&[u8]]) -> SignatureList {
        SignatureList {
            signatures: sigs.iter().map(|s| Bytes::copy_from_slice(s)).collect(),
            fetched_at: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
        }
    }

    #[test]
    fn lists_read_back_as_written_and_cut_ones_do_not() {
        for l in [
            list(&[]),
            list(&[b"one"]),
            list(&[b"one", b"", &[0u8; 1000]]),
        ] {
            let bytes = encode(&l);
            assert_eq!(decode(&bytes), Some(l.clone()));
            for cut in 0..bytes.len() {
                assert_eq!(decode(&bytes[..cut]), None, "cut at {cut}");
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert_eq!(decode(&longer), None);
        }
    }

    #[test]
    fn paths_stay_under_the_folder() {
        let d = Digest::sha256_of(b"m");
        let key = |upstream, repository| SignatureKey {
            upstream,
            repository,
            digest: &d,
        };
        let dir = Path::new("/s");
        assert_eq!(
            path(dir, key("oracle", "os/oraclelinux")),
            Some(PathBuf::from(format!(
                "/s/oracle/os/oraclelinux/sha256-{}",
                d.hex()
            )))
        );
        for (u, r) in [
            ("..", "a"),
            ("o", "../a"),
            ("o", "a//b"),
            ("o", "a/./b"),
            ("", "a"),
        ] {
            assert_eq!(path(dir, key(u, r)), None, "{u} {r}");
        }
    }
}
