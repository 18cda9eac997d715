//! Which token realms may see the upstream's credentials.
//!
//! The realm URL comes from the upstream's `WWW-Authenticate` header, so whoever controls a
//! response (or a redirect target) chooses where wharf sends its Basic credentials. Sending them to
//! any realm is how CVE-2026-33540 leaked registry passwords. Credentials go only to the upstream's
//! own hosts (its `url` and every one of its `mirrors`), a host sharing a registrable domain with
//! one of them (`auth.docker.io` for `registry-1.docker.io`), or a host the operator allowed; any
//! other realm gets an anonymous token request.

use std::net::IpAddr;

use http::Uri;

/// Second-level labels under which unrelated parties register names (`example.co.uk`): two equal
/// trailing labels prove nothing there. A stand-in for the public suffix list, erring towards
/// anonymity: a realm this misjudges gets no credentials, never the wrong ones.
const SHARED_SECOND_LEVEL: &[&str] = &[
    "ac", "co", "com", "edu", "gob", "go", "gov", "ltd", "mil", "ne", "net", "nic", "or", "org",
    "plc",
];

#[derive(Debug, Clone)]
pub(crate) struct RealmPolicy {
    upstream_hosts: Vec<String>,
    /// Any of the upstream's URLs is https: its password must not cross the network in clear.
    upstream_https: bool,
    allowed: Vec<String>,
}

impl RealmPolicy {
    /// The policy for an upstream reached at `urls` (its `url` and its `mirrors`).
    pub(crate) fn new<'a>(urls: impl IntoIterator<Item = &'a Uri>) -> Self {
        let urls: Vec<&Uri> = urls.into_iter().collect();
        RealmPolicy {
            upstream_hosts: urls
                .iter()
                .map(|u| normalize(u.host().unwrap_or_default()))
                .collect(),
            upstream_https: urls.iter().any(|u| u.scheme_str() == Some("https")),
            allowed: Vec::new(),
        }
    }

    pub(crate) fn allow(&mut self, hosts: Vec<String>) {
        self.allowed = hosts.iter().map(|h| normalize(h)).collect();
    }

    /// May the configured credentials go to this (already http(s)-checked) realm?
    pub(crate) fn may_send_credentials(&self, realm: &Uri) -> bool {
        let host = normalize(realm.host().unwrap_or_default());
        if host.is_empty() {
            return false;
        }
        // An https upstream's password must not cross the network in clear text.
        if self.upstream_https && realm.scheme_str() != Some("https") {
            return false;
        }
        self.allowed.contains(&host)
            || self
                .upstream_hosts
                .iter()
                .any(|u| host == *u || same_registrable_domain(&host, u))
    }
}

/// Lowercase, without a trailing dot or IPv6 brackets.
fn normalize(host: &str) -> String {
    host.trim_end_matches('.')
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase()
}

fn is_name(host: &str) -> bool {
    host.parse::<IpAddr>().is_err() && host != "localhost" && !host.ends_with(".localhost")
}

/// Approximates "same registrable domain" as "same last two labels" (three under a shared
/// second-level label such as `co.uk`). IP addresses and localhost only ever match themselves.
fn same_registrable_domain(a: &str, b: &str) -> bool {
    if !is_name(a) || !is_name(b) {
        return false;
    }
    let labels_a: Vec<&str> = a.rsplit('.').collect();
    let labels_b: Vec<&str> = b.rsplit('.').collect();
    let shared_sld =
        labels_a.len() >= 2 && labels_a[0].len() == 2 && SHARED_SECOND_LEVEL.contains(&labels_a[1]);
    let needed = if shared_sld { 3 } else { 2 };
    labels_a.len() >= needed
        && labels_b.len() >= needed
        && labels_a[..needed] == labels_b[..needed]
        && labels_a[..needed].iter().all(|l| !l.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(upstream: &str) -> RealmPolicy {
        RealmPolicy::new([&upstream.parse().expect("test URL")])
    }

    fn may(p: &RealmPolicy, realm: &str) -> bool {
        p.may_send_credentials(&realm.parse().expect("test URL"))
    }

    #[test]
    fn same_host_and_registrable_domain() {
        let p = policy("https://registry-1.docker.io");
        assert!(may(&p, "https://auth.docker.io/token"));
        assert!(may(&p, "https://REGISTRY-1.docker.io./token"));
        assert!(!may(&p, "https://auth.docker.com/token"));
        assert!(!may(&p, "https://evil.example/token"));
        assert!(!may(&p, "http://auth.docker.io/token"), "downgrade to http");
        let p = policy("https://quay.io");
        assert!(may(&p, "https://quay.io/v2/auth"));
    }

    #[test]
    fn shared_second_level_needs_three_labels() {
        let p = policy("https://registry.example.co.uk");
        assert!(may(&p, "https://auth.example.co.uk/token"));
        assert!(!may(&p, "https://auth.attacker.co.uk/token"));
    }

    #[test]
    fn ips_and_localhost_match_only_themselves() {
        let p = policy("http://127.0.0.1:5000");
        assert!(may(&p, "http://127.0.0.1:9999/token"));
        assert!(!may(&p, "http://localhost:9999/token"));
        assert!(!may(&p, "http://127.0.0.2/token"));
        let p = policy("http://[::1]:5000");
        assert!(may(&p, "http://[::1]:1/token"));
        let p = policy("http://localhost:5000");
        assert!(!may(&p, "http://127.0.0.1/token"));
        assert!(!may(&p, "http://a.localhost/token"));
    }

    #[test]
    fn allow_list() {
        let mut p = policy("https://registry.example.com");
        assert!(!may(&p, "https://sso.example.net/token"));
        p.allow(vec!["SSO.example.net".into()]);
        assert!(may(&p, "https://sso.example.net/token"));
    }

    #[test]
    fn every_mirror_host_counts_as_the_upstreams_own() {
        let urls: Vec<Uri> = [
            "https://container-registry.oracle.com",
            "http://10.0.0.5:5000",
        ]
        .iter()
        .map(|u| u.parse().expect("test URL"))
        .collect();
        let p = RealmPolicy::new(&urls);
        assert!(may(&p, "https://auth.oracle.com/token"));
        assert!(
            !may(&p, "http://10.0.0.5:5000/token"),
            "an https url: no clear text"
        );
        assert!(may(&p, "https://10.0.0.5/token"));
        assert!(!may(&p, "https://evil.example/token"));
    }
}
