//! Signatures enforced at the mirror (`require_signature` on an upstream): what no other
//! mirror does, for the clients that cannot check signatures themselves (containerd, CRI-O
//! without a policy, Docker).
//!
//! ```text
//! manifest of an enforcing upstream, about to be served (by tag or by digest)
//!   verified for this (repository, digest, tag) within tag_ttl     -> served
//!   by digest, and named by a manifest verified in this repository -> served (an index's
//!                                                                     children; see below)
//!   else its signatures (signatures.rs: stored, lookaside, stale):
//!     one verifies with the key, is for this digest, and names this image
//!       (containers/image's matchRepoDigestOrExact: by tag, exactly that tag; by digest,
//!        the repository)                                           -> served; it and what it
//!                                                                     names are verified
//!     none                                                         -> 403 DENIED saying why
//! blob of an enforcing upstream
//!   named by a manifest verified in this repository                -> served as any blob
//!   else                                                           -> 403 DENIED
//! ```
//!
//! A refused manifest is never served, and neither is anything only it names: the blob rule
//! holds whether or not the content is stored. What was verified is kept in memory (bounded);
//! after a restart a pull verifies again from its first manifest request, from the stored
//! signatures if the signature store is away.

use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;
use wharf_oci::{Digest, ErrorCode};

use crate::Proxy;
use crate::error::ProxyError;
use crate::signatures::Source;
use crate::upstreams::Target;

/// An upstream's `require_signature`.
pub struct SignaturePolicy {
    /// The keys whose signatures are accepted.
    pub keyring: wharf_sign::Keyring,
    /// Where they came from, for messages.
    pub key_file: PathBuf,
    /// The registry host the signatures name images by (`container-registry.oracle.com`);
    /// the upstream's `registry` unless configured.
    pub identity: String,
}

/// How many (repository, digest) pairs are remembered as verified.
const VERIFIED_KEPT: u64 = 1_000_000;
/// How long a verified pair stays remembered without being asked for.
const VERIFIED_IDLE: Duration = Duration::from_secs(24 * 3600);

/// (upstream, repository, digest)
type Pair = (String, String, Digest);
/// (upstream, repository, digest, tag or "")
type Decision = (String, String, Digest, String);

/// What passed the policy.
pub(crate) struct Verified {
    /// Content verified in a repository: signed manifests and everything they name.
    pairs: moka::sync::Cache<Pair, ()>,
    /// Signed (repository, digest, tag) answers, and when (each holds for the upstream's
    /// `tag_ttl`; after that the signatures are looked at again).
    decisions: moka::sync::Cache<Decision, Instant>,
}

impl Default for Verified {
    fn default() -> Self {
        Verified {
            pairs: moka::sync::Cache::builder()
                .max_capacity(VERIFIED_KEPT)
                .time_to_idle(VERIFIED_IDLE)
                .build(),
            decisions: moka::sync::Cache::builder()
                .max_capacity(VERIFIED_KEPT)
                .build(),
        }
    }
}

fn pair(target: &Target, digest: &Digest) -> Pair {
    (
        target.upstream.name.clone(),
        target.repo.as_str().to_owned(),
        digest.clone(),
    )
}

impl Proxy {
    /// Whether the manifest `digest` (`media_type`, `bytes`), asked for through `target` by
    /// `tag` (or by digest), may be served under `policy`; records it and what it names when
    /// it may. The error is the answer to give instead.
    pub(crate) async fn enforce(
        &self,
        target: &Target,
        policy: &SignaturePolicy,
        digest: &Digest,
        tag: Option<&str>,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<(), ProxyError> {
        let up = &target.upstream;
        let decision = (
            up.name.clone(),
            target.repo.as_str().to_owned(),
            digest.clone(),
            tag.unwrap_or_default().to_owned(),
        );
        if self
            .verified
            .decisions
            .get(&decision)
            .is_some_and(|at| at.elapsed() < up.tag_ttl)
        {
            return Ok(());
        }
        if tag.is_none() && self.verified.pairs.contains_key(&pair(target, digest)) {
            // A child of a verified index: what it names is verified with it.
            self.record_verified(target, digest, media_type, bytes);
            return Ok(());
        }
        let image = format!("{}/{}", policy.identity, target.repo.as_str());
        let sigs = self.signature_list(target, digest).await;
        let mut refusals = Vec::new();
        for sig in &sigs.list {
            match wharf_sign::verify(&policy.keyring, sig)
                .and_then(|signed| signed.names(digest, &image, tag))
            {
                Ok(()) => {
                    self.verified.decisions.insert(decision, Instant::now());
                    self.record_verified(target, digest, media_type, bytes);
                    return Ok(());
                }
                Err(r) => refusals.push(r),
            }
        }
        let shown = match tag {
            Some(t) => format!("{image}:{t}"),
            None => format!("{image}@{digest}"),
        };
        let (reason, why) = if !refusals.is_empty() {
            let whys: Vec<String> = refusals.iter().map(ToString::to_string).collect();
            (
                "invalid",
                format!("no signature verifies: {}", whys.join("; ")),
            )
        } else if sigs.source == Source::None && up.lookaside.is_some() {
            (
                "unavailable",
                "its signatures could not be fetched and none are stored".to_owned(),
            )
        } else {
            ("unsigned", "it has no signatures".to_owned())
        };
        self.metrics
            .policy_refusals
            .with_label_values(&[up.name.as_str(), reason])
            .inc();
        let kind = format!("policy/{}/{reason}", up.name);
        if let Some(suppressed) = self.warnings.admit(&kind) {
            tracing::warn!(upstream = %up.name, image = %shown, %digest, reason, why, suppressed,
                "manifest refused: require_signature");
        }
        Err(ProxyError::oci(
            ErrorCode::Denied,
            format!(
                "upstream {} requires images signed with the key in {}: {shown} is refused, {why}",
                up.name,
                policy.key_file.display()
            ),
        ))
    }

    /// Whether content `digest` of an enforcing upstream may be served through `target`:
    /// only what a verified manifest of that repository names.
    pub(crate) fn check_verified_blob(
        &self,
        target: &Target,
        policy: &SignaturePolicy,
        digest: &Digest,
    ) -> Result<(), ProxyError> {
        if self.verified.pairs.contains_key(&pair(target, digest)) {
            return Ok(());
        }
        let up = &target.upstream;
        self.metrics
            .policy_refusals
            .with_label_values(&[up.name.as_str(), "unverified_blob"])
            .inc();
        Err(ProxyError::oci(
            ErrorCode::Denied,
            format!(
                "upstream {} requires images signed with the key in {}: {digest} is not named by a verified manifest of {}",
                up.name,
                policy.key_file.display(),
                target.repo.as_str()
            ),
        ))
    }

    /// Records a verified manifest and what it names (children, config, layers) as verified
    /// in `target`'s repository.
    fn record_verified(&self, target: &Target, digest: &Digest, media_type: &str, bytes: &[u8]) {
        self.verified.pairs.insert(pair(target, digest), ());
        match wharf_oci::manifest::parse(media_type, bytes) {
            Ok(wharf_oci::manifest::Manifest::Index(children)) => {
                for child in &children {
                    self.verified.pairs.insert(pair(target, &child.digest), ());
                }
            }
            Ok(wharf_oci::manifest::Manifest::Image { blobs, .. }) => {
                for blob in &blobs {
                    self.verified.pairs.insert(pair(target, &blob.digest), ());
                }
            }
            Err(_) => {}
        }
    }
}
