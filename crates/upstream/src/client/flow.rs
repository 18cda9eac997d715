//! The request flow, written down once: proactive auth, send (redirects inside), answer a 401's
//! challenge at most once, then turn the final response into a [`Response`] or an [`Error`].

use http::header::{RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, Method, StatusCode, Uri};
use hyper::body::Incoming;

use super::Client;
use crate::auth::Sent;
use crate::challenge;
use crate::redirect;
use crate::transport::{Arrived, ERROR_BODY_LIMIT, Outgoing};
use crate::{Error, Response};

impl Client {
    pub(super) async fn execute(
        &self,
        method: Method,
        repo: &str,
        path: String,
        query: Option<&str>,
        headers: HeaderMap,
    ) -> Result<Response, Error> {
        let inner = &*self.inner;
        let url = match query {
            Some(q) => format!("{}{path}?{q}", inner.base),
            None => format!("{}{path}", inner.base),
        };
        let uri: Uri = url
            .parse()
            .map_err(|e| self.invalid(format!("bad URL for {path}: {e}")))?;
        // As sent: with the URL's path (a regional wharf's prefix), for messages and logs.
        let request = format!("{method} {}", uri.path());
        let send = |sent| self.send(&method, &uri, &headers, &request, sent);

        let sent = inner.auth.proactive(&inner.transport, repo).await?;
        let arrived = send(&sent).await?;
        // A 401 from a redirect target is not the registry's challenge to answer.
        if arrived.response.status() != StatusCode::UNAUTHORIZED
            || !redirect::same_origin(&arrived.uri, &inner.base_uri)
        {
            return self.finish(arrived, &request, &sent).await;
        }
        let challenges = challenge::parse_all(
            arrived
                .response
                .headers()
                .get_all(WWW_AUTHENTICATE)
                .iter()
                .map(|v| v.as_bytes()),
        );
        let code = self.error_code(arrived.response.into_body()).await;
        let unauthorized = |reason: &str| Error::Unauthorized {
            upstream: inner.name.clone(),
            request: request.clone(),
            reason: reason.to_owned(),
            code: code.clone(),
        };
        let next = inner
            .auth
            .answer(&inner.transport, &challenges, &sent, repo, unauthorized)
            .await?;
        let arrived = send(&next).await?;
        self.finish(arrived, &request, &next).await
    }

    async fn send(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        request: &str,
        sent: &Sent,
    ) -> Result<Arrived, Error> {
        let inner = &*self.inner;
        let out = Outgoing {
            method,
            uri: uri.clone(),
            headers,
            authorization: inner.auth.header(sent),
            request,
        };
        inner.transport.send(out).await
    }

    /// A 2xx becomes the [`Response`]; anything else an error carrying the OCI code of its body.
    async fn finish(
        &self,
        arrived: Arrived,
        request: &str,
        sent: &Sent,
    ) -> Result<Response, Error> {
        let status = arrived.response.status();
        if status.is_success() {
            let (parts, body) = arrived.response.into_parts();
            return Ok(Response {
                status: parts.status,
                headers: parts.headers,
                body,
            });
        }
        let retry_after = arrived
            .response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let code = self.error_code(arrived.response.into_body()).await;
        let upstream = self.inner.name.clone();
        let request = request.to_owned();
        Err(match status.as_u16() {
            401 => Error::Unauthorized {
                upstream,
                request,
                reason: match sent {
                    Sent::Anonymous => "authentication required",
                    Sent::Basic => "credentials refused",
                    Sent::Bearer { key, .. } if key.with_credentials => "token refused",
                    Sent::Bearer { .. } => "anonymous token refused",
                }
                .to_owned(),
                code,
            },
            403 => Error::Denied {
                upstream,
                request,
                code,
            },
            404 => Error::NotFound {
                upstream,
                request,
                code,
            },
            429 => Error::RateLimited {
                upstream,
                request,
                retry_after,
                code,
            },
            status => Error::Status {
                upstream,
                request,
                status,
                code,
            },
        })
    }

    /// Reads at most [`ERROR_BODY_LIMIT`] of an error body for its OCI error (code, message).
    async fn error_code(&self, body: Incoming) -> Option<crate::error::Reported> {
        let (bytes, complete) = self
            .inner
            .transport
            .read_prefix(body, ERROR_BODY_LIMIT)
            .await
            .ok()?;
        complete.then(|| crate::error::oci_error(&bytes)).flatten()
    }
}
