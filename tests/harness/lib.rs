//! The end-to-end harness: real upstream registries, real clients, the real wharf binary.
//!
//! Everything runs on 127.0.0.1 with ports picked by the kernel, in temporary directories;
//! nothing under `/etc` is read for configuration or written. Every wait is bounded and every
//! process a test starts is killed when its guard is dropped.
//!
//! - [`registry::Upstream`]: CNCF Distribution (`docker-registry`) on a free port, plain HTTP or
//!   HTTPS with htpasswd Basic or Bearer-token auth, each on its own hardlinked copy of a storage
//!   holding the test images, with a parsed access log ([`access_log`]) and marks to count only
//!   the requests after a point.
//! - [`token::TokenIssuer`]: a Docker token endpoint (RS256 JWT, `x5c` header) written in Rust.
//! - [`mod@images`]: deterministic OCI / Docker images ([`layers`]), pushed once ([`push`],
//!   [`template`]).
//! - [`wharf::Wharf`]: the binary under test, configured through [`wharf_config`].
//! - [`herd`]: many streaming clients of one URL released together. (The fake upstream that
//!   holds, breaks or corrupts a blob on cue, and the certificates, are `wharf_testkit`'s.)
//! - [`http::Http`]: direct requests; [`clients`]: skopeo, podman, containerd's `ctr` and Docker;
//!   [`expect`]: assertions on OCI errors and on what reached the upstream.

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

pub mod access_log;
pub mod bench;
pub mod clients;
pub mod expect;
pub mod fleet;
pub mod herd;
pub mod http;
pub mod images;
pub mod layers;
pub mod memory;
pub mod process;
pub mod push;
pub mod registry;
pub mod signing;
pub mod template;
pub mod token;
mod token_server;
pub mod util;
pub mod wharf;
pub mod wharf_config;

pub use access_log::{Kind, Req};
pub use clients::{Containerd, Docker, Podman, Skopeo};
pub use http::{Http, Resp};
pub use images::{Descriptor, Image, ImageSet, IndexImage};
pub use registry::{Mark, Upstream};
pub use template::images;
pub use token::{TokenIssuer, TokenOptions};
pub use wharf::{UpstreamCfg, Wharf};

/// The registry name the clients believe they pull from; only the mirror can serve it.
pub const REGISTRY_NAME: &str = "container-registry.oracle.com";
