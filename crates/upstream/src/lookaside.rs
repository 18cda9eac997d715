//! [`Lookaside`]: an upstream's signature store, the "lookaside" (`sigstore:` / `lookaside:`) of
//! containers' `registries.d`, as Oracle publishes its simple-signing signatures
//! (`https://container-trust.oci.oraclecloud.com/podman`).
//!
//! A static tree of files, read without credentials (containers/image sends none to it either),
//! laid out as containers/image's `docker/lookaside.go` reads it:
//!
//! ```text
//! <base>/<repository>@<alg>=<hex>/signature-<n>     n = 1, 2, ... until the first 404
//! ```
//!
//! where `<repository>` is the repository's path in the registry (no host). Redirects are
//! followed with the upstream client's rules (`transport.rs`); a signature larger than
//! containers/image's bound is an error, not a truncated signature.

use bytes::Bytes;
use http::header::ACCEPT_ENCODING;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};

use crate::error::Error;
use crate::transport::{ERROR_BODY_LIMIT, Outgoing, ReadProblem, Transport};
use crate::{Config, tls};

/// The largest signature read, as containers/image's `iolimits.MaxSignatureBodySize`.
pub(crate) const MAX_SIGNATURE_BYTES: usize = 4 * 1024 * 1024;

/// The signature store of one upstream.
pub struct Lookaside {
    /// `scheme://authority[/path]`, no trailing slash.
    base: String,
    transport: Transport,
}

impl std::fmt::Debug for Lookaside {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lookaside")
            .field("upstream", &self.transport.upstream)
            .finish_non_exhaustive()
    }
}

impl Lookaside {
    /// The signature store at `url` (`http(s)://host[:port][/path]`) for the upstream that
    /// `config` describes: its name, `ca_file` and timeouts apply; its credentials do not.
    pub fn new(config: &Config, url: &str) -> Result<Lookaside, Error> {
        let invalid = |reason: &str| Error::Config {
            upstream: config.name.clone(),
            reason: format!("lookaside: {reason}"),
        };
        let base = url.trim_end_matches('/');
        let uri: Uri = base
            .parse()
            .map_err(|_| invalid("not a URL (want http(s)://host[:port][/path])"))?;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            _ => return Err(invalid("the scheme must be http or https")),
        }
        let authority = uri.authority().ok_or_else(|| invalid("no host"))?;
        if authority.as_str().contains('@') {
            return Err(invalid("user info in the URL is not supported"));
        }
        if uri.query().is_some() {
            return Err(invalid("a query is not supported"));
        }
        let transport = Transport {
            http: tls::http_client(config)?,
            upstream: config.name.clone(),
            ca_file: config.ca_file.clone(),
            connect_timeout: config.connect_timeout,
            response_timeout: config.response_timeout,
            user_agent: HeaderValue::from_static(concat!("wharf/", env!("CARGO_PKG_VERSION"))),
            metrics: std::sync::OnceLock::new(),
            // A signature store is a plain web server, never a wharf: no loop to detect.
            via: std::sync::OnceLock::new(),
        };
        Ok(Lookaside {
            base: base.to_owned(),
            transport,
        })
    }

    /// Signature `index` (0-based: `signature-<index + 1>`) of manifest `digest` in `repo`:
    /// `None` when the store answers 404 (the end of the list).
    pub async fn signature(
        &self,
        repo: &str,
        digest: &wharf_oci::Digest,
        index: usize,
    ) -> Result<Option<Bytes>, Error> {
        let path = format!(
            "/{repo}@{}={}/signature-{}",
            digest.algorithm().as_str(),
            digest.hex(),
            index + 1
        );
        let request = format!("GET lookaside {path}");
        let invalid = |reason: String| Error::InvalidRequest {
            upstream: self.transport.upstream.clone(),
            reason,
        };
        let plain = |s: &str| {
            !s.is_empty()
                && s != "."
                && s != ".."
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        };
        if !repo.split('/').all(plain) {
            return Err(invalid(
                "repository has characters not allowed in a path segment".into(),
            ));
        }
        let uri: Uri = format!("{}{path}", self.base)
            .parse()
            .map_err(|e| invalid(format!("bad URL for {path}: {e}")))?;
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
        let arrived = self
            .transport
            .send(Outgoing {
                method: &Method::GET,
                uri,
                headers: &headers,
                authorization: None,
                request: &request,
            })
            .await?;
        let status = arrived.response.status();
        let body = arrived.response.into_body();
        let upstream = self.transport.upstream.clone();
        if status == StatusCode::NOT_FOUND {
            let _ = self.transport.read_prefix(body, ERROR_BODY_LIMIT).await;
            return Ok(None);
        }
        if status != StatusCode::OK {
            let _ = self.transport.read_prefix(body, ERROR_BODY_LIMIT).await;
            return Err(Error::Status {
                upstream,
                request,
                status: status.as_u16(),
                code: None,
            });
        }
        let host = self.host();
        match self
            .transport
            .read_prefix(body, MAX_SIGNATURE_BYTES + 1)
            .await
        {
            Ok((bytes, true)) if bytes.len() <= MAX_SIGNATURE_BYTES => Ok(Some(bytes)),
            Ok(_) => Err(Error::Transport {
                upstream,
                host,
                reason: format!("{request}: a signature over {MAX_SIGNATURE_BYTES} bytes"),
            }),
            Err((_, ReadProblem::Timeout)) => Err(Error::Transport {
                upstream,
                host,
                reason: format!("{request}: the body did not arrive in time"),
            }),
            Err((_, ReadProblem::Broken(reason))) => Err(Error::Transport {
                upstream,
                host,
                reason: format!("{request}: {reason}"),
            }),
        }
    }

    fn host(&self) -> String {
        self.base
            .parse::<Uri>()
            .ok()
            .and_then(|u| u.authority().map(|a| a.to_string()))
            .unwrap_or_default()
    }
}
