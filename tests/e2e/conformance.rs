//! The OCI distribution-spec conformance suite's pull workflow and tag listing, rewritten from
//! the spec's own tests (`conformance/01_pull_test.go`, `setup.go`) and `spec.md`, run against
//! the real upstream registry through wharf. (The Go suite cannot be built here.)
//!
//! The suite's pull workflow, with setup skipped (`OCI_TAG_NAME`, `OCI_MANIFEST_DIGEST`,
//! `OCI_BLOB_DIGEST` given), is 14 specs: the tag from the environment; HEAD and GET of a
//! missing blob (404) and of an existing one (200); HEAD and GET of `.INVALID_MANIFEST_NAME`
//! (404), of two manifests by digest and of one by tag (200, with only the OCI image manifest
//! type accepted); and a GET of `manifests/sha256:totallywrong` carrying a body (400 with a
//! spec error code, or 404). Here each also checks what the spec's main text asks of every
//! manifest and blob GET/HEAD: `Docker-Content-Digest` and `Content-Length`, and the error
//! codes of the 404s. The suite's second manifest, pushed by digest only, is the amd64 child of
//! `os/multiarch` (the test images have no untagged manifest in `os/oraclelinux`).
//!
//! The workflow runs under the three names a client may use for the same repository: bare (the
//! default upstream), with wharf's prefix, and with containerd's `?ns=`; requests that name no
//! manifest must not reach the upstream, which the upstream's access log shows.

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

use bytes::Bytes;
use wharf_e2e::util::sha256_digest;
use wharf_e2e::{Descriptor, Http, REGISTRY_NAME, Resp, Upstream, UpstreamCfg, Wharf, images};
use wharf_testkit::{FakeRegistry, Reply};

/// The suite's `nonexistentManifest`: a reference that is neither a digest nor a tag.
const NONEXISTENT_MANIFEST: &str = ".INVALID_MANIFEST_NAME";
/// The suite's only `Accept` on manifest requests.
const ACCEPT_OCI_MANIFEST: (&str, &str) = ("Accept", "application/vnd.oci.image.manifest.v1+json");
/// The error codes the suite accepts in a 400 body (`setup.go`'s `errorCodes`).
const SPEC_ERROR_CODES: &[&str] = &[
    "BLOB_UNKNOWN",
    "BLOB_UPLOAD_INVALID",
    "BLOB_UPLOAD_UNKNOWN",
    "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN",
    "MANIFEST_INVALID",
    "MANIFEST_UNKNOWN",
    "MANIFEST_UNVERIFIED",
    "NAME_INVALID",
    "NAME_UNKNOWN",
    "SIZE_INVALID",
    "TAG_INVALID",
    "UNAUTHORIZED",
    "DENIED",
    "UNSUPPORTED",
];

/// The suite's `dummyDigest`: `sha256("hello world")`, a blob nobody has.
fn dummy_digest() -> String {
    sha256_digest(b"hello world")
}

/// How a client names a repository to wharf: the path before `/<endpoint>` and a query.
struct Naming {
    what: &'static str,
    /// `/v2/<name>` as the client writes it, for `os/oraclelinux`.
    base: &'static str,
    /// The same for `os/multiarch`.
    multiarch_base: &'static str,
    /// `?ns=...` or empty.
    query: &'static str,
}

const NAMINGS: &[Naming] = &[
    Naming {
        what: "bare name (default upstream)",
        base: "/v2/os/oraclelinux",
        multiarch_base: "/v2/os/multiarch",
        query: "",
    },
    Naming {
        what: "wharf's prefix",
        base: "/v2/oracle/os/oraclelinux",
        multiarch_base: "/v2/oracle/os/multiarch",
        query: "",
    },
    Naming {
        what: "containerd's ns",
        base: "/v2/os/oraclelinux",
        multiarch_base: "/v2/os/multiarch",
        query: "?ns=container-registry.oracle.com",
    },
];

/// A successful blob or manifest answer to a HEAD or GET: the spec's headers, the bytes.
fn expect_content(r: &Resp, head: bool, d: &Descriptor, body: Option<&[u8]>, what: &str) {
    assert_eq!(r.status, 200, "{what}: {}", r.describe());
    assert_eq!(
        r.header("Docker-Content-Digest").as_deref(),
        Some(d.digest.as_str()),
        "{what}: Docker-Content-Digest: {}",
        r.describe()
    );
    assert_eq!(
        r.header("Content-Length").as_deref(),
        Some(d.size.to_string().as_str()),
        "{what}: Content-Length: {}",
        r.describe()
    );
    if head {
        assert!(r.body.is_empty(), "{what}: a HEAD answer has no body");
    } else {
        assert_eq!(sha256_digest(&r.body), d.digest, "{what}: the bytes");
        if let Some(body) = body {
            assert_eq!(&r.body[..], body, "{what}: the bytes as pushed");
        }
    }
}

/// A 404 with, for a GET, the OCI error `code`.
fn expect_missing(r: &Resp, head: bool, code: &str, what: &str) {
    assert_eq!(r.status, 404, "{what}: {}", r.describe());
    if head {
        assert!(r.body.is_empty(), "{what}: a HEAD answer has no body");
    } else {
        assert_eq!(
            r.error_codes().first().map(String::as_str),
            Some(code),
            "{what}: {}",
            r.describe()
        );
    }
}

#[test]
fn pull_workflow_passes_in_full_under_every_name() {
    let set = images();
    let up = Upstream::plain();
    let wharf = Wharf::for_upstream(&up);
    let http = Http::new();
    let img = &set.oraclelinux;
    let child = set.multiarch.child("amd64");
    // The suite's environment: the tag, manifest[0]'s digest, the config blob's digest.
    let (tag, manifest0, config) = (&img.tag, &img.manifest, &img.config);

    for naming in NAMINGS {
        let url = |base: &str, tail: &str| format!("{}{base}/{tail}{}", wharf.url(), naming.query);
        let blob = |tail: &str| url(naming.base, &format!("blobs/{tail}"));
        let manifest = |tail: &str| url(naming.base, &format!("manifests/{tail}"));
        let child_manifest = url(
            naming.multiarch_base,
            &format!("manifests/{}", child.manifest.digest),
        );
        let w = naming.what;
        let ns_echoed = |r: &Resp, what: &str| {
            if let Some(ns) = naming.query.strip_prefix("?ns=") {
                assert_eq!(
                    r.header("OCI-Namespace").as_deref(),
                    Some(ns),
                    "{w}: {what}: the ns that scoped the request is echoed: {}",
                    r.describe()
                );
            }
        };

        // Pull blobs.
        let r = http.head(&blob(&dummy_digest()), &[]);
        expect_missing(&r, true, "BLOB_UNKNOWN", &format!("{w}: HEAD missing blob"));
        ns_echoed(&r, "HEAD missing blob");
        let r = http.head(&blob(&config.digest), &[]);
        expect_content(&r, true, config, None, &format!("{w}: HEAD blob"));
        ns_echoed(&r, "HEAD blob");
        let r = http.get(&blob(&dummy_digest()), &[]);
        expect_missing(&r, false, "BLOB_UNKNOWN", &format!("{w}: GET missing blob"));
        ns_echoed(&r, "GET missing blob");
        let r = http.get(&blob(&config.digest), &[]);
        expect_content(&r, false, config, None, &format!("{w}: GET blob"));
        ns_echoed(&r, "GET blob");

        // Pull manifests.
        let mark = up.mark();
        let r = http.head(&manifest(NONEXISTENT_MANIFEST), &[ACCEPT_OCI_MANIFEST]);
        expect_missing(
            &r,
            true,
            "MANIFEST_UNKNOWN",
            &format!("{w}: HEAD {NONEXISTENT_MANIFEST}"),
        );
        let r = http.get(&manifest(NONEXISTENT_MANIFEST), &[ACCEPT_OCI_MANIFEST]);
        expect_missing(
            &r,
            false,
            "MANIFEST_UNKNOWN",
            &format!("{w}: GET {NONEXISTENT_MANIFEST}"),
        );
        // Other references that are no tag (a leading '-', 129 characters) name no manifest
        // either.
        for bad in ["-x".to_owned(), "a".repeat(129)] {
            let r = http.get(&manifest(&bad), &[ACCEPT_OCI_MANIFEST]);
            expect_missing(&r, false, "MANIFEST_UNKNOWN", &format!("{w}: GET {bad}"));
        }
        let asked = up.since(mark);
        assert!(
            asked.is_empty(),
            "{w}: references that name no manifest reached the upstream: {asked:#?}"
        );

        for (target, d, body, what) in [
            (
                manifest(&manifest0.digest),
                manifest0,
                img.manifest_json.as_bytes(),
                "manifest[0] by digest",
            ),
            (
                child_manifest.clone(),
                &child.manifest,
                child.manifest_json.as_bytes(),
                "manifest[1] by digest",
            ),
            (
                manifest(tag),
                manifest0,
                img.manifest_json.as_bytes(),
                "manifest by tag",
            ),
        ] {
            for head in [true, false] {
                let what = format!("{w}: {} {what}", if head { "HEAD" } else { "GET" });
                let r = if head {
                    http.head(&target, &[ACCEPT_OCI_MANIFEST])
                } else {
                    http.get(&target, &[ACCEPT_OCI_MANIFEST])
                };
                expect_content(&r, head, d, Some(body), &what);
                assert_eq!(
                    r.header("Content-Type").as_deref(),
                    Some(d.media_type.as_str()),
                    "{what}: Content-Type"
                );
                ns_echoed(&r, &what);
            }
        }

        // Missing manifests: a tag and a digest the upstream does not have.
        let r = http.get(&manifest("no-such-tag"), &[ACCEPT_OCI_MANIFEST]);
        expect_missing(
            &r,
            false,
            "MANIFEST_UNKNOWN",
            &format!("{w}: GET missing tag"),
        );
        let r = http.head(&manifest("no-such-tag"), &[ACCEPT_OCI_MANIFEST]);
        expect_missing(
            &r,
            true,
            "MANIFEST_UNKNOWN",
            &format!("{w}: HEAD missing tag"),
        );
        ns_echoed(&r, "HEAD missing tag");
        let r = http.get(&manifest(&dummy_digest()), &[ACCEPT_OCI_MANIFEST]);
        expect_missing(
            &r,
            false,
            "MANIFEST_UNKNOWN",
            &format!("{w}: GET missing digest"),
        );
        ns_echoed(&r, "GET missing digest");

        // Error codes: a GET of a malformed digest, with a body, as the suite sends it.
        let mark = up.mark();
        let r = http.request(
            "GET",
            &manifest("sha256:totallywrong"),
            &[("Content-Type", "application/vnd.oci.image.manifest.v1+json")],
            Bytes::from_static(b"blablabla"),
        );
        assert_eq!(r.status, 400, "{w}: malformed digest: {}", r.describe());
        let code = r.error_codes().first().cloned().unwrap_or_default();
        assert!(
            SPEC_ERROR_CODES.contains(&code.as_str()),
            "{w}: malformed digest: {code:?} is not a spec error code: {}",
            r.describe()
        );
        assert_eq!(code, "DIGEST_INVALID", "{w}: malformed digest");
        let r = http.get(&blob("sha256:xyz"), &[]);
        assert_eq!(
            r.status,
            400,
            "{w}: malformed blob digest: {}",
            r.describe()
        );
        assert_eq!(
            r.error_codes(),
            ["DIGEST_INVALID"],
            "{w}: malformed blob digest"
        );
        let asked = up.since(mark);
        assert!(
            asked.is_empty(),
            "{w}: malformed digests reached the upstream: {asked:#?}"
        );
    }
}

/// An `ns` that names no upstream scopes nothing: it is refused (wharf is no open proxy) and
/// not echoed; one that does is echoed on every answer, a 404 included (spec, "Registry
/// Proxying": "SHOULD return the `ns` query parameter value in the `OCI-Namespace` header").
#[test]
fn oci_namespace_is_echoed_only_when_ns_chose_the_upstream() {
    let up = Upstream::plain();
    let wharf = Wharf::for_upstream(&up);
    let http = Http::new();
    let url = |q: &str| {
        format!(
            "{}/v2/os/oraclelinux/manifests/no-such-tag?ns={q}",
            wharf.url()
        )
    };
    let r = http.get(&url("unknown.example.com"), &[ACCEPT_OCI_MANIFEST]);
    expect_missing(&r, false, "NAME_UNKNOWN", "an ns naming no upstream");
    assert!(
        r.header("OCI-Namespace").is_none(),
        "an ns that chose nothing is not echoed: {}",
        r.describe()
    );
    let r = http.get(&url(REGISTRY_NAME), &[ACCEPT_OCI_MANIFEST]);
    expect_missing(
        &r,
        false,
        "MANIFEST_UNKNOWN",
        "a missing tag under a known ns",
    );
    assert_eq!(
        r.header("OCI-Namespace").as_deref(),
        Some(REGISTRY_NAME),
        "{}",
        r.describe()
    );
}

/// The repository's tags, sorted: what every tag list of `os/oraclelinux` must hold.
fn oraclelinux_tags() -> Vec<String> {
    let img = &images().oraclelinux;
    let mut tags = vec![img.tag.clone()];
    tags.extend(img.other_tags.iter().cloned());
    tags.sort();
    tags
}

fn tag_list(r: &Resp) -> (String, Vec<String>) {
    let v = r.json();
    let name = v["name"].as_str().unwrap_or_default().to_owned();
    let tags = v["tags"]
        .as_array()
        .unwrap_or_else(|| panic!("no tags array: {}", r.describe()))
        .iter()
        .map(|t| t.as_str().expect("a tag is a string").to_owned())
        .collect();
    (name, tags)
}

#[test]
fn tags_list_names_the_repository_as_the_client_named_it() {
    let up = Upstream::plain();
    let wharf = Wharf::for_upstream(&up);
    let http = Http::new();
    for (path, name, ns) in [
        ("/v2/os/oraclelinux/tags/list", "os/oraclelinux", None),
        (
            "/v2/oracle/os/oraclelinux/tags/list",
            "oracle/os/oraclelinux",
            None,
        ),
        (
            "/v2/os/oraclelinux/tags/list?ns=container-registry.oracle.com",
            "os/oraclelinux",
            Some(REGISTRY_NAME),
        ),
        // containerd with `override_path`: the prefix in the path and `ns`.
        (
            "/v2/oracle/os/oraclelinux/tags/list?ns=container-registry.oracle.com",
            "oracle/os/oraclelinux",
            Some(REGISTRY_NAME),
        ),
        // containerd with a host path: the mount before `/v2/` is not part of the name.
        (
            "/oracle/v2/os/oraclelinux/tags/list",
            "os/oraclelinux",
            None,
        ),
    ] {
        let r = http.get(&format!("{}{path}", wharf.url()), &[]);
        assert_eq!(r.status, 200, "{path}: {}", r.describe());
        assert_eq!(
            r.header("Content-Type").as_deref(),
            Some("application/json"),
            "{path}"
        );
        assert_eq!(
            r.header("Content-Length").as_deref(),
            Some(r.body.len().to_string().as_str()),
            "{path}"
        );
        let (got_name, tags) = tag_list(&r);
        assert_eq!(got_name, name, "{path}: the name the client used");
        assert_eq!(
            tags,
            oraclelinux_tags(),
            "{path}: every tag, in lexical order"
        );
        assert!(r.header("Link").is_none(), "{path}: one page, no Link");
        assert_eq!(r.header("OCI-Namespace").as_deref(), ns, "{path}");
    }

    // n=0: an empty list and no Link; n=1: one tag and a Link back to the client's path,
    // whose page holds the rest, under the same name.
    let base = format!("{}/v2/oracle/os/oraclelinux/tags/list", wharf.url());
    let r = http.get(&format!("{base}?n=0"), &[]);
    assert_eq!(r.status, 200, "n=0: {}", r.describe());
    assert_eq!(tag_list(&r).1, Vec::<String>::new(), "n=0");
    assert!(
        r.header("Link").is_none(),
        "n=0 has no Link: {}",
        r.describe()
    );
    let first = http.get(&format!("{base}?n=1"), &[]);
    assert_eq!(first.status, 200, "n=1: {}", first.describe());
    let (name, page1) = tag_list(&first);
    assert_eq!(name, "oracle/os/oraclelinux");
    assert_eq!(page1, oraclelinux_tags()[..1], "n=1: the first tag");
    let link = first
        .header("Link")
        .unwrap_or_else(|| panic!("n=1 of two tags has a Link: {}", first.describe()));
    let target = link
        .strip_prefix('<')
        .and_then(|l| l.split_once('>'))
        .map(|(t, _)| t)
        .unwrap_or_else(|| panic!("malformed Link {link}"));
    assert!(
        target.starts_with("/v2/oracle/os/oraclelinux/tags/list?"),
        "Link goes back to the client's path: {link}"
    );
    let next = http.get(&format!("{}{target}", wharf.url()), &[]);
    assert_eq!(next.status, 200, "{target}: {}", next.describe());
    let (name, page2) = tag_list(&next);
    assert_eq!(name, "oracle/os/oraclelinux");
    assert_eq!(
        [page1, page2].concat(),
        oraclelinux_tags(),
        "two pages list every tag once, in order"
    );
}

#[test]
fn a_malformed_n_is_400_and_never_forwarded() {
    let up = Upstream::plain();
    let wharf = Wharf::for_upstream(&up);
    let http = Http::new();
    let mark = up.mark();
    for n in [
        "x",
        "-1",
        "1.5",
        "%2B1",
        "1e3",
        "9223372036854775808",
        "99999999999999999999999999",
    ] {
        let r = http.get(
            &format!("{}/v2/os/oraclelinux/tags/list?n={n}", wharf.url()),
            &[],
        );
        assert_eq!(r.status, 400, "n={n}: {}", r.describe());
        assert_eq!(
            r.error_codes(),
            ["PAGINATION_NUMBER_INVALID"],
            "n={n}: {}",
            r.describe()
        );
    }
    let asked = up.since(mark);
    assert!(
        asked.is_empty(),
        "malformed page sizes reached the upstream: {asked:#?}"
    );
    // The largest n a Go registry reads is passed on and lists everything.
    let r = http.get(
        &format!("{}/v2/os/oraclelinux/tags/list?n={}", wharf.url(), i64::MAX),
        &[],
    );
    assert_eq!(r.status, 200, "n=i64::MAX: {}", r.describe());
    assert_eq!(tag_list(&r).1, oraclelinux_tags());
}

/// A Docker Hub-like upstream whose tag list is out of order and names `library/hello`, that
/// ignores `n` (sends no `Link`), and that refuses `n` above 1000 as distribution does with
/// `tags.maxtags` set: faults the real registry does not have.
fn hub_like() -> FakeRegistry {
    FakeRegistry::builder()
        .route(http::Method::GET, "/v2/library/hello/tags/list", |seen| {
            let too_many = form_urlencoded::parse(seen.query.as_bytes())
                .any(|(k, v)| k == "n" && v.parse::<u64>().is_ok_and(|n| n > 1000));
            if too_many {
                Reply::oci_error(400, "PAGINATION_NUMBER_INVALID")
            } else {
                Reply::ok(r#"{"name":"library/hello","tags":["latest","1.0","Zeta","alpha"]}"#)
                    .header("Content-Type", "application/json")
            }
        })
        .start()
}

#[test]
fn an_unsorted_hub_list_is_sorted_and_named_without_library() {
    let hub = hub_like();
    let wharf = Wharf::builder()
        .upstream(UpstreamCfg::new("hub", &hub.url()).prefixes(&["docker.io"]))
        .start();
    let http = Http::new();
    let base = format!("{}/v2/hello/tags/list", wharf.url());

    let r = http.get(&format!("{base}?ns=docker.io"), &[]);
    assert_eq!(r.status, 200, "{}", r.describe());
    let (name, tags) = tag_list(&r);
    assert_eq!(
        name, "hello",
        "the client's name, without the library/ wharf added"
    );
    assert_eq!(
        tags,
        ["1.0", "Zeta", "alpha", "latest"],
        "ASCIIbetical order without n"
    );
    assert_eq!(
        hub.count("/v2/library/hello/tags/list"),
        1,
        "asked upstream under library/"
    );

    // Paged here, since the upstream ignores n.
    let r = http.get(&format!("{base}?ns=docker.io&n=2&last=1.0"), &[]);
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(
        tag_list(&r),
        (
            "hello".to_owned(),
            vec!["Zeta".to_owned(), "alpha".to_owned()]
        )
    );
    assert_eq!(
        r.header("Link").as_deref(),
        Some(r#"</v2/hello/tags/list?last=alpha&n=2&ns=docker.io>; rel="next""#)
    );

    // The upstream's own bound on n is the client's error, not a gateway failure.
    let r = http.get(&format!("{base}?ns=docker.io&n=5000"), &[]);
    assert_eq!(r.status, 400, "{}", r.describe());
    assert_eq!(
        r.error_codes(),
        ["PAGINATION_NUMBER_INVALID"],
        "{}",
        r.describe()
    );
}
