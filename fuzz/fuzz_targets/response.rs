//! Response encoder: arbitrary header bytes are refused or framed safely, and
//! the output never has a line that the app did not ask for.
#![no_main]

use ferrule_fuzz::http1::{ResponseDefaults, ResponseEncoder, Version};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&ctl, data)) = input.split_first() else {
        return;
    };
    // data: fields separated by 0xFE, name/value split at the first 0xFD.
    let fields: Vec<(&[u8], &[u8])> = data
        .split(|&b| b == 0xFE)
        .take(8)
        .map(|f| match f.iter().position(|&b| b == 0xFD) {
            Some(p) => (&f[..p], &f[p + 1..]),
            None => (f, &b""[..]),
        })
        .collect();
    let version = if ctl & 1 == 0 {
        Version::Http11
    } else {
        Version::Http10
    };
    let mut e = ResponseEncoder::new(version, ctl & 2 != 0, ctl & 4 != 0);
    let status = [200, 204, 304, 404, 101][usize::from(ctl >> 3) % 5];
    if e.start(status, fields.iter().copied(), ctl & 64 != 0)
        .is_err()
    {
        return;
    }
    let mut out = Vec::new();
    let d = ResponseDefaults {
        server_header: true,
        date_header: true,
        extra: Vec::new(),
    };
    let date = b"Sun, 06 Nov 1994 08:49:37 GMT";
    let _ = e.body(b"hello", ctl & 128 != 0, &d, date, &mut out);
    let _ = e.body(b"", false, &d, date, &mut out);
    let _ = e.trailers(fields.iter().copied(), false, &mut out);
    let head_end = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("head terminated");
    let lines = out[..head_end].split(|&b| b == b'\n').count();
    // status line + at most: app fields, Server, Date, framing, Connection.
    assert!(lines <= 1 + fields.len() + 4);
    // No bare CR or LF: every line ends in CRLF and holds no other CR.
    for line in out[..head_end + 2].split_inclusive(|&b| b == b'\n') {
        assert!(line.ends_with(b"\r\n"));
        assert_eq!(line.iter().filter(|&&b| b == b'\r').count(), 1);
    }
});
