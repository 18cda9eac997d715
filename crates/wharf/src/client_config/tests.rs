//! What each client's generated file says, read back as that client's format.

use super::*;

fn opts<'a>(config: &'a Config, mirror: &'a Mirror) -> Options<'a> {
    Options {
        config,
        origin: "test.toml",
        mirror,
        insecure: false,
        ca: None,
    }
}

fn plain() -> Mirror {
    Mirror {
        tls: false,
        authority: "mirror.example.com:5000".into(),
    }
}

#[test]
fn podman_drop_in_is_v2_with_a_mirror_per_upstream() {
    let c = Config::embedded().expect("embedded");
    let m = plain();
    let g = podman(&opts(&c, &m));
    assert!(g.notes.is_empty(), "{:?}", g.notes);
    let text = &g.files[0].text;
    let doc: toml::Table = text.parse().expect("valid TOML");
    assert!(!doc.contains_key("registries"), "no v1 keys");
    let regs = doc["registry"].as_array().expect("[[registry]]");
    let find = |prefix: &str| {
        regs.iter()
            .find(|r| r["prefix"].as_str() == Some(prefix))
            .unwrap_or_else(|| panic!("no [[registry]] for {prefix}: {text}"))
    };
    let oracle = find("container-registry.oracle.com");
    assert_eq!(
        oracle["location"].as_str(),
        Some("container-registry.oracle.com")
    );
    let mirror = &oracle["mirror"].as_array().expect("mirror")[0];
    assert_eq!(
        mirror["location"].as_str(),
        Some("mirror.example.com:5000/oracle")
    );
    assert_eq!(mirror["insecure"].as_bool(), Some(true), "plain HTTP");
    let docker = find("docker.io");
    assert_eq!(
        docker["mirror"][0]["location"].as_str(),
        Some("mirror.example.com:5000/docker.io")
    );
    assert_eq!(regs.len(), 3);
    assert!(text.contains("unqualified-search-registries"));
    assert!(text.contains("[registries.search]"));
}

#[test]
fn podman_over_tls_is_secure_unless_asked() {
    let c = Config::embedded().expect("embedded");
    let m = Mirror {
        tls: true,
        authority: "m:5000".into(),
    };
    let text = &podman(&opts(&c, &m)).files[0].text;
    let doc: toml::Table = text.parse().expect("TOML");
    assert!(doc["registry"][0]["mirror"][0].get("insecure").is_none());
    let mut o = opts(&c, &m);
    o.insecure = true;
    let doc: toml::Table = podman(&o).files[0].text.parse().expect("TOML");
    assert_eq!(
        doc["registry"][0]["mirror"][0]["insecure"].as_bool(),
        Some(true)
    );
}

#[test]
fn containerd_hosts_pull_and_resolve_only() {
    let c = Config::embedded().expect("embedded");
    let m = plain();
    let mut o = opts(&c, &m);
    o.ca = Some(Path::new("/etc/wharf/ca.crt"));
    let g = containerd(&o);
    let paths: Vec<_> = g.files.iter().map(|f| f.path.clone()).collect();
    assert_eq!(
        paths,
        [
            "container-registry.oracle.com/hosts.toml",
            "quay.io/hosts.toml",
            "docker.io/hosts.toml"
        ]
        .map(PathBuf::from)
    );
    let doc: toml::Table = g.files[2].text.parse().expect("TOML");
    assert_eq!(doc["server"].as_str(), Some("https://registry-1.docker.io"));
    let host = &doc["host"]["http://mirror.example.com:5000"];
    let caps: Vec<_> = host["capabilities"]
        .as_array()
        .expect("capabilities")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(caps, ["pull", "resolve"]);
    assert_eq!(host["ca"].as_str(), Some("/etc/wharf/ca.crt"));
    assert!(host.get("skip_verify").is_none());
}

#[test]
fn docker_needs_docker_hub_as_default() {
    let c = Config::embedded().expect("embedded");
    let m = plain();
    let g = docker(&opts(&c, &m)).expect("docker hub is the default");
    let v: serde_json::Value = serde_json::from_str(&g.files[0].text).expect("JSON");
    assert_eq!(
        v["registry-mirrors"],
        serde_json::json!(["http://mirror.example.com:5000"])
    );
    assert_eq!(
        v["insecure-registries"],
        serde_json::json!(["mirror.example.com:5000"])
    );
    assert!(g.notes.iter().any(|n| n.contains("Docker Hub images only")));
    let c = Config::parse(
        "[[upstream]]\nname = \"o\"\nurl = \"https://container-registry.oracle.com\"\ndefault = true\n",
        "t",
    )
    .expect("config");
    let e = docker(&opts(&c, &m)).expect_err("not docker hub");
    assert!(e.contains("not Docker Hub"), "{e}");
}

#[test]
fn upstreams_clients_cannot_route_to_are_noted() {
    let c = Config::parse(
        "[[upstream]]\nname = \"r\"\nurl = \"https://reg.example.com:5000\"\n\
         prefixes = [\"reg.example.com:5000\"]\n\
         [[upstream]]\nname = \"q\"\nurl = \"https://quay.io\"\nprefixes = [\"quay\"]\n",
        "t",
    )
    .expect("config");
    let m = plain();
    let g = podman(&opts(&c, &m));
    assert!(g.notes.iter().any(|n| n.contains("\"r\"")), "{:?}", g.notes);
    assert!(g.files[0].text.contains("mirror.example.com:5000/quay"));
    let g = containerd(&opts(&c, &m));
    assert_eq!(g.files.len(), 1, "only r answers ns={{its registry}}");
    assert!(
        g.notes.iter().any(|n| n.contains("?ns=quay.io")),
        "{:?}",
        g.notes
    );
}

#[test]
fn the_ca_is_written_absolute_and_must_exist() {
    // Tests run in the crate's directory: a relative path that exists.
    let ca = absolute_ca(Path::new("Cargo.toml")).expect("exists");
    assert!(ca.is_absolute(), "{}", ca.display());
    assert!(ca.ends_with("crates/wharf/Cargo.toml"), "{}", ca.display());
    let e = absolute_ca(Path::new("tls/no-such-root.crt")).expect_err("missing");
    assert!(e.contains("tls/no-such-root.crt"), "{e}");
}
