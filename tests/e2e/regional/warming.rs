//! Predictive warming: a tag moves upstream; the revalidation that finds it fetches the new
//! blobs of the platform clients pulled before, so the next pull asks the upstream for nothing,
//! and fetches nothing of the other platforms.

use std::time::Duration;

use tokio::time::Instant;

use wharf_e2e::http::{ACCEPT_ALL_MANIFESTS, Http};
use wharf_e2e::images::{ImageSpec, build_image, build_index};
use wharf_e2e::push::Pusher;
use wharf_e2e::registry::Storage;
use wharf_e2e::{Image, IndexImage, Kind, Skopeo, Upstream, UpstreamCfg, Wharf};

const REPO: &str = "app/rollout";
const TAG_TTL: Duration = Duration::from_secs(2);
/// skopeo's flags for the one platform this site runs.
const ARM64: [&str; 4] = ["--override-arch", "arm64", "--override-variant", "v8"];

/// Pushes an amd64 + arm64 index as `REPO:latest`; each release and platform has blobs of its own.
fn push_release(up: &Upstream, release: &str) -> IndexImage {
    let http = Http::new();
    let p = Pusher {
        base: up.url(),
        http: &http,
    };
    let mut children = Vec::new();
    for (arch, variant) in [("amd64", None), ("arm64", Some("v8"))] {
        let spec =
            ImageSpec::oci(&format!("rollout-{release}-{arch}"), &[256, 512]).arch(arch, variant);
        let child = build_image(&spec, REPO, "", &mut |d, b| p.blob(REPO, d, b));
        p.manifest(
            REPO,
            &child.manifest.digest,
            &child.manifest.media_type,
            &child.manifest_json,
        );
        children.push(child);
    }
    let index = build_index(REPO, "latest", children);
    p.manifest(
        REPO,
        "latest",
        &index.manifest.media_type,
        &index.manifest_json,
    );
    index
}

/// Upstream requests since `mark` for any of `digests`.
fn asked_for<'a>(
    up: &Upstream,
    mark: wharf_e2e::Mark,
    digests: impl IntoIterator<Item = &'a str>,
) -> Vec<wharf_e2e::Req> {
    let digests: Vec<&str> = digests.into_iter().collect();
    up.since(mark)
        .into_iter()
        .filter(|r| digests.iter().any(|d| r.path_only().ends_with(d)))
        .collect()
}

fn blob_digests(img: &Image) -> Vec<&str> {
    img.blobs().iter().map(|d| d.digest.as_str()).collect()
}

#[test]
fn a_moved_tag_gets_the_platform_pulled_before_warmed_and_no_other() {
    let up = Upstream::builder().storage(Storage::Empty).start();
    let v1 = push_release(&up, "v1");
    let wharf = Wharf::builder()
        .upstream(
            UpstreamCfg::oracle(&up)
                .tag_ttl("2s")
                .extra("warm_moved_tags = true"),
        )
        .start();
    let image = format!("oracle/{REPO}:latest");
    let skopeo = Skopeo::new();
    let c = skopeo
        .copy_direct(&wharf.host_port(), &image, &ARM64)
        .expect_ok("the site pulls v1 for arm64");
    assert_eq!(c.digest(), v1.child("arm64").manifest.digest);

    // The release moves the tag; past its TTL, the first request of the rollout (a HEAD, as
    // containerd sends first) revalidates it and finds it moved.
    let v2 = push_release(&up, "v2");
    std::thread::sleep(TAG_TTL + Duration::from_millis(300));
    let mark = up.mark();
    let head = Http::new().head(
        &format!("{}/v2/oracle/{REPO}/manifests/latest", wharf.url()),
        &[("Accept", ACCEPT_ALL_MANIFESTS)],
    );
    assert_eq!(head.status, 200, "{}", head.describe());
    assert_eq!(
        head.header("docker-content-digest").as_deref(),
        Some(v2.manifest.digest.as_str())
    );

    let (arm, amd) = (v2.child("arm64"), v2.child("amd64"));
    let wanted = arm.blobs().len() as u64;
    let deadline = Instant::now() + Duration::from_secs(30);
    while wharf.metric("wharf_warm_blobs_total", &["result=\"fetched\""]) < wanted {
        assert!(Instant::now() < deadline, "warming never finished");
        std::thread::sleep(Duration::from_millis(50));
    }
    up.wait_log_stable();
    // Each new arm64 blob was fetched once; nothing of amd64, not even its manifest.
    for d in blob_digests(arm) {
        let reqs = asked_for(&up, mark, [d]);
        assert_eq!(reqs.len(), 1, "{d}: {reqs:#?}");
        assert!(reqs[0].is_blob_get(), "{reqs:#?}");
    }
    let amd_digests = blob_digests(amd)
        .into_iter()
        .chain([amd.manifest.digest.as_str()]);
    let reqs = asked_for(&up, mark, amd_digests);
    assert!(reqs.is_empty(), "amd64 was fetched: {reqs:#?}");
    let bytes = wharf.metric("wharf_warm_bytes_total", &[]);
    assert_eq!(bytes, arm.total_blob_bytes());

    // The next arm64 pull is v2 and asks the upstream for nothing.
    let mark = up.mark();
    let c = skopeo
        .copy_direct(&wharf.host_port(), &image, &ARM64)
        .expect_ok("the next node pulls v2 for arm64");
    assert_eq!(c.digest(), arm.manifest.digest);
    up.wait_log_stable();
    // (A HEAD of the tag may revalidate it again: its TTL is short here.)
    let reqs: Vec<_> = up
        .since(mark)
        .into_iter()
        .filter(|r| !r.is("HEAD", Kind::ManifestByTag))
        .collect();
    assert!(
        reqs.is_empty(),
        "the pull after warming fetched from the upstream: {reqs:#?}"
    );
    assert_eq!(wharf.metric("wharf_warm_hits_total", &[]), wanted);
}

#[test]
fn warming_is_off_unless_configured() {
    let up = Upstream::builder().storage(Storage::Empty).start();
    push_release(&up, "v1");
    let wharf = Wharf::builder()
        .upstream(UpstreamCfg::oracle(&up).tag_ttl("1s"))
        .start();
    let image = format!("oracle/{REPO}:latest");
    let skopeo = Skopeo::new();
    skopeo
        .copy_direct(&wharf.host_port(), &image, &ARM64)
        .expect_ok("pull v1 for arm64");
    let v2 = push_release(&up, "v2");
    std::thread::sleep(Duration::from_millis(1300));
    let mark = up.mark();
    let head = Http::new().head(
        &format!("{}/v2/oracle/{REPO}/manifests/latest", wharf.url()),
        &[("Accept", ACCEPT_ALL_MANIFESTS)],
    );
    assert_eq!(head.status, 200, "{}", head.describe());
    // Give a warming that should not run the time it would take.
    std::thread::sleep(Duration::from_secs(2));
    up.wait_log_stable();
    let reqs = asked_for(&up, mark, blob_digests(v2.child("arm64")));
    assert!(reqs.is_empty(), "warmed while off: {reqs:#?}");
    assert_eq!(wharf.metric("wharf_warm_runs_total", &[]), 0);
}
