//! Upstreams with auth: Distribution accepts the Rust token issuer's JWTs (GET and OAuth2
//! POST, anonymous and with credentials, the answer-shape options), and htpasswd Basic auth.

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

use bytes::Bytes;
use wharf_e2e::clients::{Containerd, Podman, Skopeo};
use wharf_e2e::http::ACCEPT_ALL_MANIFESTS;
use wharf_e2e::{TokenOptions, Upstream, images};

#[test]
fn token_upstream_accepts_issued_tokens() {
    let set = images();
    let up = Upstream::token_tls(TokenOptions::default());
    let issuer = up.token_issuer().expect("issuer");
    let http = up.http();
    let (user, pass) = up.credentials().expect("creds");
    // The challenge, then the token dance by hand (rustls trusts the self-signed cert).
    let ping = http.get(&format!("{}/v2/", up.url()), &[]);
    assert_eq!(ping.status, 401);
    let challenge = ping.header("WWW-Authenticate").expect("challenge");
    assert!(
        challenge.starts_with("Bearer ") && challenge.contains(issuer.realm()),
        "{challenge}"
    );
    let scope = format!("repository:{}:pull", set.oraclelinux.repo);
    let tok_url = format!(
        "{}?service={}&scope={}",
        issuer.realm(),
        issuer.options().service,
        scope
    );
    let t = http.get(&tok_url, &[]).json();
    assert_eq!(t["expires_in"], 300);
    assert_eq!(t["token"], t["access_token"]);
    assert!(t["issued_at"].as_str().is_some_and(|s| s.ends_with('Z')));
    let bearer = format!("Bearer {}", t["token"].as_str().expect("token"));
    let url = format!(
        "{}/v2/{}/manifests/{}",
        up.url(),
        set.oraclelinux.repo,
        set.oraclelinux.tag
    );
    let r = http.get(
        &url,
        &[("Authorization", &bearer), ("Accept", ACCEPT_ALL_MANIFESTS)],
    );
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.body, set.oraclelinux.manifest_json.as_bytes());
    // Wrong password: 401 from the issuer, counted as a request with credentials.
    let basic = format!("Basic {}", base64_encode(&format!("{user}:wrong")));
    assert_eq!(http.get(&tok_url, &[("Authorization", &basic)]).status, 401);
    // OAuth2 POST with the right password.
    let form = format!(
        "grant_type=password&username={user}&password={pass}&service={}&scope={scope}&client_id=e2e",
        issuer.options().service
    );
    let p = http.request(
        "POST",
        issuer.realm(),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Bytes::from(form),
    );
    assert_eq!(p.status, 200, "{}", p.describe());
    assert!(p.json()["access_token"].is_string());
    let with_creds = issuer.count_with_credentials();
    assert_eq!(with_creds, 2);
    // skopeo: anonymous, with credentials, with a wrong password.
    let skopeo = Skopeo::new();
    let anon = skopeo
        .copy_direct(&up.host_port(), &set.oraclelinux.reference(), &[])
        .expect_ok("anonymous copy");
    assert_eq!(anon.digest(), set.oraclelinux.manifest.digest);
    let creds = format!("{user}:{pass}");
    let c = skopeo
        .copy_direct(
            &up.host_port(),
            &set.legacy.reference(),
            &["--src-creds", &creds],
        )
        .expect_ok("copy with creds");
    assert_eq!(c.digest(), set.legacy.manifest.digest);
    assert!(issuer.count_with_credentials() > with_creds);
    assert!(
        issuer
            .requests()
            .iter()
            .any(|r| r.user.as_deref() == Some(user)
                && r.status == 200
                && r.granted.iter().any(|g| g.ends_with(":pull")))
    );
    let bad = skopeo.copy_direct(
        &up.host_port(),
        &set.hello.reference(),
        &["--src-creds", &format!("{user}:nope")],
    );
    assert!(!bad.ok(), "wrong password must fail: {}", bad.out);
    // podman and ctr over TLS with credentials.
    let podman = Podman::plain(&[&up.host_port()]);
    let name = format!("{}/{}", up.host_port(), set.hello.reference());
    podman
        .pull(&name, &["--creds", &creds])
        .expect_ok("podman pull token upstream");
    assert_eq!(podman.image_digest(&name), set.hello.manifest.digest);
    let ctrd = Containerd::start();
    ctrd.server_hosts(&up.host_port(), &up.url(), up.ca_file());
    ctrd.pull(&name, &["--user", &creds])
        .expect_ok("ctr pull token upstream");
    assert_eq!(
        ctrd.image_digest(&name).as_deref(),
        Some(set.hello.manifest.digest.as_str())
    );
}

#[test]
fn token_issuer_options_shape_the_answer() {
    let opts = TokenOptions {
        access_token_only: true,
        omit_expires_in: true,
        anonymous_pull: false,
        ..TokenOptions::default()
    };
    let up = Upstream::token_tls(opts);
    let issuer = up.token_issuer().expect("issuer");
    let http = up.http();
    let url = format!("{}?service=x&scope=repository:hello:pull", issuer.realm());
    assert_eq!(http.get(&url, &[]).status, 401, "anonymous refused");
    let basic = format!("Basic {}", base64_encode("bench:benchpass"));
    let t = http.get(&url, &[("Authorization", &basic)]).json();
    assert!(
        t.get("token").is_none() && t.get("expires_in").is_none(),
        "{t}"
    );
    assert!(t["access_token"].is_string());
    let skopeo = Skopeo::new();
    let c = skopeo.copy_direct(
        &up.host_port(),
        &images().hello.reference(),
        &["--src-creds", "bench:benchpass"],
    );
    assert_eq!(c.expect_ok("copy").digest(), images().hello.manifest.digest);
}

#[test]
fn htpasswd_upstream_wants_basic_credentials() {
    let set = images();
    let up = Upstream::htpasswd_tls();
    let http = up.http();
    let (user, pass) = up.credentials().expect("creds");
    let url = format!(
        "{}/v2/{}/manifests/{}",
        up.url(),
        set.hello.repo,
        set.hello.tag
    );
    let r = http.get(&url, &[("Accept", ACCEPT_ALL_MANIFESTS)]);
    assert_eq!(r.status, 401);
    assert!(
        r.header("WWW-Authenticate")
            .is_some_and(|c| c.starts_with("Basic ")),
        "{}",
        r.describe()
    );
    let basic = format!("Basic {}", base64_encode(&format!("{user}:{pass}")));
    let r = http.get(
        &url,
        &[("Accept", ACCEPT_ALL_MANIFESTS), ("Authorization", &basic)],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body, set.hello.manifest_json.as_bytes());
    let skopeo = Skopeo::new();
    let ok = skopeo.copy_direct(
        &up.host_port(),
        &set.hello.reference(),
        &["--src-creds", &format!("{user}:{pass}")],
    );
    assert_eq!(
        ok.expect_ok("copy with creds").digest(),
        set.hello.manifest.digest
    );
    let anon = skopeo.copy_direct(&up.host_port(), &set.hello.reference(), &[]);
    assert!(!anon.ok(), "anonymous copy must fail");
}

fn base64_encode(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}
