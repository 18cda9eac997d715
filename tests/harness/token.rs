//! A Docker token-auth endpoint (the `realm` of a Bearer challenge), in Rust.
//!
//! It signs RS256 JWTs with ring and puts its certificate in the `x5c` header, which is what
//! Distribution's `auth.token` checks against `rootcertbundle`. Anonymous callers get `pull`
//! (like Docker Hub's public repositories), the configured user gets pull+push, a wrong password
//! gets 401. Both the GET form (`?service=&scope=`, Basic credentials) and the OAuth2 POST form
//! (`grant_type=password`) are served. Every request is recorded so tests can count token
//! fetches and fetches that carried credentials. The wire side is in `token_server.rs`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use wharf_testkit::pki::{SigningKey, TlsFiles};

/// How the issuer behaves.
#[derive(Debug, Clone)]
pub struct TokenOptions {
    pub user: String,
    pub password: String,
    /// Grant `pull` to callers without credentials (default true).
    pub anonymous_pull: bool,
    /// Answer only `access_token` (no `token` field).
    pub access_token_only: bool,
    /// Leave `expires_in` out (clients must then assume 60 s).
    pub omit_expires_in: bool,
    /// Token lifetime in seconds (default 300).
    pub expires_in: u64,
    /// `aud` / the registry's `auth.token.service`.
    pub service: String,
    /// `iss` / the registry's `auth.token.issuer`.
    pub issuer: String,
}

impl Default for TokenOptions {
    fn default() -> Self {
        TokenOptions {
            user: "bench".into(),
            password: "benchpass".into(),
            anonymous_pull: true,
            access_token_only: false,
            omit_expires_in: false,
            expires_in: 300,
            service: "wharf-e2e-upstream".into(),
            issuer: "wharf-e2e-issuer".into(),
        }
    }
}

/// One request the issuer answered.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub method: String,
    /// The user name presented, if any.
    pub user: Option<String>,
    /// Whether the request carried credentials (Basic header or POST password).
    pub with_credentials: bool,
    pub status: u16,
    /// Requested scopes, one entry per resource scope.
    pub scopes: Vec<String>,
    /// Actions granted, per scope, e.g. `repository:os/oraclelinux:pull`.
    pub granted: Vec<String>,
}

/// A running token issuer. Stops when dropped.
pub struct TokenIssuer {
    realm: String,
    opts: TokenOptions,
    cert_pem: PathBuf,
    pub(crate) log: Arc<Mutex<Vec<TokenRequest>>>,
    _rt: tokio::runtime::Runtime,
}

impl TokenIssuer {
    /// Starts on a free loopback port (the listener is kept, so there is no port race);
    /// HTTPS if `tls` is given.
    pub fn start(opts: TokenOptions, key: SigningKey, tls: Option<&TlsFiles>) -> TokenIssuer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind token issuer");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let log = Arc::new(Mutex::new(Vec::new()));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("token-issuer")
            .enable_all()
            .build()
            .expect("tokio runtime");
        let cert_pem = key.cert_pem.clone();
        let state = Arc::new(crate::token_server::State::new(
            opts.clone(),
            key,
            log.clone(),
        ));
        let acceptor = tls.map(crate::token_server::tls_acceptor);
        rt.spawn(crate::token_server::serve(listener, acceptor, state));
        TokenIssuer {
            realm: format!("{scheme}://127.0.0.1:{port}/token"),
            opts,
            cert_pem,
            log,
            _rt: rt,
        }
    }

    /// The token URL (`realm` of the challenge).
    pub fn realm(&self) -> &str {
        &self.realm
    }

    pub fn options(&self) -> &TokenOptions {
        &self.opts
    }

    /// The signing certificate (PEM): Distribution's `rootcertbundle`.
    pub fn cert_pem(&self) -> &Path {
        &self.cert_pem
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.log.lock().expect("token log").clone()
    }

    pub fn count(&self) -> usize {
        self.log.lock().expect("token log").len()
    }

    /// Requests that carried credentials (whether right or wrong).
    pub fn count_with_credentials(&self) -> usize {
        let log = self.log.lock().expect("token log");
        log.iter().filter(|r| r.with_credentials).count()
    }

    /// Tokens issued (status 200).
    pub fn tokens_issued(&self) -> usize {
        let log = self.log.lock().expect("token log");
        log.iter().filter(|r| r.status == 200).count()
    }
}
