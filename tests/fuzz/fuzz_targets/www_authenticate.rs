//! `WWW-Authenticate` lines from an upstream: the challenge parser never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf_upstream::challenge;

fuzz_target!(|data: &[u8]| {
    for c in challenge::parse(data) {
        let _ = c.param("realm");
        let _ = c.is("Bearer");
    }
    let _ = challenge::parse_all(data.split(|b| *b == b'\n'));
});
