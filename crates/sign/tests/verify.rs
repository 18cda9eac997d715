//! Signatures made by the real tools, checked end to end: keys from `gpg --batch`, signatures
//! from `skopeo standalone-sign` (what `skopeo copy --sign-by` and `podman push --sign-by`
//! store in a lookaside), cross-checked with `skopeo standalone-verify`; and the signatures a
//! mirror must refuse: other keys, other manifests, other images, altered bytes, expired or
//! revoked keys, signed content that is not a container signature.

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

mod common;

use common::{Gpg, MANIFEST, days_from_now, document, epoch_days_ago};
use wharf_oci::Digest;
use wharf_sign::{Keyring, Refusal, verify, verify_at};

const ORACLE: &str = "container-registry.oracle.com/os/oraclelinux";

fn keyring(gpg: &Gpg, keys: &[&str], armor: bool) -> Keyring {
    let file = gpg.write("pubkey", &gpg.export(keys, armor));
    Keyring::load(&file).expect("keyring")
}

#[test]
fn an_rsa_signature_verifies_and_names_the_image_by_tag_and_by_digest() {
    let gpg = Gpg::new();
    let rsa = gpg.gen_key("rsa@wharf.test", "rsa2048");
    let reference = format!("{ORACLE}:9");
    let sig = gpg.skopeo_sign(MANIFEST.as_bytes(), &reference, &rsa);
    let digest = Digest::sha256_of(MANIFEST.as_bytes());

    let signed = verify(&keyring(&gpg, &[&rsa], true), &sig).expect("verifies");
    assert_eq!(signed.manifest_digest, digest);
    assert_eq!(signed.docker_reference, reference);
    assert_eq!(
        (signed.signer.as_str(), signed.signing_key.as_str()),
        (rsa.as_str(), rsa.as_str())
    );
    signed.names(&digest, ORACLE, Some("9")).expect("by tag");
    signed.names(&digest, ORACLE, None).expect("by digest");

    // containers/image itself agrees, with gpg's keyring.
    let out = gpg
        .skopeo_verify(MANIFEST.as_bytes(), &reference, &rsa, &sig)
        .expect("skopeo standalone-verify");
    assert!(out.contains(&digest.to_string()), "{out}");
}

#[test]
fn an_ed25519_signature_verifies_with_a_binary_keyring() {
    let gpg = Gpg::new();
    let ed = gpg.gen_key("ed@wharf.test", "ed25519");
    let sig = gpg.skopeo_sign(MANIFEST.as_bytes(), "quay.io/wharf/app:v1", &ed);
    let keys = Keyring::parse(&gpg.export(&[&ed], false)).expect("binary keyring");
    assert_eq!(keys.fingerprints(), vec![ed.clone()]);
    let signed = verify(&keys, &sig).expect("verifies");
    assert_eq!(signed.signer, ed);
    let digest = Digest::sha256_of(MANIFEST.as_bytes());
    signed
        .names(&digest, "quay.io/wharf/app", Some("v1"))
        .expect("names");
    gpg.skopeo_verify(MANIFEST.as_bytes(), "quay.io/wharf/app:v1", &ed, &sig)
        .expect("skopeo agrees");
}

#[test]
fn a_keyring_without_the_signers_key_refuses_and_one_with_it_among_others_accepts() {
    let gpg = Gpg::new();
    let rsa = gpg.gen_key("rsa@wharf.test", "rsa2048");
    let ed = gpg.gen_key("ed@wharf.test", "ed25519");
    let sig = gpg.skopeo_sign(MANIFEST.as_bytes(), "quay.io/a/b:1", &rsa);

    let err = verify(&keyring(&gpg, &[&ed], true), &sig).expect_err("other key");
    assert_eq!(err, Refusal::UnknownSigner { key: rsa.clone() });
    assert_eq!(
        err.to_string(),
        format!("signed by key {rsa}, which is not in the keyring")
    );
    assert_eq!(err.kind(), "unknown_signer");

    // Two armored blocks in one file, as vendors' key files sometimes have.
    let mut both = gpg.export(&[&ed], true);
    both.extend_from_slice(b"\n");
    both.extend(gpg.export(&[&rsa], true));
    let keys = Keyring::parse(&both).expect("two blocks");
    assert_eq!(keys.len(), 2);
    assert_eq!(verify(&keys, &sig).expect("verifies").signer, rsa);
}

#[test]
fn a_signing_subkey_verifies_for_its_primary_key() {
    let gpg = Gpg::new();
    let primary = gpg.gen_key("sub@wharf.test", "rsa2048");
    let subkey = gpg.add_signing_subkey("sub@wharf.test", "ed25519");
    // gpg signs with the newest signing subkey when given the primary's fingerprint.
    let sig = gpg.skopeo_sign(MANIFEST.as_bytes(), "quay.io/a/b:1", &primary);
    let signed = verify(&keyring(&gpg, &[&primary], true), &sig).expect("verifies");
    assert_eq!(signed.signer, primary);
    assert_eq!(signed.signing_key, subkey);
}

#[test]
fn a_signature_for_another_manifest_is_refused() {
    let gpg = Gpg::new();
    let rsa = gpg.gen_key("rsa@wharf.test", "rsa2048");
    let other_manifest = MANIFEST.replace("\"layers\":[]", "\"layers\":[],\"annotations\":{}");
    let sig = gpg.skopeo_sign(other_manifest.as_bytes(), &format!("{ORACLE}:9"), &rsa);
    let signed = verify(&keyring(&gpg, &[&rsa], true), &sig).expect("verifies");

    let served = Digest::sha256_of(MANIFEST.as_bytes());
    let err = signed
        .names(&served, ORACLE, Some("9"))
        .expect_err("other manifest");
    assert_eq!(
        err.to_string(),
        format!(
            "the signature is for manifest {}, not {served}",
            Digest::sha256_of(other_manifest.as_bytes())
        )
    );
    assert_eq!(err.kind(), "wrong_manifest");
    assert!(
        gpg.skopeo_verify(MANIFEST.as_bytes(), &format!("{ORACLE}:9"), &rsa, &sig)
            .is_err(),
        "skopeo refuses it too"
    );
}

#[test]
fn another_repository_or_tag_is_refused() {
    let gpg = Gpg::new();
    let ed = gpg.gen_key("ed@wharf.test", "ed25519");
    let sig = gpg.skopeo_sign(MANIFEST.as_bytes(), "quay.io/a/b:1", &ed);
    let signed = verify(&keyring(&gpg, &[&ed], false), &sig).expect("verifies");
    let d = Digest::sha256_of(MANIFEST.as_bytes());

    let err = signed
        .names(&d, "quay.io/a/b", Some("2"))
        .expect_err("other tag");
    assert_eq!(
        err.to_string(),
        "the signature names quay.io/a/b:1, not quay.io/a/b:2"
    );
    let err = signed
        .names(&d, "quay.io/a/c", Some("1"))
        .expect_err("other repository");
    assert_eq!(
        err.to_string(),
        "the signature names quay.io/a/b:1, not quay.io/a/c:1"
    );
    let err = signed
        .names(&d, "quay.io/a/c", None)
        .expect_err("other repository by digest");
    assert_eq!(
        err.to_string(),
        "the signature names quay.io/a/b:1, not repository quay.io/a/c"
    );
    let err = signed
        .names(&d, "registry.local/a/b", Some("1"))
        .expect_err("other registry");
    assert_eq!(err.kind(), "wrong_identity");
    // By digest, any tag of the repository will do.
    signed.names(&d, "quay.io/a/b", None).expect("by digest");
    // A caller's bad repository refuses; it never matches.
    let err = signed
        .names(&d, "quay.io/A/b", Some("1"))
        .expect_err("invalid image");
    assert_eq!(err.kind(), "invalid_image");
}

#[test]
fn docker_hub_names_normalize_on_both_sides() {
    let gpg = Gpg::new();
    let ed = gpg.gen_key("ed@wharf.test", "ed25519");
    let keys = keyring(&gpg, &[&ed], true);
    let d = Digest::sha256_of(MANIFEST.as_bytes());

    let sig = gpg.skopeo_sign(MANIFEST.as_bytes(), "docker.io/library/busybox:1", &ed);
    let signed = verify(&keys, &sig).expect("verifies");
    for repository in [
        "busybox",
        "library/busybox",
        "docker.io/busybox",
        "docker.io/library/busybox",
        "index.docker.io/library/busybox",
        "registry-1.docker.io/library/busybox",
    ] {
        signed.names(&d, repository, Some("1")).expect(repository);
    }
    assert!(signed.names(&d, "busybox", Some("2")).is_err());
    assert!(
        signed
            .names(&d, "quay.io/library/busybox", Some("1"))
            .is_err()
    );

    // The familiar form in the signature is normalized the same way.
    let sig = gpg.skopeo_sign(MANIFEST.as_bytes(), "busybox:1", &ed);
    let signed = verify(&keys, &sig).expect("verifies");
    assert_eq!(signed.docker_reference, "busybox:1");
    signed
        .names(&d, "docker.io/library/busybox", Some("1"))
        .expect("normalized");
    gpg.skopeo_verify(
        MANIFEST.as_bytes(),
        "docker.io/library/busybox:1",
        &ed,
        &sig,
    )
    .expect("skopeo normalizes the same way");
}

#[test]
fn no_altered_byte_changes_what_is_signed() {
    let gpg = Gpg::new();
    let ed = gpg.gen_key("ed@wharf.test", "ed25519");
    let keys = keyring(&gpg, &[&ed], true);
    let sig = gpg.skopeo_sign(MANIFEST.as_bytes(), "quay.io/a/b:1", &ed);
    let original = verify(&keys, &sig).expect("the original verifies");
    // Some bytes are not covered by an OpenPGP signature (the one-pass packet's key ID, the
    // literal packet's date and file name), and gpg accepts those altered too: what matters is
    // that no altered byte changes what the signature asserts or who asserts it.
    let mut refused = 0;
    for i in 0..sig.len() {
        let mut altered = sig.clone();
        altered[i] ^= 0x01;
        match verify(&keys, &altered) {
            Err(err) => {
                refused += 1;
                assert!(!err.to_string().is_empty());
            }
            Ok(signed) => assert_eq!(signed, original, "byte {i} altered"),
        }
    }
    assert!(
        refused > sig.len() * 3 / 4,
        "{refused} of {} refused",
        sig.len()
    );

    // Uncompressed, so the signed document itself can be altered while staying a valid
    // document: only the signature check can catch that.
    let d = Digest::sha256_of(MANIFEST.as_bytes());
    let doc = document(&d, "quay.io/a/b:1", "atomic container signature");
    let sig = gpg.gpg_sign(&ed, doc.as_bytes(), &["--compress-algo", "none", "--sign"]);
    verify(&keys, &sig).expect("an uncompressed signature verifies");
    let at = sig
        .windows(b"quay.io/a/b:1".len())
        .position(|w| w == b"quay.io/a/b:1")
        .expect("document in the clear");
    let mut altered = sig.clone();
    altered[at + b"quay.io/a/".len()] = b'c';
    let err = verify(&keys, &altered).expect_err("altered document");
    assert_eq!(err.kind(), "bad_signature", "{err}");
    assert!(err.to_string().starts_with("bad signature ("), "{err}");
}

#[test]
fn signed_content_that_is_not_a_container_signature_is_refused() {
    let gpg = Gpg::new();
    let rsa = gpg.gen_key("rsa@wharf.test", "rsa2048");
    let keys = keyring(&gpg, &[&rsa], true);
    let d = Digest::sha256_of(MANIFEST.as_bytes());

    let err =
        verify(&keys, &gpg.gpg_sign(&rsa, b"hello, world\n", &["--sign"])).expect_err("not JSON");
    assert!(
        err.to_string()
            .starts_with("not a signature (signed, but not a container signature: not JSON"),
        "{err}"
    );

    let doc = document(&d, "quay.io/a/b:1", "cosign container image signature");
    let err =
        verify(&keys, &gpg.gpg_sign(&rsa, doc.as_bytes(), &["--sign"])).expect_err("wrong type");
    assert!(
        err.to_string()
            .contains("critical.type is \"cosign container image signature\""),
        "{err}"
    );

    // The right document made with plain gpg is a simple signature like any other.
    let doc = document(&d, "quay.io/a/b:1", "atomic container signature");
    verify(&keys, &gpg.gpg_sign(&rsa, doc.as_bytes(), &["--sign"])).expect("gpg --sign");

    // Two signers on one message: containers/image's gpgme mechanism takes exactly one.
    let ed = gpg.gen_key("ed@wharf.test", "ed25519");
    let both = Keyring::parse(&gpg.export(&[&rsa, &ed], true)).expect("keyring");
    let twice = gpg.gpg_sign(&rsa, doc.as_bytes(), &["--local-user", &ed, "--sign"]);
    assert_eq!(
        verify(&both, &twice)
            .expect_err("two signatures")
            .to_string(),
        "not a signature (it carries 2 signatures; a simple signature carries exactly one)"
    );

    // Shapes of OpenPGP that are not a simple signature.
    let detached = gpg.gpg_sign(&rsa, doc.as_bytes(), &["--detach-sign"]);
    assert_eq!(
        verify(&keys, &detached).expect_err("detached").kind(),
        "not_a_signature"
    );
    let clear = gpg.gpg_sign(&rsa, doc.as_bytes(), &["--clearsign"]);
    assert!(
        verify(&keys, &clear)
            .expect_err("clearsigned")
            .to_string()
            .contains("ASCII-armored")
    );
    let armored = gpg.gpg_sign(&rsa, doc.as_bytes(), &["--armor", "--sign"]);
    assert!(
        verify(&keys, &armored)
            .expect_err("armored")
            .to_string()
            .contains("ASCII-armored")
    );
    let plain = gpg
        .gpg(&[
            "--store",
            "--output",
            "-",
            gpg.write("doc", doc.as_bytes()).to_str().expect("utf-8"),
        ])
        .stdout;
    let err = verify(&keys, &plain).expect_err("unsigned");
    assert_eq!(
        err.to_string(),
        "not a signature (it is an OpenPGP message without a signature)"
    );
}

#[test]
fn an_expired_key_or_signature_is_refused() {
    let gpg = Gpg::new();
    let d = Digest::sha256_of(MANIFEST.as_bytes());
    let doc = document(&d, "quay.io/a/b:1", "atomic container signature");

    // A key that expires tomorrow: good today, refused the day after.
    let key = gpg.gen_key_with("exp@wharf.test", "ed25519", "1d", &[]);
    let keys = keyring(&gpg, &[&key], true);
    let sig = gpg.skopeo_sign(MANIFEST.as_bytes(), "quay.io/a/b:1", &key);
    verify(&keys, &sig).expect("valid today");
    let err = verify_at(&keys, &sig, days_from_now(2)).expect_err("expired key");
    assert_eq!(err.kind(), "expired");
    assert!(
        err.to_string()
            .starts_with(&format!("expired (key {key} expired on ")),
        "{err}"
    );

    // A signature made three days ago that expired after one: refused now, by the real clock.
    let old = gpg.gen_key_with(
        "old@wharf.test",
        "rsa2048",
        "never",
        &["--faked-system-time", &epoch_days_ago(10)],
    );
    let keys = keyring(&gpg, &[&old], true);
    let sig = gpg.gpg_sign(
        &old,
        doc.as_bytes(),
        &[
            "--faked-system-time",
            &epoch_days_ago(3),
            "--default-sig-expire",
            "1d",
            "--sign",
        ],
    );
    let err = verify(&keys, &sig).expect_err("expired signature");
    assert!(
        err.to_string()
            .starts_with("expired (the signature expired on "),
        "{err}"
    );
    // ... and it did verify while it was valid.
    verify_at(&keys, &sig, days_from_now(-3)).expect("valid when made");
}

#[test]
fn a_revoked_key_is_refused() {
    let gpg = Gpg::new();
    let key = gpg.gen_key("rev@wharf.test", "ed25519");
    let sig = gpg.skopeo_sign(MANIFEST.as_bytes(), "quay.io/a/b:1", &key);
    verify(&keyring(&gpg, &[&key], true), &sig).expect("valid before revocation");

    // The revocation certificate gpg stored at key generation, made importable (gpg prefixes
    // its armor line with ':' so it cannot be imported by accident).
    let stored = std::fs::read_to_string(gpg.path(&format!("openpgp-revocs.d/{key}.rev")))
        .expect("revocation certificate");
    let cert = stored.replace(
        ":-----BEGIN PGP PUBLIC KEY BLOCK-----",
        "-----BEGIN PGP PUBLIC KEY BLOCK-----",
    );
    let file = gpg.write("revoke.asc", cert.as_bytes());
    gpg.gpg(&["--import", file.to_str().expect("utf-8")]);

    let err = verify(&keyring(&gpg, &[&key], true), &sig).expect_err("revoked");
    assert_eq!(
        err.to_string(),
        format!("signed by key {key}, which is revoked")
    );
    assert!(
        gpg.skopeo_verify(MANIFEST.as_bytes(), "quay.io/a/b:1", &key, &sig)
            .is_err(),
        "skopeo refuses it too"
    );
}
