//! Real signing parts for the tests: a throwaway GnuPG home per test (`GNUPGHOME` in a
//! temporary directory, its agent stopped on drop), keys made by `gpg --batch`, signatures made
//! by `skopeo standalone-sign` (containers/image's own signing code, through gpgme) or by
//! `gpg --sign` when a test needs a message skopeo would not write.

#![allow(dead_code, reason = "each test file uses a different part of it")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

use wharf_oci::Digest;

/// An OCI image manifest as registries serve them; its bytes are what a signature signs.
pub(crate) const MANIFEST: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;

pub(crate) fn require(tool: &str, package: &str) {
    let found = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "`{tool}` is not installed: install the Debian package `{package}` (tests/run.sh does)"
    );
}

/// A GnuPG home of its own, in a temporary directory.
pub(crate) struct Gpg {
    home: tempfile::TempDir,
}

impl Gpg {
    pub(crate) fn new() -> Gpg {
        require("gpg", "gnupg");
        require("skopeo", "skopeo");
        // Short, so the agent's socket path stays within the 108 bytes a Unix socket allows.
        let home = tempfile::Builder::new()
            .prefix("wsg")
            .tempdir_in("/tmp")
            .expect("tempdir");
        std::fs::set_permissions(
            home.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .expect("chmod");
        Gpg { home }
    }

    pub(crate) fn dir(&self) -> &Path {
        self.home.path()
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.home.path().join(name)
    }

    fn run(&self, program: &str, args: &[&str]) -> Output {
        let out = Command::new(program)
            .args(args)
            .env("GNUPGHOME", self.home.path())
            .output()
            .expect(program);
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    pub(crate) fn gpg(&self, args: &[&str]) -> Output {
        let mut all = vec!["--batch", "--no-tty", "--passphrase", ""];
        all.extend_from_slice(args);
        self.run("gpg", &all)
    }

    /// Makes a key without passphrase (`algo` as `rsa2048` or `ed25519`, `expire` as `never` or
    /// `1d`) and returns its fingerprint. `extra` goes before the command (`--faked-system-time`).
    pub(crate) fn gen_key_with(
        &self,
        email: &str,
        algo: &str,
        expire: &str,
        extra: &[&str],
    ) -> String {
        let uid = format!("Wharf test <{email}>");
        let mut args = extra.to_vec();
        args.extend(["--quick-gen-key", &uid, algo, "default", expire]);
        self.gpg(&args);
        self.fingerprints(email)[0].clone()
    }

    pub(crate) fn gen_key(&self, email: &str, algo: &str) -> String {
        self.gen_key_with(email, algo, "never", &[])
    }

    /// Every fingerprint of the key with this e-mail: the primary first, then subkeys.
    pub(crate) fn fingerprints(&self, email: &str) -> Vec<String> {
        let out = self.gpg(&["--with-colons", "--list-keys", email]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("fpr:"))
            .map(|l| l.split(':').nth(9).expect("fpr field").to_owned())
            .collect()
    }

    /// Adds a signing subkey and returns its fingerprint.
    pub(crate) fn add_signing_subkey(&self, email: &str, algo: &str) -> String {
        let primary = self.fingerprints(email)[0].clone();
        self.gpg(&["--quick-add-key", &primary, algo, "sign", "never"]);
        self.fingerprints(email).last().expect("subkey").clone()
    }

    /// `gpg --export [--armor]` of the given keys.
    pub(crate) fn export(&self, keys: &[&str], armor: bool) -> Vec<u8> {
        let mut args = vec!["--export"];
        if armor {
            args.push("--armor");
        }
        args.extend_from_slice(keys);
        let out = self.gpg(&args);
        assert!(!out.stdout.is_empty(), "nothing exported for {keys:?}");
        out.stdout
    }

    /// Writes `bytes` to a file in the home and returns its path.
    pub(crate) fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, bytes).expect("write");
        p
    }

    /// `skopeo standalone-sign`: the signature `skopeo copy --sign-by` would store.
    pub(crate) fn skopeo_sign(
        &self,
        manifest: &[u8],
        reference: &str,
        fingerprint: &str,
    ) -> Vec<u8> {
        let m = self.write("manifest.json", manifest);
        let sig = self.path("signature-1");
        self.run(
            "skopeo",
            &[
                "standalone-sign",
                m.to_str().expect("utf-8"),
                reference,
                fingerprint,
                "--output",
                sig.to_str().expect("utf-8"),
            ],
        );
        std::fs::read(sig).expect("signature")
    }

    /// `skopeo standalone-verify` with this home's keyring: its stdout, or its stderr on failure.
    pub(crate) fn skopeo_verify(
        &self,
        manifest: &[u8],
        reference: &str,
        fingerprint: &str,
        signature: &[u8],
    ) -> Result<String, String> {
        let m = self.write("verify-manifest.json", manifest);
        let s = self.write("verify-signature", signature);
        let out = Command::new("skopeo")
            .args(["standalone-verify"])
            .arg(&m)
            .arg(reference)
            .arg(fingerprint)
            .arg(&s)
            .env("GNUPGHOME", self.home.path())
            .output()
            .expect("skopeo");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// `gpg` signing `data` with `key`: `how` holds the command (`--sign`, `--detach-sign`,
    /// `--clearsign`) and its options.
    pub(crate) fn gpg_sign(&self, key: &str, data: &[u8], how: &[&str]) -> Vec<u8> {
        let input = self.write("to-sign", data);
        let output = self.path("signed.gpg");
        let _ = std::fs::remove_file(&output);
        let mut args = vec!["--local-user", key];
        args.extend_from_slice(how);
        args.extend([
            "--output",
            output.to_str().expect("utf-8"),
            input.to_str().expect("utf-8"),
        ]);
        self.gpg(&args);
        std::fs::read(output).expect("signed")
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        // Stops the agent this home started; it would outlive the test otherwise.
        let _ = Command::new("gpgconf")
            .args(["--kill", "all"])
            .env("GNUPGHOME", self.home.path())
            .output();
    }
}

/// A simple-signing document as containers/image writes it.
pub(crate) fn document(digest: &Digest, reference: &str, typ: &str) -> String {
    format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"{reference}"}},"image":{{"docker-manifest-digest":"{digest}"}},"type":"{typ}"}},"optional":{{"creator":"wharf test","timestamp":1700000000}}}}"#
    )
}

pub(crate) fn days_from_now(days: i64) -> SystemTime {
    let now = SystemTime::now();
    let d = std::time::Duration::from_secs(days.unsigned_abs() * 86_400);
    if days >= 0 { now + d } else { now - d }
}

/// Unix seconds `days` ago, for `gpg --faked-system-time`.
pub(crate) fn epoch_days_ago(days: u64) -> String {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    format!("{}!", t - days * 86_400)
}
