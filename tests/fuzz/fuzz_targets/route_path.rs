//! Request paths and queries: route::parse_path and query_param never panic, and whatever
//! they accept is path-safe (no empty, `.` or `..` component, digests in lowercase hex).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf_proxy::route::{self, Resource};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let (path, query) = s.split_once('?').unwrap_or((s, ""));
    let _ = route::query_param(Some(query), "ns");
    let Ok(parsed) = route::parse_path(path) else {
        return;
    };
    if let Some(name) = parsed.resource.name() {
        for c in name.components() {
            assert!(!c.is_empty() && c != "." && c != "..", "{path:?}");
        }
    }
    if let Resource::Blob { digest, .. } | Resource::Referrers { digest, .. } = &parsed.resource {
        assert!(
            digest
                .hex()
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
    }
});
