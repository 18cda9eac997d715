//! `[auth]`: client users (htpasswd), what anonymous callers may pull, and the rights of users
//! per hosted repository (`[[auth.rights]]`), with their checks (`Config::validate` calls
//! [`Config::validate_auth`]).

use std::path::PathBuf;

use serde::{Deserialize, Deserializer};
use wharf_proxy::access::{Action, AnonymousPull, Grant, Rights};

use super::{Config, ConfigError, invalid};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Auth {
    /// Basic auth for clients: `htpasswd -B` (bcrypt) entries; re-read on SIGHUP.
    pub htpasswd: Option<PathBuf>,
    /// What pulls need no credentials: `true` (`"all"`), `false` (`"none"`), `"mirrored"`
    /// (hosted repositories need a user) or `"hosted"` (mirrored content needs a user).
    /// Default: `true` without `htpasswd`, `false` with it.
    #[serde(default, deserialize_with = "anonymous_pull")]
    pub anonymous_pull: Option<AnonymousPull>,
    /// Who may pull, push and delete in which hosted repositories. Default: none, and every
    /// user of the htpasswd file may do everything (the configuration contract).
    #[serde(default)]
    pub rights: Vec<Right>,
}

/// `[[auth.rights]] users = ["alice"] repositories = ["team/*"] actions = ["pull", "push"]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Right {
    /// Users of the htpasswd file; `"*"` is every user.
    pub users: Vec<String>,
    /// Hosted repository names or globs (`*` is any run of characters, `/` included).
    pub repositories: Vec<String>,
    /// `pull`, `push` (implies pull), `delete`.
    pub actions: Vec<String>,
}

impl Auth {
    pub(crate) fn anonymous_pull(&self) -> AnonymousPull {
        self.anonymous_pull
            .unwrap_or(AnonymousPull::from(self.htpasswd.is_none()))
    }

    /// The rights table (after [`Config::validate_auth`], every action is known).
    pub(crate) fn rights(&self) -> Rights {
        Rights::new(
            self.rights
                .iter()
                .map(|r| Grant {
                    users: r.users.clone(),
                    repositories: r.repositories.clone(),
                    actions: r.actions.iter().filter_map(|a| Action::parse(a)).collect(),
                })
                .collect(),
        )
    }
}

fn anonymous_pull<'de, D: Deserializer<'de>>(d: D) -> Result<Option<AnonymousPull>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        B(bool),
        S(String),
    }
    match Raw::deserialize(d)? {
        Raw::B(b) => Ok(Some(AnonymousPull::from(b))),
        Raw::S(s) => AnonymousPull::parse(&s).map(Some).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "anonymous_pull {s:?}: expected true, false, \"all\", \"mirrored\", \"hosted\" or \"none\""
            ))
        }),
    }
}

impl Config {
    /// The htpasswd file loads; what needs users has them; every right names users,
    /// repository patterns that could be hosted, and known actions.
    pub(super) fn validate_auth(&self) -> Result<(), ConfigError> {
        let a = &self.auth;
        let Some(path) = &a.htpasswd else {
            if a.anonymous_pull.is_some_and(|m| m != AnonymousPull::All) {
                return Err(invalid(
                    "auth.anonymous_pull",
                    "anything but true needs auth.htpasswd: without users nobody could pull the rest",
                ));
            }
            if !a.rights.is_empty() {
                return Err(invalid(
                    "auth.rights",
                    "rights need auth.htpasswd: they name its users",
                ));
            }
            return Ok(());
        };
        wharf_proxy::auth::Htpasswd::load(path)
            .map_err(|e| invalid("auth.htpasswd", e.to_string()))?;
        for (i, r) in a.rights.iter().enumerate() {
            let f = |key: &str| format!("auth.rights[{i}].{key}");
            if r.users.is_empty() || r.users.iter().any(String::is_empty) {
                return Err(invalid(
                    f("users"),
                    "list user names of the htpasswd file, or \"*\"",
                ));
            }
            if r.repositories.is_empty() {
                return Err(invalid(
                    f("repositories"),
                    "list hosted repository names or patterns (\"team/*\")",
                ));
            }
            for (j, p) in r.repositories.iter().enumerate() {
                let field = f(&format!("repositories[{j}]"));
                wharf_proxy::hosted::check_pattern(p).map_err(|m| invalid(&field, m))?;
                self.check_not_upstream(p, &field, "rights govern hosted repositories")?;
            }
            if r.actions.is_empty() {
                return Err(invalid(f("actions"), "list pull, push or delete"));
            }
            for (j, act) in r.actions.iter().enumerate() {
                if Action::parse(act).is_none() {
                    return Err(invalid(
                        f(&format!("actions[{j}]")),
                        format!("{act:?} is not pull, push or delete"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// What is allowed but probably not meant: users the rights name that the htpasswd file
    /// does not list (a warning, not an error: SIGHUP re-reads the file, so users come and go
    /// while the configuration stays).
    pub(crate) fn warnings(&self) -> Vec<String> {
        let Some(path) = &self.auth.htpasswd else {
            return Vec::new();
        };
        let Ok(users) = wharf_proxy::auth::Htpasswd::load(path) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, r) in self.auth.rights.iter().enumerate() {
            for u in r.users.iter().filter(|u| *u != "*" && !users.contains(u)) {
                out.push(format!(
                    "auth.rights[{i}].users: {u:?} is not in {}: the right does nothing until it is",
                    path.display()
                ));
            }
        }
        out
    }

    /// A pattern whose first component is an upstream's prefix names that upstream's
    /// repositories, never hosted ones.
    pub(super) fn check_not_upstream(
        &self,
        pattern: &str,
        field: &str,
        why: &str,
    ) -> Result<(), ConfigError> {
        let first = pattern.split('/').next().unwrap_or_default();
        if !pattern.contains('/') || first.contains('*') {
            return Ok(());
        }
        match self
            .upstream
            .iter()
            .find(|u| u.prefixes.iter().any(|x| x.eq_ignore_ascii_case(first)))
        {
            Some(u) => Err(invalid(
                field,
                format!(
                    "{pattern:?} starts with {first:?}, a prefix of upstream {}: those names are the upstream's ({why})",
                    u.name
                ),
            )),
            None => Ok(()),
        }
    }
}
