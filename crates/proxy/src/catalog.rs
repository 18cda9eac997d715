//! `GET /v2/_catalog`: the repositories a caller may pull, hosted and cached, in the spec's
//! "Listing Repositories" form, paged as Distribution's catalog handler pages it.
//!
//! ```text
//! hosted     every hosted repository with a tag, if rights.rs lets the caller pull it
//! cached     every repository the cache holds a tag of, named as clients name it on wharf:
//!            the upstream's first prefix that is no host name (`oracle/os/oraclelinux`), else
//!            its first prefix (`docker.io/library/alpine`), else the bare name; listed when
//!            the caller may pull mirrored content (`auth.anonymous_pull`, or a user)
//! order      byte order, no duplicates
//! n          at most n names (400 PAGINATION_NUMBER_INVALID if not a number); absent: 100,
//!            Distribution's default page (`defaultReturnedEntries`); 0: an empty list
//! last       names after it
//! Link       when more remain: </v2/_catalog?last=<last name>&n=<n>>; rel="next"
//! ```
//!
//! The upstreams are never asked: the catalog says what wharf holds, not what they hold.

use std::collections::BTreeSet;

use http::{HeaderValue, Response, header};
use wharf_oci::RepositoryName;

use crate::Proxy;
use crate::auth::Caller;
use crate::body::{self, Body};
use crate::error::ProxyError;
use crate::hosted::{HOSTED, rights};
use crate::tags::{PageQuery, apply_page};
use crate::upstreams::Upstream;

/// Names in a page when the request gives no `n` (Distribution's `defaultReturnedEntries`).
const DEFAULT_PAGE: usize = 100;

impl Proxy {
    pub(crate) fn catalog(
        &self,
        caller: &Caller,
        query: Option<&str>,
        head: bool,
    ) -> Result<Response<Body>, ProxyError> {
        let mut page = PageQuery::parse(query)?;
        let n = *page.n.get_or_insert(DEFAULT_PAGE);
        let mut names = BTreeSet::new();
        if self.check_mirrored_pull(caller).is_ok() {
            for t in self.store.tags() {
                if let Some(up) = self.upstreams.iter().find(|u| u.name == t.upstream) {
                    names.insert(client_name(up, &t.repository));
                }
            }
        }
        if let Some(hosted) = &self.hosted {
            for t in hosted.store().tags() {
                let readable = t.upstream == HOSTED
                    && RepositoryName::parse(&t.repository)
                        .is_ok_and(|r| rights::may_pull(self.auth(), caller, &r).is_ok());
                if readable {
                    names.insert(t.repository);
                }
            }
        }
        let (repos, next) = apply_page(names.into_iter().collect(), &page);
        let json = serde_json::json!({ "repositories": repos }).to_string();
        let mut resp = body::document(json, "application/json", head);
        let h = resp.headers_mut();
        if let Some((last, _)) = next {
            let q = form_urlencoded::Serializer::new(String::new())
                .append_pair("last", &last)
                .append_pair("n", &n.to_string())
                .finish();
            if let Ok(v) = HeaderValue::from_str(&format!("</v2/_catalog?{q}>; rel=\"next\"")) {
                h.insert(header::LINK, v);
            }
        }
        Ok(resp)
    }
}

/// `repo` of `up` as a client names it on wharf.
fn client_name(up: &Upstream, repo: &str) -> String {
    let prefix = up
        .prefixes
        .iter()
        .find(|p| !p.contains('.'))
        .or_else(|| up.prefixes.first());
    match prefix {
        Some(p) => format!("{p}/{repo}"),
        None => repo.to_owned(),
    }
}
