//! The pinning verifier against certificates made by the real `openssl req -x509`, at chosen
//! times: what it accepts, what it refuses, and with which error.

use std::path::Path;
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use wharf_testkit::pki;

use super::*;

const IP_SAN: &str = "subjectAltName=IP:127.0.0.1";

fn der(path: &Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(path).expect("a PEM certificate")
}

/// A guide-style certificate (`CA:TRUE`, self-signed) for CN=127.0.0.1 with `extensions`.
fn guide(dir: &Path, name: &str, extensions: &[&str]) -> CertificateDer<'static> {
    der(&pki::guide_self_signed(dir, name, "127.0.0.1", extensions).cert)
}

/// A verifier whose `ca_file` held `pinned`, and no system roots.
fn verifier(pinned: &[&CertificateDer<'static>]) -> PinningVerifier {
    let mut roots = RootCertStore::empty();
    for cert in pinned {
        roots.add((*cert).clone()).expect("a trust anchor");
    }
    let pinned = pinned.iter().map(|c| (*c).clone()).collect();
    PinningVerifier::new(
        roots,
        pinned,
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .expect("verifier")
}

fn name(host: &str) -> ServerName<'static> {
    ServerName::try_from(host.to_owned()).expect("a server name")
}

fn now() -> UnixTime {
    UnixTime::now()
}

/// `now` moved by `secs` (negative: into the past).
fn shifted(secs: i64) -> UnixTime {
    let now = SystemTime::now();
    let t = if secs >= 0 {
        now + Duration::from_secs(secs.unsigned_abs())
    } else {
        now - Duration::from_secs(secs.unsigned_abs())
    };
    UnixTime::since_unix_epoch(
        t.duration_since(SystemTime::UNIX_EPOCH)
            .expect("after 1970"),
    )
}

fn check(
    v: &PinningVerifier,
    cert: &CertificateDer<'_>,
    host: &str,
    at: UnixTime,
) -> Result<ServerCertVerified, Error> {
    v.verify_server_cert(cert, &[], &name(host), &[], at)
}

fn is_ca_used_as_end_entity(e: &Error) -> bool {
    matches!(e, Error::InvalidCertificate(c) if super::is_ca_used_as_end_entity(c))
}

#[test]
fn a_pinned_ca_certificate_is_accepted_where_webpki_alone_refuses_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = guide(dir.path(), "guide", &[IP_SAN]);
    let v = verifier(&[&cert]);

    let plain = v
        .webpki
        .verify_server_cert(&cert, &[], &name("127.0.0.1"), &[], now())
        .expect_err("webpki alone refuses a CA as a server certificate");
    assert!(is_ca_used_as_end_entity(&plain), "{plain:?}");

    check(&v, &cert, "127.0.0.1", now()).expect("pinned: accepted");
}

#[test]
fn a_different_certificate_is_refused_with_webpkis_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pinned = guide(dir.path(), "pinned", &[IP_SAN]);
    // Same subject, same extensions, another key: only the bytes tell them apart.
    let other = guide(dir.path(), "other", &[IP_SAN]);
    let e = check(&verifier(&[&pinned]), &other, "127.0.0.1", now()).expect_err("not pinned");
    assert!(is_ca_used_as_end_entity(&e), "{e:?}");
}

#[test]
fn a_pinned_certificate_for_another_name_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = guide(dir.path(), "guide", &[IP_SAN]);
    let v = verifier(&[&cert]);
    for host in ["127.0.0.2", "localhost"] {
        let e = check(&v, &cert, host, now()).expect_err("wrong name");
        match e {
            Error::InvalidCertificate(CertificateError::NotValidForNameContext {
                presented,
                ..
            }) => assert!(
                presented.len() == 1 && presented[0].contains("127.0.0.1"),
                "{host}: {presented:?}"
            ),
            e => panic!("{host}: {e:?}"),
        }
    }
}

#[test]
fn a_pinned_certificate_with_only_a_common_name_is_refused_as_go_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The guide's shape without -addext: CN=127.0.0.1 and no subjectAltName.
    let cert = guide(dir.path(), "cn-only", &[]);
    let e = check(&verifier(&[&cert]), &cert, "127.0.0.1", now()).expect_err("CN only");
    assert!(
        matches!(
            &e,
            Error::InvalidCertificate(CertificateError::NotValidForNameContext { presented, .. })
                if presented.is_empty()
        ),
        "{e:?}"
    );
}

#[test]
fn a_pinned_certificate_outside_its_dates_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = guide(dir.path(), "guide", &[IP_SAN]);
    let v = verifier(&[&cert]);
    // `-days 1`: two days on it has expired; a day before it was made it was not valid yet.
    let e = check(&v, &cert, "127.0.0.1", shifted(2 * 86_400)).expect_err("expired");
    assert!(
        matches!(
            e,
            Error::InvalidCertificate(CertificateError::ExpiredContext { .. })
        ),
        "{e:?}"
    );
    let e = check(&v, &cert, "127.0.0.1", shifted(-86_400)).expect_err("not yet valid");
    assert!(
        matches!(
            e,
            Error::InvalidCertificate(CertificateError::NotValidYetContext { .. })
        ),
        "{e:?}"
    );
    // webpki happens to check dates before the CA bit; the pin check does not rely on that.
    let e = verify_pinned(&cert, &name("127.0.0.1"), shifted(2 * 86_400)).expect_err("expired");
    assert!(
        matches!(
            e,
            Error::InvalidCertificate(CertificateError::ExpiredContext { .. })
        ),
        "{e:?}"
    );
    let e = verify_pinned(&cert, &name("127.0.0.1"), shifted(-86_400)).expect_err("early");
    assert!(
        matches!(
            e,
            Error::InvalidCertificate(CertificateError::NotValidYetContext { .. })
        ),
        "{e:?}"
    );
}

#[test]
fn a_pinned_certificate_must_allow_server_auth_if_it_lists_usages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let client_only = guide(
        dir.path(),
        "client",
        &[IP_SAN, "extendedKeyUsage=clientAuth"],
    );
    let e = check(&verifier(&[&client_only]), &client_only, "127.0.0.1", now())
        .expect_err("clientAuth only");
    assert!(
        matches!(
            e,
            Error::InvalidCertificate(CertificateError::InvalidPurpose)
        ),
        "{e:?}"
    );
    let server = guide(
        dir.path(),
        "server",
        &[IP_SAN, "extendedKeyUsage=clientAuth,serverAuth"],
    );
    check(&verifier(&[&server]), &server, "127.0.0.1", now()).expect("serverAuth listed");
}

#[test]
fn a_pinned_leaf_of_an_unknown_ca_is_accepted_as_go_accepts_it() {
    let ca = pki::Pki::new();
    ca.leaf("site", 7);
    let leaf = der(&ca.dir().join("site.leaf.crt"));
    let other = pki::Pki::new();
    let unrelated = der(&other.root());

    // Only another CA in ca_file: webpki's unknown issuer stands.
    let e = check(&verifier(&[&unrelated]), &leaf, "127.0.0.1", now()).expect_err("unknown");
    assert!(
        matches!(
            e,
            Error::InvalidCertificate(CertificateError::UnknownIssuer)
        ),
        "{e:?}"
    );
    // The leaf itself in ca_file: pinned, as Go's `opts.Roots.contains(leaf)` accepts it.
    check(&verifier(&[&unrelated, &leaf]), &leaf, "127.0.0.1", now()).expect("pinned leaf");
}

#[test]
fn the_dates_read_are_the_ones_openssl_wrote() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = guide(dir.path(), "guide", &[IP_SAN]);
    let validity = x509::validity(&cert).expect("validity");
    assert_eq!(validity.not_after - validity.not_before, 86_400, "-days 1");
    let made = now().as_secs();
    assert!(
        validity.not_before <= made && made - validity.not_before < 600,
        "{validity:?} vs now {made}"
    );
    assert_eq!(x509::server_auth(&cert), Some(ServerAuth::Unrestricted));
}
