//! Criterion micro-benchmark of routing, on every request's path: the request path parsed (name,
//! reference or digest validated) and the upstream chosen, for the ways clients address a
//! mirror (a path prefix, containerd's `?ns=`, a mount, the default upstream).
//!
//! ```sh
//! cargo bench -p wharf-proxy --bench hot_paths
//! ```

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use wharf_proxy::route;
use wharf_proxy::{Upstream, Upstreams};

fn upstream(name: &str, prefixes: &[&str], default: bool) -> Upstream {
    let up =
        Upstream::anonymous(name, &format!("https://{name}"), prefixes, default).expect("upstream");
    Upstream {
        library_prefix: name == "docker.io",
        ..up
    }
}

fn routing(c: &mut Criterion) {
    let upstreams = Upstreams::new(vec![
        // As the config gives them: the prefix and the registry's host both name it.
        upstream(
            "container-registry.oracle.com",
            &["oracle", "container-registry.oracle.com"],
            false,
        ),
        upstream("quay.io", &["quay", "quay.io"], false),
        upstream("docker.io", &["docker", "docker.io"], true),
    ]);
    let digest = format!("sha256:{}", "3f".repeat(32));
    let cases = [
        (
            "prefix_tag",
            "/v2/oracle/os/oraclelinux/manifests/8-slim".to_owned(),
            None,
        ),
        (
            "prefix_blob",
            format!("/v2/quay/prometheus/node-exporter/blobs/{digest}"),
            None,
        ),
        (
            "ns_blob",
            format!("/v2/prometheus/node-exporter/blobs/{digest}"),
            Some("ns=quay.io"),
        ),
        (
            "mount_tag",
            "/quay/v2/coreos/etcd/manifests/v3.5.0".to_owned(),
            None,
        ),
        (
            "default_tag",
            "/v2/library/debian/manifests/bookworm".to_owned(),
            None,
        ),
    ];
    let mut g = c.benchmark_group("route");
    for (name, path, query) in &cases {
        g.bench_with_input(BenchmarkId::from_parameter(name), path, |b, path| {
            b.iter(|| {
                let parsed = route::parse_path(black_box(path)).expect("a registry path");
                let ns = route::query_param(*query, "ns");
                let repo = parsed.resource.name().expect("a repository");
                let target = upstreams
                    .select(ns.as_deref(), parsed.mount.as_deref(), repo)
                    .expect("an upstream");
                black_box(target);
            });
        });
    }
    g.finish();
}

criterion_group!(benches, routing);
criterion_main!(benches);
