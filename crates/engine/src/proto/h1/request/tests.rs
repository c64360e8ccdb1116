use super::*;
use proptest::prelude::*;

/// Everything a parse result says, in owned form, for comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Summary {
    raw: Vec<u8>,
    method: Vec<u8>,
    target: Vec<u8>,
    path: Vec<u8>,
    query: Vec<u8>,
    version: Version,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    framing: BodyFraming,
    keep_alive: bool,
    expect_continue: bool,
}

fn summary(h: &RequestHead) -> Summary {
    Summary {
        raw: h.raw.to_vec(),
        method: h.method().to_vec(),
        target: h.bytes(h.target).to_vec(),
        path: h.bytes(h.path).to_vec(),
        query: h.bytes(h.query).to_vec(),
        version: h.version,
        headers: h
            .headers
            .iter()
            .map(|(n, v)| (h.bytes(*n).to_vec(), h.bytes(*v).to_vec()))
            .collect(),
        framing: h.framing,
        keep_alive: h.keep_alive,
        expect_continue: h.expect_continue,
    }
}

type Outcome = Result<Option<(Summary, Vec<u8>)>, HeadError>;

/// Parse `input` in one piece; on success also return what is left in the buffer.
fn parse_with(input: &[u8], limits: &Limits) -> Outcome {
    let mut buf = BytesMut::from(input);
    let r = parse_request_head(&mut buf, limits)?;
    Ok(r.map(|h| (summary(&h), buf.to_vec())))
}

fn parse(input: &[u8]) -> Outcome {
    parse_with(input, &Limits::default())
}

fn ok(input: &[u8]) -> Summary {
    match parse(input) {
        Ok(Some((s, _))) => s,
        other => panic!(
            "expected a head from {:?}, got {other:?}",
            String::from_utf8_lossy(input)
        ),
    }
}

fn err(input: &[u8]) -> HeadError {
    match parse(input) {
        Err(e) => e,
        other => panic!(
            "expected an error from {:?}, got {other:?}",
            String::from_utf8_lossy(input)
        ),
    }
}

fn status(input: &[u8]) -> u16 {
    err(input).status()
}

/// A 1.1 GET with Host plus the given extra header lines.
fn with_headers(extra: &str) -> Vec<u8> {
    format!("GET / HTTP/1.1\r\nHost: h\r\n{extra}\r\n").into_bytes()
}

fn post_with(extra: &str) -> Vec<u8> {
    format!("POST /up HTTP/1.1\r\nHost: h\r\n{extra}\r\n").into_bytes()
}

// ---------------------------------------------------------------- basics

#[test]
fn simple_get() {
    let input = b"GET /a/b?x=1&y=%20 HTTP/1.1\r\nHost: example.com\r\nUser-Agent:  curl/8 \t\r\nX-Empty:\r\nACCEPT: */*\r\n\r\n";
    let s = ok(input);
    // Names are lower-cased in place, nothing else changes.
    assert_eq!(
        s.raw,
        b"GET /a/b?x=1&y=%20 HTTP/1.1\r\nhost: example.com\r\nuser-agent:  curl/8 \t\r\nx-empty:\r\naccept: */*\r\n\r\n".to_vec()
    );
    assert_eq!(s.method, b"GET");
    assert_eq!(s.target, b"/a/b?x=1&y=%20");
    assert_eq!(s.path, b"/a/b");
    assert_eq!(s.query, b"x=1&y=%20");
    assert_eq!(s.version, Version::Http11);
    assert_eq!(
        s.headers,
        vec![
            (b"host".to_vec(), b"example.com".to_vec()),
            (b"user-agent".to_vec(), b"curl/8".to_vec()),
            (b"x-empty".to_vec(), b"".to_vec()),
            (b"accept".to_vec(), b"*/*".to_vec()),
        ]
    );
    assert_eq!(s.framing, BodyFraming::Empty);
    assert!(s.keep_alive);
    assert!(!s.expect_continue);
}

#[test]
fn accessors() {
    let mut buf = BytesMut::from(&b"HEAD /x HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nx-a: 2\r\n\r\n"[..]);
    let h = parse_request_head(&mut buf, &Limits::default())
        .unwrap()
        .unwrap();
    assert!(h.is_head());
    assert_eq!(h.method(), b"HEAD");
    assert_eq!(h.header(b"x-a"), Some(&b"1"[..]));
    assert_eq!(h.header(b"nope"), None);
    assert_eq!(h.headers.len(), 3, "repeats are kept");
    assert_eq!(h.target_authority(), None);
    assert!(buf.is_empty());
}

#[test]
fn empty_and_partial_need_more() {
    assert_eq!(parse(b""), Ok(None));
    assert_eq!(parse(b"GET / HTTP/1.1\r\nHost: h\r\n"), Ok(None));
    assert_eq!(parse(b"\r\n\r\n"), Ok(None));
    // A partial head leaves the buffer untouched.
    let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\nHo"[..]);
    assert_eq!(
        parse_request_head(&mut buf, &Limits::default())
            .unwrap()
            .map(|_| ()),
        None
    );
    assert_eq!(&buf[..], b"GET / HTTP/1.1\r\nHo");
}

#[test]
fn body_and_pipelined_bytes_stay_in_buffer() {
    let input = b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\nHost: h\r\n\r\n";
    let (s, rest) = parse(input).unwrap().unwrap();
    assert_eq!(s.framing, BodyFraming::Length(5));
    assert_eq!(rest, b"helloGET / HTTP/1.1\r\nHost: h\r\n\r\n");

    let input = b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n";
    let mut buf = BytesMut::from(&input[..]);
    let a = parse_request_head(&mut buf, &Limits::default())
        .unwrap()
        .unwrap();
    let b = parse_request_head(&mut buf, &Limits::default())
        .unwrap()
        .unwrap();
    assert_eq!(a.bytes(a.path), b"/1");
    assert_eq!(b.bytes(b.path), b"/2");
    assert!(buf.is_empty());
    assert_eq!(
        parse_request_head(&mut buf, &Limits::default())
            .unwrap()
            .map(|_| ()),
        None
    );
}

#[test]
fn leading_empty_lines_are_skipped() {
    let s = ok(b"\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(s.raw, b"GET / HTTP/1.1\r\nhost: h\r\n\r\n");
    assert_eq!(s.method, b"GET");
    // ... but only CRLF ones.
    assert_eq!(
        err(b"\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"),
        HeadError::BareLineFeed
    );
    assert_eq!(status(b"\r\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
}

#[test]
fn http10_basics() {
    let s = ok(b"GET / HTTP/1.0\r\n\r\n");
    assert_eq!(s.version, Version::Http10);
    assert!(!s.keep_alive, "1.0 closes by default");
    let s = ok(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
    assert!(s.keep_alive);
    let s = ok(b"GET / HTTP/1.0\r\nConnection: foo, keep-alive\r\n\r\n");
    assert!(s.keep_alive);
    let s = ok(b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n");
    assert!(!s.keep_alive);
}

#[test]
fn http11_keep_alive() {
    assert!(ok(&with_headers("")).keep_alive);
    assert!(!ok(&with_headers("Connection: close\r\n")).keep_alive);
    assert!(!ok(&with_headers("Connection: keep-alive, CLOSE\r\n")).keep_alive);
    assert!(
        !ok(&with_headers(
            "Connection: upgrade\r\nConnection: close\r\n"
        ))
        .keep_alive
    );
    assert!(
        ok(&with_headers("Connection: closed\r\n")).keep_alive,
        "token, not prefix"
    );
}

#[test]
fn expect_continue() {
    assert!(ok(&post_with("Content-Length: 3\r\nExpect: 100-continue\r\n")).expect_continue);
    assert!(
        ok(&post_with(
            "Transfer-Encoding: chunked\r\nExpect: 100-Continue\r\n"
        ))
        .expect_continue
    );
    assert!(
        !ok(&post_with("Expect: 100-continue\r\n")).expect_continue,
        "no body"
    );
    assert!(!ok(&post_with("Content-Length: 3\r\nExpect: 200-ok\r\n")).expect_continue);
    let s = ok(b"POST / HTTP/1.0\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n");
    assert!(!s.expect_continue, "ignored on 1.0");
}

#[test]
fn content_length_framing() {
    assert_eq!(
        ok(&post_with("Content-Length: 5\r\n")).framing,
        BodyFraming::Length(5)
    );
    assert_eq!(
        ok(&post_with("Content-Length: 0\r\n")).framing,
        BodyFraming::Empty
    );
    assert_eq!(
        ok(&post_with("Content-Length: 007\r\n")).framing,
        BodyFraming::Length(7)
    );
    assert_eq!(
        ok(&post_with("Content-Length: 18446744073709551615\r\n")).framing,
        BodyFraming::Length(u64::MAX)
    );
    // Identical repeats are one value.
    assert_eq!(
        ok(&post_with("Content-Length: 5, 5\r\n")).framing,
        BodyFraming::Length(5)
    );
    assert_eq!(
        ok(&post_with("Content-Length: 5\r\ncontent-length: 5\r\n")).framing,
        BodyFraming::Length(5)
    );
    assert_eq!(
        ok(&post_with("Transfer-Encoding: chunked\r\n")).framing,
        BodyFraming::Chunked
    );
    assert_eq!(
        ok(&post_with("Transfer-Encoding: CHUNKED\r\n")).framing,
        BodyFraming::Chunked
    );
    assert_eq!(
        ok(&post_with("Transfer-Encoding: ,chunked,\r\n")).framing,
        BodyFraming::Chunked
    );
}

// ---------------------------------------------------------------- strictness: framing

#[test]
fn rejects_content_length_with_transfer_encoding() {
    for h in [
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 0\r\n",
    ] {
        assert_eq!(err(&post_with(h)), HeadError::ConflictingFraming, "{h:?}");
        assert_eq!(status(&post_with(h)), 400);
    }
}

#[test]
fn rejects_bad_content_length() {
    for v in [
        "+5",
        "-1",
        "0x5",
        "5a",
        "5 5",
        "5,",
        ",5",
        "5, 6",
        "5.0",
        "1_000",
        "\u{00b9}",
        "18446744073709551616",
        "99999999999999999999999",
    ] {
        let input = post_with(&format!("Content-Length: {v}\r\n"));
        assert_eq!(err(&input), HeadError::BadContentLength, "{v:?}");
        assert_eq!(status(&input), 400);
    }
    // Empty and whitespace-only values.
    assert_eq!(
        err(&post_with("Content-Length:\r\n")),
        HeadError::BadContentLength
    );
    assert_eq!(
        err(&post_with("Content-Length: \r\n")),
        HeadError::BadContentLength
    );
    assert_eq!(
        err(&post_with("Content-Length:  \t \r\n")),
        HeadError::BadContentLength
    );
    // Two differing lines.
    assert_eq!(
        err(&post_with("Content-Length: 5\r\nContent-Length: 6\r\n")),
        HeadError::BadContentLength
    );
}

#[test]
fn rejects_bad_transfer_encoding() {
    let cases: &[(&str, u16)] = &[
        ("Transfer-Encoding: chunked, identity\r\n", 400),
        (
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
            400,
        ),
        ("Transfer-Encoding: chunked, chunked\r\n", 400),
        ("Transfer-Encoding: xchunked\r\n", 400),
        ("Transfer-Encoding: chunkedx\r\n", 400),
        ("Transfer-Encoding: chunked;ext=1\r\n", 400),
        ("Transfer-Encoding: chunked, gzip\r\n", 400),
        ("Transfer-Encoding: gzip\r\n", 400),
        ("Transfer-Encoding: identity\r\n", 400),
        ("Transfer-Encoding:\r\n", 400),
        ("Transfer-Encoding: \"chunked\"\r\n", 400),
        (
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n",
            400,
        ),
        ("Transfer-Encoding: gzip, chunked\r\n", 501),
        (
            "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
            501,
        ),
        ("Transfer-Encoding: deflate;q=1, chunked\r\n", 501),
    ];
    for (h, want) in cases {
        assert_eq!(status(&post_with(h)), *want, "{h:?}");
    }
}

#[test]
fn rejects_transfer_encoding_on_http10() {
    let input = b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(err(input), HeadError::TransferEncodingHttp10);
    assert_eq!(status(input), 400);
}

// ---------------------------------------------------------------- strictness: header syntax

#[test]
fn rejects_obs_fold() {
    assert_eq!(status(&with_headers("X-A: a\r\n b\r\n")), 400);
    assert_eq!(status(&with_headers("X-A: a\r\n\tb\r\n")), 400);
    // Whitespace before the first header line is the same trick.
    assert_eq!(status(b"GET / HTTP/1.1\r\n Host: h\r\n\r\n"), 400);
}

#[test]
fn rejects_whitespace_before_colon() {
    assert_eq!(status(&with_headers("X-A : a\r\n")), 400);
    assert_eq!(status(&with_headers("X-A\t: a\r\n")), 400);
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost : h\r\n\r\n"), 400);
}

#[test]
fn rejects_bad_header_names() {
    for h in [
        "X A: a\r\n",
        ": a\r\n",
        "X(A): a\r\n",
        "X-\u{e9}: a\r\n",
        "X-A\r\n",
        "X\0: a\r\n",
    ] {
        assert_eq!(status(&with_headers(h)), 400, "{h:?}");
    }
}

#[test]
fn rejects_control_bytes_in_values() {
    for b in (0u8..0x20)
        .filter(|&b| b != b'\t' && b != b'\r' && b != b'\n')
        .chain([0x7f])
    {
        let mut input = b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a".to_vec();
        input.push(b);
        input.extend_from_slice(b"b\r\n\r\n");
        assert_eq!(status(&input), 400, "byte {b:#x}");
    }
    // Bare CR inside a value.
    assert_eq!(
        status(b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\rb\r\n\r\n"),
        400
    );
}

#[test]
fn accepts_htab_and_obs_text_in_values() {
    let s = ok(b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\tb \xff\x80 c\r\n\r\n");
    assert_eq!(s.headers[1].1, b"a\tb \xff\x80 c");
}

#[test]
fn rejects_bare_lf() {
    for input in [
        &b"GET / HTTP/1.1\nHost: h\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: h\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\n\n",
        b"GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n",
        b"GET / HTTP/1.1\nHost: h\n\n",
        b"GET / HTTP/1.0\n\n",
        b"GET / HTTP/1.0\r\n\n",
        b"GET / HTTP/1.0\n\r\n",
    ] {
        assert_eq!(
            err(input),
            HeadError::BareLineFeed,
            "{:?}",
            String::from_utf8_lossy(input)
        );
        assert_eq!(status(input), 400);
    }
}

#[test]
fn host_rules() {
    assert_eq!(err(b"GET / HTTP/1.1\r\n\r\n"), HeadError::BadHost);
    assert_eq!(err(&with_headers("Host: h\r\n")), HeadError::BadHost);
    assert_eq!(err(&with_headers("host: other\r\n")), HeadError::BadHost);
    assert_eq!(
        err(b"GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n"),
        HeadError::BadHost
    );
    for v in ["a b", "a@b", "a/b", "a,b", "a\"b", "a?b"] {
        let input = format!("GET / HTTP/1.1\r\nHost: {v}\r\n\r\n");
        assert_eq!(err(input.as_bytes()), HeadError::BadHost, "{v:?}");
    }
    // Valid forms.
    for v in [
        "",
        "example.com",
        "example.com:8080",
        "[::1]:80",
        "127.0.0.1",
        "xn--bcher-kva.ch",
    ] {
        let input = format!("GET / HTTP/1.1\r\nHost: {v}\r\n\r\n");
        ok(input.as_bytes());
    }
    // HTTP/1.0 needs none.
    ok(b"GET / HTTP/1.0\r\n\r\n");
}

#[test]
fn too_many_headers() {
    let mut many = String::new();
    for i in 0..100 {
        many.push_str(&format!("X-{i}: v\r\n"));
    }
    // Host + 99 others = 100: fine; Host + 100 = 101: 431.
    let input = format!(
        "GET / HTTP/1.1\r\nHost: h\r\n{}\r\n",
        &many[..many.rfind("X-99").unwrap()]
    );
    assert_eq!(ok(input.as_bytes()).headers.len(), 100);
    let input = format!("GET / HTTP/1.1\r\nHost: h\r\n{many}\r\n");
    assert_eq!(err(input.as_bytes()), HeadError::TooManyHeaders);
    assert_eq!(status(input.as_bytes()), 431);

    let small = Limits {
        max_headers: 2,
        ..Limits::default()
    };
    assert!(parse_with(&with_headers("X: 1\r\n"), &small)
        .unwrap()
        .is_some());
    assert_eq!(
        parse_with(&with_headers("X: 1\r\nY: 2\r\n"), &small),
        Err(HeadError::TooManyHeaders)
    );
    // max_headers above the stack array is capped, not a panic.
    let huge = Limits {
        max_headers: 10_000,
        ..Limits::default()
    };
    assert_eq!(
        parse_with(
            format!("GET / HTTP/1.1\r\nHost: h\r\n{many}\r\n").as_bytes(),
            &huge
        ),
        Err(HeadError::TooManyHeaders)
    );
}

#[test]
fn head_too_large() {
    let limits = Limits {
        max_head_bytes: 64,
        ..Limits::default()
    };
    // Incomplete and already over the limit: 431 without waiting.
    let input = format!("GET / HTTP/1.1\r\nHost: h\r\nX: {}", "a".repeat(60));
    assert_eq!(
        parse_with(input.as_bytes(), &limits),
        Err(HeadError::HeadTooLarge)
    );
    // Complete but over the limit.
    let input = format!("GET / HTTP/1.1\r\nHost: h\r\nX: {}\r\n\r\n", "a".repeat(40));
    assert_eq!(
        parse_with(input.as_bytes(), &limits),
        Err(HeadError::HeadTooLarge)
    );
    // Exactly at the limit, followed by lots of body: fine.
    let head = format!(
        "GET / HTTP/1.1\r\nHost: h\r\nX: {}\r\n\r\n",
        "a".repeat(64 - 32)
    );
    assert_eq!(head.len(), 64);
    let input = format!("{head}{}", "b".repeat(1000));
    let (s, rest) = parse_with(input.as_bytes(), &limits).unwrap().unwrap();
    assert_eq!(
        s.raw,
        head.replace("Host", "host").replace("X:", "x:").as_bytes()
    );
    assert_eq!(rest.len(), 1000);
    assert_eq!(HeadError::HeadTooLarge.status(), 431);
}

#[test]
fn uri_too_long() {
    let limits = Limits {
        max_target_bytes: 16,
        ..Limits::default()
    };
    let long = format!("/{}", "a".repeat(16));
    // Whole head.
    let input = format!("GET {long} HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(
        parse_with(input.as_bytes(), &limits),
        Err(HeadError::UriTooLong)
    );
    // Request line still incomplete: 414 right away.
    let input = format!("GET {long}");
    assert_eq!(
        parse_with(input.as_bytes(), &limits),
        Err(HeadError::UriTooLong)
    );
    // A bad byte inside a short target is a 400, whatever follows it.
    let input = format!(
        "GET /\x01 HTTP/1.1\r\nHost: h\r\nX: {}\r\n\r\n",
        "a".repeat(40)
    );
    assert_eq!(
        parse_with(input.as_bytes(), &limits),
        Err(HeadError::BadTarget)
    );
    // Exactly at the limit is fine.
    let input = format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(15));
    assert!(parse_with(input.as_bytes(), &limits).unwrap().is_some());
    assert_eq!(HeadError::UriTooLong.status(), 414);
}

// ---------------------------------------------------------------- strictness: request line

#[test]
fn rejects_malformed_request_lines() {
    for input in [
        &b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n"[..],
        b"GET /  HTTP/1.1\r\nHost: h\r\n\r\n",
        b" GET / HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET / HTTP/1.1 \r\nHost: h\r\n\r\n",
        b"GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET /\tHTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET /a b HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET /a\x01b HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET /a\x7fb HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET /a\x00b HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET /\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET /\xff HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET /a#frag HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET\r\nHost: h\r\n\r\n",
        b"GET /\r\n\r\n",
        b"G(T / HTTP/1.1\r\nHost: h\r\n\r\n",
        b"/ HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET / HTTP/1.1\rHost: h\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    ] {
        assert_eq!(status(input), 400, "{:?}", String::from_utf8_lossy(input));
    }
}

#[test]
fn target_forms() {
    // origin-form
    let s = ok(b"GET //a/?q?r=1 HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(
        (s.path.as_slice(), s.query.as_slice()),
        (&b"//a/"[..], &b"q?r=1"[..])
    );
    let s = ok(b"GET /? HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(
        (s.path.as_slice(), s.query.as_slice()),
        (&b"/"[..], &b""[..])
    );
    // asterisk-form: OPTIONS only
    let s = ok(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(
        (s.path.as_slice(), s.query.as_slice()),
        (&b"*"[..], &b""[..])
    );
    assert_eq!(
        err(b"GET * HTTP/1.1\r\nHost: h\r\n\r\n"),
        HeadError::BadTarget
    );
    assert_eq!(
        err(b"OPTIONS *x HTTP/1.1\r\nHost: h\r\n\r\n"),
        HeadError::BadTarget
    );
    // authority-form: CONNECT only
    let s = ok(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
    assert_eq!(s.path, b"example.com:443");
    assert_eq!(
        err(b"GET example.com:443 HTTP/1.1\r\nHost: h\r\n\r\n"),
        HeadError::BadTarget
    );
    for t in [
        "/",
        "example.com",
        "example.com:",
        ":443",
        "a@b:1",
        "h:1?x",
        "h:x1",
    ] {
        let input = format!("CONNECT {t} HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(err(input.as_bytes()), HeadError::BadTarget, "{t:?}");
    }
    // absolute-form: any method
    let mut buf =
        BytesMut::from(&b"GET http://example.com:8080/a/b?c=d HTTP/1.1\r\nHost: x\r\n\r\n"[..]);
    let h = parse_request_head(&mut buf, &Limits::default())
        .unwrap()
        .unwrap();
    assert_eq!(h.bytes(h.path), b"/a/b");
    assert_eq!(h.bytes(h.query), b"c=d");
    assert_eq!(h.target_authority(), Some(&b"example.com:8080"[..]));
    let s = ok(b"POST HTTPS://example.com HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(
        (s.path.as_slice(), s.query.as_slice()),
        (&b""[..], &b""[..])
    );
    let s = ok(b"GET http://example.com?x HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(
        (s.path.as_slice(), s.query.as_slice()),
        (&b""[..], &b"x"[..])
    );
    for t in [
        "ftp://h/",
        "http:/h/",
        "http:h",
        "http:///",
        "http://u@h/",
        "http://a b/",
        "h",
        "http",
        "a:b",
    ] {
        let input = format!("GET {t} HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(status(input.as_bytes()), 400, "{t:?}");
    }
}

#[test]
fn unknown_versions() {
    for v in ["HTTP/2.0", "HTTP/1.2", "HTTP/0.9", "HTTP/3.0", "HTTP/9.9"] {
        let input = format!("GET / {v}\r\nHost: h\r\n\r\n");
        assert_eq!(err(input.as_bytes()), HeadError::UnsupportedVersion, "{v}");
        assert_eq!(status(input.as_bytes()), 505);
        // Decided as soon as the request line is complete.
        let line = format!("GET / {v}\r\n");
        assert_eq!(err(line.as_bytes()), HeadError::UnsupportedVersion, "{v}");
        assert_eq!(parse(format!("GET / {v}").as_bytes()), Ok(None), "{v}");
    }
    for v in [
        "HTTP/1.10",
        "HTTP/11.1",
        "http/1.1",
        "HTTP/1",
        "HTTP/1.",
        "HTTP/a.b",
        "HTTPS/1.1",
        "HTTP/2",
        "HTTP/1.1x",
        "FOO",
    ] {
        let input = format!("GET / {v}\r\nHost: h\r\n\r\n");
        assert_eq!(status(input.as_bytes()), 400, "{v}");
    }
    assert_eq!(status(b"GET / HTTP/2.0\n\n"), 400, "bare LF still wins");
}

#[test]
fn methods_are_case_sensitive_tokens() {
    assert_eq!(ok(&b"get / HTTP/1.1\r\nHost: h\r\n\r\n"[..]).method, b"get");
    assert_eq!(
        ok(&b"M-SEARCH / HTTP/1.1\r\nHost: h\r\n\r\n"[..]).method,
        b"M-SEARCH"
    );
}

#[test]
fn error_statuses() {
    use HeadError::*;
    let all = [
        (BadRequestLine, 400),
        (BadTarget, 400),
        (BadHeader, 400),
        (BareLineFeed, 400),
        (BadContentLength, 400),
        (BadTransferEncoding, 400),
        (TransferEncodingHttp10, 400),
        (ConflictingFraming, 400),
        (BadHost, 400),
        (HeadTooLarge, 431),
        (TooManyHeaders, 431),
        (UriTooLong, 414),
        (UnsupportedTransferCoding, 501),
        (UnsupportedVersion, 505),
    ];
    for (e, s) in all {
        assert_eq!(e.status(), s, "{e:?}");
        assert!(!e.to_string().is_empty());
    }
}

// ---------------------------------------------------------------- split invariance

/// Feed `input` one more byte at a time, parsing after each, as the engine does.
/// Returns the sequence of heads parsed and what was left in the buffer, or the
/// first error.
fn feed_bytewise(input: &[u8], limits: &Limits) -> Result<(Vec<Summary>, Vec<u8>), HeadError> {
    feed_pieces_plain(input, &bytewise_cuts(input), limits)
}

/// Like `feed_bytewise`, through a `HeadParser`, with arbitrary piece sizes.
fn feed_pieces_incremental(
    input: &[u8],
    cuts: &[usize],
    limits: &Limits,
) -> Result<(Vec<Summary>, Vec<u8>), HeadError> {
    let mut p = HeadParser::new();
    let mut buf = BytesMut::new();
    let mut heads = Vec::new();
    let mut start = 0;
    for &end in cuts.iter().chain(std::iter::once(&input.len())) {
        let end = end.clamp(start, input.len());
        buf.extend_from_slice(&input[start..end]);
        start = end;
        while let Some(h) = p.parse(&mut buf, limits)? {
            heads.push(summary(&h));
        }
    }
    // Errors inside an unfinished head may be deferred (until the buffer
    // doubles); force the verdict a later read would bring.
    p.reset();
    while let Some(h) = p.parse(&mut buf, limits)? {
        heads.push(summary(&h));
    }
    Ok((heads, buf.to_vec()))
}

/// The same pieces, parsed with `parse_request_head` after each.
fn feed_pieces_plain(
    input: &[u8],
    cuts: &[usize],
    limits: &Limits,
) -> Result<(Vec<Summary>, Vec<u8>), HeadError> {
    let mut buf = BytesMut::new();
    let mut heads = Vec::new();
    let mut start = 0;
    for &end in cuts.iter().chain(std::iter::once(&input.len())) {
        let end = end.clamp(start, input.len());
        buf.extend_from_slice(&input[start..end]);
        start = end;
        while let Some(h) = parse_request_head(&mut buf, limits)? {
            heads.push(summary(&h));
        }
    }
    Ok((heads, buf.to_vec()))
}

fn bytewise_cuts(input: &[u8]) -> Vec<usize> {
    (1..input.len()).collect()
}

/// Parse all heads of `input` from one buffer.
fn parse_all(input: &[u8], limits: &Limits) -> Result<(Vec<Summary>, Vec<u8>), HeadError> {
    let mut buf = BytesMut::from(input);
    let mut heads = Vec::new();
    while let Some(h) = parse_request_head(&mut buf, limits)? {
        heads.push(summary(&h));
    }
    Ok((heads, buf.to_vec()))
}

const VALID: &[&[u8]] = &[
    b"GET / HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET /a/b?x=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\nAccept: */*\r\nConnection: keep-alive\r\n\r\n",
    b"\r\n\r\nPOST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n",
    b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: h\r\nX-Empty:\r\nX-Ws: \t a b \t\r\n\r\n",
    b"GET http://h:1/p?q HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    b"POST /1 HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\nHEAD /2 HTTP/1.0\r\n\r\n",
];

#[test]
fn every_split_point_of_valid_heads() {
    let limits = Limits::default();
    for input in VALID {
        let whole = parse_all(input, &limits).unwrap();
        assert!(!whole.0.is_empty());
        assert_eq!(feed_bytewise(input, &limits).unwrap(), whole);
        assert_eq!(
            feed_pieces_incremental(input, &bytewise_cuts(input), &limits).unwrap(),
            whole
        );
        // First k bytes: nothing until the first head is complete, then the same head.
        let first_len = whole.0[0].raw.len()
            + input
                .iter()
                .take_while(|&&b| b == b'\r' || b == b'\n')
                .count();
        for k in 0..=input.len() {
            let r = parse(&input[..k]).unwrap();
            if k < first_len {
                assert!(
                    r.is_none(),
                    "prefix {k} of {:?}",
                    String::from_utf8_lossy(input)
                );
            } else {
                let (s, rest) = r.unwrap();
                assert_eq!(s, whole.0[0]);
                assert_eq!(rest, input[first_len..k].to_vec());
            }
            // Two pieces.
            let mut buf = BytesMut::from(&input[..k]);
            let mut heads = Vec::new();
            while let Some(h) = parse_request_head(&mut buf, &limits).unwrap() {
                heads.push(summary(&h));
            }
            buf.extend_from_slice(&input[k..]);
            while let Some(h) = parse_request_head(&mut buf, &limits).unwrap() {
                heads.push(summary(&h));
            }
            assert_eq!((heads, buf.to_vec()), whole);
        }
    }
}

/// For invalid heads, feeding byte by byte ends in the same error status as
/// parsing the whole input (no "need more" forever, no different verdict).
#[test]
fn invalid_heads_fail_the_same_when_split() {
    let cases: &[&[u8]] = &[
        b"GET / HTTP/2.0\r\nHost: h\r\n\r\n",
        b"GET / HTTP/1.2\r\n\r\n",
        b"GET / HTTX/1.1\r\n\r\n",
        b"GET / HTTP/1.1\nHost: h\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\r\n\r\n",
        b"GET /a b HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nX: \x01\r\n\r\n",
    ];
    let limits = Limits::default();
    for input in cases {
        let whole = parse_all(input, &limits).unwrap_err();
        let split = feed_bytewise(input, &limits).unwrap_err();
        assert_eq!(
            whole.status(),
            split.status(),
            "{:?}",
            String::from_utf8_lossy(input)
        );
        let inc = feed_pieces_incremental(input, &bytewise_cuts(input), &limits).unwrap_err();
        assert_eq!(
            whole.status(),
            inc.status(),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
    // Limits too: 414 and 431 come out the same however the bytes arrive.
    let small = Limits {
        max_head_bytes: 48,
        max_headers: 100,
        max_target_bytes: 12,
        ..Limits::default()
    };
    for input in [
        format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(20)),
        format!("GET / HTTP/1.1\r\nHost: h\r\nX: {}\r\n\r\n", "a".repeat(40)),
        format!(
            "GET /{} HTTP/1.1\r\nHost: h\r\nX: {}\r\n\r\n",
            "a".repeat(20),
            "b".repeat(40)
        ),
    ] {
        let whole = parse_all(input.as_bytes(), &small).unwrap_err();
        let split = feed_bytewise(input.as_bytes(), &small).unwrap_err();
        assert_eq!(whole, split, "{input:?}");
        let inc =
            feed_pieces_incremental(input.as_bytes(), &bytewise_cuts(input.as_bytes()), &small);
        assert_eq!(inc.unwrap_err(), whole, "{input:?}");
    }
}

// ---------------------------------------------------------------- properties

fn arb_limits() -> impl Strategy<Value = Limits> {
    (1usize..200, 0usize..8, 1usize..64).prop_map(|(h, n, t)| Limits {
        max_head_bytes: h,
        max_headers: n,
        max_target_bytes: t,
        ..Limits::default()
    })
}

/// A random valid request head (plus maybe a pipelined second one).
fn arb_request() -> impl Strategy<Value = Vec<u8>> {
    let method = prop::sample::select(vec![
        "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "X-CUSTOM",
    ]);
    let path = "(/[a-zA-Z0-9._~%!$&'()*+,;=:@-]{0,12}){1,3}";
    let query = prop::option::of("[a-zA-Z0-9=&%+/?._-]{0,16}");
    let name = "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}";
    let value = "[ \t]{0,2}[!-~\u{80}-\u{ff}]([ \t!-~]{0,16}[!-~])?[ \t]{0,2}";
    let headers = prop::collection::vec((name, value), 0..6);
    let v10 = any::<bool>();
    let framing = prop::sample::select(vec![
        "",
        "Content-Length: 12\r\n",
        "Transfer-Encoding: chunked\r\n",
    ]);
    let conn = prop::sample::select(vec![
        "",
        "Connection: close\r\n",
        "Connection: keep-alive\r\n",
    ]);
    let leading = 0usize..3;
    (method, path, query, headers, v10, framing, conn, leading).prop_map(
        |(m, p, q, hs, v10, fr, conn, leading)| {
            let mut out = Vec::new();
            for _ in 0..leading {
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(m.as_bytes());
            out.push(b' ');
            out.extend_from_slice(p.as_bytes());
            if let Some(q) = q {
                out.push(b'?');
                out.extend_from_slice(q.as_bytes());
            }
            out.extend_from_slice(if v10 {
                b" HTTP/1.0\r\n"
            } else {
                b" HTTP/1.1\r\n"
            });
            out.extend_from_slice(b"Host: example.com\r\n");
            for (n, v) in hs {
                let lower = n.to_ascii_lowercase();
                // Keep clear of the fields with their own rules.
                if [
                    "host",
                    "content-length",
                    "transfer-encoding",
                    "connection",
                    "expect",
                ]
                .contains(&lower.as_str())
                {
                    continue;
                }
                out.extend_from_slice(n.as_bytes());
                out.push(b':');
                // The strategy yields chars; send them as single bytes (obs-text).
                out.extend(v.chars().map(|c| c as u32 as u8));
                out.extend_from_slice(b"\r\n");
            }
            if !(v10 && fr.starts_with("Transfer")) {
                out.extend_from_slice(fr.as_bytes());
            }
            out.extend_from_slice(conn.as_bytes());
            out.extend_from_slice(b"\r\n");
            out
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(input in prop::collection::vec(any::<u8>(), 0..256), limits in arb_limits()) {
        let mut buf = BytesMut::from(&input[..]);
        let _ = parse_request_head(&mut buf, &limits);
        let _ = parse_request_head(&mut BytesMut::from(&input[..]), &Limits::default());
    }

    /// Random bytes after a plausible request-line start exercise deeper paths.
    #[test]
    fn random_tails_never_panic(
        tail in prop::collection::vec(prop::sample::select(b"GET /HTP1.0\r\n :a\t,;=x\x00\x7f\xff".to_vec()), 0..128),
        limits in arb_limits(),
    ) {
        let mut input = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
        input.extend_from_slice(&tail);
        let _ = parse_request_head(&mut BytesMut::from(&input[..]), &limits);
        let _ = parse_request_head(&mut BytesMut::from(&input[..]), &Limits::default());
    }

    #[test]
    fn valid_requests_parse_and_split_anywhere(
        a in arb_request(),
        b in arb_request(),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut input = a.clone();
        input.extend_from_slice(&b);
        let limits = Limits::default();
        let whole = parse_all(&input, &limits);
        prop_assert!(whole.is_ok(), "{:?}: {:?}", String::from_utf8_lossy(&input), whole);
        let whole = whole.unwrap();
        prop_assert_eq!(whole.0.len(), 2);
        let k = cut.index(input.len() + 1);
        let mut buf = BytesMut::from(&input[..k]);
        let mut heads = Vec::new();
        while let Some(h) = parse_request_head(&mut buf, &limits).unwrap() {
            heads.push(summary(&h));
        }
        buf.extend_from_slice(&input[k..]);
        while let Some(h) = parse_request_head(&mut buf, &limits).unwrap() {
            heads.push(summary(&h));
        }
        prop_assert_eq!((heads, buf.to_vec()), whole);
    }

    /// `HeadParser` fed in random pieces agrees with one-piece parsing.
    #[test]
    fn head_parser_agrees(
        a in arb_request(),
        b in arb_request(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let mut input = a;
        input.extend_from_slice(&b);
        let limits = Limits::default();
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(input.len() + 1)).collect();
        cuts.sort_unstable();
        prop_assert_eq!(feed_pieces_incremental(&input, &cuts, &limits), parse_all(&input, &limits));
    }

    /// On arbitrary bytes (valid or not) `HeadParser` reaches the same verdict
    /// as `parse_request_head` called after each of the same pieces.
    #[test]
    fn head_parser_same_verdict_on_noise(
        tail in prop::collection::vec(prop::sample::select(b"GET /HTP1.0\r\n :a\t,;=x\x00".to_vec()), 0..160),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        limits in arb_limits(),
    ) {
        let mut input = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
        input.extend_from_slice(&tail);
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(input.len() + 1)).collect();
        cuts.sort_unstable();
        let whole = parse_all(&input, &limits).map_err(|e| e.status());
        let inc = feed_pieces_incremental(&input, &cuts, &limits).map_err(|e| e.status());
        let plain = feed_pieces_plain(&input, &cuts, &limits).map_err(|e| e.status());
        prop_assert_eq!(&inc, &plain);
        if let (Ok(w), Ok(i)) = (&whole, &inc) {
            prop_assert_eq!(w, i);
        }
    }

    /// Any prefix of any input is either "need more", or the same verdict (same
    /// head, or the same error status) as the complete input would give if it
    /// is a valid head; never a different head.
    #[test]
    fn prefixes_never_disagree_with_whole(a in arb_request(), cut in any::<prop::sample::Index>()) {
        let whole = parse(&a).unwrap().unwrap().0;
        let k = cut.index(a.len() + 1);
        match parse(&a[..k]).unwrap() {
            None => prop_assert!(k < a.len()),
            Some((s, _)) => prop_assert_eq!(s, whole),
        }
    }
}

#[test]
fn header_names_keep_their_case_when_asked() {
    let limits = Limits {
        keep_header_case: true,
        ..Limits::default()
    };
    let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\nHost: h\r\nX-Amz-Date: 1\r\n\r\n"[..]);
    let head = parse_request_head(&mut buf, &limits).unwrap().unwrap();
    let (n, _) = head.headers[1];
    assert_eq!(head.bytes(n), b"x-amz-date");
    assert_eq!(head.name_as_sent(n), b"X-Amz-Date");
    let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\nHost: h\r\nX-Amz-Date: 1\r\n\r\n"[..]);
    let head = parse_request_head(&mut buf, &Limits::default())
        .unwrap()
        .unwrap();
    assert!(head.as_sent.is_none());
    assert_eq!(head.name_as_sent(head.headers[1].0), b"x-amz-date");
}
