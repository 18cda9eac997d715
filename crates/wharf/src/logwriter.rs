//! stderr written by a thread of its own. A request formats its access line and queues it; the
//! `write(2)`, which can wait on the file system for a millisecond or more when stderr is a file
//! (ext4 journal commits), happens off the request path. A manifest GET served from memory,
//! `wrk -t1 -c1 --latency`, stderr a file: p99 0.7-1.9 ms with the write inline, 0.23-0.38 ms
//! with it queued.
//!
//! The writer wakes for a line, lets more gather for 10 ms and writes them at once: under load
//! one wake-up and one write per batch, on the cores the requests need; a line reaches stderr
//! at most about 10 ms late. The queue is bounded: when the writer cannot keep up, logging
//! waits (as a direct write would) rather than drop lines or grow without bound. Lines keep
//! their order. [`Flush`],
//! dropped at exit, waits (two seconds at most) until every queued line is written.
//!
//! tracing-appender's `non_blocking` does the same, but brings the `time` crate and
//! crossbeam-channel for a job that std's channel and one thread do.

use std::io::{self, Write};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// Lines queued before logging waits for the writer.
const QUEUE: usize = 16 * 1024;

enum Msg {
    Line(Vec<u8>),
    /// Answered once every line queued before it is written.
    Flush(SyncSender<()>),
}

/// What `tracing_subscriber::fmt().with_writer(..)` takes: each event becomes one [`Line`].
#[derive(Clone)]
pub(crate) struct Stderr {
    tx: SyncSender<Msg>,
}

/// Flushes the queue when dropped.
pub(crate) struct Flush {
    tx: SyncSender<Msg>,
}

/// Starts the writer thread. If it cannot be started, lines are written directly.
pub(crate) fn stderr() -> (Stderr, Flush) {
    let (tx, rx) = sync_channel(QUEUE);
    let spawned = std::thread::Builder::new()
        .name("wharf-log".into())
        .spawn(move || write_lines(&rx, to_stderr));
    if let Err(e) = spawned {
        eprintln!("wharf: no log writer thread ({e}); logging directly");
    }
    (Stderr { tx: tx.clone() }, Flush { tx })
}

/// How long the writer lets lines gather after the first one wakes it: under load one wake-up
/// and one `write(2)` per batch rather than per request, on cores the requests need.
const GATHER: Duration = Duration::from_millis(10);

/// The most written at once.
const BATCH: usize = 256 * 1024;

/// Hands the queued lines to `out` in batches, in order; answers a flush once every line
/// queued before it went out.
fn write_lines(rx: &Receiver<Msg>, mut out: impl FnMut(&[u8])) {
    let mut batch = Vec::with_capacity(BATCH);
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        let mut gathered = false;
        while let Some(msg) = next.take() {
            match msg {
                Msg::Line(line) => {
                    batch.extend_from_slice(&line);
                    if batch.len() >= BATCH {
                        write_out(&mut batch, &mut out);
                    }
                }
                Msg::Flush(done) => {
                    write_out(&mut batch, &mut out);
                    let _ = done.send(());
                }
            }
            next = rx.try_recv().ok();
            if next.is_none() && !gathered {
                gathered = true;
                std::thread::sleep(GATHER);
                next = rx.try_recv().ok();
            }
        }
        write_out(&mut batch, &mut out);
    }
    write_out(&mut batch, &mut out);
}

fn write_out(batch: &mut Vec<u8>, out: &mut impl FnMut(&[u8])) {
    if !batch.is_empty() {
        out(batch);
        batch.clear();
    }
}

/// Takes stderr's lock per batch, never while waiting: anything else writing to stderr
/// (`eprintln!`) must not wait on an idle writer.
fn to_stderr(batch: &[u8]) {
    let mut err = io::stderr().lock();
    let _ = err.write_all(batch);
    let _ = err.flush();
}

impl Drop for Flush {
    /// Waits two seconds at most: a stalled stderr (a pipe nobody reads) must not keep wharf
    /// from exiting.
    fn drop(&mut self) {
        let (done_tx, done_rx) = sync_channel(1);
        let mut msg = Msg::Flush(done_tx);
        let mut tries = 200; // 5 ms apart: a second for a place in a full queue
        loop {
            match self.tx.try_send(msg) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if tries > 0 => {
                    tries -= 1;
                    msg = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => return,
            }
        }
        let _ = done_rx.recv_timeout(Duration::from_secs(1));
    }
}

/// One event's formatted bytes, queued when dropped.
pub(crate) struct Line {
    buf: Vec<u8>,
    tx: SyncSender<Msg>,
}

impl Write for Line {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let line = std::mem::take(&mut self.buf);
        if let Err(unsent) = self.tx.send(Msg::Line(line)) {
            // No writer thread: write it here.
            if let Msg::Line(line) = unsent.0 {
                let _ = io::stderr().write_all(&line);
            }
        }
    }
}

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line {
            buf: Vec::with_capacity(256),
            tx: self.tx.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_go_out_whole_in_order_and_a_flush_waits_for_them() {
        let (tx, rx) = sync_channel(QUEUE);
        let writer = Stderr { tx: tx.clone() };
        let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        let sink = out.clone();
        let thread = std::thread::spawn(move || {
            write_lines(&rx, |batch| {
                sink.lock().expect("sink").extend_from_slice(batch);
            });
        });
        for i in 0..3 {
            let mut line = writer.make_writer();
            write!(line, "line {i}").expect("write");
            writeln!(line, " end").expect("write");
        }
        drop(writer.make_writer()); // nothing written: nothing queued
        let (done_tx, done_rx) = sync_channel(1);
        tx.send(Msg::Flush(done_tx)).expect("queue a flush");
        done_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("the flush answered");
        // Answered only once the lines before it were out.
        assert_eq!(
            String::from_utf8(out.lock().expect("out").clone()).expect("utf-8"),
            "line 0 end\nline 1 end\nline 2 end\n"
        );
        writeln!(writer.make_writer(), "after").expect("write");
        drop((tx, writer));
        thread.join().expect("writer thread");
        let all = String::from_utf8(out.lock().expect("out").clone()).expect("utf-8");
        assert!(all.ends_with("line 2 end\nafter\n"), "{all:?}");
    }

    #[test]
    fn an_idle_writer_leaves_stderr_to_others() {
        let (writer, flush) = stderr();
        std::thread::sleep(Duration::from_millis(50));
        let (tx, rx) = sync_channel(1);
        std::thread::spawn(move || {
            drop(io::stderr().lock());
            let _ = tx.send(());
        });
        assert!(
            rx.recv_timeout(Duration::from_secs(5)).is_ok(),
            "the log writer kept stderr locked"
        );
        drop((writer, flush));
    }
}
