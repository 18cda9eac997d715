//! Direct HTTP(S) requests for tests: a blocking wrapper around hyper-util's client.
//!
//! No connection pooling: every request opens a fresh connection, so a restarted server is
//! never talked to through a dead pooled socket.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// A response with its whole body read.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    /// One header's value as text (the first, if repeated).
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON; panics with the body if it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {} body is not JSON ({e}): {:?}",
                self.status,
                self.text()
            )
        })
    }

    /// The `code`s of an OCI error body `{"errors":[{"code":..,"message":..}]}`, or empty if
    /// the body is not such JSON.
    pub fn error_codes(&self) -> Vec<String> {
        self.errors().into_iter().map(|(c, _)| c).collect()
    }

    /// `(code, message)` pairs of an OCI error body.
    pub fn errors(&self) -> Vec<(String, String)> {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&self.body) else {
            return Vec::new();
        };
        let Some(errs) = v.get("errors").and_then(|e| e.as_array()) else {
            return Vec::new();
        };
        errs.iter()
            .map(|e| {
                let field = |k: &str| e.get(k).and_then(|x| x.as_str()).unwrap_or("").to_owned();
                (field("code"), field("message"))
            })
            .collect()
    }

    /// Human summary for assertion messages (status, headers, up to 2 KiB of body).
    pub fn describe(&self) -> String {
        let body = self.text();
        let body: String = body.chars().take(2048).collect();
        format!(
            "status {} headers {:?} body {:?}",
            self.status, self.headers, body
        )
    }
}

/// A blocking HTTP/1.1 client for `http://` and `https://` URLs.
pub struct Http {
    rt: tokio::runtime::Runtime,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

impl Http {
    /// Trusts no CA: plain HTTP only (HTTPS fails verification).
    pub fn new() -> Http {
        Http::build(rustls::RootCertStore::empty())
    }

    /// Trusts the PEM certificate(s) in `ca` for HTTPS.
    pub fn with_ca(ca: &Path) -> Http {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca)
            .unwrap_or_else(|e| panic!("read {}: {e}", ca.display()))
        {
            let cert = cert.unwrap_or_else(|e| panic!("parse {}: {e}", ca.display()));
            roots
                .add(cert)
                .unwrap_or_else(|e| panic!("trust {}: {e}", ca.display()));
        }
        Http::build(roots)
    }

    fn build(roots: rustls::RootCertStore) -> Http {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("rustls protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(connector);
        Http {
            rt,
            client,
            timeout: Duration::from_secs(120),
        }
    }

    /// Per-request deadline (default 120 s).
    pub fn timeout(mut self, t: Duration) -> Http {
        self.timeout = t;
        self
    }

    /// Sends one request; headers may repeat. Errors are connection-level failures and timeouts.
    pub fn try_request(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Resp, String> {
        let method = Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
        let mut req = Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| format!("build request {url}: {e}"))?;
        let fut = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| format!("{e:?}"))?;
            let (parts, body) = resp.into_parts();
            let body = body.collect().await.map_err(|e| format!("body: {e}"))?;
            Ok(Resp {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body: body.to_bytes(),
            })
        };
        self.rt
            .block_on(async { tokio::time::timeout(self.timeout, fut).await })
            .map_err(|_| format!("{url}: no answer within {:?}", self.timeout))?
    }

    /// Like [`Http::try_request`] but panics on a connection-level failure.
    pub fn request(&self, method: &str, url: &str, headers: &[(&str, &str)], body: Bytes) -> Resp {
        self.try_request(method, url, headers, body)
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"))
    }

    pub fn get(&self, url: &str, headers: &[(&str, &str)]) -> Resp {
        self.request("GET", url, headers, Bytes::new())
    }

    pub fn head(&self, url: &str, headers: &[(&str, &str)]) -> Resp {
        self.request("HEAD", url, headers, Bytes::new())
    }
}

impl Default for Http {
    fn default() -> Self {
        Http::new()
    }
}

/// `GET` with a fresh plain client.
pub fn get(url: &str, headers: &[(&str, &str)]) -> Resp {
    Http::new().get(url, headers)
}

/// `HEAD` with a fresh plain client.
pub fn head(url: &str, headers: &[(&str, &str)]) -> Resp {
    Http::new().head(url, headers)
}

/// Every manifest type a modern client accepts (what podman sends, minus schema1).
pub const ACCEPT_ALL_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// Only Docker types: an OCI manifest must not be served for this.
pub const ACCEPT_DOCKER_ONLY: &str = "application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json";
