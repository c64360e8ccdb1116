//! Sans-IO HTTP/1.1 codec: bytes in, events out; events in, bytes out.
//! No sockets, no Python, no tokio.
//!
//! Strictness (RFC 9110 / 9112), decided here once so the engine need not:
//!
//! - Line ends: CRLF only, in the head and in chunked framing. A bare LF is a
//!   400 (`HeadError::BareLineFeed`, `ChunkedError::BadLineEnd`), since
//!   proxies that disagree on line ends are a request-smuggling vector. Empty
//!   CRLF lines before a request line are skipped (RFC 9112 §2.2).
//! - Framing: Content-Length with Transfer-Encoding, differing or non-digit
//!   Content-Length, a Transfer-Encoding whose last coding is not a single
//!   `chunked`, and Transfer-Encoding on HTTP/1.0 are 400; `gzip, chunked` and
//!   other codings before chunked are 501. `Content-Length: 0` is
//!   `BodyFraming::Empty`.
//! - Fields: obs-fold, whitespace before the colon, control bytes in values
//!   (all but HTAB; obs-text is allowed) are 400; more than `max_headers`
//!   fields or a head over `max_head_bytes` is 431. HTTP/1.1 needs exactly one
//!   Host (two are refused on 1.0 too) whose value is a valid uri-host[:port].
//! - Request line: single spaces, a token method, a VCHAR target without '#'
//!   or non-ASCII bytes, in origin-form (any method), absolute-form (http/https,
//!   no userinfo), asterisk-form (OPTIONS) or authority-form (CONNECT only).
//!   `HTTP/x.y` other than 1.0/1.1 is 505, anything else 400. A target over
//!   `max_target_bytes` is 414 as soon as that many bytes of it arrived.
//! - Responses: header names must be tokens, values must hold no CTL but HTAB
//!   (so no CR/LF/NUL: no response splitting).

pub mod chunked;
pub mod date;
pub mod error;
pub mod request;
pub mod response;

pub use chunked::{ChunkedDecoder, ChunkedError, Decoded};
pub use date::http_date;
pub use error::HeadError;
pub use request::{
    parse_request_head, BodyFraming, HeadParser, Limits, RequestHead, Span, Version,
};
pub use response::{
    reason_phrase, write_simple_response, FileFraming, ResponseDefaults, ResponseEncoder,
    ResponseError, CONTINUE_100,
};
