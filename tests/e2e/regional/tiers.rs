//! A regional wharf and a site wharf in front of it, as the README's "Regional tier" section
//! configures them: the region mirrors the registry under two prefixes, the site's two upstreams
//! are the region's URLs with those prefixes as paths.

use wharf_e2e::{REGISTRY_NAME, Upstream, UpstreamCfg, Wharf};

/// The two tiers over one real registry.
pub(crate) struct Tiers {
    pub(crate) registry: Upstream,
    pub(crate) region: Wharf,
    pub(crate) site: Wharf,
}

impl Tiers {
    pub(crate) fn start() -> Tiers {
        let registry = Upstream::plain();
        let region = Wharf::builder()
            .upstream(UpstreamCfg::new("oracle", &registry.url()).prefixes(&["oracle"]))
            .upstream(UpstreamCfg::new("ol", &registry.url()).prefixes(&["ol"]))
            .start();
        let site = Wharf::builder()
            .upstream(
                UpstreamCfg::new("regional", &format!("{}/oracle", region.url()))
                    .prefixes(&[REGISTRY_NAME, "oracle"])
                    .default(true),
            )
            .upstream(
                UpstreamCfg::new("regional-ol", &format!("{}/ol", region.url())).prefixes(&["ol"]),
            )
            // A prefix the region does not have: its NAME_UNKNOWN must reach the client.
            .upstream(
                UpstreamCfg::new("regional-quay", &format!("{}/quay", region.url()))
                    .prefixes(&["quay"]),
            )
            .start();
        Tiers {
            registry,
            region,
            site,
        }
    }
}

/// One request a wharf answered, from its access log (`wharf::access` lines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Access {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) status: u16,
}

/// The access lines of `wharf` after byte offset `from` of its log (the log settled first, so
/// a line that is absent was not written).
pub(crate) fn access_since(wharf: &Wharf, from: usize) -> Vec<Access> {
    let log = wharf.settled_log();
    log.get(from..)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("wharf::access"))
        .filter_map(|l| {
            Some(Access {
                method: field(l, "method")?,
                path: field(l, "path")?,
                status: field(l, "status")?.parse().ok()?,
            })
        })
        .collect()
}

/// A mark in `wharf`'s log for [`access_since`].
pub(crate) fn log_mark(wharf: &Wharf) -> usize {
    wharf.settled_log().len()
}

/// `key=value` or `key="value"` from a text log line.
fn field(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!(" {key}="))? + key.len() + 2;
    let rest = &line[start..];
    if let Some(quoted) = rest.strip_prefix('"') {
        return quoted.split('"').next().map(str::to_owned);
    }
    rest.split_whitespace().next().map(str::to_owned)
}
