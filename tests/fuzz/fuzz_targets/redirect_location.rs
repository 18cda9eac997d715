//! `Location` values from an upstream's redirects (redirect::resolve), against the URL that sent
//! them. Input: the base URL on the first line (a default when it is not an absolute URL), the
//! `Location` after it.
//!
//! What holds: the result is an absolute http(s) URL with a host; a `Location` without a scheme
//! or `//` keeps the base's scheme and authority (a relative redirect never changes origin) and,
//! for a path, leaves no `.` or `..` segment; resolving the result against itself gives it back.
#![no_main]

use http::Uri;
use libfuzzer_sys::fuzz_target;
use wharf_upstream::redirect;

const DEFAULT_BASE: &str = "https://reg.example:5000/v2/library/x/blobs/sha256:ab";

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let (first, location) = s.split_once('\n').unwrap_or(("", s));
    let base = match first.parse::<Uri>() {
        Ok(u) if u.scheme().is_some() && u.authority().is_some() => u,
        _ => match DEFAULT_BASE.parse::<Uri>() {
            Ok(u) => u,
            Err(e) => panic!("the default base: {e}"),
        },
    };
    let Some(r) = redirect::resolve(&base, location) else {
        return;
    };
    let ctx = format!("{location:?} against {base} gave {r}");
    let scheme = r.scheme_str().unwrap_or_default().to_ascii_lowercase();
    assert!(scheme == "http" || scheme == "https", "{ctx}");
    assert!(r.host().is_some_and(|h| !h.is_empty()), "{ctx}");

    let loc = location.trim_matches([' ', '\t']);
    let loc = loc.split('#').next().unwrap_or_default();
    if !has_scheme(loc) && !loc.starts_with("//") {
        assert_eq!(r.scheme(), base.scheme(), "{ctx}");
        assert_eq!(r.authority(), base.authority(), "{ctx}");
        if !loc.starts_with('?') {
            assert!(
                r.path().split('/').all(|seg| seg != "." && seg != ".."),
                "{ctx}"
            );
        }
    }
    assert_eq!(
        redirect::resolve(&r, &r.to_string()).as_ref(),
        Some(&r),
        "{ctx}"
    );
});

/// RFC 3986 `scheme ":"` at the start: what makes a reference absolute.
fn has_scheme(s: &str) -> bool {
    match s.split_once(':') {
        Some((scheme, _)) => {
            scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        }
        None => false,
    }
}
