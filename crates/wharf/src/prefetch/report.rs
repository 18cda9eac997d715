//! What `wharf prefetch` tells its user: a progress bar per blob on a terminal, one plain line
//! per image and blob otherwise, and the totals at the end.

use std::sync::Mutex;
use std::time::Duration;

use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use wharf_oci::Digest;

/// Where a blob's bytes came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// wharf had it: answered from its store (a HEAD said so, and the GET was skipped).
    Cached,
    /// wharf fetched it from the upstream for this request.
    Fetched,
    /// wharf did not say (no `X-Wharf-Cache` header): counted as fetched.
    Unknown,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub fetched_blobs: u64,
    pub fetched_bytes: u64,
    pub cached_blobs: u64,
    pub cached_bytes: u64,
    pub unknown_blobs: u64,
    pub manifests: u64,
}

pub struct Report {
    bars: Option<MultiProgress>,
    totals: Mutex<Totals>,
}

impl Report {
    /// Progress bars when `interactive` (stderr is a terminal), plain lines on stdout otherwise.
    pub fn new(interactive: bool) -> Report {
        Report {
            bars: interactive
                .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            totals: Mutex::new(Totals::default()),
        }
    }

    /// A line above the bars (or a plain line).
    pub fn line(&self, text: &str) {
        match &self.bars {
            Some(m) => {
                if m.println(text).is_err() {
                    eprintln!("{text}");
                }
            }
            None => println!("{text}"),
        }
    }

    pub fn manifest(&self) {
        self.with_totals(|t| t.manifests += 1);
    }

    /// A bar for a blob being fetched, on a terminal.
    pub fn bar(&self, digest: &Digest, kind: &str, size: Option<u64>) -> Option<ProgressBar> {
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
    pub fn blob(
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

    pub fn totals(&self) -> Totals {
        self.totals.lock().map(|t| *t).unwrap_or_default()
    }

    fn with_totals(&self, f: impl FnOnce(&mut Totals)) {
        if let Ok(mut t) = self.totals.lock() {
            f(&mut t);
        }
    }

    /// The closing lines, on stdout.
    pub fn summary(&self, images_ok: usize, images: usize) {
        if let Some(m) = &self.bars {
            let _ = m.clear();
        }
        let t = self.totals();
        println!(
            "fetched: {} blobs, {} bytes ({})",
            t.fetched_blobs,
            t.fetched_bytes,
            HumanBytes(t.fetched_bytes)
        );
        println!(
            "already cached: {} blobs, {} bytes ({})",
            t.cached_blobs,
            t.cached_bytes,
            HumanBytes(t.cached_bytes)
        );
        if t.unknown_blobs > 0 {
            println!(
                "note: wharf did not report the cache state of {} blobs (no X-Wharf-Cache \
                 header): counted as fetched",
                t.unknown_blobs
            );
        }
        println!(
            "images: {images_ok} of {images} warm ({} manifests)",
            t.manifests
        );
    }
}

/// `sha256:0123456789ab`: enough to tell blobs apart in a listing.
pub fn short(d: &Digest) -> String {
    let s = d.to_string();
    let cut = s.find(':').map_or(0, |i| i + 1) + 12;
    s.chars().take(cut).collect()
}
