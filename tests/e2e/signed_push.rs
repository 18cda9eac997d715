//! Signatures of the site's own images (issue 15 with 16): `podman push --sign-by` into a
//! hosted repository stores the signature in wharf (the X-Registry-Supports-Signatures
//! extension), and a pull with a `signedBy` policy for that repository verifies it; an image
//! pushed unsigned is refused by the same policy.

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

#[path = "security/support.rs"]
#[allow(dead_code, reason = "shared with e2e_security, which uses all of it")]
mod support;

use std::time::Duration;

use support::{SecureWharf, htpasswd};
use wharf_e2e::process::run;
use wharf_e2e::signing::{Gpg, signed_by_policy};
use wharf_e2e::util::temp_dir;
use wharf_e2e::{Http, Podman, Upstream, UpstreamCfg, Wharf, images};

const USER: &str = "alice";
const PASSWORD: &str = "sign-s3cret";
const TIMEOUT: Duration = Duration::from_secs(300);

#[test]
fn podman_push_sign_by_into_a_hosted_repository_then_pull_verifies() {
    let img = &images().hello;
    let up = Upstream::plain();
    let dir = temp_dir("signed-push");
    let file = dir.path().join("htpasswd");
    htpasswd(&file, USER, PASSWORD);
    let builder = Wharf::builder().upstream(UpstreamCfg::oracle(&up)).extra_toml(&format!(
        "[auth]\nhtpasswd = {:?}\nanonymous_pull = true\n\n[hosted]\nrepositories = [\"team/*\"]\n",
        file.display().to_string()
    ));
    let wharf = SecureWharf::start(builder, "", None);
    let host = wharf.host_port();
    let gpg = Gpg::new();
    let author = gpg.generate("site image author <site@wharf.test>");
    let key_file = dir.path().join("site.asc");
    gpg.export(&author, &key_file);

    let podman = Podman::plain(&[&host]);
    let authfile = podman.dir().join("auth.json");
    let authfile = authfile.to_str().expect("utf-8");
    let mut login = podman.command();
    login
        .args(["login", "--authfile", authfile, "-u", USER, "-p", PASSWORD])
        .arg(&host);
    run(&mut login, TIMEOUT).expect_ok("podman login");
    let mirrored = format!("{host}/oracle/{}", img.reference());
    podman
        .pull(&mirrored, &[])
        .expect_ok("podman pull through wharf");
    let push = |dest: &str, sign: bool| {
        let mut tag = podman.command();
        tag.args(["tag", &mirrored, dest]);
        run(&mut tag, TIMEOUT).expect_ok("podman tag");
        let mut cmd = podman.command();
        cmd.env("GNUPGHOME", gpg.home())
            .args(["push", "--authfile", authfile]);
        if sign {
            cmd.args(["--sign-by", &author]);
        }
        let digestfile = podman.dir().join("pushed.digest");
        cmd.arg("--digestfile").arg(&digestfile).arg(dest);
        run(&mut cmd, TIMEOUT).expect_ok("podman push");
        std::fs::read_to_string(&digestfile)
            .expect("digestfile")
            .trim()
            .to_owned()
    };
    let signed = format!("{host}/team/signed:v1");
    let unsigned = format!("{host}/team/unsigned:v1");
    let digest = push(&signed, true);
    push(&unsigned, false);

    // The signature is in wharf, under the repository and digest.
    let list = Http::new().get(
        &format!(
            "{}/extensions/v2/team/signed/signatures/{digest}",
            wharf.url(),
        ),
        &[],
    );
    assert_eq!(list.status, 200, "{}", list.text());
    let sigs = list.json()["signatures"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(sigs.len(), 1, "{}", list.text());

    let policy = signed_by_policy(&[&format!("{host}/team")], &key_file);
    let fresh = Podman::plain(&[&host]);
    fresh.set_policy(&policy);
    fresh
        .pull(&signed, &[])
        .expect_ok("podman pull of the signed hosted image with signedBy");
    let refused = fresh.pull(&unsigned, &[]);
    assert!(
        !refused.ok(),
        "an unsigned hosted image was accepted:\n{refused}"
    );
    assert!(
        refused
            .stderr
            .contains("A signature was required, but no signature exists"),
        "{refused}"
    );
}
