//! Key files as an operator hands them to wharf: `gpg --export` output, armored or binary, one
//! key or several; and the mistakes they make (a missing file, an empty one, a private key, the
//! wrong kind of file), each reported with the file's name, in words, without key material.

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

mod common;

use common::Gpg;
use wharf_sign::{KeyError, Keyring, MAX_KEYRING_BYTES};

#[test]
fn loads_armored_and_binary_exports_of_one_or_more_keys() {
    let gpg = Gpg::new();
    let rsa = gpg.gen_key("rsa@wharf.test", "rsa2048");
    let ed = gpg.gen_key("ed@wharf.test", "ed25519");
    for armor in [true, false] {
        let file = gpg.write("keys", &gpg.export(&[&rsa, &ed], armor));
        let keys = Keyring::load(&file).expect("load");
        assert_eq!(keys.len(), 2);
        let mut fprs = keys.fingerprints();
        fprs.sort();
        let mut want = vec![rsa.clone(), ed.clone()];
        want.sort();
        assert_eq!(fprs, want, "armor: {armor}");
    }
}

#[test]
fn a_missing_empty_or_foreign_file_says_what_is_wrong_and_where() {
    let gpg = Gpg::new();
    let missing = gpg.path("no-such-key");
    let err = Keyring::load(&missing).expect_err("missing");
    assert!(matches!(err, KeyError::Read { .. }));
    assert_eq!(
        err.to_string(),
        format!(
            "cannot read the key file {}: No such file or directory (os error 2)",
            missing.display()
        )
    );

    let empty = gpg.write("empty", b"");
    let err = Keyring::load(&empty).expect_err("empty");
    assert_eq!(
        err.to_string(),
        format!(
            "{} holds no OpenPGP public key (expected the output of `gpg --export --armor KEYID` or `gpg --export KEYID`)",
            empty.display()
        )
    );
    let text = gpg.write("text", b"registry: container-registry.oracle.com\n");
    assert!(matches!(Keyring::load(&text), Err(KeyError::NoKeys { .. })));

    // A signature is OpenPGP, but not a key.
    let key = gpg.gen_key("k@wharf.test", "ed25519");
    let sig = gpg.write("sig", &gpg.gpg_sign(&key, b"x", &["--sign"]));
    let err = Keyring::load(&sig).expect_err("a signature file");
    assert!(
        err.to_string().starts_with(&sig.display().to_string()),
        "{err}"
    );
}

#[test]
fn a_private_key_is_refused_with_the_command_to_export_the_public_one() {
    let gpg = Gpg::new();
    let key = gpg.gen_key("k@wharf.test", "ed25519");
    for armor in [true, false] {
        let mut args = vec!["--export-secret-keys"];
        if armor {
            args.push("--armor");
        }
        args.push(&key);
        let secret = gpg.write("secret", &gpg.gpg(&args).stdout);
        let err = Keyring::load(&secret).expect_err("secret key");
        assert!(matches!(err, KeyError::SecretKey { .. }), "{err}");
        assert!(
            err.to_string().ends_with(
                "holds a private key: give wharf the public key only (`gpg --export --armor KEYID`)"
            ),
            "{err}"
        );
    }
}

#[test]
fn a_damaged_key_is_named_without_quoting_it() {
    let gpg = Gpg::new();
    let key = gpg.gen_key("k@wharf.test", "rsa2048");
    let armored = String::from_utf8(gpg.export(&[&key], true)).expect("ascii");
    // Damage the base64 of the key packet.
    let damaged: String = armored
        .lines()
        .enumerate()
        .map(|(i, l)| if i == 3 { "!!!!".repeat(16) } else { l.to_owned() } + "\n")
        .collect();
    let file = gpg.write("damaged.asc", damaged.as_bytes());
    let err = Keyring::load(&file).expect_err("damaged");
    let msg = err.to_string();
    assert_eq!(
        msg,
        format!(
            "{} is not an OpenPGP public key file: its ASCII armor, or the key inside it, is damaged",
            file.display()
        )
    );
    for line in armored.lines().filter(|l| l.len() > 20) {
        assert!(!msg.contains(line), "the message quotes the key: {msg}");
    }
}

#[test]
fn a_key_file_past_the_bound_is_refused_unread() {
    let gpg = Gpg::new();
    let file = gpg.path("huge");
    std::fs::File::create(&file)
        .and_then(|f| f.set_len(MAX_KEYRING_BYTES as u64 + 1))
        .expect("sparse file");
    let err = Keyring::load(&file).expect_err("too large");
    assert!(matches!(err, KeyError::TooLarge { .. }), "{err}");
}
