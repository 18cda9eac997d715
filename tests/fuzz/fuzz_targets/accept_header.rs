//! `Accept` headers (several lines, comma lists, parameters, `*/*`): AcceptSet never panics,
//! several lines mean what one comma list of them means, an OCI type listed is served, and
//! Docker types always are. Input: one header line per line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf_oci::media::{self, AcceptSet};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let lines: Vec<&str> = s.split('\n').collect();
    let set = AcceptSet::parse(lines.iter().copied());
    let joined = lines.join(",");
    assert_eq!(AcceptSet::parse([joined.as_str()]), set, "{lines:?}");
    // Old clients omit the Docker types yet read them; only OCI types are ever refused.
    assert!(set.allows(media::DOCKER_MANIFEST));
    assert!(set.allows(media::DOCKER_MANIFEST_LIST));
    let listed = |t: &str| {
        lines
            .iter()
            .flat_map(|l| l.split(','))
            .any(|item| media::essence(item) == t)
    };
    for t in [media::OCI_MANIFEST, media::OCI_INDEX] {
        if listed(t) {
            assert!(set.allows(t), "{t} listed in {lines:?}");
        }
    }
});
