//! LRU against TinyLFU on skewed traces; see `wharf_cache::hit_ratio` for the traces.
//!
//! ```sh
//! cargo bench -p wharf-cache --bench hit_ratio
//! ```

#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

fn main() {
    wharf_cache::hit_ratio::run();
}
