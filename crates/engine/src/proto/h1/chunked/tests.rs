use super::*;
use proptest::prelude::*;

/// Decode `input` in one call.
fn decode_all(input: &[u8]) -> Result<(Vec<u8>, Decoded), ChunkedError> {
    let mut d = ChunkedDecoder::new();
    let mut out = Vec::new();
    let r = d.decode(input, &mut out)?;
    Ok((out, r))
}

/// Decode `input` delivered in pieces cut at `cuts`, as a connection would:
/// each call sees only the new bytes (the decoder consumes all it is given
/// until done). Returns payload, total consumed and done.
fn decode_pieces(input: &[u8], cuts: &[usize]) -> Result<(Vec<u8>, usize, bool), ChunkedError> {
    let mut d = ChunkedDecoder::new();
    let mut out = Vec::new();
    let mut consumed = 0;
    let mut done = false;
    let mut start = 0;
    for &end in cuts.iter().chain(std::iter::once(&input.len())) {
        let end = end.clamp(start, input.len());
        let r = d.decode(&input[start..end], &mut out)?;
        consumed += r.consumed;
        if r.done {
            done = true;
            break;
        }
        assert_eq!(r.consumed, end - start, "not done: every byte is used");
        start = end;
    }
    Ok((out, consumed, done))
}

fn err(input: &[u8]) -> ChunkedError {
    match decode_all(input) {
        Err(e) => e,
        Ok(r) => panic!(
            "expected an error from {:?}, got {r:?}",
            String::from_utf8_lossy(input)
        ),
    }
}

#[test]
fn simple_body() {
    let input = b"4\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\n\r\n";
    let (out, r) = decode_all(input).unwrap();
    assert_eq!(out, b"Wikipedia in\r\n\r\nchunks.");
    assert_eq!(
        r,
        Decoded {
            consumed: input.len(),
            done: true
        }
    );
}

#[test]
fn empty_body() {
    let (out, r) = decode_all(b"0\r\n\r\n").unwrap();
    assert!(out.is_empty());
    assert_eq!(
        r,
        Decoded {
            consumed: 5,
            done: true
        }
    );
}

#[test]
fn stops_at_end_of_body() {
    let input = b"3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
    let (out, r) = decode_all(input).unwrap();
    assert_eq!(out, b"abc");
    assert_eq!(
        r,
        Decoded {
            consumed: 13,
            done: true
        }
    );
    // Once done, nothing more is consumed.
    let mut d = ChunkedDecoder::new();
    let mut out = Vec::new();
    d.decode(b"0\r\n\r\n", &mut out).unwrap();
    assert!(d.is_done());
    assert_eq!(
        d.decode(b"more", &mut out).unwrap(),
        Decoded {
            consumed: 0,
            done: true
        }
    );
}

#[test]
fn need_more() {
    let mut d = ChunkedDecoder::new();
    let mut out = Vec::new();
    assert_eq!(
        d.decode(b"", &mut out).unwrap(),
        Decoded {
            consumed: 0,
            done: false
        }
    );
    assert_eq!(
        d.decode(b"5\r\nab", &mut out).unwrap(),
        Decoded {
            consumed: 5,
            done: false
        }
    );
    assert_eq!(out, b"ab");
    assert_eq!(
        d.decode(b"cde\r\n0\r\n", &mut out).unwrap(),
        Decoded {
            consumed: 8,
            done: false
        }
    );
    assert_eq!(
        d.decode(b"\r\n", &mut out).unwrap(),
        Decoded {
            consumed: 2,
            done: true
        }
    );
    assert_eq!(out, b"abcde");
}

#[test]
fn sizes() {
    let (out, _) = decode_all(b"000a\r\n0123456789\r\n0\r\n\r\n").unwrap();
    assert_eq!(out.len(), 10);
    let (out, _) = decode_all(b"A\r\n0123456789\r\n00\r\n\r\n").unwrap();
    assert_eq!(out.len(), 10);
    // The largest size parses (the data just never ends here).
    let mut d = ChunkedDecoder::new();
    let r = d
        .decode(b"ffffffffffffffff\r\nabc", &mut Vec::new())
        .unwrap();
    assert_eq!(
        r,
        Decoded {
            consumed: 21,
            done: false
        }
    );
    // Leading zeros do not count towards overflow.
    let mut d = ChunkedDecoder::new();
    assert!(
        d.decode(b"0000000000000000000001\r\nx\r\n0\r\n\r\n", &mut Vec::new())
            .unwrap()
            .done
    );
}

#[test]
fn extensions_are_ignored() {
    for input in [
        &b"3;foo=bar\r\nabc\r\n0\r\n\r\n"[..],
        b"3;foo\r\nabc\r\n0;last\r\n\r\n",
        b"3 ;foo=bar\r\nabc\r\n0\r\n\r\n",
        b"3\t; a = \"b c;d\" ; e\r\nabc\r\n0\r\n\r\n",
        b"3;x=\xff\xfe\r\nabc\r\n0\r\n\r\n",
    ] {
        let (out, r) = decode_all(input).unwrap();
        assert_eq!(out, b"abc", "{:?}", String::from_utf8_lossy(input));
        assert!(r.done);
    }
}

#[test]
fn trailers_are_consumed() {
    let input = b"3\r\nabc\r\n0\r\nX-Sum: 1234\r\nX-Empty:\r\nX-Ws: \ta b\t\r\n\r\nNEXT";
    let (out, r) = decode_all(input).unwrap();
    assert_eq!(out, b"abc");
    assert_eq!(
        r,
        Decoded {
            consumed: input.len() - 4,
            done: true
        }
    );
}

#[test]
fn rejects_data_not_followed_by_crlf() {
    assert_eq!(err(b"3\r\nabcd\r\n0\r\n\r\n"), ChunkedError::BadLineEnd);
    assert_eq!(err(b"3\r\nabc\r\r0\r\n\r\n"), ChunkedError::BadLineEnd);
    assert_eq!(err(b"3\r\nabc0\r\n\r\n"), ChunkedError::BadLineEnd);
}

#[test]
fn rejects_lf_only_line_ends() {
    assert_eq!(err(b"3\nabc\r\n0\r\n\r\n"), ChunkedError::BadLineEnd);
    assert_eq!(err(b"3\r\nabc\n0\r\n\r\n"), ChunkedError::BadLineEnd);
    assert_eq!(err(b"3\r\nabc\r\n0\n\r\n"), ChunkedError::BadLineEnd);
    assert_eq!(err(b"3\r\nabc\r\n0\r\n\n"), ChunkedError::BadLineEnd);
    assert_eq!(err(b"0\r\nX: y\n\r\n"), ChunkedError::BadLineEnd);
    assert_eq!(err(b"3;ext\nabc\r\n0\r\n\r\n"), ChunkedError::BadExtension);
    assert_eq!(err(b"3\rabc"), ChunkedError::BadLineEnd);
}

#[test]
fn rejects_bad_sizes() {
    for input in [
        &b"0x3\r\nabc\r\n0\r\n\r\n"[..],
        b"x\r\n",
        b"g\r\n",
        b"\r\n",
        b"-1\r\n",
        b"+1\r\n",
        b" 3\r\nabc\r\n",
        b"3 \r\nabc\r\n0\r\n\r\n",
        b"3 4\r\n",
        b";ext\r\n",
        b"3,\r\n",
    ] {
        assert_eq!(
            err(input),
            ChunkedError::BadSize,
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn rejects_size_overflow() {
    assert_eq!(err(b"10000000000000000\r\n"), ChunkedError::SizeOverflow);
    assert_eq!(err(b"fffffffffffffffff\r\n"), ChunkedError::SizeOverflow);
    assert_eq!(err(b"123456789abcdef01\r\n"), ChunkedError::SizeOverflow);
}

#[test]
fn rejects_control_bytes_in_extensions() {
    for b in (0u8..0x20)
        .filter(|&b| b != b'\t' && b != b'\r')
        .chain([0x7f])
    {
        let mut input = b"3;a=".to_vec();
        input.push(b);
        input.extend_from_slice(b"\r\nabc\r\n0\r\n\r\n");
        assert_eq!(err(&input), ChunkedError::BadExtension, "byte {b:#x}");
    }
    // A bare CR inside an extension is a broken line end.
    assert_eq!(err(b"3;a\rb\r\nabc\r\n0\r\n\r\n"), ChunkedError::BadLineEnd);
}

#[test]
fn rejects_bad_trailers() {
    for input in [
        &b"0\r\nX-Foo\r\n\r\n"[..],
        b"0\r\nX-Foo: a\r\n b\r\n\r\n",
        b"0\r\nX-Foo: a\r\n\tb\r\n\r\n",
        b"0\r\n X-Foo: a\r\n\r\n",
        b"0\r\nX-Foo : a\r\n\r\n",
        b"0\r\n: a\r\n\r\n",
        b"0\r\nX Foo: a\r\n\r\n",
        b"0\r\nX-Foo: a\x01b\r\n\r\n",
        b"0\r\nX-Foo: a\x00\r\n\r\n",
        b"0\r\nX-Foo: a\x7f\r\n\r\n",
    ] {
        assert_eq!(
            err(input),
            ChunkedError::BadTrailer,
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
    assert_eq!(err(b"0\r\nX: a\rb\r\n\r\n"), ChunkedError::BadLineEnd);
    assert_eq!(err(b"0\r\n\rX"), ChunkedError::BadLineEnd);
}

#[test]
fn rejects_oversized_extension_line() {
    let mut input = b"1;".to_vec();
    input.extend(std::iter::repeat_n(b'a', DEFAULT_MAX_SIZE_LINE));
    input.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
    assert_eq!(err(&input), ChunkedError::ExtensionTooLong);
    // Just under the cap is fine (digit + ';' + ext + CR within the line).
    let mut input = b"1;".to_vec();
    input.extend(std::iter::repeat_n(b'a', DEFAULT_MAX_SIZE_LINE - 3));
    input.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
    assert!(decode_all(&input).unwrap().1.done);
    // Endless leading zeros are bounded too.
    let zeros = vec![b'0'; DEFAULT_MAX_SIZE_LINE + 1];
    assert_eq!(err(&zeros), ChunkedError::ExtensionTooLong);
}

#[test]
fn rejects_extension_flood() {
    // Many 1-byte chunks each dragging 1 KiB of extensions: refused once the
    // extensions outweigh the payload by the slack.
    let mut input = Vec::new();
    for _ in 0..40 {
        input.extend_from_slice(b"1;");
        input.extend(std::iter::repeat_n(b'e', 1000));
        input.extend_from_slice(b"\r\nx\r\n");
    }
    assert_eq!(err(&input), ChunkedError::ExtensionTooLong);
    // Big chunks with modest extensions (AWS-signature style) are fine.
    let mut input = Vec::new();
    for _ in 0..40 {
        input.extend_from_slice(b"400;chunk-signature=");
        input.extend(std::iter::repeat_n(b'f', 64));
        input.extend_from_slice(b"\r\n");
        input.extend(std::iter::repeat_n(b'd', 0x400));
        input.extend_from_slice(b"\r\n");
    }
    input.extend_from_slice(b"0\r\n\r\n");
    assert_eq!(decode_all(&input).unwrap().0.len(), 40 * 0x400);
}

#[test]
fn rejects_oversized_trailers() {
    let mut input = b"0\r\n".to_vec();
    while input.len() < DEFAULT_MAX_TRAILER_BYTES + 100 {
        input.extend_from_slice(b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    input.extend_from_slice(b"\r\n");
    assert_eq!(err(&input), ChunkedError::TrailersTooLarge);
    // One long trailer line is counted as it streams, not buffered.
    let mut d = ChunkedDecoder::with_limits(64, 32);
    let mut out = Vec::new();
    assert!(d
        .decode(b"0\r\nX: 0123456789012345678901", &mut out)
        .is_ok());
    assert_eq!(
        d.decode(b"23456789", &mut out),
        Err(ChunkedError::TrailersTooLarge)
    );
}

#[test]
fn errors_are_sticky() {
    let mut d = ChunkedDecoder::new();
    let mut out = Vec::new();
    assert_eq!(d.decode(b"z", &mut out), Err(ChunkedError::BadSize));
    assert_eq!(d.decode(b"0\r\n\r\n", &mut out), Err(ChunkedError::BadSize));
    assert_eq!(d.decode(b"", &mut out), Err(ChunkedError::BadSize));
}

const BODIES: &[&[u8]] = &[
    b"4\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\n\r\n",
    b"0\r\n\r\n",
    b"1;a=b;c\r\nx\r\n10\r\n0123456789abcdef\r\n0;z\r\nT1: v\r\nT2:\r\n\r\n",
    b"3\r\nabc\r\n0\r\n\r\nPIPELINED",
    b"0003 \t;e\r\nabc\r\n000\r\nX: \t a \t\r\n\r\n",
];

#[test]
fn every_split_point_gives_the_same_result() {
    for input in BODIES {
        let (want, r) = decode_all(input).unwrap();
        assert!(r.done);
        for k in 0..=input.len() {
            let got = decode_pieces(input, &[k]).unwrap();
            assert_eq!(got, (want.clone(), r.consumed, true), "split at {k}");
        }
        // And one byte per call.
        let cuts: Vec<usize> = (1..input.len()).collect();
        assert_eq!(
            decode_pieces(input, &cuts).unwrap(),
            (want.clone(), r.consumed, true)
        );
    }
}

#[test]
fn every_split_point_of_invalid_bodies_gives_the_same_error() {
    for input in [
        &b"4\r\nWikiX\r\n0\r\n\r\n"[..],
        b"3\r\nabc\r\n0x1\r\n",
        b"3\r\nabc\r\n0\r\nX : y\r\n\r\n",
        b"3;a\x01\r\nabc\r\n",
        b"10000000000000000\r\n",
    ] {
        let want = err(input);
        for k in 0..=input.len() {
            assert_eq!(decode_pieces(input, &[k]), Err(want), "split at {k}");
        }
    }
}

/// Chunk-encode `chunks` (with optional extensions and trailers) as a client would.
fn encode(chunks: &[Vec<u8>], ext: bool, trailers: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in chunks.iter().filter(|c| !c.is_empty()) {
        out.extend_from_slice(format!("{:x}", c.len()).as_bytes());
        if ext {
            out.extend_from_slice(b" ; name=\"v;x\"");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n");
    for (n, v) in trailers {
        out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(
        input in prop::collection::vec(any::<u8>(), 0..256),
        cuts in prop::collection::vec(0usize..256, 0..4),
    ) {
        let mut cuts = cuts;
        cuts.sort_unstable();
        let _ = decode_pieces(&input, &cuts);
    }

    /// Bytes drawn from the grammar's alphabet reach deeper states than noise.
    #[test]
    fn grammar_noise_never_panics(
        input in prop::collection::vec(prop::sample::select(b"0123afAFxX;= \t\r\n:abc\"\x00\x7f\xff".to_vec()), 0..256),
        cut in 0usize..256,
    ) {
        let whole = decode_all(&input).map(|(o, r)| (o, r.consumed, r.done));
        let split = decode_pieces(&input, &[cut]);
        // Errors and results do not depend on where the input was cut.
        match (&whole, &split) {
            (Ok((o, c, true)), Ok(s)) => prop_assert_eq!(s, &(o.clone(), *c, true)),
            (Ok((o, _, false)), Ok((so, _, sd))) => { prop_assert_eq!(so, o); prop_assert!(!sd); }
            (Err(a), Err(b)) => prop_assert_eq!(a, b),
            _ => prop_assert!(false, "whole {:?} vs split {:?}", whole, split),
        }
    }

    #[test]
    fn valid_bodies_decode_at_any_split(
        chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..6),
        ext in any::<bool>(),
        trailers in prop::collection::vec(("[A-Za-z-]{1,8}", "[ -~]{0,10}"), 0..3),
        tail in prop::collection::vec(any::<u8>(), 0..8),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
    ) {
        let trailers: Vec<(String, String)> = trailers.into_iter().map(|(n, v)| (n, v.trim().to_string())).collect();
        let body = encode(&chunks, ext, &trailers);
        let mut input = body.clone();
        input.extend_from_slice(&tail);
        let payload: Vec<u8> = chunks.concat();
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(input.len() + 1)).collect();
        cuts.sort_unstable();
        let got = decode_pieces(&input, &cuts).unwrap();
        prop_assert_eq!(got, (payload, body.len(), true));
    }
}
