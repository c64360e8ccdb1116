//! Sans-IO HTTP/1.1 codec: bytes in, events out; events in, bytes out.
//! No sockets, no Python, no tokio.

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
    reason_phrase, write_simple_response, ResponseDefaults, ResponseEncoder, ResponseError,
    CONTINUE_100,
};
