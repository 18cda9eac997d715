//! Three replicas that know each other (`[cluster]`) and share one Garage: a cold blob asked of
//! all three at once is fetched from the upstream once for the whole fleet; the replica that
//! owns it killed mid-fill, the others finish from the upstream with the right bytes, and
//! nothing partial reaches the object store.

use std::time::Duration;

use sha2::{Digest as _, Sha256};
use wharf_e2e::herd::{Ask, Herd, Outcome};
use wharf_e2e::layers::random_content as content;
use wharf_e2e::push::Pusher;
use wharf_e2e::registry::Storage;
use wharf_e2e::util::{free_ports, sha256_digest};
use wharf_e2e::{Http, Upstream, UpstreamCfg, Wharf};
use wharf_testkit::garage::Garage;
use wharf_testkit::{FakeRegistry, Fault};

use super::{object_store_toml, wait_for};

const MIB: usize = 1 << 20;
const REPO: &str = "fleet/layer";

/// Three replicas of `upstream`, each knowing the others, sharing `store`.
fn fleet(upstream: &UpstreamCfg, store: &str) -> (Vec<Wharf>, Vec<String>) {
    wharf_e2e::fleet::fleet(3, upstream, store, "")
}

/// The peer that owns `digest`: the highest first 8 bytes of sha256(peer \0 digest), the
/// rendezvous hashing `wharf_proxy::cluster` documents.
fn owner(peers: &[String], digest: &str) -> usize {
    let score = |p: &String| {
        let mut h = Sha256::new();
        h.update(p.as_bytes());
        h.update([0]);
        h.update(digest.as_bytes());
        let out = h.finalize();
        u64::from_be_bytes(out[..8].try_into().expect("8 bytes"))
    };
    let best = peers.iter().max_by_key(|p| score(p)).expect("peers");
    peers.iter().position(|p| p == best).expect("among them")
}

fn blob_url(w: &Wharf, digest: &str) -> String {
    format!("{}/v2/{REPO}/blobs/{digest}", w.url())
}

fn assert_right(outcomes: &[Outcome], digest: &str, size: usize, who: &str) {
    for (i, o) in outcomes.iter().enumerate() {
        assert_eq!(o.status, 200, "{who} client {i}: {}", o.describe());
        assert!(o.complete(), "{who} client {i}: {}", o.describe());
        assert_eq!(o.received, size as u64, "{who} client {i}");
        assert_eq!(o.digest, digest, "{who} client {i} got other bytes");
    }
}

#[test]
fn forty_eight_clients_over_three_replicas_make_one_upstream_get() {
    const SIZE: usize = 100 * MIB;
    let g = Garage::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = object_store_toml(&g, dir.path(), "fleet-herd");
    let up = Upstream::builder().storage(Storage::Empty).start();
    let desc = Pusher {
        base: up.url(),
        http: &Http::new(),
    }
    .random_blob(REPO, "fleet-herd-100mib", SIZE);
    let cfg = UpstreamCfg::oracle(&up);
    let (replicas, _) = fleet(&cfg, &store);
    let mark = up.mark();

    let herds: Vec<Herd> = replicas
        .iter()
        .map(|w| Herd::spawn(&blob_url(w, &desc.digest), 16, Ask::default()))
        .collect();
    for (i, h) in herds.into_iter().enumerate() {
        assert_right(&h.join(), &desc.digest, SIZE, &format!("replica {i}"));
    }
    up.wait_log_stable();
    let gets: Vec<_> = up
        .since(mark)
        .into_iter()
        .filter(|r| r.path_only().ends_with(&desc.digest) && r.is_blob_get())
        .collect();
    assert_eq!(gets.len(), 1, "upstream GETs for the blob: {gets:#?}");
    let peer_fills: u64 = replicas
        .iter()
        .map(|w| w.metric("wharf_fills_by_source_total", &["source=\"peer\""]))
        .sum();
    assert_eq!(
        peer_fills, 2,
        "the two other replicas filled from the owner"
    );
}

#[test]
fn the_owner_killed_mid_fill_the_others_finish_from_the_upstream() {
    const SIZE: usize = 8 * MIB;
    let g = Garage::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = object_store_toml(&g, dir.path(), "fleet-kill");
    let blob = content("fleet-kill-8mib", SIZE);
    let digest = sha256_digest(&blob);
    let fake = FakeRegistry::builder()
        .blob(REPO, blob)
        .ranges(true)
        .start();
    // The first upstream GET (the owner's) sends 1 MiB and holds; the owner dies there.
    fake.push_faults([Fault::new().hold_at(MIB as u64)]);
    let cfg = UpstreamCfg::new("oracle", &fake.url())
        .prefixes(&["oracle"])
        .default(true);
    let (mut replicas, peers) = fleet(&cfg, &store);
    let o = owner(&peers, &digest);
    let others: Vec<usize> = (0..3).filter(|i| *i != o).collect();

    let herds: Vec<Herd> = others
        .iter()
        .map(|i| Herd::spawn(&blob_url(&replicas[*i], &digest), 4, Ask::default()))
        .collect();
    for h in &herds {
        h.wait_first_bytes(4, Duration::from_secs(30));
    }
    assert_eq!(
        fake.blob_requests("GET", &digest).len(),
        1,
        "only the owner asked the upstream: {:?}",
        fake.requests()
    );
    replicas[o].kill();
    for (h, i) in herds.into_iter().zip(&others) {
        assert_right(&h.join(), &digest, SIZE, &format!("replica {i}"));
    }
    // Each of the others resumed from the upstream, from the byte it had.
    let gets = fake.blob_requests("GET", &digest);
    assert_eq!(gets.len(), 3, "{gets:#?}");
    assert!(
        gets[1..].iter().all(|r| r.header("range").is_some()),
        "the others resume with a Range: {gets:#?}"
    );
    // What reached the object store is the whole blob or nothing.
    for i in &others {
        wait_for("the replica's fill recorded", || {
            replicas[*i].metric("wharf_fills_by_source_total", &["source=\"upstream\""]) == 1
        });
    }
    let tier = super::tier_of(&g, "fleet-kill");
    let d: wharf_oci::Digest = digest.parse().expect("digest");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    wait_for("the blob reached the object store", || {
        rt.block_on(wharf_cache::BlobStore::stat(tier.blobs(), &d))
            .expect("stat")
            .is_some()
    });
    let kept = rt
        .block_on(wharf_cache::BlobStore::read_to_bytes(tier.blobs(), &d))
        .expect("read")
        .expect("kept");
    assert_eq!(
        sha256_digest(&kept),
        digest,
        "the object store holds other bytes"
    );
}

/// A fake upstream with `n` distinct blobs in `REPO`, and their digests.
fn blobs_upstream(label: &str, n: usize) -> (FakeRegistry, Vec<(String, usize)>) {
    let mut b = FakeRegistry::builder().ranges(true);
    let mut digests = Vec::new();
    for i in 0..n {
        let size = MIB + i * 4096;
        let data = content(&format!("{label}-{i}"), size);
        digests.push((sha256_digest(&data), size));
        b = b.blob(REPO, data);
    }
    (b.start(), digests)
}

#[test]
fn a_replica_listed_under_a_second_name_never_waits_on_itself() {
    // The replica is 127.0.0.1:P and also "localhost:P" in its own peer list: for about half
    // the digests it thinks "localhost:P" owns them and asks itself, as a peer. It answers that
    // request 421 (not its owner in its own view) and fills from the upstream at once, rather
    // than joining its own fill and waiting for it until the fill times out.
    let (fake, digests) = blobs_upstream("self-peer", 8);
    let [p] = free_ports();
    let cfg = UpstreamCfg::new("oracle", &fake.url())
        .prefixes(&["oracle"])
        .default(true);
    let w = Wharf::builder()
        .listen_port(p)
        .upstream(cfg)
        .extra_toml(&format!(
            "[cluster]\nadvertise = \"127.0.0.1:{p}\"\npeers = [\"localhost:{p}\"]\n"
        ))
        .start();
    let peers = vec![format!("127.0.0.1:{p}"), format!("localhost:{p}")];
    let via_second_name = digests
        .iter()
        .filter(|(d, _)| owner(&peers, d) == 1)
        .count();
    assert!(via_second_name > 0, "no digest owned by the second name");
    let started = tokio::time::Instant::now();
    for (d, size) in &digests {
        let outcomes = wharf_e2e::herd::run_blocking(&blob_url(&w, d), 1, Ask::default());
        assert_right(&outcomes, d, *size, "the replica");
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "a fill waited on itself: {:?}",
        started.elapsed()
    );
    for (d, _) in &digests {
        assert_eq!(fake.blob_requests("GET", d).len(), 1, "{d}");
    }
    assert!(
        w.metric("wharf_peer_requests_total", &["result=\"declined\""]) >= via_second_name as u64
    );
}

#[test]
fn replicas_that_require_a_login_pull_from_each_other_with_the_fleet_secret() {
    let (fake, digests) = blobs_upstream("peer-secret", 6);
    let dir = tempfile::tempdir().expect("tempdir");
    let users = dir.path().join("htpasswd");
    wharf_e2e::process::run(
        std::process::Command::new("htpasswd")
            .args(["-cbB"])
            .arg(&users)
            .args(["alice", "alice-pw"]),
        Duration::from_secs(30),
    )
    .expect_ok("htpasswd");
    let secret = dir.path().join("cluster.secret");
    std::fs::write(&secret, "a-secret-every-replica-shares\n").expect("secret");
    let cfg = UpstreamCfg::new("oracle", &fake.url())
        .prefixes(&["oracle"])
        .default(true);
    let (replicas, _) = wharf_e2e::fleet::fleet(
        2,
        &cfg,
        &format!("[auth]\nhtpasswd = {users:?}\nanonymous_pull = false\n"),
        &format!("secret_file = {secret:?}"),
    );
    let login = format!(
        "Basic {}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "alice:alice-pw")
    );
    let ask = || Ask {
        headers: vec![("Authorization".into(), login.clone())],
        ..Ask::default()
    };
    // Every blob asked of both replicas: each fetched from the upstream once, by its owner.
    for (d, size) in &digests {
        for (i, w) in replicas.iter().enumerate() {
            let outcomes = wharf_e2e::herd::run_blocking(&blob_url(w, d), 1, ask());
            assert_right(&outcomes, d, *size, &format!("replica {i}"));
        }
        assert_eq!(fake.blob_requests("GET", d).len(), 1, "{d}");
    }
    let from_peers: u64 = replicas
        .iter()
        .map(|w| w.metric("wharf_peer_requests_total", &["result=\"ok\""]))
        .sum();
    assert_eq!(from_peers, digests.len() as u64, "one peer fill per blob");
    // Without the login, nobody pulls; the secret is no user's password.
    let anonymous =
        wharf_e2e::herd::run_blocking(&blob_url(&replicas[0], &digests[0].0), 1, Ask::default());
    assert_eq!(anonymous[0].status, 401, "{}", anonymous[0].describe());
}
