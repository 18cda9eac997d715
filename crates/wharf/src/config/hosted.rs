//! `[hosted]`: the repositories wharf hosts itself, and the checks on them (`Config::validate`
//! calls [`Config::validate_hosted`]).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::{Cache, Config, ConfigError, invalid, size};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Hosted {
    /// Names of hosted repositories, or globs where `*` stands for any run of characters, `/`
    /// included (`"team/*"`). Routing asks upstream prefixes first, then these, then the
    /// default upstream, so a hosted name never shadows an upstream's. Default: none (then
    /// `bare_names` must be on).
    #[serde(default)]
    pub repositories: Vec<String>,
    /// Whether a push to a name that routes to the default upstream (a bare name on the
    /// embedded default) makes it hosted when that upstream does not serve it: asked once,
    /// refused when it does or cannot be asked, remembered in `<dir>/bare-names`. Default:
    /// true when `[auth] htpasswd` is set (and then `[hosted]` itself may be left out).
    pub bare_names: Option<bool>,
    /// Where hosted content lives: a store of its own, never evicted. Default
    /// `<cache.dir>/hosted`.
    pub dir: Option<PathBuf>,
    /// Bytes hosted content may take; a push past it is refused (403 DENIED). Default: no
    /// bound but the disk.
    #[serde(default, deserialize_with = "optional_size")]
    pub quota: Option<u64>,
    /// An upload that receives nothing for this long is dropped with its spool. Default `1h`.
    #[serde(default = "default_upload_timeout", with = "humantime_serde")]
    pub upload_timeout: Duration,
    /// Whether clients may `DELETE` manifests, tags and blobs of hosted repositories (with
    /// the delete right). Off, a delete is 405 UNSUPPORTED, as distribution answers with
    /// `storage.delete.enabled` off. Default `false`.
    #[serde(default)]
    pub delete: bool,
    /// How often garbage collection of the hosted store runs (it also runs a few seconds
    /// after deletes, and on `POST /admin/gc`). Default `1h`.
    #[serde(default = "default_gc_interval", with = "humantime_serde")]
    pub gc_interval: Duration,
}

impl Hosted {
    /// What `[auth] htpasswd` without `[hosted]` amounts to: bare names hosted on their first
    /// push, in `<cache.dir>/hosted`, so the guide's `podman push mirror:5000/ol7image:v1` works
    /// on the embedded default configuration plus a user.
    fn implicit() -> Hosted {
        Hosted {
            repositories: Vec::new(),
            bare_names: None,
            dir: None,
            quota: None,
            upload_timeout: default_upload_timeout(),
            delete: false,
            gc_interval: default_gc_interval(),
        }
    }

    /// `bare_names`, or whether there are users to push.
    pub(crate) fn bare_names(&self, auth: &super::Auth) -> bool {
        self.bare_names.unwrap_or(auth.htpasswd.is_some())
    }

    /// `dir`, or `<cache.dir>/hosted`.
    pub(crate) fn dir(&self, cache: &Cache) -> PathBuf {
        self.dir.clone().unwrap_or_else(|| cache.dir.join("hosted"))
    }
}

fn default_upload_timeout() -> Duration {
    wharf_proxy::hosted::HostedOptions::DEFAULT_UPLOAD_TIMEOUT
}

fn default_gc_interval() -> Duration {
    wharf_proxy::hosted::HostedOptions::DEFAULT_GC_INTERVAL
}

fn optional_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    size(d).map(Some)
}

impl Config {
    /// `[hosted]` when it is left out but `[auth] htpasswd` is set: [`Hosted::implicit`].
    pub(super) fn imply_hosted(&mut self) {
        if self.hosted.is_none() && self.auth.htpasswd.is_some() {
            self.hosted = Some(Hosted::implicit());
        }
    }

    /// `[hosted]`: patterns that are names or globs and that no upstream prefix takes first
    /// (such a pattern could never be reached), a quota above 0, a directory of its own.
    pub(super) fn validate_hosted(&self) -> Result<(), ConfigError> {
        let Some(h) = &self.hosted else {
            return Ok(());
        };
        let bare_names = h.bare_names(&self.auth);
        if h.repositories.is_empty() && !bare_names {
            return Err(invalid(
                "hosted.repositories",
                "list at least one repository name or pattern (\"team/*\"), or turn on bare_names",
            ));
        }
        if bare_names && self.auth.htpasswd.is_none() {
            return Err(invalid(
                "hosted.bare_names",
                "needs auth.htpasswd: only users push, and nobody could",
            ));
        }
        for (j, p) in h.repositories.iter().enumerate() {
            let field = format!("hosted.repositories[{j}]");
            wharf_proxy::hosted::check_pattern(p).map_err(|m| invalid(&field, m))?;
            self.check_not_upstream(p, &field, "a hosted name never shadows them")?;
        }
        if let Some(u) = self
            .upstream
            .iter()
            .find(|u| u.name == wharf_proxy::hosted::HOSTED)
        {
            return Err(invalid(
                "upstream.name",
                format!(
                    "{:?} is the name of hosted content: rename the upstream",
                    u.name
                ),
            ));
        }
        if h.quota == Some(0) {
            return Err(invalid("hosted.quota", "must be more than 0 (or left out)"));
        }
        if h.dir(&self.cache) == self.cache.dir {
            return Err(invalid(
                "hosted.dir",
                "must differ from cache.dir: hosted content has a store of its own",
            ));
        }
        if h.upload_timeout.is_zero() {
            return Err(invalid("hosted.upload_timeout", "must be more than 0"));
        }
        if h.gc_interval.is_zero() {
            return Err(invalid("hosted.gc_interval", "must be more than 0"));
        }
        Ok(())
    }
}
