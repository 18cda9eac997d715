//! Hosted content over its life (issue 16, third slice), spoken raw against the spec's words:
//! deletes of tags, manifests and blobs (and when they are refused), online garbage
//! collection racing pushes, mounts and pulls (gc.rs beside this file), and the referrers of
//! pushed manifests.

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

#[path = "hosting/api.rs"]
#[allow(dead_code, reason = "shared with e2e_hosting, which uses all of it")]
mod api;
#[path = "hosted_content/gc.rs"]
mod gc;
#[path = "security/support.rs"]
#[allow(dead_code, reason = "shared with e2e_security, which uses all of it")]
mod support;

use base64::Engine;
use bytes::Bytes;
use wharf_e2e::expect;
use wharf_e2e::http::{ACCEPT_ALL_MANIFESTS, Http};
use wharf_e2e::util::{sha256_digest, temp_dir};
use wharf_e2e::{Upstream, UpstreamCfg, Wharf};

use api::Api;
use support::SecureWharf;

const USER: &str = "alice";
const PASSWORD: &str = "delete-s3cret";
pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// wharf in front of `up` ("oracle", also the default upstream), an htpasswd user, anonymous
/// pulls, `team/*` hosted in `<dir>/hosted`, and `hosted_extra` lines in `[hosted]`.
fn wharf(up: &Upstream, hosted_extra: &str) -> (SecureWharf, tempfile::TempDir) {
    let dir = temp_dir("hosted-content");
    let file = dir.path().join("htpasswd");
    support::htpasswd(&file, USER, PASSWORD);
    let builder = Wharf::builder()
        .upstream(UpstreamCfg::oracle(up))
        .extra_toml(&format!(
            "[auth]\nhtpasswd = {:?}\nanonymous_pull = true\n\n[hosted]\nrepositories = [\"team/*\"]\ndir = {:?}\n{hosted_extra}\n",
            file.display().to_string(),
            dir.path().join("hosted").display().to_string(),
        ));
    (SecureWharf::start(builder, "", None), dir)
}

fn api(w: &SecureWharf) -> Api {
    let v = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    Api {
        http: Http::new(),
        base: w.url(),
        auth: format!("Basic {v}"),
    }
}

/// An OCI image manifest of `config` and `layers` (digest, size), with `extra` JSON members.
pub(crate) fn image_manifest(
    config: (&str, usize),
    layers: &[(String, usize)],
    extra: &str,
) -> String {
    let layers: Vec<String> = layers
        .iter()
        .map(|(d, n)| {
            format!(
                r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{d}","size":{n}}}"#
            )
        })
        .collect();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{}]{extra}}}"#,
        config.0,
        config.1,
        layers.join(",")
    )
}

/// Pushes an image of one config and one layer to `repo` as `tag`; (manifest digest, layer
/// digest, manifest bytes).
fn push_image(api: &Api, repo: &str, tag: &str, layer: &[u8]) -> (String, String, String) {
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let cd = api.push_blob(repo, config);
    let ld = api.push_blob(repo, layer);
    let body = image_manifest((&cd, config.len()), &[(ld.clone(), layer.len())], "");
    let r = api.send(
        "PUT",
        &format!("/v2/{repo}/manifests/{tag}"),
        &[("Content-Type", OCI_MANIFEST)],
        body.as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", r.describe());
    (sha256_digest(body.as_bytes()), ld, body)
}

#[test]
fn deletes_unlink_tags_manifests_and_blobs_when_allowed() {
    let up = Upstream::plain();

    // Off by default: 405 UNSUPPORTED, as the spec lets a registry without deletes answer.
    let (off, _d1) = wharf(&up, "");
    let a = api(&off);
    let (md, ld, _) = push_image(&a, "team/a", "v1", b"layer bytes, never deleted");
    for path in [
        "/v2/team/a/manifests/v1".to_owned(),
        format!("/v2/team/a/manifests/{md}"),
        format!("/v2/team/a/blobs/{ld}"),
    ] {
        let r = a.send("DELETE", &path, &[], b"");
        expect::oci_error(&r, &[405], "UNSUPPORTED", "a delete with deletes off");
        assert!(r.text().contains("hosted] delete"), "{}", r.describe());
    }
    assert_eq!(a.blob_status("team/a", &ld), 200);
    drop(off);

    let (w, _d2) = wharf(&up, "delete = true");
    let a = api(&w);
    let (md, ld, body) = push_image(&a, "team/a", "v1", b"layer bytes of team/a");
    for tag in ["v2", "v3"] {
        let r = a.send(
            "PUT",
            &format!("/v2/team/a/manifests/{tag}"),
            &[("Content-Type", OCI_MANIFEST)],
            body.as_bytes(),
        );
        assert_eq!(r.status, 201, "{}", r.describe());
    }
    let r = a.send(
        "POST",
        &format!("/v2/team/b/blobs/uploads/?mount={ld}&from=team/a"),
        &[],
        b"",
    );
    assert_eq!(r.status, 201, "mount: {}", r.describe());
    let get = |path: &str| a.send("GET", path, &[("Accept", ACCEPT_ALL_MANIFESTS)], b"");

    // Refused: a mirrored repository's content, and a caller without credentials.
    let r = a.send(
        "DELETE",
        &format!("/v2/oracle/os/x/manifests/{md}"),
        &[],
        b"",
    );
    expect::oci_error(
        &r,
        &[405],
        "UNSUPPORTED",
        "a delete from a mirrored repository",
    );
    assert!(r.text().contains("upstream oracle"), "{}", r.describe());
    let anonymous = Http::new();
    let r = anonymous.request(
        "DELETE",
        &format!("{}/v2/team/a/manifests/v2", w.url()),
        &[],
        Bytes::new(),
    );
    expect::oci_error(&r, &[401], "UNAUTHORIZED", "an anonymous delete");
    assert_eq!(get("/v2/team/a/manifests/v2").status, 200, "kept");

    // A tag: that tag only.
    let r = a.send("DELETE", "/v2/team/a/manifests/v2", &[], b"");
    assert_eq!(r.status, 202, "{}", r.describe());
    let r = get("/v2/team/a/manifests/v2");
    expect::oci_error(&r, &[404], "MANIFEST_UNKNOWN", "a deleted tag");
    assert_eq!(get("/v2/team/a/manifests/v1").status, 200, "another tag");
    let r = a.send("DELETE", "/v2/team/a/manifests/v2", &[], b"");
    expect::oci_error(&r, &[404], "MANIFEST_UNKNOWN", "a tag deleted twice");
    let r = a.send("GET", "/v2/team/a/tags/list", &[], b"");
    assert_eq!(r.json()["tags"], serde_json::json!(["v1", "v3"]));

    // A manifest by digest: it and every tag pointing at it.
    let r = a.send("DELETE", &format!("/v2/team/a/manifests/{md}"), &[], b"");
    assert_eq!(r.status, 202, "{}", r.describe());
    for path in [
        format!("/v2/team/a/manifests/{md}"),
        "/v2/team/a/manifests/v1".to_owned(),
        "/v2/team/a/manifests/v3".to_owned(),
    ] {
        let r = get(&path);
        expect::oci_error(&r, &[404], "MANIFEST_UNKNOWN", "a deleted manifest");
    }
    let r = a.send("DELETE", &format!("/v2/team/a/manifests/{md}"), &[], b"");
    expect::oci_error(&r, &[404], "MANIFEST_UNKNOWN", "a manifest deleted twice");
    let r = a.send("DELETE", &format!("/v2/team/a/manifests/{ld}"), &[], b"");
    expect::oci_error(&r, &[404], "MANIFEST_UNKNOWN", "a blob named as a manifest");

    // A blob: unlinked from team/a only; team/b, which mounted it, still serves it.
    let r = a.send("DELETE", &format!("/v2/team/a/blobs/{ld}"), &[], b"");
    assert_eq!(r.status, 202, "{}", r.describe());
    let r = a.send("GET", &format!("/v2/team/a/blobs/{ld}"), &[], b"");
    expect::oci_error(&r, &[404], "BLOB_UNKNOWN", "a deleted blob");
    let r = a.send("GET", &format!("/v2/team/b/blobs/{ld}"), &[], b"");
    assert_eq!(
        (r.status, r.body.as_ref()),
        (200, b"layer bytes of team/a".as_slice()),
        "another repository's link"
    );
    let r = a.send("DELETE", &format!("/v2/team/a/blobs/{ld}"), &[], b"");
    expect::oci_error(&r, &[404], "BLOB_UNKNOWN", "a blob deleted twice");

    // A manifest is not deleted through the blobs endpoint.
    let (md2, _, _) = push_image(&a, "team/c", "v1", b"layer bytes of team/c");
    let r = a.send("DELETE", &format!("/v2/team/c/blobs/{md2}"), &[], b"");
    expect::oci_error(&r, &[404], "BLOB_UNKNOWN", "a manifest through blobs/");
    assert_eq!(get("/v2/team/c/manifests/v1").status, 200);
}

#[test]
fn garbage_collection_keeps_what_is_referenced_and_removes_the_rest() {
    let up = Upstream::plain();
    // Collections only when asked and after deletes: the test makes them race.
    let (w, dir) = wharf(&up, "delete = true\ngc_interval = \"1h\"");
    let a = api(&w);
    let hosted = dir.path().join("hosted");
    // Garbage from before: a blob pushed and deleted goes with the first collection, and it
    // is counted in /metrics.
    let g = a.push_blob("team/old", b"garbage from before");
    assert!(gc::blob_file(&hosted, &g).exists());
    assert_eq!(
        a.send("DELETE", &format!("/v2/team/old/blobs/{g}"), &[], b"")
            .status,
        202
    );
    let report = gc::collect(&Http::new(), w.admin);
    assert!(report["collected"].as_u64() >= Some(1), "{report}");
    assert!(gc::gone(&gc::blob_file(&hosted, &g)), "{report}");
    let metrics = Http::new()
        .get(&format!("http://127.0.0.1:{}/metrics", w.admin), &[])
        .text();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("wharf_hosted_gc_collected_bytes_total ") && !l.ends_with(" 0")),
        "{metrics}"
    );

    gc::collections_race_pushes_mounts_and_pulls(&a, w.admin, &hosted);
    gc::a_pull_streams_on_while_its_blob_is_collected(&a, w.admin, &hosted, w.port);
}

/// The referrers API for hosted content: an artifact pushed with a `subject` is listed under
/// it (`OCI-Subject` on its PUT), with and without an `artifactType` filter, in its
/// repository only; a deleted one leaves, and a restart rebuilds the same list.
#[test]
fn referrers_list_the_manifests_naming_a_subject() {
    let up = Upstream::plain();
    let (mut w, _dir) = wharf(&up, "delete = true");
    let a = api(&w);
    let (image, _, image_body) = push_image(&a, "team/a", "v1", b"an image with referrers");
    let referrers = |repo: &str, query: &str| {
        let r = a.send(
            "GET",
            &format!("/v2/{repo}/referrers/{image}{query}"),
            &[("Accept", "application/vnd.oci.image.index.v1+json")],
            b"",
        );
        assert_eq!(r.status, 200, "{}", r.describe());
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("application/vnd.oci.image.index.v1+json")
        );
        let index = r.json();
        assert_eq!(index["schemaVersion"], 2, "{index}");
        assert_eq!(
            index["mediaType"],
            "application/vnd.oci.image.index.v1+json"
        );
        (r.header("oci-filters-applied"), index["manifests"].clone())
    };
    assert_eq!(
        referrers("team/a", ""),
        (None, serde_json::json!([])),
        "none yet: an empty index, never a 404"
    );

    // An SBOM with its own artifactType and annotations, pushed by digest; a signature whose
    // type is its config's media type, pushed by tag.
    let subject = format!(
        r#","subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{image}","size":{}}}"#,
        image_body.len()
    );
    let empty = a.push_blob("team/a", b"{}");
    let sbom_layer = a.push_blob("team/a", b"{\"packages\":[]}");
    let sbom = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"application/vnd.example.sbom.v1","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{empty}","size":2}},"layers":[{{"mediaType":"application/json","digest":"{sbom_layer}","size":15}}],"annotations":{{"org.example.sbom.format":"json"}}{subject}}}"#
    );
    let sbom_digest = sha256_digest(sbom.as_bytes());
    let sig_config = br#"{"signed":true}"#;
    let sig_config_digest = a.push_blob("team/a", sig_config);
    let sig = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.example.sig.config.v1+json","digest":"{sig_config_digest}","size":{}}},"layers":[]{subject}}}"#,
        sig_config.len()
    );
    let sig_digest = sha256_digest(sig.as_bytes());
    for (reference, body) in [(&sbom_digest, &sbom), (&"sig".to_owned(), &sig)] {
        let r = a.send(
            "PUT",
            &format!("/v2/team/a/manifests/{reference}"),
            &[("Content-Type", OCI_MANIFEST)],
            body.as_bytes(),
        );
        assert_eq!(r.status, 201, "{}", r.describe());
        assert_eq!(r.header("oci-subject"), Some(image.clone()), "OCI-Subject");
    }
    let sbom_listed = serde_json::json!({
        "mediaType": OCI_MANIFEST,
        "digest": sbom_digest,
        "size": sbom.len(),
        "artifactType": "application/vnd.example.sbom.v1",
        "annotations": {"org.example.sbom.format": "json"},
    });
    let sig_listed = serde_json::json!({
        "mediaType": OCI_MANIFEST,
        "digest": sig_digest,
        "size": sig.len(),
        "artifactType": "application/vnd.example.sig.config.v1+json",
    });
    let mut both = vec![sbom_listed.clone(), sig_listed.clone()];
    both.sort_by_key(|d| d["digest"].as_str().map(str::to_owned));
    assert_eq!(referrers("team/a", ""), (None, serde_json::json!(both)));
    assert_eq!(
        referrers("team/a", "?artifactType=application/vnd.example.sbom.v1"),
        (
            Some("artifactType".to_owned()),
            serde_json::json!([sbom_listed])
        )
    );
    assert_eq!(
        referrers(
            "team/a",
            "?artifactType=application%2Fvnd.example.sig.config.v1%2Bjson"
        ),
        (
            Some("artifactType".to_owned()),
            serde_json::json!([sig_listed])
        )
    );
    assert_eq!(
        referrers("team/a", "?artifactType=application/none"),
        (Some("artifactType".to_owned()), serde_json::json!([]))
    );
    assert_eq!(
        referrers("team/b", "").1,
        serde_json::json!([]),
        "another repository's referrers"
    );

    // Deleted, the SBOM leaves; a restart rebuilds the list from the store.
    let r = a.send(
        "DELETE",
        &format!("/v2/team/a/manifests/{sbom_digest}"),
        &[],
        b"",
    );
    assert_eq!(r.status, 202, "{}", r.describe());
    assert_eq!(
        referrers("team/a", "").1,
        serde_json::json!([sig_listed.clone()])
    );
    w.restart();
    assert_eq!(referrers("team/a", "").1, serde_json::json!([sig_listed]));
}
