//! Bearer tokens (PROTOCOL §2.2, §2.5): the realm URL, the realm's answer, and a cache per
//! (realm, service, scopes) in which concurrent misses share one fetch (moka's entry API runs
//! one initialiser per key and hands its result to every caller waiting on that key).
//!
//! Tokens are also found by repository: once a request for a repository needed a token, later
//! requests for it send that token straight away, so a warm request is one upstream round trip.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Uri};
use moka::Entry;
use moka::ops::compute::{CompResult, Op};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use tokio::time::Instant;

use crate::Error;

/// Everything but RFC 3986 unreserved characters is escaped: `Oracle Registry` must become
/// `Oracle%20Registry` and `repository:a/b:pull` keeps no raw `:` or `/`.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The distribution token spec's default when `expires_in` is absent, and its floor.
const MIN_LIFETIME_SECS: u64 = 60;
/// Bounds a realm's claim so the expiry instant cannot overflow.
const MAX_LIFETIME_SECS: u64 = 24 * 3600;
/// Scopes with a cached token, and repository hints, kept at most; past it, the least used go
/// (a lost token or hint costs one more fetch or 401 round trip, nothing else).
const MAX_KEYS: u64 = 4096;

/// What a token is good for. `with_credentials` is part of the key because an anonymous token for
/// a scope may grant less than one fetched with the account.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct TokenKey {
    pub realm: Uri,
    pub service: Option<String>,
    /// Sorted, without duplicates or empty entries.
    pub scopes: Vec<String>,
    pub with_credentials: bool,
}

impl TokenKey {
    /// The token request: `<realm>?service=<service>&scope=<scope>...`, service omitted if absent.
    pub(crate) fn url(&self) -> Result<Uri, String> {
        let mut url = self.realm.to_string();
        let mut sep = if self.realm.query().is_some() {
            '&'
        } else {
            '?'
        };
        let params = self
            .service
            .iter()
            .map(|s| ("service", s))
            .chain(self.scopes.iter().map(|s| ("scope", s)));
        for (name, value) in params {
            url.push(sep);
            url.push_str(name);
            url.push('=');
            url.extend(utf8_percent_encode(value, QUERY_VALUE));
            sep = '&';
        }
        url.parse().map_err(|e| format!("bad token URL: {e}"))
    }
}

/// `scope` values of a challenge: space-separated, empty ones dropped (OCIR sends `scope=""`, and
/// a token server answers 400 to a bogus one).
pub(crate) fn split_scopes(scope: Option<&str>) -> Vec<String> {
    let mut scopes: Vec<String> = scope
        .unwrap_or_default()
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    scopes.sort();
    scopes.dedup();
    scopes
}

/// A cached token, ready to send.
#[derive(Clone)]
pub(crate) struct Token {
    /// `Bearer <token>`, marked sensitive.
    pub header: HeaderValue,
    /// When to stop using it: a little before the realm's expiry.
    pub refresh_at: Instant,
}

impl Token {
    pub(crate) fn is_fresh(&self, now: Instant) -> bool {
        now < self.refresh_at
    }
}

/// Parses the realm's JSON. `requested_at` is when the token request was sent: counting from then
/// (rather than the realm's `issued_at`) errs early and needs no trust in the realm's clock.
pub(crate) fn parse_token_response(body: &[u8], requested_at: Instant) -> Result<Token, String> {
    #[derive(serde::Deserialize)]
    struct Answer {
        token: Option<String>,
        access_token: Option<String>,
        expires_in: Option<serde_json::Value>,
    }
    let answer: Answer =
        serde_json::from_slice(body).map_err(|e| format!("response is not token JSON: {e}"))?;
    let token = [answer.token, answer.access_token]
        .into_iter()
        .flatten()
        .find(|t| !t.is_empty())
        .ok_or("response has neither token nor access_token")?;
    let mut header = HeaderValue::try_from(format!("Bearer {token}"))
        .map_err(|_| "token is not a valid header value")?;
    header.set_sensitive(true);
    let secs = answer
        .expires_in
        .and_then(|v| v.as_f64())
        .map_or(MIN_LIFETIME_SECS, |s| s.max(0.0) as u64)
        .clamp(MIN_LIFETIME_SECS, MAX_LIFETIME_SECS);
    let margin = (secs / 10).max(5);
    Ok(Token {
        header,
        refresh_at: requested_at + Duration::from_secs(secs - margin),
    })
}

pub(crate) struct TokenCache {
    /// Whether a token is still good is decided by [`Token::is_fresh`] on tokio's clock (so
    /// paused-time tests hold); moka's `time_to_live` only bounds how long any entry is kept.
    tokens: moka::future::Cache<TokenKey, Token>,
    /// Repository -> the key its last challenge resolved to.
    hints: moka::sync::Cache<String, TokenKey>,
}

impl Default for TokenCache {
    fn default() -> Self {
        TokenCache {
            tokens: moka::future::Cache::builder()
                .max_capacity(MAX_KEYS)
                .time_to_live(Duration::from_secs(MAX_LIFETIME_SECS))
                .build(),
            hints: moka::sync::Cache::builder().max_capacity(MAX_KEYS).build(),
        }
    }
}

impl TokenCache {
    /// The key of the token last used for `repo`.
    pub(crate) fn hint(&self, repo: &str) -> Option<TokenKey> {
        self.hints.get(repo)
    }

    pub(crate) fn remember(&self, repo: &str, key: &TokenKey) {
        self.hints.insert(repo.to_owned(), key.clone());
    }

    /// A fresh token for `key` other than `refused` (one the registry just answered 401 to),
    /// fetching it if needed. Concurrent callers for one key wait for a single fetch, and share
    /// its error if it fails.
    pub(crate) async fn get<F, Fut>(
        &self,
        key: &TokenKey,
        refused: Option<&HeaderValue>,
        fetch: F,
    ) -> Result<Token, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Token, Error>>,
    {
        let usable = |t: &Token| t.is_fresh(Instant::now()) && Some(&t.header) != refused;
        match self.tokens.get(key).await {
            Some(t) if usable(&t) => return Ok(t),
            Some(_) => {
                // Drop the token only if it is still the unusable one: a caller that came first
                // may already have put a new token in its place, and that one is kept.
                let now = self
                    .tokens
                    .entry_by_ref(key)
                    .and_compute_with(|current| {
                        std::future::ready(match current {
                            Some(t) if usable(t.value()) => Op::Nop,
                            Some(_) => Op::Remove,
                            None => Op::Nop,
                        })
                    })
                    .await;
                if let CompResult::Unchanged(t) = now {
                    return Ok(t.into_value());
                }
            }
            None => {}
        }
        self.tokens
            .entry_by_ref(key)
            .or_try_insert_with(fetch())
            .await
            .map(Entry::into_value)
            .map_err(Arc::unwrap_or_clone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(service: Option<&str>, scope: Option<&str>) -> TokenKey {
        TokenKey {
            realm: "https://container-registry.oracle.com/auth"
                .parse()
                .expect("test URL"),
            service: service.map(str::to_owned),
            scopes: split_scopes(scope),
            with_credentials: false,
        }
    }

    #[test]
    fn token_url_encodes_and_omits() {
        let k = key(
            Some("Oracle Registry"),
            Some("repository:os/oraclelinux:pull"),
        );
        assert_eq!(
            k.url().expect("url").to_string(),
            "https://container-registry.oracle.com/auth?service=Oracle%20Registry&scope=repository%3Aos%2Foraclelinux%3Apull"
        );
        let k = key(None, Some(""));
        assert_eq!(
            k.url().expect("url").to_string(),
            "https://container-registry.oracle.com/auth"
        );
        let mut k = key(Some("s"), Some("b a  a"));
        k.realm = "https://r.example/token?x=1".parse().expect("test URL");
        assert_eq!(
            k.url().expect("url").to_string(),
            "https://r.example/token?x=1&service=s&scope=a&scope=b"
        );
    }

    #[test]
    fn token_fields_and_lifetimes() {
        let t0 = Instant::now();
        let t = parse_token_response(br#"{"access_token":"abc"}"#, t0).expect("token");
        assert_eq!(t.header.to_str().ok(), Some("Bearer abc"));
        assert!(t.header.is_sensitive());
        assert_eq!(t.refresh_at, t0 + Duration::from_secs(54));
        let t = parse_token_response(
            br#"{"token":"a","access_token":"b","expires_in":300,"issued_at":"2026-01-01T00:00:00Z"}"#,
            t0,
        )
        .expect("token");
        assert_eq!(t.header.to_str().ok(), Some("Bearer a"));
        assert_eq!(t.refresh_at, t0 + Duration::from_secs(270));
        let t = parse_token_response(br#"{"token":"a","expires_in":5}"#, t0).expect("token");
        assert_eq!(
            t.refresh_at,
            t0 + Duration::from_secs(54),
            "<60 counts as 60"
        );
        let t = parse_token_response(br#"{"token":"a","expires_in":1e300}"#, t0).expect("token");
        assert!(t.refresh_at <= t0 + Duration::from_secs(MAX_LIFETIME_SECS));
        assert!(parse_token_response(br#"{"token":""}"#, t0).is_err());
        assert!(parse_token_response(br#"{"token":"a\nb"}"#, t0).is_err());
        assert!(parse_token_response(b"<html>", t0).is_err());
    }

    #[test]
    fn freshness() {
        let t0 = Instant::now();
        let t = parse_token_response(br#"{"token":"a","expires_in":100}"#, t0).expect("token");
        assert!(t.is_fresh(t0 + Duration::from_secs(89)));
        assert!(!t.is_fresh(t0 + Duration::from_secs(90)));
    }

    /// A fetch that yields `Bearer <v>` with the default lifetime.
    fn fetch(v: &'static str) -> impl FnOnce() -> std::future::Ready<Result<Token, Error>> {
        move || {
            std::future::ready(
                parse_token_response(format!(r#"{{"token":"{v}"}}"#).as_bytes(), Instant::now())
                    .map_err(|reason| Error::TokenFetch {
                        upstream: "u".into(),
                        realm_host: "r".into(),
                        status: None,
                        reason,
                    }),
            )
        }
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_are_refetched_shortly_before_expiry() {
        let cache = TokenCache::default();
        let k = key(None, Some("repository:a:pull"));
        let a = cache.get(&k, None, fetch("a")).await.expect("a");
        tokio::time::advance(Duration::from_secs(53)).await;
        let still = cache.get(&k, None, fetch("b")).await.expect("cached");
        assert_eq!(still.header, a.header);
        tokio::time::advance(Duration::from_secs(2)).await;
        let b = cache.get(&k, None, fetch("b")).await.expect("b");
        assert_eq!(b.header.to_str().ok(), Some("Bearer b"));
    }

    #[tokio::test]
    async fn refused_tokens_are_refetched_once_per_key() {
        let cache = TokenCache::default();
        let k = key(Some("s"), Some("repository:a:pull"));
        let a = cache.get(&k, None, fetch("a")).await.expect("a");
        let again = cache.get(&k, None, fetch("x")).await.expect("cached");
        assert_eq!(again.header, a.header);
        let b = cache.get(&k, Some(&a.header), fetch("b")).await.expect("b");
        assert_eq!(b.header.to_str().ok(), Some("Bearer b"));
        // Someone else already replaced the refused token: use theirs, fetch nothing.
        let still_b = cache.get(&k, Some(&a.header), fetch("c")).await.expect("b");
        assert_eq!(still_b.header, b.header);
        cache.remember("a", &k);
        assert_eq!(cache.hint("a"), Some(k));
        assert_eq!(cache.hint("other"), None);
    }

    /// moka's own coalescing test, on ours: 16 tasks miss at once, one fetch runs.
    #[tokio::test(start_paused = true)]
    async fn concurrent_misses_wait_for_one_fetch() {
        let cache = Arc::new(TokenCache::default());
        let fetches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let barrier = Arc::new(tokio::sync::Barrier::new(16));
        let k = key(Some("s"), Some("repository:a:pull"));
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let (cache, fetches, barrier, k) =
                    (cache.clone(), fetches.clone(), barrier.clone(), k.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    cache
                        .get(&k, None, || async {
                            fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            fetch("a")().await
                        })
                        .await
                })
            })
            .collect();
        for t in tasks {
            let token = t.await.expect("task").expect("token");
            assert_eq!(token.header.to_str().ok(), Some("Bearer a"));
        }
        assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_failed_fetch_is_not_cached() {
        let cache = TokenCache::default();
        let k = key(None, Some("repository:a:pull"));
        let failing = || {
            std::future::ready(Err(Error::TokenFetch {
                upstream: "u".into(),
                realm_host: "r".into(),
                status: Some(503),
                reason: "down".into(),
            }))
        };
        assert!(cache.get(&k, None, failing).await.is_err());
        let a = cache
            .get(&k, None, fetch("a"))
            .await
            .expect("fetched again");
        assert_eq!(a.header.to_str().ok(), Some("Bearer a"));
    }
}
