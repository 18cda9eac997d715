//! The request flow, written down once: pick a URL (endpoints.rs), proactive auth, send
//! (redirects inside), answer a 401's challenge at most once, then turn the final response into
//! a [`Response`] or an [`Error`]; a failure another URL could answer is retried once there.

use http::header::{RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, Method, StatusCode, Uri};
use hyper::body::Incoming;

use tokio::time::Instant;

use super::Client;
use crate::auth::Sent;
use crate::challenge;
use crate::endpoints::Endpoint;
use crate::redirect;
use crate::transport::{Arrived, ERROR_BODY_LIMIT, Outgoing};
use crate::{Error, Response};

impl Client {
    /// Sends the request to the upstream's best URL (endpoints.rs); on a failure another URL
    /// could answer (connect, timeout, broken connection, 5xx, 429), once more to the next:
    /// nothing has reached wharf's client yet, so the retry is invisible to it.
    pub(super) async fn execute(
        &self,
        method: Method,
        repo: &str,
        path: String,
        query: Option<&str>,
        headers: HeaderMap,
    ) -> Result<Response, Error> {
        let inner = &*self.inner;
        let order = inner.endpoints.order();
        let several = order.len() > 1;
        let mut failed = None;
        for (attempt, endpoint) in order.into_iter().take(2).enumerate() {
            let started = Instant::now();
            let result = self
                .execute_at(endpoint, &method, repo, &path, query, &headers)
                .await;
            match result {
                Err(e) if several && e.is_failover() => {
                    let backoff = endpoint.failed();
                    self.count_url(endpoint, "failed");
                    tracing::warn!(upstream = %inner.name, url = %endpoint.label, error = %e,
                        backoff_ms = backoff.as_millis() as u64,
                        "{}", if attempt == 0 { "url failed; trying the next one" } else { "url failed" });
                    failed = Some(e);
                }
                result => {
                    endpoint.succeeded(started.elapsed());
                    self.count_url(endpoint, "ok");
                    return result;
                }
            }
        }
        Err(failed.unwrap_or_else(|| self.invalid("no url is configured".into())))
    }

    fn count_url(&self, endpoint: &Endpoint, result: &str) {
        if let Some(m) = self.inner.transport.metrics.get() {
            m.upstream_url_requests
                .with_label_values(&[self.inner.name.as_str(), endpoint.label.as_str(), result])
                .inc();
        }
    }

    /// The request flow at one URL: proactive auth, send (redirects inside), answer a 401's
    /// challenge at most once, then the final response as a [`Response`] or an [`Error`].
    async fn execute_at(
        &self,
        endpoint: &Endpoint,
        method: &Method,
        repo: &str,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<Response, Error> {
        let inner = &*self.inner;
        let url = match query {
            Some(q) => format!("{}{path}?{q}", endpoint.base),
            None => format!("{}{path}", endpoint.base),
        };
        let uri: Uri = url
            .parse()
            .map_err(|e| self.invalid(format!("bad URL for {path}: {e}")))?;
        // As sent: with the URL's path (a regional wharf's prefix), for messages and logs.
        let request = format!("{method} {}", uri.path());
        let send = |sent| self.send(method, &uri, headers, &request, sent);

        let sent = inner.auth.proactive(&inner.transport, repo).await?;
        let arrived = send(&sent).await?;
        // A 401 from a redirect target is not the registry's challenge to answer.
        if arrived.response.status() != StatusCode::UNAUTHORIZED
            || !redirect::same_origin(&arrived.uri, &endpoint.origin)
        {
            return self.finish(endpoint, arrived, &request, &sent).await;
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
        self.finish(endpoint, arrived, &request, &next).await
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
        endpoint: &Endpoint,
        arrived: Arrived,
        request: &str,
        sent: &Sent,
    ) -> Result<Response, Error> {
        let status = arrived.response.status();
        if status.is_success() {
            let (parts, body) = arrived.response.into_parts();
            return Ok(Response {
                url: endpoint.label.clone(),
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
