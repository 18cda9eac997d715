//! The upstream's `Link` header on a tag list, rewritten for the client (tags::rewrite_link).
//! Input: the client's base path on the first line (a default unless it is `/v2/<name>`, with an
//! optional mount before it), the `ns` query value on the second (none if empty), the `Link`
//! value after them.
//!
//! What holds: a value with `<…>` is rewritten, one without is dropped; the target is the
//! client's own `<base>/tags/list?` (the upstream's host and path never reach the client); its
//! query carries exactly the upstream's `n` and `last`, in order, then the client's `ns`; what
//! follows `>` is kept as sent; and a valid header value stays one.
#![no_main]

use http::HeaderValue;
use libfuzzer_sys::fuzz_target;
use wharf_oci::RepositoryName;
use wharf_proxy::tags::rewrite_link;

const DEFAULT_BASE: &str = "/v2/library/x";

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = s.splitn(3, '\n');
    let (base, ns, link) = match (parts.next(), parts.next(), parts.next()) {
        (Some(b), Some(ns), Some(link)) => (b, ns, link),
        _ => (DEFAULT_BASE, "", s),
    };
    let base = if is_client_base(base) {
        base
    } else {
        DEFAULT_BASE
    };
    let ns = (!ns.is_empty()).then_some(ns);

    let Some(open) = link.find('<') else {
        assert_eq!(rewrite_link(link, base, ns), None);
        return;
    };
    let Some(close) = link[open..].find('>').map(|i| open + i) else {
        assert_eq!(rewrite_link(link, base, ns), None);
        return;
    };
    let Some(out) = rewrite_link(link, base, ns) else {
        panic!("{link:?} has <…> but was dropped");
    };
    let ctx = format!("{link:?} with {base:?}, ns {ns:?} gave {out:?}");

    let prefix = format!("<{base}/tags/list?");
    assert!(out.starts_with(&prefix), "{ctx}");
    let Some(out_close) = out.find('>') else {
        panic!("no > in {ctx}");
    };
    assert_eq!(&out[out_close + 1..], &link[close + 1..], "{ctx}");

    let sent = &link[open + 1..close];
    let sent_query = sent.split_once('?').map(|(_, q)| q).unwrap_or("");
    let mut want: Vec<(String, String)> = form_urlencoded::parse(sent_query.as_bytes())
        .filter(|(k, _)| k == "n" || k == "last")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if let Some(ns) = ns {
        want.push(("ns".to_owned(), ns.to_owned()));
    }
    let got: Vec<(String, String)> =
        form_urlencoded::parse(&out.as_bytes()[prefix.len()..out_close])
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    assert_eq!(got, want, "{ctx}");

    if HeaderValue::from_str(link).is_ok() {
        assert!(HeaderValue::from_str(&out).is_ok(), "{ctx}");
    }
});

/// `[/<mount>]/v2/<name>`, as the proxy builds it from a routed request.
fn is_client_base(s: &str) -> bool {
    let rest = match s.strip_prefix("/v2/") {
        Some(rest) => rest,
        None => match s.split_once("/v2/") {
            Some((mount, rest)) => {
                let Some(mount) = mount.strip_prefix('/') else {
                    return false;
                };
                if RepositoryName::parse(mount).is_err() {
                    return false;
                }
                rest
            }
            None => return false,
        },
    };
    RepositoryName::parse(rest).is_ok()
}
