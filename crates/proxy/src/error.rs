//! Every error a request can meet, and the one place that renders them as OCI error JSON.

use http::{HeaderValue, Response, StatusCode, header};
use wharf_oci::{ErrorCode, error_json};

use crate::body::{self, Body};

/// What was asked for, so an upstream "not found" becomes the right code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    Manifest,
    Blob,
    Name,
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// A client-side problem or a plain answer, with the spec's code.
    #[error("{message}")]
    Oci { code: ErrorCode, message: String },
    #[error("{source}")]
    Upstream {
        missing: Missing,
        #[source]
        source: wharf_upstream::Error,
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
}

impl ProxyError {
    pub fn oci(code: ErrorCode, message: impl Into<String>) -> Self {
        ProxyError::Oci {
            code,
            message: message.into(),
        }
    }

    pub fn upstream(missing: Missing) -> impl FnOnce(wharf_upstream::Error) -> Self {
        move |source| ProxyError::Upstream { missing, source }
    }

    /// The status, code and extra headers this error is answered with.
    fn classify(&self) -> (StatusCode, ErrorCode, Option<u64>) {
        match self {
            ProxyError::Oci { code, .. } => (status(code.status()), *code, None),
            ProxyError::Upstream { missing, source } => classify_upstream(*missing, source),
            ProxyError::BadUpstreamAnswer { .. } => {
                (StatusCode::BAD_GATEWAY, ErrorCode::Unavailable, None)
            }
            ProxyError::Fill {
                missing, source, ..
            } => {
                match source
                    .source_error()
                    .and_then(|e| e.downcast_ref::<wharf_upstream::Error>())
                {
                    Some(up) => classify_upstream(*missing, up),
                    None if source.is_timeout() => {
                        (StatusCode::GATEWAY_TIMEOUT, ErrorCode::Unavailable, None)
                    }
                    None => (StatusCode::BAD_GATEWAY, ErrorCode::Unavailable, None),
                }
            }
            ProxyError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Unknown, None),
        }
    }

    /// Renders the error for the wire. HEAD responses carry the status and headers only.
    pub fn into_response(self, head: bool) -> Response<Body> {
        let (status, code, retry_after) = self.classify();
        let text = error_json(code, &self.to_string(), None);
        let len = text.len();
        let mut resp = Response::new(if head {
            body::empty()
        } else {
            body::full(text)
        });
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        if let Some(secs) = retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn classify_upstream(
    missing: Missing,
    e: &wharf_upstream::Error,
) -> (StatusCode, ErrorCode, Option<u64>) {
    if e.is_not_found() {
        let code = match missing {
            Missing::Manifest => ErrorCode::ManifestUnknown,
            Missing::Blob => ErrorCode::BlobUnknown,
            Missing::Name => ErrorCode::NameUnknown,
        };
        (StatusCode::NOT_FOUND, code, None)
    } else if e.is_unauthorized() {
        (StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, None)
    } else if e.is_denied() {
        (StatusCode::FORBIDDEN, ErrorCode::Denied, None)
    } else if e.is_rate_limited() {
        (
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::TooManyRequests,
            Some(e.retry_after().unwrap_or(60)),
        )
    } else if e.is_timeout() {
        (StatusCode::GATEWAY_TIMEOUT, ErrorCode::Unavailable, None)
    } else if e.status().is_some_and(|s| s == 503) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            None,
        )
    } else {
        (StatusCode::BAD_GATEWAY, ErrorCode::Unavailable, None)
    }
}
