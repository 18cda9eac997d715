//! The spec's error codes and the one JSON shape they travel in.

use serde::Serialize;

/// Error codes of the distribution spec, plus the registry-world extensions wharf uses
/// (`UNAVAILABLE`, `RANGE_INVALID`, ...), each with the HTTP status distribution uses for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    TagInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    TooManyRequests,
    RangeInvalid,
    PaginationNumberInvalid,
    /// The upstream could not be reached or failed; 502/503/504 by cause.
    Unavailable,
    Unknown,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            BlobUnknown => "BLOB_UNKNOWN",
            BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            DigestInvalid => "DIGEST_INVALID",
            ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            ManifestInvalid => "MANIFEST_INVALID",
            ManifestUnknown => "MANIFEST_UNKNOWN",
            NameInvalid => "NAME_INVALID",
            NameUnknown => "NAME_UNKNOWN",
            SizeInvalid => "SIZE_INVALID",
            TagInvalid => "TAG_INVALID",
            Unauthorized => "UNAUTHORIZED",
            Denied => "DENIED",
            Unsupported => "UNSUPPORTED",
            TooManyRequests => "TOOMANYREQUESTS",
            RangeInvalid => "RANGE_INVALID",
            PaginationNumberInvalid => "PAGINATION_NUMBER_INVALID",
            Unavailable => "UNAVAILABLE",
            Unknown => "UNKNOWN",
        }
    }

    /// Every code, in declaration order.
    pub const ALL: [ErrorCode; 19] = {
        use ErrorCode::*;
        [
            BlobUnknown,
            BlobUploadInvalid,
            BlobUploadUnknown,
            DigestInvalid,
            ManifestBlobUnknown,
            ManifestInvalid,
            ManifestUnknown,
            NameInvalid,
            NameUnknown,
            SizeInvalid,
            TagInvalid,
            Unauthorized,
            Denied,
            Unsupported,
            TooManyRequests,
            RangeInvalid,
            PaginationNumberInvalid,
            Unavailable,
            Unknown,
        ]
    };

    /// The code named `s` (`"NAME_UNKNOWN"`), if it is one of these.
    pub fn parse(s: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// The status distribution answers with. `Unavailable` defaults to 503; callers that know
    /// better (a gateway timeout, a bad upstream answer) choose 504 or 502 themselves.
    pub fn status(self) -> u16 {
        use ErrorCode::*;
        match self {
            BlobUnknown | BlobUploadInvalid | BlobUploadUnknown | ManifestUnknown | NameUnknown => {
                404
            }
            DigestInvalid
            | ManifestBlobUnknown
            | ManifestInvalid
            | NameInvalid
            | SizeInvalid
            | TagInvalid
            | PaginationNumberInvalid => 400,
            Unauthorized => 401,
            Denied => 403,
            Unsupported => 405,
            RangeInvalid => 416,
            TooManyRequests => 429,
            Unavailable => 503,
            Unknown => 500,
        }
    }
}

#[derive(Serialize)]
struct Body<'a> {
    errors: [Entry<'a>; 1],
}

#[derive(Serialize)]
struct Entry<'a> {
    code: &'static str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a serde_json::Value>,
}

/// `{"errors":[{"code":"…","message":"…","detail":…}]}`, the spec's error body.
pub fn error_json(code: ErrorCode, message: &str, detail: Option<&serde_json::Value>) -> String {
    let body = Body {
        errors: [Entry {
            code: code.as_str(),
            message,
            detail,
        }],
    };
    serde_json::to_string(&body)
        .unwrap_or_else(|_| format!(r#"{{"errors":[{{"code":"{}"}}]}}"#, code.as_str()))
}

/// `text` as one line of printable ASCII of at most `max` bytes (`max` at least 3): control
/// characters and runs of spaces become one space, other characters `?`, and a longer line ends
/// in `...`. What a message from elsewhere must be before it goes into a status line, a header,
/// a log field or an error the client reads.
pub fn one_line(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max));
    for c in text.trim().chars() {
        let c = match c {
            ' '..='~' => c,
            c if c.is_whitespace() || c.is_control() => ' ',
            _ => '?',
        };
        if c == ' ' && out.ends_with(' ') {
            continue;
        }
        if out.len() == max {
            out.truncate(max.saturating_sub(3));
            out.push_str("...");
            break;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_spec_shape() {
        let s = error_json(ErrorCode::NameUnknown, "no upstream \"x\"", None);
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["errors"][0]["code"], "NAME_UNKNOWN");
        assert_eq!(v["errors"][0]["message"], "no upstream \"x\"");
        assert_eq!(ErrorCode::NameUnknown.status(), 404);
        assert_eq!(ErrorCode::TooManyRequests.status(), 429);
    }

    #[test]
    fn parses_its_own_names() {
        assert_eq!(
            ErrorCode::parse("NAME_UNKNOWN"),
            Some(ErrorCode::NameUnknown)
        );
        assert_eq!(
            ErrorCode::parse("TOOMANYREQUESTS"),
            Some(ErrorCode::TooManyRequests)
        );
        assert_eq!(ErrorCode::parse("name_unknown"), None);
        assert_eq!(ErrorCode::parse("MANIFEST_UNVERIFIED"), None);
        for c in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(c.as_str()), Some(c), "{c:?}");
        }
    }
}
