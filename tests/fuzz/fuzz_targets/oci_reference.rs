//! Repository names, references (tag or digest) and digests: never panic; what parses
//! prints back as it came, parses back the same, and stays path-safe.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf_oci::{Digest, Reference, RepositoryName};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(d) = Digest::parse(s) {
        assert_eq!(d.to_string(), s);
        assert!(
            d.hex()
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
    }
    if let Ok(n) = RepositoryName::parse(s) {
        assert_eq!(n.as_str(), s);
        assert!(
            n.components()
                .all(|c| !c.is_empty() && c != "." && c != "..")
        );
        assert_eq!(RepositoryName::parse(n.as_str()).ok(), Some(n));
    }
    if let Ok(r) = Reference::parse(s) {
        let printed = r.to_string();
        assert_eq!(printed, s);
        assert_eq!(Reference::parse(&printed).ok(), Some(r));
    }
});
