//! Keys and certificates for tests, made with the `openssl` CLI (already on every machine that
//! runs the end-to-end tests, and what operators use, so the files are what wharf meets).
//!
//! - [`Pki`]: a root CA and an intermediate CA; [`Pki::leaf`] issues a server certificate for
//!   `127.0.0.1` / `localhost` as a chain (leaf, then intermediate), like a site certificate.
//!   Clients trust [`Pki::root`].
//! - [`self_signed`]: one self-signed server certificate that is *not* a CA (`CA:FALSE`, as
//!   webpki wants of an end entity); the file doubles as the CA bundle a client trusts.
//! - [`guide_self_signed`]: what `openssl req -x509` makes with openssl.cnf's defaults, as
//!   guides tell operators to: self-signed, and a CA (`CA:TRUE`).
//! - [`signing_key`]: a token issuer's RSA key (PKCS#8 DER for ring) and its self-signed
//!   certificate (PEM for Distribution's `rootcertbundle`, DER for a JWT `x5c` header).

use std::path::{Path, PathBuf};
use std::process::Command;

/// PEM certificate (or chain) and PEM (PKCS#8) private key of a TLS server.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A token signer's key material.
#[derive(Debug, Clone)]
pub struct SigningKey {
    pub cert_pem: PathBuf,
    pub cert_der: Vec<u8>,
    pub key_pkcs8_der: Vec<u8>,
}

/// Runs `openssl <args>` in `dir` (arguments split at spaces: file names here never hold one);
/// panics with its output if it fails.
fn openssl(dir: &Path, args: &str) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args.split_whitespace())
        .output()
        .expect("run openssl (is it installed?)");
    assert!(
        out.status.success(),
        "openssl {args} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn write(path: &Path, contents: impl AsRef<[u8]>) {
    std::fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn mkdir(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
}

/// The server extensions every leaf gets: names for loopback, and an end entity's usages.
const SERVER_EXT: &str = "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\n\
     basicConstraints=critical,CA:FALSE\n\
     keyUsage=critical,digitalSignature,keyEncipherment\n\
     extendedKeyUsage=serverAuth\n";

/// A root CA and an intermediate CA in a temporary directory (removed on drop).
pub struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::Builder::new()
            .prefix("wharf-pki-")
            .tempdir()
            .expect("create a temp dir");
        let d = dir.path();
        write(
            &d.join("ca.ext"),
            "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n\
             subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n",
        );
        openssl(
            d,
            "req -x509 -newkey rsa:2048 -nodes -days 7 -sha256 -subj \
            /CN=wharf-test-root -keyout root.key -out root.crt -addext \
            basicConstraints=critical,CA:TRUE -addext \
            keyUsage=critical,keyCertSign,cRLSign",
        );
        openssl(
            d,
            "req -newkey rsa:2048 -nodes -subj /CN=wharf-test-intermediate -keyout \
            int.key -out int.csr",
        );
        openssl(
            d,
            "x509 -req -in int.csr -CA root.crt -CAkey root.key -set_serial 2 -days \
            7 -sha256 -extfile ca.ext -out int.crt",
        );
        Pki { dir }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The root CA certificate: what a client trusts (`ca_file`, `certs.d/<host>/ca.crt`).
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root.crt")
    }

    /// A folder holding only `ca.crt` (the root), as podman's `--cert-dir` wants it.
    pub fn cert_dir(&self) -> PathBuf {
        let d = self.dir.path().join("certs.d");
        mkdir(&d);
        write(&d.join("ca.crt"), read(&self.root()));
        d
    }

    /// A server certificate with serial `serial`, signed by the intermediate: `<name>.crt`
    /// (leaf, then intermediate) and `<name>.key`.
    pub fn leaf(&self, name: &str, serial: u32) -> TlsFiles {
        let d = self.dir.path();
        write(
            &d.join("leaf.ext"),
            format!("{SERVER_EXT}authorityKeyIdentifier=keyid\n"),
        );
        let (key, csr, only) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.leaf.crt"),
        );
        openssl(
            d,
            &format!(
                "req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout {key} -out \
                {csr}"
            ),
        );
        let serial = serial.to_string();
        openssl(
            d,
            &format!(
                "x509 -req -in {csr} -CA int.crt -CAkey int.key -set_serial {serial} \
                -days 7 -sha256 -extfile leaf.ext -out {only}"
            ),
        );
        let mut chain = read(&d.join(&only));
        chain.extend(read(&d.join("int.crt")));
        let cert = d.join(format!("{name}.crt"));
        write(&cert, chain);
        TlsFiles {
            cert,
            key: d.join(key),
        }
    }
}

impl Default for Pki {
    fn default() -> Pki {
        Pki::new()
    }
}

/// A self-signed server certificate (`server.crt`, `server.key`) in `dir`.
pub fn self_signed(dir: &Path) -> TlsFiles {
    mkdir(dir);
    write(
        &dir.join("server.cnf"),
        format!(
            "[req]\ndistinguished_name = dn\nx509_extensions = v3\nprompt = no\n\
             [dn]\nCN = 127.0.0.1\n[v3]\n{}subjectKeyIdentifier = hash\n",
            SERVER_EXT.replace('=', " = ")
        ),
    );
    openssl(
        dir,
        "req -x509 -newkey rsa:2048 -nodes -days 7 -sha256 -config server.cnf \
        -keyout server.key -out server.crt",
    );
    TlsFiles {
        cert: dir.join("server.crt"),
        key: dir.join("server.key"),
    }
}

/// A certificate made the way guides make a registry's: `openssl req -x509 -newkey rsa:2048
/// -nodes -days 1 -subj /CN=<cn>`, plus `-addext <ext>` for each of `extensions`, with
/// openssl.cnf's defaults, so it is self-signed *and* a CA (`v3_ca` gives it
/// `basicConstraints=critical,CA:TRUE`), which webpki refuses as a server certificate.
/// `<name>.crt` and `<name>.key` in `dir`.
pub fn guide_self_signed(dir: &Path, name: &str, cn: &str, extensions: &[&str]) -> TlsFiles {
    mkdir(dir);
    let mut args = format!(
        "req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN={cn} -keyout {name}.key -out \
         {name}.crt"
    );
    for ext in extensions {
        args += &format!(" -addext {ext}");
    }
    openssl(dir, &args);
    TlsFiles {
        cert: dir.join(format!("{name}.crt")),
        key: dir.join(format!("{name}.key")),
    }
}

/// An RSA-2048 signing key with a self-signed certificate, in `dir`.
pub fn signing_key(dir: &Path) -> SigningKey {
    mkdir(dir);
    openssl(
        dir,
        "req -x509 -newkey rsa:2048 -nodes -days 7 -sha256 -subj \
        /CN=wharf-test-token-signer -keyout token.key -out token.crt",
    );
    openssl(
        dir,
        "pkcs8 -topk8 -nocrypt -in token.key -outform DER -out token.pk8.der",
    );
    openssl(dir, "x509 -in token.crt -outform DER -out token.crt.der");
    SigningKey {
        cert_pem: dir.join("token.crt"),
        cert_der: read(&dir.join("token.crt.der")),
        key_pkcs8_der: read(&dir.join("token.pk8.der")),
    }
}
