//! The token issuer's wire side: the hyper service, credential checks, grants and JWT signing.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;

use crate::token::{TokenOptions, TokenRequest};
use wharf_testkit::pki::{SigningKey, TlsFiles};

pub(crate) struct State {
    opts: TokenOptions,
    key: RsaKeyPair,
    x5c: String,
    log: Arc<Mutex<Vec<TokenRequest>>>,
}

impl State {
    pub(crate) fn new(
        opts: TokenOptions,
        key: SigningKey,
        log: Arc<Mutex<Vec<TokenRequest>>>,
    ) -> State {
        State {
            key: RsaKeyPair::from_pkcs8(&key.key_pkcs8_der).expect("ring: RSA PKCS#8 key"),
            x5c: STANDARD.encode(&key.cert_der),
            opts,
            log,
        }
    }
}

pub(crate) fn tls_acceptor(files: &TlsFiles) -> tokio_rustls::TlsAcceptor {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .expect("read cert")
        .collect::<Result<_, _>>()
        .expect("parse cert");
    let key = PrivateKeyDer::from_pem_file(&files.key).expect("read key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("tls versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server cert");
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
}

pub(crate) async fn serve(
    listener: std::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<State>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(&state, req).await) }
            });
            let http = hyper::server::conn::http1::Builder::new();
            match tls {
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(tcp).await {
                        let _ = http.serve_connection(TokioIo::new(stream), svc).await;
                    }
                }
                None => {
                    let _ = http.serve_connection(TokioIo::new(tcp), svc).await;
                }
            }
        });
    }
}

async fn handle(state: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().as_str().to_owned();
    if req.uri().path() != "/token" {
        return reply(StatusCode::NOT_FOUND, json!({"error": "not found"}));
    }
    let query = req.uri().query().unwrap_or("").to_owned();
    let basic = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        })
        .map(decode_basic);
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let pairs: Vec<(String, String)> = if method == "POST" {
        form_urlencoded::parse(&body).into_owned().collect()
    } else {
        form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect()
    };
    let param = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let mut scopes: Vec<String> = Vec::new();
    for (_, v) in pairs.iter().filter(|(n, _)| n == "scope") {
        scopes.extend(v.split(' ').filter(|s| !s.is_empty()).map(str::to_owned));
    }
    let creds = if method == "POST" && param("grant_type").as_deref() == Some("password") {
        Some((
            param("username").unwrap_or_default(),
            param("password").unwrap_or_default(),
        ))
    } else {
        // A malformed Basic header counts as wrong credentials, not as anonymous.
        basic.map(Option::unwrap_or_default)
    };
    let mut entry = TokenRequest {
        method: method.clone(),
        user: creds.as_ref().map(|(u, _)| u.clone()),
        with_credentials: creds.is_some(),
        status: 401,
        scopes: scopes.clone(),
        granted: Vec::new(),
    };
    let o = &state.opts;
    let who = match &creds {
        Some((u, p)) if *u == o.user && *p == o.password => Some(u.clone()),
        Some(_) => None,
        None if o.anonymous_pull => Some(String::new()),
        None => None,
    };
    let Some(who) = who else {
        state.log.lock().expect("log").push(entry);
        let mut r = reply(
            StatusCode::UNAUTHORIZED,
            json!({"details": "bad credentials"}),
        );
        r.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Basic realm=\"wharf-e2e-token\""),
        );
        return r;
    };
    let allowed: &[&str] = if who.is_empty() {
        &["pull"]
    } else {
        &["pull", "push", "delete", "*"]
    };
    let access = grant(&scopes, allowed);
    entry.granted = access
        .iter()
        .map(|a| {
            format!(
                "{}:{}:{}",
                a["type"].as_str().unwrap_or(""),
                a["name"].as_str().unwrap_or(""),
                a["actions"]
                    .as_array()
                    .map(|x| x
                        .iter()
                        .filter_map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(","))
                    .unwrap_or_default()
            )
        })
        .collect();
    let aud = param("service").unwrap_or_else(|| o.service.clone());
    let token = sign_jwt(state, &who, &aud, access);
    let now = now_secs();
    let mut resp = serde_json::Map::new();
    if !o.access_token_only && method != "POST" {
        resp.insert("token".into(), json!(token));
    }
    resp.insert("access_token".into(), json!(token));
    if !o.omit_expires_in {
        resp.insert("expires_in".into(), json!(o.expires_in));
    }
    resp.insert("issued_at".into(), json!(rfc3339(now)));
    if method == "POST" {
        resp.insert("scope".into(), json!(scopes.join(" ")));
    }
    entry.status = 200;
    state.log.lock().expect("log").push(entry);
    reply(StatusCode::OK, serde_json::Value::Object(resp))
}

/// Intersects each requested `type:name:actions` scope with `allowed`. The name may contain
/// `:` (a registry port), so type is before the first colon and actions after the last.
fn grant(scopes: &[String], allowed: &[&str]) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for s in scopes {
        let (Some(first), Some(last)) = (s.find(':'), s.rfind(':')) else {
            continue;
        };
        if first == last {
            continue;
        }
        let granted: Vec<&str> = s[last + 1..]
            .split(',')
            .filter(|a| allowed.contains(a))
            .collect();
        if !granted.is_empty() {
            out.push(json!({"type": &s[..first], "name": &s[first + 1..last], "actions": granted}));
        }
    }
    out
}

fn sign_jwt(state: &State, sub: &str, aud: &str, access: Vec<serde_json::Value>) -> String {
    let now = now_secs();
    let header = json!({"typ": "JWT", "alg": "RS256", "x5c": [state.x5c]});
    let claims = json!({
        "iss": state.opts.issuer, "sub": sub, "aud": aud,
        "exp": now + state.opts.expires_in, "nbf": now.saturating_sub(10), "iat": now,
        "jti": format!("{now}-{}", rand_hex()), "access": access,
    });
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut sig = vec![0; state.key.public().modulus_len()];
    state
        .key
        .sign(
            &RSA_PKCS1_SHA256,
            &ring::rand::SystemRandom::new(),
            input.as_bytes(),
            &mut sig,
        )
        .expect("RSA sign");
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

fn decode_basic(b64: &str) -> Option<(String, String)> {
    let raw = STANDARD.decode(b64.trim()).ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

fn reply(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn rand_hex() -> String {
    let mut b = [0u8; 8];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    hex::encode(b)
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a Unix time (civil-from-days, proleptic Gregorian).
pub(crate) fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_values() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn grant_keeps_port_in_name() {
        let g = grant(&["repository:reg:5000/a/b:pull,push".into()], &["pull"]);
        assert_eq!(g[0]["name"], "reg:5000/a/b");
        assert_eq!(g[0]["actions"], json!(["pull"]));
        assert!(grant(&["repository:a:push".into()], &["pull"]).is_empty());
    }
}
