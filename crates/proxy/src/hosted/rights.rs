//! Who may pull, push and delete in hosted repositories (issue 16): the questions the hosted
//! handlers ask, answered from `[auth]` (the table is `access.rs`).
//!
//! The configuration contract: with `[auth] htpasswd` and no finer rights configured, every
//! user in the file may pull, push and delete (as the Distribution registry's htpasswd auth
//! does); `[[auth.rights]]` narrows that; without `[auth]`, nobody pushes or deletes. So:
//!
//! ```text
//!                          pull                         push, delete
//! no [auth]                allowed                      403 DENIED (no user could be told apart)
//! [auth], no credentials   anonymous_pull all|hosted,   401 UNAUTHORIZED, wharf's Basic challenge
//!                          else 401 UNAUTHORIZED
//! [auth], a user           anonymous_pull all|hosted,   the rights allow it, else 403 DENIED
//!                          or the rights allow it,
//!                          else 403 DENIED
//! ```
//!
//! Wrong credentials were refused in admit already. Which action a request needs: GET and
//! HEAD pull; DELETE of a manifest, tag or blob deletes; everything else (uploads, their
//! cancel, mounts, manifest PUT, a signature PUT) pushes. A mount also needs pull on its
//! `from` repository ([`may_pull`], asked by mount.rs).

use http::Method;
use wharf_oci::{ErrorCode, RepositoryName};

use crate::access::Action;
use crate::auth::{Caller, ClientAuth};
use crate::error::ProxyError;
use crate::route::Resource;

/// Whether `caller` may do to the repository `resource` names what `method` does.
pub(crate) fn check(
    auth: Option<&ClientAuth>,
    caller: &Caller,
    method: &Method,
    resource: &Resource,
) -> Result<(), ProxyError> {
    let Some(repo) = resource.name() else {
        return Ok(());
    };
    match (method, resource) {
        (&Method::GET | &Method::HEAD, _) => may_pull(auth, caller, repo),
        (&Method::DELETE, Resource::Manifest { .. } | Resource::Blob { .. }) => {
            may_delete(auth, caller, repo)
        }
        _ => may_push(auth, caller, repo),
    }
}

/// Whether `caller` may pull from the hosted repository `repo`.
pub(crate) fn may_pull(
    auth: Option<&ClientAuth>,
    caller: &Caller,
    repo: &RepositoryName,
) -> Result<(), ProxyError> {
    may(auth, caller, Action::Pull, repo)
}

/// Whether `caller` may push to the hosted repository `repo`.
pub(crate) fn may_push(
    auth: Option<&ClientAuth>,
    caller: &Caller,
    repo: &RepositoryName,
) -> Result<(), ProxyError> {
    may(auth, caller, Action::Push, repo)
}

/// Whether `caller` may delete manifests, tags and blobs of the hosted repository `repo`.
/// [`check`] asks it for every DELETE of a manifest (by tag or digest) or a blob before the
/// handler runs; a DELETE handler need not ask again.
pub(crate) fn may_delete(
    auth: Option<&ClientAuth>,
    caller: &Caller,
    repo: &RepositoryName,
) -> Result<(), ProxyError> {
    may(auth, caller, Action::Delete, repo)
}

fn may(
    auth: Option<&ClientAuth>,
    caller: &Caller,
    action: Action,
    repo: &RepositoryName,
) -> Result<(), ProxyError> {
    let verb = action.as_str();
    let Some(auth) = auth else {
        if action == Action::Pull {
            return Ok(());
        }
        return Err(ProxyError::oci(
            ErrorCode::Denied,
            format!("{verb} needs a user: configure [auth] htpasswd and log in"),
        ));
    };
    if action == Action::Pull && auth.anonymous_pull().covers(true) {
        return Ok(());
    }
    match caller {
        Caller::Anonymous => Err(ProxyError::Unauthenticated {
            message: format!("{verb} of {repo} needs a user: log in first (podman login)"),
        }),
        Caller::User(user) if auth.rights().allows(user, action, repo.as_str()) => Ok(()),
        Caller::User(user) => Err(ProxyError::oci(
            ErrorCode::Denied,
            format!("user {user} may not {verb} {repo} (auth.rights)"),
        )),
        Caller::Peer => Err(ProxyError::oci(
            ErrorCode::Denied,
            "a peer of the fleet pulls mirrored content only",
        )),
    }
}

/// The user an upload belongs to (`""` for anonymous, who cannot upload anyway): another user
/// cannot see or touch it.
pub(crate) fn user(caller: &Caller) -> &str {
    match caller {
        Caller::Anonymous | Caller::Peer => "",
        Caller::User(u) => u,
    }
}
