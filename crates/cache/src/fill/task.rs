//! The fill task: upstream body -> spool file (hashed as it is written) -> verify -> fsync ->
//! rename -> fsync the directory, publishing progress on the way.

use std::path::Path;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::fs;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;
use tokio::time::{Instant, timeout, timeout_at};
use wharf_oci::Digest;

use super::{Fill, FillSource, Opener, Progress};
use crate::error::{FillError, StoreError};
use crate::layout;
use crate::store::Store;

/// Runs one fill to its end and publishes the outcome. Spawned by `Store::fill`; nothing awaits
/// it, so it finishes even when every reader is gone.
pub(super) async fn run(
    store: Arc<Store>,
    fill: Arc<Fill>,
    tx: watch::Sender<Progress>,
    open: Opener,
) {
    let registration = Registration {
        store: &store,
        fill: &fill,
    };
    let mut spool = SpoolGuard(Some(&fill.spool));
    let outcome = fetch(&store, &fill, &tx, &open).await;
    if outcome.is_err() {
        layout::remove_if_there(&fill.spool).await;
    }
    spool.0 = None;
    // Leave the in-flight map before telling anyone: whoever asks after hearing of a failure
    // starts a fresh fill, and after a success finds the content stored.
    drop(registration);
    match outcome {
        Ok(len) => {
            tracing::debug!(digest = %fill.digest, len, "fill stored");
            tx.send_replace(Progress::Done { len });
        }
        Err(e) => {
            tracing::warn!(digest = %fill.digest, error = %e, "fill failed");
            tx.send_replace(Progress::Failed(e));
        }
    }
}

async fn fetch(
    store: &Store,
    fill: &Fill,
    tx: &watch::Sender<Progress>,
    open: &Opener,
) -> Result<u64, FillError> {
    let digest = &fill.digest;
    let idle = store.options.fill_inactivity_timeout;
    // A request that missed the store just before the previous fill published lands here.
    if let Ok(meta) = fs::metadata(&fill.blob).await
        && meta.is_file()
    {
        return Ok(meta.len());
    }

    let mut source = open_within(idle, open, 0, digest).await?;
    let total = source.len;
    let disk = |op, e| FillError::store(digest, StoreError::io(op, &fill.spool)(e));
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&fill.spool)
        .await
        .map_err(|e| disk("creating spool file", e))?;
    tx.send_replace(Progress::Writing {
        len: total,
        written: 0,
    });

    let mut verifier = digest.verifier();
    let mut resumes = 0;
    // Reset by every byte that arrives, so only silence times out, never slowness.
    let mut deadline = Instant::now() + idle;
    loop {
        let next = timeout_at(deadline, source.body.next())
            .await
            .map_err(|_| timed_out(digest, idle))?;
        match next {
            None => break,
            Some(Ok(chunk)) if chunk.is_empty() => {}
            Some(Ok(chunk)) => {
                let written = verifier.len() + chunk.len() as u64;
                if let Some(expected) = total.filter(|&t| written > t) {
                    return Err(length_mismatch(digest, expected, written));
                }
                file.write_all(&chunk)
                    .await
                    .map_err(|e| disk("writing spool file", e))?;
                // tokio's File finishes writes on a blocking thread; flushing waits for that, so
                // the count published next is really in the file readers open themselves.
                file.flush()
                    .await
                    .map_err(|e| disk("writing spool file", e))?;
                verifier.update(&chunk);
                tx.send_replace(Progress::Writing {
                    len: total,
                    written,
                });
                deadline = Instant::now() + idle;
            }
            Some(Err(broke)) => {
                let offset = verifier.len();
                if resumes == store.options.fill_max_resumes {
                    return Err(source_failed(digest, broke));
                }
                resumes += 1;
                tracing::info!(%digest, offset, error = %broke, resumes, "upstream body broke; resuming");
                source = match open_within(idle, open, offset, digest).await {
                    Ok(s) => s,
                    Err(e) => {
                        // The break is the cause worth reporting; the refused resume only says
                        // the upstream could not mend it.
                        tracing::warn!(%digest, offset, error = %e, "could not resume");
                        return Err(source_failed(digest, broke));
                    }
                };
                if let (Some(expected), Some(rest)) = (total, source.len)
                    && offset + rest != expected
                {
                    return Err(length_mismatch(digest, expected, offset + rest));
                }
                deadline = Instant::now() + idle;
            }
        }
    }

    let written = verifier.len();
    if let Some(expected) = total.filter(|&t| t != written) {
        return Err(length_mismatch(digest, expected, written));
    }
    let actual = verifier.finish();
    if actual != *digest {
        return Err(FillError::DigestMismatch {
            digest: digest.clone(),
            actual,
        });
    }
    file.sync_all()
        .await
        .map_err(|e| disk("fsyncing spool file", e))?;
    drop(file);
    layout::publish(&fill.spool, &fill.blob)
        .await
        .map_err(|e| FillError::store(digest, e))?;
    Ok(written)
}

async fn open_within(
    idle: Duration,
    open: &Opener,
    offset: u64,
    digest: &Digest,
) -> Result<FillSource, FillError> {
    match timeout(idle, open(offset)).await {
        Ok(Ok(source)) => Ok(source),
        Ok(Err(e)) => Err(source_failed(digest, e)),
        Err(_) => Err(timed_out(digest, idle)),
    }
}

fn source_failed(digest: &Digest, source: super::SourceError) -> FillError {
    FillError::Source {
        digest: digest.clone(),
        source,
    }
}

fn timed_out(digest: &Digest, after: Duration) -> FillError {
    FillError::Timeout {
        digest: digest.clone(),
        after,
    }
}

fn length_mismatch(digest: &Digest, expected: u64, actual: u64) -> FillError {
    FillError::LengthMismatch {
        digest: digest.clone(),
        expected,
        actual,
    }
}

/// Takes the fill out of the in-flight map when dropped, whether the task ends, panics or is
/// cancelled, so that a dead fill is never joined.
struct Registration<'a> {
    store: &'a Store,
    fill: &'a Fill,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let mut fills = self
            .store
            .fills
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Only this fill's entry: a later fill for the same digest may already be in there.
        if fills
            .get(&self.fill.digest)
            .is_some_and(|f| f.seq == self.fill.seq)
        {
            fills.remove(&self.fill.digest);
        }
    }
}

/// Removes the spool file if the task stops before it decided (a panic, a runtime shutting
/// down). Failing to is harmless: the next start-up sweeps the spool.
struct SpoolGuard<'a>(Option<&'a Path>);

impl Drop for SpoolGuard<'_> {
    fn drop(&mut self) {
        if let Some(path) = self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}
