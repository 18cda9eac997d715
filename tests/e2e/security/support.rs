//! What the security tests need beyond the harness: a certificate chain (root CA ->
//! intermediate -> leaf, like a site certificate), a wharf that may speak TLS and ask for
//! credentials, a fake upstream that records every request's `Authorization`, and a TLS client
//! that shows which certificate it was given.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wharf_e2e::http::Http;
use wharf_e2e::process::{Proc, run};
use wharf_e2e::util::{free_port, tail, temp_dir, wait_for, write_file};
use wharf_e2e::wharf::{WharfBuilder, wharf_bin};

fn openssl(dir: &Path, args: &[&str]) {
    run(
        Command::new("openssl").current_dir(dir).args(args),
        Duration::from_secs(60),
    )
    .expect_ok(&format!("openssl {}", args.join(" ")));
}

/// A root CA and an intermediate CA in a temp dir; [`Pki::leaf`] issues server certificates.
pub struct Pki {
    pub dir: tempfile::TempDir,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = temp_dir("pki");
        let d = dir.path();
        write_file(
            &d.join("ca.ext"),
            "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n\
             subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n",
        );
        openssl(
            d,
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
                "/CN=wharf-e2e-root",
                "-keyout",
                "root.key",
                "-out",
                "root.crt",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        openssl(
            d,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=wharf-e2e-intermediate",
                "-keyout",
                "int.key",
                "-out",
                "int.csr",
            ],
        );
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "int.csr",
                "-CA",
                "root.crt",
                "-CAkey",
                "root.key",
                "-set_serial",
                "2",
                "-days",
                "7",
                "-sha256",
                "-extfile",
                "ca.ext",
                "-out",
                "int.crt",
            ],
        );
        Pki { dir }
    }

    /// The root CA certificate: what a client puts in `certs.d/<host:port>/ca.crt`.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root.crt")
    }

    /// A folder holding only `ca.crt` (the root), as podman's `--cert-dir` wants it.
    pub fn cert_dir(&self) -> PathBuf {
        let d = self.dir.path().join("certs.d");
        write_file(
            &d.join("ca.crt"),
            std::fs::read(self.root()).expect("read root.crt"),
        );
        d
    }

    /// A server certificate for 127.0.0.1 / localhost with serial `serial`, written as
    /// `<name>.crt` (leaf, then the intermediate: a chain) and `<name>.key`.
    pub fn leaf(&self, name: &str, serial: u32) -> (PathBuf, PathBuf) {
        let d = self.dir.path();
        write_file(
            &d.join("leaf.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n\
             authorityKeyIdentifier=keyid\n",
        );
        let (key, csr, only) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.leaf.crt"),
        );
        openssl(
            d,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
                &key,
                "-out",
                &csr,
            ],
        );
        let serial = serial.to_string();
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "int.crt",
                "-CAkey",
                "int.key",
                "-set_serial",
                &serial,
                "-days",
                "7",
                "-sha256",
                "-extfile",
                "leaf.ext",
                "-out",
                &only,
            ],
        );
        let mut chain = std::fs::read(d.join(&only)).expect("read leaf");
        chain.extend(std::fs::read(d.join("int.crt")).expect("read intermediate"));
        let cert = d.join(format!("{name}.crt"));
        write_file(&cert, chain);
        (cert, d.join(key))
    }
}

/// `htpasswd -cbB FILE user password`.
pub fn htpasswd(file: &Path, user: &str, password: &str) {
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
pub struct SecureWharf {
    _dir: tempfile::TempDir,
    pub port: u16,
    pub config: PathBuf,
    log: PathBuf,
    proc: Option<Proc>,
    tls: bool,
}

impl SecureWharf {
    /// `builder`'s config with `server_extra` lines added to `[server]`.
    pub fn start(builder: WharfBuilder, server_extra: &str, ca: Option<&Path>) -> SecureWharf {
        let dir = temp_dir("wharf-sec");
        let (port, admin) = (free_port(), free_port());
        let (config, env) = builder.write_config(dir.path(), port, admin);
        let text = std::fs::read_to_string(&config).expect("read config");
        let text = text.replacen("[server]\n", &format!("[server]\n{server_extra}\n"), 1);
        write_file(&config, text);
        let log = dir.path().join("wharf.log");
        let mut cmd = Command::new(wharf_bin());
        cmd.arg("serve").arg("--config").arg(&config);
        cmd.envs(env);
        let mut proc = Proc::spawn("wharf", cmd, &log, &log);
        let tls = ca.is_some();
        let scheme = if tls { "https" } else { "http" };
        let url = format!("{scheme}://127.0.0.1:{port}/v2/");
        let http = match ca {
            Some(ca) => Http::with_ca(ca),
            None => Http::new(),
        }
        .timeout(Duration::from_secs(5));
        let ready = wait_for(Duration::from_secs(20), Duration::from_millis(50), || {
            if let Some(st) = proc.exited() {
                panic!("wharf exited ({st}) during start-up:\n{}", tail(&log, 100));
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
            panic!("wharf not ready at {url}:\n{}", tail(&log, 100));
        }
        SecureWharf {
            _dir: dir,
            port,
            config,
            log,
            proc: Some(proc),
            tls,
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    pub fn host_port(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.proc.as_ref().and_then(Proc::pid).expect("running")
    }

    /// See `Wharf::settled_log`.
    pub fn settled_log(&self) -> String {
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

/// One request a fake server saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
}

pub type Reply = (u16, Vec<(String, String)>, Vec<u8>);
type Handler = Arc<dyn Fn(&Seen, SocketAddr) -> Reply + Send + Sync>;

/// A tiny HTTP/1.1 server on 127.0.0.1 that records every request and answers with `handler`.
pub struct Fake {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    _stop: tokio::sync::oneshot::Sender<()>,
    _thread: std::thread::JoinHandle<()>,
}

impl Fake {
    pub fn start(handler: impl Fn(&Seen, SocketAddr) -> Reply + Send + Sync + 'static) -> Fake {
        let handler: Handler = Arc::new(handler);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind fake");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let rec = seen.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                loop {
                    let (stream, _) = tokio::select! {
                        a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                        _ = &mut stopped => return,
                    };
                    let (handler, rec) = (handler.clone(), rec.clone());
                    tokio::spawn(async move {
                        let svc = service_fn(move |req: http::Request<Incoming>| {
                            let seen = Seen {
                                method: req.method().to_string(),
                                path: req
                                    .uri()
                                    .path_and_query()
                                    .map(|p| p.to_string())
                                    .unwrap_or_default(),
                                authorization: req
                                    .headers()
                                    .get("authorization")
                                    .and_then(|v| v.to_str().ok())
                                    .map(str::to_owned),
                            };
                            rec.lock().expect("seen").push(seen.clone());
                            let (status, headers, body) = handler(&seen, addr);
                            let mut resp = http::Response::builder().status(status);
                            for (k, v) in headers {
                                resp = resp.header(k, v);
                            }
                            let resp = resp
                                .body(Full::new(Bytes::from(body)))
                                .expect("fake response");
                            async move { Ok::<_, Infallible>(resp) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
            });
        });
        Fake {
            addr,
            seen,
            _stop: stop,
            _thread: thread,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen").clone()
    }
}

/// A TLS client trusting `ca`: connects, and returns the leaf certificate it was given (DER),
/// the ALPN protocol agreed, and the open stream for requests of one's own.
pub async fn tls_connect(
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
pub async fn get_keep_alive<S>(stream: &mut S, path: &str) -> u16
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
