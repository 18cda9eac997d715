//! Manifest and index JSON from an upstream, read as a pull reads it (`wharf_oci::manifest::parse`,
//! which `wharf prefetch` and `wharf cache rm --image` walk images with). Input: the `Content-Type` on the first line (may be empty), the body after.
//!
//! What holds, beyond not panicking: what the typed reader accepts agrees with the same bytes read
//! as plain JSON (one child per `manifests` entry with its digest; for an image the config first,
//! then every `layers` entry either fetched or counted foreign; schema 1 layers each once); every
//! digest it returns prints back as the document wrote it; and the document re-serialized
//! (whitespace, key order) reads the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use wharf_oci::Digest;

use wharf_oci::manifest::{self, BlobKind, Manifest};

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|b| *b == b'\n');
    let (content_type, body) = match split {
        Some(i) => (
            String::from_utf8_lossy(&data[..i]).into_owned(),
            &data[i + 1..],
        ),
        None => (String::new(), data),
    };
    let Ok(m) = manifest::parse(&content_type, body) else {
        return;
    };
    for d in digests(&m) {
        assert_eq!(Digest::parse(&d.to_string()).as_ref(), Ok(d));
    }
    let Ok(doc) = serde_json::from_slice::<Value>(body) else {
        // Numbers or strings plain JSON refuses in fields the reader skips.
        return;
    };
    let list = |key: &str| -> Vec<Value> {
        doc.get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let digest_of = |v: &Value| v.get("digest").and_then(Value::as_str).map(str::to_owned);
    match &m {
        Manifest::Index(children) => {
            let entries = list("manifests");
            assert_eq!(children.len(), entries.len());
            for (c, e) in children.iter().zip(&entries) {
                assert_eq!(Some(c.digest.to_string()), digest_of(e));
            }
        }
        Manifest::Image { blobs, foreign } => {
            if doc.get("fsLayers").is_some_and(|v| !v.is_null()) {
                let layers = list("fsLayers");
                assert!(blobs.len() <= layers.len());
                assert!(foreign.is_empty());
                for (i, b) in blobs.iter().enumerate() {
                    assert!(blobs[..i].iter().all(|o| o.digest != b.digest));
                    assert_eq!(b.kind, BlobKind::Layer);
                }
            } else {
                let config = doc.get("config");
                let Some((first, layers)) = blobs.split_first() else {
                    panic!("an image without its config blob");
                };
                assert_eq!(first.kind, BlobKind::Config);
                assert_eq!(Some(first.digest.to_string()), config.and_then(digest_of));
                assert_eq!(
                    first.size,
                    config.and_then(|c| c.get("size")).and_then(Value::as_u64)
                );
                assert!(layers.iter().all(|b| b.kind == BlobKind::Layer));
                assert_eq!(layers.len() + foreign.len(), list("layers").len());
            }
        }
    }
    let Ok(again) = serde_json::to_vec(&doc) else {
        return;
    };
    assert_eq!(manifest::parse(&content_type, &again).ok(), Some(m));
});

fn digests(m: &Manifest) -> Vec<&Digest> {
    m.digests()
}
