use super::*;

const DATE: &[u8; 29] = b"Sun, 06 Nov 1994 08:49:37 GMT";

fn plain() -> ResponseDefaults {
    ResponseDefaults::default()
}

fn h<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
    pairs.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes()))
}

fn s(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Run a whole response: start + body messages; returns the bytes of each body call.
fn run(
    enc: &mut ResponseEncoder,
    status: u16,
    headers: &[(&str, &str)],
    bodies: &[(&[u8], bool)],
) -> Vec<String> {
    enc.start(status, h(headers), false).unwrap();
    bodies
        .iter()
        .map(|(chunk, more)| {
            let mut out = Vec::new();
            enc.body(chunk, *more, &plain(), DATE, &mut out).unwrap();
            s(&out)
        })
        .collect()
}

fn v11() -> ResponseEncoder {
    ResponseEncoder::new(Version::Http11, false, true)
}

#[test]
fn single_body_gets_content_length() {
    let mut e = v11();
    let w = run(
        &mut e,
        200,
        &[("content-type", "text/plain")],
        &[(b"hello", false)],
    );
    assert_eq!(
        w,
        ["HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nContent-Length: 5\r\n\r\nhello"]
    );
    assert!(e.is_complete() && e.head_written() && e.keep_alive());
    assert_eq!((e.status(), e.body_bytes()), (200, 5));
}

#[test]
fn empty_single_body() {
    let mut e = v11();
    let w = run(&mut e, 200, &[], &[(b"", false)]);
    assert_eq!(w, ["HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"]);
    assert!(e.is_complete() && e.keep_alive());
}

#[test]
fn streaming_is_chunked_with_terminator_in_final_write() {
    let mut e = v11();
    let w = run(
        &mut e,
        200,
        &[],
        &[
            (b"hello", true),
            (b"", true),
            (b"0123456789abcdefX", true),
            (b"end", false),
        ],
    );
    assert_eq!(
        w,
        [
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
            "",
            "11\r\n0123456789abcdefX\r\n",
            "3\r\nend\r\n0\r\n\r\n",
        ]
    );
    assert!(e.is_complete() && e.keep_alive());
    assert_eq!(e.body_bytes(), 25);
}

#[test]
fn streaming_with_empty_first_and_last_chunk() {
    let mut e = v11();
    let w = run(&mut e, 200, &[], &[(b"", true), (b"", false)]);
    assert_eq!(
        w,
        [
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            "0\r\n\r\n"
        ]
    );
}

#[test]
fn http10_streaming_is_close_delimited() {
    let mut e = ResponseEncoder::new(Version::Http10, false, true);
    let w = run(&mut e, 200, &[], &[(b"ab", true), (b"cd", false)]);
    assert_eq!(w, ["HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nab", "cd"]);
    assert!(e.is_complete());
    assert!(!e.keep_alive());
}

#[test]
fn http10_keep_alive() {
    let mut e = ResponseEncoder::new(Version::Http10, false, true);
    let w = run(&mut e, 200, &[], &[(b"ok", false)]);
    assert_eq!(
        w,
        ["HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"]
    );
    assert!(e.keep_alive());
    // Without the client's wish: no header, connection ends.
    let mut e = ResponseEncoder::new(Version::Http10, false, false);
    let w = run(&mut e, 200, &[], &[(b"ok", false)]);
    assert_eq!(w, ["HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"]);
    assert!(!e.keep_alive());
    // App already said keep-alive: not repeated.
    let mut e = ResponseEncoder::new(Version::Http10, false, true);
    let w = run(
        &mut e,
        200,
        &[("Connection", "Keep-Alive")],
        &[(b"ok", false)],
    );
    assert_eq!(
        w,
        ["HTTP/1.1 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nok"]
    );
    assert!(e.keep_alive());
}

#[test]
fn http11_client_close_is_echoed() {
    let mut e = ResponseEncoder::new(Version::Http11, false, false);
    let w = run(&mut e, 200, &[], &[(b"ok", false)]);
    assert_eq!(
        w,
        ["HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"]
    );
    assert!(!e.keep_alive());
}

#[test]
fn app_connection_close_passes_through() {
    let mut e = v11();
    let w = run(&mut e, 200, &[("connection", "close")], &[(b"ok", false)]);
    assert_eq!(
        w,
        ["HTTP/1.1 200 OK\r\nconnection: close\r\nContent-Length: 2\r\n\r\nok"]
    );
    assert!(!e.keep_alive());
    // Other app Connection tokens do not end the connection.
    let mut e = v11();
    run(&mut e, 200, &[("connection", "x-foo")], &[(b"ok", false)]);
    assert!(e.keep_alive());
}

#[test]
fn force_close() {
    let mut e = v11();
    e.start(200, h(&[]), false).unwrap();
    assert!(e.keep_alive());
    e.force_close();
    assert!(!e.keep_alive());
    let mut out = Vec::new();
    e.body(b"ok", false, &plain(), DATE, &mut out).unwrap();
    assert_eq!(
        s(&out),
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
    );
    assert!(!e.keep_alive());
    // After the head went out it can only end the connection.
    let mut e = v11();
    let mut out = Vec::new();
    e.start(200, h(&[]), false).unwrap();
    e.body(b"a", true, &plain(), DATE, &mut out).unwrap();
    e.force_close();
    assert!(!e.keep_alive());
}

#[test]
fn head_request() {
    // Single body: its length is announced, no body bytes.
    let mut e = ResponseEncoder::new(Version::Http11, true, true);
    let w = run(&mut e, 200, &[], &[(b"hello", false)]);
    assert_eq!(w, ["HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"]);
    assert!(e.is_complete() && e.keep_alive());
    assert_eq!(e.body_bytes(), 0);
    // The app's Content-Length is kept even with an empty body.
    let mut e = ResponseEncoder::new(Version::Http11, true, true);
    let w = run(&mut e, 200, &[("content-length", "1234")], &[(b"", false)]);
    assert_eq!(w, ["HTTP/1.1 200 OK\r\ncontent-length: 1234\r\n\r\n"]);
    // Streaming: announces chunked like GET would, but sends nothing after the head.
    let mut e = ResponseEncoder::new(Version::Http11, true, true);
    let w = run(&mut e, 200, &[], &[(b"abc", true), (b"def", false)]);
    assert_eq!(
        w,
        ["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", ""]
    );
    assert!(e.keep_alive());
    // 1.0 streaming HEAD: the head ends the response, the connection may stay.
    let mut e = ResponseEncoder::new(Version::Http10, true, true);
    let w = run(&mut e, 200, &[], &[(b"abc", true), (b"", false)]);
    assert_eq!(w, ["HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n\r\n", ""]);
    assert!(e.keep_alive());
}

#[test]
fn no_body_statuses() {
    for status in [204u16, 304, 100, 103] {
        let mut e = v11();
        let w = run(
            &mut e,
            status,
            &[("x", "y")],
            &[(b"ignored", true), (b"also", false)],
        );
        assert_eq!(
            w,
            [
                format!(
                    "HTTP/1.1 {status} {}\r\nx: y\r\n\r\n",
                    reason_phrase(status)
                ),
                String::new()
            ]
        );
        assert!(e.keep_alive(), "{status}");
        assert_eq!(e.body_bytes(), 0);
    }
    // 304 keeps the app's Content-Length (that of the selected representation).
    let mut e = v11();
    let w = run(
        &mut e,
        304,
        &[("ETag", "\"x\""), ("Content-Length", "99")],
        &[(b"", false)],
    );
    assert_eq!(
        w,
        ["HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nContent-Length: 99\r\n\r\n"]
    );
    // An app Transfer-Encoding is never sent on 204.
    let mut e = v11();
    let w = run(
        &mut e,
        204,
        &[("transfer-encoding", "chunked")],
        &[(b"", false)],
    );
    assert_eq!(w, ["HTTP/1.1 204 No Content\r\n\r\n"]);
}

#[test]
fn app_content_length_is_kept_and_enforced() {
    let mut e = v11();
    let w = run(
        &mut e,
        200,
        &[("Content-Length", "10")],
        &[(b"01234", true), (b"56789", false)],
    );
    assert_eq!(
        w,
        [
            "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234",
            "56789"
        ]
    );
    assert!(e.is_complete() && e.keep_alive());

    // Too long: refused, the connection must end.
    let mut e = v11();
    e.start(200, h(&[("content-length", "3")]), false).unwrap();
    let mut out = Vec::new();
    e.body(b"ab", true, &plain(), DATE, &mut out).unwrap();
    let before = out.len();
    assert_eq!(
        e.body(b"cd", true, &plain(), DATE, &mut out),
        Err(ResponseError::BodyTooLong)
    );
    assert_eq!(out.len(), before, "nothing of the refused chunk is written");
    assert!(!e.keep_alive());

    // Too short.
    let mut e = v11();
    e.start(200, h(&[("content-length", "3")]), false).unwrap();
    let mut out = Vec::new();
    assert_eq!(
        e.body(b"ab", false, &plain(), DATE, &mut out),
        Err(ResponseError::BodyTooShort)
    );
    assert!(!e.keep_alive());

    // Identical repeats are written once; differing ones are refused.
    let mut e = v11();
    let w = run(
        &mut e,
        200,
        &[("content-length", "2"), ("Content-Length", "2")],
        &[(b"ok", false)],
    );
    assert_eq!(w, ["HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"]);
    let mut e = v11();
    assert_eq!(
        e.start(
            200,
            h(&[("content-length", "2"), ("content-length", "3")]),
            false
        ),
        Err(ResponseError::InvalidHeader)
    );
    for v in [
        "",
        " 2",
        "2 ",
        "+2",
        "-2",
        "0x2",
        "2, 2",
        "99999999999999999999",
    ] {
        let mut e = v11();
        assert_eq!(
            e.start(200, h(&[("content-length", v)]), false),
            Err(ResponseError::InvalidHeader),
            "{v:?}"
        );
    }
}

#[test]
fn header_casing_and_order_are_kept() {
    let mut e = v11();
    let w = run(
        &mut e,
        200,
        &[
            ("ETag", "\"abc\""),
            ("X-Custom-THING", "v"),
            ("set-cookie", "a=1"),
            ("Set-Cookie", "b=2"),
        ],
        &[(b"", false)],
    );
    assert_eq!(
        w,
        ["HTTP/1.1 200 OK\r\nETag: \"abc\"\r\nX-Custom-THING: v\r\nset-cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 0\r\n\r\n"]
    );
}

#[test]
fn invalid_headers_are_refused() {
    let bad: &[(&[u8], &[u8])] = &[
        (b"", b"v"),
        (b"X A", b"v"),
        (b"X:A", b"v"),
        (b"X\r\nInjected", b"v"),
        (b"X\n", b"v"),
        (b"X\0", b"v"),
        (b"X\xe9", b"v"),
        (b"X", b"a\r\nSet-Cookie: evil=1"),
        (b"X", b"a\rb"),
        (b"X", b"a\nb"),
        (b"X", b"a\0b"),
        (b"X", b"a\x01b"),
        (b"X", b"a\x7fb"),
        (b"Transfer-Encoding", b"gzip"),
    ];
    for (n, v) in bad {
        let mut e = v11();
        assert_eq!(
            e.start(200, [(*n, *v)], false),
            Err(ResponseError::InvalidHeader),
            "{:?}",
            (s(n), s(v))
        );
        assert!(!e.is_started());
    }
    // HTAB and obs-text are fine in values.
    let mut e = v11();
    e.start(200, [(&b"X"[..], &b"a\tb \xff"[..])], false)
        .unwrap();
}

#[test]
fn status_validation_and_reasons() {
    for bad in [0u16, 99, 1000, u16::MAX] {
        assert_eq!(
            v11().start(bad, h(&[]), false),
            Err(ResponseError::InvalidStatus)
        );
    }
    let mut e = v11();
    let w = run(&mut e, 599, &[], &[(b"", false)]);
    assert_eq!(w, ["HTTP/1.1 599 \r\nContent-Length: 0\r\n\r\n"]);
    assert_eq!(reason_phrase(200), "OK");
    assert_eq!(reason_phrase(404), "Not Found");
    assert_eq!(reason_phrase(413), "Content Too Large");
    assert_eq!(reason_phrase(431), "Request Header Fields Too Large");
    assert_eq!(reason_phrase(505), "HTTP Version Not Supported");
    assert_eq!(reason_phrase(299), "");
}

#[test]
fn order_errors() {
    let mut e = v11();
    let mut out = Vec::new();
    assert_eq!(
        e.body(b"x", false, &plain(), DATE, &mut out),
        Err(ResponseError::NotStarted)
    );
    assert_eq!(
        e.trailers(h(&[]), false, &mut out),
        Err(ResponseError::NotStarted)
    );
    e.start(200, h(&[]), false).unwrap();
    assert_eq!(
        e.start(200, h(&[]), false),
        Err(ResponseError::AlreadyStarted)
    );
    assert!(e.is_started() && !e.head_written());
    e.body(b"x", false, &plain(), DATE, &mut out).unwrap();
    assert_eq!(
        e.body(b"y", false, &plain(), DATE, &mut out),
        Err(ResponseError::AlreadyComplete)
    );
    assert_eq!(
        e.body(b"", false, &plain(), DATE, &mut out),
        Err(ResponseError::AlreadyComplete)
    );
    assert_eq!(
        e.trailers(h(&[]), false, &mut out),
        Err(ResponseError::AlreadyComplete)
    );
    assert!(!out.is_empty());
}

#[test]
fn server_date_and_extra_defaults() {
    let d = ResponseDefaults {
        server_header: true,
        date_header: true,
        extra: vec![
            (b"X-Frame-Options".to_vec(), b"DENY".to_vec()),
            (b"X-Env".to_vec(), b"prod".to_vec()),
        ],
    };
    let mut e = v11();
    e.start(200, h(&[("x-env", "dev")]), false).unwrap();
    let mut out = Vec::new();
    e.body(b"", false, &d, DATE, &mut out).unwrap();
    assert_eq!(
        s(&out),
        "HTTP/1.1 200 OK\r\nServer: ferrule\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nX-Frame-Options: DENY\r\nx-env: dev\r\nContent-Length: 0\r\n\r\n"
    );
    // The app's own Server and Date win.
    let mut e = v11();
    e.start(200, h(&[("server", "app"), ("DATE", "x")]), false)
        .unwrap();
    let mut out = Vec::new();
    e.body(b"", false, &d, DATE, &mut out).unwrap();
    assert_eq!(
        s(&out),
        "HTTP/1.1 200 OK\r\nX-Frame-Options: DENY\r\nX-Env: prod\r\nserver: app\r\nDATE: x\r\nContent-Length: 0\r\n\r\n"
    );
}

#[test]
fn trailers_with_chunked() {
    let mut e = v11();
    e.start(200, h(&[("trailer", "x-checksum")]), true).unwrap();
    let mut out = Vec::new();
    e.body(b"abc", true, &plain(), DATE, &mut out).unwrap();
    assert_eq!(
        s(&out),
        "HTTP/1.1 200 OK\r\ntrailer: x-checksum\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
    );
    out.clear();
    e.body(b"de", false, &plain(), DATE, &mut out).unwrap();
    assert_eq!(
        s(&out),
        "2\r\nde\r\n",
        "no terminator while trailers are pending"
    );
    assert!(!e.is_complete());
    out.clear();
    e.trailers(h(&[("x-checksum", "1234")]), true, &mut out)
        .unwrap();
    e.trailers(h(&[("x-other", "5")]), false, &mut out).unwrap();
    assert_eq!(s(&out), "0\r\nx-checksum: 1234\r\nx-other: 5\r\n\r\n");
    assert!(e.is_complete() && e.keep_alive());
    // A single body with trailers announced (and no app length) is chunked
    // too, so the trailers can be delivered.
    let mut e = v11();
    e.start(200, h(&[]), true).unwrap();
    let mut out = Vec::new();
    e.body(b"abc", false, &plain(), DATE, &mut out).unwrap();
    e.trailers(h(&[("t", "1")]), false, &mut out).unwrap();
    assert_eq!(
        s(&out),
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nt: 1\r\n\r\n"
    );
    assert!(e.is_complete());
}

#[test]
fn trailers_dropped_with_content_length() {
    let mut e = v11();
    e.start(200, h(&[("content-length", "3")]), true).unwrap();
    let mut out = Vec::new();
    e.body(b"abc", false, &plain(), DATE, &mut out).unwrap();
    assert!(!e.is_complete(), "waits for the trailers message");
    let before = out.len();
    e.trailers(h(&[("x-checksum", "1")]), false, &mut out)
        .unwrap();
    assert_eq!(out.len(), before);
    assert!(e.is_complete() && e.keep_alive());
}

#[test]
fn trailer_errors() {
    // Not announced.
    let mut e = v11();
    let mut out = Vec::new();
    e.start(200, h(&[]), false).unwrap();
    e.body(b"a", true, &plain(), DATE, &mut out).unwrap();
    assert_eq!(
        e.trailers(h(&[]), false, &mut out),
        Err(ResponseError::UnexpectedTrailers)
    );
    // Before the final body.
    let mut e = v11();
    e.start(200, h(&[]), true).unwrap();
    e.body(b"a", true, &plain(), DATE, &mut out).unwrap();
    assert_eq!(
        e.trailers(h(&[]), false, &mut out),
        Err(ResponseError::UnexpectedTrailers)
    );
    // Invalid field: nothing written.
    e.body(b"", false, &plain(), DATE, &mut out).unwrap();
    let before = out.len();
    assert_eq!(
        e.trailers([(&b"x"[..], &b"a\r\nb"[..])], false, &mut out),
        Err(ResponseError::InvalidHeader)
    );
    assert_eq!(out.len(), before);
}

#[test]
fn app_transfer_encoding() {
    // 1.1: the app's line is sent (casing kept) and we chunk; its CL is dropped.
    let mut e = v11();
    let w = run(
        &mut e,
        200,
        &[
            ("Content-Length", "5"),
            ("Transfer-Encoding", "gzip, chunked"),
            ("x", "y"),
        ],
        &[(b"hello", false)],
    );
    assert_eq!(
        w,
        ["HTTP/1.1 200 OK\r\nx: y\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"]
    );
    // 1.0: never sent; the app's Content-Length frames the body.
    let mut e = ResponseEncoder::new(Version::Http10, false, true);
    let w = run(
        &mut e,
        200,
        &[("Content-Length", "5"), ("transfer-encoding", "chunked")],
        &[(b"hello", false)],
    );
    assert_eq!(
        w,
        ["HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello"]
    );
    // 1.0 single body without a length: we compute one.
    let mut e = ResponseEncoder::new(Version::Http10, false, true);
    let w = run(
        &mut e,
        200,
        &[("transfer-encoding", "chunked")],
        &[(b"hello", false)],
    );
    assert_eq!(
        w,
        ["HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello"]
    );
    // 1.0 stream: close-delimited.
    let mut e = ResponseEncoder::new(Version::Http10, false, true);
    let w = run(
        &mut e,
        200,
        &[("transfer-encoding", "chunked")],
        &[(b"hello", true), (b"", false)],
    );
    assert_eq!(w, ["HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello", ""]);
    assert!(!e.keep_alive());
}

#[test]
fn reset_reuses_the_encoder() {
    let mut e = v11();
    run(&mut e, 404, &[("a", "b")], &[(b"x", false)]);
    e.reset(Version::Http11, false, true);
    assert!(!e.is_started() && !e.head_written() && !e.is_complete());
    let w = run(&mut e, 200, &[], &[(b"ok", false)]);
    assert_eq!(w, ["HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"]);
    assert_eq!(e.body_bytes(), 2);
}

#[test]
fn simple_responses() {
    let mut out = Vec::new();
    write_simple_response(&mut out, 400, b"Bad Request", true, &plain(), DATE);
    assert_eq!(
        s(&out),
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 11\r\nConnection: close\r\n\r\nBad Request"
    );
    let d = ResponseDefaults {
        server_header: true,
        date_header: true,
        extra: vec![(b"X-A".to_vec(), b"1".to_vec())],
    };
    let mut out = b"prefix".to_vec();
    write_simple_response(&mut out, 503, b"", false, &d, DATE);
    assert_eq!(
        s(&out),
        "prefixHTTP/1.1 503 Service Unavailable\r\nServer: ferrule\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nX-A: 1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 0\r\n\r\n"
    );
    assert_eq!(CONTINUE_100, b"HTTP/1.1 100 Continue\r\n\r\n");
}

#[test]
fn chunk_size_hex() {
    for n in [
        1usize,
        9,
        10,
        15,
        16,
        255,
        256,
        4096,
        65535,
        1 << 20,
        usize::MAX,
    ] {
        let mut out = Vec::new();
        push_chunk_size(&mut out, n);
        assert_eq!(s(&out), format!("{n:x}\r\n"));
    }
}

// ---------------------------------------------------------------- properties

use super::super::chunked::ChunkedDecoder;
use proptest::prelude::*;

/// Read one response back from `wire` with httparse and our chunked decoder:
/// (status, headers, payload, bytes used). A close-delimited body runs to the
/// end of `wire`.
type ReadBack = (u16, Vec<(String, Vec<u8>)>, Vec<u8>, usize);

fn read_back(wire: &[u8], head: bool) -> ReadBack {
    let mut hs = [httparse::EMPTY_HEADER; 64];
    let mut r = httparse::Response::new(&mut hs);
    let n = match r.parse(wire).unwrap() {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => panic!("partial head: {}", s(wire)),
    };
    let status = r.code.unwrap();
    let headers: Vec<(String, Vec<u8>)> = r
        .headers
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
        .collect();
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    if head || status == 204 || status == 304 {
        return (status, headers, Vec::new(), n);
    }
    if get("transfer-encoding").is_some() {
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        let r = d.decode(&wire[n..], &mut out).unwrap();
        assert!(r.done, "unterminated chunked body");
        return (status, headers, out, n + r.consumed);
    }
    if let Some(cl) = get("content-length") {
        let cl: usize = std::str::from_utf8(&cl).unwrap().parse().unwrap();
        return (status, headers, wire[n..n + cl].to_vec(), n + cl);
    }
    (status, headers, wire[n..].to_vec(), wire.len())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Whatever the split into messages, the bytes on the wire frame exactly
    /// the app's body and nothing follows it (the next response can start).
    #[test]
    fn encoded_responses_read_back(
        chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..50), 1..6),
        v10 in any::<bool>(),
        client_ka in any::<bool>(),
        give_cl in any::<bool>(),
        head in any::<bool>(),
        status in prop::sample::select(vec![200u16, 201, 204, 304, 404, 500]),
        trailers in any::<bool>(),
    ) {
        let version = if v10 { Version::Http10 } else { Version::Http11 };
        let mut e = ResponseEncoder::new(version, head, client_ka);
        let body: Vec<u8> = chunks.concat();
        let cl = body.len().to_string();
        let mut headers: Vec<(&[u8], &[u8])> = vec![(b"X-App", b"1")];
        if give_cl {
            headers.push((b"Content-Length", cl.as_bytes()));
        }
        e.start(status, headers, trailers).unwrap();
        let mut wire = Vec::new();
        let last = chunks.len() - 1;
        for (i, c) in chunks.iter().enumerate() {
            e.body(c, i < last, &ResponseDefaults::default(), b"Sun, 06 Nov 1994 08:49:37 GMT", &mut wire).unwrap();
        }
        if trailers {
            prop_assert!(!e.is_complete());
            e.trailers([(&b"x-t"[..], &b"v"[..])], false, &mut wire).unwrap();
        }
        prop_assert!(e.is_complete());
        let (st, hs, payload, used) = read_back(&wire, head);
        prop_assert_eq!(st, status);
        prop_assert!(hs.iter().any(|(n, v)| n == "x-app" && v == b"1"));
        let no_body = head || status == 204 || status == 304;
        if no_body {
            prop_assert_eq!(used, wire.len(), "nothing after a bodiless head");
            prop_assert_eq!(e.body_bytes(), 0);
        } else {
            prop_assert_eq!(&payload, &body);
            prop_assert_eq!(used, wire.len());
            prop_assert_eq!(e.body_bytes(), body.len() as u64);
        }
        let close_hdr = hs.iter().any(|(n, v)| n == "connection" && v.eq_ignore_ascii_case(b"close"));
        let framed = hs.iter().any(|(n, _)| n == "content-length" || n == "transfer-encoding");
        // Close-delimited bodies only for 1.0 streams, and they say so.
        if !no_body && !framed {
            prop_assert!(v10 && !e.keep_alive() && close_hdr);
        }
        // Keep-alive only if the client wanted it.
        prop_assert!(!e.keep_alive() || client_ka);
        prop_assert!(!(close_hdr && e.keep_alive()));
        if v10 && client_ka && e.keep_alive() {
            prop_assert!(hs.iter().any(|(n, v)| n == "connection" && v == b"keep-alive"));
        }
    }

    /// Random header bytes: either refused, or the head parses back with the
    /// same fields (no injected lines).
    #[test]
    fn random_headers_never_split(
        fields in prop::collection::vec(
            (prop::collection::vec(any::<u8>(), 0..8), prop::collection::vec(any::<u8>(), 0..12)),
            0..4,
        ),
    ) {
        let mut e = ResponseEncoder::new(Version::Http11, false, true);
        let r = e.start(200, fields.iter().map(|(n, v)| (&n[..], &v[..])), false);
        if r.is_err() {
            return Ok(());
        }
        let mut wire = Vec::new();
        e.body(b"x", false, &ResponseDefaults::default(), b"Sun, 06 Nov 1994 08:49:37 GMT", &mut wire).unwrap();
        let mut hs = [httparse::EMPTY_HEADER; 16];
        let mut resp = httparse::Response::new(&mut hs);
        let parsed = resp.parse(&wire);
        prop_assert!(matches!(parsed, Ok(httparse::Status::Complete(_))), "{:?}", parsed);
        // Our added Content-Length line is the one extra field (unless the app set one).
        let app_cl = fields.iter().any(|(n, _)| n.eq_ignore_ascii_case(b"content-length"));
        let extra = usize::from(!app_cl);
        prop_assert!(resp.headers.len() <= fields.len() + extra);
    }
}

// ---- bodies the caller sends itself (pathsend) and early hints

fn file(e: &mut ResponseEncoder, len: u64) -> (Result<FileFraming, ResponseError>, String) {
    let mut out = Vec::new();
    let r = e.file_body(len, &plain(), DATE, &mut out);
    (r, s(&out))
}

#[test]
fn a_file_body_announces_the_file_length_in_the_head() {
    let mut e = v11();
    e.start(200, h(&[("content-type", "text/plain")]), false)
        .unwrap();
    let (r, out) = file(&mut e, 10);
    assert_eq!(
        r,
        Ok(FileFraming {
            len: 10,
            suffix: b""
        })
    );
    assert_eq!(
        out,
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nContent-Length: 10\r\n\r\n"
    );
    assert!(e.is_complete() && e.keep_alive());
    assert_eq!(e.body_bytes(), 10);
}

#[test]
fn a_file_body_that_differs_from_the_apps_content_length_is_refused_before_any_byte() {
    for (len, err) in [
        (4, ResponseError::BodyTooShort),
        (6, ResponseError::BodyTooLong),
    ] {
        let mut e = v11();
        e.start(200, h(&[("content-length", "5")]), false).unwrap();
        assert_eq!(file(&mut e, len), (Err(err), String::new()));
        assert!(!e.head_written());
    }
    let mut e = v11();
    e.start(200, h(&[("content-length", "5")]), false).unwrap();
    assert_eq!(
        file(&mut e, 5).0,
        Ok(FileFraming {
            len: 5,
            suffix: b""
        })
    );
}

#[test]
fn a_file_body_for_head_sends_the_length_and_no_bytes() {
    let mut e = ResponseEncoder::new(Version::Http11, true, true);
    e.start(200, h(&[]), false).unwrap();
    let (r, out) = file(&mut e, 10);
    assert_eq!(
        r,
        Ok(FileFraming {
            len: 0,
            suffix: b""
        })
    );
    assert_eq!(out, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n");
    assert!(e.is_complete());
}

#[test]
fn a_file_body_after_a_streamed_chunk_is_one_more_chunk() {
    let mut e = v11();
    e.start(200, h(&[]), false).unwrap();
    let mut out = Vec::new();
    e.body(b"ab", true, &plain(), DATE, &mut out).unwrap();
    let (r, out) = file(&mut e, 17);
    assert_eq!(
        r,
        Ok(FileFraming {
            len: 17,
            suffix: b"\r\n0\r\n\r\n"
        })
    );
    assert_eq!(out, "11\r\n");
    let mut e = v11();
    e.start(200, h(&[]), true).unwrap();
    let mut out = Vec::new();
    e.body(b"ab", true, &plain(), DATE, &mut out).unwrap();
    assert_eq!(
        file(&mut e, 0).0,
        Ok(FileFraming {
            len: 0,
            suffix: b""
        })
    );
    assert!(!e.is_complete(), "trailers still to come");
}

#[test]
fn early_hints_go_out_before_the_head_on_http11_only() {
    let mut e = v11();
    e.start(200, h(&[]), false).unwrap();
    let links: [&[u8]; 2] = [b"</a.css>; rel=preload; as=style", b"</b.js>; rel=preload"];
    let mut out = Vec::new();
    assert_eq!(e.early_hints(links, &mut out), Ok(true));
    assert_eq!(
        s(&out),
        "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload; as=style\r\nLink: </b.js>; rel=preload\r\n\r\n"
    );
    let bad: [&[u8]; 1] = [b"</a>\r\nX: y"];
    let mut out = Vec::new();
    assert_eq!(
        e.early_hints(bad, &mut out),
        Err(ResponseError::InvalidHeader)
    );
    assert!(out.is_empty());
    e.body(b"x", true, &plain(), DATE, &mut out).unwrap();
    assert_eq!(
        e.early_hints(links, &mut Vec::new()),
        Ok(false),
        "head written"
    );

    let mut old = ResponseEncoder::new(Version::Http10, false, false);
    old.start(200, h(&[]), false).unwrap();
    assert_eq!(
        old.early_hints(links, &mut Vec::new()),
        Ok(false),
        "HTTP/1.0"
    );
}

#[test]
fn a_file_after_a_close_delimited_stream_is_refused() {
    let mut e = ResponseEncoder::new(Version::Http10, false, false);
    e.start(200, h(&[]), false).unwrap();
    let mut out = Vec::new();
    e.body(b"ab", true, &plain(), DATE, &mut out).unwrap();
    assert_eq!(
        file(&mut e, 10).0,
        Err(ResponseError::FileAfterCloseDelimited)
    );
}
