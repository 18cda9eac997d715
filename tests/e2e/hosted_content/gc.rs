//! Garbage collection racing pushes, mounts, deletes and pulls (for `e2e_hosted_content`):
//! nothing referenced is ever lost, what nothing references goes, and a pull streaming a blob
//! that is collected under it ends byte-exact.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use wharf_e2e::http::{ACCEPT_ALL_MANIFESTS, Http};
use wharf_e2e::util::{sha256_digest, wait_for};

use super::api::{Api, with_digest};
use super::{OCI_MANIFEST, image_manifest};

/// Where the hosted store keeps `d` (`blobs/<alg>/<2 hex>/<hex>`).
pub(crate) fn blob_file(hosted_dir: &Path, d: &str) -> PathBuf {
    let (alg, hex) = d.split_once(':').expect("a digest");
    hosted_dir.join("blobs").join(alg).join(&hex[..2]).join(hex)
}

/// `POST /admin/gc` on the admin listener: the JSON report.
pub(crate) fn collect(http: &Http, admin: u16) -> serde_json::Value {
    let r = http.request(
        "POST",
        &format!("http://127.0.0.1:{admin}/admin/gc"),
        &[],
        bytes::Bytes::new(),
    );
    assert_eq!(r.status, 200, "POST /admin/gc: {}", r.describe());
    r.json()
}

/// Waits (a few seconds at most: the metadata writer unlinks) until `path` is gone.
pub(crate) fn gone(path: &Path) -> bool {
    wait_for(Duration::from_secs(5), Duration::from_millis(20), || {
        (!path.exists()).then_some(())
    })
    .is_some()
}

/// Bytes no other round produces.
fn unique(label: &str, round: usize, len: usize) -> Vec<u8> {
    let seed = format!("{label}-{round}-");
    seed.bytes().cycle().take(len).collect()
}

/// A blob pushed in two chunks (POST, PATCH, PUT with the rest): its digest.
fn push_chunked(api: &Api, repo: &str, bytes: &[u8]) -> String {
    let d = sha256_digest(bytes);
    let loc = api.start(repo);
    let half = bytes.len() / 2;
    let r = api.send(
        "PATCH",
        &loc,
        &[("Content-Range", &format!("0-{}", half - 1))],
        &bytes[..half],
    );
    assert_eq!(r.status, 202, "{}", r.describe());
    let r = api.send("PUT", &with_digest(&loc, &d), &[], &bytes[half..]);
    assert_eq!(r.status, 201, "{}", r.describe());
    d
}

/// An image pushed, and everything to pull it back with.
struct Image {
    repo: String,
    tag: String,
    manifest: String,
    blobs: Vec<(String, Vec<u8>)>,
}

fn put_manifest(api: &Api, repo: &str, reference: &str, body: &str) {
    let r = api.send(
        "PUT",
        &format!("/v2/{repo}/manifests/{reference}"),
        &[("Content-Type", OCI_MANIFEST)],
        body.as_bytes(),
    );
    assert_eq!(r.status, 201, "PUT {repo}:{reference}: {}", r.describe());
}

/// Pulls `img` by tag and its blobs: byte-exact, or a panic naming what was lost.
fn pull_back(http: &Http, base: &str, img: &Image, when: &str) {
    let r = http.get(
        &format!("{base}/v2/{}/manifests/{}", img.repo, img.tag),
        &[("Accept", ACCEPT_ALL_MANIFESTS)],
    );
    assert_eq!(
        (r.status, r.text()),
        (200, img.manifest.clone()),
        "{when}: {}:{} lost: {}",
        img.repo,
        img.tag,
        r.describe()
    );
    for (d, bytes) in &img.blobs {
        let r = http.get(&format!("{base}/v2/{}/blobs/{d}", img.repo), &[]);
        assert_eq!(
            r.status,
            200,
            "{when}: {} lost {d}: {}",
            img.repo,
            r.describe()
        );
        assert!(
            r.body.as_ref() == bytes.as_slice(),
            "{when}: {d} bytes differ"
        );
    }
}

/// 20 rounds, each with collections hammering (`POST /admin/gc` in a loop) while it pushes an
/// image in chunks, mounts its blobs into another repository and pushes it there, deletes it
/// from the first (its blobs stay referenced through the second), pushes and deletes a blob
/// nothing else holds, and pulls back every image kept so far.
pub(crate) fn collections_race_pushes_mounts_and_pulls(api: &Api, admin: u16, hosted_dir: &Path) {
    let http = Http::new();
    let base = api.base.clone();
    let started = Instant::now();
    let mut kept: Vec<Image> = Vec::new();
    let mut garbage: Vec<String> = Vec::new();
    let runs = Arc::new(AtomicU64::new(0));
    for round in 0..20 {
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "the rounds took too long"
        );
        let stop = Arc::new(AtomicBool::new(false));
        let hammer = {
            let (stop, runs) = (stop.clone(), runs.clone());
            std::thread::spawn(move || {
                let http = Http::new();
                for _ in 0..500 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    collect(&http, admin);
                    runs.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        let src = format!("team/push{}", round % 3);
        let config = unique("config", round, 40);
        let layer = unique("layer", round, 256 * 1024);
        let cd = push_chunked(api, &src, &config);
        let ld = push_chunked(api, &src, &layer);
        let body = image_manifest((&cd, config.len()), &[(ld.clone(), layer.len())], "");
        let md = sha256_digest(body.as_bytes());
        put_manifest(api, &src, "latest", &body);
        for d in [&cd, &ld] {
            let r = api.send(
                "POST",
                &format!("/v2/team/kept/blobs/uploads/?mount={d}&from={src}"),
                &[],
                b"",
            );
            assert_eq!(r.status, 201, "mount {d}: {}", r.describe());
        }
        let tag = format!("r{round}");
        put_manifest(api, "team/kept", &tag, &body);
        // Gone from the first repository: its blobs stay, held (and named) by team/kept.
        for path in [
            format!("/v2/{src}/manifests/{md}"),
            format!("/v2/{src}/blobs/{ld}"),
            format!("/v2/{src}/blobs/{cd}"),
        ] {
            let r = api.send("DELETE", &path, &[], b"");
            assert_eq!(r.status, 202, "DELETE {path}: {}", r.describe());
        }
        // A blob nothing else holds, deleted: garbage.
        let g = api.push_blob("team/garbage", &unique("garbage", round, 4096));
        let r = api.send("DELETE", &format!("/v2/team/garbage/blobs/{g}"), &[], b"");
        assert_eq!(r.status, 202, "{}", r.describe());
        garbage.push(g);
        kept.push(Image {
            repo: "team/kept".into(),
            tag,
            manifest: body,
            blobs: vec![(cd, config), (ld, layer)],
        });
        for img in &kept {
            pull_back(
                &http,
                &base,
                img,
                &format!("round {round}, collections running"),
            );
        }
        stop.store(true, Ordering::Relaxed);
        hammer.join().expect("the collection loop");
        let report = collect(&http, admin);
        for img in &kept {
            pull_back(&http, &base, img, &format!("after round {round}"));
        }
        for g in &garbage {
            assert!(
                gone(&blob_file(hosted_dir, g)),
                "round {round}: unreferenced {g} is still stored ({report})"
            );
        }
        assert!(
            blob_file(hosted_dir, &kept[round].blobs[1].0).exists(),
            "a referenced layer's file went"
        );
    }
    assert!(runs.load(Ordering::Relaxed) >= 20, "collections ran");
}

/// A 32 MiB blob streamed to a client that reads a little, then the blob is deleted and
/// collected (its file unlinked), then the client reads the rest: byte-exact.
pub(crate) fn a_pull_streams_on_while_its_blob_is_collected(
    api: &Api,
    admin: u16,
    hosted_dir: &Path,
    port: u16,
) {
    let big: Vec<u8> = (0..32u32 << 20).map(|i| (i % 251) as u8).collect();
    let d = api.push_blob("team/big", &big);
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        s,
        "GET /v2/team/big/blobs/{d} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let header_end = loop {
        let n = s.read(&mut buf).expect("read");
        assert!(n > 0, "closed before the headers");
        got.extend_from_slice(&buf[..n]);
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&got[..header_end]).into_owned();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let r = api.send("DELETE", &format!("/v2/team/big/blobs/{d}"), &[], b"");
    assert_eq!(r.status, 202, "{}", r.describe());
    let report = collect(&Http::new(), admin);
    assert!(
        gone(&blob_file(hosted_dir, &d)),
        "the deleted blob was not collected: {report}"
    );
    s.read_to_end(&mut got).expect("the rest of the body");
    let body = &got[header_end..];
    assert_eq!(body.len(), big.len(), "the streamed body's length");
    assert!(body == big.as_slice(), "the streamed body's bytes");
    assert_eq!(
        api.blob_status("team/big", &d),
        404,
        "served after its delete"
    );
}
