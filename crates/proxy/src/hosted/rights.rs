//! Who may write to hosted repositories: the first cut of issue 16's rights.
//!
//! The configuration contract: with `[auth] htpasswd` and no finer rights configured, every
//! user in the file may pull, push and delete (as the Distribution registry's htpasswd auth
//! does); without `[auth]`, nobody pushes. So:
//!
//! ```text
//! no [auth]                      -> 403 DENIED (no user could be told apart)
//! [auth], no credentials         -> 401 UNAUTHORIZED with wharf's Basic challenge
//! [auth], a user of the file     -> allowed (wrong credentials were refused in admit already)
//! ```
//!
//! Rights per user and repository pattern come later; [`may_push`] is where they will be
//! asked, with the endpoint (and so the repository) at hand.

use wharf_oci::ErrorCode;

use crate::auth::{Caller, ClientAuth};
use crate::error::ProxyError;
use crate::route::Endpoint;

/// Whether `caller` may write (push, and later delete) to the repository `endpoint` names.
pub(crate) fn may_push(
    auth: Option<&ClientAuth>,
    caller: &Caller,
    endpoint: &Endpoint,
) -> Result<(), ProxyError> {
    let _repository = endpoint.name();
    match (auth, caller) {
        (None, _) => Err(ProxyError::oci(
            ErrorCode::Denied,
            "pushing needs a user: configure [auth] htpasswd and log in",
        )),
        (Some(_), Caller::Anonymous) => Err(ProxyError::Unauthenticated {
            message: "pushing needs a user: log in first (podman login)".to_owned(),
        }),
        (Some(_), Caller::User(_)) => Ok(()),
    }
}

/// The user an upload belongs to (`""` for anonymous, who cannot upload anyway): another user
/// cannot see or touch it.
pub(crate) fn user(caller: &Caller) -> &str {
    match caller {
        Caller::Anonymous => "",
        Caller::User(u) => u,
    }
}
