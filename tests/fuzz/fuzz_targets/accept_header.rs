//! `Accept` headers (several lines, comma lists, parameters, `*/*`): AcceptSet never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf_oci::media::AcceptSet;

fuzz_target!(|lines: Vec<&str>| {
    let set = AcceptSet::parse(lines.iter().copied());
    let _ = set.allows("application/vnd.oci.image.manifest.v1+json");
    let _ = set.allows("application/vnd.docker.distribution.manifest.v2+json");
});
