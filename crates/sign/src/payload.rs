//! The signed JSON document of a simple signature, parsed as strictly as containers/image's
//! `untrustedSignature.strictUnmarshalJSON` (`signature/simple.go`) with
//! `ParanoidUnmarshalJSONObject[ExactFields]` (`signature/internal/json.go`):
//!
//! - the document is an object with exactly `critical` and `optional`, nothing after it;
//! - `critical` has exactly `type`, `image` and `identity`; `type` is
//!   `"atomic container signature"`; `image` has exactly `docker-manifest-digest`, `identity`
//!   exactly `docker-reference`, both strings;
//! - `optional` may hold anything, but `creator` must be a string and `timestamp` an integer;
//! - no object anywhere in those has a key twice.
//!
//! Where Go's decoder is lenient (it takes `null` for a string, and replaces invalid UTF-8)
//! this refuses: no signing tool writes either, and refusing more never lets an image through.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;

use wharf_oci::Digest;

use crate::error::clip;

/// `signatureType`.
const SIGNATURE_TYPE: &str = "atomic container signature";

/// What a simple signature asserts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Payload {
    pub(crate) manifest_digest: Digest,
    pub(crate) docker_reference: String,
}

/// Parses the signed document; the error says what is wrong with it.
pub(crate) fn parse(bytes: &[u8]) -> Result<Payload, String> {
    let doc: Json = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let [critical, optional] = exact(&doc, "the document", ["critical", "optional"])?;

    let optional = object(optional, "optional")?;
    distinct(optional, "optional")?;
    for (key, value) in optional {
        match (key.as_str(), value) {
            ("creator", Json::String(_)) => {}
            ("creator", _) => return Err("optional.creator is not a string".to_owned()),
            ("timestamp", Json::Number(n)) if is_i64(*n) => {}
            ("timestamp", _) => return Err("optional.timestamp is not an integer".to_owned()),
            _ => {}
        }
    }

    let [typ, image, identity] = exact(critical, "critical", ["type", "image", "identity"])?;
    let typ = string(typ, "critical.type")?;
    if typ != SIGNATURE_TYPE {
        return Err(format!(
            "critical.type is {:?}, not {SIGNATURE_TYPE:?}",
            clip(typ)
        ));
    }
    let [digest] = exact(image, "critical.image", ["docker-manifest-digest"])?;
    let digest = string(digest, "critical.image.docker-manifest-digest")?;
    let manifest_digest = Digest::parse(digest).map_err(|e| format!("critical.image: {e}"))?;
    let [reference] = exact(identity, "critical.identity", ["docker-reference"])?;
    let docker_reference = string(reference, "critical.identity.docker-reference")?.to_owned();
    Ok(Payload {
        manifest_digest,
        docker_reference,
    })
}

/// `ParanoidUnmarshalJSONObjectExactFields`: an object with each of `fields` once and no other
/// key; the values in the order of `fields`.
fn exact<'a, const N: usize>(
    value: &'a Json,
    what: &str,
    fields: [&str; N],
) -> Result<[&'a Json; N], String> {
    let entries = object(value, what)?;
    distinct(entries, what)?;
    if let Some((k, _)) = entries.iter().find(|(k, _)| !fields.contains(&k.as_str())) {
        return Err(format!("unknown key {:?} in {what}", clip(k)));
    }
    let mut out = [&Json::Null; N];
    for (slot, field) in out.iter_mut().zip(fields) {
        *slot = entries
            .iter()
            .find(|(k, _)| k == field)
            .map(|(_, v)| v)
            .ok_or_else(|| format!("key {field:?} missing in {what}"))?;
    }
    Ok(out)
}

fn object<'a>(value: &'a Json, what: &str) -> Result<&'a [(String, Json)], String> {
    match value {
        Json::Object(entries) => Ok(entries),
        _ => Err(format!("{what} is not a JSON object")),
    }
}

fn distinct(entries: &[(String, Json)], what: &str) -> Result<(), String> {
    for (i, (k, _)) in entries.iter().enumerate() {
        if entries[..i].iter().any(|(seen, _)| seen == k) {
            return Err(format!("duplicate key {:?} in {what}", clip(k)));
        }
    }
    Ok(())
}

fn string<'a>(value: &'a Json, what: &str) -> Result<&'a str, String> {
    match value {
        Json::String(s) => Ok(s),
        _ => Err(format!("{what} is not a string")),
    }
}

/// Go decodes `timestamp` as a float64 and takes it only if it converts to int64 unchanged.
fn is_i64(n: f64) -> bool {
    n.fract() == 0.0 && n >= i64::MIN as f64 && n < i64::MAX as f64
}

/// A JSON value that keeps every key of an object, duplicates included, in order: serde_json's
/// own `Value` keeps the last of duplicate keys, which would hide them.
#[derive(Debug)]
enum Json {
    Null,
    Bool,
    Number(f64),
    String(String),
    Array,
    Object(Vec<(String, Json)>),
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Json, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Json, E> {
        Ok(Json::Bool)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Json, E> {
        Ok(Json::Number(v as f64))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Json, E> {
        Ok(Json::Number(v as f64))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Json, E> {
        Ok(Json::Number(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Json, E> {
        Ok(Json::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Json, E> {
        Ok(Json::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        // Only walked for well-formedness: no array is part of the format.
        while seq.next_element::<Json>()?.is_some() {}
        Ok(Json::Array)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut entries = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, Json>()? {
            entries.push((k, v));
        }
        Ok(Json::Object(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn doc(critical: &str, optional: &str) -> String {
        format!(r#"{{"critical":{critical},"optional":{optional}}}"#)
    }

    fn critical(reference: &str) -> String {
        format!(
            r#"{{"type":"atomic container signature","image":{{"docker-manifest-digest":"{DIGEST}"}},"identity":{{"docker-reference":"{reference}"}}}}"#
        )
    }

    #[test]
    fn parses_what_skopeo_writes() {
        let p = parse(
            doc(
                &critical("quay.io/a/b:1"),
                r#"{"creator":"atomic 5.24.1","timestamp":1700000000}"#,
            )
            .as_bytes(),
        )
        .expect("parse");
        assert_eq!(p.manifest_digest.to_string(), DIGEST);
        assert_eq!(p.docker_reference, "quay.io/a/b:1");
        // optional may be empty, carry other keys, and the timestamp may be written as a float
        // with no fraction (Go reads it as float64 either way).
        for optional in [r#"{}"#, r#"{"x":[1,{"y":null}]}"#, r#"{"timestamp":1.7e9}"#] {
            parse(doc(&critical("a:1"), optional).as_bytes()).expect(optional);
        }
        parse(format!("{} \n", doc(&critical("a:1"), "{}")).as_bytes()).expect("trailing space");
    }

    /// Each case is one that `strictUnmarshalJSON` refuses, and the message says why.
    #[test]
    fn refuses_what_containers_image_refuses() {
        let good = critical("a:1");
        let cases = [
            (String::new(), "not JSON"),
            ("[]".to_owned(), "the document is not a JSON object"),
            (format!("{} x", doc(&good, "{}")), "not JSON"),
            (
                format!(r#"{{"critical":{good}}}"#),
                r#"key "optional" missing"#,
            ),
            (
                format!(r#"{{"critical":{good},"optional":{{}},"x":1}}"#),
                r#"unknown key "x" in the document"#,
            ),
            (
                format!(r#"{{"critical":{good},"critical":{good},"optional":{{}}}}"#),
                r#"duplicate key "critical""#,
            ),
            (doc(&good, "[]"), "optional is not a JSON object"),
            (
                doc(&good, r#"{"creator":1}"#),
                "optional.creator is not a string",
            ),
            (
                doc(&good, r#"{"creator":null}"#),
                "optional.creator is not a string",
            ),
            (
                doc(&good, r#"{"timestamp":1.5}"#),
                "optional.timestamp is not an integer",
            ),
            (
                doc(&good, r#"{"timestamp":"1"}"#),
                "optional.timestamp is not an integer",
            ),
            (
                doc(&good, r#"{"a":1,"a":2}"#),
                r#"duplicate key "a" in optional"#,
            ),
            (
                doc(&good.replace("atomic container signature", "other"), "{}"),
                r#"critical.type is "other""#,
            ),
            (
                doc(
                    &good.replace(r#""identity""#, r#""identity":{},"extra""#),
                    "{}",
                ),
                r#"unknown key "extra" in critical"#,
            ),
            (
                doc(
                    &good.replace(r#","identity":{"docker-reference":"a:1"}"#, ""),
                    "{}",
                ),
                r#"key "identity" missing in critical"#,
            ),
            (
                doc(&good.replace(DIGEST, "sha256:abc"), "{}"),
                "critical.image: digest",
            ),
            (
                doc(&good.replace(r#""a:1""#, r#""a:1","x":"y""#), "{}"),
                r#"unknown key "x" in critical.identity"#,
            ),
            (
                doc(&good.replace(r#""a:1""#, "null"), "{}"),
                "docker-reference is not a string",
            ),
            (
                doc(
                    &good.replace(
                        r#"{"docker-manifest-digest""#,
                        r#"{"docker-manifest-digest":"x","docker-manifest-digest""#,
                    ),
                    "{}",
                ),
                r#"duplicate key "docker-manifest-digest""#,
            ),
        ];
        for (input, want) in cases {
            let err = parse(input.as_bytes()).expect_err(&input);
            assert!(err.contains(want), "{input}: {err:?} does not say {want:?}");
        }
        assert!(parse(b"\xff").is_err());
        // serde_json bounds nesting, so a deep document is an error, not a stack overflow.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(parse(deep.as_bytes()).is_err());
    }
}
