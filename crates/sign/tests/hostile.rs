//! Bytes a hostile or broken signature store can serve: garbage, nothing, truncations and
//! corruptions of real signatures, a size past the bound, a small message that decompresses to
//! a huge one. Each is an error (or, for a corruption outside what OpenPGP signs, the very same
//! verified assertion), and none panics: a panic hook counts panics on the test's own thread,
//! since `verify`'s guard against panics in the OpenPGP parser would otherwise hide them.

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

mod common;

use std::cell::Cell;
use std::sync::Once;

use common::{Gpg, MANIFEST, document};
use wharf_oci::Digest;
use wharf_sign::{Keyring, MAX_SIGNATURE_BYTES, Refusal, verify};

thread_local! {
    static PANICS: Cell<usize> = const { Cell::new(0) };
}

/// Counts panics per thread, then lets the default hook report them as usual.
fn count_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.with(|p| p.set(p.get() + 1));
            default(info);
        }));
    });
}

fn panics() -> usize {
    PANICS.with(Cell::get)
}

/// xorshift64*: reproducible inputs without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

fn some_keyring() -> (Gpg, Keyring, String) {
    let gpg = Gpg::new();
    let key = gpg.gen_key("hostile@wharf.test", "ed25519");
    let keys = Keyring::parse(&gpg.export(&[&key], true)).expect("keyring");
    (gpg, keys, key)
}

#[test]
fn garbage_empty_and_oversized_bytes_are_errors() {
    count_panics();
    let (_gpg, keys, _) = some_keyring();
    let mut rng = Rng(0x5eed_0001);
    let err = verify(&keys, b"").expect_err("empty");
    assert_eq!(err.to_string(), "not a signature (it is empty)");
    let err = verify(&keys, b"<html>Not Found</html>").expect_err("html");
    assert_eq!(
        err.to_string(),
        "not a signature (it starts with byte 0x3c, which does not begin a signed OpenPGP message)"
    );
    for b in 0..=255u8 {
        assert!(verify(&keys, &[b]).is_err(), "single byte {b:#04x}");
    }
    // Past the first-byte check: each byte that can begin a signature, then noise.
    for first in [0xa3u8, 0xa0, 0xc8, 0x90, 0xc4, 0x89, 0xc2] {
        for len in [1, 2, 3, 5, 8, 40, 300, 5000] {
            let mut input = rng.bytes(len);
            input[0] = first;
            assert!(
                verify(&keys, &input).is_err(),
                "{first:#04x} + {len} random bytes"
            );
        }
    }
    let huge = vec![0xa3u8; MAX_SIGNATURE_BYTES + 1];
    assert_eq!(
        verify(&keys, &huge).expect_err("too large"),
        Refusal::TooLarge {
            len: MAX_SIGNATURE_BYTES + 1
        }
    );
    let at_bound = vec![0xa3u8; MAX_SIGNATURE_BYTES];
    assert_eq!(
        verify(&keys, &at_bound).expect_err("junk").kind(),
        "not_a_signature"
    );
    assert_eq!(panics(), 0, "the OpenPGP parser panicked");
}

#[test]
fn every_truncation_of_a_real_signature_is_an_error() {
    count_panics();
    let gpg = Gpg::new();
    let rsa = gpg.gen_key("rsa@wharf.test", "rsa2048");
    let ed = gpg.gen_key("ed@wharf.test", "ed25519");
    let keys = Keyring::parse(&gpg.export(&[&rsa, &ed], false)).expect("keyring");
    for key in [&rsa, &ed] {
        let sig = gpg.skopeo_sign(MANIFEST.as_bytes(), "quay.io/a/b:1", key);
        let whole = verify(&keys, &sig).expect("whole signature");
        for len in 0..sig.len() {
            assert!(
                verify(&keys, &sig[..len]).is_err(),
                "{len} of {} bytes",
                sig.len()
            );
        }
        // gpg's compressed packet has no length: bytes after the end of its deflate stream are
        // ignored (by gpg and skopeo too), so they can never change what is signed.
        let mut longer = sig.clone();
        longer.extend_from_slice(&sig);
        if let Ok(signed) = verify(&keys, &longer) {
            assert_eq!(signed, whole, "trailing bytes changed what is signed");
        }
    }
    assert_eq!(panics(), 0, "the OpenPGP parser panicked");
}

#[test]
fn random_corruption_of_a_real_signature_never_panics() {
    count_panics();
    let (gpg, keys, key) = some_keyring();
    let sig = gpg.skopeo_sign(MANIFEST.as_bytes(), "quay.io/a/b:1", &key);
    let d = Digest::sha256_of(MANIFEST.as_bytes());
    let doc = document(&d, "quay.io/a/b:1", "atomic container signature");
    let plain = gpg.gpg_sign(&key, doc.as_bytes(), &["--compress-algo", "none", "--sign"]);
    let mut rng = Rng(0x5eed_0002);
    for original in [sig, plain] {
        let good = verify(&keys, &original).expect("original");
        for _ in 0..1500 {
            let mut input = original.clone();
            for _ in 0..=rng.below(8) {
                let at = rng.below(input.len());
                input[at] = rng.next() as u8;
            }
            if let Ok(signed) = verify(&keys, &input) {
                assert_eq!(signed, good, "a corruption changed what is signed");
            }
        }
    }
    assert_eq!(panics(), 0, "the OpenPGP parser panicked");
}

#[test]
fn a_small_signature_of_huge_content_is_refused_without_reading_it_all() {
    count_panics();
    let (gpg, keys, key) = some_keyring();
    // 64 MiB of zeros compresses to a few dozen KiB: well under the signature bound.
    let sig = gpg.gpg_sign(&key, &vec![0u8; 64 << 20], &["--sign"]);
    assert!(sig.len() < MAX_SIGNATURE_BYTES, "{} bytes", sig.len());
    let err = verify(&keys, &sig).expect_err("too much content");
    assert_eq!(
        err.to_string(),
        "not a signature (its signed content is larger than 1048576 bytes)"
    );
    assert_eq!(panics(), 0, "the OpenPGP parser panicked");
}

#[test]
fn corrupt_key_files_are_errors() {
    count_panics();
    let gpg = Gpg::new();
    let key = gpg.gen_key("k@wharf.test", "rsa2048");
    let mut rng = Rng(0x5eed_0003);
    for armor in [false, true] {
        let exported = gpg.export(&[&key], armor);
        Keyring::parse(&exported).expect("whole key");
        let step = (exported.len() / 97).max(1);
        for len in (0..exported.len()).step_by(step) {
            // A truncated key may still parse when the cut falls between packets (a user ID
            // and its self-signature dropped), but it never panics.
            let _ = Keyring::parse(&exported[..len]);
        }
        for _ in 0..300 {
            let mut input = exported.clone();
            let at = rng.below(input.len());
            input[at] = rng.next() as u8;
            let _ = Keyring::parse(&input);
        }
    }
    for len in [0, 1, 2, 16, 1000] {
        assert!(
            Keyring::parse(&rng.bytes(len)).is_err(),
            "{len} random bytes"
        );
    }
    assert_eq!(panics(), 0, "the OpenPGP parser panicked");
}
