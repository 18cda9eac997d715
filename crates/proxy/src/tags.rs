//! `GET /v2/<name>/tags/list`: passed through, with `n`/`last` kept and the `Link` header
//! rewritten to the path the client used (mirror prefix and `ns` included). Tag lists change, so
//! they are not cached.

use bytes::Bytes;
use http::{HeaderValue, Response, header};
use http_body_util::{BodyExt, Limited};

use crate::body::{self, Body};
use crate::error::{Missing, ProxyError};
use crate::upstreams::Target;
use crate::{Proxy, route::query_param};

const MAX_TAG_LIST: usize = 16 * 1024 * 1024;

impl Proxy {
    pub(crate) async fn tags(
        &self,
        target: &Target,
        client_base: &str,
        query: Option<&str>,
    ) -> Result<Response<Body>, ProxyError> {
        // Only the spec's parameters go upstream; `ns` is ours.
        let upstream_query = spec_params(query);
        let up = &target.upstream;
        let resp = up
            .client
            .tags(
                target.repo.as_str(),
                (!upstream_query.is_empty()).then_some(upstream_query.as_str()),
            )
            .await
            .map_err(ProxyError::upstream(Missing::Name))?;
        let link = resp
            .headers
            .get(header::LINK)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = Limited::new(resp.body, MAX_TAG_LIST)
            .collect()
            .await
            .map_err(|e| ProxyError::BadUpstreamAnswer {
                upstream: up.name.clone(),
                message: format!("reading the tag list: {e}"),
            })?
            .to_bytes();
        let ns = query_param(query, "ns");
        let (bytes, link) = match link {
            Some(l) => (bytes, rewrite_link(&l, client_base, ns.as_deref())),
            // Some registries (Distribution 2.8) ignore `n` and send every tag: page here.
            None => match page(&bytes, query) {
                Some((body, next)) => {
                    let link =
                        next.map(|(last, n)| next_link(client_base, &last, n, ns.as_deref()));
                    (Bytes::from(body), link)
                }
                None => (bytes, None),
            },
        };
        let mut out = Response::new(body::full(bytes.clone()));
        let h = out.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        if let Some(v) = link.and_then(|l| HeaderValue::from_str(&l).ok()) {
            h.insert(header::LINK, v);
        }
        Ok(out)
    }
}

/// The `last` and `n` of the next page.
type NextPage = (String, usize);

/// Applies `last` (exclusive) and `n` to a full tag list. Returns the new body and, when tags
/// remain, the `last` and `n` of the next page; `None` when there is nothing to page (no `n` or
/// `last`, or a body that is not a tag list, which is then passed through untouched).
fn page(body: &[u8], query: Option<&str>) -> Option<(Vec<u8>, Option<NextPage>)> {
    let n = match query_param(query, "n") {
        Some(n) => Some(n.parse::<usize>().ok()?),
        None => None,
    };
    let last = query_param(query, "last");
    if n.is_none() && last.is_none() {
        return None;
    }
    let mut list: serde_json::Value = serde_json::from_slice(body).ok()?;
    let tags = list.get_mut("tags")?.as_array_mut()?;
    let mut names: Vec<String> = tags
        .iter()
        .filter_map(|t| t.as_str().map(str::to_owned))
        .collect();
    names.sort();
    if let Some(last) = &last {
        names.retain(|t| t > last);
    }
    let mut next = None;
    if let Some(n) = n {
        if names.len() > n && n > 0 {
            next = Some((names[n - 1].clone(), n));
        }
        names.truncate(n);
    }
    *tags = names.into_iter().map(serde_json::Value::String).collect();
    Some((serde_json::to_vec(&list).ok()?, next))
}

fn next_link(client_base: &str, last: &str, n: usize, ns: Option<&str>) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("last", last);
    q.append_pair("n", &n.to_string());
    if let Some(ns) = ns {
        q.append_pair("ns", ns);
    }
    format!("<{client_base}/tags/list?{}>; rel=\"next\"", q.finish())
}

/// The query with only `n` and `last` kept.
fn spec_params(query: Option<&str>) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for key in ["n", "last"] {
        if let Some(v) = query_param(query, key) {
            q.append_pair(key, &v);
        }
    }
    q.finish()
}

/// `<…/tags/list?last=x&n=1>; rel="next"` from the upstream becomes
/// `<{client_base}/tags/list?last=x&n=1[&ns=…]>; rel="next"`. The upstream's own path and host
/// are dropped: the client must come back to wharf.
pub fn rewrite_link(link: &str, client_base: &str, ns: Option<&str>) -> Option<String> {
    let start = link.find('<')?;
    let end = link[start..].find('>')? + start;
    let target = &link[start + 1..end];
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if k == "n" || k == "last" {
            q.append_pair(&k, &v);
        }
    }
    if let Some(ns) = ns {
        q.append_pair("ns", ns);
    }
    Some(format!(
        "<{client_base}/tags/list?{}>{}",
        q.finish(),
        &link[end + 1..]
    ))
}

#[cfg(test)]
mod tests {
    use super::rewrite_link;

    #[test]
    fn pages_a_full_list() {
        let body = br#"{"name":"x","tags":["c","a","b"]}"#;
        let (b, next) = super::page(body, Some("n=2")).unwrap();
        assert_eq!(
            String::from_utf8(b).unwrap(),
            r#"{"name":"x","tags":["a","b"]}"#
        );
        assert_eq!(next, Some(("b".to_owned(), 2)));
        let (b, next) = super::page(body, Some("n=2&last=b")).unwrap();
        assert_eq!(
            String::from_utf8(b).unwrap(),
            r#"{"name":"x","tags":["c"]}"#
        );
        assert_eq!(next, None);
        let (b, next) = super::page(body, Some("n=0")).unwrap();
        assert_eq!(String::from_utf8(b).unwrap(), r#"{"name":"x","tags":[]}"#);
        assert_eq!(next, None);
        assert!(super::page(body, None).is_none());
        assert!(super::page(body, Some("n=x")).is_none());
    }

    #[test]
    fn link_goes_back_to_the_client_path() {
        let l = rewrite_link(
            r#"</v2/os/oraclelinux/tags/list?last=7-slim&n=1>; rel="next""#,
            "/v2/oracle/os/oraclelinux",
            None,
        );
        assert_eq!(
            l.unwrap(),
            r#"</v2/oracle/os/oraclelinux/tags/list?last=7-slim&n=1>; rel="next""#
        );
        let l = rewrite_link(
            r#"<https://up.example/v2/library/x/tags/list?n=2&last=b>; rel="next""#,
            "/v2/x",
            Some("docker.io"),
        );
        assert_eq!(
            l.unwrap(),
            r#"</v2/x/tags/list?n=2&last=b&ns=docker.io>; rel="next""#
        );
        assert!(rewrite_link("garbage", "/v2/x", None).is_none());
    }
}
