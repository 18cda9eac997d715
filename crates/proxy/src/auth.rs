//! Client authentication: HTTP Basic against an htpasswd file of bcrypt entries
//! (`htpasswd -B`), and whether pulls need it at all (`auth.anonymous_pull`).
//!
//! The rules:
//! - no htpasswd: every request is anonymous and any `Authorization` is ignored;
//! - htpasswd set: `/v2/` answers 401 with wharf's own challenge (`Basic realm="wharf"`) unless
//!   valid credentials come with it, so `podman login` checks the password; credentials that
//!   come with any request must be valid; pulls without credentials pass here when
//!   `anonymous_pull` lets them pull anything, and routing then checks the kind of content it
//!   covers (`access.rs`: all, mirrored, hosted or none).
//!
//! No credentials and wrong ones are told apart: an absent or empty `Authorization` (some
//! clients send `Basic Og==`, an empty `user:password`, when they have no login) is asked to
//! authenticate; a user name or password that does not match is refused as such.
//!
//! bcrypt is slow by design (milliseconds to a quarter second per check), and a pull sends the
//! credentials with every blob request. A successful check is remembered for [`VERIFIED_TTL`]
//! under the SHA-256 of `user:password` (never the password itself), so a pull of 20 blobs
//! costs one bcrypt run; a moka cache bounds and expires what is remembered. Failures are not
//! remembered. Checks run on the blocking pool.
//!
//! The client's `Authorization` is wharf's business only: the upstream client builds its own
//! headers and never sees the client's request.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use base64::Engine;
use http::{HeaderMap, HeaderValue, header};
use sha2::{Digest as _, Sha256};
use tokio::time::Instant;

use crate::ProxyError;
use crate::access::{AnonymousPull, Rights};

/// How long a successful check is remembered.
pub const VERIFIED_TTL: Duration = Duration::from_secs(60);
/// Successful checks remembered at most; past it, the least used are forgotten.
const VERIFIED_MAX: u64 = 4096;
/// What `WWW-Authenticate` says on every 401 of wharf's own (added by `error.rs`).
pub use crate::error::CHALLENGE;

/// A bad htpasswd file. `Display` names the file and line, never a hash or password.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct HtpasswdError {
    pub path: PathBuf,
    pub message: String,
}

/// The users of an htpasswd file: user name -> bcrypt hash.
#[derive(Clone, Default)]
pub struct Htpasswd {
    users: HashMap<String, String>,
}

impl std::fmt::Debug for Htpasswd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Htpasswd")
            .field("users", &self.users.len())
            .finish()
    }
}

impl Htpasswd {
    pub fn load(path: &Path) -> Result<Htpasswd, HtpasswdError> {
        let err = |message: String| HtpasswdError {
            path: path.to_owned(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
        Htpasswd::parse(&text).map_err(err)
    }

    /// `user:$2y$...` lines; blank lines and `#` comments are skipped. Only bcrypt entries are
    /// accepted: MD5 (`$apr1$`), SHA-1 and crypt(3) hashes are too weak to keep.
    pub fn parse(text: &str) -> Result<Htpasswd, String> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let n = i + 1;
            let (user, hash) = line
                .split_once(':')
                .ok_or_else(|| format!("line {n}: not user:hash"))?;
            if user.is_empty() {
                return Err(format!("line {n}: empty user name"));
            }
            let bcrypt = ["$2y$", "$2b$", "$2a$", "$2x$"]
                .iter()
                .any(|p| hash.starts_with(p));
            if !bcrypt || hash.len() != 60 {
                return Err(format!(
                    "line {n} (user {user:?}): not a bcrypt hash; create entries with `htpasswd -B`"
                ));
            }
            if users.insert(user.to_owned(), hash.to_owned()).is_some() {
                return Err(format!("line {n}: user {user:?} is listed twice"));
            }
        }
        if users.is_empty() {
            return Err("lists no users".into());
        }
        Ok(Htpasswd { users })
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Whether the file lists `user`.
    pub fn contains(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }
}

/// What a request's credentials amount to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Anonymous,
    User(String),
    /// Another replica of the fleet, with the cluster's secret (`cluster.secret_file`): it may
    /// pull mirrored content, and nothing else.
    Peer,
}

/// Client authentication for the registry API.
pub struct ClientAuth {
    file: Option<PathBuf>,
    users: RwLock<Arc<Htpasswd>>,
    anonymous_pull: AnonymousPull,
    /// Who may pull, push and delete which hosted repository (`[[auth.rights]]`).
    rights: Rights,
    /// sha256(user ":" password) -> when the successful check expires. moka's own expiry
    /// (`time_to_live`, on its own clock) bounds how long an entry is kept; the instant stored
    /// decides whether it still counts, on tokio's clock, so paused-time tests see it expire.
    verified: moka::sync::Cache<[u8; 32], Instant>,
    /// How many times bcrypt ran (the expensive part).
    bcrypt_runs: AtomicU64,
    /// sha256 of the fleet's secret: Basic `wharf-peer:<secret>` is another replica.
    peer_secret: Option<[u8; 32]>,
}

impl ClientAuth {
    /// Users from `htpasswd`; `anonymous_pull` decides whether pulls need them.
    pub fn new(users: Htpasswd, anonymous_pull: impl Into<AnonymousPull>) -> Self {
        ClientAuth {
            file: None,
            users: RwLock::new(Arc::new(users)),
            anonymous_pull: anonymous_pull.into(),
            rights: Rights::default(),
            verified: moka::sync::Cache::builder()
                .max_capacity(VERIFIED_MAX)
                .time_to_live(VERIFIED_TTL)
                .build(),
            bcrypt_runs: AtomicU64::new(0),
            peer_secret: None,
        }
    }

    /// Accepts Basic `wharf-peer:<secret>` as another replica of the fleet
    /// ([`crate::cluster::PEER_USER`]); that name is then no htpasswd user's.
    pub fn with_peer_secret(mut self, secret: &str) -> Self {
        self.peer_secret = Some(Sha256::digest(secret.as_bytes()).into());
        self
    }

    /// Like [`ClientAuth::new`], remembering the file for [`ClientAuth::reload`].
    pub fn from_file(
        path: &Path,
        anonymous_pull: impl Into<AnonymousPull>,
    ) -> Result<Self, HtpasswdError> {
        let mut auth = ClientAuth::new(Htpasswd::load(path)?, anonymous_pull);
        auth.file = Some(path.to_owned());
        Ok(auth)
    }

    /// Reads the htpasswd file again (SIGHUP); on error the old users stay. Remembered checks
    /// are forgotten, so a removed user or changed password takes effect at once.
    pub fn reload(&self) -> Result<usize, HtpasswdError> {
        let Some(path) = &self.file else {
            return Ok(self.users().len());
        };
        let users = Htpasswd::load(path)?;
        let n = users.len();
        *self.users.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(users);
        self.verified.invalidate_all();
        Ok(n)
    }

    /// With `rights` in place of the default (every user may do everything).
    pub fn with_rights(mut self, rights: Rights) -> Self {
        self.rights = rights;
        self
    }

    pub fn rights(&self) -> &Rights {
        &self.rights
    }

    pub fn anonymous_pull(&self) -> AnonymousPull {
        self.anonymous_pull
    }

    /// The users the rights name that the htpasswd file (as last loaded) does not list: their
    /// grants do nothing until the file has them, which start-up and SIGHUP warn about.
    pub fn unknown_users(&self) -> Vec<String> {
        let users = self.users();
        let mut unknown: Vec<String> = self
            .rights
            .users()
            .filter(|u| !users.contains(u))
            .map(str::to_owned)
            .collect();
        unknown.sort();
        unknown.dedup();
        unknown
    }

    /// How many password checks needed bcrypt (the rest were remembered).
    pub fn bcrypt_runs(&self) -> u64 {
        self.bcrypt_runs.load(Ordering::Relaxed)
    }

    fn users(&self) -> Arc<Htpasswd> {
        self.users
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Decides a request: `Ok(caller)` to go on, `Err(401 response)` otherwise. `ping` is
    /// `GET /v2/`, which always wants credentials here (that is how clients log in).
    pub async fn check(&self, headers: &HeaderMap, ping: bool) -> Result<Caller, ProxyError> {
        let Some(value) = headers.get(header::AUTHORIZATION).filter(|v| !is_empty(v)) else {
            if self.anonymous_pull.any() && !ping {
                return Ok(Caller::Anonymous);
            }
            return Err(unauthorized("authentication required"));
        };
        let Some((user, password)) = basic_credentials(value) else {
            return Err(unauthorized(
                "only Basic authentication with user:password is accepted",
            ));
        };
        if user == crate::cluster::PEER_USER
            && let Some(expected) = &self.peer_secret
        {
            // Compared as hashes: no early exit on the first differing byte of the secret.
            let given: [u8; 32] = Sha256::digest(password.as_bytes()).into();
            return if given == *expected {
                Ok(Caller::Peer)
            } else {
                tracing::info!("a peer's secret was refused");
                Err(unauthorized("invalid user name or password"))
            };
        }
        if self.verify(&user, &password).await {
            Ok(Caller::User(user))
        } else {
            tracing::info!(user, "client authentication failed");
            Err(unauthorized("invalid user name or password"))
        }
    }

    async fn verify(&self, user: &str, password: &str) -> bool {
        let key: [u8; 32] = Sha256::new()
            .chain_update(user.as_bytes())
            .chain_update(b":")
            .chain_update(password.as_bytes())
            .finalize()
            .into();
        if self
            .verified
            .get(&key)
            .is_some_and(|until| until > Instant::now())
        {
            return true;
        }
        let Some(hash) = self.users().users.get(user).cloned() else {
            return false;
        };
        let password = password.to_owned();
        self.bcrypt_runs.fetch_add(1, Ordering::Relaxed);
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(false);
        if ok {
            self.verified.insert(key, Instant::now() + VERIFIED_TTL);
        }
        ok
    }
}

/// An `Authorization` that carries no credentials: empty, a bare scheme, or Basic with an
/// empty `user:password` (`Og==`), which clients without a login send.
fn is_empty(value: &HeaderValue) -> bool {
    let v = value.to_str().map(str::trim).unwrap_or("x");
    if v.is_empty() || v.eq_ignore_ascii_case("basic") {
        return true;
    }
    matches!(basic_credentials(value), Some((u, p)) if u.is_empty() && p.is_empty())
}

/// `Basic base64(user:password)` decoded; `None` for anything else.
fn basic_credentials(value: &HeaderValue) -> Option<(String, String)> {
    let v = value.to_str().ok()?.trim();
    let (scheme, rest) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// A 401 of wharf's own, which `error.rs` answers with wharf's challenge.
fn unauthorized(message: &str) -> ProxyError {
    ProxyError::Unauthenticated {
        message: message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // `htpasswd -nbB alice s3cret` (cost 5).
    const ALICE: &str = "alice:$2y$05$6oDSXHgbzDv.k3jEX/jlaubEbNHKJw/l0YmbzfQnb0BG5YpVPwju2";

    fn basic(user: &str, password: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let v = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {v}")).unwrap(),
        );
        h
    }

    fn auth(anonymous_pull: bool) -> ClientAuth {
        ClientAuth::new(Htpasswd::parse(ALICE).unwrap(), anonymous_pull)
    }

    #[test]
    fn parses_bcrypt_only() {
        assert_eq!(Htpasswd::parse(ALICE).unwrap().len(), 1);
        assert!(
            Htpasswd::parse("bob:$apr1$abc$defghijklmnopqrstuvwx")
                .unwrap_err()
                .contains("htpasswd -B")
        );
        assert!(Htpasswd::parse("# nobody\n").is_err());
        let twice = format!("{ALICE}\n{ALICE}\n");
        assert!(Htpasswd::parse(&twice).unwrap_err().contains("twice"));
        // The message never quotes the hash.
        let e = Htpasswd::parse("carol:{SHA}secrethashvalue=").unwrap_err();
        assert!(!e.contains("secrethashvalue"), "{e}");
    }

    #[tokio::test]
    async fn decides_requests() {
        let closed = auth(false);
        let open = auth(true);
        let none = HeaderMap::new();
        assert!(closed.check(&none, false).await.is_err());
        assert_eq!(open.check(&none, false).await.unwrap(), Caller::Anonymous);
        assert!(open.check(&none, true).await.is_err(), "the ping asks");
        let good = basic("alice", "s3cret");
        assert_eq!(
            closed.check(&good, true).await.unwrap(),
            Caller::User("alice".into())
        );
        for bad in [basic("alice", "wrong"), basic("mallory", "s3cret")] {
            assert!(closed.check(&bad, false).await.is_err());
            assert!(open.check(&bad, false).await.is_err(), "wrong is wrong");
        }
        let mut bearer = HeaderMap::new();
        bearer.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        assert!(open.check(&bearer, false).await.is_err());
    }

    /// The message of a refusal.
    fn refusal(r: Result<Caller, ProxyError>) -> String {
        match r {
            Err(ProxyError::Unauthenticated { message }) => message,
            other => panic!("not a 401 of wharf's own: {other:?}"),
        }
    }

    #[tokio::test]
    async fn no_credentials_are_asked_for_wrong_ones_refused() {
        let closed = auth(false);
        let open = auth(true);
        let header = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, HeaderValue::from_static(v));
            h
        };
        let nothing = [HeaderMap::new(), header(""), header("Basic"), basic("", "")];
        for h in &nothing {
            let m = refusal(closed.check(h, false).await);
            assert_eq!(m, "authentication required", "{h:?}");
            assert_eq!(
                refusal(open.check(h, true).await),
                "authentication required"
            );
            assert_eq!(
                open.check(h, false).await.unwrap(),
                Caller::Anonymous,
                "{h:?}"
            );
        }
        for bad in [
            basic("alice", "wrong"),
            basic("mallory", "s3cret"),
            basic("alice", ""),
        ] {
            let m = refusal(closed.check(&bad, false).await);
            assert_eq!(m, "invalid user name or password");
        }
    }

    #[tokio::test]
    async fn remembers_success_not_failure() {
        let a = auth(false);
        assert!(a.verify("alice", "s3cret").await);
        assert_eq!(a.verified.iter().count(), 1);
        assert!(!a.verify("alice", "nope").await);
        assert_eq!(a.verified.iter().count(), 1);
        // A remembered check is answered without bcrypt: a pull of 200 blobs costs one run.
        for _ in 0..200 {
            assert!(a.verify("alice", "s3cret").await);
        }
        assert_eq!(
            a.bcrypt_runs(),
            2,
            "one success, one failure, then the cache"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn remembered_checks_expire() {
        let a = auth(false);
        assert!(a.verify("alice", "s3cret").await);
        tokio::time::advance(VERIFIED_TTL + Duration::from_secs(1)).await;
        let key_live = a.verified.iter().all(|(_, until)| until > Instant::now());
        assert!(!key_live, "the remembered check outlived its TTL");
        let runs = a.bcrypt_runs();
        assert!(a.verify("alice", "s3cret").await);
        assert_eq!(
            a.bcrypt_runs(),
            runs + 1,
            "an expired check runs bcrypt again"
        );
    }
}
