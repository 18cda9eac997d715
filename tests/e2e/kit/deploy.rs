//! The files in `deploy/` as shipped: the TOML passes `wharf check-config`, systemd accepts the
//! unit, and the Kubernetes, Containerfile and quadlet files name the ports and paths of the
//! configuration they carry.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use wharf_e2e::process::run;
use wharf_e2e::util::{temp_dir, write_file};
use wharf_e2e::wharf::{check_config, check_config_with_env, wharf_bin};

/// The repository's `deploy/` folder.
fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// Port and `cache.dir` of a wharf configuration.
struct Ports {
    listen: u16,
    admin: u16,
    dir: String,
}

fn ports(toml_text: &str) -> Ports {
    let doc: toml::Table = toml_text.parse().expect("TOML");
    let port = |key: &str| -> u16 {
        let addr = doc["server"][key].as_str().expect(key);
        addr.rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect(key)
    };
    Ports {
        listen: port("listen"),
        admin: port("admin_listen"),
        dir: doc["cache"]["dir"].as_str().expect("cache.dir").to_owned(),
    }
}

/// `wharf check-config` on every TOML file shipped in deploy/.
#[test]
fn deploy_toml_passes_check_config() {
    let mut checked = 0;
    for entry in std::fs::read_dir(deploy_dir()).expect("deploy/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            check_config(&path).expect_ok(&format!("wharf check-config {}", path.display()));
            checked += 1;
        }
    }
    assert!(checked >= 2, "deploy/wharf.toml and deploy/container.toml");
}

#[test]
fn systemd_unit_is_accepted_by_systemd_analyze() {
    let unit = deploy_dir().join("wharf.service");
    let text = read(&unit);
    assert!(
        text.lines()
            .any(|l| l == "ExecStart=/usr/local/bin/wharf serve --config /etc/wharf/wharf.toml"),
        "{text}"
    );
    // StateDirectory=wharf is /var/lib/wharf: the store of deploy/wharf.toml.
    assert!(text.lines().any(|l| l == "StateDirectory=wharf"));
    assert_eq!(
        ports(&read(&deploy_dir().join("wharf.toml"))).dir,
        "/var/lib/wharf"
    );

    let available = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !available {
        eprintln!("SKIPPED: systemd-analyze is not installed, so the unit was not verified");
        return;
    }
    // verify checks that the binary exists: point the copy at the one under test.
    let dir = temp_dir("kit-unit");
    let copy = dir.path().join("wharf.service");
    write_file(
        &copy,
        text.replace("/usr/local/bin/wharf", &wharf_bin().display().to_string()),
    );
    let out = run(
        Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&copy),
        Duration::from_secs(60),
    );
    // verify exits 0 on a value it ignores; every complaint names the file.
    let complaints: Vec<&str> = out
        .stderr
        .lines()
        .chain(out.stdout.lines())
        .filter(|l| l.contains("wharf.service"))
        .collect();
    assert!(
        out.ok() && complaints.is_empty(),
        "systemd-analyze verify:\n{out}"
    );
    let security = run(
        Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--no-pager"])
            .arg(&copy),
        Duration::from_secs(60),
    );
    if let Some(level) = security
        .stdout
        .lines()
        .find_map(|l| l.split("Overall exposure level for wharf.service: ").nth(1))
    {
        let score: f64 = level
            .split_whitespace()
            .next()
            .and_then(|s| s.parse().ok())
            .expect("exposure score");
        assert!(score <= 2.5, "the sandbox is too loose: {level}");
    }
}

/// The names of a container's environment variables.
fn env_of(container: &yaml_rust2::Yaml) -> Vec<&str> {
    container["env"]
        .as_vec()
        .map(|v| v.iter().filter_map(|e| e["name"].as_str()).collect())
        .unwrap_or_default()
}

fn find_env<'a>(container: &'a yaml_rust2::Yaml, name: &str) -> &'a yaml_rust2::Yaml {
    container["env"]
        .as_vec()
        .and_then(|v| v.iter().find(|e| e["name"].as_str() == Some(name)))
        .unwrap_or_else(|| panic!("no env {name}"))
}

fn yaml_docs(file: &str) -> Vec<yaml_rust2::Yaml> {
    let path = deploy_dir().join("kubernetes").join(file);
    yaml_rust2::YamlLoader::load_from_str(&read(&path))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn find<'a>(docs: &'a [yaml_rust2::Yaml], kind: &str, name: &str) -> &'a yaml_rust2::Yaml {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn s(y: &yaml_rust2::Yaml) -> &str {
    y.as_str().unwrap_or_else(|| panic!("not a string: {y:?}"))
}

/// A `containerPort`'s number from a probe's or Service's port (a name or a number).
fn resolve_port(container: &yaml_rust2::Yaml, port: &yaml_rust2::Yaml) -> i64 {
    if let Some(n) = port.as_i64() {
        return n;
    }
    let name = s(port);
    container["ports"]
        .as_vec()
        .expect("ports")
        .iter()
        .find(|p| p["name"].as_str() == Some(name))
        .and_then(|p| p["containerPort"].as_i64())
        .unwrap_or_else(|| panic!("no container port named {name}"))
}

#[test]
fn kubernetes_manifests_agree_with_their_config() {
    let dir = deploy_dir().join("kubernetes");
    let mut all = Vec::new();
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("deploy/kubernetes") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        if name.ends_with(".yaml") {
            all.extend(yaml_docs(&name));
            files.push(name);
        }
    }
    let kustomization = &all
        .iter()
        .find(|d| d["kind"].as_str() == Some("Kustomization"))
        .expect("kustomization.yaml")["resources"];
    for f in files.iter().filter(|f| *f != "kustomization.yaml") {
        assert!(
            kustomization
                .as_vec()
                .expect("resources")
                .iter()
                .any(|r| r.as_str() == Some(f)),
            "{f} is not in kustomization.yaml"
        );
    }

    // The config: valid, and the source of the ports and paths below.
    let cm = find(&all, "ConfigMap", "wharf-config");
    let toml_text = s(&cm["data"]["wharf.toml"]);
    let tmp = temp_dir("kit-k8s");
    let config_file = tmp.path().join("wharf.toml");
    write_file(&config_file, toml_text);
    // With what the pod's env gives it: its IP (advertise) and the object store's secret.
    let env =
        env_of(&find(&all, "StatefulSet", "wharf")["spec"]["template"]["spec"]["containers"][0]);
    for var in ["POD_IP", "WHARF_S3_SECRET"] {
        assert!(env.contains(&var), "the pod sets {var}: {env:?}");
    }
    check_config_with_env(
        &config_file,
        &[
            ("POD_IP", "10.1.2.3"),
            ("WHARF_S3_SECRET", "not-the-real-one"),
        ],
    )
    .expect_ok("wharf check-config on the ConfigMap's wharf.toml");
    // The fleet: several replicas, finding each other through the headless Service peers_dns
    // names, on the registry port, the object store's secret from a Secret.
    let sts = find(&all, "StatefulSet", "wharf");
    assert!(
        sts["spec"]["replicas"].as_i64().unwrap_or(1) >= 3,
        "three replicas"
    );
    let peers_dns = toml_text
        .lines()
        .find_map(|l| l.trim().strip_prefix("peers_dns = "))
        .map(|v| v.trim_matches('"').to_owned())
        .expect("[cluster] peers_dns");
    let peers_svc = find(&all, "Service", &peers_dns);
    assert!(
        peers_svc["spec"]["clusterIP"].as_str() == Some("None"),
        "peers: a headless Service"
    );
    let secret_ref = find_env(
        &sts["spec"]["template"]["spec"]["containers"][0],
        "WHARF_S3_SECRET",
    );
    let secret_name = s(&secret_ref["valueFrom"]["secretKeyRef"]["name"]);
    find(&all, "Secret", secret_name);
    let p = ports(toml_text);

    let sts = find(&all, "StatefulSet", "wharf");
    let pod = &sts["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let port_of = |name: &str| resolve_port(c, &yaml_rust2::Yaml::String(name.into()));
    assert_eq!(port_of("registry"), i64::from(p.listen));
    assert_eq!(port_of("admin"), i64::from(p.admin));
    let ready = &c["readinessProbe"]["httpGet"];
    assert_eq!(s(&ready["path"]), "/readyz");
    assert_eq!(resolve_port(c, &ready["port"]), i64::from(p.admin));
    let live = &c["livenessProbe"]["httpGet"];
    assert_eq!(s(&live["path"]), "/healthz");
    assert_eq!(resolve_port(c, &live["port"]), i64::from(p.admin));

    // The store is the claim, mounted at cache.dir.
    let mounts = c["volumeMounts"].as_vec().expect("volumeMounts");
    let mount = |vol: &str| {
        mounts
            .iter()
            .find(|m| m["name"].as_str() == Some(vol))
            .map(|m| s(&m["mountPath"]).to_owned())
            .unwrap_or_else(|| panic!("no mount of {vol}"))
    };
    let claims = sts["spec"]["volumeClaimTemplates"]
        .as_vec()
        .expect("claims");
    let claim = s(&claims[0]["metadata"]["name"]);
    assert_eq!(mount(claim), p.dir, "the claim is mounted at cache.dir");
    // The config file wharf is started with is the ConfigMap's key, where it is mounted.
    let args: Vec<&str> = c["args"].as_vec().expect("args").iter().map(s).collect();
    let at = args
        .iter()
        .position(|a| *a == "--config")
        .expect("--config");
    let config_arg = Path::new(args[at + 1]);
    let vol = pod["volumes"]
        .as_vec()
        .expect("volumes")
        .iter()
        .find(|v| v["configMap"]["name"].as_str() == Some("wharf-config"))
        .expect("a volume from the ConfigMap");
    assert_eq!(
        Path::new(&mount(s(&vol["name"]))).join("wharf.toml"),
        config_arg
    );

    // Clients reach the registry port; the admin port is only on the headless admin Service,
    // which the ServiceMonitor selects.
    let svc = find(&all, "Service", "wharf");
    let svc_ports = svc["spec"]["ports"].as_vec().expect("ports");
    assert!(
        svc_ports
            .iter()
            .all(|sp| resolve_port(c, &sp["targetPort"]) == i64::from(p.listen))
    );
    let admin_svc = find(&all, "Service", s(&sts["spec"]["serviceName"]));
    let admin_port = &admin_svc["spec"]["ports"][0];
    assert_eq!(
        resolve_port(c, &admin_port["targetPort"]),
        i64::from(p.admin)
    );
    let sm = find(&all, "ServiceMonitor", "wharf");
    let labels = admin_svc["metadata"]["labels"].as_hash().expect("labels");
    for (k, v) in sm["spec"]["selector"]["matchLabels"]
        .as_hash()
        .expect("matchLabels")
    {
        assert_eq!(
            labels.get(k),
            Some(v),
            "ServiceMonitor selects the admin Service"
        );
    }
    assert!(
        svc["metadata"]["labels"]["app.kubernetes.io/component"].is_badvalue(),
        "the ServiceMonitor must not also select the public Service"
    );
    let endpoint = &sm["spec"]["endpoints"][0];
    assert_eq!(s(&endpoint["port"]), s(&admin_port["name"]));
    assert_eq!(s(&endpoint["path"]), "/metrics");
}

#[test]
fn container_files_agree_with_their_config() {
    let p = ports(&read(&deploy_dir().join("container.toml")));
    let containerfile = read(&deploy_dir().join("Containerfile"));
    let lines: Vec<&str> = containerfile.lines().collect();
    assert!(lines.contains(&"COPY deploy/container.toml /etc/wharf/wharf.toml"));
    assert!(lines.contains(&"FROM scratch"));
    assert!(lines.contains(&format!("EXPOSE {} {}", p.listen, p.admin).as_str()));
    assert!(lines.contains(&format!("VOLUME [\"{}\"]", p.dir).as_str()));
    assert!(lines.contains(&r#"CMD ["serve", "--config", "/etc/wharf/wharf.toml"]"#));
    for l in lines
        .iter()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let src = l.split_whitespace().nth(1).expect("COPY source");
        assert!(
            deploy_dir().join("..").join(src).exists(),
            "Containerfile copies {src}, which is not in the repository"
        );
    }

    let quadlet = read(&deploy_dir().join("wharf.container"));
    let keys: Vec<(&str, &str)> = quadlet
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .collect();
    let values = |k: &str| -> Vec<&str> {
        keys.iter()
            .filter(|(key, _)| *key == k)
            .map(|(_, v)| *v)
            .collect()
    };
    assert!(values("PublishPort").contains(&format!("{0}:{0}", p.listen).as_str()));
    assert!(values("PublishPort").contains(&format!("127.0.0.1:{0}:{0}", p.admin).as_str()));
    assert!(
        values("Volume")
            .iter()
            .any(|v| v.split(':').nth(1) == Some(p.dir.as_str())),
        "a volume for the store at {}",
        p.dir
    );
    assert_eq!(values("Exec"), ["serve --config /etc/wharf/wharf.toml"]);
    assert_eq!(values("Restart"), ["always"]);
}
