//! An HTTP/2 request as the bridge reads requests: a [`RequestHead`] of
//! version [`Version::Http2`] whose spans point into one buffer holding
//! the method, the target and the header fields; and the other way, an
//! HTTP/1.1 `Upgrade: h2c` request as the HEADERS frame of stream 1.

use bytes::Bytes;

use crate::proto::h1::{BodyFraming, RequestHead, Span, Version};

fn span(raw: &mut Vec<u8>, bytes: &[u8]) -> Span {
    let start = raw.len() as u32;
    raw.extend_from_slice(bytes);
    Span {
        start,
        end: raw.len() as u32,
    }
}

/// The head the bridge builds the scope from: `:method`, `:path` (split
/// into path and query), the header fields in order, `:authority` as a
/// `host` field first when the request has none, and the `cookie` fields
/// joined into one (RFC 9113 §8.2.3).
pub fn build_head<B>(req: &http::Request<B>) -> RequestHead {
    let mut raw = Vec::with_capacity(256);
    let method = span(&mut raw, req.method().as_str().as_bytes());
    let uri = req.uri();
    let target_bytes: &[u8] = match uri.path_and_query() {
        Some(pq) if req.method() != http::Method::CONNECT => pq.as_str().as_bytes(),
        _ => uri.authority().map_or(b"", |a| a.as_str().as_bytes()),
    };
    let target = span(&mut raw, target_bytes);
    let (path, query) = match target_bytes.iter().position(|&b| b == b'?') {
        Some(q) => (
            Span {
                start: target.start,
                end: target.start + q as u32,
            },
            Span {
                start: target.start + q as u32 + 1,
                end: target.end,
            },
        ),
        None => (
            target,
            Span {
                start: target.end,
                end: target.end,
            },
        ),
    };
    let mut headers = Vec::with_capacity(req.headers().len() + 1);
    if !req.headers().contains_key(http::header::HOST) {
        if let Some(a) = uri.authority() {
            let n = span(&mut raw, b"host");
            let v = span(&mut raw, a.as_str().as_bytes());
            headers.push((n, v));
        }
    }
    let mut cookie: Option<Vec<u8>> = None;
    for (name, value) in req.headers() {
        if name == http::header::COOKIE {
            match cookie.as_mut() {
                Some(c) => {
                    c.extend_from_slice(b"; ");
                    c.extend_from_slice(value.as_bytes());
                }
                None => cookie = Some(value.as_bytes().to_vec()),
            }
            continue;
        }
        let n = span(&mut raw, name.as_str().as_bytes());
        let v = span(&mut raw, value.as_bytes());
        headers.push((n, v));
    }
    if let Some(c) = cookie {
        let n = span(&mut raw, b"cookie");
        let v = span(&mut raw, &c);
        headers.push((n, v));
    }
    let framing = match req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        Some(0) => BodyFraming::Empty,
        Some(n) => BodyFraming::Length(n),
        None => BodyFraming::Chunked,
    };
    RequestHead {
        raw: Bytes::from(raw),
        method,
        target,
        path,
        query,
        version: Version::Http2,
        headers,
        framing,
        keep_alive: true,
        expect_continue: false,
        // HTTP/2 field names are lowercase on the wire (RFC 9113 §8.2.1).
        as_sent: None,
    }
}

/// An HPACK integer with an `n`-bit prefix (RFC 7541 §5.1), first byte
/// flags `first`.
fn hpack_int(out: &mut Vec<u8>, first: u8, n: u32, mut v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

/// A literal field without indexing, new name (RFC 7541 §6.2.2): it
/// leaves the decoder's dynamic table as it is, so splicing it into the
/// client's byte stream cannot disturb the client's own HPACK state.
fn hpack_literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0);
    hpack_int(out, 0, 7, name.len());
    out.extend_from_slice(name);
    hpack_int(out, 0, 7, value.len());
    out.extend_from_slice(value);
}

/// Request fields that do not exist in HTTP/2 (RFC 9113 §8.2.2), or that
/// only served the upgrade.
fn hop_by_hop(name: &[u8]) -> bool {
    matches!(
        name,
        b"connection"
            | b"upgrade"
            | b"http2-settings"
            | b"keep-alive"
            | b"proxy-connection"
            | b"transfer-encoding"
            | b"te"
            | b"host"
    )
}

/// The HEADERS frame (END_HEADERS | END_STREAM, stream 1) that stands for
/// the `Upgrade: h2c` request `head` (which has no body). None if its
/// block would not fit the smallest frame size a peer must accept.
pub fn upgrade_frame(head: &RequestHead) -> Option<Vec<u8>> {
    let mut block = Vec::with_capacity(head.raw.len() + 64);
    hpack_literal(&mut block, b":method", head.method());
    hpack_literal(&mut block, b":scheme", b"http");
    hpack_literal(&mut block, b":path", head.bytes(head.target));
    if let Some(host) = head.header(b"host") {
        hpack_literal(&mut block, b":authority", host);
    }
    for (n, v) in &head.headers {
        let name = head.bytes(*n);
        if hop_by_hop(name) {
            continue;
        }
        hpack_literal(&mut block, name, head.bytes(*v));
    }
    if block.len() > 16_384 {
        return None;
    }
    let len = block.len();
    let mut frame = Vec::with_capacity(9 + len);
    frame.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8]);
    // HEADERS, END_STREAM | END_HEADERS, stream 1.
    frame.extend_from_slice(&[0x1, 0x1 | 0x4, 0, 0, 0, 1]);
    frame.extend_from_slice(&block);
    Some(frame)
}
