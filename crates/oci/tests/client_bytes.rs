//! Property tests for what clients send in a request path (the stable-toolchain stand-in for
//! the cargo-fuzz targets in tests/fuzz/): references, digests and names parse without
//! panicking, and whatever is accepted is safe to use as a file name and prints back unchanged.
//! Image references (what an operator types) and manifests (what an upstream sends) too.

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

use proptest::prelude::*;
use wharf_oci::{Digest, ImageReference, Reference, RepositoryName, manifest};

fn nasty() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,80}",
        "sha(256|512)?[:-][0-9a-fA-F./%]{0,130}(\\.sig)?",
        "[a-z0-9._/%-]{0,60}",
        ".*",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn references_are_tags_or_valid_digests(s in nasty()) {
        match Reference::parse(&s) {
            Ok(Reference::Digest(d)) => {
                prop_assert_eq!(d.to_string(), s.clone());
                prop_assert!(d.hex().bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
            }
            Ok(Reference::Tag(t)) => {
                prop_assert!(!t.contains('/') && !t.contains(':') && !t.contains('%') && t != ".." && t != ".");
                prop_assert!(t.len() <= 128);
            }
            Err(_) => {}
        }
        if let Ok(d) = Digest::parse(&s) {
            prop_assert_eq!(d.hex().len(), d.algorithm().hex_len());
        }
    }

    #[test]
    fn names_have_only_safe_components(s in nasty()) {
        if let Ok(n) = RepositoryName::parse(&s) {
            for c in n.components() {
                prop_assert!(!c.is_empty() && c != "." && c != ".." && !c.contains('%') && !c.contains('\0'));
            }
        }
    }

    #[test]
    fn image_references_print_back_unchanged(s in prop_oneof![
        nasty(),
        "([a-z0-9.-]{1,12}(:[0-9]{1,5})?/)?[a-z0-9/_.-]{1,30}(:[A-Za-z0-9_.-]{1,10})?(@sha256:[0-9a-f]{64})?",
    ]) {
        if let Ok(r) = ImageReference::parse(&s) {
            let again = ImageReference::parse(&r.to_string());
            prop_assert_eq!(again.as_ref(), Ok(&r));
            prop_assert!(r.registry.as_deref().is_none_or(wharf_oci::looks_like_host));
        }
    }

    #[test]
    fn manifests_never_panic(body in prop_oneof![
        "\\PC{0,200}",
        "\\{\"(manifests|layers|config|fsLayers|mediaType)\": ?(\\[\\{\"digest\": ?\"sha256:[0-9a-f]{0,64}\"\\}\\]|\\{\\}|null|\"x\")\\}",
    ], content_type in "\\PC{0,40}") {
        if let Ok(m) = manifest::parse(&content_type, body.as_bytes()) {
            for d in m.digests() {
                prop_assert_eq!(d.hex().len(), d.algorithm().hex_len());
            }
        }
    }
}
