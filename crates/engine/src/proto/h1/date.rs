//! IMF-fixdate (RFC 9110 §5.6.7) for the `Date` header.

const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];
/// 9999-12-31T23:59:59Z: the format has four year digits, so clamp there.
const MAX_SECS: u64 = 253_402_300_799;

/// Format `unix_secs` as `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn http_date(unix_secs: u64) -> [u8; 29] {
    let secs = unix_secs.min(MAX_SECS);
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);

    let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    // 1970-01-01 was a Thursday, DAYS starts there.
    out[..3].copy_from_slice(DAYS[(days % 7) as usize]);
    put2(&mut out[5..7], day);
    out[8..11].copy_from_slice(MONTHS[(month - 1) as usize]);
    put2(&mut out[12..14], year / 100);
    put2(&mut out[14..16], year % 100);
    put2(&mut out[17..19], rem / 3600);
    put2(&mut out[20..22], rem / 60 % 60);
    put2(&mut out[23..25], rem % 60);
    out
}

#[inline]
fn put2(dst: &mut [u8], v: u64) {
    dst[0] = b'0' + (v / 10 % 10) as u8;
    dst[1] = b'0' + (v % 10) as u8;
}

/// Days since 1970-01-01 to (year, month 1-12, day 1-31) in the proleptic
/// Gregorian calendar, counting in 400-year eras that start on March 1st so the
/// leap day falls at the end of the year (H. Hinnant's method).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468; // shift the epoch to 0000-03-01
    let era = z / 146_097;
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365], from March 1st
    let mp = (5 * doy + 2) / 153; // March = 0
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(d: [u8; 29]) -> String {
        String::from_utf8(d.to_vec()).unwrap()
    }

    #[test]
    fn known_dates() {
        assert_eq!(s(http_date(0)), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(s(http_date(784_111_777)), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(s(http_date(951_782_400)), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(s(http_date(1_709_164_800)), "Thu, 29 Feb 2024 00:00:00 GMT");
        assert_eq!(s(http_date(4_107_542_399)), "Sun, 28 Feb 2100 23:59:59 GMT");
        assert_eq!(s(http_date(4_107_542_400)), "Mon, 01 Mar 2100 00:00:00 GMT");
        assert_eq!(s(http_date(1_700_000_000)), "Tue, 14 Nov 2023 22:13:20 GMT");
        assert_eq!(s(http_date(u64::MAX)), "Fri, 31 Dec 9999 23:59:59 GMT");
    }

    /// Walk day by day over 130 years with a naive calendar as the oracle.
    #[test]
    fn matches_naive_calendar() {
        let mut secs = 0u64;
        let (mut y, mut m, mut d, mut wd) = (1970u64, 1u64, 1u64, 0usize);
        while y < 2100 {
            let want = format!(
                "{}, {:02} {} {:04} 12:34:56 GMT",
                std::str::from_utf8(DAYS[wd]).unwrap(),
                d,
                std::str::from_utf8(MONTHS[(m - 1) as usize]).unwrap(),
                y
            );
            assert_eq!(s(http_date(secs + 12 * 3600 + 34 * 60 + 56)), want);
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let mdays = [
                31,
                if leap { 29 } else { 28 },
                31,
                30,
                31,
                30,
                31,
                31,
                30,
                31,
                30,
                31,
            ];
            d += 1;
            if d > mdays[(m - 1) as usize] {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
            wd = (wd + 1) % 7;
            secs += 86_400;
        }
    }
}
