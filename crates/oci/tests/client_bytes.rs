//! Property tests for what clients send in a request path (the stable-toolchain stand-in for
//! the cargo-fuzz targets in tests/fuzz/): references, digests and names parse without
//! panicking, and whatever is accepted is safe to use as a file name and prints back unchanged.

use proptest::prelude::*;
use wharf_oci::{Digest, Reference, RepositoryName};

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
}
