//! Criterion micro-benchmarks of the OCI pieces on every request's path: verifying a digest
//! over content, parsing digests and references, and negotiating `Accept`.
//!
//! ```sh
//! cargo bench -p wharf-oci --bench hot_paths
//! ```

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use wharf_oci::media::AcceptSet;
use wharf_oci::{Algorithm, Digest, Reference, Verifier};

fn content(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// What a fill does for every byte it stores, and a manifest GET for every manifest it
/// verifies: hash, then compare with the digest asked for.
fn digest_verification(c: &mut Criterion) {
    let mut g = c.benchmark_group("digest_verification");
    for (algorithm, name) in [(Algorithm::Sha256, "sha256"), (Algorithm::Sha512, "sha512")] {
        for len in [4 << 10, 1 << 20] {
            let data = content(len);
            let mut v = Verifier::new(algorithm);
            v.update(&data);
            let want = v.finish();
            g.throughput(Throughput::Bytes(len as u64));
            g.bench_with_input(BenchmarkId::new(name, len), &data, |b, data| {
                b.iter(|| {
                    let mut v = want.verifier();
                    // As a fill sees it: in 64 KiB pieces.
                    for piece in black_box(data).chunks(64 << 10) {
                        v.update(piece);
                    }
                    assert!(v.finish() == want);
                });
            });
        }
    }
    g.finish();
}

fn parsing(c: &mut Criterion) {
    let digest = format!("sha256:{}", "3f".repeat(32));
    let mut g = c.benchmark_group("parse");
    g.bench_function("digest", |b| {
        b.iter(|| Digest::parse(black_box(&digest)).expect("valid"))
    });
    g.bench_function("reference_tag", |b| {
        b.iter(|| Reference::parse(black_box("8-slim-2024.06.01")).expect("valid"))
    });
    g.bench_function("reference_digest", |b| {
        b.iter(|| Reference::parse(black_box(&digest)).expect("valid"))
    });
    g.finish();
}

/// The `Accept` lines real clients send on a manifest GET, parsed and asked whether an OCI
/// index may be served.
fn accept_negotiation(c: &mut Criterion) {
    let podman: &[&str] = &[
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        "application/vnd.docker.distribution.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.index.v1+json",
    ];
    let containerd: &[&str] = &["application/vnd.docker.distribution.manifest.v2+json, \
         application/vnd.docker.distribution.manifest.list.v2+json, \
         application/vnd.oci.image.manifest.v1+json, \
         application/vnd.oci.image.index.v1+json, */*"];
    let docker: &[&str] = &[
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        "application/json",
    ];
    let mut g = c.benchmark_group("accept_negotiation");
    for (name, lines) in [
        ("podman", podman),
        ("containerd", containerd),
        ("docker", docker),
    ] {
        g.bench_with_input(BenchmarkId::from_parameter(name), lines, |b, lines| {
            b.iter(|| {
                let set = AcceptSet::parse(black_box(lines).iter().copied());
                assert!(set.allows("application/vnd.oci.image.index.v1+json"));
            });
        });
    }
    g.finish();
}

criterion_group!(benches, digest_verification, parsing, accept_negotiation);
criterion_main!(benches);
