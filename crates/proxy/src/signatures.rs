//! Simple-signing signatures through wharf: `GET /extensions/v2/<name>/signatures/<digest>`.
//!
//! containers/image (podman, skopeo, buildah, CRI-O) looks a mirror's signatures up under the
//! mirror's own name: with a `registries.d` lookaside for the mirror host if there is one, and
//! first of all through this API extension when the registry's `/v2/` answers
//! `X-Registry-Supports-Signatures: 1` (`detectPropertiesHelper` in its
//! `docker/docker_client.go`; `GetSignaturesWithFormat` in `docker/docker_image_src.go` asks the
//! extension before any lookaside). The extension path carries the repository as the client
//! named it on the mirror (`oracle/os/oraclelinux`), so it is routed as every other request
//! is, prefix and all, and works for every upstream with nothing but the `registries.conf`
//! drop-in `wharf client-config podman` writes.
//!
//! ```text
//! signatures of (upstream, repository, digest)
//!   upstream has no lookaside              -> none (an empty list: the image is unsigned here)
//!   the repository is not known to hold    -> none, the lookaside not asked (a client asking
//!   that manifest (scope.rs)                  for random digests costs nothing)
//!   stored list fetched within tag_ttl     -> the stored list
//!   else signature-1, -2, ... from the lookaside until its first 404
//!     answered                             -> stored (replacing the old list), served
//!     failed                               -> the stored list, stale; none if nothing stored;
//!                                             the lookaside left alone for a while (back-off)
//! ```
//!
//! The answer is `{"signatures": [{"schemaVersion": 2, "type": "atomic", "name", "content"}]}`
//! (`extensionSignatureList` in containers/image; `content` is the signature's bytes in
//! base64). A list that cannot be had is answered empty, not as an error: a client without a
//! signature policy must still pull, and one with a `signedBy` policy refuses the image
//! ("no signature exists") as it would without wharf; the log and
//! `wharf_signature_fetches_total{result="failed"}` say why.

use base64::Engine as _;
use bytes::Bytes;
use http::Response;
use sha2::{Digest as _, Sha256};
use wharf_cache::{MAX_SIGNATURES, SignatureKey, SignatureList};
use wharf_oci::Digest;

use crate::Proxy;
use crate::body::{self, Body};
use crate::error::ProxyError;
use crate::upstreams::Target;

/// Where a signature list came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// Stored, fetched within the upstream's `tag_ttl`.
    Store,
    /// Fetched from the lookaside just now.
    Lookaside,
    /// Stored, older than `tag_ttl`; the lookaside failed.
    Stale,
    /// The upstream has no lookaside, or it failed and nothing was stored.
    None,
}

impl Source {
    fn label(self) -> &'static str {
        match self {
            Source::Store => "store",
            Source::Lookaside => "lookaside",
            Source::Stale => "stale",
            Source::None => "none",
        }
    }
}

/// The signatures of one manifest in one repository.
pub(crate) struct Signatures {
    pub(crate) list: Vec<Bytes>,
    pub(crate) source: Source,
}

impl Proxy {
    /// `GET`/`HEAD /extensions/v2/<name>/signatures/<digest>`.
    pub(crate) async fn signatures(
        &self,
        target: &Target,
        digest: &Digest,
        head: bool,
    ) -> Result<Response<Body>, ProxyError> {
        let sigs = self.signature_list(target, digest).await;
        tracing::debug!(%digest, count = sigs.list.len(), source = sigs.source.label(), "signatures");
        Ok(render(digest, &sigs.list, head))
    }

    /// The signatures of `digest` in `target`'s repository: see the module docs.
    pub(crate) async fn signature_list(&self, target: &Target, digest: &Digest) -> Signatures {
        let up = &target.upstream;
        let answer = |list: Vec<Bytes>, source: Source| {
            self.metrics
                .signature_lists
                .with_label_values(&[up.name.as_str(), source.label()])
                .inc();
            Signatures { list, source }
        };
        let Some(lookaside) = &up.lookaside else {
            return answer(Vec::new(), Source::None);
        };
        // Only the signatures of a manifest this repository is known to hold (wharf served it
        // through it, scope.rs) are asked for and kept: any other digest would cost a request
        // to the signature store and a file here for nothing, and a client could make many.
        if !self.store.in_scope(crate::scope::key(target, digest)) {
            return answer(Vec::new(), Source::None);
        }
        let repo = target.repo.as_str();
        let key = SignatureKey {
            upstream: &up.name,
            repository: repo,
            digest,
        };
        let stored = match self.store.get_signatures(key).await {
            Ok(stored) => stored,
            Err(e) => {
                tracing::warn!(upstream = %up.name, repo, %digest, error = %e,
                    "cannot read the stored signature list; asking the lookaside");
                None
            }
        };
        if let Some(s) = &stored
            && s.age() < up.tag_ttl
        {
            return answer(s.signatures.clone(), Source::Store);
        }
        if let Some(left) = lookaside.backoff.remaining() {
            tracing::debug!(upstream = %up.name, ?left, "the signature store failed just now; not asked");
            return match stored {
                Some(s) => answer(s.signatures, Source::Stale),
                None => answer(Vec::new(), Source::None),
            };
        }
        let fetched = fetch(&lookaside.client, repo, digest).await;
        let result = match &fetched {
            Ok(list) if list.is_empty() => "none",
            Ok(_) => "found",
            Err(_) => "failed",
        };
        self.metrics
            .signature_fetches
            .with_label_values(&[up.name.as_str(), result])
            .inc();
        match fetched {
            Ok(list) => {
                let record = SignatureList {
                    signatures: list,
                    fetched_at: std::time::SystemTime::now(),
                };
                if let Err(e) = self.store.put_signatures(key, &record).await {
                    tracing::warn!(upstream = %up.name, repo, %digest, error = %e,
                        "cannot store the signature list; serving it unstored");
                }
                answer(record.signatures, Source::Lookaside)
            }
            Err(e) => {
                if !lookaside.backoff.trip_for(&e) {
                    lookaside.backoff.trip(LOOKASIDE_BACKOFF);
                }
                let kind = format!("lookaside/{}", up.name);
                if let Some(suppressed) = self.warnings.admit(&kind) {
                    tracing::warn!(upstream = %up.name, repo, %digest, error = %e, suppressed,
                        stored = stored.is_some(),
                        "the signature store failed; serving the stored signatures, if any");
                }
                match stored {
                    Some(s) => answer(s.signatures, Source::Stale),
                    None => answer(Vec::new(), Source::None),
                }
            }
        }
    }
}

/// The extension's answer: `{"signatures": [{"schemaVersion": 2, "type": "atomic", "name",
/// "content"}]}` (empty for a `HEAD`, with the length of the `GET`).
pub(crate) fn render(digest: &Digest, list: &[Bytes], head: bool) -> Response<Body> {
    let entries: Vec<serde_json::Value> = list
        .iter()
        .map(|s| {
            serde_json::json!({
                "schemaVersion": 2,
                "type": "atomic",
                "name": signature_name(digest, s),
                "content": base64::engine::general_purpose::STANDARD.encode(s),
            })
        })
        .collect();
    let json = serde_json::json!({ "signatures": entries }).to_string();
    body::document(json, "application/json", head)
}

/// How long a signature store that failed is left alone when its failure has no back-off of
/// its own (a `Retry-After`, a connection refused): stored lists are served meanwhile, so a
/// site cut off from it does not wait for a timeout on every pull.
const LOOKASIDE_BACKOFF: std::time::Duration = std::time::Duration::from_secs(10);

/// `signature-1`, `-2`, ... until the first 404 (at most [`MAX_SIGNATURES`]; more is the
/// store's error, as containers/image judges it).
async fn fetch(
    lookaside: &wharf_upstream::Lookaside,
    repo: &str,
    digest: &Digest,
) -> Result<Vec<Bytes>, wharf_upstream::Error> {
    let mut list = Vec::new();
    for index in 0..MAX_SIGNATURES {
        match lookaside.signature(repo, digest, index).await? {
            Some(sig) => list.push(sig),
            None => return Ok(list),
        }
    }
    tracing::warn!(repo, %digest, "the signature store lists more than {MAX_SIGNATURES} signatures; keeping the first {MAX_SIGNATURES}");
    Ok(list)
}

/// A stable name for a signature in the extension's answer: the manifest digest, `@`, and
/// 32 hex digits of the signature's own hash (the shape OpenShift's registry gives names;
/// containers/image does not read it).
fn signature_name(digest: &Digest, signature: &[u8]) -> String {
    let hash = Sha256::digest(signature);
    let hex: String = hash[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{digest}@{hex}")
}
