//! Bare names hosted on their first push (`hosted.bare_names`): the Oracle Linux guide's
//! `podman push mirror:5000/ol7image:v1` on the embedded default configuration, where
//! `docker.io` is the default upstream for every name no prefix selects.
//!
//! ```text
//! a push (upload POST, manifest PUT) to a name that routes to the default upstream (step 4):
//!   the user may push it (rights.rs)             else 401 / 403 as any push
//!   the default upstream is asked once: GET tags/list?n=1, with wharf's credentials for it
//!     200                        it serves the name: 403 DENIED naming it, remembered a while
//!     404                        absent: the name becomes hosted, written to <hosted.dir>/bare-names
//!     401/403 for library/<x> on Docker Hub
//!                                absent: official images are public, Hub says 401 for a
//!                                repository that does not exist
//!     401/403 otherwise          maybe a private repository: 403 DENIED (wharf does not guess)
//!     unreachable, 5xx, 429      503 UNAVAILABLE, not remembered: the next push asks again
//!   no default upstream          nothing to shadow: hosted at once
//! from then on the name is hosted (routing step 3), for pulls too; a restart keeps it
//! ```
//!
//! So a bare name the upstream serves is never shadowed (no dependency confusion). One lock
//! serialises the questions: a client pushing layers in parallel asks the upstream once.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use wharf_oci::{ErrorCode, RepositoryName};

use super::Hosted;
use crate::Proxy;
use crate::error::ProxyError;
use crate::upstreams::Target;

/// How long "the upstream serves it" is remembered: a push retried at once does not ask again,
/// and a repository the upstream drops can be hosted later without a restart.
const SERVED_TTL: Duration = Duration::from_secs(3600);

/// The bare names that became hosted, and what the upstream answered for others.
pub(crate) struct BareNames {
    enabled: bool,
    file: PathBuf,
    claimed: RwLock<BTreeSet<String>>,
    /// name -> why it stays the upstream's.
    served: moka::sync::Cache<String, String>,
    asking: tokio::sync::Mutex<()>,
}

impl BareNames {
    /// The names claimed before, from `<root>/bare-names` (one per line).
    pub(crate) fn load(root: &Path, enabled: bool) -> Result<BareNames, String> {
        let file = root.join("bare-names");
        let claimed = match std::fs::read_to_string(&file) {
            Ok(text) => text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned)
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
            Err(e) => return Err(format!("reading {}: {e}", file.display())),
        };
        Ok(BareNames {
            enabled,
            file,
            claimed: RwLock::new(claimed),
            served: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(SERVED_TTL)
                .build(),
            asking: tokio::sync::Mutex::new(()),
        })
    }

    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    pub(crate) fn is_claimed(&self, name: &RepositoryName) -> bool {
        self.claimed
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(name.as_str())
    }

    /// Records `name` as hosted, on disk first (write, fsync, rename, fsync the directory), so
    /// that a claim that was answered survives a restart. The caller holds `asking` (claims
    /// one at a time); the file is written off the runtime's threads and the set swapped in
    /// after, so routing (`is_claimed`) never waits on a disk.
    async fn claim(&self, name: &RepositoryName) -> Result<(), ProxyError> {
        let mut next = self
            .claimed
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        next.insert(name.as_str().to_owned());
        let mut text =
            String::from("# bare names hosted on their first push (hosted.bare_names)\n");
        for n in &next {
            text.push_str(n);
            text.push('\n');
        }
        let file = self.file.clone();
        let written = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let tmp = file.with_extension("tmp");
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &file)?;
            if let Some(dir) = file.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r);
        written.map_err(|e| {
            ProxyError::oci(
                ErrorCode::Unknown,
                format!(
                    "cannot record {name} as hosted in {}: {e}",
                    self.file.display()
                ),
            )
        })?;
        *self.claimed.write().unwrap_or_else(PoisonError::into_inner) = next;
        Ok(())
    }
}

impl Proxy {
    /// Makes the bare name `name` hosted if the default upstream does not serve it; the
    /// caller may push it already.
    pub(crate) async fn claim_bare(
        &self,
        hosted: &Hosted,
        name: &RepositoryName,
    ) -> Result<(), ProxyError> {
        let bare = &hosted.bare;
        let _one_at_a_time = bare.asking.lock().await;
        if bare.is_claimed(name) {
            return Ok(());
        }
        if let Some(why) = bare.served.get(name.as_str()) {
            return Err(ProxyError::oci(ErrorCode::Denied, why));
        }
        if let Ok(target) = self.upstreams.select_default(name)
            && let Some(why) = served_by(&target, name).await?
        {
            bare.served.insert(name.as_str().to_owned(), why.clone());
            return Err(ProxyError::oci(ErrorCode::Denied, why));
        }
        bare.claim(name).await?;
        tracing::info!(repo = %name, "bare name hosted on its first push: the default upstream does not serve it");
        Ok(())
    }
}

/// Why `name` stays `target`'s (`Some`), or `None` when the upstream does not serve it.
async fn served_by(target: &Target, name: &RepositoryName) -> Result<Option<String>, ProxyError> {
    let up = &target.upstream;
    let repo = target.repo.as_str();
    let mirrored = |how: &str| {
        Some(format!(
            "{name} {how} upstream {} ({repo}), which wharf mirrors for bare names: a push \
             never shadows it; push to another name or a hosted repository (hosted.repositories)",
            up.name
        ))
    };
    match up.client.tags(repo, Some("n=1")).await {
        Ok(_) => Ok(mirrored("is served by")),
        Err(e) if e.is_not_found() => Ok(None),
        // The registry's own refusal (not a failed token fetch: wharf's credentials for the
        // upstream being wrong says nothing about the repository; that is the arm below).
        Err(wharf_upstream::Error::Unauthorized { .. } | wharf_upstream::Error::Denied { .. }) => {
            // Docker Hub answers 401 for a repository that does not exist, and every
            // library/ repository (its official images) is public.
            let official = up.library_prefix && name.components().count() == 1;
            Ok(if official {
                None
            } else {
                mirrored("may be a private repository of")
            })
        }
        Err(e) => Err(ProxyError::oci(
            ErrorCode::Unavailable,
            format!(
                "cannot tell whether upstream {} serves {repo}, so {name} is not hosted yet \
                 (a push never shadows an upstream's name): {e}",
                up.name
            ),
        )),
    }
}
