//! Response encoding: status line, headers and body framing, written into the
//! caller's buffer so that head and body leave in one syscall.

use super::request::{parse_decimal, trim_ows};
use thiserror::Error;

use super::request::Version;

pub const CONTINUE_100: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ResponseError {
    /// Bad name (not a token) or value (CR, LF, NUL or another control byte).
    #[error("invalid response header")]
    InvalidHeader,
    #[error("invalid status code")]
    InvalidStatus,
    #[error("response already started")]
    AlreadyStarted,
    #[error("response not started")]
    NotStarted,
    #[error("response already complete")]
    AlreadyComplete,
    #[error("body longer than Content-Length")]
    BodyTooLong,
    #[error("body shorter than Content-Length")]
    BodyTooShort,
    /// Trailers without `trailers: true` in start, or before the final body.
    #[error("unexpected trailers")]
    UnexpectedTrailers,
    /// A file after a close-delimited (HTTP/1.0) streamed body: if it shrank
    /// while sent, the close would make the short body look complete.
    #[error("a file cannot end a close-delimited body")]
    FileAfterCloseDelimited,
}

/// How a final body that the caller sends itself (a file, by `sendfile`) is
/// framed: [`ResponseEncoder::file_body`] has put the head and any chunk-size
/// line in the output; `len` bytes of the file follow, then `suffix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileFraming {
    pub len: u64,
    pub suffix: &'static [u8],
}

#[derive(Debug, Clone, Default)]
pub struct ResponseDefaults {
    /// Add `Server: ferrule` unless the app set Server.
    pub server_header: bool,
    /// Add `Date: ...` unless the app set Date.
    pub date_header: bool,
    /// `--header` defaults, added unless the app set that name.
    pub extra: Vec<(Vec<u8>, Vec<u8>)>,
}

/// How the body goes on the wire; chosen when the head is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// HEAD, 1xx, 204, 304: the response ends with its head.
    NoBody,
    Length,
    Chunked,
    /// HTTP/1.0 stream of unknown length: the close marks the end.
    Close,
}

#[derive(Debug)]
pub struct ResponseEncoder {
    version: Version,
    head_request: bool,
    client_keep_alive: bool,
    force_close: bool,
    failed: bool,

    status: u16,
    started: bool,
    head_written: bool,
    body_done: bool,
    complete: bool,
    trailers_expected: bool,
    trailers_open: bool,
    framing: Framing,
    /// Length framing: payload bytes still owed.
    remaining: u64,
    body_bytes: u64,
    /// The response ends the connection (decided with the head).
    closes: bool,

    /// The app's header lines, serialized at start ("Name: value\r\n"), without
    /// Transfer-Encoding (kept apart: it is sent only with chunked framing).
    block: Vec<u8>,
    te_lines: Vec<u8>,
    /// Byte range of the app's Content-Length line in `block` (dropped if chunked).
    cl_line: Option<(usize, usize)>,
    app_content_length: Option<u64>,
    app_conn_close: bool,
    app_conn_keep_alive: bool,
    has_server: bool,
    has_date: bool,
}

/// RFC 9110 tchar, as a table for the per-byte check on app header names.
const TCHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = super::request::is_tchar(i as u8);
        i += 1;
    }
    t
};

/// field-value bytes: HTAB, SP, VCHAR, obs-text. Refusing CR/LF stops response
/// splitting; other controls are refused as RFC 9110 §5.5 forbids them too.
const FIELD_VALUE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = i == 0x09 || (i >= 0x20 && i != 0x7f);
        i += 1;
    }
    t
};

fn check_field(name: &[u8], value: &[u8]) -> Result<(), ResponseError> {
    if name.is_empty()
        || !name.iter().all(|&b| TCHAR[b as usize])
        || !value.iter().all(|&b| FIELD_VALUE[b as usize])
    {
        return Err(ResponseError::InvalidHeader);
    }
    Ok(())
}

#[inline]
fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

#[inline]
fn push_u64_field(out: &mut Vec<u8>, name: &[u8], n: u64) {
    let mut b = itoa::Buffer::new();
    push_field(out, name, b.format(n).as_bytes());
}

fn push_status_line(out: &mut Vec<u8>, status: u16) {
    out.extend_from_slice(b"HTTP/1.1 ");
    let mut b = itoa::Buffer::new();
    out.extend_from_slice(b.format(status).as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Lower-case hex chunk size followed by CRLF.
#[inline]
fn push_chunk_size(out: &mut Vec<u8>, n: usize) {
    let mut buf = [0u8; 18];
    let mut i = 16;
    let mut v = n;
    loop {
        i -= 1;
        buf[i] = b"0123456789abcdef"[v & 0xf];
        v >>= 4;
        if v == 0 {
            break;
        }
    }
    buf[16] = b'\r';
    buf[17] = b'\n';
    out.extend_from_slice(&buf[i..]);
}

/// Does `block` ("Name: v\r\n"...) have a line named `name` (any case)?
fn block_has(block: &[u8], name: &[u8]) -> bool {
    block
        .split(|&b| b == b'\n')
        .filter_map(|line| line.iter().position(|&b| b == b':').map(|p| &line[..p]))
        .any(|n| n.eq_ignore_ascii_case(name))
}

fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| trim_ows(t).eq_ignore_ascii_case(token))
}

/// Write the defaults the app did not override: Server, Date, `--header` extras.
fn push_defaults(
    out: &mut Vec<u8>,
    defaults: &ResponseDefaults,
    date: &[u8; 29],
    app_block: &[u8],
    has_server: bool,
    has_date: bool,
) {
    let extra_has = |n: &[u8]| {
        defaults
            .extra
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case(n))
    };
    if defaults.server_header && !has_server && !extra_has(b"server") {
        out.extend_from_slice(b"Server: ferrule\r\n");
    }
    if defaults.date_header && !has_date {
        push_field(out, b"Date", date);
    }
    for (k, v) in &defaults.extra {
        if !block_has(app_block, k) {
            push_field(out, k, v);
        }
    }
}

impl ResponseEncoder {
    /// `version` / `head_request` / `keep_alive`: the request's version, whether
    /// it was HEAD, and the client's keep-alive wish.
    pub fn new(version: Version, head_request: bool, keep_alive: bool) -> Self {
        ResponseEncoder {
            version,
            head_request,
            client_keep_alive: keep_alive,
            force_close: false,
            failed: false,
            status: 0,
            started: false,
            head_written: false,
            body_done: false,
            complete: false,
            trailers_expected: false,
            trailers_open: false,
            framing: Framing::NoBody,
            remaining: 0,
            body_bytes: 0,
            closes: false,
            block: Vec::new(),
            te_lines: Vec::new(),
            cl_line: None,
            app_content_length: None,
            app_conn_close: false,
            app_conn_keep_alive: false,
            has_server: false,
            has_date: false,
        }
    }

    /// Reuse this encoder (and its header buffer) for the next request on the
    /// connection.
    pub fn reset(&mut self, version: Version, head_request: bool, keep_alive: bool) {
        let mut block = std::mem::take(&mut self.block);
        let mut te_lines = std::mem::take(&mut self.te_lines);
        block.clear();
        te_lines.clear();
        *self = ResponseEncoder {
            block,
            te_lines,
            ..ResponseEncoder::new(version, head_request, keep_alive)
        };
    }

    /// Validate and store the start message; nothing is written until `body`.
    pub fn start<'h>(
        &mut self,
        status: u16,
        headers: impl IntoIterator<Item = (&'h [u8], &'h [u8])>,
        trailers: bool,
    ) -> Result<(), ResponseError> {
        if self.started {
            return Err(ResponseError::AlreadyStarted);
        }
        if !(100..=999).contains(&status) {
            return Err(ResponseError::InvalidStatus);
        }
        self.block.clear();
        self.te_lines.clear();
        for (name, value) in headers {
            if check_field(name, value).is_err() {
                return self.fail_start();
            }
            if name.eq_ignore_ascii_case(b"content-length") {
                let Some(n) = parse_decimal(value) else {
                    return self.fail_start();
                };
                match self.app_content_length {
                    Some(prev) if prev != n => return self.fail_start(),
                    // An identical repeat adds nothing; write it once.
                    Some(_) => continue,
                    None => {
                        self.app_content_length = Some(n);
                        let at = self.block.len();
                        push_field(&mut self.block, name, value);
                        self.cl_line = Some((at, self.block.len()));
                    }
                }
                continue;
            }
            if name.eq_ignore_ascii_case(b"transfer-encoding") {
                push_field(&mut self.te_lines, name, value);
                continue;
            }
            if name.eq_ignore_ascii_case(b"connection") {
                self.app_conn_close |= has_token(value, b"close");
                self.app_conn_keep_alive |= has_token(value, b"keep-alive");
            } else if name.eq_ignore_ascii_case(b"server") {
                self.has_server = true;
            } else if name.eq_ignore_ascii_case(b"date") {
                self.has_date = true;
            }
            push_field(&mut self.block, name, value);
        }
        if !self.te_lines.is_empty() && !self.app_te_ends_chunked() {
            // We can only frame with chunked; a body under "gzip" alone has no end.
            return self.fail_start();
        }
        self.status = status;
        self.started = true;
        self.trailers_expected = trailers;
        Ok(())
    }

    fn fail_start(&mut self) -> Result<(), ResponseError> {
        self.block.clear();
        self.te_lines.clear();
        self.cl_line = None;
        self.app_content_length = None;
        self.app_conn_close = false;
        self.app_conn_keep_alive = false;
        self.has_server = false;
        self.has_date = false;
        Err(ResponseError::InvalidHeader)
    }

    /// Trailers were announced and the client can take chunked framing.
    fn chunk_for_trailers(&self) -> bool {
        self.trailers_expected && self.version == Version::Http11
    }

    /// Is the last coding of the app's Transfer-Encoding lines `chunked`?
    fn app_te_ends_chunked(&self) -> bool {
        self.te_lines
            .split(|&b| b == b'\n')
            .filter_map(|line| {
                let colon = line.iter().position(|&b| b == b':')?;
                let v = trim_ows(line[colon + 1..].strip_suffix(b"\r").unwrap_or_default());
                v.split(|&b| b == b',')
                    .map(trim_ows)
                    .rfind(|t| !t.is_empty())
            })
            .next_back()
            .is_some_and(|t| t.eq_ignore_ascii_case(b"chunked"))
    }

    /// Encode one `http.response.body` message into `out` (the head first, on the
    /// first call).
    pub fn body(
        &mut self,
        chunk: &[u8],
        more: bool,
        defaults: &ResponseDefaults,
        date: &[u8; 29],
        out: &mut Vec<u8>,
    ) -> Result<(), ResponseError> {
        if !self.started {
            return Err(ResponseError::NotStarted);
        }
        if self.body_done || self.complete {
            return Err(ResponseError::AlreadyComplete);
        }
        if !self.head_written {
            self.write_head(chunk.len(), more, defaults, date, out);
        }
        match self.framing {
            Framing::NoBody => {}
            Framing::Length => {
                if chunk.len() as u64 > self.remaining {
                    self.failed = true;
                    return Err(ResponseError::BodyTooLong);
                }
                out.extend_from_slice(chunk);
                self.remaining -= chunk.len() as u64;
                self.body_bytes += chunk.len() as u64;
                if !more && self.remaining > 0 {
                    self.failed = true;
                    self.body_done = true;
                    return Err(ResponseError::BodyTooShort);
                }
            }
            Framing::Chunked => {
                if !chunk.is_empty() {
                    push_chunk_size(out, chunk.len());
                    out.extend_from_slice(chunk);
                    out.extend_from_slice(b"\r\n");
                    self.body_bytes += chunk.len() as u64;
                }
                // Terminator in the same buffer as the last data (one write).
                if !more && !self.trailers_expected {
                    out.extend_from_slice(b"0\r\n\r\n");
                }
            }
            Framing::Close => {
                out.extend_from_slice(chunk);
                self.body_bytes += chunk.len() as u64;
            }
        }
        if !more {
            self.body_done = true;
            self.complete = !self.trailers_expected;
        }
        Ok(())
    }

    /// Choose framing and write status line + headers.
    fn write_head(
        &mut self,
        first_len: usize,
        more: bool,
        defaults: &ResponseDefaults,
        date: &[u8; 29],
        out: &mut Vec<u8>,
    ) {
        let s = self.status;
        let no_body_status = s < 200 || s == 204 || s == 304;
        let use_app_te = !self.te_lines.is_empty() && self.version == Version::Http11;

        // What framing headers do we add? (HEAD mirrors what GET would get.)
        enum Add {
            Nothing,
            AppTe,
            OurTe,
            Length(u64),
        }
        let (framing, add) = if no_body_status {
            (Framing::NoBody, Add::Nothing)
        } else if use_app_te {
            let f = if self.head_request {
                Framing::NoBody
            } else {
                Framing::Chunked
            };
            (f, Add::AppTe)
        } else if let Some(n) = self.app_content_length {
            let f = if self.head_request {
                Framing::NoBody
            } else {
                Framing::Length
            };
            self.remaining = n;
            (f, Add::Nothing)
        } else if !more && !self.chunk_for_trailers() {
            // The whole body is here: announce its length. (Not when trailers
            // were announced: only chunked framing can carry them.)
            let f = if self.head_request {
                Framing::NoBody
            } else {
                Framing::Length
            };
            self.remaining = first_len as u64;
            (f, Add::Length(first_len as u64))
        } else if self.version == Version::Http11 {
            let f = if self.head_request {
                Framing::NoBody
            } else {
                Framing::Chunked
            };
            (f, Add::OurTe)
        } else if self.head_request {
            // A HEAD response ends with its head: no need to close.
            (Framing::NoBody, Add::Nothing)
        } else {
            (Framing::Close, Add::Nothing)
        };
        self.framing = framing;
        if matches!(add, Add::AppTe) {
            // RFC 9112 §6.2: no Content-Length alongside Transfer-Encoding.
            if let Some((a, b)) = self.cl_line.take() {
                self.block.drain(a..b);
            }
        }

        self.closes = self.force_close
            || self.failed
            || self.app_conn_close
            || !self.client_keep_alive
            || framing == Framing::Close;

        push_status_line(out, s);
        push_defaults(
            out,
            defaults,
            date,
            &self.block,
            self.has_server,
            self.has_date,
        );
        out.extend_from_slice(&self.block);
        match add {
            Add::Nothing => {}
            Add::AppTe => out.extend_from_slice(&self.te_lines),
            Add::OurTe => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
            Add::Length(n) => push_u64_field(out, b"Content-Length", n),
        }
        if !self.app_conn_close {
            // Say close when we end the connection for our own reasons, or echo
            // a 1.1 client's close (RFC 9112 §9.6). 1.0 closes by default.
            let say_close = self.force_close
                || framing == Framing::Close
                || (self.version == Version::Http11 && !self.client_keep_alive);
            if say_close {
                out.extend_from_slice(b"Connection: close\r\n");
            } else if self.version == Version::Http10 && !self.closes && !self.app_conn_keep_alive {
                out.extend_from_slice(b"Connection: keep-alive\r\n");
            }
        }
        out.extend_from_slice(b"\r\n");
        self.head_written = true;
    }

    /// The final body is `len` bytes that the caller writes itself (a file):
    /// writes the head if it is not written yet, and any framing before the
    /// body, into `out`. A length that differs from the app's Content-Length
    /// is refused before anything is written, so the client never gets a
    /// short body that looks complete.
    pub fn file_body(
        &mut self,
        len: u64,
        defaults: &ResponseDefaults,
        date: &[u8; 29],
        out: &mut Vec<u8>,
    ) -> Result<FileFraming, ResponseError> {
        if !self.started {
            return Err(ResponseError::NotStarted);
        }
        if self.body_done || self.complete {
            return Err(ResponseError::AlreadyComplete);
        }
        if self.head_written && self.framing == Framing::Close {
            return Err(ResponseError::FileAfterCloseDelimited);
        }
        let owed = if self.head_written {
            (self.framing == Framing::Length).then_some(self.remaining)
        } else {
            let app_te = !self.te_lines.is_empty() && self.version == Version::Http11;
            self.app_content_length.filter(|_| !app_te)
        };
        let body_status = !(self.status < 200 || self.status == 204 || self.status == 304);
        if let Some(n) = owed.filter(|_| body_status && !self.head_request) {
            if len != n {
                return Err(if len < n {
                    ResponseError::BodyTooShort
                } else {
                    ResponseError::BodyTooLong
                });
            }
        }
        if !self.head_written {
            // usize is 64 bits wide on every platform the engine builds on.
            self.write_head(len as usize, false, defaults, date, out);
        }
        let framing = match self.framing {
            Framing::NoBody => FileFraming {
                len: 0,
                suffix: b"",
            },
            Framing::Length => {
                self.remaining = 0;
                FileFraming { len, suffix: b"" }
            }
            Framing::Chunked => {
                if len > 0 {
                    push_chunk_size(out, len as usize);
                }
                let suffix: &'static [u8] = match (len > 0, self.trailers_expected) {
                    (true, false) => b"\r\n0\r\n\r\n",
                    (true, true) => b"\r\n",
                    (false, false) => b"0\r\n\r\n",
                    (false, true) => b"",
                };
                FileFraming { len, suffix }
            }
            // Only before the head is written (refused above), where
            // write_head never picks it for a final body of known length.
            Framing::Close => FileFraming { len, suffix: b"" },
        };
        self.body_bytes += framing.len;
        self.body_done = true;
        self.complete = !self.trailers_expected;
        Ok(framing)
    }

    /// `103 Early Hints` with one `Link` field per value, if it can still go
    /// out: on HTTP/1.1, before the response's head. Returns whether it wrote
    /// one (HTTP/1.0 clients, and a head already written, get none).
    pub fn early_hints<'l>(
        &self,
        links: impl IntoIterator<Item = &'l [u8]>,
        out: &mut Vec<u8>,
    ) -> Result<bool, ResponseError> {
        if !self.started {
            return Err(ResponseError::NotStarted);
        }
        if self.version != Version::Http11 || self.head_written || self.complete {
            return Ok(false);
        }
        let mark = out.len();
        push_status_line(out, 103);
        let mut any = false;
        for value in links {
            if let Err(e) = check_field(b"link", value) {
                out.truncate(mark);
                return Err(e);
            }
            push_field(out, b"Link", value);
            any = true;
        }
        if !any {
            out.truncate(mark);
            return Ok(false);
        }
        out.extend_from_slice(b"\r\n");
        Ok(true)
    }

    /// `http.response.trailers`: with chunked framing writes the last-chunk and
    /// the fields; otherwise the fields are dropped.
    pub fn trailers<'h>(
        &mut self,
        headers: impl IntoIterator<Item = (&'h [u8], &'h [u8])>,
        more: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), ResponseError> {
        if !self.started {
            return Err(ResponseError::NotStarted);
        }
        if self.complete {
            return Err(ResponseError::AlreadyComplete);
        }
        if !self.trailers_expected || !self.body_done {
            return Err(ResponseError::UnexpectedTrailers);
        }
        let emit = self.framing == Framing::Chunked && !self.failed;
        // Validate everything before writing anything, so a bad field never
        // leaves half a trailer section in `out`.
        let mark = out.len();
        if emit && !self.trailers_open {
            out.extend_from_slice(b"0\r\n");
        }
        for (name, value) in headers {
            if let Err(e) = check_field(name, value) {
                out.truncate(mark);
                return Err(e);
            }
            if emit {
                push_field(out, name, value);
            }
        }
        if emit {
            self.trailers_open = true;
            if !more {
                out.extend_from_slice(b"\r\n");
            }
        }
        if !more {
            self.complete = true;
        }
        Ok(())
    }

    /// Shutdown: make the response carry `Connection: close` (if its head is not
    /// written yet) and end the connection after it.
    pub fn force_close(&mut self) {
        self.force_close = true;
        self.closes = true;
    }

    pub fn is_started(&self) -> bool {
        self.started
    }

    pub fn head_written(&self) -> bool {
        self.head_written
    }

    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// May the connection carry another request after this response?
    pub fn keep_alive(&self) -> bool {
        if self.head_written {
            !self.closes && !self.failed
        } else {
            self.client_keep_alive && !self.force_close && !self.failed && !self.app_conn_close
        }
    }

    pub fn status(&self) -> u16 {
        self.status
    }

    /// Payload bytes put on the wire (not counting chunk framing).
    pub fn body_bytes(&self) -> u64 {
        self.body_bytes
    }
}

/// Whole plain-text response (errors etc.) with Content-Length.
pub fn write_simple_response(
    out: &mut Vec<u8>,
    status: u16,
    body: &[u8],
    close: bool,
    defaults: &ResponseDefaults,
    date: &[u8; 29],
) {
    push_status_line(out, status);
    push_defaults(out, defaults, date, b"", false, false);
    out.extend_from_slice(b"Content-Type: text/plain; charset=utf-8\r\n");
    push_u64_field(out, b"Content-Length", body.len() as u64);
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

/// Reason phrase of the status codes in RFC 9110 (and a few common others);
/// empty for unknown codes (the status line then ends "NNN \r\n", which is valid).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        102 => "Processing",
        103 => "Early Hints",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        207 => "Multi-Status",
        208 => "Already Reported",
        226 => "IM Used",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        305 => "Use Proxy",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        418 => "I'm a teapot",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        423 => "Locked",
        424 => "Failed Dependency",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        506 => "Variant Also Negotiates",
        507 => "Insufficient Storage",
        508 => "Loop Detected",
        510 => "Not Extended",
        511 => "Network Authentication Required",
        _ => "",
    }
}

#[cfg(test)]
mod tests;
