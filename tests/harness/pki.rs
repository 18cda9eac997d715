//! Keys and certificates, made with the `openssl` CLI.
//!
//! - [`server_cert`]: a self-signed TLS certificate for `127.0.0.1` that is *not* a CA
//!   (`CA:FALSE`), because rustls/webpki rejects a CA certificate used as an end-entity one; the
//!   file doubles as the CA bundle a client trusts (wharf's `ca_file`).
//! - [`signing_key`]: the token issuer's RSA key (PKCS#8 DER for ring) and its self-signed
//!   certificate (PEM for Distribution's `rootcertbundle`, DER for the JWT `x5c` header).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::run;
use crate::util::write_file;

/// PEM certificate and PEM (PKCS#8) private key of a TLS server.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The token signer's key material.
#[derive(Debug, Clone)]
pub struct SigningKey {
    pub cert_pem: PathBuf,
    pub cert_der: Vec<u8>,
    pub key_pkcs8_der: Vec<u8>,
}

fn openssl(args: &[&str], what: &str) {
    run(Command::new("openssl").args(args), Duration::from_secs(60)).expect_ok(what);
}

/// A self-signed server certificate in `dir` with SAN `IP:127.0.0.1, IP:::1, DNS:localhost`.
pub fn server_cert(dir: &Path) -> TlsFiles {
    std::fs::create_dir_all(dir).expect("mkdir tls dir");
    let cnf = dir.join("server.cnf");
    write_file(
        &cnf,
        "[req]\n\
         distinguished_name = dn\n\
         x509_extensions = v3\n\
         prompt = no\n\
         [dn]\n\
         CN = 127.0.0.1\n\
         [v3]\n\
         subjectAltName = IP:127.0.0.1,IP:::1,DNS:localhost\n\
         basicConstraints = critical,CA:FALSE\n\
         keyUsage = critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage = serverAuth\n\
         subjectKeyIdentifier = hash\n",
    );
    let files = TlsFiles {
        cert: dir.join("server.crt"),
        key: dir.join("server.key"),
    };
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "7",
            "-sha256",
            "-config",
            path_str(&cnf),
            "-keyout",
            path_str(&files.key),
            "-out",
            path_str(&files.cert),
        ],
        "openssl req (server cert)",
    );
    files
}

/// An RSA-2048 signing key with a self-signed certificate, in `dir`.
pub fn signing_key(dir: &Path) -> SigningKey {
    std::fs::create_dir_all(dir).expect("mkdir signing dir");
    let key_pem = dir.join("token.key");
    let cert_pem = dir.join("token.crt");
    let key_der = dir.join("token.pk8.der");
    let cert_der = dir.join("token.crt.der");
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "7",
            "-sha256",
            "-subj",
            "/CN=wharf-e2e-token-signer",
            "-keyout",
            path_str(&key_pem),
            "-out",
            path_str(&cert_pem),
        ],
        "openssl req (token signer)",
    );
    openssl(
        &[
            "pkcs8",
            "-topk8",
            "-nocrypt",
            "-in",
            path_str(&key_pem),
            "-outform",
            "DER",
            "-out",
            path_str(&key_der),
        ],
        "openssl pkcs8",
    );
    openssl(
        &[
            "x509",
            "-in",
            path_str(&cert_pem),
            "-outform",
            "DER",
            "-out",
            path_str(&cert_der),
        ],
        "openssl x509 -outform DER",
    );
    SigningKey {
        cert_der: std::fs::read(&cert_der).expect("read cert der"),
        key_pkcs8_der: std::fs::read(&key_der).expect("read key der"),
        cert_pem,
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}
