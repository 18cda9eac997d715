//! Test support for wharf's integration and end-to-end tests: one fake registry and one PKI.
//!
//! - [`FakeRegistry`]: a small OCI registry on `127.0.0.1:0`, on its own runtime (so paused-time
//!   tests, blocking tests and async tests can all use it), built from what a test needs:
//!   manifests and blobs it serves like a registry, routes and a fallback answered by closures,
//!   a gate in front of them (auth), latency, faults on blob bodies (hold, break, corrupt,
//!   `Range`), scripted answers (`503`, `429` + `Retry-After`, a hang), every request recorded,
//!   and counters of requests in flight. It stops when dropped.
//! - [`pki`]: certificates made with the `openssl` CLI: a root and an intermediate CA issuing
//!   leaf certificates, a self-signed server certificate, a token signing key.
//!
//! A fake registry is for tests where the protocol flow or a fault is the point; where it is
//! not, tests use a real registry on loopback (the e2e harness's `Upstream`).

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

mod body;
mod content;
pub mod disk;
pub mod fault;
pub mod garage;
pub mod pki;
mod registry;
mod reply;
mod seen;
mod serve;

pub use fault::Fault;
pub use pki::{Pki, SigningKey, TlsFiles};
pub use registry::{Builder, FakeRegistry};
pub use reply::Reply;
pub use seen::Seen;

/// `sha256:<hex>` of `bytes`: how the fake names what it serves.
pub fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// OCI media types the fake uses for the images it builds.
pub mod media {
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
}
