//! Request-head parsing on top of httparse, with the RFC 9110/9112 strictness
//! httparse leaves to its caller (framing, Host, target form, line endings).
//!
//! Line endings: the head must use CRLF. httparse accepts a bare LF; we refuse
//! it (400, `HeadError::BareLineFeed`) because a proxy in front that does not
//! treat LF as a line end would see different header boundaries than we do
//! (request smuggling). The chunked decoder is equally strict.

use std::mem::MaybeUninit;

use bytes::{Buf, Bytes, BytesMut};

use super::error::HeadError;

/// Size of the stack array handed to httparse; `Limits::max_headers` is capped to it.
const HEADER_SLOTS: usize = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
    /// Never parsed here: the HTTP/2 driver builds heads of this version
    /// for its streams, so the bridge serves them as it serves HTTP/1.
    Http2,
}

/// How the request body is delimited (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body (no Content-Length / Transfer-Encoding, or `Content-Length: 0`).
    Empty,
    /// Exactly this many bytes follow the head; always > 0.
    Length(u64),
    /// `Transfer-Encoding: chunked`; decode with [`super::ChunkedDecoder`].
    Chunked,
}

/// Byte range inside `RequestHead::raw`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    #[inline]
    fn new(start: usize, end: usize) -> Span {
        // Heads are capped below u32::MAX bytes (see `effective_max_head`).
        Span {
            start: start as u32,
            end: end as u32,
        }
    }

    #[inline]
    pub fn len(&self) -> usize {
        (self.end - self.start) as usize
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    #[inline]
    fn range(&self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

#[derive(Clone, Debug)]
pub struct Limits {
    /// Whole head, request line to the final CRLF CRLF (431 beyond).
    pub max_head_bytes: usize,
    /// Header field lines (431 beyond); capped to 100.
    pub max_headers: usize,
    /// Request target (414 beyond).
    pub max_target_bytes: usize,
    /// Keep a copy of the head with header names as the client sent them
    /// (`--raw-header-names`); off, nothing is copied.
    pub keep_header_case: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_bytes: 64 * 1024,
            max_headers: 100,
            max_target_bytes: 8 * 1024,
            keep_header_case: false,
        }
    }
}

#[derive(Clone, Debug)]
pub struct RequestHead {
    /// Exactly the head bytes (request line .. final CRLF CRLF), header names lower-cased.
    pub raw: Bytes,
    pub method: Span,
    /// The raw request-target.
    pub target: Span,
    /// Path part of the target, before '?'. For absolute-form the path after the
    /// authority (may be EMPTY, e.g. `http://h?x`: treat as "/"); `*` for
    /// asterisk-form; the whole target for CONNECT (authority-form).
    pub path: Span,
    /// After '?', without it; empty if none.
    pub query: Span,
    pub version: Version,
    /// (lower-cased name, value with OWS trimmed), arrival order, repeats kept.
    pub headers: Vec<(Span, Span)>,
    pub framing: BodyFraming,
    /// Client's wish (RFC 9112 §9.3).
    pub keep_alive: bool,
    /// The head as received, names in their case (`Limits::keep_header_case`).
    /// Boxed: one word, so the head moves as cheaply as without it.
    pub as_sent: Option<Box<Bytes>>,
    /// `Expect: 100-continue` on an HTTP/1.1 request that has a body.
    pub expect_continue: bool,
}

impl RequestHead {
    #[inline]
    pub fn bytes(&self, s: Span) -> &[u8] {
        self.raw.get(s.range()).unwrap_or_default()
    }

    /// A header name's bytes as the client sent them (lower-cased unless
    /// the head was parsed with `Limits::keep_header_case`).
    #[inline]
    pub fn name_as_sent(&self, s: Span) -> &[u8] {
        match &self.as_sent {
            Some(b) => b.get(s.range()).unwrap_or_default(),
            None => self.bytes(s),
        }
    }

    #[inline]
    pub fn method(&self) -> &[u8] {
        self.bytes(self.method)
    }

    #[inline]
    pub fn is_head(&self) -> bool {
        self.method() == b"HEAD"
    }

    /// Value of the first header called `name` (give it lower-case).
    pub fn header(&self, name: &[u8]) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| self.bytes(*n) == name)
            .map(|(_, v)| self.bytes(*v))
    }

    /// Authority of an absolute-form target (`http://host:port/...`), which
    /// RFC 9112 §3.2.2 says takes precedence over the Host header.
    pub fn target_authority(&self) -> Option<&[u8]> {
        let t = self.bytes(self.target);
        if t.first() == Some(&b'/') || t == b"*" || self.method() == b"CONNECT" {
            return None;
        }
        let after = t.windows(3).position(|w| w == b"://")? + 3;
        let rest = &t[after..];
        let end = rest
            .iter()
            .position(|&b| b == b'/' || b == b'?')
            .unwrap_or(rest.len());
        Some(&rest[..end])
    }
}

/// What the httparse pass found; offsets are relative to the request line start.
struct Scanned {
    /// Leading empty lines (CRLF) before the request line.
    skip: usize,
    /// Head length from the request line to the final CRLF CRLF.
    len: usize,
    method: Span,
    target: Span,
    version: Version,
    headers: Vec<(Span, Span)>,
}

/// Parse one request head from the front of `buf`.
///
/// `Ok(None)`: need more bytes. Limits are enforced early: 431 once `buf` holds
/// more than `max_head_bytes` without a complete head, 414 once the target alone
/// exceeds `max_target_bytes`. On success the head is split off `buf` (no copy),
/// leaving the body / next pipelined request at its front.
pub fn parse_request_head(
    buf: &mut BytesMut,
    limits: &Limits,
) -> Result<Option<RequestHead>, HeadError> {
    if buf.is_empty() {
        return Ok(None);
    }
    let scanned = match scan(buf, limits)? {
        Some(s) => s,
        None => return Ok(None),
    };
    let Scanned {
        skip,
        len,
        method,
        target,
        version,
        headers,
    } = scanned;

    let head = &mut buf[skip..skip + len];
    let as_sent = limits
        .keep_header_case
        .then(|| Box::new(Bytes::copy_from_slice(head)));
    let (path, query) = split_target(head, method, target)?;
    let facts = classify_headers(head, &headers)?;

    if version == Version::Http11 && facts.host_count == 0 {
        return Err(HeadError::BadHost);
    }
    let framing = match (facts.te, facts.content_length) {
        (Some(_), _) if version == Version::Http10 => {
            return Err(HeadError::TransferEncodingHttp10)
        }
        (Some(_), Some(_)) => return Err(HeadError::ConflictingFraming),
        (Some(te), None) => te.framing()?,
        (None, Some(0)) | (None, None) => BodyFraming::Empty,
        (None, Some(n)) => BodyFraming::Length(n),
    };
    let keep_alive = match version {
        Version::Http11 => !facts.conn_close,
        Version::Http10 => facts.conn_keep_alive && !facts.conn_close,
        Version::Http2 => true,
    };
    // A 1.0 client cannot understand 100 (RFC 9110 §10.1.1); with no body there
    // is nothing to wait for.
    let expect_continue =
        facts.expect_continue && version == Version::Http11 && framing != BodyFraming::Empty;

    buf.advance(skip);
    let raw = buf.split_to(len).freeze();
    Ok(Some(RequestHead {
        raw,
        method,
        target,
        path,
        query,
        version,
        headers,
        framing,
        keep_alive,
        expect_continue,
        as_sent,
    }))
}

/// Per-connection front end to [`parse_request_head`] that keeps a client
/// which dribbles a large head in tiny pieces from costing quadratic CPU.
///
/// `parse_request_head` re-parses the whole buffer on every call: a 60 KB head
/// sent one byte per segment costs ~0.3 s of CPU. `HeadParser` runs the full
/// parse only when it can change the answer soon: on the first look at a new
/// head, when the new bytes contain a blank line (LF [CR] LF; a head can only
/// end there), when the buffer has doubled since the last full parse, or when
/// a limit is crossed. Otherwise it answers "need more" after scanning just
/// the new bytes. Heads and final verdicts are the same as with
/// `parse_request_head`; only errors found mid-head may come a little later
/// (before the buffer doubles). Between calls only append to `buf`; call
/// [`HeadParser::reset`] if it is changed in any other way.
#[derive(Debug, Default, Clone)]
pub struct HeadParser {
    /// Bytes of `buf` already searched for a blank line (0: fresh head).
    seen: usize,
    /// Buffer length that triggers the next full parse.
    next_full: usize,
}

impl HeadParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Forget what was seen (the buffer was changed by other means than appending).
    pub fn reset(&mut self) {
        self.seen = 0;
        self.next_full = 0;
    }

    /// Same contract as [`parse_request_head`].
    pub fn parse(
        &mut self,
        buf: &mut BytesMut,
        limits: &Limits,
    ) -> Result<Option<RequestHead>, HeadError> {
        let len = buf.len();
        if len < self.seen {
            self.reset();
        }
        let full = self.seen == 0
            || len >= self.next_full
            || len > effective_max_head(limits)
            || (self.seen <= limits.max_target_bytes && len > limits.max_target_bytes)
            || has_blank_line(&buf[self.seen.saturating_sub(2)..]);
        if !full {
            self.seen = len;
            return Ok(None);
        }
        let r = parse_request_head(buf, limits);
        if let Ok(None) = r {
            self.seen = len;
            self.next_full = len.saturating_mul(2).max(len + 512);
        } else {
            self.reset();
        }
        r
    }
}

/// Is there an LF followed by LF or CRLF (where a head may end)?
fn has_blank_line(s: &[u8]) -> bool {
    let mut i = 0;
    while let Some(p) = s[i..].iter().position(|&b| b == b'\n') {
        let at = i + p + 1;
        match s.get(at..) {
            Some([b'\n', ..]) | Some([b'\r', b'\n', ..]) => return true,
            // A trailing CR may become CRLF: let the next call re-check it.
            _ => i = at,
        }
    }
    false
}

fn effective_max_head(limits: &Limits) -> usize {
    // Spans are u32; keep every head offset representable.
    limits.max_head_bytes.min(u32::MAX as usize - 1)
}

/// Run httparse over `data` and translate its result.
fn scan(data: &[u8], limits: &Limits) -> Result<Option<Scanned>, HeadError> {
    let max_head = effective_max_head(limits);
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; HEADER_SLOTS];
    let n_slots = limits.max_headers.min(HEADER_SLOTS);
    let mut req = httparse::Request::new(&mut []);
    let base = data.as_ptr() as usize;
    // httparse hands out sub-slices of `data`; their offset is pointer arithmetic.
    let off = |p: *const u8| p as usize - base;

    let status = req.parse_with_uninit_headers(data, &mut slots[..n_slots]);

    // Where the target starts / how long it is, as far as parsed (414 check).
    let target_start = req.method.map(|m| off(m.as_ptr()) + m.len() + 1);
    let target_len = match (req.path, target_start) {
        (Some(p), _) => Some(p.len()),
        // Unfinished or refused target: count the target bytes that arrived
        // before the first byte that cannot be part of it.
        (None, Some(ts)) => Some(
            data.get(ts..)
                .unwrap_or_default()
                .iter()
                .take_while(|&&b| b > b' ' && b != 0x7f)
                .count(),
        ),
        (None, None) => None,
    };
    let too_long_uri = target_len.is_some_and(|l| l > limits.max_target_bytes);

    let n = match status {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if too_long_uri {
                return Err(HeadError::UriTooLong);
            }
            if data.len() > max_head {
                return Err(HeadError::HeadTooLarge);
            }
            return Ok(None);
        }
        Err(e) => {
            if too_long_uri {
                return Err(HeadError::UriTooLong);
            }
            return match e {
                httparse::Error::Version => classify_bad_version(data, &req, off, max_head),
                httparse::Error::TooManyHeaders => Err(HeadError::TooManyHeaders),
                httparse::Error::HeaderName | httparse::Error::HeaderValue => {
                    Err(HeadError::BadHeader)
                }
                httparse::Error::Token if req.method.is_some() => Err(HeadError::BadTarget),
                _ => Err(HeadError::BadRequestLine),
            };
        }
    };

    let (Some(method), Some(path), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(HeadError::BadRequestLine);
    };
    let skip = off(method.as_ptr());

    // Report whichever limit a byte-by-byte feed would have hit first, so the
    // answer does not depend on how the head was split across reads.
    if too_long_uri {
        let uri_at = skip + method.len() + 1 + limits.max_target_bytes + 1;
        if n <= max_head || uri_at <= max_head + 1 {
            return Err(HeadError::UriTooLong);
        }
    }
    if n > max_head {
        return Err(HeadError::HeadTooLarge);
    }

    // CRLF only: the skipped empty lines, every line end before a header name,
    // and the final CRLF CRLF (which also covers the last line's end).
    if skip % 2 != 0 || !data[..skip].chunks_exact(2).all(|c| c == b"\r\n") {
        return Err(HeadError::BareLineFeed);
    }
    if !data[..n].ends_with(b"\r\n\r\n") {
        return Err(HeadError::BareLineFeed);
    }

    let mut headers = Vec::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let ns = off(h.name.as_ptr());
        if ns < 2 || data.get(ns - 2) != Some(&b'\r') {
            return Err(HeadError::BareLineFeed);
        }
        let vs = off(h.value.as_ptr());
        headers.push((
            Span::new(ns - skip, ns - skip + h.name.len()),
            Span::new(vs - skip, vs - skip + h.value.len()),
        ));
    }
    let ts = off(path.as_ptr());
    Ok(Some(Scanned {
        skip,
        len: n - skip,
        method: Span::new(0, method.len()),
        target: Span::new(ts - skip, ts - skip + path.len()),
        version: if minor == 1 {
            Version::Http11
        } else {
            Version::Http10
        },
        headers,
    }))
}

/// httparse refuses anything but `HTTP/1.0` / `HTTP/1.1`. A well-formed other
/// version (`HTTP/2.0`, `HTTP/0.9`) gets 505; garbage gets 400. Decided only once
/// the line is complete (or cannot become a version), so split reads agree.
fn classify_bad_version(
    data: &[u8],
    req: &httparse::Request<'_, '_>,
    off: impl Fn(*const u8) -> usize,
    max_head: usize,
) -> Result<Option<Scanned>, HeadError> {
    let Some(path) = req.path else {
        return Err(HeadError::BadRequestLine);
    };
    let vs = off(path.as_ptr()) + path.len() + 1;
    let rest = data.get(vs..).unwrap_or_default();
    // HTTP-version = "HTTP/" DIGIT "." DIGIT, then CRLF.
    let fits = |i: usize, b: u8| match i {
        0..=4 => b == b"HTTP/"[i],
        5 | 7 => b.is_ascii_digit(),
        6 => b == b'.',
        8 => b == b'\r',
        9 => b == b'\n',
        _ => false,
    };
    let matched = rest.iter().take(10).enumerate().all(|(i, &b)| fits(i, b));
    if !matched {
        return Err(HeadError::BadRequestLine);
    }
    if rest.len() >= 10 {
        return Err(HeadError::UnsupportedVersion);
    }
    if data.len() > max_head {
        return Err(HeadError::HeadTooLarge);
    }
    Ok(None)
}

/// Check the target's form against the method and split path / query.
fn split_target(head: &[u8], method: Span, target: Span) -> Result<(Span, Span), HeadError> {
    let m = &head[method.range()];
    let t = &head[target.range()];
    let base = target.start as usize;
    // httparse allowed VCHAR and obs-text; URIs are ASCII and a fragment is
    // never sent (RFC 9112 §3.2), so both mean a broken or hostile client.
    let mut q = None;
    for (i, &b) in t.iter().enumerate() {
        if b >= 0x80 || b == b'#' {
            return Err(HeadError::BadTarget);
        }
        if b == b'?' && q.is_none() {
            q = Some(i);
        }
    }
    let is_connect = m == b"CONNECT";
    let path_query = |from: usize| {
        let (pe, query) = match q {
            Some(qi) => (qi, Span::new(base + qi + 1, base + t.len())),
            None => (t.len(), Span::default()),
        };
        (Span::new(base + from, base + pe), query)
    };

    match t.first() {
        // origin-form
        Some(b'/') if !is_connect => Ok(path_query(0)),
        // asterisk-form, OPTIONS only (RFC 9112 §3.2.4)
        Some(b'*') if t.len() == 1 && m == b"OPTIONS" => Ok((target, Span::default())),
        // authority-form, CONNECT only (RFC 9112 §3.2.3): host ":" port
        Some(_) if is_connect => {
            let colon = t
                .iter()
                .rposition(|&b| b == b':')
                .ok_or(HeadError::BadTarget)?;
            let port = &t[colon + 1..];
            if colon == 0
                || q.is_some()
                || port.is_empty()
                || !port.iter().all(u8::is_ascii_digit)
                || !valid_authority(&t[..colon])
            {
                return Err(HeadError::BadTarget);
            }
            Ok((target, Span::default()))
        }
        // absolute-form, any method (RFC 9112 §3.2.2); only http(s) makes sense here.
        Some(_) => {
            let colon = t
                .iter()
                .position(|&b| b == b':')
                .ok_or(HeadError::BadTarget)?;
            let scheme = &t[..colon];
            if !(scheme.eq_ignore_ascii_case(b"http") || scheme.eq_ignore_ascii_case(b"https")) {
                return Err(HeadError::BadTarget);
            }
            if t.get(colon + 1..colon + 3) != Some(b"//") {
                return Err(HeadError::BadTarget);
            }
            let auth_start = colon + 3;
            let auth_end = t[auth_start..]
                .iter()
                .position(|&b| b == b'/' || b == b'?')
                .map_or(t.len(), |p| auth_start + p);
            let auth = &t[auth_start..auth_end];
            // Empty host is invalid for http(s); userinfo is refused (RFC 9110 §4.2.4).
            if auth.is_empty() || !valid_authority(auth) {
                return Err(HeadError::BadTarget);
            }
            Ok(path_query(auth_end))
        }
        None => Err(HeadError::BadTarget),
    }
}

/// uri-host [":" port] characters: reg-name / IP-literal. No '@' (userinfo),
/// no ',' (would read as two Host values), no whitespace or controls.
fn valid_authority(a: &[u8]) -> bool {
    a.iter().all(|&b| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'%'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b';'
                    | b'='
                    | b':'
                    | b'['
                    | b']'
            )
    })
}

/// Transfer-Encoding as read across all its field lines.
#[derive(Default, Clone, Copy)]
struct TeState {
    last_is_chunked: bool,
    chunked_seen: bool,
    chunked_twice: bool,
    other_coding: bool,
    malformed: bool,
}

impl TeState {
    fn add_line(&mut self, v: &[u8]) {
        for elem in list_elements(v) {
            // RFC 9110 §5.6.1: empty list elements are ignored.
            if elem.is_empty() {
                continue;
            }
            if elem.eq_ignore_ascii_case(b"chunked") {
                if self.chunked_seen {
                    self.chunked_twice = true;
                }
                self.chunked_seen = true;
                self.last_is_chunked = true;
                continue;
            }
            self.last_is_chunked = false;
            let name_end = elem.iter().position(|&b| b == b';').unwrap_or(elem.len());
            let name = trim_ows(&elem[..name_end]);
            // chunked takes no parameters; "chunked;x" is not "chunked".
            if name.is_empty()
                || !name.iter().all(|&b| is_tchar(b))
                || name.eq_ignore_ascii_case(b"chunked")
            {
                self.malformed = true;
            } else {
                self.other_coding = true;
            }
        }
    }

    /// RFC 9112 §6.3: chunked must be final and applied once, else the body length
    /// cannot be determined (400). Other codings before it are valid but unsupported.
    fn framing(self) -> Result<BodyFraming, HeadError> {
        if self.malformed || self.chunked_twice || !self.last_is_chunked {
            return Err(HeadError::BadTransferEncoding);
        }
        if self.other_coding {
            return Err(HeadError::UnsupportedTransferCoding);
        }
        Ok(BodyFraming::Chunked)
    }
}

#[derive(Default)]
struct HeaderFacts {
    host_count: u32,
    content_length: Option<u64>,
    te: Option<TeState>,
    conn_close: bool,
    conn_keep_alive: bool,
    expect_continue: bool,
}

/// Lower-case every name in place and pick out the fields that drive framing and
/// connection handling.
fn classify_headers(head: &mut [u8], headers: &[(Span, Span)]) -> Result<HeaderFacts, HeadError> {
    let mut f = HeaderFacts::default();
    for &(name, value) in headers {
        head[name.range()].make_ascii_lowercase();
        let n = &head[name.range()];
        let v = &head[value.range()];
        match n {
            b"host" => {
                f.host_count += 1;
                if f.host_count > 1 || !valid_authority(v) {
                    return Err(HeadError::BadHost);
                }
            }
            b"content-length" => {
                // "5, 5" and repeated identical lines are one value (RFC 9110 §8.6).
                for elem in list_elements(v) {
                    let len = parse_decimal(elem).ok_or(HeadError::BadContentLength)?;
                    match f.content_length {
                        Some(prev) if prev != len => return Err(HeadError::BadContentLength),
                        _ => f.content_length = Some(len),
                    }
                }
            }
            b"transfer-encoding" => f.te.get_or_insert_with(TeState::default).add_line(v),
            b"connection" => {
                for tok in list_elements(v) {
                    if tok.eq_ignore_ascii_case(b"close") {
                        f.conn_close = true;
                    } else if tok.eq_ignore_ascii_case(b"keep-alive") {
                        f.conn_keep_alive = true;
                    }
                }
            }
            b"expect" if v.eq_ignore_ascii_case(b"100-continue") => f.expect_continue = true,
            _ => {}
        }
    }
    Ok(f)
}

/// Comma-separated list elements with OWS trimmed (empty ones included).
fn list_elements(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',').map(trim_ows)
}

pub(crate) fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// 1*DIGIT into u64; no sign, no whitespace, no overflow.
pub(crate) fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(n)
}

/// RFC 9110 tchar.
#[inline]
pub(crate) const fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

#[cfg(test)]
mod tests;
