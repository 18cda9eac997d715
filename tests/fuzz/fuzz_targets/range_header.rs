//! `Range` headers: range::answer never panics and a partial answer lies inside the blob.
//! Input: the blob's size in decimal on the first line (1 MiB when it is not a number), the
//! `Range` value after it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf_proxy::range::{self, RangeAnswer};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let (size, value) = match s.split_once('\n') {
        Some((size, value)) => (size.parse::<u64>().unwrap_or(1 << 20), value),
        None => (1 << 20, s),
    };
    if let RangeAnswer::Partial { start, end } = range::answer(Some(value), size) {
        assert!(
            start < end && end <= size,
            "{value:?} on {size}: {start}..{end}"
        );
    }
});
