//! An upstream serving the certificate the Oracle Linux guide makes with `openssl req -x509`:
//! self-signed and, with openssl.cnf's defaults, a CA (`basicConstraints=critical,CA:TRUE`).
//! Go clients (skopeo here) accept it once they trust it; wharf pins it when `ca_file` names it,
//! and otherwise says what to change, in the OCI error its client gets and in its log.

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

use std::path::Path;

use wharf_e2e::expect;
use wharf_e2e::http::{ACCEPT_ALL_MANIFESTS, Http, Resp};
use wharf_e2e::{Image, Skopeo, Upstream, UpstreamCfg, Wharf, images};
use wharf_testkit::pki::{self, TlsFiles};

const IP_SAN: &str = "subjectAltName=IP:127.0.0.1";

/// `openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 [-addext ...]`.
fn guide_cert(dir: &Path, name: &str, extensions: &[&str]) -> TlsFiles {
    pki::guide_self_signed(dir, name, "127.0.0.1", extensions)
}

/// A real docker-registry over TLS with `tls`, serving the test images.
fn upstream_with(tls: TlsFiles) -> Upstream {
    Upstream::builder().tls_files(tls).start()
}

/// `GET /v2/<repo>/manifests/<tag>` through wharf.
fn manifest_through(wharf: &Wharf, img: &Image) -> Resp {
    let url = format!("{}/v2/{}/manifests/{}", wharf.url(), img.repo, img.tag);
    Http::new().get(&url, &[("Accept", ACCEPT_ALL_MANIFESTS)])
}

/// The messages of an OCI error answer, joined.
fn messages(r: &Resp) -> String {
    r.errors()
        .into_iter()
        .map(|(_, m)| m)
        .collect::<Vec<_>>()
        .join(" | ")
}

/// `skopeo inspect` straight at the upstream, trusting `cert` as podman's certs.d would: what a
/// Go client makes of the certificate.
fn go_client_inspects(up: &Upstream, img: &Image, cert: &Path) -> wharf_e2e::process::CmdOut {
    let certs = tempfile::tempdir().expect("tempdir");
    std::fs::copy(cert, certs.path().join("ca.crt")).expect("copy ca.crt");
    let cert_dir = certs.path().display().to_string();
    Skopeo::new().inspect_raw(
        &format!("{}/{}", up.host_port(), img.reference()),
        &["--tls-verify=true", "--cert-dir", &cert_dir],
    )
}

#[test]
fn a_guide_certificate_named_by_ca_file_is_pinned_and_pulls() {
    let set = images();
    let img = &set.oraclelinux;
    let dir = tempfile::tempdir().expect("tempdir");
    let tls = guide_cert(dir.path(), "domain", &[IP_SAN]);
    let cert = tls.cert.clone();
    let up = upstream_with(tls);

    // What skopeo does with it directly: accepted (Go takes a trusted leaf as its own chain).
    go_client_inspects(&up, img, &cert)
        .expect_ok("skopeo straight at the guide-certificate upstream");

    let wharf = Wharf::builder()
        .upstream(UpstreamCfg::oracle(&up).ca_file(&cert))
        .start();
    let m = up.mark();
    let c = Skopeo::new()
        .copy_direct(&wharf.host_port(), &img.reference(), &[])
        .expect_ok("pull through wharf from the guide-certificate upstream");
    assert_eq!(c.digest(), img.manifest.digest);
    let reqs = expect::upstream_requests(&up, m, "pull, pinned guide certificate");
    expect::each_blob_fetched_once(&reqs, &img.blobs(), "pinned guide certificate");
}

#[test]
fn without_ca_file_the_client_is_told_to_pin_the_certificate() {
    let set = images();
    let img = &set.hello;
    let dir = tempfile::tempdir().expect("tempdir");
    let up = upstream_with(guide_cert(dir.path(), "domain", &[IP_SAN]));
    let wharf = Wharf::builder()
        .upstream(UpstreamCfg::oracle(&up).no_ca_file())
        .start();

    let r = manifest_through(&wharf, img);
    expect::oci_error(&r, &[502], "UNAVAILABLE", "guide certificate, no ca_file");
    let text = messages(&r);
    assert!(
        text.contains("is a CA certificate")
            && text.contains("set ca_file to that exact certificate to pin it"),
        "the OCI error should say to pin the certificate: {}",
        r.describe()
    );
    // skopeo reads the body of 4xx answers only (Distribution's client HandleErrorResponse), so
    // its user sees the status; the operator finds the advice in wharf's log.
    let c = Skopeo::new().copy_direct(&wharf.host_port(), &img.reference(), &[]);
    assert!(!c.ok(), "the pull should fail:\n{}", c.out);
    let log = wharf.settled_log();
    assert!(
        log.contains("set ca_file to that exact certificate to pin it"),
        "wharf's log should carry the advice:\n{log}"
    );
}

#[test]
fn another_certificate_in_ca_file_is_named_in_the_error() {
    let set = images();
    let img = &set.hello;
    let dir = tempfile::tempdir().expect("tempdir");
    let up = upstream_with(guide_cert(dir.path(), "domain", &[IP_SAN]));
    // Made the same way, for the same name: only its bytes differ.
    let other = guide_cert(dir.path(), "other", &[IP_SAN]);
    let wharf = Wharf::builder()
        .upstream(UpstreamCfg::oracle(&up).ca_file(&other.cert))
        .start();
    let m = up.mark();

    let r = manifest_through(&wharf, img);
    expect::oci_error(
        &r,
        &[502],
        "UNAVAILABLE",
        "guide certificate, another ca_file",
    );
    let text = messages(&r);
    assert!(
        text.contains(&format!(
            "ca_file {} does not hold that certificate",
            other.cert.display()
        )) && text.contains("to pin it"),
        "the OCI error should name the ca_file that does not hold the certificate: {}",
        r.describe()
    );
    assert_eq!(
        up.count_since(m, |_| true),
        0,
        "no request may reach an upstream whose certificate was refused"
    );
}

#[test]
fn the_guides_common_name_only_certificate_is_refused_as_go_refuses_it() {
    let set = images();
    let img = &set.hello;
    let dir = tempfile::tempdir().expect("tempdir");
    // The guide's command without -addext: the host only in the subject's CN.
    let tls = guide_cert(dir.path(), "domain", &[]);
    let cert = tls.cert.clone();
    let up = upstream_with(tls);

    let go = go_client_inspects(&up, img, &cert);
    assert!(
        !go.ok() && go.stderr.contains("Common Name"),
        "skopeo (Go 1.15+) refuses a certificate whose host is only in its CN:\n{go}"
    );

    let wharf = Wharf::builder()
        .upstream(UpstreamCfg::oracle(&up).ca_file(&cert))
        .start();
    let r = manifest_through(&wharf, img);
    expect::oci_error(&r, &[502], "UNAVAILABLE", "CN-only guide certificate");
    let text = messages(&r);
    assert!(
        text.contains("names no host in subjectAltName")
            && text.contains("-addext \"subjectAltName=IP:127.0.0.1\""),
        "the OCI error should say how to add the name: {}",
        r.describe()
    );
}
