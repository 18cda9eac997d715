//! Replicas of one fleet (`[cluster]`): each digest has an owner among the peers, chosen by
//! rendezvous hashing over the peer list, so the upstream sees one GET per blob for the whole
//! fleet.
//!
//! ```text
//! blob, local miss, object store miss (shared.rs)
//!   owner = the peer with the highest sha256(peer \0 digest)
//!   owner is this replica, or the request came from a peer  -> fill from the upstream
//!   owner in back-off (it failed a moment ago)               -> fill from the upstream
//!   else GET the blob from the owner (its own fill: disk, object store, upstream), tailed
//!        while it grows; the owner unreachable, failing, or its body breaking -> the owner is
//!        left alone for PEER_BACKOFF and the fill resumes (Range) from the upstream
//! ```
//!
//! A peer request carries `Via: 1.1 wharf-peer-<run id>`: the owner fills it itself and never
//! forwards it, so replicas that disagree about the peer list cost at most one extra hop,
//! never a loop. Every byte from a peer is hashed by the fill like any other. Peers come from
//! the configuration, or from DNS (a Kubernetes headless service) re-resolved every
//! [`DNS_REFRESH`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use http::{HeaderMap, Method, StatusCode};
use http_body_util::BodyExt;
use sha2::{Digest as _, Sha256};
use tokio::time::Instant;
use wharf_cache::{FillSource, SourceError};
use wharf_metrics::Metrics;
use wharf_oci::Digest;

use crate::content_length;
use crate::shared::Origin;
use crate::upstreams::Upstream;

/// How long a peer that failed is not asked (fills go to the upstream meanwhile).
pub const PEER_BACKOFF: Duration = Duration::from_secs(5);
/// How often `peers_dns` is resolved again.
pub const DNS_REFRESH: Duration = Duration::from_secs(10);
/// The user a peer authenticates as, with the fleet's secret (`cluster.secret_file`), when
/// replicas require credentials for pulls.
pub const PEER_USER: &str = "wharf-peer";
/// The `Via` pseudonym of a request from a peer: `wharf-peer-<run id>`.
const PEER_VIA: &str = "wharf-peer-";
/// A peer's body that sends nothing for this long has failed (below the fills' inactivity
/// timeout, so the fill resumes from the upstream instead of failing).
pub(crate) const PEER_IDLE: Duration = Duration::from_secs(10);

/// The fleet as one replica sees it.
pub struct Cluster {
    /// How the peers reach this replica (`advertise`): one entry of the peer list.
    me: String,
    peers: RwLock<Arc<Vec<String>>>,
    /// `https` when the replicas serve TLS (then `ca_file` is the site certificate's chain).
    scheme: &'static str,
    ca_file: Option<PathBuf>,
    /// Clients per (peer, upstream name), made on first use.
    clients: Mutex<HashMap<(String, String), wharf_upstream::Client>>,
    /// Peers that failed, until when they are left alone.
    down: Mutex<HashMap<String, Instant>>,
    /// This replica's pseudonym on peer requests.
    via: String,
    /// The fleet's secret, sent as Basic `wharf-peer:<secret>` when a peer asks for it.
    secret: Option<wharf_upstream::Secret>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("me", &self.me)
            .field("peers", &self.peers())
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// `me` as the peers know it (`host:port`), the peer list (`me` among them or not), and
    /// whether peers speak TLS (trusting `ca_file` besides the system roots).
    pub fn new(me: &str, peers: Vec<String>, tls: bool, ca_file: Option<PathBuf>) -> Cluster {
        let run = std::process::id() ^ (Instant::now().elapsed().subsec_nanos());
        let cluster = Cluster {
            me: canonical(me),
            peers: RwLock::new(Arc::new(Vec::new())),
            scheme: if tls { "https" } else { "http" },
            ca_file,
            clients: Mutex::new(HashMap::new()),
            down: Mutex::new(HashMap::new()),
            via: format!("{PEER_VIA}{run:08x}"),
            secret: None,
        };
        cluster.set_peers(peers);
        cluster
    }

    /// Replaces the peer list (a DNS refresh); this replica is always one of them. Addresses
    /// are written one way (`[fd00::5]:5000`, whether given with brackets or not), so this
    /// replica is not listed twice under two spellings. Clients and back-offs of peers that
    /// left are dropped.
    pub fn set_peers(&self, peers: Vec<String>) {
        let mut peers: Vec<String> = peers.iter().map(|p| canonical(p)).collect();
        peers.push(self.me.clone());
        peers.sort();
        peers.dedup();
        self.clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(p, _), _| peers.contains(p));
        self.down
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|p, _| peers.contains(p));
        *self.peers.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(peers);
    }

    /// Peers authenticate to each other with `secret` (`cluster.secret_file`).
    pub fn with_secret(mut self, secret: wharf_upstream::Secret) -> Self {
        self.secret = Some(secret);
        self
    }

    /// Every replica, this one included, sorted.
    pub fn peers(&self) -> Arc<Vec<String>> {
        self.peers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// This replica as the peers know it.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// The peer that owns `digest`, unless that is this replica or it failed a moment ago.
    pub(crate) fn owner(&self, digest: &Digest) -> Option<String> {
        let peers = self.peers();
        let owner = peers.iter().max_by_key(|p| score(p, digest))?;
        if *owner == self.me || self.is_down(owner) {
            return None;
        }
        Some(owner.clone())
    }

    pub(crate) fn is_down(&self, peer: &str) -> bool {
        let down = self.down.lock().unwrap_or_else(PoisonError::into_inner);
        down.get(peer).is_some_and(|t| Instant::now() < *t)
    }

    /// `peer` failed: fills go to the upstream for [`PEER_BACKOFF`].
    pub(crate) fn peer_failed(&self, peer: &str, error: &dyn std::fmt::Display) {
        let mut down = self.down.lock().unwrap_or_else(PoisonError::into_inner);
        let was_up = down.get(peer).is_none_or(|t| Instant::now() >= *t);
        down.insert(peer.to_owned(), Instant::now() + PEER_BACKOFF);
        if was_up {
            tracing::warn!(peer, %error, backoff_s = PEER_BACKOFF.as_secs(),
                "peer failed; filling from the upstream meanwhile");
        }
    }

    /// A client that asks `peer` for `up`'s content: the peer's URL with `up`'s first prefix
    /// as its path (`/oracle/v2/...`), or none for a default upstream without prefixes.
    pub(crate) fn client(&self, peer: &str, up: &Upstream) -> Option<wharf_upstream::Client> {
        let key = (peer.to_owned(), up.name.clone());
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = clients.get(&key) {
            return Some(c.clone());
        }
        let path = up
            .prefixes
            .first()
            .map(|p| format!("/{p}"))
            .unwrap_or_default();
        let client = wharf_upstream::Client::new(wharf_upstream::Config {
            name: format!("peer {peer}"),
            url: format!("{}://{peer}{path}", self.scheme),
            mirrors: Vec::new(),
            username: self.secret.as_ref().map(|_| PEER_USER.to_owned()),
            password: self.secret.clone(),
            ca_file: self.ca_file.clone(),
            connect_timeout: Duration::from_secs(2),
            response_timeout: up.client.response_timeout(),
        })
        .inspect_err(|e| tracing::warn!(peer, error = %e, "no client for this peer"))
        .ok()?;
        client.set_via(&self.via);
        clients.insert(key, client.clone());
        Some(client)
    }
}

/// The replica a fill asks before the upstream.
#[derive(Clone)]
pub(crate) struct Peer {
    pub(crate) name: String,
    pub(crate) client: wharf_upstream::Client,
    pub(crate) cluster: Arc<Cluster>,
}

impl Peer {
    /// The owner's answer from byte `offset` on, or `None` (it failed: left alone for a
    /// while, and the upstream is asked).
    pub(crate) async fn source(
        &self,
        repo: &str,
        digest: &Digest,
        offset: u64,
        metrics: &Metrics,
        origin: &Origin,
    ) -> Option<FillSource> {
        // Down since the fill started (its body broke): the resume goes to the upstream.
        if self.cluster.is_down(&self.name) {
            return None;
        }
        let from = (offset > 0).then_some(offset);
        let count = |result: &str| {
            metrics
                .tier
                .peers
                .with_label_values(&[&self.name, result])
                .inc();
        };
        let resp = match self.client.blob(Method::GET, repo, digest, from).await {
            Ok(resp) if offset == 0 || resp.status == StatusCode::PARTIAL_CONTENT => resp,
            Ok(_) => {
                self.cluster
                    .peer_failed(&self.name, &"it ignored the Range of a resume");
                count("failed");
                return None;
            }
            // Down or failing: left alone for a while. Any other answer (421 from a peer that
            // does not own the digest in its view, a 401/403/404) is about this request only.
            Err(e) if e.is_unreachable() => {
                self.cluster.peer_failed(&self.name, &e);
                count("failed");
                return None;
            }
            Err(e) => {
                tracing::debug!(peer = %self.name, %digest, error = %e,
                    "the peer declined; filling from the upstream");
                count("declined");
                return None;
            }
        };
        count("ok");
        origin.opened_peer();
        let len = content_length(&resp.headers);
        let peer = self.clone();
        // A body that goes silent (the owner frozen, or its own upstream stalled) ends with an
        // error well before the fill's inactivity timeout, so the fill resumes elsewhere.
        let body = idle_bounded(
            resp.body
                .into_data_stream()
                .map_err(std::io::Error::other)
                .boxed(),
            PEER_IDLE,
        )
        .inspect_err(move |e| {
            peer.cluster.peer_failed(&peer.name, e);
        })
        .map_err(|e| Arc::new(e) as SourceError)
        .boxed();
        Some(FillSource { len, body })
    }
}

/// Whether a request came from a peer (the last hop of its `Via`, the one that sent it, names
/// one): filled here, never forwarded to another peer. A peer further back is another fleet's
/// (a site's replicas in front of a regional fleet): that request is this fleet's to share.
pub(crate) fn from_peer(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::VIA)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .last()
        .is_some_and(|hop| {
            hop.split_whitespace()
                .nth(1)
                .is_some_and(|p| p.starts_with(PEER_VIA))
        })
}

/// `host:port` written one way: an IP address as `SocketAddr` prints it (`[fd00::5]:5000`
/// for `fd00::5:5000` too), a name as given.
fn canonical(peer: &str) -> String {
    if let Ok(a) = peer.parse::<std::net::SocketAddr>() {
        return a.to_string();
    }
    if let Some((host, port)) = peer.rsplit_once(':')
        && let (Ok(ip), Ok(port)) = (host.parse::<std::net::IpAddr>(), port.parse::<u16>())
    {
        return std::net::SocketAddr::new(ip, port).to_string();
    }
    peer.to_owned()
}

/// `body` that ends with a `TimedOut` error when no chunk arrives for `idle`.
pub(crate) fn idle_bounded(
    body: futures_util::stream::BoxStream<'static, std::io::Result<bytes::Bytes>>,
    idle: Duration,
) -> futures_util::stream::BoxStream<'static, std::io::Result<bytes::Bytes>> {
    use futures_util::StreamExt;
    futures_util::stream::unfold(Some(body), move |body| async move {
        let mut body = body?;
        match tokio::time::timeout(idle, body.next()).await {
            Ok(Some(item)) => Some((item, Some(body))),
            Ok(None) => None,
            Err(_) => Some((
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no byte for {}s", idle.as_secs()),
                )),
                None,
            )),
        }
    })
    .boxed()
}

/// Rendezvous hashing's weight of `peer` for `digest`.
fn score(peer: &str, digest: &Digest) -> [u8; 8] {
    let mut h = Sha256::new();
    h.update(peer.as_bytes());
    h.update([0]);
    h.update(digest.to_string().as_bytes());
    let out = h.finalize();
    let mut s = [0u8; 8];
    s.copy_from_slice(&out[..8]);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u32) -> Digest {
        Digest::sha256_of(&n.to_be_bytes())
    }

    #[test]
    fn every_replica_agrees_on_the_owner_and_owners_spread() {
        let peers: Vec<String> = (1..=3).map(|i| format!("10.0.0.{i}:5000")).collect();
        let views: Vec<Cluster> = peers
            .iter()
            .map(|me| Cluster::new(me, peers.clone(), false, None))
            .collect();
        let mut owned = HashMap::new();
        for n in 0..3000 {
            let d = digest(n);
            // Exactly one replica fills it itself; the others name that one.
            let own: Vec<&str> = views
                .iter()
                .filter(|v| v.owner(&d).is_none())
                .map(Cluster::me)
                .collect();
            assert_eq!(own.len(), 1, "{d}");
            for v in &views {
                if let Some(o) = v.owner(&d) {
                    assert_eq!(o, own[0]);
                }
            }
            *owned.entry(own[0].to_owned()).or_insert(0) += 1;
        }
        // Rendezvous hashing spreads digests evenly (1000 each, give or take).
        for (peer, n) in owned {
            assert!((800..1200).contains(&n), "{peer} owns {n} of 3000");
        }
    }

    #[test]
    fn a_peer_leaving_moves_only_its_own_digests() {
        let peers: Vec<String> = (1..=4).map(|i| format!("p{i}:5000")).collect();
        let all = Cluster::new("p1:5000", peers.clone(), false, None);
        let fewer = Cluster::new("p1:5000", peers[..3].to_vec(), false, None);
        let owner = |c: &Cluster, d: &Digest| c.owner(d).unwrap_or_else(|| c.me().to_owned());
        for n in 0..1000 {
            let d = digest(n);
            let before = owner(&all, &d);
            if before != "p4:5000" {
                assert_eq!(owner(&fewer, &d), before, "{d} moved");
            }
        }
    }

    #[test]
    fn a_failed_owner_is_skipped_for_a_while() {
        let peers = vec!["a:1".to_owned(), "b:1".to_owned()];
        let c = Cluster::new("a:1", peers, false, None);
        let d = (0..100)
            .map(digest)
            .find(|d| c.owner(d).is_some())
            .expect("b owns some");
        c.peer_failed("b:1", &"refused");
        assert_eq!(c.owner(&d), None);
    }

    #[test]
    fn addresses_are_written_one_way() {
        assert_eq!(canonical("fd00::5:5000"), "[fd00::5]:5000");
        assert_eq!(canonical("[fd00::5]:5000"), "[fd00::5]:5000");
        assert_eq!(canonical("10.0.0.1:5000"), "10.0.0.1:5000");
        assert_eq!(
            canonical("wharf-0.wharf-peers:5000"),
            "wharf-0.wharf-peers:5000"
        );
        let c = Cluster::new("fd00::5:5000", vec!["[fd00::5]:5000".into()], false, None);
        assert_eq!(c.peers().len(), 1, "{:?}", c.peers());
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_body_ends_with_an_error() {
        use futures_util::StreamExt;
        let chunks = futures_util::stream::iter([Ok(bytes::Bytes::from_static(b"a"))])
            .chain(futures_util::stream::pending())
            .boxed();
        let mut body = idle_bounded(chunks, Duration::from_secs(10));
        assert!(body.next().await.is_some_and(|c| c.is_ok()));
        let e = body.next().await.expect("an item").expect_err("timed out");
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        assert!(body.next().await.is_none());
    }

    #[test]
    fn peer_requests_are_recognised_by_their_via() {
        let mut h = HeaderMap::new();
        assert!(!from_peer(&h));
        h.insert(
            http::header::VIA,
            http::HeaderValue::from_static("1.1 wharf-0a0b0c0d"),
        );
        assert!(!from_peer(&h));
        h.append(
            http::header::VIA,
            http::HeaderValue::from_static("1.1 proxy, 1.1 wharf-peer-00ff00ff"),
        );
        assert!(from_peer(&h));
        // A peer of the fleet in front, then that fleet's wharf: not from a peer of ours.
        h.append(
            http::header::VIA,
            http::HeaderValue::from_static("1.1 wharf-0a0b0c0d"),
        );
        assert!(!from_peer(&h));
    }
}
