//! The referrers of hosted content (the spec's "Listing Referrers",
//! `GET /v2/<name>/referrers/<digest>[?artifactType=]`): the manifests a repository holds whose
//! `subject` is that digest.
//!
//! ```text
//! index       (repository, subject) -> referrers, each a descriptor: mediaType, digest, size,
//!             artifactType (the manifest's, else its config's mediaType; an index without
//!             one has none), annotations
//!   PUT       a manifest with a `subject` scoped to a repository is added (manifest_put.rs)
//!   DELETE    a manifest unlinked from a repository leaves (delete.rs)
//!   start-up  rebuilt from the store's hosted scope pairs and the manifests they name: the
//!             index is derived, never a second record to keep consistent
//! answer      200, Content-Type application/vnd.oci.image.index.v1+json, an image index
//!             of the referrers the repository still holds (empty when none: a registry with
//!             the API must not answer 404 for lack of referrers); with `artifactType`, only
//!             those of that type and `OCI-Filters-Applied: artifactType`
//! ```
//!
//! Advertising the API (200) commits wharf to listing every pushed manifest with a `subject`:
//! clients that see it (ggcr, oras) stop maintaining the referrers tag schema themselves. A
//! manifest PUT answers `OCI-Subject`, so no client kept that tag for wharf, and the index
//! includes every held manifest with a subject, which also covers the spec's rule on
//! manifests listed in a tag-schema index before the API was enabled.
//!
//! Races: a PUT scopes the manifest, then indexes it; a DELETE unscopes it, then drops it. A
//! DELETE falling between a PUT's two steps leaves an entry whose manifest the repository no
//! longer holds, so an answer lists only what the repository holds (one lookup in memory each).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};

use http::{HeaderValue, Response};
use serde_json::{Map, Value, json};
use wharf_cache::{Store, StoreError};
use wharf_oci::media::OCI_INDEX;
use wharf_oci::{Digest, RepositoryName};

use super::{HOSTED, Hosted};
use crate::body::{self, Body};

/// How a manifest is listed among its subject's referrers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Referrer {
    pub(crate) media_type: String,
    pub(crate) size: u64,
    pub(crate) artifact_type: Option<String>,
    pub(crate) annotations: Option<Map<String, Value>>,
}

/// A manifest's `subject` and its listing, if it has a subject.
pub(crate) fn describe(media_type: &str, bytes: &[u8]) -> Option<(Digest, Referrer)> {
    let json: Value = serde_json::from_slice(bytes).ok()?;
    let subject = json.get("subject")?.get("digest")?.as_str()?;
    let subject = Digest::parse(subject).ok()?;
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    // An index has no config: without its own artifactType it is listed without one.
    let artifact_type = text(json.get("artifactType"))
        .filter(|t| !t.is_empty())
        .or_else(|| text(json.get("config").and_then(|c| c.get("mediaType"))));
    let annotations = json
        .get("annotations")
        .and_then(Value::as_object)
        .filter(|a| !a.is_empty())
        .cloned();
    Some((
        subject,
        Referrer {
            media_type: media_type.to_owned(),
            size: bytes.len() as u64,
            artifact_type,
            annotations,
        },
    ))
}

/// (repository, subject) -> referrers; and each indexed (repository, manifest) -> its subject,
/// so a delete finds its entry without reading the manifest again.
#[derive(Default)]
struct Maps {
    by_subject: HashMap<(String, Digest), BTreeMap<Digest, Referrer>>,
    subject_of: HashMap<(String, Digest), Digest>,
}

/// The referrers index of the hosted repositories.
#[derive(Default)]
pub(crate) struct Referrers {
    maps: Mutex<Maps>,
}

impl Referrers {
    /// The index of what `store` holds: every hosted (repository, manifest) pair whose
    /// manifest has a subject. Reads each held manifest once (start-up only).
    pub(crate) async fn rebuild(store: &Store) -> Result<Referrers, StoreError> {
        let index = Referrers::default();
        for (repo, digest) in store.scope_pairs(HOSTED).await? {
            if store.media_type(&digest).is_none() {
                continue; // a blob
            }
            let Some((media_type, bytes)) = store.get_manifest(&digest).await? else {
                continue;
            };
            if let Some((subject, r)) = describe(&media_type, &bytes) {
                index.add(&repo, subject, digest, r);
            }
        }
        Ok(index)
    }

    fn maps(&self) -> std::sync::MutexGuard<'_, Maps> {
        self.maps.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `repo` holds `manifest`, whose subject is `subject`.
    pub(crate) fn add(&self, repo: &str, subject: Digest, manifest: Digest, r: Referrer) {
        let mut m = self.maps();
        m.subject_of
            .insert((repo.to_owned(), manifest.clone()), subject.clone());
        m.by_subject
            .entry((repo.to_owned(), subject))
            .or_default()
            .insert(manifest, r);
    }

    /// `repo` no longer holds `manifest`.
    pub(crate) fn remove(&self, repo: &str, manifest: &Digest) {
        let mut m = self.maps();
        let Some(subject) = m.subject_of.remove(&(repo.to_owned(), manifest.clone())) else {
            return;
        };
        let key = (repo.to_owned(), subject);
        if let Some(list) = m.by_subject.get_mut(&key) {
            list.remove(manifest);
            if list.is_empty() {
                m.by_subject.remove(&key);
            }
        }
    }

    /// The referrers of `subject` in `repo`, in digest order.
    fn list(&self, repo: &str, subject: &Digest) -> Vec<(Digest, Referrer)> {
        self.maps()
            .by_subject
            .get(&(repo.to_owned(), subject.clone()))
            .map(|l| l.iter().map(|(d, r)| (d.clone(), r.clone())).collect())
            .unwrap_or_default()
    }
}

impl Hosted {
    /// `GET /v2/<name>/referrers/<subject>[?artifactType=]` of a hosted repository.
    pub(super) fn referrers(
        &self,
        repo: &RepositoryName,
        subject: &Digest,
        artifact_type: Option<&str>,
        head: bool,
    ) -> Response<Body> {
        let manifests: Vec<Value> = self
            .referrers
            .list(repo.as_str(), subject)
            .into_iter()
            .filter(|(d, _)| self.holds(repo, d))
            .filter(|(_, r)| artifact_type.is_none_or(|t| r.artifact_type.as_deref() == Some(t)))
            .map(|(d, r)| {
                let mut desc = json!({
                    "mediaType": r.media_type,
                    "digest": d.to_string(),
                    "size": r.size,
                });
                if let Some(t) = r.artifact_type {
                    desc["artifactType"] = Value::String(t);
                }
                if let Some(a) = r.annotations {
                    desc["annotations"] = Value::Object(a);
                }
                desc
            })
            .collect();
        let index = json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": manifests,
        });
        let mut resp = body::document(index.to_string(), OCI_INDEX, head);
        let h = resp.headers_mut();
        if artifact_type.is_some() {
            h.insert(
                "oci-filters-applied",
                HeaderValue::from_static("artifactType"),
            );
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Digest {
        Digest::sha256_of(s.as_bytes())
    }

    #[test]
    fn manifests_and_indexes_are_described_as_the_spec_lists_them() {
        let s = d("subject");
        let with_type = format!(
            r#"{{"schemaVersion":2,"artifactType":"application/x.sbom","config":{{"mediaType":"application/vnd.oci.empty.v1+json"}},"subject":{{"digest":"{s}"}},"annotations":{{"k":"v"}}}}"#
        );
        let (subject, r) = describe("m", with_type.as_bytes()).expect("a subject");
        assert_eq!(subject, s);
        assert_eq!(r.artifact_type.as_deref(), Some("application/x.sbom"));
        assert_eq!(r.size, with_type.len() as u64);
        assert_eq!(r.annotations.expect("annotations")["k"], "v");

        let config_type = format!(
            r#"{{"config":{{"mediaType":"application/x.sig.config"}},"subject":{{"digest":"{s}"}}}}"#
        );
        let (_, r) = describe("m", config_type.as_bytes()).expect("a subject");
        assert_eq!(r.artifact_type.as_deref(), Some("application/x.sig.config"));
        assert_eq!(r.annotations, None);

        let index = format!(r#"{{"manifests":[],"subject":{{"digest":"{s}"}}}}"#);
        let (_, r) = describe(OCI_INDEX, index.as_bytes()).expect("a subject");
        assert_eq!(r.artifact_type, None);

        assert_eq!(describe("m", br#"{"config":{}}"#), None, "no subject");
        assert_eq!(describe("m", b"not json"), None);
    }

    #[test]
    fn entries_come_and_go_per_repository() {
        let idx = Referrers::default();
        let r = |t: &str| Referrer {
            media_type: "m".into(),
            size: 1,
            artifact_type: Some(t.into()),
            annotations: None,
        };
        idx.add("team/a", d("s"), d("x"), r("x"));
        idx.add("team/a", d("s"), d("y"), r("y"));
        idx.add("team/b", d("s"), d("x"), r("x"));
        assert_eq!(idx.list("team/a", &d("s")).len(), 2);
        idx.remove("team/a", &d("x"));
        idx.remove("team/a", &d("unknown"));
        let left: Vec<_> = idx
            .list("team/a", &d("s"))
            .into_iter()
            .map(|e| e.0)
            .collect();
        assert_eq!(left, vec![d("y")]);
        assert_eq!(idx.list("team/b", &d("s")).len(), 1, "another repository's");
        idx.remove("team/a", &d("y"));
        assert!(idx.list("team/a", &d("s")).is_empty());
        assert_eq!(
            idx.maps().by_subject.len(),
            1,
            "only team/b's entry is left"
        );
    }
}
