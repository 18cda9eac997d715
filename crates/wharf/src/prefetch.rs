//! `wharf prefetch REF...`: warms the cache before a rollout by pulling through the running
//! wharf's registry API exactly as a client would, so every later pull is served locally.
//!
//! ```text
//! REF (wharf_oci::ImageReference) -> upstream and path by the configured prefixes (route.rs)
//!   -> GET /v2/<prefix>/<repo>/manifests/<tag> with the full Accept set, verified
//!   -> read by wharf_oci::manifest; an index? pick the platform child(ren) (platform.rs)
//!      -> GET each by digest, verified
//!   -> per config and layer blob (a few at a time, each digest once per run):
//!        HEAD with Cache-Control: only-if-cached: X-Wharf-Cache: hit -> already cached, no GET
//!        (wharf answers it from its store, or 504, never asking the upstream)
//!        else GET (the upstream's one request), hashed while it streams and discarded; a
//!        digest mismatch fails
//!   -> totals of bytes fetched and already cached (report.rs); exit 1 if anything failed
//! ```

mod platform;
mod report;
mod route;

use std::collections::HashSet;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::StreamExt;
use http::{HeaderMap, Method, header};
use http_body_util::BodyExt;
use wharf_oci::manifest::{self, Blob, Manifest, Platform};
use wharf_oci::{Digest, ImageReference};

use crate::mirror::{self, Mirror, Unspecified};
use platform::Want;
use report::{Report, Source};
use route::Route;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Images to warm, as clients name them: container-registry.oracle.com/os/oraclelinux:9
    /// (a name without a registry goes to the default upstream, as wharf routes it).
    #[arg(value_name = "REF")]
    refs: Vec<String>,
    /// Also read references from FILE, one per line ('#' comments; '-' is stdin).
    #[arg(long, value_name = "FILE")]
    from_file: Option<PathBuf>,
    /// The server's configuration, for its upstream prefixes and address [default:
    /// /etc/wharf/wharf.toml if it exists, else the embedded default].
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// wharf's registry API: http(s)://HOST:PORT [default: server.listen on this machine].
    #[arg(long, value_name = "URL")]
    mirror: Option<String>,
    /// CA certificate (PEM) for a TLS mirror, on top of the system roots.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// The platform to warm from multi-platform images [default: this machine's, linux/<arch>].
    #[arg(
        long,
        value_name = "OS/ARCH[/VARIANT]",
        conflicts_with = "all_platforms"
    )]
    platform: Option<String>,
    /// Warm every platform of multi-platform images.
    #[arg(long)]
    all_platforms: bool,
    /// Blobs fetched at once.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=32))]
    jobs: u16,
}

/// A stalled body fails after this long without a byte.
const INACTIVITY: Duration = Duration::from_secs(60);
/// Manifests larger than this are refused, as containerd does (about 4 MiB).
const MAX_MANIFEST: usize = 4 << 20;
/// Indexes inside indexes: deeper than this is refused.
const MAX_DEPTH: usize = 3;

pub(crate) fn run(args: Args) -> ExitCode {
    let fail = |e: String| {
        eprintln!("wharf prefetch: {e}");
        ExitCode::from(2)
    };
    let mut refs = args.refs.clone();
    if let Some(file) = &args.from_file {
        match read_list(file) {
            Ok(more) => refs.extend(more),
            Err(e) => return fail(e),
        }
    }
    if refs.is_empty() {
        return fail("no image references given (REF... or --from-file FILE)".into());
    }
    let (config, _) = match mirror::load_config(args.config.as_deref()) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let mirror = match Mirror::resolve(args.mirror.as_deref(), &config, Unspecified::Loopback) {
        Ok(m) => m,
        Err(e) => return fail(e),
    };
    let want = match (&args.platform, args.all_platforms) {
        (_, true) => Want::All,
        (Some(p), false) => match Platform::parse(p) {
            Ok(p) => Want::One(p),
            Err(e) => return fail(format!("--platform {e}")),
        },
        (None, false) => Want::One(platform::host()),
    };
    let client = match wharf_upstream::Client::new(wharf_upstream::Config {
        name: "wharf".to_owned(),
        url: mirror.url(),
        mirrors: Vec::new(),
        username: None,
        password: None,
        ca_file: args.ca.clone(),
        connect_timeout: Duration::from_secs(10),
        response_timeout: Duration::from_secs(120),
    }) {
        Ok(c) => c,
        Err(e) => return fail(e.to_string()),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start the runtime: {e}")),
    };
    let job = Prefetch {
        client,
        report: Report::new(std::io::stderr().is_terminal()),
        seen: Mutex::new(HashSet::new()),
        jobs: usize::from(args.jobs),
        want,
        mirror_url: mirror.url(),
    };
    let mut failed = Vec::new();
    runtime.block_on(async {
        for text in &refs {
            let result = match ImageReference::parse(text) {
                Ok(r) => match route::route(&config, &r) {
                    Ok(route) => job.warm(&r, &route).await,
                    Err(e) => Err(e),
                },
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = result {
                job.report.line(&format!("{text}: FAILED: {e}"));
                failed.push((text.clone(), e));
            }
        }
    });
    job.report.summary(refs.len() - failed.len(), refs.len());
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        for (r, e) in &failed {
            eprintln!("wharf prefetch: {r}: {e}");
        }
        ExitCode::FAILURE
    }
}

fn read_list(file: &std::path::Path) -> Result<Vec<String>, String> {
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).map_err(|e| format!("reading stdin: {e}"))?
    } else {
        std::fs::read_to_string(file).map_err(|e| format!("reading {}: {e}", file.display()))?
    };
    Ok(text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}

struct Prefetch {
    client: wharf_upstream::Client,
    report: Report,
    /// Blob digests warmed in this run, so a layer shared by two images is counted once.
    seen: Mutex<HashSet<Digest>>,
    jobs: usize,
    want: Want,
    mirror_url: String,
}

impl Prefetch {
    /// Warms one image: its manifest(s), then its blobs.
    async fn warm(&self, r: &ImageReference, route: &Route<'_>) -> Result<(), String> {
        let repo = route.repo.as_str();
        let (content_type, body) = self
            .manifest(repo, &r.reference().to_string(), r.digest.as_ref())
            .await?;
        let mut pending = vec![(parse_manifest(&content_type, &body)?, 0usize)];
        let mut blobs = Vec::new();
        let mut foreign = 0;
        let mut picked = Vec::new();
        while let Some((m, depth)) = pending.pop() {
            match m {
                Manifest::Image {
                    blobs: b,
                    foreign: f,
                } => {
                    blobs.extend(b);
                    foreign += f.len();
                }
                Manifest::Index(_) if depth >= MAX_DEPTH => {
                    return Err("indexes nested too deep".to_owned());
                }
                Manifest::Index(children) => {
                    for child in platform::select(&children, &self.want)? {
                        let d = &child.digest;
                        let (ct, body) = self.manifest(repo, &d.to_string(), Some(d)).await?;
                        if let Some(p) = &child.platform {
                            picked.push(p.to_string());
                        }
                        pending.push((parse_manifest(&ct, &body)?, depth + 1));
                    }
                }
            }
        }
        let mut line = format!("{r}: upstream {}, /v2/{repo}", route.upstream.name);
        if !picked.is_empty() {
            line += &format!(" [{}]", picked.join(", "));
        }
        if foreign > 0 {
            line += &format!(" ({foreign} foreign layers left to the client)");
        }
        self.report.line(&line);
        // Each digest once: a layer repeated in a manifest, or shared with an image warmed
        // earlier in this run, is not asked for again.
        let mut unique = HashSet::new();
        let fresh: Vec<_> = blobs
            .into_iter()
            .filter(|b| unique.insert(b.digest.clone()) && !self.was_warmed(&b.digest))
            .collect();
        let errors: Vec<String> = futures_util::stream::iter(fresh)
            .map(|b| async move {
                self.blob(repo, &b)
                    .await
                    .map(|()| self.warmed(&b.digest))
                    .map_err(|e| format!("blob {}: {e}", b.digest))
            })
            .buffer_unordered(self.jobs)
            .filter_map(|r| async move { r.err() })
            .collect()
            .await;
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    /// A request error in this command's words: the client library calls wharf "upstream".
    fn explain(&self, e: wharf_upstream::Error) -> String {
        let text = e.to_string();
        let text = text
            .strip_prefix(&format!("upstream {}: ", e.upstream()))
            .unwrap_or(&text)
            .to_owned();
        if e.is_unreachable() && e.status().is_none() {
            format!("{text} (is wharf running at {}?)", self.mirror_url)
        } else {
            text
        }
    }

    fn was_warmed(&self, d: &Digest) -> bool {
        self.seen.lock().map(|s| s.contains(d)).unwrap_or(false)
    }

    fn warmed(&self, d: &Digest) {
        if let Ok(mut s) = self.seen.lock() {
            s.insert(d.clone());
        }
    }

    /// GETs a manifest; returns its Content-Type and bytes, verified against `want` (or the
    /// `Docker-Content-Digest` wharf sent).
    async fn manifest(
        &self,
        repo: &str,
        reference: &str,
        want: Option<&Digest>,
    ) -> Result<(String, Vec<u8>), String> {
        let resp = self
            .client
            .manifest(Method::GET, repo, reference)
            .await
            .map_err(|e| format!("manifest {reference}: {}", self.explain(e)))?;
        let content_type = header_str(&resp.headers, header::CONTENT_TYPE.as_str())
            .unwrap_or_default()
            .to_owned();
        let sent = header_str(&resp.headers, "docker-content-digest")
            .and_then(|d| Digest::parse(d.trim()).ok());
        let mut body = Vec::new();
        let mut stream = resp.body;
        while let Some(data) = next_data(&mut stream).await? {
            body.extend_from_slice(&data);
            if body.len() > MAX_MANIFEST {
                return Err(format!(
                    "manifest {reference} is larger than {MAX_MANIFEST} bytes"
                ));
            }
        }
        if let Some(d) = want.or(sent.as_ref()) {
            let mut v = d.verifier();
            v.update(&body);
            let got = v.finish();
            if &got != d {
                return Err(format!("manifest {reference}: expected {d}, got {got}"));
            }
        }
        self.report.manifest();
        Ok((content_type, body))
    }

    /// Makes sure wharf holds one blob: skipped if wharf says it has it, else fetched through
    /// wharf, hashed while it streams, and dropped. The question "do you have it?" is a HEAD
    /// with `Cache-Control: only-if-cached`, which wharf answers from its store (or 504) without
    /// asking the upstream: a cold blob costs the upstream one GET, not a HEAD and a GET.
    async fn blob(&self, repo: &str, b: &Blob) -> Result<(), String> {
        match self.client.blob_if_cached(repo, &b.digest).await {
            Ok(head) if cache_state(&head.headers) == Some(true) => {
                let size = content_length(&head.headers).or(b.size).unwrap_or(0);
                self.report
                    .blob(&b.digest, b.kind.as_str(), size, Source::Cached, None);
                return Ok(());
            }
            // Not held (504), or held only as a download in flight: the GET below joins it.
            Ok(_) => {}
            Err(e) if e.status() == Some(504) => {}
            Err(e) => return Err(self.explain(e)),
        }
        let resp = self
            .client
            .blob(Method::GET, repo, &b.digest, None)
            .await
            .map_err(|e| self.explain(e))?;
        let source = match cache_state(&resp.headers) {
            Some(true) => Source::Cached,
            Some(false) => Source::Fetched,
            None => Source::Unknown,
        };
        let size = b.size.or(content_length(&resp.headers));
        let bar = self.report.bar(&b.digest, b.kind.as_str(), size);
        let mut verifier = b.digest.verifier();
        let mut stream = resp.body;
        while let Some(data) = next_data(&mut stream).await? {
            verifier.update(&data);
            if let Some(bar) = &bar {
                bar.inc(data.len() as u64);
            }
        }
        let len = verifier.len();
        let got = verifier.finish();
        if got != b.digest {
            return Err(format!("the bytes hash to {got}"));
        }
        if let Some(s) = b.size
            && s != len
        {
            return Err(format!("{len} bytes arrived, the manifest says {s}"));
        }
        self.report
            .blob(&b.digest, b.kind.as_str(), len, source, bar);
        Ok(())
    }
}

fn parse_manifest(content_type: &str, body: &[u8]) -> Result<Manifest, String> {
    manifest::parse(content_type, body).map_err(|e| e.to_string())
}

/// The next data chunk of a body, waiting at most [`INACTIVITY`] for it.
async fn next_data(body: &mut wharf_upstream::Body) -> Result<Option<bytes::Bytes>, String> {
    loop {
        let frame = tokio::time::timeout(INACTIVITY, body.frame())
            .await
            .map_err(|_| format!("no data from wharf for {INACTIVITY:?}"))?;
        match frame {
            None => return Ok(None),
            Some(Err(e)) => return Err(format!("reading from wharf: {e}")),
            Some(Ok(f)) => {
                if let Ok(data) = f.into_data() {
                    return Ok(Some(data));
                }
            }
        }
    }
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn content_length(h: &HeaderMap) -> Option<u64> {
    header_str(h, header::CONTENT_LENGTH.as_str()).and_then(|v| v.trim().parse().ok())
}

/// `X-Wharf-Cache`: `Some(true)` for hit, `Some(false)` for miss, `None` if wharf did not say.
fn cache_state(h: &HeaderMap) -> Option<bool> {
    match header_str(h, "x-wharf-cache")?.trim() {
        "hit" => Some(true),
        "miss" => Some(false),
        _ => None,
    }
}
