//! `Range` headers: range::answer never panics and a partial answer lies inside the blob.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf_proxy::range::{self, RangeAnswer};

fuzz_target!(|input: (&str, u64)| {
    let (value, size) = input;
    if let RangeAnswer::Partial { start, end } = range::answer(Some(value), size) {
        assert!(
            start < end && end <= size,
            "{value:?} on {size}: {start}..{end}"
        );
    }
});
