//! The configuration of who may do what: `[auth]` rights, `anonymous_pull` modes, and bare
//! names hosted once there are users.

use super::*;
use wharf_proxy::access::AnonymousPull;

#[test]
fn rights_and_anonymous_pull_modes() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(
        &htpasswd,
        "alice:$2y$05$6oDSXHgbzDv.k3jEX/jlaubEbNHKJw/l0YmbzfQnb0BG5YpVPwju2\n",
    )
    .unwrap();
    let up = "[[upstream]]\nname = \"oracle\"\nurl = \"http://127.0.0.1:1\"\nprefixes = [\"oracle\"]\ndefault = true\n";
    let auth = |extra: &str| {
        format!(
            "[auth]\nhtpasswd = {:?}\n{extra}\n{up}",
            htpasswd.display().to_string()
        )
    };
    for (value, mode) in [
        ("true", AnonymousPull::All),
        ("false", AnonymousPull::None),
        ("\"mirrored\"", AnonymousPull::Mirrored),
        ("\"hosted\"", AnonymousPull::Hosted),
    ] {
        let c = Config::parse(&auth(&format!("anonymous_pull = {value}")), "t").unwrap();
        assert_eq!(c.auth.anonymous_pull(), mode, "{value}");
    }
    let e = err(&auth("anonymous_pull = \"some\""));
    assert!(
        e.contains("anonymous_pull") && e.contains("mirrored"),
        "{e}"
    );
    let e = err(&format!("[auth]\nanonymous_pull = \"mirrored\"\n{up}"));
    assert!(e.starts_with("auth.anonymous_pull"), "{e}");
    let e = err(&format!(
        "[auth]\n[[auth.rights]]\nusers = [\"alice\"]\nrepositories = [\"a\"]\nactions = [\"pull\"]\n{up}"
    ));
    assert!(e.starts_with("auth.rights"), "{e}");

    let right = |users: &str, repos: &str, actions: &str| {
        auth(&format!(
            "[[auth.rights]]\nusers = {users}\nrepositories = {repos}\nactions = {actions}\n"
        ))
    };
    let c = Config::parse(
        &right(
            "[\"alice\", \"*\"]",
            "[\"team/*\"]",
            "[\"push\", \"delete\"]",
        ),
        "t",
    )
    .unwrap();
    let rights = c.auth.rights();
    assert!(rights.allows("alice", wharf_proxy::access::Action::Delete, "team/a"));
    assert!(!rights.allows("alice", wharf_proxy::access::Action::Push, "other"));
    assert!(c.warnings().is_empty(), "{:?}", c.warnings());
    for (users, repos, actions, field) in [
        ("[]", "[\"a\"]", "[\"pull\"]", "auth.rights[0].users"),
        (
            "[\"alice\"]",
            "[]",
            "[\"pull\"]",
            "auth.rights[0].repositories",
        ),
        (
            "[\"alice\"]",
            "[\"A\"]",
            "[\"pull\"]",
            "auth.rights[0].repositories[0]",
        ),
        (
            "[\"alice\"]",
            "[\"a\", \"oracle/x\"]",
            "[\"pull\"]",
            "auth.rights[0].repositories[1]",
        ),
        ("[\"alice\"]", "[\"a\"]", "[]", "auth.rights[0].actions"),
        (
            "[\"alice\"]",
            "[\"a\"]",
            "[\"pull\", \"admin\"]",
            "auth.rights[0].actions[1]",
        ),
    ] {
        let e = err(&right(users, repos, actions));
        assert!(e.starts_with(field), "{users} {repos} {actions}: {e}");
    }
    // A user the file lacks: a warning, since SIGHUP re-reads the file.
    let c = Config::parse(&right("[\"bob\"]", "[\"a\"]", "[\"pull\"]"), "t").unwrap();
    let w = c.warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].starts_with("auth.rights[0].users: \"bob\""), "{w:?}");
}

#[test]
fn bare_names_are_hosted_by_default_once_there_are_users() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(
        &htpasswd,
        "alice:$2y$05$6oDSXHgbzDv.k3jEX/jlaubEbNHKJw/l0YmbzfQnb0BG5YpVPwju2\n",
    )
    .unwrap();
    let auth = format!("[auth]\nhtpasswd = {:?}\n", htpasswd.display().to_string());
    let embedded_plus_user = format!("{auth}{EMBEDDED_DEFAULT}");
    let c = Config::parse(&embedded_plus_user, "t").unwrap();
    let h = c.hosted.as_ref().expect("[auth] htpasswd implies [hosted]");
    assert!(h.repositories.is_empty());
    assert!(h.bare_names(&c.auth));
    assert_eq!(h.dir(&c.cache), c.cache.dir.join("hosted"));
    let c = Config::parse(
        &format!("{embedded_plus_user}[hosted]\nrepositories = [\"a\"]\nbare_names = false\n"),
        "t",
    )
    .unwrap();
    assert!(!c.hosted.as_ref().unwrap().bare_names(&c.auth));
    assert!(
        Config::embedded().unwrap().hosted.is_none(),
        "no users: nothing hosted"
    );
    let e = err(&format!(
        "{embedded_plus_user}[hosted]\nbare_names = false\n"
    ));
    assert!(e.starts_with("hosted.repositories"), "{e}");
    let e = err(&format!("{EMBEDDED_DEFAULT}[hosted]\nbare_names = true\n"));
    assert!(e.starts_with("hosted.bare_names"), "{e}");
}
