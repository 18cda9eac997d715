//! The configuration's tests: what is accepted, what each default is, and that every error
//! names its field.

use std::time::Duration;

use super::*;

mod rights;
use wharf_proxy::access::AnonymousPull;

#[test]
fn embedded_default_is_valid() {
    let c = Config::embedded().unwrap();
    assert_eq!(c.server.listen.port(), 5000);
    assert_eq!(c.upstream.len(), 3);
    assert!(
        c.upstream
            .iter()
            .any(|u| u.default && u.prefixes.iter().any(|p| p == "docker.io"))
    );
    // Predictive warming is on for the public registries, off unless configured.
    assert!(c.upstream.iter().all(|u| u.warm_moved_tags));
    let up = "[[upstream]]\nname = \"a\"\nurl = \"http://127.0.0.1:1\"\ndefault = true\n";
    assert!(!Config::parse(up, "t").unwrap().upstream[0].warm_moved_tags);
    let on = Config::parse(&format!("{up}warm_moved_tags = true\n"), "t").unwrap();
    assert!(on.upstream[0].warm_moved_tags);
}

#[test]
fn sizes() {
    assert_eq!(parse_size("50GiB").unwrap(), 50 << 30);
    assert_eq!(parse_size("1.5 KiB").unwrap(), 1536);
    assert_eq!(parse_size("10MB").unwrap(), 10_000_000);
    assert_eq!(parse_size("7").unwrap(), 7);
    assert!(parse_size("ten GiB").is_err());
    assert!(parse_size("5 parsecs").is_err());
}

fn err(text: &str) -> String {
    Config::parse(text, "t").unwrap_err().to_string()
}

#[test]
fn names_the_bad_field() {
    let up = "[[upstream]]\nname = \"a\"\nurl = \"http://127.0.0.1:1\"\ndefault = true\n";
    assert!(err(&format!("{up}bogus = 1\n")).contains("bogus"));
    assert!(err("[cache]\nmax_size = \"lots\"\n").contains("max_size"));
    assert!(err("[cache]\ntag_ttl = \"soon\"\n").contains("tag_ttl"));
    assert!(err("").contains("upstream"));
    assert!(err(&format!("{up}username = \"u\"\n")).contains("upstream[0].password_file"));
    assert!(
        err(&format!(
            "{up}password_env = \"WHARF_TEST_SURELY_UNSET\"\nusername = \"u\"\n"
        ))
        .contains("WHARF_TEST_SURELY_UNSET")
    );
    assert!(
        err("[[upstream]]\nname = \"a\"\nurl = \"ftp://x\"\ndefault = true\n")
            .contains("upstream[0].url")
    );
    assert!(err(&format!("{up}{up}")).contains("upstream[1].name"));
    assert!(
        err("[[upstream]]\nname = \"a\"\nurl = \"http://x\"\n").contains("upstream[0].prefixes")
    );
    assert!(
        err(&format!("{up}immutable_tags = ['^v[0-9]+$', 'v(1']\n"))
            .contains("upstream[0].immutable_tags[1]")
    );
    assert!(err(&format!("{up}lookaside = \"ftp://sigs\"\n")).contains("upstream[0].lookaside"));
    assert!(
        err(&format!("{up}lookaside = \"https://u:p@sigs/podman\"\n"))
            .contains("upstream[0].lookaside")
    );
    let missing = err(&format!(
        "{up}lookaside = \"https://sigs/podman\"\nrequire_signature = {{ key = \"/nonexistent/key.asc\" }}\n"
    ));
    assert!(
        missing.contains("upstream[0].require_signature.key")
            && missing.contains("/nonexistent/key.asc"),
        "{missing}"
    );
    assert!(
        err(&format!(
            "{up}require_signature = {{ key = \"/k\", bogus = 1 }}\n"
        ))
        .contains("bogus")
    );
}

/// A URL may carry a path (a regional wharf's prefix); a query, user info, a `..` segment or a
/// trailing `/v2` may not, and the message names the field without echoing a password.
#[test]
fn upstream_url_with_a_path() {
    let up = |url: &str| format!("[[upstream]]\nname = \"a\"\nurl = \"{url}\"\ndefault = true\n");
    for ok in [
        "http://regional:5000/oracle",
        "http://regional:5000/oracle/",
        "https://registry.example.com/mirror/quay",
    ] {
        let config = Config::parse(&up(ok), "t").unwrap_or_else(|e| panic!("{ok}: {e}"));
        assert_eq!(config.upstream[0].url, ok);
    }
    for bad in [
        "http://regional:5000/oracle?x=1",
        "http://regional:5000/a/../b",
        "http://regional:5000/oracle/v2",
        "http://regional:5000/a b",
    ] {
        assert!(err(&up(bad)).contains("upstream[0].url"), "{bad}");
    }
    let secret = err(&up("https://u:hunter2@regional/oracle"));
    assert!(
        secret.contains("upstream[0].url") && !secret.contains("hunter2"),
        "{secret}"
    );
}

#[test]
fn tls_and_htpasswd_are_checked_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let up = "[[upstream]]\nname = \"a\"\nurl = \"http://127.0.0.1:1\"\ndefault = true\n";
    let key = dir.path().join("k.pem");
    let cert = dir.path().join("c.pem");
    let secret = "-----BEGIN PRIVATE KEY-----\nTOPSECRETKEYBYTES\n-----END PRIVATE KEY-----\n";
    std::fs::write(&key, secret).unwrap();
    std::fs::write(&cert, "not a certificate").unwrap();
    let server = |c: &str, k: &str| format!("[server]\n{c}{k}\n{up}");
    let c = format!("tls_cert = {:?}\n", cert.display().to_string());
    let k = format!("tls_key = {:?}\n", key.display().to_string());
    assert!(err(&server(&c, "")).starts_with("server.tls_key"));
    assert!(err(&server("", &k)).starts_with("server.tls_cert"));
    let e = err(&server(&c, &k));
    assert!(e.starts_with("server.tls_cert"), "{e}");
    let missing = format!(
        "tls_cert = {:?}\n",
        dir.path().join("nope").display().to_string()
    );
    assert!(err(&server(&missing, &k)).contains("cannot read"));
    assert!(!e.contains("TOPSECRET"));

    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(&htpasswd, "alice:{SHA}SECRETHASH=\n").unwrap();
    let auth = format!(
        "[auth]\nhtpasswd = {:?}\n{up}",
        htpasswd.display().to_string()
    );
    let e = err(&auth);
    assert!(
        e.starts_with("auth.htpasswd") && e.contains("htpasswd -B"),
        "{e}"
    );
    assert!(!e.contains("SECRETHASH"), "{e}");
    assert!(
        err(&format!("[auth]\nanonymous_pull = false\n{up}")).starts_with("auth.anonymous_pull")
    );

    std::fs::write(
        &htpasswd,
        "alice:$2y$05$6oDSXHgbzDv.k3jEX/jlaubEbNHKJw/l0YmbzfQnb0BG5YpVPwju2\n",
    )
    .unwrap();
    let c = Config::parse(&auth, "t").unwrap();
    assert_eq!(
        c.auth.anonymous_pull(),
        AnonymousPull::None,
        "htpasswd set: pulls need credentials by default"
    );
    assert_eq!(
        Config::parse(up, "t").unwrap().auth.anonymous_pull(),
        AnonymousPull::All
    );
    assert!(
        err(&format!("[server]\nmax_connections = 0\n{up}")).contains("server.max_connections")
    );
    assert!(
        err(&format!("[cache]\nmax_concurrent_fills = 0\n{up}"))
            .contains("cache.max_concurrent_fills")
    );
}

#[test]
fn immutable_tags_compile_into_one_set() {
    let c = Config::parse(
        "[[upstream]]\nname = \"a\"\nurl = \"http://127.0.0.1:1\"\ndefault = true\n\
         immutable_tags = ['^v?[0-9]+\\.[0-9]+\\.[0-9]+$', '^sha256-']\n",
        "t",
    )
    .unwrap();
    let set = c.upstream[0].immutable_set().unwrap();
    assert!(set.is_match("v1.2.3") && set.is_match("1.2.3") && set.is_match("sha256-ab"));
    assert!(!set.is_match("latest") && !set.is_match("v1.2") && !set.is_match("1.2.3-rc"));
}

const UP: &str = "[[upstream]]\nname = \"a\"\nurl = \"http://127.0.0.1:1\"\ndefault = true\n";

#[test]
fn durations_read_as_people_write_them() {
    for (text, secs) in [
        ("5m", 300),
        ("30s", 30),
        ("0s", 0),
        ("1h 30m", 5400),
        ("2min", 120),
    ] {
        let c = Config::parse(&format!("[cache]\ntag_ttl = \"{text}\"\n{UP}"), "t").unwrap();
        assert_eq!(c.cache.tag_ttl, Duration::from_secs(secs), "{text}");
    }
    let c = Config::parse(
        &format!("{UP}tag_ttl = \"10m\"\nconnect_timeout = \"2s\"\n"),
        "t",
    )
    .unwrap();
    assert_eq!(c.upstream[0].tag_ttl, Some(Duration::from_secs(600)));
    assert_eq!(c.upstream[0].connect_timeout, Duration::from_secs(2));
    assert_eq!(Config::parse(UP, "t").unwrap().upstream[0].tag_ttl, None);
    let e = err(&format!("{UP}response_timeout = \"30 parsecs\"\n"));
    assert!(
        e.contains("response_timeout") && e.contains("30 parsecs"),
        "{e}"
    );
    assert!(
        err(&format!("[cache]\nfill_inactivity_timeout = 30\n{UP}"))
            .contains("fill_inactivity_timeout")
    );
}

/// The numbers live with the options they configure (the store's, the proxy's, the listener's);
/// the shipped files state them, and must state the same.
#[test]
fn defaults_come_from_the_options_and_the_shipped_files_agree() {
    let d = Config::parse(UP, "t").unwrap();
    assert_eq!(d.server.max_connections, Limits::default().max_connections);
    assert_eq!(
        d.cache.max_concurrent_fills,
        ProxyOptions::default().max_concurrent_fills
    );
    assert_eq!(d.cache.max_size, StoreOptions::default().max_size);
    assert_eq!(d.cache.scrub_rate, StoreOptions::default().scrub_rate);
    assert_eq!(
        d.cache.fill_inactivity_timeout,
        StoreOptions::default().fill_inactivity_timeout
    );
    assert_eq!(d.cache.tag_ttl, wharf_proxy::Upstream::DEFAULT_TAG_TTL);
    let shipped = [
        (
            "deploy/wharf.toml",
            include_str!("../../../../deploy/wharf.toml"),
        ),
        ("default.toml", EMBEDDED_DEFAULT),
    ];
    for (origin, text) in shipped {
        let c: Config = toml::from_str(text).unwrap();
        assert_eq!(
            (
                c.server.listen,
                c.server.admin_listen,
                c.server.max_connections
            ),
            (
                d.server.listen,
                d.server.admin_listen,
                d.server.max_connections
            ),
            "{origin}"
        );
        let cache = |c: &Config| {
            (
                c.cache.max_size,
                c.cache.tag_ttl,
                c.cache.fill_inactivity_timeout,
                c.cache.max_concurrent_fills,
                c.cache.scrub_rate,
            )
        };
        assert_eq!(cache(&c), cache(&d), "{origin}");
        for u in &c.upstream {
            assert_eq!(u.connect_timeout, d.upstream[0].connect_timeout, "{origin}");
            assert_eq!(
                u.response_timeout, d.upstream[0].response_timeout,
                "{origin}"
            );
        }
    }
}

/// Issue 13 #8: a password written inline (a mistake users make) is refused without the error
/// ever printing it, whatever the parser quotes.
#[test]
fn an_inline_password_is_refused_without_being_printed() {
    let secret = "hunter2-do-not-print";
    for text in [
        format!("{UP}password = \"{secret}\"\n"),
        format!("{UP}username = \"svc\"\npassword = '{secret}'\n"),
        format!("[auth]\nhtpasswd_password = \"{secret}\"\n{UP}"),
        format!("{UP}token = \"{secret}\" # a bearer token\n"),
    ] {
        let e = err(&text);
        assert!(!e.contains(secret), "the secret was printed: {e}");
        assert!(
            e.contains("<redacted>") || e.contains("password") || e.contains("token"),
            "{e}"
        );
    }
    // Ordinary values are still quoted as they are.
    let e = err(&format!("{UP}tag_ttl = \"soon\"\n"));
    assert!(e.contains("soon"), "{e}");
}

#[test]
fn hosted_repositories() {
    let up = "[[upstream]]\nname = \"docker\"\nurl = \"http://127.0.0.1:1\"\nprefixes = [\"docker.io\"]\ndefault = true\n";
    let c = Config::parse(up, "t").unwrap();
    assert!(c.hosted.is_none(), "absent: nothing hosted");
    let c = Config::parse(
        &format!("{up}[hosted]\nrepositories = [\"ol7image\", \"team/*\"]\nquota = \"1GiB\"\n"),
        "t",
    )
    .unwrap();
    let h = c.hosted.as_ref().unwrap();
    assert_eq!(h.repositories, ["ol7image", "team/*"]);
    assert_eq!(h.quota, Some(1 << 30));
    assert_eq!(h.dir(&c.cache), c.cache.dir.join("hosted"));
    assert_eq!(
        h.upload_timeout,
        wharf_proxy::hosted::HostedOptions::DEFAULT_UPLOAD_TIMEOUT
    );
    for (hosted, field) in [
        ("repositories = []", "hosted.repositories"),
        ("repositories = [\"Team/*\"]", "hosted.repositories[0]"),
        (
            "repositories = [\"a\", \"docker.io/x\"]",
            "hosted.repositories[1]",
        ),
        ("repositories = [\"a\"]\nquota = 0", "hosted.quota"),
        ("repositories = [\"a\"]\ndir = \"wharf-data\"", "hosted.dir"),
        (
            "repositories = [\"a\"]\nupload_timeout = \"0s\"",
            "hosted.upload_timeout",
        ),
        ("repositories = [\"a\"]\nbogus = 1", "bogus"),
    ] {
        let e = err(&format!("{up}[hosted]\n{hosted}\n"));
        assert!(e.contains(field), "{hosted}: {e}");
    }
    let named_hosted = up.replace("name = \"docker\"", "name = \"hosted\"");
    let e = err(&format!("{named_hosted}[hosted]\nrepositories = [\"a\"]\n"));
    assert!(e.contains("upstream.name"), "{e}");
}

#[test]
fn the_shipped_hosted_example_parses() {
    let text = include_str!("../../../../deploy/wharf.toml").replace("# [hosted]", "[hosted]");
    let text = text.replace("# repositories = [", "repositories = [");
    let c = Config::parse(&text, "deploy/wharf.toml").unwrap();
    assert_eq!(
        c.hosted.map(|h| h.repositories),
        Some(vec!["ol7image".to_owned(), "team/*".to_owned()])
    );
}

#[test]
fn mirrors_beside_url() {
    let up = |mirrors: &str| {
        format!(
            "[[upstream]]\nname = \"a\"\nurl = \"https://a.example\"\nmirrors = {mirrors}\ndefault = true\n"
        )
    };
    let config = Config::parse(
        &up(r#"["https://b.example", "http://regional:5000/oracle"]"#),
        "t",
    )
    .expect("mirrors");
    assert_eq!(config.upstream[0].mirrors.len(), 2);
    assert!(err(&up(r#"["ftp://b.example"]"#)).contains("upstream[0].mirrors[0]"));
    assert!(
        err(&up(r#"["https://b.example", "https://a.example/"]"#))
            .contains("upstream[0].mirrors[1]")
    );
    assert!(
        err(&up(r#"["https://b.example", "https://b.example"]"#))
            .contains("upstream[0].mirrors[1]")
    );
}
