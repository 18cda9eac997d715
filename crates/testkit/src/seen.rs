//! One request as the fake registry saw it, recorded on arrival (before it is answered), so a
//! test can tell a request that is being held from one that never came.

use std::net::SocketAddr;

use http::{HeaderMap, Method};

/// A recorded request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    /// The path, without the query.
    pub path: String,
    /// The query, without `?`; empty if none.
    pub query: String,
    pub headers: HeaderMap,
    /// The fake's own address: handlers use it for token realms and redirects.
    pub local_addr: SocketAddr,
}

impl Seen {
    /// A header's value, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn authorization(&self) -> Option<&str> {
        self.header("authorization")
    }

    /// `GET` or `HEAD` of the blob `digest`, in any repository.
    pub fn is_blob(&self, digest: &str) -> bool {
        self.path.ends_with(&format!("/blobs/{digest}"))
    }
}
