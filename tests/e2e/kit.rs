//! The client and deployment kit as shipped: what `wharf client-config` prints is used as is by
//! podman (a registries.conf.d drop-in) and by `ctr --hosts-dir`; `wharf prefetch` warms the
//! cache so a later pull costs the upstream nothing; and the files in `deploy/` are accepted by
//! the tools that read them and agree with the configuration they ship. How the commands behave
//! at the edges (a closed pipe, a bad argument, a relative path) is in `kit/cli.rs`.
//!
//! The generated client configs name the real registry host, `container-registry.oracle.com`,
//! which is not reachable from here and does not hold these images: a pull that succeeds came
//! through wharf. A second pull from a fresh client that costs the upstream no blob proves it
//! came from wharf's cache (containerd's `server` fallback is the upstream itself, so this is the
//! check that tells the two apart). The checks of `deploy/` are in `kit/deploy.rs`.

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

use std::process::Command;
use std::time::Duration;

use wharf_e2e::process::{CmdOut, run};
use wharf_e2e::util::{temp_dir, write_file};
use wharf_e2e::wharf::wharf_bin;
use wharf_e2e::{Containerd, Http, Kind, Podman, REGISTRY_NAME, Upstream, Wharf, expect, images};

/// `wharf ARGS`, bounded.
fn wharf(args: &[&str]) -> CmdOut {
    run(
        Command::new(wharf_bin()).args(args),
        Duration::from_secs(300),
    )
}

/// `wharf client-config CLIENT --config <wharf's file> --mirror 127.0.0.1:PORT EXTRA`.
fn client_config(w: &Wharf, client: &str, extra: &[&str]) -> CmdOut {
    let config = w.config_path().display().to_string();
    let host_port = w.host_port();
    let mut args = vec![
        "client-config",
        client,
        "--config",
        &config,
        "--mirror",
        &host_port,
    ];
    args.extend_from_slice(extra);
    wharf(&args)
}

/// `wharf prefetch --config <wharf's file> ARGS` (the mirror address comes from the file).
fn prefetch(w: &Wharf, args: &[&str]) -> CmdOut {
    let config = w.config_path().display().to_string();
    let mut all = vec!["prefetch", "--config", &config];
    all.extend_from_slice(args);
    wharf(&all)
}

/// The numbers of a summary line `LABEL: N blobs, B bytes (...)`.
fn summary(out: &CmdOut, label: &str) -> (u64, u64) {
    let prefix = format!("{label}: ");
    let line = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {label:?} line in the summary:\n{out}"));
    let nums: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .take(2)
        .map(|s| s.parse().expect("number"))
        .collect();
    (nums[0], nums[1])
}

/// `X-Wharf-Cache` of a blob HEAD through wharf.
fn cache_header(w: &Wharf, repo: &str, digest: &str) -> Option<String> {
    let r = Http::new().head(&format!("{}/v2/{repo}/blobs/{digest}", w.url()), &[]);
    assert_eq!(r.status, 200, "HEAD blob {digest}: {}", r.describe());
    r.header("X-Wharf-Cache")
}

#[test]
fn podman_pulls_through_the_generated_drop_in() {
    let set = images();
    let img = &set.oraclelinux;
    let up = Upstream::plain();
    let w = Wharf::for_upstream(&up);
    let out = client_config(&w, "podman", &[]).expect_ok("wharf client-config podman");
    let conf = out.stdout;
    assert!(
        conf.contains(&format!("location = \"{}/oracle\"", w.host_port())),
        "the mirror location selects the upstream by its short prefix:\n{conf}"
    );
    let name = format!("{REGISTRY_NAME}/{}", img.reference());

    let m = up.mark();
    let cold = Podman::with_drop_in(&conf);
    cold.pull(&name, &[])
        .expect_ok("podman pull (generated drop-in)");
    assert_eq!(cold.image_digest(&name), img.manifest.digest);
    let reqs = expect::upstream_requests(&up, m, "podman pull, generated drop-in");
    expect::each_blob_fetched_once(&reqs, &img.blobs(), "podman pull, generated drop-in");

    let m = up.mark();
    let warm = Podman::with_drop_in(&conf);
    warm.pull(&name, &[])
        .expect_ok("second podman pull (fresh store)");
    assert_eq!(warm.image_digest(&name), img.manifest.digest);
    let reqs = expect::upstream_requests(&up, m, "second podman pull, generated drop-in");
    expect::served_from_cache(&reqs, "second podman pull, generated drop-in");
}

#[test]
fn ctr_pulls_through_the_generated_hosts_dir() {
    let set = images();
    let img = &set.oraclelinux;
    let up = Upstream::plain();
    let w = Wharf::for_upstream(&up);
    let name = format!("{REGISTRY_NAME}/{}", img.reference());
    let containerd_via_generated = || {
        let c = Containerd::start();
        let hosts = c.hosts_dir().display().to_string();
        client_config(&w, "containerd", &["--out", &hosts])
            .expect_ok("wharf client-config containerd --out");
        let file = c.hosts_dir().join(REGISTRY_NAME).join("hosts.toml");
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("{} not written: {e}", file.display()));
        let doc: toml::Table = text.parse().expect("hosts.toml is TOML");
        let host = &doc["host"][&w.url()];
        assert_eq!(
            host["capabilities"],
            toml::Value::from(vec!["pull", "resolve"]),
            "never push to the mirror:\n{text}"
        );
        assert!(host.get("skip_verify").is_none(), "{text}");
        c
    };

    let m = up.mark();
    let cold = containerd_via_generated();
    cold.pull(&name, &[])
        .expect_ok("ctr pull (generated hosts.toml)");
    assert_eq!(
        cold.image_digest(&name).as_deref(),
        Some(img.manifest.digest.as_str())
    );
    let reqs = expect::upstream_requests(&up, m, "ctr pull, generated hosts.toml");
    expect::each_blob_fetched_once(&reqs, &img.blobs(), "ctr pull, generated hosts.toml");
    drop(cold);

    let m = up.mark();
    let warm = containerd_via_generated();
    warm.pull(&name, &[])
        .expect_ok("second ctr pull (fresh containerd root)");
    assert_eq!(
        warm.image_digest(&name).as_deref(),
        Some(img.manifest.digest.as_str())
    );
    let reqs = expect::upstream_requests(&up, m, "second ctr pull, generated hosts.toml");
    expect::served_from_cache(&reqs, "second ctr pull, generated hosts.toml");
}

#[test]
fn prefetch_warms_what_a_podman_pull_then_needs() {
    let set = images();
    let img = &set.oraclelinux;
    let up = Upstream::plain();
    let w = Wharf::for_upstream(&up);
    let name = format!("{REGISTRY_NAME}/{}", img.reference());
    let layer = &img.layers[0].digest;
    assert_eq!(
        cache_header(&w, "oracle/os/oraclelinux", layer).as_deref(),
        Some("miss")
    );

    let m = up.mark();
    let first = prefetch(&w, &[&name]).expect_ok("wharf prefetch");
    let blobs = img.blobs().len() as u64;
    assert_eq!(
        summary(&first, "fetched"),
        (blobs, img.total_blob_bytes()),
        "{first}"
    );
    assert_eq!(summary(&first, "already cached"), (0, 0), "{first}");
    let reqs = expect::upstream_requests(&up, m, "first prefetch");
    expect::each_blob_fetched_once(&reqs, &img.blobs(), "first prefetch");
    // One upstream request per cold blob: the GET, no HEAD before it.
    for b in img.blobs() {
        let asked: Vec<_> = reqs
            .iter()
            .filter(|r| r.kind() == Kind::Blob && r.path.contains(&b.digest))
            .collect();
        assert_eq!(asked.len(), 1, "blob {}: {asked:#?}", b.digest);
    }
    assert_eq!(
        cache_header(&w, "oracle/os/oraclelinux", layer).as_deref(),
        Some("hit")
    );

    // The pull a rollout makes afterwards: no blob reaches the upstream.
    let conf = client_config(&w, "podman", &[])
        .expect_ok("wharf client-config podman")
        .stdout;
    let m = up.mark();
    let podman = Podman::with_drop_in(&conf);
    podman
        .pull(&name, &[])
        .expect_ok("podman pull after prefetch");
    assert_eq!(podman.image_digest(&name), img.manifest.digest);
    let reqs = expect::upstream_requests(&up, m, "podman pull after prefetch");
    expect::served_from_cache(&reqs, "podman pull after prefetch");

    // Again: nothing is fetched, and the summary says so.
    let m = up.mark();
    let again = prefetch(&w, &[&name]).expect_ok("second wharf prefetch");
    assert_eq!(summary(&again, "fetched"), (0, 0), "{again}");
    assert_eq!(
        summary(&again, "already cached"),
        (blobs, img.total_blob_bytes()),
        "{again}"
    );
    let reqs = expect::upstream_requests(&up, m, "second prefetch");
    expect::served_from_cache(&reqs, "second prefetch");
    assert!(
        !reqs.iter().any(|r| r.kind() == Kind::Blob),
        "not even a blob HEAD: {reqs:#?}"
    );
}

#[test]
fn prefetch_takes_the_platforms_asked_for() {
    let set = images();
    let multi = &set.multiarch;
    let (arm, amd) = (multi.child("arm64"), multi.child("amd64"));
    let up = Upstream::plain();
    let w = Wharf::for_upstream(&up);
    let name = format!("{REGISTRY_NAME}/{}", multi.reference());

    let m = up.mark();
    let out = prefetch(&w, &["--platform", "linux/arm64", &name]).expect_ok("prefetch arm64");
    assert_eq!(
        summary(&out, "fetched"),
        (arm.blobs().len() as u64, arm.total_blob_bytes()),
        "{out}"
    );
    let reqs = expect::upstream_requests(&up, m, "prefetch --platform linux/arm64");
    expect::each_blob_fetched_once(&reqs, &arm.blobs(), "prefetch arm64");
    let got = expect::blob_gets_by_digest(&reqs);
    assert!(
        amd.layers.iter().all(|l| !got.contains_key(&l.digest)),
        "amd64 layers fetched for an arm64 prefetch: {got:#?}"
    );

    // Every platform: only the amd64 child's blobs are new.
    let m = up.mark();
    let list = temp_dir("kit-list");
    let file = list.path().join("images.txt");
    write_file(&file, format!("# images for the rollout\n{name}\n\n"));
    let out = prefetch(
        &w,
        &[
            "--all-platforms",
            "--from-file",
            &file.display().to_string(),
        ],
    )
    .expect_ok("prefetch --all-platforms --from-file");
    assert_eq!(
        summary(&out, "already cached"),
        (arm.blobs().len() as u64, arm.total_blob_bytes()),
        "{out}"
    );
    assert_eq!(
        summary(&out, "fetched"),
        (amd.blobs().len() as u64, amd.total_blob_bytes()),
        "{out}"
    );
    let reqs = expect::upstream_requests(&up, m, "prefetch --all-platforms");
    expect::each_blob_fetched_once(&reqs, &amd.blobs(), "prefetch --all-platforms");
}

#[test]
fn prefetch_fails_loudly_and_still_warms_the_rest() {
    let set = images();
    let img = &set.oraclelinux;
    let up = Upstream::plain();
    let w = Wharf::for_upstream(&up);
    let good = format!("{REGISTRY_NAME}/{}", img.reference());
    let missing = format!("{REGISTRY_NAME}/os/oraclelinux:no-such-tag");
    let unknown = "ghcr.io/someone/else:1";
    let out = prefetch(&w, &[&missing, &good, unknown]);
    assert!(!out.ok(), "a failed image must fail the run:\n{out}");
    assert!(
        out.stderr.contains("no-such-tag") && out.stderr.contains("ghcr.io"),
        "the failures are named:\n{out}"
    );
    assert!(out.stdout.contains("images: 1 of 3 warm"), "{out}");
    assert_eq!(
        summary(&out, "fetched"),
        (img.blobs().len() as u64, img.total_blob_bytes()),
        "{out}"
    );
}

#[path = "kit/cli.rs"]
mod cli;
#[path = "kit/deploy.rs"]
mod deploy;
