//! Pulls from hosted repositories: manifests by tag or digest, blobs, `tags/list` and the
//! (empty) signature lists, all from the hosted store and never from an upstream.
//!
//! Served through the same code as cached content (`manifest::serve`: ETag, `If-None-Match`,
//! HEAD with its length; `blob::stored_blob`: Range, sendfile), and only through a repository
//! that holds the digest: a push or a mount put it there. Anything else is the spec's 404.

use http::{HeaderMap, HeaderValue, Response, header};
use wharf_cache::TagKey;
use wharf_metrics::Outcome;
use wharf_oci::{Digest, ErrorCode, Reference, RepositoryName};

use super::{HOSTED, Hosted};
use crate::body::{self, Body};
use crate::error::ProxyError;
use crate::sendfile::Pending;
use crate::tags::{PageQuery, apply_page, next_link};

impl Hosted {
    pub(super) async fn manifest(
        &self,
        repo: &RepositoryName,
        reference: &Reference,
        head: bool,
        req_headers: &HeaderMap,
    ) -> Result<Response<Body>, ProxyError> {
        let unknown = || {
            ProxyError::oci(
                ErrorCode::ManifestUnknown,
                format!("manifest unknown: {repo}:{reference} was never pushed here"),
            )
        };
        let digest = match reference {
            Reference::Digest(d) => d.clone(),
            Reference::Tag(tag) => {
                self.store
                    .get_tag(TagKey {
                        upstream: HOSTED,
                        repository: repo.as_str(),
                        tag,
                    })
                    .ok_or_else(unknown)?
                    .digest
            }
        };
        if !self.store.in_scope(Hosted::key(repo, &digest)) {
            return Err(unknown());
        }
        let (media_type, bytes) = self
            .store
            .get_manifest(&digest)
            .await?
            .ok_or_else(unknown)?;
        let m = crate::manifest::Manifest {
            digest,
            media_type,
            bytes,
            outcome: Outcome::Hit,
        };
        Ok(crate::manifest::serve(m, head, req_headers, None))
    }

    pub(super) async fn blob(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        head: bool,
        req_headers: &HeaderMap,
        sendfile: Option<&Pending>,
    ) -> Result<Response<Body>, ProxyError> {
        let unknown = || {
            ProxyError::oci(
                ErrorCode::BlobUnknown,
                format!("blob unknown: {repo} does not hold {digest}"),
            )
        };
        if !self.store.in_scope(Hosted::key(repo, digest)) {
            return Err(unknown());
        }
        let (file, size) = self.store.open_blob(digest).await?.ok_or_else(unknown)?;
        let range = req_headers.get(header::RANGE).and_then(|v| v.to_str().ok());
        crate::blob::stored_blob(file, size, digest, head, range, sendfile)
    }

    /// `tags/list`, sorted, paged with `n` and `last`, `Link` to the next page.
    pub(super) fn tags(
        &self,
        repo: &RepositoryName,
        base: &str,
        query: Option<&str>,
        head: bool,
    ) -> Result<Response<Body>, ProxyError> {
        let page = PageQuery::parse(query)?;
        // Every tag record, then this repository's: fine for the first slice's numbers of
        // hosted tags; an index by repository comes with the catalog.
        let tags: Vec<String> = self
            .store
            .tags()
            .into_iter()
            .filter(|t| t.upstream == HOSTED && t.repository == repo.as_str())
            .map(|t| t.tag)
            .collect();
        if tags.is_empty() {
            return Err(ProxyError::oci(
                ErrorCode::NameUnknown,
                format!("repository {repo} has no tags here"),
            ));
        }
        let (tags, next) = apply_page(tags, &page);
        let link = next.map(|(last, n)| next_link(base, &last, n, None));
        let json = serde_json::json!({ "name": repo.as_str(), "tags": tags }).to_string();
        let mut resp = body::document(json, "application/json", head);
        if let Some(v) = link.and_then(|l| HeaderValue::from_str(&l).ok()) {
            resp.headers_mut().insert(header::LINK, v);
        }
        Ok(resp)
    }
}
