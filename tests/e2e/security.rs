//! The secure mirror: TLS with a site certificate chain (podman and skopeo trusting its CA
//! through a certs.d folder), certificate renewal on SIGHUP, client login against an htpasswd
//! file, what never goes upstream (the client's `Authorization`, credentials to a foreign
//! token realm), secrets kept out of every output, and requests that try to leave the store
//! or reach an upstream that is not configured.

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

#[path = "security/support.rs"]
mod support;

use std::process::Command;
use std::time::Duration;

use base64::Engine;
use support::{SecureWharf, get_keep_alive, htpasswd, tls_connect};
use wharf_e2e::expect;
use wharf_e2e::http::{ACCEPT_ALL_MANIFESTS, Http};
use wharf_e2e::process::{run, signal};
use wharf_e2e::util::sha256_digest;
use wharf_e2e::wharf::check_config;
use wharf_e2e::{Podman, Skopeo, Upstream, UpstreamCfg, Wharf, images};
use wharf_testkit::{FakeRegistry, Pki, Reply, TlsFiles};

const WHARF_CHALLENGE: &str = r#"Basic realm="wharf""#;

fn tls_lines(cert: &std::path::Path, key: &std::path::Path) -> String {
    format!(
        "tls_cert = {:?}\ntls_key = {:?}",
        cert.display().to_string(),
        key.display().to_string()
    )
}

fn basic(user: &str, password: &str) -> String {
    let v = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {v}")
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn podman_and_skopeo_pull_over_tls_trusting_the_ca_in_a_cert_dir() {
    let set = images();
    let img = &set.oraclelinux;
    let up = Upstream::plain();
    let pki = Pki::new();
    let TlsFiles { cert, key } = pki.leaf("server", 100);
    let wharf = SecureWharf::start(
        Wharf::builder().upstream(UpstreamCfg::oracle(&up)),
        &tls_lines(&cert, &key),
        Some(&pki.root()),
    );
    let reference = format!("{}/{}", wharf.host_port(), img.reference());
    let cert_dir = pki.cert_dir();

    // No CA: the certificate is not trusted, and nothing is pulled.
    let podman = Podman::plain(&[]);
    let untrusted = podman.pull(&reference, &[]);
    assert!(
        !untrusted.ok(),
        "pull without the CA succeeded:\n{untrusted}"
    );
    assert!(
        untrusted.stderr.contains("certificate") || untrusted.stderr.contains("x509"),
        "the failure should be about the certificate:\n{untrusted}"
    );

    let m = up.mark();
    podman
        .pull(
            &reference,
            &["--cert-dir", cert_dir.to_str().expect("utf-8")],
        )
        .expect_ok("podman pull --cert-dir over TLS");
    assert_eq!(podman.image_digest(&reference), img.manifest.digest);
    let reqs = expect::upstream_requests(&up, m, "podman over TLS");
    expect::each_blob_fetched_once(&reqs, &img.blobs(), "podman over TLS");

    let skopeo = Skopeo::new();
    let verify = ["--src-tls-verify=true"];
    let refused = skopeo.copy_direct(&wharf.host_port(), &img.reference(), &verify);
    assert!(
        !refused.ok(),
        "skopeo without the CA succeeded:\n{}",
        refused.out
    );
    let cert_dir_arg = format!("--src-cert-dir={}", cert_dir.display());
    let copied = skopeo
        .copy_direct(
            &wharf.host_port(),
            &img.reference(),
            &["--src-tls-verify=true", &cert_dir_arg],
        )
        .expect_ok("skopeo --src-cert-dir over TLS");
    assert_eq!(copied.digest(), img.manifest.digest);
}

#[test]
fn tls_offers_h2_and_http11_and_sighup_swaps_the_certificate_without_dropping_connections() {
    let up = Upstream::plain();
    let pki = Pki::new();
    let TlsFiles { cert, key } = pki.leaf("server", 100);
    let wharf = SecureWharf::start(
        Wharf::builder().upstream(UpstreamCfg::oracle(&up)),
        &tls_lines(&cert, &key),
        Some(&pki.root()),
    );
    let root = pki.root();
    let rt = rt();
    rt.block_on(async {
        let (_, alpn, _) = tls_connect(wharf.port, &root, &[b"h2", b"http/1.1"]).await;
        assert_eq!(alpn.as_deref(), Some(&b"h2"[..]), "h2 by ALPN");
        let (old_leaf, alpn, mut kept) = tls_connect(wharf.port, &root, &[b"http/1.1"]).await;
        assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
        assert_eq!(get_keep_alive(&mut kept, "/v2/").await, 200);

        // Renew: a new key and certificate (serial 101) replace the files, then SIGHUP.
        let TlsFiles {
            cert: new_cert,
            key: new_key,
        } = pki.leaf("renewed", 101);
        std::fs::copy(&new_cert, &cert).expect("replace cert");
        std::fs::copy(&new_key, &key).expect("replace key");
        signal(wharf.pid(), "HUP");
        let mut fresh_leaf = old_leaf.clone();
        for _ in 0..100 {
            let (leaf, _, _) = tls_connect(wharf.port, &root, &[b"http/1.1"]).await;
            fresh_leaf = leaf;
            if fresh_leaf != old_leaf {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let want = openssl_der(&new_cert);
        assert_ne!(
            fresh_leaf, old_leaf,
            "still the old certificate after SIGHUP"
        );
        assert_eq!(fresh_leaf, want, "the new connection got the renewed leaf");
        // The connection opened before the reload still answers.
        assert_eq!(get_keep_alive(&mut kept, "/v2/").await, 200);
    });
    let log = wharf.settled_log();
    assert!(log.contains("TLS certificate reloaded"), "{log}");
}

#[test]
fn blobs_and_a_manifest_over_http2_arrive_whole_cold_and_warm_multiplexed_on_one_connection() {
    let set = images();
    let img = &set.oraclelinux;
    let up = Upstream::plain();
    let pki = Pki::new();
    let wharf = Wharf::builder()
        .upstream(UpstreamCfg::oracle(&up))
        .tls(&pki.leaf("server", 100))
        .start();
    let dir = wharf_e2e::util::temp_dir("h2-pull");
    // Each blob three times (cold: the first fills while the others follow it), and the
    // manifest: curl multiplexes all of them on one HTTP/2 connection.
    let mut wanted = Vec::new();
    for d in img.blobs().into_iter().cycle().take(3 * img.blobs().len()) {
        let url = format!("{}/v2/{}/blobs/{}", wharf.url(), img.repo, d.digest);
        wanted.push((url, d.digest.clone()));
    }
    let manifest = format!("{}/v2/{}/manifests/{}", wharf.url(), img.repo, img.tag);
    wanted.push((manifest, img.manifest.digest.clone()));
    for round in ["cold", "warm"] {
        let mark = up.mark();
        let mut cmd = Command::new("curl");
        cmd.args([
            "-sS",
            "--fail",
            "--max-time",
            "30",
            "--http2",
            "--parallel",
            "--cacert",
        ])
        .arg(pki.root())
        .args(["-H", &format!("Accept: {ACCEPT_ALL_MANIFESTS}")])
        .args(["-w", "%{http_version} %{num_connects}\\n"]);
        for (i, (url, _)) in wanted.iter().enumerate() {
            cmd.arg("-o")
                .arg(dir.path().join(format!("{round}-{i}")))
                .arg(url);
        }
        let out = run(&mut cmd, Duration::from_secs(120)).expect_ok("curl --http2 --parallel");
        let versions: Vec<&str> = out.stdout.lines().collect();
        assert_eq!(versions.len(), wanted.len(), "{}", out.stdout);
        assert!(
            versions.iter().all(|v| v.starts_with("2 ")),
            "{}",
            out.stdout
        );
        let connects: usize = versions
            .iter()
            .filter_map(|v| v[2..].parse::<usize>().ok())
            .sum();
        assert_eq!(connects, 1, "one connection for all: {}", out.stdout);
        for (i, (url, digest)) in wanted.iter().enumerate() {
            let got = std::fs::read(dir.path().join(format!("{round}-{i}"))).expect("read");
            assert_eq!(&sha256_digest(&got), digest, "{round} {url}");
        }
        let reqs = expect::upstream_requests(&up, mark, round);
        if round == "cold" {
            expect::each_blob_fetched_once(&reqs, &img.blobs(), "cold, over h2");
        } else {
            expect::served_from_cache(&reqs, "warm, over h2");
        }
    }
}

/// The DER of the first certificate in a PEM file.
fn openssl_der(pem: &std::path::Path) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(pem)
        .output()
        .expect("openssl x509");
    assert!(out.status.success());
    out.stdout
}

#[test]
fn podman_login_then_pull_and_anonymous_is_refused_with_wharfs_challenge() {
    let set = images();
    let img = &set.hello;
    let up = Upstream::plain();
    let pki = Pki::new();
    let TlsFiles { cert, key } = pki.leaf("server", 100);
    let builder = Wharf::builder().upstream(UpstreamCfg::oracle(&up));
    let dir = wharf_e2e::util::temp_dir("htpasswd");
    let file = dir.path().join("htpasswd");
    htpasswd(&file, "alice", "s3cret-login");
    let builder = builder.extra_toml(&format!(
        "[auth]\nhtpasswd = {:?}\n",
        file.display().to_string()
    ));
    let wharf = SecureWharf::start(builder, &tls_lines(&cert, &key), Some(&pki.root()));
    let http = Http::with_ca(&pki.root());
    let manifest_url = format!("{}/v2/{}/manifests/{}", wharf.url(), img.repo, img.tag);

    // Anonymous: 401 with wharf's own challenge, on the ping and on a pull; nothing upstream.
    let m = up.mark();
    for url in [format!("{}/v2/", wharf.url()), manifest_url.clone()] {
        let r = http.get(&url, &[("Accept", ACCEPT_ALL_MANIFESTS)]);
        expect::oci_error(&r, &[401], "UNAUTHORIZED", "anonymous, anonymous_pull off");
        assert_eq!(
            r.header("www-authenticate").as_deref(),
            Some(WHARF_CHALLENGE),
            "{}",
            r.describe()
        );
    }
    let wrong = http.get(
        &manifest_url,
        &[("Authorization", basic("alice", "not-it").as_str())],
    );
    expect::oci_error(&wrong, &[401], "UNAUTHORIZED", "wrong password");
    assert_eq!(
        up.since(m).len(),
        0,
        "refused requests reached the upstream"
    );

    let podman = Podman::plain(&[]);
    let authfile = podman.dir().join("auth.json");
    let cert_dir = pki.cert_dir();
    let login = |password: &str| {
        let mut cmd = podman.command();
        cmd.arg("login")
            .arg("--authfile")
            .arg(&authfile)
            .arg("--cert-dir")
            .arg(&cert_dir)
            .args(["-u", "alice", "-p", password])
            .arg(wharf.host_port());
        run(&mut cmd, Duration::from_secs(60))
    };
    let bad = login("not-it");
    assert!(
        !bad.ok(),
        "podman login with a wrong password succeeded:\n{bad}"
    );
    login("s3cret-login").expect_ok("podman login");
    let reference = format!("{}/{}", wharf.host_port(), img.reference());
    podman
        .pull(
            &reference,
            &[
                "--authfile",
                authfile.to_str().expect("utf-8"),
                "--cert-dir",
                cert_dir.to_str().expect("utf-8"),
            ],
        )
        .expect_ok("podman pull after login");
    assert_eq!(podman.image_digest(&reference), img.manifest.digest);
    let log = wharf.settled_log();
    assert!(
        !log.contains("s3cret-login") && !log.contains("not-it"),
        "{log}"
    );
}

const MT_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// A manifest the fake upstream serves, with its digest.
fn fake_manifest() -> (Vec<u8>, String) {
    let body = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#.to_vec();
    let digest = sha256_digest(&body);
    (body, digest)
}

#[test]
fn the_clients_authorization_never_goes_upstream() {
    let (manifest, digest) = fake_manifest();
    let fake = FakeRegistry::builder()
        .manifest("app", "v1", manifest.clone(), MT_OCI_MANIFEST)
        .start();
    let dir = wharf_e2e::util::temp_dir("htpasswd");
    let file = dir.path().join("htpasswd");
    htpasswd(&file, "alice", "client-pw-77");
    let builder = Wharf::builder()
        .upstream(
            UpstreamCfg::new("fake", &fake.url())
                .prefixes(&["fake"])
                .default(true),
        )
        .extra_toml(&format!(
            "[auth]\nhtpasswd = {:?}\n",
            file.display().to_string()
        ));
    let wharf = SecureWharf::start(builder, "", None);
    let creds = basic("alice", "client-pw-77");
    let r = Http::new().get(
        &format!("{}/v2/app/manifests/v1", wharf.url()),
        &[
            ("Accept", ACCEPT_ALL_MANIFESTS),
            ("Authorization", creds.as_str()),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(
        r.header("docker-content-digest").as_deref(),
        Some(digest.as_str())
    );
    assert_eq!(r.body.as_ref(), manifest.as_slice());
    let seen = fake.requests();
    assert!(
        seen.iter().any(|s| s.path.contains("/manifests/")),
        "the upstream was never asked: {seen:#?}"
    );
    assert!(
        seen.iter().all(|s| s.authorization().is_none()),
        "the client's Authorization reached the upstream: {seen:#?}"
    );
}

/// An upstream on 127.0.0.1 whose 401 names a token realm on `realm_host` (another port),
/// and the realm server, which counts requests and hands out an anonymous token.
fn realm_setup(realm_host: &'static str) -> (FakeRegistry, FakeRegistry) {
    let realm = FakeRegistry::builder()
        .fallback(|_| Reply::ok(r#"{"token":"anon-token"}"#))
        .start();
    let realm_port = realm.addr().port();
    let (manifest, _) = fake_manifest();
    let challenge = format!(
        r#"Bearer realm="http://{realm_host}:{realm_port}/token",service="fake",scope="repository:app:pull""#
    );
    let upstream = FakeRegistry::builder()
        .manifest("app", "v1", manifest, MT_OCI_MANIFEST)
        .gate(move |seen| {
            (seen.authorization() != Some("Bearer anon-token")).then(|| {
                Reply::new(401)
                    .header("www-authenticate", &challenge)
                    .body(&br#"{"errors":[{"code":"UNAUTHORIZED","message":"no"}]}"#[..])
            })
        })
        .start();
    (upstream, realm)
}

fn realm_wharf(upstream: &FakeRegistry, realm_hosts: &str) -> Wharf {
    Wharf::builder()
        .upstream(
            UpstreamCfg::new("fake", &upstream.url())
                .prefixes(&["fake"])
                .default(true)
                .username("svc-mirror")
                .password_env("WHARF_E2E_REALM_PW", "realm-secret-42")
                .extra(&format!("realm_hosts = {realm_hosts}")),
        )
        .start()
}

#[test]
fn a_token_realm_on_another_host_never_receives_the_credentials() {
    let (upstream, realm) = realm_setup("localhost");
    let wharf = realm_wharf(&upstream, "[]");
    let r = Http::new().get(
        &format!("{}/v2/app/manifests/v1", wharf.url()),
        &[("Accept", ACCEPT_ALL_MANIFESTS)],
    );
    assert_eq!(r.status, 200, "anonymous token works: {}", r.describe());
    let seen = realm.requests();
    assert!(
        !seen.is_empty(),
        "wharf never asked the realm: the test proves nothing"
    );
    assert_eq!(
        seen.iter().filter(|s| s.authorization().is_some()).count(),
        0,
        "credentials went to a realm on another host: {seen:#?}"
    );
    let log = wharf.settled_log();
    assert!(
        log.contains("token realm is not on the upstream's domain"),
        "{log}"
    );
    assert!(!log.contains("realm-secret-42"), "{log}");
}

#[test]
fn a_realm_host_the_operator_allowed_does_receive_them() {
    // The counterpart that shows the realm server would see credentials if wharf sent them.
    let (upstream, realm) = realm_setup("localhost");
    let wharf = realm_wharf(&upstream, r#"["localhost"]"#);
    let r = Http::new().get(
        &format!("{}/v2/app/manifests/v1", wharf.url()),
        &[("Accept", ACCEPT_ALL_MANIFESTS)],
    );
    assert_eq!(r.status, 200, "{}", r.describe());
    let want = basic("svc-mirror", "realm-secret-42");
    assert!(
        realm
            .requests()
            .iter()
            .any(|s| s.authorization() == Some(want.as_str())),
        "{:#?}",
        realm.requests()
    );
}

#[test]
fn secrets_stay_out_of_check_config_logs_errors_and_the_admin_api() {
    const UPSTREAM_PW: &str = "wrong-upstream-pw-9137";
    const CLIENT_PW: &str = "client-login-pw-5521";
    let set = images();
    let up = Upstream::htpasswd_tls();
    let dir = wharf_e2e::util::temp_dir("htpasswd");
    let file = dir.path().join("htpasswd");
    htpasswd(&file, "alice", CLIENT_PW);
    let builder = Wharf::builder()
        .upstream(
            UpstreamCfg::oracle(&up)
                .username("bench")
                .password_env("WHARF_E2E_SECRET_PW", UPSTREAM_PW),
        )
        .extra_toml(&format!(
            "[auth]\nhtpasswd = {:?}\nanonymous_pull = true\n",
            file.display().to_string()
        ));
    let wharf = SecureWharf::start(builder, "", None);

    let mut outputs = Vec::new();
    let mut cmd = Command::new(wharf_e2e::wharf::wharf_bin());
    cmd.arg("check-config")
        .arg(&wharf.config)
        .env("WHARF_E2E_SECRET_PW", UPSTREAM_PW);
    let checked = run(&mut cmd, Duration::from_secs(30));
    assert!(checked.ok(), "{}", checked.stderr);
    // What wharf printed (the command line, which holds the variable, is the test's own).
    outputs.push(format!("{}\n{}", checked.stdout, checked.stderr));
    let unset = check_config(&wharf.config);
    assert!(!unset.ok(), "the variable is unset there: {unset}");
    outputs.push(format!("{}\n{}", unset.stdout, unset.stderr));

    let http = Http::new();
    let url = format!(
        "{}/v2/{}/manifests/{}",
        wharf.url(),
        set.hello.repo,
        set.hello.tag
    );
    let r = http.get(&url, &[("Accept", ACCEPT_ALL_MANIFESTS)]);
    expect::oci_error(&r, &[401], "UNAUTHORIZED", "wrong upstream password");
    outputs.push(r.describe());
    let r = http.get(&url, &[("Authorization", basic("alice", "guess").as_str())]);
    expect::oci_error(&r, &[401], "UNAUTHORIZED", "wrong client password");
    outputs.push(r.describe());
    let r = http.get(
        &url,
        &[("Authorization", basic("alice", CLIENT_PW).as_str())],
    );
    outputs.push(r.describe());

    let admin = std::fs::read_to_string(&wharf.config)
        .expect("config")
        .lines()
        .find_map(|l| {
            l.strip_prefix("admin_listen = ")
                .map(|v| v.trim_matches('"').to_owned())
        })
        .expect("admin_listen");
    for path in ["/metrics", "/api/stats", "/healthz"] {
        if let Ok(r) = http.try_request(
            "GET",
            &format!("http://{admin}{path}"),
            &[],
            bytes::Bytes::new(),
        ) {
            outputs.push(r.describe());
        }
    }
    // The log once it holds the lines of the requests above.
    outputs.push(wharf.settled_log());
    let b64 =
        |u: &str, p: &str| base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
    let forbidden = [
        UPSTREAM_PW.to_owned(),
        CLIENT_PW.to_owned(),
        b64("bench", UPSTREAM_PW),
        b64("alice", CLIENT_PW),
    ];
    let config_text = std::fs::read_to_string(&wharf.config).expect("config");
    assert!(
        !config_text.contains(UPSTREAM_PW),
        "the test put the secret in the file"
    );
    for out in &outputs {
        for secret in &forbidden {
            assert!(
                !out.contains(secret.as_str()),
                "secret {secret:?} printed in:\n{out}"
            );
        }
    }
}

#[test]
fn an_unconfigured_ns_or_prefix_never_reaches_anything() {
    let up = Upstream::plain();
    // A trap where an open proxy would go: ns=127.0.0.1:<trap>.
    let trap = FakeRegistry::builder()
        .fallback(|_| Reply::new(200))
        .start();
    let trap_host = trap.addr().to_string();
    let wharf = Wharf::builder()
        .upstream(UpstreamCfg::oracle(&up).default(false))
        .start();
    let m = up.mark();
    let http = Http::new();
    let urls = [
        format!("{}/v2/app/manifests/v1?ns={trap_host}", wharf.url()),
        format!("{}/v2/app/manifests/v1?ns=evil.example.com", wharf.url()),
        format!("{}/{trap_host}/v2/app/manifests/v1", wharf.url()),
        format!("{}/evil/v2/app/manifests/v1", wharf.url()),
        format!("{}/v2/evil/app/manifests/v1", wharf.url()),
        format!("{}/v2/app/manifests/v1", wharf.url()),
    ];
    for url in &urls {
        let r = http.get(url, &[("Accept", ACCEPT_ALL_MANIFESTS)]);
        assert!(
            r.status == 404 || r.status == 400,
            "{url}: want NAME_UNKNOWN/NAME_INVALID, got {}",
            r.describe()
        );
        let code = r.error_codes().first().cloned().unwrap_or_default();
        assert!(
            code == "NAME_UNKNOWN" || code == "NAME_INVALID",
            "{url}: {}",
            r.describe()
        );
    }
    assert!(
        trap.requests().is_empty(),
        "wharf followed an ns: {:#?}",
        trap.requests()
    );
    assert_eq!(up.since(m).len(), 0, "{:#?}", up.since(m));
}

#[test]
fn no_request_names_a_file_outside_the_store() {
    let set = images();
    let up = Upstream::plain();
    let wharf = Wharf::for_upstream(&up);
    // Something worth stealing next to the store, and a real blob inside it.
    let secret = wharf.cache_dir().join("..").join("outside.txt");
    std::fs::write(&secret, "OUTSIDE-THE-STORE").expect("write sentinel");
    let layer = &set.hello.layers[0];
    let http = Http::new();
    let ok = http.get(
        &format!(
            "{}/v2/{}/blobs/{}",
            wharf.url(),
            set.hello.repo,
            layer.digest
        ),
        &[],
    );
    assert_eq!(ok.status, 200, "{}", ok.describe());
    let hex = layer.digest.trim_start_matches("sha256:");
    let m = up.mark();
    let paths = [
        "/v2/hello/blobs/sha256:../../outside.txt".to_owned(),
        "/v2/hello/blobs/sha256:..%2f..%2foutside.txt".to_owned(),
        "/v2/hello/blobs/sha256%3a..%2f..%2foutside.txt".to_owned(),
        "/v2/../../outside.txt/manifests/latest".to_owned(),
        "/v2/%2e%2e/%2e%2e/outside.txt/blobs/sha256:00".to_owned(),
        "/v2/hello//blobs/sha256:".to_owned() + hex,
        format!("/v2/hello/blobs/sha256:{}", hex.to_uppercase()),
        format!("/v2/hello/blobs/sha256:{hex}%00"),
        format!("/v2/hello/blobs/sha256:{}", "0".repeat(2000)),
        format!("/v2/hello/manifests/sha256:..%2f{hex}"),
        format!("/v2/hello/blobs/md5:{hex}"),
    ];
    for p in &paths {
        let r = http.get(&format!("{}{p}", wharf.url()), &[]);
        assert!(
            (400..500).contains(&r.status),
            "{p}: want a 4xx, got {}",
            r.describe()
        );
        assert!(
            !r.text().contains("OUTSIDE-THE-STORE"),
            "{p}: {}",
            r.describe()
        );
        assert!(
            !r.error_codes().is_empty(),
            "{p}: no OCI error body: {}",
            r.describe()
        );
    }
    assert_eq!(up.since(m).len(), 0, "{:#?}", up.since(m));
}
