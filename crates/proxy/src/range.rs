//! The `Range` header, as RFC 9110 defines it for a single resource of known size.

/// What to send for a `Range` request on a blob of `size` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeAnswer {
    /// No usable range (absent, malformed, or several ranges): the whole blob, 200.
    Full,
    /// One satisfiable range `[start, end)`: 206 with one `Content-Range`.
    Partial { start: u64, end: u64 },
    /// 416 with `Content-Range: bytes */size`.
    Unsatisfiable,
}

/// Decides how to answer `Range: <value>`. Several ranges get the whole blob (allowed by the
/// RFC, and what containers/image handles); a malformed header is ignored, as the RFC says.
pub fn answer(value: Option<&str>, size: u64) -> RangeAnswer {
    let Some(spec) = value.and_then(|v| v.trim().strip_prefix("bytes=")) else {
        return RangeAnswer::Full;
    };
    if spec.contains(',') {
        return RangeAnswer::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeAnswer::Full;
    };
    let num = |s: &str| -> Option<u64> {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (first.trim().is_empty(), num(first), num(last)) {
        // bytes=-N: the last N bytes.
        (true, _, Some(n)) => {
            if n == 0 || size == 0 {
                RangeAnswer::Unsatisfiable
            } else {
                RangeAnswer::Partial {
                    start: size.saturating_sub(n),
                    end: size,
                }
            }
        }
        (false, Some(a), None) if last.trim().is_empty() => {
            if a >= size {
                RangeAnswer::Unsatisfiable
            } else {
                RangeAnswer::Partial {
                    start: a,
                    end: size,
                }
            }
        }
        (false, Some(a), Some(b)) if a <= b => {
            if a >= size {
                RangeAnswer::Unsatisfiable
            } else {
                RangeAnswer::Partial {
                    start: a,
                    end: b.saturating_add(1).min(size),
                }
            }
        }
        _ => RangeAnswer::Full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn single_ranges() {
        assert_eq!(
            answer(Some("bytes=0-9"), 100),
            RangeAnswer::Partial { start: 0, end: 10 }
        );
        assert_eq!(
            answer(Some("bytes=90-"), 100),
            RangeAnswer::Partial {
                start: 90,
                end: 100
            }
        );
        assert_eq!(
            answer(Some("bytes=-10"), 100),
            RangeAnswer::Partial {
                start: 90,
                end: 100
            }
        );
        assert_eq!(
            answer(Some("bytes=-1000"), 100),
            RangeAnswer::Partial { start: 0, end: 100 }
        );
        assert_eq!(
            answer(Some("bytes=50-5000"), 100),
            RangeAnswer::Partial {
                start: 50,
                end: 100
            }
        );
    }

    #[test]
    fn unsatisfiable_and_ignored() {
        assert_eq!(answer(Some("bytes=100-"), 100), RangeAnswer::Unsatisfiable);
        assert_eq!(answer(Some("bytes=-0"), 100), RangeAnswer::Unsatisfiable);
        assert_eq!(answer(Some("bytes=9-1"), 100), RangeAnswer::Full);
        assert_eq!(answer(Some("bytes=0-1,5-6"), 100), RangeAnswer::Full);
        assert_eq!(answer(Some("items=0-1"), 100), RangeAnswer::Full);
        assert_eq!(answer(Some("bytes=x-1"), 100), RangeAnswer::Full);
        assert_eq!(answer(None, 100), RangeAnswer::Full);
    }

    proptest! {
        #[test]
        fn partial_ranges_stay_inside_the_blob(v in "\\PC{0,30}", size in 0u64..10_000) {
            if let RangeAnswer::Partial { start, end } = answer(Some(&v), size) {
                prop_assert!(start < end && end <= size);
            }
        }
    }
}
