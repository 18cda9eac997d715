//! Hosted repositories: names that wharf keeps itself, that users push to and pull from, with
//! their content in a store of their own (`hosted.dir`), outside the cache's budget.
//!
//! ```text
//! routing (lib.rs, DESIGN.md's order)
//!   1./2. ns= / mount / first component naming an upstream  -> that upstream (a push: DENIED,
//!         the name belongs to it: a push never shadows what an upstream serves)
//!   3.    a name matching a hosted pattern (`hosted.repositories`), or a bare name hosted on
//!         its first push (bare.rs)                    -> here
//!   4.    the default upstream (a push with `hosted.bare_names`: bare.rs asks it first)
//! here:
//!   rights (rights.rs): pull, push or delete, per user and repository (`[auth]`)
//!   POST/PATCH/PUT/GET/DELETE .../blobs/uploads/<id>  -> upload.rs (spool, hashed as it arrives)
//!   POST ...?mount=<d>&from=<repo>                     -> mount.rs
//!   PUT .../manifests/<ref>                            -> manifest_put.rs
//!   DELETE .../manifests/<ref>, .../blobs/<digest>     -> delete.rs (hosted.delete, may_delete)
//!   GET/HEAD manifests, blobs, tags/list               -> pull.rs (never an upstream)
//!   GET/HEAD .../referrers/<digest>                    -> referrers.rs (an index kept in memory)
//!   GET/HEAD/PUT signatures (the API extension)        -> signed.rs
//! ```
//!
//! Garbage collection (gc.rs) removes stored content no repository references, online: every
//! mutation below pins it from storing content until the content is scoped.
//!
//! Content is scoped as in the cache: the store keeps each digest once, and records which
//! hosted repository holds it (`ScopeKey { upstream: "hosted", .. }`), set by a push or a
//! mount. A digest is served only through a repository that holds it.

mod bare;
mod delete;
mod gc;
mod manifest_put;
mod mount;
mod pull;
mod referrers;
pub(crate) mod rights;
mod sessions;
mod signed;
mod upload;

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use wharf_cache::{ScopeKey, Store};
use wharf_oci::{Digest, ErrorCode, RepositoryName};

use crate::Proxy;
use crate::auth::Caller;
use crate::body::{self, Body};
use crate::error::ProxyError;
use crate::route::{ParsedPath, Resource};

pub use gc::GcReport;

/// The name hosted content goes by where the cache names an upstream: in store keys, logs and
/// the metrics' `upstream` label. No upstream may be called this.
pub const HOSTED: &str = "hosted";

/// How hosted repositories are configured (`[hosted]`).
#[derive(Debug, Clone)]
pub struct HostedOptions {
    /// Patterns of hosted names: a name, or a glob where `*` stands for any run of characters,
    /// `/` included (`team/*`).
    pub repositories: Vec<String>,
    /// Bytes the hosted store may hold; `None`: no bound but the disk.
    pub quota: Option<u64>,
    /// An upload that receives nothing for this long is dropped with its spool.
    pub upload_timeout: Duration,
    /// Whether `DELETE` of manifests, tags and blobs is allowed (else 405 UNSUPPORTED).
    pub delete: bool,
    /// How often garbage collection runs (besides after deletes and when asked).
    pub gc_interval: Duration,
    /// A push to a name that routes to the default upstream makes it hosted when that
    /// upstream does not serve it (bare.rs).
    pub bare_names: bool,
}

impl HostedOptions {
    /// `upload_timeout` unless configured.
    pub const DEFAULT_UPLOAD_TIMEOUT: Duration = Duration::from_secs(3600);
    /// `gc_interval` unless configured.
    pub const DEFAULT_GC_INTERVAL: Duration = Duration::from_secs(3600);
}

/// The hosted repositories: their patterns, their store and the uploads in progress.
pub struct Hosted {
    patterns: Vec<String>,
    store: Arc<Store>,
    quota: Option<u64>,
    uploads: Arc<sessions::Sessions>,
    /// `hosted.delete`.
    delete: bool,
    gc: Arc<gc::Gc>,
    bare: bare::BareNames,
    /// (repository, subject) -> the manifests held there with that subject.
    referrers: referrers::Referrers,
}

/// Why a pattern is not one `[hosted] repositories` accepts.
pub fn check_pattern(p: &str) -> Result<(), String> {
    let valid = !p.is_empty()
        && p.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/*".contains(&b))
        && !p.starts_with('/')
        && !p.ends_with('/')
        && !p.contains("//");
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{p:?} is not a repository name or glob (lowercase letters, digits, '.', '_', '-', '/' and '*')"
        ))
    }
}

/// Whether `name` matches `pattern`, where `*` matches any run of characters (`/` too).
pub(crate) fn glob(pattern: &str, name: &str) -> bool {
    let Some((head, rest)) = pattern.split_once('*') else {
        return pattern == name;
    };
    let Some(tail) = name.strip_prefix(head) else {
        return false;
    };
    // Every split of the rest of the name; names are at most a few hundred bytes.
    (0..=tail.len())
        .filter(|&i| tail.is_char_boundary(i))
        .any(|i| glob(rest, &tail[i..]))
}

impl Hosted {
    /// Hosted repositories with their content in `store` (which should have no budget to
    /// evict by: hosted content is never evicted), with the referrers index rebuilt from what
    /// it holds. Starts the sweep of abandoned uploads and the garbage collector on the
    /// current runtime.
    pub async fn new(store: Arc<Store>, options: HostedOptions) -> Result<Hosted, String> {
        for p in &options.repositories {
            check_pattern(p).map_err(|e| format!("hosted.repositories: {e}"))?;
        }
        let bare = bare::BareNames::load(store.root(), options.bare_names)?;
        let referrers = referrers::Referrers::rebuild(&store)
            .await
            .map_err(|e| format!("indexing the referrers of hosted manifests: {e}"))?;
        Ok(Hosted {
            referrers,
            bare,
            patterns: options.repositories,
            store: store.clone(),
            quota: options.quota,
            uploads: sessions::Sessions::start(options.upload_timeout),
            delete: options.delete,
            gc: gc::Gc::start(store.clone(), options.gc_interval),
        })
    }

    /// Whether `name` is a hosted repository (step 3 of the routing order): a pattern's, or a
    /// bare name hosted on its first push.
    pub fn matches(&self, name: &RepositoryName) -> bool {
        self.patterns.iter().any(|p| glob(p, name.as_str())) || self.bare.is_claimed(name)
    }

    /// Whether a push to a name of the default upstream may make it hosted (bare.rs).
    pub fn bare_names(&self) -> bool {
        self.bare.enabled()
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Uploads in progress.
    pub fn uploads_in_progress(&self) -> usize {
        self.uploads.len()
    }

    /// Collects garbage now (`POST /admin/gc`): after any collection under way.
    pub async fn collect_garbage(&self) -> Result<GcReport, wharf_cache::StoreError> {
        self.gc.collect().await
    }

    /// What garbage collection did since start-up.
    pub fn gc_totals(&self) -> wharf_metrics::HostedGcSnapshot {
        self.gc.totals()
    }

    /// The pair that says `repo` holds `digest`.
    fn key<'a>(repo: &'a RepositoryName, digest: &'a Digest) -> ScopeKey<'a> {
        ScopeKey {
            upstream: HOSTED,
            repository: repo.as_str(),
            digest,
        }
    }

    /// Whether `repo` holds `digest` and the store has it.
    fn holds(&self, repo: &RepositoryName, digest: &Digest) -> bool {
        self.store.in_scope(Self::key(repo, digest)) && self.store.contains(digest)
    }

    /// Refuses new content of `adding` bytes that would take the store past its quota.
    /// DENIED (403): the spec has no code for a quota, and a 403 with this message is what
    /// clients print; a 5xx would be retried (the spec's "temporary condition") in vain.
    fn check_quota(&self, adding: u64) -> Result<(), ProxyError> {
        let Some(quota) = self.quota else {
            return Ok(());
        };
        let used = self.store.stats().size_bytes;
        if used.saturating_add(adding) > quota {
            return Err(ProxyError::oci(
                ErrorCode::Denied,
                format!(
                    "the hosted repositories' quota is reached: {used} of {quota} bytes used, \
                     {adding} more refused (hosted.quota)"
                ),
            ));
        }
        Ok(())
    }
}

impl Proxy {
    /// Answers a request for a hosted repository, once `caller` may do what it asks (rights.rs).
    pub(crate) async fn answer_hosted<B>(
        &self,
        hosted: &Hosted,
        req: Request<B>,
        parsed: &ParsedPath,
        caller: &Caller,
    ) -> Result<Response<Body>, ProxyError>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let method = req.method().clone();
        let base = parsed.client_base.as_str();
        if method == Method::DELETE
            && matches!(
                parsed.resource,
                Resource::Manifest { .. } | Resource::Blob { .. }
            )
        {
            hosted.check_delete_enabled()?;
        }
        rights::check(self.auth(), caller, &method, &parsed.resource)?;
        let head = method == Method::HEAD;
        match (&parsed.resource, method) {
            (Resource::Uploads { name, session }, m) => {
                let user = rights::user(caller);
                if session.is_empty() {
                    if m != Method::POST {
                        return Err(unsupported(&m, "an upload starts with POST"));
                    }
                    return self.start_upload(hosted, name, base, user, req).await;
                }
                let s = hosted.uploads.find(session, name, user)?;
                match m {
                    Method::PATCH => hosted.patch(s, base, req).await,
                    Method::PUT => hosted.complete(s, name, base, req).await,
                    Method::GET | Method::HEAD => Ok(upload::status(&s, base).await),
                    Method::DELETE => Ok(hosted.cancel(s).await),
                    m => Err(unsupported(&m, "uploads take PATCH, PUT, GET and DELETE")),
                }
            }
            (Resource::Manifest { name, reference }, Method::PUT) => {
                hosted.put_manifest(name, reference, base, req).await
            }
            (Resource::Manifest { name, reference }, Method::DELETE) => {
                hosted.delete_manifest(name, reference)
            }
            (Resource::Blob { name, digest }, Method::DELETE) => hosted.delete_blob(name, digest),
            (Resource::Manifest { name, reference }, Method::GET | Method::HEAD) => {
                hosted.manifest(name, reference, head, req.headers()).await
            }
            (Resource::Blob { name, digest }, Method::GET | Method::HEAD) => {
                let sendfile = req.extensions().get::<crate::sendfile::Pending>();
                hosted
                    .blob(name, digest, head, req.headers(), sendfile)
                    .await
            }
            (Resource::Tags { name }, Method::GET | Method::HEAD) => {
                hosted.tags(name, base, req.uri().query(), head)
            }
            (Resource::Signatures { name, digest }, Method::GET | Method::HEAD) => {
                hosted.signatures(name, digest, head).await
            }
            (Resource::Signatures { name, digest }, Method::PUT) => {
                hosted.put_signature(name, digest, req).await
            }
            (Resource::Referrers { name, digest }, Method::GET | Method::HEAD) => {
                let artifact_type = crate::route::query_param(req.uri().query(), "artifactType");
                Ok(hosted.referrers(name, digest, artifact_type.as_deref(), head))
            }
            (_, m) => Err(unsupported(
                &m,
                "this endpoint takes GET and HEAD (manifests also PUT and DELETE, blobs DELETE)",
            )),
        }
    }
}

fn unsupported(method: &Method, what: &str) -> ProxyError {
    ProxyError::oci(
        ErrorCode::Unsupported,
        format!("{method} is not supported here: {what}"),
    )
}

/// `201 Created` for content now held by a repository: `Location` of the blob or manifest,
/// `Docker-Content-Digest`.
fn created(location: &str, digest: &Digest) -> Response<Body> {
    let mut resp = Response::new(body::empty());
    *resp.status_mut() = StatusCode::CREATED;
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(location) {
        h.insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&digest.to_string()) {
        h.insert("docker-content-digest", v);
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_names() {
        assert!(glob("ol7image", "ol7image"));
        assert!(!glob("ol7image", "ol7image2"));
        assert!(glob("team/*", "team/a"));
        assert!(glob("team/*", "team/a/b"));
        assert!(!glob("team/*", "team"));
        assert!(!glob("team/*", "teamx/a"));
        assert!(glob("*-dev", "app-dev"));
        assert!(glob("a/*/c", "a/b/c"));
        assert!(!glob("a/*/c", "a/b/d"));
        assert!(glob("*", "anything/at/all"));
    }

    #[test]
    fn patterns_are_names_or_globs() {
        for ok in ["ol7image", "team/*", "*", "a.b/c-d_e"] {
            assert!(check_pattern(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Team/*", "/a", "a/", "a//b", "a?b", "a b"] {
            assert!(check_pattern(bad).is_err(), "{bad}");
        }
    }
}
