//! Why a pull failed reaches the person at the client, and Docker Engine pulls through wharf.
//!
//! With the upstream down, podman, skopeo, ctr and docker print the reason wharf gives
//! (`upstream oracle: cannot connect to 127.0.0.1:PORT ...`), which they find in the status
//! line's reason phrase (none of them prints the JSON body of a 5xx). A tag served stale
//! says so, with the reason, in `Warning` headers. A private dockerd configured with the
//! `daemon.json` that `wharf client-config docker` writes pulls a Docker Hub-style name
//! (`hello` = `library/hello`) through wharf's `registry-mirrors` entry.

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

use std::process::Command;
use std::time::Duration;

use wharf_e2e::http::{ACCEPT_ALL_MANIFESTS, Http};
use wharf_e2e::images::{Image, ImageSpec};
use wharf_e2e::process::{CmdOut, run};
use wharf_e2e::push::Pusher;
use wharf_e2e::registry::Storage;
use wharf_e2e::util::{dead_host_port, temp_dir};
use wharf_e2e::wharf::wharf_bin;
use wharf_e2e::{
    Containerd, Docker, Podman, REGISTRY_NAME, Skopeo, Upstream, UpstreamCfg, Wharf, expect, images,
};

/// What wharf says when its upstream `name` (on 127.0.0.1) refuses connections; every client
/// must show it.
fn reason(name: &str) -> String {
    format!("upstream {name}: cannot connect to 127.0.0.1")
}

/// Asserts that `out` failed and that its output (either stream) holds `text`.
fn failed_saying(out: &CmdOut, text: &str, what: &str) {
    eprintln!("[{what}]\n{out}");
    assert!(!out.ok(), "{what}: should fail:\n{out}");
    assert!(
        out.stdout.contains(text) || out.stderr.contains(text),
        "{what}: the client's output should say {text:?}:\n{out}"
    );
}

/// wharf in front of a plain upstream that is then stopped.
fn wharf_with_a_dead_upstream() -> (Upstream, Wharf) {
    let mut up = Upstream::plain();
    let wharf = Wharf::for_upstream(&up);
    up.stop();
    (up, wharf)
}

#[test]
fn skopeo_shows_why_the_upstream_is_unavailable() {
    let img = &images().hello;
    let (_up, wharf) = wharf_with_a_dead_upstream();
    let out = Skopeo::new().copy_direct(&wharf.host_port(), &img.reference(), &[]);
    failed_saying(&out.out, &reason("oracle"), "skopeo copy from wharf");
}

#[test]
fn podman_shows_why_the_mirror_failed() {
    let img = &images().hello;
    let (_up, wharf) = wharf_with_a_dead_upstream();
    // podman tries the mirror, then the (dead) registry itself, and reports both.
    let podman = Podman::mirror(&wharf.host_port());
    let out = podman.pull(&format!("{REGISTRY_NAME}/{}", img.reference()), &[]);
    failed_saying(&out, &reason("oracle"), "podman pull through the mirror");
}

#[test]
fn ctr_shows_why_the_mirror_failed() {
    let img = &images().hello;
    let (_up, wharf) = wharf_with_a_dead_upstream();
    let ctr = Containerd::start();
    ctr.mirror_hosts(
        REGISTRY_NAME,
        &format!("http://{}", dead_host_port()),
        &wharf.url(),
    );
    // containerd resolves with HEAD: the reason cannot be in a body.
    let out = ctr.pull(&format!("{REGISTRY_NAME}/{}", img.reference()), &[]);
    failed_saying(&out, &reason("oracle"), "ctr pull through the mirror");
}

#[test]
fn error_answers_and_stale_tags_carry_warning_headers() {
    let img = &images().hello;
    let mut up = Upstream::plain();
    // tag_ttl 0s: every tag request revalidates, so the outage is met.
    let wharf = Wharf::builder()
        .upstream(UpstreamCfg::oracle(&up).tag_ttl("0s"))
        .start();
    let http = Http::new().timeout(Duration::from_secs(60));
    let accept = [("Accept", ACCEPT_ALL_MANIFESTS)];
    let tag = format!("{}/v2/{}/manifests/{}", wharf.url(), img.repo, img.tag);
    let warm = http.get(&tag, &accept);
    assert_eq!(warm.status, 200, "{}", warm.describe());
    assert!(warm.headers.get("Warning").is_none(), "{}", warm.describe());
    up.stop();

    for head in [false, true] {
        let r = if head {
            http.head(&tag, &accept)
        } else {
            http.get(&tag, &accept)
        };
        assert_eq!(r.status, 200, "stale-if-error: {}", r.describe());
        assert_eq!(
            r.header("Docker-Content-Digest").as_deref(),
            Some(img.manifest.digest.as_str())
        );
        let warnings: Vec<&str> = r
            .headers
            .get_all("Warning")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        assert_eq!(warnings.len(), 2, "{}", r.describe());
        assert_eq!(warnings[0], r#"110 - "Response is Stale""#);
        assert!(
            warnings[1].starts_with(r#"299 - ""#)
                && warnings[1].contains(&format!("{}:{}", img.repo, img.tag))
                && warnings[1].contains(&reason("oracle")),
            "the stale answer says which tag and why: {warnings:?}"
        );
    }

    // Not cached: an error, whose message is in a Warning as well as in the body.
    let set = images();
    let uncached = format!(
        "{}/v2/{}/manifests/{}",
        wharf.url(),
        set.serverjre.repo,
        set.serverjre.manifest.digest
    );
    for head in [false, true] {
        let r = if head {
            http.head(&uncached, &accept)
        } else {
            http.get(&uncached, &accept)
        };
        assert!(
            [502, 503, 504].contains(&r.status),
            "uncached with the upstream down: {}",
            r.describe()
        );
        let warning = r.header("Warning").unwrap_or_default();
        assert!(
            warning.starts_with(r#"299 - ""#) && warning.contains(&reason("oracle")),
            "the error's Warning names the upstream and why: {}",
            r.describe()
        );
    }
}

/// An upstream that serves `library/hello:latest`, as Docker Hub serves `hello`.
fn hub_like_upstream() -> (Upstream, Image) {
    let up = Upstream::builder().storage(Storage::Empty).start();
    let http = Http::new();
    let img = Pusher {
        base: up.url(),
        http: &http,
    }
    .image(&ImageSpec::small(), "library/hello", "latest", &[]);
    (up, img)
}

/// wharf with `up` as its default upstream, answering to `docker.io` (so Docker Hub's
/// `library/` rule applies), and the `daemon.json` that `wharf client-config docker` writes
/// for it.
fn wharf_for_docker(up: &Upstream) -> (Wharf, String) {
    let wharf = Wharf::builder()
        .upstream(
            UpstreamCfg::new("hub", &up.url())
                .prefixes(&["docker.io"])
                .default(true),
        )
        .start();
    let out_dir = temp_dir("docker-kit");
    let out = run(
        Command::new(wharf_bin())
            .arg("client-config")
            .arg("docker")
            .arg("--config")
            .arg(wharf.config_path())
            .arg("--mirror")
            .arg(wharf.host_port())
            .arg("--out")
            .arg(out_dir.path()),
        Duration::from_secs(60),
    )
    .expect_ok("wharf client-config docker --out");
    let daemon_json = std::fs::read_to_string(out_dir.path().join("daemon.json"))
        .unwrap_or_else(|e| panic!("daemon.json not written ({e}):\n{out}"));
    (wharf, daemon_json)
}

#[test]
fn docker_pulls_through_the_generated_daemon_json_mirror() {
    let (up, img) = hub_like_upstream();
    let (wharf, daemon_json) = wharf_for_docker(&up);
    let docker = Docker::start(&daemon_json);
    assert_eq!(
        docker.mirrors(),
        vec![format!("{}/", wharf.url())],
        "dockerd took wharf as its mirror from:\n{daemon_json}"
    );

    let m = up.mark();
    docker
        .pull("hello:latest")
        .expect_ok("docker pull hello:latest");
    assert!(
        docker
            .repo_digests("hello:latest")
            .contains(&format!("hello@{}", img.manifest.digest)),
        "docker's digest is the upstream's {}: {:?}",
        img.manifest.digest,
        docker.repo_digests("hello:latest")
    );
    // Only wharf knows the upstream's address (Hub is loopback-refused inside dockerd's
    // namespace), so what reached it came through wharf, as `library/hello`.
    let reqs = expect::upstream_requests(&up, m, "docker pull through wharf");
    expect::each_blob_fetched_once(&reqs, &img.blobs(), "docker pull through wharf");
    assert!(
        reqs.iter()
            .filter(|r| r.path_only().starts_with("/v2/") && r.path_only() != "/v2/")
            .all(|r| r.path_only().starts_with("/v2/library/hello/")),
        "{reqs:#?}"
    );
    drop(docker);

    // A second daemon, empty, is served from wharf's cache.
    let m = up.mark();
    let again = Docker::start(&daemon_json);
    again
        .pull("hello:latest")
        .expect_ok("docker pull from wharf's cache");
    let reqs = expect::upstream_requests(&up, m, "second docker pull");
    expect::served_from_cache(&reqs, "second docker pull (fresh dockerd)");
}

#[test]
fn docker_shows_why_when_the_upstream_is_down() {
    let (mut up, _img) = hub_like_upstream();
    let (wharf, daemon_json) = wharf_for_docker(&up);
    let docker = Docker::start(&daemon_json);
    up.stop();

    // Through the mirror: dockerd moves on to Docker Hub after any mirror error and the CLI
    // shows Hub's error only; wharf's reason is in dockerd's log, where an operator looks.
    let out = docker.pull("hello:latest");
    assert!(!out.ok(), "{out}");
    let log = docker.log();
    let moved_on = log
        .lines()
        .find(|l| l.contains("Attempting next endpoint for pull after error"))
        .unwrap_or_else(|| panic!("dockerd did not log the mirror's failure:\n{log}"));
    assert!(
        moved_on.contains(&reason("hub")),
        "dockerd's log should say why wharf failed: {moved_on}"
    );

    // Pulling from wharf by its address (an insecure registry in the same daemon.json): the
    // CLI shows the reason itself.
    let out = docker.pull(&format!("{}/hello:latest", wharf.host_port()));
    failed_saying(&out, &reason("hub"), "docker pull from wharf directly");
}
