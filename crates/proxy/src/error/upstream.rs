//! An upstream's failure as wharf's answer: the status and code chosen from what went wrong,
//! and, when the upstream answered with the spec's error JSON, its code and message passed on
//! unchanged (prefixed with the upstream's name), so a wharf behind a wharf, or behind any
//! registry, tells the client what the far end said.

use http::StatusCode;
use wharf_oci::ErrorCode;

use super::{Answer, Missing, ProxyError};

/// Upstream statuses a client gets as they are when the upstream named a spec code: answers
/// about the request itself (400, 403, 404, 405) and a loop (508). 401 and 429 keep wharf's own
/// handling; other 5xx stay wharf's 502/503/504 (the gateway's view of a failing upstream).
const PASSED_STATUSES: [u16; 5] = [400, 403, 404, 405, 508];

pub(super) fn answer_upstream(missing: Missing, e: &wharf_upstream::Error) -> Answer {
    let answer = own_answer(missing, e);
    let Some(code) = e.reported().and_then(|r| ErrorCode::parse(&r.code)) else {
        return answer;
    };
    let status = e
        .status()
        .filter(|s| PASSED_STATUSES.contains(s))
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(answer.status);
    Answer {
        status,
        code,
        ..answer
    }
}

/// The status and code wharf chooses from the kind of failure alone.
fn own_answer(missing: Missing, e: &wharf_upstream::Error) -> Answer {
    if e.is_not_found() {
        let code = match missing {
            Missing::Manifest => ErrorCode::ManifestUnknown,
            Missing::Blob => ErrorCode::BlobUnknown,
            Missing::Name => ErrorCode::NameUnknown,
        };
        Answer::new(StatusCode::NOT_FOUND, code)
    } else if e.is_unauthorized() {
        Answer::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized)
    } else if e.is_denied() {
        Answer::new(StatusCode::FORBIDDEN, ErrorCode::Denied)
    } else if e.is_rate_limited() {
        Answer {
            retry_after: Some(e.retry_after().unwrap_or(60)),
            ..Answer::new(StatusCode::TOO_MANY_REQUESTS, ErrorCode::TooManyRequests)
        }
    } else if e.is_timeout() {
        Answer::new(StatusCode::GATEWAY_TIMEOUT, ErrorCode::Unavailable)
    } else if e.status().is_some_and(|s| s == 503) {
        Answer::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable)
    } else {
        Answer::new(StatusCode::BAD_GATEWAY, ErrorCode::Unavailable)
    }
}

/// The upstream's own message, prefixed with its name (`upstream regional: no upstream is
/// configured for ...`), when it sent one in the spec's error JSON.
pub(super) fn reported_message(e: &wharf_upstream::Error) -> Option<String> {
    e.reported()
        .filter(|r| !r.message.is_empty())
        .map(|r| format!("upstream {}: {}", e.upstream(), r.message))
}

impl ProxyError {
    /// The message the client reads: the upstream's own words when it sent some (the full
    /// story, with the request, goes to the log through `Display`), else `Display`.
    pub(super) fn client_message(&self) -> String {
        let upstream_error = match self {
            ProxyError::Upstream { source, .. } => Some(source),
            ProxyError::Fill { source, .. } => source
                .source_error()
                .and_then(|e| e.downcast_ref::<wharf_upstream::Error>()),
            _ => None,
        };
        upstream_error
            .and_then(reported_message)
            .unwrap_or_else(|| self.to_string())
    }
}
