//! Following upstream redirects (PROTOCOL §1.7): which statuses, where `Location` points, and
//! when `Authorization` must be dropped.
//!
//! Blob GETs are redirected to CDNs and object stores with signed, short-lived URLs. wharf follows
//! them itself (its clients often cannot reach the CDN), never caches a `Location`, and never lets
//! the upstream's credentials travel to another origin. Google Artifact Registry sends relative
//! `Location`s, so they are resolved here per RFC 3986 §5.

use http::{StatusCode, Uri};

/// Redirects followed for one request before giving up.
pub(crate) const MAX_HOPS: usize = 5;

pub(crate) fn is_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

/// (scheme, host, port): `Authorization` stays only while all three are unchanged.
pub(crate) fn same_origin(a: &Uri, b: &Uri) -> bool {
    origin(a) == origin(b)
}

fn origin(u: &Uri) -> (String, String, Option<u16>) {
    let scheme = u.scheme_str().unwrap_or_default().to_ascii_lowercase();
    let port = u.port_u16().or(match scheme.as_str() {
        "https" => Some(443),
        "http" => Some(80),
        _ => None,
    });
    let host = u.host().unwrap_or_default().to_ascii_lowercase();
    (scheme, host, port)
}

/// Scheme, host, port and path of a URL, without user info or query: what may appear in logs and
/// errors. Query strings of redirect targets are signatures.
pub(crate) fn display_without_query(u: &Uri) -> String {
    let port = u.port_u16().map(|p| format!(":{p}")).unwrap_or_default();
    format!(
        "{}://{}{port}{}",
        u.scheme_str().unwrap_or("?"),
        u.host().unwrap_or("?"),
        u.path()
    )
}

/// Resolves a `Location` value against the URL that answered with it. `None` when the result is
/// not an absolute http(s) URL.
pub fn resolve(base: &Uri, location: &str) -> Option<Uri> {
    // HTTP's OWS (SP, HTAB) only: `str::trim` would also drop Unicode spaces such as U+0085 or
    // U+00A0 that are part of the value (the header's bytes arrive here through from_utf8_lossy),
    // and send the request somewhere the upstream did not say.
    let location = location.trim_matches([' ', '\t']);
    // The fragment never goes on the wire.
    let location = location.split('#').next().unwrap_or_default();
    if location.is_empty() {
        return None;
    }
    let scheme = base.scheme_str()?;
    let authority = base.authority()?.as_str();
    let target = if has_scheme(location) {
        location.to_owned()
    } else if let Some(rest) = location.strip_prefix("//") {
        format!("{scheme}://{rest}")
    } else if location.starts_with('/') {
        let (path, query) = split_query(location);
        format!("{scheme}://{authority}{}{query}", remove_dot_segments(path))
    } else if location.starts_with('?') {
        format!("{scheme}://{authority}{}{location}", base.path())
    } else {
        let (path, query) = split_query(location);
        let dir = match base.path().rfind('/') {
            Some(i) => &base.path()[..=i],
            None => "/",
        };
        let merged = format!("{dir}{path}");
        format!(
            "{scheme}://{authority}{}{query}",
            remove_dot_segments(&merged)
        )
    };
    let uri: Uri = target.parse().ok()?;
    let http = matches!(uri.scheme_str(), Some(s) if s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https"));
    (http && uri.host().is_some_and(|h| !h.is_empty())).then_some(uri)
}

/// `scheme ":"` with scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ), before any `/`, `?`.
fn has_scheme(s: &str) -> bool {
    match s.find(':') {
        Some(i) if i > 0 => {
            let scheme = &s[..i];
            scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        }
        _ => false,
    }
}

fn split_query(s: &str) -> (&str, &str) {
    match s.find('?') {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    }
}

/// RFC 3986 §5.2.4, on an absolute path.
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "." => {
                if i == last {
                    out.push("");
                }
            }
            ".." => {
                out.pop();
                if i == last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(base: &str, loc: &str) -> Option<String> {
        resolve(&base.parse().expect("test URL"), loc).map(|u| u.to_string())
    }

    const BASE: &str = "https://reg.example:5000/v2/lib/x/blobs/sha256:ab";

    #[test]
    fn absolute_and_scheme_relative() {
        assert_eq!(
            r(BASE, "https://cdn.example/a/b?X-Amz-Signature=1").as_deref(),
            Some("https://cdn.example/a/b?X-Amz-Signature=1")
        );
        assert_eq!(
            r(BASE, "//cdn.example/p").as_deref(),
            Some("https://cdn.example/p")
        );
    }

    #[test]
    fn absolute_and_relative_paths() {
        assert_eq!(
            r(BASE, "/artifacts-downloads/x?sig=1#frag").as_deref(),
            Some("https://reg.example:5000/artifacts-downloads/x?sig=1")
        );
        assert_eq!(
            r(BASE, "other").as_deref(),
            Some("https://reg.example:5000/v2/lib/x/blobs/other")
        );
        assert_eq!(
            r(BASE, "../../y/./z").as_deref(),
            Some("https://reg.example:5000/v2/lib/y/z")
        );
        assert_eq!(
            r(BASE, "?q=1").as_deref(),
            Some("https://reg.example:5000/v2/lib/x/blobs/sha256:ab?q=1")
        );
        assert_eq!(
            r(BASE, "/../../a").as_deref(),
            Some("https://reg.example:5000/a")
        );
    }

    #[test]
    fn only_http_whitespace_is_trimmed() {
        assert_eq!(
            r(BASE, " \tother\t ").as_deref(),
            Some("https://reg.example:5000/v2/lib/x/blobs/other")
        );
        // Found by the redirect_location fuzz target: U+0085 (NEL) was trimmed when the
        // resolved URL was resolved again, so the two differed.
        let base: Uri = BASE.parse().expect("test URL");
        let once = resolve(&base, "h\u{85}#.").expect("resolves");
        assert!(once.path().ends_with("/blobs/h\u{85}"), "{once}");
        assert_eq!(resolve(&once, &once.to_string()), Some(once));
    }

    #[test]
    fn unusable_locations() {
        assert_eq!(r(BASE, ""), None);
        assert_eq!(r(BASE, "ftp://cdn.example/x"), None);
        assert_eq!(r(BASE, "file:///etc/passwd"), None);
        assert_eq!(r(BASE, "https://"), None);
        assert_eq!(r(BASE, "https://cdn.example/a b"), None);
    }

    #[test]
    fn origins() {
        let a: Uri = "https://reg.example/v2/".parse().expect("test URL");
        let b: Uri = "https://REG.example:443/other".parse().expect("test URL");
        let c: Uri = "https://reg.example:8443/v2/".parse().expect("test URL");
        let d: Uri = "http://reg.example/v2/".parse().expect("test URL");
        assert!(same_origin(&a, &b));
        assert!(!same_origin(&a, &c));
        assert!(!same_origin(&a, &d));
        assert_eq!(
            display_without_query(
                &"https://cdn.example/p?sig=secret"
                    .parse()
                    .expect("test URL")
            ),
            "https://cdn.example/p"
        );
        assert_eq!(
            display_without_query(&"https://u:pw@cdn.example:8/p".parse().expect("test URL")),
            "https://cdn.example:8/p"
        );
    }
}
