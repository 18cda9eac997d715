//! More real clients against hosted repositories (for `e2e_hosting`): buildah builds on an
//! image pulled through wharf and pushes the result into a hosted repository, which a fresh
//! podman pulls back by the same digest; a podman push past `hosted.quota` is refused with
//! wharf's DENIED message and stores nothing.

use std::path::Path;
use std::process::Command;

use wharf_e2e::http::{ACCEPT_ALL_MANIFESTS, Http};
use wharf_e2e::process::{CmdOut, run};
use wharf_e2e::util::temp_dir;
use wharf_e2e::{Podman, Upstream, UpstreamCfg, Wharf, images};

use super::support::{SecureWharf, htpasswd};
use super::{PASSWORD, TIMEOUT, USER, hosting_wharf};

/// `buildah ARGS` on `podman`'s storage, registries and signature policy (buildah reads the
/// same containers/* files).
fn buildah(podman: &Podman, args: &[&str]) -> CmdOut {
    let d = podman.dir();
    let mut cmd = Command::new("buildah");
    cmd.env("CONTAINERS_REGISTRIES_CONF", d.join("registries.conf"))
        .env("CONTAINERS_STORAGE_CONF", d.join("storage.conf"))
        .env("CONTAINERS_CONF", d.join("containers.conf"))
        .args(args);
    run(&mut cmd, TIMEOUT)
}

#[test]
fn buildah_pushes_a_built_image_that_a_fresh_podman_pulls_by_the_same_digest() {
    let set = images();
    let img = &set.oraclelinux;
    let up = Upstream::plain();
    let (wharf, _dir) = hosting_wharf(&up);
    let host = wharf.host_port();
    let builder = Podman::plain(&[&host]);
    let policy = builder.dir().join("policy.json");
    let policy = policy.to_str().expect("utf-8");

    // Build on an image pulled through wharf: a label makes it a new image (a new config).
    let from = buildah(
        &builder,
        &[
            "from",
            "--signature-policy",
            policy,
            "--tls-verify=false",
            &format!("docker://{host}/oracle/{}", img.reference()),
        ],
    )
    .expect_ok("buildah from (through wharf)");
    let container = from.stdout.trim().to_owned();
    buildah(
        &builder,
        &[
            "config",
            "--label",
            "org.example.built-by=buildah",
            &container,
        ],
    )
    .expect_ok("buildah config");
    buildah(
        &builder,
        &[
            "commit",
            "--signature-policy",
            policy,
            "--format",
            "oci",
            &container,
            "built",
        ],
    )
    .expect_ok("buildah commit");

    // buildah push, with the user's credentials, asking the upstream nothing.
    let hosted = format!("{host}/team/built:v1");
    let digestfile = builder.dir().join("pushed.digest");
    let creds = format!("{USER}:{PASSWORD}");
    let m = up.mark();
    buildah(
        &builder,
        &[
            "push",
            "--signature-policy",
            policy,
            "--tls-verify=false",
            "--creds",
            &creds,
            "--digestfile",
            digestfile.to_str().expect("utf-8"),
            "built",
            &format!("docker://{hosted}"),
        ],
    )
    .expect_ok("buildah push into team/built");
    assert_eq!(up.since(m).len(), 0, "a push asked the upstream");
    let digest = std::fs::read_to_string(&digestfile).expect("digestfile");
    let digest = digest.trim();
    assert!(digest.starts_with("sha256:"), "digestfile: {digest:?}");

    // A fresh podman pulls it back: that digest, buildah's label.
    let fresh = Podman::plain(&[&host]);
    fresh
        .pull(&hosted, &[])
        .expect_ok("podman pull of what buildah pushed");
    assert_eq!(fresh.image_digest(&hosted), digest, "pulled digest");
    assert_eq!(
        fresh.inspect(&hosted, "{{index .Labels \"org.example.built-by\"}}"),
        "buildah"
    );
    assert_eq!(
        up.since(m).len(),
        0,
        "hosted content came from the upstream"
    );
}

/// Files under `dir`, recursively (none if it does not exist).
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|e| {
            let p = e.path();
            if p.is_dir() { files_under(&p) } else { vec![p] }
        })
        .collect()
}

#[test]
fn a_push_past_the_quota_is_denied_with_wharfs_message_and_stores_nothing() {
    let set = images();
    let img = &set.oraclelinux; // 3 layers of 1 MiB: each alone is past the quota
    let up = Upstream::plain();
    let dir = temp_dir("hosting-quota");
    let file = dir.path().join("htpasswd");
    htpasswd(&file, USER, PASSWORD);
    let hosted_dir = dir.path().join("hosted");
    let wharf = SecureWharf::start(
        Wharf::builder()
            .upstream(UpstreamCfg::oracle(&up))
            .extra_toml(&format!(
                "[auth]\nhtpasswd = {:?}\nanonymous_pull = true\n\n[hosted]\nrepositories = [\"team/*\"]\ndir = {:?}\nquota = \"512KiB\"\n",
                file.display().to_string(),
                hosted_dir.display().to_string(),
            )),
        "",
        None,
    );
    let host = wharf.host_port();
    let podman = Podman::plain(&[&host]);
    let mirrored = format!("{host}/oracle/{}", img.reference());
    podman
        .pull(&mirrored, &[])
        .expect_ok("podman pull through wharf");
    let hosted = format!("{host}/team/big:v1");
    let mut tag = podman.command();
    tag.args(["tag", &mirrored, &hosted]);
    run(&mut tag, TIMEOUT).expect_ok("podman tag");

    let creds = format!("{USER}:{PASSWORD}");
    let mut push = podman.command();
    push.args(["push", "--creds", &creds, &hosted]);
    let out = run(&mut push, TIMEOUT);
    assert!(!out.ok(), "a push past the quota succeeded:\n{out}");
    let said = format!("{}{}", out.stdout, out.stderr);
    assert!(
        said.contains("denied")
            && said.contains("quota is reached")
            && said.contains("hosted.quota"),
        "podman did not print wharf's DENIED message:\n{out}"
    );

    // Nothing stored: no blob in the hosted store, no manifest, no tag.
    assert_eq!(
        files_under(&hosted_dir.join("blobs")),
        Vec::<std::path::PathBuf>::new(),
        "blobs stored by a refused push"
    );
    let http = Http::new();
    for path in ["/v2/team/big/manifests/v1", "/v2/team/big/tags/list"] {
        let r = http.get(
            &format!("{}{path}", wharf.url()),
            &[("Accept", ACCEPT_ALL_MANIFESTS)],
        );
        assert_eq!(r.status, 404, "{path}: {}", r.describe());
    }
}
