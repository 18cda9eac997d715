//! Cross-repository mounts into a hosted repository: `POST .../blobs/uploads/?mount=<d>&from=<repo>`.
//!
//! `from` is routed as any name is (upstream prefixes, hosted patterns, default upstream):
//!
//! ```text
//! from is hosted and holds d              -> d recorded for the target repository: 201
//! from is an upstream's repository known
//!   to hold d, and the cache has d        -> d copied from the cache into the hosted store
//!                                            (verified as any upload): 201
//! anything else (no from, not held, the
//!   user may not pull from, ...)          -> an ordinary upload session: 202, as the spec says
//! ```
//!
//! Mounting reads `from`, so the user needs pull on it, as in Distribution (its `authorized`
//! adds a pull access record for `from`). Distribution refuses the whole request then; here it
//! becomes the spec's fallback, an ordinary upload, which tells nothing about `from` and lets
//! the client upload the bytes it has. A mount from a cached repository copies, since cached
//! content may be evicted and hosted content never is.

use wharf_cache::file_chunks;
use wharf_oci::{Digest, RepositoryName};

use super::upload::store_error;
use super::{Hosted, rights};
use crate::Proxy;
use crate::auth::Caller;
use crate::error::ProxyError;
use crate::scope;

impl Proxy {
    /// Mounts `d` into `repo` from `from`; whether it was (else the caller starts an upload).
    pub(super) async fn mount(
        &self,
        hosted: &Hosted,
        repo: &RepositoryName,
        d: &Digest,
        from: Option<&str>,
        user: &str,
    ) -> Result<bool, ProxyError> {
        if hosted.holds(repo, d) {
            return Ok(true);
        }
        let Some(from) = from.and_then(|f| RepositoryName::parse(f).ok()) else {
            return Ok(false);
        };
        let named = match self.upstreams.select_named(None, None, &from) {
            Ok(named) => named,
            Err(_) => return Ok(false),
        };
        let target = match named {
            Some(target) => target,
            None if hosted.matches(&from) => {
                // Checked and scoped with no collection between (gc.rs).
                let pin = hosted.gc.pin().await;
                let caller = Caller::User(user.to_owned());
                if rights::may_pull(self.auth(), &caller, &from).is_err() || !hosted.holds(&from, d)
                {
                    return Ok(false);
                }
                pin.touch(d);
                hosted.store.add_scope(Hosted::key(repo, d));
                return Ok(true);
            }
            None => match self.upstreams.select_default(&from) {
                Ok(target) => target,
                Err(_) => return Ok(false),
            },
        };
        // Mirrored content: every user may pull it (access.rs), and only users push.
        if !self.store.in_scope(scope::key(&target, d)) {
            return Ok(false);
        }
        // An upstream under require_signature lends only what a verified manifest names
        // (policy.rs): a refused manifest and its blobs are stored, never served, and a mount
        // must not serve them either.
        if let Some(policy) = &target.upstream.policy
            && self.check_verified_blob(&target, policy, d).is_err()
        {
            return Ok(false);
        }
        let Some((file, size)) = self.store.open_blob(d).await? else {
            return Ok(false);
        };
        hosted.check_quota(size)?;
        let mut upload = hosted.store.begin_upload().await.map_err(store_error)?;
        let chunks = file_chunks(file, 0, size, wharf_cache::CHUNK as usize);
        if let Err(e) = upload.append(chunks, Some(size)).await {
            upload.discard().await;
            tracing::warn!(digest = %d, error = %e, "mount from the cache failed; the client uploads instead");
            return Ok(false);
        }
        hosted.finish(upload, repo, d).await?;
        tracing::info!(digest = %d, upstream = %target.upstream.name, from = %from, to = %repo,
            "blob mounted from the cache into a hosted repository");
        Ok(true)
    }
}
