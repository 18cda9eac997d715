//! Deciding what `Authorization` to send (PROTOCOL §2): proactively before a request, and in
//! answer to a 401's challenges. Bearer is preferred when offered; Basic otherwise.
//!
//! Credentials go to the registry itself (Basic) and to trusted token realms only
//! ([`RealmPolicy`]); an untrusted realm is asked for an anonymous token.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{PoisonError, RwLock};

use base64::Engine;
use http::{HeaderMap, HeaderValue, Method, Uri};
use tokio::time::Instant;

use crate::challenge::Challenge;
use crate::error::{Error, TimeoutPhase};
use crate::realm::RealmPolicy;
use crate::token::{Token, TokenCache, TokenKey, parse_token_response, split_scopes};
use crate::transport::{Outgoing, ReadProblem, Transport};

/// A token response larger than this is refused (Docker Hub's are a few KiB).
const TOKEN_BODY_LIMIT: usize = 1024 * 1024;

/// What a request carried.
pub(crate) enum Sent {
    Anonymous,
    Basic,
    Bearer { key: TokenKey, token: Token },
}

pub(crate) struct Auth {
    upstream: String,
    /// `Basic base64(user:pass)`, marked sensitive.
    basic: Option<HeaderValue>,
    /// Set once the registry answered with a Basic challenge, so later requests skip the 401.
    wants_basic: AtomicBool,
    tokens: TokenCache,
    policy: RwLock<RealmPolicy>,
}

impl Auth {
    pub(crate) fn new(upstream: String, basic: Option<HeaderValue>, policy: RealmPolicy) -> Self {
        Auth {
            upstream,
            basic,
            wants_basic: AtomicBool::new(false),
            tokens: TokenCache::default(),
            policy: RwLock::new(policy),
        }
    }

    pub(crate) fn allow_realm_hosts(&self, hosts: Vec<String>) {
        self.policy
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .allow(hosts);
    }

    pub(crate) fn header<'a>(&'a self, sent: &'a Sent) -> Option<&'a HeaderValue> {
        match sent {
            Sent::Anonymous => None,
            Sent::Basic => self.basic.as_ref(),
            Sent::Bearer { token, .. } => Some(&token.header),
        }
    }

    /// What to send before any challenge: what this upstream asked for last time. A token that
    /// ran out is fetched again here, which saves the 401 round trip.
    pub(crate) async fn proactive(&self, transport: &Transport, repo: &str) -> Result<Sent, Error> {
        if self.basic.is_some() && self.wants_basic.load(Ordering::Relaxed) {
            return Ok(Sent::Basic);
        }
        let Some(key) = self.tokens.hint(repo) else {
            return Ok(Sent::Anonymous);
        };
        let realm_host = key.realm.host().unwrap_or_default().to_owned();
        let token = self
            .tokens
            .get(&key, None, || self.fetch(transport, &key, &realm_host))
            .await?;
        Ok(Sent::Bearer { key, token })
    }

    /// What to send after a 401 carrying `challenges`, or why there is nothing to try.
    /// `unauthorized` builds the error for the caller's request.
    pub(crate) async fn answer(
        &self,
        transport: &Transport,
        challenges: &[Challenge],
        sent: &Sent,
        repo: &str,
        unauthorized: impl Fn(&str) -> Error,
    ) -> Result<Sent, Error> {
        if let Some(bearer) = challenges.iter().find(|c| c.is("bearer")) {
            self.wants_basic.store(false, Ordering::Relaxed);
            let (key, realm_host) = self.key_for(bearer, repo)?;
            let refused = match sent {
                Sent::Bearer { token, .. } => Some(&token.header),
                _ => None,
            };
            let token = self
                .tokens
                .get(&key, refused, || self.fetch(transport, &key, &realm_host))
                .await?;
            self.tokens.remember(repo, &key);
            return Ok(Sent::Bearer { key, token });
        }
        if challenges.iter().any(|c| c.is("basic")) {
            return match (&self.basic, sent) {
                (None, _) => Err(unauthorized(
                    "Basic authentication required and no credentials are configured",
                )),
                (Some(_), Sent::Basic) => Err(unauthorized("credentials refused")),
                (Some(_), _) => {
                    self.wants_basic.store(true, Ordering::Relaxed);
                    Ok(Sent::Basic)
                }
            };
        }
        Err(unauthorized("no Bearer or Basic challenge to answer"))
    }

    /// The cache key for a Bearer challenge; refuses realms that are not http(s) URLs.
    fn key_for(&self, bearer: &Challenge, repo: &str) -> Result<(TokenKey, String), Error> {
        let refuse = |realm: &str, reason: &str| Error::RealmRefused {
            upstream: self.upstream.clone(),
            realm: realm.chars().take(200).collect(),
            reason: reason.to_owned(),
        };
        let raw = bearer
            .param("realm")
            .ok_or_else(|| refuse("(none)", "the Bearer challenge has no realm"))?;
        let realm: Uri = raw.parse().map_err(|_| refuse(raw, "not a URL"))?;
        let http = matches!(realm.scheme_str(), Some("http" | "https"));
        let host = realm.host().unwrap_or_default().to_owned();
        if !http || host.is_empty() {
            return Err(refuse(raw, "not an http(s) URL"));
        }
        let mut scopes = split_scopes(bearer.param("scope"));
        if scopes.is_empty() {
            scopes.push(format!("repository:{repo}:pull"));
        }
        let trusted = self
            .policy
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .may_send_credentials(&realm);
        if self.basic.is_some() && !trusted {
            tracing::warn!(upstream = %self.upstream, realm_host = %host, "token realm is not on the upstream's domain; asking it for an anonymous token (allow it with the realm host allow-list)");
        }
        let key = TokenKey {
            realm,
            service: bearer
                .param("service")
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
            scopes,
            with_credentials: self.basic.is_some() && trusted,
        };
        Ok((key, host))
    }

    async fn fetch(
        &self,
        transport: &Transport,
        key: &TokenKey,
        realm_host: &str,
    ) -> Result<Token, Error> {
        let result = self.fetch_once(transport, key, realm_host).await;
        if let Some(m) = transport.metrics.get() {
            let outcome = if result.is_ok() { "ok" } else { "error" };
            m.token_fetches
                .with_label_values(&[self.upstream.as_str(), outcome])
                .inc();
        }
        result
    }

    async fn fetch_once(
        &self,
        transport: &Transport,
        key: &TokenKey,
        realm_host: &str,
    ) -> Result<Token, Error> {
        let failed = |status: Option<u16>, reason: String| Error::TokenFetch {
            upstream: self.upstream.clone(),
            realm_host: realm_host.to_owned(),
            status,
            reason,
        };
        let uri = key.url().map_err(|reason| failed(None, reason))?;
        let request = format!("GET {}", uri.path());
        let headers = HeaderMap::new();
        let authorization = if key.with_credentials {
            self.basic.as_ref()
        } else {
            None
        };
        let requested_at = Instant::now();
        let arrived = transport
            .send(Outgoing {
                method: &Method::GET,
                uri,
                headers: &headers,
                authorization,
                request: &request,
            })
            .await?;
        let status = arrived.response.status();
        let body = transport.read_prefix(arrived.response.into_body(), TOKEN_BODY_LIMIT);
        let body = match body.await {
            Ok((body, true)) => body,
            Ok((_, false)) => {
                return Err(failed(Some(status.as_u16()), "response too large".into()));
            }
            Err((_, ReadProblem::Timeout)) => {
                return Err(Error::Timeout {
                    upstream: self.upstream.clone(),
                    host: realm_host.to_owned(),
                    phase: TimeoutPhase::Body,
                    after: transport.response_timeout,
                });
            }
            Err((_, ReadProblem::Broken(reason))) => {
                return Err(Error::Transport {
                    upstream: self.upstream.clone(),
                    host: realm_host.to_owned(),
                    reason,
                });
            }
        };
        if !status.is_success() {
            let with = if key.with_credentials {
                "with credentials"
            } else {
                "anonymously"
            };
            return Err(failed(
                Some(status.as_u16()),
                format!("status {} (asked {with})", status.as_u16()),
            ));
        }
        parse_token_response(&body, requested_at).map_err(|reason| failed(None, reason))
    }
}

/// `Basic base64(user:pass)`, marked sensitive so it is never logged or HPACK-indexed.
pub(crate) fn basic_header(user: &str, password: &str) -> Option<HeaderValue> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let mut value = HeaderValue::try_from(format!("Basic {encoded}")).ok()?;
    value.set_sensitive(true);
    Some(value)
}
