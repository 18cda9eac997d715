//! The values of the labels that are enums or classes: the `endpoint`, `result`, `method` and
//! `status_class` vocabularies, written here only (see the crate's label table).

/// Which registry API endpoint a request was for: the `endpoint` label's values, written here
/// only. The proxy's parsed request (`wharf_proxy::route::Endpoint`) maps to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Ping,
    Manifest,
    Blob,
    Tags,
    Referrers,
    Uploads,
    /// `/extensions/v2/<name>/signatures/<digest>`: simple-signing signatures.
    Signatures,
    /// `GET /v2/_catalog`.
    Catalog,
    /// Refused before routing (authentication, a path that is no API path).
    Other,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Ping => "ping",
            Endpoint::Manifest => "manifest",
            Endpoint::Blob => "blob",
            Endpoint::Tags => "tags",
            Endpoint::Referrers => "referrers",
            Endpoint::Uploads => "upload",
            Endpoint::Signatures => "signatures",
            Endpoint::Catalog => "catalog",
            Endpoint::Other => "other",
        }
    }
}

/// How a request was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// From the store, without asking the upstream for content.
    Hit,
    /// Fetched from the upstream by this request.
    Miss,
    /// Joined a fill another request started.
    Coalesced,
    /// A tag record served although the upstream could not confirm it.
    Stale,
    /// An error response.
    Error,
    /// Neither (the `/v2/` ping, a tag list passed through).
    None,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::Miss => "miss",
            Outcome::Coalesced => "coalesced",
            Outcome::Stale => "stale",
            Outcome::Error => "error",
            Outcome::None => "none",
        }
    }

    /// Where the served content came from, for `wharf_proxy_served_bytes_total`.
    pub fn source(self) -> &'static str {
        match self {
            Outcome::Hit | Outcome::Stale => "cache",
            _ => "upstream",
        }
    }
}

/// `2xx` .. `5xx` for an HTTP status code.
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// `GET`, `HEAD` or `other`.
pub fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "HEAD" => "HEAD",
        _ => "other",
    }
}
