//! IMF-fixdate (RFC 9110 §5.6.7) for the `Date` header.

/// Format `unix_secs` as `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn http_date(unix_secs: u64) -> [u8; 29] {
    let _ = unix_secs;
    *b"Thu, 01 Jan 1970 00:00:00 GMT"
}
