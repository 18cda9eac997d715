//! What the security tests need beyond the harness and `wharf_testkit` (whose `Pki` makes the
//! certificate chain and whose `FakeRegistry` records every request's `Authorization`): a wharf
//! that may speak TLS and ask for credentials, and a TLS client that shows which certificate it
//! was given.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wharf_e2e::http::Http;
use wharf_e2e::process::{Proc, run};
use wharf_e2e::util::{free_ports, tail, temp_dir, wait_for, write_file};
use wharf_e2e::wharf::{WharfBuilder, wharf_bin};

/// `htpasswd -cbB FILE user password`.
pub(crate) fn htpasswd(file: &Path, user: &str, password: &str) {
    run(
        Command::new("htpasswd")
            .args(["-cbB"])
            .arg(file)
            .args([user, password]),
        Duration::from_secs(30),
    )
    .expect_ok("htpasswd -cbB");
}

/// A wharf whose readiness is a `/v2/` answering 200 or 401 (with wharf's header), over TLS
/// when `ca` is given.
pub(crate) struct SecureWharf {
    _dir: tempfile::TempDir,
    pub port: u16,
    /// The admin listener's port (`server.admin_listen`).
    #[allow(
        dead_code,
        reason = "e2e_hosted_content asks it for garbage collection"
    )]
    pub admin: u16,
    pub config: PathBuf,
    log: PathBuf,
    proc: Option<Proc>,
    /// The environment the config needs (the builder's).
    env: Vec<(String, String)>,
    /// The CA of wharf's certificate when it speaks TLS.
    ca: Option<PathBuf>,
}

impl SecureWharf {
    /// `builder`'s config with `server_extra` lines added to `[server]`.
    pub(crate) fn start(
        builder: WharfBuilder,
        server_extra: &str,
        ca: Option<&Path>,
    ) -> SecureWharf {
        let dir = temp_dir("wharf-sec");
        let [port, admin] = free_ports();
        let (config, env) = builder.write_config(dir.path(), port, admin);
        let text = std::fs::read_to_string(&config).expect("read config");
        let text = text.replacen("[server]\n", &format!("[server]\n{server_extra}\n"), 1);
        write_file(&config, text);
        let log = dir.path().join("wharf.log");
        let mut w = SecureWharf {
            _dir: dir,
            port,
            admin,
            config,
            log,
            proc: None,
            env,
            ca: ca.map(Path::to_path_buf),
        };
        w.spawn();
        w
    }

    /// Runs `wharf serve` on the config and waits until `/v2/` answers.
    fn spawn(&mut self) {
        let mut cmd = Command::new(wharf_bin());
        cmd.arg("serve").arg("--config").arg(&self.config);
        cmd.envs(self.env.clone());
        let mut proc = Proc::spawn("wharf", cmd, &self.log, &self.log);
        let log = &self.log;
        let url = format!("{}/v2/", self.url());
        let http = match &self.ca {
            Some(ca) => Http::with_ca(ca),
            None => Http::new(),
        }
        .timeout(Duration::from_secs(5));
        let ready = wait_for(Duration::from_secs(20), Duration::from_millis(50), || {
            if let Some(st) = proc.exited() {
                panic!("wharf exited ({st}) during start-up:\n{}", tail(log, 100));
            }
            match http.try_request("GET", &url, &[], Bytes::new()) {
                Ok(r)
                    if (r.status == 200 || r.status == 401)
                        && r.header("docker-distribution-api-version").is_some() =>
                {
                    Some(())
                }
                _ => None,
            }
        });
        if ready.is_none() {
            panic!("wharf not ready at {url}:\n{}", tail(log, 100));
        }
        self.proc = Some(proc);
    }

    /// Stops wharf (SIGTERM, as a service manager does) and starts it again on the same
    /// config, ports and directories.
    #[allow(dead_code, reason = "e2e_hosted_content restarts it")]
    pub(crate) fn restart(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.stop(Duration::from_secs(10));
        }
        self.spawn();
    }

    pub(crate) fn url(&self) -> String {
        let scheme = if self.ca.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    pub(crate) fn host_port(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.proc.as_ref().and_then(Proc::pid).expect("running")
    }

    /// See `Wharf::settled_log`.
    pub(crate) fn settled_log(&self) -> String {
        wharf_e2e::util::settled_text(&self.log)
    }
}

impl Drop for SecureWharf {
    fn drop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
        if std::thread::panicking() {
            eprintln!("---- wharf log ----\n{}\n----", tail(&self.log, 200));
        }
    }
}

/// A TLS client trusting `ca`: connects, and returns the leaf certificate it was given (DER),
/// the ALPN protocol agreed, and the open stream for requests of one's own.
pub(crate) async fn tls_connect(
    port: u16,
    ca: &Path,
    alpn: &[&[u8]],
) -> (
    Vec<u8>,
    Option<Vec<u8>>,
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
) {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_file_iter(ca).expect("read ca") {
        roots.add(c.expect("ca pem")).expect("add ca");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let tls = connector.connect(name, tcp).await.expect("TLS handshake");
    let (_, conn) = tls.get_ref();
    let leaf = conn.peer_certificates().expect("peer certificates")[0].to_vec();
    let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
    (leaf, alpn, tls)
}

/// One HTTP/1.1 keep-alive `GET path` on an open stream; the status of the answer (its body,
/// of `Content-Length` bytes, is read and dropped).
pub(crate) async fn get_keep_alive<S>(stream: &mut S, path: &str) -> u16
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n");
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).await.expect("read head");
        assert!(n > 0, "connection closed before the response head");
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())
                .flatten()
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await.expect("read body");
    status
}
