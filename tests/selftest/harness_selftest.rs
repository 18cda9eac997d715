//! Self-tests of the harness against the real tools, without wharf: the upstream variants
//! start and serve the pushed images, the token issuer is accepted by Distribution, the access
//! log is counted right, and skopeo, podman and ctr pull straight from an upstream with the
//! same client configurations the wharf tests use (the upstream standing in for the mirror).

use std::time::Duration;

use bytes::Bytes;
use wharf_e2e::clients::{Containerd, Podman, Skopeo};
use wharf_e2e::http::{ACCEPT_ALL_MANIFESTS, Http};
use wharf_e2e::images::{ImageSpec, MT_DOCKER_MANIFEST, MT_OCI_INDEX, MT_OCI_MANIFEST};
use wharf_e2e::push::Pusher;
use wharf_e2e::registry::Storage;
use wharf_e2e::util::{dead_host_port, sha256_digest};
use wharf_e2e::{Kind, REGISTRY_NAME, TokenOptions, Upstream, UpstreamCfg, Wharf, images};

#[test]
fn upstream_serves_every_image_with_its_media_type() {
    let set = images();
    let up = Upstream::plain();
    let http = up.http();
    let cases = [
        (
            &set.oraclelinux.repo,
            &set.oraclelinux.tag,
            &set.oraclelinux.manifest,
            &set.oraclelinux.manifest_json,
        ),
        (
            &set.oraclelinux.repo,
            &"7".to_string(),
            &set.oraclelinux.manifest,
            &set.oraclelinux.manifest_json,
        ),
        (
            &set.hello.repo,
            &set.hello.tag,
            &set.hello.manifest,
            &set.hello.manifest_json,
        ),
        (
            &set.serverjre.repo,
            &set.serverjre.tag,
            &set.serverjre.manifest,
            &set.serverjre.manifest_json,
        ),
        (
            &set.multiarch.repo,
            &set.multiarch.tag,
            &set.multiarch.manifest,
            &set.multiarch.manifest_json,
        ),
        (
            &set.legacy.repo,
            &set.legacy.tag,
            &set.legacy.manifest,
            &set.legacy.manifest_json,
        ),
    ];
    for (repo, tag, desc, json) in cases {
        let r = http.get(
            &format!("{}/v2/{repo}/manifests/{tag}", up.url()),
            &[("Accept", ACCEPT_ALL_MANIFESTS)],
        );
        assert_eq!(r.status, 200, "{repo}:{tag}: {}", r.describe());
        assert_eq!(
            r.header("Content-Type").as_deref(),
            Some(desc.media_type.as_str())
        );
        assert_eq!(
            r.header("Docker-Content-Digest").as_deref(),
            Some(desc.digest.as_str())
        );
        assert_eq!(r.body, json.as_bytes(), "{repo}:{tag} bytes");
    }
    assert_eq!(set.multiarch.manifest.media_type, MT_OCI_INDEX);
    assert_eq!(set.oraclelinux.manifest.media_type, MT_OCI_MANIFEST);
    assert_eq!(set.legacy.manifest.media_type, MT_DOCKER_MANIFEST);
    assert_eq!(set.serverjre.layers.len(), 5);
    assert!(set.serverjre.total_blob_bytes() > 300 << 20);
    // A blob: right bytes, right digest.
    let layer = &set.oraclelinux.layers[0];
    let b = http.get(
        &format!("{}/v2/os/oraclelinux/blobs/{}", up.url(), layer.digest),
        &[],
    );
    assert_eq!(b.status, 200);
    assert_eq!(sha256_digest(&b.body), layer.digest);
    assert_eq!(b.body.len() as u64, layer.size);
    // What Distribution 2.8 does with tags/list?n=1 (wharf must present the client-facing path).
    let t = http.get(
        &format!("{}/v2/os/oraclelinux/tags/list?n=1", up.url()),
        &[],
    );
    eprintln!(
        "upstream tags/list?n=1 -> {} Link={:?} body={}",
        t.status,
        t.header("Link"),
        t.text()
    );
    assert_eq!(t.status, 200);
}

#[test]
fn access_log_marks_count_only_later_requests() {
    let set = images();
    let up = Upstream::plain();
    let skopeo = Skopeo::new();
    let m0 = up.mark();
    let c = skopeo
        .copy_direct(&up.host_port(), &set.oraclelinux.reference(), &[])
        .expect_ok("skopeo copy");
    assert_eq!(c.digest(), set.oraclelinux.manifest.digest);
    let first = up.since(m0);
    eprintln!(
        "cold skopeo copy straight from upstream: {}",
        wharf_e2e::access_log::Counts::of(&first)
    );
    assert_eq!(
        up.count_since(m0, |r| r.is_blob_get()),
        4,
        "config + 3 layers: {first:?}"
    );
    let m1 = up.mark();
    assert_eq!(up.count_since(m1, |_| true), 0);
    let c = skopeo
        .copy_direct(&up.host_port(), &set.hello.reference(), &[])
        .expect_ok("skopeo copy hello");
    assert_eq!(c.digest(), set.hello.manifest.digest);
    let later = up.since(m1);
    assert!(
        later
            .iter()
            .all(|r| r.path.contains("/hello/") || r.kind() == Kind::Ping),
        "{later:?}"
    );
    assert_eq!(later.iter().filter(|r| r.is_blob_get()).count(), 4);
    assert!(up.requests().len() >= first.len() + later.len());
}

#[test]
fn pusher_writes_valid_images_into_an_empty_registry() {
    let up = Upstream::builder().storage(Storage::Empty).start();
    let http = Http::new();
    let p = Pusher {
        base: up.url(),
        http: &http,
    };
    for spec in [
        ImageSpec::oci("selftest", &[64, 32]),
        ImageSpec::oci("selftest-d", &[16]).docker(),
    ] {
        let img = p.image(&spec, "self/test", &spec.label, &[]);
        let r = http.head(
            &format!("{}/v2/self/test/manifests/{}", up.url(), spec.label),
            &[("Accept", ACCEPT_ALL_MANIFESTS)],
        );
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("Docker-Content-Digest").as_deref(),
            Some(img.manifest.digest.as_str())
        );
        assert_eq!(
            r.header("Content-Type").as_deref(),
            Some(img.manifest.media_type.as_str())
        );
    }
    // Monolithic upload of a blob that is already there is skipped (HEAD 200).
    let m = up.mark();
    let img = p.image(
        &ImageSpec::oci("selftest", &[64, 32]),
        "self/test",
        "again",
        &[],
    );
    assert_eq!(up.count_since(m, |r| r.method == "POST"), 0);
    assert_eq!(img.layers.len(), 2);
}

#[test]
fn stop_and_start_again_keep_port_storage_and_log() {
    let set = images();
    let mut up = Upstream::plain();
    let url = format!(
        "{}/v2/{}/manifests/{}",
        up.url(),
        set.hello.repo,
        set.hello.manifest.digest
    );
    let http = up.http().timeout(Duration::from_secs(5));
    assert_eq!(http.get(&url, &[]).status, 200);
    let m = up.mark();
    up.stop();
    assert!(
        http.try_request("GET", &url, &[], Bytes::new()).is_err(),
        "stopped upstream still answers"
    );
    up.start_again();
    assert_eq!(http.get(&url, &[]).status, 200);
    assert!(up.count_since(m, |r| r.path.contains(&set.hello.manifest.digest)) >= 1);
}

#[test]
fn skopeo_through_registries_conf_mirror_reaches_the_mirror_only() {
    let set = images();
    let up = Upstream::plain();
    let skopeo = Skopeo::new();
    let conf = skopeo.mirror_conf(&up.host_port());
    let m = up.mark();
    let c = skopeo
        .copy_via_mirror(&conf, &set.oraclelinux.reference())
        .expect_ok("skopeo via mirror");
    assert_eq!(c.digest(), set.oraclelinux.manifest.digest);
    assert_eq!(up.count_since(m, |r| r.is_blob_get()), 4);
    let raw = skopeo
        .inspect_raw(
            &format!("{}/{}", up.host_port(), set.multiarch.reference()),
            &[],
        )
        .expect_ok("inspect --raw");
    assert_eq!(
        raw.stdout.as_bytes(),
        set.multiarch.manifest_json.as_bytes()
    );
}

#[test]
fn podman_pulls_through_registries_conf_mirror_and_by_arch() {
    let set = images();
    let up = Upstream::plain();
    let podman = Podman::mirror(&up.host_port());
    let name = format!("{REGISTRY_NAME}/{}", set.oraclelinux.reference());
    podman.pull(&name, &[]).expect_ok("podman pull via mirror");
    assert_eq!(podman.image_digest(&name), set.oraclelinux.manifest.digest);
    let multi = format!("{REGISTRY_NAME}/{}", set.multiarch.reference());
    podman
        .pull(&multi, &["--arch", "arm64"])
        .expect_ok("podman pull --arch arm64");
    let arm = set.multiarch.child("arm64");
    let id = podman.inspect(&multi, "{{.Id}}");
    let digests = podman.inspect(&multi, "{{.Digest}} {{.Architecture}} {{.RepoDigests}}");
    eprintln!("podman --arch arm64: Id={id} Digest/Arch/RepoDigests={digests}");
    assert_eq!(podman.inspect(&multi, "{{.Architecture}}"), "arm64");
    assert_eq!(
        format!("sha256:{id}"),
        arm.config.digest,
        "image id is the arm64 config digest"
    );
    // A second podman with a fresh store pulls everything again.
    let fresh = Podman::plain(&[&up.host_port()]);
    let m = up.mark();
    let direct = format!("{}/{}", up.host_port(), set.oraclelinux.reference());
    fresh.pull(&direct, &[]).expect_ok("podman pull direct");
    assert_eq!(fresh.image_digest(&direct), set.oraclelinux.manifest.digest);
    assert_eq!(up.count_since(m, |r| r.is_blob_get()), 4);
}

#[test]
fn ctr_pulls_through_hosts_toml_with_ns() {
    let set = images();
    let up = Upstream::plain();
    let ctrd = Containerd::start();
    ctrd.mirror_hosts(
        REGISTRY_NAME,
        &format!("http://{}", dead_host_port()),
        &up.url(),
    );
    let m = up.mark();
    let name = format!("{REGISTRY_NAME}/{}", set.oraclelinux.reference());
    ctrd.pull(&name, &[]).expect_ok("ctr pull small");
    assert_eq!(
        ctrd.image_digest(&name).as_deref(),
        Some(set.oraclelinux.manifest.digest.as_str())
    );
    let reqs = up.since(m);
    assert!(
        reqs.iter()
            .any(|r| r.path.contains("?ns=container-registry.oracle.com")),
        "{reqs:?}"
    );
    assert_eq!(reqs.iter().filter(|r| r.is_blob_get()).count(), 4);
    let multi = format!("{REGISTRY_NAME}/{}", set.multiarch.reference());
    ctrd.pull(&multi, &["--platform", "linux/arm64"])
        .expect_ok("ctr pull arm64");
    assert_eq!(
        ctrd.image_digest(&multi).as_deref(),
        Some(set.multiarch.manifest.digest.as_str())
    );
    let content = ctrd.content_digests();
    let arm = set.multiarch.child("arm64");
    assert!(
        content.contains(&arm.manifest.digest),
        "arm64 manifest in {content:?}"
    );
    assert!(arm.layers.iter().all(|l| content.contains(&l.digest)));
    // A fresh containerd fetches the blobs again.
    let fresh = Containerd::start();
    fresh.mirror_hosts(
        REGISTRY_NAME,
        &format!("http://{}", dead_host_port()),
        &up.url(),
    );
    let m = up.mark();
    fresh.pull(&name, &[]).expect_ok("ctr pull into fresh root");
    assert_eq!(up.count_since(m, |r| r.is_blob_get()), 4);
    // Direct, plain HTTP.
    let direct = format!("{}/{}", up.host_port(), set.legacy.reference());
    fresh
        .pull(&direct, &["--plain-http"])
        .expect_ok("ctr pull --plain-http");
    assert_eq!(
        fresh.image_digest(&direct).as_deref(),
        Some(set.legacy.manifest.digest.as_str())
    );
}

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
    ctrd.pull(&name, &["--skip-verify", "--user", &creds])
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

#[test]
fn wharf_config_renders_the_contract_keys() {
    let up = Upstream::htpasswd_tls();
    let dir = tempfile::tempdir().expect("tmp");
    let (path, env) = Wharf::builder()
        .tag_ttl("0s")
        .upstream(
            UpstreamCfg::oracle(&up)
                .username("bench")
                .password_env("E2E_PW", "benchpass")
                .tag_ttl("1m"),
        )
        .upstream(
            UpstreamCfg::new("other", "http://127.0.0.1:1")
                .prefixes(&["other.example"])
                .password_file("s3cret"),
        )
        .write_config(dir.path(), 1111, 2222);
    let v: toml::Value =
        toml::from_str(&std::fs::read_to_string(&path).expect("read")).expect("valid TOML");
    assert_eq!(v["server"]["listen"].as_str(), Some("127.0.0.1:1111"));
    assert_eq!(v["server"]["admin_listen"].as_str(), Some("127.0.0.1:2222"));
    assert_eq!(v["cache"]["tag_ttl"].as_str(), Some("0s"));
    let u = &v["upstream"][0];
    assert_eq!(u["prefixes"][0].as_str(), Some(REGISTRY_NAME));
    assert_eq!(u["default"].as_bool(), Some(true));
    assert_eq!(u["password_env"].as_str(), Some("E2E_PW"));
    assert_eq!(u["ca_file"].as_str(), up.ca_file().and_then(|p| p.to_str()));
    let pw_file = v["upstream"][1]["password_file"]
        .as_str()
        .expect("password_file");
    assert_eq!(std::fs::read_to_string(pw_file).expect("pw"), "s3cret");
    assert_eq!(env, vec![("E2E_PW".to_string(), "benchpass".to_string())]);
}

fn base64_encode(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}
