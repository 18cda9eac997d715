//! How a message travels besides the JSON body: the status line's reason phrase and the
//! `Warning` header, both one line of printable ASCII (see `error.rs`).

use http::{HeaderValue, StatusCode};
use hyper::ext::ReasonPhrase;

use super::MAX_REASON_LEN;

/// `message` as one line of printable ASCII of at most [`MAX_REASON_LEN`] bytes
/// ([`wharf_oci::one_line`]).
pub(super) fn one_line(message: &str) -> String {
    wharf_oci::one_line(message, MAX_REASON_LEN)
}

/// The status line's reason phrase: the status's own (`Bad Gateway`), then the message.
pub(super) fn reason_phrase(status: StatusCode, message: &str) -> Option<ReasonPhrase> {
    let message = one_line(message);
    let phrase = match status.canonical_reason() {
        Some(canonical) if !message.is_empty() => format!("{canonical}: {message}"),
        Some(canonical) => canonical.to_owned(),
        None => message,
    };
    ReasonPhrase::try_from(phrase).ok()
}

/// `Warning: 299 - "<text>"` (RFC 7234 section 5.5, as distribution-spec allows it: code 299,
/// no agent, no date), `text` made one line and quoted: `"` and `\` are escaped.
pub(crate) fn warning(text: &str) -> Option<HeaderValue> {
    let mut value = String::from("299 - \"");
    for c in one_line(text).chars() {
        if c == '"' || c == '\\' {
            value.push('\\');
        }
        value.push(c);
    }
    value.push('"');
    HeaderValue::from_str(&value).ok()
}
