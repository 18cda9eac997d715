//! The two facts of a certificate the pinning check reads that rustls does not hand out: its
//! validity dates and its extended key usages; and dates written for people.
//!
//! A walk over DER, not a parser: webpki has already parsed the same bytes (a certificate it
//! cannot parse never reaches the pin check), so anything unexpected here is simply `None`,
//! which the caller treats as a refusal.

use rustls_pki_types::UnixTime;

/// `notBefore` and `notAfter`, in seconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Validity {
    pub not_before: u64,
    pub not_after: u64,
}

/// What the certificate's extendedKeyUsage extension allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServerAuth {
    /// No extendedKeyUsage extension: any use (RFC 5280 §4.2.1.12; Go and webpki agree).
    Unrestricted,
    /// The extension lists serverAuth or anyExtendedKeyUsage.
    Listed,
    /// The extension lists neither.
    Missing,
}

const TAG_SEQUENCE: u8 = 0x30;
const TAG_UTC_TIME: u8 = 0x17;
const TAG_GENERALIZED_TIME: u8 = 0x18;
/// `[0] EXPLICIT Version` and `[3] EXPLICIT Extensions` of a TBSCertificate.
const TAG_VERSION: u8 = 0xa0;
const TAG_EXTENSIONS: u8 = 0xa3;
const TAG_INTEGER: u8 = 0x02;
const TAG_OID: u8 = 0x06;
const TAG_BOOLEAN: u8 = 0x01;
const TAG_OCTET_STRING: u8 = 0x04;

/// 2.5.29.37, 1.3.6.1.5.5.7.3.1 and 2.5.29.37.0, as DER contents.
const OID_EXT_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x25];
const OID_SERVER_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];
const OID_ANY_EXT_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x25, 0x00];

/// Reads DER tag-length-value items one after another.
struct Der<'a>(&'a [u8]);

impl<'a> Der<'a> {
    fn next(&mut self) -> Option<(u8, &'a [u8])> {
        let (&tag, rest) = self.0.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let (len, rest) = rest.split_at(n);
            (
                len.iter()
                    .fold(0usize, |acc, &b| (acc << 8) | usize::from(b)),
                rest,
            )
        };
        if rest.len() < len {
            return None;
        }
        let (value, rest) = rest.split_at(len);
        self.0 = rest;
        Some((tag, value))
    }

    fn expect(&mut self, tag: u8) -> Option<&'a [u8]> {
        self.next().filter(|(t, _)| *t == tag).map(|(_, v)| v)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The TBSCertificate's fields after `issuer`: `validity, subject, spki, ...`.
fn after_issuer(cert: &[u8]) -> Option<Der<'_>> {
    let certificate = Der(cert).expect(TAG_SEQUENCE)?;
    let mut tbs = Der(Der(certificate).expect(TAG_SEQUENCE)?);
    let (tag, _) = tbs.next()?;
    if tag == TAG_VERSION {
        tbs.expect(TAG_INTEGER)?; // serialNumber
    } else if tag != TAG_INTEGER {
        return None;
    }
    tbs.expect(TAG_SEQUENCE)?; // signature AlgorithmIdentifier
    tbs.expect(TAG_SEQUENCE)?; // issuer
    Some(tbs)
}

pub(crate) fn validity(cert: &[u8]) -> Option<Validity> {
    let mut validity = Der(after_issuer(cert)?.expect(TAG_SEQUENCE)?);
    let not_before = time(&mut validity)?;
    let not_after = time(&mut validity)?;
    validity.is_empty().then_some(Validity {
        not_before,
        not_after,
    })
}

pub(crate) fn server_auth(cert: &[u8]) -> Option<ServerAuth> {
    let mut tbs = after_issuer(cert)?;
    let mut extensions = None;
    while !tbs.is_empty() {
        let (tag, value) = tbs.next()?;
        if tag == TAG_EXTENSIONS {
            extensions = Some(Der(Der(value).expect(TAG_SEQUENCE)?));
        }
    }
    let Some(mut extensions) = extensions else {
        return Some(ServerAuth::Unrestricted);
    };
    while !extensions.is_empty() {
        let mut extension = Der(extensions.expect(TAG_SEQUENCE)?);
        if extension.expect(TAG_OID)? != OID_EXT_KEY_USAGE {
            continue;
        }
        let (mut tag, mut value) = extension.next()?;
        if tag == TAG_BOOLEAN {
            (tag, value) = extension.next()?; // critical
        }
        if tag != TAG_OCTET_STRING {
            return None;
        }
        let mut purposes = Der(Der(value).expect(TAG_SEQUENCE)?);
        while !purposes.is_empty() {
            let oid = purposes.expect(TAG_OID)?;
            if oid == OID_SERVER_AUTH || oid == OID_ANY_EXT_KEY_USAGE {
                return Some(ServerAuth::Listed);
            }
        }
        return Some(ServerAuth::Missing);
    }
    Some(ServerAuth::Unrestricted)
}

/// A UTCTime (`YYMMDDHHMMSSZ`, years 1950–2049) or GeneralizedTime (`YYYYMMDDHHMMSSZ`), the
/// only forms RFC 5280 §4.1.2.5 allows.
fn time(der: &mut Der<'_>) -> Option<u64> {
    let (tag, value) = der.next()?;
    let text = std::str::from_utf8(value).ok()?;
    let digits = text.strip_suffix('Z')?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let num = |s: &str| s.parse::<u64>().ok();
    let (year, rest) = match (tag, digits.len()) {
        (TAG_UTC_TIME, 12) => {
            let yy = num(&digits[..2])?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &digits[2..])
        }
        (TAG_GENERALIZED_TIME, 14) => (num(&digits[..4])?, &digits[4..]),
        _ => return None,
    };
    let (month, day) = (num(&rest[..2])?, num(&rest[2..4])?);
    let (hour, minute, second) = (num(&rest[4..6])?, num(&rest[6..8])?, num(&rest[8..10])?);
    // The ranges webpki accepts: no leap seconds, nothing before the epoch.
    let days_in_month = match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        1..=12 => 31,
        _ => return None,
    };
    if year < 1970 || !(1..=days_in_month).contains(&day) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (H. Hinnant's algorithm).
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2026-12-05 10:44:36 UTC`: how a certificate's dates appear in error messages.
pub(crate) fn utc(time: UnixTime) -> String {
    let secs = time.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // The inverse of `days_from_civil`.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(secs: u64) -> UnixTime {
        UnixTime::since_unix_epoch(Duration::from_secs(secs))
    }

    #[test]
    fn dates_round_trip_through_both_time_forms() {
        let utc_time = |s: &str| {
            time(&mut Der(
                &[&[TAG_UTC_TIME, s.len() as u8], s.as_bytes()].concat()
            ))
        };
        let generalized = |s: &str| {
            time(&mut Der(&[
                &[TAG_GENERALIZED_TIME, s.len() as u8],
                s.as_bytes(),
            ]
            .concat()))
        };
        assert_eq!(utc_time("700101000000Z"), Some(0));
        assert_eq!(utc_time("261205104436Z"), Some(1_796_467_476));
        assert_eq!(generalized("20261205104436Z"), Some(1_796_467_476));
        assert_eq!(utc(at(1_796_467_476)), "2026-12-05 10:44:36 UTC");
        // A leap day, and the 2049/1950 pivot of UTCTime.
        assert_eq!(
            utc(at(generalized("20280229235959Z").unwrap())),
            "2028-02-29 23:59:59 UTC"
        );
        assert_eq!(
            utc(at(utc_time("491231235959Z").unwrap())),
            "2049-12-31 23:59:59 UTC"
        );
        assert_eq!(utc_time("500101000000Z"), None, "1950 is before the epoch");
        assert_eq!(utc_time("261305104436Z"), None, "month 13");
        assert_eq!(utc_time("270229000000Z"), None, "29 February 2027");
        assert_eq!(utc_time("261205235960Z"), None, "a leap second");
        assert_eq!(utc_time("2612051044Z"), None, "no seconds");
        assert_eq!(
            generalized("20261205104436.5Z"),
            None,
            "fractions are not DER"
        );
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_are_walked_without_a_panic(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)
        ) {
            let _ = validity(&bytes);
            let _ = server_auth(&bytes);
        }
    }

    #[test]
    fn garbage_is_none_not_a_panic() {
        for bytes in [
            &b""[..],
            b"\x30",
            b"\x30\x84\xff\xff\xff\xff",
            b"\x30\x03\x30\x01",
        ] {
            assert_eq!(validity(bytes), None);
            assert_eq!(server_auth(bytes), None);
        }
    }
}
