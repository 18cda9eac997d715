//! Content digests (`algorithm:encoded`) and a verifier that hashes while bytes stream past.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256, Sha512};

/// The hash algorithms wharf can verify. A grammatical digest with another algorithm is refused
/// rather than stored unverified.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Length of the hex encoding.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

/// Why a string is not a digest wharf accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("digest {0:?} is not of the form algorithm:hex")]
    Malformed(String),
    #[error("digest algorithm {0:?} is not supported (sha256 and sha512 are)")]
    UnsupportedAlgorithm(String),
    #[error(
        "digest {0:?} has an encoded part of the wrong length or with characters other than lowercase hex"
    )]
    BadEncoding(String),
}

/// A validated digest: a supported algorithm and lowercase hex of the right length.
///
/// The hex is validated, so it is safe to use as a file name.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    pub fn parse(s: &str) -> Result<Self, DigestError> {
        let (alg, enc) = s
            .split_once(':')
            .ok_or_else(|| DigestError::Malformed(clip(s)))?;
        if !is_grammatical_algorithm(alg) || enc.is_empty() {
            return Err(DigestError::Malformed(clip(s)));
        }
        let algorithm = match alg {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            _ => return Err(DigestError::UnsupportedAlgorithm(clip(alg))),
        };
        if enc.len() != algorithm.hex_len()
            || !enc.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(DigestError::BadEncoding(clip(s)));
        }
        Ok(Digest {
            algorithm,
            hex: enc.to_owned(),
        })
    }

    /// The sha256 digest of `bytes`.
    pub fn sha256_of(bytes: &[u8]) -> Self {
        Digest {
            algorithm: Algorithm::Sha256,
            hex: hex::encode(Sha256::digest(bytes)),
        }
    }

    /// The sha256 digest whose hash is `bytes`.
    pub fn from_sha256(bytes: [u8; 32]) -> Self {
        Digest {
            algorithm: Algorithm::Sha256,
            hex: hex::encode(bytes),
        }
    }

    /// The hash itself, for a sha256 digest: 32 bytes where the hex takes 64.
    pub fn sha256(&self) -> Option<[u8; 32]> {
        let mut out = [0u8; 32];
        (self.algorithm == Algorithm::Sha256 && hex::decode_to_slice(&self.hex, &mut out).is_ok())
            .then_some(out)
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The encoded part: lowercase hex, validated.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// A verifier for content that should hash to this digest.
    pub fn verifier(&self) -> Verifier {
        Verifier::new(self.algorithm)
    }
}

/// algorithm ::= component (separator component)*, component ::= [a-z0-9]+, separator ::= [+._-]
fn is_grammatical_algorithm(s: &str) -> bool {
    !s.is_empty()
        && s.split(['+', '.', '_', '-']).all(|c| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

/// Keeps error messages bounded when a client sends something huge.
fn clip(s: &str) -> String {
    s.chars().take(160).collect()
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.as_str(), self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

/// Hashes bytes as they stream past, so nothing is read back to be verified.
#[derive(Clone)]
pub struct Verifier {
    state: State,
    len: u64,
}

#[derive(Clone)]
enum State {
    Sha256(Sha256),
    Sha512(Sha512),
}

impl Verifier {
    pub fn new(algorithm: Algorithm) -> Self {
        let state = match algorithm {
            Algorithm::Sha256 => State::Sha256(Sha256::new()),
            Algorithm::Sha512 => State::Sha512(Sha512::new()),
        };
        Verifier { state, len: 0 }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.len += bytes.len() as u64;
        match &mut self.state {
            State::Sha256(h) => h.update(bytes),
            State::Sha512(h) => h.update(bytes),
        }
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The digest of everything hashed.
    pub fn finish(self) -> Digest {
        match self.state {
            State::Sha256(h) => Digest {
                algorithm: Algorithm::Sha256,
                hex: hex::encode(h.finalize()),
            },
            State::Sha512(h) => Digest {
                algorithm: Algorithm::Sha512,
                hex: hex::encode(h.finalize()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_and_displays_sha256() {
        let d = Digest::parse(EMPTY).unwrap();
        assert_eq!(d.to_string(), EMPTY);
        assert_eq!(d.algorithm(), Algorithm::Sha256);
    }

    #[test]
    fn a_sha256_digest_goes_to_its_32_bytes_and_back() {
        let d = Digest::parse(EMPTY).unwrap();
        let bytes = d.sha256().unwrap();
        assert_eq!(bytes[..4], [0xe3, 0xb0, 0xc4, 0x42]);
        assert_eq!(Digest::from_sha256(bytes), d);
        let long = Digest::parse(&format!("sha512:{}", "ab".repeat(64))).unwrap();
        assert_eq!(long.sha256(), None);
    }

    #[test]
    fn verifier_matches_known_digest() {
        let d = Digest::parse(EMPTY).unwrap();
        assert_eq!(d.verifier().finish(), d);
        let mut v = Verifier::new(Algorithm::Sha256);
        v.update(b"hello ");
        v.update(b"world");
        assert_eq!(v.finish(), Digest::sha256_of(b"hello world"));
    }

    #[test]
    fn rejects_bad_digests() {
        for bad in [
            "",
            "sha256",
            "sha256:",
            ":abc",
            "SHA256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:e3b0",
            "sha256:../../../../etc/passwd",
            "sha256-e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ] {
            assert!(Digest::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(matches!(
            Digest::parse("md5:abcd"),
            Err(DigestError::UnsupportedAlgorithm(_))
        ));
        assert!(matches!(
            Digest::parse("sha256+b64u:abcd"),
            Err(DigestError::UnsupportedAlgorithm(_))
        ));
    }

    proptest! {
        #[test]
        fn any_accepted_digest_round_trips_and_is_path_safe(s in "\\PC{0,80}|sha(256|512):[0-9a-fA-F./]{60,130}") {
            if let Ok(d) = Digest::parse(&s) {
                prop_assert_eq!(d.to_string(), s);
                prop_assert!(d.hex().bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
            }
        }

        #[test]
        fn hashing_in_pieces_equals_hashing_whole(data in proptest::collection::vec(any::<u8>(), 0..2048), cut in 0usize..2048) {
            let cut = cut.min(data.len());
            let mut v = Verifier::new(Algorithm::Sha256);
            v.update(&data[..cut]);
            v.update(&data[cut..]);
            prop_assert_eq!(v.len(), data.len() as u64);
            prop_assert_eq!(v.finish(), Digest::sha256_of(&data));
        }
    }
}
