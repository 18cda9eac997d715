//! `GET /v2/<name>/tags/list`: asked of the upstream each time (tag lists change, so they are
//! not cached) and answered as the spec says, whatever the upstream did:
//!
//! - `name` is the repository as the client named it (its prefix, mount or `ns` form; no
//!   Docker Hub `library/` the client did not write), not the upstream's name for it;
//! - the tags are in lexical ("ASCIIbetical", Go's `sort.Strings`) order, with or without `n`;
//! - `n` is a non-negative integer or the request is refused, 400 `PAGINATION_NUMBER_INVALID`,
//!   before the upstream is asked (distribution refuses the same, and an `n` above a configured
//!   `tags.maxtags`, which an upstream's refusal passes on); `n=0` is an empty list and no `Link`;
//! - `n`/`last` go upstream; an upstream `Link` is rewritten to the path the client used (mirror
//!   prefix and `ns` included); an upstream that ignores `n` (Distribution 2.8) is paged here.

use bytes::Bytes;
use http::{HeaderValue, Response, header};
use http_body_util::{BodyExt, Limited};
use wharf_oci::RepositoryName;

use crate::body::{self, Body};
use crate::error::{Missing, ProxyError};
use crate::upstreams::Target;
use crate::{Proxy, route::query_param};

const MAX_TAG_LIST: usize = 16 * 1024 * 1024;

/// The largest `n` passed on: Go's `int` on 64-bit, what distribution's `strconv.Atoi` reads.
/// Neither the spec nor distribution has a smaller bound (distribution's `tags.maxtags` is
/// unset by default); a number past this one no Go registry can read.
const MAX_PAGE_SIZE: u64 = i64::MAX as u64;

/// The `n` and `last` of a request, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PageQuery {
    pub(crate) n: Option<usize>,
    last: Option<String>,
}

impl PageQuery {
    /// An empty `n=` or `last=` counts as absent, as in distribution (`q.Get(...) != ""`).
    pub(crate) fn parse(query: Option<&str>) -> Result<PageQuery, ProxyError> {
        let n = match query_param(query, "n").filter(|n| !n.is_empty()) {
            Some(n) => Some(page_size(&n)?),
            None => None,
        };
        let last = query_param(query, "last").filter(|l| !l.is_empty());
        Ok(PageQuery { n, last })
    }

    /// The query the upstream gets: `n` and `last` only (`ns` is wharf's).
    fn upstream_query(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        if let Some(n) = self.n {
            q.append_pair("n", &n.to_string());
        }
        if let Some(last) = &self.last {
            q.append_pair("last", last);
        }
        q.finish()
    }
}

fn page_size(n: &str) -> Result<usize, ProxyError> {
    let invalid = |reason: &str| ProxyError::PaginationInvalid {
        n: n.chars().take(40).collect(),
        reason: reason.to_owned(),
    };
    if !n.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid("not a non-negative decimal integer"));
    }
    n.parse::<u64>()
        .ok()
        .filter(|&v| v <= MAX_PAGE_SIZE)
        .and_then(|v| usize::try_from(v).ok())
        .ok_or_else(|| invalid(&format!("larger than {MAX_PAGE_SIZE}")))
}

impl Proxy {
    pub(crate) async fn tags(
        &self,
        target: &Target,
        client_name: &RepositoryName,
        client_base: &str,
        query: Option<&str>,
    ) -> Result<Response<Body>, ProxyError> {
        let page = PageQuery::parse(query)?;
        let upstream_query = page.upstream_query();
        let up = &target.upstream;
        let resp = up
            .client
            .tags(
                target.repo.as_str(),
                (!upstream_query.is_empty()).then_some(upstream_query.as_str()),
            )
            .await
            .map_err(|e| match (e.code(), page.n) {
                // The upstream's own bound (distribution's `tags.maxtags`): the client's `n`.
                (Some("PAGINATION_NUMBER_INVALID"), Some(n)) => ProxyError::PaginationInvalid {
                    n: n.to_string(),
                    reason: format!("upstream {} refused it", up.name),
                },
                _ => ProxyError::upstream(Missing::Name)(e),
            })?;
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
        let tags = upstream_tags(&bytes).ok_or_else(|| ProxyError::BadUpstreamAnswer {
            upstream: up.name.clone(),
            message: "the tag list is not {\"name\": ..., \"tags\": [...]} JSON".to_owned(),
        })?;
        let ns = query_param(query, "ns");
        let (tags, link) = match link {
            Some(l) => (sorted(tags), rewrite_link(&l, client_base, ns.as_deref())),
            // Some registries (Distribution 2.8) ignore `n` and send every tag: page here.
            None => {
                let (tags, next) = apply_page(tags, &page);
                let link = next.map(|(last, n)| next_link(client_base, &last, n, ns.as_deref()));
                (tags, link)
            }
        };
        // `n=0`: an empty list and no `Link`, whatever the upstream said.
        let (tags, link) = if page.n == Some(0) {
            (Vec::new(), None)
        } else {
            (tags, link)
        };
        let body = serde_json::json!({ "name": client_name.as_str(), "tags": tags });
        let bytes = Bytes::from(body.to_string());
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

/// The tags of an upstream tag list; `"tags": null` or none at all (some registries' answer for
/// a repository without tags) is an empty list. `None` if the body is not a tag list.
fn upstream_tags(body: &[u8]) -> Option<Vec<String>> {
    let list: serde_json::Value = serde_json::from_slice(body).ok()?;
    match list.as_object()?.get("tags") {
        None | Some(serde_json::Value::Null) => Some(Vec::new()),
        Some(tags) => tags
            .as_array()?
            .iter()
            .map(|t| t.as_str().map(str::to_owned))
            .collect(),
    }
}

/// Byte order: the spec's "ASCIIbetical" order, Go's `sort.Strings`.
fn sorted(mut tags: Vec<String>) -> Vec<String> {
    tags.sort();
    tags
}

/// The `last` and `n` of the next page.
pub(crate) type NextPage = (String, usize);

/// Sorts a full tag list and applies `last` (exclusive) and `n` to it. Returns the page and,
/// when tags remain after it, the `last` and `n` of the next page.
pub(crate) fn apply_page(tags: Vec<String>, page: &PageQuery) -> (Vec<String>, Option<NextPage>) {
    let mut tags = sorted(tags);
    if let Some(last) = &page.last {
        tags.retain(|t| t > last);
    }
    let mut next = None;
    if let Some(n) = page.n {
        if tags.len() > n && n > 0 {
            next = Some((tags[n - 1].clone(), n));
        }
        tags.truncate(n);
    }
    (tags, next)
}

pub(crate) fn next_link(client_base: &str, last: &str, n: usize, ns: Option<&str>) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("last", last);
    q.append_pair("n", &n.to_string());
    if let Some(ns) = ns {
        q.append_pair("ns", ns);
    }
    format!("<{client_base}/tags/list?{}>; rel=\"next\"", q.finish())
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
    use super::*;

    fn tags(list: &[&str]) -> Vec<String> {
        list.iter().map(|t| (*t).to_owned()).collect()
    }

    fn query(q: &str) -> PageQuery {
        PageQuery::parse(Some(q)).unwrap()
    }

    #[test]
    fn pages_a_full_list_in_lexical_order() {
        let all = tags(&["c", "a", "B", "b"]);
        let (page, next) = apply_page(all.clone(), &query("n=2"));
        assert_eq!(page, tags(&["B", "a"]));
        assert_eq!(next, Some(("a".to_owned(), 2)));
        let (page, next) = apply_page(all.clone(), &query("n=2&last=a"));
        assert_eq!(page, tags(&["b", "c"]));
        assert_eq!(next, None);
        let (page, next) = apply_page(all.clone(), &query("n=0"));
        assert!(page.is_empty());
        assert_eq!(next, None);
        // No `n`: still sorted.
        let (page, next) = apply_page(all, &query(""));
        assert_eq!(page, tags(&["B", "a", "b", "c"]));
        assert_eq!(next, None);
    }

    #[test]
    fn n_must_be_a_non_negative_integer() {
        assert_eq!(query("n=007").n, Some(7));
        assert_eq!(query("n=").n, None, "empty is absent, as in distribution");
        assert_eq!(query(&format!("n={}", i64::MAX)).n, Some(i64::MAX as usize));
        for bad in [
            "n=x",
            "n=-1",
            "n=+1",
            "n=1.5",
            "n=%201",
            "n=9223372036854775808",
            "n=99999999999999999999999",
        ] {
            let e = PageQuery::parse(Some(bad)).unwrap_err();
            assert!(
                matches!(e, ProxyError::PaginationInvalid { .. }),
                "{bad}: {e:?}"
            );
        }
    }

    #[test]
    fn reads_the_upstream_list() {
        assert_eq!(
            upstream_tags(br#"{"name":"library/x","tags":["b","a"]}"#),
            Some(tags(&["b", "a"]))
        );
        assert_eq!(upstream_tags(br#"{"name":"x","tags":null}"#), Some(vec![]));
        assert_eq!(upstream_tags(br#"{"name":"x"}"#), Some(vec![]));
        assert_eq!(upstream_tags(br#"{"tags":[1]}"#), None);
        assert_eq!(upstream_tags(b"<html>"), None);
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
