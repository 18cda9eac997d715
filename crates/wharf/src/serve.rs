//! `wharf serve`: builds the store, the upstream clients and the proxy from a checked
//! configuration, then serves the registry API (`server.listen`, TLS if configured) and the
//! admin API (`server.admin_listen`) until SIGINT or SIGTERM, and commits the store's metadata
//! before it exits. SIGHUP re-reads the TLS certificate and the htpasswd file; open
//! connections are not touched.

use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tracing_subscriber::EnvFilter;
use wharf_proxy::auth::ClientAuth;
use wharf_proxy::limits::Limits;
use wharf_proxy::tls::Tls;
use wharf_proxy::{Proxy, ProxyOptions, ServerOptions, Upstream, Upstreams};
use wharf_upstream::Secret;

use crate::config::{self, Config};

pub(crate) fn run(config: Config) -> ExitCode {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Lines are written by a thread of their own (logwriter.rs); `_flush` writes what is
    // queued when `run` returns.
    let (stderr, _flush) = crate::logwriter::stderr();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(stderr);
    match config.log.format {
        config::LogFormat::Text => logs.init(),
        config::LogFormat::Json => logs.json().init(),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wharf: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> Result<(), String> {
    let options = wharf_cache::StoreOptions {
        fill_inactivity_timeout: config.cache.fill_inactivity_timeout,
        max_size: config.cache.max_size,
        scrub_rate: config.cache.scrub_rate,
        ..Default::default()
    };
    let store = wharf_cache::Store::open_with(&config.cache.dir, options)
        .await
        .map_err(|e| format!("opening the store in {}: {e}", config.cache.dir.display()))?;
    let mut upstreams = Vec::new();
    for u in &config.upstream {
        upstreams
            .push(build_upstream(u, &config).map_err(|e| format!("upstream {}: {e}", u.name))?);
    }
    // One registry for every family; `/metrics` on the admin listener exports it.
    let metrics = wharf_metrics::Metrics::new(&wharf_metrics::prometheus::Registry::new())
        .map_err(|e| format!("registering metrics: {e}"))?;
    for u in &mut upstreams {
        u.client = u.client.clone().with_metrics(metrics.clone());
    }
    let auth = match &config.auth.htpasswd {
        Some(path) => Some(
            ClientAuth::from_file(path, config.auth.anonymous_pull())
                .map_err(|e| format!("auth.htpasswd: {e}"))?
                .with_rights(config.auth.rights()),
        ),
        None => None,
    };
    // Replicas of a fleet with a secret accept each other's pulls with it.
    let peer_secret = match &config.cluster {
        Some(c) => c.secret().map_err(|e| e.to_string())?,
        None => None,
    };
    let auth = match (auth, peer_secret) {
        (Some(a), Some(secret)) => Some(a.with_peer_secret(&secret)),
        (a, _) => a,
    };
    let tls = match (&config.server.tls_cert, &config.server.tls_key) {
        (Some(cert), Some(key)) => Some(Arc::new(
            Tls::load(cert, key).map_err(|e| format!("{}: {e}", e.field()))?,
        )),
        _ => None,
    };
    let hosted = match &config.hosted {
        Some(h) => Some(open_hosted(h, &config).await?),
        None => None,
    };
    let hosted_store = hosted.as_ref().map(|h| h.store().clone());
    let tier = match &config.object_store {
        Some(o) => Some(
            o.tier_config()
                .and_then(|c| {
                    wharf_tier::Tier::connect(&c)
                        .map_err(|e| crate::config::invalid("object_store", e.to_string()))
                })
                .map_err(|e| e.to_string())?,
        ),
        None => None,
    };
    let cluster = match &config.cluster {
        Some(c) => Some(start_cluster(c, &config).await?),
        None => None,
    };
    let proxy = Proxy::with_metrics(
        Upstreams::new(upstreams),
        store.clone(),
        ProxyOptions {
            auth,
            max_concurrent_fills: config.cache.max_concurrent_fills,
            hosted,
            tier: tier.clone(),
            cluster: cluster.clone(),
        },
        metrics,
    );
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.server.listen))?;
    let admin_listener = tokio::net::TcpListener::bind(config.server.admin_listen)
        .await
        .map_err(|e| {
            format!(
                "cannot listen on {} (server.admin_listen): {e}",
                config.server.admin_listen
            )
        })?;
    tracing::info!(
        listen = %config.server.listen,
        admin = %config.server.admin_listen,
        store = %config.cache.dir.display(),
        upstreams = config.upstream.len(),
        tls = tls.is_some(),
        client_auth = config.auth.htpasswd.is_some(),
        anonymous_pull = config.auth.anonymous_pull().as_str(),
        rights = config.auth.rights.len(),
        object_store = tier.as_ref().map_or("none", |t| t.endpoint()),
        peers = cluster.as_ref().map_or(0, |c| c.peers().len()),
        "wharf {} serving",
        env!("CARGO_PKG_VERSION")
    );
    if let Some(auth) = proxy.auth() {
        warn_unknown_users(auth);
    }
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let admin = tokio::spawn(wharf_proxy::admin::serve(
        admin_listener,
        proxy.clone(),
        async move {
            let _ = stop_rx.wait_for(|stop| *stop).await;
        },
    ));
    let shutdown = async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    };
    let reload = tokio::spawn(reload_on_sighup(proxy.clone(), tls.clone()));
    let options = ServerOptions {
        tls,
        limits: Limits {
            max_connections: config.server.max_connections,
            ..Limits::default()
        },
    };
    wharf_proxy::serve_with(listener, proxy, shutdown, Duration::from_secs(10), options).await;
    reload.abort();
    let _ = admin.await;
    // Tags, validation times and access times written since the last batch.
    for s in std::iter::once(&store).chain(hosted_store.as_ref()) {
        if let Err(e) = s.flush().await {
            tracing::error!(error = %e, root = %s.root().display(), "could not commit the store's metadata");
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// The hosted repositories' store: no budget (hosted content is never evicted; the quota is
/// checked when content arrives), scrubbed as the cache is.
async fn open_hosted(
    h: &config::Hosted,
    config: &Config,
) -> Result<wharf_proxy::hosted::Hosted, String> {
    let dir = h.dir(&config.cache);
    let options = wharf_cache::StoreOptions {
        max_size: u64::MAX,
        scrub_rate: config.cache.scrub_rate,
        ..Default::default()
    };
    let store = wharf_cache::Store::open_with(&dir, options)
        .await
        .map_err(|e| format!("opening the hosted store in {}: {e}", dir.display()))?;
    tracing::info!(dir = %dir.display(), repositories = ?h.repositories, quota = ?h.quota,
        bare_names = h.bare_names(&config.auth), "hosting repositories");
    wharf_proxy::hosted::Hosted::new(
        store,
        wharf_proxy::hosted::HostedOptions {
            repositories: h.repositories.clone(),
            quota: h.quota,
            upload_timeout: h.upload_timeout,
            delete: h.delete,
            gc_interval: h.gc_interval,
            bare_names: h.bare_names(&config.auth),
        },
    )
    .await
}

fn build_upstream(u: &config::UpstreamConfig, config: &Config) -> Result<Upstream, String> {
    let password = match (&u.password_file, &u.password_env) {
        (Some(path), _) => Some(Secret::new(
            std::fs::read_to_string(path)
                .map_err(|e| format!("reading password_file {}: {e}", path.display()))?
                .trim_end_matches(['\r', '\n'])
                .to_owned(),
        )),
        (None, Some(var)) => {
            Some(Secret::new(std::env::var(var).map_err(|_| {
                format!("environment variable {var} is not set")
            })?))
        }
        (None, None) => None,
    };
    let client_config = wharf_upstream::Config {
        name: u.name.clone(),
        url: u.url.trim_end_matches('/').to_owned(),
        mirrors: u.mirrors.clone(),
        username: u.username.clone(),
        password,
        ca_file: u.ca_file.clone(),
        connect_timeout: u.connect_timeout,
        response_timeout: u.response_timeout,
    };
    let lookaside = u
        .lookaside
        .as_deref()
        .map(|url| wharf_upstream::Lookaside::new(&client_config, url))
        .transpose()
        .map_err(|e| e.to_string())?
        .map(wharf_proxy::upstreams::Lookaside::new);
    let client = wharf_upstream::Client::new(client_config)
        .map_err(|e| e.to_string())?
        .with_allowed_realm_hosts(u.realm_hosts.clone());
    Ok(Upstream {
        name: u.name.clone(),
        client,
        prefixes: u.prefixes.clone(),
        is_default: u.default,
        library_prefix: Upstream::is_docker_hub(&u.url, &u.prefixes),
        tag_ttl: u.tag_ttl.unwrap_or(config.cache.tag_ttl),
        revalidate_timeout: u
            .revalidate_timeout
            .unwrap_or(config.cache.revalidate_timeout),
        immutable_tags: u
            .immutable_set()
            .map_err(|(j, m)| format!("immutable_tags[{j}]: {m}"))?,
        warm_moved_tags: u.warm_moved_tags,
        backoff: Default::default(),
        registry: crate::mirror::registry_host(u),
        lookaside,
        policy: u
            .require_signature
            .as_ref()
            .map(|r| -> Result<_, String> {
                let keyring = wharf_sign::Keyring::load(&r.key)
                    .map_err(|e| format!("require_signature.key: {e}"))?;
                Ok(wharf_proxy::policy::SignaturePolicy {
                    keyring,
                    key_file: r.key.clone(),
                    identity: r
                        .identity
                        .clone()
                        .unwrap_or_else(|| crate::mirror::registry_host(u)),
                })
            })
            .transpose()?,
    })
}

/// SIGHUP: the certificate and the htpasswd file are read again. What fails to load is
/// reported and the old one kept.
async fn reload_on_sighup(proxy: Arc<Proxy>, tls: Option<Arc<Tls>>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; certificate reloads are off");
            return;
        };
        while hup.recv().await.is_some() {
            if let Some(tls) = &tls {
                match tls.reload() {
                    Ok(()) => tracing::info!("SIGHUP: TLS certificate reloaded"),
                    Err(e) => tracing::error!(
                        "SIGHUP: keeping the old TLS certificate: {}: {e}",
                        e.field()
                    ),
                }
            }
            if let Some(auth) = proxy.auth() {
                match auth.reload() {
                    Ok(n) => {
                        tracing::info!(users = n, "SIGHUP: htpasswd reloaded");
                        warn_unknown_users(auth);
                    }
                    Err(e) => tracing::error!("SIGHUP: keeping the old users: auth.htpasswd: {e}"),
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (proxy, tls);
    }
}

/// Users `[[auth.rights]]` names that the htpasswd file lacks: their rights do nothing yet.
fn warn_unknown_users(auth: &ClientAuth) {
    for user in auth.unknown_users() {
        tracing::warn!(
            user,
            "auth.rights names a user the htpasswd file does not list: that right does nothing until it does"
        );
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutting down");
}

/// The fleet from `[cluster]`: the configured peers, or those `peers_dns` resolves to (now,
/// then every `DNS_REFRESH` in a task of its own).
async fn start_cluster(
    c: &crate::config::Cluster,
    config: &crate::config::Config,
) -> Result<Arc<wharf_proxy::cluster::Cluster>, String> {
    let me = c.advertise().map_err(|e| e.to_string())?;
    let mut cluster = wharf_proxy::cluster::Cluster::new(
        &me,
        c.peers.clone(),
        config.server.tls_cert.is_some(),
        config.server.tls_cert.clone(),
    );
    if let Some(secret) = c.secret().map_err(|e| e.to_string())? {
        cluster = cluster.with_secret(wharf_upstream::Secret::new(secret));
    }
    let cluster = Arc::new(cluster);
    if let Some((name, port)) = c.dns().map_err(|e| e.to_string())? {
        let resolve = {
            let cluster = cluster.clone();
            let configured = c.peers.clone();
            move || {
                let (cluster, configured, name) =
                    (cluster.clone(), configured.clone(), name.clone());
                async move {
                    match tokio::net::lookup_host((name.as_str(), port)).await {
                        Ok(addrs) => {
                            let mut peers = configured;
                            peers.extend(addrs.map(|a| a.to_string()));
                            cluster.set_peers(peers);
                        }
                        Err(e) => tracing::warn!(peers_dns = %name, error = %e,
                            "resolving the peers failed; keeping the last list"),
                    }
                }
            }
        };
        resolve().await;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(wharf_proxy::cluster::DNS_REFRESH).await;
                resolve().await;
            }
        });
    }
    Ok(cluster)
}
