//! Layer bytes: pseudo-random file contents, the ustar archive around them, and gzip.
//!
//! The contents are an AES-128-GCM keystream (ring, so it runs optimised even in a debug build)
//! under a key derived from [`SEED`] and a label: the same label gives the same bytes on every
//! run and machine. gzip uses stored (uncompressed) deflate blocks — random data does not
//! compress — and a fixed header, so 300 MiB of layers build in a few seconds.

use std::io::Write as _;

use ring::aead::{AES_128_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use sha2::{Digest as _, Sha256};

use crate::images::SEED;

const FIXED_MTIME: u64 = 1_700_000_000;

/// `size` pseudo-random bytes for `label` ([`random_bytes`]).
pub fn random_content(label: &str, size: usize) -> bytes::Bytes {
    let mut buf = vec![0; size];
    random_bytes(label, &mut buf);
    bytes::Bytes::from(buf)
}

/// Pseudo-random bytes for `label`: the AES-128-GCM keystream over zeros.
pub fn random_bytes(label: &str, buf: &mut [u8]) {
    let k = Sha256::digest(format!("{SEED}/{label}").as_bytes());
    let key = LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &k[..16]).expect("aes key"));
    buf.fill(0);
    let _tag = key
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key([0; 12]), Aad::empty(), buf)
        .expect("keystream");
}

/// A ustar archive: directory `data/` and file `data/<name>.bin` of `size` random bytes.
pub(crate) fn layer_tar(name: &str, size: usize) -> Vec<u8> {
    let padded = size.div_ceil(512) * 512;
    let mut tar = Vec::with_capacity(512 * 2 + padded + 1024);
    tar.extend_from_slice(&tar_header("data/", 0, b'5', 0o755));
    let file = format!("data/{name}.bin");
    tar.extend_from_slice(&tar_header(&file, size, b'0', 0o644));
    let start = tar.len();
    tar.resize(start + size, 0);
    random_bytes(name, &mut tar[start..]);
    tar.resize(start + padded + 1024, 0); // padding + two zero blocks (end of archive)
    tar
}

fn tar_header(path: &str, size: usize, typeflag: u8, mode: u32) -> [u8; 512] {
    assert!(path.len() < 100, "tar name too long: {path}");
    let mut h = [0u8; 512];
    let mut put = |at: usize, s: &[u8]| h[at..at + s.len()].copy_from_slice(s);
    put(0, path.as_bytes());
    put(100, format!("{mode:07o}\0").as_bytes());
    put(108, b"0000000\0");
    put(116, b"0000000\0");
    put(124, format!("{size:011o}\0").as_bytes());
    put(136, format!("{FIXED_MTIME:011o}\0").as_bytes());
    put(148, b"        ");
    put(156, &[typeflag]);
    put(257, b"ustar\0");
    put(263, b"00");
    put(265, b"root");
    put(297, b"root");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

/// gzip with stored (uncompressed) deflate blocks and a fixed header (mtime 0).
pub(crate) fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let out = Vec::with_capacity(data.len() + data.len() / 16_000 * 5 + 64);
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(out, flate2::Compression::none());
    gz.write_all(data).expect("gzip write");
    gz.finish().expect("gzip finish")
}
