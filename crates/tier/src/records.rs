//! Manifests (with their media type) and tag records in the shared tier.
//!
//! A tag record says: at `validated_ms` (wall clock, milliseconds since the Unix epoch) some
//! replica asked the upstream, and the tag named `digest`. Another replica whose own record is
//! missing or past `tag_ttl` reads it before asking the upstream: within the TTL it is taken as
//! its own, so a tag is revalidated about once per TTL for the whole fleet, at the cost of one
//! object-store GET per replica per TTL. Clocks of replicas are assumed to agree within a
//! small part of the TTL.

use bytes::Bytes;
use object_store::{Attribute, Attributes, ObjectStoreExt, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};
use wharf_cache::StoreError;
use wharf_oci::Digest;

use crate::Tier;
use crate::blobs::remote;

/// Tag records larger than this are not read (they are a few hundred bytes).
const MAX_RECORD: u64 = 64 * 1024;
/// Manifests larger than this are not read; clients accept at least 4 MiB.
const MAX_MANIFEST: u64 = 8 * 1024 * 1024;

/// A tag as some replica last validated it upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedTag {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    /// When the upstream confirmed it: milliseconds since the Unix epoch.
    pub validated_ms: u64,
    /// Which registry confirmed it (the upstream's configured URL): a record another fleet
    /// wrote for an upstream of the same name elsewhere is not this one's.
    pub origin: String,
}

/// [`SharedTag`] as stored: JSON, the digest as its string.
#[derive(Serialize, Deserialize)]
struct Wire {
    digest: String,
    media_type: String,
    size: u64,
    validated_ms: u64,
    #[serde(default)]
    origin: String,
}

impl Tier {
    /// The manifest `d` with its media type, if the tier has it and its bytes hash to `d`.
    pub async fn get_manifest(&self, d: &Digest) -> Result<Option<(String, Bytes)>, StoreError> {
        let key = self.key(&["manifests", d.algorithm().as_str(), d.hex()]);
        let got = match self.store.get(&key).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(remote("read", &key, e)),
        };
        if got.meta.size > MAX_MANIFEST {
            return Ok(None);
        }
        let media_type = got
            .attributes
            .get(&Attribute::ContentType)
            .map(|v| v.as_ref().to_owned());
        let bytes = got.bytes().await.map_err(|e| remote("read", &key, e))?;
        let mut v = d.verifier();
        v.update(&bytes);
        let actual = v.finish();
        if actual != *d {
            return Err(StoreError::DigestMismatch {
                expected: d.clone(),
                actual,
            });
        }
        Ok(media_type.map(|m| (m, bytes)))
    }

    /// Keeps manifest `d` (already verified by the caller's store) with its media type.
    pub async fn put_manifest(
        &self,
        d: &Digest,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<(), StoreError> {
        let key = self.key(&["manifests", d.algorithm().as_str(), d.hex()]);
        let mut attributes = Attributes::new();
        attributes.insert(Attribute::ContentType, media_type.to_owned().into());
        let opts = PutOptions {
            attributes,
            ..PutOptions::default()
        };
        self.store
            .put_opts(&key, PutPayload::from(bytes), opts)
            .await
            .map_err(|e| remote("put", &key, e))?;
        Ok(())
    }

    /// The record of `upstream`'s `repository:tag`, if some replica wrote one.
    pub async fn get_tag(
        &self,
        upstream: &str,
        repository: &str,
        tag: &str,
    ) -> Result<Option<SharedTag>, StoreError> {
        let key = self.key(&["tags", upstream, repository, tag]);
        let got = match self.store.get(&key).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(remote("read", &key, e)),
        };
        if got.meta.size > MAX_RECORD {
            return Ok(None);
        }
        let bytes = got.bytes().await.map_err(|e| remote("read", &key, e))?;
        // A record that does not parse is as good as none: the upstream is asked.
        Ok(serde_json::from_slice::<Wire>(&bytes).ok().and_then(|w| {
            Some(SharedTag {
                digest: w.digest.parse().ok()?,
                media_type: w.media_type,
                size: w.size,
                validated_ms: w.validated_ms,
                origin: w.origin,
            })
        }))
    }

    /// Records that `upstream` named `rec.digest` for `repository:tag` at `rec.validated_ms`.
    pub async fn put_tag(
        &self,
        upstream: &str,
        repository: &str,
        tag: &str,
        rec: &SharedTag,
    ) -> Result<(), StoreError> {
        let key = self.key(&["tags", upstream, repository, tag]);
        let wire = Wire {
            digest: rec.digest.to_string(),
            media_type: rec.media_type.clone(),
            size: rec.size,
            validated_ms: rec.validated_ms,
            origin: rec.origin.clone(),
        };
        let json = serde_json::to_vec(&wire).map_err(|e| StoreError::Remote {
            op: "encode",
            key: key.to_string(),
            source: Box::new(e),
        })?;
        self.store
            .put(&key, PutPayload::from(json))
            .await
            .map_err(|e| remote("put", &key, e))?;
        Ok(())
    }
}
