//! Repository names and references (tag or digest).

use std::fmt;

use crate::digest::{Digest, DigestError};

/// The longest repository name accepted. Clients cap `host[:port]/name` at 255 characters, and a
/// mirror prefix eats into that; this bound also keeps paths and logs small.
pub(crate) const MAX_NAME_LEN: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error(
        "repository name {0:?} is not valid: lowercase components of [a-z0-9] joined by '.', '_', '__' or '-', separated by '/'"
    )]
    InvalidName(String),
    #[error("tag {0:?} is not valid: [A-Za-z0-9_][A-Za-z0-9._-]{{0,127}}")]
    InvalidTag(String),
    #[error(transparent)]
    InvalidDigest(#[from] DigestError),
}

/// A repository name that matches the distribution spec's grammar:
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`.
///
/// A valid name has no empty, `.` or `..` component, so it is safe inside a path.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepositoryName(String);

impl RepositoryName {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if s.len() > MAX_NAME_LEN || s.is_empty() || !s.split('/').all(is_valid_component) {
            return Err(NameError::InvalidName(s.chars().take(160).collect()));
        }
        Ok(RepositoryName(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path components, in order.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// Docker Hub's rule: a single-component name lives under `library/`.
    pub fn with_library_prefix(&self) -> RepositoryName {
        if self.0.contains('/') {
            self.clone()
        } else {
            RepositoryName(format!("library/{}", self.0))
        }
    }

    /// The name with its first `n` components removed, if any remain.
    pub fn strip_components(&self, n: usize) -> Option<RepositoryName> {
        let mut rest = self.0.as_str();
        for _ in 0..n {
            rest = rest.split_once('/')?.1;
        }
        Some(RepositoryName(rest.to_owned()))
    }
}

/// component ::= alnum+ (separator alnum+)*, separator ::= '.' | '_' | '__' | '-'+
fn is_valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A run of separators: '.', '_', '__', or one or more '-'.
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

impl fmt::Display for RepositoryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RepositoryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`
pub fn is_valid_tag(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b[1..]
            .iter()
            .all(|&x| x.is_ascii_alphanumeric() || matches!(x, b'_' | b'.' | b'-'))
}

/// What follows `/manifests/`: a digest if it contains `:`, otherwise a tag.
/// `sha256-<hex>.sig` (cosign) and `sha256-<hex>` (referrers tag schema) are tags.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Reference {
    Tag(String),
    Digest(Digest),
}

impl Reference {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if s.contains(':') {
            Ok(Reference::Digest(Digest::parse(s)?))
        } else if is_valid_tag(s) {
            Ok(Reference::Tag(s.to_owned()))
        } else {
            Err(NameError::InvalidTag(s.chars().take(160).collect()))
        }
    }

    pub fn as_digest(&self) -> Option<&Digest> {
        match self {
            Reference::Digest(d) => Some(d),
            Reference::Tag(_) => None,
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => f.write_str(t),
            Reference::Digest(d) => fmt::Display::fmt(d, f),
        }
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_real_names() {
        for ok in [
            "os/oraclelinux",
            "library/alpine",
            "a",
            "java/serverjre",
            "a__b/c--d/e.f_g",
            "x9/0y",
        ] {
            assert!(RepositoryName::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_bad_names() {
        for bad in [
            "", "/a", "a/", "a//b", "A", "a/../b", "..", ".", "a/./b", "a___b", "-a", "a-", "a.-b",
            "a b", "a%2fb", "a\0b",
        ] {
            assert!(RepositoryName::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(RepositoryName::parse(&"a".repeat(256)).is_err());
    }

    #[test]
    fn library_and_strip() {
        let n = RepositoryName::parse("alpine").unwrap();
        assert_eq!(n.with_library_prefix().as_str(), "library/alpine");
        let n = RepositoryName::parse("oracle/os/oraclelinux").unwrap();
        assert_eq!(n.strip_components(1).unwrap().as_str(), "os/oraclelinux");
        assert_eq!(n.with_library_prefix(), n);
        assert!(
            RepositoryName::parse("oracle")
                .unwrap()
                .strip_components(1)
                .is_none()
        );
    }

    #[test]
    fn references() {
        assert_eq!(
            Reference::parse("7-slim").unwrap(),
            Reference::Tag("7-slim".into())
        );
        let sig = format!("sha256-{}.sig", "a".repeat(64));
        assert_eq!(Reference::parse(&sig).unwrap(), Reference::Tag(sig.clone()));
        assert!(matches!(
            Reference::parse(&format!("sha256:{}", "a".repeat(64))),
            Ok(Reference::Digest(_))
        ));
        assert!(matches!(
            Reference::parse("sha256:zz"),
            Err(NameError::InvalidDigest(_))
        ));
        assert!(matches!(
            Reference::parse(".hidden"),
            Err(NameError::InvalidTag(_))
        ));
        assert!(Reference::parse(&"a".repeat(129)).is_err());
    }

    proptest! {
        #[test]
        fn valid_names_are_path_safe(s in "[a-z0-9._/-]{1,40}|\\PC{1,40}") {
            if let Ok(n) = RepositoryName::parse(&s) {
                for c in n.components() {
                    prop_assert!(!c.is_empty() && c != "." && c != "..");
                    prop_assert!(c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)));
                }
            }
        }

        #[test]
        fn valid_tags_have_no_slash_or_colon(s in "\\PC{1,140}") {
            if is_valid_tag(&s) {
                prop_assert!(!s.contains('/') && !s.contains(':') && s.len() <= 128);
            }
        }
    }
}
