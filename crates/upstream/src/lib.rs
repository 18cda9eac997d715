//! Client for remote registries.
//!
//! One [`Client`] per configured upstream: a pooled hyper-util client over rustls (system roots or
//! a CA file, whose certificates also pin a server presenting one of them: `pin.rs`), the Bearer
//! token flow with a token cache per scope and plain Basic auth, redirects followed here (never
//! passed to wharf's clients, `Authorization` dropped across hosts), and connect and
//! response-header timeouts so a hung upstream never hangs a caller.
//!
//! This crate knows nothing of the store.
//!
//! One request's way through (see `PROTOCOL.md` §1.7 and §2):
//!
//! ```text
//! Client::{manifest, blob, tags}  (client.rs; the flow itself is client/flow.rs)
//!   -> endpoints::Endpoints::order  which URL (`url`, then `mirrors`): not in back-off, fastest;
//!                                 a connect error, timeout, broken connection, 5xx or 429
//!                                 there sends the request once more to the next URL
//!   -> auth::Auth::proactive      Basic if this upstream asked for it before, or a cached
//!                                 Bearer token for the repository's scope
//!   -> transport::Transport::send one hop per redirect (at most 5), each bounded by
//!                                 `response_timeout`; `Authorization` dropped once the origin changes
//!   -> 401 from the upstream's own origin?
//!        parse every WWW-Authenticate challenge (challenge.rs), prefer Bearer:
//!          token from the realm (token.rs; credentials only to trusted realms, realm.rs),
//!          cached per (realm, service, scopes); or Basic with the configured credentials
//!        and send once more; a second 401 is an error
//!   -> 2xx: Response (body unread: the caller streams it); anything else: Error (error.rs)
//! ```

mod auth;
pub mod challenge;
mod client;
mod endpoints;
mod error;
mod lookaside;
mod pin;
mod realm;
pub mod redirect;
mod tls;
mod token;
mod transport;
mod x509;

use std::path::PathBuf;
use std::time::Duration;

pub use client::{Client, check_url};
pub use error::{Error, MAX_REPORTED_MESSAGE, RedirectProblem, Reported, TimeoutPhase};
pub use hyper::body::Incoming as Body;
pub use lookaside::Lookaside;
pub use transport::{incoming_via, with_incoming_via};

/// A secret read from a file or the environment. Never printed: `Debug` and `Display` redact it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How to reach one upstream registry.
#[derive(Debug, Clone)]
pub struct Config {
    /// Short name, used in logs, errors and metric labels.
    pub name: String,
    /// Base URL: `http(s)://host[:port][/path]`; requests go to `<path>/v2/...` (a path is a
    /// regional wharf's prefix, or a registry mounted under a path).
    pub url: String,
    /// More URLs with the same content (its mirrors), same forms as `url`: a request goes to
    /// the healthiest, fastest one and fails over to the next (`endpoints.rs`).
    pub mirrors: Vec<String>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// Extra trusted CA certificates (PEM) for this upstream, on top of the system roots. A server
    /// whose own certificate is one of them is accepted even where webpki wants a chain (a
    /// self-signed `CA:TRUE` certificate, as `openssl req -x509` makes): pinned, as Go clients do.
    pub ca_file: Option<PathBuf>,
    pub connect_timeout: Duration,
    /// Time allowed from sending a request until the response headers arrive.
    pub response_timeout: Duration,
}

/// A successful (2xx) upstream response, after auth and redirects.
///
/// The body has not been read; reading it (and bounding that in time) is the caller's business.
pub struct Response {
    /// `host[:port]` of the configured URL that answered (for [`Client::url_failed`]).
    pub url: String,
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub body: Body,
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}
