//! [`Client`]: the three pull requests wharf makes upstream, each run through auth and redirects.
//!
//! Nothing of the downstream client's request reaches the upstream: the Accept set, encoding and
//! ranges are chosen here, so a narrow client `Accept` can never make a registry answer a
//! different document for a tag (PROTOCOL §1.5, checklist 2) and nothing arrives content-encoded
//! (checklist 11).

use std::sync::Arc;

use http::header::{ACCEPT, ACCEPT_ENCODING, CACHE_CONTROL, RANGE};
use http::{HeaderMap, HeaderValue, Method, Uri};

use crate::auth::{Auth, basic_header};
use crate::endpoints::{Endpoint, Endpoints};
use crate::realm::RealmPolicy;
use crate::transport::Transport;
use crate::{Config, Error, Response, tls};

mod flow;

/// A client for one upstream registry. Cheap to clone: clones share the connection pool and the
/// token cache.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    /// Its `url` and `mirrors` (endpoints.rs): where each request goes, by health and latency.
    endpoints: Endpoints,
    transport: Transport,
    auth: Auth,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("name", &self.inner.name)
            .field(
                "urls",
                &self
                    .inner
                    .endpoints
                    .iter()
                    .map(|e| e.base.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Client {
    pub fn new(config: Config) -> Result<Client, Error> {
        let invalid = |reason: &str| Error::Config {
            upstream: config.name.clone(),
            reason: reason.to_owned(),
        };
        let mut endpoints = Vec::new();
        for url in std::iter::once(&config.url).chain(&config.mirrors) {
            let (base, origin) = parse_base(url).map_err(invalid)?;
            if endpoints.iter().any(|e: &Endpoint| e.base == base) {
                return Err(invalid("the same URL is listed twice (url and mirrors)"));
            }
            endpoints.push(Endpoint::new(base, origin));
        }
        let endpoints = Endpoints::new(endpoints);
        if config.connect_timeout.is_zero() || config.response_timeout.is_zero() {
            return Err(invalid("timeouts must be greater than zero"));
        }
        let basic = match (&config.username, &config.password) {
            (Some(user), password) => {
                let password = password.as_ref().map(|p| p.expose()).unwrap_or_default();
                Some(
                    basic_header(user, password)
                        .ok_or_else(|| invalid("the username cannot be sent in an HTTP header"))?,
                )
            }
            (None, Some(_)) => return Err(invalid("a password is configured without a username")),
            (None, None) => None,
        };
        let transport = Transport {
            http: tls::http_client(&config)?,
            upstream: config.name.clone(),
            ca_file: config.ca_file.clone(),
            connect_timeout: config.connect_timeout,
            response_timeout: config.response_timeout,
            user_agent: HeaderValue::from_static(concat!("wharf/", env!("CARGO_PKG_VERSION"))),
            metrics: std::sync::OnceLock::new(),
            via: std::sync::OnceLock::new(),
        };
        let policy = RealmPolicy::new(endpoints.iter().map(|e| &e.origin));
        let auth = Auth::new(config.name.clone(), basic, policy);
        Ok(Client {
            inner: Arc::new(Inner {
                name: config.name,
                endpoints,
                transport,
                auth,
            }),
        })
    }

    /// Token realms outside the upstream's registrable domain that may still receive its
    /// credentials (hosts, without port). Applies to this client and all its clones.
    pub fn with_allowed_realm_hosts(self, hosts: Vec<String>) -> Self {
        self.inner.auth.allow_realm_hosts(hosts);
        self
    }

    /// Counts this client's requests, token fetches and rate limit into `metrics` (applies to
    /// all clones; the first call wins).
    pub fn with_metrics(self, metrics: wharf_metrics::Metrics) -> Self {
        for e in self.inner.endpoints.iter() {
            for result in ["ok", "failed"] {
                metrics.upstream_url_requests.with_label_values(&[
                    self.inner.name.as_str(),
                    e.label.as_str(),
                    result,
                ]);
            }
        }
        let _ = self.inner.transport.metrics.set(metrics);
        self
    }

    /// Sends `Via: 1.1 <pseudonym>` (RFC 9110 section 7.6.3) on every request of this client
    /// and its clones (the first call wins), so the wharf it names can tell its own requests
    /// coming back. A pseudonym that is no header value is ignored.
    pub fn set_via(&self, pseudonym: &str) {
        if let Ok(v) = HeaderValue::from_str(&format!("1.1 {pseudonym}")) {
            let _ = self.inner.transport.via.set(v);
        }
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The configured `url` (`scheme://authority[/path]`): which registry this upstream is.
    pub fn url(&self) -> &str {
        self.inner
            .endpoints
            .iter()
            .next()
            .map_or("", |e| e.base.as_str())
    }

    /// The time allowed until response headers arrive (`Config::response_timeout`).
    pub fn response_timeout(&self) -> std::time::Duration {
        self.inner.transport.response_timeout
    }

    /// `host[:port]` of each configured URL (`url`, then `mirrors`): the values of the `url`
    /// label in metrics and logs.
    pub fn url_labels(&self) -> Vec<String> {
        self.inner
            .endpoints
            .iter()
            .map(|e| e.label.clone())
            .collect()
    }

    /// A response body from the URL labelled `url` ([`Response::url`]) broke: that URL is left
    /// alone for its back-off, so the request that resumes goes to another.
    pub fn url_failed(&self, url: &str) {
        if let Some(e) = self.inner.endpoints.by_label(url)
            && self.inner.endpoints.iter().count() > 1
        {
            let backoff = e.failed();
            tracing::warn!(upstream = %self.inner.name, url, backoff_ms = backoff.as_millis() as u64,
                "a response body from this url broke; trying the upstream's other urls first");
        }
    }

    /// `GET` or `HEAD /v2/<repo>/manifests/<reference>`, always with the full Accept set
    /// [`wharf_oci::media::UPSTREAM_MANIFEST_ACCEPT`] (each type as its own Accept header line),
    /// never the client's.
    pub async fn manifest(
        &self,
        method: Method,
        repo: &str,
        reference: &str,
    ) -> Result<Response, Error> {
        self.check(&method, repo, reference)?;
        let mut headers = identity_headers();
        for media_type in wharf_oci::media::UPSTREAM_MANIFEST_ACCEPT {
            headers.append(ACCEPT, HeaderValue::from_static(media_type));
        }
        let path = format!("/v2/{repo}/manifests/{reference}");
        self.execute(method, repo, path, None, headers).await
    }

    /// `GET` or `HEAD /v2/<repo>/blobs/<digest>`; `range_from = Some(n)` sends `Range: bytes=n-` (for
    /// resuming). Sends `Accept-Encoding: identity` so nothing is content-encoded.
    pub async fn blob(
        &self,
        method: Method,
        repo: &str,
        digest: &wharf_oci::Digest,
        range_from: Option<u64>,
    ) -> Result<Response, Error> {
        let digest = digest.to_string();
        self.check(&method, repo, &digest)?;
        let mut headers = identity_headers();
        if let Some(from) = range_from {
            let range = HeaderValue::try_from(format!("bytes={from}-"))
                .map_err(|e| self.invalid(format!("range: {e}")))?;
            headers.insert(RANGE, range);
        }
        let path = format!("/v2/{repo}/blobs/{digest}");
        self.execute(method, repo, path, None, headers).await
    }

    /// `HEAD /v2/<repo>/blobs/<digest>` with `Cache-Control: only-if-cached` (RFC 9111 section
    /// 5.2.1.7): a cache in front of the registry (wharf) answers from what it holds, or 504
    /// ([`Error::Status`]) without asking its own upstream; a registry ignores the directive.
    pub async fn blob_if_cached(
        &self,
        repo: &str,
        digest: &wharf_oci::Digest,
    ) -> Result<Response, Error> {
        let digest = digest.to_string();
        self.check(&Method::HEAD, repo, &digest)?;
        let mut headers = identity_headers();
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("only-if-cached"));
        let path = format!("/v2/{repo}/blobs/{digest}");
        self.execute(Method::HEAD, repo, path, None, headers).await
    }

    /// `GET /v2/<repo>/tags/list` with the given raw query string (e.g. "n=10&last=foo"), passed
    /// through.
    pub async fn tags(&self, repo: &str, query: Option<&str>) -> Result<Response, Error> {
        self.check(&Method::GET, repo, "list")?;
        let path = format!("/v2/{repo}/tags/list");
        let query = query.filter(|q| !q.is_empty());
        self.execute(Method::GET, repo, path, query, identity_headers())
            .await
    }

    /// `GET /v2/<repo>/referrers/<digest>` (OCI 1.1), with `artifactType` passed through when
    /// given. A registry without the referrers API answers 404 ([`Error::NotFound`]).
    pub async fn referrers(
        &self,
        repo: &str,
        digest: &wharf_oci::Digest,
        artifact_type: Option<&str>,
    ) -> Result<Response, Error> {
        let digest = digest.to_string();
        self.check(&Method::GET, repo, &digest)?;
        let mut headers = identity_headers();
        headers.insert(
            ACCEPT,
            HeaderValue::from_static(wharf_oci::media::OCI_INDEX),
        );
        let path = format!("/v2/{repo}/referrers/{digest}");
        let query = artifact_type.map(|t| {
            form_urlencoded::Serializer::new(String::new())
                .append_pair("artifactType", t)
                .finish()
        });
        self.execute(Method::GET, repo, path, query.as_deref(), headers)
            .await
    }

    fn invalid(&self, reason: String) -> Error {
        Error::InvalidRequest {
            upstream: self.inner.name.clone(),
            reason,
        }
    }

    /// The proxy validates names and references; this only keeps a mistake from turning into a
    /// different URL (a `?`, `#` or `..` in a path segment).
    fn check(&self, method: &Method, repo: &str, reference: &str) -> Result<(), Error> {
        if *method != Method::GET && *method != Method::HEAD {
            return Err(self.invalid(format!("method {method} is not used upstream")));
        }
        let repo_ok = !repo.is_empty()
            && repo.split('/').all(|s| {
                !s.is_empty()
                    && s != "."
                    && s != ".."
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            });
        let reference_ok = !reference.is_empty()
            && reference
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-:+=".contains(&b));
        if !repo_ok || !reference_ok {
            return Err(self.invalid(
                "repository or reference has characters not allowed in a path segment".into(),
            ));
        }
        Ok(())
    }
}

/// `Accept-Encoding: identity`: blobs and manifests are hashed as they arrive, so an encoded
/// representation would never match its digest.
fn identity_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
    headers
}

/// `scheme://host[:port][/path]` from the configured URL, and its origin, or why it cannot be
/// used. A path is the prefix every request goes under (a regional wharf's `/oracle`, a registry
/// mounted under a path); a query, a fragment or user info is refused. The URL itself is not
/// echoed: it could carry user info.
fn parse_base(url: &str) -> Result<(String, Uri), &'static str> {
    let uri: Uri = url
        .trim_end_matches('/')
        .parse()
        .map_err(|_| "the url is not a valid URL")?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err("the url must start with http:// or https://");
    }
    let Some(authority) = uri.authority() else {
        return Err("the url has no host");
    };
    if authority.as_str().contains('@') {
        return Err("the url must not contain user info; use username and password_file");
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("the url has no host");
    }
    if uri.query().is_some() || url.contains('#') {
        return Err("the url must not have a query or fragment");
    }
    let path = uri.path().trim_end_matches('/');
    if !valid_base_path(path) {
        return Err("the url's path must be plain segments (letters, digits, '.', '_', '-')");
    }
    // wharf adds `/v2/` itself; a URL ending in it would ask for `/v2/v2/...`.
    if path.rsplit('/').next() == Some("v2") {
        return Err("the url must not end in /v2: wharf adds it");
    }
    let origin = format!("{}://{}", uri.scheme_str().unwrap_or("https"), authority);
    let base_uri = origin.parse().map_err(|_| "the url is not a valid URL")?;
    Ok((format!("{origin}{path}"), base_uri))
}

/// Whether `url` can be an upstream's URL (`http(s)://host[:port][/path]`), and if not, why: the
/// rules [`Client::new`] applies, for configuration checks.
pub fn check_url(url: &str) -> Result<(), &'static str> {
    parse_base(url).map(drop)
}

/// Empty, or `/seg[/seg...]` with no `.`/`..` segment and nothing that percent-decodes or ends
/// a path differently on the upstream than here.
fn valid_base_path(path: &str) -> bool {
    path.is_empty()
        || path.strip_prefix('/').is_some_and(|rest| {
            rest.split('/').all(|s| {
                !s.is_empty()
                    && s != "."
                    && s != ".."
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        let ok = |u: &str| parse_base(u).map(|(b, _)| b);
        assert_eq!(ok("https://quay.io").as_deref(), Ok("https://quay.io"));
        assert_eq!(
            ok("http://127.0.0.1:5000/").as_deref(),
            Ok("http://127.0.0.1:5000")
        );
        assert!(ok("https://user:secret@quay.io").is_err());
        assert!(ok("ftp://quay.io").is_err());
        assert_eq!(
            ok("http://regional:5000/oracle/").as_deref(),
            Ok("http://regional:5000/oracle")
        );
        assert_eq!(
            ok("https://registry.example.com/mirror/quay").as_deref(),
            Ok("https://registry.example.com/mirror/quay")
        );
        assert!(ok("https://quay.io/v2").is_err());
        assert!(ok("https://quay.io/a/../b").is_err());
        assert!(ok("https://quay.io/a%2fb").is_err());
        assert!(ok("https://quay.io/a?x=1").is_err());
        assert!(ok("https://quay.io/a#x").is_err());
        assert!(ok("quay.io").is_err());
        let err = ok("https://user:hunter2@quay.io").expect_err("user info");
        assert!(!err.contains("hunter2"));
    }

    #[test]
    fn a_path_is_not_part_of_the_origin() {
        let (base, origin) = parse_base("http://regional:5000/oracle").expect("parses");
        assert_eq!(base, "http://regional:5000/oracle");
        assert_eq!(origin.to_string(), "http://regional:5000/");
        assert_eq!(origin.host(), Some("regional"));
    }
}
