//! What a user may do to which hosted repository (`[[auth.rights]]`), and what a caller without
//! credentials may pull (`auth.anonymous_pull`): the table that `hosted/rights.rs` asks.
//!
//! ```text
//! no grants                       every user of the htpasswd file may pull, push and delete
//!                                 (the configuration contract; Distribution's htpasswd auth)
//! grants                          a user may do what some grant naming them ("*": every user)
//!                                 allows on a repository one of its patterns matches
//! push                            implies pull: a pushing client asks what is there already
//! mirrored content                every user pulls it; rights narrow hosted repositories only
//! ```

use crate::hosted::glob;

/// What a request does to a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Pull,
    Push,
    Delete,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }

    /// `pull`, `push` or `delete`.
    pub fn parse(s: &str) -> Option<Action> {
        [Action::Pull, Action::Push, Action::Delete]
            .into_iter()
            .find(|a| a.as_str() == s)
    }
}

/// What callers without credentials may pull (`auth.anonymous_pull`): `true` is `All`,
/// `false` is `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnonymousPull {
    All,
    /// Mirrored content only: hosted repositories need a user.
    Mirrored,
    /// Hosted repositories only: mirrored content (which the upstream credentials read) needs
    /// a user.
    Hosted,
    None,
}

impl AnonymousPull {
    /// `all`, `mirrored`, `hosted` or `none`.
    pub fn parse(s: &str) -> Option<AnonymousPull> {
        match s {
            "all" => Some(AnonymousPull::All),
            "mirrored" => Some(AnonymousPull::Mirrored),
            "hosted" => Some(AnonymousPull::Hosted),
            "none" => Some(AnonymousPull::None),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AnonymousPull::All => "all",
            AnonymousPull::Mirrored => "mirrored",
            AnonymousPull::Hosted => "hosted",
            AnonymousPull::None => "none",
        }
    }

    /// Whether anonymous callers may pull hosted (`true`) or mirrored (`false`) content.
    pub fn covers(self, hosted: bool) -> bool {
        match self {
            AnonymousPull::All => true,
            AnonymousPull::Mirrored => !hosted,
            AnonymousPull::Hosted => hosted,
            AnonymousPull::None => false,
        }
    }

    /// Whether anonymous callers may pull anything at all.
    pub fn any(self) -> bool {
        self != AnonymousPull::None
    }
}

impl From<bool> for AnonymousPull {
    fn from(b: bool) -> Self {
        if b {
            AnonymousPull::All
        } else {
            AnonymousPull::None
        }
    }
}

/// One `[[auth.rights]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// User names of the htpasswd file; `*` is every user.
    pub users: Vec<String>,
    /// Hosted repository names or globs (`team/*`), as `hosted.repositories` takes them.
    pub repositories: Vec<String>,
    pub actions: Vec<Action>,
}

impl Grant {
    fn allows(&self, user: &str, action: Action, repo: &str) -> bool {
        let implied = |a: &Action| *a == action || (action == Action::Pull && *a == Action::Push);
        self.users.iter().any(|u| u == "*" || u == user)
            && self.actions.iter().any(implied)
            && self.repositories.iter().any(|p| glob(p, repo))
    }
}

/// The rights table: empty means every user may do everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rights {
    grants: Vec<Grant>,
}

impl Rights {
    pub fn new(grants: Vec<Grant>) -> Rights {
        Rights { grants }
    }

    pub fn is_empty(&self) -> bool {
        self.grants.is_empty()
    }

    /// Whether `user` (authenticated) may do `action` to the hosted repository `repo`.
    pub fn allows(&self, user: &str, action: Action, repo: &str) -> bool {
        self.grants.is_empty() || self.grants.iter().any(|g| g.allows(user, action, repo))
    }

    /// Every user name the grants mention (not `*`), for the warning about names the htpasswd
    /// file lacks.
    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.grants
            .iter()
            .flat_map(|g| g.users.iter())
            .map(String::as_str)
            .filter(|u| *u != "*")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(users: &[&str], repos: &[&str], actions: &[Action]) -> Grant {
        Grant {
            users: users.iter().map(|s| (*s).to_owned()).collect(),
            repositories: repos.iter().map(|s| (*s).to_owned()).collect(),
            actions: actions.to_vec(),
        }
    }

    #[test]
    fn no_grants_allow_every_user_everything() {
        let r = Rights::default();
        for a in [Action::Pull, Action::Push, Action::Delete] {
            assert!(r.allows("anyone", a, "any/repo"));
        }
    }

    #[test]
    fn grants_narrow_by_user_repository_and_action() {
        use Action::*;
        let r = Rights::new(vec![
            grant(&["alice"], &["team/*"], &[Push, Delete]),
            grant(&["bob"], &["team/*"], &[Pull]),
            grant(&["*"], &["public"], &[Pull]),
        ]);
        assert!(r.allows("alice", Push, "team/a"));
        assert!(r.allows("alice", Pull, "team/a"), "push implies pull");
        assert!(r.allows("alice", Delete, "team/a/b"));
        assert!(!r.allows("alice", Push, "other"));
        assert!(r.allows("bob", Pull, "team/a"));
        assert!(!r.allows("bob", Push, "team/a"));
        assert!(!r.allows("bob", Delete, "team/a"));
        assert!(r.allows("carol", Pull, "public"));
        assert!(!r.allows("carol", Pull, "team/a"));
        assert!(
            !r.allows("alice", Delete, "public"),
            "delete is not implied"
        );
        assert_eq!(r.users().collect::<Vec<_>>(), ["alice", "bob"]);
    }

    #[test]
    fn anonymous_pull_modes() {
        assert_eq!(AnonymousPull::from(true), AnonymousPull::All);
        assert_eq!(AnonymousPull::from(false), AnonymousPull::None);
        for (mode, hosted, mirrored) in [
            ("all", true, true),
            ("mirrored", false, true),
            ("hosted", true, false),
            ("none", false, false),
        ] {
            let m = AnonymousPull::parse(mode).unwrap();
            assert_eq!(
                (m.covers(true), m.covers(false)),
                (hosted, mirrored),
                "{mode}"
            );
            assert_eq!(m.as_str(), mode);
        }
        assert_eq!(AnonymousPull::parse("yes"), None);
    }
}
