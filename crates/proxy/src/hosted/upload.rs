//! Blob uploads into hosted repositories (the spec's "Pushing blobs"):
//!
//! ```text
//! POST   .../blobs/uploads/                 -> 202, Location .../uploads/<id>, Range 0-0
//! POST   .../blobs/uploads/?digest=<d>      -> the body is the blob: 201 (monolithic)
//! POST   .../blobs/uploads/?mount=<d>&from= -> 201 if mounted (mount.rs), else as a POST
//! PATCH  .../uploads/<id> [Content-Range]   -> appended: 202, Range 0-<last>;
//!                                              a range not starting at the end: 416
//! PUT    .../uploads/<id>?digest=<d> [body] -> appended, verified, stored: 201, Location of
//!                                              the blob, Docker-Content-Digest
//! GET    .../uploads/<id>                   -> 204, Range 0-<last>
//! DELETE .../uploads/<id>                   -> 204, the spool removed
//! ```
//!
//! The bytes go to a spool file of the hosted store as they arrive, hashed on the way
//! (`wharf_cache::Upload`); the hash state lives between requests, so nothing is read back and
//! memory does not grow with the blob. The store publishes the blob only under the digest the
//! bytes hashed to: a wrong `digest` is 400 `DIGEST_INVALID` and stores nothing.
//!
//! An upload belongs to the repository and the user that started it: asked for through another
//! repository or by another user, it is unknown (404 `BLOB_UPLOAD_UNKNOWN`). One that receives
//! nothing for `hosted.upload_timeout` is swept, spool and all; a restart drops every upload
//! (the store sweeps its spool when it opens), and the client starts again, as the spec says.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Stream, TryStreamExt};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use tokio::time::Instant;
use wharf_cache::{AppendError, StoreError, Upload};
use wharf_oci::{Digest, ErrorCode, RepositoryName};

use super::sessions::{Session, unknown};
use super::{Hosted, created};
use crate::Proxy;
use crate::body::{self, Body};
use crate::error::ProxyError;
use crate::route::query_param;

/// The request body as the store takes it.
pub(super) fn body_stream<B>(body: B) -> impl Stream<Item = io::Result<Bytes>> + Send + Unpin
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    body.into_data_stream().map_err(io::Error::other)
}

/// `Content-Range: <start>-<end>` (inclusive; the spec's form, or with HTTP's `bytes `).
fn content_range(h: &HeaderMap) -> Result<Option<(u64, u64)>, ()> {
    let Some(v) = h.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let v = v.to_str().map_err(|_| ())?.trim();
    let v = v.strip_prefix("bytes ").unwrap_or(v);
    let v = v.split('/').next().unwrap_or(v);
    let (start, end) = v.split_once('-').ok_or(())?;
    let start: u64 = start.trim().parse().map_err(|_| ())?;
    let end: u64 = end.trim().parse().map_err(|_| ())?;
    if end < start {
        return Err(());
    }
    Ok(Some((start, end)))
}

/// The `Range` of an upload of `len` bytes: `0-<last>`, and `0-0` when empty (as distribution
/// answers; clients read the end as "resume after it" only once bytes were sent).
fn range_value(len: u64) -> String {
    format!("0-{}", len.saturating_sub(1))
}

fn location(base: &str, id: &str) -> String {
    format!("{base}/blobs/uploads/{id}")
}

pub(super) fn blob_location(base: &str, d: &Digest) -> String {
    format!("{base}/blobs/{d}")
}

/// An upload's answer: `status`, with `Location`, `Range` and `Docker-Upload-UUID`.
fn upload_response(status: StatusCode, id: &str, base: &str, len: u64) -> Response<Body> {
    let mut resp = Response::new(body::empty());
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    for (name, value) in [
        (header::LOCATION.as_str(), location(base, id)),
        (header::RANGE.as_str(), range_value(len)),
        ("docker-upload-uuid", id.to_owned()),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    resp
}

/// `GET` (or `HEAD`) on an upload: 204 and where it stands.
pub(super) async fn status(s: &Session, base: &str) -> Response<Body> {
    let state = s.state.lock().await;
    let len = state.upload.as_ref().map_or(0, Upload::len);
    upload_response(StatusCode::NO_CONTENT, &s.id, base, len)
}

/// A chunk that does not start where the upload ends: 416 with where it does.
fn out_of_order(s: &Session, base: &str, len: u64, got: Option<(u64, u64)>) -> ProxyError {
    let message = match got {
        Some((start, end)) => format!(
            "chunk {start}-{end} does not start at the end of the upload ({len} bytes received): send from {len} on"
        ),
        None => "Content-Range is not <start>-<end>".to_owned(),
    };
    ProxyError::UploadRange {
        location: location(base, &s.id),
        session: s.id.clone(),
        range: range_value(len),
        message,
    }
}

/// The whole of a small body (a manifest, a signature), at most `limit` bytes: past it the
/// answer is `too_large()`, a body that breaks off `broken(e)`.
pub(super) async fn read_whole(
    mut body: impl Stream<Item = io::Result<Bytes>> + Unpin,
    limit: usize,
    too_large: impl FnOnce() -> ProxyError,
    broken: impl Fn(io::Error) -> ProxyError,
) -> Result<Bytes, ProxyError> {
    let mut buf = bytes::BytesMut::new();
    while let Some(chunk) = body.try_next().await.map_err(&broken)? {
        if buf.len() + chunk.len() > limit {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// Reads and drops the rest of a body the quota refused, so that the client, still sending,
/// reads the refusal instead of a broken pipe; bounded, in bytes and time, past which the
/// connection is closed anyway.
async fn drain(mut body: impl Stream<Item = io::Result<Bytes>> + Unpin) {
    const MAX: u64 = 1 << 30;
    let mut seen = 0u64;
    let read = async {
        while let Ok(Some(chunk)) = body.try_next().await {
            seen += chunk.len() as u64;
            if seen > MAX {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(60), read).await;
}

/// A failed append or completion, answered.
fn append_error(e: AppendError) -> ProxyError {
    match e {
        AppendError::Body { .. } => ProxyError::oci(ErrorCode::BlobUploadInvalid, e.to_string()),
        AppendError::TooLarge { .. } => ProxyError::oci(
            ErrorCode::SizeInvalid,
            format!("{e}: the body is longer than its Content-Range"),
        ),
        AppendError::Store(e) => store_error(e),
    }
}

pub(super) fn store_error(e: StoreError) -> ProxyError {
    if e.is_digest_mismatch() {
        ProxyError::oci(ErrorCode::DigestInvalid, format!("{e}: nothing was stored"))
    } else if e.is_no_space() {
        ProxyError::InsufficientStorage {
            message: format!("the hosted store is out of disk space: {e}"),
        }
    } else {
        ProxyError::Store(e)
    }
}

fn digest_param(query: Option<&str>, key: &str) -> Result<Option<Digest>, ProxyError> {
    query_param(query, key)
        .map(|d| {
            Digest::parse(&d)
                .map_err(|e| ProxyError::oci(ErrorCode::DigestInvalid, format!("{key}={d:?}: {e}")))
        })
        .transpose()
}

impl Proxy {
    /// `POST .../blobs/uploads/`: a mount, a monolithic upload, or a new session.
    pub(super) async fn start_upload<B>(
        &self,
        hosted: &Hosted,
        repo: &RepositoryName,
        base: &str,
        user: &str,
        req: Request<B>,
    ) -> Result<Response<Body>, ProxyError>
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let query = req.uri().query();
        if let Some(d) = digest_param(query, "mount")? {
            let from = query_param(query, "from");
            if self.mount(hosted, repo, &d, from.as_deref(), user).await? {
                return Ok(created(&blob_location(base, &d), &d));
            }
        }
        let digest = digest_param(query, "digest")?;
        if digest.is_none() {
            hosted.uploads.admit(user)?;
        }
        let mut upload = hosted.store.begin_upload().await.map_err(store_error)?;
        if let Some(d) = digest {
            let (limit, quota_binds) = hosted.limit(None, 0);
            let mut body = body_stream(req.into_body());
            if let Err(e) = upload.append(&mut body, limit).await {
                upload.discard().await;
                if quota_binds {
                    drain(body).await;
                }
                return Err(hosted.append_error(e, quota_binds));
            }
            hosted.finish(upload, repo, &d).await?;
            return Ok(created(&blob_location(base, &d), &d));
        }
        let s = hosted.uploads.insert(repo, user, upload);
        Ok(upload_response(StatusCode::ACCEPTED, &s.id, base, 0))
    }
}

impl Hosted {
    /// Stores a finished upload as `d` for `repo`, within the quota.
    pub(super) async fn finish(
        &self,
        upload: Upload,
        repo: &RepositoryName,
        d: &Digest,
    ) -> Result<u64, ProxyError> {
        if !self.store.contains(d)
            && let Err(e) = self.check_quota(upload.len())
        {
            upload.discard().await;
            return Err(e);
        }
        // Stored, then scoped: no collection may fall between the two (gc.rs).
        let pin = self.gc.pin().await;
        let size = self
            .store
            .finish_upload(upload, d)
            .await
            .map_err(store_error)?;
        pin.touch(d);
        self.store.add_scope(Hosted::key(repo, d));
        Ok(size)
    }

    /// `PATCH`: appends the body, which must start where the upload ends.
    pub(super) async fn patch<B>(
        &self,
        s: Arc<Session>,
        base: &str,
        req: Request<B>,
    ) -> Result<Response<Body>, ProxyError>
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let len = self.append(&s, base, req).await?;
        Ok(upload_response(StatusCode::ACCEPTED, &s.id, base, len))
    }

    /// Appends a request's body to the upload; its new length.
    async fn append<B>(&self, s: &Session, base: &str, req: Request<B>) -> Result<u64, ProxyError>
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let mut state = s.state.lock().await;
        let upload = state.upload.as_mut().ok_or_else(unknown)?;
        let len = upload.len();
        let range = match content_range(req.headers()) {
            Ok(r) => r,
            Err(()) => return Err(out_of_order(s, base, len, None)),
        };
        if let Some((start, _)) = range
            && start != len
        {
            return Err(out_of_order(s, base, len, range));
        }
        let ranged = match range {
            Some((_, end)) => match end.checked_add(1) {
                Some(limit) => Some(limit),
                None => return Err(out_of_order(s, base, len, range)),
            },
            None => None,
        };
        let (limit, quota_binds) = self.limit(ranged, len);
        let mut body = body_stream(req.into_body());
        let appended = upload.append(&mut body, limit).await;
        if quota_binds && matches!(appended, Err(AppendError::TooLarge { .. })) {
            drain(body).await;
        }
        state.last_active = Instant::now();
        match appended {
            Ok(_) => Ok(state.upload.as_ref().map_or(0, Upload::len)),
            Err(e) => {
                if state.upload.as_ref().is_some_and(Upload::is_broken) {
                    self.uploads.remove(&s.id);
                    if let Some(upload) = state.upload.take() {
                        upload.discard().await;
                    }
                }
                Err(self.append_error(e, quota_binds))
            }
        }
    }

    /// How long an upload now `len` bytes long may grow: to the end its `Content-Range`
    /// names, if any, and within the quota's room; and whether the quota is what binds.
    fn limit(&self, ranged: Option<u64>, len: u64) -> (Option<u64>, bool) {
        let room = self
            .quota
            .map(|q| len.saturating_add(q.saturating_sub(self.store.stats().size_bytes)));
        match (ranged, room) {
            (Some(r), Some(q)) if q < r => (Some(q), true),
            (None, Some(q)) => (Some(q), true),
            (r, _) => (r, false),
        }
    }

    /// A failed append, answered; past the quota's room it says so.
    fn append_error(&self, e: AppendError, quota_binds: bool) -> ProxyError {
        match e {
            AppendError::TooLarge { .. } if quota_binds => ProxyError::oci(
                ErrorCode::Denied,
                format!(
                    "the hosted repositories' quota is reached while the upload arrived: {} of \
                     {} bytes used (hosted.quota); the upload is dropped",
                    self.store.stats().size_bytes,
                    self.quota.unwrap_or_default()
                ),
            ),
            e => append_error(e),
        }
    }

    /// `PUT ?digest=`: appends the body (if any), then verifies and stores the blob. The
    /// upload ends whatever the outcome, but for a chunk out of order (416, the client may
    /// go on).
    pub(super) async fn complete<B>(
        &self,
        s: Arc<Session>,
        repo: &RepositoryName,
        base: &str,
        req: Request<B>,
    ) -> Result<Response<Body>, ProxyError>
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let d = digest_param(req.uri().query(), "digest")?.ok_or_else(|| {
            ProxyError::oci(
                ErrorCode::DigestInvalid,
                "completing an upload needs ?digest=<digest> of the whole blob",
            )
        })?;
        self.append(&s, base, req).await?;
        let upload = {
            let mut state = s.state.lock().await;
            self.uploads.remove(&s.id);
            state.upload.take().ok_or_else(unknown)?
        };
        self.finish(upload, repo, &d).await?;
        Ok(created(&blob_location(base, &d), &d))
    }

    /// `DELETE`: the upload and its spool are dropped.
    pub(super) async fn cancel(&self, s: Arc<Session>) -> Response<Body> {
        self.uploads.remove(&s.id);
        let upload = s.state.lock().await.upload.take();
        if let Some(upload) = upload {
            upload.discard().await;
        }
        let mut resp = Response::new(body::empty());
        *resp.status_mut() = StatusCode::NO_CONTENT;
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges() {
        let h = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_RANGE, HeaderValue::from_str(v).unwrap());
            h
        };
        assert_eq!(content_range(&HeaderMap::new()), Ok(None));
        assert_eq!(content_range(&h("0-99")), Ok(Some((0, 99))));
        assert_eq!(content_range(&h("bytes 100-199/*")), Ok(Some((100, 199))));
        assert_eq!(content_range(&h("5-4")), Err(()));
        assert_eq!(content_range(&h("x-4")), Err(()));
        assert_eq!(range_value(0), "0-0");
        assert_eq!(range_value(10), "0-9");
    }
}
