//! The upstream's access log (Distribution writes one Apache "combined" line per request to
//! stdout), parsed into [`Req`]s and classified by [`Kind`], so tests count what reached it.

use std::collections::BTreeMap;
use std::fmt;

/// One request the upstream answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Req {
    pub method: String,
    /// The request target as sent: path and query.
    pub path: String,
    pub status: u16,
    /// Response bytes as logged (`-` is 0; Distribution logs the body size for HEAD too).
    pub bytes: u64,
}

/// What a request was for, from its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `/v2/`
    Ping,
    ManifestByTag,
    ManifestByDigest,
    Blob,
    BlobUpload,
    TagsList,
    Referrers,
    Other,
}

impl Req {
    /// The path without the query string.
    pub fn path_only(&self) -> &str {
        self.path.split('?').next().unwrap_or("")
    }

    pub fn kind(&self) -> Kind {
        let p = self.path_only();
        if p == "/v2/" || p == "/v2" {
            return Kind::Ping;
        }
        let Some(rest) = p.strip_prefix("/v2/") else {
            return Kind::Other;
        };
        if rest.ends_with("/tags/list") {
            return Kind::TagsList;
        }
        if rest.contains("/blobs/uploads") {
            return Kind::BlobUpload;
        }
        let last = |marker: &str| rest.rfind(marker).map(|i| &rest[i + marker.len()..]);
        if let Some(r) = last("/manifests/") {
            return if r.contains(':') {
                Kind::ManifestByDigest
            } else {
                Kind::ManifestByTag
            };
        }
        if last("/blobs/").is_some() {
            return Kind::Blob;
        }
        if last("/referrers/").is_some() {
            return Kind::Referrers;
        }
        Kind::Other
    }

    pub fn is(&self, method: &str, kind: Kind) -> bool {
        self.method == method && self.kind() == kind
    }

    /// `GET .../blobs/<digest>`
    pub fn is_blob_get(&self) -> bool {
        self.is("GET", Kind::Blob)
    }

    /// `GET .../manifests/sha256:...`
    pub fn is_manifest_get_by_digest(&self) -> bool {
        self.is("GET", Kind::ManifestByDigest)
    }
}

impl fmt::Display for Req {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} -> {} ({} B)",
            self.method, self.path, self.status, self.bytes
        )
    }
}

/// Parses `127.0.0.1 - user [time] "GET /v2/ HTTP/1.1" 200 2 "referer" "agent"`.
pub fn parse_line(line: &str) -> Option<Req> {
    let open = line.find('"')?;
    let rest = &line[open + 1..];
    let close = rest.find('"')?;
    let mut request = rest[..close].split(' ');
    let method = request.next()?.to_owned();
    let path = request.next()?.to_owned();
    let mut after = rest[close + 1..].split_whitespace();
    let status = after.next()?.parse().ok()?;
    let bytes = after.next().and_then(|b| b.parse().ok()).unwrap_or(0);
    Some(Req {
        method,
        path,
        status,
        bytes,
    })
}

/// Parses every recognisable line of a log text.
pub fn parse(text: &str) -> Vec<Req> {
    text.lines().filter_map(parse_line).collect()
}

/// Counts by (method, kind), e.g. for printing what a pull cost upstream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub total: usize,
    pub by_kind: BTreeMap<(String, Kind), usize>,
    /// Response bytes, summed.
    pub bytes: u64,
}

impl Counts {
    pub fn of(reqs: &[Req]) -> Counts {
        let mut c = Counts {
            total: reqs.len(),
            ..Counts::default()
        };
        for r in reqs {
            *c.by_kind.entry((r.method.clone(), r.kind())).or_default() += 1;
            c.bytes += r.bytes;
        }
        c
    }

    pub fn get(&self, method: &str, kind: Kind) -> usize {
        self.by_kind
            .get(&(method.to_owned(), kind))
            .copied()
            .unwrap_or(0)
    }
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} requests", self.total)?;
        if self.total > 0 {
            let parts: Vec<String> = self
                .by_kind
                .iter()
                .map(|((m, k), n)| format!("{n} {m} {k:?}"))
                .collect();
            write!(f, " ({}), {} response bytes", parts.join(", "), self.bytes)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_combined_lines() {
        let l = r#"127.0.0.1 - - [28/Nov/2025:06:17:00 +0000] "GET /v2/os/oraclelinux/blobs/sha256:ab HTTP/1.1" 200 1048 "" "skopeo/1.9.3""#;
        let r = parse_line(l).expect("parsed");
        assert_eq!(r.method, "GET");
        assert_eq!(r.kind(), Kind::Blob);
        assert_eq!((r.status, r.bytes), (200, 1048));
        let h = r#"127.0.0.1 - bench [28/Nov/2025:06:17:00 +0000] "HEAD /v2/a/b/manifests/7-slim?ns=x HTTP/1.1" 200 - "" "ctr""#;
        let r = parse_line(h).expect("parsed");
        assert_eq!(r.kind(), Kind::ManifestByTag);
        assert_eq!(r.bytes, 0);
        assert_eq!(r.path_only(), "/v2/a/b/manifests/7-slim");
        let d = Req {
            path: "/v2/x/manifests/sha256:00".into(),
            ..r
        };
        assert_eq!(d.kind(), Kind::ManifestByDigest);
        assert!(parse_line("time=\"...\" level=info msg=hello").is_none());
    }
}
