//! Every refusal and failure a request can meet, and the one place that turns them into an
//! answer: status, headers and OCI error JSON ([`ProxyError::into_response`]).
//!
//! No handler sets an error status or header itself: a 401's challenge, a 416's
//! `Content-Range`, a 429's `Retry-After`, 413 and 414 are all chosen here, from the variant.
//!
//! The message reaches the person at the client, not only the JSON body that the clients do
//! not print for a 5xx (containers/image and Docker read the body of a 4xx only; ctr's
//! resolver asks with HEAD, which has none). Every error answer carries it twice:
//!
//! - in the HTTP/1 status line's reason phrase (`502 Bad Gateway: upstream oracle: cannot
//!   connect to ...`): Go's clients keep the phrase the server sent in `Response.Status` and
//!   print that, so podman, skopeo, ctr and Docker show it (HTTP/2 has no reason phrase);
//! - in `Warning: 299 - "<message>"`, the form distribution-spec allows, which newer
//!   containers/image releases print as a warning ("Warning from registry"), on HTTP/2 too
//!   (the podman 4.3, skopeo 1.9, ctr 1.6 and dockerd 20.10 of Debian 12 do not).
//!
//! Both are one line of printable ASCII, at most [`MAX_REASON_LEN`] bytes of the message; the
//! messages are written for the client already and never hold a secret.

use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use wharf_oci::{ErrorCode, NameError, error_json};

use crate::body::{self, Body};
use crate::limits::{MAX_QUERY_LEN, MAX_REQUEST_BODY};
use crate::route::{MAX_PATH_LEN, RouteError};
use crate::upstreams::NoUpstream;

/// What `WWW-Authenticate` says on every 401 of wharf's own (not on an upstream's).
pub const CHALLENGE: &str = r#"Basic realm="wharf""#;

/// The most of a message that goes into a reason phrase or a `Warning` (bytes, before
/// escaping); a longer one is cut and ends in `...`. The JSON body keeps all of it.
pub(crate) const MAX_REASON_LEN: usize = 300;

/// What was asked for, so an upstream "not found" becomes the right code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    Manifest,
    Blob,
    Name,
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// A client-side problem or a plain answer, with the spec's code and its usual status.
    #[error("{message}")]
    Oci { code: ErrorCode, message: String },
    /// The path or query is longer than any request wharf answers: 414.
    #[error(
        "the request URI is too long (path at most {MAX_PATH_LEN} bytes, query at most {MAX_QUERY_LEN})"
    )]
    UriTooLong,
    /// Bytes on a connection that are not an HTTP request wharf can read (garbage, a TLS
    /// handshake on the plain port, HTTP/0.9, plain HTTP on the TLS port): 400.
    #[error("{message}")]
    BadRequest { message: String },
    /// A pull request (GET or HEAD) that carries, or may carry, a body: 413.
    #[error("a pull request carries no body (at most {MAX_REQUEST_BODY} bytes)")]
    BodyTooLarge,
    /// The path is not a registry API request, or its name, tag or digest is malformed.
    #[error("{}", route_message(.0))]
    Route(RouteError),
    /// No configured upstream serves the name (wharf is not an open proxy).
    #[error("{}", .0.0)]
    NoUpstream(NoUpstream),
    /// The client's credentials are missing or wrong: 401 with wharf's own challenge.
    #[error("{message}")]
    Unauthenticated { message: String },
    /// A `tags/list` page size (`n`) that is not a non-negative integer a registry can read, or
    /// that the upstream refused: 400 `PAGINATION_NUMBER_INVALID`.
    #[error("n={n:?} is not a valid page size: {reason}")]
    PaginationInvalid { n: String, reason: String },
    /// A `Range` the blob cannot satisfy: 416 with `Content-Range: bytes */<size>`.
    #[error("the requested range is not satisfiable")]
    RangeNotSatisfiable { size: u64 },
    #[error("{source}")]
    Upstream {
        missing: Missing,
        #[source]
        source: wharf_upstream::Error,
    },
    /// Content wharf does not have, while its upstream's back-off window is open: not asked
    /// for; 429 if a 429 opened the window, else 503, with the time left as `Retry-After`.
    #[error(
        "upstream {upstream} is {}; wharf will not ask it again for {retry_after} s{}",
        if *.rate_limited { "rate-limiting requests" } else { "failing" },
        .reason.as_deref().map(|r| format!(" (last: {r})")).unwrap_or_default()
    )]
    BackingOff {
        upstream: String,
        retry_after: u64,
        rate_limited: bool,
        reason: Option<std::sync::Arc<str>>,
    },
    /// The upstream answered, but with something wharf will not serve.
    #[error("upstream {upstream}: {message}")]
    BadUpstreamAnswer { upstream: String, message: String },
    #[error("fetching from upstream {upstream} failed: {source}")]
    Fill {
        upstream: String,
        missing: Missing,
        #[source]
        source: wharf_cache::FillError,
    },
    #[error("store: {0}")]
    Store(#[from] wharf_cache::StoreError),
    /// An upload chunk that does not start where the upload ends, or a `Content-Range` that
    /// is no range: 416 `RANGE_INVALID` (distribution's code) with the upload's `Location`,
    /// `Range: 0-<last>` and id, so the client can go on from there (the spec's 416).
    #[error("{message}")]
    UploadRange {
        location: String,
        session: String,
        range: String,
        message: String,
    },
    /// A pushed manifest names content its repository does not hold: 400
    /// `MANIFEST_BLOB_UNKNOWN` with `detail: {"digest": ...}`, as the spec shows it.
    #[error("{message}")]
    ManifestBlobUnknown {
        digest: wharf_oci::Digest,
        message: String,
    },
    /// A pushed manifest larger than wharf takes: 413 `MANIFEST_INVALID`.
    #[error("the manifest is larger than {limit} bytes")]
    ManifestTooLarge { limit: usize },
    /// The hosted store's disk is full: 507 Insufficient Storage (RFC 4918); nothing stored
    /// before is lost.
    #[error("{message}")]
    InsufficientStorage { message: String },
    /// `Cache-Control: only-if-cached` for content wharf does not hold: 504 (RFC 9111 section
    /// 5.2.1.7), the upstream not asked.
    #[error(
        "blob {digest} is not cached here, and the request asked for a cached answer only (Cache-Control: only-if-cached)"
    )]
    NotCached { digest: wharf_oci::Digest },
    /// The request's `Via` names this wharf: one of its upstream URLs leads back to it. 508
    /// Loop Detected (RFC 5842) at once, rather than a chain of requests that ends in timeouts.
    #[error(
        "request loop: this wharf ({pseudonym}) already forwarded this request; an upstream url leads back to it"
    )]
    Loop { pseudonym: String },
    /// A peer asked for a blob this replica neither holds nor owns (the two disagree about the
    /// peer list, or a replica reached itself under another name): 421 Misdirected Request at
    /// once, and the peer fills from the upstream, rather than two fills waiting on each other.
    #[error(
        "blob {digest}: this replica is not its owner (peer {owner} is); fill it from the upstream"
    )]
    NotOwner {
        digest: wharf_oci::Digest,
        owner: String,
    },
}

impl From<RouteError> for ProxyError {
    fn from(e: RouteError) -> Self {
        ProxyError::Route(e)
    }
}

impl From<NoUpstream> for ProxyError {
    fn from(e: NoUpstream) -> Self {
        ProxyError::NoUpstream(e)
    }
}

fn route_message(e: &RouteError) -> String {
    match e {
        RouteError::NotFound => "not a registry API path".to_owned(),
        RouteError::Name(e) => e.to_string(),
        RouteError::NotATag(r) => {
            format!("manifest unknown: {r:?} is neither a digest nor a valid tag")
        }
    }
}

/// How an error is answered, besides its message.
struct Answer {
    status: StatusCode,
    code: ErrorCode,
    retry_after: Option<u64>,
}

impl Answer {
    fn new(status: StatusCode, code: ErrorCode) -> Answer {
        Answer {
            status,
            code,
            retry_after: None,
        }
    }

    /// The code with the status the spec gives it.
    fn code(code: ErrorCode) -> Answer {
        let status =
            StatusCode::from_u16(code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Answer::new(status, code)
    }
}

impl ProxyError {
    pub fn oci(code: ErrorCode, message: impl Into<String>) -> Self {
        ProxyError::Oci {
            code,
            message: message.into(),
        }
    }

    /// Refuses to ask `upstream` while its back-off window is open (`freshness.rs`).
    pub(crate) fn backing_off(upstream: &crate::Upstream) -> Result<(), ProxyError> {
        match upstream.backoff.open() {
            Some(w) => Err(ProxyError::BackingOff {
                upstream: upstream.name.clone(),
                // Whole seconds, rounded up: a client that waits them finds the window closed.
                retry_after: w
                    .remaining()
                    .map_or(1, |d| d.as_millis().div_ceil(1000) as u64),
                rate_limited: w.rate_limited,
                reason: w.reason,
            }),
            None => Ok(()),
        }
    }

    pub fn upstream(missing: Missing) -> impl FnOnce(wharf_upstream::Error) -> Self {
        move |source| ProxyError::Upstream { missing, source }
    }

    /// Whether this is an answer about the request itself (the client's doing, or a plain
    /// "not here"), rather than a failure of wharf or its upstream worth a warning.
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            ProxyError::Oci { .. }
                | ProxyError::UriTooLong
                | ProxyError::BodyTooLarge
                | ProxyError::BadRequest { .. }
                | ProxyError::Route(_)
                | ProxyError::NoUpstream(_)
                | ProxyError::Unauthenticated { .. }
                | ProxyError::PaginationInvalid { .. }
                | ProxyError::RangeNotSatisfiable { .. }
                | ProxyError::BackingOff { .. }
                | ProxyError::UploadRange { .. }
                | ProxyError::ManifestBlobUnknown { .. }
                | ProxyError::ManifestTooLarge { .. }
                | ProxyError::NotCached { .. }
        )
    }

    /// The status this error is answered with.
    pub fn status(&self) -> StatusCode {
        self.answer().status
    }

    /// The status, code and `Retry-After` this error is answered with.
    fn answer(&self) -> Answer {
        match self {
            ProxyError::Oci { code, .. } => Answer::code(*code),
            ProxyError::UriTooLong => Answer::new(StatusCode::URI_TOO_LONG, ErrorCode::NameInvalid),
            ProxyError::BodyTooLarge => {
                Answer::new(StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::SizeInvalid)
            }
            ProxyError::BadRequest { .. } => {
                Answer::new(StatusCode::BAD_REQUEST, ErrorCode::Unsupported)
            }
            ProxyError::Route(RouteError::NotFound) => Answer::code(ErrorCode::NameUnknown),
            ProxyError::Route(RouteError::NotATag(_)) => Answer::code(ErrorCode::ManifestUnknown),
            ProxyError::Route(RouteError::Name(e)) => Answer::code(match e {
                NameError::InvalidDigest(_) => ErrorCode::DigestInvalid,
                NameError::InvalidTag(_) => ErrorCode::TagInvalid,
                _ => ErrorCode::NameInvalid,
            }),
            ProxyError::NoUpstream(_) => Answer::code(ErrorCode::NameUnknown),
            ProxyError::Unauthenticated { .. } => Answer::code(ErrorCode::Unauthorized),
            ProxyError::PaginationInvalid { .. } => {
                Answer::code(ErrorCode::PaginationNumberInvalid)
            }
            ProxyError::RangeNotSatisfiable { .. } => Answer::code(ErrorCode::RangeInvalid),
            ProxyError::BackingOff {
                retry_after,
                rate_limited,
                ..
            } => Answer {
                retry_after: Some(*retry_after),
                ..if *rate_limited {
                    Answer::code(ErrorCode::TooManyRequests)
                } else {
                    Answer::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable)
                }
            },
            ProxyError::Upstream { missing, source } => answer_upstream(*missing, source),
            ProxyError::BadUpstreamAnswer { .. } => {
                Answer::new(StatusCode::BAD_GATEWAY, ErrorCode::Unavailable)
            }
            ProxyError::Fill {
                missing, source, ..
            } => {
                match source
                    .source_error()
                    .and_then(|e| e.downcast_ref::<wharf_upstream::Error>())
                {
                    Some(up) => answer_upstream(*missing, up),
                    None if source.is_timeout() => {
                        Answer::new(StatusCode::GATEWAY_TIMEOUT, ErrorCode::Unavailable)
                    }
                    None => Answer::new(StatusCode::BAD_GATEWAY, ErrorCode::Unavailable),
                }
            }
            ProxyError::Store(_) => Answer::code(ErrorCode::Unknown),
            ProxyError::UploadRange { .. } => Answer::code(ErrorCode::RangeInvalid),
            ProxyError::ManifestBlobUnknown { .. } => Answer::code(ErrorCode::ManifestBlobUnknown),
            ProxyError::ManifestTooLarge { .. } => {
                Answer::new(StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::ManifestInvalid)
            }
            ProxyError::InsufficientStorage { .. } => {
                Answer::new(StatusCode::INSUFFICIENT_STORAGE, ErrorCode::Unknown)
            }
            ProxyError::Loop { .. } => Answer::new(StatusCode::LOOP_DETECTED, ErrorCode::Unknown),
            ProxyError::NotOwner { .. } => {
                Answer::new(StatusCode::MISDIRECTED_REQUEST, ErrorCode::Unavailable)
            }
            ProxyError::NotCached { .. } => {
                Answer::new(StatusCode::GATEWAY_TIMEOUT, ErrorCode::BlobUnknown)
            }
        }
    }

    /// Headers that belong to the variant: the challenge, the satisfiable range, the wait.
    fn add_headers(&self, answer: &Answer, h: &mut HeaderMap) {
        match self {
            ProxyError::Unauthenticated { .. } => {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(CHALLENGE),
                );
            }
            ProxyError::RangeNotSatisfiable { size } => {
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    h.insert(header::CONTENT_RANGE, v);
                }
            }
            ProxyError::UploadRange {
                location,
                session,
                range,
                ..
            } => {
                for (name, value) in [
                    (header::LOCATION.as_str(), location),
                    (header::RANGE.as_str(), range),
                    ("docker-upload-uuid", session),
                ] {
                    if let Ok(v) = HeaderValue::from_str(value) {
                        h.insert(name, v);
                    }
                }
            }
            _ => {}
        }
        if let Some(secs) = answer.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
    }

    /// Renders the error for the wire: status (with the message as its reason phrase),
    /// headers (with the message as a `Warning`) and the spec's error JSON. HEAD responses
    /// carry the status and headers only.
    pub fn into_response(self, head: bool) -> Response<Body> {
        let answer = self.answer();
        let message = self.client_message();
        let detail = match &self {
            ProxyError::ManifestBlobUnknown { digest, .. } => {
                Some(serde_json::json!({ "digest": digest.to_string() }))
            }
            _ => None,
        };
        let text = error_json(answer.code, &message, detail.as_ref());
        let len = text.len();
        let mut resp = Response::new(if head {
            body::empty()
        } else {
            body::full(text)
        });
        *resp.status_mut() = answer.status;
        if let Some(phrase) = reason_phrase(answer.status, &message) {
            resp.extensions_mut().insert(phrase);
        }
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        if let Some(w) = warning(&message) {
            h.append(header::WARNING, w);
        }
        self.add_headers(&answer, h);
        resp
    }
}

mod upstream;
mod wire;

use upstream::answer_upstream;
use wire::reason_phrase;
pub(crate) use wire::warning;

#[cfg(test)]
mod tests;
