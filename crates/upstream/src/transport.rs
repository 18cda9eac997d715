//! One logical HTTP exchange with an upstream: hops through redirects, each bounded by the
//! response-header timeout, with transport failures sorted into connect / TLS / timeout errors.
//!
//! Authentication is decided by the caller ([`crate::auth`]); this layer only decides when the
//! `Authorization` it was given must stop travelling (a change of origin).

use std::error::Error as StdError;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{AUTHORIZATION, LOCATION, USER_AGENT, VIA};
use http::{HeaderMap, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use tokio::time::Instant;

use crate::error::{Error, RedirectProblem, TimeoutPhase};
use crate::redirect::{self, MAX_HOPS};
use crate::tls::{self, HttpClient};

tokio::task_local! {
    /// The `Via` values of the client request being answered, in the task answering it
    /// ([`with_incoming_via`]): sent before this wharf's own on its upstream requests.
    static INCOMING_VIA: Vec<HeaderValue>;
}

/// Runs `f` (the answer to a request that arrived with `Via` values `hops`) so that upstream
/// requests it makes carry those hops before this wharf's own. Tasks it spawns do not inherit
/// them: a fill, which serves many clients, carries those of the request that started it
/// ([`incoming_via`]), so that a blob's loop (A to B to A) is refused as a manifest's is.
pub fn with_incoming_via<F: std::future::Future>(
    hops: Vec<HeaderValue>,
    f: F,
) -> impl std::future::Future<Output = F::Output> {
    INCOMING_VIA.scope(hops, f)
}

/// The `Via` values [`with_incoming_via`] gave the running task; none outside it.
pub fn incoming_via() -> Vec<HeaderValue> {
    INCOMING_VIA.try_with(Clone::clone).unwrap_or_default()
}

/// How much of an error, 401 or redirect body is read (for its OCI error code, and so the
/// connection can go back to the pool).
pub(crate) const ERROR_BODY_LIMIT: usize = 64 * 1024;

pub(crate) struct Transport {
    pub http: HttpClient,
    pub upstream: String,
    /// The upstream's `ca_file`, named in TLS error messages.
    pub ca_file: Option<PathBuf>,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub user_agent: HeaderValue,
    /// Set once by [`crate::Client::with_metrics`]; unset, nothing is counted.
    pub metrics: std::sync::OnceLock<wharf_metrics::Metrics>,
    /// `Via: 1.1 <pseudonym>` on every request, set once by [`crate::Client::set_via`]: a
    /// wharf that receives its own pseudonym refuses the request (a loop).
    pub via: std::sync::OnceLock<HeaderValue>,
}

/// A request to send, re-built for every hop and every auth attempt.
pub(crate) struct Outgoing<'a> {
    pub method: &'a Method,
    pub uri: Uri,
    /// Everything but `Authorization` and `User-Agent`; re-sent on every hop (`Range` included).
    pub headers: &'a HeaderMap,
    pub authorization: Option<&'a HeaderValue>,
    /// `GET /v2/...`, for error messages.
    pub request: &'a str,
}

/// The response that ended the redirect chain, and the URL that gave it.
pub(crate) struct Arrived {
    pub response: http::Response<Incoming>,
    pub uri: Uri,
}

/// Why [`Transport::read_prefix`] stopped early.
pub(crate) enum ReadProblem {
    Timeout,
    Broken(String),
}

impl Transport {
    /// Sends `out`, following up to [`MAX_HOPS`] redirects. `Authorization` is dropped for good at
    /// the first hop that leaves the original origin.
    pub(crate) async fn send(&self, out: Outgoing<'_>) -> Result<Arrived, Error> {
        let mut uri = out.uri;
        let mut authorization = out.authorization;
        let mut hops = 0;
        loop {
            let response = self
                .send_once(out.method, &uri, out.headers, authorization)
                .await?;
            let status = response.status();
            if !redirect::is_redirect(status) {
                return Ok(Arrived { response, uri });
            }
            let redirect_error = |problem| Error::Redirect {
                upstream: self.upstream.clone(),
                request: out.request.to_owned(),
                problem,
            };
            if hops == MAX_HOPS {
                return Err(redirect_error(RedirectProblem::TooMany(MAX_HOPS)));
            }
            hops += 1;
            let Some(location) = response.headers().get(LOCATION) else {
                return Err(redirect_error(RedirectProblem::MissingLocation(
                    status.as_u16(),
                )));
            };
            let location = String::from_utf8_lossy(location.as_bytes()).into_owned();
            let Some(next) = redirect::resolve(&uri, &location) else {
                return Err(redirect_error(RedirectProblem::BadLocation(
                    describe_location(&location),
                )));
            };
            // Let the connection go back to the pool before the next hop.
            let _ = self
                .read_prefix(response.into_body(), ERROR_BODY_LIMIT)
                .await;
            if !redirect::same_origin(&uri, &next) {
                authorization = None;
            }
            uri = next;
        }
    }

    async fn send_once(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        authorization: Option<&HeaderValue>,
    ) -> Result<http::Response<Incoming>, Error> {
        let mut request = Request::new(Empty::<Bytes>::new());
        *request.method_mut() = method.clone();
        *request.uri_mut() = uri.clone();
        let h = request.headers_mut();
        h.clone_from(headers);
        h.insert(USER_AGENT, self.user_agent.clone());
        // The hops the request being answered came through, then this wharf: a request that
        // goes round two wharfs (A to B to A) reaches A with A's own pseudonym in it.
        let _ = INCOMING_VIA.try_with(|hops| {
            for v in hops {
                h.append(VIA, v.clone());
            }
        });
        if let Some(via) = self.via.get() {
            h.append(VIA, via.clone());
        }
        if let Some(value) = authorization {
            h.insert(AUTHORIZATION, value.clone());
        }
        let host = uri.host().unwrap_or_default().to_owned();
        let started = Instant::now();
        let result = tokio::time::timeout(self.response_timeout, self.http.request(request)).await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        let url = redirect::display_without_query(uri);
        if let Some(m) = self.metrics.get() {
            let class = match &result {
                Ok(Ok(r)) => wharf_metrics::status_class(r.status().as_u16()),
                Ok(Err(_)) => "error",
                Err(_) => "timeout",
            };
            let method = wharf_metrics::method_label(method.as_str());
            m.upstream_requests
                .with_label_values(&[self.upstream.as_str(), method, class])
                .inc();
            m.upstream_duration
                .with_label_values(&[self.upstream.as_str(), method])
                .observe(started.elapsed().as_secs_f64());
            // Docker Hub: `ratelimit-remaining: 76;w=21600`.
            if let Ok(Ok(r)) = &result
                && let Some(left) = r
                    .headers()
                    .get("ratelimit-remaining")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.split(';').next())
                    .and_then(|v| v.trim().parse::<i64>().ok())
            {
                m.ratelimit_remaining
                    .with_label_values(&[self.upstream.as_str()])
                    .set(left);
            }
        }
        match result {
            Ok(Ok(response)) => {
                tracing::debug!(upstream = %self.upstream, %method, %url, status = response.status().as_u16(), elapsed_ms, "upstream request");
                Ok(response)
            }
            Ok(Err(e)) => {
                let error = self.classify(host, &e);
                tracing::debug!(upstream = %self.upstream, %method, %url, elapsed_ms, error = %error, "upstream request failed");
                Err(error)
            }
            Err(_) => {
                tracing::debug!(upstream = %self.upstream, %method, %url, elapsed_ms, "upstream request timed out");
                Err(Error::Timeout {
                    upstream: self.upstream.clone(),
                    host,
                    phase: TimeoutPhase::ResponseHeaders,
                    after: self.response_timeout,
                })
            }
        }
    }

    fn classify(&self, host: String, e: &hyper_util::client::legacy::Error) -> Error {
        let upstream = self.upstream.clone();
        let reason = chain(e);
        let mut source: Option<&(dyn StdError + 'static)> = e.source();
        while let Some(err) = source {
            if let Some(io) = err.downcast_ref::<io::Error>() {
                if io.kind() == io::ErrorKind::TimedOut && e.is_connect() {
                    return Error::Timeout {
                        upstream,
                        host,
                        phase: TimeoutPhase::Connect,
                        after: self.connect_timeout,
                    };
                }
                if let Some(tls) = wrapped_rustls_error(io) {
                    return self.tls_error(host, tls);
                }
            }
            if let Some(tls) = err.downcast_ref::<rustls::Error>() {
                return self.tls_error(host, tls);
            }
            source = err.source();
        }
        if e.is_connect() {
            Error::Connect {
                upstream,
                host,
                reason,
            }
        } else {
            Error::Transport {
                upstream,
                host,
                reason,
            }
        }
    }

    fn tls_error(&self, host: String, e: &rustls::Error) -> Error {
        Error::Tls {
            upstream: self.upstream.clone(),
            reason: tls::explain(e, &host, self.ca_file.as_deref()),
            host,
        }
    }

    /// Reads at most `limit` bytes of a body within `response_timeout`. Returns what was read and
    /// whether that was the whole body, or why reading stopped.
    pub(crate) async fn read_prefix(
        &self,
        body: Incoming,
        limit: usize,
    ) -> Result<(Bytes, bool), (Bytes, ReadProblem)> {
        let mut buf = BytesMut::new();
        let read = async {
            let mut body = body;
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| ReadProblem::Broken(e.to_string()))?;
                if let Ok(data) = frame.into_data() {
                    let room = limit - buf.len();
                    if data.len() > room {
                        buf.extend_from_slice(&data[..room]);
                        return Ok(false);
                    }
                    buf.extend_from_slice(&data);
                }
            }
            Ok(true)
        };
        match tokio::time::timeout(self.response_timeout, read).await {
            Ok(Ok(complete)) => Ok((buf.freeze(), complete)),
            Ok(Err(problem)) => Err((buf.freeze(), problem)),
            Err(_) => Err((buf.freeze(), ReadProblem::Timeout)),
        }
    }
}

/// tokio-rustls reports handshake failures as an io::Error wrapping rustls::Error, and
/// hyper-rustls wraps that in another io::Error; `source()` skips those layers, `get_ref()` not.
fn wrapped_rustls_error(io: &io::Error) -> Option<&rustls::Error> {
    let inner = io.get_ref()?;
    match inner.downcast_ref::<rustls::Error>() {
        Some(tls) => Some(tls),
        None => inner
            .downcast_ref::<io::Error>()
            .and_then(wrapped_rustls_error),
    }
}

/// The error's causes joined with ": ", skipping hyper-util's own "client error (Connect)" line
/// and repeats (io::Error shows its inner error's message).
fn chain(e: &hyper_util::client::legacy::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source = e.source();
    while let Some(err) = source {
        let msg = err.to_string();
        if parts.last() != Some(&msg) {
            parts.push(msg);
        }
        source = err.source();
    }
    if parts.is_empty() {
        e.to_string()
    } else {
        parts.join(": ")
    }
}

/// A `Location` for an error message: no user info or query (signatures), bounded length.
fn describe_location(location: &str) -> String {
    let absolute = location
        .parse::<Uri>()
        .ok()
        .filter(|u| u.scheme().is_some() && u.host().is_some());
    if let Some(uri) = absolute {
        return redirect::display_without_query(&uri);
    }
    let without_query = location.split(['?', '#']).next().unwrap_or_default();
    let mut s: String = without_query.chars().take(200).collect();
    if s.len() < location.len() {
        s.push_str("...");
    }
    s
}
