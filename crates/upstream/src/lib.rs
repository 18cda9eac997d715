//! Client for remote registries.
//!
//! One [`Client`] per configured upstream: a pooled hyper-util client over rustls (system roots or
//! a CA file), the Bearer token flow with a token cache per scope and plain Basic auth, redirects
//! followed here (never passed to wharf's clients, `Authorization` dropped across hosts), and
//! connect and response-header timeouts so a hung upstream never hangs a caller.
//!
//! This crate knows nothing of the store.

use std::path::PathBuf;
use std::time::Duration;

pub use hyper::body::Incoming as Body;

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

/// How to reach one upstream registry.
#[derive(Debug, Clone)]
pub struct Config {
    /// Short name, used in logs, errors and metric labels.
    pub name: String,
    /// Base URL: `https://host[:port]` or `http://host[:port]`, no path.
    pub url: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// Extra trusted CA certificates (PEM) for this upstream, on top of the system roots.
    pub ca_file: Option<PathBuf>,
    pub connect_timeout: Duration,
    /// Time allowed from sending a request until the response headers arrive.
    pub response_timeout: Duration,
}

/// A successful (2xx) upstream response, after auth and redirects.
pub struct Response {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub body: Body,
}

/// Why an upstream request failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // Filled in by the upstream implementation; see the methods below.
}

pub struct Client {}

impl Client {
    pub fn new(_config: Config) -> Result<Self, Error> {
        todo!()
    }
}
