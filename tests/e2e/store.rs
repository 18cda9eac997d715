//! The store against a real upstream: a budget smaller than two images, a restart that keeps
//! tags and content, bytes flipped on disk (caught at start-up, or by the scrubber), and `wharf cache stats|ls|rm` against a running
//! wharf.

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use wharf_e2e::expect;
use wharf_e2e::http::{ACCEPT_ALL_MANIFESTS, Http};
use wharf_e2e::process::{CmdOut, run};
use wharf_e2e::util::{sha256_digest, wait_for};
use wharf_e2e::wharf::wharf_bin;
use wharf_e2e::{Descriptor, Image, Kind, Skopeo, Upstream, UpstreamCfg, Wharf, images};

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn bytes_under(dir: &Path) -> u64 {
    files_under(dir)
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

/// The file of a stored blob: `<cache>/blobs/sha256/<2 hex>/<hex>`.
fn stored(wharf: &Wharf, digest: &str) -> PathBuf {
    let hex = digest.trim_start_matches("sha256:");
    wharf
        .cache_dir()
        .join("blobs/sha256")
        .join(&hex[..2])
        .join(hex)
}

/// Everything a pull of `img` stores: manifest, config, layers.
fn image_bytes(img: &Image) -> u64 {
    img.manifest.size + img.total_blob_bytes()
}

/// `wharf cache ARGS`.
fn cache_cmd(args: &[&str]) -> CmdOut {
    run(
        Command::new(wharf_bin()).arg("cache").args(args),
        Duration::from_secs(60),
    )
}

fn blob_gets(up: &Upstream, m: wharf_e2e::Mark, blobs: &[&Descriptor]) -> usize {
    let got = expect::blob_gets_by_digest(&up.since(m));
    blobs
        .iter()
        .map(|b| got.get(&b.digest).copied().unwrap_or(0))
        .sum()
}

#[test]
fn a_budget_smaller_than_two_images_holds_and_the_first_is_fetched_again() {
    let set = images();
    let (a, b) = (&set.oraclelinux, set.multiarch.child("amd64"));
    let (sa, sb) = (image_bytes(a), image_bytes(b) + set.multiarch.manifest.size);
    // Room for either image, not for both.
    let budget = (sa + sb) * 7 / 8;
    assert!(budget > sa.max(sb) + 64 * 1024 && budget < sa + sb);
    let up = Upstream::plain();
    let wharf = Wharf::builder()
        .upstream(UpstreamCfg::oracle(&up))
        .max_size(&budget.to_string())
        .start();
    let skopeo = Skopeo::new();

    let first = skopeo
        .copy_direct(&wharf.host_port(), &a.reference(), &[])
        .expect_ok("pull of the first image");
    assert_eq!(first.digest(), a.manifest.digest);
    let second = skopeo
        .copy_direct(&wharf.host_port(), &set.multiarch.reference(), &[])
        .expect_ok("pull of the second image, past the budget");
    assert_eq!(second.digest(), b.manifest.digest);
    // The second image's bytes as the client got them are its own.
    for l in &b.layers {
        let got = std::fs::read(second.dest.join(l.digest.trim_start_matches("sha256:")))
            .expect("layer in the dir: copy");
        assert_eq!(sha256_digest(&got), l.digest);
    }

    // Evicted files are unlinked by a background thread: wait (bounded) for the disk to agree.
    let blobs = wharf.cache_dir().join("blobs");
    let on_disk = wait_for(Duration::from_secs(10), Duration::from_millis(100), || {
        let n = bytes_under(&blobs);
        (n <= budget).then_some(n)
    });
    assert!(
        on_disk.is_some(),
        "{} bytes stored for a budget of {budget}: {:#?}",
        bytes_under(&blobs),
        files_under(&blobs)
    );
    let stats = cache_cmd(&["stats", "--json", "--admin", &admin(&wharf)]).expect_ok("stats");
    let stats: serde_json::Value = serde_json::from_str(&stats.stdout).expect("stats json");
    assert!(
        stats["size_bytes"].as_u64().expect("size") <= budget,
        "{stats}"
    );
    assert_eq!(stats["max_size_bytes"].as_u64(), Some(budget));

    // The first image lost blobs to the second: pulled again, they come from the upstream.
    let m = up.mark();
    let again = skopeo
        .copy_direct(&wharf.host_port(), &a.reference(), &[])
        .expect_ok("pull of the first image again");
    assert_eq!(again.digest(), a.manifest.digest);
    let refetched = blob_gets(&up, m, &a.blobs());
    assert!(
        refetched >= 1,
        "no blob of the first image was fetched again"
    );
}

#[test]
fn a_restarted_wharf_serves_a_cached_tag_without_asking_the_upstream() {
    let set = images();
    let img = &set.legacy;
    let up = Upstream::plain();
    let mut wharf = Wharf::builder()
        .upstream(UpstreamCfg::oracle(&up))
        .tag_ttl("1h")
        .start();
    let skopeo = Skopeo::new();
    skopeo
        .copy_direct(&wharf.host_port(), &img.reference(), &[])
        .expect_ok("warming the cache");
    wharf.restart();
    let m = up.mark();
    let c = skopeo
        .copy_direct(&wharf.host_port(), &img.reference(), &[])
        .expect_ok("pull by tag after a restart");
    assert_eq!(c.digest(), img.manifest.digest);
    let reqs = expect::upstream_requests(&up, m, "pull by tag after a restart");
    // No blob GET, no manifest GET, and not even a tag HEAD: the tag's validation time
    // survived the restart and is within tag_ttl.
    assert!(
        reqs.iter().all(|r| r.kind() == Kind::Ping),
        "requests reached the upstream: {reqs:#?}"
    );
}

#[test]
fn a_blob_flipped_on_disk_is_quarantined_at_start_up_and_never_served() {
    let set = images();
    let img = &set.oraclelinux;
    let up = Upstream::plain();
    let mut wharf = Wharf::builder()
        .upstream(UpstreamCfg::oracle(&up))
        .scrub_rate("512MiB")
        .start();
    let skopeo = Skopeo::new();
    skopeo
        .copy_direct(&wharf.host_port(), &img.reference(), &[])
        .expect_ok("warming the cache");
    wharf.stop();
    let layer = &img.layers[1];
    let path = stored(&wharf, &layer.digest);
    let mut bytes = std::fs::read(&path).expect("stored layer");
    bytes[1000] ^= 0xff;
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&path, &bytes).expect("flip bytes");

    wharf.restart();
    let quarantined = files_under(&wharf.cache_dir().join("quarantine"));
    assert_eq!(quarantined.len(), 1, "{quarantined:#?}");
    assert_eq!(std::fs::read(&quarantined[0]).expect("read"), bytes);

    let m = up.mark();
    let c = skopeo
        .copy_direct(&wharf.host_port(), &img.reference(), &[])
        .expect_ok("pull after the corruption");
    assert_eq!(c.digest(), img.manifest.digest);
    let got =
        std::fs::read(c.dest.join(layer.digest.trim_start_matches("sha256:"))).expect("layer");
    assert_eq!(sha256_digest(&got), layer.digest, "the layer as pulled");
    // Only the corrupted layer came from the upstream again.
    assert_eq!(blob_gets(&up, m, &[layer]), 1);
    assert_eq!(blob_gets(&up, m, &img.blobs()), 1);
}

/// Flips one byte of `path` in place and puts its mtime back, as a media error leaves it: size,
/// mtime and inode are what start-up verified.
fn flip_keeping_mtime(path: &Path, at: usize) -> Vec<u8> {
    let mtime = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .expect("mtime");
    let mut bytes = std::fs::read(path).expect("stored");
    bytes[at] ^= 0x01;
    std::fs::write(path, &bytes).expect("flip in place");
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(mtime))
        .expect("restore mtime");
    bytes
}

/// With `[cache] scrub_rate` high, the pass over the image takes well under a second.
#[test]
fn a_blob_rotted_with_its_mtime_kept_is_found_by_the_scrubber_and_fetched_again() {
    let set = images();
    let img = &set.oraclelinux;
    let up = Upstream::plain();
    let mut wharf = Wharf::builder()
        .upstream(UpstreamCfg::oracle(&up))
        .scrub_rate("512MiB")
        .start();
    let skopeo = Skopeo::new();
    skopeo
        .copy_direct(&wharf.host_port(), &img.reference(), &[])
        .expect_ok("warming the cache");
    wharf.stop();
    let layer = &img.layers[1];
    let path = stored(&wharf, &layer.digest);
    let len = std::fs::metadata(&path).expect("stored layer").len() as usize;
    let rotten = flip_keeping_mtime(&path, len / 2);

    // Start-up trusts it (nothing changed that it looks at); the first scrub pass starts now.
    wharf.restart();
    let quarantine = wharf.cache_dir().join("quarantine");
    let found = wait_for(Duration::from_secs(120), Duration::from_millis(200), || {
        let files = files_under(&quarantine);
        (!files.is_empty()).then_some(files)
    })
    .expect("the scrubber quarantined the rotten layer within 120 s");
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(std::fs::read(&found[0]).expect("read"), rotten);
    let metrics = Http::new().get(&format!("{}/metrics", wharf.admin_url()), &[]);
    assert!(
        metrics
            .text()
            .contains("wharf_cache_scrub_faults_total 1\n"),
        "{}",
        metrics.text()
    );

    let m = up.mark();
    let c = skopeo
        .copy_direct(&wharf.host_port(), &img.reference(), &[])
        .expect_ok("pull after the scrub");
    assert_eq!(c.digest(), img.manifest.digest);
    let got =
        std::fs::read(c.dest.join(layer.digest.trim_start_matches("sha256:"))).expect("layer");
    assert_eq!(sha256_digest(&got), layer.digest, "the layer as pulled");
    // Only the rotten layer came from the upstream again, once.
    assert_eq!(blob_gets(&up, m, &[layer]), 1);
    assert_eq!(blob_gets(&up, m, &img.blobs()), 1);
}

#[test]
fn a_manifest_flipped_on_disk_is_served_as_verified_then_caught_at_restart() {
    let set = images();
    let img = &set.hello;
    let up = Upstream::plain();
    let mut wharf = Wharf::for_upstream(&up);
    let url = |wharf: &Wharf| {
        format!(
            "{}/v2/{}/manifests/{}",
            wharf.url(),
            img.repo,
            img.manifest.digest
        )
    };
    let http = Http::new();
    let accept = ("Accept", ACCEPT_ALL_MANIFESTS);
    assert_eq!(http.get(&url(&wharf), &[accept]).status, 200);
    // Past the file system's timestamp granularity, so the change moves the file's mtime.
    std::thread::sleep(std::time::Duration::from_millis(50));
    let path = stored(&wharf, &img.manifest.digest);
    let mut bytes = std::fs::read(&path).expect("stored manifest");
    bytes[10] ^= 0x20;
    std::fs::write(&path, &bytes).expect("flip");

    // Running, wharf answers with the bytes it verified (kept in memory), not the file's.
    up.wait_log_stable();
    let m = up.mark();
    let r = http.get(&url(&wharf), &[accept]);
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(&r.body[..], img.manifest_json.as_bytes());
    up.wait_log_stable();
    assert_eq!(up.since(m).len(), 0, "{:#?}", up.since(m));

    // Restarted, it finds the file changed, quarantines it and fetches the manifest once.
    wharf.restart();
    let m = up.mark();
    let r = http.get(&url(&wharf), &[accept]);
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(&r.body[..], img.manifest_json.as_bytes());
    up.wait_log_stable();
    let reqs = up.since(m);
    assert_eq!(
        reqs.iter()
            .filter(|r| r.is_manifest_get_by_digest())
            .count(),
        1,
        "{reqs:#?}"
    );
    assert_eq!(files_under(&wharf.cache_dir().join("quarantine")).len(), 1);
}

fn admin(wharf: &Wharf) -> String {
    wharf.admin_url().trim_start_matches("http://").to_owned()
}

#[test]
fn wharf_cache_stats_ls_and_rm_work_against_a_running_wharf() {
    let set = images();
    let img = &set.oraclelinux;
    let up = Upstream::plain();
    let wharf = Wharf::builder()
        .upstream(UpstreamCfg::oracle(&up).extra("immutable_tags = ['^7-slim$']"))
        .max_size("1GiB")
        .start();
    let http = Http::new();
    assert_eq!(
        http.get(&format!("{}/healthz", wharf.admin_url()), &[])
            .status,
        200
    );
    let ready = http.get(&format!("{}/readyz", wharf.admin_url()), &[]);
    assert_eq!(ready.status, 200, "{}", ready.describe());

    let skopeo = Skopeo::new();
    skopeo
        .copy_direct(&wharf.host_port(), &img.reference(), &[])
        .expect_ok("pull");

    // stats: the admin address from the config file, as an operator on the host would.
    let config = wharf.config_path().display().to_string();
    let out = cache_cmd(&["stats", "--config", &config]).expect_ok("wharf cache stats");
    assert!(out.stdout.contains("of 1.0 GiB"), "{}", out.stdout);
    let out = cache_cmd(&["stats", "--json", "--admin", &admin(&wharf)]).expect_ok("stats --json");
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(
        v["entries"].as_u64(),
        Some(img.blobs().len() as u64 + 1),
        "{v}"
    );
    assert_eq!(v["manifests"].as_u64(), Some(1), "{v}");
    assert_eq!(v["size_bytes"].as_u64(), Some(image_bytes(img)), "{v}");
    assert_eq!(v["max_size_bytes"].as_u64(), Some(1 << 30));

    // ls: the repository and tag, per upstream.
    let out = cache_cmd(&["ls", "--admin", &admin(&wharf)]).expect_ok("wharf cache ls");
    assert!(out.stdout.contains("oracle"), "{}", out.stdout);
    assert!(out.stdout.contains(&img.repo), "{}", out.stdout);
    assert!(out.stdout.contains(&img.tag), "{}", out.stdout);
    assert!(out.stdout.contains(&img.manifest.digest), "{}", out.stdout);
    assert!(out.stdout.contains("immutable"), "{}", out.stdout);

    // rm of the tag: the next pull asks for the tag again, and only for it.
    let tag_ref = format!("oracle/{}", img.reference());
    let out = cache_cmd(&["rm", "--admin", &admin(&wharf), &tag_ref]).expect_ok("rm tag");
    assert!(out.stdout.contains(&img.tag), "{}", out.stdout);
    let m = up.mark();
    skopeo
        .copy_direct(&wharf.host_port(), &img.reference(), &[])
        .expect_ok("pull after rm of the tag");
    let reqs = up.since(m);
    assert_eq!(
        reqs.iter()
            .filter(|r| r.is("GET", Kind::ManifestByTag))
            .count(),
        1,
        "{reqs:#?}"
    );
    assert_eq!(blob_gets(&up, m, &img.blobs()), 0, "{reqs:#?}");

    // rm --image: manifest, config and layers go; the next pull fetches every blob again.
    let out =
        cache_cmd(&["rm", "--image", "--admin", &admin(&wharf), &tag_ref]).expect_ok("rm --image");
    assert!(out.stdout.contains("freed"), "{}", out.stdout);
    let out = cache_cmd(&["stats", "--json", "--admin", &admin(&wharf)]).expect_ok("stats");
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(v["entries"].as_u64(), Some(0), "{v}");
    let m = up.mark();
    let c = skopeo
        .copy_direct(&wharf.host_port(), &img.reference(), &[])
        .expect_ok("pull after rm --image");
    assert_eq!(c.digest(), img.manifest.digest);
    expect::each_blob_fetched_once(&up.since(m), &img.blobs(), "pull after rm --image");

    // A reference nothing is cached for is an error, not a silent success.
    let out = cache_cmd(&["rm", "--admin", &admin(&wharf), "oracle/nothing/here:1"]);
    assert!(!out.ok(), "{out}");
    assert!(out.stderr.contains("404"), "{out}");
}
