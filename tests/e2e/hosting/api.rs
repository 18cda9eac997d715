//! The push API spoken raw for `e2e_hosting`: requests with a user's credentials, and the
//! steps every upload test repeats (start an upload, push a blob whole), each checking the
//! spec's status and headers.

use bytes::Bytes;
use wharf_e2e::http::{Http, Resp};
use wharf_e2e::util::sha256_digest;

/// The push API spoken raw, against the spec's words: statuses, headers, error JSON.
pub(crate) struct Api {
    pub(crate) http: Http,
    pub(crate) base: String,
    pub(crate) auth: String,
}

impl Api {
    pub(crate) fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Resp {
        let url = if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        };
        let mut all: Vec<(&str, &str)> = vec![("Authorization", self.auth.as_str())];
        all.extend_from_slice(headers);
        self.http
            .request(method, &url, &all, Bytes::copy_from_slice(body))
    }

    /// `POST .../blobs/uploads/` (202): the upload's Location.
    pub(crate) fn start(&self, repo: &str) -> String {
        let r = self.send("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], b"");
        assert_eq!(r.status, 202, "{}", r.describe());
        assert_eq!(r.header("range").as_deref(), Some("0-0"));
        let id = r.header("docker-upload-uuid").expect("Docker-Upload-UUID");
        let location = r.header("location").expect("Location");
        assert!(location.ends_with(&id), "{location} {id}");
        location
    }

    /// A blob pushed monolithically (POST ?digest=): 201.
    pub(crate) fn push_blob(&self, repo: &str, bytes: &[u8]) -> String {
        let d = sha256_digest(bytes);
        let r = self.send(
            "POST",
            &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
            &[("Content-Type", "application/octet-stream")],
            bytes,
        );
        assert_eq!(r.status, 201, "{}", r.describe());
        assert_eq!(r.header("docker-content-digest"), Some(d.clone()));
        d
    }

    pub(crate) fn blob_status(&self, repo: &str, d: &str) -> u16 {
        self.send("HEAD", &format!("/v2/{repo}/blobs/{d}"), &[], b"")
            .status
    }
}

pub(crate) fn with_digest(location: &str, d: &str) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest={d}")
}
