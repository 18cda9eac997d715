//! What `wharf prefetch` tells its user: a progress bar per blob on a terminal, one plain line
//! per image and blob otherwise, and the totals at the end.

use std::io::{self, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use wharf_oci::Digest;

use crate::output;

/// Where a blob's bytes came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    /// wharf had it: answered from its store (a HEAD said so, and the GET was skipped).
    Cached,
    /// wharf fetched it from the upstream for this request.
    Fetched,
    /// wharf did not say (no `X-Wharf-Cache` header): counted as fetched.
    Unknown,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Totals {
    pub fetched_blobs: u64,
    pub fetched_bytes: u64,
    pub cached_blobs: u64,
    pub cached_bytes: u64,
    pub unknown_blobs: u64,
    pub manifests: u64,
}

pub(super) struct Report {
    bars: Option<MultiProgress>,
    totals: Mutex<Totals>,
    /// stdout, or what a test reads instead.
    out: Mutex<Box<dyn Write + Send>>,
    /// The output failed (its reader went away: `wharf prefetch ... | head -1`). The run goes
    /// on without it: warming is the point, the lines a courtesy, and the exit code still says
    /// whether every image is warm.
    closed: AtomicBool,
}

impl Report {
    /// Progress bars when `interactive` (stderr is a terminal), plain lines on stdout otherwise.
    pub(super) fn new(interactive: bool) -> Report {
        Report::writing_to(interactive, Box::new(io::stdout()))
    }

    fn writing_to(interactive: bool, out: Box<dyn Write + Send>) -> Report {
        Report {
            bars: interactive
                .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            totals: Mutex::new(Totals::default()),
            out: Mutex::new(out),
            closed: AtomicBool::new(false),
        }
    }

    /// Writes `text` to the output while it is there.
    fn print(&self, text: &str) {
        if self.closed.load(Ordering::Relaxed) {
            return;
        }
        let Ok(mut out) = self.out.lock() else {
            return;
        };
        if let Err(e) = output::write_to(&mut *out, text) {
            self.closed.store(true, Ordering::Relaxed);
            if !output::is_closed(&e) {
                let _ = writeln!(
                    io::stderr(),
                    "wharf prefetch: writing the output: {e}; going on without it"
                );
            }
        }
    }

    /// A line above the bars (or a plain line).
    pub(super) fn line(&self, text: &str) {
        match &self.bars {
            Some(m) => {
                if m.println(text).is_err() {
                    eprintln!("{text}");
                }
            }
            None => self.print(&format!("{text}\n")),
        }
    }

    pub(super) fn manifest(&self) {
        self.with_totals(|t| t.manifests += 1);
    }

    /// A bar for a blob being fetched, on a terminal.
    pub(super) fn bar(
        &self,
        digest: &Digest,
        kind: &str,
        size: Option<u64>,
    ) -> Option<ProgressBar> {
        let m = self.bars.as_ref()?;
        let bar = m.add(ProgressBar::new(size.unwrap_or(0)));
        let style = ProgressStyle::with_template(
            "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(format!("{} {kind:<6}", short(digest)));
        bar.enable_steady_tick(Duration::from_millis(200));
        Some(bar)
    }

    /// A blob is done.
    pub(super) fn blob(
        &self,
        digest: &Digest,
        kind: &str,
        bytes: u64,
        source: Source,
        bar: Option<ProgressBar>,
    ) {
        let what = match source {
            Source::Cached => "already cached",
            Source::Fetched => "fetched",
            Source::Unknown => "fetched (wharf did not say whether it was cached)",
        };
        let text = format!(
            "  {} {kind:<6} {:>10}  {what}",
            short(digest),
            HumanBytes(bytes).to_string()
        );
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        self.line(&text);
        self.with_totals(|t| match source {
            Source::Cached => {
                t.cached_blobs += 1;
                t.cached_bytes += bytes;
            }
            Source::Fetched | Source::Unknown => {
                t.fetched_blobs += 1;
                t.fetched_bytes += bytes;
                if source == Source::Unknown {
                    t.unknown_blobs += 1;
                }
            }
        });
    }

    pub(super) fn totals(&self) -> Totals {
        self.totals.lock().map(|t| *t).unwrap_or_default()
    }

    fn with_totals(&self, f: impl FnOnce(&mut Totals)) {
        if let Ok(mut t) = self.totals.lock() {
            f(&mut t);
        }
    }

    /// The closing lines, on stdout.
    pub(super) fn summary(&self, images_ok: usize, images: usize) {
        if let Some(m) = &self.bars {
            let _ = m.clear();
        }
        let t = self.totals();
        let mut text = format!(
            "fetched: {} blobs, {} bytes ({})\n\
             already cached: {} blobs, {} bytes ({})\n",
            t.fetched_blobs,
            t.fetched_bytes,
            HumanBytes(t.fetched_bytes),
            t.cached_blobs,
            t.cached_bytes,
            HumanBytes(t.cached_bytes)
        );
        if t.unknown_blobs > 0 {
            text += &format!(
                "note: wharf did not report the cache state of {} blobs (no X-Wharf-Cache \
                 header): counted as fetched\n",
                t.unknown_blobs
            );
        }
        text += &format!(
            "images: {images_ok} of {images} warm ({} manifests)\n",
            t.manifests
        );
        self.print(&text);
    }
}

/// `sha256:0123456789ab`: enough to tell blobs apart in a listing.
pub(super) fn short(d: &Digest) -> String {
    let s = d.to_string();
    let cut = s.find(':').map_or(0, |i| i + 1) + 12;
    s.chars().take(cut).collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// Collects what the report writes; fails every write once `closed`.
    #[derive(Clone, Default)]
    struct Pipe {
        text: Arc<Mutex<String>>,
        closed: Arc<AtomicBool>,
    }

    impl Write for Pipe {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.closed.load(Ordering::Relaxed) {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            self.text
                .lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(buf));
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_reader_that_goes_away_ends_the_output_not_the_run() {
        let pipe = Pipe::default();
        let r = Report::writing_to(false, Box::new(pipe.clone()));
        r.line("img: upstream oracle");
        assert_eq!(*pipe.text.lock().unwrap(), "img: upstream oracle\n");
        // `| head -1` has read its line and gone.
        pipe.closed.store(true, Ordering::Relaxed);
        r.line("img: FAILED: no such tag");
        r.manifest();
        r.summary(0, 1);
        assert!(r.closed.load(Ordering::Relaxed));
        assert_eq!(r.totals().manifests, 1, "still counted");
        assert_eq!(*pipe.text.lock().unwrap(), "img: upstream oracle\n");
    }

    #[test]
    fn the_summary_says_what_was_fetched_and_what_was_there() {
        let pipe = Pipe::default();
        let r = Report::writing_to(false, Box::new(pipe.clone()));
        r.manifest();
        r.summary(1, 1);
        let text = pipe.text.lock().unwrap().clone();
        assert!(text.starts_with("fetched: 0 blobs, 0 bytes"), "{text}");
        assert!(text.contains("\nalready cached: 0 blobs"), "{text}");
        assert!(
            text.ends_with("images: 1 of 1 warm (1 manifests)\n"),
            "{text}"
        );
    }
}
