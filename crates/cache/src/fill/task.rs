//! The fill task: upstream body -> spool file (hashed as it is written) -> verify -> fsync ->
//! rename -> fsync the directory, publishing progress on the way.
//!
//! Chunks that arrive together are written together (up to [`BATCH`]) and published once, so
//! readers wake once per batch rather than once per network read; the writing and hashing run
//! on the blocking pool while the next batch arrives (`spool.rs`).

use std::path::Path;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use tokio::fs;
use tokio::sync::watch;
use tokio::time::{Instant, timeout, timeout_at};
use wharf_oci::Digest;

use super::spool::SpoolWriter;
use super::{Fill, FillSource, Opener, Progress, blocking};
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
    if let Ok(len) = &outcome {
        // Indexed while still registered, so the store sees this fill's readers and keeps
        // the file for them even if the content is evicted at once.
        store.admit(&fill.digest, *len);
    }
    // Leave the in-flight map before telling anyone: whoever asks after hearing of a failure
    // starts a fresh fill, and after a success finds the content stored.
    drop(registration);
    match outcome {
        Ok(len) => {
            tracing::debug!(digest = %fill.digest, len, "fill stored");
            tx.send_replace(Progress::Done { len });
        }
        Err(e) => {
            // A full disk fails every fill until space comes back: it is logged once per
            // episode there, and each fill only at debug.
            let no_space = matches!(&e, FillError::Store { source, .. }
                if store.no_space.failed(source, "fill"));
            if no_space {
                tracing::debug!(digest = %fill.digest, error = %e, "fill failed");
            } else {
                tracing::warn!(digest = %fill.digest, error = %e, "fill failed");
            }
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

    let source = open_within(idle, open, 0, digest).await?;
    let total = source.len;
    // The download's disk space is counted in the budget before it is written: the announced
    // size, or one batch ahead of what arrived when none was announced.
    let mut reservation = Reservation::new(store, fill);
    reservation.hold(total.unwrap_or(BATCH as u64));
    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&fill.spool)
        .await
        .map_err(|e| disk(fill, "creating spool file", e))?
        .into_std()
        .await;
    tx.send_replace(Progress::Writing {
        len: total,
        written: 0,
    });
    let mut writer = SpoolWriter::new(file, digest.verifier(), tx.clone(), total);
    let received = receive(store, fill, open, source, &mut writer, &mut reservation).await;
    // Whatever happened, no write may still be running when the outcome is published.
    let finished = writer.finish().await;
    let written = received?;
    let (file, actual) = finished.map_err(|e| disk(fill, "writing spool file", e))?;

    if let Some(expected) = total.filter(|&t| t != written) {
        return Err(length_mismatch(digest, expected, written));
    }
    if actual != *digest {
        return Err(FillError::DigestMismatch {
            digest: digest.clone(),
            actual,
        });
    }
    // Readers may finish now; storing is the fill's business from here on.
    tx.send_replace(Progress::Verified { len: written });
    blocking(move || file.sync_all())
        .await
        .map_err(|e| disk(fill, "fsyncing spool file", e))?;
    layout::publish(&fill.spool, &fill.blob)
        .await
        .map_err(|e| FillError::store(digest, e))?;
    store.no_space.succeeded();
    Ok(written)
}

/// Upstream chunks that have already arrived are written together, up to this many bytes.
const BATCH: usize = 1024 * 1024;

/// Receives the body into `writer`, resuming from the last byte received when it breaks;
/// returns how many bytes were received.
async fn receive(
    store: &Store,
    fill: &Fill,
    open: &Opener,
    mut source: FillSource,
    writer: &mut SpoolWriter,
    reservation: &mut Reservation<'_>,
) -> Result<u64, FillError> {
    let digest = &fill.digest;
    let idle = store.options.fill_inactivity_timeout;
    let total = source.len;
    let mut resumes = 0;
    // What the batching below took from the body but could not use yet: its end or its break.
    let mut carried = None;
    // Reset by every byte that arrives, so only silence times out, never slowness.
    let mut deadline = Instant::now() + idle;
    loop {
        let next = match carried.take() {
            Some(next) => next,
            None => timeout_at(deadline, source.body.next())
                .await
                .map_err(|_| timed_out(digest, idle))?,
        };
        match next {
            None => return Ok(writer.written()),
            Some(Ok(chunk)) => {
                // Whatever else has already arrived goes into the same write and the same
                // publication: one write and one wake-up of every reader per batch rather
                // than per network read keeps the fill ahead of a herd of readers.
                let mut size = chunk.len();
                let mut batch = vec![chunk];
                while size < BATCH {
                    match source.body.next().now_or_never() {
                        Some(Some(Ok(more))) => {
                            size += more.len();
                            batch.push(more);
                        }
                        Some(other) => {
                            carried = Some(other);
                            break;
                        }
                        None => break,
                    }
                }
                if size == 0 {
                    continue;
                }
                let after = writer.written() + size as u64;
                if let Some(expected) = total.filter(|&t| after > t) {
                    return Err(length_mismatch(digest, expected, after));
                }
                if total.is_none() {
                    reservation.hold(after + BATCH as u64);
                }
                writer
                    .write(batch)
                    .await
                    .map_err(|e| disk(fill, "writing spool file", e))?;
                deadline = Instant::now() + idle;
            }
            Some(Err(broke)) => {
                let offset = writer.written();
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
}

fn disk(fill: &Fill, op: &'static str, e: std::io::Error) -> FillError {
    FillError::store(&fill.digest, StoreError::io(op, &fill.spool)(e))
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

/// The budget a fill holds for its spool file while it downloads (`Index::reserve`), given back
/// when the fill ends: its content is then admitted (or nothing was stored).
struct Reservation<'a> {
    store: &'a Store,
    key: Digest,
    held: u64,
}

impl<'a> Reservation<'a> {
    fn new(store: &'a Store, fill: &Fill) -> Self {
        Reservation {
            store,
            key: crate::store::reservation_key(&format!("fill {}", fill.seq)),
            held: 0,
        }
    }

    fn hold(&mut self, bytes: u64) {
        if bytes != self.held {
            self.store.reserve(&self.key, bytes);
            self.held = bytes;
        }
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.held > 0 {
            self.store.reserve(&self.key, 0);
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
