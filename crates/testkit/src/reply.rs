//! What a handler answers: a status, headers and a body, optionally late or never.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};

/// An answer. Built by chaining: `Reply::new(429).header("retry-after", "7").body(json)`.
#[derive(Debug, Clone)]
pub struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) body: Bytes,
    pub(crate) delay: Duration,
    pub(crate) hang: bool,
}

impl Reply {
    /// An empty answer with this status.
    ///
    /// # Panics
    /// On a status outside 100..=999: a bug in the test.
    pub fn new(status: u16) -> Reply {
        Reply {
            status: StatusCode::from_u16(status).expect("a valid status code"),
            headers: Vec::new(),
            body: Bytes::new(),
            delay: Duration::ZERO,
            hang: false,
        }
    }

    /// `200` with `body`.
    pub fn ok(body: impl Into<Bytes>) -> Reply {
        Reply::new(200).body(body)
    }

    /// An OCI error body (`{"errors":[{"code":..}]}`) with this status.
    pub fn oci_error(status: u16, code: &str) -> Reply {
        let body = serde_json::json!({"errors": [{"code": code, "message": "fake registry"}]});
        Reply::new(status)
            .header("content-type", "application/json")
            .body(body.to_string())
    }

    /// Never answers: the request stays open until the client gives up or the fake stops.
    pub fn hang() -> Reply {
        Reply {
            hang: true,
            ..Reply::new(200)
        }
    }

    /// Adds a header (several with one name are all sent).
    ///
    /// # Panics
    /// On a name or value that is not valid HTTP: a bug in the test.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        let name = HeaderName::from_bytes(name.as_bytes()).expect("a valid header name");
        let value = HeaderValue::from_str(value).expect("a valid header value");
        self.headers.push((name, value));
        self
    }

    /// Adds each `(name, value)`.
    pub fn headers(self, headers: &[(&str, &str)]) -> Reply {
        headers
            .iter()
            .fold(self, |reply, (name, value)| reply.header(name, value))
    }

    pub fn body(mut self, body: impl Into<Bytes>) -> Reply {
        self.body = body.into();
        self
    }

    /// Answers after `delay` (on the fake's clock, which is real time).
    pub fn delay(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }

    pub fn status(&self) -> u16 {
        self.status.as_u16()
    }
}
