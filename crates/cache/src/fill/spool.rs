//! The spool file as a fill writes it. Each batch goes to the blocking pool, where it is
//! written, then published to the readers, then hashed, while the fill task already receives
//! the next batch from the network.
//!
//! Writes and hashing run on the blocking pool because a disk under pressure can stall a
//! page-cache write for long, and hashing a batch takes a while; an async worker must stall for
//! neither. Readers hear of a batch as soon as it is in the page cache, before it is hashed: the
//! digest only matters for the last chunk of a range, which waits for the whole content to be
//! verified anyway. At most one batch is on the blocking pool at a time, so writes and
//! publications stay in order, and at most two batches are in memory: the one being written and
//! the one being received.

use std::fs::File;
use std::io::{self, Write as _};

use bytes::Bytes;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use wharf_oci::{Digest, Verifier};

use super::Progress;

pub(super) struct SpoolWriter {
    idle: Option<Spool>,
    busy: Option<JoinHandle<io::Result<Spool>>>,
    tx: watch::Sender<Progress>,
    /// The announced length, published with every count.
    len: Option<u64>,
    /// Bytes handed to writes so far.
    written: u64,
}

struct Spool {
    file: File,
    verifier: Verifier,
}

impl SpoolWriter {
    pub(super) fn new(
        file: File,
        verifier: Verifier,
        tx: watch::Sender<Progress>,
        len: Option<u64>,
    ) -> SpoolWriter {
        SpoolWriter {
            idle: Some(Spool { file, verifier }),
            busy: None,
            tx,
            len,
            written: 0,
        }
    }

    /// Bytes received so far: where a resumed body must start.
    pub(super) fn written(&self) -> u64 {
        self.written
    }

    /// Hands `batch` to the blocking pool once the batch before it is done. An error is that
    /// of an earlier batch's write.
    pub(super) async fn write(&mut self, batch: Vec<Bytes>) -> io::Result<()> {
        let mut spool = self.settle().await?;
        self.written += batch.iter().map(|b| b.len() as u64).sum::<u64>();
        let (tx, len, written) = (self.tx.clone(), self.len, self.written);
        self.busy = Some(tokio::task::spawn_blocking(move || {
            for chunk in &batch {
                spool.file.write_all(chunk)?;
            }
            // The bytes are in the file before anyone hears of them, so a reader never reads
            // past what was written.
            tx.send_replace(Progress::Writing { len, written });
            for chunk in &batch {
                spool.verifier.update(chunk);
            }
            Ok(spool)
        }));
        Ok(())
    }

    /// Waits for the batch in flight: the file, and the digest of everything written. Every
    /// fill calls it before publishing its outcome, so that no write publishes after it.
    pub(super) async fn finish(mut self) -> io::Result<(File, Digest)> {
        let spool = self.settle().await?;
        Ok((spool.file, spool.verifier.finish()))
    }

    async fn settle(&mut self) -> io::Result<Spool> {
        if let Some(busy) = self.busy.take() {
            return busy.await.unwrap_or_else(|e| Err(io::Error::other(e)));
        }
        self.idle
            .take()
            .ok_or_else(|| io::Error::other("the spool file was lost to an earlier failed write"))
    }
}
