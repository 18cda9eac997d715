//! Assertions the end-to-end tests share: OCI error bodies, and what reached the upstream.

use std::collections::BTreeMap;

use crate::access_log::{Counts, Kind, Req};
use crate::http::Resp;
use crate::images::Descriptor;
use crate::registry::{Mark, Upstream};

/// `resp` has one of `statuses` and an OCI error body whose first code is `code`.
pub fn oci_error(resp: &Resp, statuses: &[u16], code: &str, what: &str) {
    assert!(
        statuses.contains(&resp.status),
        "{what}: want status in {statuses:?}, got {}",
        resp.describe()
    );
    let codes = resp.error_codes();
    assert_eq!(
        codes.first().map(String::as_str),
        Some(code),
        "{what}: want OCI error code {code}, got {}",
        resp.describe()
    );
}

/// Some error message of `resp` names the upstream (its configured name or its host:port).
pub fn message_names_upstream(resp: &Resp, name: &str, up: &Upstream, what: &str) {
    let host_port = up.host_port();
    let named = resp
        .errors()
        .iter()
        .any(|(_, m)| m.contains(name) || m.contains(&host_port));
    assert!(
        named,
        "{what}: the error message should name the upstream ({name:?} or {host_port}): {}",
        resp.describe()
    );
}

/// The requests after `mark`, printed with a label (the numbers we quote).
pub fn upstream_requests(up: &Upstream, mark: Mark, label: &str) -> Vec<Req> {
    let reqs = up.since(mark);
    eprintln!("[upstream] {label}: {}", Counts::of(&reqs));
    reqs
}

/// A warm pull: nothing but tag revalidation (HEAD by tag) and `/v2/` pings reached the
/// upstream — no blob GET, no manifest GET by digest (nor by tag).
pub fn served_from_cache(reqs: &[Req], what: &str) {
    let blob_gets = reqs.iter().filter(|r| r.is_blob_get()).count();
    let by_digest = reqs
        .iter()
        .filter(|r| r.is_manifest_get_by_digest())
        .count();
    assert_eq!(
        blob_gets, 0,
        "{what}: blob GETs reached the upstream: {reqs:#?}"
    );
    assert_eq!(
        by_digest, 0,
        "{what}: manifest GETs by digest reached the upstream: {reqs:#?}"
    );
    let other: Vec<&Req> = reqs
        .iter()
        .filter(|r| !(r.is("HEAD", Kind::ManifestByTag) || r.kind() == Kind::Ping))
        .collect();
    assert!(
        other.is_empty(),
        "{what}: only tag HEADs (and pings) may reach the upstream: {other:#?}"
    );
}

/// Blob GETs per digest among `reqs`.
pub fn blob_gets_by_digest(reqs: &[Req]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for r in reqs.iter().filter(|r| r.is_blob_get()) {
        let digest = r.path_only().rsplit('/').next().unwrap_or("").to_owned();
        *m.entry(digest).or_default() += 1;
    }
    m
}

/// A cold pull fetched each of `blobs` from the upstream exactly once.
pub fn each_blob_fetched_once(reqs: &[Req], blobs: &[&Descriptor], what: &str) {
    let got = blob_gets_by_digest(reqs);
    for b in blobs {
        assert_eq!(
            got.get(&b.digest).copied().unwrap_or(0),
            1,
            "{what}: blob {} ({} B) should be fetched upstream exactly once; blob GETs: {got:#?}",
            b.digest,
            b.size
        );
    }
}
