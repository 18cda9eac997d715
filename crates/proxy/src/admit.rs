//! The checks every request passes before any work ([`Proxy::admit`]), and where it is routed:
//! an upstream, a hosted repository (`hosted/`), or wharf's own ping.

use http::{Method, Request};
use wharf_oci::ErrorCode;

use crate::route::{self, ParsedPath, Resource, RouteError};
use crate::upstreams::Target;
use crate::{Proxy, ProxyError, auth, hosted, limits};

/// Where an admitted request goes.
pub(crate) enum Routed<'p> {
    /// `GET /v2/`: answered by wharf itself.
    Ping,
    /// `GET /v2/_catalog`, and who asks (what they may pull is listed).
    Catalog(auth::Caller),
    To(&'p ParsedPath, Target),
    /// A hosted repository, and who asks (for the write check).
    Hosted(&'p ParsedPath, &'p hosted::Hosted, auth::Caller),
}

impl Proxy {
    /// The checks before any work, in order: a loop (`Via` naming this wharf), URI length,
    /// body, client authentication, method, path; then the upstream the name routes to.
    pub(crate) async fn admit<'p, B: http_body::Body>(
        &'p self,
        req: &Request<B>,
        parsed: &'p Result<ParsedPath, RouteError>,
    ) -> Result<Routed<'p>, ProxyError> {
        self.check_loop(req.headers())?;
        limits::check_uri(req)?;
        limits::check_body(req)?;
        let caller = match &self.auth {
            Some(auth) => {
                let ping = matches!(parsed, Ok(p) if p.resource == Resource::Ping);
                auth.check(req.headers(), ping).await?
            }
            None => auth::Caller::Anonymous,
        };
        let write = !matches!(*req.method(), Method::GET | Method::HEAD);
        let Some(hosted) = &self.hosted else {
            if write {
                return Err(ProxyError::oci(
                    ErrorCode::Unsupported,
                    "wharf serves pulls: only GET and HEAD are supported (no [hosted] repositories are configured)",
                ));
            }
            return self.route_upstream(req, parsed, &caller);
        };
        let parsed = parsed.as_ref().map_err(|e| ProxyError::Route(e.clone()))?;
        let Some(name) = parsed.resource.name() else {
            if write {
                return Err(ProxyError::oci(
                    ErrorCode::Unsupported,
                    "only GET and HEAD are supported on /v2/ and /v2/_catalog",
                ));
            }
            return Ok(without_name(parsed, caller));
        };
        let ns = route::query_param(req.uri().query(), "ns");
        let target =
            match self
                .upstreams
                .select_named(ns.as_deref(), parsed.mount.as_deref(), name)?
            {
                Some(target) => target,
                None if hosted.matches(name) => return Ok(Routed::Hosted(parsed, hosted, caller)),
                None if hosted.bare_names() && claims(req.method(), &parsed.resource) => {
                    hosted::rights::may_push(self.auth(), &caller, name)?;
                    self.claim_bare(hosted, name).await?;
                    return Ok(Routed::Hosted(parsed, hosted, caller));
                }
                None => self.upstreams.select_default(name)?,
            };
        if *req.method() == Method::DELETE {
            // As distribution's pull-through cache answers: the upstream owns that content.
            return Err(ProxyError::oci(
                ErrorCode::Unsupported,
                format!(
                    "{name} belongs to upstream {} ({}), which wharf mirrors: only hosted repositories' content can be deleted",
                    target.upstream.name, target.repo
                ),
            ));
        }
        if write {
            // No dependency confusion: a push never lands beside what an upstream serves.
            return Err(ProxyError::oci(
                ErrorCode::Denied,
                format!(
                    "{name} belongs to upstream {} ({}), which wharf mirrors: push to a hosted repository instead (hosted.repositories)",
                    target.upstream.name, target.repo
                ),
            ));
        }
        self.check_mirrored_pull(&caller)?;
        Ok(Routed::To(parsed, target))
    }

    /// Routing without hosted repositories: every name is an upstream's.
    fn route_upstream<'p, B>(
        &self,
        req: &Request<B>,
        parsed: &'p Result<ParsedPath, RouteError>,
        caller: &auth::Caller,
    ) -> Result<Routed<'p>, ProxyError> {
        let parsed = parsed.as_ref().map_err(|e| ProxyError::Route(e.clone()))?;
        let Some(name) = parsed.resource.name() else {
            return Ok(without_name(parsed, caller.clone()));
        };
        let ns = route::query_param(req.uri().query(), "ns");
        let target = self
            .upstreams
            .select(ns.as_deref(), parsed.mount.as_deref(), name)?;
        self.check_mirrored_pull(caller)?;
        Ok(Routed::To(parsed, target))
    }

    /// A pull of mirrored content without credentials passes only when `auth.anonymous_pull`
    /// covers mirrored content (`all` or `mirrored`); every user may pull it.
    pub(crate) fn check_mirrored_pull(&self, caller: &auth::Caller) -> Result<(), ProxyError> {
        match (&self.auth, caller) {
            (Some(a), auth::Caller::Anonymous) if !a.anonymous_pull().covers(false) => {
                Err(ProxyError::Unauthenticated {
                    message: "pulling mirrored content needs a user: log in first".to_owned(),
                })
            }
            _ => Ok(()),
        }
    }
}

/// The ping or the catalog: the requests without a repository name.
fn without_name(parsed: &ParsedPath, caller: auth::Caller) -> Routed<'_> {
    if parsed.resource == Resource::Catalog {
        Routed::Catalog(caller)
    } else {
        Routed::Ping
    }
}

/// Whether a request may make a bare name hosted (`hosted.bare_names`): what starts a push,
/// an upload's POST or a manifest's PUT.
fn claims(method: &Method, resource: &Resource) -> bool {
    matches!(
        (method, resource),
        (&Method::POST, Resource::Uploads { session, .. }) if session.is_empty()
    ) || matches!(
        (method, resource),
        (&Method::PUT, Resource::Manifest { .. })
    )
}
