//! Why an upstream request failed, and the questions callers ask of it.
//!
//! Every variant names the upstream (`Config::name`). Messages are for humans and logs: they carry
//! hosts, request paths and OCI error codes, never a password, a token, an `Authorization` value or
//! the query string of a redirect target (those are signed URLs).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Which wait ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutPhase {
    /// Opening the TCP connection (`Config::connect_timeout`).
    Connect,
    /// From sending the request until the response headers arrived (`Config::response_timeout`).
    ResponseHeaders,
    /// Reading a small body this crate reads itself (a token response), also bounded by
    /// `Config::response_timeout`.
    Body,
}

impl fmt::Display for TimeoutPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimeoutPhase::Connect => "connecting",
            TimeoutPhase::ResponseHeaders => "waiting for response headers",
            TimeoutPhase::Body => "reading the response body",
        })
    }
}

/// What was wrong with a redirect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedirectProblem {
    #[error("more than {0} redirects")]
    TooMany(usize),
    #[error("a {0} redirect without a Location header")]
    MissingLocation(u16),
    #[error("a redirect to an unusable Location ({0})")]
    BadLocation(String),
}

/// What the upstream said in its OCI error body: the first entry's `code` and `message`,
/// vetted (`oci_error`), so a registry or a wharf behind this one can be quoted to clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reported {
    /// `MANIFEST_UNKNOWN`, ...: uppercase letters, digits and `_`, at most 64 characters.
    pub code: String,
    /// One line of printable ASCII, at most [`MAX_REPORTED_MESSAGE`] bytes; empty if none.
    pub message: String,
}

/// The most of an upstream's error message that is kept (bytes); a longer one ends in `...`.
pub const MAX_REPORTED_MESSAGE: usize = 512;

/// Why an upstream request failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("upstream {upstream}: invalid configuration: {reason}")]
    Config { upstream: String, reason: String },

    #[error("upstream {upstream}: cannot use CA file {}: {reason}", path.display())]
    CaFile {
        upstream: String,
        path: PathBuf,
        reason: String,
    },

    #[error("upstream {upstream}: cannot build the request: {reason}")]
    InvalidRequest { upstream: String, reason: String },

    #[error("upstream {upstream}: cannot connect to {host}: {reason}")]
    Connect {
        upstream: String,
        host: String,
        reason: String,
    },

    #[error("upstream {upstream}: TLS with {host} failed: {reason}")]
    Tls {
        upstream: String,
        host: String,
        reason: String,
    },

    #[error("upstream {upstream}: timed out after {after:?} {phase} ({host})")]
    Timeout {
        upstream: String,
        host: String,
        phase: TimeoutPhase,
        after: Duration,
    },

    /// The connection broke or the peer spoke bad HTTP after connecting.
    #[error("upstream {upstream}: request to {host} failed: {reason}")]
    Transport {
        upstream: String,
        host: String,
        reason: String,
    },

    #[error(
        "upstream {upstream}: {request}: unauthorized ({reason}){}",
        code_suffix(code)
    )]
    Unauthorized {
        upstream: String,
        request: String,
        reason: String,
        code: Option<Reported>,
    },

    #[error(
        "upstream {upstream}: {request}: access denied (403){}",
        code_suffix(code)
    )]
    Denied {
        upstream: String,
        request: String,
        code: Option<Reported>,
    },

    #[error("upstream {upstream}: {request}: not found (404){}", code_suffix(code))]
    NotFound {
        upstream: String,
        request: String,
        code: Option<Reported>,
    },

    #[error(
        "upstream {upstream}: {request}: rate limited (429){}{}",
        code_suffix(code),
        retry_suffix(*retry_after)
    )]
    RateLimited {
        upstream: String,
        request: String,
        retry_after: Option<u64>,
        code: Option<Reported>,
    },

    #[error("upstream {upstream}: {request}: status {status}{}", code_suffix(code))]
    Status {
        upstream: String,
        request: String,
        status: u16,
        code: Option<Reported>,
    },

    /// The realm answered, but not with a usable token.
    #[error("upstream {upstream}: token request to {realm_host} failed: {reason}")]
    TokenFetch {
        upstream: String,
        realm_host: String,
        status: Option<u16>,
        reason: String,
    },

    #[error("upstream {upstream}: {request}: {problem}")]
    Redirect {
        upstream: String,
        request: String,
        problem: RedirectProblem,
    },

    /// The upstream pointed at a token realm wharf will not use.
    #[error("upstream {upstream}: refused token realm {realm}: {reason}")]
    RealmRefused {
        upstream: String,
        realm: String,
        reason: String,
    },
}

fn code_suffix(code: &Option<Reported>) -> String {
    match code {
        Some(r) if r.message.is_empty() => format!(" {}", r.code),
        Some(r) => format!(" {}: {}", r.code, r.message),
        None => String::new(),
    }
}

fn retry_suffix(retry_after: Option<u64>) -> String {
    retry_after
        .map(|s| format!(", retry after {s}s"))
        .unwrap_or_default()
}

impl Error {
    /// The upstream's configured name.
    pub fn upstream(&self) -> &str {
        match self {
            Error::Config { upstream, .. }
            | Error::CaFile { upstream, .. }
            | Error::InvalidRequest { upstream, .. }
            | Error::Connect { upstream, .. }
            | Error::Tls { upstream, .. }
            | Error::Timeout { upstream, .. }
            | Error::Transport { upstream, .. }
            | Error::Unauthorized { upstream, .. }
            | Error::Denied { upstream, .. }
            | Error::NotFound { upstream, .. }
            | Error::RateLimited { upstream, .. }
            | Error::Status { upstream, .. }
            | Error::TokenFetch { upstream, .. }
            | Error::Redirect { upstream, .. }
            | Error::RealmRefused { upstream, .. } => upstream,
        }
    }

    /// The registry's HTTP status, for errors that are an upstream answer (not the token realm's).
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Unauthorized { .. } => Some(401),
            Error::Denied { .. } => Some(403),
            Error::NotFound { .. } => Some(404),
            Error::RateLimited { .. } => Some(429),
            Error::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The OCI error `code` from the upstream's JSON body (`MANIFEST_UNKNOWN`, ...), if it sent one.
    pub fn code(&self) -> Option<&str> {
        self.reported().map(|r| r.code.as_str())
    }

    /// The upstream's own OCI error (code and message), if its answer carried one.
    pub fn reported(&self) -> Option<&Reported> {
        match self {
            Error::Unauthorized { code, .. }
            | Error::Denied { code, .. }
            | Error::NotFound { code, .. }
            | Error::RateLimited { code, .. }
            | Error::Status { code, .. } => code.as_ref(),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    /// The upstream wants credentials it did not get (or refused the ones it got), including a
    /// realm that answered 401 to the token request.
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, Error::Unauthorized { .. })
            || matches!(
                self,
                Error::TokenFetch {
                    status: Some(401),
                    ..
                }
            )
    }

    /// 403: authenticated, but not allowed.
    pub fn is_denied(&self) -> bool {
        matches!(self, Error::Denied { .. })
            || matches!(
                self,
                Error::TokenFetch {
                    status: Some(403),
                    ..
                }
            )
    }

    /// 429 from the registry or from its token realm.
    pub fn is_rate_limited(&self) -> bool {
        matches!(self, Error::RateLimited { .. })
            || matches!(
                self,
                Error::TokenFetch {
                    status: Some(429),
                    ..
                }
            )
    }

    /// Seconds from a 429's `Retry-After` (the delay-seconds form; an HTTP-date gives `None`).
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Error::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout { .. })
    }

    /// Another URL of the upstream (a mirror) might answer: the URL could not be reached, timed
    /// out, broke the connection, failed (5xx) or is rate-limiting (429). A token realm's
    /// failure is not the URL's.
    pub fn is_failover(&self) -> bool {
        match self {
            Error::Connect { .. }
            | Error::Tls { .. }
            | Error::Timeout { .. }
            | Error::Transport { .. }
            | Error::RateLimited { .. } => true,
            Error::Status { status, .. } => *status >= 500 && *status != 508,
            _ => false,
        }
    }

    /// The upstream is down or failing (connect, TLS, timeout, broken connection, 5xx, or a token
    /// realm answering 5xx): a caller may serve what it has instead.
    pub fn is_unreachable(&self) -> bool {
        match self {
            Error::Connect { .. }
            | Error::Tls { .. }
            | Error::Timeout { .. }
            | Error::Transport { .. } => true,
            // 508: a loop (another wharf saw its own Via) is a configuration error, not an
            // outage: no back-off and no stale answer hide it.
            Error::Status { status, .. } => *status >= 500 && *status != 508,
            Error::TokenFetch {
                status: Some(status),
                ..
            } => *status >= 500,
            _ => false,
        }
    }
}

/// The first OCI error in a JSON error body (`{"errors":[{"code":"...","message":"..."}]}`).
///
/// Only codes of the spec's shape (uppercase letters, digits, underscores, at most 64 characters)
/// are kept, and the message is made one line of printable ASCII and cut at
/// [`MAX_REPORTED_MESSAGE`]: both end up in messages, logs and status lines, and the body is the
/// upstream's to choose.
pub(crate) fn oci_error(body: &[u8]) -> Option<Reported> {
    #[derive(serde::Deserialize)]
    struct Body {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        code: Option<String>,
        message: Option<String>,
    }
    let body: Body = serde_json::from_slice(body).ok()?;
    let (code, message) = body
        .errors
        .into_iter()
        .find_map(|e| Some((e.code?, e.message)))?;
    let plausible = !code.is_empty()
        && code.len() <= 64
        && code
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    plausible.then(|| Reported {
        code,
        message: wharf_oci::one_line(message.as_deref().unwrap_or_default(), MAX_REPORTED_MESSAGE),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_parsed_and_vetted() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#;
        assert_eq!(
            oci_error(body),
            Some(Reported {
                code: "MANIFEST_UNKNOWN".into(),
                message: "manifest unknown".into()
            })
        );
        assert_eq!(oci_error(br#"{"errors":[{"code":"<script>"}]}"#), None);
        assert_eq!(oci_error(b"not json"), None);
        assert_eq!(oci_error(br#"{"errors":[]}"#), None);
        let no_message = oci_error(br#"{"errors":[{"code":"DENIED"}]}"#).expect("code");
        assert_eq!(no_message.message, "");
    }

    #[test]
    fn messages_are_one_bounded_line() {
        let body = format!(
            r#"{{"errors":[{{"code":"UNKNOWN","message":"a\r\nforged: line\u00e9 {}"}}]}}"#,
            "x".repeat(2 * MAX_REPORTED_MESSAGE)
        );
        let r = oci_error(body.as_bytes()).expect("parses");
        assert!(r.message.starts_with("a forged: line? x"), "{}", r.message);
        assert_eq!(r.message.len(), MAX_REPORTED_MESSAGE);
        assert!(r.message.ends_with("..."));
    }

    #[test]
    fn questions() {
        let e = Error::Status {
            upstream: "u".into(),
            request: "GET /v2/x/manifests/y".into(),
            status: 503,
            code: None,
        };
        assert!(e.is_unreachable());
        assert_eq!(e.status(), Some(503));
        let e = Error::RateLimited {
            upstream: "u".into(),
            request: "GET /v2/x/manifests/y".into(),
            retry_after: Some(7),
            code: Some(Reported {
                code: "TOOMANYREQUESTS".into(),
                message: String::new(),
            }),
        };
        assert!(e.is_rate_limited() && !e.is_unreachable());
        assert_eq!(e.retry_after(), Some(7));
        assert_eq!(
            e.to_string(),
            "upstream u: GET /v2/x/manifests/y: rate limited (429) TOOMANYREQUESTS, retry after 7s"
        );
    }
}
